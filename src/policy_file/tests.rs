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

fn jit_access() -> Desired {
    Desired {
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

fn reconciled(text: &str, desired: &Desired) -> Outcome {
    let outcome = reconcile(text, desired).expect("reconciles");
    semantics(&outcome.text);
    let again = reconcile(&outcome.text, desired).expect("reconciles again");
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
                &format!("\n\t\"grants\": [{grant} /* tailkeeper */], /* tailkeeper */"),
            ),
            (
                "\"group:prod\": [",
                "\n\t\t\t\"alice@example.com\", /* tailkeeper */",
            ),
            (
                "\"ssh\": [ // who may ssh where",
                &format!("\n\t\t{ssh}, /* tailkeeper */"),
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

    let restored = reconciled(&outcome.text, &Desired::default());
    assert_eq!(restored.text, POLICY);
    assert_eq!(restored.removed.len(), 3);
}

#[test]
fn crlf_files_stay_crlf_and_restore_exactly() {
    let policy = POLICY.replace('\n', "\r\n");
    let outcome = reconciled(&policy, &jit_access());
    assert!(outcome
        .text
        .contains("\r\n\t\t\t\"alice@example.com\", /* tailkeeper */\r\n"));
    assert!(
        !outcome.text.replace("\r\n", "").contains('\n'),
        "no bare LF added"
    );
    assert_eq!(reconciled(&outcome.text, &Desired::default()).text, policy);
}

#[test]
fn removal_in_any_order_restores_the_original() {
    let logins = ["alice@example.com", "erin@example.com", "frank@example.com"];
    let all = Desired {
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
    remaining = Desired::default();
    assert_eq!(reconciled(&text, &remaining).text, POLICY);
}

#[test]
fn static_members_survive_when_the_grant_lapses() {
    // carol is in group:prod by hand; a grant for her changes nothing and lapses harmlessly.
    let desired = Desired {
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
    let lapsed = reconciled(&granted.text, &Desired::default());
    assert!(!lapsed.changed);
    assert!(lapsed.text.contains("\"carol@example.com\", // on call"));
}

#[test]
fn a_static_member_added_by_a_human_during_a_grant_is_kept() {
    let granted = reconciled(POLICY, &jit_access()).text;
    // Meanwhile a human makes alice a permanent member of group:eng too and comments on ours.
    let edited = granted
        .replace(
            "\"alice@example.com\", /* tailkeeper */",
            "\"alice@example.com\", /* tailkeeper */ // approved in TICKET-1",
        )
        .replace("\"group:eng\": [", "\"group:eng\": [\"zoe@example.com\", ");
    let lapsed = reconciled(&edited, &Desired::default());
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
    let mut desired = Desired {
        members: members(&[("group:prod", "alice@example.com")]),
        grants: vec![grant_rule(), grant_rule()],
        ..Default::default()
    };
    // Two grants for the same membership and rule: the set holds one, the rule list two.
    let both = reconciled(POLICY, &desired);
    assert_eq!(
        both.text
            .matches("\"alice@example.com\", /* tailkeeper */")
            .count(),
        1
    );
    assert_eq!(both.text.matches("\"tcp:5432\"").count(), 1);
    // One grant ends: the rule is still wanted once, nothing changes.
    desired.grants.pop();
    let one = reconciled(&both.text, &desired);
    assert!(!one.changed);
    desired = Desired::default();
    assert_eq!(reconciled(&one.text, &desired).text, POLICY);
}

#[test]
fn human_edits_next_to_owned_items_survive() {
    let granted = reconciled(POLICY, &jit_access()).text;
    let human_rule = r#"{"src": ["group:eng"], "dst": ["tag:ci"], "ip": ["*"]}"#;
    // A human adds a rule after ours in `grants`, and a comment on the line of our ssh rule.
    let edited = granted
        .replace(
            "/* tailkeeper */], /* tailkeeper */",
            &format!("/* tailkeeper */, {human_rule}], /* tailkeeper */"),
        )
        .replace(
            "\"users\": [\"root\"]}, /* tailkeeper */",
            "\"users\": [\"root\"]}, /* tailkeeper */ // temporary",
        );
    let lapsed = reconciled(&edited, &Desired::default());
    let mut expected = semantics(POLICY);
    // The section Tailkeeper created stays: it holds a human's rule now.
    expected["grants"] = json!([serde_json::from_str::<Json>(human_rule).unwrap()]);
    assert_eq!(semantics(&lapsed.text), expected);
    assert!(lapsed.text.contains(human_rule));
    assert!(lapsed
        .text
        .contains("\"ssh\": [ // who may ssh where\n\t\t // temporary\n"));
    assert!(!lapsed.text.contains("tailkeeper */ "), "{}", lapsed.text);
    assert_eq!(managed(&lapsed.text).unwrap(), Managed::default());
}

#[test]
fn fallback_removal_keeps_the_file_valid() {
    let cases = [
        (
            r#"{"groups": {"group:a": ["x", "y" /* tailkeeper */]}}"#,
            r#"{"groups": {"group:a": ["x"]}}"#,
        ),
        (
            r#"{"groups": {"group:a": ["y", /* tailkeeper */ "x"]}}"#,
            r#"{"groups": {"group:a": [ "x"]}}"#,
        ),
        (
            "{\"groups\": {\"group:a\": [\n  \"x\",\n  \"y\" /* tailkeeper */ ,\n  \"z\"\n]}}",
            "{\"groups\": {\"group:a\": [\n  \"x\",\n  \"z\"\n]}}",
        ),
        (
            "{\"groups\": {\"group:a\": [\n  \"x\", // note\n  \"y\" /*tailkeeper*/\n]}}",
            "{\"groups\": {\"group:a\": [\n  \"x\" // note\n]}}",
        ),
        (
            r#"{"groups": {"group:a": ["y" /* tailkeeper */ /* why */, "x"]}}"#,
            r#"{"groups": {"group:a": [ /* why */ "x"]}}"#,
        ),
    ];
    for (input, expected) in cases {
        let outcome = reconciled(input, &Desired::default());
        assert_eq!(outcome.text, expected, "from {input}");
        assert_eq!(outcome.removed, vec!["group:a: y".to_string()]);
    }
}

#[test]
fn restart_reads_ownership_from_the_file_alone() {
    let granted = reconciled(POLICY, &jit_access()).text;
    let owned = managed(&granted).unwrap();
    assert_eq!(
        owned.members,
        members(&[("group:prod", "alice@example.com")])
    );
    assert_eq!(owned.grants, vec![grant_rule()]);
    assert_eq!(owned.ssh, vec![ssh_rule()]);
    assert!(owned.acls.is_empty());
    // A fresh process with nothing wanted removes exactly what is marked.
    let cleared = reconcile(&granted, &Desired::default()).unwrap();
    assert_eq!(cleared.text, POLICY);
    assert_eq!(managed(POLICY).unwrap(), Managed::default());
}

#[test]
fn creates_missing_groups_and_sections_and_removes_them_again() {
    let desired = Desired {
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
            reconciled(&outcome.text, &Desired::default()).text,
            original
        );
    }
    assert_eq!(
        reconciled("{}", &desired).text,
        r#"{"acls": [{"action": "accept", "dst": ["tag:db:5432"], "src": ["group:oncall"]} /* tailkeeper */] /* tailkeeper */, "groups": {"group:oncall": ["bob@example.com" /* tailkeeper */, "alice@example.com" /* tailkeeper */] /* tailkeeper */} /* tailkeeper */}"#
    );
}

#[test]
fn inline_and_empty_containers() {
    let desired = Desired {
        members: members(&[
            ("group:eng", "carol@example.com"),
            ("group:admins", "dave@example.com"),
        ]),
        ..Default::default()
    };
    let outcome = reconciled(POLICY, &desired);
    assert!(outcome.text.contains(
        r#""group:eng": ["carol@example.com" /* tailkeeper */, "alice@example.com", "bob@example.com"],"#
    ));
    assert!(outcome
        .text
        .contains(r#"/* break-glass */ "group:admins": ["dave@example.com" /* tailkeeper */],"#));
    assert_eq!(reconciled(&outcome.text, &Desired::default()).text, POLICY);
}

#[test]
fn rules_already_present_by_hand_are_not_duplicated_nor_removed() {
    let existing = json!({"action": "accept", "dst": ["tag:dev:*"], "src": ["group:eng"]});
    let desired = Desired {
        acls: vec![existing],
        ..Default::default()
    };
    let outcome = reconciled(POLICY, &desired);
    assert!(!outcome.changed);
    assert_eq!(reconciled(POLICY, &Desired::default()).text, POLICY);
}

#[test]
fn unparsable_files_are_refused_with_a_position() {
    let broken = "{\n\t\"groups\": {\n\t\t\"group:a\": [\"x\" \"y\"],\n\t},\n}";
    let error = reconcile(broken, &jit_access()).unwrap_err();
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
        match reconcile(broken, &Desired::default()) {
            Err(PolicyFileError::Parse {
                line: got_line,
                column: got_column,
                ..
            }) => assert_eq!((got_line, got_column), (line, column), "{broken:?}"),
            other => panic!("{broken:?}: {other:?}"),
        }
        assert!(managed(broken).is_err());
        assert!(uses_legacy_acls(broken).is_err());
    }
}

#[test]
fn scim_and_invalid_group_names_are_refused() {
    let scim = Desired {
        members: members(&[("group:eng@example.com", "alice@example.com")]),
        ..Default::default()
    };
    let error = reconcile(POLICY, &scim).unwrap_err();
    assert_eq!(
        error,
        PolicyFileError::ScimGroup {
            group: "group:eng@example.com".into()
        }
    );
    assert!(error.to_string().contains("group:eng@example.com"));
    let invalid = Desired {
        members: members(&[("eng", "alice@example.com")]),
        ..Default::default()
    };
    assert!(matches!(
        reconcile(POLICY, &invalid),
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
                reconcile(text, &desired),
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
    let text =
        r#"{"groups": {"group:Prod": ["a@x.com" /* tailkeeper */, "A@X.com" /* tailkeeper */]}}"#;
    let desired = Desired {
        members: members(&[("group:prod", "a@x.com")]),
        ..Default::default()
    };
    let outcome = reconciled(text, &desired);
    assert_eq!(
        outcome.text,
        r#"{"groups": {"group:Prod": ["a@x.com" /* tailkeeper */]}}"#
    );
}

#[test]
fn scanner_handles_escapes_unicode_and_comment_lookalikes() {
    let text = "{\"groups\": {\"group:a\": [\"// not a comment\", \"/* nor this */\", \"\\\"q\\\" \\\\ \\u00e9 日本\"]}}";
    let desired = Desired {
        members: members(&[("group:a", "\"q\" \\ é 日本")]),
        ..Default::default()
    };
    let outcome = reconciled(text, &desired);
    assert!(!outcome.changed, "the escaped string is the same login");
    assert_eq!(outcome.already_present.len(), 1);
    let desired = Desired {
        members: members(&[("group:a", "new")]),
        ..Default::default()
    };
    let outcome = reconciled(text, &desired);
    assert_eq!(
        semantics(&outcome.text)["groups"]["group:a"][0],
        json!("new")
    );
    assert_eq!(reconciled(&outcome.text, &Desired::default()).text, text);
}

#[test]
fn a_marker_belongs_to_the_item_right_before_it() {
    let text = r#"{"groups": {"group:a": [
        "a",
        /* tailkeeper */ "b",
        "c" /* note */ /* tailkeeper */,
        "d" /* tailkeeper */
    ]}}"#;
    // `a` owns the marker after its comma (even on the next line); `c`'s marker is behind
    // another comment, so `c` stays a human's.
    assert_eq!(
        managed(text).unwrap().members,
        members(&[("group:a", "a"), ("group:a", "d")])
    );
    let cleared = reconciled(text, &Desired::default());
    assert_eq!(
        semantics(&cleared.text),
        json!({"groups": {"group:a": ["b", "c"]}})
    );
}

#[test]
fn byte_order_mark_and_deep_nesting() {
    let with_bom = "\u{feff}{\"groups\": {}}";
    let desired = Desired {
        members: members(&[("group:a", "alice@example.com")]),
        ..Default::default()
    };
    let outcome = reconcile(with_bom, &desired).unwrap();
    assert!(outcome.text.starts_with('\u{feff}'));
    assert_eq!(
        reconcile(&outcome.text, &Desired::default()).unwrap().text,
        with_bom
    );

    let deep = format!("{{\"x\": {}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(matches!(
        reconcile(&deep, &Desired::default()),
        Err(PolicyFileError::Parse { .. })
    ));
}
