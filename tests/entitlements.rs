//! The entitlements inventory end to end: the operator (under the chart's RBAC) resolves the
//! simulated tailnet's policy file against its users, summarises it in the AccessPolicy's
//! status, publishes it whole in ConfigMaps the policy owns, counts holders in Prometheus, and
//! follows a console edit through a signed webhook; `tailkeeper access` exports it as a table,
//! CSV and JSON; grants show as what added their entries.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{json, Value};
use support::operator::{
    bound_to, eventually, install_admission_policies, offboarding_with_webhooks, Env, CONVERGE,
};
use tailkeeper::api::{AccessGrant, EntitlementsStatus, GrantPhase};
use tailkeeper::entitlements::AddedBy;
use tailscale_sim::{SimConfig, SimDevice, SimUser, Simulator};

const POLICY_FILE: &str = r#"// Kept by hand.
{
  "groups": {
    "group:prod": ["alice@example.com"], // on call
  },
  "grants": [
    {"src": ["group:prod"], "dst": ["tag:db"], "ip": ["tcp:5432"]},
    {"src": ["autogroup:member"], "dst": ["tag:wiki"], "ip": ["443"]},
  ],
  "ssh": [
    {"action": "check", "src": ["autogroup:admin"], "dst": ["tag:prod"], "users": ["root"]},
  ],
}
"#;

async fn entitlements_status(
    env: &Env,
    policy: &str,
    ready: impl Fn(&EntitlementsStatus) -> bool,
) -> EntitlementsStatus {
    eventually("the entitlements summary", CONVERGE, || async {
        let p = env.policies().get_opt(policy).await.ok()??;
        let e = p.status?.entitlements?;
        ready(&e).then_some(e)
    })
    .await
}

fn holders(status: &EntitlementsStatus, id: &str) -> Option<i64> {
    status
        .most_held
        .iter()
        .find(|e| e.id == id)
        .map(|e| e.holders)
}

/// `tailkeeper access` with the admin kubeconfig.
fn access(env: &Env, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tailkeeper"))
        .arg("access")
        .args(args)
        .env("KUBECONFIG", env.cp.kubeconfig_path())
        .output()
        .expect("tailkeeper access runs")
}

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "tailkeeper access failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}

/// The `ts` Secret with a new API token, then [`corp_with_key`].
async fn corp(env: &Env, integration_extra: &str, grantable: &str) {
    let key = env.sim.create_api_key(Duration::from_secs(30 * 86400));
    corp_with_key(env, &key.key, integration_extra, grantable).await;
}

/// Integration and policy `corp` (alice and bob, engineers; syncs once an hour), with
/// `integration_extra` appended to the integration's spec and `grantable` as the policy's
/// grantable items; anyone authenticated may request grants.
async fn corp_with_key(env: &Env, token: &str, integration_extra: &str, grantable: &str) {
    let bound = bound_to("corp", &env.sim.url());
    env.apply(&format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: ts, annotations: {bound}}}
stringData: {{apiToken: {token}}}
---
apiVersion: tailkeeper.io/v1alpha1
kind: TailscaleIntegration
metadata: {{name: corp}}
spec:
  apiUrl: {}
  syncInterval: 1h
  credentials: {{type: APIToken, secretName: ts}}{integration_extra}
---
apiVersion: tailkeeper.io/v1alpha1
kind: AccessPolicy
metadata: {{name: corp}}
spec:
  integrationRef: {{name: corp}}
  directory:
    people:
      - {{loginNames: [alice@example.com], displayName: Alice, orgRole: engineer}}
      - {{loginNames: [bob@example.com], displayName: Bob, orgRole: engineer}}
  roles:
    - {{orgRole: engineer, tailscaleRoles: [member]}}
  grantable: {grantable}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: grant-users}}
rules:
  - apiGroups: [tailkeeper.io]
    resources: [accessgrants]
    verbs: [get, list, watch, create, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: grant-users}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: grant-users}}
subjects:
  - {{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:authenticated"}}
"#,
        env.sim.url()
    ))
    .await;
}

/// bob requests `access` for himself for `duration`, as grant `name`.
async fn bob_requests(env: &Env, name: &str, access: Value, duration: &str) {
    let bob = env.cp.client_as("bob").await;
    let grant: AccessGrant = serde_json::from_value(json!({
        "apiVersion": "tailkeeper.io/v1alpha1",
        "kind": "AccessGrant",
        "metadata": {"name": name},
        "spec": {"policyRef": {"name": "corp"}, "user": "bob@example.com",
                 "access": access, "duration": duration,
                 "reason": "incident 4711", "requestedBy": "bob"}
    }))
    .expect("grant");
    Api::<AccessGrant>::namespaced(bob, &env.ns)
        .create(&PostParams::default(), &grant)
        .await
        .expect("bob may request for himself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inventory_is_published_follows_a_console_edit_and_exports_as_table_csv_and_json() {
    let env = offboarding_with_webhooks("entitle", &["policyUpdate", "userRoleUpdated"]).await;
    env.sim.set_policy_as_human(POLICY_FILE);
    let policy = format!("{}/corp", env.ns);

    let status = entitlements_status(&env, "corp", |e| holders(e, "group:prod") == Some(1)).await;
    assert_eq!(status.users, 2);
    assert_eq!(status.message, None);
    // role:member, group:prod, two grants, one ssh rule.
    assert_eq!(status.entitlements, 5);
    assert_eq!(status.privileged_count, 0);
    let wiki = status
        .most_held
        .iter()
        .find(|e| e.description.contains("tag:wiki"))
        .expect("the autogroup:member rule is among the most held");
    assert_eq!(wiki.holders, 2);
    assert!(wiki.id.starts_with("grant:"), "{}", wiki.id);
    assert_eq!(status.config_maps, vec!["corp-entitlements-0".to_string()]);

    // The ConfigMap belongs to the policy (garbage-collected with it) and carries the digest.
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    let cm = cms
        .get("corp-entitlements-0")
        .await
        .expect("the shard exists");
    let owner = &cm.metadata.owner_references.as_ref().expect("owned")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("AccessPolicy", "corp")
    );
    assert_eq!(
        cm.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("tailkeeper.io/digest")),
        status.digest.as_ref()
    );

    // The CLI: what alice holds, and how.
    let rows: Vec<Value> = serde_json::from_str(&stdout(&access(
        &env,
        &[
            "--policy",
            &policy,
            "--user",
            "alice@example.com",
            "-o",
            "json",
        ],
    )))
    .expect("JSON");
    // A row by entitlement id, else by what its description mentions.
    let row = |needle: &str| {
        rows.iter()
            .find(|r| r["entitlement"] == needle)
            .or_else(|| {
                rows.iter().find(|r| {
                    r["description"]
                        .as_str()
                        .is_some_and(|d| d.contains(needle))
                })
            })
            .unwrap_or_else(|| panic!("no row for {needle} in {rows:?}"))
            .clone()
    };
    assert_eq!(row("group:prod")["how"], "direct");
    assert_eq!(row("group:prod")["addedBy"], "person");
    assert_eq!(row("tag:db")["how"], "via group:prod");
    assert_eq!(row("tag:wiki")["how"], "via autogroup:member");
    assert_eq!(row("role:member")["addedBy"], "tailscale");
    assert!(
        !rows
            .iter()
            .any(|r| r["description"].as_str().is_some_and(|d| d.contains("ssh"))),
        "alice is no admin: the admins' SSH rule is not hers"
    );

    // A person edits the file in the console: bob joins group:prod. The signed policyUpdate
    // webhook makes the operator sync, and the inventory follows.
    let edited = Instant::now();
    env.sim.set_policy_as_human(&POLICY_FILE.replace(
        r#"["alice@example.com"], // on call"#,
        r#"["alice@example.com", "bob@example.com"], // on call"#,
    ));
    let after = entitlements_status(&env, "corp", |e| holders(e, "group:prod") == Some(2)).await;
    eprintln!(
        "a console edit reached the published inventory in {:?}",
        edited.elapsed()
    );
    assert_ne!(after.digest, status.digest);

    // Who holds the database rule, as CSV: a header and one row per holder.
    let db_id = row("tag:db")["entitlement"]
        .as_str()
        .expect("id")
        .to_string();
    let csv = stdout(&access(
        &env,
        &["--policy", &policy, "--entitlement", &db_id, "-o", "csv"],
    ));
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("user,person,entitlement,kind,description,how,addedBy")
    );
    let users: Vec<&str> = lines.map(|l| l.split(',').next().unwrap_or("")).collect();
    assert_eq!(users, vec!["alice@example.com", "bob@example.com"]);

    // Everything, as a table (the namespace may come from -n).
    let table = stdout(&access(&env, &["--policy", "corp", "-n", &env.ns]));
    let mut lines = table.lines();
    let header = lines.next().expect("header");
    for column in [
        "USER",
        "ENTITLEMENT",
        "KIND",
        "HOW",
        "ADDED BY",
        "DESCRIPTION",
    ] {
        assert!(header.contains(column), "{header}");
    }
    // alice: role, group, two grants; bob: role, group, two grants.
    assert_eq!(lines.count(), 8, "{table}");

    // Holders per entitlement are metrics.
    let metrics = eventually("the holder gauge to follow", CONVERGE, || async {
        let m = env.operator.metrics().await;
        m.lines()
            .any(|l| {
                l.starts_with("tailkeeper_entitlement_holders{")
                    && l.contains("entitlement=\"group:prod\"")
                    && l.ends_with(" 2")
            })
            .then_some(m)
    })
    .await;
    assert!(metrics.contains("kind=\"group\""), "{metrics}");

    // Clear errors.
    let out = access(&env, &["--policy", &policy, "--user", "nobody@example.com"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nobody@example.com is not a user"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = access(&env, &["--policy", &format!("{}/absent", env.ns)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_shows_as_what_added_its_entry_and_leaves_the_inventory_when_it_ends() {
    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    sim.add_user(SimUser::member("alice@example.com", "member", "active"));
    sim.add_user(SimUser::member("bob@example.com", "member", "active"));
    sim.set_policy_as_human(POLICY_FILE);
    let env = Env::new("entitle-grant", sim).await;
    install_admission_policies(env.cp).await;
    // An hour between syncs: the inventory follows the operator's own writes, not a timer.
    let grantable =
        r#"{groups: [{name: "group:prod", terms: {maxDuration: 1h, approvalRequired: false}}]}"#;
    corp(&env, "", grantable).await;
    entitlements_status(&env, "corp", |e| holders(e, "group:prod") == Some(1)).await;

    bob_requests(&env, "bob-prod", json!({"group": "group:prod"}), "6s").await;
    env.grant_phase("bob-prod", GrantPhase::Active).await;

    let published = eventually("bob's grant in the inventory", CONVERGE, || async {
        let (published, _) = tailkeeper::access::read(&env.client, &env.ns, "corp")
            .await
            .ok()?;
        let prod = published
            .inventory
            .groups
            .iter()
            .find(|g| g.name == "group:prod")?
            .clone();
        prod.members
            .iter()
            .any(|m| m.login == "bob@example.com")
            .then_some((published, prod))
    })
    .await;
    let (published, prod) = published;
    let bob_member = prod
        .members
        .iter()
        .find(|m| m.login == "bob@example.com")
        .expect("bob");
    match &bob_member.added_by {
        AddedBy::Tailkeeper { owner, grants } => {
            assert!(owner.is_some());
            assert_eq!(grants, &vec!["bob-prod".to_string()]);
        }
        other => panic!("bob's membership should be the grant's, not {other:?}"),
    }
    let alice = prod
        .members
        .iter()
        .find(|m| m.login == "alice@example.com")
        .expect("alice");
    assert_eq!(alice.added_by, AddedBy::Person);
    // The directory's names come along.
    assert_eq!(
        published
            .inventory
            .users
            .iter()
            .find(|u| u.login == "bob@example.com")
            .and_then(|u| u.person.as_deref()),
        Some("Bob")
    );

    // The rule bob reaches through the group is attributed to the grant too, in the CLI.
    let out = access(
        &env,
        &[
            "--policy",
            &format!("{}/corp", env.ns),
            "--user",
            "bob@example.com",
        ],
    );
    let table = stdout(&out);
    let db = table
        .lines()
        .find(|l| l.contains("tag:db"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        db.contains("via group:prod") && db.contains("grant bob-prod"),
        "{db}"
    );
    assert!(
        db.starts_with("bob@example.com") && db.contains("Bob"),
        "{db}"
    );

    // The grant lapses: its entry leaves the file, and the inventory follows.
    env.grant_phase("bob-prod", GrantPhase::Expired).await;
    entitlements_status(&env, "corp", |e| holders(e, "group:prod") == Some(1)).await;

    // One shard, and only one, carries this policy's label.
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    let shards = cms
        .list(&ListParams::default().labels("tailkeeper.io/entitlements-of"))
        .await
        .expect("list");
    assert_eq!(shards.items.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posture_attributes_on_devices_are_entitlements_with_who_set_them() {
    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    sim.add_user(SimUser::member("alice@example.com", "member", "active"));
    sim.add_user(SimUser::member("bob@example.com", "member", "active"));
    let alice_laptop = sim.add_device(SimDevice {
        name: "alice-laptop".into(),
        user: "alice@example.com".into(),
        ..Default::default()
    });
    sim.add_device(SimDevice {
        name: "bob-phone".into(),
        user: "bob@example.com".into(),
        ..Default::default()
    });
    sim.set_policy_as_human(POLICY_FILE);
    let env = Env::new("entitle-posture", sim).await;
    install_admission_policies(env.cp).await;
    let key = env.sim.create_api_key(Duration::from_secs(30 * 86400));
    // A person sets an attribute on alice's laptop through the API.
    let set = reqwest::Client::new()
        .post(format!(
            "{}/api/v2/device/{alice_laptop}/attributes/custom:tier",
            env.sim.url()
        ))
        .bearer_auth(&key.key)
        .json(&json!({"value": "gold"}))
        .send()
        .await
        .expect("sent");
    assert!(set.status().is_success(), "{}", set.status());
    let grantable = r#"{postureAttributes: [{name: jit-prod, key: "custom:jit-prod", value: "true", terms: {maxDuration: 1h, approvalRequired: false}}]}"#;
    corp_with_key(
        &env,
        &key.key,
        "\n  inventory: {postureAttributes: true}",
        grantable,
    )
    .await;
    let status = entitlements_status(&env, "corp", |e| e.users == 2).await;
    assert_eq!(status.message, None, "the posture attributes were read");

    bob_requests(
        &env,
        "bob-jit",
        json!({"postureAttribute": "jit-prod"}),
        "1h",
    )
    .await;
    env.grant_phase("bob-jit", GrantPhase::Active).await;
    // Setting an attribute is no policy-file write: ask for the sync a webhook would bring.
    let out = env.kubectl(&[
        "annotate",
        "tsi",
        "corp",
        "--overwrite",
        "tailkeeper.io/sync-requested-at=2026-11-30T12:00:00Z",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let rows: Vec<Value> = eventually("the posture entitlements", CONVERGE, || async {
        let out = access(
            &env,
            &["--policy", &format!("{}/corp", env.ns), "-o", "json"],
        );
        let rows: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
        let posture: Vec<Value> = rows
            .into_iter()
            .filter(|r| r["kind"] == "posture")
            .collect();
        (posture.len() == 2).then_some(posture)
    })
    .await;
    let row = |user: &str| {
        rows.iter()
            .find(|r| r["user"] == user)
            .unwrap_or_else(|| panic!("no posture row for {user}: {rows:?}"))
    };
    assert_eq!(
        row("bob@example.com")["entitlement"],
        "posture:custom:jit-prod=true"
    );
    assert_eq!(row("bob@example.com")["how"], "on device bob-phone");
    assert_eq!(row("bob@example.com")["addedBy"], "grant bob-jit");
    assert_eq!(
        row("alice@example.com")["entitlement"],
        "posture:custom:tier=gold"
    );
    assert_eq!(row("alice@example.com")["addedBy"], "tailscale");
}
