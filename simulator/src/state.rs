//! The simulated tailnet's mutable state and the operations on it.
//!
//! Everything lives behind one mutex in [`crate::Simulator`]; each API request takes the lock
//! once and performs its checks and its change under it, so concurrent writers observe the
//! same atomicity as against Tailscale (e.g. two policy writes with the same `If-Match`: exactly
//! one wins). Nothing here awaits.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::Value;

use crate::faults::FaultQueue;
use crate::model::{random_alnum, random_id, timestamp_rfc3339, whole_seconds, SimDevice, SimUser};
use crate::policy::{self, Directory};
use crate::webhooks::WebhookState;
use crate::SimConfig;

/// A stored API access token.
#[derive(Debug, Clone)]
pub(crate) struct ApiKeyRecord {
    pub id: String,
    pub key: String,
    pub created: Timestamp,
    pub expires: Timestamp,
}

/// A stored OAuth client.
#[derive(Debug, Clone)]
pub(crate) struct OAuthClientRecord {
    pub id: String,
    pub secret: String,
    pub scopes: Vec<String>,
    pub created: Timestamp,
}

/// One entry of the configuration audit log, as `GET .../logging/configuration` returns it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigLogEntry {
    #[serde(rename = "eventGroupID")]
    pub event_group_id: String,
    /// `ADMIN_CONSOLE` for a person in the console, `API` for a credential.
    pub origin: String,
    pub actor: LogActor,
    /// `UPDATE` for a policy file change.
    #[serde(rename = "type")]
    pub action: String,
    pub target: LogTarget,
    /// The policy file before and after.
    pub old: String,
    pub new: String,
    pub event_time: String,
}

/// Who made a logged change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogActor {
    pub id: String,
    /// `USER`, `API_KEY` or `OAUTH_CLIENT`.
    #[serde(rename = "type")]
    pub kind: String,
    pub login_name: String,
    pub display_name: String,
}

/// What a logged change was made to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogTarget {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub property: String,
}

/// An access token issued by `POST /oauth/token`.
#[derive(Debug, Clone)]
pub(crate) struct AccessToken {
    /// The OAuth client it was issued to.
    pub client_id: String,
    pub scopes: Vec<String>,
    /// Monotonic, so short TTLs in tests are exact regardless of wall-clock changes.
    pub expires_at: Instant,
}

/// A user invite that has not been accepted yet.
#[derive(Debug, Clone)]
pub(crate) struct UserInviteRecord {
    /// Digits, as Tailscale's invite ids are.
    pub id: String,
    pub role: String,
    /// Empty when the invite was not sent by email (only its URL was handed out).
    pub email: String,
    /// The API key that created it; the inviter is that key's user.
    pub inviter_key_id: String,
    /// The secret part of the invite URL.
    pub code: String,
    pub last_email_sent_at: Option<Timestamp>,
}

/// A device posture attribute.
#[derive(Debug, Clone)]
pub(crate) struct Attribute {
    pub value: Value,
    pub expiry: Option<Timestamp>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub config: SimConfig,
    pub users: Vec<SimUser>,
    pub devices: Vec<SimDevice>,
    /// Device id to its posture attributes.
    pub attributes: HashMap<String, BTreeMap<String, Attribute>>,
    pub api_keys: Vec<ApiKeyRecord>,
    pub oauth_clients: Vec<OAuthClientRecord>,
    pub tokens: HashMap<String, AccessToken>,
    pub policy_text: String,
    /// Pending user invites, oldest first.
    pub user_invites: Vec<UserInviteRecord>,
    /// The next user invite id.
    pub next_invite_id: u64,
    /// A human edit to apply at the start of the next policy write (deterministic 412s).
    pub pending_edit: Option<String>,
    pub calls: BTreeMap<String, u64>,
    pub latency: Duration,
    pub faults: FaultQueue,
    /// Webhook endpoints, the last snapshot and the delivery log.
    pub webhooks: WebhookState,
    /// The configuration audit log, oldest first.
    pub config_log: Vec<ConfigLogEntry>,
}

impl State {
    pub fn new(config: SimConfig) -> Self {
        State {
            config,
            users: Vec::new(),
            devices: Vec::new(),
            attributes: HashMap::new(),
            api_keys: Vec::new(),
            oauth_clients: Vec::new(),
            tokens: HashMap::new(),
            policy_text: policy::DEFAULT_POLICY.to_string(),
            user_invites: Vec::new(),
            next_invite_id: 1001,
            pending_edit: None,
            calls: BTreeMap::new(),
            latency: Duration::ZERO,
            faults: FaultQueue::default(),
            webhooks: WebhookState::default(),
            config_log: Vec::new(),
        }
    }

    /// Replace the policy file on behalf of `actor`, logging the change.
    pub fn set_policy_logged(&mut self, text: String, origin: &str, actor: LogActor) {
        if text == self.policy_text {
            return;
        }
        let old = std::mem::replace(&mut self.policy_text, text);
        self.config_log.push(ConfigLogEntry {
            event_group_id: random_id("e"),
            origin: origin.to_string(),
            actor,
            action: "UPDATE".to_string(),
            target: LogTarget {
                id: self.config.tailnet_id.clone(),
                name: self.config.tailnet_name.clone(),
                kind: "TAILNET".to_string(),
                property: "ACL".to_string(),
            },
            old,
            new: self.policy_text.clone(),
            event_time: Timestamp::now().to_string(),
        });
    }

    /// Whether a `{tailnet}` path segment names this tailnet.
    pub fn is_our_tailnet(&self, tailnet: &str) -> bool {
        tailnet == "-" || tailnet == self.config.tailnet_name || tailnet == self.config.tailnet_id
    }

    // ---- users and devices ----

    /// Insert a user, replacing any with the same login (logins are unique in a tailnet).
    pub fn upsert_user(&mut self, mut user: SimUser) -> String {
        user.normalize();
        let id = user.id.clone();
        match self
            .users
            .iter_mut()
            .find(|u| u.login_name == user.login_name)
        {
            Some(existing) => *existing = user,
            None => self.users.push(user),
        }
        id
    }

    pub fn user_mut(&mut self, id: &str) -> Option<&mut SimUser> {
        self.users.iter_mut().find(|u| u.id == id)
    }

    /// Remove a user with their devices, as deleting a Tailscale user does.
    pub fn remove_user_where(&mut self, pred: impl Fn(&SimUser) -> bool) -> bool {
        let Some(index) = self.users.iter().position(pred) else {
            return false;
        };
        let user = self.users.remove(index);
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.devices)
            .into_iter()
            .partition(|d| d.user == user.login_name);
        self.devices = kept;
        for device in gone {
            self.attributes.remove(&device.id);
        }
        true
    }

    /// Insert a device (replacing one with the same id) and count it on its owner.
    pub fn upsert_device(&mut self, mut device: SimDevice) -> String {
        if device.id.is_empty() {
            device.id = random_id("n");
        }
        if device.name.is_empty() {
            let tailnet = &self.config.tailnet_name;
            device.name = format!("{}.{tailnet}", device.id.to_ascii_lowercase());
        }
        let id = device.id.clone();
        if let Some(existing) = self.devices.iter_mut().find(|d| d.id == id) {
            *existing = device;
        } else {
            if let Some(owner) = self
                .users
                .iter_mut()
                .find(|u| !device.user.is_empty() && u.login_name == device.user)
            {
                owner.device_count += 1;
            }
            self.devices.push(device);
        }
        id
    }

    pub fn has_device(&self, id: &str) -> bool {
        self.devices.iter().any(|d| d.id == id)
    }

    /// A device's live attributes; expired ones are dropped here, i.e. expiry is server-side.
    pub fn live_attributes(&mut self, device_id: &str) -> &mut BTreeMap<String, Attribute> {
        let now = Timestamp::now();
        let attrs = self.attributes.entry(device_id.to_string()).or_default();
        attrs.retain(|_, a| a.expiry.is_none_or(|e| e > now));
        attrs
    }

    /// What policy tests know about users: login, role, member or shared.
    pub fn directory(&self) -> Directory {
        let mut directory = Directory::new();
        for user in &self.users {
            directory.insert(&user.login_name, &user.role, &user.user_type);
        }
        directory
    }

    // ---- credentials ----

    pub fn add_api_key(&mut self, id: String, key: String, expires_in: Duration) -> ApiKeyRecord {
        // Whole seconds, so the printed expiry is exactly the one enforced.
        let created = whole_seconds(Timestamp::now());
        let expires = created
            .checked_add(
                jiff::SignedDuration::try_from(expires_in).unwrap_or(jiff::SignedDuration::MAX),
            )
            .unwrap_or(Timestamp::MAX);
        let record = ApiKeyRecord {
            id,
            key,
            created,
            expires,
        };
        self.api_keys.retain(|k| k.id != record.id);
        self.api_keys.push(record.clone());
        record
    }

    pub fn add_oauth_client(&mut self, id: String, secret: String, scopes: Vec<String>) {
        self.oauth_clients.retain(|c| c.id != id);
        self.oauth_clients.push(OAuthClientRecord {
            id,
            secret,
            scopes,
            created: Timestamp::now(),
        });
    }

    // ---- user invites ----

    /// Record a new invite; an invite with an email counts as emailed now.
    pub fn add_user_invite(
        &mut self,
        role: String,
        email: String,
        inviter_key_id: String,
    ) -> UserInviteRecord {
        let id = self.next_invite_id.to_string();
        self.next_invite_id += 1;
        let last_email_sent_at = (!email.is_empty()).then(|| whole_seconds(Timestamp::now()));
        let record = UserInviteRecord {
            id,
            role,
            email,
            inviter_key_id,
            code: random_alnum(24),
            last_email_sent_at,
        };
        self.user_invites.push(record.clone());
        record
    }

    pub fn user_invite(&self, id: &str) -> Option<&UserInviteRecord> {
        self.user_invites.iter().find(|i| i.id == id)
    }

    /// Remove invite `id`; `None` if there was none.
    pub fn take_user_invite(&mut self, id: &str) -> Option<UserInviteRecord> {
        let index = self.user_invites.iter().position(|i| i.id == id)?;
        Some(self.user_invites.remove(index))
    }

    /// Whether an invite for `email` may be accepted without its URL: the address is in the
    /// tailnet's own domain, so signing in with it is enough (Tailscale then omits the URL).
    pub fn in_tailnet_domain(&self, email: &str) -> bool {
        email
            .rsplit_once('@')
            .is_some_and(|(_, domain)| domain.eq_ignore_ascii_case(&self.config.tailnet_name))
    }

    // ---- policy file ----

    pub fn policy_etag(&self) -> String {
        policy::etag(&self.policy_text)
    }

    /// Does an `If-Match` value (quotes optional) match the stored file?
    pub fn if_match_ok(&self, if_match: &str) -> bool {
        let wanted = if_match.trim();
        let wanted = wanted.strip_prefix("W/").unwrap_or(wanted);
        let wanted = wanted.trim_matches('"');
        match wanted {
            "*" => true,
            // `ts-default` names the untouched default file, not whatever is stored.
            "ts-default" => self.policy_text == policy::DEFAULT_POLICY,
            etag => etag.eq_ignore_ascii_case(&self.policy_etag()),
        }
    }
}

/// Render a timestamp the way the API does.
pub(crate) fn rfc3339(ts: Timestamp) -> String {
    timestamp_rfc3339(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State::new(SimConfig::default())
    }

    #[test]
    fn if_match_forms() {
        let mut st = state();
        let etag = st.policy_etag();
        assert!(st.if_match_ok("\"ts-default\""));
        assert!(st.if_match_ok(&format!("\"{etag}\"")));
        assert!(st.if_match_ok(&etag));
        assert!(st.if_match_ok("*"));
        assert!(!st.if_match_ok("\"0000\""));
        st.policy_text = "{}".to_string();
        assert!(!st.if_match_ok("ts-default"));
    }

    #[test]
    fn deleting_a_user_removes_their_devices() {
        let mut st = state();
        st.upsert_user(SimUser::member("a@example.com", "member", "active"));
        st.upsert_device(SimDevice {
            user: "a@example.com".to_string(),
            ..SimDevice::default()
        });
        assert_eq!(st.users[0].device_count, 1);
        assert!(st.remove_user_where(|u| u.login_name == "a@example.com"));
        assert!(st.devices.is_empty());
        assert!(!st.remove_user_where(|u| u.login_name == "a@example.com"));
    }

    #[test]
    fn upsert_user_replaces_by_login() {
        let mut st = state();
        st.upsert_user(SimUser::member("a@example.com", "member", "active"));
        st.upsert_user(SimUser::member("a@example.com", "admin", "active"));
        assert_eq!(st.users.len(), 1);
        assert_eq!(st.users[0].role, "admin");
        assert!(!st.users[0].id.is_empty());
    }
}
