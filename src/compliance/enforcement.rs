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
//! - the whole plan is refused, and says why, when it would touch more people than
//!   `max_affected_percent` of the members allows (the blast-radius limit; at least one person
//!   unless it is 0), more privileged accounts than `max_privileged` (any role above member,
//!   where a wrong change hurts most), or would bring the people changed in the last 24 hours
//!   (by enforcement and by every access review of the policy) above `max_per_day` (so
//!   repeated small steps, say from a directory edited bit by bit, cannot add up to a large
//!   change). Limits count people ([`super::limits`]): suspending someone and removing their
//!   entries is one person.

use std::collections::{BTreeSet, HashSet};

use super::checks::{allowed_roles, role_key, Inputs};
use super::directory::{login_key, Directory, EmploymentStatus};
use super::limits;
use crate::policy_file::{self, Removed};

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
    /// Remove an offboarded person's direct entries from the policy file (groups, rules, SSH
    /// rules, tag owners), including those a human added; `removed` is what the file held when
    /// planned (carried out against the file as it is then, and recorded as actually removed).
    Deprovision {
        login: String,
        logins: BTreeSet<String>,
        removed: Vec<Removed>,
    },
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
            Remedy::Suspend { login, .. }
            | Remedy::LowerRole { login, .. }
            | Remedy::Deprovision { login, .. } => login,
        }
    }
}

/// The limits enforcement works within (the policy's `spec.enforcement`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most members one evaluation may change, in percent (at least one person unless 0).
    pub max_affected_percent: i32,
    /// Most accounts above member one evaluation may change.
    pub max_privileged: i32,
    /// Most people changed in any 24 hours, this evaluation's included, by enforcement and
    /// the policy's access reviews together.
    pub max_per_day: i32,
}

/// Which limit refused a plan: the `EnforcementRefused` condition's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    BlastRadiusExceeded,
    PrivilegedLimitExceeded,
    DailyLimitExceeded,
}

impl RefusalReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::BlastRadiusExceeded => "BlastRadiusExceeded",
            RefusalReason::PrivilegedLimitExceeded => "PrivilegedLimitExceeded",
            RefusalReason::DailyLimitExceeded => "DailyLimitExceeded",
        }
    }
}

/// Why a plan may not be carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: RefusalReason,
    pub message: String,
}

/// The remedies for one evaluation, or why none may be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub remedies: Vec<Remedy>,
    /// How many of the remedies change an account above member.
    pub privileged: usize,
    /// The people the remedies change ([`super::limits::person_of`]).
    pub people: BTreeSet<String>,
    /// People changed in the 24 hours before this plan (as given).
    pub recent_changes: usize,
    /// Set when a limit refuses the whole plan.
    pub refused: Option<Refusal>,
}

/// The deprovisioning each offboarded person needs: their direct, unmarked entries in
/// `policy_file` (whether or not they still have an account). A file that does not parse plans
/// nothing (it is never rewritten).
pub fn deprovisioning(directory: &Directory, policy_file: &str) -> Vec<Remedy> {
    // One pass over the file's strings first, so a large directory of former staff costs a
    // set lookup per login, not a parse per person.
    let Ok(mentioned) = policy_file::strings(policy_file) else {
        return Vec::new();
    };
    directory
        .people()
        .iter()
        .filter(|p| p.status == EmploymentStatus::Offboarded)
        .filter(|p| {
            p.login_names
                .iter()
                .any(|l| mentioned.contains(&l.trim().to_ascii_lowercase()))
        })
        .filter_map(|p| {
            let logins: BTreeSet<String> =
                p.login_names.iter().map(|l| l.trim().to_string()).collect();
            let outcome = policy_file::deprovision(policy_file, &logins).ok()?;
            (!outcome.removed.is_empty()).then(|| Remedy::Deprovision {
                login: p.login_names.first().cloned().unwrap_or_default(),
                logins,
                removed: outcome.removed,
            })
        })
        .collect()
}

/// Plan the remedies for the failing checks of `inputs`, within `limits`, given the people
/// changed in the last 24 hours (`recent`, as [`super::limits::person_of`] keys). With the
/// `policy_file`, offboarded people are deprovisioned from it too ([`deprovisioning`]); a
/// person suspended and deprovisioned counts once.
pub fn plan(
    inputs: &Inputs,
    limits: &Limits,
    recent: &BTreeSet<String>,
    policy_file: Option<&str>,
) -> Plan {
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
    let mut privileged = 0;
    for user in &members {
        if user.is_suspended() {
            continue;
        }
        let Some(person) = inputs.directory.lookup(&user.login_name) else {
            continue;
        };
        if person.status == EmploymentStatus::Offboarded {
            if role_key(&user.role) != "owner" {
                privileged += usize::from(rank(&user.role) != Some(0));
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
            privileged += 1;
            remedies.push(Remedy::LowerRole {
                user_id: user.id.clone(),
                login: user.login_name.clone(),
                from: user.role.clone(),
                to: target.to_string(),
            });
        }
    }
    if let Some(text) = policy_file {
        remedies.extend(deprovisioning(inputs.directory, text));
    }
    let people: BTreeSet<String> = remedies
        .iter()
        .map(|r| limits::person_of(inputs.directory, r.login()))
        .collect();
    let refused = refusal(&people, privileged, members.len(), limits, recent);
    Plan {
        remedies,
        privileged,
        people,
        recent_changes: recent.len(),
        refused,
    }
}

/// The first limit a plan changing `people` (`privileged` accounts of them above member) among
/// `members` would break, after `recent` people were changed in the last 24 hours, if any.
pub fn refusal(
    people: &BTreeSet<String>,
    privileged: usize,
    members: usize,
    limits: &Limits,
    recent: &BTreeSet<String>,
) -> Option<Refusal> {
    if people.is_empty() {
        return None;
    }
    let affected = people.len();
    let allowed = limits::blast_radius(members, limits.max_affected_percent);
    if affected > allowed {
        return Some(Refusal {
            reason: RefusalReason::BlastRadiusExceeded,
            message: format!(
                "enforcement would change {affected} of {members} members, more than the {allowed} maxAffectedPercent {}% allows: nothing was changed; check the directory, or raise the limit if this is intended",
                limits.max_affected_percent.clamp(0, 100)
            ),
        });
    }
    let most_privileged = limits.max_privileged.clamp(0, 100) as usize;
    if privileged > most_privileged {
        return Some(Refusal {
            reason: RefusalReason::PrivilegedLimitExceeded,
            message: format!(
                "enforcement would change {privileged} accounts above member at once, more than maxPrivilegedPerEvaluation {most_privileged}: nothing was changed; check the directory, or raise the limit if this is intended"
            ),
        });
    }
    daily_refusal(people, limits, recent)
}

/// Whether changing `people` after `recent` were changed in the last 24 hours breaks the daily
/// limit (people changed already count once).
pub fn daily_refusal(
    people: &BTreeSet<String>,
    limits: &Limits,
    recent: &BTreeSet<String>,
) -> Option<Refusal> {
    let new = people.difference(recent).count();
    let room = limits::room_today(recent, limits.max_per_day);
    if new > room {
        return Some(Refusal {
            reason: RefusalReason::DailyLimitExceeded,
            message: format!(
                "enforcement would change {new} more {} after {} in the last 24 hours (by enforcement and access reviews of this policy), more than maxChangesPer24Hours {}: nothing was changed; check the directory, or raise the limit if this is intended",
                if new == 1 { "person" } else { "people" },
                recent.len(),
                limits.max_per_day.clamp(0, 100)
            ),
        });
    }
    None
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
            kubernetes_groups: Vec::new(),
            manager: None,
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

    fn percent(max_affected_percent: i32) -> Limits {
        Limits {
            max_affected_percent,
            max_privileged: 100,
            max_per_day: 100,
        }
    }

    impl Case {
        fn plan(&self, limit: i32) -> Plan {
            self.plan_within(&percent(limit), 0)
        }

        /// With `recent_changes` other people changed in the last 24 hours.
        fn plan_within(&self, limits: &Limits, recent_changes: usize) -> Plan {
            let recent: BTreeSet<String> = (0..recent_changes)
                .map(|i| format!("earlier-{i}@x"))
                .collect();
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
                limits,
                &recent,
                None,
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
        assert_eq!(why.reason, RefusalReason::BlastRadiusExceeded);
        let why = why.message;
        assert!(
            why.contains("4 of 10 members, more than the 3 maxAffectedPercent 39% allows"),
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

    #[test]
    fn privileged_accounts_have_their_own_smaller_limit() {
        // bob, erin and ivan are lowered (all above member); carol is a member.
        let plan = tailnet().plan_within(
            &Limits {
                max_privileged: 2,
                ..percent(100)
            },
            0,
        );
        assert_eq!(plan.privileged, 3);
        let why = plan.refused.expect("refused");
        assert_eq!(why.reason, RefusalReason::PrivilegedLimitExceeded);
        assert!(
            why.message.contains(
                "3 accounts above member at once, more than maxPrivilegedPerEvaluation 2"
            ),
            "{}",
            why.message
        );
        let within = Limits {
            max_privileged: 3,
            ..percent(100)
        };
        assert_eq!(tailnet().plan_within(&within, 0).refused, None);
        // Suspending an offboarded admin is a privileged change too.
        let mut case = tailnet();
        case.people.push(person("dave@x", Some("engineer"), true));
        assert_eq!(case.plan_within(&within, 0).privileged, 4);
        assert_eq!(
            case.plan_within(&within, 0).refused.map(|r| r.reason),
            Some(RefusalReason::PrivilegedLimitExceeded)
        );
    }

    #[test]
    fn changes_in_the_last_24_hours_count_against_a_daily_limit() {
        let daily = |max_per_day| Limits {
            max_per_day,
            ..percent(100)
        };
        // Four remedies: fine after 6 changes under a limit of 10, refused after 7.
        assert_eq!(tailnet().plan_within(&daily(10), 6).refused, None);
        let why = tailnet()
            .plan_within(&daily(10), 7)
            .refused
            .expect("refused");
        assert_eq!(why.reason, RefusalReason::DailyLimitExceeded);
        assert!(
            why.message.contains(
                "4 more people after 7 in the last 24 hours (by enforcement and access reviews of this policy), more than maxChangesPer24Hours 10"
            ),
            "{}",
            why.message
        );
        // Nothing to do is never refused, whatever happened today.
        let mut quiet = tailnet();
        quiet.users.retain(|u| u.login_name == "alice@x");
        assert_eq!(quiet.plan_within(&daily(0), 50).refused, None);
    }

    /// A hand-kept file where carol (offboarded) still has entries a person added, one that a
    /// grant added, and where gone (offboarded, no longer in the tailnet) has one too.
    const FILE: &str = "{
	\"groups\": {
		\"group:eng\": [
			\"alice@x\",
			\"carol@x\",
			\"bob@x\",
		],
		\"group:jit\": [\"carol@x\" /* tailkeeper:abc */],
	},
	\"grants\": [
		{\"src\": [\"carol@x\"], \"dst\": [\"tag:prod\"], \"ip\": [\"*\"]},
		{\"src\": [\"group:eng\"], \"dst\": [\"tag:dev\"], \"ip\": [\"*\"]},
	],
	\"ssh\": [
		{\"action\": \"check\", \"src\": [\"group:eng\", \"gone@x\"], \"dst\": [\"tag:dev\"], \"users\": [\"root\"]},
	],
}
";

    #[test]
    fn offboarded_people_lose_the_entries_a_person_added_and_nothing_else() {
        let case = tailnet();
        let directory = Directory::build([("t", case.people.clone())]).expect("directory");
        let remedies = deprovisioning(&directory, FILE);
        let summary: Vec<(&str, Vec<(&str, &str)>)> = remedies
            .iter()
            .map(|r| match r {
                Remedy::Deprovision { login, removed, .. } => (
                    login.as_str(),
                    removed
                        .iter()
                        .map(|e| (e.location.as_str(), e.text.as_str()))
                        .collect(),
                ),
                other => panic!("only deprovisioning is planned here, not {other:?}"),
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "carol@x",
                    vec![
                        ("groups[\"group:eng\"]", "\"carol@x\""),
                        (
                            "grants[0]",
                            "{\"src\": [\"carol@x\"], \"dst\": [\"tag:prod\"], \"ip\": [\"*\"]}"
                        ),
                    ]
                ),
                ("gone@x", vec![("ssh[0].src", "\"gone@x\"")]),
            ],
            "the grant's marked membership is left to the grant; active people keep theirs"
        );
        // Nobody offboarded is mentioned: nothing to do, and an unparsable file plans nothing.
        assert!(deprovisioning(&directory, "{\"groups\": {}}").is_empty());
        assert!(deprovisioning(&directory, "{\"groups\": ").is_empty());
    }

    #[test]
    fn deprovisioning_counts_against_the_limits_like_any_change() {
        let case = tailnet();
        let directory = Directory::build([("t", case.people.clone())]).expect("directory");
        let rules = rules();
        let plan_with = |limits: &Limits, file: Option<&str>| {
            plan(
                &Inputs {
                    users: &case.users,
                    directory: &directory,
                    role_rules: &rules,
                    exemptions: &case.exemptions,
                    active_role_grants: &case.grants,
                    integration_connected: true,
                },
                limits,
                &BTreeSet::new(),
                file,
            )
        };
        let daily = |max_per_day| Limits {
            max_affected_percent: 100,
            max_privileged: 100,
            max_per_day,
        };
        let without = plan_with(&daily(100), None);
        let with = plan_with(&daily(100), Some(FILE));
        assert_eq!(with.remedies.len(), without.remedies.len() + 2);
        assert_eq!(
            with.privileged, without.privileged,
            "removing entries is no role change"
        );
        // Carol is suspended and loses her entries: one person; gone loses his: one more.
        assert_eq!(with.people.len(), without.people.len() + 1, "{with:?}");
        assert!(with.people.contains("carol@x") && with.people.contains("gone@x"));
        let tight = daily(without.people.len() as i32);
        assert_eq!(plan_with(&tight, None).refused, None);
        assert_eq!(
            plan_with(&tight, Some(FILE)).refused.map(|r| r.reason),
            Some(RefusalReason::DailyLimitExceeded)
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// `active` engineers and `left` offboarded people, each with an account and an entry
        /// of their own in the policy file.
        fn tailnet_of(active: usize, left: usize) -> (Vec<TailscaleUser>, Vec<Person>, String) {
            let mut users = Vec::new();
            let mut people = Vec::new();
            let mut logins = Vec::new();
            for i in 0..active {
                let login = format!("a{i}@x");
                users.push(user(&login, "member", "active"));
                people.push(person(&login, Some("engineer"), false));
            }
            for i in 0..left {
                let login = format!("l{i}@x");
                users.push(user(&login, "member", "active"));
                people.push(person(&login, Some("engineer"), true));
                logins.push(format!("\"{login}\""));
            }
            let file = format!("{{\"groups\": {{\"group:eng\": [{}]}}}}", logins.join(", "));
            (users, people, file)
        }

        fn plan_for(
            active: usize,
            left: usize,
            limits: &Limits,
            recent: &BTreeSet<String>,
        ) -> Plan {
            let (users, people, file) = tailnet_of(active, left);
            let directory = Directory::build([("t", people)]).expect("directory");
            let rules = rules();
            plan(
                &Inputs {
                    users: &users,
                    directory: &directory,
                    role_rules: &rules,
                    exemptions: &[],
                    active_role_grants: &[],
                    integration_connected: true,
                },
                limits,
                recent,
                Some(&file),
            )
        }

        proptest! {
            #[test]
            fn a_suspension_and_the_removal_of_entries_are_one_person(active in 0usize..30, left in 1usize..8) {
                let plan = plan_for(active, left, &percent(100), &BTreeSet::new());
                prop_assert_eq!(plan.remedies.len(), 2 * left);
                prop_assert_eq!(plan.people.len(), left);
            }

            #[test]
            fn one_person_may_leave_a_small_tailnet_unless_the_limit_is_zero(active in 0usize..40, limit in 0i32..=100) {
                let plan = plan_for(active, 1, &percent(limit), &BTreeSet::new());
                if limit == 0 {
                    prop_assert_eq!(plan.refused.map(|r| r.reason), Some(RefusalReason::BlastRadiusExceeded));
                } else {
                    prop_assert_eq!(plan.refused, None);
                }
            }

            #[test]
            fn the_day_counts_each_person_once_whoever_changed_them(
                left in 1usize..8,
                earlier in prop::collection::btree_set(0usize..12, 0..10),
                per_day in 0i32..20,
            ) {
                // Earlier changes by enforcement or a campaign: some of the same people, some others.
                let recent: BTreeSet<String> = earlier.iter().map(|i| format!("l{i}@x")).collect();
                let limits = Limits { max_per_day: per_day, ..percent(100) };
                let plan = plan_for(0, left, &limits, &recent);
                let all: BTreeSet<&String> = plan.people.iter().chain(&recent).collect();
                let over = all.len() > per_day as usize && plan.people.difference(&recent).count() > 0;
                prop_assert_eq!(
                    plan.refused.map(|r| r.reason) == Some(RefusalReason::DailyLimitExceeded),
                    over,
                    "{} people planned, {} recent, limit {}", plan.people.len(), recent.len(), per_day
                );
            }
        }
    }
}
