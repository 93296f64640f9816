//! Leader election: two operator processes for one namespace, under exactly the chart's RBAC,
//! against the shared control plane. One leads and writes, the other waits as a ready standby and
//! takes over when the leader dies (once its Lease expires) or shuts down (it releases the Lease).

mod support;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, Patch, PatchParams};
use support::operator::{
    chart_identity, demo_simulator, eventually, examples, Env, Operator, CONVERGE,
};
use support::ControlPlane;
use tailkeeper::api::CheckResultValue;

/// The holder of the operator's Lease (`tailkeeper` in the test namespace).
async fn holder(env: &Env) -> Option<String> {
    Api::<Lease>::namespaced(env.client.clone(), &env.ns)
        .get_opt("tailkeeper")
        .await
        .ok()??
        .spec?
        .holder_identity
}

/// Wait until the Lease names `identity` as holder.
async fn wait_for_holder(env: &Env, identity: &str) {
    eventually(
        &format!("{identity} to hold the Lease"),
        CONVERGE,
        || async { (holder(env).await.as_deref() == Some(identity)).then_some(()) },
    )
    .await;
}

/// The standby answers /readyz 200 "standby", has not reconciled anything and says it is no
/// leader.
async fn assert_standby(standby: &Operator) {
    assert_eq!(
        standby.readyz().await,
        Some((200, "standby".to_string())),
        "a standby is ready (so rolling updates complete) and says it is a standby"
    );
    let metrics = standby.metrics().await;
    assert!(metrics.contains("tailkeeper_leader 0"), "{metrics}");
    assert!(
        !metrics.contains("tailkeeper_reconciliations_total{"),
        "a standby reconciles nothing:\n{metrics}"
    );
    let logs = standby.logs();
    assert!(logs.contains("waiting for leadership"), "{logs}");
    assert!(!logs.contains("became leader"), "{logs}");
}

/// Edit the people CSV of the directory ConfigMap.
async fn edit_people(env: &Env, edit: impl FnOnce(&mut String)) {
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    let mut cm = cms.get("people").await.expect("people ConfigMap");
    edit(
        cm.data
            .as_mut()
            .and_then(|d| d.get_mut("people.csv"))
            .expect("people.csv"),
    );
    cms.replace("people", &Default::default(), &cm)
        .await
        .expect("replace the people ConfigMap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_a_standby_takes_over_on_death_and_on_shutdown() {
    let cp = ControlPlane::shared().await;
    let ns = cp.create_namespace("leader").await;
    let kubeconfig = chart_identity(cp, &ns).await;
    let a = Operator::start(&kubeconfig, &ns);
    let b = Operator::start(&kubeconfig, &ns);
    assert_ne!(a.identity(), b.identity());
    // Both serve /readyz with 200 at once, the leader once its caches are synced.
    a.wait_serving().await;
    b.wait_serving().await;

    let mut env = Env {
        client: cp.admin_client().await,
        kubeconfig,
        cp,
        ns,
        sim: demo_simulator().await,
        operator: a,
    };
    let first = eventually("a leader", CONVERGE, || holder(&env)).await;
    let mut standby = if first == env.operator.identity() {
        b
    } else {
        assert_eq!(first, b.identity(), "the holder is one of the two");
        std::mem::replace(&mut env.operator, b)
    };
    env.operator.wait_ready().await;
    assert!(env.operator.logs().contains("became leader"));
    assert!(env.operator.metrics().await.contains("tailkeeper_leader 1"));

    // The leader does the work: the examples converge.
    env.apply(&examples(&env.sim)).await;
    env.integration_condition("corp", "Ready", "True").await;
    let identified = env
        .check("corp", "UserIdentified", CheckResultValue::Fail)
        .await;
    assert_eq!(identified.failing_count, 1, "dave is not in the directory");
    assert_eq!(holder(&env).await.as_deref(), Some(first.as_str()));
    assert_standby(&standby).await;

    // The leader dies without a word (SIGKILL): the standby takes over once the Lease expires
    // and processes changes.
    env.operator.kill();
    wait_for_holder(&env, standby.identity()).await;
    let second = standby.identity().to_string();
    std::mem::swap(&mut env.operator, &mut standby);
    env.operator.wait_ready().await;
    assert!(env.operator.logs().contains("became leader"));
    edit_people(&env, |csv| {
        csv.push_str("dave@example.com,Dave Example,engineer,active,alice@example.com,\n")
    })
    .await;
    env.check("corp", "UserIdentified", CheckResultValue::Pass)
        .await;

    // A new standby; then the leader is stopped as Kubernetes stops a pod (SIGTERM). It finishes,
    // releases the Lease, and the standby takes over without waiting for it to expire.
    let third = Operator::start(&env.kubeconfig, &env.ns);
    third.wait_serving().await;
    assert_ne!(third.identity(), second);
    assert_standby(&third).await;
    assert_eq!(holder(&env).await.as_deref(), Some(second.as_str()));
    let status = env.operator.terminate().await;
    assert!(status.success(), "a graceful shutdown exits 0: {status}");
    let logs = env.operator.logs();
    assert!(logs.contains("released the Lease"), "{logs}");
    env.operator = third;
    wait_for_holder(&env, env.operator.identity()).await;
    assert_ne!(holder(&env).await.as_deref(), Some(second.as_str()));
    env.operator.wait_ready().await;

    // The new leader processes changes too: dave leaves the directory again.
    edit_people(&env, |csv| {
        *csv = csv
            .lines()
            .filter(|l| !l.starts_with("dave@"))
            .map(|l| format!("{l}\n"))
            .collect();
    })
    .await;
    let identified = env
        .check("corp", "UserIdentified", CheckResultValue::Fail)
        .await;
    assert_eq!(identified.failing_count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_loses_its_lease_stops_and_exits_non_zero() {
    let mut env = Env::new("leader-lost", demo_simulator().await).await;
    let me = env.operator.identity().to_string();
    wait_for_holder(&env, &me).await;

    // Somebody else takes the Lease (as a replica would that saw it expire).
    let now = k8s_openapi::jiff::Timestamp::now();
    let patch = serde_json::json!({"spec": {
        "holderIdentity": "intruder",
        "acquireTime": MicroTime(now),
        "renewTime": MicroTime(now),
        "leaseDurationSeconds": 3600,
    }});
    Api::<Lease>::namespaced(env.client.clone(), &env.ns)
        .patch("tailkeeper", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("take the Lease");

    // The operator notices at its next renewal, stops its controllers and exits non-zero, for
    // Kubernetes to restart it as a standby.
    let status = env
        .operator
        .wait_exit("exit after losing its Lease", CONVERGE)
        .await;
    assert!(!status.success(), "losing the Lease is a failure: {status}");
    let logs = env.operator.logs();
    assert!(logs.contains("lost leadership"), "{logs}");
    assert!(!logs.contains("released the Lease"), "{logs}");
    assert_eq!(holder(&env).await.as_deref(), Some("intruder"));
}
