//! Access reviews (campaigns), pure: which holdings a campaign covers and who reviews each
//! ([`campaign::snapshot`]), which decisions count ([`campaign::decide`]), what revoking an
//! item takes ([`campaign::revocation`]), where a campaign stands ([`campaign::phase`]) and
//! its evidence record ([`evidence`]) and how long that is kept ([`retention`]). The controller loads, calls these and writes.

pub mod campaign;
pub mod evidence;
pub mod retention;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::api::{ReviewDecision, UndecidedAction};
use crate::entitlements::{AddedBy, Kind, Via};

/// One holding under review: a user's hold on one entitlement, who reviews it and what
/// became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// `i` and 12 hex digits of the SHA-256 of user, entitlement and how it is held: stable
    /// for the campaign, what decisions name.
    pub id: String,
    /// The Tailscale login.
    pub user: String,
    /// The directory person's name, when the directory knows the login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// The entitlement's id (`role:admin`, `group:prod`, `grant:…`).
    pub entitlement: String,
    pub kind: Kind,
    pub description: String,
    pub via: Via,
    pub added_by: AddedBy,
    /// Who may decide it: `user:<Kubernetes user>` and `group:<Kubernetes group>`.
    pub reviewers: Vec<String>,
    /// The manager's login, when the item went to the person's manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decided>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Applied>,
}

/// A decision on an item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decided {
    pub decision: ReviewDecision,
    /// The reviewer's Kubernetes user name, or empty when nobody decided by the due time and
    /// the campaign's `undecided` applied.
    pub by: String,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The AccessReviewDecision it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
}

impl Decided {
    /// Decided by the campaign's `undecided` at the due time, not by a reviewer.
    pub fn by_default(action: UndecidedAction, at: Timestamp) -> Self {
        Decided {
            decision: match action {
                UndecidedAction::Keep => ReviewDecision::Keep,
                UndecidedAction::Revoke => ReviewDecision::Revoke,
            },
            by: String::new(),
            at,
            comment: Some("undecided at the due time".into()),
            record: None,
        }
    }

    pub fn by_reviewer(&self) -> bool {
        !self.by.is_empty()
    }
}

/// What carrying out a `Revoke` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    pub outcome: Outcome,
    pub at: Timestamp,
    /// What was removed from the policy file, exactly (location and text), or the role
    /// change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<RemovedText>,
    /// In words: what was done, or why nothing could be.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemovedText {
    pub location: String,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Removed from Tailscale.
    Removed,
    /// Nothing was left to remove (someone removed it first).
    AlreadyGone,
    /// Tailkeeper cannot remove it (autogroup, wildcard, another installation's entry): a
    /// person must.
    NotApplicable,
}

/// A check's result at the moment a campaign ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckRecord {
    pub name: String,
    /// `Pass`, `Fail` or `Unknown`.
    pub result: String,
    pub message: String,
    pub failing: i64,
}

/// A grant of the policy that was active at some time during the campaign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantRecord {
    pub name: String,
    pub user: String,
    /// `group:prod`, `role:admin`, `rule:<name>`…
    pub access: String,
    pub phase: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
}

/// The immutable record a campaign leaves when it is over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    pub review: String,
    pub namespace: String,
    pub uid: String,
    pub policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The scope as written (`spec.scope`), in words.
    pub scope: String,
    /// The reviewers as written (`spec.reviewers`), in words.
    pub reviewers: String,
    /// `Keep` or `Revoke`.
    pub undecided: String,
    pub snapshot_at: Timestamp,
    pub started_at: Timestamp,
    pub due_at: Timestamp,
    pub ended_at: Timestamp,
    /// `Completed` or `Overdue`.
    pub phase: String,
    pub items: Vec<Item>,
    /// The policy's four checks when the campaign ended.
    pub checks: Vec<CheckRecord>,
    /// The policy's grants active at some time between the start and the end.
    pub grants: Vec<GrantRecord>,
}
