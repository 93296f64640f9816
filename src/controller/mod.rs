//! The Kubernetes runtime: one reconciler per kind, wired to watches, with health, metrics and
//! graceful shutdown. Reconcilers keep I/O thin and delegate decisions to the pure modules.

mod admission;
mod boundary;
mod changes;
mod connection;
mod context;
mod credentials;
mod entitlements;
mod events;
mod grant;
mod integration;
pub mod kube_client;
pub mod leader;
mod ledger;
mod memory;
mod notify;
mod policy;
mod reports;
mod retention;
mod review;
mod status;
mod webhook;
mod writer;

pub use context::{Context, Settings, FIELD_MANAGER};
pub use notify::NotificationSettings;
pub use policy::MAX_FAILING_USERS;

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self as runtime_controller, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{predicates, watcher, WatchStreamExt};
use kube::ResourceExt;
use tracing::{error, info, warn};

use crate::api::{
    find_condition, AccessGrant, AccessPolicy, AccessReview, AccessReviewDecision, GrantLedger,
    GrantPhase, TailscaleIntegration, SYNC_REQUEST_ANNOTATION,
};
use crate::metrics::{ControllerLabels, ErrorLabels, Metrics};
use crate::server::{self, Health};

/// Errors that make a reconcile retry with backoff. Problems a user must fix are not errors:
/// they become conditions and Events.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<grant::GrantError>>),
}

impl Error {
    /// What kind of failure, for the metrics' `reason` label.
    pub fn category(&self) -> &'static str {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Kube(_) => "KubernetesAPI",
            Error::Finalizer(e) => match e.as_ref() {
                F::ApplyFailed(grant::GrantError::RevocationPending(_))
                | F::CleanupFailed(grant::GrantError::RevocationPending(_)) => "RevocationPending",
                _ => "KubernetesAPI",
            },
        }
    }
}

/// A hold this long past its expiry counts as an overdue revocation.
const OVERDUE_AFTER: Duration = Duration::from_secs(30);
/// How often overdue revocations are counted.
const OVERDUE_REFRESH: Duration = Duration::from_secs(5);

/// How the operator process runs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Watch one namespace only (namespaced RBAC), or all when `None`.
    pub namespace: Option<String>,
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    pub listen: SocketAddr,
    /// Address of the Tailscale webhook endpoint, when it is on.
    pub webhook_listen: Option<SocketAddr>,
    /// Where other replicas reach this one's webhook endpoint (`http://<pod IP>:<port>`): the
    /// leader announces it on its Lease, and standbys pass deliveries on to it.
    pub webhook_advertise: Option<String>,
    pub settings: Settings,
    /// Hold this Lease before starting the controllers; `None` runs them at once (one replica
    /// only, e.g. local runs).
    pub leader_election: Option<leader::LeaderElection>,
}

fn api<K>(client: &kube::Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Run the operator until `shutdown` resolves. With leader election, wait for the Lease first
/// (the health server answers meanwhile), release it on shutdown, and fail as soon as it is lost.
///
/// `lease_client` renews the Lease over its own connection: under a burst of work the shared
/// connection queues requests, and a renewal stuck behind them would cost the leadership.
pub async fn run(
    client: kube::Client,
    lease_client: kube::Client,
    config: RunConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let health = Health::default();
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        config.settings.clone(),
    ));
    let shutdown = shutdown.shared();

    let server = tokio::spawn(server::serve(
        config.listen,
        health.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));

    // Nothing that writes starts before this replica leads.
    let leadership = match config.leader_election.clone() {
        Some(election) => {
            health.set_standby();
            // While standing by, the webhook port passes deliveries on to the leader, so a
            // Service in front of every replica loses none.
            let (standing_down, stood_down) = tokio::sync::oneshot::channel::<()>();
            let forwarder = config.webhook_listen.map(|addr| {
                tokio::spawn(webhook::forward(
                    addr,
                    Api::namespaced(lease_client.clone(), &election.namespace),
                    election.lease_name.clone(),
                    async move {
                        let _ = stood_down.await;
                    },
                ))
            });
            let acquired =
                leader::acquire(lease_client.clone(), election.clone(), shutdown.clone()).await;
            let _ = standing_down.send(());
            if let Some(forwarder) = forwarder {
                // The port is free again once it has finished (in-flight deliveries included).
                if let Ok(Err(e)) = forwarder.await {
                    warn!(error = %e, "the standby webhook forwarder failed");
                }
            }
            match acquired? {
                Some(leadership) => {
                    if let Some(url) = &config.webhook_advertise {
                        announce_webhook_endpoint(&lease_client, &election, url).await;
                    }
                    Some(leadership)
                }
                None => {
                    health.set_ready(false);
                    return stop(server).await;
                }
            }
        }
        None => None,
    };
    health.set_ready(false);
    metrics.leader.set(1);

    // Whether the cluster proves approvals: read before any grant is looked at, then kept current.
    ctx.set_admission(admission::read(&ctx.client).await);
    let admission_refresh = tokio::spawn(admission::refresh(ctx.clone()));
    // Whether what policies decide from is out of reach: every policy is checked again when
    // RBAC changes anywhere (and a policy alone when a new identity decides one of its grants).
    let (rbac_changed, rbac_changes) = futures::channel::mpsc::channel(1);
    let rbac_watch = tokio::spawn(boundary::watch_rbac(
        client.clone(),
        ctx.clone(),
        rbac_changed,
    ));
    let boundary_rechecks = ctx
        .boundaries
        .take_rechecks()
        .ok_or_else(|| anyhow::anyhow!("the trust boundary's rechecks were taken twice"))?;

    // Integrations: triggered by their own spec changes (not their status writes), a sync
    // request (the annotation), their credential Secret changing, and on timers.
    let (integration_store, integration_writer) = reflector::store::<TailscaleIntegration>();
    let integrations = watcher(
        api::<TailscaleIntegration>(&client, &config.namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(slim)
    .reflect(integration_writer)
    .applied_objects()
    .predicate_filter(spec_or_sync_request, Default::default());
    let (secret_changed, secret_changes) = futures::channel::mpsc::channel(16);
    let credential_watch = tokio::spawn(credentials::watch(
        ctx.clone(),
        integration_store.clone(),
        secret_changed.clone(),
    ));
    // Webhooks ask for a sync through the same path as a changed Secret, and so do the policy
    // writers after each write (the entitlements inventory follows the file at once).
    let webhook_resync = secret_changed.clone();
    ctx.writers.notify_writes_to(secret_changed.clone());
    let integration_controller = Controller::for_stream(integrations, integration_store.clone())
        .reconcile_on(secret_changes)
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |obj, ctx| timed("integration", ctx.clone(), integration::reconcile(obj, ctx)),
            error_policy::<TailscaleIntegration>,
            ctx.clone(),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "integration reconcile failed");
            }
        });

    // Policies: their own spec changes; the integration's inventory or connection changing; a
    // directory ConfigMap changing; a grant of theirs changing phase.
    let (policy_store, policy_writer) = reflector::store::<AccessPolicy>();
    ctx.set_stores(policy_store.clone(), integration_store.clone());
    let policies = watcher(
        api::<AccessPolicy>(&client, &config.namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(slim)
    .reflect(policy_writer)
    .applied_objects()
    .predicate_filter(predicates::generation, Default::default());
    let integration_changes = watcher(
        api::<TailscaleIntegration>(&client, &config.namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .applied_objects()
    .predicate_filter(inventory_or_connection, Default::default());
    // Metadata only: a change bumps resourceVersion, and no ConfigMap's data is cached.
    let config_map_changes = watcher(
        api::<PartialObjectMeta<ConfigMap>>(&client, &config.namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .applied_objects();
    let grant_changes = watcher(
        api::<AccessGrant>(&client, &config.namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects()
    .predicate_filter(grant_phase, Default::default());
    let (by_integration, by_config_map, by_grant) = (
        policy_store.clone(),
        policy_store.clone(),
        policy_store.clone(),
    );
    let policy_controller = Controller::for_stream(policies, policy_store.clone())
        .reconcile_all_on(rbac_changes)
        .reconcile_on(boundary_rechecks)
        .watches_stream(integration_changes, move |i: TailscaleIntegration| {
            referencing(&by_integration, &i.namespace().unwrap_or_default(), |p| {
                p.spec.integration_ref.name == i.name_any()
            })
        })
        .watches_stream(config_map_changes, move |cm| {
            let name = cm.name_any();
            referencing(&by_config_map, &cm.namespace().unwrap_or_default(), |p| {
                p.spec.directory.config_maps.iter().any(|s| s.name == name)
            })
        })
        .watches_stream(grant_changes, move |g: AccessGrant| {
            // Only role grants change a check's outcome (UserAccessValid); other grants need
            // no re-evaluation, which keeps a burst of grants from re-evaluating per grant.
            if g.spec.access.role.is_none() {
                return Vec::new();
            }
            referencing(&by_grant, &g.namespace().unwrap_or_default(), |p| {
                p.name_any() == g.spec.policy_ref.name
            })
        })
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |obj, ctx| timed("policy", ctx.clone(), policy::reconcile(obj, ctx)),
            error_policy::<AccessPolicy>,
            ctx.clone(),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "policy reconcile failed");
            }
        });

    // Grants: their spec (an approval), finalizers and deletion; their policy appearing,
    // changing or going; their person leaving (the policy reconciler asks); and timers for the
    // exact expiry instant.
    let (grant_store, grant_writer) = reflector::store::<AccessGrant>();
    let grants = watcher(
        api::<AccessGrant>(&client, &config.namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(grant::slim)
    .reflect(grant_writer)
    .applied_objects()
    .predicate_filter(spec_or_lifecycle, Default::default());
    // A deleted policy comes through marked as being deleted (it may have had no finalizer to
    // say so): its standing grants must end.
    let policy_changes = watcher(
        api::<AccessPolicy>(&client, &config.namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .map_ok(|event| match event {
        watcher::Event::Delete(mut p) => {
            p.metadata.deletion_timestamp.get_or_insert(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
            );
            watcher::Event::Delete(p)
        }
        other => other,
    })
    .touched_objects()
    .predicate_filter(generation_or_deletion, Default::default());
    // Ledgers: the sweeper ends holds whose grant expired, ended or is gone; woken by every
    // grant change in the namespace (deletions included) and at the earliest expiry.
    let (ledger_store, ledger_writer) = reflector::store::<GrantLedger>();
    ctx.set_grant_stores(grant_store.clone(), ledger_store.clone());
    let ledgers = watcher(
        api::<GrantLedger>(&client, &config.namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(slim)
    .reflect(ledger_writer)
    .applied_objects();
    // Metadata only: which grant changed or went is all the sweeper needs to know.
    let grant_events = watcher(
        api::<PartialObjectMeta<AccessGrant>>(&client, &config.namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects();
    let sweeper_ctx = ctx.clone();
    let ledger_controller = Controller::for_stream(ledgers, ledger_store.clone())
        .watches_stream(grant_events, move |g: PartialObjectMeta<AccessGrant>| {
            ledger::ledgers_for(&sweeper_ctx, &g)
        })
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |obj, ctx| timed("ledger", ctx.clone(), ledger::sweep(obj, ctx)),
            error_policy::<GrantLedger>,
            ctx.clone(),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "ledger sweep failed");
            }
        });

    let by_policy = grant_store.clone();
    let (grant_recheck, grant_rechecks) = futures::channel::mpsc::channel(64);
    // The policy reconciler asks for grants whose person its directory says has left.
    ctx.set_grant_rechecks(grant_recheck.clone());
    // The policy writers name grants (namespace, UID) whose entries a person removed: their
    // reconciler ends them.
    let (drift_notice, mut drifted) = tokio::sync::mpsc::unbounded_channel::<context::Key>();
    ctx.writers.notify_drift_to(drift_notice);
    let (drift_store, mut drift_recheck) = (grant_store.clone(), grant_recheck.clone());
    let drift_task = tokio::spawn(async move {
        while let Some((ns, uid)) = drifted.recv().await {
            let found = drift_store.state().into_iter().find(|g| {
                g.namespace().as_deref() == Some(ns.as_str())
                    && g.uid().as_deref() == Some(uid.as_str())
            });
            if let Some(g) = found {
                let _ = futures::SinkExt::send(&mut drift_recheck, ObjectRef::from_obj(g.as_ref()))
                    .await;
            }
        }
    });
    let grant_controller = Controller::for_stream(grants, grant_store.clone())
        .with_config(runtime_controller::Config::default().concurrency(GRANT_CONCURRENCY))
        .reconcile_on(grant_rechecks)
        .watches_stream(policy_changes, move |p: AccessPolicy| {
            let (ns, name) = (p.namespace().unwrap_or_default(), p.name_any());
            by_policy
                .state()
                .iter()
                .filter(|g| {
                    g.namespace().as_deref() == Some(ns.as_str()) && g.spec.policy_ref.name == name
                })
                .filter(|g| {
                    // Waiting grants may now go ahead; standing ones may no longer stand.
                    match g.status.as_ref().and_then(|s| s.phase) {
                        None | Some(GrantPhase::Pending | GrantPhase::AwaitingApproval) => true,
                        Some(GrantPhase::Active) => g.spec.duration.is_none(),
                        Some(_) => false,
                    }
                })
                .map(|g| ObjectRef::from_obj(g.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |obj, ctx| timed("grant", ctx.clone(), grant::reconcile(obj, ctx)),
            error_policy::<AccessGrant>,
            ctx.clone(),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "grant reconcile failed");
            }
        });

    // Access reviews: their spec, their decisions (each names its campaign), and timers for
    // the due time and recurrence.
    let (decision_store, decision_writer) = reflector::store::<AccessReviewDecision>();
    ctx.set_review_decisions(decision_store.clone());
    let decisions = watcher(
        api::<AccessReviewDecision>(&client, &config.namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|d| d.managed_fields_mut().clear())
    .reflect(decision_writer)
    .applied_objects();
    let reviews = watcher(
        api::<AccessReview>(&client, &config.namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|r| r.managed_fields_mut().clear());
    let (review_store, review_writer) = reflector::store::<AccessReview>();
    ctx.set_reviews(review_store.clone());
    let reviews = reviews
        .reflect(review_writer)
        .applied_objects()
        .predicate_filter(kube::runtime::predicates::generation, Default::default());
    let review_controller = Controller::for_stream(reviews, review_store.clone())
        .watches_stream(decisions, |d: AccessReviewDecision| {
            Some(ObjectRef::new(&d.spec.review_ref.name).within(&d.namespace().unwrap_or_default()))
        })
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |obj, ctx| timed("review", ctx.clone(), review::reconcile(obj, ctx)),
            error_policy::<AccessReview>,
            ctx.clone(),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "review reconcile failed");
            }
        });

    // Ready once every cache holds the cluster's state. Polled rather than awaited: a store's
    // readiness signal wakes only its latest waiter, and the controllers wait on it too.
    let readiness = {
        let health = health.clone();
        let (a, b, c, d) = (
            integration_store.clone(),
            policy_store.clone(),
            grant_store.clone(),
            ledger_store.clone(),
        );
        async move {
            loop {
                let ready = |r: Option<Result<(), _>>| matches!(r, Some(Ok(())));
                if ready(a.wait_until_ready().now_or_never())
                    && ready(b.wait_until_ready().now_or_never())
                    && ready(c.wait_until_ready().now_or_never())
                    && ready(d.wait_until_ready().now_or_never())
                {
                    info!("caches synced; ready");
                    health.set_ready(true);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    tokio::spawn(readiness);

    let trimmer = tokio::spawn(memory::trim_periodically());

    // Notifications go out from a task of their own: a reconcile only queues them.
    let notifications = tokio::spawn(notify::send(ctx.clone()));

    // Revocations overdue: holds still recorded well past their expiry (Tailscale refusing, a
    // Secret gone), for an alert that does not wait for them to end.
    let overdue = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            loop {
                let n = ctx.overdue_holds(jiff::Timestamp::now(), OVERDUE_AFTER);
                ctx.metrics.revocations_overdue.set(n);
                tokio::time::sleep(OVERDUE_REFRESH).await;
            }
        })
    };

    // The webhook endpoint checks deliveries while this replica leads (standbys pass theirs on).
    let webhooks = config.webhook_listen.map(|addr| {
        let receiver = Arc::new(webhook::Receiver::new(
            ctx.clone(),
            webhook_resync,
            grant_recheck,
        ));
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = webhook::serve(addr, receiver, shutdown).await {
                error!(error = %e, "webhook endpoint failed");
            }
        })
    });

    info!(
        namespace = config.namespace.as_deref().unwrap_or("<all>"),
        "tailkeeper started"
    );
    let retention_controller = retention::run(ctx.clone(), &config.namespace, shutdown.clone());
    let controllers = async {
        tokio::join!(
            integration_controller,
            policy_controller,
            grant_controller,
            ledger_controller,
            review_controller,
            retention_controller
        );
    };
    let lost = match &leadership {
        // On shutdown the controllers finish their running reconciles; the Lease stays renewed
        // meanwhile.
        Some(leadership) => tokio::select! {
            _ = controllers => None,
            reason = leadership.lost() => Some(reason),
        },
        None => {
            controllers.await;
            None
        }
    };
    admission_refresh.abort();
    rbac_watch.abort();
    credential_watch.abort();
    drift_task.abort();
    overdue.abort();
    trimmer.abort();
    notifications.abort();
    if let Some(webhooks) = webhooks {
        webhooks.abort();
    }
    health.set_ready(false);
    metrics.leader.set(0);
    if let Some(reason) = lost {
        // Another replica may lead from now on: the controllers were dropped above, cancelling
        // any reconcile mid-way, which is safe (state lives in the resources, never only in
        // memory). Exit non-zero; Kubernetes restarts the pod, which then waits as a standby.
        error!(%reason, "lost leadership; stopping");
        return Err(anyhow::anyhow!("lost leadership: {reason}"));
    }
    if let Some(leadership) = leadership {
        // Hand over at once rather than after the Lease expires.
        leadership.release().await;
    }
    stop(server).await
}

/// Wait for the health server to stop (it stops on shutdown).
async fn stop(server: tokio::task::JoinHandle<anyhow::Result<()>>) -> anyhow::Result<()> {
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(e) => return Err(anyhow::anyhow!("health server task failed: {e}")),
    }
    info!("tailkeeper stopped");
    Ok(())
}

/// Count and time a reconcile.
async fn timed<F>(controller: &'static str, ctx: Arc<Context>, fut: F) -> Result<Action, Error>
where
    F: Future<Output = Result<Action, Error>>,
{
    let started = Instant::now();
    let labels = ControllerLabels {
        controller: controller.to_string(),
    };
    ctx.metrics.reconciliations.get_or_create(&labels).inc();
    let result = fut.await;
    ctx.metrics
        .reconcile_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    if let Err(e) = &result {
        ctx.metrics
            .reconcile_errors
            .get_or_create(&ErrorLabels {
                controller: controller.to_string(),
                reason: e.category().to_string(),
            })
            .inc();
    }
    result
}

fn error_policy<K>(obj: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action
where
    K: ResourceExt,
{
    warn!(object = %obj.name_any(), namespace = %obj.namespace().unwrap_or_default(), error = %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// The policies in `namespace` that satisfy `refers`.
fn referencing(
    store: &Store<AccessPolicy>,
    namespace: &str,
    refers: impl Fn(&AccessPolicy) -> bool,
) -> Vec<ObjectRef<AccessPolicy>> {
    store
        .state()
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace) && refers(p))
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// Say on the Lease where this leader's webhook endpoint is, for standbys to pass deliveries on.
/// A failure only costs deliveries that reach a standby a retry.
async fn announce_webhook_endpoint(
    client: &kube::Client,
    election: &leader::LeaderElection,
    url: &str,
) {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &election.namespace);
    let patch = serde_json::json!({"metadata": {"annotations": {
        webhook::ENDPOINT_ANNOTATION: format!("{}={url}", election.identity)
    }}});
    if let Err(e) = leases
        .patch(
            &election.lease_name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
    {
        warn!(error = %e, "cannot announce the webhook endpoint on the Lease; standbys answer 503 meanwhile");
    }
}

/// Grants reconciled at once. Each holds a connection to the API server while it works, and
/// the client keeps connections open long after a burst: unbounded, a burst of a thousand
/// grants left hundreds of idle connections (and their buffers) behind. The policy writer
/// folds what arrives together, so this costs a burst little time.
const GRANT_CONCURRENCY: u16 = 128;

/// Integration changes that matter to policies: the inventory revision and the Ready status.
fn inventory_or_connection(i: &TailscaleIntegration) -> Option<u64> {
    let status = i.status.as_ref()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    status
        .inventory
        .as_ref()
        .map(|inv| inv.revision.as_str())
        .hash(&mut h);
    find_condition(&status.conditions, "Ready")
        .map(|c| c.status.as_str())
        .hash(&mut h);
    Some(h.finish())
}

/// Policy changes that matter to its grants: the spec (generation) and deletion.
fn generation_or_deletion(p: &AccessPolicy) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    p.metadata.generation.hash(&mut h);
    p.metadata.deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

/// Grant changes that matter to policies: the phase (and deletion, which touched_objects shows
/// as a final state).
fn grant_phase(g: &AccessGrant) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    g.status
        .as_ref()
        .and_then(|s| s.phase)
        .map(|p| format!("{p:?}"))
        .hash(&mut h);
    g.metadata.deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

/// What the caches keep of an object: not its managed fields, which are most of a small
/// object's size and of no use to the reconcilers.
fn slim<K: kube::Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// Integration changes the integration reconciler acts on: the spec (generation) and a request
/// to sync now (the value of the sync-request annotation). Its own status writes are not.
fn spec_or_sync_request(i: &TailscaleIntegration) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    i.metadata.generation.hash(&mut h);
    i.annotations().get(SYNC_REQUEST_ANNOTATION).hash(&mut h);
    Some(h.finish())
}

/// Grant changes the grant reconciler acts on: the spec (generation), finalizers (kube's
/// finalizer helper waits for the event that adds its own) and deletion. Its own status writes
/// are not among them.
fn spec_or_lifecycle(g: &AccessGrant) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    g.metadata.generation.hash(&mut h);
    g.metadata.finalizers.hash(&mut h);
    g.metadata.deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}
