use super::*;
use crate::policy_file::document;

fn member(login: &str, role: &str, user_type: &str) -> Member {
    Member {
        login: login.to_string(),
        role: role.to_string(),
        status: "active".to_string(),
        user_type: user_type.to_string(),
        person: None,
        role_granted_by: Vec::new(),
    }
}

fn users() -> Vec<Member> {
    vec![
        member("alice@example.com", "admin", "member"),
        member("bob@example.com", "member", "member"),
        member("carol@example.com", "member", "member"),
        member("guest@other.org", "member", "shared"),
    ]
}

const POLICY: &str = r#"{
  "groups": {
    // on call
    "group:prod": ["bob@example.com", "carol@example.com" /* tailkeeper:east */],
    "group:empty": [],
  },
  "grants": [
    {"src": ["group:prod", "tag:ci"], "dst": ["tag:db"], "ip": ["tcp:5432"]},
    {"src": ["alice@example.com", "group:prod"], "dst": ["tag:web"], "ip": ["443"]},
    {"src": ["*"], "dst": ["autogroup:self"], "ip": ["*"]},
    {"dst": ["tag:web"], "ip": ["443"], "src": ["alice@example.com", "group:prod"]}, /* tailkeeper:east */
  ],
  "acls": [{"action": "accept", "src": ["autogroup:shared"], "dst": ["tag:docs:80"]}],
  "ssh": [
    {"action": "check", "src": ["autogroup:admin"], "dst": ["tag:prod"], "users": ["root"]},
    {"action": "accept", "src": ["dave@example.com"], "dst": ["tag:prod"], "users": ["autogroup:nonroot"]}, /* tailkeeper:east */
  ],
}"#;

/// bob's laptop has a posture attribute a grant set; carol's desktop one a person set.
fn posture() -> Vec<DevicePosture> {
    let attribute = |login: &str, id: &str, device: &str, value: &str| DevicePosture {
        login: login.into(),
        device_id: id.into(),
        device: device.into(),
        key: "custom:jit-prod".into(),
        value: value.into(),
        granted_by: Vec::new(),
    };
    vec![
        attribute("bob@example.com", "d1", "bob-laptop", "true"),
        attribute("bob@example.com", "d2", "bob-phone", "true"),
        attribute("carol@example.com", "d3", "carol-desktop", "true"),
        attribute("guest@other.org", "d4", "guest-pc", "false"),
        attribute("ghost@example.com", "d5", "ghost-pc", "true"),
    ]
}

fn inventory() -> Inventory {
    let mut attribution = Attribution {
        owner: Some("east".into()),
        ..Default::default()
    };
    attribution.add_member("group:prod", "carol@example.com", "carol-prod");
    attribution.add_rule(
        r#"{"src":["dave@example.com"],"dst":["tag:prod"],"users":["autogroup:nonroot"],"action":"accept"}"#,
        "dave-ssh",
    );
    attribution.add_role("alice@example.com", "admin", "alice-admin");
    attribution.add_posture("d1", "custom:jit-prod", "bob-jit");
    build(
        users(),
        &document(POLICY).expect("parses"),
        &attribution,
        posture(),
    )
}

fn ids(holdings: &[Holding]) -> Vec<String> {
    holdings.iter().map(|h| h.entitlement.to_string()).collect()
}

fn entitlement<'a>(inv: &'a Inventory, description_part: &str) -> &'a Entitlement {
    inv.entitlements
        .iter()
        .find(|e| e.description.contains(description_part))
        .unwrap_or_else(|| panic!("no entitlement described with {description_part}"))
}

#[test]
fn every_rule_group_and_role_is_an_entitlement_with_its_holders() {
    let inv = inventory();
    let count = |id: &str| {
        inv.entitlements
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.holders)
    };
    assert_eq!(count("role:admin"), Some(1));
    assert_eq!(count("role:member"), Some(3));
    assert_eq!(count("group:prod"), Some(2));
    assert_eq!(count("group:empty"), Some(0));
    // group:prod + a tag (devices count for no user).
    assert_eq!(entitlement(&inv, "tag:db").holders, 2);
    // `*`: everyone, shared users too.
    assert_eq!(entitlement(&inv, "autogroup:self").holders, 4);
    assert_eq!(entitlement(&inv, "tag:docs").holders, 1);
    assert_eq!(entitlement(&inv, "ssh check").holders, 1);
    // dave is in the file but not in the tailnet: nobody holds it.
    assert_eq!(entitlement(&inv, "dave@example.com").holders, 0);
}

#[test]
fn identical_rules_are_one_entitlement_and_a_persons_copy_decides_who_added_it() {
    let inv = inventory();
    let web = entitlement(&inv, "tag:web");
    assert_eq!(web.locations, vec!["grants[1]", "grants[3]"]);
    assert_eq!(web.added_by, AddedBy::Person);
    assert_eq!(web.holders, 3);
    assert!(web.id.starts_with("grant:") && web.id.len() == "grant:".len() + 12);
    assert_eq!(
        inv.entitlements
            .iter()
            .filter(|e| e.description.contains("tag:web"))
            .count(),
        1
    );
}

#[test]
fn ids_are_stable_across_reordering_and_edits_elsewhere() {
    let before = inventory();
    let edited = POLICY
        .replace(
            "\"group:empty\": [],",
            "\"group:empty\": [], \"group:new\": [],",
        )
        .replace(
            r#"{"src": ["*"], "dst": ["autogroup:self"], "ip": ["*"]},"#,
            r#"{"ip": ["*"], "dst": ["autogroup:self"], "src": ["*"]}, // reordered keys"#,
        );
    let after = build(
        users(),
        &document(&edited).expect("parses"),
        &Attribution::default(),
        posture(),
    );
    for e in before.entitlements.iter().filter(|e| e.kind != Kind::Group) {
        assert!(
            after.entitlements.iter().any(|a| a.id == e.id),
            "{} disappeared",
            e.id
        );
    }
}

#[test]
fn a_user_holds_each_entitlement_the_most_direct_way() {
    let inv = inventory();
    let resolver = Resolver::new(&inv);
    let alice = resolver.of_user("alice@example.com");
    let via_of = |holdings: &[Holding], part: &str| {
        holdings
            .iter()
            .find(|h| h.description.contains(part))
            .map(|h| h.via.clone())
    };
    assert_eq!(via_of(&alice, "tag:web"), Some(Via::Direct));
    assert_eq!(
        via_of(&alice, "ssh check"),
        Some(Via::Autogroup("autogroup:admin".into()))
    );
    assert_eq!(
        via_of(&alice, "autogroup:self"),
        Some(Via::Wildcard("*".into()))
    );
    assert_eq!(via_of(&alice, "tag:db"), None);
    let bob = resolver.of_user("bob@example.com");
    assert_eq!(
        via_of(&bob, "tag:db"),
        Some(Via::Group("group:prod".into()))
    );
    assert!(ids(&bob).contains(&"group:prod".to_string()));
    assert!(ids(&bob).contains(&"role:member".to_string()));
    let guest = resolver.of_user("guest@other.org");
    assert_eq!(
        via_of(&guest, "tag:docs"),
        Some(Via::Autogroup("autogroup:shared".into()))
    );
    assert_eq!(via_of(&guest, "tag:web"), None);
    assert!(resolver.of_user("nobody@example.com").is_empty());
}

#[test]
fn who_added_it_is_the_person_or_the_grant() {
    let inv = inventory();
    let resolver = Resolver::new(&inv);
    let by = |login: &str, part: &str| {
        resolver
            .of_user(login)
            .into_iter()
            .find(|h| h.description.contains(part) || h.entitlement == part)
            .map(|h| h.added_by.to_string())
    };
    assert_eq!(
        by("bob@example.com", "group:prod").as_deref(),
        Some("person")
    );
    assert_eq!(
        by("carol@example.com", "group:prod").as_deref(),
        Some("grant carol-prod")
    );
    // Through a group: whoever added the membership.
    assert_eq!(
        by("carol@example.com", "tag:db").as_deref(),
        Some("grant carol-prod")
    );
    assert_eq!(by("bob@example.com", "tag:db").as_deref(), Some("person"));
    assert_eq!(
        by("alice@example.com", "role:admin").as_deref(),
        Some("grant alice-admin")
    );
    assert_eq!(
        by("bob@example.com", "role:member").as_deref(),
        Some("tailscale")
    );
    let dave = entitlement(&inv, "dave@example.com");
    assert_eq!(
        dave.added_by,
        AddedBy::Tailkeeper {
            owner: Some("east".into()),
            grants: vec!["dave-ssh".into()]
        }
    );
}

#[test]
fn another_installations_entries_are_tailkeepers_without_naming_our_grants() {
    let attribution = Attribution {
        owner: Some("west".into()),
        ..Default::default()
    };
    let inv = build(
        users(),
        &document(POLICY).expect("parses"),
        &attribution,
        Vec::new(),
    );
    let dave = entitlement(&inv, "dave@example.com");
    assert_eq!(
        dave.added_by,
        AddedBy::Tailkeeper {
            owner: Some("east".into()),
            grants: vec![]
        }
    );
}

#[test]
fn holders_of_an_entitlement_and_every_holding() {
    let inv = inventory();
    let resolver = Resolver::new(&inv);
    let db = entitlement(&inv, "tag:db").id.clone();
    let holders: Vec<&str> = resolver.holders(&db).iter().map(|h| h.user).collect();
    assert_eq!(holders, vec!["bob@example.com", "carol@example.com"]);
    assert!(resolver.holders("grant:000000000000").is_empty());
    let total: usize = inv.entitlements.iter().map(|e| e.holders).sum();
    assert_eq!(resolver.all().count(), total);
}

#[test]
fn the_summary_is_bounded_and_names_the_privileged_and_the_most_held() {
    let inv = inventory();
    let summary = summarize(&inv, 2);
    assert_eq!(summary.users, 4);
    assert_eq!(
        summary.privileged,
        vec![("alice@example.com".into(), "admin".into())]
    );
    assert_eq!(summary.privileged_count, 1);
    assert_eq!(summary.most_held.len(), 2);
    assert_eq!(summary.most_held[0].2, 4);
    assert_eq!(summary.most_held[1].2, 3);
    assert_eq!(
        summary.holdings,
        inv.entitlements.iter().map(|e| e.holders).sum::<usize>()
    );
}

#[test]
fn the_inventory_round_trips_through_json() {
    let inv = inventory();
    let text = serde_json::to_string(&inv).expect("serializes");
    let back: Inventory = serde_json::from_str(&text).expect("parses");
    assert_eq!(back, inv);
}

fn rendered(format: Format, login: &str) -> String {
    let mut inv = inventory();
    inv.users[1].person = Some("Bob, \"the\" Builder".into());
    let resolver = Resolver::new(&inv);
    let mut out = Vec::new();
    render(&inv, resolver.of_user(login).into_iter(), format, &mut out).expect("renders");
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn holdings_render_as_a_table_csv_and_json() {
    let table = rendered(Format::Table, "bob@example.com");
    let mut lines = table.lines();
    let header = lines.next().expect("header");
    assert!(header.starts_with("USER"), "{header}");
    assert!(header.contains("ADDED BY"));
    let db = table
        .lines()
        .find(|l| l.contains("tag:db"))
        .expect("the tag:db rule");
    assert!(
        db.contains("via group:prod") && db.contains("person"),
        "{db}"
    );
    // Columns line up: every row has ENTITLEMENT where the header has it.
    let column = header.find("ENTITLEMENT").expect("column");
    for line in table.lines().skip(1) {
        let cell = &line[column..];
        assert!(
            ["group:", "grant:", "role:", "posture:"]
                .iter()
                .any(|prefix| cell.starts_with(prefix)),
            "{line}"
        );
    }

    let csv = rendered(Format::Csv, "bob@example.com");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().expect("headers").clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [
            "user",
            "person",
            "entitlement",
            "kind",
            "description",
            "how",
            "addedBy"
        ]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("record")).collect();
    assert_eq!(records.len(), table.lines().count() - 1);
    assert!(records.iter().all(|r| &r[1] == "Bob, \"the\" Builder"));

    let json: Vec<serde_json::Value> =
        serde_json::from_str(&rendered(Format::Json, "bob@example.com")).expect("json");
    assert_eq!(json.len(), records.len());
    let group = json
        .iter()
        .find(|r| r["entitlement"] == "group:prod")
        .expect("group row");
    assert_eq!(group["how"], "direct");
    assert_eq!(group["addedBy"], "person");
    assert_eq!(group["kind"], "group");

    let empty: Vec<serde_json::Value> =
        serde_json::from_str(&rendered(Format::Json, "nobody@example.com")).expect("json");
    assert!(empty.is_empty());
}

#[test]
fn posture_attributes_on_a_users_devices_are_entitlements_of_the_user() {
    let inv = inventory();
    let count = |id: &str| {
        inv.entitlements
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.holders)
    };
    // bob (two devices) counts once; ghost is no user of the tailnet.
    assert_eq!(count("posture:custom:jit-prod=true"), Some(2));
    assert_eq!(count("posture:custom:jit-prod=false"), Some(1));
    let resolver = Resolver::new(&inv);
    let holding = |login: &str| {
        resolver
            .of_user(login)
            .into_iter()
            .find(|h| h.kind == Kind::Posture)
            .map(|h| (h.via.to_string(), h.added_by.to_string()))
    };
    assert_eq!(
        holding("bob@example.com"),
        Some(("on device bob-laptop".into(), "grant bob-jit".into()))
    );
    assert_eq!(
        holding("carol@example.com"),
        Some(("on device carol-desktop".into(), "tailscale".into()))
    );
    assert_eq!(holding("alice@example.com"), None);
}
