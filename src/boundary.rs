//! The trust boundary of a policy, decided from plain data: which identities the operator
//! knows (people, approvers, reviewers, requesters, everyone authenticated), which questions
//! to ask the API server about them (may this identity rewrite the directory, read or change
//! the credential Secret, write ledgers, records or grants' status, or act as a GitOps
//! ServiceAccount?), and what the answers mean. Pure: the controller asks the questions with
//! SubjectAccessReviews and carries the verdict to every decision that reads these inputs.
//!
//! A decision is only as good as what it reads. While any known identity can change an input
//! it should not, nothing that rests on it counts: approvals and GitOps pre-approvals do not
//! activate grants, review decisions are not taken, enforcement does not act. The policy's
//! `TrustBoundaryProven` condition names who can do what to which object.
//!
//! Not asked: who may edit the AccessPolicy (the policy admin's own job) or the integration
//! (the platform admin's). GitOps requesters are not among the identities checked: they apply
//! what the repository says, directory included; who may act as them is checked instead.

use std::collections::BTreeSet;
use std::fmt;

use crate::api::{AccessPolicySpec, GrantTerms, Reviewers};
use crate::compliance::Directory;

/// The group every authenticated identity is in: a rule bound to it is open to everybody.
pub const AUTHENTICATED: &str = "system:authenticated";

/// At most this many exposures are named in a message (the count says how many there are).
pub const MAX_NAMED: usize = 5;

/// An identity whose access the operator asks about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Identity {
    /// A Kubernetes user, with the groups the directory lists for them (the API server adds
    /// `system:authenticated`, and a ServiceAccount's own groups, when asked).
    User { name: String, groups: Vec<String> },
    /// Anyone in this Kubernetes group.
    Group(String),
}

impl Identity {
    pub fn user(name: &str) -> Identity {
        Identity::User {
            name: name.to_string(),
            groups: Vec::new(),
        }
    }

    /// The user name and groups to put in a SubjectAccessReview for this identity.
    pub fn subject(&self) -> (Option<String>, Vec<String>) {
        match self {
            Identity::User { name, groups } => {
                let mut all: Vec<String> = groups.clone();
                if let Some((ns, _)) = name
                    .strip_prefix("system:serviceaccount:")
                    .and_then(|rest| rest.split_once(':'))
                {
                    all.push("system:serviceaccounts".to_string());
                    all.push(format!("system:serviceaccounts:{ns}"));
                }
                all.push(AUTHENTICATED.to_string());
                all.sort();
                all.dedup();
                (Some(name.clone()), all)
            }
            Identity::Group(group) => {
                let mut all = vec![group.clone(), AUTHENTICATED.to_string()];
                all.dedup();
                (None, all)
            }
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::User { name, .. } => write!(f, "user {name}"),
            Identity::Group(g) if g == AUTHENTICATED => {
                write!(f, "everyone authenticated ({AUTHENTICATED})")
            }
            Identity::Group(g) => write!(f, "group {g}"),
        }
    }
}

/// What a decision reads, and so what a question protects.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Input {
    /// The people directory (who is who, independence of approvers and reviewers, the checks).
    Directory,
    /// The credential Secret (every change in Tailscale, revocation included).
    Credential,
    /// The ledgers of what grants hold (what to undo).
    Ledgers,
    /// Access-review records (items and evidence).
    Records,
    /// Grants' status (expiry, what was changed).
    GrantStatus,
    /// Review decisions' status (which decisions were taken).
    DecisionStatus,
    /// A GitOps ServiceAccount whose requests count as approved.
    GitOpsIdentity(String),
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Directory => write!(f, "the people directory"),
            Input::Credential => write!(f, "the Tailscale credential"),
            Input::Ledgers => write!(f, "the grant ledgers"),
            Input::Records => write!(f, "the access-review records"),
            Input::GrantStatus => write!(f, "the grants' status"),
            Input::DecisionStatus => write!(f, "the review decisions' status"),
            Input::GitOpsIdentity(sa) => {
                write!(f, "GitOps requester {sa}, whose grants need no approver")
            }
        }
    }
}

/// One question for the API server: may someone `verb` this resource?
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Question {
    pub verb: &'static str,
    /// API group (`""` for the core group).
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: Option<&'static str>,
    /// `None` for a cluster-scoped resource.
    pub namespace: Option<String>,
    /// `None`: any object of that resource in the namespace.
    pub name: Option<String>,
    pub input: Input,
}

impl fmt::Display for Question {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let resource = match self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.to_string(),
        };
        let object = match (&self.namespace, &self.name) {
            (Some(ns), Some(name)) => format!("{resource} {ns}/{name}"),
            (Some(ns), None) => format!("{resource} in {ns}"),
            (None, Some(name)) => format!("{resource} {name}"),
            (None, None) => resource,
        };
        write!(f, "{} {object} ({})", self.verb, self.input)
    }
}

/// Where a policy's inputs live.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout<'a> {
    /// The policy's namespace: its directory ConfigMaps, integration, Secret, ledgers and
    /// records live there.
    pub namespace: &'a str,
    /// The directory's ConfigMaps (names in `namespace`).
    pub directory_config_maps: Vec<&'a str>,
    /// The credential Secret of the policy's integration, when known.
    pub credential_secret: Option<&'a str>,
    /// The policy's `grantable.gitOpsRequesters`.
    pub git_ops_requesters: Vec<&'a str>,
}

const WRITE: [&str; 4] = ["create", "update", "patch", "delete"];

/// Every question to ask about each identity for a policy laid out as `layout`.
pub fn questions(layout: &Layout) -> Vec<Question> {
    let ns = Some(layout.namespace.to_string());
    let ask = |verb, group, resource, subresource, name: Option<&str>, input: Input| Question {
        verb,
        group,
        resource,
        subresource,
        namespace: ns.clone(),
        name: name.map(str::to_string),
        input,
    };
    let mut out = Vec::new();
    for cm in &layout.directory_config_maps {
        for verb in WRITE {
            out.push(ask(
                verb,
                "",
                "configmaps",
                None,
                Some(cm),
                Input::Directory,
            ));
        }
    }
    if let Some(secret) = layout.credential_secret {
        for verb in ["get", "update", "patch", "delete"] {
            out.push(ask(
                verb,
                "",
                "secrets",
                None,
                Some(secret),
                Input::Credential,
            ));
        }
        // Listing or watching Secrets returns their data too.
        for verb in ["list", "watch"] {
            out.push(ask(verb, "", "secrets", None, None, Input::Credential));
        }
    }
    for verb in WRITE {
        out.push(ask(
            verb,
            "tailkeeper.io",
            "grantledgers",
            None,
            None,
            Input::Ledgers,
        ));
        out.push(ask(
            verb,
            "tailkeeper.io",
            "accessreviewrecords",
            None,
            None,
            Input::Records,
        ));
    }
    for verb in ["update", "patch"] {
        out.push(ask(
            verb,
            "tailkeeper.io",
            "accessgrants",
            Some("status"),
            None,
            Input::GrantStatus,
        ));
        out.push(ask(
            verb,
            "tailkeeper.io",
            "accessreviewdecisions",
            Some("status"),
            None,
            Input::DecisionStatus,
        ));
    }
    for sa in &layout.git_ops_requesters {
        let Some((sa_ns, sa_name)) = sa
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
        else {
            continue;
        };
        let input = Input::GitOpsIdentity(sa.to_string());
        let at = |verb, resource, subresource, name: Option<&str>| Question {
            verb,
            group: "",
            resource,
            subresource,
            namespace: Some(sa_ns.to_string()),
            name: name.map(str::to_string),
            input: input.clone(),
        };
        out.push(at("impersonate", "serviceaccounts", None, Some(sa_name)));
        out.push(at(
            "create",
            "serviceaccounts",
            Some("token"),
            Some(sa_name),
        ));
        // A pod (or a shell in one) runs with its ServiceAccount's token.
        out.push(at("create", "pods", None, None));
        out.push(at("create", "pods", Some("exec"), None));
        out.push(Question {
            verb: "impersonate",
            group: "",
            resource: "users",
            subresource: None,
            namespace: None,
            name: Some(sa.to_string()),
            input: input.clone(),
        });
    }
    out
}

/// Everything of a policy that names identities.
#[derive(Clone, Debug, Default)]
pub struct Known<'a> {
    pub policy: Option<&'a AccessPolicySpec>,
    pub directory: Option<&'a Directory>,
    /// The reviewers of the policy's access reviews.
    pub reviewers: Vec<&'a Reviewers>,
    /// Who requested and who approved the policy's grants (`requestedBy`, `approvedBy`).
    pub grant_identities: Vec<&'a str>,
}

fn all_terms(policy: &AccessPolicySpec) -> impl Iterator<Item = &GrantTerms> {
    let g = &policy.grantable;
    g.groups
        .iter()
        .map(|i| &i.terms)
        .chain(g.roles.iter().map(|i| &i.terms))
        .chain(g.rules.iter().map(|i| &i.terms))
        .chain(g.ssh_rules.iter().map(|i| &i.terms))
        .chain(g.posture_attributes.iter().map(|i| &i.terms))
}

/// The identities to ask about: everyone authenticated, each person's Kubernetes users (with
/// the groups the directory lists for them) and groups, approvers, reviewers, ServiceAccount
/// requesters and whoever requested or approved a grant; never a GitOps requester (see the
/// module's notes). In a stable order, deduplicated.
pub fn identities(known: &Known) -> Vec<Identity> {
    let git_ops: BTreeSet<&str> = known
        .policy
        .map(|p| {
            p.grantable
                .git_ops_requesters
                .iter()
                .map(String::as_str)
                .collect()
        })
        .unwrap_or_default();
    let mut users: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    let mut groups: BTreeSet<String> = BTreeSet::from([AUTHENTICATED.to_string()]);
    let mut user = |name: &str, with: &[String]| {
        let name = name.trim();
        if name.is_empty() || git_ops.contains(name) {
            return;
        }
        users
            .entry(name.to_string())
            .or_default()
            .extend(with.iter().cloned());
    };
    if let Some(directory) = known.directory {
        for person in directory.people() {
            for u in &person.kubernetes_users {
                user(u, &person.kubernetes_groups);
            }
            groups.extend(person.kubernetes_groups.iter().cloned());
        }
    }
    if let Some(policy) = known.policy {
        for terms in all_terms(policy) {
            for u in &terms.approvers.users {
                user(u, &[]);
            }
            groups.extend(terms.approvers.groups.iter().cloned());
        }
        for sa in &policy.grantable.service_account_requesters {
            user(sa, &[]);
        }
    }
    for reviewers in &known.reviewers {
        for u in &reviewers.users {
            user(u, &[]);
        }
        groups.extend(reviewers.groups.iter().cloned());
    }
    for u in &known.grant_identities {
        user(u, &[]);
    }
    groups.retain(|g| !g.trim().is_empty());
    let mut out: Vec<Identity> = groups.into_iter().map(Identity::Group).collect();
    out.extend(users.into_iter().map(|(name, groups)| Identity::User {
        name,
        groups: groups.into_iter().collect(),
    }));
    out
}

/// An identity that may do what a question asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exposure {
    pub identity: Identity,
    pub question: Question,
}

/// What the answers mean: `Ok` when no known identity may do any of it, else a message that
/// names who can do what (the first [`MAX_NAMED`], then a count) and what to do.
pub fn verdict(exposures: &[Exposure]) -> Result<(), String> {
    if exposures.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = exposures
        .iter()
        .take(MAX_NAMED)
        .map(|e| format!("{} can {}", e.identity, e.question))
        .collect();
    let more = exposures.len().saturating_sub(MAX_NAMED);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    Err(format!(
        "{}{more}; until nobody it names can, approvals and GitOps requests do not activate grants, review decisions are not taken and enforcement does not act: keep the directory, credentials and records in a namespace where requesters, approvers and reviewers have no write access (not even through the built-in edit role), or remove those rights",
        named.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::Person;

    fn policy() -> AccessPolicySpec {
        serde_json::from_value(serde_json::json!({
            "integrationRef": {"name": "tailnet"},
            "grantable": {
                "gitOpsRequesters": ["system:serviceaccount:argocd:controller"],
                "serviceAccountRequesters": ["system:serviceaccount:ci:deployer"],
                "groups": [{"name": "group:prod", "terms": {"maxDuration": "1h", "approvers": {"users": ["bob"], "groups": ["sre"]}}}]
            }
        }))
        .expect("policy")
    }

    fn directory() -> Directory {
        let person = |login: &str, users: &[&str], groups: &[&str]| -> Person {
            serde_json::from_value(serde_json::json!({
                "loginNames": [login], "orgRole": "engineer",
                "kubernetesUsers": users, "kubernetesGroups": groups,
            }))
            .expect("person")
        };
        Directory::build(vec![(
            "inline".to_string(),
            vec![
                person("alice@example.com", &["alice", "alice-admin"], &["dev"]),
                person("bob@example.com", &["bob"], &["sre"]),
            ],
        )])
        .expect("directory")
    }

    #[test]
    fn everyone_who_can_decide_or_be_decided_for_is_asked_about_once() {
        let policy = policy();
        let dir = directory();
        let reviewers = Reviewers {
            users: vec!["carol".into()],
            groups: vec!["auditors".into()],
            managers: false,
        };
        let known = Known {
            policy: Some(&policy),
            directory: Some(&dir),
            reviewers: vec![&reviewers],
            grant_identities: vec!["mallory", "bob", "system:serviceaccount:argocd:controller"],
        };
        let ids = identities(&known);
        let names: Vec<String> = ids.iter().map(ToString::to_string).collect();
        for expected in [
            "everyone authenticated (system:authenticated)",
            "group dev",
            "group sre",
            "group auditors",
            "user alice",
            "user alice-admin",
            "user bob",
            "user carol",
            "user mallory",
            "user system:serviceaccount:ci:deployer",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
        assert_eq!(
            names.iter().filter(|n| *n == "user bob").count(),
            1,
            "asked about once"
        );
        assert!(
            !names.iter().any(|n| n.contains("argocd")),
            "the GitOps identity applies the repository: who may act as it is asked instead"
        );
        // A person's groups go with their users, so bindings to those groups are seen.
        let bob = ids
            .iter()
            .find(|i| i.to_string() == "user bob")
            .expect("bob");
        assert_eq!(
            bob.subject(),
            (Some("bob".into()), vec!["sre".into(), AUTHENTICATED.into()])
        );
    }

    #[test]
    fn a_service_account_is_asked_about_with_its_own_groups() {
        let (_, groups) = Identity::user("system:serviceaccount:ci:deployer").subject();
        assert_eq!(
            groups,
            vec![
                AUTHENTICATED.to_string(),
                "system:serviceaccounts".to_string(),
                "system:serviceaccounts:ci".to_string()
            ]
        );
        assert_eq!(
            Identity::Group("sre".into()).subject(),
            (None, vec!["sre".into(), AUTHENTICATED.into()])
        );
    }

    #[test]
    fn every_input_a_decision_reads_is_asked_about() {
        let layout = Layout {
            namespace: "governance",
            directory_config_maps: vec!["people"],
            credential_secret: Some("ts-oauth"),
            git_ops_requesters: vec!["system:serviceaccount:argocd:controller"],
        };
        let asked: Vec<String> = questions(&layout).iter().map(ToString::to_string).collect();
        for expected in [
            "patch configmaps governance/people (the people directory)",
            "update configmaps governance/people (the people directory)",
            "create configmaps governance/people (the people directory)",
            "get secrets governance/ts-oauth (the Tailscale credential)",
            "patch secrets governance/ts-oauth (the Tailscale credential)",
            "list secrets in governance (the Tailscale credential)",
            "delete grantledgers in governance (the grant ledgers)",
            "delete accessreviewrecords in governance (the access-review records)",
            "patch accessgrants/status in governance (the grants' status)",
            "impersonate serviceaccounts argocd/controller (GitOps requester system:serviceaccount:argocd:controller, whose grants need no approver)",
            "create serviceaccounts/token argocd/controller (GitOps requester system:serviceaccount:argocd:controller, whose grants need no approver)",
            "create pods in argocd (GitOps requester system:serviceaccount:argocd:controller, whose grants need no approver)",
            "impersonate users system:serviceaccount:argocd:controller (GitOps requester system:serviceaccount:argocd:controller, whose grants need no approver)",
        ] {
            assert!(asked.iter().any(|q| q == expected), "{expected} in {asked:#?}");
        }
        // No Secret named: nothing asked about Secrets at all (none is read).
        let none = questions(&Layout {
            namespace: "governance",
            ..Layout::default()
        });
        assert!(none.iter().all(|q| q.resource != "secrets"));
    }

    #[test]
    fn the_verdict_names_who_can_do_what_and_counts_the_rest() {
        assert_eq!(verdict(&[]), Ok(()));
        let layout = Layout {
            namespace: "apps",
            directory_config_maps: vec!["people"],
            ..Layout::default()
        };
        let exposures: Vec<Exposure> = questions(&layout)
            .into_iter()
            .map(|question| Exposure {
                identity: Identity::user("alice"),
                question,
            })
            .collect();
        let message = verdict(&exposures).expect_err("exposed");
        assert!(
            message
                .starts_with("user alice can create configmaps apps/people (the people directory)"),
            "{message}"
        );
        assert!(
            message.contains(&format!("and {} more", exposures.len() - MAX_NAMED)),
            "{message}"
        );
        assert!(message.contains("approvals and GitOps requests do not activate grants"));
    }
}
