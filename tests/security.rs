//! Attacks on authority, against the real API server with the operator under the chart's RBAC:
//! each test plays someone trying to gain or redirect access and shows it fails.

mod support;

use std::time::Duration;

use support::operator::Env;
use tailscale_sim::{SimConfig, SimUser, Simulator};

/// Whoever may create a TailscaleIntegration points `apiUrl` at a host of their own and names
/// an existing Secret: the operator must not send the credentials there (nor read them), and
/// says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_go_only_to_api_hosts_the_operator_trusts() {
    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    sim.add_user(SimUser::member("alice@example.com", "member", "active"));
    let env = Env::new("apihost", sim).await;
    let oauth = env.sim.create_oauth_client(&["users:read"]);
    // The simulator again, under a name the operator was not started to trust (it trusts
    // 127.0.0.1 only): a stand-in for a collector of the attacker's.
    let elsewhere = env.sim.url().replace("127.0.0.1", "localhost");
    env.apply(&format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: tailscale-oauth}}
stringData: {{clientId: {}, clientSecret: {}}}
---
apiVersion: tailkeeper.io/v1alpha1
kind: TailscaleIntegration
metadata: {{name: elsewhere}}
spec:
  apiUrl: {elsewhere}
  credentials: {{type: OAuthClient, secretName: tailscale-oauth}}
"#,
        oauth.id, oauth.secret
    ))
    .await;
    let (reason, message) = env
        .integration_condition("elsewhere", "Stalled", "True")
        .await;
    assert_eq!(reason, "APIHostNotAllowed", "{message}");
    assert!(
        message.contains("--allow-api-host localhost") && message.contains("127.0.0.1"),
        "{message}"
    );
    assert!(!message.contains(&oauth.secret), "{message}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        env.sim.call_count("oauth.token"),
        0,
        "no credential was sent to the untrusted host"
    );
    assert_eq!(env.sim.call_count("users.list"), 0);
}
