//! Users: list, get, and the mutations (role, suspend, restore, approve, delete).

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Body, Client, Error, Request};

/// A Tailscale user as the API returns it. Fields Tailscale may omit default to empty.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub display_name: String,
    pub login_name: String,
    #[serde(default)]
    pub tailnet_id: String,
    #[serde(default)]
    pub created: Option<String>,
    /// `member` or `shared`.
    #[serde(rename = "type", default)]
    pub user_type: String,
    /// `owner`, `admin`, `it-admin`, `network-admin`, `billing-admin`, `auditor` or `member`.
    #[serde(default)]
    pub role: String,
    /// `active`, `idle`, `suspended`, `needs-approval` or `over-billing-limit`.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub device_count: i64,
    #[serde(default)]
    pub last_seen: Option<String>,
    #[serde(default)]
    pub currently_connected: bool,
}

/// Which users to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserType {
    Member,
    Shared,
    All,
}

impl UserType {
    fn as_str(self) -> &'static str {
        match self {
            UserType::Member => "member",
            UserType::Shared => "shared",
            UserType::All => "all",
        }
    }
}

#[derive(Deserialize)]
struct UserList {
    #[serde(default)]
    users: Vec<User>,
}

impl Client {
    /// List the tailnet's users of a type (Tailscale's list is not paginated).
    pub async fn list_users(&self, user_type: UserType) -> Result<Vec<User>, Error> {
        let mut req = Request::new("users.list", Method::GET, &self.tailnet_path(&["users"]));
        req.query.push(("type", user_type.as_str().to_string()));
        let list: UserList = self.send(&req).await?.json("users.list")?;
        Ok(list.users)
    }

    /// One user by ID.
    pub async fn get_user(&self, id: &str) -> Result<User, Error> {
        let req = Request::new("users.get", Method::GET, &["users", id]);
        self.send(&req).await?.json("users.get")
    }

    /// Change a user's role (`POST /users/{id}/role`).
    pub async fn set_user_role(&self, id: &str, role: &str) -> Result<(), Error> {
        let mut req = Request::new("users.role", Method::POST, &["users", id, "role"]);
        req.body = Body::Json(json!({ "role": role }));
        self.send(&req).await.map(|_| ())
    }

    pub async fn suspend_user(&self, id: &str) -> Result<(), Error> {
        self.user_action("users.suspend", id, "suspend").await
    }

    pub async fn restore_user(&self, id: &str) -> Result<(), Error> {
        self.user_action("users.restore", id, "restore").await
    }

    pub async fn approve_user(&self, id: &str) -> Result<(), Error> {
        self.user_action("users.approve", id, "approve").await
    }

    /// Delete a user (`POST /users/{id}/delete`; Tailscale has no HTTP DELETE here).
    pub async fn delete_user(&self, id: &str) -> Result<(), Error> {
        self.user_action("users.delete", id, "delete").await
    }

    async fn user_action(
        &self,
        endpoint: &'static str,
        id: &str,
        action: &str,
    ) -> Result<(), Error> {
        let req = Request::new(endpoint, Method::POST, &["users", id, action]);
        self.send(&req).await.map(|_| ())
    }
}
