//! Public data types: what tests seed into the simulator and read back out of it.
//!
//! These are the simulator's own representations (serde camelCase, used by seed files and
//! the `/_sim/` control API). The Tailscale-shaped JSON that API clients see is built from
//! them in `api.rs`, so the two wire formats can differ where Tailscale's does.

use std::time::Duration;

use rand::distr::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Roles a Tailscale user can hold.
pub const ROLES: &[&str] = &[
    "owner",
    "admin",
    "it-admin",
    "network-admin",
    "billing-admin",
    "auditor",
    "member",
];

/// A pending user invite as handed to a test; see [`crate::Simulator::user_invites`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimUserInvite {
    pub id: String,
    /// The role the user gets on accepting.
    pub role: String,
    /// Empty when the invite was not sent by email.
    pub email: String,
}

/// A user of the simulated tailnet.
///
/// Every field has a default so seed files may list only what matters; [`crate::Simulator::add_user`]
/// fills in an id, display name, creation time, role `member`, status `active` and type `member`
/// where they are left empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SimUser {
    pub id: String,
    pub login_name: String,
    pub display_name: String,
    pub role: String,
    pub status: String,
    /// `member` or `shared`. Also read as `type`, the name Tailscale uses.
    #[serde(alias = "type")]
    pub user_type: String,
    pub device_count: i64,
    pub last_seen: Option<String>,
    pub created: String,
}

impl SimUser {
    /// A tailnet member with the given login, role and status; the rest is filled in on insertion.
    pub fn member(login: &str, role: &str, status: &str) -> SimUser {
        SimUser {
            login_name: login.to_string(),
            role: role.to_string(),
            status: status.to_string(),
            user_type: "member".to_string(),
            ..SimUser::default()
        }
    }

    /// Fill the fields a caller may leave empty, so every stored user is complete.
    pub(crate) fn normalize(&mut self) {
        if self.id.is_empty() {
            self.id = random_id("u");
        }
        if self.display_name.is_empty() {
            self.display_name = self
                .login_name
                .split('@')
                .next()
                .unwrap_or_default()
                .to_string();
        }
        if self.role.is_empty() {
            self.role = "member".to_string();
        }
        if self.status.is_empty() {
            self.status = "active".to_string();
        }
        if self.user_type.is_empty() {
            self.user_type = "member".to_string();
        }
        if self.created.is_empty() {
            self.created = now_rfc3339();
        }
    }
}

/// A device (node) of the simulated tailnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SimDevice {
    /// The node id (`nodeId` in Tailscale's JSON); generated when empty.
    pub id: String,
    pub name: String,
    /// Login name of the owning user (empty for tagged devices).
    pub user: String,
    pub tags: Vec<String>,
    pub os: String,
    pub last_seen: Option<String>,
    pub authorized: bool,
}

impl Default for SimDevice {
    /// Devices default to authorized: that is the common case and what seed files expect
    /// when they omit the field.
    fn default() -> Self {
        SimDevice {
            id: String::new(),
            name: String::new(),
            user: String::new(),
            tags: Vec::new(),
            os: "linux".to_string(),
            last_seen: None,
            authorized: true,
        }
    }
}

/// An API access token as handed to a test (the only time the secret is visible).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: String,
    pub key: String,
    /// RFC 3339 expiry time.
    pub expires: String,
}

/// An OAuth client's credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuthClient {
    pub id: String,
    pub secret: String,
}

/// A fault queued for upcoming requests; see [`crate::Simulator::inject`].
///
/// JSON form (control API): `{"endpoint":"users.list","kind":"status","status":429,
/// "retryAfterSecs":1,"message":"rate limited","count":2}`, `{"kind":"hang",...}` or
/// `{"kind":"latency","ms":250,...}`. `endpoint` defaults to `*` and `count` to 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "crate::faults::FaultWire",
    into = "crate::faults::FaultWire"
)]
pub struct Fault {
    /// Endpoint name (`users.list`, ...) or `*` for every Tailscale API endpoint.
    pub endpoint: String,
    pub kind: FaultKind,
    /// How many matching requests it affects; a fault with count 0 is never queued.
    pub count: u32,
}

/// What a fault does to the request it hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer this status with `{"message": message}` (and `Retry-After` when set).
    Status {
        status: u16,
        retry_after_secs: Option<u64>,
        message: String,
    },
    /// Never answer (until the client gives up or the simulator shuts down).
    Hang,
    /// Delay the request, then handle it normally.
    Latency(Duration),
}

/// The webhook event types the simulator emits (Tailscale has more, for changes it does not
/// model). An endpoint subscribes to a subset and receives only those; the category
/// `categoryTailnetManagement` covers them all.
pub const WEBHOOK_EVENT_TYPES: &[&str] = &[
    "userCreated",
    "userDeleted",
    "userRoleUpdated",
    "userSuspended",
    "userRestored",
    "userApproved",
    "userNeedsApproval",
    "policyUpdate",
];

/// A webhook endpoint as handed to a test: its id and signing secret (the only time, besides a
/// rotation, that the secret is visible, as with Tailscale).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookInfo {
    pub id: String,
    pub secret: String,
}

/// One attempt to deliver a batch of events to a webhook endpoint; see
/// [`crate::Simulator::webhook_deliveries`]. Every attempt is recorded, retries included, so
/// tests can assert on the retry behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub endpoint_id: String,
    /// 1 for the first attempt, 2 for the first retry, and so on.
    pub attempt: u32,
    pub outcome: DeliveryOutcome,
    /// The `type` of each event in the batch, in order.
    pub event_types: Vec<String>,
}

impl Delivery {
    /// Whether the receiver accepted the batch (answered 2xx).
    pub fn delivered(&self) -> bool {
        matches!(self.outcome, DeliveryOutcome::Status(status) if (200..300).contains(&status))
    }
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryOutcome {
    /// The receiver answered with this HTTP status.
    Status(u16),
    /// No answer: connection refused, timeout, ...; the error text.
    Error(String),
}

/// The current time as RFC 3339 with whole seconds, the way Tailscale prints times.
pub(crate) fn now_rfc3339() -> String {
    timestamp_rfc3339(jiff::Timestamp::now())
}

pub(crate) fn timestamp_rfc3339(ts: jiff::Timestamp) -> String {
    whole_seconds(ts).to_string()
}

/// Truncate to whole seconds (never rounding up, so a printed expiry is never later than the
/// real one).
pub(crate) fn whole_seconds(ts: jiff::Timestamp) -> jiff::Timestamp {
    let round = jiff::TimestampRound::new()
        .smallest(jiff::Unit::Second)
        .mode(jiff::RoundMode::Trunc);
    ts.round(round).unwrap_or(ts)
}

/// `n` random ASCII letters and digits.
pub(crate) fn random_alnum(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// An id shaped like Tailscale's stable ids: a type letter, 10 random characters, `CNTRL`.
pub(crate) fn random_id(prefix: &str) -> String {
    format!("{prefix}{}CNTRL", random_alnum(10))
}
