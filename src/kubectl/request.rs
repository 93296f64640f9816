//! `kubectl tailkeeper request`: the AccessGrant a request makes, and what to tell the requester
//! next. Pure. `requestedBy` is the requester's own name as the API server reports it (the
//! admission policy refuses any other).

use serde_json::json;

use crate::api::{AccessGrant, AccessPolicySpec, GrantAccess, TailscaleRole};
use crate::duration;
use crate::grants::{self, Resolution};

use super::{show, Error};

/// The access a request asks for: exactly one item of the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// A policy-file group (`group:` is added when missing).
    Group(String),
    /// A Tailscale role, by its API name (`admin`, `it-admin`, ...).
    Role(String),
    /// A network rule template.
    Rule(String),
    /// An SSH rule template.
    SshRule(String),
    /// A posture attribute template.
    Posture(String),
}

/// A request, as the command line gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The AccessPolicy (in the namespace the grant is created in).
    pub policy: String,
    /// The Tailscale login receiving access.
    pub user: String,
    pub access: Access,
    /// How long (`2h`); `None` asks for standing access.
    pub duration: Option<String>,
    pub reason: String,
    /// The grant's name; generated from the user and the access when `None`.
    pub name: Option<String>,
}

/// The AccessGrant `request` makes, requested by `requested_by`. Refuses, saying what to fix,
/// what the API server would refuse anyway.
pub fn grant(request: &Request, requested_by: &str) -> Result<AccessGrant, Error> {
    let user = request.user.trim();
    if !is_login(user) {
        return Err(Error::Invalid(format!(
            "--user {user:?} is not a Tailscale login name: use one such as alice@example.com or alice@github"
        )));
    }
    let reason = request.reason.trim();
    if reason.is_empty() {
        return Err(Error::Invalid(
            "--reason is empty: say why the access is needed (approvers and access reviews read it)"
                .to_string(),
        ));
    }
    if let Some(d) = &request.duration {
        match duration::parse(d) {
            Ok(length) if !length.is_zero() => {}
            Ok(_) => {
                return Err(Error::Invalid(
                    "--for must be positive, for example --for 2h".to_string(),
                ))
            }
            Err(e) => return Err(Error::Invalid(format!("--for: {e}"))),
        }
    }
    let access = grant_access(&request.access)?;
    let mut metadata = json!({});
    match &request.name {
        Some(name) => metadata["name"] = json!(name),
        None => metadata["generateName"] = json!(generate_name(user, &access)),
    }
    let mut spec = json!({
        "policyRef": {"name": request.policy},
        "user": user,
        "access": access,
        "reason": reason,
        "requestedBy": requested_by,
    });
    if let Some(d) = &request.duration {
        spec["duration"] = json!(d.trim());
    }
    serde_json::from_value(json!({
        "apiVersion": "tailkeeper.io/v1alpha1",
        "kind": "AccessGrant",
        "metadata": metadata,
        "spec": spec,
    }))
    .map_err(|e| {
        Error::Invalid(format!(
            "cannot make an AccessGrant of these arguments: {e}"
        ))
    })
}

fn is_login(user: &str) -> bool {
    matches!(user.split_once('@'), Some((name, domain))
        if !name.is_empty() && !domain.is_empty() && !domain.contains('@')
            && !user.chars().any(char::is_whitespace))
}

/// The `spec.access` of a request.
pub fn grant_access(access: &Access) -> Result<GrantAccess, Error> {
    let named = |what: &str, name: &str| -> Result<String, Error> {
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::Invalid(format!("--{what} needs a name")));
        }
        Ok(name.to_string())
    };
    Ok(match access {
        Access::Group(g) => {
            let g = named("group", g)?;
            GrantAccess {
                group: Some(if g.starts_with("group:") {
                    g
                } else {
                    format!("group:{g}")
                }),
                ..Default::default()
            }
        }
        Access::Role(r) => GrantAccess {
            role: Some(role(r)?),
            ..Default::default()
        },
        Access::Rule(r) => GrantAccess {
            rule: Some(named("rule", r)?),
            ..Default::default()
        },
        Access::SshRule(r) => GrantAccess {
            ssh_rule: Some(named("ssh-rule", r)?),
            ..Default::default()
        },
        Access::Posture(p) => GrantAccess {
            posture_attribute: Some(named("posture", p)?),
            ..Default::default()
        },
    })
}

/// A Tailscale role by its API name.
pub fn role(name: &str) -> Result<TailscaleRole, Error> {
    serde_json::from_value(json!(name.trim().to_ascii_lowercase())).map_err(|_| {
        Error::Invalid(format!(
            "--role {name:?} is not a role a grant can give: use admin, it-admin, network-admin, billing-admin, auditor or member"
        ))
    })
}

/// The start of a generated grant name (the API server appends five random characters): the
/// login's name and the item, as a Kubernetes name allows them, such as `alice-oncall-`.
pub fn generate_name(login: &str, access: &GrantAccess) -> String {
    let who = login.split('@').next().unwrap_or(login);
    let what = if let Some(g) = &access.group {
        g.trim_start_matches("group:").to_string()
    } else if let Some(r) = access.role {
        grants::role_name(r)
    } else {
        access
            .rule
            .clone()
            .or_else(|| access.ssh_rule.clone())
            .or_else(|| access.posture_attribute.clone())
            .unwrap_or_default()
    };
    let mut base = dns_label(&format!("{who}-{what}"));
    // Kubernetes keeps at most 58 characters of a generateName.
    base.truncate(52);
    let base = base.trim_end_matches('-');
    if base.is_empty() {
        "grant-".to_string()
    } else {
        format!("{base}-")
    }
}

/// Lowercase letters, digits and single dashes, starting with a letter or digit.
pub(super) fn dns_label(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out
}

/// What the policy says of a request before it is made: `Err` with the policy's own words when
/// it would deny it (the operator judges with the same function), so nothing is created in vain.
pub fn precheck(policy: &str, spec: &AccessPolicySpec, grant: &AccessGrant) -> Result<(), Error> {
    match grants::resolve(spec, &grant.spec) {
        Resolution::Denied { message, .. } => Err(Error::Invalid(format!(
            "AccessPolicy {policy} would deny this request: {message}"
        ))),
        _ => Ok(()),
    }
}

/// What the requester reads once the grant `created` exists in `namespace`: the grant, and
/// what happens next under the policy (when it could be read).
pub fn created(
    created: &AccessGrant,
    namespace: &str,
    policy: Option<&AccessPolicySpec>,
) -> String {
    let name = created.metadata.name.clone().unwrap_or_default();
    let spec = &created.spec;
    let length = match &spec.duration {
        Some(d) => format!("for {d} once active"),
        None => "standing (until removed)".to_string(),
    };
    let mut out = format!(
        "accessgrant.tailkeeper.io/{name} created\n{} for {}, {length}, requested by {}.\n",
        show::access(&spec.access),
        spec.user,
        spec.requested_by.as_deref().unwrap_or("you"),
    );
    let follow = format!("Follow it with: kubectl tailkeeper grants -n {namespace}\n");
    match policy.map(|p| grants::resolve(p, spec)) {
        Some(Resolution::Approved { .. }) => {
            out.push_str("It needs no approval: Tailkeeper activates it within seconds.\n");
        }
        Some(Resolution::AwaitingApproval { approvers, .. }) => {
            out.push_str(&format!(
                "It needs an approver's decision (approvers: {approvers}). Ask one of them to run:\n  kubectl tailkeeper approve {name} -n {namespace}\n"
            ));
        }
        _ => {
            out.push_str(&format!(
                "If it needs approval, an approver runs: kubectl tailkeeper approve {name} -n {namespace}\n"
            ));
        }
    }
    out.push_str(&follow);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(access: Access) -> Request {
        Request {
            policy: "jit".into(),
            user: "alice@example.com".into(),
            access,
            duration: Some("2h".into()),
            reason: "incident 4711".into(),
            name: None,
        }
    }

    fn policy() -> AccessPolicySpec {
        serde_json::from_value(json!({
            "integrationRef": {"name": "t"},
            "grantable": {
                "groups": [
                    {"name": "group:oncall", "terms": {"maxDuration": "8h", "approvers": {"groups": ["approvers"]}}},
                    {"name": "group:prod", "terms": {"maxDuration": "1h", "approvalRequired": false}}
                ]
            }
        }))
        .expect("policy")
    }

    #[test]
    fn a_request_becomes_a_grant_requested_by_whoever_the_api_server_says_we_are() {
        let g = grant(&request(Access::Group("oncall".into())), "alice").expect("grant");
        assert_eq!(g.spec.requested_by.as_deref(), Some("alice"));
        assert_eq!(g.spec.access.group.as_deref(), Some("group:oncall"));
        assert_eq!(g.spec.duration.as_deref(), Some("2h"));
        assert_eq!(g.spec.policy_ref.name, "jit");
        assert!(g.spec.approval.is_none());
        assert_eq!(g.metadata.name, None);
        assert_eq!(g.metadata.generate_name.as_deref(), Some("alice-oncall-"));
        // A standing request has no duration; a name given is the name.
        let mut standing = request(Access::Role("IT-Admin".into()));
        standing.duration = None;
        standing.name = Some("alice-root".into());
        let g = grant(&standing, "alice").expect("grant");
        assert_eq!(g.spec.duration, None);
        assert_eq!(g.spec.access.role, Some(TailscaleRole::ItAdmin));
        assert_eq!(g.metadata.name.as_deref(), Some("alice-root"));
        let ssh = grant(&request(Access::SshRule("prod-shell".into())), "alice").expect("ssh");
        assert_eq!(ssh.spec.access.ssh_rule.as_deref(), Some("prod-shell"));
        assert_eq!(
            ssh.metadata.generate_name.as_deref(),
            Some("alice-prod-shell-")
        );
    }

    #[test]
    fn arguments_the_api_server_would_refuse_are_refused_first_saying_what_to_fix() {
        type Case = (fn(&mut Request), &'static str);
        let cases: [Case; 6] = [
            (|r| r.user = "alice".into(), "is not a Tailscale login name"),
            (|r| r.reason = "  ".into(), "--reason is empty"),
            (|r| r.duration = Some("2 hours".into()), "--for: duration"),
            (|r| r.duration = Some("0s".into()), "--for must be positive"),
            (
                |r| r.access = Access::Role("owner".into()),
                "use admin, it-admin",
            ),
            (
                |r| r.access = Access::Rule(" ".into()),
                "--rule needs a name",
            ),
        ];
        for (edit, needle) in cases {
            let mut r = request(Access::Group("oncall".into()));
            edit(&mut r);
            let e = grant(&r, "alice").expect_err(needle);
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn generated_names_are_kubernetes_names() {
        let access = |g: &str| GrantAccess {
            group: Some(g.into()),
            ..Default::default()
        };
        assert_eq!(
            generate_name("Alice.Smith+x@example.com", &access("group:Prod_DB")),
            "alice-smith-x-prod-db-"
        );
        let long = generate_name(
            &format!("{}@example.com", "a".repeat(80)),
            &access("group:x"),
        );
        assert!(
            long.len() <= 53 && long.ends_with('-') && !long.ends_with("--"),
            "{long}"
        );
        assert_eq!(generate_name("_@x", &access("group:_")), "grant-");
    }

    #[test]
    fn the_policy_refuses_before_anything_is_created_and_says_what_comes_next() {
        let mut r = request(Access::Group("oncall".into()));
        r.duration = Some("9h".into());
        let over = grant(&r, "alice").expect("grant");
        let e = precheck("jit", &policy(), &over).expect_err("over the maximum");
        assert!(
            e.to_string().contains(
                "AccessPolicy jit would deny this request: duration 9h exceeds the maximum of 8h"
            ),
            "{e}"
        );
        let mut g = grant(&request(Access::Group("oncall".into())), "alice").expect("grant");
        assert!(precheck("jit", &policy(), &g).is_ok());
        g.metadata.name = Some("alice-oncall-x7k2p".into());
        let text = created(&g, "sec", Some(&policy()));
        assert!(
            text.starts_with("accessgrant.tailkeeper.io/alice-oncall-x7k2p created\n"),
            "{text}"
        );
        assert!(
            text.contains("approvers: group approvers")
                && text.contains("kubectl tailkeeper approve alice-oncall-x7k2p -n sec"),
            "{text}"
        );
        g.spec.access.group = Some("group:prod".into());
        g.spec.duration = Some("1h".into());
        assert!(created(&g, "sec", Some(&policy())).contains("needs no approval"));
    }
}
