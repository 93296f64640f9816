//! Outgoing notifications, the I/O half. The grant reconciler hands over each change of phase it
//! wrote ([`grant_changed`]: pure decisions, a bounded queue, never a wait); one sender task
//! ([`send`]) reads each receiver's Secret, posts, retries and reports failures as a Warning
//! Event `NotificationFailed` on the policy and in `tailkeeper_notifications_total`. What is
//! sent to whom, the bodies, signatures and retry schedule are decided in
//! [`crate::notifications`].
//!
//! It must never hold up a grant: a full queue drops the notification (counted `Dropped`), a
//! slow receiver only occupies one of a few delivery slots. It must never leak a receiver's URL
//! or signing secret: both are read from the Secret at delivery, kept in redacting types, and
//! no error from the HTTP client is ever formatted (its text would carry the URL).
//!
//! Each change is notified at most once per operator process and at least once unless the
//! process stops first: the queue lives in memory, and the grant's phase is the durable record.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, error, warn};

use super::context::Context;
use crate::api::{AccessGrant, AccessGrantStatus, AccessPolicy, GrantPhase, NotificationFormat};
use crate::metrics::NotificationLabels;
use crate::notifications::retry::{self, Attempt, GaveUp, Next, RetryPolicy};
use crate::notifications::{self, sign, target, Delivery, GrantNews, Outcome, NOTIFICATION_FAILED};
use crate::tailscale::Secret as Credential;

/// The Secret key holding the receiver's URL.
pub const URL_KEY: &str = "url";
/// The Secret key holding the signing secret of a `Generic` receiver.
pub const SIGNING_SECRET_KEY: &str = "secret";

/// Changes remembered as notified, to notify each once however often its status is written.
const REMEMBERED: usize = 16_384;

/// How notifications are delivered.
#[derive(Clone, Debug)]
pub struct NotificationSettings {
    pub retry: RetryPolicy,
    /// Timeout of one attempt.
    pub request_timeout: Duration,
    /// Hosts (`host` or `host:port`, lower case) notifications may reach over plain http.
    pub plain_http_hosts: Vec<String>,
    /// Deliveries waiting to be sent, at most.
    pub queue: usize,
    /// Deliveries under way at once, at most.
    pub in_flight: usize,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(10),
            plain_http_hosts: Vec::new(),
            queue: 1024,
            in_flight: 16,
        }
    }
}

/// One delivery waiting to be sent.
struct Job {
    /// The policy whose receiver it is (Events go on it).
    policy: Arc<AccessPolicy>,
    /// What it is about, `AccessGrant <namespace>/<name>` or `AccessReview …`.
    subject: String,
    /// The object the notification is about (the Event's related object): a grant, a review.
    about: k8s_openapi::api::core::v1::ObjectReference,
    delivery: Delivery,
}

/// The queue between the reconcilers and the sender.
pub struct Notifier {
    queue: mpsc::Sender<Job>,
    pending: Mutex<Option<mpsc::Receiver<Job>>>,
    seen: Mutex<Seen>,
}

impl Notifier {
    pub fn new(capacity: usize) -> Self {
        let (queue, pending) = mpsc::channel(capacity.max(1));
        Notifier {
            queue,
            pending: Mutex::new(Some(pending)),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Whether `key` is seen for the first time (and remember it).
    fn first_time(&self, key: String) -> bool {
        self.seen.lock().map_or(true, |mut s| s.insert(key))
    }
}

/// Keys in insertion order, forgetting the oldest beyond [`REMEMBERED`].
#[derive(Default)]
struct Seen {
    keys: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    fn insert(&mut self, key: String) -> bool {
        if !self.keys.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.keys.remove(&old);
            }
        }
        true
    }
}

/// The grant reconciler wrote `status` over a status in phase `previous`: queue what its policy's
/// receivers are to hear of it. Never waits.
pub fn grant_changed(
    ctx: &Context,
    grant: &AccessGrant,
    previous: Option<GrantPhase>,
    status: &AccessGrantStatus,
) {
    let Some(phase) = status.phase else { return };
    let Some(kind) = notifications::grant_event_kind(previous, phase) else {
        return;
    };
    let ns = grant.namespace().unwrap_or_default();
    let Some(policy) = ctx.cached_policy(&ns, &grant.spec.policy_ref.name) else {
        return;
    };
    if !notifications::subscribed(&policy.spec.notifications, kind) {
        return;
    }
    let uid = grant.uid().unwrap_or_default();
    if !ctx.notifier.first_time(format!("{uid}/{phase:?}")) {
        return;
    }
    let Some(news) = GrantNews::of(grant, status, &policy.spec, Timestamp::now()) else {
        return;
    };
    let Some(event) = notifications::grant_event(previous, news) else {
        return;
    };
    queue(ctx, &policy, &event, grant.object_ref(&()));
}

/// An access review opened, nears its due time or passed it: queue what its policy's
/// receivers are to hear of it, once per review and event. Never waits.
pub fn review_event(
    ctx: &Context,
    policy: &Arc<AccessPolicy>,
    event: &notifications::Event,
    review: k8s_openapi::api::core::v1::ObjectReference,
) {
    if !notifications::subscribed(&policy.spec.notifications, event.kind()) {
        return;
    }
    if !ctx.notifier.first_time(event.key()) {
        return;
    }
    queue(ctx, policy, event, review);
}

fn queue(
    ctx: &Context,
    policy: &Arc<AccessPolicy>,
    event: &notifications::Event,
    about: k8s_openapi::api::core::v1::ObjectReference,
) {
    let ns = policy.namespace().unwrap_or_default();
    for delivery in notifications::plan(&policy.spec.notifications, event) {
        let notification = delivery.notification.clone();
        let job = Job {
            policy: policy.clone(),
            subject: event.subject(),
            about: about.clone(),
            delivery,
        };
        if ctx.notifier.queue.try_send(job).is_err() {
            warn!(namespace = %ns, policy = %policy.name_any(), %notification, subject = %event.subject(),
                "notification queue full: this notification is dropped");
            count(ctx, policy, &notification, Outcome::Dropped);
        }
    }
}

/// Deliver what is queued, a few at a time, until the queue closes (the operator stops) or
/// this task is aborted (which aborts the deliveries under way).
pub async fn send(ctx: Arc<Context>) {
    let Some(mut queue) = ctx.notifier.pending.lock().ok().and_then(|mut p| p.take()) else {
        return;
    };
    let settings = ctx.settings.notifications.clone();
    let http = match reqwest::Client::builder()
        // An allowed URL must not bounce the request to one that is not.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.request_timeout)
        .user_agent(concat!("tailkeeper/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(http) => http,
        Err(_) => {
            error!("cannot build the HTTP client for notifications: none will be sent");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(settings.in_flight.max(1)));
    let mut running = JoinSet::new();
    while let Some(job) = queue.recv().await {
        while running.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let (ctx, http) = (ctx.clone(), http.clone());
        running.spawn(async move {
            deliver(&ctx, &http, &job).await;
            drop(slot);
        });
    }
}

/// Where and how to post: from the receiver's Secret. Never printed.
struct Receiver {
    url: url::Url,
    signing: Option<Credential>,
}

async fn deliver(ctx: &Context, http: &reqwest::Client, job: &Job) {
    let receiver = match receiver(ctx, job).await {
        Ok(r) => r,
        Err((outcome, why)) => return report(ctx, job, outcome, &why).await,
    };
    let settings = &ctx.settings.notifications;
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let attempt = post(http, &receiver, &job.delivery).await;
        let jitter = rand::random::<f64>();
        match retry::next(
            &settings.retry,
            attempts,
            &attempt,
            started.elapsed(),
            jitter,
        ) {
            Next::Delivered => {
                debug!(notification = %job.delivery.notification, subject = %job.subject,
                    event = job.delivery.event.as_str(), attempts, "notification delivered");
                count(
                    ctx,
                    &job.policy,
                    &job.delivery.notification,
                    Outcome::Delivered,
                );
                return;
            }
            Next::RetryIn(delay) => {
                debug!(notification = %job.delivery.notification, subject = %job.subject,
                    attempts, delay_ms = delay.as_millis() as u64, receiver = %attempt,
                    "notification not delivered yet; retrying");
                tokio::time::sleep(delay).await;
            }
            Next::GiveUp(gave_up) => {
                let outcome = match gave_up {
                    GaveUp::Refused { .. } => Outcome::Refused,
                    _ => Outcome::Failed,
                };
                return report(ctx, job, outcome, &gave_up.to_string()).await;
            }
        }
    }
}

/// One attempt. The HTTP client's errors are classified, never printed: their text carries the
/// URL.
async fn post(http: &reqwest::Client, receiver: &Receiver, delivery: &Delivery) -> Attempt {
    let mut request = http
        .post(receiver.url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(sign::IDEMPOTENCY_HEADER, &delivery.id)
        .body(delivery.body.clone());
    if let Some(secret) = &receiver.signing {
        let header = sign::sign(
            delivery.body.as_bytes(),
            secret.expose().as_bytes(),
            Timestamp::now().as_second(),
        );
        request = request.header(sign::SIGNATURE_HEADER, header);
    }
    match request.send().await {
        Ok(response) => Attempt::Answered {
            status: response.status().as_u16(),
            retry_after: response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry::parse_retry_after(v, Timestamp::now())),
        },
        Err(e) if e.is_timeout() => Attempt::TimedOut,
        Err(_) => Attempt::ConnectionFailed,
    }
}

/// Read the receiver's Secret with the operator's own (restricted) Secret access.
async fn receiver(ctx: &Context, job: &Job) -> Result<Receiver, (Outcome, String)> {
    let ns = job.policy.namespace().unwrap_or_default();
    let name = &job.delivery.secret;
    let generic = job.delivery.format == NotificationFormat::Generic;
    let misconfigured = |why: String| (Outcome::Misconfigured, why);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret = match secrets.get_opt(name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(misconfigured(format!(
                "Secret {ns}/{name} does not exist: create it with key {URL_KEY:?} (the receiver's URL){}",
                if generic { format!(" and key {SIGNING_SECRET_KEY:?} (the signing secret)") } else { String::new() }
            )))
        }
        Err(kube::Error::Api(e)) if e.code == 403 => {
            return Err(misconfigured(format!(
                "the operator may not read Secret {ns}/{name}: it reads only the Secrets it is allowed to; add \"{ns}/{name}\" to the chart's credentialSecrets value (or grant its ServiceAccount get on this Secret)"
            )))
        }
        Err(e) => {
            return Err((
                Outcome::Failed,
                format!("cannot read Secret {ns}/{name}: {e}"),
            ))
        }
    };
    let value = |key: &str| -> Option<String> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())?;
        let text = String::from_utf8(bytes).ok()?.trim().to_string();
        (!text.is_empty()).then_some(text)
    };
    let Some(url) = value(URL_KEY).map(Credential::new) else {
        return Err(misconfigured(format!(
            "Secret {ns}/{name} has no key {URL_KEY:?} (the receiver's URL)"
        )));
    };
    let url = target::check(url.expose(), &ctx.settings.notifications.plain_http_hosts).map_err(
        |refusal| {
            misconfigured(format!(
                "Secret {ns}/{name} names a receiver the operator does not post to: {refusal}"
            ))
        },
    )?;
    let signing = if generic {
        match value(SIGNING_SECRET_KEY) {
            Some(s) => Some(Credential::new(s)),
            None => {
                return Err(misconfigured(format!(
                    "Secret {ns}/{name} has no key {SIGNING_SECRET_KEY:?}, the secret that signs a Generic notification"
                )))
            }
        }
    } else {
        None
    };
    Ok(Receiver { url, signing })
}

/// A delivery that gave up: counted, logged and a Warning Event on the policy. `why` quotes the
/// receiver's status or the problem with its Secret, never the URL.
async fn report(ctx: &Context, job: &Job, outcome: Outcome, why: &str) {
    count(ctx, &job.policy, &job.delivery.notification, outcome);
    let message = format!(
        "notification {} ({:?}) of {} about {} was not delivered: {why}",
        job.delivery.notification,
        job.delivery.format,
        job.delivery.event.as_str(),
        job.subject
    );
    warn!(namespace = %job.policy.namespace().unwrap_or_default(), policy = %job.policy.name_any(),
        outcome = outcome.as_str(), %message, "notification not delivered");
    ctx.publish_apart(
        job.policy.as_ref(),
        EventType::Warning,
        NOTIFICATION_FAILED,
        "Notify",
        message,
        Some(job.about.clone()),
    )
    .await;
}

fn count(ctx: &Context, policy: &AccessPolicy, notification: &str, outcome: Outcome) {
    ctx.metrics
        .notifications
        .get_or_create(&NotificationLabels {
            namespace: policy.namespace().unwrap_or_default(),
            policy: policy.name_any(),
            notification: notification.to_string(),
            outcome: outcome.as_str().to_string(),
        })
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_remembered_once_and_the_oldest_are_forgotten() {
        let mut seen = Seen::default();
        assert!(seen.insert("a/Active".into()));
        assert!(!seen.insert("a/Active".into()));
        for i in 0..REMEMBERED {
            seen.insert(format!("{i}"));
        }
        assert!(
            seen.insert("a/Active".into()),
            "forgotten after so many others"
        );
        assert_eq!(seen.keys.len(), REMEMBERED);
    }
}
