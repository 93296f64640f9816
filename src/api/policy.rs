//! `AccessPolicy`: the critical-system rules for one integration — the people directory, which
//! organisational roles may hold which Tailscale roles, exemptions, and what is grantable just in
//! time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::LocalRef;
use crate::compliance::{Exemption, Person, RoleRule};

fn default_max_affected_percent() -> i32 {
    10
}
fn default_true() -> bool {
    true
}
fn default_evaluation_interval() -> String {
    "10m".to_string()
}

/// Compliance rules for one tailnet: Tailkeeper evaluates the four checks (`UserIdentified`,
/// `OffboardedAccessRemoved`, `AccessControlConfigured`, `UserAccessValid`) whenever the policy,
/// its directory ConfigMaps or the integration's inventory change, and writes them to status.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "tailkeeper.io",
    version = "v1alpha1",
    kind = "AccessPolicy",
    namespaced,
    status = "AccessPolicyStatus",
    shortname = "ap",
    category = "tailkeeper",
    printcolumn = r#"{"name":"Integration","type":"string","jsonPath":".spec.integrationRef.name"}"#,
    printcolumn = r#"{"name":"Checks","type":"string","description":"Checks passing","jsonPath":".status.checksPassing"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.enforcement.mode"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicySpec {
    /// The TailscaleIntegration (same namespace) whose tailnet this policy governs. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("integrationRef is immutable: create a new AccessPolicy for another integration"))]
    pub integration_ref: LocalRef,

    /// The people directory: who is who, their organisational role and employment status.
    #[serde(default)]
    pub directory: DirectorySpec,

    /// Which organisational roles may hold which Tailscale roles. The `AccessControlConfigured`
    /// check fails while this is empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<RoleRule>,

    /// Accounts identified without a directory entry (break-glass accounts, service accounts),
    /// each with a reason. An exemption never excuses an offboarded person.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exemptions: Vec<Exemption>,

    /// What may be granted just in time with an AccessGrant.
    #[serde(default)]
    pub grantable: Grantable,

    /// What Tailkeeper may do about failing checks (default: only report).
    #[serde(default)]
    pub enforcement: Enforcement,

    /// How often the checks are re-evaluated even when nothing changed (between 30s and 24h;
    /// default `10m`). Changes to the policy, its ConfigMaps and the inventory trigger an
    /// evaluation at once.
    #[serde(default = "default_evaluation_interval")]
    #[schemars(
        length(max = 32),
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
    )]
    #[x_kube(validation = Rule::new("!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || (duration(self) >= duration('30s') && duration(self) <= duration('24h'))").message("evaluationInterval must be between 30s and 24h"))]
    pub evaluation_interval: String,

    /// How long grants of this policy that ended (Expired, Revoked, Denied, Failed) are kept as
    /// a record before they are deleted, for example `720h`. Unset keeps them until deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 32),
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
    )]
    #[x_kube(validation = Rule::new("!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || (duration(self) >= duration('1s'))").message("grantRetention must be at least 1s"))]
    pub grant_retention: Option<String>,

    /// How long the evidence of this policy's access reviews is safe from deletion once a
    /// campaign ends (default `8760h`, 365 days). Evidence records belong to no object, so
    /// deleting the AccessReview leaves them; until the period ends the chart's admission
    /// policy refuses to delete them, for everyone; afterwards they stay until deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 32),
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
    )]
    #[x_kube(validation = Rule::new("!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || (duration(self) >= duration('1s'))").message("evidenceRetention must be at least 1s"))]
    pub evidence_retention: Option<String>,

    /// Where people hear about this policy's grants (at most 10 receivers): approvers of grants
    /// awaiting approval, requesters of decisions and of access ending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    #[x_kube(validation = Rule::new("self.all(n, self.exists_one(m, m.name == n.name))").message("notification names must be unique in the policy"))]
    pub notifications: Vec<super::Notification>,
}

/// The people directory: inline entries and/or ConfigMaps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectorySpec {
    /// People listed inline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub people: Vec<Person>,

    /// ConfigMaps (same namespace) holding people as CSV, JSON or YAML.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_maps: Vec<ConfigMapSource>,
}

/// A ConfigMap that holds part of the directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapSource {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key to read. When empty, every key ending in `.csv`, `.json`, `.yaml` or `.yml` is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The format of the key's content; inferred from the key's extension when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DirectoryFileFormat>,
}

/// Formats a directory ConfigMap may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DirectoryFileFormat {
    /// Comma-separated values with a header row (`loginName`, `displayName`, `orgRole`, `status`).
    #[serde(rename = "CSV")]
    Csv,
    /// A JSON array of people (or `{"people": [...]}`).
    #[serde(rename = "JSON")]
    Json,
    /// A YAML list of people (or `people: [...]`).
    #[serde(rename = "YAML")]
    Yaml,
}

/// What Tailkeeper does about failing checks.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Enforcement {
    /// `Audit` (default) only reports (status.enforcement.pending counts what `Enforce` would
    /// change). `Enforce` suspends the accounts of offboarded people and lowers roles that a
    /// person's organisational role does not allow, to the least privileged role it does allow.
    /// Accounts the directory does not know, shared users, exempt accounts, roles covered by an
    /// active grant and the owner are never touched.
    #[serde(default)]
    pub mode: EnforcementMode,
    /// Refuse to act when one evaluation would change more people than this share of the
    /// members (percent, 0-100, default 10; rounded down, but at least one person unless 0): a
    /// broken directory must never lock out the tailnet.
    #[serde(default = "default_max_affected_percent")]
    #[schemars(range(min = 0, max = 100))]
    pub max_affected_percent: i32,
    /// Refuse to act when one evaluation would change more than this many accounts above
    /// member (0-100, default 2): suspending or lowering admins is where a wrong directory
    /// hurts most.
    #[serde(default = "default_max_privileged")]
    #[schemars(range(min = 0, max = 100))]
    pub max_privileged_per_evaluation: i32,
    /// Refuse to act when the people changed in the last 24 hours plus this evaluation's would
    /// exceed this many (0-100, default 20): repeated small steps cannot add up to a large
    /// change. Counted in people, for the whole policy: enforcement
    /// (`status.enforcement.actions`) and every access review of it (their
    /// `status.recentRevocations`).
    #[serde(default = "default_max_changes_per_day")]
    #[schemars(range(min = 0, max = 100))]
    pub max_changes_per24_hours: i32,
}

fn default_max_privileged() -> i32 {
    2
}

fn default_max_changes_per_day() -> i32 {
    20
}

impl Default for Enforcement {
    fn default() -> Self {
        Self {
            mode: EnforcementMode::Audit,
            max_affected_percent: default_max_affected_percent(),
            max_privileged_per_evaluation: default_max_privileged(),
            max_changes_per24_hours: default_max_changes_per_day(),
        }
    }
}

/// Enforcement mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum EnforcementMode {
    /// Report only.
    #[default]
    Audit,
    /// Act on failing checks, within the blast-radius limit.
    Enforce,
}

/// What may be granted just in time.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grantable {
    /// ServiceAccounts (`system:serviceaccount:<namespace>:<name>`) that may request grants
    /// under this policy. A ServiceAccount is whoever can mint its token, so grants requested
    /// by any other ServiceAccount are Denied. People request as themselves and need no entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    #[x_kube(validation = Rule::new("self.all(u, u.matches('^system:serviceaccount:[^:]+:[^:]+$'))").message("serviceAccountRequesters must be ServiceAccount user names such as system:serviceaccount:ci:deployer"))]
    pub service_account_requesters: Vec<String>,
    /// ServiceAccounts (`system:serviceaccount:<namespace>:<name>`) of GitOps tools (Argo CD,
    /// Flux) that apply grants merged to a repository. A grant they request counts as approved
    /// without `spec.approval`: the review happened in the pull request, so whoever may merge to
    /// that repository approves. They need no entry in `serviceAccountRequesters`. Counts only
    /// while the cluster proves requesters (the chart's admission policies), like any approval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 253)))]
    #[x_kube(validation = Rule::new("self.all(u, u.matches('^system:serviceaccount:[^:]+:[^:]+$'))").message("gitOpsRequesters must be ServiceAccount user names such as system:serviceaccount:argocd:argocd-application-controller"))]
    pub git_ops_requesters: Vec<String>,
    /// Policy-file groups a grant may add its user to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub groups: Vec<GrantableGroup>,
    /// Tailscale roles a grant may raise its user to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub roles: Vec<GrantableRole>,
    /// Network rule templates (`grants` entries whose `src` is the user).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub rules: Vec<RuleTemplate>,
    /// SSH rule templates (`ssh` entries whose `src` is the user).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub ssh_rules: Vec<SshRuleTemplate>,
    /// Device posture attributes set on the user's devices with Tailscale's own expiry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub posture_attributes: Vec<PostureAttributeTemplate>,
}

/// A device posture attribute a grant sets on each of the user's devices, with Tailscale's own
/// expiry at the grant's end (fail-closed: access ends on time even if the operator is down;
/// none while a standing grant holds it).
/// Policy-file postures such as `custom:jit-prod == true` then decide what it unlocks.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostureAttributeTemplate {
    /// The template's name, referenced by grants.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// The attribute key; custom attributes start with `custom:`.
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new("self.startsWith('custom:') && size(self) > 7").message("key must be a custom posture attribute such as custom:jit-prod"))]
    pub key: String,
    /// The value to set (a string; `true` is typical).
    #[serde(default = "default_attribute_value")]
    #[schemars(length(max = 256))]
    pub value: String,
    /// Terms of the grant.
    pub terms: GrantTerms,
}

fn default_attribute_value() -> String {
    "true".to_string()
}

/// Who may approve grants of an item.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approvers {
    /// Kubernetes user names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub users: Vec<String>,
    /// Kubernetes groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub groups: Vec<String>,
}

/// The terms on which an item is granted.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantTerms {
    /// The longest duration a grant may ask for (for example `8h`).
    #[schemars(
        length(max = 32),
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
    )]
    #[x_kube(validation = Rule::new("!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || (duration(self) > duration('0s') && duration(self) <= duration('2160h'))").message("maxDuration must be positive and at most 2160h (90 days)"))]
    pub max_duration: String,
    /// Whether a grant needs an approval before it becomes active (default true).
    #[serde(default = "default_true")]
    pub approval_required: bool,
    /// Who may approve.
    #[serde(default)]
    pub approvers: Approvers,
    /// Grants of this item may omit `duration` and last until removed: until the grant is
    /// deleted, its person is offboarded in (or gone from) the directory, or this policy no
    /// longer lets the item stand (default false). They are requested and approved like any
    /// other.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub standing: bool,
}

/// A grantable policy-file group.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantableGroup {
    /// The group, for example `group:prod-db`.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.startsWith('group:') && size(self) > 6 && !self.contains('@')").message("group must be a policy-file group such as group:prod (SCIM groups with @ cannot be edited)"))]
    pub name: String,
    /// Terms of the grant.
    pub terms: GrantTerms,
}

/// A grantable Tailscale role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantableRole {
    /// The Tailscale role.
    pub role: TailscaleRole,
    /// Terms of the grant.
    pub terms: GrantTerms,
}

/// Tailscale user roles a grant may confer (`owner` cannot be granted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TailscaleRole {
    Admin,
    ItAdmin,
    NetworkAdmin,
    BillingAdmin,
    Auditor,
    Member,
}

/// A network rule template: a `grants` entry with `src` set to the user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleTemplate {
    /// The template's name, referenced by grants.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Destinations (`tag:prod`, `group:x`, hosts, IPs, `*`).
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 253)))]
    pub dst: Vec<String>,
    /// Protocols and ports, for example `tcp:5432` or `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 64)))]
    pub ip: Vec<String>,
    /// Terms of the grant.
    pub terms: GrantTerms,
}

/// An SSH rule template: an `ssh` entry with `src` set to the user.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshRuleTemplate {
    /// The template's name, referenced by grants.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// `accept` or `check`.
    pub action: SshAction,
    /// Destinations: tags or `autogroup:self` (never `*`).
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 253)))]
    #[x_kube(validation = Rule::new("self.all(d, d != '*')").message("ssh destinations must be tags or autogroup:self, never *"))]
    pub dst: Vec<String>,
    /// Host users the person may log in as (`root`, `autogroup:nonroot`, ...).
    #[schemars(length(min = 1, max = 32), inner(length(min = 1, max = 64)))]
    pub users: Vec<String>,
    /// Terms of the grant.
    pub terms: GrantTerms,
}

/// Action of an SSH rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SshAction {
    Accept,
    Check,
}

/// Observed state of an AccessPolicy.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// kstatus conditions: `Ready`, `Reconciling`, `Stalled`, and `Compliant`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The four compliance checks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub checks: Vec<CheckStatus>,

    /// Checks passing out of the four, for example `3/4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks_passing: Option<String>,

    /// Shared users (invited from other tailnets), reported apart from members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_users: Vec<String>,

    /// What the directory held at the last evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<DirectoryStatus>,

    /// What enforcement did, or (in `Audit` mode) would do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<EnforcementStatus>,

    /// Who holds what: a bounded summary of the entitlements inventory; the whole inventory is
    /// in the ConfigMaps listed (`tailkeeper access` reads them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entitlements: Option<EntitlementsStatus>,
}

/// The entitlements inventory at the last evaluation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntitlementsStatus {
    /// Why there is no current inventory (for example, the credential may not read the policy
    /// file), or which part is missing (posture attributes it may not read); absent when the
    /// inventory is current and whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Tailscale users in the inventory.
    #[serde(default)]
    pub users: i64,
    /// Roles, groups and rules.
    #[serde(default)]
    pub entitlements: i64,
    /// Holdings: the sum over entitlements of their holders.
    #[serde(default)]
    pub holdings: i64,
    /// Users above `member` (at most 20; see `privilegedCount`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub privileged_users: Vec<PrivilegedUser>,
    /// How many users are above `member`.
    #[serde(default)]
    pub privileged_count: i64,
    /// The most widely held groups and rules (at most 20), most holders first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub most_held: Vec<HeldEntitlement>,
    /// The ConfigMaps (this namespace) holding the whole inventory as gzipped JSON shards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_maps: Vec<String>,
    /// SHA-256 of the inventory published, to tell versions apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// When the published inventory last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Time>,
}

/// A user above `member`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivilegedUser {
    pub login_name: String,
    pub role: String,
}

/// An entitlement and how many hold it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeldEntitlement {
    /// The stable id (`group:prod`, `grant:3f2a9c0d41be`, ...).
    pub id: String,
    pub description: String,
    pub holders: i64,
}

/// Enforcement at the last evaluation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnforcementStatus {
    /// Changes the failing checks call for: made in `Enforce` mode, only reported in `Audit`.
    pub pending: i64,
    /// How many of them change an account above member (against
    /// `maxPrivilegedPerEvaluation`).
    #[serde(default)]
    pub privileged_pending: i64,
    /// People the policy changed in the 24 hours before this evaluation, by enforcement and
    /// its access reviews (against `maxChangesPer24Hours`).
    #[serde(default)]
    pub changes_in_last24_hours: i64,
    /// Why the changes were refused (which limit), when they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Changes made in Tailscale, most recent first (at most 100).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<EnforcementAction>,
}

/// One change enforcement made in Tailscale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnforcementAction {
    /// The Tailscale login name.
    pub login_name: String,
    /// `Suspended`, `RoleLowered` or `Deprovisioned`.
    pub action: String,
    /// What changed, for example `admin -> member`.
    pub detail: String,
    /// When.
    pub at: Time,
    /// For `Deprovisioned`: each entry removed from the policy file, with its exact text, so a
    /// person can put it back (at most 100).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<RemovedEntry>,
}

/// An entry removed from the policy file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemovedEntry {
    /// Where it was, for example `groups["group:prod"]`, `grants[2].src` or `ssh[0]` (a whole
    /// rule whose only source was the person).
    pub location: String,
    /// The exact text removed.
    pub text: String,
}

/// One compliance check's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckStatus {
    /// `UserIdentified`, `OffboardedAccessRemoved`, `AccessControlConfigured` or `UserAccessValid`.
    pub name: String,
    /// `Pass`, `Fail`, or `Unknown` when it could not be evaluated.
    pub result: CheckResultValue,
    /// A human summary.
    pub message: String,
    /// The users failing the check (at most 100; see `failingCount`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing_users: Vec<FailingUser>,
    /// How many users fail the check in all.
    pub failing_count: i64,
    /// When the check was evaluated.
    pub evaluated_at: Time,
}

/// The result of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CheckResultValue {
    Pass,
    Fail,
    Unknown,
}

/// A user that fails a check, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailingUser {
    /// The Tailscale login name.
    pub login_name: String,
    /// Why the user fails the check.
    pub reason: String,
}

/// A summary of the directory as loaded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryStatus {
    /// People in the directory.
    pub people: i64,
    /// Sources read (inline entries count as one).
    pub sources: i64,
    /// SHA-256 of the people as read (to tell a change made while the operator was away).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The last change to who is who, person by person, and who wrote it as far as the
    /// cluster says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<DirectoryChange>,
}

/// A change to the people directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryChange {
    /// When the operator read it.
    pub at: Time,
    /// What changed for which people (at most 20 spelled out).
    pub summary: String,
    /// The latest writer of the directory's sources, from their managedFields (the field
    /// manager, its operation and when), when the cluster records one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_by: Option<String>,
}
