//! High-availability benchmark: two replicas of the operator (release build, under the chart's
//! RBAC) against a real kube-apiserver and the simulator. Grants expire one a second; in the
//! middle of them the leader is killed with SIGKILL. Measures how late each revocation comes
//! (the member gone from the policy file, against the grant's expiry) and checks that nothing
//! is lost: every grant ends, every member is removed. Once with the default Lease (15 s) and
//! once with a short one (6 s). Run with `cargo bench --bench ha`; BENCHMARKS.md keeps the
//! figures.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, PostParams};
use serde_json::json;
use support::operator::{eventually, Env, Operator};
use tailkeeper::api::{AccessGrant, GrantPhase};
use tailscale_sim::{SimConfig, SimUser, Simulator};

/// Grants, expiring one a second from `FIRST_EXPIRY` on.
const GRANTS: usize = 30;
const FIRST_EXPIRY: u64 = 10;
/// When the leader is killed, after the grants are created.
const KILL_AFTER: Duration = Duration::from_secs(15);

const POLICY_FILE: &str =
    "// HA benchmark tailnet.\n{\n\t\"groups\": {\n\t\t\"group:ha\": [],\n\t},\n}\n";

fn login(i: usize) -> String {
    format!("ha-{i:03}@example.com")
}

fn members(sim: &Simulator) -> Vec<String> {
    let v: serde_json::Value =
        jsonc_parser::parse_to_serde_value(&sim.policy().0, &Default::default())
            .ok()
            .flatten()
            .unwrap_or_default();
    v["groups"]["group:ha"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

struct Outcome {
    lateness_ms: Vec<i64>,
    takeover: Duration,
    lost: usize,
}

async fn scenario(lease: (u64, u64, u64)) -> Outcome {
    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    for i in 0..GRANTS {
        sim.add_user(SimUser::member(&login(i), "member", "active"));
    }
    sim.set_policy_as_human(POLICY_FILE);
    let mut env = Env::new("ha", sim).await;
    let key = env.sim.create_api_key(Duration::from_secs(86400));
    let people: String = (0..GRANTS)
        .map(|i| {
            format!(
                "      - {{loginNames: [{}], orgRole: engineer}}\n",
                login(i)
            )
        })
        .collect();
    env.apply(&format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: token, annotations: {{tailkeeper.io/integrations: ha, tailkeeper.io/api-url: "{sim_url}"}}}}
stringData: {{apiToken: {}}}
---
apiVersion: tailkeeper.io/v1alpha1
kind: TailscaleIntegration
metadata: {{name: ha}}
spec: {{apiUrl: {}, credentials: {{type: APIToken, secretName: token}}}}
---
apiVersion: tailkeeper.io/v1alpha1
kind: AccessPolicy
metadata: {{name: ha}}
spec:
  integrationRef: {{name: ha}}
  directory:
    people:
{people}  roles: [{{orgRole: engineer, tailscaleRoles: [member]}}]
  grantable:
    groups: [{{name: "group:ha", terms: {{maxDuration: 1h, approvalRequired: false}}}}]
"#,
        key.key,
        env.sim.url(),
        sim_url = env.sim.url(),
    ))
    .await;
    env.integration_condition("ha", "Ready", "True").await;

    // Two replicas with the timings under test: the first leads, the second waits.
    let (duration, grace, retry) = (
        lease.0.to_string(),
        lease.1.to_string(),
        lease.2.to_string(),
    );
    let args = [
        "--lease-duration-secs",
        duration.as_str(),
        "--lease-renew-grace-secs",
        grace.as_str(),
        "--lease-retry-period-secs",
        retry.as_str(),
    ];
    env.operator.kill();
    env.operator = Operator::start_with(&env.kubeconfig, &env.ns, &args);
    env.operator.wait_ready().await;
    let standby = Operator::start_with(&env.kubeconfig, &env.ns, &args);
    standby.wait_serving().await;

    let grants: Api<AccessGrant> = env.grants();
    for i in 0..GRANTS {
        let g: AccessGrant = serde_json::from_value(json!({
            "apiVersion": "tailkeeper.io/v1alpha1", "kind": "AccessGrant",
            "metadata": {"name": format!("ha-{i}")},
            "spec": {"policyRef": {"name": "ha"}, "user": login(i), "access": {"group": "group:ha"},
                     "duration": format!("{}s", FIRST_EXPIRY + i as u64), "reason": "ha", "requestedBy": "bench"}
        }))
        .expect("grant");
        grants
            .create(&PostParams::default(), &g)
            .await
            .expect("create");
    }
    let created = tokio::time::Instant::now();

    // When each member disappears from the policy file.
    let removed: Arc<Mutex<HashMap<String, Timestamp>>> = Arc::default();
    let watcher = {
        let (sim, removed) = (env.sim.clone(), removed.clone());
        tokio::spawn(async move {
            let mut seen: Vec<String> = Vec::new();
            loop {
                let now_members = members(&sim);
                let now = Timestamp::now();
                for m in &now_members {
                    if !seen.contains(m) {
                        seen.push(m.clone());
                    }
                }
                if let Ok(mut r) = removed.lock() {
                    for m in &seen {
                        if !now_members.contains(m) {
                            r.entry(m.clone()).or_insert(now);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    tokio::time::sleep_until(created + KILL_AFTER).await;
    let killed = tokio::time::Instant::now();
    env.operator.kill();
    standby.wait_ready().await;
    let takeover = killed.elapsed();

    // Nothing lost: every grant ends Expired and every member is removed.
    let deadline = Duration::from_secs(FIRST_EXPIRY + GRANTS as u64 + 60);
    eventually("every member removed", deadline, || async {
        (removed.lock().ok()?.len() == GRANTS && members(&env.sim).is_empty()).then_some(())
    })
    .await;
    watcher.abort();
    let mut lateness_ms = Vec::new();
    let mut lost = 0;
    for i in 0..GRANTS {
        let g = grants.get(&format!("ha-{i}")).await.expect("grant");
        let status = g.status.unwrap_or_default();
        if status.phase != Some(GrantPhase::Expired) {
            lost += 1;
        }
        let (Some(expires), Some(gone)) = (
            status.expires_at.map(|t| t.0),
            removed.lock().ok().and_then(|r| r.get(&login(i)).copied()),
        ) else {
            lost += 1;
            continue;
        };
        lateness_ms.push(gone.duration_since(expires).as_millis() as i64);
    }
    drop(standby);
    Outcome {
        lateness_ms,
        takeover,
        lost,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!(
        "machine: {} cores; kube-apiserver v1.37.2 + etcd v3.7.3 on loopback; {GRANTS} grants expiring 1/s, leader SIGKILLed {}s after creation",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        KILL_AFTER.as_secs()
    );
    for lease in [(15, 5, 2), (6, 3, 1)] {
        let mut o = scenario(lease).await;
        o.lateness_ms.sort();
        let n = o.lateness_ms.len();
        let p50 = o.lateness_ms.get(n / 2).copied().unwrap_or_default();
        let max = o.lateness_ms.last().copied().unwrap_or_default();
        let bound_ms = (lease.0 as i64 + 1) * 1000;
        let over = o.lateness_ms.iter().filter(|l| **l > bound_ms).count();
        let early = o.lateness_ms.iter().filter(|l| **l < 0).count();
        println!(
            "lease {}s/renew grace {}s/retry {}s: takeover {} ms after SIGKILL; revocation lateness p50 {p50} ms, max {max} ms; {over} later than lease+1s ({bound_ms} ms); {early} early; {} lost",
            lease.0,
            lease.1,
            lease.2,
            o.takeover.as_millis(),
            o.lost
        );
    }
}
