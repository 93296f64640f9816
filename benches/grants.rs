//! Grant benchmark: the operator binary (release build, under the chart's RBAC) against a real
//! kube-apiserver and the simulator with 50 ms added to every Tailscale request.
//!
//! Measures: time from AccessGrant creation to the change being visible in Tailscale; how late
//! revocation comes after expiry; for a burst of 1,000 grants, the policy-file writes and the
//! time until all are Active; and the operator's memory with a 10,000-user tailnet. Run with `cargo bench --bench grants`;
//! it prints the figures (BENCHMARKS.md keeps the latest).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use support::operator::{eventually, process_usage, Env};
use tailkeeper::api::{AccessGrant, GrantPhase};
use tailscale_sim::{SimConfig, SimUser, Simulator};

const LATENCY: Duration = Duration::from_millis(50);
const SEQUENTIAL: usize = 50;
const EXPIRING: usize = 50;
const BURST: usize = 1000;
/// Users in the tailnet (and people in the directory): the inventory the operator holds.
const INVENTORY: usize = 10_000;
/// How long after the burst the steady-state memory is read.
const SETTLE: Duration = Duration::from_secs(20);

const POLICY_FILE: &str = "// Benchmark tailnet.\n{\n\t\"groups\": {\n\t\t\"group:bench\": [],\n\t},\n\t\"grants\": [\n\t\t{\"src\": [\"group:bench\"], \"dst\": [\"tag:bench\"], \"ip\": [\"*\"]},\n\t],\n}\n";

fn login(i: usize) -> String {
    format!("bench-{i:05}@example.com")
}

fn grant(name: &str, user: &str, duration: &str) -> AccessGrant {
    serde_json::from_value(json!({
        "apiVersion": "tailkeeper.io/v1alpha1",
        "kind": "AccessGrant",
        "metadata": {"name": name},
        "spec": {"policyRef": {"name": "bench"}, "user": user, "access": {"group": "group:bench"},
                 "duration": duration, "reason": "benchmark", "requestedBy": "bench"}
    }))
    .expect("grant")
}

fn members(sim: &Simulator) -> Vec<String> {
    let text = sim.policy().0;
    let v: serde_json::Value = jsonc_parser::parse_to_serde_value(&text, &Default::default())
        .ok()
        .flatten()
        .unwrap_or_default();
    v["groups"]["group:bench"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    for i in 0..INVENTORY {
        sim.add_user(SimUser::member(&login(i), "member", "active"));
    }
    sim.set_policy_as_human(POLICY_FILE);
    let env = Env::new("bench", sim).await;
    let key = env.sim.create_api_key(Duration::from_secs(86400));
    // Grants are for people the directory knows: every benchmark user is one.
    let people: String = (0..INVENTORY)
        .map(|i| format!("    {},Bench {i},engineer,active\n", login(i)))
        .collect();
    env.apply(&format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: people}}
data:
  people.csv: |
    loginName,displayName,orgRole,status
{people}---
apiVersion: v1
kind: Secret
metadata: {{name: token, annotations: {{tailkeeper.io/integrations: bench, tailkeeper.io/api-url: "{sim_url}"}}}}
stringData: {{apiToken: {}}}
---
apiVersion: tailkeeper.io/v1alpha1
kind: TailscaleIntegration
metadata: {{name: bench}}
spec: {{apiUrl: {}, credentials: {{type: APIToken, secretName: token}}}}
---
apiVersion: tailkeeper.io/v1alpha1
kind: AccessPolicy
metadata: {{name: bench}}
spec:
  integrationRef: {{name: bench}}
  directory: {{configMaps: [{{name: people}}]}}
  roles: [{{orgRole: engineer, tailscaleRoles: [member]}}]
  grantable:
    groups: [{{name: "group:bench", terms: {{maxDuration: 2h, approvalRequired: false}}}}]
"#,
        key.key,
        env.sim.url(),
        sim_url = env.sim.url(),
    ))
    .await;
    env.integration_condition("bench", "Ready", "True").await;
    env.sim.set_latency(LATENCY);
    let grants: Api<AccessGrant> = env.grants();
    let machine = format!(
        "{} cores, {} GiB; kube-apiserver v1.37.2 + etcd v3.7.3 on loopback; simulator latency {} per request",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<u64>().ok()))
            .map(|kb| kb / 1024 / 1024)
            .unwrap_or(0),
        ms(LATENCY)
    );
    println!("machine: {machine}");

    // Warm-up, not measured: the API server's first request for a new resource type, the
    // policy writer's start (it seeds from the grant ledger) and the first token fetch are
    // one-time costs of a fresh cluster, not of a grant.
    let warm = login(INVENTORY - 1);
    grants
        .create(&PostParams::default(), &grant("warm-up", &warm, "1h"))
        .await
        .expect("create");
    eventually("the warm-up grant", Duration::from_secs(60), || async {
        members(&env.sim).contains(&warm).then_some(())
    })
    .await;
    grants
        .delete("warm-up", &DeleteParams::default())
        .await
        .expect("delete");
    eventually(
        "the warm-up grant revoked",
        Duration::from_secs(60),
        || async { (!members(&env.sim).contains(&warm)).then_some(()) },
    )
    .await;

    // 1. Activation latency: one grant at a time, creation to member visible in Tailscale.
    let mut activation = Vec::new();
    for i in 0..SEQUENTIAL {
        let user = login(i);
        let started = Instant::now();
        grants
            .create(
                &PostParams::default(),
                &grant(&format!("seq-{i}"), &user, "1h"),
            )
            .await
            .expect("create");
        loop {
            if members(&env.sim).contains(&user) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        activation.push(started.elapsed());
    }
    activation.sort();
    println!(
        "activation (creation to visible in Tailscale), n={SEQUENTIAL}: p50 {}, p99 {}, max {}",
        ms(percentile(&activation, 50.0)),
        ms(percentile(&activation, 99.0)),
        ms(*activation.last().unwrap_or(&Duration::ZERO))
    );
    for i in 0..SEQUENTIAL {
        grants
            .delete(&format!("seq-{i}"), &DeleteParams::default())
            .await
            .expect("delete");
    }
    eventually(
        "sequential grants revoked",
        Duration::from_secs(60),
        || async { members(&env.sim).is_empty().then_some(()) },
    )
    .await;

    // 2. Revocation lateness: grants of 8 s, created a little apart; lateness is the time from
    // status.expiresAt to the member being gone from Tailscale. The expiries are read first, so
    // that while they fall due nothing but the simulator is polled.
    let mut names = Vec::new();
    for i in 0..EXPIRING {
        let n = SEQUENTIAL + i;
        let name = format!("exp-{i}");
        grants
            .create(&PostParams::default(), &grant(&name, &login(n), "8s"))
            .await
            .expect("create");
        names.push((name, login(n)));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let expires: HashMap<String, Timestamp> = eventually(
        "the expiring grants to be Active",
        Duration::from_secs(60),
        || async {
            let list = grants.list(&Default::default()).await.ok()?;
            let known: HashMap<String, Timestamp> = list
                .items
                .iter()
                .filter(|g| {
                    g.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("exp-"))
                })
                .filter_map(|g| {
                    Some((
                        g.spec.user.clone(),
                        g.status.as_ref()?.expires_at.clone()?.0,
                    ))
                })
                .collect();
            (known.len() == EXPIRING).then_some(known)
        },
    )
    .await;
    assert!(
        expires.values().all(|at| *at > Timestamp::now()),
        "every expiry is still ahead when polling starts"
    );
    let mut removed: HashMap<String, Timestamp> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while removed.len() < EXPIRING && Instant::now() < deadline {
        let now = Timestamp::now();
        let present = members(&env.sim);
        for (_, user) in &names {
            if !present.contains(user) && !removed.contains_key(user) {
                removed.insert(user.clone(), now);
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let early = removed
        .iter()
        .filter(|(user, at)| expires.get(*user).is_some_and(|e| *at < e))
        .count();
    let mut lateness: Vec<Duration> = removed
        .iter()
        .filter_map(|(user, at)| {
            let late = at.duration_since(*expires.get(user)?);
            Duration::try_from(late).ok()
        })
        .collect();
    lateness.sort();
    println!(
        "revocation lateness (expiresAt to gone from Tailscale), n={}: p50 {}, p99 {}, max {}",
        lateness.len(),
        ms(percentile(&lateness, 50.0)),
        ms(percentile(&lateness, 99.0)),
        ms(*lateness.last().unwrap_or(&Duration::ZERO))
    );
    println!("revoked before their expiry: {early}");
    for (name, _) in &names {
        grants
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }

    // 3. Burst: 1,000 grants at once on one tailnet.
    env.sim.reset_calls();
    let started = Instant::now();
    let api = Arc::new(grants.clone());
    stream::iter(0..BURST)
        .for_each_concurrent(32, |i| {
            let api = api.clone();
            async move {
                api.create(
                    &PostParams::default(),
                    &grant(&format!("burst-{i}"), &login(i), "1h"),
                )
                .await
                .expect("create");
            }
        })
        .await;
    let created = started.elapsed();
    eventually(
        "the burst to be Active",
        Duration::from_secs(300),
        || async {
            let list = grants.list(&Default::default()).await.ok()?;
            let active = list
                .items
                .iter()
                .filter(|g| {
                    g.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("burst-"))
                })
                .filter(|g| g.status.as_ref().and_then(|s| s.phase) == Some(GrantPhase::Active))
                .count();
            (active == BURST).then_some(())
        },
    )
    .await;
    let all_active = started.elapsed();
    let writes = env.sim.call_count("acl.set");
    let reads = env.sim.call_count("acl.get");
    assert_eq!(
        members(&env.sim).len(),
        BURST,
        "every member is in the file"
    );
    let pid = env.operator.pid().expect("the operator runs");
    let memory = process_usage(pid);
    println!(
        "burst of {BURST} grants: created in {:.1} s, all Active after {:.1} s, {writes} policy-file writes ({reads} reads)",
        created.as_secs_f64(),
        all_active.as_secs_f64()
    );
    if let Some(m) = memory {
        println!(
            "operator memory right after the burst, holding {BURST} active grants and a {INVENTORY}-user inventory: RSS {} MiB (heap and other anonymous {} MiB, binary {} MiB), peak {} MiB",
            m.rss_kib / 1024,
            m.anon_kib / 1024,
            m.file_kib / 1024,
            m.peak_kib / 1024
        );
    }
    println!("tailscale calls during the burst: {:?}", env.sim.calls());
    // Steady state: the same grants held, the burst's garbage handed back.
    tokio::time::sleep(SETTLE).await;
    if let Some(m) = process_usage(pid) {
        println!(
            "operator memory {} s later, still holding them: RSS {} MiB (heap and other anonymous {} MiB, binary {} MiB)",
            SETTLE.as_secs(),
            m.rss_kib / 1024,
            m.anon_kib / 1024,
            m.file_kib / 1024
        );
    }
}
