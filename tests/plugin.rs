//! `kubectl tailkeeper` end to end: the built plugin, run as people run it (a kubeconfig that
//! is their identity, no terminal), against the real API server with the chart's admission
//! policies and persona roles, and the operator (under the chart's RBAC) acting on what it
//! writes. Requesters hold the chart's requester and viewer roles, approvers (who are also the
//! reviewers of access reviews) its approver role, an auditor the built-in view role.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::Resource;
use serde_json::Value;
use support::operator::{
    eventually, install_admission_policies, render_chart, token_integration, Env, CONVERGE,
};
use tailkeeper::api::RecordPart;
use tailkeeper::api::{
    find_condition, AccessGrant, AccessReview, AccessReviewDecision, GrantPhase, ReviewDecision,
};
use tailkeeper::entitlements::{AddedBy, Kind, Via};
use tailkeeper::records::{self, ShardSet};
use tailkeeper::reviews::{Decided, Item};
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
      # Approvals count only from people: carol approves as herself.
      - {loginNames: [carol@example.com], orgRole: engineer, kubernetesUsers: [carol]}
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

const REVIEW: &str = r#"
apiVersion: tailkeeper.io/v1alpha1
kind: AccessReview
metadata: {name: q3}
spec:
  policyRef: {name: jit}
  scope: {groups: ["group:prod", "group:oncall"]}
  reviewers: {users: [carol, dave, audrey], groups: [approvers]}
  duration: 336h
---
apiVersion: tailkeeper.io/v1alpha1
kind: AccessReview
metadata: {name: q2}
spec:
  policyRef: {name: jit}
  scope: {everything: true}
  reviewers: {users: [carol]}
  duration: 336h
---
apiVersion: tailkeeper.io/v1alpha1
kind: AccessReview
metadata: {name: q4}
spec:
  policyRef: {name: jit}
  scope: {everything: true}
  reviewers: {users: [carol]}
  duration: 336h
"#;

fn review_item(id: &str, user: &str, entitlement: &str, reviewers: &[&str]) -> Item {
    Item {
        id: id.into(),
        user: user.into(),
        person: None,
        entitlement: entitlement.into(),
        kind: Kind::Group,
        description: entitlement.into(),
        via: Via::Direct,
        added_by: AddedBy::Person,
        reviewers: reviewers.iter().map(|r| r.to_string()).collect(),
        manager: None,
        decision: None,
        applied: None,
    }
}

/// What the operator does when a campaign opens: its items written as gzipped JSON shards the
/// review owns, and named with their digest in its status.
async fn open_review(env: &Env, name: &str, items: &[Item]) -> AccessReview {
    let reviews: Api<AccessReview> = Api::namespaced(env.client.clone(), &env.ns);
    let review = reviews.get(name).await.expect("review");
    let uid = review.metadata.uid.clone().expect("uid");
    let encoded = tailkeeper::entitlements::shards::encode_json(&items).expect("encode");
    let set = ShardSet {
        namespace: &env.ns,
        prefix: format!("{name}-items"),
        review: name.to_string(),
        part: RecordPart::Items,
        owner: review.controller_owner_ref(&()),
        retain_until: None,
        review_uid: uid,
        field_manager: "tailkeeper-tests",
    };
    let names = records::write(&env.client, &set, &encoded)
        .await
        .expect("items written");
    let due = Timestamp::now() + jiff::SignedDuration::from_hours(49);
    set_review_status(
        env,
        name,
        serde_json::json!({
            "phase": "Open",
            "startedAt": Timestamp::now().to_string(),
            "dueAt": due.to_string(),
            "itemsRecords": names,
            "itemsDigest": encoded.digest,
        }),
    )
    .await
}

async fn set_review_status(env: &Env, name: &str, status: Value) -> AccessReview {
    Api::<AccessReview>::namespaced(env.client.clone(), &env.ns)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await
        .expect("review status")
}

fn decisions(env: &Env) -> Api<AccessReviewDecision> {
    Api::namespaced(env.client.clone(), &env.ns)
}

async fn all_decisions(env: &Env) -> Vec<AccessReviewDecision> {
    decisions(env)
        .list(&ListParams::default())
        .await
        .expect("list decisions")
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviewers_see_their_share_and_their_items_and_decide_in_bulk_bound_to_the_campaign() {
    let (mut env, people) = setup("plugin-review").await;
    // This test plays the operator's part itself (the campaigns' items and status, the answers
    // to decisions): the operator stops first so that the two never race.
    env.operator.kill();
    let ns = env.ns.as_str();
    env.apply(REVIEW).await;
    // carol reviews i1 by name and i2 through her group approvers; i3 is dave's, i5 audrey's;
    // carol decided i4 already.
    let mut decided = review_item("i4", "erin@example.com", "group:oncall", &["user:carol"]);
    decided.decision = Some(Decided {
        decision: ReviewDecision::Keep,
        by: "carol".into(),
        at: Timestamp::now(),
        comment: None,
        record: Some("q3-carol-earlier".into()),
    });
    let items = [
        review_item("i1", "alice@example.com", "group:prod", &["user:carol"]),
        review_item("i2", "bob@example.com", "group:prod", &["group:approvers"]),
        review_item("i3", "mallory@example.com", "group:oncall", &["user:dave"]),
        decided,
        review_item("i5", "frank@example.com", "group:oncall", &["user:audrey"]),
    ];
    let q3 = open_review(&env, "q3", &items).await;
    set_review_status(
        &env,
        "q2",
        serde_json::json!({"phase": "Completed", "message": "every item decided"}),
    )
    .await;
    set_review_status(
        &env,
        "q4",
        serde_json::json!({"phase": "Open", "message": "waiting for the entitlements inventory of jit"}),
    )
    .await;

    // The open campaigns and my share: assigned and undecided; q2 is over, q4 has no items yet.
    let list = succeeded(plugin(&people.carol, ns, &["review"]));
    let r = row(&list, "q3");
    assert_eq!(r[..4], ["q3", "jit", "3", "2"], "{list}");
    assert!(
        r[5].starts_with("2d") || r[5].starts_with("1d23h"),
        "{list}"
    );
    assert_eq!(row(&list, "q4")[2..4], ["-", "-"], "{list}");
    assert!(
        list.contains("q4: no items yet: waiting for the entitlements inventory of jit"),
        "{list}"
    );
    assert!(!list.contains("q2"), "{list}");
    assert_eq!(
        row(&succeeded(plugin(&people.dave, ns, &["review"])), "q3")[2..4],
        ["1", "1"]
    );
    // `pending` says what awaits carol in reviews too; mallory (no reviewer) sees nothing of it.
    let pending = succeeded(plugin(&people.carol, ns, &["pending"]));
    assert!(
        pending.contains("Access reviews awaiting you:")
            && row(&pending, "q3")[..4] == ["q3", "jit", "3", "2"],
        "{pending}"
    );
    let out = plugin(&people.mallory, ns, &["pending"]);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!succeeded(out).contains("Access reviews"));

    // My items only, undecided first; as JSON and CSV too.
    let mine = succeeded(plugin(&people.carol, ns, &["review", "q3"]));
    let ids: Vec<&str> = mine
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(ids, ["i1", "i2", "i4"], "{mine}");
    assert_eq!(
        row(&mine, "i1"),
        [
            "i1",
            "alice@example.com",
            "-",
            "group:prod",
            "direct",
            "person",
            "-"
        ]
    );
    assert_eq!(row(&mine, "i4")[6], "Keep/carol", "{mine}");
    assert!(
        mine.contains("3 of your 3 items shown; 2 undecided, due "),
        "{mine}"
    );
    let json: Vec<Value> = serde_json::from_str(&succeeded(plugin(
        &people.carol,
        ns,
        &["review", "q3", "-o", "json"],
    )))
    .expect("JSON");
    assert_eq!(
        json.iter().map(|i| i["id"].as_str()).collect::<Vec<_>>(),
        [Some("i1"), Some("i2"), Some("i4")]
    );
    let csv = succeeded(plugin(
        &people.carol,
        ns,
        &[
            "review",
            "q3",
            "--undecided",
            "--user",
            "bob@example.com",
            "-o",
            "csv",
        ],
    ));
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(
        csv.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("i2,bob@example.com,")),
        "{csv}"
    );

    // An id that is not mine refuses the whole decision before anything is written.
    let e = failed(plugin(
        &people.carol,
        ns,
        &[
            "review",
            "q3",
            "--revoke",
            "--items",
            "i1,i3",
            "--comment",
            "gone",
            "--yes",
        ],
    ));
    assert!(
        e.contains("nothing decided: of the 2 items named, this is not yours to decide")
            && e.contains("i3: not assigned to carol or any group you are in"),
        "{e}"
    );
    // Revoking needs a reason.
    let e = failed(plugin(
        &people.carol,
        ns,
        &["review", "q3", "--revoke", "--items", "i1", "--yes"],
    ));
    assert!(e.contains("--comment"), "{e}");
    assert!(all_decisions(&env).await.is_empty());

    // Keep all my undecided items: one decision, by carol, bound to q3's UID, through the one
    // group of hers that covers i2. The test answers as the operator would while the plugin
    // waits.
    let (kubeconfig, namespace) = (people.carol.clone(), env.ns.clone());
    let run = tokio::task::spawn_blocking(move || {
        plugin(
            &kubeconfig,
            &namespace,
            &[
                "review",
                "q3",
                "--keep",
                "--all-undecided",
                "--comment",
                "still on call",
                "--yes",
            ],
        )
    });
    let decision = eventually("carol's decision", CONVERGE, || async {
        all_decisions(&env).await.into_iter().next()
    })
    .await;
    let name = decision.metadata.name.clone().expect("name");
    decisions(&env)
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {
                "accepted": 1, "refused": 1,
                "refusals": [{"item": "i2", "reason": "your own access: another reviewer must decide it"}],
                "observedAt": Timestamp::now().to_string(),
            }})),
        )
        .await
        .expect("decision status");
    let out = succeeded(run.await.expect("plugin ran"));
    for shown in [
        &format!("Keep 2 items of AccessReview q3 in namespace {ns} (policy jit)?"),
        "deciding as  carol through reviewer group approvers",
        "comment      still on call",
        &format!("accessreviewdecision.tailkeeper.io/{name} created (2 items)"),
        &format!("accessreviewdecision.tailkeeper.io/{name}: 1 accepted, 1 refused"),
        "refused i2: your own access: another reviewer must decide it",
    ] {
        assert!(out.contains(shown), "{shown:?} in\n{out}");
    }
    assert!(name.starts_with("q3-carol-"), "{name}");
    let spec = &decision.spec;
    assert_eq!(
        (
            spec.reviewer.as_str(),
            spec.review_ref.name.as_str(),
            Some(spec.review_ref.uid.as_str()),
        ),
        ("carol", "q3", q3.metadata.uid.as_deref())
    );
    assert_eq!(spec.items, ["i1", "i2"]);
    assert_eq!(spec.group.as_deref(), Some("approvers"));
    assert_eq!(spec.decision, ReviewDecision::Keep);
    assert_eq!(spec.comment.as_deref(), Some("still on call"));

    // dave decides by name; nobody answers in time: the decision is recorded, and how to
    // check it is said.
    let out = succeeded(plugin(
        &people.dave,
        ns,
        &[
            "review",
            "q3",
            "--revoke",
            "--items",
            "i3",
            "--comment",
            "left the team",
            "--yes",
            "--wait",
            "1s",
        ],
    ));
    assert!(
        out.contains("has not taken it into account yet")
            && out.contains("kubectl get ard q3-dave-"),
        "{out}"
    );
    let daves = all_decisions(&env)
        .await
        .into_iter()
        .find(|d| d.spec.reviewer == "dave")
        .expect("dave's decision");
    assert_eq!(
        (
            daves.spec.items.as_slice(),
            daves.spec.group.as_deref(),
            daves.spec.decision
        ),
        (&["i3".to_string()][..], None, ReviewDecision::Revoke)
    );

    // Campaigns that cannot be reviewed say why.
    let e = failed(plugin(&people.carol, ns, &["review", "nope"]));
    assert!(
        e.contains(&format!("AccessReview nope not found in namespace {ns}"))
            && e.contains("kubectl tailkeeper review -n"),
        "{e}"
    );
    let e = failed(plugin(&people.carol, ns, &["review", "q2"]));
    assert!(
        e.contains("AccessReview q2 is Completed: the campaign is over"),
        "{e}"
    );
    let e = failed(plugin(&people.carol, ns, &["review", "q4"]));
    assert!(
        e.contains(
            "AccessReview q4 has no items yet: waiting for the entitlements inventory of jit"
        ),
        "{e}"
    );
    // Refusals are quoted: mallory may not read the items.
    let e = failed(plugin(&people.mallory, ns, &["review", "q3"]));
    assert!(
        e.contains("the API server refused to read the items of AccessReview q3 (HTTP 403")
            && e.contains("accessreviewrecords"),
        "{e}"
    );
    // The built-in view role reads campaigns, not their items (nor decides on them).
    let e = failed(plugin(
        &people.audrey,
        ns,
        &[
            "review", "q3", "--keep", "--items", "i5", "--yes", "--wait", "0s",
        ],
    ));
    assert!(
        e.contains("the API server refused to read the items of AccessReview q3 (HTTP 403")
            && e.contains("accessreviewrecords"),
        "{e}"
    );
    assert_eq!(all_decisions(&env).await.len(), 2);
}
