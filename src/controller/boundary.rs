//! Proves each policy's trust boundary with SubjectAccessReviews ([`crate::boundary`] decides
//! what to ask and what the answers mean) and keeps the verdict where the grant, review and
//! enforcement paths read it. Answers are cached until RBAC changes (a watch of Roles,
//! RoleBindings, ClusterRoles and ClusterRoleBindings) or [`ANSWER_TTL`] passes, so an
//! evaluation asks the API server only what it has not asked since.
//!
//! Fail-closed: a policy not checked yet, or whose check failed, counts as not proven.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::{stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;

use super::context::{Context, Key};
use crate::api::{AccessPolicy, AccessReview, TailscaleIntegration};
use crate::boundary::{self, Exposure, Identity, Known, Layout, Question};
use crate::compliance::Directory;

/// How long an answer is trusted without an RBAC change (other authorizers than RBAC change
/// without one).
pub const ANSWER_TTL: Duration = Duration::from_secs(300);
/// SubjectAccessReviews in flight at once.
const CONCURRENCY: usize = 8;
/// RBAC changes closer together than this start one re-check.
const SETTLE: Duration = Duration::from_millis(500);

/// The verdict of every policy from an RBAC change until it is checked again.
const RBAC_CHANGED: &str =
    "RBAC changed: the trust boundary is being checked again before anything is decided";

/// Whether a policy's inputs are out of reach: `Ok`, with the time an earlier exposure closed
/// (decisions made before it never count), or why not.
pub type Verdict = Result<Option<Timestamp>, String>;

/// A policy's last check: its verdict and the user names it asked about.
struct Checked {
    verdict: Verdict,
    users: HashSet<String>,
}

/// The cached answers and each policy's verdict.
pub struct Boundaries {
    /// Bumped on every RBAC change: answers and verdicts from a check that began before are
    /// not kept.
    epoch: AtomicU64,
    answers: Mutex<HashMap<(Identity, Question), (bool, Instant)>>,
    verdicts: RwLock<HashMap<Key, Checked>>,
    /// Asks the policy controller to check a policy again (an identity it has not asked
    /// about decides a grant).
    recheck: mpsc::Sender<ObjectRef<AccessPolicy>>,
    rechecks: Mutex<Option<mpsc::Receiver<ObjectRef<AccessPolicy>>>>,
}

impl Default for Boundaries {
    fn default() -> Self {
        let (recheck, rechecks) = mpsc::channel(256);
        Boundaries {
            epoch: AtomicU64::new(0),
            answers: Mutex::default(),
            verdicts: RwLock::default(),
            recheck,
            rechecks: Mutex::new(Some(rechecks)),
        }
    }
}

impl Boundaries {
    /// The verdict of policy `key` as its last evaluation found it, for a decision by the
    /// user names `deciders`: one it did not ask about is not proven (and the policy is asked
    /// to check again).
    pub fn verdict(&self, key: &Key, deciders: &[&str]) -> Verdict {
        let verdicts = self
            .verdicts
            .read()
            .map_err(|_| "the trust boundary cache is unusable".to_string())?;
        let Some(checked) = verdicts.get(key) else {
            return Err(format!(
                "the trust boundary of AccessPolicy {}/{} has not been checked yet",
                key.0, key.1
            ));
        };
        if let Some(new) = deciders
            .iter()
            .find(|d| !d.trim().is_empty() && !checked.users.contains(d.trim()))
        {
            let _ = self
                .recheck
                .clone()
                .try_send(ObjectRef::new(&key.1).within(&key.0));
            return Err(format!(
                "the trust boundary of AccessPolicy {}/{} is being checked again for {new}, who has not been asked about yet",
                key.0, key.1
            ));
        }
        checked.verdict.clone()
    }

    fn set_verdict(&self, epoch: u64, key: Key, verdict: Verdict, users: HashSet<String>) {
        if let Ok(mut v) = self.verdicts.write() {
            let verdict = match self.epoch.load(Ordering::SeqCst) == epoch {
                true => verdict,
                false => Err(RBAC_CHANGED.to_string()),
            };
            v.insert(key, Checked { verdict, users });
        }
    }

    /// The requests to check a policy again (taken once, by the policy controller).
    pub fn take_rechecks(&self) -> Option<mpsc::Receiver<ObjectRef<AccessPolicy>>> {
        self.rechecks.lock().ok()?.take()
    }

    /// RBAC changed: every answer may be stale, and no verdict holds until checked again (an
    /// approval right after a new binding must not count on the verdict from before it).
    pub fn rbac_changed(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut a) = self.answers.lock() {
            a.clear();
        }
        if let Ok(mut v) = self.verdicts.write() {
            for checked in v.values_mut() {
                checked.verdict = Err(RBAC_CHANGED.to_string());
            }
        }
    }

    fn cached(&self, key: &(Identity, Question)) -> Option<bool> {
        let answers = self.answers.lock().ok()?;
        let (allowed, at) = answers.get(key)?;
        (at.elapsed() < ANSWER_TTL).then_some(*allowed)
    }

    fn remember(&self, epoch: u64, key: (Identity, Question), allowed: bool) {
        if let Ok(mut a) = self.answers.lock() {
            // Under the lock rbac_changed clears: an answer from before a change is dropped.
            if self.epoch.load(Ordering::SeqCst) == epoch {
                a.insert(key, (allowed, Instant::now()));
            }
        }
    }
}

/// Why a trust boundary is not proven.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unproven {
    /// Someone it should not can change (or read) an input: who, what.
    Exposed(String),
    /// The API server could not be asked (nothing is known to be exposed; decisions wait).
    Unchecked(String),
}

impl Unproven {
    pub fn message(&self) -> &str {
        match self {
            Unproven::Exposed(m) | Unproven::Unchecked(m) => m,
        }
    }
}

/// Check the trust boundary of `policy`: who among the identities it knows may change (or
/// read) what its decisions read. `Ok` when nobody may, else why not. The
/// verdict is kept for the policy's decisions, with `closed_at`, when an earlier exposure
/// closed.
pub async fn check(
    ctx: &Context,
    policy: &AccessPolicy,
    directory: Option<&Directory>,
    integration: Option<&TailscaleIntegration>,
    closed_at: Option<Timestamp>,
) -> Result<(), Unproven> {
    let mut users = HashSet::new();
    let epoch = ctx.boundaries.epoch.load(Ordering::SeqCst);
    let asked = ask_all(
        ctx,
        policy,
        directory,
        integration,
        epoch,
        Fresh::No,
        &mut users,
    )
    .await;
    let result = match asked {
        // RBAC changed while the answers came in: they may describe the cluster before it.
        Ok(_) if ctx.boundaries.epoch.load(Ordering::SeqCst) != epoch => {
            Err(Unproven::Unchecked(RBAC_CHANGED.to_string()))
        }
        Ok(verdict) => verdict.map_err(Unproven::Exposed),
        Err(why) => Err(Unproven::Unchecked(why)),
    };
    ctx.boundaries.set_verdict(
        epoch,
        super::context::key_of(policy),
        result
            .clone()
            .map(|()| closed_at)
            .map_err(|u| u.message().to_string()),
        users,
    );
    result
}

/// Which answers to ask the API server for again rather than take from the cache.
#[derive(Clone, Copy, Debug)]
pub enum Fresh<'a> {
    /// None: cached answers stand.
    No,
    /// All of them.
    All,
    /// Those about these users (and every group the policy knows), the only users asked about.
    For(&'a [&'a str]),
}

/// Ask again, past the cache, just before acting on a decision (`fresh`: about whom). This
/// closes the moment between an RBAC change and the watch reporting it, for the decision at
/// hand.
pub async fn confirm(
    ctx: &Context,
    policy: &AccessPolicy,
    directory: Option<&Directory>,
    integration: Option<&TailscaleIntegration>,
    fresh: Fresh<'_>,
) -> Result<(), Unproven> {
    let mut users = HashSet::new();
    let epoch = ctx.boundaries.epoch.load(Ordering::SeqCst);
    match ask_all(
        ctx,
        policy,
        directory,
        integration,
        epoch,
        fresh,
        &mut users,
    )
    .await
    {
        Ok(verdict) => verdict.map_err(Unproven::Exposed),
        Err(why) => Err(Unproven::Unchecked(why)),
    }
}

async fn ask_all(
    ctx: &Context,
    policy: &AccessPolicy,
    directory: Option<&Directory>,
    integration: Option<&TailscaleIntegration>,
    epoch: u64,
    fresh: Fresh<'_>,
    users: &mut HashSet<String>,
) -> Result<Result<(), String>, String> {
    let ns = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let reviews = Api::<AccessReview>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| {
            format!("cannot list the AccessReviews of {ns} to know their reviewers: {e}")
        })?;
    let grants = ctx.grants_in(&ns);
    let grant_identities: Vec<&str> = grants
        .iter()
        .filter(|g| g.spec.policy_ref.name == name)
        .flat_map(|g| {
            g.spec
                .requested_by
                .as_deref()
                .into_iter()
                .chain(g.spec.approval.as_ref().map(|a| a.approved_by.as_str()))
        })
        .collect();
    let known = Known {
        policy: Some(&policy.spec),
        directory,
        reviewers: reviews
            .items
            .iter()
            .filter(|r| r.spec.policy_ref.name == name)
            .map(|r| &r.spec.reviewers)
            .collect(),
        grant_identities,
    };
    let layout = Layout {
        namespace: &ns,
        directory_config_maps: policy
            .spec
            .directory
            .config_maps
            .iter()
            .map(|c| c.name.as_str())
            .collect(),
        credential_secret: integration.map(|i| i.spec.credentials.secret_name.as_str()),
        git_ops_requesters: policy
            .spec
            .grantable
            .git_ops_requesters
            .iter()
            .map(String::as_str)
            .collect(),
    };
    let mut identities = boundary::identities(&known);
    if let Fresh::For(only) = fresh {
        identities.retain(|i| match i {
            Identity::User { name, .. } => only.contains(&name.as_str()),
            Identity::Group(_) => true,
        });
        for decider in only {
            let known = identities
                .iter()
                .any(|i| matches!(i, Identity::User { name, .. } if name == decider));
            let git_ops = policy
                .spec
                .grantable
                .git_ops_requesters
                .iter()
                .any(|g| g == decider);
            if !known && !git_ops && !decider.trim().is_empty() {
                identities.push(Identity::user(decider));
            }
        }
    }
    users.extend(identities.iter().filter_map(|i| match i {
        Identity::User { name, .. } => Some(name.clone()),
        Identity::Group(_) => None,
    }));
    // GitOps requesters are not asked about (they apply the repository); they decide grants.
    users.extend(policy.spec.grantable.git_ops_requesters.iter().cloned());
    let questions = boundary::questions(&layout);
    let pairs: Vec<(Identity, Question)> = identities
        .iter()
        .flat_map(|i| questions.iter().map(move |q| (i.clone(), q.clone())))
        .collect();
    let reviews_api: Api<SubjectAccessReview> = Api::all(ctx.client.clone());
    let boundaries = &ctx.boundaries;
    let answers: Vec<Result<Option<Exposure>, String>> = stream::iter(pairs)
        .map(|pair| {
            let api = reviews_api.clone();
            async move {
                let cached = match fresh {
                    Fresh::No => boundaries.cached(&pair),
                    Fresh::All | Fresh::For(_) => None,
                };
                let allowed = match cached {
                    Some(allowed) => allowed,
                    None => {
                        let allowed = ask(&api, &pair.0, &pair.1).await?;
                        boundaries.remember(epoch, pair.clone(), allowed);
                        allowed
                    }
                };
                Ok(allowed.then_some(Exposure {
                    identity: pair.0,
                    question: pair.1,
                }))
            }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let mut exposures = Vec::new();
    for answer in answers {
        if let Some(exposure) = answer? {
            exposures.push(exposure);
        }
    }
    Ok(boundary::verdict(&exposures))
}

/// Ask the API server whether `identity` may do what `question` asks.
async fn ask(
    api: &Api<SubjectAccessReview>,
    identity: &Identity,
    question: &Question,
) -> Result<bool, String> {
    let (user, groups) = identity.subject();
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user,
            groups: Some(groups),
            resource_attributes: Some(ResourceAttributes {
                namespace: question.namespace.clone(),
                group: Some(question.group.to_string()),
                resource: Some(question.resource.to_string()),
                subresource: question.subresource.map(str::to_string),
                name: question.name.clone(),
                verb: Some(question.verb.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &review)
        .await
        .map(|r| r.status.is_some_and(|s| s.allowed))
        .map_err(|e| {
            format!(
                "cannot ask the API server whether {identity} can {question} (the operator needs create on subjectaccessreviews.authorization.k8s.io; the chart grants it): {e}"
            )
        })
}

/// Watch RBAC everywhere and send a tick on `changed` (at most one per [`SETTLE`]) after each
/// change and after each (re)listing, having dropped every cached answer.
pub async fn watch_rbac(
    client: kube::Client,
    ctx: std::sync::Arc<Context>,
    changed: futures::channel::mpsc::Sender<()>,
) {
    fn changes<K>(
        client: &kube::Client,
    ) -> impl futures::Stream<Item = Result<watcher::Event<PartialObjectMeta<K>>, watcher::Error>>
    where
        K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
        PartialObjectMeta<K>: serde::de::DeserializeOwned,
    {
        watcher::watcher(
            Api::<PartialObjectMeta<K>>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
    }
    fn is_change<K>(event: &Result<watcher::Event<K>, watcher::Error>) -> bool {
        matches!(
            event,
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone)
        )
    }
    let events = stream::select_all([
        changes::<ClusterRole>(&client)
            .map(|e| is_change(&e))
            .boxed(),
        changes::<ClusterRoleBinding>(&client)
            .map(|e| is_change(&e))
            .boxed(),
        changes::<Role>(&client).map(|e| is_change(&e)).boxed(),
        changes::<RoleBinding>(&client)
            .map(|e| is_change(&e))
            .boxed(),
    ]);
    let mut events = std::pin::pin!(events);
    let mut changed = changed;
    while let Some(change) = events.next().await {
        if !change {
            continue;
        }
        ctx.boundaries.rbac_changed();
        // Let a burst (an install, an aggregation pass) settle, then re-check once.
        let _ =
            tokio::time::timeout(SETTLE, async { while events.next().await.is_some() {} }).await;
        ctx.boundaries.rbac_changed();
        let _ = futures::SinkExt::send(&mut changed, ()).await;
    }
}
