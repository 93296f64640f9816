//! The webhook endpoint: `POST /tailscale/<namespace>/<integration>` on its own port. Each
//! delivery is checked by the pure rules in [`crate::webhook`] (signature, age, replay, rate)
//! and, when authentic, makes the integration sync now (and grants waiting on the policy file
//! look again on `policyUpdate`). Refused deliveries change nothing and get a 4xx.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures::channel::mpsc;
use futures::SinkExt;
use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use serde_json::json;
use tracing::{debug, info};

use super::context::{Context, Key};
use crate::api::{AccessGrant, GrantPhase, TailscaleIntegration};
use crate::metrics::WebhookLabels;
use crate::webhook::{self, RateLimiter, Rejection, ReplayGuard};

/// Deliveries an integration may send per second on average, and in a burst.
const RATE_PER_SECOND: f64 = 5.0;
const RATE_BURST: f64 = 20.0;
/// The rate-limit bucket of an integration's signed deliveries.
const SIGNED: &str = "signed";
/// The rate-limit bucket of everything else sent to it (unsigned, stale, wrongly signed).
const UNAUTHENTICATED: &str = "unauthenticated";

/// What the endpoint needs.
pub struct Receiver {
    ctx: Arc<Context>,
    resync: mpsc::Sender<ObjectRef<TailscaleIntegration>>,
    recheck: mpsc::Sender<ObjectRef<AccessGrant>>,
    replays: Mutex<HashMap<Key, ReplayGuard>>,
    limiter: Mutex<RateLimiter>,
}

impl Receiver {
    pub fn new(
        ctx: Arc<Context>,
        resync: mpsc::Sender<ObjectRef<TailscaleIntegration>>,
        recheck: mpsc::Sender<ObjectRef<AccessGrant>>,
    ) -> Self {
        Receiver {
            ctx,
            resync,
            recheck,
            replays: Mutex::default(),
            limiter: Mutex::new(RateLimiter::new(RATE_PER_SECOND, RATE_BURST)),
        }
    }
}

/// Serve the endpoint on `addr` until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    receiver: Arc<Receiver>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for webhooks: {e}"))?;
    info!(%addr, "serving Tailscale webhooks on /tailscale/<namespace>/<integration>");
    let app = Router::new()
        .route("/tailscale/{namespace}/{name}", post(deliver))
        .layer(DefaultBodyLimit::max(webhook::MAX_BODY_BYTES))
        .with_state(receiver);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

fn answer(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "message": message.into() }))).into_response()
}

async fn deliver(
    State(receiver): State<Arc<Receiver>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key: Key = (namespace.clone(), name.clone());
    let Some(integration) = receiver
        .ctx
        .cached_integration(&namespace, &name)
        .filter(|i| i.spec.webhook.is_some())
    else {
        return answer(
            StatusCode::NOT_FOUND,
            "no TailscaleIntegration here receives webhooks",
        );
    };
    let outcome = |outcome: &str| {
        receiver
            .ctx
            .metrics
            .webhook_deliveries
            .get_or_create(&WebhookLabels {
                namespace: namespace.clone(),
                integration: name.clone(),
                outcome: outcome.to_string(),
            })
            .inc();
    };
    let now = Timestamp::now();
    // Signed deliveries and everything else are limited in buckets of their own: unsigned
    // traffic never costs an authentic delivery its turn. (Verifying first costs one HMAC over
    // a body of bounded size.)
    let take = |bucket: &str| {
        receiver
            .limiter
            .lock()
            .map(|mut l| l.allow(&format!("{namespace}/{name}/{bucket}"), now))
            .unwrap_or(false)
    };
    let limited = || {
        answer(
            StatusCode::TOO_MANY_REQUESTS,
            "too many deliveries; retry later",
        )
    };
    let Some(secrets) = receiver.ctx.webhook_secrets(&key) else {
        outcome("NotReady");
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "the signing secret has not been read yet; retry",
        );
    };
    let secrets: Vec<&[u8]> = secrets.iter().map(|s| s.expose().as_bytes()).collect();
    let signature = headers
        .get(webhook::SIGNATURE_HEADER)
        .and_then(|h| h.to_str().ok());
    let refused = |rejection: Rejection| {
        debug!(%namespace, integration = %name, reason = rejection.reason(), "webhook refused");
        outcome(rejection.reason());
        answer(
            StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::BAD_REQUEST),
            rejection.to_string(),
        )
    };
    let verified = match webhook::verify(signature, &body, &secrets, now) {
        Ok(v) => v,
        Err(e) => {
            if !take(UNAUTHENTICATED) {
                outcome("RateLimited");
                return limited();
            }
            return refused(e);
        }
    };
    if !take(SIGNED) {
        outcome("RateLimited");
        return limited();
    }
    let events = match webhook::parse_events(&body) {
        Ok(events) => events,
        Err(e) => return refused(e),
    };
    let fresh = receiver
        .replays
        .lock()
        .map_err(|_| Rejection::Replayed)
        .and_then(|mut guards| guards.entry(key).or_default().admit(&verified, &body, now));
    if let Err(e) = fresh {
        return refused(e);
    }
    let effect = webhook::effect(&events);
    outcome("Accepted");
    info!(%namespace, integration = %name, events = events.len(), resync = effect.resync, "webhook accepted");
    if effect.resync {
        let _ = receiver
            .resync
            .clone()
            .send(ObjectRef::from_obj(integration.as_ref()))
            .await;
    }
    if effect.policy_changed {
        for grant in waiting_grants(&receiver, &integration) {
            let _ = receiver.recheck.clone().send(grant).await;
        }
    }
    (
        StatusCode::OK,
        Json(json!({ "accepted": events.len(), "ignored": effect.ignored })),
    )
        .into_response()
}

/// Grants not yet active whose policy governs `integration`'s tailnet.
fn waiting_grants(
    receiver: &Receiver,
    integration: &TailscaleIntegration,
) -> Vec<ObjectRef<AccessGrant>> {
    let ns = integration.namespace().unwrap_or_default();
    let policies = receiver.ctx.policies_of(&ns, &integration.name_any());
    receiver
        .ctx
        .grants_in(&ns)
        .iter()
        .filter(|g| policies.contains(&g.spec.policy_ref.name))
        .filter(|g| {
            matches!(
                g.status.as_ref().and_then(|s| s.phase),
                None | Some(GrantPhase::Pending | GrantPhase::AwaitingApproval)
            )
        })
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}

/// The Lease annotation where the leader says where its webhook endpoint is:
/// `<identity>=<url>` (the identity, so a stale entry of a former leader is never used).
pub const ENDPOINT_ANNOTATION: &str = "tailkeeper.io/webhook-endpoint";
/// How long a standby waits for the leader to answer a forwarded delivery.
const FORWARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The leader's webhook endpoint as its Lease announces it: the annotation's URL when it names
/// the Lease's current holder.
pub fn leader_endpoint(lease: &k8s_openapi::api::coordination::v1::Lease) -> Option<String> {
    let holder = lease.spec.as_ref()?.holder_identity.as_deref()?;
    let announced = lease
        .metadata
        .annotations
        .as_ref()?
        .get(ENDPOINT_ANNOTATION)?;
    let (identity, url) = announced.split_once('=')?;
    (identity == holder && !holder.is_empty() && url.starts_with("http"))
        .then(|| url.trim_end_matches('/').to_string())
}

/// What a standby needs to pass deliveries on.
struct Forwarder {
    leases: kube::Api<k8s_openapi::api::coordination::v1::Lease>,
    lease_name: String,
    http: reqwest::Client,
}

/// Serve the webhook port on a standby until `shutdown`: every delivery goes, untouched, to the
/// leader, which checks it (a standby has nothing to sync). With no leader announced, 503: the
/// sender retries.
pub async fn forward(
    addr: SocketAddr,
    leases: kube::Api<k8s_openapi::api::coordination::v1::Lease>,
    lease_name: String,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for webhooks: {e}"))?;
    info!(%addr, "standby: passing Tailscale webhooks on to the leader");
    let http = reqwest::Client::builder()
        .timeout(FORWARD_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let forwarder = Arc::new(Forwarder {
        leases,
        lease_name,
        http,
    });
    let app = Router::new()
        .route("/tailscale/{namespace}/{name}", post(pass_on))
        .layer(DefaultBodyLimit::max(webhook::MAX_BODY_BYTES))
        .with_state(forwarder);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn pass_on(
    State(forwarder): State<Arc<Forwarder>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let unavailable = |why: String| {
        debug!(%namespace, integration = %name, %why, "standby cannot pass a webhook on");
        answer(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this replica is a standby and {why}; retry"),
        )
    };
    let lease = match forwarder.leases.get_opt(&forwarder.lease_name).await {
        Ok(lease) => lease,
        Err(e) => return unavailable(format!("cannot read the leader-election Lease: {e}")),
    };
    let Some(endpoint) = lease.as_ref().and_then(leader_endpoint) else {
        return unavailable("no leader has announced its webhook endpoint".to_string());
    };
    let mut request = forwarder
        .http
        .post(format!("{endpoint}/tailscale/{namespace}/{name}"))
        .body(body);
    for header in [webhook::SIGNATURE_HEADER, "content-type"] {
        if let Some(value) = headers.get(header) {
            request = request.header(header, value);
        }
    }
    match request.send().await {
        Ok(answer_of_leader) => {
            let status = StatusCode::from_u16(answer_of_leader.status().as_u16())
                .unwrap_or(StatusCode::BAD_GATEWAY);
            let body = answer_of_leader.bytes().await.unwrap_or_default();
            (
                status,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        Err(e) => unavailable(format!("the leader did not answer: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    use kube::api::ObjectMeta;

    fn lease(holder: Option<&str>, announced: Option<&str>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                annotations: announced.map(|a| {
                    [(ENDPOINT_ANNOTATION.to_string(), a.to_string())]
                        .into_iter()
                        .collect()
                }),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_standby_forwards_only_to_the_endpoint_the_current_leader_announced() {
        assert_eq!(
            leader_endpoint(&lease(Some("pod-a"), Some("pod-a=http://10.0.0.5:8081/"))),
            Some("http://10.0.0.5:8081".to_string())
        );
        // A former leader's announcement, no holder, no announcement, or no URL: nowhere.
        assert_eq!(
            leader_endpoint(&lease(Some("pod-b"), Some("pod-a=http://10.0.0.5:8081"))),
            None
        );
        assert_eq!(
            leader_endpoint(&lease(None, Some("pod-a=http://10.0.0.5:8081"))),
            None
        );
        assert_eq!(leader_endpoint(&lease(Some("pod-a"), None)), None);
        assert_eq!(leader_endpoint(&lease(Some("pod-a"), Some("pod-a="))), None);
        assert_eq!(leader_endpoint(&lease(Some(""), Some("=http://x"))), None);
    }
}
