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
    let allowed = receiver
        .limiter
        .lock()
        .map(|mut l| l.allow(&format!("{namespace}/{name}"), now))
        .unwrap_or(false);
    if !allowed {
        outcome("RateLimited");
        return answer(
            StatusCode::TOO_MANY_REQUESTS,
            "too many deliveries; retry later",
        );
    }
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
        Err(e) => return refused(e),
    };
    let events = match webhook::parse_events(&body) {
        Ok(events) => events,
        Err(e) => return refused(e),
    };
    let fresh = receiver
        .replays
        .lock()
        .map_err(|_| Rejection::Replayed)
        .and_then(|mut guards| guards.entry(key).or_default().admit(&verified, now));
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
