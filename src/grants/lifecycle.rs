//! The grant lifecycle as one pure decision: from the grant, its policy (if it still exists),
//! whether the ledger holds access for it, and the clock, the next step. The grant reconciler
//! loads these, calls [`decide`], carries the step out and writes status once.
//!
//! Ending access never depends on the policy: a hold in the ledger is ended at expiry, when the
//! grant is deleted, or when the grant ended for any other reason, whatever else exists.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::{resolve, PlannedAccess, Resolution};
use crate::api::{AccessGrantSpec, AccessPolicySpec, GrantPhase};
use crate::duration;

/// What the reconciler knows about a grant.
#[derive(Clone, Debug)]
pub struct GrantState<'a> {
    /// The grant's UID: an approval must name it.
    pub uid: &'a str,
    pub spec: &'a AccessGrantSpec,
    pub phase: Option<GrantPhase>,
    pub expires_at: Option<Timestamp>,
    /// When the grant reached a final phase (for retention).
    pub ended_at: Option<Timestamp>,
    pub deleting: bool,
    /// The ledger holds access for this grant (by UID).
    pub held: bool,
    /// Who the beneficiary is in the policy's directory.
    pub beneficiary: Beneficiary,
    /// Whether the cluster proves approvals in the grant's namespace (else why not).
    pub approvals: Result<(), String>,
    /// The approval was written before the admission policies that prove approvals existed.
    pub approved_unproven: bool,
    /// The approval was written before the grant's AccessPolicy (as it is now) was created:
    /// nothing judged the approver against it.
    pub approved_before_policy: bool,
    /// Who the approver is in the policy's directory.
    pub approver: Approver,
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
            approved_before_policy: false,
            approver: Approver::NotInDirectory,
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

/// The approver as the policy's people directory knows them (through `kubernetesUsers`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Approver {
    /// No approval, or no person lists the approving identity.
    #[default]
    NotInDirectory,
    /// The same person as the beneficiary, under another identity.
    Beneficiary,
    /// A person marked offboarded.
    Offboarded,
    /// A person who works here, with the Kubernetes groups the directory lists for them
    /// (empty: the directory does not say).
    Person { groups: Vec<String> },
}

/// Why a grant is where it is: the `Ready` condition's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Active,
    AwaitingApproval,
    Denied,
    PolicyNotFound,
    DirectoryUnavailable,
    ApprovalUnverified,
    Expired,
    Revoked,
    Activating,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Active => "Active",
            Reason::AwaitingApproval => "AwaitingApproval",
            Reason::Denied => "Denied",
            Reason::PolicyNotFound => "PolicyNotFound",
            Reason::DirectoryUnavailable => "DirectoryUnavailable",
            Reason::ApprovalUnverified => "ApprovalUnverified",
            Reason::Expired => "Expired",
            Reason::Revoked => "Revoked",
            Reason::Activating => "Activating",
        }
    }
}

/// The next step for a grant.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// The policy does not allow it: end as Denied.
    Deny { message: String },
    /// Nothing to do until something changes (an approval, the policy appearing).
    Wait {
        phase: GrantPhase,
        reason: Reason,
        message: String,
        /// Whether a person must act (Stalled) rather than the grant waiting its turn.
        stalled: bool,
    },
    /// Apply the access (again, if a crash interrupted an earlier try: every step is idempotent).
    Activate {
        access: PlannedAccess,
        duration: Duration,
    },
    /// Active and in force: wake at expiry.
    Hold { until: Timestamp },
    /// Take the access away; the grant ends in `phase`.
    Revoke { phase: GrantPhase },
    /// Ended; keep the record until then.
    Retain { until: Timestamp },
    /// Ended and kept long enough: delete the record.
    Delete,
    /// Ended, nothing held, no retention: nothing to do (also: let a deletion proceed).
    Done,
}

/// Decide the next step. `policy` is `None` when the grant's AccessPolicy does not exist.
pub fn decide(grant: &GrantState, policy: Option<&AccessPolicySpec>, now: Timestamp) -> Step {
    if grant.deleting {
        // An Active grant is revoked even when the ledger seems to hold nothing (a cache behind
        // a write): ending nothing is harmless, and the record says how it ended.
        return if grant.held || grant.phase == Some(GrantPhase::Active) {
            Step::Revoke {
                phase: GrantPhase::Revoked,
            }
        } else {
            Step::Done
        };
    }
    match grant.phase {
        Some(GrantPhase::Active) => match grant.expires_at {
            Some(at) if now >= at => Step::Revoke {
                phase: GrantPhase::Expired,
            },
            Some(at) if grant.held => Step::Hold { until: at },
            // Active without a hold (a ledger lost, or written before the ledger existed):
            // nothing proves what is in force, so end it rather than trust it.
            _ => Step::Revoke {
                phase: GrantPhase::Revoked,
            },
        },
        Some(
            phase @ (GrantPhase::Expired
            | GrantPhase::Revoked
            | GrantPhase::Denied
            | GrantPhase::Failed),
        ) => {
            if grant.held {
                return Step::Revoke { phase };
            }
            retention(policy, grant.ended_at, now)
        }
        None | Some(GrantPhase::Pending | GrantPhase::AwaitingApproval) => {
            let Some(policy) = policy else {
                if grant.held {
                    // Activation had begun when the policy went away: undo it.
                    return Step::Revoke {
                        phase: GrantPhase::Revoked,
                    };
                }
                return Step::Wait {
                    phase: GrantPhase::Pending,
                    reason: Reason::PolicyNotFound,
                    message: format!("AccessPolicy {} does not exist", grant.spec.policy_ref.name),
                    stalled: true,
                };
            };
            match resolve(policy, grant.spec) {
                Resolution::Denied(message) if grant.held => {
                    // The policy changed under an interrupted activation: undo, then deny.
                    let _ = message;
                    Step::Revoke {
                        phase: GrantPhase::Revoked,
                    }
                }
                Resolution::Denied(message) => Step::Deny { message },
                // Access is for people the directory knows and who still work here; a
                // directory that cannot be read grants nothing until it can.
                _ if grant.beneficiary != Beneficiary::Person => match &grant.beneficiary {
                    Beneficiary::Offboarded => Step::Deny {
                        message: format!(
                            "{} belongs to a person marked offboarded in the directory of AccessPolicy {}: people who have left get no access",
                            grant.spec.user, grant.spec.policy_ref.name
                        ),
                    },
                    Beneficiary::Unavailable(why) => Step::Wait {
                        phase: GrantPhase::Pending,
                        reason: Reason::DirectoryUnavailable,
                        message: format!(
                            "the directory of AccessPolicy {} cannot be read, so {} cannot be identified: {why}",
                            grant.spec.policy_ref.name, grant.spec.user
                        ),
                        stalled: true,
                    },
                    _ => Step::Deny {
                        message: format!(
                            "{} is not a person in the directory of AccessPolicy {}: add them (with this login name) before granting them access",
                            grant.spec.user, grant.spec.policy_ref.name
                        ),
                    },
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
                Resolution::Approved { .. }
                    if grant
                        .spec
                        .approval
                        .as_ref()
                        .is_some_and(|a| a.grant_uid.as_deref() != Some(grant.uid)) =>
                {
                    Step::Deny {
                        message: format!(
                            "the approval does not name this grant (UID {}): an approval covers exactly the grant that was reviewed; approve again with spec.approval.grantUID set to it",
                            grant.uid
                        ),
                    }
                }
                Resolution::Approved {
                    access,
                    duration,
                    approved,
                } => activation(grant, policy, access, duration, approved),
            }
        }
    }
}

/// The last word on a grant the policy allows (approved, or needing no approval): an approval
/// counts only if the directory does not object to the person behind it, and only where the
/// cluster proves who gave it, given while it did.
fn activation(
    grant: &GrantState,
    policy: &AccessPolicySpec,
    access: PlannedAccess,
    duration: Duration,
    approved: bool,
) -> Step {
    if approved {
        if let Some(message) = approver_refused(grant) {
            return Step::Deny { message };
        }
        if grant.approved_before_policy {
            return Step::Deny {
                message: format!(
                    "the approval was given before AccessPolicy {} existed, so nothing checked the approver against it; it never counts: request a new grant and have it approved",
                    grant.spec.policy_ref.name
                ),
            };
        }
        if grant.approved_unproven {
            return Step::Deny {
                message: "the approval was given while the cluster could not prove who gave it (its admission policies were not in force); it never counts: request a new grant and have it approved".to_string(),
            };
        }
        if let Err(why) = &grant.approvals {
            return Step::Wait {
                phase: GrantPhase::AwaitingApproval,
                reason: Reason::ApprovalUnverified,
                message: why.clone(),
                stalled: true,
            };
        }
    }
    if is_exempt(policy, &grant.spec.user) && matches!(access, PlannedAccess::Role { .. }) {
        return Step::Deny {
            message: format!(
                "{} is exempt in this policy (break-glass and service accounts); grants never change an exempt account's role",
                grant.spec.user
            ),
        };
    }
    Step::Activate { access, duration }
}

/// Why the directory refuses the approver, if it does.
fn approver_refused(grant: &GrantState) -> Option<String> {
    let approval = grant.spec.approval.as_ref()?;
    let by = &approval.approved_by;
    match &grant.approver {
        Approver::NotInDirectory => None,
        Approver::Beneficiary => Some(format!(
            "{by} approved access for themselves: the directory maps them to {}; another approver must approve a new grant",
            grant.spec.user
        )),
        Approver::Offboarded => Some(format!(
            "{by} belongs to a person marked offboarded in the directory: people who have left approve nothing; another approver must approve a new grant"
        )),
        Approver::Person { groups } => match &approval.group {
            Some(group) if !groups.is_empty() && !groups.contains(group) => Some(format!(
                "{by} approved through group {group}, but the directory does not list {group} among their Kubernetes groups ({}); another approver must approve a new grant",
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
            approved_before_policy: false,
            approver: Approver::NotInDirectory,
        }
    }

    #[test]
    fn a_held_grant_is_revoked_at_its_expiry_instant_and_not_before() {
        let s = spec("alice@example.com", json!({"group": "group:prod"}));
        let mut g = state(&s, Some(GrantPhase::Active));
        g.expires_at = Some(at(100));
        g.held = true;
        let p = policy(None);
        assert_eq!(decide(&g, Some(&p), at(99)), Step::Hold { until: at(100) });
        assert_eq!(
            decide(&g, Some(&p), at(100)),
            Step::Revoke {
                phase: GrantPhase::Expired
            }
        );
        // The policy being gone changes nothing about ending access.
        assert_eq!(
            decide(&g, None, at(100)),
            Step::Revoke {
                phase: GrantPhase::Expired
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
                    phase: GrantPhase::Revoked
                }
            );
            g.held = false;
            let expected = if phase == Some(GrantPhase::Active) {
                Step::Revoke {
                    phase: GrantPhase::Revoked,
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
                phase: GrantPhase::Revoked
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
                phase: GrantPhase::Failed
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
            Step::Deny { message } => assert!(message.contains("exempt"), "{message}"),
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
                phase: GrantPhase::Revoked
            }
        );
    }

    #[test]
    fn grants_for_people_who_left_or_nobody_are_denied_and_an_unreadable_directory_waits() {
        let s = spec("carol@example.com", json!({"group": "group:prod"}));
        let mut g = state(&s, None);
        g.beneficiary = Beneficiary::Offboarded;
        assert!(
            matches!(decide(&g, Some(&policy(None)), at(0)), Step::Deny { message } if message.contains("offboarded"))
        );
        g.beneficiary = Beneficiary::Unknown;
        assert!(
            matches!(decide(&g, Some(&policy(None)), at(0)), Step::Deny { message } if message.contains("not a person"))
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
        // Ending access never depends on the directory.
        let mut active = state(&s, Some(GrantPhase::Active));
        active.beneficiary = Beneficiary::Offboarded;
        active.held = true;
        active.expires_at = Some(at(100));
        assert_eq!(
            decide(&active, Some(&policy(None)), at(50)),
            Step::Hold { until: at(100) }
        );
    }

    #[test]
    fn an_approval_binds_to_the_uid_of_the_grant_reviewed() {
        let mut s = spec("alice@example.com", json!({"role": "admin"}));
        s.approval = approval("bob", Some("uid-of-an-earlier-grant"), None);
        match decide(&state(&s, None), Some(&policy(None)), at(0)) {
            Step::Deny { message } => {
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
            matches!(decide(&g, Some(&policy(None)), at(0)), Step::Deny { message } if message.contains("never counts"))
        );
        // An approval given before the policy (as it is now) existed is refused for good.
        let mut g = state(&s, Some(GrantPhase::AwaitingApproval));
        g.approved_before_policy = true;
        assert!(
            matches!(decide(&g, Some(&policy(None)), at(0)), Step::Deny { message } if message.contains("before AccessPolicy"))
        );
        // Approving for oneself under another identity is refused.
        let mut g = state(&s, Some(GrantPhase::AwaitingApproval));
        g.approver = Approver::Beneficiary;
        assert!(
            matches!(decide(&g, Some(&policy(None)), at(0)), Step::Deny { message } if message.contains("for themselves"))
        );
        // People who left approve nothing, whatever their identity provider still says.
        let mut g = state(&s, Some(GrantPhase::AwaitingApproval));
        g.approver = Approver::Offboarded;
        assert!(
            matches!(decide(&g, Some(&policy(None)), at(0)), Step::Deny { message } if message.contains("offboarded"))
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
        // The directory says carol left sre: her identity provider's word no longer suffices.
        g.approver = Approver::Person {
            groups: vec!["oncall".into()],
        };
        assert!(
            matches!(decide(&g, Some(&p), at(0)), Step::Deny { message } if message.contains("does not list sre among their Kubernetes groups (oncall)"))
        );
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
