//! The configuration audit log: who changed what in the tailnet, and when.

use jiff::Timestamp;
use reqwest::Method;
use serde::Deserialize;

use super::{Client, Error, Request};

/// One logged change (the fields Tailkeeper reads).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigLogEntry {
    /// `ADMIN_CONSOLE`, `API`, ...
    #[serde(default)]
    pub origin: String,
    #[serde(default)]
    pub actor: LogActor,
    /// `UPDATE`, `CREATE`, ...
    #[serde(default, rename = "type")]
    pub action: String,
    #[serde(default)]
    pub target: LogTarget,
    /// The value before and after (for the policy file, its text).
    #[serde(default)]
    pub old: Option<serde_json::Value>,
    #[serde(default)]
    pub new: Option<serde_json::Value>,
    pub event_time: Timestamp,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LogActor {
    #[serde(default)]
    pub id: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub login_name: String,
    #[serde(default)]
    pub display_name: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LogTarget {
    #[serde(default)]
    pub id: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub property: String,
}

#[derive(Deserialize)]
struct Logs {
    #[serde(default)]
    logs: Vec<ConfigLogEntry>,
}

impl ConfigLogEntry {
    /// Whether this entry changed the policy file.
    pub fn is_policy_change(&self) -> bool {
        self.target.property.eq_ignore_ascii_case("ACL")
    }

    /// Who, for people: the login (or the credential's id) and where from.
    pub fn who(&self) -> String {
        let name = if self.actor.login_name.is_empty() {
            format!("{} {}", self.actor.kind.to_lowercase(), self.actor.id)
        } else {
            self.actor.login_name.clone()
        };
        let origin = match self.origin.as_str() {
            "ADMIN_CONSOLE" => "in the admin console".to_string(),
            "API" => "through the API".to_string(),
            other => format!("({})", other.to_lowercase()),
        };
        format!("{name} {origin} at {}", self.event_time)
    }
}

impl Client {
    /// The configuration audit log between `start` and `end` (needs `logs:configuration:read`).
    pub async fn configuration_log(
        &self,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<ConfigLogEntry>, Error> {
        let mut req = Request::new(
            "logging.configuration",
            Method::GET,
            &self.tailnet_path(&["logging", "configuration"]),
        );
        req.query = vec![("start", start.to_string()), ("end", end.to_string())];
        Ok(self
            .send(&req)
            .await?
            .json::<Logs>("logging.configuration")?
            .logs)
    }
}
