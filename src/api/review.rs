//! `AccessReview` (a campaign: who holds what, looked at by someone accountable) and
//! `AccessReviewDecision` (a reviewer's decision on some of its items, whose author the API
//! server proves). The campaign logic is in [`crate::reviews`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{LocalRef, TailscaleRole};

/// A user access review over one AccessPolicy's tailnet: at the start the operator snapshots
/// who holds the access in `scope` from the entitlements inventory and assigns each holding
/// to its reviewers; reviewers decide `Keep` or `Revoke` with AccessReviewDecisions; revoked
/// access is removed from Tailscale; at the end the campaign leaves an immutable evidence
/// record. The API server keeps the spec immutable once the campaign has started.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "tailkeeper.io",
    version = "v1alpha1",
    kind = "AccessReview",
    namespaced,
    status = "AccessReviewStatus",
    shortname = "arv",
    category = "tailkeeper",
    printcolumn = r#"{"name":"Policy","type":"string","jsonPath":".spec.policyRef.name"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Items","type":"integer","jsonPath":".status.counts.items"}"#,
    printcolumn = r#"{"name":"Undecided","type":"integer","jsonPath":".status.counts.undecided"}"#,
    printcolumn = r#"{"name":"Revoked","type":"integer","jsonPath":".status.counts.revoked"}"#,
    printcolumn = r#"{"name":"Due","type":"string","description":"When undecided items get spec.undecided (UTC)","jsonPath":".status.dueAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AccessReviewSpec {
    /// The AccessPolicy (same namespace) whose tailnet, inventory and directory are reviewed.
    #[x_kube(validation = Rule::new("self == oldSelf").message("policyRef is immutable: create a new AccessReview"))]
    pub policy_ref: LocalRef,
    /// What is reviewed.
    #[x_kube(validation = Rule::new("self == oldSelf").message("scope is immutable: create a new AccessReview"))]
    pub scope: ReviewScope,
    /// Who reviews: each item is assigned to every listed user, to every listed group, and
    /// (with `managers`) to the manager of the item's person in the directory.
    #[x_kube(validation = Rule::new("self == oldSelf").message("reviewers are immutable: create a new AccessReview"))]
    pub reviewers: Reviewers,
    /// How long the campaign is open, from its start (a Go duration such as `336h`, up to
    /// 2160h). At the due time, items nobody decided get `undecided`.
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    #[x_kube(validation = Rule::new("!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || (duration(self) > duration('0s') && duration(self) <= duration('2160h'))").message("duration must be positive and at most 2160h (90 days)"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("duration is immutable: create a new AccessReview"))]
    pub duration: String,
    /// What happens at the due time to items no reviewer decided: `Keep` (default) leaves the
    /// access and records it as kept by nobody; `Revoke` removes it.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("undecided is immutable: create a new AccessReview"))]
    pub undecided: UndecidedAction,
    /// Start the next campaign by itself every `everyDays` days after this one started; this
    /// campaign stays as its record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<Recurrence>,
    /// What the campaign is for, shown to reviewers and in the evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000))]
    pub description: Option<String>,
}

/// What a campaign covers. Several selections add up; at least one must be set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.roles) && size(self.roles) > 0) || (has(self.groups) && size(self.groups) > 0) || (has(self.destinations) && size(self.destinations) > 0) || (has(self.privileged) && self.privileged) || (has(self.everything) && self.everything)").message("scope selects nothing: set roles, groups, destinations, privileged or everything"))]
pub struct ReviewScope {
    /// Tailscale roles: each user holding one is an item (`role:admin`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub roles: Vec<TailscaleRole>,
    /// Policy-file groups (`group:prod`): each member is an item.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub groups: Vec<String>,
    /// Destinations (`tag:prod`, `10.0.0.0/8`, `tag:db:5432`): every network or SSH rule with
    /// one of them among its `dst` (an ACL `dst` with a port matches its host) and each user
    /// who can use it are items.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub destinations: Vec<String>,
    /// All privileged access: every role above `member` and every SSH rule.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// Every entitlement of every user.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub everything: bool,
}

/// Who reviews. At least one of them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.users) && size(self.users) > 0) || (has(self.groups) && size(self.groups) > 0) || (has(self.managers) && self.managers)").message("nobody reviews: set reviewers.users, reviewers.groups or reviewers.managers"))]
pub struct Reviewers {
    /// Kubernetes user names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub users: Vec<String>,
    /// Kubernetes groups; a member decides through one by naming it in its decision's `group`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub groups: Vec<String>,
    /// Each item also goes to the manager of its person (the directory's `manager`), deciding
    /// as any of the manager's `kubernetesUsers`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub managers: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum UndecidedAction {
    #[default]
    Keep,
    Revoke,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recurrence {
    /// Days between the starts of consecutive campaigns; longer than the campaign's duration.
    #[schemars(range(min = 1, max = 366))]
    pub every_days: i32,
}

/// Where a campaign stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReviewPhase {
    /// Reviewers are deciding.
    Open,
    /// Every item was decided by a reviewer before the due time.
    Completed,
    /// The due time passed with items undecided: they got `spec.undecided`.
    Overdue,
}

impl ReviewPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewPhase::Open => "Open",
            ReviewPhase::Completed => "Completed",
            ReviewPhase::Overdue => "Overdue",
        }
    }

    /// Completed and Overdue campaigns are over: nothing changes them any more.
    pub fn is_over(self) -> bool {
        self != ReviewPhase::Open
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessReviewStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ReviewPhase>,
    /// What is happening, in a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Time>,
    /// When the inventory the items come from was built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<ReviewCounts>,
    /// Each reviewer's share (the 50 with most items).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviewers: Vec<ReviewerProgress>,
    /// The items, as gzipped JSON in these AccessReviewRecords (owned by the review).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items_records: Vec<String>,
    /// SHA-256 of the items' JSON: a record whose content does not match was not written by
    /// the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_digest: Option<String>,
    /// The decisions taken into account (the latest 50), and what was refused of each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<DecisionRecord>,
    /// The immutable evidence record, once the campaign is over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceRef>,
    /// Notifications sent (`opened`, `reminder`, `overdue`), so that none is sent twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notified: Vec<String>,
    /// The campaign this one follows (recurrence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// The campaign that followed this one (recurrence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// The logins whose access this campaign took away in the last 24 hours (one entry per
    /// login, at most 100): with the policy's enforcement actions and its other campaigns',
    /// what `maxChangesPer24Hours` counts, in people.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub recent_revocations: Vec<RecentChange>,
}

/// A login changed at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecentChange {
    pub login_name: String,
    pub at: Time,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReviewCounts {
    pub items: i64,
    /// Decided by a reviewer.
    pub decided: i64,
    pub undecided: i64,
    pub kept: i64,
    pub revoked: i64,
    /// Revocations carried out in Tailscale (or found already gone).
    pub applied: i64,
    /// Revocations waiting (enforcement limits, a failure to retry).
    pub pending: i64,
    /// Revocations that cannot be carried out by Tailkeeper (held through an autogroup,
    /// wildcard or another installation): the item says why.
    pub not_applicable: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReviewerProgress {
    /// `user:<name>`, `group:<name>`.
    pub reviewer: String,
    pub assigned: i64,
    pub decided: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord {
    pub name: String,
    pub reviewer: String,
    pub accepted: i64,
    pub refused: i64,
    /// Why items were refused (the first reasons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceRef {
    /// Immutable AccessReviewRecords holding the evidence as gzipped JSON.
    pub records: Vec<String>,
    /// SHA-256 of the record's JSON.
    pub digest: String,
    pub created_at: Time,
}

/// A reviewer's decision on items of an AccessReview. Created by the reviewer (the chart's
/// admission policy proves `reviewer` is the creating identity and that it reviews this
/// campaign) and never changed afterwards. The operator takes each item it may decide:
/// assigned to the reviewer and not the reviewer's own access.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "tailkeeper.io",
    version = "v1alpha1",
    kind = "AccessReviewDecision",
    namespaced,
    status = "AccessReviewDecisionStatus",
    shortname = "ard",
    category = "tailkeeper",
    printcolumn = r#"{"name":"Review","type":"string","jsonPath":".spec.reviewRef.name"}"#,
    printcolumn = r#"{"name":"Reviewer","type":"string","jsonPath":".spec.reviewer"}"#,
    printcolumn = r#"{"name":"Decision","type":"string","jsonPath":".spec.decision"}"#,
    printcolumn = r#"{"name":"Accepted","type":"integer","jsonPath":".status.accepted"}"#,
    printcolumn = r#"{"name":"Refused","type":"integer","jsonPath":".status.refused"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("a decision is immutable: create another AccessReviewDecision"))]
pub struct AccessReviewDecisionSpec {
    /// The campaign, by name and UID (a campaign recreated under the same name is another).
    pub review_ref: ReviewRef,
    /// Your own Kubernetes user name (the admission policy checks it).
    #[schemars(length(min = 1, max = 253))]
    pub reviewer: String,
    /// The reviewer group you decide through, when you are not listed by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub decision: ReviewDecision,
    /// Why (kept in the evidence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000))]
    pub comment: Option<String>,
    /// The item ids decided (from the campaign's items; `kubectl tailkeeper review` lists
    /// yours).
    #[schemars(length(min = 1, max = 1000))]
    pub items: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReviewRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 64))]
    pub uid: String,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum ReviewDecision {
    Keep,
    Revoke,
}

impl ReviewDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewDecision::Keep => "Keep",
            ReviewDecision::Revoke => "Revoke",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessReviewDecisionStatus {
    /// Items taken.
    pub accepted: i64,
    /// Items refused.
    pub refused: i64,
    /// Why items were refused, item by item (the first 50).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<Refusal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<Time>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    pub item: String,
    pub reason: String,
}

/// A part of an access review's record, written only by the operator and owned by its
/// AccessReview: the campaign's items (rewritten as decisions come) or its evidence
/// (immutable). Gzipped JSON cut in parts that each fit an object; `digest` (SHA-256 of the
/// whole JSON) ties the parts of one version together and to the review's status. A kind of
/// its own, rather than ConfigMaps, so that reviewers and auditors may read review records
/// without reading every ConfigMap of the namespace (the people directory among them).
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "tailkeeper.io",
    version = "v1alpha1",
    kind = "AccessReviewRecord",
    namespaced,
    shortname = "arr",
    category = "tailkeeper",
    printcolumn = r#"{"name":"Review","type":"string","jsonPath":".spec.review"}"#,
    printcolumn = r#"{"name":"Part","type":"string","jsonPath":".spec.part"}"#,
    printcolumn = r#"{"name":"Shard","type":"string","jsonPath":".spec.shard"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("oldSelf.part != 'Evidence' || self == oldSelf").message("evidence records are immutable"))]
pub struct AccessReviewRecordSpec {
    /// The AccessReview it belongs to.
    pub review: String,
    pub part: RecordPart,
    /// `index/count`.
    pub shard: String,
    /// SHA-256 of the whole record's JSON (every shard of one version has the same).
    pub digest: String,
    /// This shard's bytes of the gzipped JSON (base64 in YAML and JSON).
    #[schemars(with = "String")]
    pub data: k8s_openapi::ByteString,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RecordPart {
    /// The campaign's items.
    Items,
    /// The evidence of a campaign that is over.
    Evidence,
}
