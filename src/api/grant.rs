//! `AccessGrant`: one just-in-time grant of access to a tailnet: time-boxed (a `duration`), or
//! standing (none) where the policy allows it. The lifecycle is in [`crate::grants`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::LocalRef;

/// A request for access for one Tailscale user: time-boxed, or standing (no `duration`) where
/// the policy allows it. The API server keeps its core fields immutable; the chart's
/// ValidatingAdmissionPolicy checks `requestedBy` and `approval` against the requesting
/// Kubernetes identity.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "tailkeeper.io",
    version = "v1alpha1",
    kind = "AccessGrant",
    namespaced,
    status = "AccessGrantStatus",
    shortname = "ag",
    category = "tailkeeper",
    printcolumn = r#"{"name":"User","type":"string","jsonPath":".spec.user"}"#,
    printcolumn = r#"{"name":"Access","type":"string","jsonPath":".spec.access"}"#,
    printcolumn = r#"{"name":"Duration","type":"string","description":"How long access lasts once active; none for a standing grant","jsonPath":".spec.duration"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","description":"When access ends (UTC); none for a standing grant, which lasts until removed","jsonPath":".status.expiresAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(oldSelf.requestedBy) || (has(self.requestedBy) && self.requestedBy == oldSelf.requestedBy)").message("requestedBy is immutable once set"))]
#[x_kube(validation = Rule::new("has(oldSelf.requestedBy) || !has(self.requestedBy)").message("requestedBy can only be set when the grant is created (that is when the API server proves it): create a new AccessGrant"))]
#[x_kube(validation = Rule::new("has(self.duration) == has(oldSelf.duration)").message("a grant cannot gain or lose its duration (a grant without one is standing): create a new AccessGrant"))]
#[x_kube(validation = Rule::new("!has(oldSelf.approval) || (has(self.approval) && self.approval == oldSelf.approval)").message("approval is immutable once set"))]
pub struct AccessGrantSpec {
    /// The AccessPolicy (same namespace) that lists what may be granted. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("policyRef is immutable"))]
    pub policy_ref: LocalRef,

    /// The Tailscale login name receiving access, for example `alice@example.com`. Immutable.
    #[schemars(length(min = 3, max = 320))]
    #[x_kube(validation = Rule::new("self.matches('^[^@\\\\s]+@[^@\\\\s]+$')").message("user must be a Tailscale login name such as alice@example.com or alice@github"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("user is immutable: create a new AccessGrant"))]
    pub user: String,

    /// The access granted: exactly one of its fields. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("access is immutable: create a new AccessGrant"))]
    pub access: GrantAccess,

    /// How long the access lasts once active, for example `2h` (positive, at most 2160h).
    /// Omitted: a standing grant, which lasts until it is deleted or its person is offboarded,
    /// and only where the policy's item allows it (`terms.standing`). Immutable, and cannot be
    /// added or removed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 32),
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
    )]
    #[x_kube(validation = Rule::new("!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || (duration(self) > duration('0s') && duration(self) <= duration('2160h'))").message("duration must be positive and at most 2160h (90 days)"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("duration is immutable: create a new AccessGrant"))]
    pub duration: Option<String>,

    /// Why the access is needed (kept as evidence for access reviews). Immutable: an approver
    /// judges it.
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"\S"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("reason is immutable: an approver judged it; create a new AccessGrant"))]
    pub reason: String,

    /// The Kubernetes user who requested the grant. Must be the creator's own identity, set
    /// when the grant is created. A ServiceAccount the policy lists in
    /// `grantable.gitOpsRequesters` needs no `approval`: the review happened in the pull request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub requested_by: Option<String>,

    /// An approver's decision, set by an approver listed in the AccessPolicy (never the
    /// requester): an approval, or a denial (`decision: Denied`), proven alike by the cluster.
    /// Immutable once set: a grant is decided once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
}

/// The access a grant carries: exactly one field is set.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.group), has(self.role), has(self.rule), has(self.sshRule), has(self.postureAttribute)].filter(x, x).size() == 1").message("set exactly one of access.group, access.role, access.rule, access.sshRule or access.postureAttribute"))]
pub struct GrantAccess {
    /// Membership of a policy-file group listed as grantable, for example `group:prod-db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.startsWith('group:') && size(self) > 6 && !self.contains('@')").message("access.group must be a policy-file group such as group:prod (SCIM groups with @ cannot be edited)"))]
    pub group: Option<String>,
    /// A Tailscale role listed as grantable, for example `admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<super::TailscaleRole>,
    /// The name of a network rule template of the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub rule: Option<String>,
    /// The name of an SSH rule template of the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub ssh_rule: Option<String>,
    /// The name of a posture attribute template of the policy: the attribute is set on each of
    /// the user's devices with Tailscale's own expiry, so access ends on time even if the
    /// operator is down (a standing grant's has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub posture_attribute: Option<String>,
}

/// An approver's decision on a grant: an approval or a denial, both proven by the cluster in the
/// same way (who decides, through which group, about which grant).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// The approver who decided (approved or denied): their own Kubernetes user name.
    #[schemars(length(min = 1, max = 253))]
    pub approved_by: String,
    /// `Approved` (the default) lets the grant activate; `Denied` ends it as Denied (reason
    /// `DeniedByApprover`) before it ever does. A decision counts only on a grant not yet
    /// active: to end an Active grant, delete it.
    #[serde(default)]
    pub decision: Decision,
    /// The UID of the grant decided (`metadata.uid`): a decision covers exactly the object
    /// that was reviewed, never another created later under the same name. Required.
    #[serde(default, rename = "grantUID", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub grant_uid: Option<String>,
    /// The approver group the decision is given through, when the approver is not listed by
    /// name in the policy's `approvers.users`: the API server checks that the approver is in it
    /// as they decide, and Tailkeeper that it is still an approver group of this access (and,
    /// when the directory lists the approver's Kubernetes groups, one of them) when it acts on
    /// the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub group: Option<String>,
    /// An optional comment (for a denial: why, shown in the grant's status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub comment: Option<String>,
}

/// What an approver decided about a grant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Decision {
    /// The grant may activate.
    #[default]
    Approved,
    /// The grant ends as Denied and never activates.
    Denied,
}

impl Decision {
    /// The decision as a past-tense verb, for messages: `approved`, `denied`.
    pub fn verb(self) -> &'static str {
        match self {
            Decision::Approved => "approved",
            Decision::Denied => "denied",
        }
    }

    /// The decision as a noun, for messages: `approval`, `denial`.
    pub fn noun(self) -> &'static str {
        match self {
            Decision::Approved => "approval",
            Decision::Denied => "denial",
        }
    }
}

/// The lifecycle phase of a grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum GrantPhase {
    Pending,
    AwaitingApproval,
    Active,
    Expired,
    Revoked,
    Denied,
    Failed,
}

/// Observed state of an AccessGrant.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessGrantStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// kstatus conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<GrantPhase>,
    /// A human explanation of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the access was applied to Tailscale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<Time>,
    /// When the access lapses (activation plus duration); absent for a standing grant, which has
    /// no expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// When the access was taken away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Time>,
    /// Exactly what was changed in Tailscale, so it can be undone exactly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied: Vec<AppliedChange>,
}

/// One change made in Tailscale on behalf of a grant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppliedChange {
    /// What kind of change.
    pub kind: ChangeKind,
    /// What was changed: a group name, a policy-file section (`grants`, `acls`, `ssh`), a user
    /// ID, or a device ID.
    pub target: String,
    /// What was set: the member's login, the policy-file entry as JSON, the granted role, or the
    /// attribute key and value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value before the change, where one existed (for example the previous role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// Whether Tailkeeper added this access (false when it was already present and must be kept).
    pub owned: bool,
}

/// Kinds of change a grant makes in Tailscale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ChangeKind {
    /// A member added to a policy-file group.
    GroupMembership,
    /// A Tailscale role change.
    Role,
    /// A `grants` or `acls` entry.
    Rule,
    /// An `ssh` entry.
    SshRule,
    /// A device posture attribute.
    PostureAttribute,
}
