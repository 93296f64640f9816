//! Grants, pure: what a grant means under its policy (which grantable item it names, whether its
//! duration, or its standing without one, and its approval are acceptable, who approved it, what
//! it changes in Tailscale), its lifecycle
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
    AccessGrantSpec, AccessPolicySpec, Approval, Decision, GrantAccess, GrantTerms, RuleTemplate,
    SshAction, SshRuleTemplate, TailscaleRole,
};
use crate::duration;
use lifecycle::Reason;

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

/// How a grant the policy allows came to be approved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovedBy {
    /// The item needs no approval.
    NotRequired,
    /// An approver the policy lists (`spec.approval`).
    Approver {
        name: String,
        /// The approver group the approval is given through, if any.
        group: Option<String>,
    },
    /// Requested by a GitOps identity the policy lists (`grantable.gitOpsRequesters`): the
    /// review happened in the pull request that added the grant.
    GitOps { requester: String },
}

impl ApprovedBy {
    /// Whether it counts only where the cluster proves who requested and approved: everything
    /// but an item that needs no approval.
    pub fn needs_proof(&self) -> bool {
        !matches!(self, ApprovedBy::NotRequired)
    }

    /// The identity whose word approves the grant (the approver, or the GitOps requester).
    pub fn identity(&self) -> Option<&str> {
        match self {
            ApprovedBy::NotRequired => None,
            ApprovedBy::Approver { name, .. } => Some(name),
            ApprovedBy::GitOps { requester } => Some(requester),
        }
    }

    /// The reason of the grant's `Approved` condition.
    pub fn reason(&self) -> &'static str {
        match self {
            ApprovedBy::NotRequired => APPROVAL_NOT_REQUIRED,
            ApprovedBy::Approver { .. } => APPROVED_BY_APPROVER,
            ApprovedBy::GitOps { .. } => APPROVED_IN_GITOPS,
        }
    }

    /// The message of the grant's `Approved` condition, under the AccessPolicy named `policy`.
    pub fn message(&self, policy: &str) -> String {
        match self {
            ApprovedBy::NotRequired => {
                format!("this access needs no approval under AccessPolicy {policy}")
            }
            ApprovedBy::Approver { name, group: None } => format!("approved by {name}"),
            ApprovedBy::Approver {
                name,
                group: Some(group),
            } => format!("approved by {name} through approver group {group}"),
            ApprovedBy::GitOps { requester } => format!(
                "approved in GitOps: requested by {requester}, which AccessPolicy {policy} lists in grantable.gitOpsRequesters; the review happened in the pull request that added this grant"
            ),
        }
    }
}

/// Reasons of a grant's `Approved` condition (and the Event of a GitOps approval).
pub const APPROVED_IN_GITOPS: &str = "ApprovedInGitOps";
pub const APPROVED_BY_APPROVER: &str = "ApprovedByApprover";
pub const APPROVAL_NOT_REQUIRED: &str = "ApprovalNotRequired";

/// The verdict on a grant under its policy.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolution {
    /// The policy does not allow it: why (a typed reason) and a message that says what would be
    /// allowed.
    Denied { reason: Reason, message: String },
    /// Allowed, but it needs an approval first. `duration` is `None` for a standing grant.
    AwaitingApproval {
        access: PlannedAccess,
        duration: Option<Duration>,
        approvers: String,
    },
    /// Allowed and approved (or approval not required). `duration` is `None` for a standing
    /// grant.
    Approved {
        access: PlannedAccess,
        duration: Option<Duration>,
        /// How: every way but `NotRequired` counts only if the cluster proves it.
        by: ApprovedBy,
    },
    /// Allowed by the policy, and an approver it lists denied it (`approval.decision: Denied`).
    /// Like an approval, it counts only if the cluster proves it.
    DeniedByApprover {
        /// The approver (always [`ApprovedBy::Approver`]), judged as an approver is.
        by: ApprovedBy,
        comment: Option<String>,
    },
}

impl Resolution {
    fn denied(message: impl Into<String>) -> Self {
        Resolution::Denied {
            reason: Reason::Denied,
            message: message.into(),
        }
    }
}

/// The terms of the grantable item a grant names, if the policy lists it.
pub fn terms_of<'a>(policy: &'a AccessPolicySpec, access: &GrantAccess) -> Option<&'a GrantTerms> {
    let g = &policy.grantable;
    if let Some(group) = &access.group {
        g.groups.iter().find(|x| &x.name == group).map(|x| &x.terms)
    } else if let Some(role) = access.role {
        g.roles.iter().find(|x| x.role == role).map(|x| &x.terms)
    } else if let Some(rule) = &access.rule {
        g.rules.iter().find(|x| &x.name == rule).map(|x| &x.terms)
    } else if let Some(ssh) = &access.ssh_rule {
        g.ssh_rules
            .iter()
            .find(|x| &x.name == ssh)
            .map(|x| &x.terms)
    } else if let Some(attr) = &access.posture_attribute {
        g.posture_attributes
            .iter()
            .find(|x| &x.name == attr)
            .map(|x| &x.terms)
    } else {
        None
    }
}

/// The GitOps identity that requested the grant, if its requester is a ServiceAccount the
/// policy lists (the schema admits only ServiceAccounts there; a person never stands for a
/// review, whatever the list says).
pub fn git_ops_requester<'a>(
    policy: &AccessPolicySpec,
    grant: &'a AccessGrantSpec,
) -> Option<&'a str> {
    grant
        .requested_by
        .as_deref()
        .filter(|r| r.starts_with(SERVICE_ACCOUNT_PREFIX))
        .filter(|r| policy.grantable.git_ops_requesters.iter().any(|g| g == r))
}

/// The identity whose word would approve the grant: its approver, else a GitOps requester the
/// policy lists (the directory is asked about this identity as about an approver).
pub fn approving_identity<'a>(
    policy: &AccessPolicySpec,
    grant: &'a AccessGrantSpec,
) -> Option<&'a str> {
    match &grant.approval {
        Some(a) => Some(a.approved_by.as_str()),
        None => git_ops_requester(policy, grant),
    }
}

/// Judge a grant against its policy. Never clips: a grant over the maximum is denied with the
/// maximum in the message. A grant without a duration (standing) is allowed only where the
/// item says `standing`. An approval given is judged; without one, a GitOps requester the
/// policy lists approves.
pub fn resolve(policy: &AccessPolicySpec, grant: &AccessGrantSpec) -> Resolution {
    let g = &policy.grantable;
    let git_ops = git_ops_requester(policy, grant);
    if let Some(requester) = grant
        .requested_by
        .as_deref()
        .filter(|r| r.starts_with(SERVICE_ACCOUNT_PREFIX))
    {
        if git_ops.is_none() && !g.service_account_requesters.iter().any(|r| r == requester) {
            return Resolution::denied(format!(
                "requested by the ServiceAccount {requester}, which this policy does not list in grantable.serviceAccountRequesters (or grantable.gitOpsRequesters): a ServiceAccount is whoever can mint its token, so only those the policy names may request access"
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
                return Resolution::denied(not_listed(
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
                return Resolution::denied(not_listed(
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
                return Resolution::denied(not_listed(
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
                return Resolution::denied(not_listed(
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
                return Resolution::denied(not_listed(
                    "posture attribute",
                    attr,
                    g.posture_attributes.iter().map(|x| x.name.as_str()),
                ))
            }
        }
    } else {
        return Resolution::denied("the grant names no access");
    };

    let duration = match timed(grant, terms, &item) {
        Ok(d) => d,
        Err((reason, message)) => return Resolution::Denied { reason, message },
    };
    if !terms.approval_required {
        return Resolution::Approved {
            access,
            duration,
            by: ApprovedBy::NotRequired,
        };
    }
    match (&grant.approval, git_ops) {
        (None, Some(requester)) => Resolution::Approved {
            access,
            duration,
            by: ApprovedBy::GitOps {
                requester: requester.to_string(),
            },
        },
        (None, None) => Resolution::AwaitingApproval {
            access,
            duration,
            approvers: describe_approvers(terms),
        },
        (Some(approval), _) => {
            if let Err(message) = check_approver(terms, approval, grant.requested_by.as_deref()) {
                return Resolution::denied(message);
            }
            let by = ApprovedBy::Approver {
                name: approval.approved_by.clone(),
                group: approval.group.clone(),
            };
            match approval.decision {
                Decision::Approved => Resolution::Approved {
                    access,
                    duration,
                    by,
                },
                Decision::Denied => Resolution::DeniedByApprover {
                    by,
                    comment: approval.comment.clone(),
                },
            }
        }
    }
}

/// How long a grant of `item` lasts: `None` (standing) only where the item allows standing
/// access; else a positive duration within the item's maximum. Refused: why, and a message.
fn timed(
    grant: &AccessGrantSpec,
    terms: &GrantTerms,
    item: &str,
) -> Result<Option<Duration>, (Reason, String)> {
    let Some(asked) = grant.duration.as_deref() else {
        if terms.standing {
            return Ok(None);
        }
        return Err((
            Reason::StandingNotAllowed,
            format!(
                "{item} does not allow standing access (a grant without spec.duration): set spec.duration (at most {}) in a new AccessGrant, or ask a policy admin to set terms.standing: true for {item}",
                terms.max_duration
            ),
        ));
    };
    let denied = |message: String| (Reason::Denied, message);
    let wanted = match duration::parse(asked) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => return Err(denied("duration must be positive".to_string())),
        Err(e) => return Err(denied(e)),
    };
    let max = duration::parse(&terms.max_duration).map_err(|e| {
        denied(format!(
            "the policy's maxDuration for {item} is invalid: {e}"
        ))
    })?;
    if wanted > max {
        return Err(denied(format!(
            "duration {asked} exceeds the maximum of {} for {item}; request at most {}",
            terms.max_duration,
            duration::format(max)
        )));
    }
    Ok(Some(wanted))
}

/// The operator's own check of an approver's decision (approval or denial alike), against the
/// policy as it is now. The chart's ValidatingAdmissionPolicies are the primary guard (they see
/// the approver's real identity and groups as they decide, and prove `approval.group`); this
/// re-checks at every attempt what the policy says today: deciding one's own grant is refused,
/// a ServiceAccount decides only when named, and an approver counts only if listed by name in
/// `approvers.users` or through the approver group the decision names. A decision that does not
/// count ends the grant as Denied (it cannot be decided again), never as `DeniedByApprover`.
fn check_approver(
    terms: &GrantTerms,
    approval: &Approval,
    requested_by: Option<&str>,
) -> Result<(), String> {
    let approved_by = approval.approved_by.as_str();
    let (verb, noun) = (approval.decision.verb(), approval.decision.noun());
    if requested_by == Some(approved_by) {
        return Err(match approval.decision {
            Decision::Approved => format!(
                "{approved_by} approved their own grant; another approver must approve it"
            ),
            Decision::Denied => format!(
                "{approved_by} denied their own grant, which is no approver's denial; to withdraw a request, delete the grant"
            ),
        });
    }
    let approvers = &terms.approvers;
    let named = approvers.users.iter().any(|u| u == approved_by);
    // A ServiceAccount is anyone who can mint its token: it decides only when named.
    if approved_by.starts_with(SERVICE_ACCOUNT_PREFIX) && !named {
        return Err(format!(
            "{approved_by} is a ServiceAccount; a ServiceAccount approves or denies only when the policy lists it by name in approvers.users"
        ));
    }
    if named {
        return Ok(());
    }
    match &approval.group {
        Some(group) if approvers.groups.iter().any(|g| g == group) => Ok(()),
        Some(group) => Err(format!(
            "{approved_by} {verb} through group {group}, which is not an approver of this access (approvers: {}); an approver must decide a new grant",
            describe_approvers(terms)
        )),
        None => Err(format!(
            "{approved_by} is not listed in approvers.users and the {noun} names no approver group (spec.approval.group); approvers: {}",
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
            standing: false,
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
            duration: Some(duration.into()),
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
            Resolution::Denied { message: m, .. } => assert!(
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
            matches!(resolve(&policy(), &grant(role, "1h")), Resolution::Denied { message: m, .. } if m.contains("auditor") && m.contains("admin"))
        );
        let ssh = GrantAccess {
            ssh_rule: Some("x".into()),
            ..Default::default()
        };
        assert!(
            matches!(resolve(&policy(), &grant(ssh, "1h")), Resolution::Denied { message: m, .. } if m.contains("lists no grantable SSH rules"))
        );
    }

    #[test]
    fn over_the_maximum_is_denied_never_clipped() {
        match resolve(&policy(), &grant(group("group:prod"), "5h")) {
            Resolution::Denied { message: m, .. } => assert!(
                m.contains("exceeds the maximum of 4h") && m.contains("at most 4h"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            resolve(&policy(), &grant(group("group:prod"), "4h")),
            Resolution::AwaitingApproval { duration, .. } if duration == Some(Duration::from_secs(4 * 3600))
        ));
    }

    fn approval(by: &str, group: Option<&str>) -> Option<Approval> {
        Some(Approval {
            approved_by: by.into(),
            decision: crate::api::Decision::Approved,
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
            matches!(resolve(&policy(), &g), Resolution::Denied { message: m, .. } if m.contains("mallory is not listed in approvers.users and the approval names no approver group"))
        );
        g.approval = approval("alice", None);
        assert!(
            matches!(resolve(&policy(), &g), Resolution::Denied { message: m, .. } if m.contains("approved their own grant"))
        );
        // No approval needed.
        assert!(matches!(
            resolve(&policy(), &grant(group("group:staging"), "8h")),
            Resolution::Approved { .. }
        ));
    }

    #[test]
    fn a_denial_is_judged_by_the_rules_of_approvals() {
        let mut g = grant(group("group:prod"), "1h");
        let denied_by = |by: &str| {
            approval(by, None).map(|a| Approval {
                decision: Decision::Denied,
                comment: Some("not now".into()),
                ..a
            })
        };
        g.approval = denied_by("bob");
        assert_eq!(
            resolve(&policy(), &g),
            Resolution::DeniedByApprover {
                by: ApprovedBy::Approver {
                    name: "bob".into(),
                    group: None
                },
                comment: Some("not now".into()),
            }
        );
        g.approval = denied_by("mallory");
        assert!(
            matches!(resolve(&policy(), &g), Resolution::Denied { reason: Reason::Denied, message } if message.contains("the denial names no approver group"))
        );
        g.approval = denied_by("alice");
        assert!(
            matches!(resolve(&policy(), &g), Resolution::Denied { reason: Reason::Denied, message } if message.contains("alice denied their own grant") && message.contains("delete the grant"))
        );
        // An item that needs no approval has nothing for a denial to decide.
        let mut free = grant(group("group:staging"), "8h");
        free.approval = denied_by("bob");
        assert!(matches!(
            resolve(&policy(), &free),
            Resolution::Approved {
                by: ApprovedBy::NotRequired,
                ..
            }
        ));
    }

    #[test]
    fn only_service_accounts_the_policy_names_may_request() {
        let bot = "system:serviceaccount:ci:deployer";
        let mut g = grant(group("group:staging"), "8h");
        g.requested_by = Some(bot.into());
        assert!(
            matches!(resolve(&policy(), &g), Resolution::Denied { message: m, .. } if m.contains("ServiceAccount system:serviceaccount:ci:deployer, which this policy does not list in grantable.serviceAccountRequesters"))
        );
        let mut named = policy();
        named.grantable.service_account_requesters = vec![bot.into()];
        assert!(matches!(resolve(&named, &g), Resolution::Approved { .. }));
        // Naming one ServiceAccount lets in no other, not even one of the same name elsewhere.
        g.requested_by = Some("system:serviceaccount:other:deployer".into());
        assert!(matches!(resolve(&named, &g), Resolution::Denied { .. }));
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
            matches!(resolve(&policy(), &r), Resolution::Approved { access: PlannedAccess::Role { role }, by: ApprovedBy::Approver { .. }, .. } if role == "admin")
        );
        // Naming no group, an approver outside approvers.users is not trusted blindly.
        r.approval = approval("carol", None);
        assert!(
            matches!(resolve(&policy(), &r), Resolution::Denied { message: m, .. } if m.contains("names no approver group (spec.approval.group); approvers: group sre"))
        );
        // A group that is not (or no longer) an approver group of this access does not count.
        r.approval = approval("carol", Some("everyone"));
        assert!(
            matches!(resolve(&policy(), &r), Resolution::Denied { message: m, .. } if m.contains("approved through group everyone, which is not an approver of this access"))
        );
        let mut removed = policy();
        removed.grantable.roles[0].terms.approvers.groups = vec!["security".into()];
        r.approval = approval("carol", Some("sre"));
        assert!(matches!(resolve(&removed, &r), Resolution::Denied { .. }));
        // A ServiceAccount approves only when listed by name, whatever groups it is in.
        r.approval = approval("system:serviceaccount:team:bot", Some("sre"));
        assert!(
            matches!(resolve(&policy(), &r), Resolution::Denied { message: m, .. } if m.contains("ServiceAccount approves or denies only when the policy lists it by name"))
        );
    }

    #[test]
    fn standing_access_only_where_the_item_says_so() {
        let mut p = policy();
        p.grantable.groups[1].terms.standing = true;
        let mut g = grant(group("group:staging"), "1h");
        g.duration = None;
        assert!(matches!(
            resolve(&p, &g),
            Resolution::Approved {
                duration: None,
                by: ApprovedBy::NotRequired,
                ..
            }
        ));
        // Approval rules are the same for standing grants.
        g.access = group("group:prod");
        assert!(matches!(
            resolve(&p, &g),
            Resolution::Denied {
                reason: Reason::StandingNotAllowed,
                ..
            }
        ));
        p.grantable.groups[0].terms.standing = true;
        assert!(matches!(
            resolve(&p, &g),
            Resolution::AwaitingApproval { duration: None, approvers, .. } if approvers == "user bob"
        ));
        g.approval = approval("bob", None);
        assert!(matches!(
            resolve(&p, &g),
            Resolution::Approved {
                duration: None,
                by: ApprovedBy::Approver { .. },
                ..
            }
        ));
        // Every kind of item names itself when it refuses standing access.
        let role = GrantAccess {
            role: Some(TailscaleRole::Admin),
            ..Default::default()
        };
        let rule = GrantAccess {
            rule: Some("db".into()),
            ..Default::default()
        };
        for (access, item) in [(role, "role admin"), (rule, "rule db")] {
            let mut g = grant(access, "1h");
            g.duration = None;
            match resolve(&policy(), &g) {
                Resolution::Denied {
                    reason: Reason::StandingNotAllowed,
                    message,
                } => assert!(
                    message.starts_with(&format!("{item} does not allow standing access"))
                        && message.contains(&format!("terms.standing: true for {item}")),
                    "{message}"
                ),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn git_ops_requesters_approve_without_an_approval_and_need_no_other_listing() {
        let argo = "system:serviceaccount:argocd:argocd-application-controller";
        let mut p = policy();
        p.grantable.git_ops_requesters = vec![argo.into()];
        let mut g = grant(group("group:prod"), "1h");
        g.requested_by = Some(argo.into());
        match resolve(&p, &g) {
            Resolution::Approved { by, .. } => {
                assert_eq!(
                    by,
                    ApprovedBy::GitOps {
                        requester: argo.into()
                    }
                );
                assert!(by.needs_proof());
                assert_eq!(by.reason(), APPROVED_IN_GITOPS);
                let message = by.message("jit");
                assert!(
                    message.contains(argo)
                        && message.contains("the review happened in the pull request"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(approving_identity(&p, &g), Some(argo));
        // Another ServiceAccount, even one allowed to request, gets no GitOps approval.
        let deployer = "system:serviceaccount:ci:deployer";
        p.grantable.service_account_requesters = vec![deployer.into()];
        g.requested_by = Some(deployer.into());
        assert!(matches!(
            resolve(&p, &g),
            Resolution::AwaitingApproval { .. }
        ));
        assert_eq!(approving_identity(&p, &g), None);
        // A listed GitOps identity is still held to the item: its grants are judged like any.
        g.requested_by = Some(argo.into());
        g.duration = Some("5h".into());
        assert!(
            matches!(resolve(&p, &g), Resolution::Denied { message, .. } if message.contains("exceeds the maximum of 4h"))
        );
        // An approval given anyway is judged as one.
        g.duration = Some("1h".into());
        g.approval = approval("mallory", None);
        assert!(matches!(resolve(&p, &g), Resolution::Denied { .. }));
        assert_eq!(approving_identity(&p, &g), Some("mallory"));
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
