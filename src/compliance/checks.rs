//! The four critical-system checks, judged from plain data.
//!
//! This file owns what each check means. It never fetches users or writes status: the
//! controller gathers [`Inputs`], calls [`evaluate`], and caps and publishes the result.
//!
//! Login names, exemptions and grants match case-insensitively (ignoring surrounding
//! whitespace); Tailscale roles, statuses and user types compare case-insensitively too. A user
//! whose type is `shared` is a shared user; any other type counts as a member, so an unexpected
//! type is judged rather than ignored.
//!
//! 1. **`UserIdentified`**: every member (any status) matches a person in the directory (by
//!    any of their login names) or an exemption. Shared users are not judged: they are listed
//!    apart in [`Evaluation::shared_users`].
//! 2. **`OffboardedAccessRemoved`**: no offboarded person has a Tailscale account (member or
//!    shared) whose status is anything but `suspended`: `active`, `idle`, `needs-approval`,
//!    `over-billing-limit` and unknown statuses all fail. A deleted account is simply absent.
//!    An exemption does not excuse an offboarded person: it only identifies an account.
//! 3. **`AccessControlConfigured`**: at least one role rule maps an organisational role to at
//!    least one Tailscale role, and the integration is connected. No findings.
//! 4. **`UserAccessValid`**: every member that is identified by the directory, not exempt and not
//!    suspended (a suspended account has no access) must have an organisational role, that role
//!    must appear in the role rules (rules naming the same role, in any case, are combined), and
//!    the member's Tailscale role must be one that organisational role may hold, or be exactly
//!    the role of an active grant for that login. A grant covers only the Tailscale role: it does
//!    not make a missing or disallowed organisational role valid. Unidentified members are left to
//!    check 1.
//!
//! Each outcome lists every failing user (sorted by login; the caller caps the list) with a reason.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::directory::{login_key, Directory, EmploymentStatus};

/// Which organisational role may hold which Tailscale roles.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleRule {
    /// An organisational role as the directory names it, e.g. `engineer`. Matched ignoring case;
    /// several rules for the same role are combined.
    pub org_role: String,
    /// The Tailscale roles people with this organisational role may hold, e.g. `member`,
    /// `admin`, `it-admin`, `network-admin`, `billing-admin`, `auditor`, `owner`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(
        pattern = "^(owner|admin|it-admin|network-admin|billing-admin|auditor|member)$"
    )))]
    pub tailscale_roles: Vec<String>,
}

/// A Tailscale account that is identified without being in the directory, e.g. a break-glass
/// account. It does not excuse an offboarded person's account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Exemption {
    /// The Tailscale login name exempted, matched ignoring case.
    pub login_name: String,
    /// Why this account needs no person in the directory; shown to auditors.
    pub reason: String,
}

/// A Tailscale user as the API reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TailscaleUser {
    pub id: String,
    pub login_name: String,
    pub display_name: String,
    /// `owner`, `member`, `admin`, `it-admin`, `network-admin`, `billing-admin` or `auditor`.
    pub role: String,
    /// `active`, `idle`, `suspended`, `needs-approval` or `over-billing-limit`.
    pub status: String,
    /// `member` or `shared`.
    pub user_type: String,
}

impl TailscaleUser {
    pub(super) fn is_shared(&self) -> bool {
        self.user_type.trim().eq_ignore_ascii_case("shared")
    }

    pub(super) fn is_suspended(&self) -> bool {
        self.status.trim().eq_ignore_ascii_case("suspended")
    }
}

/// An active just-in-time grant of a Tailscale role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleGrant {
    pub login_name: String,
    pub role: String,
}

/// Everything the checks look at.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    pub users: &'a [TailscaleUser],
    pub directory: &'a Directory,
    pub role_rules: &'a [RoleRule],
    pub exemptions: &'a [Exemption],
    pub active_role_grants: &'a [RoleGrant],
    pub integration_connected: bool,
}

/// The four checks, in the order they are reported.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum CheckName {
    /// Every member is in the directory or exempt.
    UserIdentified,
    /// No offboarded person has an unsuspended account.
    OffboardedAccessRemoved,
    /// Role rules exist and the integration is connected.
    AccessControlConfigured,
    /// Every identified member holds a role their organisational role allows.
    UserAccessValid,
}

impl CheckName {
    pub const ALL: [CheckName; 4] = [
        Self::UserIdentified,
        Self::OffboardedAccessRemoved,
        Self::AccessControlConfigured,
        Self::UserAccessValid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserIdentified => "UserIdentified",
            Self::OffboardedAccessRemoved => "OffboardedAccessRemoved",
            Self::AccessControlConfigured => "AccessControlConfigured",
            Self::UserAccessValid => "UserAccessValid",
        }
    }
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a check passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum CheckResult {
    /// Nothing failed.
    Pass,
    /// At least one user (or, for `AccessControlConfigured`, the configuration) failed.
    Fail,
}

/// One user failing a check, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The Tailscale login name of the failing account.
    pub login_name: String,
    /// Why it fails, e.g. `offboarded, account is active`.
    pub reason: String,
}

/// The result of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOutcome {
    pub name: CheckName,
    pub result: CheckResult,
    /// A sentence for humans, with counts.
    pub message: String,
    /// Every failing user, sorted by login name. Not capped: the caller caps what it publishes.
    pub findings: Vec<Finding>,
}

impl CheckOutcome {
    pub fn passed(&self) -> bool {
        self.result == CheckResult::Pass
    }

    fn new(name: CheckName, failed: bool, message: String, mut findings: Vec<Finding>) -> Self {
        findings.sort_by(|a, b| {
            (login_key(&a.login_name), &a.login_name, &a.reason).cmp(&(
                login_key(&b.login_name),
                &b.login_name,
                &b.reason,
            ))
        });
        Self {
            name,
            result: if failed {
                CheckResult::Fail
            } else {
                CheckResult::Pass
            },
            message,
            findings,
        }
    }
}

/// The four checks and the shared users, which no check judges as members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    /// One outcome per check, in [`CheckName::ALL`] order.
    pub checks: Vec<CheckOutcome>,
    /// Login names of shared users (guests from other tailnets), sorted.
    pub shared_users: Vec<String>,
}

impl Evaluation {
    /// The outcome of one check.
    pub fn check(&self, name: CheckName) -> &CheckOutcome {
        self.checks
            .iter()
            .find(|outcome| outcome.name == name)
            .expect("evaluate reports every check")
    }

    /// How many checks pass, for a "3/4" printer column.
    pub fn passing(&self) -> usize {
        self.checks
            .iter()
            .filter(|outcome| outcome.passed())
            .count()
    }
}

/// Runs the four checks. See the module docs for what each one means.
pub fn evaluate(inputs: &Inputs) -> Evaluation {
    let exempt: HashSet<String> = inputs
        .exemptions
        .iter()
        .map(|exemption| login_key(&exemption.login_name))
        .collect();
    let members: Vec<&TailscaleUser> = inputs.users.iter().filter(|u| !u.is_shared()).collect();
    let shared_users: BTreeSet<String> = inputs
        .users
        .iter()
        .filter(|u| u.is_shared())
        .map(|u| u.login_name.clone())
        .collect();

    Evaluation {
        checks: vec![
            user_identified(inputs, &members, &exempt, shared_users.len()),
            offboarded_access_removed(inputs),
            access_control_configured(inputs),
            user_access_valid(inputs, &members, &exempt),
        ],
        shared_users: shared_users.into_iter().collect(),
    }
}

fn user_identified(
    inputs: &Inputs,
    members: &[&TailscaleUser],
    exempt: &HashSet<String>,
    shared: usize,
) -> CheckOutcome {
    let findings: Vec<Finding> = members
        .iter()
        .filter(|user| {
            inputs.directory.lookup(&user.login_name).is_none()
                && !exempt.contains(&login_key(&user.login_name))
        })
        .map(|user| finding(user, "not in the directory and not exempt"))
        .collect();
    let total = members.len();
    let mut message = match (findings.len(), total) {
        (_, 0) => "There are no members to identify".to_owned(),
        (0, 1) => "The only member is identified".to_owned(),
        (0, total) => format!("All {total} members are identified"),
        (1, total) => format!("1 of {total} members is not in the directory or exempt"),
        (failed, total) => {
            format!("{failed} of {total} members are not in the directory or exempt")
        }
    };
    match shared {
        0 => {}
        1 => message.push_str("; 1 shared user is reported apart"),
        n => message.push_str(&format!("; {n} shared users are reported apart")),
    }
    CheckOutcome::new(
        CheckName::UserIdentified,
        !findings.is_empty(),
        message,
        findings,
    )
}

fn offboarded_access_removed(inputs: &Inputs) -> CheckOutcome {
    let findings: Vec<Finding> = inputs
        .users
        .iter()
        .filter(|user| !user.is_suspended())
        .filter(|user| {
            inputs
                .directory
                .lookup(&user.login_name)
                .is_some_and(|person| person.status == EmploymentStatus::Offboarded)
        })
        .map(|user| {
            let account = if user.is_shared() {
                "shared account"
            } else {
                "account"
            };
            let state = match user.status.trim().to_ascii_lowercase().as_str() {
                "active" => "is active".to_owned(),
                "idle" => "is idle".to_owned(),
                "needs-approval" => "is awaiting approval".to_owned(),
                "over-billing-limit" => "is over the billing limit".to_owned(),
                _ => format!("has status \"{}\", not suspended", user.status),
            };
            finding(user, &format!("offboarded, {account} {state}"))
        })
        .collect();
    let offboarded = inputs
        .directory
        .people()
        .iter()
        .filter(|person| person.status == EmploymentStatus::Offboarded)
        .count();
    let message = match (findings.len(), offboarded) {
        (0, 0) => "There are no offboarded people in the directory".to_owned(),
        (0, 1) => "The 1 offboarded person has no unsuspended account".to_owned(),
        (0, n) => format!("None of the {n} offboarded people has an unsuspended account"),
        (1, _) => "1 account of an offboarded person is not suspended".to_owned(),
        (failed, _) => format!("{failed} accounts of offboarded people are not suspended"),
    };
    CheckOutcome::new(
        CheckName::OffboardedAccessRemoved,
        !findings.is_empty(),
        message,
        findings,
    )
}

fn access_control_configured(inputs: &Inputs) -> CheckOutcome {
    let org_roles = allowed_roles(inputs.role_rules)
        .values()
        .filter(|tailscale_roles| !tailscale_roles.is_empty())
        .count();
    let mut missing = Vec::new();
    if org_roles == 0 {
        missing.push("no role rule maps an organisational role to a Tailscale role");
    }
    if !inputs.integration_connected {
        missing.push("the integration is not connected");
    }
    let message = if missing.is_empty() {
        let roles = if org_roles == 1 {
            "1 organisational role has".to_owned()
        } else {
            format!("{org_roles} organisational roles have")
        };
        format!("{roles} allowed Tailscale roles and the integration is connected")
    } else {
        capitalise(&missing.join("; "))
    };
    CheckOutcome::new(
        CheckName::AccessControlConfigured,
        !missing.is_empty(),
        message,
        Vec::new(),
    )
}

fn user_access_valid(
    inputs: &Inputs,
    members: &[&TailscaleUser],
    exempt: &HashSet<String>,
) -> CheckOutcome {
    let rules = allowed_roles(inputs.role_rules);
    let grants: HashSet<(String, String)> = inputs
        .active_role_grants
        .iter()
        .map(|grant| (login_key(&grant.login_name), role_key(&grant.role)))
        .collect();

    let mut judged = 0;
    let mut covered_by_grant = 0;
    let mut findings = Vec::new();
    for user in members {
        if user.is_suspended() || exempt.contains(&login_key(&user.login_name)) {
            continue;
        }
        let Some(person) = inputs.directory.lookup(&user.login_name) else {
            continue;
        };
        judged += 1;
        let Some(org_role) = person.org_role.as_deref() else {
            findings.push(finding(user, "no organisational role in the directory"));
            continue;
        };
        let Some(may_hold) = rules.get(&role_key(org_role)) else {
            findings.push(finding(
                user,
                &format!("organisational role \"{org_role}\" is not allowed"),
            ));
            continue;
        };
        if may_hold.contains_key(&role_key(&user.role)) {
            continue;
        }
        if grants.contains(&(login_key(&user.login_name), role_key(&user.role))) {
            covered_by_grant += 1;
            continue;
        }
        let allowed: Vec<&str> = may_hold.values().map(String::as_str).collect();
        let allowed = if allowed.is_empty() {
            "none".to_owned()
        } else {
            allowed.join(", ")
        };
        findings.push(finding(
            user,
            &format!(
                "role {} is not allowed for organisational role {org_role} (allowed: {allowed})",
                user.role.trim()
            ),
        ));
    }

    let mut message = match (findings.len(), judged) {
        (_, 0) => "There are no identified members with access to judge".to_owned(),
        (0, 1) => {
            "The only identified member holds a role their organisational role allows".to_owned()
        }
        (0, n) => {
            format!("All {n} identified members hold a role their organisational role allows")
        }
        (1, n) => format!("1 of {n} identified members does not have valid access"),
        (failed, n) => format!("{failed} of {n} identified members do not have valid access"),
    };
    if covered_by_grant > 0 {
        message.push_str(&format!("; {covered_by_grant} covered by an active grant"));
    }
    CheckOutcome::new(
        CheckName::UserAccessValid,
        !findings.is_empty(),
        message,
        findings,
    )
}

/// Role rules folded by organisational role: normalised org role -> (normalised Tailscale role
/// -> that role as first written, for messages). Rules for the same org role in any case are
/// combined; blank names are ignored.
pub(super) fn allowed_roles(rules: &[RoleRule]) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut allowed: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for rule in rules.iter().filter(|rule| !rule.org_role.trim().is_empty()) {
        let tailscale_roles = allowed.entry(role_key(&rule.org_role)).or_default();
        for role in rule.tailscale_roles.iter().filter(|r| !r.trim().is_empty()) {
            tailscale_roles
                .entry(role_key(role))
                .or_insert_with(|| role.trim().to_owned());
        }
    }
    allowed
}

pub(super) fn role_key(role: &str) -> String {
    role.trim().to_lowercase()
}

fn finding(user: &TailscaleUser, reason: &str) -> Finding {
    Finding {
        login_name: user.login_name.clone(),
        reason: reason.to_owned(),
    }
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::directory::Person;

    fn member(login: &str) -> TailscaleUser {
        TailscaleUser {
            id: format!("id-{login}"),
            login_name: login.to_owned(),
            display_name: login.to_owned(),
            role: "member".to_owned(),
            status: "active".to_owned(),
            user_type: "member".to_owned(),
        }
    }

    fn shared(login: &str) -> TailscaleUser {
        TailscaleUser {
            user_type: "shared".to_owned(),
            ..member(login)
        }
    }

    impl TailscaleUser {
        fn with_role(self, role: &str) -> Self {
            Self {
                role: role.to_owned(),
                ..self
            }
        }

        fn with_status(self, status: &str) -> Self {
            Self {
                status: status.to_owned(),
                ..self
            }
        }
    }

    /// An active person with the given login names and no organisational role.
    fn person(logins: &[&str]) -> Person {
        Person {
            login_names: logins.iter().map(|login| login.to_string()).collect(),
            display_name: None,
            org_role: None,
            status: EmploymentStatus::Active,
            kubernetes_users: Vec::new(),
            kubernetes_groups: Vec::new(),
            manager: None,
        }
    }

    fn engineer(login: &str) -> Person {
        person(&[login]).in_role("engineer")
    }

    impl Person {
        fn in_role(self, org_role: &str) -> Self {
            Self {
                org_role: Some(org_role.to_owned()),
                ..self
            }
        }

        fn offboarded(self) -> Self {
            Self {
                status: EmploymentStatus::Offboarded,
                ..self
            }
        }
    }

    /// A tailnet and its policy: connected, with no people, rules, exemptions or grants until
    /// a test adds them.
    struct Tailnet {
        users: Vec<TailscaleUser>,
        people: Vec<Person>,
        rules: Vec<RoleRule>,
        exemptions: Vec<Exemption>,
        grants: Vec<RoleGrant>,
        connected: bool,
    }

    fn tailnet() -> Tailnet {
        Tailnet {
            users: Vec::new(),
            people: Vec::new(),
            rules: Vec::new(),
            exemptions: Vec::new(),
            grants: Vec::new(),
            connected: true,
        }
    }

    impl Tailnet {
        fn user(mut self, user: TailscaleUser) -> Self {
            self.users.push(user);
            self
        }

        fn person(mut self, person: Person) -> Self {
            self.people.push(person);
            self
        }

        fn allow(mut self, org_role: &str, tailscale_roles: &[&str]) -> Self {
            self.rules.push(RoleRule {
                org_role: org_role.to_owned(),
                tailscale_roles: tailscale_roles.iter().map(|r| r.to_string()).collect(),
            });
            self
        }

        fn exempt(mut self, login: &str) -> Self {
            self.exemptions.push(Exemption {
                login_name: login.to_owned(),
                reason: "break-glass".to_owned(),
            });
            self
        }

        fn grant(mut self, login: &str, role: &str) -> Self {
            self.grants.push(RoleGrant {
                login_name: login.to_owned(),
                role: role.to_owned(),
            });
            self
        }

        fn disconnected(mut self) -> Self {
            self.connected = false;
            self
        }

        fn evaluate(&self) -> Evaluation {
            let directory = Directory::build([("inline", self.people.clone())]).unwrap();
            evaluate(&Inputs {
                users: &self.users,
                directory: &directory,
                role_rules: &self.rules,
                exemptions: &self.exemptions,
                active_role_grants: &self.grants,
                integration_connected: self.connected,
            })
        }

        /// The findings of one check as (login, reason) pairs.
        fn failing(&self, name: CheckName) -> Vec<(String, String)> {
            let evaluation = self.evaluate();
            let outcome = evaluation.check(name);
            if name != CheckName::AccessControlConfigured {
                assert_eq!(
                    outcome.passed(),
                    outcome.findings.is_empty(),
                    "a user check passes exactly when it has no findings: {outcome:?}"
                );
            }
            outcome
                .findings
                .iter()
                .map(|f| (f.login_name.clone(), f.reason.clone()))
                .collect()
        }

        fn message(&self, name: CheckName) -> String {
            self.evaluate().check(name).message.clone()
        }
    }

    fn found(login: &str, reason: &str) -> (String, String) {
        (login.to_owned(), reason.to_owned())
    }

    #[test]
    fn checks_are_reported_in_order_with_their_exact_names() {
        let evaluation = tailnet().evaluate();
        let names: Vec<CheckName> = evaluation.checks.iter().map(|c| c.name).collect();
        assert_eq!(names, CheckName::ALL);
        let shown: Vec<String> = CheckName::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "UserIdentified",
                "OffboardedAccessRemoved",
                "AccessControlConfigured",
                "UserAccessValid"
            ]
        );
    }

    #[test]
    fn a_member_missing_from_the_directory_is_not_identified() {
        let tailnet = tailnet()
            .person(engineer("alice@example.com"))
            .user(member("alice@example.com"))
            .user(member("mallory@example.com").with_status("idle"))
            .user(member("trent@example.com").with_status("suspended"));
        assert_eq!(
            tailnet.failing(CheckName::UserIdentified),
            [
                found("mallory@example.com", "not in the directory and not exempt"),
                found("trent@example.com", "not in the directory and not exempt"),
            ]
        );
        assert_eq!(
            tailnet.message(CheckName::UserIdentified),
            "2 of 3 members are not in the directory or exempt"
        );
    }

    #[test]
    fn members_match_any_login_of_a_person_ignoring_case() {
        let tailnet = tailnet()
            .person(person(&["Alice@Example.com", "alice@github"]).in_role("engineer"))
            .allow("engineer", &["member"])
            .user(member("alice@example.com"))
            .user(member("ALICE@GitHub"));
        assert_eq!(tailnet.failing(CheckName::UserIdentified), []);
        assert_eq!(
            tailnet.message(CheckName::UserIdentified),
            "All 2 members are identified"
        );
        assert_eq!(
            tailnet.message(CheckName::UserAccessValid),
            "All 2 identified members hold a role their organisational role allows"
        );
    }

    #[test]
    fn an_exemption_identifies_a_member_ignoring_case_and_skips_its_access_check() {
        let tailnet = tailnet()
            .exempt("Break-Glass@example.com")
            .allow("engineer", &["member"])
            .user(member("break-glass@example.com").with_role("owner"));
        assert_eq!(tailnet.failing(CheckName::UserIdentified), []);
        assert_eq!(tailnet.failing(CheckName::UserAccessValid), []);
        assert_eq!(
            tailnet.message(CheckName::UserAccessValid),
            "There are no identified members with access to judge"
        );
    }

    #[test]
    fn an_offboarded_person_fails_unless_every_account_is_suspended() {
        let cases = [
            ("active", Some("offboarded, account is active")),
            ("idle", Some("offboarded, account is idle")),
            (
                "needs-approval",
                Some("offboarded, account is awaiting approval"),
            ),
            (
                "over-billing-limit",
                Some("offboarded, account is over the billing limit"),
            ),
            (
                "",
                Some("offboarded, account has status \"\", not suspended"),
            ),
            ("suspended", None),
            ("Suspended", None),
        ];
        for (status, reason) in cases {
            let tailnet = tailnet()
                .person(engineer("bob@example.com").offboarded())
                .user(member("bob@example.com").with_status(status));
            let expected: Vec<_> = reason
                .map(|r| found("bob@example.com", r))
                .into_iter()
                .collect();
            assert_eq!(
                tailnet.failing(CheckName::OffboardedAccessRemoved),
                expected,
                "status {status:?}"
            );
        }
    }

    #[test]
    fn an_offboarded_persons_shared_account_also_fails() {
        let tailnet = tailnet()
            .person(person(&["bob@example.com", "bob@github"]).offboarded())
            .user(member("bob@example.com").with_status("suspended"))
            .user(shared("Bob@GitHub"));
        assert_eq!(
            tailnet.failing(CheckName::OffboardedAccessRemoved),
            [found("Bob@GitHub", "offboarded, shared account is active")]
        );
        assert_eq!(
            tailnet.message(CheckName::OffboardedAccessRemoved),
            "1 account of an offboarded person is not suspended"
        );
    }

    #[test]
    fn an_exemption_does_not_excuse_an_offboarded_person() {
        let tailnet = tailnet()
            .person(engineer("bob@example.com").offboarded())
            .exempt("bob@example.com")
            .user(member("bob@example.com"));
        assert_eq!(
            tailnet.failing(CheckName::OffboardedAccessRemoved),
            [found("bob@example.com", "offboarded, account is active")]
        );
    }

    #[test]
    fn offboarded_people_without_live_accounts_pass() {
        let tailnet = tailnet()
            .person(engineer("bob@example.com").offboarded())
            .person(engineer("carol@example.com").offboarded())
            .person(engineer("alice@example.com"))
            .user(member("alice@example.com"))
            .user(member("bob@example.com").with_status("suspended"));
        assert_eq!(tailnet.failing(CheckName::OffboardedAccessRemoved), []);
        assert_eq!(
            tailnet.message(CheckName::OffboardedAccessRemoved),
            "None of the 2 offboarded people has an unsuspended account"
        );
    }

    #[test]
    fn shared_users_are_reported_apart_and_not_judged_as_members() {
        let tailnet = tailnet()
            .person(engineer("alice@example.com"))
            .allow("engineer", &["member"])
            .user(member("alice@example.com"))
            .user(shared("zed@partner.com").with_role("admin"))
            .user(shared("guest@partner.com"));
        let evaluation = tailnet.evaluate();
        assert_eq!(
            evaluation.shared_users,
            ["guest@partner.com", "zed@partner.com"]
        );
        assert_eq!(tailnet.failing(CheckName::UserIdentified), []);
        assert_eq!(tailnet.failing(CheckName::UserAccessValid), []);
        assert_eq!(
            tailnet.message(CheckName::UserIdentified),
            "The only member is identified; 2 shared users are reported apart"
        );
    }

    #[test]
    fn an_unknown_user_type_is_judged_as_a_member() {
        let tailnet = tailnet()
            .user(member("x@example.com").with_status("active"))
            .user(TailscaleUser {
                user_type: String::new(),
                ..member("y@example.com")
            });
        assert_eq!(tailnet.failing(CheckName::UserIdentified).len(), 2);
    }

    #[test]
    fn a_person_without_an_organisational_role_has_no_valid_access() {
        let tailnet = tailnet()
            .person(person(&["alice@example.com"]))
            .allow("engineer", &["member"])
            .user(member("alice@example.com"));
        assert_eq!(
            tailnet.failing(CheckName::UserAccessValid),
            [found(
                "alice@example.com",
                "no organisational role in the directory"
            )]
        );
    }

    #[test]
    fn an_organisational_role_without_a_rule_is_not_allowed() {
        let tailnet = tailnet()
            .person(person(&["alice@example.com"]).in_role("contractor"))
            .allow("engineer", &["member"])
            .user(member("alice@example.com"));
        assert_eq!(
            tailnet.failing(CheckName::UserAccessValid),
            [found(
                "alice@example.com",
                "organisational role \"contractor\" is not allowed"
            )]
        );
        assert_eq!(
            tailnet.message(CheckName::UserAccessValid),
            "1 of 1 identified members does not have valid access"
        );
    }

    #[test]
    fn an_organisational_role_allows_only_its_tailscale_roles() {
        let cases = [
            ("member", None),
            ("Auditor", None),
            (
                "admin",
                Some("role admin is not allowed for organisational role Engineer (allowed: auditor, member)"),
            ),
            (
                "owner",
                Some("role owner is not allowed for organisational role Engineer (allowed: auditor, member)"),
            ),
        ];
        for (role, reason) in cases {
            let tailnet = tailnet()
                .person(person(&["alice@example.com"]).in_role("Engineer"))
                .allow("engineer", &["member", "auditor"])
                .allow("it", &["admin"])
                .user(member("alice@example.com").with_role(role));
            let expected: Vec<_> = reason
                .map(|r| found("alice@example.com", r))
                .into_iter()
                .collect();
            assert_eq!(
                tailnet.failing(CheckName::UserAccessValid),
                expected,
                "role {role}"
            );
        }
    }

    #[test]
    fn rules_for_the_same_organisational_role_are_combined() {
        let tailnet = tailnet()
            .person(engineer("alice@example.com"))
            .person(engineer("bob@example.com"))
            .allow("engineer", &["member"])
            .allow("ENGINEER", &["network-admin"])
            .user(member("alice@example.com"))
            .user(member("bob@example.com").with_role("network-admin"));
        assert_eq!(tailnet.failing(CheckName::UserAccessValid), []);
    }

    #[test]
    fn an_active_grant_covers_exactly_the_granted_role() {
        let base = || {
            tailnet()
                .person(person(&["alice@example.com", "alice@github"]).in_role("engineer"))
                .allow("engineer", &["member"])
                .user(member("alice@example.com").with_role("admin"))
        };
        let not_allowed = [found(
            "alice@example.com",
            "role admin is not allowed for organisational role engineer (allowed: member)",
        )];
        assert_eq!(
            base()
                .grant("Alice@Example.com", "admin")
                .failing(CheckName::UserAccessValid),
            []
        );
        assert_eq!(
            base()
                .grant("alice@example.com", "admin")
                .message(CheckName::UserAccessValid),
            "The only identified member holds a role their organisational role allows; \
             1 covered by an active grant"
        );
        assert_eq!(
            base()
                .grant("alice@example.com", "it-admin")
                .failing(CheckName::UserAccessValid),
            not_allowed
        );
        assert_eq!(
            base()
                .grant("bob@example.com", "admin")
                .failing(CheckName::UserAccessValid),
            not_allowed
        );
        // The grant is for the Tailscale login, not for whoever else shares the person.
        assert_eq!(
            base()
                .grant("alice@github", "admin")
                .failing(CheckName::UserAccessValid),
            not_allowed
        );
    }

    #[test]
    fn a_grant_does_not_excuse_a_disallowed_organisational_role() {
        let tailnet = tailnet()
            .person(person(&["alice@example.com"]).in_role("contractor"))
            .allow("engineer", &["member"])
            .grant("alice@example.com", "admin")
            .user(member("alice@example.com").with_role("admin"));
        assert_eq!(
            tailnet.failing(CheckName::UserAccessValid),
            [found(
                "alice@example.com",
                "organisational role \"contractor\" is not allowed"
            )]
        );
    }

    #[test]
    fn suspended_and_unidentified_members_are_not_judged_for_access() {
        let tailnet = tailnet()
            .person(person(&["alice@example.com"]))
            .allow("engineer", &["member"])
            .user(member("alice@example.com").with_status("suspended"))
            .user(member("mallory@example.com").with_role("admin"));
        assert_eq!(tailnet.failing(CheckName::UserAccessValid), []);
        assert_eq!(tailnet.failing(CheckName::UserIdentified).len(), 1);
    }

    #[test]
    fn with_an_empty_directory_every_member_but_the_exempt_is_unidentified() {
        let tailnet = tailnet()
            .allow("engineer", &["member"])
            .exempt("root@example.com")
            .user(member("bob@example.com"))
            .user(member("alice@example.com"))
            .user(member("root@example.com").with_role("owner"));
        let evaluation = tailnet.evaluate();
        assert_eq!(
            tailnet.failing(CheckName::UserIdentified),
            [
                found("alice@example.com", "not in the directory and not exempt"),
                found("bob@example.com", "not in the directory and not exempt"),
            ]
        );
        let access = evaluation.check(CheckName::UserAccessValid);
        assert!(access.passed());
        assert_eq!(
            access.message,
            "There are no identified members with access to judge"
        );
        assert!(evaluation
            .check(CheckName::OffboardedAccessRemoved)
            .passed());
        assert_eq!(evaluation.passing(), 3);
    }

    #[test]
    fn access_control_needs_role_rules_and_a_connected_integration() {
        let cases: [(Tailnet, CheckResult, &str); 5] = [
            (
                tailnet().allow("engineer", &["member"]).allow("it", &["admin"]),
                CheckResult::Pass,
                "2 organisational roles have allowed Tailscale roles and the integration is connected",
            ),
            (
                tailnet(),
                CheckResult::Fail,
                "No role rule maps an organisational role to a Tailscale role",
            ),
            (
                tailnet().allow("engineer", &[]).allow(" ", &["member"]),
                CheckResult::Fail,
                "No role rule maps an organisational role to a Tailscale role",
            ),
            (
                tailnet().allow("engineer", &["member"]).disconnected(),
                CheckResult::Fail,
                "The integration is not connected",
            ),
            (
                tailnet().disconnected(),
                CheckResult::Fail,
                "No role rule maps an organisational role to a Tailscale role; \
                 the integration is not connected",
            ),
        ];
        for (tailnet, result, message) in cases {
            let evaluation = tailnet.evaluate();
            let outcome = evaluation.check(CheckName::AccessControlConfigured);
            assert_eq!(
                (outcome.result, outcome.message.as_str()),
                (result, message)
            );
            assert!(outcome.findings.is_empty());
        }
    }

    #[test]
    fn findings_are_sorted_by_login_whatever_the_input_order() {
        let tailnet = tailnet()
            .user(member("carol@example.com"))
            .user(member("Alice@example.com"))
            .user(member("bob@example.com"));
        let logins: Vec<String> = tailnet
            .failing(CheckName::UserIdentified)
            .into_iter()
            .map(|(login, _)| login)
            .collect();
        assert_eq!(
            logins,
            ["Alice@example.com", "bob@example.com", "carol@example.com"]
        );
    }
}
