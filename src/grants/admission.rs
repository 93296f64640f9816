//! Whether the cluster proves approvals: the chart's admission policies that check who requests
//! and who approves a grant must be installed, fail closed, and be bound to deny in the grant's
//! namespace. Without them an approval is a name anyone could have typed, so nothing that needs
//! approval may activate. Pure: the operator reads what is installed and asks here.

/// An installed ValidatingAdmissionPolicy, as far as this check cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyInfo {
    pub name: String,
    /// When it was created: approvals written before then were not checked by it.
    pub created: Option<jiff::Timestamp>,
    /// `failurePolicy: Fail` (a policy that cannot be evaluated refuses the request).
    pub fails_closed: bool,
}

/// An installed ValidatingAdmissionPolicyBinding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingInfo {
    pub policy: String,
    pub created: Option<jiff::Timestamp>,
    /// `validationActions` contains `Deny`.
    pub denies: bool,
    /// Which namespaces it covers.
    pub scope: Scope,
}

/// The namespaces a binding covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace (no namespace selector).
    All,
    /// One namespace, selected by its `kubernetes.io/metadata.name` label.
    Only(String),
    /// A selector this check does not interpret: not trusted.
    Other,
}

/// What the cluster has installed, or why it could not be read.
pub type Installed = Result<(Vec<PolicyInfo>, Vec<BindingInfo>), String>;

/// The admission policies (by name suffix) that prove a grant's requester and approver.
pub const APPROVAL_POLICIES: [&str; 2] = ["grant-identity", "grant-approvers"];

/// `Ok(since)` when approvals of grants in `namespace` are proven by the cluster, since when
/// (the latest creation of the policies and bindings that prove them: an approval written
/// earlier was not checked); else what is missing, in words that say what to do.
pub fn approvals_verified(
    prefix: &str,
    installed: &Installed,
    namespace: &str,
) -> Result<Option<jiff::Timestamp>, String> {
    verified(prefix, installed, namespace, &APPROVAL_POLICIES).map_err(|missing| {
        format!(
            "approvals cannot be proven, so grants that need one do not activate: {missing}; install the chart with admissionPolicy.enabled=true (Kubernetes 1.30+)"
        )
    })
}

/// The admission policies (by name suffix) that prove who decided on access-review items.
pub const REVIEW_POLICIES: [&str; 2] = ["review-identity", "review-reviewers"];

/// Like [`approvals_verified`], for access-review decisions.
pub fn review_decisions_verified(
    prefix: &str,
    installed: &Installed,
    namespace: &str,
) -> Result<Option<jiff::Timestamp>, String> {
    verified(prefix, installed, namespace, &REVIEW_POLICIES).map_err(|missing| {
        format!(
            "review decisions cannot be proven, so none is taken: {missing}; install the chart with admissionPolicy.enabled=true (Kubernetes 1.30+)"
        )
    })
}

fn verified(
    prefix: &str,
    installed: &Installed,
    namespace: &str,
    suffixes: &[&str],
) -> Result<Option<jiff::Timestamp>, String> {
    let (policies, bindings) = installed
        .as_ref()
        .map_err(|why| format!("the operator cannot read the admission policies ({why})"))?;
    let mut missing = Vec::new();
    let mut since: Option<jiff::Timestamp> = None;
    for &suffix in suffixes {
        let name = format!("{prefix}-{suffix}");
        match policies.iter().find(|p| p.name == name) {
            None => missing.push(format!("ValidatingAdmissionPolicy {name} is not installed")),
            Some(p) if !p.fails_closed => missing.push(format!(
                "ValidatingAdmissionPolicy {name} does not fail closed (failurePolicy must be Fail)"
            )),
            Some(p) => since = since.max(p.created),
        }
        let enforcing = bindings.iter().find(|b| {
            b.policy == name
                && b.denies
                && match &b.scope {
                    Scope::All => true,
                    Scope::Only(ns) => ns == namespace,
                    Scope::Other => false,
                }
        });
        match enforcing {
            Some(b) => since = since.max(b.created),
            None => missing.push(format!(
                "no binding of {name} denies violations in namespace {namespace}"
            )),
        }
    }
    if missing.is_empty() {
        Ok(since)
    } else {
        Err(missing.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(scope: Scope, deny: bool, fail: bool) -> Installed {
        Ok((
            APPROVAL_POLICIES
                .iter()
                .map(|s| PolicyInfo {
                    name: format!("tk-{s}"),
                    created: None,
                    fails_closed: fail,
                })
                .collect(),
            APPROVAL_POLICIES
                .iter()
                .map(|s| BindingInfo {
                    policy: format!("tk-{s}"),
                    created: None,
                    denies: deny,
                    scope: scope.clone(),
                })
                .collect(),
        ))
    }

    #[test]
    fn installed_fail_closed_and_denying_in_the_namespace_is_verified() {
        assert!(approvals_verified("tk", &installed(Scope::All, true, true), "team").is_ok());
        assert!(approvals_verified(
            "tk",
            &installed(Scope::Only("team".into()), true, true),
            "team"
        )
        .is_ok());
        // Since the latest of them was created.
        let mut with_times = installed(Scope::All, true, true).expect("installed");
        let t = |s: i64| jiff::Timestamp::from_second(1_800_000_000 + s).expect("time");
        with_times.0[0].created = Some(t(10));
        with_times.1[1].created = Some(t(20));
        assert_eq!(
            approvals_verified("tk", &Ok(with_times), "team"),
            Ok(Some(t(20)))
        );
    }

    #[test]
    fn anything_less_is_not() {
        for (case, ns) in [
            (installed(Scope::Only("other".into()), true, true), "team"),
            (installed(Scope::Other, true, true), "team"),
            (installed(Scope::All, false, true), "team"),
            (installed(Scope::All, true, false), "team"),
            (Ok((Vec::new(), Vec::new())), "team"),
            (Err("forbidden".into()), "team"),
        ] {
            let e = approvals_verified("tk", &case, ns).expect_err("not verified");
            assert!(
                e.contains("admissionPolicy.enabled") || e.contains("cannot read"),
                "{e}"
            );
        }
        // The other installation's policies do not count.
        assert!(approvals_verified("other", &installed(Scope::All, true, true), "team").is_err());
    }
}
