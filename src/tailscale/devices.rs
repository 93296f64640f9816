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

/// A device's posture attributes and their server-side expiries.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PostureAttributes {
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub expiries: serde_json::Map<String, serde_json::Value>,
}

impl Client {
    /// Read a device's posture attributes.
    pub async fn get_posture_attributes(
        &self,
        device_id: &str,
    ) -> Result<PostureAttributes, Error> {
        let req = Request::new(
            "attributes.get",
            Method::GET,
            &["device", device_id, "attributes"],
        );
        self.send(&req).await?.json("attributes.get")
    }

    /// Set a custom posture attribute. With `expiry`, Tailscale itself removes it then, so the
    /// access it unlocks ends on time even if nothing else runs.
    pub async fn set_posture_attribute(
        &self,
        device_id: &str,
        key: &str,
        value: &str,
        expiry: Option<jiff::Timestamp>,
        comment: &str,
    ) -> Result<(), Error> {
        let value = serde_json::Value::String(value.to_string());
        self.set_posture_attribute_value(device_id, key, &value, expiry, comment)
            .await
    }

    /// Set a custom posture attribute to any JSON value (a string, number or boolean), as a
    /// person may have set it.
    pub async fn set_posture_attribute_value(
        &self,
        device_id: &str,
        key: &str,
        value: &serde_json::Value,
        expiry: Option<jiff::Timestamp>,
        comment: &str,
    ) -> Result<(), Error> {
        let mut req = Request::new(
            "attributes.set",
            Method::POST,
            &["device", device_id, "attributes", key],
        );
        let mut body = serde_json::json!({ "value": value, "comment": comment });
        if let Some(at) = expiry {
            body["expiry"] = serde_json::Value::String(at.to_string());
        }
        req.body = super::Body::Json(body);
        self.send(&req).await.map(|_| ())
    }

    /// Remove a posture attribute (a missing one is not an error).
    pub async fn delete_posture_attribute(&self, device_id: &str, key: &str) -> Result<(), Error> {
        let req = Request::new(
            "attributes.delete",
            Method::DELETE,
            &["device", device_id, "attributes", key],
        );
        match self.send(&req).await {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
