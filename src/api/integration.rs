//! `TailscaleIntegration`: one tailnet connection and its credentials.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Tailscale's public API endpoint.
pub const DEFAULT_API_URL: &str = "https://api.tailscale.com";

fn default_tailnet() -> String {
    "-".to_string()
}
fn default_api_url() -> String {
    DEFAULT_API_URL.to_string()
}
fn default_sync_interval() -> String {
    "5m".to_string()
}
fn default_expiry_warning() -> String {
    "336h".to_string()
}

/// A connection to one Tailscale tailnet. Tailkeeper syncs the tailnet's users on `syncInterval`
/// and reports the inventory and the credential's health in status.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "tailkeeper.io",
    version = "v1alpha1",
    kind = "TailscaleIntegration",
    namespaced,
    status = "TailscaleIntegrationStatus",
    shortname = "tsi",
    category = "tailkeeper",
    printcolumn = r#"{"name":"Tailnet","type":"string","jsonPath":".spec.tailnet"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Users","type":"integer","jsonPath":".status.inventory.users"}"#,
    printcolumn = r#"{"name":"Credential","type":"string","jsonPath":".status.credentials.kind"}"#,
    printcolumn = r#"{"name":"Last Sync","type":"date","jsonPath":".status.lastSyncTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TailscaleIntegrationSpec {
    /// The tailnet: `-` (the credential's own tailnet, the default), the organization name, or
    /// the tailnet ID. Immutable: create another TailscaleIntegration for another tailnet.
    #[serde(default = "default_tailnet")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("tailnet is immutable: create a new TailscaleIntegration for another tailnet"))]
    pub tailnet: String,

    /// Base URL of the Tailscale API. Defaults to Tailscale's; plain `http` is accepted only for a
    /// loopback address (a local simulator), so credentials never cross a network in clear text.
    /// Immutable. The operator sends credentials only to hosts it was started to trust
    /// (`--allow-api-host`, default `api.tailscale.com`).
    #[serde(default = "default_api_url")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("apiUrl is immutable: create another TailscaleIntegration"))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getHostname() != '' && !self.contains('@') && (url(self).getScheme() == 'https' || (url(self).getScheme() == 'http' && url(self).getHostname() in ['127.0.0.1', 'localhost', '::1']))").message("apiUrl must be an https URL with a host and no credentials (plain http only for 127.0.0.1, localhost or ::1)"))]
    pub api_url: String,

    /// Where the credentials are: a Secret in the same namespace.
    pub credentials: CredentialsSpec,

    /// How often the inventory is synced from Tailscale, as a duration between 10s and 24h
    /// (for example `5m`, the default).
    #[serde(default = "default_sync_interval")]
    #[schemars(
        length(max = 32),
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
    )]
    #[x_kube(validation = Rule::new("!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || (duration(self) >= duration('10s') && duration(self) <= duration('24h'))").message("syncInterval must be between 10s and 24h"))]
    pub sync_interval: String,

    /// How long before an API access token expires the `CredentialsExpiring` warning is raised
    /// (default `336h`, 14 days). Ignored for OAuth clients, which do not expire.
    #[serde(default = "default_expiry_warning")]
    #[schemars(
        length(max = 32),
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
    )]
    #[x_kube(validation = Rule::new("!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || (duration(self) >= duration('1h') && duration(self) <= duration('2160h'))").message("credentialExpiryWarning must be between 1h and 2160h (90 days)"))]
    pub credential_expiry_warning: String,

    /// Receive Tailscale's webhooks for this tailnet, so a change in Tailscale (a user added,
    /// suspended, a role or the policy file changed) is synced at once rather than at the next
    /// `syncInterval`. Needs the operator's webhook endpoint (chart value `webhook.enabled`);
    /// point a Tailscale webhook at `<endpoint>/tailscale/<namespace>/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,

    /// What each sync reads beyond users and the policy file, for the entitlements inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<InventorySpec>,
}

/// Optional parts of the entitlements inventory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventorySpec {
    /// Read every device's custom posture attributes at each sync, so they appear as
    /// entitlements (`posture:custom:<key>=<value>`) held by the devices' owners. Costs one
    /// request per device (16 at a time) and needs the `devices:posture_attributes` scope.
    #[serde(default)]
    pub posture_attributes: bool,
}

/// Tailscale webhooks for an integration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    /// The key of the credentials Secret that holds the webhook's signing secret (default
    /// `webhookSecret`). To rotate without losing deliveries, put the new and the previous
    /// secret in it, one per line; deliveries signed with either are accepted.
    #[serde(default = "default_webhook_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_key: String,
}

fn default_webhook_secret_key() -> String {
    "webhookSecret".to_string()
}

/// The kind of credential a Secret holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CredentialKind {
    /// An API access token (`tskey-api-...`) under the Secret key `apiToken`. It expires after
    /// 1 to 90 days; Tailkeeper warns ahead of that.
    #[serde(rename = "APIToken")]
    ApiToken,
    /// An OAuth client under the Secret keys `clientId` and `clientSecret` (preferred: it never
    /// expires; Tailkeeper fetches and refreshes hour-long access tokens).
    #[serde(rename = "OAuthClient")]
    OAuthClient,
}

impl std::fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CredentialKind::ApiToken => "APIToken",
            CredentialKind::OAuthClient => "OAuthClient",
        })
    }
}

/// Credentials for the Tailscale API, read from a Secret in the same namespace.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type == 'OAuthClient' || !has(self.oauthScopes)").message("oauthScopes apply only to credentials of type OAuthClient"))]
pub struct CredentialsSpec {
    /// Name of the Secret. For `APIToken` it holds key `apiToken`; for `OAuthClient` keys
    /// `clientId` and `clientSecret`. The Secret must be bound to this integration when it is
    /// created: annotation `tailkeeper.io/integrations` lists the integrations (of its namespace)
    /// that may use it, and `tailkeeper.io/api-url` the API it goes to (default
    /// `https://api.tailscale.com`). Otherwise its credentials are used nowhere
    /// (`CredentialsNotBound`); the chart's admission policies keep the binding from changing.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,

    /// `APIToken` or `OAuthClient`.
    #[serde(rename = "type")]
    pub kind: CredentialKind,

    /// Scopes to request for OAuth access tokens (space-joined). Empty means all of the client's
    /// scopes. Compliance needs `users:read` (and `users` for enforcement); grants need
    /// `policy_file`, `devices:core:read` and `devices:posture_attributes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_scopes: Option<Vec<String>>,
}

/// Set this annotation on a TailscaleIntegration (any new value, e.g. the time) to sync it now:
/// `kubectl annotate tsi corp tailkeeper.io/sync-requested-at="$(date -u +%FT%TZ)" --overwrite`.
/// `status.lastSyncRequest` takes its value once that sync has happened (or failed).
pub const SYNC_REQUEST_ANNOTATION: &str = "tailkeeper.io/sync-requested-at";

/// Observed state of a TailscaleIntegration.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TailscaleIntegrationStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// kstatus conditions: `Ready`, `Reconciling`, `Stalled`, and the warning `CredentialsExpiring`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// When the inventory was last synced successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,

    /// The value of the `tailkeeper.io/sync-requested-at` annotation when the latest sync was
    /// attempted: equal to the annotation once the sync it asked for has happened (or failed;
    /// the conditions say which).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_request: Option<String>,

    /// How long the last successful sync took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_duration_ms: Option<i64>,

    /// Counts from the last successful sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<InventoryStatus>,

    /// The credential in use (never its value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialStatus>,
}

/// Counts of the tailnet's users and devices.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryStatus {
    /// All users, members and shared.
    pub users: i64,
    /// Users of type `member`.
    pub members: i64,
    /// Users of type `shared` (from other tailnets).
    pub shared: i64,
    /// Devices in the tailnet.
    pub devices: i64,
    /// Users by Tailscale role.
    #[serde(default)]
    pub by_role: BTreeMap<String, i64>,
    /// Users by Tailscale status (active, idle, suspended, needs-approval, ...).
    #[serde(default)]
    pub by_status: BTreeMap<String, i64>,
    /// A digest of the users' identities, roles and statuses; changes whenever any of them do,
    /// which makes dependent AccessPolicies re-evaluate.
    pub revision: String,
}

/// What is known of the credential in use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialStatus {
    /// `APIToken` or `OAuthClient`.
    pub kind: CredentialKind,
    /// The API token's key ID (not secret) when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// When the API token expires. OAuth clients do not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
}
