//! Computing minimal, ownership-fenced edits to the tailnet policy file (HuJSON).
//!
//! This module must never do I/O (no network, no clock, no async) and never touch content it
//! does not own: everything outside the spans it inserts, comments and formatting included,
//! stays byte for byte as it was, and a file that does not parse is never rewritten.
//!
//! # Ownership
//! Several installations may edit one file (two operators, or two integrations on the same
//! tailnet), so every edit is made on behalf of an [`Owner`], and everything an owner adds
//! carries the block comment `/* tailkeeper:<id> */` with its id right after it (after its comma
//! in one-item-per-line layouts). A marker belongs to the item immediately before it, with only
//! whitespace and at most a comma in between (so a marker a human pushed onto the next line
//! still counts, and one behind another comment does not). A group or section an owner created
//! is marked too, and goes away once it holds no items and that owner wants none there.
//!
//! An item is the owner's only when its marker names that owner; only such items are ever
//! modified or removed. Items marked by another owner, and those with the bare `/* tailkeeper */`
//! of files written before markers named their owner (whose owner is unknown), are foreign:
//! never modified or removed, and neither is a group or section that someone else marked, even
//! when empty. Unmarked items are a human's (static memberships and rules) and are never
//! touched either: a person who was in a group before a grant keeps that membership when the
//! grant lapses. Ownership is read from the file alone, so it survives operator restarts.
//!
//! When adding, a wanted member or rule that a human already holds (unmarked) counts as present
//! and is not added again. One that only another owner holds does not count: the owner adds its
//! own marked copy, because the other may remove theirs at any time and this owner's access must
//! stay in effect. Two copies of the owner's own are reduced to one.
//!
//! # Layout
//! Items are inserted at the start of their container (so a human's trailing comments never
//! move), in the container's own layout, and removing an item deletes exactly the span its
//! insertion added. Adding and removing in any order, by any owners, therefore leads back to the
//! original bytes. Where a human reshaped the surroundings, removal takes the item, its marker
//! and one adjacent comma (and the line, if nothing else is left on it), which always leaves a
//! valid file.
//!
//! # Deprovisioning
//! [`deprovision`] is the one exception to "only the owner's items": when a person is
//! offboarded it removes their direct, unmarked entries (group memberships, rule sources, tag
//! ownerships, tests), a human's included, and reports the exact text of each so that a person
//! can restore it. Marked items are still never touched there: they end with their grants.

mod deprovision;
mod edit;
mod read;
mod scan;
#[cfg(test)]
mod tests;

pub use deprovision::{
    deprovision, deprovision_within, Deprovision, Kept, KeptReason, Removed, RemovedKind,
};

use std::collections::{BTreeSet, HashSet};

use serde_json::Value as Json;

pub use read::{document, strings, Author, Document, Group, Rule, Section};

use edit::{insert_first, remove_item, Edit};
use scan::{Container, Value};

/// Policy-file entries: what an owner wants the file to contain ([`reconcile`]), or what it
/// holds there ([`managed`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Entries {
    /// (group, login) memberships, e.g. ("group:prod", "alice@example.com").
    pub members: BTreeSet<(String, String)>,
    /// Whole entries of the `grants` section.
    pub grants: Vec<Json>,
    /// Whole entries of the `ssh` section.
    pub ssh: Vec<Json>,
    /// Whole entries of the legacy `acls` section.
    pub acls: Vec<Json>,
}

impl Entries {
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
            && self.grants.is_empty()
            && self.ssh.is_empty()
            && self.acls.is_empty()
    }

    /// Adds `other`'s entries; a rule already held is not repeated.
    pub fn extend(&mut self, other: &Entries) {
        self.members.extend(other.members.iter().cloned());
        for (mine, theirs) in [
            (&mut self.grants, &other.grants),
            (&mut self.ssh, &other.ssh),
            (&mut self.acls, &other.acls),
        ] {
            for rule in theirs {
                if !mine.contains(rule) {
                    mine.push(rule.clone());
                }
            }
        }
    }

    fn rules(&self, section: RuleSection) -> &[Json] {
        match section {
            RuleSection::Grants => &self.grants,
            RuleSection::Ssh => &self.ssh,
            RuleSection::Acls => &self.acls,
        }
    }

    fn rules_mut(&mut self, section: RuleSection) -> &mut Vec<Json> {
        match section {
            RuleSection::Grants => &mut self.grants,
            RuleSection::Ssh => &mut self.ssh,
            RuleSection::Acls => &mut self.acls,
        }
    }
}

/// The installation on whose behalf edits are made; its id is written into every marker.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    id: String,
}

impl Owner {
    /// Longest id accepted, so markers stay short on every line they end.
    pub const MAX_ID_LEN: usize = 64;

    /// An owner with id `id`: 1 to 64 characters from `A-Z a-z 0-9 . _ -`. The limited
    /// alphabet keeps the marker one comment that reads back as the same id (no `*/`, no
    /// whitespace to trim away).
    pub fn new(id: &str) -> Result<Owner, PolicyFileError> {
        let valid = (1..=Self::MAX_ID_LEN).contains(&id.len())
            && id
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
        if !valid {
            return Err(PolicyFileError::InvalidOwner { id: id.to_string() });
        }
        Ok(Owner { id: id.to_string() })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The comment written after everything this owner adds: `/* tailkeeper:<id> */`.
    pub fn marker(&self) -> String {
        format!("/* tailkeeper:{} */", self.id)
    }
}

/// The result of [`reconcile`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The new file (equal to the input when nothing changes).
    pub text: String,
    pub changed: bool,
    /// Wanted memberships that are present without a marker: a human's static membership,
    /// which Tailkeeper does not own and will never remove.
    pub already_present: Vec<(String, String)>,
    /// Members (`group:x: login`) and rules (`grants: {...}`) added by this call.
    pub added: Vec<String>,
    /// Members and rules removed by this call.
    pub removed: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyFileError {
    /// The file is not valid HuJSON; it must not be rewritten.
    #[error("the policy file does not parse: line {line}, column {column}: {message}")]
    Parse {
        /// 1-based.
        line: usize,
        /// 1-based, in characters.
        column: usize,
        message: String,
    },
    #[error("group {group} is provisioned by SCIM (group:name@domain) and cannot be edited in the policy file")]
    ScimGroup { group: String },
    #[error("{group:?} is not a policy-file group name (expected \"group:<name>\")")]
    InvalidGroupName { group: String },
    #[error("{id:?} is not a valid policy-file owner id (expected 1 to 64 characters from A-Z, a-z, 0-9, '.', '_' and '-')")]
    InvalidOwner { id: String },
    /// The file parses but has a shape Tailkeeper cannot edit safely (e.g. `groups` is not an
    /// object, or a section appears twice).
    #[error("cannot edit the policy file: {0}")]
    Unsupported(String),
    /// A bug in the editor; the input is left alone.
    #[error("internal error while editing the policy file: {0}")]
    Internal(String),
}

/// Edits `text` so that `owner`'s items are exactly those `desired` needs, touching nothing
/// else: neither a human's items nor another owner's.
///
/// Idempotent: reconciling the output again with the same `desired` changes nothing.
pub fn reconcile(text: &str, owner: &Owner, desired: &Entries) -> Result<Outcome, PolicyFileError> {
    for (group, _) in &desired.members {
        check_group_name(group)?;
    }
    scan::parse(text)?;

    let mut current = text.to_string();
    let mut added = Vec::new();
    let mut removed = Vec::new();
    // Each step removes an owned item or adds a wanted one, so the loop ends; the bound only
    // turns a bug into an error instead of a hang.
    let wanted_count: usize = desired.members.len()
        + RuleSection::ALL
            .iter()
            .map(|section| desired.rules(*section).len())
            .sum::<usize>();
    let step_limit = text.matches("tailkeeper").count() + 3 * wanted_count + 8;
    for _ in 0..step_limit {
        let root = scan::parse(&current).map_err(|error| {
            PolicyFileError::Internal(format!("an edit produced an unparsable file: {error}"))
        })?;
        let Some(step) = next_step(&current, &root, owner, desired)? else {
            let already_present = already_present(&current, &root, desired)?;
            return Ok(Outcome {
                changed: current != text,
                text: current,
                already_present,
                added,
                removed,
            });
        };
        current = edit::apply(&current, step.edits);
        match step.change {
            Some(Change::Added(entry)) => added.push(entry),
            Some(Change::Removed(entry)) => removed.push(entry),
            None => {}
        }
    }
    Err(PolicyFileError::Internal(
        "edits did not converge".to_string(),
    ))
}

/// What `owner` holds in `text`: the members and entries marked with its marker, as written.
pub fn managed(text: &str, owner: &Owner) -> Result<Entries, PolicyFileError> {
    let root_value = scan::parse(text)?;
    let root = root_object(&root_value)?;
    let mut owned = Entries::default();
    if let Some(groups) =
        find_section(root, "groups")?.and_then(|i| root.items[i].value.as_object())
    {
        for group in &groups.items {
            let (Some(key), Some(members)) = (&group.key, group.value.as_array()) else {
                continue;
            };
            for member in members.items.iter().filter(|member| member.owned_by(owner)) {
                if let Some(login) = member.value.as_str(text) {
                    owned.members.insert((key.name.clone(), login));
                }
            }
        }
    }
    for section in RuleSection::ALL {
        let Some(entries) =
            find_section(root, section.name())?.and_then(|i| root.items[i].value.as_array())
        else {
            continue;
        };
        owned.rules_mut(section).extend(
            entries
                .items
                .iter()
                .filter(|entry| entry.owned_by(owner))
                .filter_map(|entry| entry.value.to_json(text)),
        );
    }
    Ok(owned)
}

/// The entries of `desired` that `text` does not hold for `owner`: neither marked by it nor
/// written by a person (unmarked). An entry another owner holds does not count, as in
/// [`reconcile`]. Used to tell that a person removed or changed what a grant holds.
pub fn absent(text: &str, owner: &Owner, desired: &Entries) -> Result<Entries, PolicyFileError> {
    let root_value = scan::parse(text)?;
    let root = root_object(&root_value)?;
    let groups = find_section(root, "groups")?.and_then(|i| root.items[i].value.as_object());
    let mut missing = Entries::default();
    for (group, login) in &desired.members {
        let held = match groups {
            Some(groups) => find_group(groups, group)?
                .and_then(|i| groups.items[i].value.as_array())
                .is_some_and(|members| {
                    members.items.iter().any(|member| {
                        member.present_for(owner)
                            && member
                                .value
                                .as_str(text)
                                .is_some_and(|m| same_login(&m, login))
                    })
                }),
            None => false,
        };
        if !held {
            missing.members.insert((group.clone(), login.clone()));
        }
    }
    for section in RuleSection::ALL {
        let entries =
            find_section(root, section.name())?.and_then(|i| root.items[i].value.as_array());
        let present: HashSet<String> = entries
            .map(|entries| {
                entries
                    .items
                    .iter()
                    .filter(|entry| entry.present_for(owner))
                    .filter_map(|entry| entry.value.to_json(text))
                    .map(|entry| canonical(&entry))
                    .collect()
            })
            .unwrap_or_default();
        for rule in desired.rules(section) {
            let held = present.contains(&canonical(rule));
            if !held {
                missing.rules_mut(section).push(rule.clone());
            }
        }
    }
    Ok(missing)
}

/// True when the file has an `acls` section and no `grants` section, so new rules belong in the
/// legacy `acls` form.
pub fn uses_legacy_acls(text: &str) -> Result<bool, PolicyFileError> {
    let root_value = scan::parse(text)?;
    let root = root_object(&root_value)?;
    Ok(find_section(root, "acls")?.is_some() && find_section(root, "grants")?.is_none())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RuleSection {
    Grants,
    Ssh,
    Acls,
}

impl RuleSection {
    const ALL: [RuleSection; 3] = [RuleSection::Grants, RuleSection::Ssh, RuleSection::Acls];

    fn name(self) -> &'static str {
        match self {
            RuleSection::Grants => "grants",
            RuleSection::Ssh => "ssh",
            RuleSection::Acls => "acls",
        }
    }
}

enum Change {
    Added(String),
    Removed(String),
}

/// One edit of the convergence loop, applied before the file is read again.
struct Step {
    edits: Vec<Edit>,
    change: Option<Change>,
}

impl Step {
    fn plain(edits: Vec<Edit>) -> Self {
        Step {
            edits,
            change: None,
        }
    }
}

fn check_group_name(group: &str) -> Result<(), PolicyFileError> {
    let Some(name) = group.strip_prefix("group:").filter(|name| !name.is_empty()) else {
        return Err(PolicyFileError::InvalidGroupName {
            group: group.to_string(),
        });
    };
    if name.contains('@') {
        return Err(PolicyFileError::ScimGroup {
            group: group.to_string(),
        });
    }
    Ok(())
}

/// Removals first (so a container emptied now is seen as empty), then additions; each call
/// returns the first edit still needed, or `None` when the file is as wanted.
fn next_step(
    text: &str,
    root_value: &Value,
    owner: &Owner,
    desired: &Entries,
) -> Result<Option<Step>, PolicyFileError> {
    let root = root_object(root_value)?;
    let groups_index = find_section(root, "groups")?;
    if let Some(step) = remove_unwanted_members(text, root, groups_index, owner, desired)? {
        return Ok(Some(step));
    }
    for section in RuleSection::ALL {
        if let Some(step) = remove_unwanted_rules(text, root, section, owner, desired)? {
            return Ok(Some(step));
        }
    }
    if let Some(step) = add_wanted_members(text, root, groups_index, owner, desired)? {
        return Ok(Some(step));
    }
    for section in RuleSection::ALL {
        if let Some(step) = add_wanted_rules(text, root, section, owner, desired)? {
            return Ok(Some(step));
        }
    }
    Ok(None)
}

fn root_object(root: &Value) -> Result<&Container, PolicyFileError> {
    root.as_object()
        .ok_or_else(|| PolicyFileError::Unsupported("the policy file is not a JSON object".into()))
}

/// The index of the top-level property `name`, found case-insensitively (`ACLs`, `Groups`).
fn find_section(root: &Container, name: &str) -> Result<Option<usize>, PolicyFileError> {
    let mut found = root.items.iter().enumerate().filter(|(_, item)| {
        item.key
            .as_ref()
            .is_some_and(|key| key.name.eq_ignore_ascii_case(name))
    });
    let first = found.next().map(|(index, _)| index);
    if found.next().is_some() {
        return Err(PolicyFileError::Unsupported(format!(
            "the {name} section appears more than once"
        )));
    }
    Ok(first)
}

/// The index of the group named `group`: an exact match, else a case-insensitive one.
fn find_group(groups: &Container, group: &str) -> Result<Option<usize>, PolicyFileError> {
    let key_of = |index: usize| {
        groups.items[index]
            .key
            .as_ref()
            .map(|key| key.name.as_str())
    };
    let exact: Vec<usize> = (0..groups.items.len())
        .filter(|index| key_of(*index) == Some(group))
        .collect();
    match exact.as_slice() {
        [index] => return Ok(Some(*index)),
        [] => {}
        _ => {
            return Err(PolicyFileError::Unsupported(format!(
                "group {group} is defined more than once"
            )))
        }
    }
    let lowered = group.to_lowercase();
    Ok((0..groups.items.len())
        .find(|index| key_of(*index).is_some_and(|key| key.to_lowercase() == lowered)))
}

fn same_login(left: &str, right: &str) -> bool {
    left.to_lowercase() == right.to_lowercase()
}

fn remove_unwanted_members(
    text: &str,
    root: &Container,
    groups_index: Option<usize>,
    owner: &Owner,
    desired: &Entries,
) -> Result<Option<Step>, PolicyFileError> {
    let Some(groups_index) = groups_index else {
        return Ok(None);
    };
    let section = &root.items[groups_index];
    let Some(groups) = section.value.as_object() else {
        // Nothing of ours can be inside; an edit that needs it reports the problem.
        return Ok(None);
    };
    // Which file group each wanted group resolves to, so that ownership is judged per group.
    let mut wanted_by_group: Vec<HashSet<String>> = vec![HashSet::new(); groups.items.len()];
    for (group, login) in &desired.members {
        if let Some(index) = find_group(groups, group)? {
            wanted_by_group[index].insert(login.to_lowercase());
        }
    }

    for (group_index, group) in groups.items.iter().enumerate() {
        let Some(members) = group.value.as_array() else {
            continue;
        };
        let group_name = group.key.as_ref().map_or("", |key| key.name.as_str());
        let mut kept = HashSet::new();
        for (member_index, member) in members.items.iter().enumerate() {
            if !member.owned_by(owner) {
                continue;
            }
            let login = member.value.as_str(text);
            let keep = login.as_ref().is_some_and(|login| {
                let login = login.to_lowercase();
                // A duplicate of an owned member is dropped: one is enough.
                wanted_by_group[group_index].contains(&login) && kept.insert(login)
            });
            if !keep {
                let shown = login.unwrap_or_else(|| {
                    text[member.value.span.start..member.value.span.end].to_string()
                });
                return Ok(Some(Step {
                    edits: remove_item(text, members, member_index),
                    change: Some(Change::Removed(format!("{group_name}: {shown}"))),
                }));
            }
        }
    }

    // A group this owner created goes away once no member is left in it and none is wanted;
    // a comment a human left inside it goes with it, like one inside an owned rule. One that
    // someone else created stays: they may still want it.
    for (group_index, group) in groups.items.iter().enumerate() {
        let emptied = group
            .value
            .as_array()
            .is_some_and(|members| members.items.is_empty());
        if group.owned_by(owner) && emptied && wanted_by_group[group_index].is_empty() {
            return Ok(Some(Step::plain(remove_item(text, groups, group_index))));
        }
    }
    if section.owned_by(owner) && groups.items.is_empty() && desired.members.is_empty() {
        return Ok(Some(Step::plain(remove_item(text, root, groups_index))));
    }
    Ok(None)
}

fn remove_unwanted_rules(
    text: &str,
    root: &Container,
    section: RuleSection,
    owner: &Owner,
    desired: &Entries,
) -> Result<Option<Step>, PolicyFileError> {
    let Some(section_index) = find_section(root, section.name())? else {
        return Ok(None);
    };
    let section_item = &root.items[section_index];
    let Some(entries) = section_item.value.as_array() else {
        return Ok(None);
    };
    let wanted = dedup(desired.rules(section));
    // Each wanted rule may keep one owned entry; a second copy is removed.
    let mut unmatched: HashSet<String> = wanted.iter().map(|rule| canonical(rule)).collect();
    for (entry_index, entry) in entries.items.iter().enumerate() {
        if !entry.owned_by(owner) {
            continue;
        }
        let value = entry.value.to_json(text);
        let kept = value
            .as_ref()
            .is_some_and(|value| unmatched.remove(&canonical(value)));
        match kept {
            true => {}
            false => {
                let shown = value.as_ref().map_or_else(
                    || text[entry.value.span.start..entry.value.span.end].to_string(),
                    compact_json,
                );
                return Ok(Some(Step {
                    edits: remove_item(text, entries, entry_index),
                    change: Some(Change::Removed(format!("{}: {shown}", section.name()))),
                }));
            }
        }
    }
    if section_item.owned_by(owner) && entries.items.is_empty() && wanted.is_empty() {
        return Ok(Some(Step::plain(remove_item(text, root, section_index))));
    }
    Ok(None)
}

fn add_wanted_members(
    text: &str,
    root: &Container,
    groups_index: Option<usize>,
    owner: &Owner,
    desired: &Entries,
) -> Result<Option<Step>, PolicyFileError> {
    // Logins present per group (a human's or ours; another owner's copy may go at any time),
    // built once per call: a burst wants hundreds of members, and scanning each group's array
    // for each of them would be quadratic per edit.
    let mut present_by_group: std::collections::HashMap<usize, HashSet<String>> =
        std::collections::HashMap::new();
    let marker = owner.marker();
    for (group, login) in &desired.members {
        let Some(groups_index) = groups_index else {
            let section = format!("{}: {{}}", json_string("groups"));
            return Ok(Some(Step::plain(vec![insert_first(
                text, root, &section, &marker,
            )])));
        };
        let groups = root.items[groups_index].value.as_object().ok_or_else(|| {
            PolicyFileError::Unsupported("the groups section is not an object".into())
        })?;
        let Some(group_index) = find_group(groups, group)? else {
            let property = format!("{}: []", json_string(group));
            return Ok(Some(Step::plain(vec![insert_first(
                text, groups, &property, &marker,
            )])));
        };
        let members = groups.items[group_index].value.as_array().ok_or_else(|| {
            PolicyFileError::Unsupported(format!("group {group} is not a list of members"))
        })?;
        let present = present_by_group.entry(group_index).or_insert_with(|| {
            members
                .items
                .iter()
                .filter(|member| member.present_for(owner))
                .filter_map(|member| member.value.as_str(text))
                .map(|member| member.to_lowercase())
                .collect()
        });
        if !present.contains(&login.to_lowercase()) {
            return Ok(Some(Step {
                edits: vec![insert_first(text, members, &json_string(login), &marker)],
                change: Some(Change::Added(format!("{group}: {login}"))),
            }));
        }
    }
    Ok(None)
}

fn add_wanted_rules(
    text: &str,
    root: &Container,
    section: RuleSection,
    owner: &Owner,
    desired: &Entries,
) -> Result<Option<Step>, PolicyFileError> {
    let wanted = dedup(desired.rules(section));
    if wanted.is_empty() {
        return Ok(None);
    }
    let marker = owner.marker();
    let Some(section_index) = find_section(root, section.name())? else {
        let property = format!("{}: []", json_string(section.name()));
        return Ok(Some(Step::plain(vec![insert_first(
            text, root, &property, &marker,
        )])));
    };
    let entries = root.items[section_index].value.as_array().ok_or_else(|| {
        PolicyFileError::Unsupported(format!("the {} section is not a list", section.name()))
    })?;
    // As for members: another owner's copy of a rule does not keep ours in effect.
    let present: HashSet<String> = entries
        .items
        .iter()
        .filter(|entry| entry.present_for(owner))
        .filter_map(|entry| entry.value.to_json(text))
        .map(|entry| canonical(&entry))
        .collect();
    for rule in wanted {
        if !present.contains(&canonical(rule)) {
            let rendered = compact_json(rule);
            return Ok(Some(Step {
                edits: vec![insert_first(text, entries, &rendered, &marker)],
                change: Some(Change::Added(format!("{}: {rendered}", section.name()))),
            }));
        }
    }
    Ok(None)
}

/// Wanted memberships that the file holds without a marker.
fn already_present(
    text: &str,
    root_value: &Value,
    desired: &Entries,
) -> Result<Vec<(String, String)>, PolicyFileError> {
    let root = root_object(root_value)?;
    let Some(groups) = find_section(root, "groups")?.and_then(|i| root.items[i].value.as_object())
    else {
        return Ok(Vec::new());
    };
    let mut present = Vec::new();
    for (group, login) in &desired.members {
        let Some(members) =
            find_group(groups, group)?.and_then(|i| groups.items[i].value.as_array())
        else {
            continue;
        };
        let static_member = members.items.iter().any(|member| {
            member.marker.is_none()
                && member
                    .value
                    .as_str(text)
                    .is_some_and(|member| same_login(&member, login))
        });
        if static_member {
            present.push((group.clone(), login.clone()));
        }
    }
    Ok(present)
}

/// Wanted values with repeats dropped (two grants wanting the same rule need one entry).
fn dedup(values: &[Json]) -> Vec<&Json> {
    let mut unique: Vec<&Json> = Vec::new();
    for value in values {
        if !unique.contains(&value) {
            unique.push(value);
        }
    }
    unique
}

fn json_string(text: &str) -> String {
    Json::String(text.to_string()).to_string()
}

/// One-line JSON with `", "` and `": "` separators, keys in the value's own order.
fn compact_json(value: &Json) -> String {
    match value {
        Json::Array(items) => {
            let items: Vec<String> = items.iter().map(compact_json).collect();
            format!("[{}]", items.join(", "))
        }
        Json::Object(map) => {
            let properties: Vec<String> = map
                .iter()
                .map(|(key, value)| format!("{}: {}", json_string(key), compact_json(value)))
                .collect();
            format!("{{{}}}", properties.join(", "))
        }
        scalar => scalar.to_string(),
    }
}

/// A rule's canonical text: object keys sorted at every level, so rules that are equal as JSON
/// (key order aside) compare and hash equal.
fn canonical(value: &Json) -> String {
    fn sorted(value: &Json) -> Json {
        match value {
            Json::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Json::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&map[k])))
                        .collect(),
                )
            }
            Json::Array(items) => Json::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}
