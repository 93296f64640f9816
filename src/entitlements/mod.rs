//! Who holds what: the tailnet policy file resolved against its users (pure, no I/O).
//!
//! An [`Inventory`] lists the users, the policy file's groups with who added each member, and
//! every *entitlement*: a Tailscale role, membership of a group, or a `grants`, `acls` or `ssh`
//! entry. It is compact (rules keep their `src` selectors; nothing is expanded per user), so it
//! is what gets published; a [`Resolver`] over it answers "what does this user hold, and how"
//! and "who holds this", for the operator's summary and the CLI alike.
//!
//! A user holds a rule when one of its `src` entries covers them, as Tailscale evaluates it:
//! - their login, exactly: held **directly**;
//! - a `group:` listing them: held **via the group**;
//! - `autogroup:member` (users who are not shared in), `autogroup:shared` (those who are), or
//!   the autogroup of their role (`autogroup:owner`, `autogroup:admin`, `autogroup:it-admin`,
//!   `autogroup:network-admin`, `autogroup:billing-admin`, `autogroup:auditor`): held **via the
//!   autogroup**;
//! - `*` or `autogroup:danger-all`: held through a **wildcard**.
//!
//! Tags, hosts and addresses in `src` stand for devices, not users: they are shown with the
//! rule but give no user anything. When several entries cover a user, the most direct one is
//! reported (login, then group, then autogroup, then wildcard, in that order of `src`).
//!
//! A custom posture attribute (`custom:key` = value) on a user's device is an entitlement too
//! (policy-file postures decide what it unlocks): held by the device's owner **on the device**,
//! added by the grants whose ledgers record setting it there, else set in Tailscale.
//!
//! Who added an entitlement: a group member or rule without a Tailkeeper marker was added by a
//! person; one with this installation's marker by the grants its ledgers record (by name). A
//! user's role was set in Tailscale unless an active role grant holds it. A holding through a
//! group is attributed to whoever added the membership; one through an autogroup or wildcard
//! to whoever added the rule.

pub mod shards;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::policy_file::{Author, Document, Section};

/// The roles that have an autogroup of their own (`member` has `autogroup:member`, which means
/// "not shared", whatever the role).
const ROLE_AUTOGROUPS: [&str; 6] = [
    "owner",
    "admin",
    "it-admin",
    "network-admin",
    "billing-admin",
    "auditor",
];

/// Roles above `member`: their holders are the privileged users.
pub fn is_privileged(role: &str) -> bool {
    ROLE_AUTOGROUPS.contains(&role)
}

/// One Tailscale user as the inventory keeps them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub login: String,
    pub role: String,
    pub status: String,
    /// `member` or `shared`.
    #[serde(rename = "type")]
    pub user_type: String,
    /// The directory person's name, when the policy's directory knows the login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// The grants holding the user's role (empty when it was set in Tailscale).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role_granted_by: Vec<String>,
}

/// Who added an entitlement (or a group membership).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "by")]
pub enum AddedBy {
    /// A person: an unmarked entry of the policy file.
    Person,
    /// Set in Tailscale (a user's role), not by a grant.
    Tailscale,
    /// Tailkeeper. `owner` is the installation's id (absent for the legacy bare marker);
    /// `grants` are the grants of this installation that hold it, when known.
    #[serde(rename_all = "camelCase")]
    Tailkeeper {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        grants: Vec<String>,
    },
}

impl std::fmt::Display for AddedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddedBy::Person => f.write_str("person"),
            AddedBy::Tailscale => f.write_str("tailscale"),
            AddedBy::Tailkeeper { grants, .. } if !grants.is_empty() => {
                write!(f, "grant {}", grants.join(", grant "))
            }
            AddedBy::Tailkeeper { owner: Some(o), .. } => write!(f, "tailkeeper:{o}"),
            AddedBy::Tailkeeper { owner: None, .. } => f.write_str("tailkeeper"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupMember {
    pub login: String,
    pub added_by: AddedBy,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupEntry {
    pub name: String,
    pub members: Vec<GroupMember>,
}

/// A custom posture attribute on a device, as read from Tailscale.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicePosture {
    /// The device owner's login.
    pub login: String,
    pub device_id: String,
    pub device: String,
    /// For example `custom:jit-prod`.
    pub key: String,
    /// The value as text (`true`, `gold`, `3`).
    pub value: String,
    /// The grants that set it there (empty: set in Tailscale).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub granted_by: Vec<String>,
}

/// The kinds of entitlement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    Role,
    Group,
    Grant,
    Acl,
    Ssh,
    Posture,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Role => "role",
            Kind::Group => "group",
            Kind::Grant => "grant",
            Kind::Acl => "acl",
            Kind::Ssh => "ssh",
            Kind::Posture => "posture",
        }
    }
}

/// One thing a user can hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entitlement {
    /// Stable across edits elsewhere in the file and reordering: `role:<role>`, the group's
    /// name, or `grant:`/`acl:`/`ssh:` and 12 hex digits of the SHA-256 of the rule's
    /// canonical JSON (so identical rules are one entitlement).
    pub id: String,
    pub kind: Kind,
    /// For people: `group:prod → tag:db (tcp:5432)`.
    pub description: String,
    /// Where it is written (`grants[3]`); empty for roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<String>,
    /// The rule's `src` entries; empty for roles and groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub src: Vec<String>,
    /// The rule's `dst` entries; empty for roles and groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dst: Vec<String>,
    /// Who added the rule; for roles and groups, see the holdings.
    pub added_by: AddedBy,
    /// How many users hold it.
    pub holders: usize,
}

/// The whole inventory of one tailnet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    /// Sorted by login.
    pub users: Vec<Member>,
    pub groups: Vec<GroupEntry>,
    /// Sorted by id.
    pub entitlements: Vec<Entitlement>,
    /// Custom posture attributes on users' devices (when the integration reads them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub posture: Vec<DevicePosture>,
}

/// What this installation's grants hold, from their ledgers: who added what.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attribution {
    /// This installation's marker id.
    pub owner: Option<String>,
    /// (group, login) → grant names.
    pub members: BTreeMap<(String, String), Vec<String>>,
    /// Canonical JSON of a rule → grant names.
    pub rules: BTreeMap<String, Vec<String>>,
    /// (login, role) → grant names.
    pub roles: BTreeMap<(String, String), Vec<String>>,
    /// (device id, posture key) → grant names.
    pub posture: BTreeMap<(String, String), Vec<String>>,
}

impl Attribution {
    /// Records that `grant` holds `rule` (any JSON text; it is canonicalised).
    pub fn add_rule(&mut self, rule_json: &str, grant: &str) {
        if let Ok(value) = serde_json::from_str::<Json>(rule_json) {
            push_unique(self.rules.entry(canonical(&value)).or_default(), grant);
        }
    }

    pub fn add_member(&mut self, group: &str, login: &str, grant: &str) {
        push_unique(
            self.members
                .entry((group.to_string(), login.to_string()))
                .or_default(),
            grant,
        );
    }

    pub fn add_posture(&mut self, device_id: &str, key: &str, grant: &str) {
        push_unique(
            self.posture
                .entry((device_id.to_string(), key.to_string()))
                .or_default(),
            grant,
        );
    }

    pub fn add_role(&mut self, login: &str, role: &str, grant: &str) {
        push_unique(
            self.roles
                .entry((login.to_string(), role.to_string()))
                .or_default(),
            grant,
        );
    }

    fn added_by(&self, author: &Author, grants: Option<&Vec<String>>) -> AddedBy {
        match author {
            Author::Person => AddedBy::Person,
            Author::TailkeeperUnknown => AddedBy::Tailkeeper {
                owner: None,
                grants: Vec::new(),
            },
            Author::Tailkeeper(id) => AddedBy::Tailkeeper {
                owner: Some(id.clone()),
                grants: if self.owner.as_deref() == Some(id.as_str()) {
                    grants.cloned().unwrap_or_default()
                } else {
                    Vec::new()
                },
            },
        }
    }
}

fn push_unique(list: &mut Vec<String>, value: &str) {
    if !list.iter().any(|v| v == value) {
        list.push(value.to_string());
        list.sort();
    }
}

/// JSON with object keys sorted, as compact text: equal rules give equal text.
pub fn canonical(value: &Json) -> String {
    fn sorted(value: &Json) -> Json {
        match value {
            Json::Object(map) => {
                let mut entries: Vec<(&String, &Json)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Json::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            Json::Array(items) => Json::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

fn strings(value: Option<&Json>) -> Vec<String> {
    match value {
        Some(Json::Array(items)) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_string))
            .collect(),
        Some(Json::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

fn describe(section: Section, rule: &Json) -> String {
    let src = strings(rule.get("src")).join(", ");
    let dst = strings(rule.get("dst")).join(", ");
    match section {
        Section::Grants => {
            let ip = strings(rule.get("ip"));
            let app = rule
                .get("app")
                .and_then(Json::as_object)
                .map(|apps| apps.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            let what = match (ip.is_empty(), app.is_empty()) {
                (false, true) => ip.join(", "),
                (true, false) => format!("app {app}"),
                (false, false) => format!("{}; app {app}", ip.join(", ")),
                (true, true) => "nothing".to_string(),
            };
            format!("{src} → {dst} ({what})")
        }
        Section::Acls => {
            let proto = rule
                .get("proto")
                .and_then(Json::as_str)
                .map(|p| format!(" proto {p}"))
                .unwrap_or_default();
            format!("{src} → {dst}{proto}")
        }
        Section::Ssh => {
            let action = rule
                .get("action")
                .and_then(Json::as_str)
                .unwrap_or("accept");
            let users = strings(rule.get("users")).join(", ");
            format!("ssh {action}: {src} → {dst} as {users}")
        }
    }
}

/// The kind and id of a rule of `section` whose canonical JSON is `canonical_text`.
fn rule_id(section: Section, canonical_text: &str) -> (Kind, String) {
    let digest = Sha256::digest(canonical_text.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let kind = match section {
        Section::Grants => Kind::Grant,
        Section::Acls => Kind::Acl,
        Section::Ssh => Kind::Ssh,
    };
    let id = format!("{}:{hex}", kind.as_str());
    (kind, id)
}

/// Where the entitlement `id` is written in `document` now (`grants[3]`, `groups["group:x"]`):
/// rules are found by their content, wherever edits since moved them. Empty for roles,
/// posture attributes and what the file no longer holds.
pub fn locations_of(document: &Document, id: &str) -> Vec<String> {
    if id.starts_with("group:") {
        return document
            .groups
            .iter()
            .filter(|g| g.name == id)
            .take(1)
            .map(|g| format!("groups[\"{}\"]", g.name))
            .collect();
    }
    document
        .rules
        .iter()
        .filter(|rule| rule_id(rule.section, &canonical(&rule.json)).1 == id)
        .map(|rule| format!("{}[{}]", rule.section.name(), rule.index))
        .collect()
}

/// Builds the inventory of a tailnet from its users, its policy file and what this
/// installation's grants hold.
pub fn build(
    users: Vec<Member>,
    document: &Document,
    attribution: &Attribution,
    posture: Vec<DevicePosture>,
) -> Inventory {
    let mut users = users;
    users.sort_by(|a, b| a.login.cmp(&b.login));
    users.dedup_by(|a, b| a.login == b.login);
    for user in &mut users {
        if let Some(grants) = attribution
            .roles
            .get(&(user.login.clone(), user.role.clone()))
        {
            user.role_granted_by = grants.clone();
        }
    }

    let groups: Vec<GroupEntry> = document
        .groups
        .iter()
        .map(|group| GroupEntry {
            name: group.name.clone(),
            members: group
                .members
                .iter()
                .map(|(login, author)| GroupMember {
                    login: login.clone(),
                    added_by: attribution.added_by(
                        author,
                        attribution
                            .members
                            .get(&(group.name.clone(), login.clone())),
                    ),
                })
                .collect(),
        })
        .collect();

    let mut rules: BTreeMap<String, Entitlement> = BTreeMap::new();
    for rule in &document.rules {
        let canonical_text = canonical(&rule.json);
        let (kind, id) = rule_id(rule.section, &canonical_text);
        let location = format!("{}[{}]", rule.section.name(), rule.index);
        let added_by = attribution.added_by(&rule.author, attribution.rules.get(&canonical_text));
        match rules.get_mut(&id) {
            Some(existing) => {
                existing.locations.push(location);
                // The same rule written twice: a person's copy keeps the access whatever
                // happens to the other, so it is the one that counts.
                if added_by < existing.added_by {
                    existing.added_by = added_by;
                }
            }
            None => {
                rules.insert(
                    id.clone(),
                    Entitlement {
                        id,
                        kind,
                        description: describe(rule.section, &rule.json),
                        locations: vec![location],
                        src: strings(rule.json.get("src")),
                        dst: strings(rule.json.get("dst")),
                        added_by,
                        holders: 0,
                    },
                );
            }
        }
    }

    let mut entitlements: Vec<Entitlement> = Vec::new();
    let roles: BTreeSet<&str> = users.iter().map(|u| u.role.as_str()).collect();
    for role in roles {
        entitlements.push(Entitlement {
            id: format!("role:{role}"),
            kind: Kind::Role,
            description: format!("Tailscale role {role}"),
            locations: Vec::new(),
            src: Vec::new(),
            dst: Vec::new(),
            added_by: AddedBy::Tailscale,
            holders: 0,
        });
    }
    let mut seen_groups = BTreeSet::new();
    for group in &groups {
        if seen_groups.insert(group.name.clone()) {
            entitlements.push(Entitlement {
                id: group.name.clone(),
                kind: Kind::Group,
                description: format!("member of {}", group.name),
                locations: vec![format!("groups[\"{}\"]", group.name)],
                src: Vec::new(),
                dst: Vec::new(),
                added_by: AddedBy::Person,
                holders: 0,
            });
        }
    }
    entitlements.extend(rules.into_values());
    let mut posture = posture;
    for attribute in &mut posture {
        attribute.granted_by = attribution
            .posture
            .get(&(attribute.device_id.clone(), attribute.key.clone()))
            .cloned()
            .unwrap_or_default();
    }
    posture.sort_by(|a, b| (&a.login, &a.device, &a.key).cmp(&(&b.login, &b.device, &b.key)));
    let attributes: BTreeSet<(String, String)> = posture
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect();
    for (key, value) in attributes {
        entitlements.push(Entitlement {
            id: posture_id(&key, &value),
            kind: Kind::Posture,
            description: format!("device posture {key} = {value}"),
            locations: Vec::new(),
            src: Vec::new(),
            dst: Vec::new(),
            added_by: AddedBy::Tailscale,
            holders: 0,
        });
    }
    entitlements.sort_by(|a, b| a.id.cmp(&b.id));

    let mut inventory = Inventory {
        users,
        groups,
        entitlements,
        posture,
    };
    let counts = Resolver::new(&inventory).holder_counts();
    for (entitlement, count) in inventory.entitlements.iter_mut().zip(counts) {
        entitlement.holders = count;
    }
    inventory
}

/// The id of the posture entitlement `key` = `value`.
fn posture_id(key: &str, value: &str) -> String {
    format!("posture:{key}={value}")
}

/// How a user holds an entitlement.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "how", content = "through")]
pub enum Via {
    /// Their login is written in it (or it is their role, or a group listing them).
    Direct,
    Group(String),
    Autogroup(String),
    Wildcard(String),
    /// A posture attribute on their device (by name).
    Device(String),
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Via::Direct => f.write_str("direct"),
            Via::Group(g) => write!(f, "via {g}"),
            Via::Autogroup(g) => write!(f, "via {g}"),
            Via::Wildcard(w) => write!(f, "wildcard {w}"),
            Via::Device(d) => write!(f, "on device {d}"),
        }
    }
}

/// One user's hold on one entitlement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Holding<'a> {
    pub user: &'a str,
    pub entitlement: &'a str,
    pub kind: Kind,
    pub description: &'a str,
    pub via: Via,
    pub added_by: AddedBy,
}

/// Answers questions over an [`Inventory`].
pub struct Resolver<'a> {
    inventory: &'a Inventory,
    user_index: HashMap<&'a str, usize>,
    /// group → (user index, who added the membership).
    members: HashMap<&'a str, Vec<(usize, &'a AddedBy)>>,
    /// posture entitlement id → (user index, the attribute on their first device with it).
    posture: HashMap<String, Vec<(usize, &'a DevicePosture)>>,
}

impl<'a> Resolver<'a> {
    pub fn new(inventory: &'a Inventory) -> Self {
        let user_index: HashMap<&str, usize> = inventory
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.login.as_str(), i))
            .collect();
        let mut members: HashMap<&str, Vec<(usize, &AddedBy)>> = HashMap::new();
        for group in &inventory.groups {
            let list = members.entry(group.name.as_str()).or_default();
            for member in &group.members {
                if let Some(&i) = user_index.get(member.login.as_str()) {
                    if !list.iter().any(|(j, _)| *j == i) {
                        list.push((i, &member.added_by));
                    }
                }
            }
        }
        let mut posture: HashMap<String, Vec<(usize, &DevicePosture)>> = HashMap::new();
        for attribute in &inventory.posture {
            if let Some(&i) = user_index.get(attribute.login.as_str()) {
                let list = posture
                    .entry(posture_id(&attribute.key, &attribute.value))
                    .or_default();
                if !list.iter().any(|(j, _)| *j == i) {
                    list.push((i, attribute));
                }
            }
        }
        Resolver {
            inventory,
            user_index,
            members,
            posture,
        }
    }

    /// How `user` is covered by the `src` entry `entry`, if at all.
    fn covers(&self, entry: &str, user: usize) -> Option<(Via, Option<&'a AddedBy>)> {
        let member = &self.inventory.users[user];
        if entry == member.login {
            return Some((Via::Direct, None));
        }
        if entry.starts_with("group:") {
            return self
                .members
                .get(entry)
                .and_then(|list| list.iter().find(|(i, _)| *i == user))
                .map(|(_, added_by)| (Via::Group(entry.to_string()), Some(*added_by)));
        }
        if let Some(name) = entry.strip_prefix("autogroup:") {
            let covered = match name {
                "member" => member.user_type != "shared",
                "shared" => member.user_type == "shared",
                "danger-all" => return Some((Via::Wildcard(entry.to_string()), None)),
                role => ROLE_AUTOGROUPS.contains(&role) && member.role == role,
            };
            return covered.then(|| (Via::Autogroup(entry.to_string()), None));
        }
        (entry == "*").then(|| (Via::Wildcard(entry.to_string()), None))
    }

    /// The most direct way `user` holds a rule with these `src` entries.
    fn rule_via(&self, src: &[String], user: usize) -> Option<(Via, Option<&'a AddedBy>)> {
        src.iter()
            .filter_map(|entry| self.covers(entry, user))
            .min_by(|a, b| a.0.cmp(&b.0))
    }

    fn holding(&self, entitlement: &'a Entitlement, user: usize) -> Option<Holding<'a>> {
        let member = &self.inventory.users[user];
        let (via, added_by) = match entitlement.kind {
            Kind::Role => {
                let role = entitlement.id.strip_prefix("role:")?;
                if member.role != role {
                    return None;
                }
                let added_by = if member.role_granted_by.is_empty() {
                    AddedBy::Tailscale
                } else {
                    AddedBy::Tailkeeper {
                        owner: None,
                        grants: member.role_granted_by.clone(),
                    }
                };
                (Via::Direct, added_by)
            }
            Kind::Group => {
                let (_, added_by) = self
                    .members
                    .get(entitlement.id.as_str())?
                    .iter()
                    .find(|(i, _)| *i == user)?;
                (Via::Direct, (*added_by).clone())
            }
            Kind::Posture => {
                let (_, attribute) = self
                    .posture
                    .get(entitlement.id.as_str())?
                    .iter()
                    .find(|(i, _)| *i == user)?;
                let added_by = if attribute.granted_by.is_empty() {
                    AddedBy::Tailscale
                } else {
                    AddedBy::Tailkeeper {
                        owner: None,
                        grants: attribute.granted_by.clone(),
                    }
                };
                (Via::Device(attribute.device.clone()), added_by)
            }
            Kind::Grant | Kind::Acl | Kind::Ssh => {
                let (via, membership) = self.rule_via(&entitlement.src, user)?;
                let added_by = match (&via, membership) {
                    (Via::Group(_), Some(membership)) => membership.clone(),
                    _ => entitlement.added_by.clone(),
                };
                (via, added_by)
            }
        };
        Some(Holding {
            user: &member.login,
            entitlement: &entitlement.id,
            kind: entitlement.kind,
            description: &entitlement.description,
            via,
            added_by,
        })
    }

    /// Everything `login` holds, in entitlement order; empty for an unknown login.
    pub fn of_user(&self, login: &str) -> Vec<Holding<'a>> {
        let Some(&user) = self.user_index.get(login) else {
            return Vec::new();
        };
        self.inventory
            .entitlements
            .iter()
            .filter_map(|e| self.holding(e, user))
            .collect()
    }

    /// Everyone holding the entitlement `id`, in login order; empty for an unknown id.
    pub fn holders(&self, id: &str) -> Vec<Holding<'a>> {
        let Some(entitlement) = self.inventory.entitlements.iter().find(|e| e.id == id) else {
            return Vec::new();
        };
        (0..self.inventory.users.len())
            .filter_map(|user| self.holding(entitlement, user))
            .collect()
    }

    /// Every holding, entitlement by entitlement.
    pub fn all(&self) -> impl Iterator<Item = Holding<'a>> + '_ {
        self.inventory.entitlements.iter().flat_map(move |e| {
            (0..self.inventory.users.len()).filter_map(move |user| self.holding(e, user))
        })
    }

    /// The number of holders of each entitlement, in the inventory's order. Each distinct
    /// `src` entry is resolved to a set of users once, so this stays fast for large tailnets.
    fn holder_counts(&self) -> Vec<usize> {
        let n = self.inventory.users.len();
        let words = n.div_ceil(64);
        let mut cache: HashMap<&str, Vec<u64>> = HashMap::new();
        let mut set_of = |entry: &'a str| -> Vec<u64> {
            cache
                .entry(entry)
                .or_insert_with(|| {
                    let mut bits = vec![0u64; words];
                    // A group covers exactly its members: no need to ask of every user.
                    let users: Vec<usize> = if entry.starts_with("group:") {
                        self.members
                            .get(entry)
                            .map(|list| list.iter().map(|(user, _)| *user).collect())
                            .unwrap_or_default()
                    } else {
                        (0..n)
                            .filter(|&user| self.covers(entry, user).is_some())
                            .collect()
                    };
                    for user in users {
                        bits[user / 64] |= 1 << (user % 64);
                    }
                    bits
                })
                .clone()
        };
        self.inventory
            .entitlements
            .iter()
            .map(|e| match e.kind {
                Kind::Role => {
                    let role = e.id.strip_prefix("role:").unwrap_or_default();
                    self.inventory
                        .users
                        .iter()
                        .filter(|u| u.role == role)
                        .count()
                }
                Kind::Group => self.members.get(e.id.as_str()).map_or(0, Vec::len),
                Kind::Posture => self.posture.get(e.id.as_str()).map_or(0, Vec::len),
                Kind::Grant | Kind::Acl | Kind::Ssh => {
                    let mut union = vec![0u64; words];
                    for entry in &e.src {
                        for (word, bits) in union.iter_mut().zip(set_of(entry)) {
                            *word |= bits;
                        }
                    }
                    union.iter().map(|w| w.count_ones() as usize).sum()
                }
            })
            .collect()
    }
}

/// A bounded view of an inventory, for status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub users: usize,
    pub entitlements: usize,
    /// The sum of holders over all entitlements.
    pub holdings: usize,
    /// Users above `member` (login, role), by login, at most `limit`.
    pub privileged: Vec<(String, String)>,
    pub privileged_count: usize,
    /// The most widely held rules and groups (not roles), most holders first.
    pub most_held: Vec<(String, String, usize)>,
}

/// Summarises `inventory`, listing at most `limit` privileged users and most-held entitlements.
pub fn summarize(inventory: &Inventory, limit: usize) -> Summary {
    let privileged: Vec<(String, String)> = inventory
        .users
        .iter()
        .filter(|u| is_privileged(&u.role))
        .map(|u| (u.login.clone(), u.role.clone()))
        .collect();
    let mut most_held: Vec<&Entitlement> = inventory
        .entitlements
        .iter()
        .filter(|e| e.kind != Kind::Role && e.holders > 0)
        .collect();
    most_held.sort_by(|a, b| b.holders.cmp(&a.holders).then_with(|| a.id.cmp(&b.id)));
    Summary {
        users: inventory.users.len(),
        entitlements: inventory.entitlements.len(),
        holdings: inventory.entitlements.iter().map(|e| e.holders).sum(),
        privileged_count: privileged.len(),
        privileged: privileged.into_iter().take(limit).collect(),
        most_held: most_held
            .into_iter()
            .take(limit)
            .map(|e| (e.id.clone(), e.description.clone(), e.holders))
            .collect(),
    }
}

/// How [`render`] writes holdings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// RFC 4180 CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// One output row: a holding with the person's name.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row<'a> {
    user: &'a str,
    person: &'a str,
    entitlement: &'a str,
    kind: &'static str,
    description: &'a str,
    how: String,
    added_by: String,
}

/// Writes `holdings` of `inventory` to `out` in `format`.
pub fn render<'a>(
    inventory: &'a Inventory,
    holdings: impl Iterator<Item = Holding<'a>>,
    format: Format,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let people: HashMap<&str, &str> = inventory
        .users
        .iter()
        .filter_map(|u| Some((u.login.as_str(), u.person.as_deref()?)))
        .collect();
    let rows = holdings.map(|h| Row {
        user: h.user,
        person: people.get(h.user).copied().unwrap_or(""),
        entitlement: h.entitlement,
        kind: h.kind.as_str(),
        description: h.description,
        how: h.via.to_string(),
        added_by: h.added_by.to_string(),
    });
    match format {
        Format::Json => {
            out.write_all(b"[")?;
            for (i, row) in rows.enumerate() {
                out.write_all(if i == 0 { b"\n  " } else { b",\n  " })?;
                serde_json::to_writer(&mut *out, &row)?;
            }
            out.write_all(b"\n]\n")
        }
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(out);
            writer.write_record([
                "user",
                "person",
                "entitlement",
                "kind",
                "description",
                "how",
                "addedBy",
            ])?;
            for row in rows {
                writer.write_record([
                    row.user,
                    row.person,
                    row.entitlement,
                    row.kind,
                    row.description,
                    &row.how,
                    &row.added_by,
                ])?;
            }
            writer.flush()
        }
        Format::Table => {
            let header = [
                "USER",
                "PERSON",
                "ENTITLEMENT",
                "KIND",
                "HOW",
                "ADDED BY",
                "DESCRIPTION",
            ];
            let table: Vec<[String; 7]> = rows
                .map(|r| {
                    [
                        r.user.to_string(),
                        r.person.to_string(),
                        r.entitlement.to_string(),
                        r.kind.to_string(),
                        r.how,
                        r.added_by,
                        r.description.to_string(),
                    ]
                })
                .collect();
            let mut widths = header.map(|h| h.chars().count());
            for row in &table {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            let line = |cells: [&str; 7], out: &mut dyn std::io::Write| {
                let mut text = String::new();
                for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                    if i + 1 == cells.len() {
                        text.push_str(cell);
                    } else {
                        text.push_str(cell);
                        text.push_str(&" ".repeat(w - cell.chars().count() + 3));
                    }
                }
                writeln!(out, "{}", text.trim_end())
            };
            line(header, out)?;
            for row in &table {
                line(
                    [
                        &row[0], &row[1], &row[2], &row[3], &row[4], &row[5], &row[6],
                    ],
                    out,
                )?;
            }
            Ok(())
        }
    }
}
