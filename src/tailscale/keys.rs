//! Keys: reading an API key's metadata (its expiry), never its value.

use jiff::Timestamp;
use reqwest::Method;
use serde::Deserialize;

use super::{Client, Error, Request};

/// A key's metadata.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Key {
    pub id: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub created: Option<Timestamp>,
    #[serde(default)]
    pub expires: Option<Timestamp>,
}

impl Client {
    /// Read a key's metadata (every scope may read its own key).
    pub async fn get_key(&self, key_id: &str) -> Result<Key, Error> {
        let req = Request::new(
            "keys.get",
            Method::GET,
            &self.tailnet_path(&["keys", key_id]),
        );
        self.send(&req).await?.json("keys.get")
    }
}
