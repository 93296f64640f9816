//! Reading the policy file as data: its groups and rules with the ownership marker of each, for
//! the entitlements inventory. Nothing is edited here.

use serde_json::Value as Json;

use super::scan::{self, Item, MarkerOwner};
use super::{find_section, root_object, PolicyFileError, RuleSection};

/// Who wrote an item of the policy file, as its marker says.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Author {
    /// No marker: a person wrote it (in the admin console, an editor or a GitOps repository).
    Person,
    /// Marked `/* tailkeeper:<id> */` by the installation with that owner id.
    Tailkeeper(String),
    /// The bare legacy marker `/* tailkeeper */`: some Tailkeeper installation, unknown which.
    TailkeeperUnknown,
}

/// A policy file's groups and rules, in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Document {
    /// Groups with their members and who added each member.
    pub groups: Vec<Group>,
    /// The entries of `grants`, `acls` and `ssh`.
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub name: String,
    pub members: Vec<(String, Author)>,
}

/// The section a rule is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Section {
    Grants,
    Acls,
    Ssh,
}

impl Section {
    pub fn name(self) -> &'static str {
        match self {
            Section::Grants => "grants",
            Section::Acls => "acls",
            Section::Ssh => "ssh",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub section: Section,
    /// Its position in the section, from 0.
    pub index: usize,
    /// The entry as JSON (comments dropped).
    pub json: Json,
    pub author: Author,
}

fn author(item: &Item) -> Author {
    match item.marker.as_ref().map(|marker| &marker.owner) {
        None => Author::Person,
        Some(MarkerOwner::Legacy) => Author::TailkeeperUnknown,
        Some(MarkerOwner::Id(id)) => Author::Tailkeeper(id.clone()),
    }
}

/// Reads `text` (HuJSON) into its groups and rules. Section names are matched
/// case-insensitively (`Groups`, `ACLs`), as Tailscale does; items that are not the expected
/// shape (a group that is not an array, a member that is not a string, a rule that is not an
/// object) are skipped, since Tailscale would not have accepted them as access either.
pub fn document(text: &str) -> Result<Document, PolicyFileError> {
    let root_value = scan::parse(text)?;
    let root = root_object(&root_value)?;
    let mut document = Document::default();
    if let Some(groups) =
        find_section(root, "groups")?.and_then(|i| root.items[i].value.as_object())
    {
        for group in &groups.items {
            let (Some(key), Some(members)) = (&group.key, group.value.as_array()) else {
                continue;
            };
            document.groups.push(Group {
                name: key.name.clone(),
                members: members
                    .items
                    .iter()
                    .filter_map(|member| Some((member.value.as_str(text)?, author(member))))
                    .collect(),
            });
        }
    }
    for (section, kind) in [
        (RuleSection::Grants, Section::Grants),
        (RuleSection::Acls, Section::Acls),
        (RuleSection::Ssh, Section::Ssh),
    ] {
        let Some(entries) =
            find_section(root, section.name())?.and_then(|i| root.items[i].value.as_array())
        else {
            continue;
        };
        for (index, entry) in entries.items.iter().enumerate() {
            if entry.value.as_object().is_none() {
                continue;
            }
            if let Some(json) = entry.value.to_json(text) {
                document.rules.push(Rule {
                    section: kind,
                    index,
                    json,
                    author: author(entry),
                });
            }
        }
    }
    Ok(document)
}

/// Every string in `text` (keys and values), lower-cased: a cheap "is this login mentioned at
/// all" before any per-person work.
pub fn strings(text: &str) -> Result<std::collections::HashSet<String>, PolicyFileError> {
    fn walk(value: &scan::Value, text: &str, out: &mut std::collections::HashSet<String>) {
        if let Some(s) = value.as_str(text) {
            out.insert(s.to_ascii_lowercase());
        }
        for container in [value.as_object(), value.as_array()].into_iter().flatten() {
            for item in &container.items {
                if let Some(key) = &item.key {
                    out.insert(key.name.to_ascii_lowercase());
                }
                walk(&item.value, text, out);
            }
        }
    }
    let root = scan::parse(text)?;
    let mut out = std::collections::HashSet::new();
    walk(&root, text, &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_rules_are_read_with_who_wrote_each() {
        let text = r#"{
  // people
  "Groups": {
    "group:prod": ["alice@example.com", "bob@example.com" /* tailkeeper:east */],
    "group:odd": "not a list",
  },
  "ACLs": [{"action": "accept", "src": ["group:prod"], "dst": ["tag:db:5432"]}],
  "grants": [
    {"src": ["carol@example.com"], "dst": ["tag:web"], "ip": ["443"]}, /* tailkeeper */
  ],
  "ssh": [{"action": "check", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["autogroup:nonroot"]}],
}"#;
        let doc = document(text).expect("parses");
        assert_eq!(doc.groups.len(), 1);
        assert_eq!(
            doc.groups[0].members,
            vec![
                ("alice@example.com".to_string(), Author::Person),
                (
                    "bob@example.com".to_string(),
                    Author::Tailkeeper("east".into())
                ),
            ]
        );
        let sections: Vec<(Section, usize, &Author)> = doc
            .rules
            .iter()
            .map(|r| (r.section, r.index, &r.author))
            .collect();
        assert_eq!(
            sections,
            vec![
                (Section::Grants, 0, &Author::TailkeeperUnknown),
                (Section::Acls, 0, &Author::Person),
                (Section::Ssh, 0, &Author::Person),
            ]
        );
        assert_eq!(doc.rules[0].json["ip"][0], "443");
    }

    #[test]
    fn every_string_of_the_file_is_listed_lower_cased() {
        let all = strings(r#"{"groups": {"group:X": ["Alice@Example.com" /* c */]}, "n": 1}"#)
            .expect("parses");
        for s in ["groups", "group:x", "alice@example.com", "n"] {
            assert!(all.contains(s), "{s} in {all:?}");
        }
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn an_unparsable_file_is_an_error_not_an_empty_document() {
        assert!(matches!(
            document("{\"groups\": {"),
            Err(PolicyFileError::Parse { .. })
        ));
    }
}
