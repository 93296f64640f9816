//! Evaluation of a policy's `tests` and `sshTests`, a supported subset of Tailscale's semantics.
//!
//! **Identities.** A name resolves to one or more *principals*, each with the set of policy
//! selectors that match it:
//! - a user login (`alice@example.com`): itself, `*`, `autogroup:danger-all`, every group listing
//!   it, `autogroup:member` (or `autogroup:shared` for shared users) and the role autogroup
//!   (`autogroup:admin`, `autogroup:owner`, `autogroup:it-admin`, `autogroup:network-admin`,
//!   `autogroup:billing-admin`, `autogroup:auditor`) looked up in the [`Directory`]. A login the
//!   directory does not know counts as a plain member;
//! - `group:x`: each member of the group, as users (a group with no members stands for itself);
//! - a role autogroup or `autogroup:member`: each directory user it covers (or itself if none);
//! - `tag:x`: itself, `*`, `autogroup:tagged`, `autogroup:danger-all`;
//! - a `hosts` alias or an IP address: the alias names, the address, `*`; rule entries that are
//!   IPs or CIDR prefixes match by containment.
//!
//! A test whose `src` or destination covers several principals must hold for every one of them.
//!
//! **Network tests.** `host:port` is accepted when some `acls` rule has a matching `src`, a `dst`
//! whose host matches (including `autogroup:self`: the destination is the source user) and whose
//! ports contain the port, and a compatible `proto` (none = TCP, UDP and ICMP; the test's own
//! `proto` defaults to TCP); or some `grants` entry matches `src` and `dst` and has an `ip`
//! capability (`*`, `443`, `80-90`, `tcp:443`, `udp:*`, ...) covering protocol and port.
//!
//! **SSH tests.** For every destination and every SSH user name, the first `ssh` rule (in file
//! order) whose `src`, `dst` and `users` match decides: `accept`, `check`, or drop when none does.
//! `users` entries: a literal name, `*`, `autogroup:nonroot` (anything but `root`) and
//! `localpart:*@domain` (the source login's local part, when its domain matches).
//!
//! Not modelled: `ipsets`, postures, `via`, app capabilities, `autogroup:internet`, device
//! ownership beyond the user login, and tag ownership.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::validate::{normalize_proto, AclTest, Policy, SshAction, SshTest, TestDst};
use super::TestFailure;

/// What evaluation knows about the tailnet's users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    users: BTreeMap<String, DirectoryUser>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    pub role: String,
    /// `member` or `shared`.
    pub user_type: String,
}

impl Directory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, login: &str, role: &str, user_type: &str) {
        self.users.insert(
            login.to_string(),
            DirectoryUser {
                role: role.to_string(),
                user_type: user_type.to_string(),
            },
        );
    }

    fn get(&self, login: &str) -> Option<&DirectoryUser> {
        self.users.get(login)
    }
}

/// One identity a test is evaluated for.
#[derive(Debug, Clone)]
struct Principal {
    /// The name shown in error messages when it differs from the test's own text.
    name: String,
    /// Set for users, so `autogroup:self` and `localpart:` can compare identities.
    login: Option<String>,
    selectors: BTreeSet<String>,
    ips: Vec<IpAddr>,
}

impl Principal {
    fn named(name: &str, extra: &[&str]) -> Self {
        let mut selectors: BTreeSet<String> = ["*", "autogroup:danger-all", name]
            .into_iter()
            .map(str::to_string)
            .collect();
        selectors.extend(extra.iter().map(|s| s.to_string()));
        Principal {
            name: name.to_string(),
            login: None,
            selectors,
            ips: Vec::new(),
        }
    }
}

/// Resolves names to principals and matches rule entries against them.
struct Evaluator<'a> {
    policy: &'a Policy,
    directory: &'a Directory,
}

/// Role autogroups and the role each stands for.
const ROLE_AUTOGROUPS: &[(&str, &str)] = &[
    ("autogroup:owner", "owner"),
    ("autogroup:admin", "admin"),
    ("autogroup:it-admin", "it-admin"),
    ("autogroup:network-admin", "network-admin"),
    ("autogroup:billing-admin", "billing-admin"),
    ("autogroup:auditor", "auditor"),
];

impl Evaluator<'_> {
    fn user(&self, login: &str) -> Principal {
        let mut p = Principal::named(login, &[]);
        p.login = Some(login.to_string());
        for (group, members) in &self.policy.groups {
            if members.iter().any(|m| m == login) {
                p.selectors.insert(group.clone());
            }
        }
        match self.directory.get(login) {
            Some(user) => {
                if user.user_type == "shared" {
                    p.selectors.insert("autogroup:shared".to_string());
                } else {
                    p.selectors.insert("autogroup:member".to_string());
                }
                // `autogroup:member` means "not shared", not the `member` role, so only the
                // privileged roles map to an autogroup of their own.
                if user.role != "member" {
                    p.selectors.insert(format!("autogroup:{}", user.role));
                }
            }
            None => {
                p.selectors.insert("autogroup:member".to_string());
            }
        }
        p
    }

    fn address(&self, name: &str) -> Principal {
        let addr_text = self.policy.hosts.get(name).map_or(name, String::as_str);
        let mut p = Principal::named(name, &[]);
        p.selectors.insert(addr_text.to_string());
        for (alias, value) in &self.policy.hosts {
            if value == addr_text {
                p.selectors.insert(alias.clone());
            }
        }
        if let Ok(ip) = addr_text.parse::<IpAddr>() {
            p.ips.push(ip);
        }
        p
    }

    /// The principals a test `src` or destination host stands for.
    fn resolve(&self, name: &str) -> Vec<Principal> {
        let users: Vec<Principal> = if let Some(members) = self.policy.groups.get(name) {
            members.iter().map(|m| self.user(m)).collect()
        } else if let Some((_, role)) = ROLE_AUTOGROUPS.iter().find(|(g, _)| *g == name) {
            self.directory_users(|u| u.role == *role)
        } else if name == "autogroup:member" {
            self.directory_users(|u| u.user_type != "shared")
        } else if name.starts_with("tag:") {
            return vec![Principal::named(name, &["autogroup:tagged"])];
        } else if name.contains('@') && !name.starts_with("group:") {
            return vec![self.user(name)];
        } else if self.policy.hosts.contains_key(name) || name.parse::<IpAddr>().is_ok() {
            return vec![self.address(name)];
        } else {
            Vec::new()
        };
        if users.is_empty() {
            vec![Principal::named(name, &[])]
        } else {
            users
        }
    }

    fn directory_users(&self, keep: impl Fn(&DirectoryUser) -> bool) -> Vec<Principal> {
        self.directory
            .users
            .iter()
            .filter(|(_, u)| keep(u))
            .map(|(login, _)| self.user(login))
            .collect()
    }

    /// Does a rule entry (`src` or `dst` host) match this principal?
    fn matches(&self, entry: &str, principal: &Principal) -> bool {
        if principal.selectors.contains(entry) {
            return true;
        }
        // Addresses: entries may be IPs, CIDRs or aliases of either.
        let target = self.policy.hosts.get(entry).map_or(entry, String::as_str);
        principal.ips.iter().any(|ip| prefix_contains(target, *ip))
    }

    /// Destination match, where `autogroup:self` means "the source user's own devices".
    fn matches_dst(&self, entry: &str, src: &Principal, dst: &Principal) -> bool {
        if entry == "autogroup:self" {
            return src.login.is_some() && src.login == dst.login;
        }
        self.matches(entry, dst)
    }

    fn allows(&self, src: &Principal, dst: &Principal, port: u16, proto: &str) -> bool {
        let acl = self.policy.acls.iter().any(|rule| {
            let proto_ok = match &rule.proto {
                None => matches!(proto, "tcp" | "udp" | "icmp"),
                Some(p) => p == proto,
            };
            proto_ok
                && rule.src.iter().any(|s| self.matches(s, src))
                && rule
                    .dst
                    .iter()
                    .any(|d| d.ports.contains(port) && self.matches_dst(&d.host, src, dst))
        });
        acl || self.policy.grants.iter().any(|grant| {
            grant.src.iter().any(|s| self.matches(s, src))
                && grant.dst.iter().any(|d| self.matches_dst(d, src, dst))
                && grant.ip.iter().any(|cap| {
                    cap.ports.contains(port) && cap.proto.as_deref().is_none_or(|p| p == proto)
                })
        })
    }

    fn ssh_decision(&self, src: &Principal, dst: &Principal, ssh_user: &str) -> Verdict {
        let rule = self.policy.ssh.iter().find(|rule| {
            rule.src.iter().any(|s| self.matches(s, src))
                && rule.dst.iter().any(|d| self.matches_dst(d, src, dst))
                && rule
                    .users
                    .iter()
                    .any(|u| ssh_user_matches(u, ssh_user, src))
        });
        match rule.map(|r| r.action) {
            Some(SshAction::Accept) => Verdict::Accept,
            Some(SshAction::Check) => Verdict::Check,
            None => Verdict::Drop,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accept,
    Check,
    Drop,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Accept => "Accept",
            Verdict::Check => "Check",
            Verdict::Drop => "Drop",
        })
    }
}

fn ssh_user_matches(entry: &str, ssh_user: &str, src: &Principal) -> bool {
    match entry {
        "*" => true,
        "autogroup:nonroot" => ssh_user != "root",
        _ => {
            if let Some(domain) = entry.strip_prefix("localpart:*@") {
                src.login
                    .as_deref()
                    .and_then(|login| login.split_once('@'))
                    .is_some_and(|(local, d)| local == ssh_user && d == domain)
            } else {
                entry == ssh_user
            }
        }
    }
}

/// Is `ip` the address `target` or inside the CIDR prefix `target`?
fn prefix_contains(target: &str, ip: IpAddr) -> bool {
    let (addr, bits) = match target.split_once('/') {
        Some((addr, bits)) => match bits.parse::<u32>() {
            Ok(bits) => (addr, Some(bits)),
            Err(_) => return false,
        },
        None => (target, None),
    };
    let Ok(net) = addr.parse::<IpAddr>() else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

/// Describe which principal failed when the test named a set of them.
fn suffix(test_name: &str, principal: &Principal) -> String {
    if principal.name == test_name {
        String::new()
    } else {
        format!(" (as {})", principal.name)
    }
}

/// What a user may use under a policy, as the evaluation above sees it: the groups listing them
/// and the entries of `grants`, `acls` and `ssh` (by index) whose `src` covers them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserAccess {
    pub groups: BTreeSet<String>,
    pub grants: BTreeSet<usize>,
    pub acls: BTreeSet<usize>,
    pub ssh: BTreeSet<usize>,
}

/// The groups and rules that apply to `login`: what an entitlements inventory must report.
pub fn access_of(policy: &Policy, directory: &Directory, login: &str) -> UserAccess {
    let eval = Evaluator { policy, directory };
    let user = eval.user(login);
    let covered = |src: &[String]| src.iter().any(|entry| eval.matches(entry, &user));
    let indices = |srcs: Vec<&Vec<String>>| -> BTreeSet<usize> {
        srcs.into_iter()
            .enumerate()
            .filter(|(_, src)| covered(src))
            .map(|(index, _)| index)
            .collect()
    };
    UserAccess {
        groups: policy
            .groups
            .iter()
            .filter(|(_, members)| members.iter().any(|m| m == login))
            .map(|(group, _)| group.clone())
            .collect(),
        grants: indices(policy.grants.iter().map(|g| &g.src).collect()),
        acls: indices(policy.acls.iter().map(|a| &a.src).collect()),
        ssh: indices(policy.ssh.iter().map(|r| &r.src).collect()),
    }
}

/// Evaluate `tests` entries; one [`TestFailure`] per failing entry.
pub fn run_tests(policy: &Policy, tests: &[AclTest], directory: &Directory) -> Vec<TestFailure> {
    let eval = Evaluator { policy, directory };
    let mut failures = Vec::new();
    for test in tests {
        let proto = test
            .proto
            .as_deref()
            .map_or_else(|| "tcp".to_string(), normalize_proto);
        let srcs = eval.resolve(&test.src);
        let mut errors = Vec::new();
        let mut check = |dst: &TestDst, want: Verdict| {
            for src in &srcs {
                for target in eval.resolve(&dst.host) {
                    let got = if eval.allows(src, &target, dst.port, &proto) {
                        Verdict::Accept
                    } else {
                        Verdict::Drop
                    };
                    if got != want {
                        errors.push(format!(
                            "address {:?}: want: {want}, got: {got}{}",
                            dst.text,
                            suffix(&test.src, src)
                        ));
                        return;
                    }
                }
            }
        };
        for dst in &test.accept {
            check(dst, Verdict::Accept);
        }
        for dst in &test.deny {
            check(dst, Verdict::Drop);
        }
        if !errors.is_empty() {
            failures.push(TestFailure {
                user: test.src.clone(),
                errors,
            });
        }
    }
    failures
}

/// Evaluate `sshTests` entries; one [`TestFailure`] per failing entry.
pub fn run_ssh_tests(
    policy: &Policy,
    tests: &[SshTest],
    directory: &Directory,
) -> Vec<TestFailure> {
    let eval = Evaluator { policy, directory };
    let mut failures = Vec::new();
    for test in tests {
        let srcs = eval.resolve(&test.src);
        let mut errors = Vec::new();
        let expectations = test
            .accept
            .iter()
            .map(|u| (u, Verdict::Accept))
            .chain(test.check.iter().map(|u| (u, Verdict::Check)))
            .chain(test.deny.iter().map(|u| (u, Verdict::Drop)));
        for (ssh_user, want) in expectations {
            'dst: for dst_name in &test.dst {
                for src in &srcs {
                    // `autogroup:self` as a test destination means the source's own device.
                    let targets = if dst_name == "autogroup:self" {
                        vec![src.clone()]
                    } else {
                        eval.resolve(dst_name)
                    };
                    for dst in targets {
                        let got = eval.ssh_decision(src, &dst, ssh_user);
                        if got != want {
                            errors.push(format!(
                                "ssh user {ssh_user:?} on {dst_name:?}: want: {want}, got: {got}{}",
                                suffix(&test.src, src)
                            ));
                            continue 'dst;
                        }
                    }
                }
            }
        }
        if !errors.is_empty() {
            failures.push(TestFailure {
                user: test.src.clone(),
                errors,
            });
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{parse_hujson, parse_policy};

    fn policy(text: &str) -> Policy {
        parse_policy(&parse_hujson(text).expect("valid HuJSON")).expect("valid policy")
    }

    fn directory() -> Directory {
        let mut d = Directory::new();
        d.insert("owner@example.com", "owner", "member");
        d.insert("admin@example.com", "admin", "member");
        d.insert("alice@example.com", "member", "member");
        d.insert("guest@other.com", "member", "shared");
        d
    }

    /// Errors of every test in the policy, flattened.
    fn errors(text: &str) -> Vec<String> {
        let p = policy(text);
        let dir = directory();
        run_tests(&p, &p.tests, &dir)
            .into_iter()
            .chain(run_ssh_tests(&p, &p.ssh_tests, &dir))
            .flat_map(|f| f.errors)
            .collect()
    }

    #[test]
    fn acls_users_groups_ports() {
        let errs = errors(
            r#"{
            "groups": {"group:eng": ["alice@example.com"]},
            "acls": [
                {"action": "accept", "src": ["group:eng"], "dst": ["tag:web:80,443", "tag:db:5432-5434"]},
            ],
            "tests": [
                {"src": "alice@example.com", "accept": ["tag:web:443", "tag:db:5433"], "deny": ["tag:web:22", "tag:db:5435"]},
                {"src": "group:eng", "accept": ["tag:web:80"]},
                {"src": "admin@example.com", "deny": ["tag:web:443"]},
            ],
        }"#,
        );
        assert!(errs.is_empty(), "{errs:?}");

        let errs = errors(
            r#"{
            "acls": [{"action": "accept", "src": ["alice@example.com"], "dst": ["tag:web:443"]}],
            "tests": [{"src": "admin@example.com", "accept": ["tag:web:443"], "deny": ["tag:web:22"]},
                      {"src": "alice@example.com", "deny": ["tag:web:443"]}],
        }"#,
        );
        assert_eq!(
            errs,
            vec![
                "address \"tag:web:443\": want: Accept, got: Drop",
                "address \"tag:web:443\": want: Drop, got: Accept",
            ]
        );
    }

    #[test]
    fn role_autogroups_follow_the_directory() {
        let text = r#"{
            "grants": [{"src": ["autogroup:admin"], "dst": ["tag:prod"], "ip": ["tcp:22"]}],
            "tests": [
                {"src": "admin@example.com", "accept": ["tag:prod:22"], "deny": ["tag:prod:80"]},
                {"src": "alice@example.com", "deny": ["tag:prod:22"]},
                {"src": "owner@example.com", "deny": ["tag:prod:22"]},
                {"src": "autogroup:admin", "accept": ["tag:prod:22"]},
            ],
        }"#;
        assert!(errors(text).is_empty(), "{:?}", errors(text));
        // Same file, but alice is now an admin in the directory: her deny test fails.
        let p = policy(text);
        let mut dir = directory();
        dir.insert("alice@example.com", "admin", "member");
        let failures = run_tests(&p, &p.tests, &dir);
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].user, "alice@example.com");
    }

    #[test]
    fn member_and_shared_autogroups() {
        let errs = errors(
            r#"{
            "grants": [{"src": ["autogroup:member"], "dst": ["*"], "ip": ["*"]}],
            "tests": [
                {"src": "alice@example.com", "accept": ["tag:x:1"]},
                {"src": "unknown@example.com", "accept": ["tag:x:1"]},
                {"src": "guest@other.com", "deny": ["tag:x:1"]},
                {"src": "tag:robot", "deny": ["tag:x:1"]},
            ],
        }"#,
        );
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn group_src_must_hold_for_every_member() {
        let errs = errors(
            r#"{
            "groups": {"group:eng": ["alice@example.com", "admin@example.com"]},
            "acls": [{"action": "accept", "src": ["alice@example.com"], "dst": ["tag:web:*"]}],
            "tests": [{"src": "group:eng", "accept": ["tag:web:443"]}],
        }"#,
        );
        assert_eq!(
            errs,
            vec!["address \"tag:web:443\": want: Accept, got: Drop (as admin@example.com)"]
        );
    }

    #[test]
    fn grants_ip_capabilities_and_protocols() {
        let errs = errors(
            r#"{
            "grants": [
                {"src": ["*"], "dst": ["tag:dns"], "ip": ["udp:53"]},
                {"src": ["*"], "dst": ["tag:web"], "ip": ["443", "8000-8100"]},
                {"src": ["*"], "dst": ["tag:app"], "app": {"example.com/cap": [{}]}},
            ],
            "tests": [
                {"src": "alice@example.com", "proto": "udp", "accept": ["tag:dns:53"]},
                {"src": "alice@example.com", "deny": ["tag:dns:53", "tag:web:22", "tag:app:443"], "accept": ["tag:web:8080"]},
            ],
        }"#,
        );
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn hosts_ips_and_autogroup_self() {
        let errs = errors(
            r#"{
            "hosts": {"db": "100.64.0.5", "corp": "10.0.0.0/8"},
            "acls": [
                {"action": "accept", "src": ["alice@example.com"], "dst": ["db:5432", "corp:443"]},
                {"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]},
                {"action": "accept", "src": ["*"], "dst": ["100.100.100.100:53"], "proto": "udp"},
            ],
            "tests": [
                {"src": "alice@example.com", "accept": ["100.64.0.5:5432", "db:5432", "10.1.2.3:443", "alice@example.com:22"],
                 "deny": ["admin@example.com:22", "db:22", "100.100.100.100:53"]},
                {"src": "alice@example.com", "proto": "udp", "accept": ["100.100.100.100:53"]},
            ],
        }"#,
        );
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn ssh_tests_first_matching_rule_decides() {
        let text = r#"{
            "groups": {"group:sre": ["admin@example.com"]},
            "ssh": [
                {"action": "accept", "src": ["group:sre"], "dst": ["tag:prod"], "users": ["root", "autogroup:nonroot"]},
                {"action": "check", "src": ["autogroup:member"], "dst": ["tag:prod"], "users": ["autogroup:nonroot"]},
                {"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["localpart:*@example.com"]},
            ],
            "sshTests": [
                {"src": "admin@example.com", "dst": ["tag:prod"], "accept": ["root", "ubuntu"]},
                {"src": "alice@example.com", "dst": ["tag:prod"], "check": ["ubuntu"], "deny": ["root"]},
                {"src": "alice@example.com", "dst": ["autogroup:self"], "accept": ["alice"], "deny": ["bob"]},
            ],
        }"#;
        assert!(errors(text).is_empty(), "{:?}", errors(text));

        let errs = errors(
            r#"{
            "ssh": [{"action": "check", "src": ["autogroup:member"], "dst": ["tag:prod"], "users": ["autogroup:nonroot"]}],
            "sshTests": [{"src": "alice@example.com", "dst": ["tag:prod"], "accept": ["ubuntu", "root"]}],
        }"#,
        );
        assert_eq!(
            errs,
            vec![
                "ssh user \"ubuntu\" on \"tag:prod\": want: Accept, got: Check",
                "ssh user \"root\" on \"tag:prod\": want: Accept, got: Drop",
            ]
        );
    }

    #[test]
    fn prefix_containment() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("valid IP");
        assert!(prefix_contains("10.0.0.0/8", ip("10.9.8.7")));
        assert!(!prefix_contains("10.0.0.0/8", ip("11.0.0.1")));
        assert!(prefix_contains("0.0.0.0/0", ip("1.2.3.4")));
        assert!(prefix_contains(
            "fd7a:115c:a1e0::/48",
            ip("fd7a:115c:a1e0::1")
        ));
        assert!(!prefix_contains("fd7a:115c:a1e0::/48", ip("1.2.3.4")));
        assert!(!prefix_contains("tag:x", ip("1.2.3.4")));
    }
}
