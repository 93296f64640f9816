//! Webhooks: endpoints, change detection and signed deliveries, as Tailscale sends them.
//!
//! Changes are found by diffing snapshots rather than by hooking every mutation, so no route,
//! control handler or in-process method can forget to emit its event: every [`TICK`] a
//! background task takes a snapshot of the users (id to login, role, status) and the policy
//! ETag under the state lock, compares it with the previous one and turns the differences into
//! events. The events of one tick go to each subscribed endpoint as one JSON array (Tailscale
//! batches too). Each endpoint has its own queue and delivery task, so its batches arrive in
//! order and a slow or failing receiver delays nobody else, least of all the snapshot loop.
//!
//! A delivery is a POST signed with `Tailscale-Webhook-Signature: t=<unix seconds>,v1=<hex>`,
//! v1 being HMAC-SHA256 over `"<t>.<body>"` keyed with the endpoint's secret; for
//! [`ROTATION_OVERLAP`] after a rotation the header carries one v1 per secret still valid.
//! Anything but a 2xx is retried with exponential backoff, re-signed with a fresh timestamp.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::model::{random_alnum, random_id, Delivery, DeliveryOutcome};
use crate::state::State;
use crate::Simulator;

/// How often the state is compared with the previous snapshot: short enough that tests wait
/// little, long enough that an idle simulator costs nothing noticeable.
const TICK: Duration = Duration::from_millis(50);

/// Attempts per batch, the first included; then the batch is dropped.
const MAX_ATTEMPTS: u32 = 5;

/// Wait before the first retry; it doubles before each further one (100, 200, 400, 800 ms).
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);

/// A receiver that has not answered by then counts as failed, so a hung receiver cannot stall
/// its queue forever.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the secret before a rotation keeps signing deliveries, so receivers can switch
/// to the new one without losing events.
pub(crate) const ROTATION_OVERLAP: Duration = Duration::from_secs(120);

/// Delivery attempts kept for [`Simulator::webhook_deliveries`]; older ones are forgotten so a
/// long-running simulator does not grow without bound.
const MAX_DELIVERY_LOG: usize = 1000;

/// Who the simulator names as the actor of every change (it cannot tell who made it).
pub(crate) const ACTOR: &str = "simulator";

const SIGNATURE_HEADER: &str = "Tailscale-Webhook-Signature";

/// The version of the event format, as Tailscale sends it.
const EVENT_VERSION: u32 = 1;

const NEEDS_APPROVAL: &str = "needs-approval";

/// A registered webhook endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub id: String,
    pub url: String,
    pub provider_type: String,
    pub creator_login_name: String,
    pub created: Timestamp,
    pub last_modified: Timestamp,
    pub subscriptions: Vec<String>,
    pub secret: String,
    /// Secrets replaced by rotations, each with the moment it stops signing deliveries.
    pub previous_secrets: Vec<(String, Instant)>,
}

impl Endpoint {
    /// The secrets a delivery is signed with now: the current one first.
    fn signing_secrets(&self, now: Instant) -> Vec<String> {
        std::iter::once(self.secret.clone())
            .chain(
                self.previous_secrets
                    .iter()
                    .filter(|(_, until)| *until > now)
                    .map(|(secret, _)| secret.clone()),
            )
            .collect()
    }
}

/// What webhooks report about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UserFacts {
    login: String,
    role: String,
    status: String,
}

/// The state as far as webhooks can tell: users by id, and the policy ETag.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    users: BTreeMap<String, UserFacts>,
    policy_etag: String,
}

/// One event in Tailscale's JSON format.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Event {
    timestamp: String,
    version: u32,
    #[serde(rename = "type")]
    event_type: &'static str,
    tailnet: String,
    message: String,
    data: Value,
}

/// The webhook part of the state.
#[derive(Debug, Default)]
pub(crate) struct WebhookState {
    pub endpoints: Vec<Endpoint>,
    /// The snapshot changes are measured against; `None` while there is no endpoint, so an
    /// idle simulator takes no snapshots and a new first endpoint starts from its creation.
    baseline: Option<Snapshot>,
    /// Events found but not yet handed to the delivery tasks, by endpoint id.
    outbox: BTreeMap<String, Vec<Event>>,
    deliveries: VecDeque<Delivery>,
}

impl WebhookState {
    pub fn endpoint(&self, id: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.id == id)
    }

    /// Where and with which secrets to deliver to endpoint `id` now; `None` once deleted.
    fn target(&self, id: &str) -> Option<(String, Vec<String>)> {
        self.endpoint(id)
            .map(|e| (e.url.clone(), e.signing_secrets(Instant::now())))
    }

    fn record(&mut self, delivery: Delivery) {
        if self.deliveries.len() >= MAX_DELIVERY_LOG {
            self.deliveries.pop_front();
        }
        self.deliveries.push_back(delivery);
    }

    /// Every recorded delivery attempt, most recent last.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.iter().cloned().collect()
    }

    /// Remove endpoint `id` and its undelivered events; false if there was none.
    pub fn remove(&mut self, id: &str) -> bool {
        self.outbox.remove(id);
        let before = self.endpoints.len();
        self.endpoints.retain(|e| e.id != id);
        self.endpoints.len() != before
    }

    /// Replace endpoint `id`'s subscriptions; `None` if there is no such endpoint.
    pub fn set_subscriptions(&mut self, id: &str, subscriptions: Vec<String>) -> Option<&Endpoint> {
        let endpoint = self.endpoints.iter_mut().find(|e| e.id == id)?;
        endpoint.subscriptions = subscriptions;
        endpoint.last_modified = Timestamp::now();
        Some(endpoint)
    }

    /// Give endpoint `id` a new secret; the old one keeps signing for [`ROTATION_OVERLAP`].
    pub fn rotate(&mut self, id: &str) -> Option<&Endpoint> {
        let endpoint = self.endpoints.iter_mut().find(|e| e.id == id)?;
        let now = Instant::now();
        let old = std::mem::replace(&mut endpoint.secret, new_secret());
        endpoint.previous_secrets.retain(|(_, until)| *until > now);
        endpoint
            .previous_secrets
            .push((old, now + ROTATION_OVERLAP));
        endpoint.last_modified = Timestamp::now();
        Some(endpoint)
    }
}

/// Subscription categories: each stands for a group of event types, including types Tailscale
/// adds to the group later (as its Go client documents).
pub(crate) const CATEGORIES: &[(&str, &[&str])] = &[
    (
        "categoryTailnetManagement",
        &[
            "nodeCreated",
            "nodeNeedsApproval",
            "nodeApproved",
            "nodeKeyExpiringInOneDay",
            "nodeKeyExpired",
            "nodeDeleted",
            "policyUpdate",
            "userCreated",
            "userNeedsApproval",
            "userSuspended",
            "userRestored",
            "userDeleted",
            "userApproved",
            "userRoleUpdated",
        ],
    ),
    (
        "categoryDeviceMisconfigurations",
        &[
            "subnetIPForwardingNotEnabled",
            "exitNodeIPForwardingNotEnabled",
        ],
    ),
];

/// Whether a subscription (an event type or a category) covers `event_type`.
pub(crate) fn subscription_covers(subscription: &str, event_type: &str) -> bool {
    subscription == event_type
        || CATEGORIES
            .iter()
            .any(|(category, types)| *category == subscription && types.contains(&event_type))
}

fn new_secret() -> String {
    format!("tskey-webhook-{}", random_alnum(32))
}

impl State {
    /// Register an endpoint. Only changes made from now on reach it.
    pub fn add_webhook(
        &mut self,
        url: String,
        provider_type: String,
        subscriptions: Vec<String>,
        creator_login_name: String,
    ) -> Endpoint {
        // Settle earlier changes first, so they go to the endpoints that existed then.
        self.detect_webhook_changes();
        let now = Timestamp::now();
        let endpoint = Endpoint {
            id: random_id("w"),
            url,
            provider_type,
            creator_login_name,
            created: now,
            last_modified: now,
            subscriptions,
            secret: new_secret(),
            previous_secrets: Vec::new(),
        };
        self.webhooks.endpoints.push(endpoint.clone());
        if self.webhooks.baseline.is_none() {
            self.webhooks.baseline = Some(self.webhook_snapshot());
        }
        endpoint
    }

    fn webhook_snapshot(&self) -> Snapshot {
        Snapshot {
            users: self
                .users
                .iter()
                .map(|u| {
                    let facts = UserFacts {
                        login: u.login_name.clone(),
                        role: u.role.clone(),
                        status: u.status.clone(),
                    };
                    (u.id.clone(), facts)
                })
                .collect(),
            policy_etag: self.policy_etag(),
        }
    }

    /// Compare the state with the last snapshot and queue events for subscribed endpoints.
    fn detect_webhook_changes(&mut self) {
        if self.webhooks.endpoints.is_empty() {
            self.webhooks.baseline = None;
            return;
        }
        let now = self.webhook_snapshot();
        let events = match &self.webhooks.baseline {
            Some(before) => diff(before, &now, &self.config.tailnet_name),
            None => Vec::new(),
        };
        self.webhooks.baseline = Some(now);
        if events.is_empty() {
            return;
        }
        let webhooks = &mut self.webhooks;
        for endpoint in &webhooks.endpoints {
            let subscribed: Vec<Event> = events
                .iter()
                .filter(|e| {
                    endpoint
                        .subscriptions
                        .iter()
                        .any(|s| subscription_covers(s, e.event_type))
                })
                .cloned()
                .collect();
            if !subscribed.is_empty() {
                webhooks
                    .outbox
                    .entry(endpoint.id.clone())
                    .or_default()
                    .extend(subscribed);
            }
        }
    }
}

/// The events that turn `before` into `after`, users in id order, then the policy.
fn diff(before: &Snapshot, after: &Snapshot, tailnet: &str) -> Vec<Event> {
    let timestamp = Timestamp::now().to_string();
    let event = |event_type: &'static str, message: String, data: Value| Event {
        timestamp: timestamp.clone(),
        version: EVENT_VERSION,
        event_type,
        tailnet: tailnet.to_string(),
        message,
        data,
    };
    let user_data =
        |id: &str, user: &UserFacts| json!({"user": user.login, "id": id, "actor": ACTOR});
    let mut events = Vec::new();
    for (id, user) in &after.users {
        let login = &user.login;
        let Some(old) = before.users.get(id) else {
            events.push(event(
                "userCreated",
                format!("User {login} created"),
                user_data(id, user),
            ));
            if user.status == NEEDS_APPROVAL {
                events.push(event(
                    "userNeedsApproval",
                    format!("User {login} needs approval"),
                    user_data(id, user),
                ));
            }
            continue;
        };
        if old.role != user.role {
            events.push(event(
                "userRoleUpdated",
                format!(
                    "Role of user {login} changed from {} to {}",
                    old.role, user.role
                ),
                json!({
                    "user": login,
                    "id": id,
                    "actor": ACTOR,
                    "oldRoles": [old.role],
                    "newRoles": [user.role],
                }),
            ));
        }
        if let Some((event_type, what)) = status_change(&old.status, &user.status) {
            events.push(event(
                event_type,
                format!("User {login} {what}"),
                user_data(id, user),
            ));
        }
    }
    for (id, user) in &before.users {
        if !after.users.contains_key(id) {
            events.push(event(
                "userDeleted",
                format!("User {} deleted", user.login),
                user_data(id, user),
            ));
        }
    }
    if before.policy_etag != after.policy_etag {
        events.push(event(
            "policyUpdate",
            "Tailnet policy file updated".to_string(),
            json!({
                "actor": ACTOR,
                "oldPolicy": before.policy_etag,
                "newPolicy": after.policy_etag,
            }),
        ));
    }
    events
}

/// The event type (and message wording) for a user's status change, if it has one.
fn status_change(old: &str, new: &str) -> Option<(&'static str, &'static str)> {
    match (old, new) {
        (old, new) if old == new => None,
        (_, "suspended") => Some(("userSuspended", "suspended")),
        ("suspended", _) => Some(("userRestored", "restored")),
        (NEEDS_APPROVAL, "active") => Some(("userApproved", "approved")),
        (_, NEEDS_APPROVAL) => Some(("userNeedsApproval", "needs approval")),
        _ => None,
    }
}

/// The `Tailscale-Webhook-Signature` value: `t=<timestamp>` and one `v1=` per secret.
pub(crate) fn signature_header(timestamp: i64, body: &[u8], secrets: &[String]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&sign(secret, timestamp, body));
    }
    header
}

/// Lowercase hex HMAC-SHA256 of `"<timestamp>.<body>"` keyed with the secret's bytes.
fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Start the snapshot loop; it and every delivery task end on the simulator's shutdown.
pub(crate) fn spawn(sim: Simulator) {
    let shutdown = sim.shutdown_signal();
    tokio::spawn(async move {
        tokio::select! {
            _ = run(sim) => {}
            _ = shutdown => {}
        }
    });
}

/// Each tick: detect changes under the lock, then hand each endpoint's batch to its queue.
async fn run(sim: Simulator) {
    let client = match reqwest::Client::builder()
        .timeout(DELIVERY_TIMEOUT)
        // Tailscale does not follow redirects either; a 3xx is a failed delivery.
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(%err, "cannot build the webhook HTTP client; webhooks disabled");
            return;
        }
    };
    let mut queues: HashMap<String, mpsc::UnboundedSender<Vec<Event>>> = HashMap::new();
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let (batches, live) = {
            let mut st = sim.lock();
            st.detect_webhook_changes();
            let batches = std::mem::take(&mut st.webhooks.outbox);
            let live: Vec<String> = st.webhooks.endpoints.iter().map(|e| e.id.clone()).collect();
            (batches, live)
        };
        // Dropping a deleted endpoint's sender ends its task once the queue is drained (and
        // each queued attempt stops when it finds the endpoint gone).
        queues.retain(|id, _| live.contains(id));
        for (id, events) in batches {
            let queue = queues
                .entry(id.clone())
                .or_insert_with(|| spawn_endpoint_task(&sim, &client, id));
            // The task only ends at shutdown, which ends this loop too.
            let _ = queue.send(events);
        }
    }
}

/// One task per endpoint delivers its batches in order.
fn spawn_endpoint_task(
    sim: &Simulator,
    client: &reqwest::Client,
    endpoint_id: String,
) -> mpsc::UnboundedSender<Vec<Event>> {
    let (sender, mut receiver) = mpsc::unbounded_channel::<Vec<Event>>();
    let sim = sim.clone();
    let client = client.clone();
    let shutdown = sim.shutdown_signal();
    tokio::spawn(async move {
        let work = async {
            while let Some(events) = receiver.recv().await {
                deliver(&sim, &client, &endpoint_id, &events).await;
            }
        };
        tokio::select! {
            _ = work => {}
            _ = shutdown => {}
        }
    });
    sender
}

/// Deliver one batch, retrying with backoff; every attempt is recorded.
async fn deliver(sim: &Simulator, client: &reqwest::Client, endpoint_id: &str, events: &[Event]) {
    let body = match serde_json::to_vec(events) {
        Ok(body) => body,
        Err(err) => {
            tracing::error!(%err, endpoint_id, "cannot serialize webhook events");
            return;
        }
    };
    let event_types: Vec<String> = events.iter().map(|e| e.event_type.to_string()).collect();
    let mut delay = FIRST_RETRY_DELAY;
    for attempt in 1..=MAX_ATTEMPTS {
        // Read the endpoint afresh each time: it may have been rotated or deleted meanwhile.
        let Some((url, secrets)) = sim.lock().webhooks.target(endpoint_id) else {
            tracing::debug!(endpoint_id, "webhook endpoint deleted; batch dropped");
            return;
        };
        let signature = signature_header(Timestamp::now().as_second(), &body, &secrets);
        let sent = client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body.clone())
            .send()
            .await;
        let outcome = match sent {
            Ok(response) => DeliveryOutcome::Status(response.status().as_u16()),
            Err(err) => DeliveryOutcome::Error(error_chain(&err)),
        };
        let delivery = Delivery {
            endpoint_id: endpoint_id.to_string(),
            attempt,
            outcome,
            event_types: event_types.clone(),
        };
        let delivered = delivery.delivered();
        tracing::debug!(endpoint_id, attempt, outcome = ?delivery.outcome, "webhook delivery");
        sim.lock().webhooks.record(delivery);
        if delivered {
            return;
        }
        if attempt < MAX_ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    tracing::warn!(
        endpoint_id,
        attempts = MAX_ATTEMPTS,
        "webhook batch dropped after its last attempt"
    );
}

/// An error with its causes: reqwest's own message alone rarely says what went wrong.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(users: &[(&str, &str, &str, &str)], etag: &str) -> Snapshot {
        Snapshot {
            users: users
                .iter()
                .map(|(id, login, role, status)| {
                    let facts = UserFacts {
                        login: login.to_string(),
                        role: role.to_string(),
                        status: status.to_string(),
                    };
                    (id.to_string(), facts)
                })
                .collect(),
            policy_etag: etag.to_string(),
        }
    }

    fn types(events: &[Event]) -> Vec<&'static str> {
        events.iter().map(|e| e.event_type).collect()
    }

    #[test]
    fn diff_names_every_change() {
        let before = snapshot(
            &[
                ("u1", "a@x", "member", "active"),
                ("u2", "b@x", "member", "needs-approval"),
                ("u3", "c@x", "member", "suspended"),
                ("u4", "d@x", "member", "active"),
            ],
            "e1",
        );
        let after = snapshot(
            &[
                ("u1", "a@x", "admin", "suspended"),
                ("u2", "b@x", "member", "active"),
                ("u3", "c@x", "member", "active"),
                ("u5", "e@x", "member", "needs-approval"),
            ],
            "e2",
        );
        let events = diff(&before, &after, "example.com");
        assert_eq!(
            types(&events),
            [
                "userRoleUpdated",
                "userSuspended",
                "userApproved",
                "userRestored",
                "userCreated",
                "userNeedsApproval",
                "userDeleted",
                "policyUpdate",
            ]
        );
        assert_eq!(
            events[0].data,
            json!({"user": "a@x", "id": "u1", "actor": "simulator",
                   "oldRoles": ["member"], "newRoles": ["admin"]})
        );
        assert_eq!(
            events[7].data,
            json!({"actor": "simulator", "oldPolicy": "e1", "newPolicy": "e2"})
        );
        assert!(diff(&after, &after, "example.com").is_empty());
    }

    #[test]
    fn signature_header_has_one_v1_per_secret() {
        let secrets = ["new".to_string(), "old".to_string()];
        let header = signature_header(1700000000, b"[]", &secrets);
        let parts: Vec<&str> = header.split(',').collect();
        assert_eq!(parts[0], "t=1700000000");
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1], format!("v1={}", sign("new", 1700000000, b"[]")));
        assert_eq!(parts[2], format!("v1={}", sign("old", 1700000000, b"[]")));
        assert_ne!(parts[1], parts[2]);
    }

    #[test]
    fn categories_cover_their_event_types() {
        assert!(subscription_covers("userCreated", "userCreated"));
        assert!(!subscription_covers("userCreated", "userDeleted"));
        for emitted in crate::model::WEBHOOK_EVENT_TYPES {
            assert!(
                subscription_covers("categoryTailnetManagement", emitted),
                "{emitted}"
            );
            assert!(!subscription_covers(
                "categoryDeviceMisconfigurations",
                emitted
            ));
        }
        assert!(subscription_covers(
            "categoryDeviceMisconfigurations",
            "subnetIPForwardingNotEnabled"
        ));
    }
}
