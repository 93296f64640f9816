//! The ledger's rules, by example and by property: random interleavings of overlapping role and
//! posture grants, people changing things, interrupted (crashed) starts and ends in any order.

use super::*;
use crate::api::{HeldPosture, Hold};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;
use serde_json::json;

/// Every Tailscale role a grant may confer, and `member`.
pub(crate) const ROLES: [&str; 6] = [
    "member",
    "auditor",
    "it-admin",
    "network-admin",
    "admin",
    "billing-admin",
];

fn at(s: i64) -> Time {
    Time(Timestamp::from_second(1_800_000_000 + s).expect("time"))
}

/// A hold of alice's (user `u1`) for grant `uid`, holding nothing yet.
pub(crate) fn hold(uid: &str, expires: Timestamp) -> Hold {
    Hold {
        grant: format!("grant-{uid}"),
        grant_uid: uid.into(),
        user_id: "u1".into(),
        login: "alice@example.com".into(),
        expires_at: Some(Time(expires)),
        role: None,
        superseded: false,
        entries: None,
        posture: None,
    }
}

fn role_hold(uid: &str, role: &str, expires: i64) -> Hold {
    Hold {
        role: Some(role.into()),
        ..hold(uid, at(expires).0)
    }
}

fn posture_hold(uid: &str, expires: i64) -> Hold {
    Hold {
        posture: Some(HeldPosture {
            key: "custom:jit".into(),
            value: "true".into(),
            devices: vec![],
        }),
        ..hold(uid, at(expires).0)
    }
}

/// Start a role grant and apply what it asks, as the reconciler does.
fn start(ledger: &mut GrantLedgerSpec, role: &mut String, uid: &str, granted: &str) -> bool {
    match start_role(ledger, role_hold(uid, granted, 100), role) {
        Ok(s) => {
            if let Some(to) = s.set {
                *role = to;
            }
            role_applied(ledger, "u1");
            true
        }
        Err(_) => false,
    }
}

fn end(ledger: &mut GrantLedgerSpec, role: &mut String, uid: &str) -> RoleEnd {
    let e = end_role(ledger, uid, Some(role));
    if let Some(to) = &e.set {
        *role = to.clone();
    }
    role_settled(ledger, "u1");
    e
}

/// What the sweeper does after a restart: finish the role changes the ledger announced.
fn sweep(ledger: &mut GrantLedgerSpec, role: &mut String) {
    for (user, set, before) in unfinished_roles(ledger) {
        if *role == before {
            *role = set;
        }
        role_settled(ledger, &user);
    }
}

#[test]
fn overlapping_grants_of_different_roles_end_at_the_baseline() {
    // The finding: admin, then auditor while admin is active; both end; admin stayed for ever.
    let mut ledger = GrantLedgerSpec::default();
    let mut role = "member".to_string();
    assert!(start(&mut ledger, &mut role, "a", "admin"));
    assert_eq!(role, "admin");
    assert!(start(&mut ledger, &mut role, "b", "auditor"));
    assert_eq!(role, "admin", "a lesser grant never lowers");
    end(&mut ledger, &mut role, "a");
    assert_eq!(role, "auditor", "the remaining grant is what is in effect");
    end(&mut ledger, &mut role, "b");
    assert_eq!(role, "member");
    assert!(ledger.roles.is_empty() && ledger.holds.is_empty());
}

#[test]
fn a_grant_never_lowers_a_role_a_person_set() {
    // The finding: a self-service auditor grant demoted the break-glass admin.
    let mut ledger = GrantLedgerSpec::default();
    let mut role = "admin".to_string();
    let s = start_role(&mut ledger, role_hold("a", "auditor", 100), &role).expect("start");
    assert_eq!(s.set, None);
    assert!(s.already_held);
    end(&mut ledger, &mut role, "a");
    assert_eq!(role, "admin");
}

#[test]
fn a_role_that_would_swap_another_is_refused_or_waits() {
    let mut ledger = GrantLedgerSpec::default();
    let role = "network-admin".to_string();
    assert!(matches!(
        start_role(&mut ledger, role_hold("a", "it-admin", 100), &role),
        Err(RoleRefusal::NotARaise { .. })
    ));
    let mut role = "member".to_string();
    assert!(start(&mut ledger, &mut role, "a", "it-admin"));
    match start_role(&mut ledger, role_hold("b", "network-admin", 100), &role) {
        Err(RoleRefusal::Conflicts { grant, held }) => {
            assert_eq!((grant.as_str(), held.as_str()), ("grant-a", "it-admin"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ledger.holds.len(), 1, "a refused grant holds nothing");
}

#[test]
fn a_person_changing_the_role_meanwhile_wins() {
    let mut ledger = GrantLedgerSpec::default();
    let mut role = "member".to_string();
    assert!(start(&mut ledger, &mut role, "a", "admin"));
    role = "it-admin".into(); // a person, in the console
    let e = end(&mut ledger, &mut role, "a");
    assert_eq!(e.changed_by_person.as_deref(), Some("it-admin"));
    assert_eq!(role, "it-admin");
    assert!(ledger.roles.is_empty());
}

#[test]
fn a_crash_between_the_ledger_and_tailscale_is_not_taken_for_a_person() {
    let mut ledger = GrantLedgerSpec::default();
    let role = "member".to_string();
    // The ledger is written, then the operator dies before Tailscale is told.
    let s = start_role(&mut ledger, role_hold("a", "admin", 100), &role).expect("start");
    assert_eq!(s.set.as_deref(), Some("admin"));
    // Restarted: the same grant starts again and the baseline is still member.
    let mut role = role;
    assert!(start(&mut ledger, &mut role, "a", "admin"));
    assert_eq!(role, "admin");
    assert_eq!(ledger.roles[0].baseline, "member");
    end(&mut ledger, &mut role, "a");
    assert_eq!(role, "member");
}

#[test]
fn a_refused_change_leaves_no_trace() {
    let mut ledger = GrantLedgerSpec::default();
    start_role(&mut ledger, role_hold("a", "admin", 100), "member").expect("start");
    role_refused(&mut ledger, "a");
    assert_eq!(ledger, GrantLedgerSpec::default());
}

#[test]
fn posture_gives_back_what_a_person_had_set() {
    let mut ledger = GrantLedgerSpec::default();
    let human = DeviceAttribute {
        device_id: "d1".into(),
        current: Some((json!("false"), Some("2030-01-01T00:00:00Z".into()))),
    };
    let changes = start_posture(
        &mut ledger,
        posture_hold("a", 100),
        std::slice::from_ref(&human),
    );
    assert_eq!(
        changes,
        vec![PostureChange::Set {
            device_id: "d1".into(),
            value: json!("true"),
            expiry: Some(at(100).0.to_string())
        }]
    );
    let now = DeviceAttribute {
        device_id: "d1".into(),
        current: Some((json!("true"), None)),
    };
    assert_eq!(
        end_posture(&mut ledger, "a", &[now]),
        vec![PostureChange::Set {
            device_id: "d1".into(),
            value: json!("false"),
            expiry: Some("2030-01-01T00:00:00Z".into())
        }]
    );
    assert!(ledger.attributes.is_empty());
}

#[test]
fn posture_a_person_already_set_is_never_touched() {
    let mut ledger = GrantLedgerSpec::default();
    let same = DeviceAttribute {
        device_id: "d1".into(),
        current: Some((json!("true"), None)),
    };
    assert!(start_posture(
        &mut ledger,
        posture_hold("a", 100),
        std::slice::from_ref(&same)
    )
    .is_empty());
    assert!(end_posture(&mut ledger, "a", &[same]).is_empty());
}

#[test]
fn posture_overlaps_end_with_the_last_and_take_the_latest_expiry() {
    let mut ledger = GrantLedgerSpec::default();
    let absent = DeviceAttribute {
        device_id: "d1".into(),
        current: None,
    };
    start_posture(
        &mut ledger,
        posture_hold("a", 100),
        std::slice::from_ref(&absent),
    );
    let second = start_posture(
        &mut ledger,
        posture_hold("b", 200),
        std::slice::from_ref(&absent),
    );
    assert!(
        matches!(&second[..], [PostureChange::Set { expiry: Some(e), .. }] if *e == at(200).0.to_string())
    );
    let set = DeviceAttribute {
        device_id: "d1".into(),
        current: Some((json!("true"), None)),
    };
    assert!(end_posture(&mut ledger, "a", std::slice::from_ref(&set)).is_empty());
    assert_eq!(
        end_posture(&mut ledger, "b", &[set]),
        vec![PostureChange::Delete {
            device_id: "d1".into()
        }]
    );
}

/// A hold of a standing grant: no expiry.
fn standing_posture_hold(uid: &str) -> Hold {
    Hold {
        expires_at: None,
        ..posture_hold(uid, 0)
    }
}

#[test]
fn a_standing_hold_never_lapses_yet_the_sweeper_keeps_looking_while_anything_is_held() {
    let grace = jiff::SignedDuration::from_secs(1);
    let recheck = std::time::Duration::from_secs(5);
    let mut ledger = GrantLedgerSpec::default();
    assert_eq!(next_look(&ledger, at(0).0, grace, recheck), None);
    let standing = standing_posture_hold("s");
    ledger.holds.push(standing.clone());
    for later in [0, 86_400, 100 * 365 * 86_400] {
        assert!(!lapsed(&standing, at(later).0, grace));
    }
    assert_eq!(earliest_expiry(&ledger), None);
    // A grant deleted past its finalizer is looked for within seconds, expiry or not.
    assert_eq!(next_look(&ledger, at(0).0, grace, recheck), Some(recheck));
    // A timed hold beside it: woken at its expiry (plus the grace), never later than recheck.
    ledger.holds.push(posture_hold("t", 2));
    assert_eq!(earliest_expiry(&ledger), Some(at(2).0));
    assert_eq!(
        next_look(&ledger, at(0).0, grace, recheck),
        Some(std::time::Duration::from_secs(3))
    );
    assert_eq!(
        next_look(&ledger, at(10).0, grace, recheck),
        Some(std::time::Duration::ZERO)
    );
    assert!(lapsed(&ledger.holds[1], at(3).0, grace));
    assert!(!lapsed(&ledger.holds[1], at(2).0, grace));
}

#[test]
fn posture_held_by_a_standing_grant_has_no_tailscale_expiry_until_only_timed_grants_hold_it() {
    let mut ledger = GrantLedgerSpec::default();
    let absent = DeviceAttribute {
        device_id: "d1".into(),
        current: None,
    };
    let timed = start_posture(
        &mut ledger,
        posture_hold("t", 100),
        std::slice::from_ref(&absent),
    );
    assert!(
        matches!(&timed[..], [PostureChange::Set { expiry: Some(e), .. }] if *e == at(100).0.to_string())
    );
    let standing = start_posture(
        &mut ledger,
        standing_posture_hold("s"),
        std::slice::from_ref(&absent),
    );
    assert!(
        matches!(&standing[..], [PostureChange::Set { expiry: None, .. }]),
        "{standing:?}"
    );
    let set = DeviceAttribute {
        device_id: "d1".into(),
        current: Some((json!("true"), None)),
    };
    // The standing grant ends first: the timed one's expiry is Tailscale's again.
    assert_eq!(
        end_posture(&mut ledger, "s", std::slice::from_ref(&set)),
        vec![PostureChange::Set {
            device_id: "d1".into(),
            value: json!("true"),
            expiry: Some(at(100).0.to_string()),
        }]
    );
    // Unless a person changed the value meanwhile: then it is theirs, left as it is.
    start_posture(
        &mut ledger,
        standing_posture_hold("s2"),
        std::slice::from_ref(&set),
    );
    let changed = DeviceAttribute {
        device_id: "d1".into(),
        current: Some((json!("false"), None)),
    };
    assert!(end_posture(&mut ledger, "s2", std::slice::from_ref(&changed)).is_empty());
    assert_eq!(
        end_posture(&mut ledger, "t", &[changed]),
        vec![PostureChange::Left {
            device_id: "d1".into(),
            current: json!("false")
        }]
    );
    assert!(ledger.holds.is_empty() && ledger.attributes.is_empty());
}

#[derive(Clone, Debug)]
enum Op {
    Start(usize, usize),
    /// Start, die before Tailscale is told, start again after a restart.
    StartCrash(usize, usize),
    End(usize),
    /// End, die before Tailscale is told; after a restart the sweeper finishes the change.
    EndCrash(usize),
    Person(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, 0..ROLES.len()).prop_map(|(g, r)| Op::Start(g, r)),
        1 => (0..4usize, 0..ROLES.len()).prop_map(|(g, r)| Op::StartCrash(g, r)),
        4 => (0..4usize).prop_map(Op::End),
        1 => (0..4usize).prop_map(Op::EndCrash),
        1 => (0..ROLES.len()).prop_map(Op::Person),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the interleaving: a start never lowers the role; while grants are active the
    /// user holds exactly the least role including the baseline (or what a person last set) and
    /// every grant in effect; once all have ended the user holds the baseline or the person's
    /// role, and the ledger is empty.
    #[test]
    fn roles_are_the_baseline_plus_what_is_active(start_role_index in 0..ROLES.len(), ops in proptest::collection::vec(op(), 1..40)) {
        let mut ledger = GrantLedgerSpec::default();
        let mut role = ROLES[start_role_index].to_string();
        let mut floor = role.clone();
        // grant -> role, for grants in effect (not superseded by a person's change)
        let mut active: std::collections::BTreeMap<usize, String> = Default::default();
        let mut superseded: std::collections::BTreeSet<usize> = Default::default();
        // The role after the ledger's last operation: a person's changes in between are seen
        // (as their net effect) at the next one.
        let mut observed = role.clone();
        for op in ops {
            let executes = match op {
                Op::Start(g, _) | Op::StartCrash(g, _) => !active.contains_key(&g) && !superseded.contains(&g),
                Op::End(g) | Op::EndCrash(g) => active.contains_key(&g) || superseded.contains(&g),
                Op::Person(_) => false,
            };
            if executes && role != observed {
                floor = role.clone();
                observed = role.clone();
                superseded.extend(active.keys().copied());
                active.clear();
            }
            match op {
                Op::Start(g, r) | Op::StartCrash(g, r) => {
                    if active.contains_key(&g) || superseded.contains(&g) { continue; }
                    let granted = ROLES[r];
                    let uid = g.to_string();
                    if let Op::StartCrash(..) = op {
                        let _ = start_role(&mut ledger, role_hold(&uid, granted, 100), &role);
                    }
                    let before = role.clone();
                    let mut in_effect: Vec<&str> = vec![floor.as_str()];
                    in_effect.extend(active.values().map(String::as_str));
                    let fits = includes(granted, &floor) || includes(&floor, granted);
                    let chain = in_effect.iter().all(|r| includes(r, granted) || includes(granted, r));
                    let expect_ok = fits && chain;
                    let ok = start(&mut ledger, &mut role, &uid, granted);
                    prop_assert_eq!(ok, expect_ok, "start {} of {} from {}", uid, granted, before);
                    prop_assert!(includes(&role, &before), "{} lowered to {}", before, role);
                    if ok { active.insert(g, granted.to_string()); }
                }
                Op::End(g) | Op::EndCrash(g) => {
                    if !active.contains_key(&g) && !superseded.contains(&g) { continue; }
                    if let Op::EndCrash(_) = op {
                        let _ = end_role(&mut ledger, &g.to_string(), Some(&role));
                        sweep(&mut ledger, &mut role);
                    } else {
                        end(&mut ledger, &mut role, &g.to_string());
                    }
                    active.remove(&g);
                    superseded.remove(&g);
                }
                Op::Person(r) => {
                    role = ROLES[r].to_string();
                    continue;
                }
            }
            observed = role.clone();
            let mut roles: Vec<&str> = vec![floor.as_str()];
            roles.extend(active.values().map(String::as_str));
            let expected = least_upper_bound(roles.iter().copied()).expect("a chain");
            prop_assert_eq!(&role, &expected);
        }
        if role != observed {
            floor = role.clone();
        }
        for g in active.keys().chain(superseded.iter()).copied().collect::<Vec<_>>() {
            end(&mut ledger, &mut role, &g.to_string());
        }
        prop_assert_eq!(&role, &floor);
        prop_assert!(ledger.holds.is_empty(), "{:?}", ledger.holds);
        prop_assert!(ledger.roles.is_empty(), "{:?}", ledger.roles);
    }

    /// Posture on one device: while any grant is in effect (and no person changed it since) the
    /// granted value is set with the latest expiry; after the last ends, what a person last set
    /// (or nothing) is back.
    #[test]
    fn posture_comes_back_as_a_person_left_it(initial in proptest::option::of(0..3usize), ops in proptest::collection::vec((0..3usize, 0..4usize), 1..30)) {
        let values = [json!("false"), json!(7), json!("true")];
        let mut ledger = GrantLedgerSpec::default();
        let mut current: Option<Value> = initial.map(|i| values[i].clone());
        let mut persons = current.clone();
        let mut active: std::collections::BTreeSet<usize> = Default::default();
        let mut changed_meanwhile = false;
        for (g, action) in ops {
            let device = DeviceAttribute { device_id: "d1".into(), current: current.clone().map(|v| (v, None)) };
            match action {
                0 | 1 => {
                    if active.contains(&g) { continue; }
                    for c in start_posture(&mut ledger, posture_hold(&g.to_string(), 100 + g as i64), &[device]) {
                        if let PostureChange::Set { value, .. } = c { current = Some(value); }
                    }
                    changed_meanwhile = false;
                    active.insert(g);
                    prop_assert_eq!(current.clone(), Some(json!("true")));
                }
                2 => {
                    if !active.remove(&g) { continue; }
                    for c in end_posture(&mut ledger, &g.to_string(), &[device]) {
                        match c {
                            PostureChange::Set { value, .. } => current = Some(value),
                            PostureChange::Delete { .. } => current = None,
                            PostureChange::Left { .. } => prop_assert!(changed_meanwhile),
                        }
                    }
                }
                _ => {
                    let v = values[g].clone();
                    // A person setting the granted value itself during a grant cannot be told
                    // from the grant: no change anyone can see.
                    if !active.is_empty() && v == json!("true") { continue; }
                    current = Some(v.clone());
                    persons = Some(v);
                    changed_meanwhile = !active.is_empty();
                }
            }
        }
        for g in active.clone() {
            let device = DeviceAttribute { device_id: "d1".into(), current: current.clone().map(|v| (v, None)) };
            for c in end_posture(&mut ledger, &g.to_string(), &[device]) {
                match c {
                    PostureChange::Set { value, .. } => current = Some(value),
                    PostureChange::Delete { .. } => current = None,
                    PostureChange::Left { .. } => {}
                }
            }
        }
        prop_assert_eq!(current, persons);
        prop_assert!(ledger.attributes.is_empty() && ledger.holds.is_empty());
    }
}
