//! `kubectl tailkeeper approve`, `deny` and `pending`: which grants await a decision the current
//! identity may give, whether a grant can be decided at all, and the decision as a patch bound
//! to the grant's UID. Pure. These only spare people requests that cannot succeed and fill in
//! what the admission policies demand (`approvedBy`, `grantUID`, `group`); the admission
//! policies and the operator decide whether a decision counts.

use serde_json::{json, Value};

use crate::api::{AccessGrant, AccessPolicy, Decision, GrantPhase, GrantTerms};
use crate::grants::{terms_of, SERVICE_ACCOUNT_PREFIX};

use super::{show, Error, Identity};

/// Whether `me` may decide `grant` under `terms` (its item's terms in its policy): the terms
/// need an approval, `me` did not request it, and the terms list `me` by name or, unless `me`
/// is a ServiceAccount (which decides only when named), through a group `me` is in.
pub fn may_decide(grant: &AccessGrant, terms: &GrantTerms, me: &Identity) -> bool {
    if !terms.approval_required || grant.spec.requested_by.as_deref() == Some(me.user.as_str()) {
        return false;
    }
    terms.approvers.users.iter().any(|u| u == &me.user)
        || (!me.user.starts_with(SERVICE_ACCOUNT_PREFIX)
            && terms.approvers.groups.iter().any(|g| me.in_group(g)))
}

/// The grants among `grants` that await a decision `me` may give, under their `policies` (of
/// the same namespace). A grant whose policy is not among them is left out: nobody's decision
/// on it would count.
pub fn pending<'a>(
    grants: &'a [AccessGrant],
    policies: &[AccessPolicy],
    me: &Identity,
) -> Vec<&'a AccessGrant> {
    grants
        .iter()
        .filter(|g| g.spec.approval.is_none())
        .filter(|g| g.status.as_ref().and_then(|s| s.phase) == Some(GrantPhase::AwaitingApproval))
        .filter(|g| {
            policies
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(g.spec.policy_ref.name.as_str()))
                .and_then(|p| terms_of(&p.spec, &g.spec.access))
                .is_some_and(|t| may_decide(g, t, me))
        })
        .collect()
}

/// The approver group `me` decides through: none when the terms list `me` by name (or cannot
/// be read: then the admission policy says what is missing), else the first approver group of
/// the terms that `me` is in.
pub fn approver_group(terms: Option<&GrantTerms>, me: &Identity) -> Option<String> {
    let terms = terms?;
    if terms.approvers.users.iter().any(|u| u == &me.user) {
        return None;
    }
    terms
        .approvers
        .groups
        .iter()
        .find(|g| me.in_group(g))
        .cloned()
}

/// Whether `grant` can take a `decision` now. `terms` are its item's terms, when its policy
/// could be read.
pub fn decidable(
    grant: &AccessGrant,
    terms: Option<&GrantTerms>,
    decision: Decision,
) -> Result<(), Error> {
    let name = grant.metadata.name.as_deref().unwrap_or_default();
    let ns = grant.metadata.namespace.as_deref().unwrap_or("default");
    if let Some(a) = &grant.spec.approval {
        return Err(Error::NotDecidable(format!(
            "AccessGrant {name} was already {} by {}: a grant is decided once",
            a.decision.verb(),
            a.approved_by
        )));
    }
    if terms.is_some_and(|t| !t.approval_required) {
        return Err(Error::NotDecidable(format!(
            "AccessGrant {name} is for access that needs no approval, so there is nothing to decide{}",
            if decision == Decision::Denied {
                format!(": to end it, delete it (kubectl delete accessgrant {name} -n {ns})")
            } else {
                String::new()
            }
        )));
    }
    match grant.status.as_ref().and_then(|s| s.phase) {
        Some(GrantPhase::AwaitingApproval | GrantPhase::Pending) => Ok(()),
        None => Err(Error::NotDecidable(format!(
            "Tailkeeper has not looked at AccessGrant {name} yet, so it is not known to need a decision: try again in a few seconds (is the operator running?)"
        ))),
        Some(GrantPhase::Active) => Err(Error::NotDecidable(format!(
            "AccessGrant {name} is already Active: a decision counts only before a grant activates; to end it, delete it (kubectl delete accessgrant {name} -n {ns})"
        ))),
        Some(phase) => Err(Error::NotDecidable(format!(
            "AccessGrant {name} has ended ({phase:?}): there is nothing to decide"
        ))),
    }
}

/// The merge patch that records `me`'s `decision` on `grant`: `approvedBy` is `me`, `grantUID`
/// the grant's UID (the decision covers exactly the object reviewed), `group` the approver
/// group it is given through.
pub fn patch(
    grant: &AccessGrant,
    me: &Identity,
    decision: Decision,
    group: Option<&str>,
    comment: Option<&str>,
) -> Result<Value, Error> {
    let uid = grant.metadata.uid.as_deref().ok_or_else(|| {
        Error::Invalid(
            "the API server returned the grant without a UID, so a decision cannot name it"
                .to_string(),
        )
    })?;
    let mut approval = json!({
        "approvedBy": me.user,
        "decision": decision,
        "grantUID": uid,
    });
    if let Some(group) = group {
        approval["group"] = json!(group);
    }
    if let Some(comment) = comment.map(str::trim).filter(|c| !c.is_empty()) {
        approval["comment"] = json!(comment);
    }
    Ok(json!({"spec": {"approval": approval}}))
}

/// What is being decided, for the approver to read before confirming.
pub fn summary(
    grant: &AccessGrant,
    decision: Decision,
    me: &Identity,
    group: Option<&str>,
    now: jiff::Timestamp,
) -> String {
    let verb = match decision {
        Decision::Approved => "Approve",
        Decision::Denied => "Deny",
    };
    let spec = &grant.spec;
    let name = grant.metadata.name.as_deref().unwrap_or_default();
    let ns = grant.metadata.namespace.as_deref().unwrap_or("default");
    let as_whom = match group {
        Some(g) => format!("{} through approver group {g}", me.user),
        None => me.user.clone(),
    };
    let rows = [
        ("user", spec.user.clone()),
        ("access", show::access(&spec.access)),
        (
            "duration",
            match &spec.duration {
                Some(d) => format!("{d} once active"),
                None => "standing (until removed)".to_string(),
            },
        ),
        ("reason", show::one_line(&spec.reason)),
        (
            "requested by",
            format!(
                "{}, {} ago",
                spec.requested_by.as_deref().unwrap_or("-"),
                show::age(grant, now)
            ),
        ),
        ("policy", spec.policy_ref.name.clone()),
        ("grant UID", grant.metadata.uid.clone().unwrap_or_default()),
        ("deciding as", as_whom),
    ];
    let mut out = format!("{verb} AccessGrant {name} in namespace {ns}?\n");
    for (label, value) in rows {
        out.push_str(&format!("  {label:<13}{value}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AccessGrantStatus, Approval};

    fn me(user: &str, groups: &[&str]) -> Identity {
        Identity {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn policy(name: &str) -> AccessPolicy {
        serde_json::from_value(json!({
            "apiVersion": "tailkeeper.io/v1alpha1", "kind": "AccessPolicy",
            "metadata": {"name": name},
            "spec": {
                "integrationRef": {"name": "t"},
                "grantable": {
                    "groups": [
                        {"name": "group:oncall", "terms": {"maxDuration": "8h", "approvers": {"users": ["bob", "system:serviceaccount:ops:bot"], "groups": ["approvers", "sre"]}}},
                        {"name": "group:prod", "terms": {"maxDuration": "1h", "approvalRequired": false}}
                    ]
                }
            }
        }))
        .expect("policy")
    }

    fn grant(name: &str, group: &str, by: &str, phase: Option<GrantPhase>) -> AccessGrant {
        let mut g: AccessGrant = serde_json::from_value(json!({
            "apiVersion": "tailkeeper.io/v1alpha1", "kind": "AccessGrant",
            "metadata": {"name": name, "namespace": "sec", "uid": format!("uid-{name}"),
                         "creationTimestamp": "2027-01-15T08:00:00Z"},
            "spec": {"policyRef": {"name": "jit"}, "user": "alice@example.com",
                     "access": {"group": group}, "duration": "1h",
                     "reason": "incident 4711", "requestedBy": by}
        }))
        .expect("grant");
        g.status = phase.map(|p| AccessGrantStatus {
            phase: Some(p),
            ..Default::default()
        });
        g
    }

    fn names(grants: &[&AccessGrant]) -> Vec<String> {
        grants
            .iter()
            .map(|g| g.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn pending_lists_what_the_policy_lets_me_decide_and_never_my_own() {
        let waiting = Some(GrantPhase::AwaitingApproval);
        let grants = vec![
            grant("alices", "group:oncall", "alice", waiting),
            grant("carols", "group:oncall", "carol", waiting),
            grant("free", "group:prod", "alice", waiting),
            grant("active", "group:oncall", "alice", Some(GrantPhase::Active)),
            grant("new", "group:oncall", "alice", None),
            {
                let mut g = grant("elsewhere", "group:oncall", "alice", waiting);
                g.spec.policy_ref.name = "other".into();
                g
            },
            {
                let mut g = grant("decided", "group:oncall", "alice", waiting);
                g.spec.approval = Some(Approval {
                    approved_by: "bob".into(),
                    decision: Decision::Denied,
                    grant_uid: Some("uid-decided".into()),
                    group: None,
                    comment: None,
                });
                g
            },
        ];
        let policies = [policy("jit")];
        // By name, or through a group I am in; what I requested myself is never mine to decide.
        assert_eq!(
            names(&pending(&grants, &policies, &me("bob", &[]))),
            ["alices", "carols"]
        );
        assert_eq!(
            names(&pending(&grants, &policies, &me("carol", &["approvers"]))),
            ["alices"]
        );
        // Not an approver at all: nothing.
        assert!(pending(&grants, &policies, &me("alice", &["dev"])).is_empty());
        assert!(pending(&grants, &policies, &me("mallory", &[])).is_empty());
        // A ServiceAccount decides only when named, whatever its groups.
        assert!(pending(
            &grants,
            &policies,
            &me("system:serviceaccount:ops:other", &["approvers"])
        )
        .is_empty());
        assert_eq!(
            pending(
                &grants,
                &policies,
                &me("system:serviceaccount:ops:bot", &[])
            )
            .len(),
            2
        );
    }

    #[test]
    fn the_approver_group_is_the_first_the_policy_lists_that_i_am_in_unless_i_am_named() {
        let p = policy("jit");
        let terms = p.spec.grantable.groups[0].terms.clone();
        assert_eq!(approver_group(Some(&terms), &me("bob", &["sre"])), None);
        assert_eq!(
            approver_group(Some(&terms), &me("carol", &["sre", "approvers"])),
            Some("approvers".into())
        );
        assert_eq!(approver_group(Some(&terms), &me("mallory", &["dev"])), None);
        assert_eq!(approver_group(None, &me("carol", &["approvers"])), None);
    }

    #[test]
    fn only_a_grant_awaiting_a_decision_can_take_one_and_the_refusal_says_why() {
        let terms = policy("jit").spec.grantable.groups[0].terms.clone();
        let free = policy("jit").spec.grantable.groups[1].terms.clone();
        let cases = [
            (Some(GrantPhase::AwaitingApproval), Some(&terms), None),
            (Some(GrantPhase::Pending), None, None),
            (
                None,
                Some(&terms),
                Some("has not looked at AccessGrant g yet"),
            ),
            (
                Some(GrantPhase::Active),
                Some(&terms),
                Some("kubectl delete accessgrant g -n sec"),
            ),
            (
                Some(GrantPhase::Expired),
                Some(&terms),
                Some("has ended (Expired)"),
            ),
            (
                Some(GrantPhase::AwaitingApproval),
                Some(&free),
                Some("needs no approval"),
            ),
        ];
        for (phase, terms, refused) in cases {
            let g = grant("g", "group:oncall", "alice", phase);
            match (decidable(&g, terms, Decision::Denied), refused) {
                (Ok(()), None) => {}
                (Err(e), Some(needle)) => assert!(e.to_string().contains(needle), "{e}"),
                (other, _) => panic!("{phase:?}: {other:?}"),
            }
        }
        let mut decided = grant(
            "g",
            "group:oncall",
            "alice",
            Some(GrantPhase::AwaitingApproval),
        );
        decided.spec.approval = Some(Approval {
            approved_by: "bob".into(),
            decision: Decision::Approved,
            grant_uid: Some("uid-g".into()),
            group: None,
            comment: None,
        });
        let e = decidable(&decided, Some(&terms), Decision::Denied).expect_err("decided once");
        assert!(e.to_string().contains("was already approved by bob"), "{e}");
    }

    #[test]
    fn a_decision_names_me_the_grants_uid_and_the_group_it_is_given_through() {
        let g = grant(
            "g",
            "group:oncall",
            "alice",
            Some(GrantPhase::AwaitingApproval),
        );
        let carol = me("carol", &["approvers"]);
        assert_eq!(
            patch(
                &g,
                &carol,
                Decision::Denied,
                Some("approvers"),
                Some("  not now ")
            )
            .expect("patch"),
            json!({"spec": {"approval": {"approvedBy": "carol", "decision": "Denied", "grantUID": "uid-g", "group": "approvers", "comment": "not now"}}})
        );
        assert_eq!(
            patch(&g, &me("bob", &[]), Decision::Approved, None, Some(" ")).expect("patch"),
            json!({"spec": {"approval": {"approvedBy": "bob", "decision": "Approved", "grantUID": "uid-g"}}})
        );
        let mut no_uid = g.clone();
        no_uid.metadata.uid = None;
        assert!(patch(&no_uid, &carol, Decision::Approved, None, None).is_err());
        let at = jiff::Timestamp::from_second(1_800_000_000).expect("time");
        let text = summary(&g, Decision::Denied, &carol, Some("approvers"), at);
        assert!(
            text.starts_with("Deny AccessGrant g in namespace sec?\n"),
            "{text}"
        );
        for line in [
            "  user         alice@example.com",
            "  access       group:oncall",
            "  duration     1h once active",
            "  reason       incident 4711",
            "  grant UID    uid-g",
            "  deciding as  carol through approver group approvers",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
    }
}
