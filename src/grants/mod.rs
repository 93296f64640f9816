//! Grants, pure: what a grant means under its policy (which grantable item it names, whether its
//! duration and approval are acceptable, what it changes in Tailscale), its lifecycle
//! ([`lifecycle`]) and the ledger's rules for roles and posture attributes ([`ledger`]). No I/O:
//! the grant reconciler loads, calls these and acts.

pub mod admission;
pub mod ledger;
pub mod lifecycle;
#[cfg(test)]
mod model_tests;

use std::time::Duration;

use serde_json::{json, Value};

use crate::api::{
    AccessGrantSpec, AccessPolicySpec, Approval, GrantTerms, RuleTemplate, SshAction,
    SshRuleTemplate, TailscaleRole,
};
use crate::duration;

/// What a grant changes in Tailscale.
#[derive(Clone, Debug, PartialEq)]
pub enum PlannedAccess {
    /// Membership of a policy-file group.
    Member { group: String },
    /// A Tailscale role.
    Role { role: String },
    /// Policy-file entries from a network rule template.
    Rule { template: RuleTemplate },
    /// A policy-file `ssh` entry from a template.
    SshRule { template: SshRuleTemplate },
    /// A device posture attribute.
    PostureAttribute { key: String, value: String },
}

impl PlannedAccess {
    /// A short human description, for messages and Events.
    pub fn describe(&self) -> String {
        match self {
            PlannedAccess::Member { group } => format!("membership of {group}"),
            PlannedAccess::Role { role } => format!("role {role}"),
            PlannedAccess::Rule { template } => format!("network rule {}", template.name),
            PlannedAccess::SshRule { template } => format!("SSH rule {}", template.name),
            PlannedAccess::PostureAttribute { key, .. } => format!("posture attribute {key}"),
        }
    }
}

/// The verdict on a grant under its policy.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolution {
    /// The policy does not allow it: a message that says why and what would be allowed.
    Denied(String),
    /// Allowed, but it needs an approval first.
    AwaitingApproval {
        access: PlannedAccess,
        duration: Duration,
        approvers: String,
    },
    /// Allowed and approved (or approval not required).
    Approved {
        access: PlannedAccess,
        duration: Duration,
        /// An approval was required (and given): it counts only if the cluster proves it.
        approved: bool,
    },
}

/// Judge a grant against its policy. Never clips: a grant over the maximum is denied with the
/// maximum in the message.
pub fn resolve(policy: &AccessPolicySpec, grant: &AccessGrantSpec) -> Resolution {
    let g = &policy.grantable;
    if let Some(requester) = grant
        .requested_by
        .as_deref()
        .filter(|r| r.starts_with(SERVICE_ACCOUNT_PREFIX))
    {
        if !g.service_account_requesters.iter().any(|r| r == requester) {
            return Resolution::Denied(format!(
                "requested by the ServiceAccount {requester}, which this policy does not list in grantable.serviceAccountRequesters: a ServiceAccount is whoever can mint its token, so only those the policy names may request access"
            ));
        }
    }
    let a = &grant.access;
    let (access, terms, item) = if let Some(group) = &a.group {
        match g.groups.iter().find(|x| &x.name == group) {
            Some(x) => (
                PlannedAccess::Member {
                    group: group.clone(),
                },
                &x.terms,
                group.clone(),
            ),
            None => {
                return Resolution::Denied(not_listed(
                    "group",
                    group,
                    g.groups.iter().map(|x| x.name.as_str()),
                ))
            }
        }
    } else if let Some(role) = a.role {
        let name = role_name(role);
        match g.roles.iter().find(|x| x.role == role) {
            Some(x) => (
                PlannedAccess::Role { role: name.clone() },
                &x.terms,
                format!("role {name}"),
            ),
            None => {
                let listed: Vec<String> = g.roles.iter().map(|x| role_name(x.role)).collect();
                return Resolution::Denied(not_listed(
                    "role",
                    &name,
                    listed.iter().map(String::as_str),
                ));
            }
        }
    } else if let Some(rule) = &a.rule {
        match g.rules.iter().find(|x| &x.name == rule) {
            Some(x) => (
                PlannedAccess::Rule {
                    template: x.clone(),
                },
                &x.terms,
                format!("rule {rule}"),
            ),
            None => {
                return Resolution::Denied(not_listed(
                    "rule",
                    rule,
                    g.rules.iter().map(|x| x.name.as_str()),
                ))
            }
        }
    } else if let Some(ssh) = &a.ssh_rule {
        match g.ssh_rules.iter().find(|x| &x.name == ssh) {
            Some(x) => (
                PlannedAccess::SshRule {
                    template: x.clone(),
                },
                &x.terms,
                format!("SSH rule {ssh}"),
            ),
            None => {
                return Resolution::Denied(not_listed(
                    "SSH rule",
                    ssh,
                    g.ssh_rules.iter().map(|x| x.name.as_str()),
                ))
            }
        }
    } else if let Some(attr) = &a.posture_attribute {
        match g.posture_attributes.iter().find(|x| &x.name == attr) {
            Some(x) => (
                PlannedAccess::PostureAttribute {
                    key: x.key.clone(),
                    value: x.value.clone(),
                },
                &x.terms,
                format!("posture attribute {attr}"),
            ),
            None => {
                return Resolution::Denied(not_listed(
                    "posture attribute",
                    attr,
                    g.posture_attributes.iter().map(|x| x.name.as_str()),
                ))
            }
        }
    } else {
        return Resolution::Denied("the grant names no access".to_string());
    };

    let wanted = match duration::parse(&grant.duration) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => return Resolution::Denied("duration must be positive".to_string()),
        Err(e) => return Resolution::Denied(e),
    };
    let max = match duration::parse(&terms.max_duration) {
        Ok(d) => d,
        Err(e) => {
            return Resolution::Denied(format!(
                "the policy's maxDuration for {item} is invalid: {e}"
            ))
        }
    };
    if wanted > max {
        return Resolution::Denied(format!(
            "duration {} exceeds the maximum of {} for {item}; request at most {}",
            grant.duration,
            terms.max_duration,
            duration::format(max)
        ));
    }
    if !terms.approval_required {
        return Resolution::Approved {
            access,
            duration: wanted,
            approved: false,
        };
    }
    match &grant.approval {
        None => Resolution::AwaitingApproval {
            access,
            duration: wanted,
            approvers: describe_approvers(terms),
        },
        Some(approval) => match check_approver(terms, approval, grant.requested_by.as_deref()) {
            Ok(()) => Resolution::Approved {
                access,
                duration: wanted,
                approved: true,
            },
            Err(message) => Resolution::Denied(message),
        },
    }
}

/// The operator's own check of an approval, against the policy as it is now. The chart's
/// ValidatingAdmissionPolicies are the primary guard (they see the approver's real identity and
/// groups as they approve, and prove `approval.group`); this re-checks at every activation
/// attempt what the policy says today: self-approval is refused, a ServiceAccount approves only
/// when named, and an approver counts only if listed by name in `approvers.users` or through
/// the approver group the approval names.
fn check_approver(
    terms: &GrantTerms,
    approval: &Approval,
    requested_by: Option<&str>,
) -> Result<(), String> {
    let approved_by = approval.approved_by.as_str();
    if requested_by == Some(approved_by) {
        return Err(format!(
            "{approved_by} approved their own grant; another approver must approve it"
        ));
    }
    let approvers = &terms.approvers;
    let named = approvers.users.iter().any(|u| u == approved_by);
    // A ServiceAccount is anyone who can mint its token: it approves only when named.
    if approved_by.starts_with(SERVICE_ACCOUNT_PREFIX) && !named {
        return Err(format!(
            "{approved_by} is a ServiceAccount; a ServiceAccount approves only when the policy lists it by name in approvers.users"
        ));
    }
    if named {
        return Ok(());
    }
    match &approval.group {
        Some(group) if approvers.groups.iter().any(|g| g == group) => Ok(()),
        Some(group) => Err(format!(
            "{approved_by} approved through group {group}, which is not an approver of this access (approvers: {}); an approver must approve a new grant",
            describe_approvers(terms)
        )),
        None => Err(format!(
            "{approved_by} is not listed in approvers.users and the approval names no approver group (spec.approval.group); approvers: {}",
            describe_approvers(terms)
        )),
    }
}

/// Kubernetes user names of ServiceAccounts start with this.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

fn describe_approvers(terms: &GrantTerms) -> String {
    let a = &terms.approvers;
    let mut parts: Vec<String> = a.users.iter().map(|u| format!("user {u}")).collect();
    parts.extend(a.groups.iter().map(|g| format!("group {g}")));
    if parts.is_empty() {
        "none listed".to_string()
    } else {
        parts.join(", ")
    }
}

fn not_listed<'a>(kind: &str, name: &str, listed: impl Iterator<Item = &'a str>) -> String {
    let listed: Vec<&str> = listed.collect();
    if listed.is_empty() {
        format!("{kind} {name:?} is not grantable: the policy lists no grantable {kind}s")
    } else {
        format!(
            "{kind} {name:?} is not grantable under this policy (grantable: {})",
            listed.join(", ")
        )
    }
}

/// A Tailscale role's API name (`it-admin`, ...).
pub fn role_name(role: TailscaleRole) -> String {
    match serde_json::to_value(role) {
        Ok(Value::String(s)) => s,
        _ => format!("{role:?}").to_lowercase(),
    }
}

/// The policy-file entries a network rule template grants a user: one `grants` entry, or, for a
/// file that still uses the legacy `acls` section, `acls` entries (one per protocol).
pub fn rule_entries(template: &RuleTemplate, login: &str, legacy_acls: bool) -> Vec<Value> {
    let ip: Vec<String> = if template.ip.is_empty() {
        vec!["*".to_string()]
    } else {
        template.ip.clone()
    };
    if !legacy_acls {
        return vec![json!({"src": [login], "dst": template.dst, "ip": ip})];
    }
    // acls name ports on the destination (`host:port`) and one protocol per rule.
    let mut by_proto: Vec<(Option<String>, Vec<String>)> = Vec::new();
    for spec in &ip {
        let (proto, ports) = match spec.split_once(':') {
            Some((p, ports)) => (Some(p.to_string()), ports.to_string()),
            None if spec
                .chars()
                .all(|c| c.is_ascii_digit() || c == '-' || c == ',') =>
            {
                (None, spec.clone())
            }
            None => (None, "*".to_string()),
        };
        match by_proto.iter_mut().find(|(p, _)| *p == proto) {
            Some((_, list)) => list.push(ports),
            None => by_proto.push((proto, vec![ports])),
        }
    }
    by_proto
        .into_iter()
        .map(|(proto, ports)| {
            let dst: Vec<String> = template
                .dst
                .iter()
                .flat_map(|d| ports.iter().map(move |p| format!("{d}:{p}")))
                .collect();
            let mut entry = json!({"action": "accept", "src": [login], "dst": dst});
            if let Some(p) = proto {
                entry["proto"] = Value::String(p);
            }
            entry
        })
        .collect()
}

/// The `ssh` entry an SSH rule template grants a user.
pub fn ssh_entry(template: &SshRuleTemplate, login: &str) -> Value {
    let action = match template.action {
        SshAction::Accept => "accept",
        SshAction::Check => "check",
    };
    json!({"action": action, "src": [login], "dst": template.dst, "users": template.users})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Approvers, GrantAccess, Grantable, GrantableGroup, GrantableRole, LocalRef};

    fn terms(max: &str, approval: bool, users: &[&str], groups: &[&str]) -> GrantTerms {
        GrantTerms {
            max_duration: max.into(),
            approval_required: approval,
            approvers: Approvers {
                users: users.iter().map(|s| s.to_string()).collect(),
                groups: groups.iter().map(|s| s.to_string()).collect(),
            },
        }
    }

    fn policy() -> AccessPolicySpec {
        serde_json::from_value(json!({"integrationRef": {"name": "t"}}))
            .map(|mut p: AccessPolicySpec| {
                p.grantable = Grantable {
                    groups: vec![
                        GrantableGroup {
                            name: "group:prod".into(),
                            terms: terms("4h", true, &["bob"], &[]),
                        },
                        GrantableGroup {
                            name: "group:staging".into(),
                            terms: terms("8h", false, &[], &[]),
                        },
                    ],
                    roles: vec![GrantableRole {
                        role: TailscaleRole::Admin,
                        terms: terms("1h", true, &[], &["sre"]),
                    }],
                    rules: vec![RuleTemplate {
                        name: "db".into(),
                        dst: vec!["tag:db".into()],
                        ip: vec!["tcp:5432".into(), "tcp:6432".into(), "udp:53".into()],
                        terms: terms("2h", false, &[], &[]),
                    }],
                    ..Default::default()
                };
                p
            })
            .expect("policy")
    }

    fn grant(access: GrantAccess, duration: &str) -> AccessGrantSpec {
        AccessGrantSpec {
            policy_ref: LocalRef { name: "p".into() },
            user: "alice@example.com".into(),
            access,
            duration: duration.into(),
            reason: "incident".into(),
            requested_by: Some("alice".into()),
            approval: None,
        }
    }

    fn group(name: &str) -> GrantAccess {
        GrantAccess {
            group: Some(name.into()),
            ..Default::default()
        }
    }

    #[test]
    fn unlisted_items_are_denied_naming_what_is_grantable() {
        match resolve(&policy(), &grant(group("group:secret"), "1h")) {
            Resolution::Denied(m) => assert!(
                m.contains("group:secret") && m.contains("group:prod, group:staging"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        let role = GrantAccess {
            role: Some(TailscaleRole::Auditor),
            ..Default::default()
        };
        assert!(
            matches!(resolve(&policy(), &grant(role, "1h")), Resolution::Denied(m) if m.contains("auditor") && m.contains("admin"))
        );
        let ssh = GrantAccess {
            ssh_rule: Some("x".into()),
            ..Default::default()
        };
        assert!(
            matches!(resolve(&policy(), &grant(ssh, "1h")), Resolution::Denied(m) if m.contains("lists no grantable SSH rules"))
        );
    }

    #[test]
    fn over_the_maximum_is_denied_never_clipped() {
        match resolve(&policy(), &grant(group("group:prod"), "5h")) {
            Resolution::Denied(m) => assert!(
                m.contains("exceeds the maximum of 4h") && m.contains("at most 4h"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            resolve(&policy(), &grant(group("group:prod"), "4h")),
            Resolution::AwaitingApproval { duration, .. } if duration == Duration::from_secs(4 * 3600)
        ));
    }

    fn approval(by: &str, group: Option<&str>) -> Option<Approval> {
        Some(Approval {
            approved_by: by.into(),
            grant_uid: Some("uid-1".into()),
            group: group.map(str::to_string),
            comment: None,
        })
    }

    #[test]
    fn approval_rules() {
        let mut g = grant(group("group:prod"), "1h");
        assert!(
            matches!(resolve(&policy(), &g), Resolution::AwaitingApproval { approvers, .. } if approvers == "user bob")
        );
        g.approval = approval("bob", None);
        assert!(matches!(
            resolve(&policy(), &g),
            Resolution::Approved { .. }
        ));
        g.approval = approval("mallory", None);
        assert!(
            matches!(resolve(&policy(), &g), Resolution::Denied(m) if m.contains("mallory is not listed in approvers.users and the approval names no approver group"))
        );
        g.approval = approval("alice", None);
        assert!(
            matches!(resolve(&policy(), &g), Resolution::Denied(m) if m.contains("approved their own grant"))
        );
        // No approval needed.
        assert!(matches!(
            resolve(&policy(), &grant(group("group:staging"), "8h")),
            Resolution::Approved { .. }
        ));
    }

    #[test]
    fn only_service_accounts_the_policy_names_may_request() {
        let bot = "system:serviceaccount:ci:deployer";
        let mut g = grant(group("group:staging"), "8h");
        g.requested_by = Some(bot.into());
        assert!(
            matches!(resolve(&policy(), &g), Resolution::Denied(m) if m.contains("ServiceAccount system:serviceaccount:ci:deployer, which this policy does not list in grantable.serviceAccountRequesters"))
        );
        let mut named = policy();
        named.grantable.service_account_requesters = vec![bot.into()];
        assert!(matches!(resolve(&named, &g), Resolution::Approved { .. }));
        // Naming one ServiceAccount lets in no other, not even one of the same name elsewhere.
        g.requested_by = Some("system:serviceaccount:other:deployer".into());
        assert!(matches!(resolve(&named, &g), Resolution::Denied(_)));
    }

    #[test]
    fn a_group_approval_counts_only_through_a_group_the_policy_lists_now() {
        let mut r = grant(
            GrantAccess {
                role: Some(TailscaleRole::Admin),
                ..Default::default()
            },
            "30m",
        );
        // Through the approver group sre (the API server proved carol was in it).
        r.approval = approval("carol", Some("sre"));
        assert!(
            matches!(resolve(&policy(), &r), Resolution::Approved { access: PlannedAccess::Role { role }, approved: true, .. } if role == "admin")
        );
        // Naming no group, an approver outside approvers.users is not trusted blindly.
        r.approval = approval("carol", None);
        assert!(
            matches!(resolve(&policy(), &r), Resolution::Denied(m) if m.contains("names no approver group (spec.approval.group); approvers: group sre"))
        );
        // A group that is not (or no longer) an approver group of this access does not count.
        r.approval = approval("carol", Some("everyone"));
        assert!(
            matches!(resolve(&policy(), &r), Resolution::Denied(m) if m.contains("approved through group everyone, which is not an approver of this access"))
        );
        let mut removed = policy();
        removed.grantable.roles[0].terms.approvers.groups = vec!["security".into()];
        r.approval = approval("carol", Some("sre"));
        assert!(matches!(resolve(&removed, &r), Resolution::Denied(_)));
        // A ServiceAccount approves only when listed by name, whatever groups it is in.
        r.approval = approval("system:serviceaccount:team:bot", Some("sre"));
        assert!(
            matches!(resolve(&policy(), &r), Resolution::Denied(m) if m.contains("ServiceAccount approves only when the policy lists it by name"))
        );
    }

    #[test]
    fn rule_entries_for_grants_and_legacy_acls() {
        let t = &policy().grantable.rules[0];
        assert_eq!(
            rule_entries(t, "alice@example.com", false),
            vec![
                json!({"src": ["alice@example.com"], "dst": ["tag:db"], "ip": ["tcp:5432", "tcp:6432", "udp:53"]})
            ]
        );
        assert_eq!(
            rule_entries(t, "alice@example.com", true),
            vec![
                json!({"action": "accept", "src": ["alice@example.com"], "dst": ["tag:db:5432", "tag:db:6432"], "proto": "tcp"}),
                json!({"action": "accept", "src": ["alice@example.com"], "dst": ["tag:db:53"], "proto": "udp"}),
            ]
        );
        let any = RuleTemplate {
            ip: vec![],
            ..t.clone()
        };
        assert_eq!(
            rule_entries(&any, "a@b", true),
            vec![json!({"action": "accept", "src": ["a@b"], "dst": ["tag:db:*"]})]
        );
    }

    #[test]
    fn ssh_entries_carry_action_and_users() {
        let t = SshRuleTemplate {
            name: "prod".into(),
            action: SshAction::Check,
            dst: vec!["tag:prod".into()],
            users: vec!["root".into()],
            terms: terms("1h", false, &[], &[]),
        };
        assert_eq!(
            ssh_entry(&t, "a@b"),
            json!({"action": "check", "src": ["a@b"], "dst": ["tag:prod"], "users": ["root"]})
        );
    }
}
