//! The grant lifecycle as one pure decision: from the grant, its policy (if it still exists),
//! whether the ledger holds access for it, who the directory says its person is, and the clock,
//! the next step. The grant reconciler loads these, calls [`decide`], carries the step out and
//! writes status once.
//!
//! Ending access never waits for the policy or the directory: a hold in the ledger is ended at
//! expiry, when the grant is deleted, or when the grant ended for any other reason, whatever
//! else exists. Access is for people: an Active grant, timed or standing, ends as soon as the
//! directory marks its person offboarded or no longer lists them. A standing grant (no
//! duration) has no expiry: it lasts until one of those ends it ([`Revocation`] lists every
//! cause), until its policy no longer lets its item stand, or until its policy is gone, since
//! then nothing could tell that its person left.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::{resolve, ApprovedBy, PlannedAccess, Resolution};
use crate::api::{AccessGrantSpec, AccessPolicySpec, Decision, GrantPhase};
use crate::compliance::{Directory, EmploymentStatus};
use crate::duration;

/// What the reconciler knows about a grant.
#[derive(Clone, Debug)]
pub struct GrantState<'a> {
    /// The grant's UID: an approval must name it.
    pub uid: &'a str,
    pub spec: &'a AccessGrantSpec,
    pub phase: Option<GrantPhase>,
    /// When access ends (`status.expiresAt`); `None` for a standing grant (and before activation).
    pub expires_at: Option<Timestamp>,
    /// When the grant reached a final phase (for retention).
    pub ended_at: Option<Timestamp>,
    pub deleting: bool,
    /// The ledger holds access for this grant (by UID).
    pub held: bool,
    /// Who the beneficiary is in the policy's directory.
    pub beneficiary: Beneficiary,
    /// Whether the cluster proves requesters and approvals in the grant's namespace (else why
    /// not).
    pub approvals: Result<(), String>,
    /// The approval (or denial) was written before the admission policies that prove approvals
    /// existed.
    pub approved_unproven: bool,
    /// The grant (and so its `requestedBy`, which is set only at creation) was created before
    /// the admission policies that prove requesters existed.
    pub requested_unproven: bool,
    /// The approval (or denial) was written before the grant's AccessPolicy (as it is now) was
    /// created: nothing judged the approver against it.
    pub approved_before_policy: bool,
    /// The approval (or denial), or the grant of a GitOps requester, was made before an
    /// exposure of the policy's trust boundary closed ([`crate::boundary`]): someone else could
    /// have shaped what it was judged by.
    pub decided_while_exposed: bool,
    /// Who the approving identity (the approver, or a GitOps requester) is in the policy's
    /// directory.
    pub approver: Approver,
    /// A person removed or changed in Tailscale what the grant had added (its policy-file
    /// entries): Tailkeeper does not put them back; the grant ends.
    pub removed_in_tailscale: bool,
}

impl<'a> GrantState<'a> {
    /// A grant that just ended in `phase` at `at`, holding nothing (to ask about retention).
    pub fn ended(spec: &'a AccessGrantSpec, phase: GrantPhase, at: Timestamp) -> Self {
        GrantState {
            uid: "",
            spec,
            phase: Some(phase),
            expires_at: None,
            ended_at: Some(at),
            deleting: false,
            held: false,
            beneficiary: Beneficiary::Person,
            approvals: Ok(()),
            approved_unproven: false,
            requested_unproven: false,
            approved_before_policy: false,
            decided_while_exposed: false,
            approver: Approver::NotInDirectory,
            removed_in_tailscale: false,
        }
    }
}

/// The beneficiary of a grant as the policy's people directory knows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Beneficiary {
    /// A person who works here.
    Person,
    /// A person marked offboarded.
    Offboarded,
    /// No person in the directory has this login (exempt accounts included).
    Unknown,
    /// The directory cannot be read (the message says why).
    Unavailable(String),
}

impl Beneficiary {
    /// Who the person with Tailscale login `login` is in `directory`.
    pub fn of(directory: &Directory, login: &str) -> Beneficiary {
        match directory.lookup(login) {
            None => Beneficiary::Unknown,
            Some(p) if p.status == EmploymentStatus::Offboarded => Beneficiary::Offboarded,
            Some(_) => Beneficiary::Person,
        }
    }

    /// Whether an Active grant for this beneficiary must end: the directory says they left or
    /// are not a person it knows. An unreadable directory ends nothing (and grants nothing new).
    pub fn ends_access(&self) -> bool {
        matches!(self, Beneficiary::Offboarded | Beneficiary::Unknown)
    }
}

/// The approving identity as the policy's people directory knows them (through
/// `kubernetesUsers`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Approver {
    /// No approving identity, or it was not looked up (the grant is past deciding).
    #[default]
    NotInDirectory,
    /// An identity no person of the directory has: its word counts for nobody.
    Unmapped,
    /// The same person as the beneficiary, under another identity.
    Beneficiary,
    /// A person marked offboarded.
    Offboarded,
    /// A person who works here, with the Kubernetes groups the directory lists for them
    /// (empty: the directory does not say).
    Person { groups: Vec<String> },
}

impl Approver {
    /// Who the Kubernetes identity `by` is in `directory`, for a grant to login `login`.
    pub fn of(directory: &Directory, by: &str, login: &str) -> Approver {
        if directory.same_person(by, login) {
            return Approver::Beneficiary;
        }
        match directory.person_of_user(by) {
            None => Approver::Unmapped,
            Some(p) if p.status == EmploymentStatus::Offboarded => Approver::Offboarded,
            Some(p) => Approver::Person {
                groups: p.kubernetes_groups.clone(),
            },
        }
    }
}

/// Why a grant is where it is: the `Ready` condition's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Active,
    AwaitingApproval,
    Denied,
    /// An approver the policy lists denied the grant (`approval.decision: Denied`), proven as
    /// an approval is.
    DeniedByApprover,
    /// A grant without a duration for an item whose terms do not say `standing`.
    StandingNotAllowed,
    PolicyNotFound,
    DirectoryUnavailable,
    ApprovalUnverified,
    Expired,
    Revoked,
    /// Access ended because the directory marks the person offboarded.
    PersonOffboarded,
    /// Access ended because no person in the directory has the grant's login any more.
    PersonNotInDirectory,
    /// Access ended because a person removed or changed in Tailscale what the grant added.
    RemovedInTailscale,
    Activating,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Active => "Active",
            Reason::AwaitingApproval => "AwaitingApproval",
            Reason::Denied => "Denied",
            Reason::DeniedByApprover => "DeniedByApprover",
            Reason::StandingNotAllowed => "StandingNotAllowed",
            Reason::PolicyNotFound => "PolicyNotFound",
            Reason::DirectoryUnavailable => "DirectoryUnavailable",
            Reason::ApprovalUnverified => "ApprovalUnverified",
            Reason::Expired => "Expired",
            Reason::Revoked => "Revoked",
            Reason::PersonOffboarded => "PersonOffboarded",
            Reason::PersonNotInDirectory => "PersonNotInDirectory",
            Reason::RemovedInTailscale => "RemovedInTailscale",
            Reason::Activating => "Activating",
        }
    }
}

/// Why access is taken away. Every cause that can end a grant is one variant (a revocation by
/// an access review will be one more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revocation {
    /// The grant's duration is over.
    Expired,
    /// The grant is being deleted.
    Deleted,
    /// The directory marks the grant's person offboarded.
    PersonOffboarded,
    /// No person in the directory has the grant's login any more.
    PersonNotInDirectory,
    /// A standing grant whose AccessPolicy no longer exists: nothing could tell that its person
    /// left.
    PolicyGone,
    /// A standing grant whose item the policy no longer lets stand (`terms.standing` unset, or
    /// the item no longer grantable).
    StandingWithdrawn,
    /// Active, but nothing proves what is in force (no hold in the ledger, or a timed grant
    /// with no recorded expiry): ended rather than trusted.
    Unproven,
    /// An activation interrupted earlier that the policy no longer allows (or whose policy is
    /// gone): undone.
    Undone,
    /// The grant had already ended; access still recorded for it is ended too.
    AlreadyEnded,
    /// A person removed or changed in Tailscale what the grant added: Tailkeeper never fights
    /// a person, so the grant ends rather than putting it back.
    RemovedInTailscale,
}

impl Revocation {
    /// The `Ready` condition's reason once the grant has ended this way.
    pub fn reason(self) -> Reason {
        match self {
            Revocation::Expired => Reason::Expired,
            Revocation::PersonOffboarded => Reason::PersonOffboarded,
            Revocation::PersonNotInDirectory => Reason::PersonNotInDirectory,
            Revocation::RemovedInTailscale => Reason::RemovedInTailscale,
            Revocation::PolicyGone => Reason::PolicyNotFound,
            Revocation::StandingWithdrawn => Reason::StandingNotAllowed,
            Revocation::Deleted
            | Revocation::Unproven
            | Revocation::Undone
            | Revocation::AlreadyEnded => Reason::Revoked,
        }
    }

    /// Why, in words, for the grant's status and Event (none when the phase says it all).
    pub fn explain(self, spec: &AccessGrantSpec) -> Option<String> {
        let (user, policy) = (&spec.user, &spec.policy_ref.name);
        match self {
            Revocation::PersonOffboarded => Some(format!(
                "{user} belongs to a person marked offboarded in the directory of AccessPolicy {policy}: people who have left keep no access"
            )),
            Revocation::PersonNotInDirectory => Some(format!(
                "no person in the directory of AccessPolicy {policy} has the login {user} any more: access is for people the directory knows"
            )),
            Revocation::PolicyGone => Some(format!(
                "AccessPolicy {policy} no longer exists, and a standing grant lasts only while its policy can tell that its person still works here"
            )),
            Revocation::StandingWithdrawn => Some(format!(
                "AccessPolicy {policy} no longer allows standing access to what this grant gives (terms.standing): request a grant with a duration"
            )),
            Revocation::Unproven => Some(
                "nothing recorded proves what this grant holds or until when, so it is ended rather than trusted".to_string(),
            ),
            Revocation::RemovedInTailscale => Some(format!(
                "a person removed or changed in Tailscale what this grant added, and Tailkeeper does not put back what a person took away: request a new grant for {user} if the access is still needed"
            )),
            Revocation::Expired
            | Revocation::Deleted
            | Revocation::Undone
            | Revocation::AlreadyEnded => None,
        }
    }
}

/// The next step for a grant.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// The policy does not allow it: end as Denied, with `reason` on the `Ready` condition.
    Deny { reason: Reason, message: String },
    /// Nothing to do until something changes (an approval, the policy appearing).
    Wait {
        phase: GrantPhase,
        reason: Reason,
        message: String,
        /// Whether a person must act (Stalled) rather than the grant waiting its turn.
        stalled: bool,
    },
    /// Apply the access (again, if a crash interrupted an earlier try: every step is idempotent).
    /// `duration` is `None` for a standing grant.
    Activate {
        access: PlannedAccess,
        duration: Option<Duration>,
        approved_by: ApprovedBy,
    },
    /// Active and in force: look again at expiry (`None`: standing, no expiry).
    Hold { until: Option<Timestamp> },
    /// Take the access away; the grant ends in `phase`, because of `cause`.
    Revoke {
        phase: GrantPhase,
        cause: Revocation,
    },
    /// Ended; keep the record until then.
    Retain { until: Timestamp },
    /// Ended and kept long enough: delete the record.
    Delete,
    /// Ended, nothing held, no retention: nothing to do (also: let a deletion proceed).
    Done,
}

fn deny(message: impl Into<String>) -> Step {
    Step::Deny {
        reason: Reason::Denied,
        message: message.into(),
    }
}

fn revoke(cause: Revocation) -> Step {
    let phase = match cause {
        Revocation::Expired => GrantPhase::Expired,
        _ => GrantPhase::Revoked,
    };
    Step::Revoke { phase, cause }
}

/// Decide the next step. `policy` is `None` when the grant's AccessPolicy does not exist.
pub fn decide(grant: &GrantState, policy: Option<&AccessPolicySpec>, now: Timestamp) -> Step {
    if grant.deleting {
        // An Active grant is revoked even when the ledger seems to hold nothing (a cache behind
        // a write): ending nothing is harmless, and the record says how it ended.
        return if grant.held || grant.phase == Some(GrantPhase::Active) {
            revoke(Revocation::Deleted)
        } else {
            Step::Done
        };
    }
    match grant.phase {
        Some(GrantPhase::Active) => active(grant, policy, now),
        Some(
            phase @ (GrantPhase::Expired
            | GrantPhase::Revoked
            | GrantPhase::Denied
            | GrantPhase::Failed),
        ) => {
            if grant.held {
                return Step::Revoke {
                    phase,
                    cause: Revocation::AlreadyEnded,
                };
            }
            retention(policy, grant.ended_at, now)
        }
        None | Some(GrantPhase::Pending | GrantPhase::AwaitingApproval) => {
            let Some(policy) = policy else {
                if grant.held {
                    // Activation had begun when the policy went away: undo it.
                    return revoke(Revocation::Undone);
                }
                return Step::Wait {
                    phase: GrantPhase::Pending,
                    reason: Reason::PolicyNotFound,
                    message: format!("AccessPolicy {} does not exist", grant.spec.policy_ref.name),
                    stalled: true,
                };
            };
            match resolve(policy, grant.spec) {
                // The policy changed under an interrupted activation: undo, then deny.
                Resolution::Denied { .. } if grant.held => revoke(Revocation::Undone),
                Resolution::Denied { reason, message } => Step::Deny { reason, message },
                // Access is for people the directory knows and who still work here; a
                // directory that cannot be read grants nothing until it can.
                _ if grant.beneficiary != Beneficiary::Person => match &grant.beneficiary {
                    Beneficiary::Offboarded => deny(format!(
                        "{} belongs to a person marked offboarded in the directory of AccessPolicy {}: people who have left get no access",
                        grant.spec.user, grant.spec.policy_ref.name
                    )),
                    Beneficiary::Unavailable(why) => Step::Wait {
                        phase: GrantPhase::Pending,
                        reason: Reason::DirectoryUnavailable,
                        message: format!(
                            "the directory of AccessPolicy {} cannot be read, so {} cannot be identified: {why}",
                            grant.spec.policy_ref.name, grant.spec.user
                        ),
                        stalled: true,
                    },
                    _ => deny(format!(
                        "{} is not a person in the directory of AccessPolicy {}: add them (with this login name) before granting them access",
                        grant.spec.user, grant.spec.policy_ref.name
                    )),
                },
                Resolution::AwaitingApproval {
                    access, approvers, ..
                } => Step::Wait {
                    phase: GrantPhase::AwaitingApproval,
                    reason: Reason::AwaitingApproval,
                    message: format!(
                        "{} for {} awaits approval by {approvers}",
                        access.describe(),
                        grant.spec.user
                    ),
                    stalled: false,
                },
                Resolution::Approved { .. } | Resolution::DeniedByApprover { .. }
                    if grant
                        .spec
                        .approval
                        .as_ref()
                        .is_some_and(|a| a.grant_uid.as_deref() != Some(grant.uid)) =>
                {
                    deny(match decision(grant) {
                        Decision::Approved => format!(
                            "the approval does not name this grant (UID {}): an approval covers exactly the grant that was reviewed; approve again with spec.approval.grantUID set to it",
                            grant.uid
                        ),
                        Decision::Denied => format!(
                            "the denial does not name this grant (UID {}): a denial covers exactly the grant that was reviewed, so it does not count; {}",
                            grant.uid,
                            anew(Decision::Denied)
                        ),
                    })
                }
                Resolution::Approved {
                    access,
                    duration,
                    by,
                } => activation(grant, policy, access, duration, by),
                Resolution::DeniedByApprover { by, comment } => denial(grant, &by, comment),
            }
        }
    }
}

/// An Active grant: it ends at its expiry, when nothing proves what it holds, when the directory
/// says its person left or is unknown, and (standing) when its policy is gone; else it holds.
fn active(grant: &GrantState, policy: Option<&AccessPolicySpec>, now: Timestamp) -> Step {
    let standing = grant.spec.duration.is_none();
    match grant.expires_at {
        Some(at) if now >= at => return revoke(Revocation::Expired),
        // A timed grant must have its expiry on record; a standing grant has none.
        None if !standing => return revoke(Revocation::Unproven),
        _ => {}
    }
    if grant.removed_in_tailscale {
        return revoke(Revocation::RemovedInTailscale);
    }
    // Active without a hold (a ledger lost, or written before the ledger existed): nothing
    // proves what is in force, so end it rather than trust it.
    if !grant.held {
        return revoke(Revocation::Unproven);
    }
    match grant.beneficiary {
        Beneficiary::Offboarded => return revoke(Revocation::PersonOffboarded),
        Beneficiary::Unknown => return revoke(Revocation::PersonNotInDirectory),
        Beneficiary::Person | Beneficiary::Unavailable(_) => {}
    }
    if standing {
        // A standing grant lasts while its policy lets it stand; a timed one runs its course.
        match policy {
            None => return revoke(Revocation::PolicyGone),
            Some(p) if !super::terms_of(p, &grant.spec.access).is_some_and(|t| t.standing) => {
                return revoke(Revocation::StandingWithdrawn)
            }
            Some(_) => {}
        }
    }
    Step::Hold {
        until: grant.expires_at,
    }
}

/// The decision the grant's approver gave (an approval when there is none).
fn decision(grant: &GrantState) -> Decision {
    grant
        .spec
        .approval
        .as_ref()
        .map_or(Decision::Approved, |a| a.decision)
}

/// What to do about a decision that does not count.
fn anew(decision: Decision) -> &'static str {
    match decision {
        Decision::Approved => "request a new grant and have it approved",
        Decision::Denied => {
            "the grant cannot be decided again: request a new grant if the access is still needed"
        }
    }
}

/// The step to take instead when the word that decides a grant does not count (yet): an
/// approver's decision (approval or denial alike) or a GitOps requester's counts only if the
/// directory does not object to the person behind it (asked once the cluster proves who gave
/// it and that the directory is out of requesters' reach), given while it did. Denied for good,
/// or wait for the proof; `None` when it counts.
fn not_counted(grant: &GrantState, by: &ApprovedBy, decision: Decision) -> Option<Step> {
    if !by.needs_proof() {
        return None;
    }
    let noun = decision.noun();
    match by {
        ApprovedBy::Approver { .. } if grant.approved_before_policy => {
            return Some(deny(format!(
                "the {noun} was given before AccessPolicy {} existed, so nothing checked the approver against it; it never counts: {}",
                grant.spec.policy_ref.name,
                anew(decision)
            )));
        }
        ApprovedBy::Approver { .. } if grant.approved_unproven => {
            return Some(deny(format!(
                "the {noun} was given while the cluster could not prove who gave it (its admission policies were not in force); it never counts: {}",
                anew(decision)
            )));
        }
        ApprovedBy::Approver { .. } if grant.decided_while_exposed => {
            return Some(deny(format!(
                "the {noun} was given while the trust boundary of AccessPolicy {} was not proven (someone it should not could change what decisions read); it never counts: {}",
                grant.spec.policy_ref.name,
                anew(decision)
            )));
        }
        ApprovedBy::GitOps { requester } if grant.decided_while_exposed => {
            return Some(deny(format!(
                "the grant names {requester} as its requester but was created while the trust boundary of AccessPolicy {} was not proven (someone it should not could act as {requester}), so it is not approved in GitOps; it never counts: have the GitOps tool create a new grant",
                grant.spec.policy_ref.name
            )));
        }
        ApprovedBy::GitOps { requester } if grant.requested_unproven => {
            return Some(deny(format!(
                "the grant names {requester} as its requester but was created while the cluster could not prove who created it (its admission policies were not in force), so it is not approved in GitOps; it never counts: have the GitOps tool create a new grant"
            )));
        }
        _ => {}
    }
    if let Err(why) = &grant.approvals {
        return Some(Step::Wait {
            phase: GrantPhase::AwaitingApproval,
            reason: Reason::ApprovalUnverified,
            message: why.clone(),
            stalled: true,
        });
    }
    // Only a proven boundary lets the directory's word decide (a forged directory must not
    // deny someone else's grant either).
    approver_refused(grant, by, decision).map(deny)
}

/// A grant an approver denied: once the denial is proven as an approval would be, the grant
/// ends Denied (`DeniedByApprover`), naming the approver and their comment.
fn denial(grant: &GrantState, by: &ApprovedBy, comment: Option<String>) -> Step {
    if let Some(step) = not_counted(grant, by, Decision::Denied) {
        return step;
    }
    let who = match by {
        ApprovedBy::Approver {
            name,
            group: Some(group),
        } => format!("{name} through approver group {group}"),
        ApprovedBy::Approver { name, group: None } => name.clone(),
        other => other.identity().unwrap_or("an approver").to_string(),
    };
    let comment = match comment.as_deref().map(str::trim) {
        Some(c) if !c.is_empty() => format!(": {c}"),
        _ => " (no comment)".to_string(),
    };
    Step::Deny {
        reason: Reason::DeniedByApprover,
        message: format!(
            "denied by {who}{comment}; request a new grant if the access is still needed"
        ),
    }
}

/// The last word on a grant the policy allows (approved, or needing no approval): an approval
/// (or a GitOps requester) counts only if [`not_counted`] has nothing against it.
fn activation(
    grant: &GrantState,
    policy: &AccessPolicySpec,
    access: PlannedAccess,
    duration: Option<Duration>,
    approved_by: ApprovedBy,
) -> Step {
    if let Some(step) = not_counted(grant, &approved_by, Decision::Approved) {
        return step;
    }
    if is_exempt(policy, &grant.spec.user) && matches!(access, PlannedAccess::Role { .. }) {
        return deny(format!(
            "{} is exempt in this policy (break-glass and service accounts); grants never change an exempt account's role",
            grant.spec.user
        ));
    }
    Step::Activate {
        access,
        duration,
        approved_by,
    }
}

/// Why the directory refuses the identity whose word decides the grant, if it does.
fn approver_refused(
    grant: &GrantState,
    approved_by: &ApprovedBy,
    decision: Decision,
) -> Option<String> {
    let by = approved_by.identity()?;
    let as_what = match approved_by {
        ApprovedBy::GitOps { .. } => "requested (as the GitOps identity that stands for a review)",
        _ => decision.verb(),
    };
    let redo = match decision {
        Decision::Approved => "another approver must approve a new grant",
        Decision::Denied => anew(Decision::Denied),
    };
    match &grant.approver {
        Approver::NotInDirectory => None,
        // The GitOps identity stands for a reviewed pull request, not for a person.
        Approver::Unmapped if matches!(approved_by, ApprovedBy::GitOps { .. }) => None,
        Approver::Unmapped => Some(format!(
            "{by} {as_what} access, but no person of the policy's directory has that Kubernetes identity: only people approve or deny, and without knowing who {by} is nobody can tell they are not the beneficiary; list {by} in kubernetesUsers of their directory entry (or set the operator's identityUsernamePrefix, so people's identities follow from their logins); {redo}"
        )),
        Approver::Beneficiary => Some(format!(
            "{by} {as_what} access for themselves: the directory maps them to {}; {redo}",
            grant.spec.user
        )),
        Approver::Offboarded => Some(format!(
            "{by} belongs to a person marked offboarded in the directory: people who have left approve or deny nothing; {redo}"
        )),
        Approver::Person { groups } => match approved_by {
            ApprovedBy::Approver {
                group: Some(group), ..
            } if !groups.is_empty() && !groups.contains(group) => Some(format!(
                "{by} {as_what} through group {group}, but the directory does not list {group} among their Kubernetes groups ({}); {redo}",
                groups.join(", ")
            )),
            _ => None,
        },
    }
}

fn is_exempt(policy: &AccessPolicySpec, login: &str) -> bool {
    policy
        .exemptions
        .iter()
        .any(|e| e.login_name.eq_ignore_ascii_case(login))
}

/// Keep an ended grant as a record for the policy's retention period, if it sets one.
fn retention(policy: Option<&AccessPolicySpec>, ended: Option<Timestamp>, now: Timestamp) -> Step {
    let Some(keep) = policy
        .and_then(|p| p.grant_retention.as_deref())
        .and_then(|r| duration::parse(r).ok())
    else {
        return Step::Done;
    };
    let until =
        ended.unwrap_or(now) + SignedDuration::try_from(keep).unwrap_or(SignedDuration::MAX);
    if now >= until {
        Step::Delete
    } else {
        Step::Retain { until }
    }
}

/// The expiry of a grant activated at `now` for `length`: rounded up to a whole second, as
/// Kubernetes stores times, so the instant recorded is the one enforced and no grant is shorter
/// than approved.
pub fn expiry(now: Timestamp, length: Duration) -> Timestamp {
    let at = now + SignedDuration::try_from(length).unwrap_or(SignedDuration::MAX);
    at.round(
        jiff::TimestampRound::new()
            .smallest(jiff::Unit::Second)
            .mode(jiff::RoundMode::Ceil),
    )
    .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(retention: Option<&str>) -> AccessPolicySpec {
        serde_json::from_value(json!({
            "integrationRef": {"name": "t"},
            "exemptions": [{"loginName": "breakglass@example.com", "reason": "break-glass"}],
            "grantRetention": retention,
            "grantable": {
                "groups": [{"name": "group:prod", "terms": {"maxDuration": "1h", "approvalRequired": false}}],
                "roles": [{"role": "admin", "terms": {"maxDuration": "1h", "approvalRequired": true, "approvers": {"users": ["bob"]}}}]
            }
        }))
        .expect("policy")
    }

    fn spec(user: &str, access: serde_json::Value) -> AccessGrantSpec {
        serde_json::from_value(json!({
            "policyRef": {"name": "p"}, "user": user, "access": access,
            "duration": "30m", "reason": "incident", "requestedBy": "alice"
        }))
        .expect("spec")
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("time")
    }

    fn approval(by: &str, uid: Option<&str>, group: Option<&str>) -> Option<crate::api::Approval> {
        Some(crate::api::Approval {
            approved_by: by.into(),
            decision: crate::api::Decision::Approved,
            grant_uid: uid.map(str::to_string),
            group: group.map(str::to_string),
            comment: None,
        })
    }

    fn state(spec: &AccessGrantSpec, phase: Option<GrantPhase>) -> GrantState<'_> {
        GrantState {
            uid: "uid-1",
            spec,
            phase,
            expires_at: None,
            ended_at: None,
            deleting: false,
            held: false,
            beneficiary: Beneficiary::Person,
            approvals: Ok(()),
            approved_unproven: false,
            requested_unproven: false,
            approved_before_policy: false,
            decided_while_exposed: false,
            approver: Approver::NotInDirectory,
            removed_in_tailscale: false,
        }
    }

    #[test]
    fn a_grant_whose_entries_a_person_removed_ends_and_is_not_put_back() {
        let spec = spec("alice@example.com", json!({"group": "group:prod"}));
        let p = policy(None);
        let now = at(0);
        let mut grant = state(&spec, Some(GrantPhase::Active));
        grant.held = true;
        grant.expires_at = Some(at(1800));
        assert_eq!(
            decide(&grant, Some(&p), now),
            Step::Hold {
                until: grant.expires_at
            }
        );
        grant.removed_in_tailscale = true;
        let step = decide(&grant, Some(&p), now);
        assert_eq!(
            step,
            Step::Revoke {
                phase: GrantPhase::Revoked,
                cause: Revocation::RemovedInTailscale
            }
        );
        assert_eq!(
            Revocation::RemovedInTailscale.reason().as_str(),
            "RemovedInTailscale"
        );
        assert!(Revocation::RemovedInTailscale
            .explain(&spec)
            .is_some_and(|m| m.contains("does not put back")));
        // Past its expiry it simply expired: the person only took away what was ending anyway.
        grant.expires_at = Some(now);
        assert_eq!(
            decide(&grant, Some(&p), now),
            Step::Revoke {
                phase: GrantPhase::Expired,
                cause: Revocation::Expired
            }
        );
    }

    #[test]
    fn a_held_grant_is_revoked_at_its_expiry_instant_and_not_before() {
        let s = spec("alice@example.com", json!({"group": "group:prod"}));
        let mut g = state(&s, Some(GrantPhase::Active));
        g.expires_at = Some(at(100));
        g.held = true;
        let p = policy(None);
        assert_eq!(
            decide(&g, Some(&p), at(99)),
            Step::Hold {
                until: Some(at(100))
            }
        );
        assert_eq!(
            decide(&g, Some(&p), at(100)),
            Step::Revoke {
                phase: GrantPhase::Expired,
                cause: Revocation::Expired
            }
        );
        // The policy being gone changes nothing about ending access.
        assert_eq!(
            decide(&g, None, at(100)),
            Step::Revoke {
                phase: GrantPhase::Expired,
                cause: Revocation::Expired
            }
        );
    }

    #[test]
    fn deletion_revokes_whatever_the_phase_while_anything_is_held() {
        let s = spec("alice@example.com", json!({"group": "group:prod"}));
        for phase in [
            None,
            Some(GrantPhase::Pending),
            Some(GrantPhase::Active),
            Some(GrantPhase::Failed),
        ] {
            let mut g = state(&s, phase);
            g.deleting = true;
            g.held = true;
            assert_eq!(
                decide(&g, None, at(0)),
                Step::Revoke {
                    phase: GrantPhase::Revoked,
                    cause: Revocation::Deleted
                }
            );
            g.held = false;
            let expected = if phase == Some(GrantPhase::Active) {
                Step::Revoke {
                    phase: GrantPhase::Revoked,
                    cause: Revocation::Deleted,
                }
            } else {
                Step::Done
            };
            assert_eq!(decide(&g, None, at(0)), expected);
        }
    }

    #[test]
    fn an_active_grant_without_a_hold_is_ended_not_trusted() {
        let s = spec("alice@example.com", json!({"group": "group:prod"}));
        let mut g = state(&s, Some(GrantPhase::Active));
        g.expires_at = Some(at(100));
        assert_eq!(
            decide(&g, Some(&policy(None)), at(0)),
            Step::Revoke {
                phase: GrantPhase::Revoked,
                cause: Revocation::Unproven
            }
        );
        // A timed grant Active with no expiry on record is not trusted either.
        g.held = true;
        g.expires_at = None;
        assert_eq!(
            decide(&g, Some(&policy(None)), at(0)),
            Step::Revoke {
                phase: GrantPhase::Revoked,
                cause: Revocation::Unproven
            }
        );
    }

    #[test]
    fn an_ended_grant_still_holding_access_is_revoked_first() {
        let s = spec("alice@example.com", json!({"group": "group:prod"}));
        let mut g = state(&s, Some(GrantPhase::Failed));
        g.held = true;
        assert_eq!(
            decide(&g, Some(&policy(Some("1h"))), at(0)),
            Step::Revoke {
                phase: GrantPhase::Failed,
                cause: Revocation::AlreadyEnded
            }
        );
    }

    #[test]
    fn pending_grants_wait_for_their_policy_and_approval() {
        let s = spec("alice@example.com", json!({"role": "admin"}));
        let g = state(&s, None);
        assert!(matches!(
            decide(&g, None, at(0)),
            Step::Wait {
                reason: Reason::PolicyNotFound,
                stalled: true,
                ..
            }
        ));
        assert!(matches!(
            decide(&g, Some(&policy(None)), at(0)),
            Step::Wait {
                phase: GrantPhase::AwaitingApproval,
                stalled: false,
                ..
            }
        ));
        let ok = spec("alice@example.com", json!({"group": "group:prod"}));
        assert!(matches!(
            decide(&state(&ok, None), Some(&policy(None)), at(0)),
            Step::Activate {
                access: PlannedAccess::Member { .. },
                ..
            }
        ));
    }

    #[test]
    fn exempt_accounts_never_get_role_grants() {
        let mut s = spec("BreakGlass@example.com", json!({"role": "admin"}));
        s.approval = approval("bob", Some("uid-1"), None);
        match decide(&state(&s, None), Some(&policy(None)), at(0)) {
            Step::Deny { message, .. } => assert!(message.contains("exempt"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_policy_that_now_denies_an_interrupted_activation_undoes_it() {
        let s = spec("alice@example.com", json!({"group": "group:other"}));
        let mut g = state(&s, Some(GrantPhase::Pending));
        g.held = true;
        assert_eq!(
            decide(&g, Some(&policy(None)), at(0)),
            Step::Revoke {
                phase: GrantPhase::Revoked,
                cause: Revocation::Undone
            }
        );
    }

    #[test]
    fn grants_for_people_who_left_or_nobody_are_denied_and_an_unreadable_directory_waits() {
        let s = spec("carol@example.com", json!({"group": "group:prod"}));
        let mut g = state(&s, None);
        g.beneficiary = Beneficiary::Offboarded;
        assert!(
            matches!(decide(&g, Some(&policy(None)), at(0)), Step::Deny { message, .. } if message.contains("offboarded"))
        );
        g.beneficiary = Beneficiary::Unknown;
        assert!(
            matches!(decide(&g, Some(&policy(None)), at(0)), Step::Deny { message, .. } if message.contains("not a person"))
        );
        g.beneficiary = Beneficiary::Unavailable("ConfigMap people does not exist".into());
        assert!(matches!(
            decide(&g, Some(&policy(None)), at(0)),
            Step::Wait {
                reason: Reason::DirectoryUnavailable,
                stalled: true,
                ..
            }
        ));
        // An unreadable directory ends nothing that is active (and expiry never waits for it).
        let mut active = state(&s, Some(GrantPhase::Active));
        active.beneficiary = Beneficiary::Unavailable("ConfigMap people does not exist".into());
        active.held = true;
        active.expires_at = Some(at(100));
        assert_eq!(
            decide(&active, Some(&policy(None)), at(50)),
            Step::Hold {
                until: Some(at(100))
            }
        );
        assert!(matches!(
            decide(&active, None, at(100)),
            Step::Revoke {
                cause: Revocation::Expired,
                ..
            }
        ));
    }

    #[test]
    fn an_approval_binds_to_the_uid_of_the_grant_reviewed() {
        let mut s = spec("alice@example.com", json!({"role": "admin"}));
        s.approval = approval("bob", Some("uid-of-an-earlier-grant"), None);
        match decide(&state(&s, None), Some(&policy(None)), at(0)) {
            Step::Deny { message, .. } => {
                assert!(message.contains("does not name this grant"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        s.approval = approval("bob", None, None);
        assert!(matches!(
            decide(&state(&s, None), Some(&policy(None)), at(0)),
            Step::Deny { .. }
        ));
        s.approval = approval("bob", Some("uid-1"), None);
        assert!(matches!(
            decide(&state(&s, None), Some(&policy(None)), at(0)),
            Step::Activate { .. }
        ));
    }

    #[test]
    fn without_proof_of_approval_nothing_that_needs_one_activates() {
        let mut s = spec("alice@example.com", json!({"role": "admin"}));
        s.approval = approval("bob", Some("uid-1"), None);
        let mut g = state(&s, Some(GrantPhase::AwaitingApproval));
        g.approvals = Err("ValidatingAdmissionPolicy tk-grant-identity is not installed".into());
        match decide(&g, Some(&policy(None)), at(0)) {
            Step::Wait {
                reason: Reason::ApprovalUnverified,
                stalled: true,
                message,
                ..
            } => {
                assert!(message.contains("not installed"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        // Once the policies are in force, an approval given before still never counts.
        let mut g = state(&s, Some(GrantPhase::AwaitingApproval));
        g.approved_unproven = true;
        assert!(
            matches!(decide(&g, Some(&policy(None)), at(0)), Step::Deny { message, .. } if message.contains("never counts"))
        );
        // An approval given before an exposure of the trust boundary closed is refused for good.
        let mut g = state(&s, Some(GrantPhase::AwaitingApproval));
        g.decided_while_exposed = true;
        assert!(
            matches!(decide(&g, Some(&policy(None)), at(0)), Step::Deny { message, .. } if message.contains("trust boundary") && message.contains("never counts"))
        );
        // An approval given before the policy (as it is now) existed is refused for good.
        let mut g = state(&s, Some(GrantPhase::AwaitingApproval));
        g.approved_before_policy = true;
        assert!(
            matches!(decide(&g, Some(&policy(None)), at(0)), Step::Deny { message, .. } if message.contains("before AccessPolicy"))
        );
        // Approving for oneself under another identity is refused.
        let mut g = state(&s, Some(GrantPhase::AwaitingApproval));
        g.approver = Approver::Beneficiary;
        assert!(
            matches!(decide(&g, Some(&policy(None)), at(0)), Step::Deny { message, .. } if message.contains("for themselves"))
        );
        // People who left approve nothing, whatever their identity provider still says.
        let mut g = state(&s, Some(GrantPhase::AwaitingApproval));
        g.approver = Approver::Offboarded;
        assert!(
            matches!(decide(&g, Some(&policy(None)), at(0)), Step::Deny { message, .. } if message.contains("offboarded"))
        );
        // A grant that needs no approval is not held up.
        let free = spec("alice@example.com", json!({"group": "group:prod"}));
        let mut g = state(&free, None);
        g.approvals = Err("not installed".into());
        assert!(matches!(
            decide(&g, Some(&policy(None)), at(0)),
            Step::Activate { .. }
        ));
    }

    fn denial(
        by: &str,
        uid: Option<&str>,
        group: Option<&str>,
        comment: Option<&str>,
    ) -> Option<crate::api::Approval> {
        approval(by, uid, group).map(|a| crate::api::Approval {
            decision: Decision::Denied,
            comment: comment.map(str::to_string),
            ..a
        })
    }

    #[test]
    fn an_approvers_denial_ends_the_grant_denied_naming_them_and_their_comment() {
        let mut s = spec("alice@example.com", json!({"role": "admin"}));
        s.approval = denial("bob", Some("uid-1"), None, Some("not during the freeze"));
        let g = state(&s, Some(GrantPhase::AwaitingApproval));
        match decide(&g, Some(&policy(None)), at(0)) {
            Step::Deny {
                reason: Reason::DeniedByApprover,
                message,
            } => assert!(
                message.starts_with("denied by bob: not during the freeze"),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(Reason::DeniedByApprover.as_str(), "DeniedByApprover");
        // Through an approver group, without a comment: the message says both.
        let mut p = policy(None);
        p.grantable.roles[0].terms.approvers = crate::api::Approvers {
            users: vec![],
            groups: vec!["sre".into()],
        };
        s.approval = denial("carol", Some("uid-1"), Some("sre"), None);
        let g = state(&s, Some(GrantPhase::AwaitingApproval));
        assert!(matches!(
            decide(&g, Some(&p), at(0)),
            Step::Deny { reason: Reason::DeniedByApprover, message }
                if message.starts_with("denied by carol through approver group sre (no comment)")
        ));
    }

    #[test]
    fn a_denial_counts_only_where_an_approval_by_the_same_person_would() {
        let p = policy(None);
        let mut s = spec("alice@example.com", json!({"role": "admin"}));
        // Each of these would keep an approval from counting; a denial given so is no
        // approver's denial either: the grant ends Denied, never DeniedByApprover.
        let not_an_approvers =
            |s: &AccessGrantSpec, edit: &dyn Fn(&mut GrantState), needle: &str| {
                let mut g = state(s, Some(GrantPhase::AwaitingApproval));
                edit(&mut g);
                match decide(&g, Some(&p), at(0)) {
                    Step::Deny {
                        reason: Reason::Denied,
                        message,
                    } => assert!(message.contains(needle), "{needle}: {message}"),
                    other => panic!("{needle}: {other:?}"),
                }
            };
        s.approval = denial("alice", Some("uid-1"), None, None);
        not_an_approvers(&s, &|_| {}, "alice denied their own grant");
        s.approval = denial("mallory", Some("uid-1"), None, None);
        not_an_approvers(&s, &|_| {}, "the denial names no approver group");
        s.approval = denial("mallory", Some("uid-1"), Some("sre"), None);
        not_an_approvers(&s, &|_| {}, "mallory denied through group sre");
        s.approval = denial("system:serviceaccount:team:bot", Some("uid-1"), None, None);
        not_an_approvers(&s, &|_| {}, "a ServiceAccount approves or denies only");
        s.approval = denial("bob", Some("uid-of-an-earlier-grant"), None, None);
        not_an_approvers(&s, &|_| {}, "the denial does not name this grant");
        s.approval = denial("bob", Some("uid-1"), None, None);
        not_an_approvers(
            &s,
            &|g| g.approver = Approver::Beneficiary,
            "bob denied access for themselves",
        );
        not_an_approvers(
            &s,
            &|g| g.approver = Approver::Offboarded,
            "people who have left approve or deny nothing",
        );
        not_an_approvers(
            &s,
            &|g| g.approved_unproven = true,
            "the denial was given while the cluster could not prove who gave it",
        );
        not_an_approvers(
            &s,
            &|g| g.approved_before_policy = true,
            "the denial was given before AccessPolicy p existed",
        );
        not_an_approvers(
            &s,
            &|g| g.decided_while_exposed = true,
            "the denial was given while the trust boundary of AccessPolicy p was not proven",
        );
        // While the cluster cannot prove who decided, a denial waits as an approval does.
        let mut g = state(&s, Some(GrantPhase::AwaitingApproval));
        g.approvals = Err("ValidatingAdmissionPolicy tk-grant-identity is not installed".into());
        assert!(matches!(
            decide(&g, Some(&p), at(0)),
            Step::Wait {
                phase: GrantPhase::AwaitingApproval,
                reason: Reason::ApprovalUnverified,
                stalled: true,
                ..
            }
        ));
    }

    #[test]
    fn a_denial_never_ends_an_active_grant_and_the_policy_speaks_first() {
        let mut s = spec("alice@example.com", json!({"role": "admin"}));
        s.approval = denial("bob", Some("uid-1"), None, Some("too late"));
        let mut g = state(&s, Some(GrantPhase::Active));
        g.held = true;
        g.expires_at = Some(at(100));
        assert_eq!(
            decide(&g, Some(&policy(None)), at(0)),
            Step::Hold {
                until: Some(at(100))
            }
        );
        // A grant the policy does not allow is denied for that, whoever denied it too.
        let mut over = spec("alice@example.com", json!({"role": "admin"}));
        over.duration = Some("5h".into());
        over.approval = denial("bob", Some("uid-1"), None, None);
        assert!(matches!(
            decide(&state(&over, None), Some(&policy(None)), at(0)),
            Step::Deny { reason: Reason::Denied, message } if message.contains("exceeds the maximum")
        ));
    }

    #[test]
    fn a_group_approval_counts_only_if_the_directory_agrees_the_approver_is_in_the_group() {
        let mut p = policy(None);
        p.grantable.roles[0].terms.approvers = crate::api::Approvers {
            users: vec![],
            groups: vec!["sre".into()],
        };
        let mut s = spec("alice@example.com", json!({"role": "admin"}));
        s.approval = approval("carol", Some("uid-1"), Some("sre"));
        let mut g = state(&s, Some(GrantPhase::AwaitingApproval));
        for approver in [
            Approver::NotInDirectory,
            Approver::Person { groups: vec![] },
            Approver::Person {
                groups: vec!["oncall".into(), "sre".into()],
            },
        ] {
            g.approver = approver.clone();
            assert!(
                matches!(decide(&g, Some(&p), at(0)), Step::Activate { .. }),
                "{approver:?}"
            );
        }
        // An identity no person has: nobody can tell it is not the beneficiary's. Refused,
        // approvals and denials alike, saying how to map it.
        g.approver = Approver::Unmapped;
        assert!(
            matches!(decide(&g, Some(&p), at(0)), Step::Deny { message, .. } if message.contains("no person of the policy's directory has that Kubernetes identity") && message.contains("kubernetesUsers"))
        );
        // The directory says carol left sre: her identity provider's word no longer suffices.
        g.approver = Approver::Person {
            groups: vec!["oncall".into()],
        };
        assert!(
            matches!(decide(&g, Some(&p), at(0)), Step::Deny { message, .. } if message.contains("does not list sre among their Kubernetes groups (oncall)"))
        );
    }

    /// A policy whose `group:standing` allows standing access, whose `group:prod` does not,
    /// and whose admin role needs an approval and lists one GitOps identity.
    fn standing_policy() -> AccessPolicySpec {
        serde_json::from_value(json!({
            "integrationRef": {"name": "t"},
            "grantable": {
                "gitOpsRequesters": [GITOPS],
                "serviceAccountRequesters": ["system:serviceaccount:ci:deployer"],
                "groups": [
                    {"name": "group:standing", "terms": {"maxDuration": "1h", "approvalRequired": false, "standing": true}},
                    {"name": "group:prod", "terms": {"maxDuration": "1h", "approvalRequired": false}}
                ],
                "roles": [{"role": "admin", "terms": {"maxDuration": "1h", "approvalRequired": true, "approvers": {"users": ["bob"]}, "standing": true}}]
            }
        }))
        .expect("policy")
    }

    const GITOPS: &str = "system:serviceaccount:argocd:argocd-application-controller";

    fn standing(user: &str, access: serde_json::Value) -> AccessGrantSpec {
        AccessGrantSpec {
            duration: None,
            ..spec(user, access)
        }
    }

    #[test]
    fn a_standing_grant_activates_without_a_duration_where_the_item_allows_it() {
        let s = standing("alice@example.com", json!({"group": "group:standing"}));
        assert_eq!(
            decide(&state(&s, None), Some(&standing_policy()), at(0)),
            Step::Activate {
                access: PlannedAccess::Member {
                    group: "group:standing".into()
                },
                duration: None,
                approved_by: ApprovedBy::NotRequired,
            }
        );
        // The same item still takes timed grants.
        let timed = spec("alice@example.com", json!({"group": "group:standing"}));
        assert!(matches!(
            decide(&state(&timed, None), Some(&standing_policy()), at(0)),
            Step::Activate {
                duration: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn a_standing_grant_for_an_item_without_standing_is_denied_saying_what_to_do() {
        let s = standing("alice@example.com", json!({"group": "group:prod"}));
        match decide(&state(&s, None), Some(&standing_policy()), at(0)) {
            Step::Deny {
                reason: Reason::StandingNotAllowed,
                message,
            } => assert!(
                message.contains("group:prod does not allow standing access")
                    && message.contains("set spec.duration (at most 1h)")
                    && message.contains("terms.standing: true for group:prod"),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_expiry_ever_fires_for_a_standing_grant() {
        let s = standing("alice@example.com", json!({"group": "group:standing"}));
        let mut g = state(&s, Some(GrantPhase::Active));
        g.held = true;
        let p = standing_policy();
        for later in [0, 3600, 90 * 86_400, 50 * 365 * 86_400] {
            assert_eq!(
                decide(&g, Some(&p), at(later)),
                Step::Hold { until: None },
                "{later}s after activation"
            );
        }
        // Nothing else about it is trusted blindly: without a hold it ends.
        g.held = false;
        assert!(matches!(
            decide(&g, Some(&p), at(0)),
            Step::Revoke {
                cause: Revocation::Unproven,
                ..
            }
        ));
    }

    #[test]
    fn a_standing_grant_ends_when_deleted() {
        let s = standing("alice@example.com", json!({"group": "group:standing"}));
        let mut g = state(&s, Some(GrantPhase::Active));
        g.held = true;
        g.deleting = true;
        assert_eq!(
            decide(&g, Some(&standing_policy()), at(0)),
            Step::Revoke {
                phase: GrantPhase::Revoked,
                cause: Revocation::Deleted
            }
        );
    }

    #[test]
    fn every_active_grant_ends_when_its_person_is_offboarded_or_no_longer_known() {
        let standing_spec = standing("alice@example.com", json!({"group": "group:standing"}));
        let timed_spec = spec("alice@example.com", json!({"group": "group:standing"}));
        let p = standing_policy();
        for (s, expires) in [(&standing_spec, None), (&timed_spec, Some(at(1800)))] {
            let mut g = state(s, Some(GrantPhase::Active));
            g.held = true;
            g.expires_at = expires;
            for (beneficiary, cause, reason) in [
                (
                    Beneficiary::Offboarded,
                    Revocation::PersonOffboarded,
                    Reason::PersonOffboarded,
                ),
                (
                    Beneficiary::Unknown,
                    Revocation::PersonNotInDirectory,
                    Reason::PersonNotInDirectory,
                ),
            ] {
                g.beneficiary = beneficiary;
                assert_eq!(
                    decide(&g, Some(&p), at(10)),
                    Step::Revoke {
                        phase: GrantPhase::Revoked,
                        cause
                    }
                );
                assert_eq!(cause.reason(), reason);
            }
            // An expiry that has passed is what ended it, whatever the directory says.
            if expires.is_some() {
                g.beneficiary = Beneficiary::Offboarded;
                assert!(matches!(
                    decide(&g, Some(&p), at(1800)),
                    Step::Revoke {
                        cause: Revocation::Expired,
                        ..
                    }
                ));
            }
        }
        let offboarded = Revocation::PersonOffboarded
            .explain(&standing_spec)
            .unwrap_or_default();
        assert!(
            offboarded.contains("alice@example.com belongs to a person marked offboarded"),
            "{offboarded}"
        );
    }

    #[test]
    fn a_standing_grant_ends_when_its_policy_is_gone_and_a_timed_one_runs_to_its_expiry() {
        let s = standing("alice@example.com", json!({"group": "group:standing"}));
        let mut g = state(&s, Some(GrantPhase::Active));
        g.held = true;
        assert_eq!(
            decide(&g, None, at(0)),
            Step::Revoke {
                phase: GrantPhase::Revoked,
                cause: Revocation::PolicyGone
            }
        );
        assert_eq!(Revocation::PolicyGone.reason(), Reason::PolicyNotFound);
        let t = spec("alice@example.com", json!({"group": "group:standing"}));
        let mut g = state(&t, Some(GrantPhase::Active));
        g.held = true;
        g.expires_at = Some(at(100));
        assert_eq!(
            decide(&g, None, at(0)),
            Step::Hold {
                until: Some(at(100))
            }
        );
    }

    #[test]
    fn a_standing_grant_ends_when_the_policy_no_longer_lets_its_item_stand() {
        let s = standing("alice@example.com", json!({"group": "group:standing"}));
        let mut g = state(&s, Some(GrantPhase::Active));
        g.held = true;
        let mut p = standing_policy();
        p.grantable.groups[0].terms.standing = false;
        assert_eq!(
            decide(&g, Some(&p), at(0)),
            Step::Revoke {
                phase: GrantPhase::Revoked,
                cause: Revocation::StandingWithdrawn
            }
        );
        assert_eq!(
            Revocation::StandingWithdrawn.reason(),
            Reason::StandingNotAllowed
        );
        p.grantable.groups.remove(0);
        assert!(matches!(
            decide(&g, Some(&p), at(0)),
            Step::Revoke {
                cause: Revocation::StandingWithdrawn,
                ..
            }
        ));
    }

    fn by_git_ops(requester: &str) -> AccessGrantSpec {
        AccessGrantSpec {
            requested_by: Some(requester.into()),
            ..standing("alice@example.com", json!({"role": "admin"}))
        }
    }

    #[test]
    fn a_git_ops_requester_the_policy_lists_approves_once_admission_proves_it() {
        let p = standing_policy();
        let s = by_git_ops(GITOPS);
        let mut g = state(&s, None);
        // The GitOps identity is no person, and needs to be none: it stands for a review.
        g.approver = Approver::Unmapped;
        assert_eq!(
            decide(&g, Some(&p), at(0)),
            Step::Activate {
                access: PlannedAccess::Role {
                    role: "admin".into()
                },
                duration: None,
                approved_by: ApprovedBy::GitOps {
                    requester: GITOPS.into()
                },
            }
        );
        // Without proof of who created the grant it waits, as any approval does.
        let mut g = state(&s, None);
        g.approvals = Err("ValidatingAdmissionPolicy tk-grant-identity is not installed".into());
        assert!(matches!(
            decide(&g, Some(&p), at(0)),
            Step::Wait {
                reason: Reason::ApprovalUnverified,
                stalled: true,
                ..
            }
        ));
        // Created while someone else could act as the GitOps identity: it never counts.
        let mut g = state(&s, None);
        g.decided_while_exposed = true;
        assert!(
            matches!(decide(&g, Some(&p), at(0)), Step::Deny { message, .. } if message.contains("trust boundary") && message.contains("not approved in GitOps"))
        );
        // Created before the proof was in force: it never counts.
        let mut g = state(&s, None);
        g.requested_unproven = true;
        assert!(
            matches!(decide(&g, Some(&p), at(0)), Step::Deny { message, .. } if message.contains("not approved in GitOps") && message.contains("never counts"))
        );
        // The directory says the GitOps identity is the beneficiary's own.
        let mut g = state(&s, None);
        g.approver = Approver::Beneficiary;
        assert!(
            matches!(decide(&g, Some(&p), at(0)), Step::Deny { message, .. } if message.contains("for themselves"))
        );
    }

    #[test]
    fn a_service_account_the_policy_does_not_list_as_git_ops_gets_no_approval() {
        let p = standing_policy();
        // Listed as a requester only: it may ask, an approver must still approve.
        let s = by_git_ops("system:serviceaccount:ci:deployer");
        assert!(matches!(
            decide(&state(&s, None), Some(&p), at(0)),
            Step::Wait {
                phase: GrantPhase::AwaitingApproval,
                reason: Reason::AwaitingApproval,
                ..
            }
        ));
        // Not listed at all: it may not even ask.
        let s = by_git_ops("system:serviceaccount:argocd:other");
        assert!(
            matches!(decide(&state(&s, None), Some(&p), at(0)), Step::Deny { reason: Reason::Denied, message } if message.contains("gitOpsRequesters"))
        );
        // A person is never a GitOps identity, even one whose name is typed into the list.
        let mut listed_person = p.clone();
        listed_person.grantable.git_ops_requesters = vec!["alice".into()];
        let s = by_git_ops("alice");
        assert!(matches!(
            decide(&state(&s, None), Some(&listed_person), at(0)),
            Step::Wait {
                reason: Reason::AwaitingApproval,
                ..
            }
        ));
    }

    #[test]
    fn an_item_without_approval_is_unaffected_by_git_ops() {
        let p = standing_policy();
        let s = AccessGrantSpec {
            requested_by: Some(GITOPS.into()),
            ..standing("alice@example.com", json!({"group": "group:standing"}))
        };
        let mut g = state(&s, None);
        g.approvals = Err("not installed".into());
        g.requested_unproven = true;
        assert!(matches!(
            decide(&g, Some(&p), at(0)),
            Step::Activate {
                approved_by: ApprovedBy::NotRequired,
                ..
            }
        ));
    }

    #[test]
    fn retention_counts_from_the_end() {
        let s = spec("alice@example.com", json!({"group": "group:prod"}));
        let mut g = state(&s, Some(GrantPhase::Expired));
        g.ended_at = Some(at(0));
        assert_eq!(decide(&g, Some(&policy(None)), at(10)), Step::Done);
        assert_eq!(
            decide(&g, Some(&policy(Some("1h"))), at(10)),
            Step::Retain { until: at(3600) }
        );
        assert_eq!(
            decide(&g, Some(&policy(Some("1h"))), at(3600)),
            Step::Delete
        );
    }

    #[test]
    fn expiry_rounds_up_to_whole_seconds() {
        let now = at(0) + SignedDuration::from_millis(1);
        assert_eq!(expiry(now, Duration::from_secs(60)), at(61));
        assert_eq!(expiry(at(0), Duration::from_secs(60)), at(60));
    }
}
