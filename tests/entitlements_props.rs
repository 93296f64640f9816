//! Property tests for the entitlements inventory: on random tailnets (users of every role and
//! type) and random policy files (groups, grants, legacy acls and SSH rules whose `src` mixes
//! logins, groups, autogroups, wildcards, tags and addresses), what the inventory says each user
//! holds is exactly what the simulator's own policy evaluation says applies to them, and the
//! holder counts agree with the per-user view.

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::{json, Value as Json};
use tailkeeper::entitlements::{build, Attribution, Kind, Member, Resolver};
use tailkeeper::policy_file::document;
use tailscale_sim::policy::{access_of, parse_hujson, parse_policy, Directory};

const LOGINS: [&str; 6] = [
    "alice@example.com",
    "bob@example.com",
    "carol@example.com",
    "dave@example.com",
    "erin@example.com",
    "frank@example.com",
];
const ROLES: [&str; 7] = [
    "owner",
    "admin",
    "it-admin",
    "network-admin",
    "billing-admin",
    "auditor",
    "member",
];
const GROUPS: [&str; 3] = ["group:eng", "group:prod", "group:ops"];
const OTHER_SOURCES: [&str; 13] = [
    "*",
    "autogroup:member",
    "autogroup:shared",
    "autogroup:owner",
    "autogroup:admin",
    "autogroup:it-admin",
    "autogroup:network-admin",
    "autogroup:billing-admin",
    "autogroup:auditor",
    "autogroup:danger-all",
    "tag:ci",
    "100.64.0.1",
    "ghost@example.com",
];

#[derive(Clone, Debug)]
struct Tailnet {
    /// (login, role, shared)
    users: Vec<(String, String, bool)>,
    groups: Vec<(String, Vec<String>)>,
    /// (section, src, marked)
    rules: Vec<(usize, Vec<String>, bool)>,
}

fn source() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(LOGINS.to_vec()).prop_map(str::to_string),
        proptest::sample::select(GROUPS.to_vec()).prop_map(str::to_string),
        proptest::sample::select(OTHER_SOURCES.to_vec()).prop_map(str::to_string),
    ]
}

fn tailnet() -> impl Strategy<Value = Tailnet> {
    let users =
        proptest::sample::subsequence(LOGINS.to_vec(), 1..=LOGINS.len()).prop_flat_map(|logins| {
            let n = logins.len();
            (
                Just(logins),
                proptest::collection::vec(proptest::sample::select(ROLES.to_vec()), n),
                proptest::collection::vec(proptest::bool::weighted(0.2), n),
            )
        });
    let groups = proptest::collection::vec(
        proptest::sample::subsequence(
            LOGINS
                .iter()
                .copied()
                .chain(["ghost@example.com"])
                .collect::<Vec<_>>(),
            0..=4,
        ),
        GROUPS.len(),
    );
    let rules = proptest::collection::vec(
        (
            0usize..3,
            proptest::collection::vec(source(), 1..=3),
            proptest::bool::weighted(0.3),
        ),
        0..=10,
    );
    (users, groups, rules).prop_map(|((logins, roles, shared), groups, rules)| Tailnet {
        users: logins
            .into_iter()
            .zip(roles)
            .zip(shared)
            .map(|((login, role), shared)| {
                // Shared users are members of another tailnet: they hold no role here.
                let role = if shared { "member" } else { role };
                (login.to_string(), role.to_string(), shared)
            })
            .collect(),
        groups: GROUPS
            .iter()
            .zip(groups)
            .map(|(g, members)| {
                (
                    g.to_string(),
                    members.into_iter().map(str::to_string).collect(),
                )
            })
            .collect(),
        rules,
    })
}

/// The policy file as HuJSON, with some items marked and comments in between.
fn policy_text(tailnet: &Tailnet) -> String {
    let mut groups = String::new();
    for (name, members) in &tailnet.groups {
        let members: Vec<String> = members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                if i % 2 == 1 {
                    format!("{} /* tailkeeper:east */", json!(m))
                } else {
                    json!(m).to_string()
                }
            })
            .collect();
        groups.push_str(&format!("    {}: [{}],\n", json!(name), members.join(", ")));
    }
    let mut sections: [Vec<String>; 3] = Default::default();
    for (section, src, marked) in &tailnet.rules {
        let rule: Json = match section {
            0 => json!({"src": src, "dst": ["tag:web"], "ip": ["tcp:443"]}),
            1 => json!({"action": "accept", "src": src, "dst": ["tag:db:5432"]}),
            _ => json!({"action": "check", "src": src, "dst": ["tag:prod"], "users": ["root"]}),
        };
        let marker = if *marked {
            " /* tailkeeper:east */"
        } else {
            ""
        };
        sections[*section].push(format!("    {rule},{marker} // rule\n"));
    }
    format!(
        "// generated\n{{\n  \"groups\": {{\n{groups}  }},\n  \"grants\": [\n{}  ],\n  \"ACLs\": [\n{}  ],\n  \"ssh\": [\n{}  ],\n}}\n",
        sections[0].concat(),
        sections[1].concat(),
        sections[2].concat()
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_inventory_agrees_with_the_simulators_evaluation(tailnet in tailnet()) {
        let text = policy_text(&tailnet);
        let policy = parse_policy(&parse_hujson(&text).expect("simulator parses"))
            .expect("simulator accepts the policy");
        let mut directory = Directory::new();
        for (login, role, shared) in &tailnet.users {
            directory.insert(login, role, if *shared { "shared" } else { "member" });
        }
        let members: Vec<Member> = tailnet
            .users
            .iter()
            .map(|(login, role, shared)| Member {
                login: login.clone(),
                role: role.clone(),
                status: "active".into(),
                user_type: if *shared { "shared" } else { "member" }.into(),
                person: None,
                role_granted_by: Vec::new(),
            })
            .collect();
        let inventory = build(members, &document(&text).expect("operator parses"), &Attribution::default(), Vec::new());
        let resolver = Resolver::new(&inventory);

        let mut total = 0;
        for (login, role, _) in &tailnet.users {
            let expected = access_of(&policy, &directory, login);
            let holdings = resolver.of_user(login);
            total += holdings.len();
            let mut groups = BTreeSet::new();
            let mut rules: [BTreeSet<usize>; 3] = Default::default();
            let mut roles = Vec::new();
            for holding in &holdings {
                let entitlement = inventory
                    .entitlements
                    .iter()
                    .find(|e| e.id == holding.entitlement)
                    .expect("holdings name inventory entitlements");
                match entitlement.kind {
                    // No posture attributes in these tailnets.
                    Kind::Posture => prop_assert!(false, "no posture was given"),
                    Kind::Role => roles.push(entitlement.id.clone()),
                    Kind::Group => { groups.insert(entitlement.id.clone()); }
                    Kind::Grant | Kind::Acl | Kind::Ssh => {
                        // Identical rules are one entitlement written in several places.
                        for location in &entitlement.locations {
                            let (section, index) = location
                                .trim_end_matches(']')
                                .split_once('[')
                                .expect("section[index]");
                            let slot = match section { "grants" => 0, "acls" => 1, _ => 2 };
                            rules[slot].insert(index.parse::<usize>().expect("index"));
                        }
                    }
                }
            }
            prop_assert_eq!(roles, vec![format!("role:{role}")]);
            prop_assert_eq!(&groups, &expected.groups, "groups of {}", login);
            prop_assert_eq!(&rules[0], &expected.grants, "grants of {} in\n{}", login, text);
            prop_assert_eq!(&rules[1], &expected.acls, "acls of {} in\n{}", login, text);
            prop_assert_eq!(&rules[2], &expected.ssh, "ssh of {} in\n{}", login, text);
        }
        let counted: usize = inventory.entitlements.iter().map(|e| e.holders).sum();
        prop_assert_eq!(counted, total, "holder counts agree with the per-user view");
        prop_assert_eq!(resolver.all().count(), total);
    }
}
