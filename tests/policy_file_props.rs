//! Property tests for the policy-file editor: on generated HuJSON files (random layouts,
//! comments, trailing commas, legacy keys) and random sequences of desired states, every output
//! parses, means exactly "the original plus what is wanted", is a fixed point, and going back to
//! nothing wanted restores the original bytes; with two owners editing the same file, neither
//! ever touches the other's items.

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::{json, Value as Json};
use tailkeeper::policy_file::{managed, reconcile, Entries, Owner, PolicyFileError};

const GROUPS: [&str; 4] = ["group:eng", "group:prod", "group:ops", "group:sre"];
/// Wanted groups include one the files never have, so groups get created and removed.
const WANTED_GROUPS: [&str; 3] = ["group:prod", "group:ops", "group:new"];
const LOGINS: [&str; 4] = [
    "alice@example.com",
    "Bob@Example.com",
    "carol@example.com",
    "zoë@example.com",
];
/// Wanted logins include case variants of file logins (the same person) and newcomers.
const WANTED_LOGINS: [&str; 4] = [
    "Alice@example.com",
    "bob@example.com",
    "dave@example.com",
    "zoë@example.com",
];
const COMMENTS: [&str; 5] = ["note", "café ☕ on call", "see // here", "*", "tail keeper"];
const STRINGS: [&str; 5] = [
    "plain",
    "quote \" and backslash \\",
    "tab\there",
    "日本語",
    "slash // not a comment /* nor this */",
];

fn rule_pool() -> Vec<Json> {
    vec![
        json!({"src": ["alice@example.com"], "dst": ["tag:prod"], "ip": ["tcp:5432"]}),
        json!({"src": ["group:eng"], "dst": ["tag:dev"], "ip": ["*"]}),
        json!({"action": "accept", "src": ["bob@example.com"], "dst": ["tag:db:5432"]}),
        json!({"action": "check", "src": ["group:sre"], "dst": ["tag:prod"], "users": ["root"]}),
        json!({"src": ["*"], "dst": ["*"], "ip": ["*"], "app": {"example.com/cap": [{"x": 1.5}]}}),
    ]
}

/// A JSON value with the object key order it is written in.
#[derive(Clone, Debug)]
enum Node {
    Scalar(Json),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl Node {
    fn from_json(value: &Json) -> Node {
        match value {
            Json::Array(items) => Node::Array(items.iter().map(Node::from_json).collect()),
            Json::Object(map) => Node::Object(
                map.iter()
                    .map(|(key, value)| (key.clone(), Node::from_json(value)))
                    .collect(),
            ),
            scalar => Node::Scalar(scalar.clone()),
        }
    }
}

/// Layout choices, drawn from a tape of random bytes while rendering.
struct Tape {
    bytes: Vec<u8>,
    at: usize,
}

impl Tape {
    fn pick(&mut self, choices: usize) -> usize {
        let byte = if self.bytes.is_empty() {
            0
        } else {
            self.bytes[self.at % self.bytes.len()]
        };
        self.at += 1;
        byte as usize % choices
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.pick(100) < percent
    }

    fn block_comment(&mut self) -> String {
        format!("/* {} */", COMMENTS[self.pick(COMMENTS.len())])
    }

    fn line_comment(&mut self) -> String {
        format!("// {}", COMMENTS[self.pick(COMMENTS.len())])
    }
}

struct Renderer {
    tape: Tape,
    indent_unit: &'static str,
}

impl Renderer {
    fn indent(&self, level: usize) -> String {
        self.indent_unit.repeat(level)
    }

    fn node(&mut self, node: &Node, level: usize, out: &mut String) {
        match node {
            Node::Scalar(value) => out.push_str(&value.to_string()),
            Node::Array(items) => {
                let items: Vec<(Option<&str>, &Node)> =
                    items.iter().map(|item| (None, item)).collect();
                self.container(('[', ']'), &items, level, out);
            }
            Node::Object(properties) => {
                let items: Vec<(Option<&str>, &Node)> = properties
                    .iter()
                    .map(|(key, value)| (Some(key.as_str()), value))
                    .collect();
                self.container(('{', '}'), &items, level, out);
            }
        }
    }

    fn item(&mut self, key: Option<&str>, value: &Node, level: usize, out: &mut String) {
        if let Some(key) = key {
            out.push_str(&Json::String(key.to_string()).to_string());
            out.push_str(match self.tape.pick(8) {
                0 => ":",
                1 => " : ",
                2 => " /* k */: ",
                _ => ": ",
            });
        }
        self.node(value, level, out);
    }

    fn container(
        &mut self,
        (open, close): (char, char),
        items: &[(Option<&str>, &Node)],
        level: usize,
        out: &mut String,
    ) {
        out.push(open);
        if items.is_empty() {
            match self.tape.pick(5) {
                0 => {}
                1 => out.push(' '),
                2 => out.push_str(&format!("\n{}", self.indent(level))),
                3 => out.push_str(&format!(" {} ", self.tape.block_comment())),
                _ => {
                    let comment = self.tape.line_comment();
                    out.push_str(&format!(
                        "\n{}{comment}\n{}",
                        self.indent(level + 1),
                        self.indent(level)
                    ));
                }
            }
            out.push(close);
            return;
        }
        let multi_line = self.tape.chance(60);
        if multi_line {
            match self.tape.pick(4) {
                0 => out.push_str(&format!(" {}", self.tape.line_comment())),
                1 => out.push_str(&format!(" {}", self.tape.block_comment())),
                _ => {}
            }
            for (index, (key, value)) in items.iter().enumerate() {
                out.push('\n');
                if self.tape.chance(20) {
                    let comment = self.tape.line_comment();
                    out.push_str(&format!("{}{comment}\n", self.indent(level + 1)));
                }
                if self.tape.chance(10) {
                    out.push('\n');
                }
                out.push_str(&self.indent(level + 1));
                if self.tape.chance(10) {
                    out.push_str(&format!("{} ", self.tape.block_comment()));
                }
                self.item(*key, value, level + 1, out);
                let last = index + 1 == items.len();
                if !last || self.tape.chance(70) {
                    out.push(',');
                }
                match self.tape.pick(6) {
                    0 => out.push_str(&format!(" {}", self.tape.line_comment())),
                    1 => out.push_str(&format!(" {}", self.tape.block_comment())),
                    _ => {}
                }
            }
            if self.tape.chance(15) {
                let comment = self.tape.line_comment();
                out.push_str(&format!("\n{}{comment}", self.indent(level + 1)));
            }
            out.push_str(&format!("\n{}", self.indent(level)));
        } else {
            if self.tape.chance(20) {
                out.push_str(&format!("{} ", self.tape.block_comment()));
            } else if self.tape.chance(20) {
                out.push(' ');
            }
            for (index, (key, value)) in items.iter().enumerate() {
                self.item(*key, value, level, out);
                if self.tape.chance(10) {
                    out.push_str(&format!(" {}", self.tape.block_comment()));
                }
                if index + 1 < items.len() {
                    out.push_str(if self.tape.chance(20) { "," } else { ", " });
                } else if self.tape.chance(25) {
                    out.push(',');
                }
            }
            if self.tape.chance(20) {
                out.push(' ');
            }
        }
        out.push(close);
    }
}

/// The generated file's content, before layout.
#[derive(Clone, Debug)]
struct Policy {
    /// (section key as spelled, value), in file order.
    sections: Vec<(String, Node)>,
}

fn filler_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        (0..STRINGS.len()).prop_map(|index| json!(STRINGS[index])),
        any::<i32>().prop_map(|number| json!(number)),
        Just(json!(true)),
        Just(Json::Null),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|map| Json::Object(map.into_iter().collect())),
        ]
    })
}

fn policy() -> impl Strategy<Value = Policy> {
    let groups = prop::option::of((
        prop::sample::select(vec!["groups", "Groups"]),
        prop::sample::subsequence(GROUPS.to_vec(), 0..=GROUPS.len()),
        prop::collection::vec(
            prop::sample::subsequence(LOGINS.to_vec(), 0..=3),
            GROUPS.len(),
        ),
    ));
    let rules = |names: Vec<&'static str>| {
        prop::option::of((
            prop::sample::select(names),
            prop::collection::vec(prop::sample::select(rule_pool()), 0..3),
        ))
    };
    let fillers = prop::collection::vec(filler_value(), 0..3);
    (
        groups,
        rules(vec!["grants", "Grants"]),
        rules(vec!["ssh", "SSH"]),
        rules(vec!["acls", "ACLs"]),
        fillers,
    )
        .prop_map(|(groups, grants, ssh, acls, fillers)| {
            let mut sections = Vec::new();
            if let Some((key, names, members)) = groups {
                let properties = names
                    .iter()
                    .zip(members)
                    .map(|(name, logins)| {
                        let logins = logins.iter().map(|login| Node::Scalar(json!(login)));
                        (name.to_string(), Node::Array(logins.collect()))
                    })
                    .collect();
                sections.push((key.to_string(), Node::Object(properties)));
            }
            for (key, entries) in [grants, ssh, acls].into_iter().flatten() {
                let entries = entries.iter().map(Node::from_json).collect();
                sections.push((key.to_string(), Node::Array(entries)));
            }
            for (index, filler) in fillers.iter().enumerate() {
                let key = ["tagOwners", "hosts", "postures"][index];
                sections.push((key.to_string(), Node::from_json(filler)));
            }
            Policy { sections }
        })
        // Any section order, legacy keys first or last.
        .prop_flat_map(|policy| {
            Just(policy.sections)
                .prop_shuffle()
                .prop_map(|sections| Policy { sections })
        })
}

/// A rendered file: layout bytes, indentation and line endings are all random.
fn policy_file() -> impl Strategy<Value = String> {
    (
        policy(),
        prop::collection::vec(any::<u8>(), 16..64),
        any::<bool>(),
        any::<bool>(),
        0..4usize,
    )
        .prop_map(|(policy, tape, tabs, crlf, frame)| {
            let mut renderer = Renderer {
                tape: Tape { bytes: tape, at: 0 },
                indent_unit: if tabs { "\t" } else { "  " },
            };
            let mut text = String::new();
            if frame & 1 == 1 {
                text.push_str("// Tailnet policy.\n/* Owned by the platform team. */\n");
            }
            renderer.node(&Node::Object(policy.sections), 0, &mut text);
            if frame & 2 == 2 {
                text.push_str(" // end\n");
            } else {
                text.push('\n');
            }
            if crlf {
                text = text.replace('\n', "\r\n");
            }
            text
        })
}

fn desired_state() -> impl Strategy<Value = Entries> {
    let pairs: Vec<(String, String)> = WANTED_GROUPS
        .iter()
        .flat_map(|group| {
            WANTED_LOGINS
                .iter()
                .map(move |login| (group.to_string(), login.to_string()))
        })
        .collect();
    let rules = || prop::collection::vec(prop::sample::select(rule_pool()), 0..3);
    (
        prop::sample::subsequence(pairs.clone(), 0..=4),
        rules(),
        rules(),
        rules(),
    )
        .prop_map(|(members, grants, ssh, acls)| Entries {
            members: members.into_iter().collect(),
            grants,
            ssh,
            acls,
        })
}

/// The owner the single-owner properties edit as.
fn owner() -> Owner {
    Owner::new("a1").expect("a valid id")
}

fn parse_hujson(text: &str) -> Json {
    jsonc_parser::parse_to_serde_value(text, &Default::default())
        .unwrap_or_else(|error| panic!("output does not parse: {error}\n{text}"))
        .expect("a document")
}

fn key_ignoring_case(object: &serde_json::Map<String, Json>, name: &str) -> Option<String> {
    object
        .keys()
        .find(|key| key.eq_ignore_ascii_case(name))
        .cloned()
}

fn same_login(left: &Json, right: &str) -> bool {
    left.as_str()
        .is_some_and(|left| left.to_lowercase() == right.to_lowercase())
}

/// The member list of `group` in a policy's meaning, created as the editor would (an exact
/// group name first, else one differing only in case).
fn members_of<'a>(root: &'a mut serde_json::Map<String, Json>, group: &str) -> &'a mut Vec<Json> {
    let key = key_ignoring_case(root, "groups").unwrap_or_else(|| "groups".into());
    let groups = root.entry(key).or_insert_with(|| json!({}));
    let groups = groups.as_object_mut().unwrap();
    let group_key = if groups.contains_key(group) {
        group.to_string()
    } else {
        key_ignoring_case(groups, group).unwrap_or_else(|| group.to_string())
    };
    let members = groups.entry(group_key).or_insert_with(|| json!([]));
    members.as_array_mut().unwrap()
}

/// The entries of the rule section `name` in a policy's meaning, created if missing.
fn entries_of<'a>(root: &'a mut serde_json::Map<String, Json>, name: &str) -> &'a mut Vec<Json> {
    let key = key_ignoring_case(root, name).unwrap_or_else(|| name.into());
    let entries = root.entry(key).or_insert_with(|| json!([]));
    entries.as_array_mut().unwrap()
}

fn rule_sections(entries: &Entries) -> [(&'static str, &Vec<Json>); 3] {
    [
        ("grants", &entries.grants),
        ("ssh", &entries.ssh),
        ("acls", &entries.acls),
    ]
}

/// The original's meaning plus everything wanted that it does not already hold.
fn expected_semantics(original: &Json, desired: &Entries) -> Json {
    let mut expected = original.clone();
    let root = expected.as_object_mut().unwrap();
    for (group, login) in &desired.members {
        let members = members_of(root, group);
        if !members.iter().any(|member| same_login(member, login)) {
            members.push(json!(login));
        }
    }
    for (name, wanted) in rule_sections(desired) {
        for rule in wanted {
            let entries = entries_of(root, name);
            if !entries.contains(rule) {
                entries.push(rule.clone());
            }
        }
    }
    expected
}

/// The original's meaning plus each owner's own copy of what it wants and the original does
/// not hold: two owners wanting the same thing hold one copy each.
fn expected_semantics_of_owners(original: &Json, wanted: &[Entries]) -> Json {
    let mut expected = original.clone();
    for desired in wanted {
        let owned = expected_owned(original, desired);
        let root = expected.as_object_mut().unwrap();
        for (group, login) in &desired.members {
            if owned
                .members
                .contains(&(group.clone(), login.to_lowercase()))
            {
                members_of(root, group).push(json!(login));
            }
        }
        for (name, rules) in rule_sections(&owned) {
            for rule in rules {
                entries_of(root, name).push(rule.clone());
            }
        }
    }
    expected
}

/// `actual` without groups and sections that the original lacks and that are empty now: a
/// container one owner created and another filled stays, emptied, until its creator's next
/// write (nobody else may remove it).
fn without_lingering_containers(mut actual: Json, original: &Json) -> Json {
    let original = original.as_object().unwrap();
    let root = actual.as_object_mut().unwrap();
    if let Some(key) = key_ignoring_case(root, "groups") {
        let original_groups = original.get(&key).and_then(Json::as_object);
        if let Some(groups) = root[&key].as_object_mut() {
            groups.retain(|group, members| {
                original_groups.is_some_and(|groups| groups.contains_key(group))
                    || members.as_array().is_none_or(|members| !members.is_empty())
            });
        }
    }
    root.retain(|key, value| {
        let empty = match value {
            Json::Array(items) => items.is_empty(),
            Json::Object(map) => map.is_empty(),
            _ => false,
        };
        original.contains_key(key) || !empty
    });
    actual
}

/// Order of members and entries is the editor's choice; everything else must match exactly.
fn normalized(mut value: Json) -> Json {
    let root = value.as_object_mut().unwrap();
    let sort = |entries: &mut Json| {
        if let Some(entries) = entries.as_array_mut() {
            entries.sort_by_key(|entry| entry.to_string());
        }
    };
    for (key, section) in root.iter_mut() {
        if key.eq_ignore_ascii_case("groups") {
            section.as_object_mut().unwrap().values_mut().for_each(sort);
        } else if ["grants", "ssh", "acls"]
            .iter()
            .any(|name| key.eq_ignore_ascii_case(name))
        {
            sort(section);
        }
    }
    value
}

/// Memberships the file did not already hold (case-insensitively): exactly what gets a marker.
fn expected_owned_members(original: &Json, desired: &Entries) -> BTreeSet<(String, String)> {
    let groups = original
        .as_object()
        .and_then(|root| key_ignoring_case(root, "groups").map(|key| &root[&key]));
    desired
        .members
        .iter()
        .filter(|(group, login)| {
            let members = groups.and_then(|groups| groups.get(group.as_str()));
            !members
                .and_then(Json::as_array)
                .is_some_and(|members| members.iter().any(|member| same_login(member, login)))
        })
        .map(|(group, login)| (group.clone(), login.to_lowercase()))
        .collect()
}

/// Wanted rules of each section that the file did not already hold: exactly what gets a
/// marker, one copy of each, in a fixed order.
fn expected_owned(original: &Json, desired: &Entries) -> Entries {
    let held = |name: &str| {
        original
            .as_object()
            .and_then(|root| key_ignoring_case(root, name).map(|key| &root[&key]))
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let owned_rules = |name: &str, wanted: &[Json]| {
        let held = held(name);
        let mut owned: Vec<Json> = Vec::new();
        for rule in wanted {
            if !held.contains(rule) && !owned.contains(rule) {
                owned.push(rule.clone());
            }
        }
        owned.sort_by_key(|rule| rule.to_string());
        owned
    };
    Entries {
        members: expected_owned_members(original, desired),
        grants: owned_rules("grants", &desired.grants),
        ssh: owned_rules("ssh", &desired.ssh),
        acls: owned_rules("acls", &desired.acls),
    }
}

/// What `managed` reports, in the form of [`expected_owned`]: logins lowercased, rules sorted.
fn comparable(mut owned: Entries) -> Entries {
    owned.members = owned
        .members
        .into_iter()
        .map(|(group, login)| (group, login.to_lowercase()))
        .collect();
    for rules in [&mut owned.grants, &mut owned.ssh, &mut owned.acls] {
        rules.sort_by_key(|rule| rule.to_string());
    }
    owned
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 384,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn edits_are_fenced_and_reversible(
        original in policy_file(),
        steps in prop::collection::vec(desired_state(), 1..6),
    ) {
        let original_semantics = parse_hujson(&original);
        let mut text = original.clone();
        for desired in &steps {
            let outcome = reconcile(&text, &owner(), desired).expect("a generated file reconciles");
            prop_assert_eq!(outcome.changed, outcome.text != text);
            text = outcome.text;

            let actual = parse_hujson(&text);
            prop_assert_eq!(
                normalized(actual),
                normalized(expected_semantics(&original_semantics, desired)),
                "\n{}", text
            );
            let owned: BTreeSet<(String, String)> = managed(&text, &owner())
                .unwrap()
                .members
                .into_iter()
                .map(|(group, login)| (group, login.to_lowercase()))
                .collect();
            prop_assert_eq!(owned, expected_owned_members(&original_semantics, desired));

            let again = reconcile(&text, &owner(), desired).unwrap();
            prop_assert!(!again.changed, "not a fixed point:\n{}", text);
        }
        let restored = reconcile(&text, &owner(), &Entries::default()).unwrap();
        prop_assert_eq!(restored.text, original);
    }

    /// A human edits around owned items between two writes (a comment or a line break after some
    /// comma): the edit survives, and removing everything owned still leaves the original meaning.
    #[test]
    fn human_edits_between_writes_survive(
        original in policy_file(),
        desired in desired_state(),
        position in any::<prop::sample::Index>(),
        insertion in prop::sample::select(vec![" /* human */", " // human\n", "\n"]),
    ) {
        let written = reconcile(&original, &owner(), &desired).unwrap().text;
        // Generated strings and comments hold no commas, so every comma is a separator.
        let commas: Vec<usize> = written.match_indices(',').map(|(at, _)| at + 1).collect();
        prop_assume!(!commas.is_empty());
        let at = commas[position.index(commas.len())];
        // Text between an item and its marker would detach the marker: the item would then
        // be a human's, and is rightly kept. That is not the case under test.
        prop_assume!(!written[at..].starts_with(" /* tailkeeper:"));
        let mut edited = written.clone();
        edited.insert_str(at, insertion);

        let cleared = reconcile(&edited, &owner(), &Entries::default()).unwrap();
        prop_assert_eq!(parse_hujson(&cleared.text), parse_hujson(&original), "\n{}", cleared.text);
        prop_assert!(!cleared.text.contains("tailkeeper"));
        // Owned items are written on one line each; a comment on a line without a marker was
        // outside everything Tailkeeper owns and must survive.
        let comment = insertion.trim();
        let line_start = written[..at].rfind('\n').map_or(0, |newline| newline + 1);
        let line_end = written[at..].find('\n').map_or(written.len(), |newline| at + newline);
        if !comment.is_empty() && !written[line_start..line_end].contains("tailkeeper") {
            prop_assert!(cleared.text.contains(comment), "\n{}", cleared.text);
        }
    }

    /// Damaged files are refused or edited into something that still parses; never a panic.
    #[test]
    fn damaged_files_never_panic_or_produce_invalid_output(
        original in policy_file(),
        cut in any::<prop::sample::Index>(),
        length in 1..4usize,
        desired in desired_state(),
    ) {
        let mut damaged = original.clone();
        let mut start = cut.index(damaged.len());
        while !damaged.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (start + length).min(damaged.len());
        while !damaged.is_char_boundary(end) {
            end += 1;
        }
        damaged.replace_range(start..end, "");
        match reconcile(&damaged, &owner(), &desired) {
            Ok(outcome) => {
                parse_hujson(&outcome.text);
            }
            Err(PolicyFileError::Parse { line, column, .. }) => {
                prop_assert!(column >= 1);
                prop_assert!(line >= 1 && line <= damaged.matches('\n').count() + 1);
            }
            Err(_) => {}
        }
    }

    /// Two installations edit the same file in turns, each under its own owner id: each holds
    /// exactly what it last wanted (less what a human already held), neither ever removes or
    /// changes the other's items or containers, and once both want nothing the original bytes
    /// come back.
    #[test]
    fn two_owners_never_touch_each_others_items(
        original in policy_file(),
        steps in prop::collection::vec((0..2usize, desired_state()), 1..8),
    ) {
        let owners = [owner(), Owner::new("ops-2.b_x").unwrap()];
        let original_semantics = parse_hujson(&original);
        let mut wanted = [Entries::default(), Entries::default()];
        let mut text = original.clone();
        for (me, desired) in &steps {
            let other = &owners[1 - me];
            let others_items = managed(&text, other).unwrap();
            let others_markers = text.matches(&other.marker()).count();
            let outcome = reconcile(&text, &owners[*me], desired)
                .expect("a generated file reconciles");
            prop_assert_eq!(outcome.changed, outcome.text != text);
            text = outcome.text;
            wanted[*me] = desired.clone();

            prop_assert_eq!(&managed(&text, other).unwrap(), &others_items, "\n{}", text);
            prop_assert_eq!(text.matches(&other.marker()).count(), others_markers, "\n{}", text);
            for (owner, wanted) in owners.iter().zip(&wanted) {
                prop_assert_eq!(
                    comparable(managed(&text, owner).unwrap()),
                    expected_owned(&original_semantics, wanted),
                    "{}\n{}", owner.id(), text
                );
            }
            prop_assert_eq!(
                normalized(without_lingering_containers(parse_hujson(&text), &original_semantics)),
                normalized(expected_semantics_of_owners(&original_semantics, &wanted)),
                "\n{}", text
            );
            let again = reconcile(&text, &owners[*me], desired).unwrap();
            prop_assert!(!again.changed, "not a fixed point:\n{}", text);
        }
        // Both clear, in turns, until neither changes anything: a container one created and
        // the other filled goes on its creator's turn after the other's items left it.
        let (mut turn, mut quiet_turns) = (0, 0);
        while quiet_turns < 2 {
            prop_assert!(turn < 8, "clearing does not settle:\n{}", text);
            let outcome = reconcile(&text, &owners[turn % 2], &Entries::default()).unwrap();
            quiet_turns = if outcome.changed { 0 } else { quiet_turns + 1 };
            text = outcome.text;
            turn += 1;
        }
        prop_assert_eq!(text, original);
    }
}
