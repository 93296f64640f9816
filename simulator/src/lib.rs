//! A stateful simulator of the Tailscale API v2: the only Tailscale that Tailkeeper's tests,
//! demo and benchmarks talk to.
//!
//! It keeps users, pending user invites, devices, posture attributes, credentials and the
//! policy file (stored as HuJSON text with SHA-256 ETags), and behaves like the real API where
//! Tailkeeper depends on it: authentication and scopes, `If-Match`/412, policy validation with
//! `tests`, JSON error bodies, signed webhooks for user and policy changes. Its answers are
//! checked against Tailscale's official Go client by `tests/go_client_contract.rs`, which runs
//! `hack/contract`. Tests steer it in process through
//! [`Simulator`] or, when it runs as the `tailscale-sim` binary, through the equivalent
//! plain-HTTP control API under `/_sim/`.
//!
//! Modules:
//! - [`model`]: public data types;
//! - `state`: the tailnet state and its operations;
//! - `auth`: credentials and scopes;
//! - `api`: the Tailscale routes; `control`: the `/_sim/` routes;
//! - `faults`: latency and injected faults;
//! - [`policy`]: HuJSON parsing, validation, `tests`/`sshTests` evaluation;
//! - [`seed`]: seed files for the binary;
//! - `webhooks`: webhook endpoints, change detection by snapshot diffing, signed deliveries
//!   with retries.

mod api;
mod auth;
mod control;
mod error;
mod faults;
pub mod model;
pub mod policy;
pub mod seed;
mod state;
mod webhooks;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::sync::watch;

pub use model::{
    ApiKey, Delivery, DeliveryOutcome, Fault, FaultKind, OAuthClient, SimDevice, SimUser,
    SimUserInvite, WebhookInfo, ROLES, WEBHOOK_EVENT_TYPES,
};

use model::{random_alnum, random_id};
use state::State;
pub use state::{ConfigLogEntry, LogActor, LogTarget};

/// The person a policy edit is logged under when a test does not say who.
pub const CONSOLE_ACTOR: &str = "admin@example.com";

/// The configuration log's actor for the person with login `login`.
fn person_actor(login: &str) -> LogActor {
    LogActor {
        id: format!("u-{}", login.split('@').next().unwrap_or(login)),
        kind: "USER".to_string(),
        login_name: login.to_string(),
        display_name: login.split('@').next().unwrap_or(login).to_string(),
    }
}

/// The actor of edits made in the console when no one is named.
pub(crate) fn console_actor() -> LogActor {
    person_actor(CONSOLE_ACTOR)
}

/// Static facts about the simulated tailnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// The organization name, accepted as `{tailnet}` in paths.
    pub tailnet_name: String,
    /// The tailnet id, also accepted as `{tailnet}`.
    pub tailnet_id: String,
    /// Lifetime of OAuth access tokens (Tailscale: one hour).
    pub oauth_token_ttl: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            tailnet_name: "example.com".to_string(),
            tailnet_id: "T1234CNTRL".to_string(),
            oauth_token_ttl: Duration::from_secs(3600),
        }
    }
}

/// A running simulator. Cheap to clone; all clones share one state and one server.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    addr: SocketAddr,
    /// Set to true to stop the server (and release requests hung by a fault).
    shutdown: watch::Sender<bool>,
    /// Becomes true once the server task has finished.
    stopped: watch::Sender<bool>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Start on an ephemeral loopback port, serving in a background tokio task.
    pub async fn start(config: SimConfig) -> anyhow::Result<Simulator> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Start on `addr`, serving in a background tokio task.
    pub async fn start_on(config: SimConfig, addr: SocketAddr) -> anyhow::Result<Simulator> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let sim = Simulator {
            inner: Arc::new(Inner {
                state: Mutex::new(State::new(config)),
                addr,
                shutdown: watch::channel(false).0,
                stopped: watch::channel(false).0,
            }),
        };
        let app = sim.router();
        let server = sim.clone();
        tokio::spawn(async move {
            let signal = server.shutdown_signal();
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await;
            if let Err(err) = result {
                tracing::error!(%err, "simulator server failed");
            }
            server.inner.stopped.send_replace(true);
        });
        webhooks::spawn(sim.clone());
        tracing::info!(url = %sim.url(), "tailscale simulator started");
        Ok(sim)
    }

    fn router(&self) -> Router {
        api::routes(self.clone())
            .merge(control::routes(self.clone()))
            .fallback(|| async { error::ApiError::not_found("not found") })
            .method_not_allowed_fallback(|| async {
                error::ApiError::new(
                    axum::http::StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed",
                )
            })
            .layer(axum::middleware::from_fn(api::log_request))
    }

    /// The Tailscale base URL, e.g. `http://127.0.0.1:40123` (API paths are under `/api/v2`).
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// The bound socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Stop accepting connections and end the server task; hung requests are released.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Wait until the server task has finished after [`Simulator::shutdown`].
    pub async fn wait_stopped(&self) {
        let mut stopped = self.inner.stopped.subscribe();
        // An error means the sender is gone, which only happens once everything is dropped.
        let _ = stopped.wait_for(|s| *s).await;
    }

    /// Resolves once [`Simulator::shutdown`] has been called.
    pub(crate) fn shutdown_signal(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.shutdown.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    /// The state lock. A panic while holding it cannot leave the state half-written in a way
    /// that matters to a test double, so poisoning is ignored rather than propagated.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // ---- users ----

    /// Add (or replace, by login) a user; returns its id, generated if `user.id` is empty.
    pub fn add_user(&self, user: SimUser) -> String {
        self.lock().upsert_user(user)
    }

    /// Replace all users.
    pub fn set_users(&self, users: Vec<SimUser>) {
        let mut st = self.lock();
        st.users.clear();
        for user in users {
            st.upsert_user(user);
        }
    }

    pub fn users(&self) -> Vec<SimUser> {
        self.lock().users.clone()
    }

    pub fn user_by_login(&self, login: &str) -> Option<SimUser> {
        self.lock()
            .users
            .iter()
            .find(|u| u.login_name == login)
            .cloned()
    }

    /// Remove a user (and their devices, as Tailscale does); false if there was none.
    pub fn remove_user(&self, login: &str) -> bool {
        self.lock().remove_user_where(|u| u.login_name == login)
    }

    // ---- user invites ----

    /// Pending user invites (created through `POST .../user-invites`), oldest first.
    pub fn user_invites(&self) -> Vec<SimUserInvite> {
        self.lock()
            .user_invites
            .iter()
            .map(|i| SimUserInvite {
                id: i.id.clone(),
                role: i.role.clone(),
                email: i.email.clone(),
            })
            .collect()
    }

    /// Accept invite `id` as the person signing in with `login` (empty: the invite's email):
    /// the invite disappears and a member with the invite's role joins. Returns the user's id.
    pub fn accept_user_invite(&self, id: &str, login: &str) -> anyhow::Result<String> {
        let mut st = self.lock();
        let invite = st
            .user_invite(id)
            .with_context(|| format!("no pending user invite {id:?}"))?;
        let login = if login.is_empty() {
            invite.email.clone()
        } else {
            login.to_string()
        };
        anyhow::ensure!(
            !login.is_empty(),
            "invite {id:?} has no email: name the login that accepts it"
        );
        anyhow::ensure!(
            !st.users.iter().any(|u| u.login_name == login),
            "{login} is already a user of the tailnet"
        );
        let role = invite.role.clone();
        st.take_user_invite(id);
        Ok(st.upsert_user(SimUser::member(&login, &role, "active")))
    }

    // ---- devices ----

    /// Add (or replace, by id) a device; returns its id, generated if `device.id` is empty.
    pub fn add_device(&self, device: SimDevice) -> String {
        self.lock().upsert_device(device)
    }

    pub fn devices(&self) -> Vec<SimDevice> {
        self.lock().devices.clone()
    }

    // ---- credentials ----

    /// Create an API access token valid for `expires_in`.
    pub fn create_api_key(&self, expires_in: Duration) -> ApiKey {
        let id = random_id("k");
        let key = format!("tskey-api-{id}-{}", random_alnum(24));
        self.add_api_key(&id, &key, expires_in)
    }

    /// Register an API access token with a known id and secret (seed files, demos).
    pub fn add_api_key(&self, id: &str, key: &str, expires_in: Duration) -> ApiKey {
        let record = self
            .lock()
            .add_api_key(id.to_string(), key.to_string(), expires_in);
        ApiKey {
            id: record.id,
            key: record.key,
            expires: state::rfc3339(record.expires),
        }
    }

    /// Revoke an API access token (as deleting it in the admin console does): every request
    /// made with it is refused with HTTP 401 from now on. False when no such token exists.
    pub fn revoke_api_key(&self, id: &str) -> bool {
        let mut state = self.lock();
        let before = state.api_keys.len();
        state.api_keys.retain(|k| k.id != id);
        state.api_keys.len() != before
    }

    /// Create an OAuth client holding `scopes`.
    pub fn create_oauth_client(&self, scopes: &[&str]) -> OAuthClient {
        let id = random_id("k");
        let secret = format!("tskey-client-{id}-{}", random_alnum(24));
        self.add_oauth_client(&id, &secret, scopes)
    }

    /// Register an OAuth client with a known id and secret (seed files, demos).
    pub fn add_oauth_client(&self, id: &str, secret: &str, scopes: &[&str]) -> OAuthClient {
        self.lock().add_oauth_client(
            id.to_string(),
            secret.to_string(),
            scopes.iter().map(|s| s.to_string()).collect(),
        );
        OAuthClient {
            id: id.to_string(),
            secret: secret.to_string(),
        }
    }

    /// Invalidate every OAuth access token issued so far (clients must exchange again).
    pub fn expire_oauth_tokens(&self) {
        self.lock().tokens.clear();
    }

    // ---- policy file ----

    /// The stored policy text, verbatim, and its ETag (unquoted).
    pub fn policy(&self) -> (String, String) {
        let st = self.lock();
        (st.policy_text.clone(), st.policy_etag())
    }

    /// Replace the policy file as a person in the admin console would, without validation;
    /// returns the new ETag.
    pub fn set_policy_as_human(&self, hujson: &str) -> String {
        self.set_policy_as(CONSOLE_ACTOR, hujson)
    }

    /// [`Simulator::set_policy_as_human`] by the person with login `login`, as the
    /// configuration audit log records it.
    pub fn set_policy_as(&self, login: &str, hujson: &str) -> String {
        let mut st = self.lock();
        let actor = person_actor(login);
        st.set_policy_logged(hujson.to_string(), "ADMIN_CONSOLE", actor);
        st.policy_etag()
    }

    /// The configuration audit log, oldest first.
    pub fn configuration_log(&self) -> Vec<state::ConfigLogEntry> {
        self.lock().config_log.clone()
    }

    /// Make the next `POST .../acl` first apply this human edit, so the writer's `If-Match`
    /// is stale: a deterministic 412.
    pub fn edit_policy_before_next_write(&self, hujson: &str) {
        self.lock().pending_edit = Some(hujson.to_string());
    }

    // ---- webhooks ----

    /// Register a webhook endpoint (Tailscale's own event format) for the event types in
    /// `subscriptions` (see [`WEBHOOK_EVENT_TYPES`], or a category such as
    /// `categoryTailnetManagement`; other names never match). Changes made
    /// after this call are delivered to `url`, none made before. The same as
    /// `POST /api/v2/tailnet/{tailnet}/webhooks`, without the validation an API client gets.
    pub fn add_webhook(&self, url: &str, subscriptions: &[&str]) -> WebhookInfo {
        let endpoint = self.lock().add_webhook(
            url.to_string(),
            String::new(),
            subscriptions.iter().map(|s| s.to_string()).collect(),
            webhooks::ACTOR.to_string(),
        );
        WebhookInfo {
            id: endpoint.id,
            secret: endpoint.secret,
        }
    }

    /// Give webhook `id` a new secret and return it. For two minutes deliveries are signed
    /// with both the new and the previous secret, as during a Tailscale rotation.
    ///
    /// # Panics
    ///
    /// If there is no webhook `id`: the test holds an id it never got from the simulator.
    pub fn rotate_webhook_secret(&self, id: &str) -> String {
        match self.lock().webhooks.rotate(id) {
            Some(endpoint) => endpoint.secret.clone(),
            None => panic!("no webhook with id {id:?}"),
        }
    }

    /// Every webhook delivery attempt (retries included), most recent last, so tests can
    /// assert what was sent, how often, and how each attempt ended.
    pub fn webhook_deliveries(&self) -> Vec<Delivery> {
        self.lock().webhooks.deliveries()
    }

    // ---- call counts ----

    /// Requests per endpoint name, including failed and faulted ones.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.lock().calls.clone()
    }

    pub fn call_count(&self, endpoint: &str) -> u64 {
        self.lock().calls.get(endpoint).copied().unwrap_or(0)
    }

    pub fn reset_calls(&self) {
        self.lock().calls.clear();
    }

    // ---- latency and faults ----

    /// Delay added to every Tailscale API request (not to `/_sim/` control requests).
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Queue a fault; see [`Fault`].
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Faults still queued, with their remaining counts.
    pub fn pending_faults(&self) -> Vec<Fault> {
        self.lock().faults.pending()
    }
}
