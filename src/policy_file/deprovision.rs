//! Deprovisioning: removing an offboarded person's direct entries from the policy file.
//!
//! Like the rest of [`super`], this never does I/O and never rewrites a file that does not
//! parse; everything it does not remove stays byte for byte, comments and layout included.
//!
//! A person's direct entries are the strings equal to one of their logins (ignoring ASCII case,
//! as logins are e-mail-like) in exactly these places:
//! - the member lists of `groups` (a group stays, even emptied: rules may name it);
//! - the `src` of `grants`, `acls` and `ssh` rules (and `users`, the legacy name of `src` in
//!   `acls`); a rule left without any source is removed whole, never left with an empty `src`;
//! - the owner lists of `tagOwners`;
//! - `tests` and `sshTests` entries whose `src` is the person, removed whole (Tailscale refuses
//!   a file whose tests fail, and a test of a removed person's access would).
//!
//! Nothing else is removed: not a `dst`, `hosts`, an ssh rule's `users` (local accounts), nor
//! `autoApprovers` or anything else; a login found there is reported in [`Deprovision::kept`]
//! for a person to review. Only a human's (unmarked) entries are removed: an entry carrying a
//! Tailkeeper marker, of any owner or the legacy bare one, belongs to a grant and ends with it,
//! so it is kept and reported with its owner. Sections are found ignoring case (`Groups`,
//! `ACLs`, `SSHTests`), like everywhere else in the policy file.
//!
//! Each removal takes the item, one adjacent comma and its line when nothing else is left on it,
//! exactly as the removal of a reshaped owned item does, and reports the item's exact text with
//! a location a person can restore it from.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashSet};

use serde::Serialize;

use super::edit::{self, remove_item};
use super::scan::{self, Container, Item, MarkerOwner, Node, Value};
use super::{find_section, json_string, root_object, PolicyFileError};

/// The result of [`deprovision`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deprovision {
    /// The new file; equal to the input exactly when `removed` is empty.
    pub text: String,
    /// Every entry removed, in file order; one per removal (a whole rule counts once).
    pub removed: Vec<Removed>,
    /// Entries naming the person that were left in place, in file order, and why.
    pub kept: Vec<Kept>,
}

/// One entry removed from the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Removed {
    /// Where it was, with section keys as spelled in the file and indices of the original:
    /// `groups["group:prod"]`, `grants[2].src`, `acls[0]`, `tagOwners["tag:ci"]`, `tests[3]`.
    pub location: String,
    pub kind: RemovedKind,
    /// The exact bytes removed from that place: the quoted login, or the whole rule or test.
    pub text: String,
    /// Byte offset of `text` in the original file (for checking that nothing else changed).
    #[serde(skip)]
    offset: usize,
}

/// What a removed entry was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum RemovedKind {
    /// A member of a group (`location` is the group).
    GroupMember,
    /// One source of a rule that keeps other sources (`location` is the `src` list).
    RuleSource,
    /// A rule whose sources were all the person's (`location` is the rule).
    WholeRule,
    /// An owner of a tag (`location` is the tag's owner list).
    TagOwner,
    /// A `tests` or `sshTests` entry about the person (`location` is the test).
    Test,
}

/// An entry naming the person that was not removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Kept {
    /// Where it is, in the form of [`Removed::location`].
    pub location: String,
    /// The owner id of its marker; `None` for the legacy bare marker (owner unknown) and for
    /// entries without a marker.
    pub owner: Option<String>,
    pub reason: KeptReason,
    /// The entry as written: the quoted login, or the whole marked rule or test.
    pub text: String,
}

/// Why an entry naming the person was kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum KeptReason {
    /// It carries a Tailkeeper marker: it belongs to a grant, which ends through its own
    /// lifecycle.
    Marked,
    /// The login (or `login:port`) appears where deprovisioning removes nothing: a `dst`, an ssh
    /// rule's `users`, `autoApprovers`, a test's expectations. For a person to review.
    Mentioned,
}

/// Removes the direct entries of the person with these `logins` from `text` (rules in the module
/// documentation). Deprovisioning the result again removes nothing.
pub fn deprovision(text: &str, logins: &BTreeSet<String>) -> Result<Deprovision, PolicyFileError> {
    run(text, logins, None)
}

/// [`deprovision`], but only of the entries within `locations` (`groups["group:prod"]`,
/// `grants[3]`; section names ignoring case): what revoking one entitlement of a person takes.
/// Tests naming the person are left (Tailscale refuses the file if one of them then fails,
/// which is reported, never worked around).
pub fn deprovision_within(
    text: &str,
    logins: &BTreeSet<String>,
    locations: &[String],
) -> Result<Deprovision, PolicyFileError> {
    run(text, logins, Some(locations))
}

/// Whether `location` is `prefix` or inside it (`grants[3].src[1]` is inside `grants[3]`).
fn within(location: &str, prefix: &str) -> bool {
    location.len() >= prefix.len()
        && location.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        && matches!(
            location.as_bytes().get(prefix.len()),
            None | Some(b'[') | Some(b'.')
        )
}

fn run(
    text: &str,
    logins: &BTreeSet<String>,
    only: Option<&[String]>,
) -> Result<Deprovision, PolicyFileError> {
    let root_value = scan::parse(text)?;
    let root = root_object(&root_value)?;
    let mut survey = Survey {
        text,
        logins: logins
            .iter()
            .filter(|login| !login.is_empty())
            .map(|login| login.to_ascii_lowercase())
            .collect(),
        removed: Vec::new(),
        kept: Vec::new(),
        handled: HashSet::new(),
    };
    if !survey.logins.is_empty() {
        survey.lists(
            root,
            "groups",
            RemovedKind::GroupMember,
            "a list of members",
        )?;
        survey.lists(root, "tagOwners", RemovedKind::TagOwner, "a list of owners")?;
        for section in ["grants", "acls", "ssh"] {
            survey.rules(root, section)?;
        }
        for section in ["tests", "sshTests"] {
            survey.tests(root, section)?;
        }
        survey.mentions(&root_value, "");
    }
    let Survey {
        mut removed,
        mut kept,
        ..
    } = survey;
    if let Some(prefixes) = only {
        let inside = |location: &str| prefixes.iter().any(|p| within(location, p));
        removed.retain(|entry| inside(&entry.location));
        kept.retain(|(entry, _)| inside(&entry.location));
    }

    // From the end of the file backwards: a removal only deletes bytes after the end of every
    // item before it, so each remaining item is still where the survey found it.
    removed.sort_by_key(|entry| Reverse(entry.offset));
    let mut current = text.to_string();
    for entry in &removed {
        let edits = {
            let root = scan::parse(&current).map_err(|error| {
                PolicyFileError::Internal(format!("a removal produced an unparsable file: {error}"))
            })?;
            let found = array_item_at(&root, entry.offset).filter(|(container, index)| {
                let item = &container.items[*index];
                current.get(item.start..item.value.span.end) == Some(entry.text.as_str())
            });
            let Some((container, index)) = found else {
                return Err(PolicyFileError::Internal(format!(
                    "{} moved while removing it",
                    entry.location
                )));
            };
            remove_item(&current, container, index)
        };
        current = edit::apply(&current, edits);
    }
    scan::parse(&current).map_err(|error| {
        PolicyFileError::Internal(format!("a removal produced an unparsable file: {error}"))
    })?;
    removed.reverse();
    kept.sort_by_key(|entry| entry.1);
    Ok(Deprovision {
        text: current,
        removed,
        kept: kept.into_iter().map(|(entry, _)| entry).collect(),
    })
}

/// What the file holds of the person: what to remove and what stays.
struct Survey<'t> {
    text: &'t str,
    /// The person's logins, ASCII-lowercased.
    logins: HashSet<String>,
    removed: Vec<Removed>,
    /// With the byte offset of each, to report them in file order.
    kept: Vec<(Kept, usize)>,
    /// Start offsets of values already removed or kept: the search for mentions skips them.
    handled: HashSet<usize>,
}

impl Survey<'_> {
    fn is_login(&self, candidate: &str) -> bool {
        self.logins.contains(&candidate.to_ascii_lowercase())
    }

    /// A login alone or with a port (`alice@example.com:22`), as destinations name people.
    fn mentions_login(&self, candidate: &str) -> bool {
        self.is_login(candidate)
            || self.logins.iter().any(|login| {
                let (candidate, login) = (candidate.as_bytes(), login.as_bytes());
                candidate.len() > login.len()
                    && candidate[login.len()] == b':'
                    && candidate[..login.len()].eq_ignore_ascii_case(login)
            })
    }

    fn source(&self, item: &Item) -> &str {
        &self.text[item.value.span.start..item.value.span.end]
    }

    fn remove(&mut self, location: String, kind: RemovedKind, item: &Item) {
        self.handled.insert(item.value.span.start);
        self.removed.push(Removed {
            location,
            kind,
            text: self.source(item).to_string(),
            offset: item.value.span.start,
        });
    }

    fn keep_marked(&mut self, location: String, item: &Item) {
        let owner = item.marker.as_ref().and_then(|marker| match &marker.owner {
            MarkerOwner::Id(id) => Some(id.clone()),
            MarkerOwner::Legacy => None,
        });
        self.handled.insert(item.value.span.start);
        self.kept.push((
            Kept {
                location,
                owner,
                reason: KeptReason::Marked,
                text: self.source(item).to_string(),
            },
            item.value.span.start,
        ));
    }

    /// Logins in the lists of an object of lists: `groups` members, `tagOwners` owners.
    fn lists(
        &mut self,
        root: &Container,
        name: &str,
        kind: RemovedKind,
        what: &str,
    ) -> Result<(), PolicyFileError> {
        let Some(section) = find_section(root, name)?.map(|index| &root.items[index]) else {
            return Ok(());
        };
        let section_path = property_path("", key_of(section));
        let lists = section.value.as_object().ok_or_else(|| {
            PolicyFileError::Unsupported(format!("{section_path} is not an object"))
        })?;
        for list_item in &lists.items {
            let path = property_path(&section_path, key_of(list_item));
            let list = list_item
                .value
                .as_array()
                .ok_or_else(|| PolicyFileError::Unsupported(format!("{path} is not {what}")))?;
            self.logins_in(list, &path, kind);
        }
        Ok(())
    }

    /// Removes the person's unmarked strings of `list` and keeps the marked ones; returns how
    /// many items remain.
    fn logins_in(&mut self, list: &Container, path: &str, kind: RemovedKind) -> usize {
        let mut remaining = 0;
        for item in &list.items {
            let personal = item
                .value
                .as_str(self.text)
                .is_some_and(|entry| self.is_login(&entry));
            match (personal, item.marker.is_some()) {
                (true, false) => self.remove(path.to_string(), kind, item),
                (true, true) => {
                    self.keep_marked(path.to_string(), item);
                    remaining += 1;
                }
                (false, _) => remaining += 1,
            }
        }
        remaining
    }

    fn rules(&mut self, root: &Container, name: &str) -> Result<(), PolicyFileError> {
        let Some(section) = find_section(root, name)?.map(|index| &root.items[index]) else {
            return Ok(());
        };
        let section_path = property_path("", key_of(section));
        let rules = section
            .value
            .as_array()
            .ok_or_else(|| PolicyFileError::Unsupported(format!("{section_path} is not a list")))?;
        // `users` is what `src` was called in the first ACLs, and Tailscale still reads it there.
        let source_names: &[&str] = if name == "acls" {
            &["src", "users"]
        } else {
            &["src"]
        };
        for (index, rule) in rules.items.iter().enumerate() {
            let path = format!("{section_path}[{index}]");
            let fields = rule
                .value
                .as_object()
                .ok_or_else(|| PolicyFileError::Unsupported(format!("{path} is not an object")))?;
            let mut sources = Vec::new();
            for source_name in source_names {
                if let Some(field) = find_property(fields, source_name, &path)? {
                    let source_path = property_path(&path, key_of(field));
                    let list = field.value.as_array().ok_or_else(|| {
                        PolicyFileError::Unsupported(format!("{source_path} is not a list"))
                    })?;
                    sources.push((source_path, list));
                }
            }
            if rule.marker.is_some() {
                let names_person = sources.iter().any(|(_, list)| {
                    list.items.iter().any(|item| {
                        item.value
                            .as_str(self.text)
                            .is_some_and(|entry| self.is_login(&entry))
                    })
                });
                if names_person {
                    self.keep_marked(path, rule);
                }
                continue;
            }
            let (removed_before, kept_before) = (self.removed.len(), self.kept.len());
            let remaining: usize = sources
                .iter()
                .map(|(source_path, list)| {
                    self.logins_in(list, source_path, RemovedKind::RuleSource)
                })
                .sum();
            if remaining == 0 && self.removed.len() > removed_before {
                // Nothing of the rule is left for anyone: it goes whole. Every source was the
                // person's and unmarked, so nothing was kept meanwhile.
                debug_assert_eq!(self.kept.len(), kept_before);
                for source in self.removed.drain(removed_before..) {
                    self.handled.remove(&source.offset);
                }
                self.remove(path, RemovedKind::WholeRule, rule);
            }
        }
        Ok(())
    }

    fn tests(&mut self, root: &Container, name: &str) -> Result<(), PolicyFileError> {
        let Some(section) = find_section(root, name)?.map(|index| &root.items[index]) else {
            return Ok(());
        };
        let section_path = property_path("", key_of(section));
        let tests = section
            .value
            .as_array()
            .ok_or_else(|| PolicyFileError::Unsupported(format!("{section_path} is not a list")))?;
        for (index, test) in tests.items.iter().enumerate() {
            let path = format!("{section_path}[{index}]");
            let fields = test
                .value
                .as_object()
                .ok_or_else(|| PolicyFileError::Unsupported(format!("{path} is not an object")))?;
            let about_person = find_property(fields, "src", &path)?
                .and_then(|src| src.value.as_str(self.text))
                .is_some_and(|src| self.is_login(&src));
            match (about_person, test.marker.is_some()) {
                (true, false) => self.remove(path, RemovedKind::Test, test),
                (true, true) => self.keep_marked(path, test),
                (false, _) => {}
            }
        }
        Ok(())
    }

    /// Reports every other string naming the person, at `path` (the location of `value`).
    fn mentions(&mut self, value: &Value, path: &str) {
        if self.handled.contains(&value.span.start) {
            return;
        }
        let (container, is_object) = match &value.node {
            Node::Scalar => {
                let named = value
                    .as_str(self.text)
                    .is_some_and(|entry| self.mentions_login(&entry));
                if named {
                    let text = self.text[value.span.start..value.span.end].to_string();
                    self.kept.push((
                        Kept {
                            location: path.to_string(),
                            owner: None,
                            reason: KeptReason::Mentioned,
                            text,
                        },
                        value.span.start,
                    ));
                }
                return;
            }
            Node::Object(container) => (container, true),
            Node::Array(container) => (container, false),
        };
        for (index, item) in container.items.iter().enumerate() {
            let item_path = match (is_object, &item.value.node) {
                (true, _) => property_path(path, key_of(item)),
                // A string in a list is located by its list, as removed members are.
                (false, Node::Scalar) => path.to_string(),
                (false, _) => format!("{path}[{index}]"),
            };
            self.mentions(&item.value, &item_path);
        }
    }
}

fn key_of(item: &Item) -> &str {
    item.key.as_ref().map_or("", |key| key.name.as_str())
}

/// `parent.key`, or `parent["key"]` when the key is not a plain identifier (`group:prod`).
fn property_path(parent: &str, key: &str) -> String {
    let plain = key
        .bytes()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
    match (plain, parent.is_empty()) {
        (true, true) => key.to_string(),
        (true, false) => format!("{parent}.{key}"),
        (false, _) => format!("{parent}[{}]", json_string(key)),
    }
}

/// The property `name` of a rule or test, found ignoring case as Tailscale reads it.
fn find_property<'c>(
    object: &'c Container,
    name: &str,
    path: &str,
) -> Result<Option<&'c Item>, PolicyFileError> {
    let mut found = object
        .items
        .iter()
        .filter(|item| key_of(item).eq_ignore_ascii_case(name));
    let first = found.next();
    if found.next().is_some() {
        return Err(PolicyFileError::Unsupported(format!(
            "{path} has more than one {name:?} property; keep one"
        )));
    }
    Ok(first)
}

/// The array and index of the array element that starts at `offset`.
fn array_item_at(value: &Value, offset: usize) -> Option<(&Container, usize)> {
    let container = match &value.node {
        Node::Scalar => return None,
        Node::Object(container) | Node::Array(container) => container,
    };
    if offset <= container.open || offset >= container.close {
        return None;
    }
    let is_array = matches!(value.node, Node::Array(_));
    container
        .items
        .iter()
        .enumerate()
        .find_map(|(index, item)| {
            if is_array && item.value.span.start == offset {
                Some((container, index))
            } else if item.value.span.start < offset && offset < item.value.span.end {
                array_item_at(&item.value, offset)
            } else {
                None
            }
        })
}

#[cfg(test)]
#[path = "deprovision_tests.rs"]
mod tests;
