//! What changed in a people directory between two readings, person by person: the report a
//! directory change gets (an Event and a status entry), so nobody rewrites who is who
//! unnoticed. Pure.

use std::collections::BTreeMap;

use super::directory::{login_key, Directory, Person};

/// What changed for one person, in words (`status Active -> Offboarded`, `added`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonChange {
    /// The person's first login.
    pub person: String,
    pub changes: Vec<String>,
}

fn key(person: &Person) -> String {
    person
        .login_names
        .first()
        .map(|l| login_key(l))
        .unwrap_or_default()
}

fn list(values: &[String]) -> String {
    if values.is_empty() {
        "none".into()
    } else {
        values.join(";")
    }
}

fn option(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "none".into())
}

/// Every person added, removed or changed from `before` to `after` (by first login), in
/// login order. Login names, organisational role, status, manager and Kubernetes identities
/// are compared; display names are not (they decide nothing).
pub fn between(before: &Directory, after: &Directory) -> Vec<PersonChange> {
    let old: BTreeMap<String, &Person> = before.people().iter().map(|p| (key(p), p)).collect();
    let new: BTreeMap<String, &Person> = after.people().iter().map(|p| (key(p), p)).collect();
    let mut out = Vec::new();
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let changes = match (old.get(k), new.get(k)) {
            (None, Some(_)) => vec!["added".to_string()],
            (Some(_), None) => vec!["removed".to_string()],
            (Some(a), Some(b)) => {
                let mut c = Vec::new();
                let mut field = |name: &str, x: String, y: String| {
                    if x != y {
                        c.push(format!("{name} {x} -> {y}"));
                    }
                };
                field("loginNames", list(&a.login_names), list(&b.login_names));
                field("orgRole", option(&a.org_role), option(&b.org_role));
                field(
                    "status",
                    format!("{:?}", a.status),
                    format!("{:?}", b.status),
                );
                field("manager", option(&a.manager), option(&b.manager));
                field(
                    "kubernetesUsers",
                    list(&a.kubernetes_users),
                    list(&b.kubernetes_users),
                );
                field(
                    "kubernetesGroups",
                    list(&a.kubernetes_groups),
                    list(&b.kubernetes_groups),
                );
                c
            }
            (None, None) => Vec::new(),
        };
        if !changes.is_empty() {
            out.push(PersonChange {
                person: k.clone(),
                changes,
            });
        }
    }
    out
}

/// The changes in one line, at most `limit` people spelled out.
pub fn summary(changes: &[PersonChange], limit: usize) -> String {
    let mut parts: Vec<String> = changes
        .iter()
        .take(limit)
        .map(|c| format!("{}: {}", c.person, c.changes.join(", ")))
        .collect();
    if changes.len() > limit {
        parts.push(format!("and {} more", changes.len() - limit));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::{parse_people, DirectoryFormat};

    fn directory(yaml: &str) -> Directory {
        Directory::build([(
            "inline",
            parse_people(DirectoryFormat::Yaml, yaml).expect("people"),
        )])
        .expect("directory")
    }

    #[test]
    fn each_person_added_removed_or_changed_is_named_with_what_changed() {
        let before = directory(
            "
- {loginName: alice@example.com, orgRole: engineer, kubernetesUsers: [alice, mallory]}
- {loginName: bob@example.com, orgRole: engineer, displayName: Bob}
- {loginName: carol@example.com, orgRole: engineer}
",
        );
        let after = directory(
            "
- {loginName: alice@example.com, orgRole: platform-lead, kubernetesUsers: [alice]}
- {loginName: bob@example.com, orgRole: engineer, displayName: Robert}
- {loginName: carol@example.com, orgRole: engineer, status: offboarded, manager: alice@example.com}
- {loginName: dave@example.com, orgRole: engineer}
",
        );
        let changes = between(&before, &after);
        assert_eq!(
            summary(&changes, 10),
            "alice@example.com: orgRole engineer -> platform-lead, kubernetesUsers alice;mallory -> alice; \
             carol@example.com: status Active -> Offboarded, manager none -> alice@example.com; \
             dave@example.com: added"
        );
        assert!(
            between(&after, &after).is_empty(),
            "a display name decides nothing"
        );
        assert_eq!(
            summary(&between(&after, &before), 1),
            "alice@example.com: orgRole platform-lead -> engineer, kubernetesUsers alice -> alice;mallory; and 2 more"
        );
    }
}
