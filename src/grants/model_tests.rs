//! The lifecycle and the ledger together, as the reconciler and the sweeper drive them, on
//! random histories: overlapping role grants, timed and standing, clock jumps, deletions with
//! and without the finalizer, operators stopping between the ledger and Tailscale, the person
//! offboarded. Once the person has left, the user holds exactly their baseline, the ledger is
//! empty and nothing is Active; at every quiet moment the user holds at least the baseline and
//! at most the least role including it and what the ledger holds, and every Active, unexpired
//! grant is held and in effect.

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use serde_json::json;

use super::ledger::{self, includes, least_upper_bound};
use super::lifecycle::{decide, Beneficiary, GrantState, Revocation, Step};
use super::PlannedAccess;
use crate::api::{AccessGrantSpec, AccessPolicySpec, GrantLedgerSpec, GrantPhase, Hold};

use super::ledger::tests::{hold, ROLES};

#[derive(Clone, Debug)]
enum Event {
    /// A grant of role `.0` for `.1` seconds (0: standing).
    Create(usize, i64),
    Tick(i64),
    Reconcile(usize),
    /// Reconcile, but the operator stops between the ledger write and Tailscale.
    ReconcileCrash(usize),
    Delete(usize),
    /// The finalizer stripped and the object deleted (no admission policy in the way).
    ForceDelete(usize),
    Sweep,
    /// The directory marks the person offboarded.
    Offboard,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => (0..ROLES.len(), 0..6i64).prop_map(|(r, d)| Event::Create(r, d)),
        3 => (0..4i64).prop_map(Event::Tick),
        6 => (0..8usize).prop_map(Event::Reconcile),
        1 => (0..8usize).prop_map(Event::ReconcileCrash),
        1 => (0..8usize).prop_map(Event::Delete),
        1 => (0..8usize).prop_map(Event::ForceDelete),
        3 => Just(Event::Sweep),
        1 => Just(Event::Offboard),
    ]
}

struct Grant {
    uid: String,
    spec: AccessGrantSpec,
    phase: Option<GrantPhase>,
    expires: Option<Timestamp>,
    deleting: bool,
    exists: bool,
}

struct World {
    now: Timestamp,
    role: String,
    ledger: GrantLedgerSpec,
    grants: Vec<Grant>,
    policy: AccessPolicySpec,
    offboarded: bool,
}

fn policy() -> AccessPolicySpec {
    let roles: Vec<_> = ROLES[1..]
        .iter()
        .map(|r| json!({"role": r, "terms": {"maxDuration": "1h", "approvalRequired": false, "standing": true}}))
        .collect();
    serde_json::from_value(json!({"integrationRef": {"name": "t"}, "grantable": {"roles": roles}}))
        .expect("policy")
}

impl World {
    fn held(&self, uid: &str) -> bool {
        ledger::hold(&self.ledger, uid).is_some()
    }

    /// The grant reconciler: decide, carry the step out (Tailscale changes included unless the
    /// operator stops first), record the phase.
    fn reconcile(&mut self, i: usize, crash: bool) {
        let Some(g) = self.grants.get(i).filter(|g| g.exists) else {
            return;
        };
        let state = GrantState {
            uid: &g.uid,
            spec: &g.spec,
            phase: g.phase,
            expires_at: g.expires,
            ended_at: None,
            deleting: g.deleting,
            held: self.held(&g.uid),
            beneficiary: if self.offboarded {
                Beneficiary::Offboarded
            } else {
                Beneficiary::Person
            },
            approvals: Ok(()),
            approved_unproven: false,
            requested_unproven: false,
            approved_before_policy: false,
            decided_while_exposed: false,
            approver: super::lifecycle::Approver::NotInDirectory,
            removed_in_tailscale: false,
        };
        let step = decide(&state, Some(&self.policy), self.now);
        let uid = g.uid.clone();
        match step {
            Step::Activate {
                access, duration, ..
            } => {
                let PlannedAccess::Role { role } = access else {
                    return;
                };
                let expires = match ledger::hold(&self.ledger, &uid) {
                    Some(h) => h.expires_at.as_ref().map(|t| t.0),
                    None => {
                        duration.map(|d| self.now + SignedDuration::try_from(d).unwrap_or_default())
                    }
                };
                let hold = Hold {
                    grant: format!("g{i}"),
                    role: Some(role),
                    expires_at: expires.map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
                    ..hold(&uid, self.now)
                };
                match ledger::start_role(&mut self.ledger, hold, &self.role) {
                    Ok(start) => {
                        if crash {
                            return;
                        }
                        if let Some(to) = start.set {
                            self.role = to;
                        }
                        ledger::role_applied(&mut self.ledger, "u1");
                        let g = &mut self.grants[i];
                        g.phase = Some(GrantPhase::Active);
                        g.expires = expires;
                    }
                    Err(ledger::RoleRefusal::NotARaise { .. }) => {
                        self.grants[i].phase = Some(GrantPhase::Denied)
                    }
                    Err(ledger::RoleRefusal::Conflicts { .. }) => {
                        self.grants[i].phase = Some(GrantPhase::Pending)
                    }
                }
            }
            Step::Revoke { phase, cause } => {
                if cause == Revocation::PersonOffboarded {
                    assert!(
                        self.offboarded,
                        "revoked for offboarding a person who works here"
                    );
                }
                // As the operator does: only a hold that exists is ended and settled.
                if self.held(&uid) {
                    let end = ledger::end_role(&mut self.ledger, &uid, Some(&self.role));
                    if crash {
                        return;
                    }
                    if let Some(to) = end.set {
                        self.role = to;
                    }
                    ledger::role_settled(&mut self.ledger, "u1");
                }
                let g = &mut self.grants[i];
                g.phase = Some(match g.phase {
                    Some(p @ (GrantPhase::Denied | GrantPhase::Failed)) => p,
                    _ => phase,
                });
                if g.deleting {
                    g.exists = false;
                }
            }
            Step::Done if self.grants[i].deleting => self.grants[i].exists = false,
            Step::Deny { .. } => self.grants[i].phase = Some(GrantPhase::Denied),
            _ => {}
        }
    }

    /// The sweeper: end holds that expired or whose grant ended or is gone; finish role changes
    /// an operator stop interrupted.
    fn sweep(&mut self) {
        let due: Vec<String> = self
            .ledger
            .holds
            .iter()
            .filter(|h| {
                let grant = self
                    .grants
                    .iter()
                    .find(|g| g.uid == h.grant_uid && g.exists);
                ledger::lapsed(h, self.now, SignedDuration::ZERO)
                    || grant.is_none_or(|g| {
                        matches!(
                            g.phase,
                            Some(
                                GrantPhase::Expired
                                    | GrantPhase::Revoked
                                    | GrantPhase::Denied
                                    | GrantPhase::Failed
                            )
                        )
                    })
            })
            .map(|h| h.grant_uid.clone())
            .collect();
        for uid in due {
            let end = ledger::end_role(&mut self.ledger, &uid, Some(&self.role));
            if let Some(to) = end.set {
                self.role = to;
            }
            ledger::role_settled(&mut self.ledger, "u1");
        }
        for (user, set, before) in ledger::unfinished_roles(&self.ledger) {
            if self.role == before {
                self.role = set;
            }
            ledger::role_settled(&mut self.ledger, &user);
        }
    }

    fn quiet(&self) -> bool {
        ledger::unfinished_roles(&self.ledger).is_empty()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_history_ends_at_the_baseline_and_never_exceeds_what_is_held(
        baseline in 0..ROLES.len(),
        events in proptest::collection::vec(event(), 1..60),
    ) {
        let start = Timestamp::from_second(1_800_000_000).expect("time");
        let mut w = World {
            now: start,
            role: ROLES[baseline].to_string(),
            ledger: GrantLedgerSpec::default(),
            grants: Vec::new(),
            policy: policy(),
            offboarded: false,
        };
        let baseline = ROLES[baseline].to_string();
        for e in events {
            match e {
                Event::Create(r, secs) => {
                    let i = w.grants.len();
                    let duration = (secs > 0).then(|| format!("{secs}s"));
                    let spec: AccessGrantSpec = serde_json::from_value(json!({
                        "policyRef": {"name": "p"}, "user": "alice@example.com",
                        "access": {"role": ROLES[r]}, "duration": duration,
                        "reason": "r", "requestedBy": "alice"
                    })).expect("spec");
                    w.grants.push(Grant { uid: format!("uid-{i}"), spec, phase: None, expires: None, deleting: false, exists: true });
                }
                Event::Tick(secs) => w.now += SignedDuration::from_secs(secs),
                Event::Reconcile(i) => w.reconcile(i, false),
                Event::ReconcileCrash(i) => w.reconcile(i, true),
                Event::Delete(i) => if let Some(g) = w.grants.get_mut(i) { g.deleting = true },
                Event::ForceDelete(i) => if let Some(g) = w.grants.get_mut(i) { g.exists = false },
                Event::Sweep => w.sweep(),
                Event::Offboard => w.offboarded = true,
            }
            if w.quiet() {
                let mut roles: Vec<&str> = vec![baseline.as_str()];
                roles.extend(w.ledger.holds.iter().filter_map(|h| h.role.as_deref()));
                // Never more than the baseline and what the ledger holds (a hold whose grant is
                // still activating may not be in effect yet), never less than the baseline.
                let ceiling = least_upper_bound(roles.iter().copied()).expect("held roles form a chain");
                prop_assert!(includes(&ceiling, &w.role), "{} exceeds {}: {:?}", w.role, ceiling, w.ledger.holds);
                prop_assert!(includes(&w.role, &baseline), "{} below the baseline {}", w.role, baseline);
                for g in w.grants.iter().filter(|g| g.exists && !g.deleting && g.phase == Some(GrantPhase::Active)) {
                    // (A standing grant has no expiry; one being ended for its person leaving
                    // may be part way.)
                    if !w.offboarded && g.expires.is_none_or(|at| w.now < at) {
                        prop_assert!(w.held(&g.uid), "Active and unexpired but not held: {}", g.uid);
                        let granted = g.spec.access.role.map(super::role_name).unwrap_or_default();
                        prop_assert!(includes(&w.role, &granted), "{} not in effect under {}", granted, w.role);
                    }
                }
            }
        }
        // The person leaves (standing grants end only so, or by deletion) and time passes beyond
        // every expiry, again and again; the operator runs each time.
        w.offboarded = true;
        for _ in 0..w.grants.len() + 2 {
            w.now += SignedDuration::from_hours(2);
            w.sweep();
            for i in 0..w.grants.len() { w.reconcile(i, false); }
        }
        prop_assert_eq!(&w.role, &baseline);
        prop_assert!(w.ledger.holds.is_empty() && w.ledger.roles.is_empty(), "{:?}", w.ledger);
        prop_assert!(w.grants.iter().all(|g| !g.exists || g.phase != Some(GrantPhase::Active)));
    }
}
