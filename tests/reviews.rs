//! Access reviews end to end: the operator (under the chart's RBAC) snapshots a campaign from
//! the entitlements inventory, takes reviewers' decisions only as the cluster proves them
//! (the chart's admission policies), revokes through the deprovisioning engine, closes
//! overdue campaigns, recurs, and leaves an evidence record.

mod support;

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::operator::{eventually, install_admission_policies, token_integration, Env, CONVERGE};
use tailkeeper::api::{AccessReview, AccessReviewDecision, ReviewPhase};
use tailkeeper::reviews::{Item, Outcome};
use tailscale_sim::{SimConfig, SimUser, Simulator};

/// A hand-kept policy file: erin and mallory are in group:prod, added by a person.
const POLICY_FILE: &str = "// Example Corp.
{
\t\"groups\": {
\t\t\"group:prod\": [
\t\t\t\"erin@example.com\", // platform team
\t\t\t\"mallory@example.com\",
\t\t\t\"frank@example.com\",
\t\t],
\t},
\t\"grants\": [
\t\t{\"src\": [\"group:prod\"], \"dst\": [\"tag:prod\"], \"ip\": [\"*\"]},
\t],
}
";

const POLICY: &str = r#"
apiVersion: tailkeeper.io/v1alpha1
kind: AccessPolicy
metadata: {name: uar}
spec:
  integrationRef: {name: tailnet}
  directory:
    people:
      - {loginNames: [alice@example.com], orgRole: admin, kubernetesUsers: [alice]}
      - {loginNames: [bob@example.com], orgRole: admin, kubernetesUsers: [bob]}
      - {loginNames: [carol@example.com], orgRole: manager, kubernetesUsers: [carol]}
      - {loginNames: [erin@example.com], orgRole: engineer, manager: carol@example.com}
      - {loginNames: [mallory@example.com], orgRole: engineer, kubernetesUsers: [mallory]}
      - {loginNames: [frank@example.com], orgRole: engineer, manager: carol@example.com}
  roles:
    - {orgRole: admin, tailscaleRoles: [admin, member]}
    - {orgRole: manager, tailscaleRoles: [member]}
    - {orgRole: engineer, tailscaleRoles: [member]}
"#;

/// Everyone may write decisions and read campaigns: the admission policies decide whose count.
const REVIEWERS_RBAC: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reviewers}
rules:
  - apiGroups: [tailkeeper.io]
    resources: [accessreviews, accessreviewdecisions]
    verbs: [get, list, watch, create]
  - apiGroups: [tailkeeper.io]
    resources: [accessreviewrecords]
    verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reviewers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reviewers}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:authenticated"}
"#;

async fn setup(prefix: &str) -> Env {
    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    for (login, role) in [
        ("alice@example.com", "admin"),
        ("bob@example.com", "admin"),
        ("carol@example.com", "member"),
        ("erin@example.com", "member"),
        ("mallory@example.com", "member"),
        ("frank@example.com", "member"),
    ] {
        sim.add_user(SimUser::member(login, role, "active"));
    }
    sim.set_policy_as_human(POLICY_FILE);
    let env = Env::new(prefix, sim).await;
    install_admission_policies(env.cp).await;
    env.apply(&format!(
        "{}\n---\n{POLICY}\n---\n{REVIEWERS_RBAC}",
        token_integration(&env)
    ))
    .await;
    env.integration_condition("tailnet", "Ready", "True").await;
    eventually("the entitlements inventory", CONVERGE, || async {
        let p = env.policies().get("uar").await.ok()?;
        p.status?.entitlements?.digest.map(|_| ())
    })
    .await;
    env
}

/// Once the operator has evaluated the policy's latest spec (its cache holds what campaigns
/// read).
async fn evaluated_again(env: &Env) {
    eventually("the policy to be evaluated again", CONVERGE, || async {
        let p = env.policies().get("uar").await.ok()?;
        (p.status?.observed_generation == p.metadata.generation).then_some(())
    })
    .await;
}

fn reviews(env: &Env) -> Api<AccessReview> {
    Api::namespaced(env.client.clone(), &env.ns)
}

async fn opened(env: &Env, name: &str) -> (AccessReview, Vec<Item>) {
    let review = eventually("the campaign to open", CONVERGE, || async {
        let r = reviews(env).get(name).await.ok()?;
        r.status.as_ref()?.items_digest.as_ref()?;
        Some(r)
    })
    .await;
    let items = tailkeeper::records::review_items(&env.client, &review)
        .await
        .expect("items");
    (review, items)
}

/// `as_user` decides `decision` on the items of `ids`.
async fn decide(
    env: &Env,
    as_user: &str,
    review: &AccessReview,
    reviewer: &str,
    decision: &str,
    ids: &[&str],
) -> Result<AccessReviewDecision, kube::Error> {
    let client: Client = env.cp.client_as(as_user).await;
    let d: AccessReviewDecision = serde_json::from_value(json!({
        "apiVersion": "tailkeeper.io/v1alpha1", "kind": "AccessReviewDecision",
        "metadata": {"generateName": format!("{}-{as_user}-", review.metadata.name.as_deref().unwrap_or_default())},
        "spec": {"reviewRef": {"name": review.metadata.name, "uid": review.metadata.uid},
                 "reviewer": reviewer, "decision": decision, "comment": "looked at it",
                 "items": ids}
    }))
    .expect("decision");
    Api::<AccessReviewDecision>::namespaced(client, &env.ns)
        .create(&PostParams::default(), &d)
        .await
}

/// The decision as the operator recorded it.
async fn recorded(
    env: &Env,
    d: &AccessReviewDecision,
) -> tailkeeper::api::AccessReviewDecisionStatus {
    let name = d.metadata.name.clone().unwrap_or_default();
    let api = Api::<AccessReviewDecision>::namespaced(env.client.clone(), &env.ns);
    let deadline = std::time::Instant::now() + CONVERGE;
    loop {
        let got = api.get(&name).await;
        if let Some(status) = got
            .as_ref()
            .ok()
            .and_then(|d| d.status.clone())
            .filter(|s| s.observed_at.is_some())
        {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let review = Api::<AccessReview>::namespaced(env.client.clone(), &env.ns)
                .get(&d.spec.review_ref.name)
                .await;
            panic!("decision {name} not recorded: {got:?}\nreview: {review:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn refused<T: std::fmt::Debug>(result: Result<T, kube::Error>, why: &str, needle: &str) {
    let err = result.expect_err(why);
    assert!(err.to_string().contains(needle), "{why}: {err}");
}

fn item_of<'a>(items: &'a [Item], user: &str) -> &'a Item {
    items
        .iter()
        .find(|i| i.user == user)
        .unwrap_or_else(|| panic!("no item of {user}: {items:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_over_admins_takes_only_proven_decisions_of_assigned_reviewers() {
    let env = setup("uar-admins").await;
    env.apply(
        r#"
apiVersion: tailkeeper.io/v1alpha1
kind: AccessReview
metadata: {name: admins}
spec:
  policyRef: {name: uar}
  scope: {roles: [admin]}
  reviewers: {users: [alice, bob]}
  duration: 1h
  recurrence: {everyDays: 90}
  description: Quarterly review of tailnet admins
"#,
    )
    .await;
    let (review, items) = opened(&env, "admins").await;
    assert_eq!(items.len(), 2, "{items:?}");
    let alice = item_of(&items, "alice@example.com").id.clone();
    let bob = item_of(&items, "bob@example.com").id.clone();
    assert_eq!(item_of(&items, "bob@example.com").entitlement, "role:admin");
    assert_eq!(
        item_of(&items, "alice@example.com").reviewers,
        ["user:alice", "user:bob"]
    );

    // The API server refuses a decision in another's name, by a non-reviewer, or for another
    // campaign's UID.
    refused(
        decide(&env, "bob", &review, "alice", "Keep", &[&alice]).await,
        "bob cannot sign as alice",
        "spec.reviewer must be your own user name: set it to bob",
    );
    refused(
        decide(&env, "mallory", &review, "mallory", "Revoke", &[&alice]).await,
        "mallory reviews nothing",
        "mallory is not a reviewer of AccessReview admins",
    );
    let mut stale = review.clone();
    stale.metadata.uid = Some("0000-not-this-one".into());
    refused(
        decide(&env, "bob", &stale, "bob", "Keep", &[&alice]).await,
        "a recreated campaign is another",
        "spec.reviewRef.uid must be the UID of the campaign you reviewed",
    );

    // Alice may not review her own access: the operator refuses that item and takes the other.
    let own = decide(&env, "alice", &review, "alice", "Keep", &[&alice, &bob])
        .await
        .expect("alice is a reviewer");
    let status = recorded(&env, &own).await;
    assert_eq!((status.accepted, status.refused), (1, 1), "{status:?}");
    assert_eq!(status.refusals[0].item, alice);
    assert!(
        status.refusals[0].reason.contains("your own access"),
        "{status:?}"
    );
    // Bob decides alice's; the campaign completes, with evidence.
    let other = decide(&env, "bob", &review, "bob", "Keep", &[&alice])
        .await
        .expect("bob is a reviewer");
    assert_eq!(recorded(&env, &other).await.accepted, 1);
    let done = eventually("the campaign completed", CONVERGE, || async {
        let r = reviews(&env).get("admins").await.ok()?;
        (r.status.as_ref()?.phase == Some(ReviewPhase::Completed)
            && r.status.as_ref()?.evidence.is_some())
        .then_some(r)
    })
    .await;
    let counts = done.status.as_ref().and_then(|s| s.counts.clone()).unwrap();
    assert_eq!(
        (counts.items, counts.decided, counts.kept, counts.revoked),
        (2, 2, 2, 0)
    );
    let evidence = tailkeeper::records::review_evidence(&env.client, &done)
        .await
        .expect("evidence");
    assert_eq!(evidence.phase, "Completed");
    assert_eq!(evidence.items.len(), 2);
    let by: Vec<(&str, &str)> = evidence
        .items
        .iter()
        .map(|i| {
            (
                i.user.as_str(),
                i.decision.as_ref().map_or("", |d| d.by.as_str()),
            )
        })
        .collect();
    assert_eq!(
        by,
        [("alice@example.com", "bob"), ("bob@example.com", "alice")]
    );
    assert_eq!(evidence.checks.len(), 4, "the four checks at the end");
    assert_eq!(
        evidence.description.as_deref(),
        Some("Quarterly review of tailnet admins")
    );
    // The exports say the same: CSV and JSON through the plugin, as an auditor runs it.
    let kubeconfig = env.cp.impersonating_kubeconfig("carol", &["auditors"]);
    let export = |format: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-tailkeeper"))
            .args(["evidence", "admins", "-o", format, "-n", &env.ns])
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .expect("kubectl-tailkeeper runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let exported: tailkeeper::reviews::Evidence =
        serde_json::from_str(&export("json")).expect("the JSON export is the record");
    assert_eq!(exported, evidence);
    let csv = export("csv");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name} in {headers:?}"))
    };
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    let decided: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r[column("user")].as_str(),
                r[column("decision")].as_str(),
                r[column("decidedBy")].as_str(),
                r[column("comment")].as_str(),
            )
        })
        .collect();
    assert_eq!(
        decided,
        [
            ("alice@example.com", "Keep", "bob", "looked at it"),
            ("bob@example.com", "Keep", "alice", "looked at it")
        ]
    );
    assert!(export("html").contains("Access review"));

    // The record cannot be changed: its AccessReviewRecords are immutable.
    let record = &done
        .status
        .as_ref()
        .unwrap()
        .evidence
        .as_ref()
        .unwrap()
        .records[0];
    let records: Api<tailkeeper::api::AccessReviewRecord> =
        Api::namespaced(env.client.clone(), &env.ns);
    refused(
        records
            .patch(
                record,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"data": "AAAA"}})),
            )
            .await,
        "evidence is immutable",
        "evidence records are immutable",
    );
    // A decision after the end changes nothing.
    let late = decide(&env, "bob", &done, "bob", "Revoke", &[&bob])
        .await
        .expect("admitted");
    let _ = late;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = reviews(&env).get("admins").await.unwrap();
    assert_eq!(
        after.status.as_ref().unwrap().counts,
        done.status.as_ref().unwrap().counts
    );

    // Recurrence: once its interval has passed (here: the start moved back), the next campaign
    // starts by itself and names this one as its record.
    reviews(&env)
        .patch_status(
            "admins",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"startedAt": "2026-01-01T00:00:00Z"}})),
        )
        .await
        .expect("status");
    reviews(&env)
        .patch(
            "admins",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"description": "Quarterly review of tailnet admins (Q1)"}}),
            ),
        )
        .await
        .expect("touch");
    let (next, next_items) = opened(&env, "admins-2").await;
    assert_eq!(
        next.status.as_ref().unwrap().previous.as_deref(),
        Some("admins")
    );
    assert_eq!(next_items.len(), 2);
    assert!(
        next_items.iter().all(|i| i.decision.is_none()),
        "a fresh campaign"
    );
    let first = reviews(&env).get("admins").await.unwrap();
    assert_eq!(first.status.unwrap().next.as_deref(), Some("admins-2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managers_revoke_byte_exactly_and_undecided_items_are_revoked_when_overdue() {
    let env = setup("uar-prod").await;
    env.apply(
        r#"
apiVersion: tailkeeper.io/v1alpha1
kind: AccessReview
metadata: {name: prod}
spec:
  policyRef: {name: uar}
  scope: {groups: ["group:prod"]}
  reviewers: {managers: true, users: [bob]}
  duration: 25s
  undecided: Revoke
"#,
    )
    .await;
    let (review, items) = opened(&env, "prod").await;
    assert_eq!(items.len(), 3, "{items:?}");
    let erin = item_of(&items, "erin@example.com");
    assert_eq!(erin.manager.as_deref(), Some("carol@example.com"));
    assert_eq!(erin.reviewers, ["user:bob", "user:carol"]);
    assert_eq!(
        item_of(&items, "mallory@example.com").reviewers,
        ["user:bob"]
    );
    assert_eq!(
        item_of(&items, "frank@example.com").reviewers,
        ["user:bob", "user:carol"]
    );
    let (erin, mallory) = (
        erin.id.clone(),
        item_of(&items, "mallory@example.com").id.clone(),
    );

    // Carol, erin's manager, revokes erin's membership; she was not given mallory's.
    let d = decide(
        &env,
        "carol",
        &review,
        "carol",
        "Revoke",
        &[&erin, &mallory],
    )
    .await
    .expect("managers review");
    let status = recorded(&env, &d).await;
    assert_eq!((status.accepted, status.refused), (1, 1), "{status:?}");
    assert!(
        status.refusals[0].reason.contains("not assigned to carol"),
        "{status:?}"
    );
    // Bob keeps mallory; frank is left to the due time.
    let d = decide(&env, "bob", &review, "bob", "Keep", &[&mallory])
        .await
        .unwrap();
    assert_eq!(recorded(&env, &d).await.accepted, 1);

    // Erin's line went, and nothing else: byte for byte.
    // (A comment beside a removed entry stays where it was.)
    let without_erin = POLICY_FILE.replace(
        "\"erin@example.com\", // platform team",
        " // platform team",
    );
    let deadline = std::time::Instant::now() + CONVERGE;
    while env.sim.policy().0 != without_erin {
        if std::time::Instant::now() > deadline {
            let r = reviews(&env).get("prod").await.unwrap();
            panic!(
                "erin was not removed from group:prod: {}\nreview status: {:?}",
                env.sim.policy().0,
                r.status
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // At the due time frank's undecided item is revoked too, and the campaign is Overdue.
    let over = eventually("the campaign overdue", Duration::from_secs(60), || async {
        let r = reviews(&env).get("prod").await.ok()?;
        (r.status.as_ref()?.phase == Some(ReviewPhase::Overdue)
            && r.status.as_ref()?.evidence.is_some())
        .then_some(r)
    })
    .await;
    let expected = without_erin.replace("\t\t\t\"frank@example.com\",\n", "");
    assert_eq!(
        env.sim.policy().0,
        expected,
        "only erin's and frank's entries went"
    );
    let evidence = tailkeeper::records::review_evidence(&env.client, &over)
        .await
        .expect("evidence");
    let of = |user: &str| {
        evidence
            .items
            .iter()
            .find(|i| i.user == user)
            .unwrap()
            .clone()
    };
    let erin_item = of("erin@example.com");
    let applied = erin_item.applied.expect("applied");
    assert_eq!(applied.outcome, Outcome::Removed);
    assert_eq!(applied.removed[0].text, "\"erin@example.com\"");
    assert_eq!(erin_item.decision.unwrap().by, "carol");
    let frank_item = of("frank@example.com");
    assert_eq!(
        frank_item.decision.as_ref().unwrap().by,
        "",
        "decided by default"
    );
    assert_eq!(frank_item.applied.unwrap().outcome, Outcome::Removed);
    assert!(of("mallory@example.com").applied.is_none(), "kept");
    let counts = over.status.unwrap().counts.unwrap();
    assert_eq!(
        (counts.kept, counts.revoked, counts.applied, counts.decided),
        (1, 2, 2, 2)
    );
    let metrics = env.operator.metrics().await;
    for (state, n) in [
        ("undecided", 0),
        ("kept", 1),
        ("revoked", 2),
        ("pending", 0),
    ] {
        let line = format!(
            "tailkeeper_review_items{{namespace=\"{}\",review=\"prod\",state=\"{state}\"}} {n}",
            env.ns
        );
        assert!(metrics.contains(&line), "{line}\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_outlives_its_campaign_and_nobody_deletes_it_before_its_retention_ends() {
    let env = setup("uar-keep").await;
    env.policies()
        .patch(
            "uar",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"evidenceRetention": "30s"}})),
        )
        .await
        .expect("retention");
    evaluated_again(&env).await;
    env.apply(
        r#"
apiVersion: tailkeeper.io/v1alpha1
kind: AccessReview
metadata: {name: short}
spec:
  policyRef: {name: uar}
  scope: {roles: [admin]}
  reviewers: {users: [alice, bob]}
  duration: 2s
  undecided: Keep
"#,
    )
    .await;
    let over = eventually("the campaign's evidence", CONVERGE, || async {
        let r = reviews(&env).get("short").await.ok()?;
        r.status.as_ref()?.evidence.as_ref()?;
        Some(r)
    })
    .await;
    let evidence = tailkeeper::records::review_evidence(&env.client, &over)
        .await
        .expect("evidence");
    let names = over.status.unwrap().evidence.unwrap().records;
    let records: Api<tailkeeper::api::AccessReviewRecord> =
        Api::namespaced(env.client.clone(), &env.ns);
    let first = records.get(&names[0]).await.unwrap();
    assert!(
        first.metadata.owner_references.is_none(),
        "evidence belongs to no object: {:?}",
        first.metadata
    );
    assert_eq!(first.labels()["tailkeeper.io/retention"], "held");
    let until: jiff::Timestamp = first.annotations()["tailkeeper.io/retain-until"]
        .parse()
        .unwrap();
    let ended = jiff::Timestamp::now();
    assert!(
        until > ended + jiff::SignedDuration::from_secs(15)
            && until <= ended + jiff::SignedDuration::from_secs(31),
        "kept for the policy's 30s: {until}"
    );

    // Nobody deletes it, the cluster admin included, one by one or as a collection.
    refused(
        records.delete(&names[0], &Default::default()).await,
        "evidence is kept",
        "is evidence of access review short, kept until",
    );
    refused(
        records
            .delete_collection(&Default::default(), &Default::default())
            .await,
        "evidence is kept",
        "is evidence of access review short",
    );
    // Someone who may write and delete records (but is not the operator) cannot release it or
    // shorten its retention.
    env.apply(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: records-writer}
rules: [{apiGroups: [tailkeeper.io], resources: [accessreviewrecords], verbs: [get, list, update, patch, delete, deletecollection]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: records-writer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: records-writer}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: mallory}]
"#,
    )
    .await;
    let as_mallory: Api<tailkeeper::api::AccessReviewRecord> =
        Api::namespaced(env.cp.client_as("mallory").await, &env.ns);
    for change in [
        json!({"metadata": {"labels": {"tailkeeper.io/retention": "released"}}}),
        json!({"metadata": {"labels": {"tailkeeper.io/retention": null}}}),
        json!({"metadata": {"annotations": {"tailkeeper.io/retain-until": "2000-01-01T00:00:00Z"}}}),
    ] {
        refused(
            as_mallory
                .patch(&names[0], &PatchParams::default(), &Patch::Merge(&change))
                .await,
            "only the operator releases evidence",
            "only Tailkeeper releases it",
        );
    }
    // The policy admin deletes the campaign: its evidence stays (with the garbage collector
    // running where the control plane has one).
    reviews(&env)
        .delete("short", &Default::default())
        .await
        .expect("the campaign goes");
    eventually("the campaign to be gone", CONVERGE, || async {
        reviews(&env)
            .get_opt("short")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    if env.cp.has_controller_manager() {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let kept = tailkeeper::records::read::<tailkeeper::reviews::Evidence>(
        &env.client,
        &env.ns,
        "short",
        tailkeeper::api::RecordPart::Evidence,
        &names,
        &first.spec.digest,
    )
    .await
    .expect("the evidence outlived its campaign");
    assert_eq!(kept, evidence);

    // Once the retention has passed, the operator releases it and it may be deleted.
    let released = eventually(
        "the evidence to be released",
        Duration::from_secs(60),
        || async {
            let r = records.get(&names[0]).await.ok()?;
            (r.labels()
                .get("tailkeeper.io/retention")
                .map(String::as_str)
                == Some("released"))
            .then_some(r)
        },
    )
    .await;
    assert!(jiff::Timestamp::now() >= until, "{released:?}");
    let said = env.events("RetentionEnded").await;
    assert!(
        said.iter()
            .any(|e| e.message.as_deref().unwrap_or_default().contains(&names[0])),
        "{said:?}"
    );
    for name in &names {
        eventually("the released record to be deletable", CONVERGE, || async {
            records
                .delete(name, &Default::default())
                .await
                .ok()
                .map(|_| ())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_limit_is_the_policys_across_its_campaigns_and_counts_people() {
    let env = setup("uar-daily").await;
    env.policies()
        .patch(
            "uar",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"enforcement": {"maxChangesPer24Hours": 1}}})),
        )
        .await
        .expect("limit");
    evaluated_again(&env).await;
    for name in ["first", "second"] {
        env.apply(&format!(
            r#"
apiVersion: tailkeeper.io/v1alpha1
kind: AccessReview
metadata: {{name: {name}}}
spec:
  policyRef: {{name: uar}}
  scope: {{groups: ["group:prod"]}}
  reviewers: {{users: [bob]}}
  duration: 1h
"#
        ))
        .await;
    }
    let (first, first_items) = opened(&env, "first").await;
    let (second, second_items) = opened(&env, "second").await;
    let id = |items: &[Item], user: &str| item_of(items, user).id.clone();

    // The first campaign takes the day's one person: erin.
    let d = decide(
        &env,
        "bob",
        &first,
        "bob",
        "Revoke",
        &[&id(&first_items, "erin@example.com")],
    )
    .await
    .unwrap();
    assert_eq!(recorded(&env, &d).await.accepted, 1);
    eventually("erin's entry to go", CONVERGE, || async {
        (!env.sim.policy().0.contains("erin@example.com")).then_some(())
    })
    .await;
    eventually("the first campaign to record it", CONVERGE, || async {
        let r = reviews(&env).get("first").await.ok()?;
        (r.status?.recent_revocations.first()?.login_name == "erin@example.com").then_some(())
    })
    .await;

    // The second campaign's revocation of another person waits for the policy's limit.
    let d = decide(
        &env,
        "bob",
        &second,
        "bob",
        "Revoke",
        &[&id(&second_items, "mallory@example.com")],
    )
    .await
    .unwrap();
    assert_eq!(recorded(&env, &d).await.accepted, 1);
    let waiting = eventually("the second campaign to wait", CONVERGE, || async {
        let r = reviews(&env).get("second").await.ok()?;
        let message = r.status?.message?;
        message.contains("revocations wait").then_some(message)
    })
    .await;
    assert!(
        waiting.contains(
            "the policy changed 1 person in the last 24 hours (enforcement and access reviews together)"
        ),
        "{waiting}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        env.sim.policy().0.contains("mallory@example.com"),
        "the second campaign did not exceed the policy's limit"
    );

    // A second day's worth: mallory's entry goes.
    env.policies()
        .patch(
            "uar",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"enforcement": {"maxChangesPer24Hours": 2}}})),
        )
        .await
        .expect("limit");
    eventually("mallory's entry to go", Duration::from_secs(60), || async {
        (!env.sim.policy().0.contains("mallory@example.com")).then_some(())
    })
    .await;
    assert!(env.sim.policy().0.contains("frank@example.com"));
}
