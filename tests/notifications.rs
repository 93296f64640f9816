//! Outgoing notifications end to end: the operator (under the chart's RBAC, reading only the
//! Secrets listed in `credentialSecrets`) tells approvers of grants awaiting approval and
//! requesters of decisions and ends, posting to a receiver on loopback (the one host it is
//! started to allow plain http to). Deliveries are retried, signed and identified, and never
//! hold a grant up.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use support::operator::{
    eventually, install_admission_policies, token_integration, Env, CONVERGE, GRANT_USERS_RBAC,
};
use tailkeeper::api::{AccessGrant, GrantPhase};
use tailkeeper::notifications::sign;
use tailscale_sim::{SimConfig, SimUser, Simulator};
use tokio::sync::watch;

/// The signing secret of the Generic receiver.
const SIGNING_SECRET: &str = "whsec-notifications-test";

/// The part of the Slack URL that is a credential: it must never show anywhere.
const SLACK_TOKEN: &str = "T000-B000-incoming-webhook-token";

/// How a receiver channel answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// 200 every time.
    Ok,
    /// 503, then 429 with `Retry-After: 1`, then 200.
    FailTwiceThenOk,
    /// Holds every request until released, then answers 500.
    HoldThenFail,
}

/// A request the receiver got.
#[derive(Clone, Debug)]
struct Hit {
    headers: HashMap<String, String>,
    body: String,
}

impl Hit {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

struct Channels {
    answers: HashMap<String, Answer>,
    hits: Mutex<HashMap<String, Vec<Hit>>>,
    released: watch::Receiver<bool>,
}

/// An HTTP receiver on loopback with one channel per first path segment.
struct Receiver {
    port: u16,
    channels: Arc<Channels>,
    release: watch::Sender<bool>,
}

impl Receiver {
    async fn start(answers: &[(&str, Answer)]) -> Receiver {
        let (release, released) = watch::channel(false);
        let channels = Arc::new(Channels {
            answers: answers.iter().map(|(c, a)| (c.to_string(), *a)).collect(),
            hits: Mutex::default(),
            released,
        });
        let app = Router::new()
            .route("/{*path}", post(receive))
            .with_state(channels.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("receiver listens");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            port,
            channels,
            release,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    fn hits(&self, channel: &str) -> Vec<Hit> {
        self.channels
            .hits
            .lock()
            .expect("hits")
            .get(channel)
            .cloned()
            .unwrap_or_default()
    }

    /// Wait until `channel` got at least `n` requests; return them all.
    async fn wait_hits(&self, channel: &str, n: usize) -> Vec<Hit> {
        eventually(
            &format!("{n} notification(s) on channel {channel}"),
            CONVERGE,
            || async {
                let hits = self.hits(channel);
                (hits.len() >= n).then_some(hits)
            },
        )
        .await
    }

    /// Let held requests be answered.
    fn release(&self) {
        let _ = self.release.send(true);
    }
}

async fn receive(
    State(channels): State<Arc<Channels>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let channel = path.split('/').next().unwrap_or_default().to_string();
    let hit = Hit {
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().into(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let before = {
        let mut hits = channels.hits.lock().expect("hits");
        let list = hits.entry(channel.clone()).or_default();
        list.push(hit);
        list.len() - 1
    };
    match channels
        .answers
        .get(&channel)
        .copied()
        .unwrap_or(Answer::Ok)
    {
        Answer::Ok => StatusCode::OK.into_response(),
        Answer::FailTwiceThenOk => match before {
            0 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            1 => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response(),
            _ => StatusCode::OK.into_response(),
        },
        Answer::HoldThenFail => {
            let mut released = channels.released.clone();
            let _ = released.wait_for(|r| *r).await;
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

const POLICY_FILE: &str = r#"{
  "groups": {"group:prod": [], "group:oncall": []},
  "grants": [],
}
"#;

/// A tailnet of alice and bob; policy `jit` with `group:prod` (no approval) and `group:oncall`
/// (approved by group `approvers`), telling approvers in Slack and requesters through a Generic
/// receiver, plus `extra` receivers. The operator may read the Secrets of the integration and of
/// those two receivers, and nothing else.
async fn setup(prefix: &str, receiver: &Receiver, extra: &str) -> Env {
    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    sim.add_user(SimUser::member("alice@example.com", "member", "active"));
    sim.add_user(SimUser::member("bob@example.com", "member", "active"));
    sim.set_policy_as_human(POLICY_FILE);
    let env = Env::with_chart_values_and_args(
        prefix,
        sim,
        |ns| {
            vec![format!(
                "credentialSecrets={{{ns}/tailnet-token,{ns}/approvers-slack,{ns}/requesters-hook}}"
            )]
        },
        &[
            "--allow-notification-http-host",
            "127.0.0.1",
            "--notification-attempts",
            "3",
            // Long enough that a held request is still under way when a grant has ended.
            "--notification-timeout-secs",
            "120",
        ],
    )
    .await;
    install_admission_policies(env.cp).await;
    env.apply(&format!(
        r#"
{integration}
---
apiVersion: v1
kind: Secret
metadata: {{name: approvers-slack}}
stringData: {{url: "{slack}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: requesters-hook}}
stringData: {{url: "{generic}", secret: {SIGNING_SECRET}}}
---
apiVersion: tailkeeper.io/v1alpha1
kind: AccessPolicy
metadata: {{name: jit}}
spec:
  integrationRef: {{name: tailnet}}
  directory:
    people:
      - {{loginNames: [alice@example.com], orgRole: engineer}}
      - {{loginNames: [bob@example.com], orgRole: engineer}}
      # Approvals count only from people: carol approves as herself.
      - {{loginNames: [carol@example.com], orgRole: engineer, kubernetesUsers: [carol]}}
  roles:
    - {{orgRole: engineer, tailscaleRoles: [member]}}
  grantable:
    groups:
      - {{name: "group:prod", terms: {{maxDuration: 1h, approvalRequired: false}}}}
      - name: "group:oncall"
        terms: {{maxDuration: 8h, approvalRequired: true, approvers: {{groups: [approvers]}}}}
  notifications:
    - {{name: approvers, secretRef: {{name: approvers-slack}}, format: Slack, events: [GrantAwaitingApproval]}}
    - {{name: requesters, secretRef: {{name: requesters-hook}}, format: Generic, events: [GrantDecided, GrantEnded]}}
{extra}
---
{GRANT_USERS_RBAC}
"#,
        integration = token_integration(&env),
        slack = receiver.url(&format!("slack/{SLACK_TOKEN}")),
        generic = receiver.url("generic"),
    ))
    .await;
    env.integration_condition("tailnet", "Ready", "True").await;
    env
}

fn grant(name: &str, group: &str, duration: &str) -> AccessGrant {
    serde_json::from_value(json!({
        "apiVersion": "tailkeeper.io/v1alpha1",
        "kind": "AccessGrant",
        "metadata": {"name": name},
        "spec": {"policyRef": {"name": "jit"}, "user": "alice@example.com",
                 "access": {"group": group}, "duration": duration,
                 "reason": "incident 4711", "requestedBy": "alice"}
    }))
    .expect("grant")
}

/// Create a grant as alice (the requester is her, as the admission policy demands).
async fn request(env: &Env, g: AccessGrant) -> AccessGrant {
    let client: Client = env.cp.client_as("alice").await;
    Api::<AccessGrant>::namespaced(client, &env.ns)
        .create(&PostParams::default(), &g)
        .await
        .expect("alice may request for herself")
}

/// A Generic delivery carries a valid signature and an idempotency id equal to its body's.
fn assert_signed_and_identified(hit: &Hit) -> Value {
    let body = hit.json();
    assert_eq!(
        sign::verify(
            hit.header(sign::SIGNATURE_HEADER),
            hit.body.as_bytes(),
            SIGNING_SECRET.as_bytes(),
            Timestamp::now()
        ),
        Ok(()),
        "the signature verifies: {hit:?}"
    );
    let id = hit
        .header(sign::IDEMPOTENCY_HEADER)
        .expect("an idempotency id");
    assert_eq!(body["id"], id);
    assert_eq!(id.len(), 32);
    body
}

fn metric_line(env: &Env, notification: &str, outcome: &str) -> String {
    format!(
        "tailkeeper_notifications_total{{namespace=\"{}\",policy=\"jit\",notification=\"{notification}\",outcome=\"{outcome}\"}}",
        env.ns
    )
}

/// Wait until the metric for `notification` and `outcome` reaches `at_least`.
async fn wait_metric(env: &Env, notification: &str, outcome: &str, at_least: u64) {
    let line = metric_line(env, notification, outcome);
    eventually(&line, CONVERGE, || async {
        let metrics = env.operator.metrics().await;
        let value = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|v| v.trim().parse::<u64>().ok())?;
        (value >= at_least).then_some(())
    })
    .await;
}

async fn failures(env: &Env) -> Vec<String> {
    env.events("NotificationFailed")
        .await
        .into_iter()
        .filter_map(|e| e.message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_hear_of_a_request_in_slack_and_the_requester_of_its_decision_and_end_signed() {
    let receiver = Receiver::start(&[]).await;
    let env = setup("notify", &receiver, "").await;
    let created = request(&env, grant("oncall", "group:oncall", "1h")).await;
    let uid = created.metadata.uid.clone().expect("uid");
    env.grant_phase("oncall", GrantPhase::AwaitingApproval)
        .await;

    // Approvers: a Slack message naming the grant, who asks for what, for how long and why,
    // with the command that approves it (its UID, the approver group).
    let slack = receiver.wait_hits("slack", 1).await;
    let message = slack[0].json();
    let text = message["text"].as_str().expect("text");
    for needle in [
        &format!("AccessGrant {}/oncall", env.ns),
        "alice@example.com asks for membership of group:oncall for 1h",
        "requested by alice",
        "group approvers",
    ] {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }
    let blocks = message["blocks"].to_string();
    assert!(blocks.contains("incident 4711"), "{blocks}");
    assert!(
        blocks.contains(&format!(
            r#"kubectl -n {} patch accessgrant oncall --type merge -p '{{\"spec\":{{\"approval\":{{\"approvedBy\":\"&lt;you&gt;\",\"group\":\"approvers\",\"grantUID\":\"{uid}\"}}}}}}'"#,
            env.ns
        )),
        "{blocks}"
    );
    assert!(slack[0].header(sign::IDEMPOTENCY_HEADER).is_some());
    assert!(
        receiver.hits("generic").is_empty(),
        "requesters hear nothing before a decision"
    );

    // carol approves; the requester hears of it, signed.
    let carol: Client = env.cp.client_as("carol").await;
    let approval = json!({"spec": {"approval": {"approvedBy": "carol", "grantUID": uid, "group": "approvers"}}});
    Api::<AccessGrant>::namespaced(carol, &env.ns)
        .patch("oncall", &PatchParams::default(), &Patch::Merge(&approval))
        .await
        .expect("carol approves through group approvers");
    env.grant_phase("oncall", GrantPhase::Active).await;
    let generic = receiver.wait_hits("generic", 1).await;
    let decided = assert_signed_and_identified(&generic[0]);
    assert_eq!(decided["type"], "GrantDecided");
    assert_eq!(decided["policy"], "jit");
    assert_eq!(decided["notification"], "requesters");
    assert_eq!(decided["grant"]["uid"], uid.as_str());
    assert_eq!(decided["grant"]["namespace"], env.ns.as_str());
    assert_eq!(decided["grant"]["name"], "oncall");
    assert_eq!(decided["grant"]["user"], "alice@example.com");
    assert_eq!(decided["grant"]["access"], json!({"group": "group:oncall"}));
    assert_eq!(decided["grant"]["phase"], "Active");
    assert_eq!(decided["grant"]["reason"], "incident 4711");
    assert_eq!(decided["grant"]["requestedBy"], "alice");
    assert!(
        decided["grant"]["approval"]
            .as_str()
            .is_some_and(|a| a.contains("approved by carol")),
        "{decided}"
    );

    // Withdrawn: the requester hears that the access ended.
    Api::<AccessGrant>::namespaced(env.cp.client_as("alice").await, &env.ns)
        .delete("oncall", &DeleteParams::default())
        .await
        .expect("alice withdraws her grant");
    let generic = receiver.wait_hits("generic", 2).await;
    let ended = assert_signed_and_identified(&generic[1]);
    assert_eq!(ended["type"], "GrantEnded");
    assert_eq!(ended["grant"]["phase"], "Revoked");
    assert_ne!(ended["id"], decided["id"], "each event has its own id");

    wait_metric(&env, "approvers", "Delivered", 1).await;
    wait_metric(&env, "requesters", "Delivered", 2).await;
    assert_eq!(
        receiver.hits("slack").len(),
        1,
        "approvers hear only of requests"
    );
    assert!(failures(&env).await.is_empty());
    // The receiver's URL is a credential: nowhere in logs, Events or status.
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(env.client.clone(), &env.ns);
    let everything = format!(
        "{}{:?}{:?}{:?}",
        env.operator.logs(),
        events
            .list(&Default::default())
            .await
            .expect("events")
            .items,
        env.policies().get("jit").await.expect("policy").status,
        env.grants()
            .list(&Default::default())
            .await
            .expect("grants")
            .items,
    );
    assert!(!everything.contains(SLACK_TOKEN), "the Slack URL leaked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_twice_gets_the_same_message_on_the_third_attempt() {
    let receiver = Receiver::start(&[("generic", Answer::FailTwiceThenOk)]).await;
    let env = setup("notify-retry", &receiver, "").await;
    request(&env, grant("prod", "group:prod", "1h")).await;
    env.grant_phase("prod", GrantPhase::Active).await;

    let hits = receiver.wait_hits("generic", 3).await;
    wait_metric(&env, "requesters", "Delivered", 1).await;
    let first = assert_signed_and_identified(&hits[0]);
    assert_eq!(first["type"], "GrantDecided");
    for retry in &hits[1..] {
        assert_signed_and_identified(retry);
        assert_eq!(
            retry.body, hits[0].body,
            "every attempt sends the same body"
        );
        assert_eq!(
            retry.header(sign::IDEMPOTENCY_HEADER),
            hits[0].header(sign::IDEMPOTENCY_HEADER),
            "and the same idempotency id"
        );
    }
    assert!(failures(&env).await.is_empty(), "delivered in the end");
    assert!(!env
        .operator
        .metrics()
        .await
        .contains(&metric_line(&env, "requesters", "Failed")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_succeeds_holds_no_grant_up_and_ends_in_a_warning() {
    let receiver = Receiver::start(&[("generic", Answer::HoldThenFail)]).await;
    let env = setup("notify-fail", &receiver, "").await;
    request(&env, grant("prod", "group:prod", "3s")).await;

    // The grant activates and expires while its first notification is still held.
    env.grant_phase("prod", GrantPhase::Active).await;
    env.grant_phase("prod", GrantPhase::Expired).await;
    let held = receiver.hits("generic");
    assert!(
        !held.is_empty(),
        "a delivery was under way while the grant went through its life"
    );
    assert!(
        failures(&env).await.is_empty(),
        "nothing has given up yet: the receiver has not answered"
    );

    // Once it answers (always 500), the deliveries give up after their attempts and say so.
    receiver.release();
    let messages = eventually("NotificationFailed for both events", CONVERGE, || async {
        let messages = failures(&env).await;
        let both = ["GrantDecided", "GrantEnded"]
            .iter()
            .all(|e| messages.iter().any(|m| m.contains(e)));
        both.then_some(messages)
    })
    .await;
    for m in &messages {
        assert!(
            m.contains("notification requesters (Generic)")
                && m.contains(&format!("AccessGrant {}/prod", env.ns))
                && m.contains("gave up after 3 attempts: the receiver answered HTTP 500 Internal Server Error"),
            "{m}"
        );
        assert!(
            !m.contains("127.0.0.1"),
            "the Event never quotes the URL: {m}"
        );
    }
    wait_metric(&env, "requesters", "Failed", 2).await;
    assert!(receiver.hits("generic").len() >= 6, "three attempts each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_the_operator_may_not_read_is_reported_naming_the_value_to_add() {
    let receiver = Receiver::start(&[]).await;
    let extra = "    - {name: unlisted, secretRef: {name: unlisted-hook}, format: Slack}";
    let env = setup("notify-secret", &receiver, extra).await;
    env.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: unlisted-hook}}\nstringData: {{url: \"{}\"}}\n",
        receiver.url("unlisted")
    ))
    .await;
    request(&env, grant("prod", "group:prod", "1h")).await;
    env.grant_phase("prod", GrantPhase::Active).await;

    let message = eventually("NotificationFailed for unlisted", CONVERGE, || async {
        failures(&env)
            .await
            .into_iter()
            .find(|m| m.contains("notification unlisted"))
    })
    .await;
    assert!(
        message.contains(&format!(
            "the operator may not read Secret {ns}/unlisted-hook: it reads only the Secrets it is allowed to; add \"{ns}/unlisted-hook\" to the chart's credentialSecrets value",
            ns = env.ns
        )),
        "{message}"
    );
    wait_metric(&env, "unlisted", "Misconfigured", 1).await;
    // The others are told as usual; nothing was posted for the unreadable one.
    receiver.wait_hits("generic", 1).await;
    assert!(receiver.hits("unlisted").is_empty());
}

/// An access review's reviewers hear, once each and signed, that it opened (with their share
/// and the command to review), a reminder three quarters through, and that it is overdue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviewers_hear_that_a_review_opened_a_reminder_and_that_it_is_overdue() {
    let receiver = Receiver::start(&[]).await;
    let env = setup(
        "notify-review",
        &receiver,
        "    - {name: reviewers, secretRef: {name: requesters-hook}, format: Generic, events: [ReviewOpened, ReviewReminder, ReviewOverdue]}",
    )
    .await;
    eventually("the entitlements inventory", CONVERGE, || async {
        env.policies()
            .get("jit")
            .await
            .ok()?
            .status?
            .entitlements?
            .digest
    })
    .await;
    env.apply(
        r#"
apiVersion: tailkeeper.io/v1alpha1
kind: AccessReview
metadata: {name: members}
spec:
  policyRef: {name: jit}
  scope: {roles: [member]}
  reviewers: {users: [carol]}
  duration: 8s
  description: "Who is still a member <!channel>"
"#,
    )
    .await;
    let hits = receiver.wait_hits("generic", 3).await;
    let bodies: Vec<Value> = hits.iter().map(assert_signed_and_identified).collect();
    let types: Vec<&str> = bodies.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ReviewOpened", "ReviewReminder", "ReviewOverdue"]);
    let opened = &bodies[0];
    assert_eq!(opened["review"]["name"], "members");
    assert_eq!(opened["review"]["items"], 2);
    assert_eq!(opened["review"]["undecided"], 2);
    assert_eq!(opened["review"]["undecidedAction"], "Keep");
    assert_eq!(
        opened["review"]["description"],
        "Who is still a member <!channel>"
    );
    assert_eq!(
        opened["reviewers"],
        json!([{"reviewer": "user:carol", "assigned": 2, "decided": 0}])
    );
    assert_eq!(
        opened["command"],
        format!("kubectl tailkeeper review -n {} members", env.ns)
    );
    assert_eq!(
        bodies[2]["review"]["undecided"], 2,
        "both were undecided at the due time"
    );
    // Once each: nothing more arrives while the campaign stays over.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(receiver.hits("generic").len(), 3);
    let review: Api<tailkeeper::api::AccessReview> = Api::namespaced(env.client.clone(), &env.ns);
    let status = review.get("members").await.unwrap().status.unwrap();
    assert_eq!(status.notified, ["opened", "reminder", "overdue"]);
}
