//! The policy file: read and write it as HuJSON (comments kept) under ETag / If-Match, and ask
//! Tailscale to validate a candidate. Editing is not done here: only the policy writer decides
//! what to write.

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::{etag, Body, Client, Error, Request};

/// The policy file's text and the ETag to send back when replacing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyFile {
    /// The HuJSON text exactly as Tailscale stores it.
    pub text: String,
    /// The ETag, without quotes.
    pub etag: String,
}

/// The outcome of validating a candidate policy.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Validation {
    /// Tailscale's message; empty when the policy is valid.
    #[serde(default)]
    pub message: String,
    /// Details, for example the failing `tests` per user.
    #[serde(default)]
    pub data: Option<Value>,
}

impl Validation {
    pub fn is_valid(&self) -> bool {
        self.message.is_empty()
            && self
                .data
                .as_ref()
                .is_none_or(|d| d.is_null() || d.as_array().is_some_and(|a| a.is_empty()))
    }
}

impl Client {
    /// Read the policy file as HuJSON with its ETag.
    pub async fn get_policy_file(&self) -> Result<PolicyFile, Error> {
        let mut req = Request::new("acl.get", Method::GET, &self.tailnet_path(&["acl"]));
        req.accept = Some("application/hujson");
        let response = self.send(&req).await?;
        let text = response.text("acl.get")?;
        let etag = etag(&response.headers).ok_or_else(|| Error::Decode {
            endpoint: "acl.get",
            message: "the policy file came without an ETag".into(),
        })?;
        Ok(PolicyFile { text, etag })
    }

    /// Replace the policy file. With `if_match`, Tailscale refuses with 412 when the file changed
    /// since that ETag was read ([`Error::is_precondition_failed`]); re-read and re-apply then.
    pub async fn set_policy_file(
        &self,
        text: &str,
        if_match: Option<&str>,
    ) -> Result<PolicyFile, Error> {
        let mut req = Request::new("acl.set", Method::POST, &self.tailnet_path(&["acl"]));
        req.accept = Some("application/hujson");
        req.body = Body::HuJson(text.to_string());
        req.if_match = if_match.map(str::to_string);
        let response = self.send(&req).await?;
        let stored = response.text("acl.set")?;
        let etag = etag(&response.headers).unwrap_or_default();
        Ok(PolicyFile {
            text: if stored.is_empty() {
                text.to_string()
            } else {
                stored
            },
            etag,
        })
    }

    /// Ask Tailscale whether a policy is valid (its `tests` included). Tailscale answers 200
    /// either way; a failure is a non-empty message or data.
    pub async fn validate_policy_file(&self, text: &str) -> Result<Validation, Error> {
        let mut req = Request::new(
            "acl.validate",
            Method::POST,
            &self.tailnet_path(&["acl", "validate"]),
        );
        req.body = Body::HuJson(text.to_string());
        let response = self.send(&req).await?;
        if response.body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Validation::default());
        }
        response.json("acl.validate")
    }
}
