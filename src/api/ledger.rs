//! `GrantLedger`: what Tailkeeper changed in one tailnet on behalf of grants, and until when.
//!
//! One per TailscaleIntegration and Tailscale user (named `<integration>.<user id>`, labelled
//! `tailkeeper.io/integration`), written only by the operator, before every change it makes in
//! Tailscale (write-ahead), and deleted once it records nothing. It lives apart from the grants so that no
//! deletion (a grant force-deleted past its finalizer, its policy) stops a revocation: the
//! operator ends every hold at its expiry, or at once when its grant is gone, from this record
//! alone. It also keeps what a person had set before a grant (a role, a posture attribute) so
//! that it comes back exactly.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The operator's record of the access it holds in a tailnet. Not for people to edit: the chart
/// grants write access to the operator alone.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tailkeeper.io",
    version = "v1alpha1",
    kind = "GrantLedger",
    namespaced,
    category = "tailkeeper",
    printcolumn = r#"{"name":"Integration","type":"string","jsonPath":".spec.integration"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GrantLedgerSpec {
    /// The TailscaleIntegration whose tailnet this ledger records (one user of it).
    pub integration: String,
    /// The integration's credential Secret while holds exist (the chart's admission policy
    /// refuses to delete it then, so revocation can always reach Tailscale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// The integration's spec as JSON (no credential in it), so that holds still end after the
    /// integration is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// The integration's UID: its entries in the policy file carry it in their markers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_uid: Option<String>,
    /// Access held for grants: one entry per grant in effect (or being applied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<Hold>,
    /// Per Tailscale user with a role grant: the role before the first grant and the role
    /// Tailkeeper last set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<RoleRecord>,
    /// Per device and posture attribute Tailkeeper set: what a person had set before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<AttributeRecord>,
}

/// Access held in Tailscale for one grant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hold {
    /// The grant's name (same namespace as the ledger).
    pub grant: String,
    /// The grant's UID: a grant deleted and recreated under the same name is another grant.
    pub grant_uid: String,
    /// The Tailscale user id of the beneficiary (stable across login renames).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_id: String,
    /// The beneficiary's login name.
    pub login: String,
    /// When the access ends; absent for a standing grant, whose access ends when the grant ends
    /// (deleted, or its person offboarded) or is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// A role held (raised to at least this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A person changed the role while this grant was active: it is left as they set it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub superseded: bool,
    /// Policy-file entries held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<HeldEntries>,
    /// A posture attribute held on the user's devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posture: Option<HeldPosture>,
}

/// Policy-file entries as recorded (rules as compact JSON text).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeldEntries {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<GroupMember>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acls: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh: Vec<String>,
}

/// A (group, login) membership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GroupMember {
    pub group: String,
    pub login: String,
}

/// A posture attribute held on devices.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeldPosture {
    pub key: String,
    pub value: String,
    /// The devices on which Tailkeeper set it (not those where a person already had it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
}

/// The role history of one Tailscale user while role grants overlap.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleRecord {
    pub user_id: String,
    pub login: String,
    /// The role before the first grant (or as a person last set it): restored at the end.
    pub baseline: String,
    /// The role Tailkeeper last set (or found); another role means a person changed it.
    pub set: String,
    /// While a change is being applied: the role before it (a crash in between is not taken
    /// for a person's change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

/// One posture attribute on one device that Tailkeeper set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttributeRecord {
    pub device_id: String,
    pub key: String,
    /// The value Tailkeeper set.
    pub set: String,
    /// What a person had set before (JSON text), restored at the end; none: it was absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub human_value: Option<String>,
    /// The expiry the person's value had, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub human_expiry: Option<String>,
}
