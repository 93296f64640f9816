//! Webhook benchmark: how soon a change made in Tailscale shows in the checks when Tailscale
//! posts a webhook (the simulator signs and sends it as Tailscale does), with a one-hour sync
//! interval so that nothing else could have noticed. Each round suspends an offboarded
//! person's account (the `OffboardedAccessRemoved` check passes) and restores it (it fails).
//! Run with `cargo bench --bench webhook`; BENCHMARKS.md keeps the figures.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::operator::{offboarding_with_webhooks, Env};
use tailkeeper::api::CheckResultValue;
use tailscale_sim::SimUser;

const ROUNDS: usize = 20;

async fn offboarded_check(env: &Env) -> Option<CheckResultValue> {
    let p = env.policies().get("corp").await.ok()?;
    p.status?
        .checks
        .into_iter()
        .find(|c| c.name == "OffboardedAccessRemoved")
        .map(|c| c.result)
}

/// Wait (polling every 5 ms) until the check reads `result`; how long that took.
async fn until(env: &Env, result: CheckResultValue) -> Duration {
    let started = Instant::now();
    loop {
        if offboarded_check(env).await == Some(result) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the check never became {result:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let env = offboarding_with_webhooks("webhookbench", &["userSuspended", "userRestored"]).await;
    until(&env, CheckResultValue::Fail).await;

    let mut samples = Vec::new();
    let bob = env.sim.user_by_login("bob@example.com").expect("bob");
    for round in 0..ROUNDS {
        let (status, expect) = if round % 2 == 0 {
            ("suspended", CheckResultValue::Pass)
        } else {
            ("active", CheckResultValue::Fail)
        };
        env.sim.add_user(SimUser {
            status: status.into(),
            ..bob.clone()
        });
        samples.push(until(&env, expect).await);
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "change in Tailscale to the check's new result through a signed webhook (sync interval 1h), n={ROUNDS}: p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms",
        ms(samples[ROUNDS / 2]),
        ms(samples[ROUNDS * 9 / 10]),
        ms(samples[ROUNDS - 1])
    );
}
