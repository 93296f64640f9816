//! Entitlements benchmark: a 10,000-user tailnet (10,000 devices; a policy file of 200 groups,
//! 500 grants and 50 SSH rules) with 50 ms added to every Tailscale request.
//!
//! Measures: the pure inventory build (parse, resolve, count, encode) in process; end to end,
//! with the operator binary (release build, under the chart's RBAC) against a real
//! kube-apiserver: the operator CPU time and wall time until the first inventory is published,
//! the time from a one-line console edit (announced by a signed webhook) to the new inventory in
//! status, and the operator's memory while holding it. Run with `cargo bench --bench
//! entitlements`; it prints the figures (BENCHMARKS.md keeps the latest).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::operator::{eventually, process_usage, set_credentials, Env};
use tailkeeper::entitlements::{self, shards, Attribution, Member};
use tailscale_sim::{SimConfig, SimDevice, SimUser, Simulator};

const LATENCY: Duration = Duration::from_millis(50);
const USERS: usize = 10_000;
const GROUPS: usize = 200;
const MEMBERS_PER_GROUP: usize = 50;
const RULES: usize = 500;
const SSH_RULES: usize = 50;
const EDITS: usize = 5;

fn login(i: usize) -> String {
    format!("user-{i:05}@example.com")
}

fn role(i: usize) -> &'static str {
    match i % 500 {
        0 => "admin",
        1 => "it-admin",
        2 => "network-admin",
        3 => "auditor",
        _ => "member",
    }
}

/// A deterministic spread of indices (no randomness: every run measures the same file).
fn pick(seed: usize, n: usize) -> usize {
    seed.wrapping_mul(2_654_435_761) % n
}

/// The policy file; `extra` more members join group 0 (a one-line edit per step).
fn policy_file(extra: usize) -> String {
    let mut out = String::from("// Benchmark tailnet, kept by hand.\n{\n\t\"groups\": {\n");
    for g in 0..GROUPS {
        let mut members: Vec<String> = (0..MEMBERS_PER_GROUP)
            .map(|m| format!("\"{}\"", login(pick(g * MEMBERS_PER_GROUP + m + 1, USERS))))
            .collect();
        if g == 0 {
            members.extend((0..extra).map(|e| format!("\"{}\"", login(USERS - 1 - e))));
        }
        out.push_str(&format!("\t\t\"group:g{g}\": [{}],\n", members.join(", ")));
    }
    out.push_str("\t},\n\t\"grants\": [\n");
    for r in 0..RULES {
        let src = match r % 10 {
            0 => "\"autogroup:member\"".to_string(),
            1 => format!("\"{}\"", login(pick(r + 7, USERS))),
            2 => "\"autogroup:admin\", \"autogroup:it-admin\"".to_string(),
            _ => format!(
                "\"group:g{}\", \"group:g{}\"",
                r % GROUPS,
                (r * 7 + 3) % GROUPS
            ),
        };
        out.push_str(&format!(
            "\t\t{{\"src\": [{src}], \"dst\": [\"tag:svc{r}\"], \"ip\": [\"tcp:{}\"]}},\n",
            1000 + r
        ));
    }
    out.push_str("\t],\n\t\"ssh\": [\n");
    for s in 0..SSH_RULES {
        out.push_str(&format!(
            "\t\t{{\"action\": \"check\", \"src\": [\"group:g{}\"], \"dst\": [\"tag:host{s}\"], \"users\": [\"root\", \"autogroup:nonroot\"]}},\n",
            (s * 3) % GROUPS
        ));
    }
    out.push_str("\t],\n}\n");
    out
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// The pure build, as the operator does it per evaluation: parse, resolve, count, summarise,
/// encode. Best of five.
fn pure_build() -> (Duration, usize, usize, usize) {
    let text = policy_file(0);
    let members: Vec<Member> = (0..USERS)
        .map(|i| Member {
            login: login(i),
            role: role(i).into(),
            status: "active".into(),
            user_type: "member".into(),
            person: Some(format!("Person {i}")),
            role_granted_by: Vec::new(),
        })
        .collect();
    let mut best = Duration::MAX;
    let mut figures = (0, 0, 0);
    for _ in 0..5 {
        let started = Instant::now();
        let document = tailkeeper::policy_file::document(&text).expect("parses");
        let inventory = entitlements::build(
            members.clone(),
            &document,
            &Attribution::default(),
            Vec::new(),
        );
        let summary = entitlements::summarize(&inventory, 20);
        let encoded = shards::encode(&shards::Published {
            policy: "bench/bench".into(),
            revision: "r".into(),
            inventory,
        })
        .expect("encodes");
        best = best.min(started.elapsed());
        figures = (
            summary.entitlements,
            summary.holdings,
            encoded.shards.iter().map(Vec::len).sum(),
        );
    }
    (best, figures.0, figures.1, figures.2)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (build, count, holdings, compressed) = pure_build();
    println!(
        "pure build: {} for {count} entitlements, {holdings} holdings, {} KiB gzipped ({USERS} users, {GROUPS} groups, {RULES} grants, {SSH_RULES} ssh rules, policy file {} KiB)",
        ms(build),
        compressed / 1024,
        policy_file(0).len() / 1024
    );

    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    for i in 0..USERS {
        sim.add_user(SimUser::member(&login(i), role(i), "active"));
        sim.add_device(SimDevice {
            name: format!("device-{i:05}"),
            user: login(i),
            ..Default::default()
        });
    }
    sim.set_policy_as_human(&policy_file(0));
    let env = Env::new("bench-entitle", sim).await;
    let pid = env.operator.pid().expect("operator pid");
    let hook = env.sim.add_webhook(
        &env.operator.webhook_url(&env.ns, "bench"),
        &["policyUpdate"],
    );
    let key = env.sim.create_api_key(Duration::from_secs(86400));
    set_credentials(&env, "bench", &key.key, &hook.secret).await;
    let people: String = (0..USERS)
        .map(|i| format!("    {},Person {i},engineer,active\n", login(i)))
        .collect();
    env.apply(&format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: people}}
data:
  people.csv: |
    loginName,displayName,orgRole,status
{people}"#
    ))
    .await;
    env.sim.set_latency(LATENCY);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = process_usage(pid).expect("operator running");
    let started = Instant::now();
    env.apply(&format!(
        r#"
apiVersion: tailkeeper.io/v1alpha1
kind: TailscaleIntegration
metadata: {{name: bench}}
spec:
  apiUrl: {}
  syncInterval: 1h
  credentials: {{type: APIToken, secretName: ts}}
  webhook: {{}}
---
apiVersion: tailkeeper.io/v1alpha1
kind: AccessPolicy
metadata: {{name: bench}}
spec:
  integrationRef: {{name: bench}}
  directory: {{configMaps: [{{name: people}}]}}
  roles: [{{orgRole: engineer, tailscaleRoles: [member, admin, it-admin, network-admin, auditor]}}]
"#,
        env.sim.url()
    ))
    .await;
    let digest = |env: &Env| {
        let api = env.policies();
        async move {
            let e = api.get("bench").await.ok()?.status?.entitlements?;
            (e.users == USERS as i64).then_some(e.digest?)
        }
    };
    let first = eventually("the first inventory", Duration::from_secs(300), || {
        digest(&env)
    })
    .await;
    let first_wall = started.elapsed();
    let after = process_usage(pid).expect("operator running");
    println!(
        "first inventory: {} wall (with {} per Tailscale request), {} operator CPU from the integration's creation (sync, checks, inventory, publishing)",
        ms(first_wall),
        ms(LATENCY),
        ms(after.cpu.saturating_sub(before.cpu))
    );

    // One-line console edits: each adds a member to group:g0; Tailscale's signed webhook
    // announces it.
    let mut lags = Vec::new();
    let mut last = first;
    for step in 1..=EDITS {
        let edited = Instant::now();
        env.sim.set_policy_as_human(&policy_file(step));
        let next = eventually("the edit in the inventory", Duration::from_secs(60), || {
            let last = last.clone();
            let env = &env;
            async move { digest(env).await.filter(|d| *d != last) }
        })
        .await;
        lags.push(edited.elapsed());
        last = next;
    }
    lags.sort();
    println!(
        "console edit to published inventory ({EDITS} edits): median {}, max {}",
        ms(lags[lags.len() / 2]),
        ms(lags[lags.len() - 1])
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let held = process_usage(pid).expect("operator running");
    println!(
        "operator memory holding it: {} MiB resident (peak {} MiB)",
        held.rss_kib / 1024,
        held.peak_kib / 1024
    );
}
