//! Tests of [`deprovision`]: exact outputs on realistic files, then properties on generated ones.

use std::collections::BTreeSet;

use serde_json::{json, Value as Json};

use super::*;
use crate::policy_file::{managed, Owner};

/// A realistic file: comments around items, one-item-per-line and inline lists, trailing commas,
/// a legacy `Groups` key, and the person in every kind of place.
const POLICY: &str = r#"// Tailnet policy for example.com.
{
	// People, by team.
	"Groups": {
		"group:prod": [
			"carol@example.com", // on call
			"alice@example.com",
			"Dave@Example.com",
		],
		"group:eng": ["Alice@Example.com", "bob@example.com"],
		"group:oncall": ["alice@example.com"],
		/* break-glass */ "group:admins": [],
	},

	"tagOwners": {
		"tag:ci": ["alice@example.com", "group:eng"],
		"tag:prod": ["group:prod"],
	},

	"grants": [
		// Alice's database access, until the migration is done.
		{"src": ["alice@example.com"], "dst": ["tag:db"], "ip": ["tcp:5432"]},
		{
			"src": [
				"group:eng",
				"alice@example.com", // temporary
			],
			"dst": ["tag:ci"],
			"ip":  ["*"],
		},
		{"src": ["bob@example.com"], "dst": ["alice@example.com"], "ip": ["*"]},
	],

	"ssh": [
		{
			"action": "check",
			"src":    ["alice@example.com"],
			"dst":    ["tag:prod"],
			"users":  ["root", "alice@example.com"],
		},
	],

	"tests": [
		{"src": "alice@example.com", "accept": ["tag:db:5432"]},
		{"src": "bob@example.com", "accept": ["alice@example.com:22"]}, // alice's laptop
	],
	"hosts": {"db": "100.64.0.1"},
}
"#;

/// [`POLICY`] without alice's direct entries.
const WITHOUT_ALICE: &str = r#"// Tailnet policy for example.com.
{
	// People, by team.
	"Groups": {
		"group:prod": [
			"carol@example.com", // on call
			"Dave@Example.com",
		],
		"group:eng": [ "bob@example.com"],
		"group:oncall": [],
		/* break-glass */ "group:admins": [],
	},

	"tagOwners": {
		"tag:ci": [ "group:eng"],
		"tag:prod": ["group:prod"],
	},

	"grants": [
		// Alice's database access, until the migration is done.
		{
			"src": [
				"group:eng",
				 // temporary
			],
			"dst": ["tag:ci"],
			"ip":  ["*"],
		},
		{"src": ["bob@example.com"], "dst": ["alice@example.com"], "ip": ["*"]},
	],

	"ssh": [
	],

	"tests": [
		{"src": "bob@example.com", "accept": ["alice@example.com:22"]}, // alice's laptop
	],
	"hosts": {"db": "100.64.0.1"},
}
"#;

fn logins(logins: &[&str]) -> BTreeSet<String> {
    logins.iter().map(|login| login.to_string()).collect()
}

fn alice() -> BTreeSet<String> {
    logins(&["alice@example.com"])
}

/// Parses with an independent HuJSON parser, so the output is checked by someone else's reading.
fn semantics(text: &str) -> Json {
    jsonc_parser::parse_to_serde_value(text, &Default::default())
        .unwrap_or_else(|error| panic!("does not parse: {error}\n{text}"))
        .expect("a document")
}

/// Deprovisions, checks that the output parses and that doing it again removes nothing.
fn deprovisioned(text: &str, logins: &BTreeSet<String>) -> Deprovision {
    let outcome = deprovision(text, logins).expect("deprovisions");
    semantics(&outcome.text);
    assert_eq!(outcome.removed.is_empty(), outcome.text == text);
    let again = deprovision(&outcome.text, logins).expect("deprovisions again");
    assert!(again.removed.is_empty(), "not idempotent: {again:?}");
    assert_eq!(again.text, outcome.text);
    outcome
}

/// The entry removed from [`POLICY`] at `location`: `text`, starting where the unique `anchor`
/// does.
fn removed_at(location: &str, kind: RemovedKind, text: &str, anchor: &str) -> Removed {
    assert_eq!(POLICY.matches(anchor).count(), 1, "{anchor:?} is unique");
    let offset = POLICY.find(anchor).unwrap_or_default();
    assert!(POLICY[offset..].starts_with(text), "{text:?} at {anchor:?}");
    Removed {
        location: location.to_string(),
        kind,
        text: text.to_string(),
        offset,
    }
}

fn kept(location: &str, owner: Option<&str>, reason: KeptReason, text: &str) -> Kept {
    Kept {
        location: location.to_string(),
        owner: owner.map(str::to_string),
        reason,
        text: text.to_string(),
    }
}

#[test]
fn a_persons_direct_entries_go_and_everything_else_stays_byte_for_byte() {
    let outcome = deprovisioned(POLICY, &alice());
    assert_eq!(outcome.text, WITHOUT_ALICE);
    let whole_ssh_rule = "{\n\t\t\t\"action\": \"check\",\n\t\t\t\"src\":    [\"alice@example.com\"],\n\t\t\t\"dst\":    [\"tag:prod\"],\n\t\t\t\"users\":  [\"root\", \"alice@example.com\"],\n\t\t}";
    let login = "\"alice@example.com\"";
    assert_eq!(
        outcome.removed,
        vec![
            removed_at(
                r#"Groups["group:prod"]"#,
                RemovedKind::GroupMember,
                login,
                "\"alice@example.com\",\n\t\t\t\"Dave"
            ),
            removed_at(
                r#"Groups["group:eng"]"#,
                RemovedKind::GroupMember,
                "\"Alice@Example.com\"",
                "\"Alice@Example.com\""
            ),
            removed_at(
                r#"Groups["group:oncall"]"#,
                RemovedKind::GroupMember,
                login,
                "\"alice@example.com\"],\n\t\t/*"
            ),
            removed_at(
                r#"tagOwners["tag:ci"]"#,
                RemovedKind::TagOwner,
                login,
                "\"alice@example.com\", \"group:eng\"]"
            ),
            removed_at(
                "grants[0]",
                RemovedKind::WholeRule,
                r#"{"src": ["alice@example.com"], "dst": ["tag:db"], "ip": ["tcp:5432"]}"#,
                r#"{"src": ["alice@example.com"], "dst": ["tag:db"]"#
            ),
            removed_at(
                "grants[1].src",
                RemovedKind::RuleSource,
                login,
                "\"alice@example.com\", // temporary"
            ),
            removed_at(
                "ssh[0]",
                RemovedKind::WholeRule,
                whole_ssh_rule,
                whole_ssh_rule
            ),
            removed_at(
                "tests[0]",
                RemovedKind::Test,
                r#"{"src": "alice@example.com", "accept": ["tag:db:5432"]}"#,
                r#"{"src": "alice@example.com""#
            ),
        ]
    );
    // Where alice is only named (a destination), she is left alone and reported.
    assert_eq!(
        outcome.kept,
        vec![
            kept(
                "grants[2].dst",
                None,
                KeptReason::Mentioned,
                "\"alice@example.com\""
            ),
            kept(
                "tests[1].accept",
                None,
                KeptReason::Mentioned,
                "\"alice@example.com:22\""
            ),
        ]
    );
    for entry in &outcome.removed {
        assert_eq!(
            &POLICY[entry.offset..entry.offset + entry.text.len()],
            entry.text
        );
    }
}

#[test]
fn the_meaning_changes_by_exactly_the_removed_entries() {
    let mut expected = semantics(POLICY);
    expected["Groups"]["group:prod"] = json!(["carol@example.com", "Dave@Example.com"]);
    expected["Groups"]["group:eng"] = json!(["bob@example.com"]);
    expected["Groups"]["group:oncall"] = json!([]);
    expected["tagOwners"]["tag:ci"] = json!(["group:eng"]);
    let grants = expected["grants"].as_array_mut().expect("a list");
    grants.remove(0);
    grants[0]["src"] = json!(["group:eng"]);
    expected["ssh"] = json!([]);
    expected["tests"].as_array_mut().expect("a list").remove(0);
    assert_eq!(semantics(&deprovisioned(POLICY, &alice()).text), expected);
}

#[test]
fn crlf_files_stay_crlf() {
    let policy = POLICY.replace('\n', "\r\n");
    let outcome = deprovisioned(&policy, &alice());
    assert_eq!(outcome.text, WITHOUT_ALICE.replace('\n', "\r\n"));
    assert_eq!(outcome.removed.len(), 8);
}

#[test]
fn a_file_without_the_person_comes_back_unchanged() {
    for others in [
        logins(&["erin@example.com"]),
        logins(&[]),
        logins(&[""]),
        logins(&["alice"]),
        logins(&["example.com"]),
    ] {
        let outcome = deprovisioned(POLICY, &others);
        assert_eq!(outcome.text, POLICY, "{others:?}");
        assert!(outcome.removed.is_empty());
    }
    let outcome = deprovisioned(WITHOUT_ALICE, &alice());
    assert_eq!(outcome.text, WITHOUT_ALICE);
    assert!(outcome.removed.is_empty());
}

#[test]
fn every_login_of_the_person_goes_ignoring_ascii_case_only() {
    let text = r#"{"groups": {"group:a": [
        "alice@example.com",
        "ALICE@EXAMPLE.COM",
        "a.smith@corp.example",
        "alicia@example.com",
        "alice@example.com.evil",
        "alice@example.com:22",
        "\u212Aim@example.com",
        "kim@example.com",
        "alice"
    ]}}"#;
    // The Kelvin sign lowercases to `k` in Unicode, but a login is compared on ASCII only.
    let outcome = deprovisioned(
        text,
        &logins(&[
            "Alice@Example.com",
            "a.smith@corp.example",
            "KIM@example.com",
        ]),
    );
    assert_eq!(
        semantics(&outcome.text)["groups"]["group:a"],
        json!([
            "alicia@example.com",
            "alice@example.com.evil",
            "alice@example.com:22",
            "\u{212A}im@example.com",
            "alice"
        ])
    );
    assert_eq!(
        outcome
            .removed
            .iter()
            .map(|entry| entry.text.as_str())
            .collect::<Vec<_>>(),
        vec![
            "\"alice@example.com\"",
            "\"ALICE@EXAMPLE.COM\"",
            "\"a.smith@corp.example\"",
            "\"kim@example.com\""
        ]
    );
    // Written with an escape, it is still the login.
    let escaped = r#"{"groups": {"group:a": ["\u0061lice@example.com", "bob"]}}"#;
    assert_eq!(
        deprovisioned(escaped, &alice()).text,
        r#"{"groups": {"group:a": [ "bob"]}}"#
    );
}

#[test]
fn groups_stay_even_when_emptied_and_lists_lose_every_copy() {
    let cases = [
        (
            r#"{"groups": {"group:a": ["alice@example.com"]}}"#,
            r#"{"groups": {"group:a": []}}"#,
        ),
        (
            r#"{"groups": {"group:a": ["alice@example.com", "Alice@example.com", "bob", "alice@example.com"]}}"#,
            r#"{"groups": {"group:a": [  "bob"]}}"#,
        ),
        (
            "{\"groups\": {\"group:a\": [\n  \"alice@example.com\",\n  \"alice@example.com\",\n]}}",
            "{\"groups\": {\"group:a\": [\n]}}",
        ),
        (
            "{\"groups\": {\"group:a\": [\n  \"bob\",\n  \"alice@example.com\"\n]}}",
            "{\"groups\": {\"group:a\": [\n  \"bob\"\n]}}",
        ),
        (
            "{\"groups\": {\"group:a\": [\n  // why alice\n  \"alice@example.com\", /* until May */\n  \"bob\",\n]}}",
            "{\"groups\": {\"group:a\": [\n  // why alice\n   /* until May */\n  \"bob\",\n]}}",
        ),
    ];
    for (input, expected) in cases {
        let outcome = deprovisioned(input, &alice());
        assert_eq!(outcome.text, expected, "from {input}");
        assert!(outcome
            .removed
            .iter()
            .all(|entry| entry.kind == RemovedKind::GroupMember
                && entry.location == r#"groups["group:a"]"#));
    }
}

#[test]
fn a_rule_left_without_sources_goes_whole_and_one_with_others_keeps_them() {
    let text = r#"{
  "acls": [
    {"action": "accept", "src": ["alice@example.com", "ALICE@example.com"], "dst": ["*:*"]},
    {"action": "accept", "src": ["alice@example.com", "bob@example.com"], "dst": ["tag:ci:*"]},
    {"action": "accept", "src": [], "dst": ["tag:none:*"]}, // nobody yet
    {"action": "accept", "dst": ["tag:none:*"]},
  ],
}"#;
    let outcome = deprovisioned(text, &alice());
    assert_eq!(
        outcome.text,
        r#"{
  "acls": [
    {"action": "accept", "src": [ "bob@example.com"], "dst": ["tag:ci:*"]},
    {"action": "accept", "src": [], "dst": ["tag:none:*"]}, // nobody yet
    {"action": "accept", "dst": ["tag:none:*"]},
  ],
}"#
    );
    let summary: Vec<(&str, RemovedKind)> = outcome
        .removed
        .iter()
        .map(|entry| (entry.location.as_str(), entry.kind))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("acls[0]", RemovedKind::WholeRule),
            ("acls[1].src", RemovedKind::RuleSource),
        ]
    );
}

#[test]
fn legacy_section_keys_and_the_legacy_users_field_of_acls_are_read() {
    let text = r#"{
	"Groups": {"group:a": ["alice@example.com", "bob@example.com"]},
	"TagOwners": {"tag:a": ["alice@example.com"]},
	"ACLs": [
		{"Action": "accept", "Users": ["alice@example.com"], "Ports": ["*:*"]},
		{"action": "accept", "users": ["group:a"], "src": ["alice@example.com"], "dst": ["tag:a:*"]},
	],
	"Grants": [{"Src": ["ALICE@example.com", "bob@example.com"], "Dst": ["tag:a"], "IP": ["*"]}],
	"SSH": [{"Action": "accept", "Src": ["bob@example.com"], "Dst": ["tag:a"], "Users": ["alice@example.com"]}],
	"Tests": [{"Src": "alice@example.com", "Accept": ["tag:a:22"]}],
	"SSHTests": [{"src": "Alice@example.com", "dst": ["tag:a"], "accept": ["root"]}],
}"#;
    let outcome = deprovisioned(text, &alice());
    let summary: Vec<(&str, RemovedKind)> = outcome
        .removed
        .iter()
        .map(|entry| (entry.location.as_str(), entry.kind))
        .collect();
    assert_eq!(
        summary,
        vec![
            (r#"Groups["group:a"]"#, RemovedKind::GroupMember),
            (r#"TagOwners["tag:a"]"#, RemovedKind::TagOwner),
            ("ACLs[0]", RemovedKind::WholeRule),
            ("ACLs[1].src", RemovedKind::RuleSource),
            ("Grants[0].Src", RemovedKind::RuleSource),
            ("Tests[0]", RemovedKind::Test),
            ("SSHTests[0]", RemovedKind::Test),
        ]
    );
    // An ssh rule's `users` are accounts on the machine, not people: never a source.
    assert_eq!(
        outcome.kept,
        vec![kept(
            "SSH[0].Users",
            None,
            KeptReason::Mentioned,
            "\"alice@example.com\""
        )]
    );
    let value = semantics(&outcome.text);
    assert_eq!(value["ACLs"][0]["users"], json!(["group:a"]));
    assert_eq!(value["ACLs"][0]["src"], json!([]));
    assert_eq!(value["Tests"], json!([]));
}

#[test]
fn marked_entries_are_never_touched_and_are_reported_with_their_owner() {
    let text = r#"{
  "groups": {
    "group:prod": [
      "alice@example.com", /* tailkeeper:a1 */
      "alice@example.com",
      "bob@example.com", /* tailkeeper */
    ],
    "group:jit": ["alice@example.com" /* tailkeeper */], /* tailkeeper:a1 */
  },
  "grants": [
    {"src": ["alice@example.com"], "dst": ["tag:db"], "ip": ["*"]}, /* tailkeeper:b2 */
    {"src": ["alice@example.com" /* tailkeeper:a1 */, "alice@example.com"], "dst": ["tag:x"], "ip": ["*"]},
    {"src": ["bob@example.com"], "dst": ["alice@example.com"], "ip": ["*"]} /* tailkeeper:a1 */,
  ], /* tailkeeper:a1 */
  "tagOwners": {"tag:ci": ["alice@example.com" /* tailkeeper */]},
  "sshTests": [{"src": "alice@example.com", "dst": ["tag:x"], "accept": ["root"]} /* tailkeeper:a1 */],
}"#;
    let outcome = deprovisioned(text, &alice());
    assert_eq!(
        outcome.text,
        text.replace("      \"alice@example.com\",\n", "").replace(
            "/* tailkeeper:a1 */, \"alice@example.com\"]",
            "/* tailkeeper:a1 */]"
        )
    );
    assert_eq!(
        outcome
            .removed
            .iter()
            .map(|entry| (entry.location.as_str(), entry.kind))
            .collect::<Vec<_>>(),
        vec![
            (r#"groups["group:prod"]"#, RemovedKind::GroupMember),
            ("grants[1].src", RemovedKind::RuleSource),
        ]
    );
    let login = "\"alice@example.com\"";
    assert_eq!(
        outcome.kept,
        vec![
            kept(
                r#"groups["group:prod"]"#,
                Some("a1"),
                KeptReason::Marked,
                login
            ),
            kept(r#"groups["group:jit"]"#, None, KeptReason::Marked, login),
            kept(
                "grants[0]",
                Some("b2"),
                KeptReason::Marked,
                r#"{"src": ["alice@example.com"], "dst": ["tag:db"], "ip": ["*"]}"#
            ),
            kept("grants[1].src", Some("a1"), KeptReason::Marked, login),
            // A marked rule only naming her as a destination: mentioned, not hers.
            kept("grants[2].dst", None, KeptReason::Mentioned, login),
            kept(r#"tagOwners["tag:ci"]"#, None, KeptReason::Marked, login),
            kept(
                "sshTests[0]",
                Some("a1"),
                KeptReason::Marked,
                r#"{"src": "alice@example.com", "dst": ["tag:x"], "accept": ["root"]}"#
            ),
        ]
    );
    for owner in ["a1", "b2"] {
        let owner = Owner::new(owner).expect("a valid id");
        assert_eq!(
            managed(&outcome.text, &owner).expect("reads"),
            managed(text, &owner).expect("reads")
        );
    }
}

#[test]
fn entries_outside_the_direct_places_are_reported_not_removed() {
    let text = r#"{
  "hosts": {"alice-laptop": "100.64.0.7"},
  "autoApprovers": {
    "routes": {"10.0.0.0/24": ["alice@example.com"]},
    "exitNode": ["alice@example.com", "tag:exit"],
  },
  "nodeAttrs": [{"target": ["alice@example.com"], "attr": ["funnel"]}],
  "grants": [{"src": ["bob@example.com"], "dst": ["alice@example.com"], "ip": ["*"]}],
  "acls": [{"action": "accept", "src": ["bob@example.com"], "dst": ["ALICE@example.com:*"]}],
}"#;
    let outcome = deprovisioned(text, &alice());
    assert_eq!(outcome.text, text);
    assert!(outcome.removed.is_empty());
    let mentioned: Vec<&str> = outcome
        .kept
        .iter()
        .inspect(|entry| assert_eq!(entry.reason, KeptReason::Mentioned))
        .map(|entry| entry.location.as_str())
        .collect();
    assert_eq!(
        mentioned,
        vec![
            r#"autoApprovers.routes["10.0.0.0/24"]"#,
            "autoApprovers.exitNode",
            "nodeAttrs[0].target",
            "grants[0].dst",
            "acls[0].dst",
        ]
    );
}

#[test]
fn unparsable_files_return_the_parse_error_and_odd_shapes_are_refused() {
    let broken = "{\n\t\"groups\": {\n\t\t\"group:a\": [\"x\" \"y\"],\n\t},\n}";
    assert_eq!(
        deprovision(broken, &alice()),
        Err(PolicyFileError::Parse {
            line: 3,
            column: 19,
            message: "unexpected `\"y\"`, expected `,` or `]`".into()
        })
    );
    for text in [
        "[]",
        r#"{"groups": []}"#,
        r#"{"groups": {"group:a": "alice@example.com"}}"#,
        r#"{"groups": {}, "Groups": {}}"#,
        r#"{"tagOwners": {"tag:a": "alice@example.com"}}"#,
        r#"{"grants": {}}"#,
        r#"{"grants": ["alice@example.com"]}"#,
        r#"{"grants": [{"src": "alice@example.com"}]}"#,
        r#"{"grants": [{"src": [], "Src": ["alice@example.com"]}]}"#,
        r#"{"tests": [{"src": "alice@example.com", "SRC": "bob"}]}"#,
        r#"{"sshTests": "alice@example.com"}"#,
    ] {
        let result = deprovision(text, &alice());
        assert!(
            matches!(result, Err(PolicyFileError::Unsupported(_))),
            "{text}: {result:?}"
        );
    }
    let error = deprovision(
        r#"{"grants": [{"src": ["bob"]}, {"src": [], "Src": []}]}"#,
        &alice(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("grants[1]"), "{error}");
}

#[test]
fn removed_entries_serialize_for_a_record_a_person_can_restore_from() {
    let outcome = deprovisioned(
        r#"{"groups": {"group:a": ["alice@example.com"]}}"#,
        &alice(),
    );
    assert_eq!(
        serde_json::to_value(&outcome.removed).expect("serializes"),
        json!([{"location": "groups[\"group:a\"]", "kind": "GroupMember", "text": "\"alice@example.com\""}])
    );
    let kept = kept("grants[0]", Some("a1"), KeptReason::Marked, "{}");
    assert_eq!(
        serde_json::to_value(&kept).expect("serializes"),
        json!({"location": "grants[0]", "owner": "a1", "reason": "Marked", "text": "{}"})
    );
}

/// Property tests on generated files: random layouts, comments, trailing commas, legacy keys,
/// CRLF, and the person sprinkled everywhere, some entries marked.
mod properties {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// The person being deprovisioned.
    const PERSON: [&str; 2] = ["alice@example.com", "al@corp.example"];
    /// What lists hold: the person in several spellings, near misses and others.
    const NAMES: [&str; 9] = [
        "alice@example.com",
        "ALICE@Example.COM",
        "al@corp.example",
        "alicia@example.com",
        "alice@example.com.evil",
        "bob@example.com",
        "zoë@example.com",
        "group:eng",
        "autogroup:member",
    ];
    const MARKERS: [&str; 3] = [
        "/* tailkeeper:a1 */",
        "/* tailkeeper:ops-2.b_x */",
        "/* tailkeeper */",
    ];
    const COMMENTS: [&str; 4] = ["note", "café ☕ on call", "see // here", "tail keeper"];

    fn is_person(name: &str) -> bool {
        PERSON.iter().any(|login| login.eq_ignore_ascii_case(name))
    }

    /// A value with its marker, in the order it is written.
    #[derive(Clone, Debug)]
    struct Entry {
        node: Node,
        marker: Option<&'static str>,
    }

    #[derive(Clone, Debug)]
    enum Node {
        Scalar(Json),
        Array(Vec<Entry>),
        Object(Vec<(String, Entry)>),
    }

    impl Entry {
        fn plain(node: Node) -> Entry {
            Entry { node, marker: None }
        }

        fn string(text: &str) -> Entry {
            Entry::plain(Node::Scalar(json!(text)))
        }

        fn list(items: Vec<Entry>) -> Entry {
            Entry::plain(Node::Array(items))
        }

        fn object(fields: Vec<(&str, Entry)>) -> Entry {
            Entry::plain(Node::Object(
                fields
                    .into_iter()
                    .map(|(key, value)| (key.to_string(), value))
                    .collect(),
            ))
        }

        fn to_json(&self) -> Json {
            match &self.node {
                Node::Scalar(value) => value.clone(),
                Node::Array(items) => Json::Array(items.iter().map(Entry::to_json).collect()),
                Node::Object(fields) => Json::Object(
                    fields
                        .iter()
                        .map(|(key, value)| (key.clone(), value.to_json()))
                        .collect(),
                ),
            }
        }

        fn as_str(&self) -> Option<&str> {
            match &self.node {
                Node::Scalar(value) => value.as_str(),
                _ => None,
            }
        }

        fn is_persons_string(&self) -> bool {
            self.as_str().is_some_and(is_person)
        }
    }

    fn marker(percent: u8) -> impl Strategy<Value = Option<&'static str>> {
        (0..100u8, prop::sample::select(MARKERS.to_vec()))
            .prop_map(move |(roll, marker)| (roll < percent).then_some(marker))
    }

    fn names(max: usize, marked_percent: u8) -> impl Strategy<Value = Vec<Entry>> {
        prop::collection::vec(
            (prop::sample::select(NAMES.to_vec()), marker(marked_percent)),
            0..=max,
        )
        .prop_map(|names| {
            names
                .into_iter()
                .map(|(name, marker)| Entry {
                    marker,
                    ..Entry::string(name)
                })
                .collect()
        })
    }

    fn key(spellings: &[&'static str]) -> impl Strategy<Value = String> {
        prop::sample::select(spellings.to_vec()).prop_map(str::to_string)
    }

    /// `groups` or `tagOwners`: names of the form `<prefix><n>` to lists of names.
    fn lists(spellings: &[&'static str], prefix: &'static str) -> BoxedStrategy<(String, Entry)> {
        (
            key(spellings),
            prop::collection::vec((names(4, 25), marker(10)), 0..4),
            marker(10),
        )
            .prop_map(move |(key, lists, section_marker)| {
                let fields = lists
                    .into_iter()
                    .enumerate()
                    .map(|(index, (members, marker))| {
                        let list = Entry {
                            marker,
                            ..Entry::list(members)
                        };
                        (format!("{prefix}{index}"), list)
                    })
                    .collect();
                let section = Entry {
                    node: Node::Object(fields),
                    marker: section_marker,
                };
                (key, section)
            })
            .boxed()
    }

    fn rule(section: &'static str) -> impl Strategy<Value = Entry> {
        (
            names(3, 10),
            prop::collection::vec(prop::sample::select(NAMES.to_vec()), 0..3),
            any::<bool>(),
            marker(20),
        )
            .prop_map(move |(sources, destinations, legacy_users, marker)| {
                let destinations = |suffix: &str| {
                    Entry::list(
                        destinations
                            .iter()
                            .map(|name| Entry::string(&format!("{name}{suffix}")))
                            .collect(),
                    )
                };
                let sources = Entry::list(sources);
                let fields = match section {
                    "acls" => vec![
                        ("action", Entry::string("accept")),
                        (if legacy_users { "users" } else { "src" }, sources),
                        ("dst", destinations(":*")),
                    ],
                    "ssh" => vec![
                        ("action", Entry::string("check")),
                        ("src", sources),
                        ("dst", destinations("")),
                        (
                            "users",
                            Entry::list(vec![
                                Entry::string("root"),
                                Entry::string("alice@example.com"),
                            ]),
                        ),
                    ],
                    _ => vec![
                        ("src", sources),
                        ("dst", destinations("")),
                        ("ip", Entry::list(vec![Entry::string("*")])),
                    ],
                };
                Entry {
                    marker,
                    ..Entry::object(fields)
                }
            })
    }

    fn rules(spellings: &[&'static str], section: &'static str) -> BoxedStrategy<(String, Entry)> {
        (
            key(spellings),
            prop::collection::vec(rule(section), 0..4),
            marker(10),
        )
            .prop_map(|(key, rules, marker)| {
                (
                    key,
                    Entry {
                        marker,
                        ..Entry::list(rules)
                    },
                )
            })
            .boxed()
    }

    fn tests(spellings: &[&'static str], ssh: bool) -> BoxedStrategy<(String, Entry)> {
        (
            key(spellings),
            prop::collection::vec((prop::sample::select(NAMES.to_vec()), marker(20)), 0..4),
        )
            .prop_map(move |(key, tests)| {
                let tests = tests
                    .into_iter()
                    .map(|(source, marker)| {
                        let fields = if ssh {
                            vec![
                                ("src", Entry::string(source)),
                                ("dst", Entry::list(vec![Entry::string("tag:ci")])),
                                ("accept", Entry::list(vec![Entry::string("root")])),
                            ]
                        } else {
                            vec![
                                ("src", Entry::string(source)),
                                (
                                    "accept",
                                    Entry::list(vec![Entry::string("alice@example.com:22")]),
                                ),
                            ]
                        };
                        Entry {
                            marker,
                            ..Entry::object(fields)
                        }
                    })
                    .collect();
                (key, Entry::list(tests))
            })
            .boxed()
    }

    /// The root's sections, in a random order.
    fn policy() -> impl Strategy<Value = Vec<(String, Entry)>> {
        let fillers = names(2, 0).prop_map(|approvers| {
            vec![
                (
                    "hosts".to_string(),
                    Entry::object(vec![("db", Entry::string("100.64.0.1"))]),
                ),
                (
                    "autoApprovers".to_string(),
                    Entry::object(vec![("exitNode", Entry::list(approvers))]),
                ),
            ]
        });
        (
            prop::option::of(lists(&["groups", "Groups"], "group:g")),
            prop::option::of(lists(&["tagOwners", "TagOwners"], "tag:t")),
            prop::option::of(rules(&["grants", "Grants"], "grants")),
            prop::option::of(rules(&["acls", "ACLs"], "acls")),
            prop::option::of(rules(&["ssh", "SSH"], "ssh")),
            prop::option::of(tests(&["tests", "Tests"], false)),
            prop::option::of(tests(&["sshTests", "SSHTests"], true)),
            fillers,
        )
            .prop_map(
                |(groups, tag_owners, grants, acls, ssh, tests, ssh_tests, fillers)| {
                    [groups, tag_owners, grants, acls, ssh, tests, ssh_tests]
                        .into_iter()
                        .flatten()
                        .chain(fillers)
                        .collect::<Vec<_>>()
                },
            )
            .prop_shuffle()
    }

    /// Layout choices, drawn from a tape of random bytes while rendering.
    struct Tape {
        bytes: Vec<u8>,
        at: usize,
    }

    impl Tape {
        fn pick(&mut self, choices: usize) -> usize {
            let byte = self.bytes.get(self.at % self.bytes.len().max(1)).copied();
            self.at += 1;
            usize::from(byte.unwrap_or(0)) % choices
        }

        fn chance(&mut self, percent: usize) -> bool {
            self.pick(100) < percent
        }

        fn comment(&mut self) -> &'static str {
            COMMENTS[self.pick(COMMENTS.len())]
        }
    }

    struct Renderer {
        tape: Tape,
        indent_unit: &'static str,
        out: String,
    }

    impl Renderer {
        fn indent(&self, level: usize) -> String {
            self.indent_unit.repeat(level)
        }

        fn value(&mut self, node: &Node, level: usize) {
            match node {
                Node::Scalar(value) => self.out.push_str(&value.to_string()),
                Node::Array(items) => {
                    let items: Vec<(Option<&str>, &Entry)> =
                        items.iter().map(|item| (None, item)).collect();
                    self.container(('[', ']'), &items, level);
                }
                Node::Object(fields) => {
                    let items: Vec<(Option<&str>, &Entry)> = fields
                        .iter()
                        .map(|(key, value)| (Some(key.as_str()), value))
                        .collect();
                    self.container(('{', '}'), &items, level);
                }
            }
        }

        fn item(&mut self, key: Option<&str>, entry: &Entry, level: usize) {
            if let Some(key) = key {
                self.out
                    .push_str(&Json::String(key.to_string()).to_string());
                self.out
                    .push_str(if self.tape.chance(20) { ":" } else { ": " });
            }
            self.value(&entry.node, level);
        }

        /// The item's marker and comma, in either order; then maybe a comment (never between
        /// an item and its marker, which would detach it).
        fn tail(&mut self, entry: &Entry, comma: bool, separator: &str) {
            match (entry.marker, comma) {
                (Some(marker), true) if self.tape.chance(50) => {
                    self.out.push_str(&format!(", {marker}{separator}"));
                }
                (Some(marker), true) => self.out.push_str(&format!(" {marker},{separator}")),
                (Some(marker), false) => self.out.push_str(&format!(" {marker}{separator}")),
                (None, true) => self.out.push_str(&format!(",{separator}")),
                (None, false) => self.out.push_str(separator),
            }
        }

        fn container(
            &mut self,
            (open, close): (char, char),
            items: &[(Option<&str>, &Entry)],
            level: usize,
        ) {
            self.out.push(open);
            if items.is_empty() {
                if self.tape.chance(30) {
                    let comment = self.tape.comment();
                    self.out.push_str(&format!(" /* {comment} */ "));
                }
                self.out.push(close);
                return;
            }
            if self.tape.chance(60) {
                if self.tape.chance(25) {
                    let comment = self.tape.comment();
                    self.out.push_str(&format!(" // {comment}"));
                }
                for (index, (key, entry)) in items.iter().enumerate() {
                    self.out.push('\n');
                    if self.tape.chance(20) {
                        let comment = self.tape.comment();
                        self.out
                            .push_str(&format!("{}// {comment}\n", self.indent(level + 1)));
                    }
                    self.out.push_str(&self.indent(level + 1));
                    if self.tape.chance(10) {
                        let comment = self.tape.comment();
                        self.out.push_str(&format!("/* {comment} */ "));
                    }
                    self.item(*key, entry, level + 1);
                    let comma = index + 1 < items.len() || self.tape.chance(70);
                    self.tail(entry, comma, "");
                    match self.tape.pick(6) {
                        0 => {
                            let comment = self.tape.comment();
                            self.out.push_str(&format!(" // {comment}"));
                        }
                        1 => {
                            let comment = self.tape.comment();
                            self.out.push_str(&format!(" /* {comment} */"));
                        }
                        _ => {}
                    }
                }
                self.out.push_str(&format!("\n{}", self.indent(level)));
            } else {
                for (index, (key, entry)) in items.iter().enumerate() {
                    self.item(*key, entry, level);
                    let last = index + 1 == items.len();
                    let comma = !last || self.tape.chance(25);
                    let separator = if last || self.tape.chance(20) {
                        ""
                    } else {
                        " "
                    };
                    self.tail(entry, comma, separator);
                }
            }
            self.out.push(close);
        }
    }

    fn policy_file() -> impl Strategy<Value = (Vec<(String, Entry)>, String)> {
        (
            policy(),
            prop::collection::vec(any::<u8>(), 16..64),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(sections, tape, tabs, crlf)| {
                let mut renderer = Renderer {
                    tape: Tape { bytes: tape, at: 0 },
                    indent_unit: if tabs { "\t" } else { "  " },
                    out: "// Tailnet policy.\n".to_string(),
                };
                renderer.value(&Node::Object(sections.clone()), 0);
                renderer.out.push('\n');
                let mut text = renderer.out;
                if crlf {
                    text = text.replace('\n', "\r\n");
                }
                (sections, text)
            })
    }

    /// What deprovisioning must do, worked out on the generated model (which knows the
    /// markers) without the scanner: the expected meaning, and what is removed and kept.
    #[derive(Debug, Default, PartialEq)]
    struct Expected {
        removed: BTreeMap<String, usize>,
        kept_marked: usize,
    }

    fn without_person(sections: &[(String, Entry)]) -> (Json, Expected) {
        let mut expected = Expected::default();
        let mut count = |kind: RemovedKind| {
            *expected.removed.entry(format!("{kind:?}")).or_default() += 1;
        };
        let mut kept_marked = 0;
        let mut root = serde_json::Map::new();
        for (key, section) in sections {
            let mut value = section.to_json();
            let lowered = key.to_ascii_lowercase();
            match (lowered.as_str(), &section.node) {
                ("groups" | "tagowners", Node::Object(lists)) => {
                    let kind = if lowered == "groups" {
                        RemovedKind::GroupMember
                    } else {
                        RemovedKind::TagOwner
                    };
                    let mut filtered = serde_json::Map::new();
                    for (name, list) in lists {
                        let Node::Array(items) = &list.node else {
                            unreachable!("generated lists")
                        };
                        let mut left = Vec::new();
                        for item in items {
                            match (item.is_persons_string(), item.marker.is_some()) {
                                (true, false) => count(kind),
                                (true, true) => {
                                    kept_marked += 1;
                                    left.push(item.to_json());
                                }
                                (false, _) => left.push(item.to_json()),
                            }
                        }
                        filtered.insert(name.clone(), Json::Array(left));
                    }
                    value = Json::Object(filtered);
                }
                ("grants" | "acls" | "ssh", Node::Array(rules)) => {
                    let mut left = Vec::new();
                    for rule in rules {
                        let Node::Object(fields) = &rule.node else {
                            unreachable!("generated rules")
                        };
                        let is_source =
                            |name: &str| name == "src" || (lowered == "acls" && name == "users");
                        let sources = fields.iter().filter(|(name, _)| is_source(name)).flat_map(
                            |(_, list)| match &list.node {
                                Node::Array(items) => items.iter(),
                                _ => unreachable!("generated sources"),
                            },
                        );
                        if rule.marker.is_some() {
                            if sources.clone().any(Entry::is_persons_string) {
                                kept_marked += 1;
                            }
                            left.push(rule.to_json());
                            continue;
                        }
                        let gone = sources
                            .clone()
                            .filter(|item| item.is_persons_string() && item.marker.is_none())
                            .count();
                        kept_marked += sources
                            .clone()
                            .filter(|item| item.is_persons_string() && item.marker.is_some())
                            .count();
                        if gone > 0 && gone == sources.count() {
                            count(RemovedKind::WholeRule);
                            continue;
                        }
                        let mut filtered = serde_json::Map::new();
                        for (name, field) in fields {
                            let value = match &field.node {
                                Node::Array(items) if is_source(name) => Json::Array(
                                    items
                                        .iter()
                                        .filter(|item| {
                                            let goes =
                                                item.is_persons_string() && item.marker.is_none();
                                            if goes {
                                                count(RemovedKind::RuleSource);
                                            }
                                            !goes
                                        })
                                        .map(Entry::to_json)
                                        .collect(),
                                ),
                                _ => field.to_json(),
                            };
                            filtered.insert(name.clone(), value);
                        }
                        left.push(Json::Object(filtered));
                    }
                    value = Json::Array(left);
                }
                ("tests" | "sshtests", Node::Array(tests)) => {
                    let mut left = Vec::new();
                    for test in tests {
                        let Node::Object(fields) = &test.node else {
                            unreachable!("generated tests")
                        };
                        let about_person = fields
                            .iter()
                            .any(|(name, value)| name == "src" && value.is_persons_string());
                        match (about_person, test.marker.is_some()) {
                            (true, false) => count(RemovedKind::Test),
                            (true, true) => {
                                kept_marked += 1;
                                left.push(test.to_json());
                            }
                            (false, _) => left.push(test.to_json()),
                        }
                    }
                    value = Json::Array(left);
                }
                _ => {}
            }
            root.insert(key.clone(), value);
        }
        expected.kept_marked = kept_marked;
        (Json::Object(root), expected)
    }

    /// Whether `output` is `original` with each removed entry's exact bytes taken out and
    /// otherwise only whitespace and at most one comma per removed entry, all between the
    /// entry's neighbours in its list: nothing else changed.
    fn only_removed_entries_went(original: &str, output: &str, removed: &[Removed]) -> bool {
        let Ok(root) = scan::parse(original) else {
            return false;
        };
        let mut spans = BTreeMap::new();
        let mut surroundings = Vec::new();
        for entry in removed {
            let Some((list, index)) = array_item_at(&root, entry.offset) else {
                return false;
            };
            spans.insert(entry.offset, entry.offset + entry.text.len());
            let after_previous = index.checked_sub(1).map_or(list.open + 1, |previous| {
                list.items[previous].value.span.end
            });
            let before_next = list
                .items
                .get(index + 1)
                .map_or(list.close, |next| next.start);
            surroundings.push(after_previous..before_next);
        }
        let (original, output) = (original.as_bytes(), output.as_bytes());
        let (mut at, mut kept, mut commas) = (0, 0, 0);
        while at < original.len() {
            if let Some(end) = spans.get(&at) {
                at = *end;
            } else if output.get(kept) == Some(&original[at]) {
                // Matching whenever possible is safe: only interchangeable bytes are skipped.
                at += 1;
                kept += 1;
            } else if matches!(original[at], b' ' | b'\t' | b'\r' | b'\n' | b',')
                && surroundings.iter().any(|range| range.contains(&at))
            {
                commas += usize::from(original[at] == b',');
                at += 1;
            } else {
                return false;
            }
        }
        kept == output.len() && commas <= removed.len()
    }

    fn person() -> BTreeSet<String> {
        PERSON.iter().map(|login| login.to_string()).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn deprovisioning_removes_exactly_the_persons_unmarked_direct_entries(
            (sections, original) in policy_file(),
        ) {
            let outcome = deprovision(&original, &person()).expect("a generated file deprovisions");
            let model: Json = Json::Object(
                sections.iter().map(|(key, value)| (key.clone(), value.to_json())).collect(),
            );
            prop_assert_eq!(semantics(&original), model, "the generator renders its model");

            // (1) The result parses and means the original less exactly the expected entries.
            let (meaning, expected) = without_person(&sections);
            prop_assert_eq!(semantics(&outcome.text), meaning, "\n{}\n{}", original, outcome.text);
            let mut removed_by_kind: BTreeMap<String, usize> = BTreeMap::new();
            for entry in &outcome.removed {
                *removed_by_kind.entry(format!("{:?}", entry.kind)).or_default() += 1;
            }
            prop_assert_eq!(&removed_by_kind, &expected.removed);
            let kept_marked = outcome.kept.iter().filter(|entry| entry.reason == KeptReason::Marked).count();
            prop_assert_eq!(kept_marked, expected.kept_marked);

            // (2) Nothing else changed: each removed entry is its exact original bytes, and
            // the output is the original less those, whitespace and their commas.
            for entry in &outcome.removed {
                prop_assert_eq!(original.get(entry.offset..entry.offset + entry.text.len()), Some(entry.text.as_str()));
            }
            prop_assert!(
                only_removed_entries_went(&original, &outcome.text, &outcome.removed),
                "\n{}\n{}\n{:#?}", original, outcome.text, outcome.removed
            );

            // (3) Idempotent.
            let again = deprovision(&outcome.text, &person()).expect("deprovisions again");
            prop_assert!(again.removed.is_empty(), "{:?}\n{}", again.removed, outcome.text);
            prop_assert_eq!(&again.text, &outcome.text);
            // What was kept is still there and kept again (indices may have moved).
            let unlocated = |kept: &[Kept]| -> Vec<(Option<String>, KeptReason, String)> {
                kept.iter().map(|kept| (kept.owner.clone(), kept.reason, kept.text.clone())).collect()
            };
            prop_assert_eq!(unlocated(&again.kept), unlocated(&outcome.kept));

            // (4) Marked entries are all still there, each owner's exactly as before.
            for marker in MARKERS {
                prop_assert_eq!(outcome.text.matches(marker).count(), original.matches(marker).count());
            }
            for id in ["a1", "ops-2.b_x"] {
                let owner = Owner::new(id).expect("a valid id");
                prop_assert_eq!(managed(&outcome.text, &owner).expect("reads"), managed(&original, &owner).expect("reads"));
            }
        }

        /// Damaged files are refused or deprovisioned into something that still parses.
        #[test]
        fn damaged_files_never_panic_or_produce_invalid_output(
            (_sections, original) in policy_file(),
            cut in any::<prop::sample::Index>(),
            length in 1..4usize,
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
            match deprovision(&damaged, &person()) {
                Ok(outcome) => {
                    semantics(&outcome.text);
                    prop_assert!(only_removed_entries_went(&damaged, &outcome.text, &outcome.removed));
                }
                Err(PolicyFileError::Parse { line, column, .. }) => {
                    prop_assert!(column >= 1);
                    prop_assert!(line >= 1 && line <= damaged.matches('\n').count() + 1);
                }
                Err(PolicyFileError::Unsupported(_)) => {}
                Err(other) => prop_assert!(false, "{other:?}\n{damaged}"),
            }
        }
    }
}

#[test]
fn revoking_one_entitlement_removes_only_the_entries_within_it() {
    // One group membership: the other groups, rules, tag owners and tests naming alice stay.
    let out = deprovision_within(POLICY, &alice(), &["groups[\"group:prod\"]".to_string()])
        .expect("parses");
    assert_eq!(out.removed.len(), 1, "{:?}", out.removed);
    assert_eq!(out.removed[0].text, "\"alice@example.com\"");
    assert_eq!(
        out.text,
        POLICY.replacen("\t\t\t\"alice@example.com\",\n", "", 1),
        "exactly that line goes"
    );
    // One rule, named with the section's case as the inventory writes it: the whole rule goes
    // when alice was its only source; the second rule keeps its other source.
    let first = deprovision_within(POLICY, &alice(), &["grants[0]".to_string()]).unwrap();
    assert_eq!(first.removed.len(), 1);
    assert!(first.removed[0]
        .text
        .starts_with("{\"src\": [\"alice@example.com\"]"));
    assert!(first
        .text
        .contains("\"group:eng\",\n\t\t\t\t\"alice@example.com\", // temporary"));
    assert!(
        first
            .text
            .contains("{\"src\": \"alice@example.com\", \"accept\""),
        "tests stay"
    );
    let second = deprovision_within(POLICY, &alice(), &["GRANTS[1]".to_string()]).unwrap();
    assert_eq!(second.removed.len(), 1);
    assert_eq!(second.removed[0].text, "\"alice@example.com\"");
    assert!(second
        .text
        .contains("{\"src\": [\"alice@example.com\"], \"dst\": [\"tag:db\"]"));
    // A prefix is a whole location: grants[1] does not reach into grants[10] or grants[1x].
    assert!(!super::within("grants[10]", "grants[1"));
    assert!(super::within("grants[1].src[2]", "grants[1]"));
    assert!(!super::within("grants[10].src[0]", "grants[1]"));
    // Nothing within: nothing changes.
    let none =
        deprovision_within(POLICY, &alice(), &["groups[\"group:absent\"]".to_string()]).unwrap();
    assert!(none.removed.is_empty());
    assert_eq!(none.text, POLICY);
}
