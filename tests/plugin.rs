//! `kubectl tailkeeper` end to end: the built plugin, run as people run it (a kubeconfig that
//! is their identity, no terminal), against the real API server with the chart's admission
//! policies and persona roles, and the operator (under the chart's RBAC) acting on what it
//! writes. Requesters hold the chart's requester and viewer roles, approvers its approver role,
//! an auditor the built-in view role.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::operator::{
    eventually, install_admission_policies, render_chart, token_integration, Env, CONVERGE,
};
use tailkeeper::api::{find_condition, AccessGrant, GrantPhase};
use tailscale_sim::{SimConfig, SimUser, Simulator};

const POLICY_FILE: &str = "{
\t\"groups\": {
\t\t\"group:prod\":   [],
\t\t\"group:oncall\": [],
\t},
}
";

const POLICY: &str = r#"
apiVersion: tailkeeper.io/v1alpha1
kind: AccessPolicy
metadata: {name: jit}
spec:
  integrationRef: {name: tailnet}
  directory:
    people:
      - {loginNames: [alice@example.com], orgRole: engineer, kubernetesUsers: [alice]}
      - {loginNames: [bob@example.com], orgRole: engineer, kubernetesUsers: [bob]}
      - {loginNames: [mallory@example.com], orgRole: engineer}
  roles:
    - {orgRole: engineer, tailscaleRoles: [member]}
  grantable:
    groups:
      - {name: "group:prod", terms: {maxDuration: 1h, approvalRequired: false}}
      - name: "group:oncall"
        terms: {maxDuration: 8h, approvers: {groups: [approvers]}}
"#;

/// Who holds which of the chart's persona roles here (bob both requests and approves).
const PEOPLE_RBAC: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: requesters}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tailkeeper-requester}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: mallory}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: viewers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tailkeeper-view}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: mallory}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: approvers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tailkeeper-approver}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: carol}
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: dave}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: auditors}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: audrey}
"#;

/// The people of these tests: their Kubernetes identities as the API server sees them.
struct People {
    alice: PathBuf,
    bob: PathBuf,
    carol: PathBuf,
    dave: PathBuf,
    mallory: PathBuf,
    audrey: PathBuf,
}

async fn setup(prefix: &str) -> (Env, People) {
    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    for login in [
        "alice@example.com",
        "bob@example.com",
        "mallory@example.com",
    ] {
        sim.add_user(SimUser::member(login, "member", "active"));
    }
    sim.set_policy_as_human(POLICY_FILE);
    let env = Env::new(prefix, sim).await;
    install_admission_policies(env.cp).await;
    let roles = render_chart(env.cp, &["--show-only", "templates/aggregated-roles.yaml"]);
    env.cp
        .apply_yaml(&roles, None)
        .await
        .expect("persona roles apply");
    env.apply(&format!(
        "{}\n---\n{POLICY}\n---\n{PEOPLE_RBAC}",
        token_integration(&env)
    ))
    .await;
    env.integration_condition("tailnet", "Ready", "True").await;
    let as_ = |user: &str, groups: &[&str]| env.cp.impersonating_kubeconfig(user, groups);
    let people = People {
        alice: as_("alice", &["dev"]),
        bob: as_("bob", &["sre", "approvers"]),
        carol: as_("carol", &["approvers"]),
        dave: as_("dave", &["dev"]),
        mallory: as_("mallory", &[]),
        audrey: as_("audrey", &["auditors"]),
    };
    (env, people)
}

/// `kubectl tailkeeper <args> -n <namespace>` as the identity of `kubeconfig`, without a
/// terminal.
fn plugin(kubeconfig: &Path, ns: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-tailkeeper"))
        .args(args)
        .args(["-n", ns])
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        .output()
        .expect("kubectl-tailkeeper runs")
}

/// Its stdout, once it succeeded.
fn succeeded(out: Output) -> String {
    assert!(
        out.status.success(),
        "kubectl tailkeeper failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Its stderr, once it failed.
fn failed(out: Output) -> String {
    assert!(
        !out.status.success(),
        "kubectl tailkeeper should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).expect("utf-8")
}

/// The row of `name` in a table the plugin printed, split into its cells (one word each here).
fn row(table: &str, name: &str) -> Vec<String> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn request_oncall(env: &Env, who: &Path, name: &str, user: &str) -> String {
    succeeded(plugin(
        who,
        &env.ns,
        &[
            "request",
            "--group",
            "oncall",
            "--user",
            user,
            "--for",
            "1h",
            "--reason",
            "incident 4711",
            "--policy",
            "jit",
            "--name",
            name,
        ],
    ))
}

fn ready_reason(g: &AccessGrant) -> (String, String) {
    let c = find_condition(&g.status.as_ref().expect("status").conditions, "Ready")
        .expect("Ready")
        .clone();
    (c.reason, c.message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_approved_and_followed_with_the_plugin_and_shows_in_the_inventory() {
    let (env, people) = setup("plugin-approve").await;
    let ns = env.ns.as_str();

    let out = request_oncall(&env, &people.alice, "alice-oncall", "alice@example.com");
    assert!(
        out.starts_with("accessgrant.tailkeeper.io/alice-oncall created\n"),
        "{out}"
    );
    assert!(
        out.contains("approvers: group approvers")
            && out.contains(&format!("kubectl tailkeeper approve alice-oncall -n {ns}")),
        "{out}"
    );
    // The plugin asked the API server who alice is: the admission policy agreed.
    let created = env.grants().get("alice-oncall").await.expect("created");
    assert_eq!(created.spec.requested_by.as_deref(), Some("alice"));
    env.grant_phase("alice-oncall", GrantPhase::AwaitingApproval)
        .await;

    // carol may decide it; alice (its requester) and mallory (no approver) have nothing pending.
    let pending = succeeded(plugin(&people.carol, ns, &["pending"]));
    let r = row(&pending, "alice-oncall");
    assert_eq!(
        r[..5],
        [
            "alice-oncall",
            "alice@example.com",
            "group:oncall",
            "1h",
            "alice"
        ],
        "{pending}"
    );
    assert!(pending.contains("incident 4711"), "{pending}");
    for (who, user) in [(&people.alice, "alice"), (&people.mallory, "mallory")] {
        let none = succeeded(plugin(who, ns, &["pending"]));
        assert!(
            none.contains(&format!("await a decision you ({user}) may give")),
            "{none}"
        );
    }

    // Without a terminal, nobody confirms: nothing is approved without --yes.
    let e = failed(plugin(&people.carol, ns, &["approve", "alice-oncall"]));
    assert!(
        e.contains("stdin is not a terminal") && e.contains("--yes"),
        "{e}"
    );
    assert!(env
        .grants()
        .get("alice-oncall")
        .await
        .expect("grant")
        .spec
        .approval
        .is_none());

    let out = succeeded(plugin(
        &people.carol,
        ns,
        &["approve", "alice-oncall", "--yes", "--comment", "go ahead"],
    ));
    assert!(
        out.starts_with(&format!(
            "Approve AccessGrant alice-oncall in namespace {ns}?\n"
        )),
        "{out}"
    );
    for shown in [
        "user         alice@example.com",
        "access       group:oncall",
        "duration     1h once active",
        "reason       incident 4711",
        "requested by alice",
        "deciding as  carol through approver group approvers",
        "accessgrant.tailkeeper.io/alice-oncall approved",
    ] {
        assert!(out.contains(shown), "{shown:?} in\n{out}");
    }
    let approval = env
        .grants()
        .get("alice-oncall")
        .await
        .expect("grant")
        .spec
        .approval
        .expect("approved");
    assert_eq!(
        (approval.approved_by.as_str(), approval.group.as_deref()),
        ("carol", Some("approvers"))
    );
    assert_eq!(approval.grant_uid, created.metadata.uid);

    env.grant_phase("alice-oncall", GrantPhase::Active).await;
    let mine = succeeded(plugin(&people.alice, ns, &["grants"]));
    let r = row(&mine, "alice-oncall");
    // NAME USER ACCESS DURATION PHASE REASON TIME-LEFT AGE
    assert_eq!(r[4], "Active", "{mine}");
    let left = &r[6];
    assert!(
        left.starts_with("59m") || left == "1h",
        "time left {left:?} in\n{mine}"
    );
    // Grants are listed by requester: carol requested none; --all shows everyone's.
    let carols = succeeded(plugin(&people.carol, ns, &["grants"]));
    assert!(carols.contains("No grants requested by carol"), "{carols}");
    let all = succeeded(plugin(&people.carol, ns, &["grants", "--all"]));
    assert!(all.contains("REQUESTED BY"), "{all}");
    assert_eq!(row(&all, "alice-oncall")[7], "alice", "{all}");

    // Who holds what: the grant's membership shows, added by the grant.
    let csv = eventually("the inventory to show the grant", CONVERGE, || async {
        let out = plugin(
            &people.audrey,
            ns,
            &[
                "access",
                "--policy",
                "jit",
                "--entitlement",
                "group:oncall",
                "-o",
                "csv",
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (out.status.success() && text.contains("grant alice-oncall")).then_some(text)
    })
    .await;
    assert!(
        csv.starts_with("user,person,entitlement,kind,description,how,addedBy\n"),
        "{csv}"
    );
    assert!(
        csv.lines()
            .any(|l| l.starts_with("alice@example.com,") && l.ends_with(",grant alice-oncall")),
        "{csv}"
    );
    let json: Vec<Value> = serde_json::from_str(&succeeded(plugin(
        &people.audrey,
        ns,
        &[
            "access",
            "--policy",
            &format!("{ns}/jit"),
            "--user",
            "alice@example.com",
            "-o",
            "json",
        ],
    )))
    .expect("JSON");
    assert!(
        json.iter().any(|h| h["entitlement"] == "group:oncall"),
        "{json:?}"
    );
    let e = failed(plugin(
        &people.audrey,
        ns,
        &["access", "--policy", "jit", "--user", "nobody@example.com"],
    ));
    assert!(
        e.contains("nobody@example.com is not a user of the tailnet"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_with_the_plugin_ends_the_grant_and_only_another_approver_may_give_it() {
    let (env, people) = setup("plugin-deny").await;
    let ns = env.ns.as_str();
    request_oncall(&env, &people.alice, "alice-oncall", "alice@example.com");
    env.grant_phase("alice-oncall", GrantPhase::AwaitingApproval)
        .await;

    // dave holds the approver role but is not an approver of this access: admission says so.
    let e = failed(plugin(&people.dave, ns, &["deny", "alice-oncall", "--yes"]));
    assert!(
        e.contains("the API server refused to deny AccessGrant alice-oncall (HTTP 403")
            && e.contains("dave is not an approver of this access in AccessPolicy jit"),
        "{e}"
    );
    // mallory may only request: RBAC refuses, and the message says which permission is missing.
    let e = failed(plugin(
        &people.mallory,
        ns,
        &["deny", "alice-oncall", "--yes"],
    ));
    assert!(
        e.contains("the API server refused to deny AccessGrant alice-oncall")
            && e.contains("cannot patch resource \"accessgrants\""),
        "{e}"
    );
    // A requester who is also an approver cannot deny their own request.
    request_oncall(&env, &people.bob, "bob-oncall", "bob@example.com");
    env.grant_phase("bob-oncall", GrantPhase::AwaitingApproval)
        .await;
    let e = failed(plugin(&people.bob, ns, &["deny", "bob-oncall", "--yes"]));
    assert!(
        e.contains("you cannot deny your own grant: to withdraw the request, delete it"),
        "{e}"
    );

    let out = succeeded(plugin(
        &people.bob,
        ns,
        &[
            "deny",
            "alice-oncall",
            "--yes",
            "--comment",
            "not during the freeze",
        ],
    ));
    assert!(
        out.starts_with(&format!(
            "Deny AccessGrant alice-oncall in namespace {ns}?\n"
        )) && out.contains("deciding as  bob through approver group approvers")
            && out.contains("accessgrant.tailkeeper.io/alice-oncall denied"),
        "{out}"
    );
    let denied = env.grant_phase("alice-oncall", GrantPhase::Denied).await;
    let (reason, message) = ready_reason(&denied);
    assert_eq!(reason, "DeniedByApprover");
    assert!(
        message
            .starts_with("denied by bob through approver group approvers: not during the freeze"),
        "{message}"
    );
    let mine = succeeded(plugin(&people.alice, ns, &["grants"]));
    let r = row(&mine, "alice-oncall");
    assert_eq!(
        (r[4].as_str(), r[5].as_str(), r[6].as_str()),
        ("Denied", "DeniedByApprover", "-"),
        "{mine}"
    );
    assert!(env.sim.policy().0.contains("\"group:oncall\": [],"));
    // A grant is decided once.
    let e = failed(plugin(
        &people.carol,
        ns,
        &["approve", "alice-oncall", "--yes"],
    ));
    assert!(e.contains("was already denied by bob"), "{e}");
    // The denied grant no longer awaits anyone; bob's own still waits for another approver.
    let pending = succeeded(plugin(&people.carol, ns, &["pending"]));
    assert!(
        !pending.contains("alice-oncall") && pending.contains("bob-oncall"),
        "{pending}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_quotes_refusals_and_changes_nothing_it_should_not() {
    let (env, people) = setup("plugin-errors").await;
    let ns = env.ns.as_str();

    // A grant that does not exist.
    let e = failed(plugin(&people.carol, ns, &["approve", "nope", "--yes"]));
    assert!(
        e.contains(&format!("AccessGrant nope not found in namespace {ns}"))
            && e.contains("kubectl tailkeeper pending"),
        "{e}"
    );
    // Approving one's own grant is refused by admission, in its words.
    request_oncall(&env, &people.bob, "bob-oncall", "bob@example.com");
    env.grant_phase("bob-oncall", GrantPhase::AwaitingApproval)
        .await;
    let e = failed(plugin(&people.bob, ns, &["approve", "bob-oncall", "--yes"]));
    assert!(
        e.contains("the API server refused to approve AccessGrant bob-oncall (HTTP 403, forbidden by RBAC or an admission policy)")
            && e.contains("you cannot approve your own grant: another approver must"),
        "{e}"
    );
    assert!(env
        .grants()
        .get("bob-oncall")
        .await
        .expect("grant")
        .spec
        .approval
        .is_none());

    // A request the policy would deny creates nothing, and says why.
    let e = failed(plugin(
        &people.alice,
        ns,
        &[
            "request",
            "--group",
            "oncall",
            "--user",
            "alice@example.com",
            "--for",
            "9h",
            "--reason",
            "long night",
            "--policy",
            "jit",
            "--name",
            "too-long",
        ],
    ));
    assert!(
        e.contains(
            "AccessPolicy jit would deny this request: duration 9h exceeds the maximum of 8h"
        ),
        "{e}"
    );
    let e = failed(plugin(
        &people.alice,
        ns,
        &[
            "request",
            "--role",
            "admin",
            "--user",
            "alice@example.com",
            "--for",
            "1h",
            "--reason",
            "x",
            "--policy",
            "nope",
        ],
    ));
    assert!(
        e.contains(&format!("AccessPolicy nope not found in namespace {ns}")),
        "{e}"
    );
    assert!(env
        .grants()
        .get_opt("too-long")
        .await
        .expect("read")
        .is_none());

    // Access that needs no approval activates by itself: there is nothing to decide.
    let out = succeeded(plugin(
        &people.alice,
        ns,
        &[
            "request",
            "--group",
            "group:prod",
            "--user",
            "alice@example.com",
            "--for",
            "30m",
            "--reason",
            "deploy",
            "--policy",
            "jit",
        ],
    ));
    assert!(out.contains("It needs no approval"), "{out}");
    let name = out
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("accessgrant.tailkeeper.io/"))
        .and_then(|l| l.strip_suffix(" created"))
        .expect("the generated name")
        .to_string();
    assert!(name.starts_with("alice-prod-"), "{name}");
    env.grant_phase(&name, GrantPhase::Active).await;
    let e = failed(plugin(&people.carol, ns, &["deny", &name, "--yes"]));
    assert!(
        e.contains("needs no approval")
            && e.contains(&format!("kubectl delete accessgrant {name}")),
        "{e}"
    );

    // Usage errors are clap's, before anything reaches the cluster.
    let e = failed(plugin(
        &people.alice,
        ns,
        &[
            "request",
            "--user",
            "alice@example.com",
            "--reason",
            "x",
            "--policy",
            "jit",
            "--for",
            "1h",
        ],
    ));
    assert!(e.contains("--group <GROUP>|--role <ROLE>"), "{e}");
    let e = failed(plugin(
        &people.alice,
        ns,
        &["--context", "elsewhere", "grants"],
    ));
    assert!(
        e.contains("cannot use the kubeconfig") && e.contains("elsewhere"),
        "{e}"
    );
}
