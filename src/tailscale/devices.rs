//! Devices: the tailnet's device list.

use reqwest::Method;
use serde::Deserialize;

use super::{Client, Error, Request};

/// A device as the API returns it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub node_id: String,
    #[serde(default)]
    pub name: String,
    /// The owner's login name.
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub last_seen: Option<String>,
    #[serde(default)]
    pub authorized: bool,
}

#[derive(Deserialize)]
struct DeviceList {
    #[serde(default)]
    devices: Vec<Device>,
}

impl Client {
    /// List the tailnet's devices.
    pub async fn list_devices(&self) -> Result<Vec<Device>, Error> {
        let req = Request::new(
            "devices.list",
            Method::GET,
            &self.tailnet_path(&["devices"]),
        );
        let list: DeviceList = self.send(&req).await?.json("devices.list")?;
        Ok(list.devices)
    }
}
