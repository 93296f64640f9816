//! What `Enforce` mode would do about failing checks, decided from plain data: suspend the
//! accounts of offboarded people, and lower roles that a person's organisational role does not
//! allow. Pure: the policy reconciler carries the plan out.
//!
//! Safety first, because a broken directory must never lock out the tailnet:
//! - nothing is planned for accounts the directory does not know (check 1 only reports them),
//!   for shared users (they belong to another tailnet), for exempt accounts (unless offboarded),
//!   for roles covered by an active grant, or for the owner;
//! - a role is only ever lowered, to the least privileged role the organisational role allows
//!   (`member` when it allows none or is not listed);
//! - when the plan would touch more than `max_affected_percent` of the members, nothing is done
//!   and the plan says why (the blast-radius limit).

use std::collections::HashSet;

use super::checks::{allowed_roles, role_key, Inputs};
use super::directory::{login_key, EmploymentStatus};

/// Tailscale roles from least to most privileged.
const PRIVILEGE: [&str; 7] = [
    "member",
    "auditor",
    "billing-admin",
    "network-admin",
    "it-admin",
    "admin",
    "owner",
];

fn rank(role: &str) -> Option<usize> {
    PRIVILEGE.iter().position(|r| *r == role_key(role))
}

/// One change to make in Tailscale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remedy {
    /// Suspend the account of an offboarded person.
    Suspend { user_id: String, login: String },
    /// Lower a role to one the organisational role allows.
    LowerRole {
        user_id: String,
        login: String,
        from: String,
        to: String,
    },
}

impl Remedy {
    pub fn login(&self) -> &str {
        match self {
            Remedy::Suspend { login, .. } | Remedy::LowerRole { login, .. } => login,
        }
    }
}

/// The remedies for one evaluation, or why none may be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub remedies: Vec<Remedy>,
    /// Set when the blast-radius limit refuses the whole plan.
    pub refused: Option<String>,
}

/// Plan the remedies for the failing checks of `inputs`.
pub fn plan(inputs: &Inputs, max_affected_percent: i32) -> Plan {
    let exempt: HashSet<String> = inputs
        .exemptions
        .iter()
        .map(|e| login_key(&e.login_name))
        .collect();
    let granted: HashSet<(String, String)> = inputs
        .active_role_grants
        .iter()
        .map(|g| (login_key(&g.login_name), role_key(&g.role)))
        .collect();
    let rules = allowed_roles(inputs.role_rules);
    let members: Vec<_> = inputs.users.iter().filter(|u| !u.is_shared()).collect();
    let mut remedies = Vec::new();
    for user in &members {
        if user.is_suspended() {
            continue;
        }
        let Some(person) = inputs.directory.lookup(&user.login_name) else {
            continue;
        };
        if person.status == EmploymentStatus::Offboarded {
            if role_key(&user.role) != "owner" {
                remedies.push(Remedy::Suspend {
                    user_id: user.id.clone(),
                    login: user.login_name.clone(),
                });
            }
            continue;
        }
        if exempt.contains(&login_key(&user.login_name)) {
            continue;
        }
        let may_hold = person
            .org_role
            .as_deref()
            .and_then(|r| rules.get(&role_key(r)));
        if may_hold.is_some_and(|m| m.contains_key(&role_key(&user.role)))
            || granted.contains(&(login_key(&user.login_name), role_key(&user.role)))
        {
            continue;
        }
        let target = PRIVILEGE
            .iter()
            .find(|r| may_hold.is_some_and(|m| m.contains_key(**r)))
            .copied()
            .unwrap_or("member");
        let (Some(current), Some(wanted)) = (rank(&user.role), rank(target)) else {
            continue;
        };
        // Only ever lower; the owner's role cannot be changed through the API.
        if wanted < current && role_key(&user.role) != "owner" {
            remedies.push(Remedy::LowerRole {
                user_id: user.id.clone(),
                login: user.login_name.clone(),
                from: user.role.clone(),
                to: target.to_string(),
            });
        }
    }
    let affected = remedies.len();
    let refused = if affected == 0 {
        None
    } else {
        let limit = i64::from(max_affected_percent.clamp(0, 100));
        let total = members.len().max(1) as u64;
        let share = (affected as u64 * 100).div_ceil(total) as i64;
        (share > limit).then(|| {
            format!(
                "enforcement would change {affected} of {} members ({share}%), more than maxAffectedPercent {limit}%: nothing was changed; check the directory, or raise the limit if this is intended",
                members.len()
            )
        })
    };
    Plan { remedies, refused }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::{Directory, Exemption, Person, RoleGrant, RoleRule, TailscaleUser};

    fn user(login: &str, role: &str, status: &str) -> TailscaleUser {
        TailscaleUser {
            id: format!("id-{login}"),
            login_name: login.into(),
            display_name: String::new(),
            role: role.into(),
            status: status.into(),
            user_type: "member".into(),
        }
    }

    fn person(login: &str, org_role: Option<&str>, offboarded: bool) -> Person {
        Person {
            login_names: vec![login.into()],
            display_name: None,
            org_role: org_role.map(str::to_string),
            status: if offboarded {
                EmploymentStatus::Offboarded
            } else {
                EmploymentStatus::Active
            },
            kubernetes_users: Vec::new(),
        }
    }

    fn rules() -> Vec<RoleRule> {
        vec![
            RoleRule {
                org_role: "engineer".into(),
                tailscale_roles: vec!["member".into()],
            },
            RoleRule {
                org_role: "it".into(),
                tailscale_roles: vec!["it-admin".into(), "auditor".into()],
            },
        ]
    }

    struct Case {
        users: Vec<TailscaleUser>,
        people: Vec<Person>,
        exemptions: Vec<Exemption>,
        grants: Vec<RoleGrant>,
    }

    impl Case {
        fn plan(&self, limit: i32) -> Plan {
            let directory = Directory::build([("t", self.people.clone())]).expect("directory");
            let rules = rules();
            plan(
                &Inputs {
                    users: &self.users,
                    directory: &directory,
                    role_rules: &rules,
                    exemptions: &self.exemptions,
                    active_role_grants: &self.grants,
                    integration_connected: true,
                },
                limit,
            )
        }
    }

    fn tailnet() -> Case {
        Case {
            users: vec![
                user("alice@x", "member", "active"),
                user("bob@x", "admin", "active"),
                user("carol@x", "member", "idle"),
                user("dave@x", "admin", "active"),
                user("erin@x", "admin", "active"),
                user("frank@x", "owner", "active"),
                user("gone@x", "member", "suspended"),
                user("glass@x", "admin", "active"),
                user("grace@x", "admin", "active"),
                user("ivan@x", "network-admin", "active"),
            ],
            people: vec![
                person("alice@x", Some("engineer"), false),
                person("bob@x", Some("engineer"), false),
                person("carol@x", Some("engineer"), true),
                person("erin@x", Some("it"), false),
                person("frank@x", Some("engineer"), false),
                person("gone@x", Some("engineer"), true),
                person("grace@x", Some("engineer"), false),
                person("ivan@x", None, false),
            ],
            exemptions: vec![Exemption {
                login_name: "glass@x".into(),
                reason: "break glass".into(),
            }],
            grants: vec![RoleGrant {
                login_name: "grace@x".into(),
                role: "admin".into(),
            }],
        }
    }

    #[test]
    fn remedies_suspend_offboarded_and_lower_disallowed_roles_only() {
        let plan = tailnet().plan(100);
        assert_eq!(plan.refused, None);
        assert_eq!(
            plan.remedies,
            vec![
                Remedy::LowerRole { user_id: "id-bob@x".into(), login: "bob@x".into(), from: "admin".into(), to: "member".into() },
                Remedy::Suspend { user_id: "id-carol@x".into(), login: "carol@x".into() },
                // it may hold auditor and it-admin: the least privileged is chosen.
                Remedy::LowerRole { user_id: "id-erin@x".into(), login: "erin@x".into(), from: "admin".into(), to: "auditor".into() },
                // no organisational role: lowered to member.
                Remedy::LowerRole { user_id: "id-ivan@x".into(), login: "ivan@x".into(), from: "network-admin".into(), to: "member".into() },
            ],
            "not dave (unknown), frank (owner), gone (already suspended), glass (exempt) or grace (grant)"
        );
    }

    #[test]
    fn an_offboarded_exempt_account_is_still_suspended() {
        let mut case = tailnet();
        case.people.push(person("glass@x", Some("engineer"), true));
        let plan = case.plan(100);
        assert!(plan
            .remedies
            .iter()
            .any(|r| matches!(r, Remedy::Suspend { login, .. } if login == "glass@x")));
    }

    #[test]
    fn the_blast_radius_limit_refuses_the_whole_plan() {
        // 4 remedies among 10 members is 40%.
        let plan = tailnet().plan(39);
        assert_eq!(plan.remedies.len(), 4, "the plan is still reported");
        let why = plan.refused.expect("refused");
        assert!(
            why.contains("4 of 10 members (40%)") && why.contains("maxAffectedPercent 39%"),
            "{why}"
        );
        assert_eq!(tailnet().plan(40).refused, None);
        // A directory that lost everyone's org role must not demote the whole tailnet.
        let mut broken = tailnet();
        for p in &mut broken.people {
            p.org_role = None;
        }
        assert!(broken.plan(10).refused.is_some());
    }

    #[test]
    fn shared_users_and_unknown_roles_are_left_alone() {
        let mut case = tailnet();
        for u in &mut case.users {
            if u.login_name == "carol@x" {
                u.user_type = "shared".into();
            }
            if u.login_name == "bob@x" {
                u.role = "emperor".into();
            }
        }
        let logins: Vec<String> = case
            .plan(100)
            .remedies
            .iter()
            .map(|r| r.login().to_string())
            .collect();
        assert!(
            !logins.contains(&"carol@x".to_string()) && !logins.contains(&"bob@x".to_string()),
            "{logins:?}"
        );
    }
}
