//! What every reconciler shares: the Kubernetes client, the event recorder, metrics, the
//! Tailscale clients (one per integration, so OAuth tokens are reused) and the inventory cache.
//!
//! The inventory cache is derived state: it is rebuilt from Tailscale on every sync, so losing
//! it (a restart) loses nothing.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::events::{Event, EventType, Reporter};

use super::events::Recorder;
use kube::{Resource, ResourceExt};
use tracing::warn;

use super::writer::{BatchWindow, Writers};
use crate::api::{AccessGrant, AccessPolicy, GrantLedger, TailscaleIntegration};
use crate::metrics::Metrics;
use crate::tailscale::{self, User};
use kube::runtime::reflector::{ObjectRef, Store};

/// The field manager for every status write: one, stable, so server-side apply tracks ownership.
pub const FIELD_MANAGER: &str = "tailkeeper";

/// Tailscale's API host: the only one credentials go to unless the operator is told otherwise.
pub const DEFAULT_API_HOST: &str = "api.tailscale.com";

/// Tunables of the operator process.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Retry policy for Tailscale requests.
    pub retry: tailscale::RetryPolicy,
    /// Timeout of one Tailscale request.
    pub request_timeout: Duration,
    /// How the policy writer batches changes.
    pub batch_window: BatchWindow,
    /// The API hosts credentials may be sent to (`host` or `host:port`, lower case).
    pub allowed_api_hosts: Vec<String>,
    /// The name prefix of the admission policies that prove approvals (the chart's full name).
    pub admission_policy_prefix: String,
    /// How notifications are delivered.
    pub notifications: super::notify::NotificationSettings,
    /// The cluster's rule mapping people to Kubernetes users: this prefix plus each e-mail
    /// login (the API server's OIDC `usernamePrefix` with the `email` claim), if set.
    pub identity_username_prefix: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            retry: tailscale::RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            batch_window: BatchWindow::default(),
            allowed_api_hosts: vec![DEFAULT_API_HOST.to_string()],
            admission_policy_prefix: "tailkeeper".to_string(),
            notifications: Default::default(),
            identity_username_prefix: None,
        }
    }
}

/// (namespace, name) of an object.
pub type Key = (String, String);

/// The tailnet's users at the last sync.
#[derive(Clone, Debug)]
pub struct Inventory {
    pub users: Vec<User>,
    pub devices: Option<i64>,
    /// The policy file as read at the sync (HuJSON), or why it could not be read.
    pub policy_file: Result<Arc<String>, String>,
    /// Custom posture attributes on users' devices: `None` when not asked for
    /// (`spec.inventory.postureAttributes`), else what was read or why it could not be.
    pub posture: Option<Result<Arc<Vec<crate::entitlements::DevicePosture>>, String>>,
    pub revision: String,
    pub synced_at: Timestamp,
}

pub struct Context {
    pub client: kube::Client,
    recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    /// The policy writers, one per tailnet.
    pub writers: Writers,
    inventories: RwLock<HashMap<Key, Arc<Inventory>>>,
    /// Each policy's people directory as its last evaluation read it (or why it could not).
    directories: RwLock<HashMap<Key, Arc<Result<crate::compliance::Directory, String>>>>,
    /// The controllers' caches of policies and integrations, for reads on hot paths.
    stores: std::sync::OnceLock<(Store<AccessPolicy>, Store<TailscaleIntegration>)>,
    /// The caches of grants and ledgers (the sweeper reads both).
    grant_stores: std::sync::OnceLock<(Store<AccessGrant>, Store<GrantLedger>)>,
    /// The cache of access-review decisions.
    review_decisions: std::sync::OnceLock<Store<crate::api::AccessReviewDecision>>,
    /// Asks the grant controller to look at a grant now (set once it runs).
    grant_rechecks: std::sync::OnceLock<futures::channel::mpsc::Sender<ObjectRef<AccessGrant>>>,
    /// One lock per integration's ledger.
    pub ledger_locks: super::ledger::Locks,
    /// The admission policies and bindings installed, as last read.
    admission: RwLock<crate::grants::admission::Installed>,
    tailscale: RwLock<HashMap<Key, (u64, tailscale::Client)>>,
    /// The resourceVersion of each credential Secret (namespace, name) as last read.
    secret_versions: RwLock<HashMap<Key, String>>,
    /// Each integration's webhook signing secrets, when it receives webhooks.
    webhook_secrets: RwLock<HashMap<Key, Arc<Vec<tailscale::Secret>>>>,
    /// The OpenReports Reports last published.
    pub reports: super::reports::Published,
    /// The entitlements whose holder counts are exported, per policy.
    pub exported_entitlements: super::entitlements::Exported,
    /// Notifications waiting for the sender.
    pub notifier: super::notify::Notifier,
    /// Each policy's trust boundary, as its last evaluation proved it (or why not).
    pub boundaries: super::boundary::Boundaries,
    /// The credential each integration last connected with, to tell a rotation.
    pub rotations: super::connection::Rotations,
    /// The grants whose revocation waits for a person to fix their integration.
    pub blocked_revocations: super::ledger::Blocked,
    /// What each policy changed in the last day, and the lock its limits are taken under.
    pub changes: super::changes::Journal,
    /// The cache of access reviews.
    reviews: std::sync::OnceLock<Store<crate::api::AccessReview>>,
}

impl Context {
    pub fn new(client: kube::Client, metrics: Arc<Metrics>, settings: Settings) -> Self {
        let reporter = Reporter {
            controller: "tailkeeper".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let notifier = super::notify::Notifier::new(settings.notifications.queue);
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            writers: Writers::new(settings.batch_window),
            settings,
            inventories: RwLock::default(),
            directories: RwLock::default(),
            stores: std::sync::OnceLock::new(),
            grant_stores: std::sync::OnceLock::new(),
            grant_rechecks: std::sync::OnceLock::new(),
            review_decisions: std::sync::OnceLock::new(),
            ledger_locks: Default::default(),
            admission: RwLock::new(Err("not read yet".into())),
            tailscale: RwLock::default(),
            secret_versions: RwLock::default(),
            webhook_secrets: RwLock::default(),
            reports: Default::default(),
            exported_entitlements: Default::default(),
            boundaries: Default::default(),
            rotations: Default::default(),
            blocked_revocations: Default::default(),
            changes: Default::default(),
            reviews: std::sync::OnceLock::new(),
            notifier,
        }
    }

    /// Keep (or, with `None`, forget) the webhook signing secrets of integration `key`.
    pub fn set_webhook_secrets(&self, key: Key, secrets: Option<Vec<tailscale::Secret>>) {
        if let Ok(mut all) = self.webhook_secrets.write() {
            match secrets {
                Some(s) => all.insert(key, Arc::new(s)),
                None => all.remove(&key),
            };
        }
    }

    /// The webhook signing secrets of integration `key`, once its Secret has been read.
    pub fn webhook_secrets(&self, key: &Key) -> Option<Arc<Vec<tailscale::Secret>>> {
        self.webhook_secrets.read().ok()?.get(key).cloned()
    }

    /// Note the resourceVersion of the credential Secret `key` just read.
    pub fn note_secret_version(&self, key: Key, version: String) {
        if let Ok(mut versions) = self.secret_versions.write() {
            versions.insert(key, version);
        }
    }

    /// The resourceVersion of the credential Secret `key` as last read, if it was.
    pub fn secret_version(&self, key: &Key) -> Option<String> {
        self.secret_versions.read().ok()?.get(key).cloned()
    }

    pub fn set_stores(
        &self,
        policies: Store<AccessPolicy>,
        integrations: Store<TailscaleIntegration>,
    ) {
        let _ = self.stores.set((policies, integrations));
    }

    pub fn set_grant_stores(&self, grants: Store<AccessGrant>, ledgers: Store<GrantLedger>) {
        let _ = self.grant_stores.set((grants, ledgers));
    }

    pub fn set_grant_rechecks(
        &self,
        rechecks: futures::channel::mpsc::Sender<ObjectRef<AccessGrant>>,
    ) {
        let _ = self.grant_rechecks.set(rechecks);
    }

    /// Ask the grant controller to look at `grant` now. Never waits: when the queue is full the
    /// ask is dropped with a warning (the asker asks again at its next evaluation).
    pub fn recheck_grant(&self, grant: ObjectRef<AccessGrant>) {
        let Some(rechecks) = self.grant_rechecks.get() else {
            return;
        };
        if let Err(e) = rechecks.clone().try_send(grant) {
            warn!(error = %e, "cannot ask the grant controller to look at a grant now");
        }
    }

    /// A grant from the controller's cache.
    pub fn cached_grant(&self, ns: &str, name: &str) -> Option<Arc<AccessGrant>> {
        self.grant_stores
            .get()?
            .0
            .get(&ObjectRef::new(name).within(ns))
    }

    pub fn set_reviews(&self, store: Store<crate::api::AccessReview>) {
        let _ = self.reviews.set(store);
    }

    /// The access reviews of policy `name` in `ns`, from the cache; `None` until it has been
    /// listed.
    pub fn reviews_of(&self, ns: &str, name: &str) -> Option<Vec<Arc<crate::api::AccessReview>>> {
        use futures::FutureExt;
        let store = self.reviews.get()?;
        if !matches!(store.wait_until_ready().now_or_never(), Some(Ok(()))) {
            return None;
        }
        Some(
            store
                .state()
                .into_iter()
                .filter(|r| r.namespace().as_deref() == Some(ns) && r.spec.policy_ref.name == name)
                .collect(),
        )
    }

    pub fn set_review_decisions(&self, store: Store<crate::api::AccessReviewDecision>) {
        let _ = self.review_decisions.set(store);
    }

    /// The access-review decisions of a namespace, from the cache.
    pub fn review_decisions_in(&self, ns: &str) -> Vec<Arc<crate::api::AccessReviewDecision>> {
        self.review_decisions
            .get()
            .map(|store| {
                store
                    .state()
                    .into_iter()
                    .filter(|d| d.namespace().as_deref() == Some(ns))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The ledgers of a namespace, from the cache.
    pub fn ledgers_in(&self, ns: &str) -> Vec<Arc<GrantLedger>> {
        self.grant_stores
            .get()
            .map(|(_, ledgers)| {
                ledgers
                    .state()
                    .into_iter()
                    .filter(|l| l.namespace().as_deref() == Some(ns))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Holds recorded in any ledger whose expiry is more than `grace` before `now` (a standing
    /// grant's hold has none, so is never overdue).
    pub fn overdue_holds(&self, now: Timestamp, grace: std::time::Duration) -> i64 {
        let Some((_, ledgers)) = self.grant_stores.get() else {
            return 0;
        };
        ledgers
            .state()
            .iter()
            .flat_map(|l| l.spec.holds.iter())
            .filter(|h| h.expires_at.as_ref().is_some_and(|t| t.0 + grace < now))
            .count() as i64
    }

    /// A policy from the controller's cache (None when absent or before the cache exists).
    pub fn cached_policy(&self, ns: &str, name: &str) -> Option<Arc<AccessPolicy>> {
        self.stores.get()?.0.get(&ObjectRef::new(name).within(ns))
    }

    /// The names of the policies (from the cache) that govern integration `name` of `ns`.
    pub fn policies_of(&self, ns: &str, name: &str) -> Vec<String> {
        self.stores
            .get()
            .map(|(policies, _)| {
                policies
                    .state()
                    .iter()
                    .filter(|p| {
                        p.namespace().as_deref() == Some(ns) && p.spec.integration_ref.name == name
                    })
                    .map(|p| p.name_any())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The grants of a namespace, from the cache.
    pub fn grants_in(&self, ns: &str) -> Vec<Arc<AccessGrant>> {
        self.grant_stores
            .get()
            .map(|(grants, _)| {
                grants
                    .state()
                    .into_iter()
                    .filter(|g| g.namespace().as_deref() == Some(ns))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// An integration from the controller's cache.
    pub fn cached_integration(&self, ns: &str, name: &str) -> Option<Arc<TailscaleIntegration>> {
        self.stores.get()?.1.get(&ObjectRef::new(name).within(ns))
    }

    /// The Tailscale client last built for an integration, if any.
    pub fn cached_client(&self, key: &Key) -> Option<(u64, tailscale::Client)> {
        self.tailscale.read().ok()?.get(key).cloned()
    }

    /// Whether the cluster proves approvals of grants in `namespace` (else why not).
    pub fn approvals_verified(&self, namespace: &str) -> Result<Option<Timestamp>, String> {
        match self.admission.read() {
            Ok(installed) => crate::grants::admission::approvals_verified(
                &self.settings.admission_policy_prefix,
                &installed,
                namespace,
            ),
            Err(_) => Err("the admission policy cache is unusable".into()),
        }
    }

    /// Whether the cluster proves who decided on access-review items in `namespace`.
    pub fn review_decisions_verified(&self, namespace: &str) -> Result<Option<Timestamp>, String> {
        match self.admission.read() {
            Ok(installed) => crate::grants::admission::review_decisions_verified(
                &self.settings.admission_policy_prefix,
                &installed,
                namespace,
            ),
            Err(_) => Err("the admission policy cache is unusable".into()),
        }
    }

    pub fn set_admission(&self, installed: crate::grants::admission::Installed) {
        if let Ok(mut a) = self.admission.write() {
            *a = installed;
        }
    }

    /// A policy's directory as its reconciler last read it.
    pub fn directory(
        &self,
        policy: &Key,
    ) -> Option<Arc<Result<crate::compliance::Directory, String>>> {
        self.directories.read().ok()?.get(policy).cloned()
    }

    pub fn set_directory(
        &self,
        policy: Key,
        directory: Result<crate::compliance::Directory, String>,
    ) {
        if let Ok(mut map) = self.directories.write() {
            map.insert(policy, Arc::new(directory));
        }
    }

    pub fn inventory(&self, key: &Key) -> Option<Arc<Inventory>> {
        self.inventories.read().ok()?.get(key).cloned()
    }

    pub fn set_inventory(&self, key: Key, inventory: Inventory) {
        if let Ok(mut map) = self.inventories.write() {
            map.insert(key, Arc::new(inventory));
        }
    }

    /// Keep the policy file enforcement just wrote as the cached one, so the next evaluation
    /// plans from it rather than from the file of the last sync.
    pub fn update_inventory_policy_file(&self, key: &Key, text: String) {
        let Ok(mut map) = self.inventories.write() else {
            return;
        };
        let Some(current) = map.get(key) else { return };
        let mut inventory = (**current).clone();
        inventory.policy_file = Ok(Arc::new(text));
        map.insert(key.clone(), Arc::new(inventory));
    }

    /// Reflect a change enforcement made in the cached inventory, so the next evaluation does
    /// not ask for it again before the next sync confirms it.
    pub fn update_inventory_user(
        &self,
        key: &Key,
        remedy: &crate::compliance::enforcement::Remedy,
    ) {
        use crate::compliance::enforcement::Remedy;
        let Ok(mut map) = self.inventories.write() else {
            return;
        };
        let Some(current) = map.get(key) else { return };
        let mut inventory = (**current).clone();
        for user in &mut inventory.users {
            match remedy {
                Remedy::Suspend { user_id, .. } if &user.id == user_id => {
                    user.status = "suspended".into()
                }
                Remedy::LowerRole { user_id, to, .. } if &user.id == user_id => {
                    user.role = to.clone()
                }
                _ => {}
            }
        }
        map.insert(key.clone(), Arc::new(inventory));
    }

    pub fn forget_integration(&self, key: &Key) {
        self.rotations.forget(key);
        if let Ok(mut map) = self.inventories.write() {
            map.remove(key);
        }
        if let Ok(mut map) = self.tailscale.write() {
            map.remove(key);
        }
        self.set_webhook_secrets(key.clone(), None);
    }

    /// The Tailscale client for an integration, reused while its configuration (`fingerprint`:
    /// spec and Secret version) is unchanged so that cached OAuth tokens survive reconciles.
    pub fn tailscale_client(
        &self,
        key: &Key,
        fingerprint: u64,
        build: impl FnOnce() -> Result<tailscale::Client, tailscale::Error>,
    ) -> Result<tailscale::Client, tailscale::Error> {
        if let Some((fp, client)) = self.tailscale.read().ok().and_then(|m| m.get(key).cloned()) {
            if fp == fingerprint {
                return Ok(client);
            }
        }
        let client = build()?;
        if let Ok(mut map) = self.tailscale.write() {
            map.insert(key.clone(), (fingerprint, client.clone()));
        }
        Ok(client)
    }

    /// Publish an Event on an object. A failure to publish is logged, never fatal: events are
    /// a courtesy, status is the record.
    pub async fn publish<K>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let event = event(type_, reason, action, note, None);
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            warn!(object = %obj.meta().name.clone().unwrap_or_default(), reason, error = %e, "cannot publish event");
        }
    }

    /// [`Context::publish`], as an Event of its own, never counted into an earlier one of the
    /// same reason on the same object (whose message would then be the only one shown): for
    /// failures whose each message matters, such as each notification given up. `related`
    /// names the object it is about, besides the one it is on.
    pub async fn publish_apart<K>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
        related: Option<k8s_openapi::api::core::v1::ObjectReference>,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let event = event(type_, reason, action, note, related);
        if let Err(e) = self
            .recorder
            .publish_apart(&event, &obj.object_ref(&()))
            .await
        {
            warn!(object = %obj.meta().name.clone().unwrap_or_default(), reason, error = %e, "cannot publish event");
        }
    }
}

fn event(
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
    related: Option<k8s_openapi::api::core::v1::ObjectReference>,
) -> Event {
    Event {
        type_,
        reason: reason.into(),
        note: Some(truncate(note, 1000)),
        action: action.into(),
        secondary: related,
    }
}

/// (namespace, name) of a namespaced object.
pub fn key_of<K: ResourceExt>(obj: &K) -> Key {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}
