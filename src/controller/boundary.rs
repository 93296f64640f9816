//! Proves each policy's trust boundary with SubjectAccessReviews ([`crate::boundary`] decides
//! what to ask and what the answers mean) and keeps the verdict where the grant, review and
//! enforcement paths read it. Answers are cached until RBAC changes (a watch of Roles,
//! RoleBindings, ClusterRoles and ClusterRoleBindings) or [`ANSWER_TTL`] passes, so an
//! evaluation asks the API server only what it has not asked since.
//!
//! Fail-closed: a policy not checked yet, or whose check failed, counts as not proven.

use std::collections::{HashMap, HashSet};
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

    fn set_verdict(&self, key: Key, verdict: Verdict, users: HashSet<String>) {
        if let Ok(mut v) = self.verdicts.write() {
            v.insert(key, Checked { verdict, users });
        }
    }

    /// The requests to check a policy again (taken once, by the policy controller).
    pub fn take_rechecks(&self) -> Option<mpsc::Receiver<ObjectRef<AccessPolicy>>> {
        self.rechecks.lock().ok()?.take()
    }

    /// RBAC changed: every answer may be stale.
    pub fn rbac_changed(&self) {
        if let Ok(mut a) = self.answers.lock() {
            a.clear();
        }
    }

    fn cached(&self, key: &(Identity, Question)) -> Option<bool> {
        let answers = self.answers.lock().ok()?;
        let (allowed, at) = answers.get(key)?;
        (at.elapsed() < ANSWER_TTL).then_some(*allowed)
    }

    fn remember(&self, key: (Identity, Question), allowed: bool) {
        if let Ok(mut a) = self.answers.lock() {
            a.insert(key, (allowed, Instant::now()));
        }
    }
}

/// Check the trust boundary of `policy`: who among the identities it knows may change (or
/// read) what its decisions read. `Ok` when nobody may, else the message naming them. The
/// verdict is kept for the policy's decisions, with `closed_at`, when an earlier exposure
/// closed.
pub async fn check(
    ctx: &Context,
    policy: &AccessPolicy,
    directory: Option<&Directory>,
    integration: Option<&TailscaleIntegration>,
    closed_at: Option<Timestamp>,
) -> Result<(), String> {
    let mut users = HashSet::new();
    let result = ask_all(ctx, policy, directory, integration, &mut users).await;
    ctx.boundaries.set_verdict(
        super::context::key_of(policy),
        result.clone().map(|()| closed_at),
        users,
    );
    result
}

async fn ask_all(
    ctx: &Context,
    policy: &AccessPolicy,
    directory: Option<&Directory>,
    integration: Option<&TailscaleIntegration>,
    users: &mut HashSet<String>,
) -> Result<(), String> {
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
    let identities = boundary::identities(&known);
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
                let allowed = match boundaries.cached(&pair) {
                    Some(allowed) => allowed,
                    None => {
                        let allowed = ask(&api, &pair.0, &pair.1).await?;
                        boundaries.remember(pair.clone(), allowed);
                        allowed
                    }
                };
                Ok(allowed.then(|| Exposure {
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
    boundary::verdict(&exposures)
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
        // Let a burst (an install, an aggregation pass) settle, then re-check once.
        let _ =
            tokio::time::timeout(SETTLE, async { while events.next().await.is_some() {} }).await;
        ctx.boundaries.rbac_changed();
        let _ = futures::SinkExt::send(&mut changed, ()).await;
    }
}
