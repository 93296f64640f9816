use std::collections::BTreeSet;

use serde_json::{json, Value as Json};

use super::*;

/// A realistic, heavily commented file: legacy capitalized keys, tabs, trailing commas, line and
/// block comments, escapes and non-ASCII text, and no `grants` section yet.
const POLICY: &str = r#"// Tailnet policy for example.com.
// Edited by the platform team; Tailkeeper adds just-in-time access.
{
	// People, by team.
	"Groups": {
		"group:prod": [
			"carol@example.com", // on call
			"Dave@Example.com",
		],
		"group:eng": ["alice@example.com", "bob@example.com"],
		/* break-glass */ "group:admins": [],
	},

	"tagOwners": {
		"tag:prod": ["group:eng"],
	},

	/* Legacy rules, being migrated. */
	"ACLs": [
		{"action": "accept", "src": ["group:eng"], "dst": ["tag:dev:*"]},
		// Production is on-call only.
		{
			"action": "accept",
			"src":    ["group:prod"],
			"dst":    ["tag:prod:443"], // HTTPS only
		},
	],

	"ssh": [ // who may ssh where
		{
			"action": "check",
			"src": ["group:eng"],
			"dst": ["tag:dev"],
			"users": ["autogroup:nonroot"],
		},
	],
	"hosts": {"caf\u00e9": "100.64.0.1", "naïve \"quoted\" \\ host": "100.64.0.2"},
	// The end.
}
"#;

fn grant_rule() -> Json {
    json!({"dst": ["tag:prod"], "ip": ["tcp:5432"], "src": ["alice@example.com"]})
}

fn ssh_rule() -> Json {
    json!({"action": "accept", "dst": ["tag:prod"], "src": ["alice@example.com"], "users": ["root"]})
}

fn members(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs
        .iter()
        .map(|(group, login)| (group.to_string(), login.to_string()))
        .collect()
}

fn jit_access() -> Entries {
    Entries {
        members: members(&[("group:prod", "alice@example.com")]),
        grants: vec![grant_rule()],
        ssh: vec![ssh_rule()],
        acls: Vec::new(),
    }
}

/// Parses with an independent HuJSON parser, so our output is checked by someone else's reading.
fn semantics(text: &str) -> Json {
    jsonc_parser::parse_to_serde_value(text, &Default::default())
        .expect("output parses")
        .expect("output has a value")
}

/// `original` with each `insertion` placed right after the unique `anchor`.
fn with_insertions(original: &str, insertions: &[(&str, &str)]) -> String {
    let mut placed: Vec<(usize, &str)> = insertions
        .iter()
        .map(|(anchor, insertion)| {
            assert_eq!(
                original.matches(anchor).count(),
                1,
                "anchor {anchor:?} is unique"
            );
            (original.find(anchor).unwrap() + anchor.len(), *insertion)
        })
        .collect();
    placed.sort_by_key(|(offset, _)| std::cmp::Reverse(*offset));
    let mut text = original.to_string();
    for (offset, insertion) in placed {
        text.insert_str(offset, insertion);
    }
    text
}

/// The owner most tests edit as.
fn a1() -> Owner {
    Owner::new("a1").expect("a valid id")
}

/// A second installation editing the same file.
fn b2() -> Owner {
    Owner::new("b2").expect("a valid id")
}

fn reconciled(text: &str, desired: &Entries) -> Outcome {
    reconciled_by(text, &a1(), desired)
}

fn reconciled_by(text: &str, owner: &Owner, desired: &Entries) -> Outcome {
    let outcome = reconcile(text, owner, desired).expect("reconciles");
    semantics(&outcome.text);
    let again = reconcile(&outcome.text, owner, desired).expect("reconciles again");
    assert!(
        !again.changed,
        "steady state writes nothing:\n{}",
        outcome.text
    );
    assert_eq!(again.text, outcome.text);
    outcome
}

#[test]
fn adding_access_changes_only_the_inserted_spans() {
    let outcome = reconciled(POLICY, &jit_access());
    let grant = r#"{"dst": ["tag:prod"], "ip": ["tcp:5432"], "src": ["alice@example.com"]}"#;
    let ssh = r#"{"action": "accept", "dst": ["tag:prod"], "src": ["alice@example.com"], "users": ["root"]}"#;
    let expected = with_insertions(
        POLICY,
        &[
            (
                "example.com.\n// Edited by the platform team; Tailkeeper adds just-in-time access.\n{",
                &format!("\n\t\"grants\": [{grant} /* tailkeeper:a1 */], /* tailkeeper:a1 */"),
            ),
            (
                "\"group:prod\": [",
                "\n\t\t\t\"alice@example.com\", /* tailkeeper:a1 */",
            ),
            (
                "\"ssh\": [ // who may ssh where",
                &format!("\n\t\t{ssh}, /* tailkeeper:a1 */"),
            ),
        ],
    );
    assert_eq!(outcome.text, expected);
    assert!(outcome.changed);
    assert_eq!(
        outcome.added,
        vec![
            "group:prod: alice@example.com".to_string(),
            format!("grants: {grant}"),
            format!("ssh: {ssh}"),
        ]
    );
    assert!(outcome.removed.is_empty());
    assert!(outcome.already_present.is_empty());

    let mut expected_semantics = semantics(POLICY);
    expected_semantics["Groups"]["group:prod"] =
        json!(["alice@example.com", "carol@example.com", "Dave@Example.com"]);
    expected_semantics["grants"] = json!([grant_rule()]);
    expected_semantics["ssh"] = json!([ssh_rule(), semantics(POLICY)["ssh"][0]]);
    assert_eq!(semantics(&outcome.text), expected_semantics);

    let restored = reconciled(&outcome.text, &Entries::default());
    assert_eq!(restored.text, POLICY);
    assert_eq!(restored.removed.len(), 3);
}

#[test]
fn crlf_files_stay_crlf_and_restore_exactly() {
    let policy = POLICY.replace('\n', "\r\n");
    let outcome = reconciled(&policy, &jit_access());
    assert!(outcome
        .text
        .contains("\r\n\t\t\t\"alice@example.com\", /* tailkeeper:a1 */\r\n"));
    assert!(
        !outcome.text.replace("\r\n", "").contains('\n'),
        "no bare LF added"
    );
    assert_eq!(reconciled(&outcome.text, &Entries::default()).text, policy);
}

#[test]
fn removal_in_any_order_restores_the_original() {
    let logins = ["alice@example.com", "erin@example.com", "frank@example.com"];
    let all = Entries {
        members: logins
            .iter()
            .flat_map(|login| {
                ["group:prod", "group:eng", "group:admins", "group:new"]
                    .map(|group| (group.to_string(), login.to_string()))
            })
            .collect(),
        grants: vec![
            grant_rule(),
            json!({"src": ["*"], "dst": ["*"], "ip": ["*"]}),
        ],
        ssh: vec![ssh_rule()],
        acls: vec![
            json!({"action": "accept", "src": ["erin@example.com"], "dst": ["tag:db:5432"]}),
        ],
    };
    let full = reconciled(POLICY, &all).text;
    // Drop the wanted things one by one, from either end, and check against a fresh build.
    let mut remaining = all.clone();
    let mut text = full.clone();
    let member_list: Vec<_> = all.members.iter().cloned().collect();
    for (step, member) in member_list.iter().enumerate() {
        remaining.members.remove(member);
        if step == 3 {
            remaining.grants.remove(0);
        }
        if step == 5 {
            remaining.acls.clear();
        }
        text = reconciled(&text, &remaining).text;
        assert_eq!(
            text,
            reconciled(POLICY, &remaining).text,
            "after step {step}"
        );
    }
    remaining = Entries::default();
    assert_eq!(reconciled(&text, &remaining).text, POLICY);
}

#[test]
fn static_members_survive_when_the_grant_lapses() {
    // carol is in group:prod by hand; a grant for her changes nothing and lapses harmlessly.
    let desired = Entries {
        members: members(&[("group:prod", "CAROL@example.com")]),
        ..Default::default()
    };
    let granted = reconciled(POLICY, &desired);
    assert!(!granted.changed);
    assert_eq!(granted.text, POLICY);
    assert_eq!(
        granted.already_present,
        vec![("group:prod".to_string(), "CAROL@example.com".to_string())]
    );
    let lapsed = reconciled(&granted.text, &Entries::default());
    assert!(!lapsed.changed);
    assert!(lapsed.text.contains("\"carol@example.com\", // on call"));
}

#[test]
fn a_static_member_added_by_a_human_during_a_grant_is_kept() {
    let granted = reconciled(POLICY, &jit_access()).text;
    // Meanwhile a human makes alice a permanent member of group:eng too and comments on ours.
    let edited = granted
        .replace(
            "\"alice@example.com\", /* tailkeeper:a1 */",
            "\"alice@example.com\", /* tailkeeper:a1 */ // approved in TICKET-1",
        )
        .replace("\"group:eng\": [", "\"group:eng\": [\"zoe@example.com\", ");
    let lapsed = reconciled(&edited, &Entries::default());
    let expected = POLICY
        .replace("\"group:eng\": [", "\"group:eng\": [\"zoe@example.com\", ")
        .replace(
            "\"group:prod\": [",
            "\"group:prod\": [\n\t\t\t // approved in TICKET-1",
        );
    assert_eq!(lapsed.text, expected);
    assert_eq!(lapsed.removed.len(), 3);
}

#[test]
fn overlapping_grants_make_one_member_until_the_last_ends() {
    let mut desired = Entries {
        members: members(&[("group:prod", "alice@example.com")]),
        grants: vec![grant_rule(), grant_rule()],
        ..Default::default()
    };
    // Two grants for the same membership and rule: the set holds one, the rule list two.
    let both = reconciled(POLICY, &desired);
    assert_eq!(
        both.text
            .matches("\"alice@example.com\", /* tailkeeper:a1 */")
            .count(),
        1
    );
    assert_eq!(both.text.matches("\"tcp:5432\"").count(), 1);
    // One grant ends: the rule is still wanted once, nothing changes.
    desired.grants.pop();
    let one = reconciled(&both.text, &desired);
    assert!(!one.changed);
    desired = Entries::default();
    assert_eq!(reconciled(&one.text, &desired).text, POLICY);
}

#[test]
fn human_edits_next_to_owned_items_survive() {
    let granted = reconciled(POLICY, &jit_access()).text;
    let human_rule = r#"{"src": ["group:eng"], "dst": ["tag:ci"], "ip": ["*"]}"#;
    // A human adds a rule after ours in `grants`, and a comment on the line of our ssh rule.
    let edited = granted
        .replace(
            "/* tailkeeper:a1 */], /* tailkeeper:a1 */",
            &format!("/* tailkeeper:a1 */, {human_rule}], /* tailkeeper:a1 */"),
        )
        .replace(
            "\"users\": [\"root\"]}, /* tailkeeper:a1 */",
            "\"users\": [\"root\"]}, /* tailkeeper:a1 */ // temporary",
        );
    let lapsed = reconciled(&edited, &Entries::default());
    let mut expected = semantics(POLICY);
    // The section Tailkeeper created stays: it holds a human's rule now.
    expected["grants"] = json!([serde_json::from_str::<Json>(human_rule).unwrap()]);
    assert_eq!(semantics(&lapsed.text), expected);
    assert!(lapsed.text.contains(human_rule));
    assert!(lapsed
        .text
        .contains("\"ssh\": [ // who may ssh where\n\t\t // temporary\n"));
    assert!(!lapsed.text.contains("tailkeeper */ "), "{}", lapsed.text);
    assert_eq!(managed(&lapsed.text, &a1()).unwrap(), Entries::default());
}

#[test]
fn fallback_removal_keeps_the_file_valid() {
    let cases = [
        (
            r#"{"groups": {"group:a": ["x", "y" /* tailkeeper:a1 */]}}"#,
            r#"{"groups": {"group:a": ["x"]}}"#,
        ),
        (
            r#"{"groups": {"group:a": ["y", /* tailkeeper:a1 */ "x"]}}"#,
            r#"{"groups": {"group:a": [ "x"]}}"#,
        ),
        (
            "{\"groups\": {\"group:a\": [\n  \"x\",\n  \"y\" /* tailkeeper:a1 */ ,\n  \"z\"\n]}}",
            "{\"groups\": {\"group:a\": [\n  \"x\",\n  \"z\"\n]}}",
        ),
        (
            "{\"groups\": {\"group:a\": [\n  \"x\", // note\n  \"y\" /*tailkeeper:a1*/\n]}}",
            "{\"groups\": {\"group:a\": [\n  \"x\" // note\n]}}",
        ),
        (
            r#"{"groups": {"group:a": ["y" /* tailkeeper:a1 */ /* why */, "x"]}}"#,
            r#"{"groups": {"group:a": [ /* why */ "x"]}}"#,
        ),
    ];
    for (input, expected) in cases {
        let outcome = reconciled(input, &Entries::default());
        assert_eq!(outcome.text, expected, "from {input}");
        assert_eq!(outcome.removed, vec!["group:a: y".to_string()]);
    }
}

#[test]
fn restart_reads_ownership_from_the_file_alone() {
    let granted = reconciled(POLICY, &jit_access()).text;
    let owned = managed(&granted, &a1()).unwrap();
    assert_eq!(
        owned.members,
        members(&[("group:prod", "alice@example.com")])
    );
    assert_eq!(owned.grants, vec![grant_rule()]);
    assert_eq!(owned.ssh, vec![ssh_rule()]);
    assert!(owned.acls.is_empty());
    // A fresh process with nothing wanted removes exactly what is marked.
    let cleared = reconcile(&granted, &a1(), &Entries::default()).unwrap();
    assert_eq!(cleared.text, POLICY);
    assert_eq!(managed(POLICY, &a1()).unwrap(), Entries::default());
}

#[test]
fn creates_missing_groups_and_sections_and_removes_them_again() {
    let desired = Entries {
        members: members(&[
            ("group:oncall", "alice@example.com"),
            ("group:oncall", "bob@example.com"),
        ]),
        acls: vec![json!({"action": "accept", "dst": ["tag:db:5432"], "src": ["group:oncall"]})],
        ..Default::default()
    };
    for original in [
        "{}",
        "{\n  \"tagOwners\": {},\n}\n",
        "{\"hosts\": {}} // tail",
        "{ /* empty */ }",
    ] {
        let outcome = reconciled(original, &desired);
        let value = semantics(&outcome.text);
        assert_eq!(
            value["groups"]["group:oncall"],
            json!(["bob@example.com", "alice@example.com"])
        );
        assert_eq!(value["acls"], json!(desired.acls));
        assert_eq!(
            reconciled(&outcome.text, &Entries::default()).text,
            original
        );
    }
    assert_eq!(
        reconciled("{}", &desired).text,
        r#"{"acls": [{"action": "accept", "dst": ["tag:db:5432"], "src": ["group:oncall"]} /* tailkeeper:a1 */] /* tailkeeper:a1 */, "groups": {"group:oncall": ["bob@example.com" /* tailkeeper:a1 */, "alice@example.com" /* tailkeeper:a1 */] /* tailkeeper:a1 */} /* tailkeeper:a1 */}"#
    );
}

#[test]
fn inline_and_empty_containers() {
    let desired = Entries {
        members: members(&[
            ("group:eng", "carol@example.com"),
            ("group:admins", "dave@example.com"),
        ]),
        ..Default::default()
    };
    let outcome = reconciled(POLICY, &desired);
    assert!(outcome.text.contains(
        r#""group:eng": ["carol@example.com" /* tailkeeper:a1 */, "alice@example.com", "bob@example.com"],"#
    ));
    assert!(outcome.text.contains(
        r#"/* break-glass */ "group:admins": ["dave@example.com" /* tailkeeper:a1 */],"#
    ));
    assert_eq!(reconciled(&outcome.text, &Entries::default()).text, POLICY);
}

#[test]
fn rules_already_present_by_hand_are_not_duplicated_nor_removed() {
    let existing = json!({"action": "accept", "dst": ["tag:dev:*"], "src": ["group:eng"]});
    let desired = Entries {
        acls: vec![existing],
        ..Default::default()
    };
    let outcome = reconciled(POLICY, &desired);
    assert!(!outcome.changed);
    assert_eq!(reconciled(POLICY, &Entries::default()).text, POLICY);
}

#[test]
fn unparsable_files_are_refused_with_a_position() {
    let broken = "{\n\t\"groups\": {\n\t\t\"group:a\": [\"x\" \"y\"],\n\t},\n}";
    let error = reconcile(broken, &a1(), &jit_access()).unwrap_err();
    assert_eq!(
        error,
        PolicyFileError::Parse {
            line: 3,
            column: 19,
            message: "unexpected `\"y\"`, expected `,` or `]`".into()
        }
    );
    assert!(error.to_string().contains("line 3, column 19"));
    for (broken, line, column) in [
        ("", 1, 1),
        ("{\"a\": 1,, }", 1, 9),
        ("{\"a\": 'x'}", 1, 7),
        ("{\"é\": \"unterminated}", 1, 7),
        ("{} /* open", 1, 4),
        ("{\"a\": 01}", 1, 7),
        ("{\"a\": \"\\q\"}", 1, 8),
        ("{\"a\": [1] \"b\": 2}", 1, 11),
        ("{\"a\": tru}", 1, 7),
        ("{} {}", 1, 4),
    ] {
        match reconcile(broken, &a1(), &Entries::default()) {
            Err(PolicyFileError::Parse {
                line: got_line,
                column: got_column,
                ..
            }) => assert_eq!((got_line, got_column), (line, column), "{broken:?}"),
            other => panic!("{broken:?}: {other:?}"),
        }
        assert!(managed(broken, &a1()).is_err());
        assert!(uses_legacy_acls(broken).is_err());
    }
}

#[test]
fn scim_and_invalid_group_names_are_refused() {
    let scim = Entries {
        members: members(&[("group:eng@example.com", "alice@example.com")]),
        ..Default::default()
    };
    let error = reconcile(POLICY, &a1(), &scim).unwrap_err();
    assert_eq!(
        error,
        PolicyFileError::ScimGroup {
            group: "group:eng@example.com".into()
        }
    );
    assert!(error.to_string().contains("group:eng@example.com"));
    let invalid = Entries {
        members: members(&[("eng", "alice@example.com")]),
        ..Default::default()
    };
    assert!(matches!(
        reconcile(POLICY, &a1(), &invalid),
        Err(PolicyFileError::InvalidGroupName { .. })
    ));
}

#[test]
fn structural_problems_are_reported_not_guessed() {
    let desired = jit_access();
    for text in [
        "[]",
        r#"{"groups": [], "grants": []}"#,
        r#"{"groups": {"group:prod": "alice"}}"#,
        r#"{"groups": {}, "Groups": {}}"#,
        r#"{"groups": {}, "grants": {}}"#,
    ] {
        assert!(
            matches!(
                reconcile(text, &a1(), &desired),
                Err(PolicyFileError::Unsupported(_))
            ),
            "{text}"
        );
    }
}

#[test]
fn legacy_acls_detection() {
    assert!(uses_legacy_acls(POLICY).unwrap());
    assert!(!uses_legacy_acls(r#"{"acls": [], "Grants": []}"#).unwrap());
    assert!(!uses_legacy_acls("{}").unwrap());
    assert!(uses_legacy_acls(r#"{"acls": []}"#).unwrap());
}

#[test]
fn group_and_login_matching_ignore_case_and_marked_duplicates_collapse() {
    let text = r#"{"groups": {"group:Prod": ["a@x.com" /* tailkeeper:a1 */, "A@X.com" /* tailkeeper:a1 */]}}"#;
    let desired = Entries {
        members: members(&[("group:prod", "a@x.com")]),
        ..Default::default()
    };
    let outcome = reconciled(text, &desired);
    assert_eq!(
        outcome.text,
        r#"{"groups": {"group:Prod": ["a@x.com" /* tailkeeper:a1 */]}}"#
    );
}

#[test]
fn scanner_handles_escapes_unicode_and_comment_lookalikes() {
    let text = "{\"groups\": {\"group:a\": [\"// not a comment\", \"/* nor this */\", \"\\\"q\\\" \\\\ \\u00e9 日本\"]}}";
    let desired = Entries {
        members: members(&[("group:a", "\"q\" \\ é 日本")]),
        ..Default::default()
    };
    let outcome = reconciled(text, &desired);
    assert!(!outcome.changed, "the escaped string is the same login");
    assert_eq!(outcome.already_present.len(), 1);
    let desired = Entries {
        members: members(&[("group:a", "new")]),
        ..Default::default()
    };
    let outcome = reconciled(text, &desired);
    assert_eq!(
        semantics(&outcome.text)["groups"]["group:a"][0],
        json!("new")
    );
    assert_eq!(reconciled(&outcome.text, &Entries::default()).text, text);
}

#[test]
fn a_marker_belongs_to_the_item_right_before_it() {
    let text = r#"{"groups": {"group:a": [
        "a",
        /* tailkeeper:a1 */ "b",
        "c" /* note */ /* tailkeeper:a1 */,
        "d" /* tailkeeper:a1 */
    ]}}"#;
    // `a` owns the marker after its comma (even on the next line); `c`'s marker is behind
    // another comment, so `c` stays a human's.
    assert_eq!(
        managed(text, &a1()).unwrap().members,
        members(&[("group:a", "a"), ("group:a", "d")])
    );
    let cleared = reconciled(text, &Entries::default());
    assert_eq!(
        semantics(&cleared.text),
        json!({"groups": {"group:a": ["b", "c"]}})
    );
}

#[test]
fn byte_order_mark_and_deep_nesting() {
    let with_bom = "\u{feff}{\"groups\": {}}";
    let desired = Entries {
        members: members(&[("group:a", "alice@example.com")]),
        ..Default::default()
    };
    let outcome = reconcile(with_bom, &a1(), &desired).unwrap();
    assert!(outcome.text.starts_with('\u{feff}'));
    assert_eq!(
        reconcile(&outcome.text, &a1(), &Entries::default())
            .unwrap()
            .text,
        with_bom
    );

    let deep = format!("{{\"x\": {}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(matches!(
        reconcile(&deep, &a1(), &Entries::default()),
        Err(PolicyFileError::Parse { .. })
    ));
}

/// Everything `owner` could be asked for on [`POLICY`]: members of an existing and of a new
/// group, and a rule in each section (the `grants` one creates the section).
fn wide_access() -> Entries {
    Entries {
        members: members(&[
            ("group:prod", "alice@example.com"),
            ("group:new", "erin@example.com"),
        ]),
        grants: vec![grant_rule()],
        ssh: vec![ssh_rule()],
        acls: vec![
            json!({"action": "accept", "src": ["erin@example.com"], "dst": ["tag:db:5432"]}),
        ],
    }
}

#[test]
fn another_owners_members_rules_groups_and_sections_are_never_removed() {
    let by_b = reconciled_by(POLICY, &b2(), &wide_access()).text;
    assert!(by_b.contains(
        "\"group:new\": [\"erin@example.com\" /* tailkeeper:b2 */], /* tailkeeper:b2 */"
    ));
    assert!(by_b.contains("\"grants\": ["));
    let cleared = reconciled(&by_b, &Entries::default());
    assert!(!cleared.changed, "{}", cleared.text);
    assert!(cleared.removed.is_empty());
    assert_eq!(cleared.text, by_b);
    assert_eq!(managed(&by_b, &b2()).unwrap(), wide_access());

    // Containers someone else created stay even when empty: they may still want them.
    let empty = r#"{"groups": {"group:x": [] /* tailkeeper:b2 */} /* tailkeeper:b2 */, "grants": [] /* tailkeeper:b2 */, "ssh": [] /* tailkeeper */}"#;
    let cleared = reconciled(empty, &Entries::default());
    assert!(!cleared.changed);
    assert_eq!(cleared.text, empty);
}

#[test]
fn legacy_bare_markers_are_foreign_and_never_removed() {
    let legacy = r#"{"groups": {"group:a": ["x" /* tailkeeper */, "y"] /* tailkeeper */, "group:e": [] /* tailkeeper */} /* tailkeeper */, "grants": [{"src": ["x"], "dst": ["*"], "ip": ["*"]} /* tailkeeper */] /* tailkeeper */}"#;
    let cleared = reconciled(legacy, &Entries::default());
    assert!(!cleared.changed);
    assert_eq!(cleared.text, legacy);
    assert_eq!(managed(legacy, &a1()).unwrap(), Entries::default());
    // Owner "tailkeeper" is an id like any other, not the legacy marker.
    let named = Owner::new("tailkeeper").unwrap();
    assert_eq!(managed(legacy, &named).unwrap(), Entries::default());
    assert_eq!(
        reconciled_by(legacy, &named, &Entries::default()).text,
        legacy
    );

    // Nobody knows whether the legacy copy will stay, so wanting it adds our own.
    let wanted = Entries {
        members: members(&[("group:a", "x")]),
        grants: vec![json!({"src": ["x"], "dst": ["*"], "ip": ["*"]})],
        ..Default::default()
    };
    let added = reconciled(legacy, &wanted);
    assert_eq!(added.added.len(), 2);
    assert!(added.already_present.is_empty());
    assert_eq!(managed(&added.text, &a1()).unwrap(), wanted);
    assert_eq!(reconciled(&added.text, &Entries::default()).text, legacy);
}

#[test]
fn another_owners_copy_does_not_count_as_present_and_ours_outlives_it() {
    let by_b = reconciled_by(POLICY, &b2(), &jit_access()).text;
    let both = reconciled(&by_b, &jit_access());
    let grant = compact_json(&grant_rule());
    let ssh = compact_json(&ssh_rule());
    assert_eq!(
        both.added,
        vec![
            "group:prod: alice@example.com".to_string(),
            format!("grants: {grant}"),
            format!("ssh: {ssh}"),
        ]
    );
    assert!(both.already_present.is_empty());
    assert_eq!(
        both.text
            .matches("\"alice@example.com\", /* tailkeeper:")
            .count(),
        2
    );
    assert_eq!(managed(&both.text, &a1()).unwrap(), jit_access());
    assert_eq!(managed(&both.text, &b2()).unwrap(), jit_access());

    // The other installation's grant lapses: our access stays in effect.
    let b_dropped = reconciled_by(&both.text, &b2(), &Entries::default());
    assert_eq!(b_dropped.removed.len(), 3);
    assert_eq!(managed(&b_dropped.text, &a1()).unwrap(), jit_access());
    assert_eq!(managed(&b_dropped.text, &b2()).unwrap(), Entries::default());
    assert_eq!(
        semantics(&b_dropped.text),
        semantics(&reconciled(POLICY, &jit_access()).text)
    );
    // Reconciling ours again changes nothing: it is all still there.
    assert!(!reconciled(&b_dropped.text, &jit_access()).changed);
}

#[test]
fn two_owners_adding_and_removing_restore_each_others_bytes() {
    // B's wants overlap A's (the same member and ssh rule) and go beyond them, but only into
    // containers the original has, so B's own additions are the same with or without A's.
    let for_a = wide_access();
    let for_b = Entries {
        members: members(&[
            ("group:prod", "alice@example.com"),
            ("group:eng", "frank@example.com"),
        ]),
        ssh: vec![ssh_rule()],
        acls: vec![json!({"action": "accept", "src": ["frank@example.com"], "dst": ["tag:ci:22"]})],
        ..Default::default()
    };
    let b_alone = reconciled_by(POLICY, &b2(), &for_b).text;

    let a_then_b = reconciled_by(&reconciled(POLICY, &for_a).text, &b2(), &for_b).text;
    let b_then_a = reconciled(&b_alone, &for_a).text;
    for both in [a_then_b, b_then_a] {
        assert_eq!(managed(&both, &a1()).unwrap(), for_a);
        assert_eq!(managed(&both, &b2()).unwrap(), for_b);
        let a_gone = reconciled(&both, &Entries::default()).text;
        assert_eq!(a_gone, b_alone);
        let b_gone = reconciled_by(&a_gone, &b2(), &Entries::default()).text;
        assert_eq!(b_gone, POLICY);
    }
}

#[test]
fn a_container_another_owner_created_goes_only_when_its_creator_clears_it() {
    // A creates the grants section; B's rule lands in it.
    let by_a = reconciled(POLICY, &jit_access()).text;
    let other_rule = json!({"src": ["group:eng"], "dst": ["tag:ci"], "ip": ["*"]});
    let for_b = Entries {
        grants: vec![other_rule.clone()],
        ..Default::default()
    };
    let both = reconciled_by(&by_a, &b2(), &for_b).text;
    // A leaves: its section stays, holding B's rule.
    let a_gone = reconciled(&both, &Entries::default()).text;
    assert_eq!(semantics(&a_gone)["grants"], json!([other_rule]));
    // B leaves: the empty section is A's, so B leaves it alone.
    let b_gone = reconciled_by(&a_gone, &b2(), &Entries::default()).text;
    assert_eq!(semantics(&b_gone)["grants"], json!([]));
    assert_eq!(managed(&b_gone, &b2()).unwrap(), Entries::default());
    // A's next write takes its empty section out.
    assert_eq!(reconciled(&b_gone, &Entries::default()).text, POLICY);
}

#[test]
fn invalid_owner_ids_are_refused() {
    let longest = "x".repeat(Owner::MAX_ID_LEN);
    for valid in ["a", "A-z_0.9", "tailkeeper", longest.as_str()] {
        let owner = Owner::new(valid).unwrap();
        assert_eq!(owner.id(), valid);
        assert_eq!(owner.marker(), format!("/* tailkeeper:{valid} */"));
    }
    let too_long = "x".repeat(Owner::MAX_ID_LEN + 1);
    for invalid in [
        "",
        too_long.as_str(),
        "a b",
        " a",
        "a*/",
        "a:b",
        "tailkeeper:a",
        "é",
        "a/b",
        "a\n",
    ] {
        let error = Owner::new(invalid).unwrap_err();
        assert_eq!(
            error,
            PolicyFileError::InvalidOwner {
                id: invalid.to_string()
            }
        );
        assert!(error.to_string().contains("owner id"), "{error}");
    }
}

#[test]
fn managed_returns_only_this_owners_items() {
    let text = r#"{
        "groups": {
            "group:a": [
                "mine", /* tailkeeper:a1 */
                "theirs", /* tailkeeper:b2 */
                "shared" /* tailkeeper:a1 */,
                "shared" /* tailkeeper:b2 */,
                "spaced" /*tailkeeper:a1*/,
                "prefixed" /* tailkeeper:a10 */,
                "suffixed" /* tailkeeper:a */,
                "legacy" /* tailkeeper */,
                "human",
            ],
        },
        "ssh": [{"n": 1} /* tailkeeper:b2 */, {"n": 2} /* tailkeeper:a1 */],
    }"#;
    let mine = managed(text, &a1()).unwrap();
    assert_eq!(
        mine,
        Entries {
            members: members(&[
                ("group:a", "mine"),
                ("group:a", "shared"),
                ("group:a", "spaced"),
            ]),
            ssh: vec![json!({"n": 2})],
            ..Default::default()
        }
    );
    let theirs = managed(text, &b2()).unwrap();
    assert_eq!(
        theirs.members,
        members(&[("group:a", "theirs"), ("group:a", "shared")])
    );
    assert_eq!(theirs.ssh, vec![json!({"n": 1})]);
    // Clearing ours leaves exactly the others' items and the human's.
    let cleared = reconciled(text, &Entries::default()).text;
    assert_eq!(managed(&cleared, &a1()).unwrap(), Entries::default());
    assert_eq!(managed(&cleared, &b2()).unwrap(), theirs);
    assert_eq!(
        semantics(&cleared)["groups"]["group:a"],
        json!(["theirs", "shared", "prefixed", "suffixed", "legacy", "human"])
    );
}

#[test]
fn entries_extend_is_a_union_and_is_empty_sees_every_part() {
    let mut entries = Entries::default();
    assert!(entries.is_empty());
    entries.extend(&jit_access());
    entries.extend(&wide_access());
    assert_eq!(
        entries.members,
        members(&[
            ("group:prod", "alice@example.com"),
            ("group:new", "erin@example.com"),
        ])
    );
    assert_eq!(entries.grants, vec![grant_rule()]);
    assert_eq!(entries.ssh, vec![ssh_rule()]);
    assert_eq!(entries.acls, wide_access().acls);
    for only in [
        Entries {
            members: members(&[("group:a", "x")]),
            ..Default::default()
        },
        Entries {
            grants: vec![grant_rule()],
            ..Default::default()
        },
        Entries {
            ssh: vec![ssh_rule()],
            ..Default::default()
        },
        Entries {
            acls: vec![grant_rule()],
            ..Default::default()
        },
    ] {
        assert!(!only.is_empty(), "{only:?}");
    }
}

#[test]
fn absent_lists_what_neither_the_owner_nor_a_person_holds() {
    let owner = Owner::new("east").expect("owner");
    let text = r#"{
  "groups": {
    "group:prod": ["alice@example.com" /* tailkeeper:east */, "Bob@example.com", "carol@example.com" /* tailkeeper:west */],
  },
  "grants": [
    {"src": ["alice@example.com"], "dst": ["tag:db"], "ip": ["*"]}, /* tailkeeper:east */
    {"src": ["carol@example.com"], "dst": ["tag:db"], "ip": ["*"]}, /* tailkeeper:west */
  ],
}"#;
    let rule = |login: &str| json!({"src": [login], "dst": ["tag:db"], "ip": ["*"]});
    let desired = Entries {
        members: [
            ("group:prod".to_string(), "alice@example.com".to_string()),
            ("group:prod".to_string(), "bob@example.com".to_string()),
            ("group:prod".to_string(), "carol@example.com".to_string()),
            ("group:ops".to_string(), "alice@example.com".to_string()),
        ]
        .into_iter()
        .collect(),
        grants: vec![rule("alice@example.com"), rule("carol@example.com")],
        ..Default::default()
    };
    let missing = absent(text, &owner, &desired).expect("parses");
    assert_eq!(
        missing.members,
        [
            ("group:ops".to_string(), "alice@example.com".to_string()),
            ("group:prod".to_string(), "carol@example.com".to_string()),
        ]
        .into_iter()
        .collect(),
        "ours and a person's count; another owner's and a missing group do not"
    );
    assert_eq!(missing.grants, vec![rule("carol@example.com")]);
    assert!(absent("{", &owner, &desired).is_err());
}
