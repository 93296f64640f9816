//! The AccessReview reconciler: loads the campaign, its policy, directory, inventory and
//! decisions; calls [`crate::reviews::campaign`] to decide; acts (revocations, records,
//! recurrence); writes status once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use super::context::{key_of, Context, FIELD_MANAGER};
use super::Error;
use crate::api::NotificationEvent;
use crate::api::RecordPart;
use crate::api::{
    AccessGrant, AccessPolicy, AccessReview, AccessReviewDecision, AccessReviewDecisionStatus,
    AccessReviewStatus, DecisionRecord, EvidenceRef, Refusal, ReviewPhase,
};
use crate::compliance::limits;
use crate::entitlements::shards::encode_json;
use crate::notifications;
use crate::records::{self, ShardSet};
use crate::reviews::campaign::{self, Revocation, Submitted};
use crate::reviews::retention;
use crate::reviews::{Applied, CheckRecord, Evidence, GrantRecord, Item, Outcome};

/// Waiting for what a campaign needs (the policy's inventory or directory).
const WAIT: Duration = Duration::from_secs(15);
/// Retrying revocations that failed or wait for the enforcement limits.
const RETRY_REVOCATIONS: Duration = Duration::from_secs(60);
/// Looking again at an open campaign in any case.
const OPEN_RECHECK: Duration = Duration::from_secs(600);
/// Decisions kept in status.
const MAX_DECISIONS: usize = 50;
/// Reviewers listed in status.
const MAX_REVIEWERS: usize = 50;
/// Refusals listed on a decision.
const MAX_REFUSALS: usize = 50;
/// Attempts at the policy file while others write it (HTTP 412).
const FILE_ATTEMPTS: usize = 3;

pub async fn reconcile(cached: Arc<AccessReview>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (ns, name) = key_of(cached.as_ref());
    // The campaign's status is its memory (which items, which digest, which decisions were
    // answered): read it from the API server, never from a cache that may not show the last
    // pass's write yet. One GET per pass; campaigns are few.
    let api: Api<AccessReview> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(review) = api.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let review = Arc::new(review);
    let mut status = review.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    if status.phase.is_some_and(ReviewPhase::is_over) {
        let action = recur(&review, &mut status, &ctx, now).await?;
        write_status(&ctx, &review, &status).await?;
        return Ok(action);
    }
    let policy_key = (ns.clone(), review.spec.policy_ref.name.clone());
    let Some(policy) = ctx.cached_policy(&ns, &review.spec.policy_ref.name) else {
        return wait(
            &ctx,
            &review,
            status,
            format!(
                "AccessPolicy {ns}/{} does not exist: create it, or point policyRef at one",
                review.spec.policy_ref.name
            ),
        )
        .await;
    };
    let directory = ctx.directory(&policy_key);
    let directory = match directory.as_deref() {
        Some(Ok(d)) => d.clone(),
        Some(Err(why)) => {
            return wait(
                &ctx,
                &review,
                status,
                format!(
                "the policy's directory cannot be read ({why}): reviewers and managers come from it"
            ),
            )
            .await
        }
        None => {
            return wait(
                &ctx,
                &review,
                status,
                "waiting for the policy's first evaluation (its directory)".into(),
            )
            .await
        }
    };

    // The items: snapshot at the start, then as recorded.
    let mut items: Vec<Item> = if status.items_digest.is_none() {
        let (published, _) = match crate::access::read(&ctx.client, &ns, &policy.name_any()).await {
            Ok(p) => p,
            Err(e) => {
                return wait(
                    &ctx,
                    &review,
                    status,
                    format!("the policy's entitlements inventory cannot be read: {e}"),
                )
                .await
            }
        };
        let items = match campaign::snapshot(&review.spec, &published.inventory, Some(&directory)) {
            Ok(items) => items,
            Err(why) => return wait(&ctx, &review, status, why).await,
        };
        let duration = crate::duration::parse(&review.spec.duration).unwrap_or_default();
        status.started_at = Some(Time(now));
        status.due_at = Some(Time(
            now + SignedDuration::try_from(duration).unwrap_or_default(),
        ));
        status.snapshot_at = policy
            .status
            .as_ref()
            .and_then(|s| s.entitlements.as_ref())
            .and_then(|e| e.updated_at.clone())
            .or(Some(Time(now)));
        status.phase = Some(ReviewPhase::Open);
        status.previous = review
            .annotations()
            .get("tailkeeper.io/previous-review")
            .cloned();
        let unassigned = items.iter().filter(|i| i.reviewers.is_empty()).count();
        let message = format!(
            "{} items to review{}",
            items.len(),
            if unassigned > 0 {
                format!(
                    "; {unassigned} have no reviewer (no manager in the directory) and get \
                     spec.undecided at the due time"
                )
            } else {
                String::new()
            }
        );
        ctx.publish(
            review.as_ref(),
            EventType::Normal,
            "ReviewOpened",
            "Review",
            message,
        )
        .await;
        items
    } else {
        match records::review_items(&ctx.client, &review).await {
            Ok(items) => items,
            Err(e) => {
                return wait(
                    &ctx,
                    &review,
                    status,
                    format!(
                        "the campaign's items cannot be read ({e}); they are kept in the \
                     AccessReviewRecords status.itemsRecords names"
                    ),
                )
                .await
            }
        }
    };
    let before = encode_json(&items).map(|e| e.digest).ok();

    // Decisions.
    let unproven = take_decisions(&ctx, &review, &mut status, &mut items, &directory, now).await?;

    // The due time.
    let due = status.due_at.as_ref().map(|t| t.0).unwrap_or(now);
    let mut closed = 0;
    if now >= due {
        closed = campaign::close(&mut items, review.spec.undecided, now);
        if closed > 0 {
            ctx.publish(
                review.as_ref(),
                EventType::Warning,
                "ReviewOverdue",
                "Review",
                format!(
                    "{closed} items were undecided at the due time: {}",
                    match review.spec.undecided {
                        crate::api::UndecidedAction::Keep => "kept",
                        crate::api::UndecidedAction::Revoke => "revoked",
                    }
                ),
            )
            .await;
        }
    }

    // Revocations.
    let unproven_wait = unproven.is_some();
    let waiting = revoke(&ctx, &review, &policy, &mut items, now)
        .await
        .or(unproven);

    let phase = campaign::phase(&items);
    status.counts = Some(campaign::counts(&items));
    status.recent_revocations = campaign::recent_revocations(&items, now);
    export_counts(&ctx, &ns, &name, status.counts.as_ref());
    status.reviewers = campaign::progress(&items, MAX_REVIEWERS);
    status.phase = Some(phase);
    status.message = Some(match (&waiting, phase) {
        (Some(why), _) => why.clone(),
        (None, ReviewPhase::Open) => format!(
            "open until {}",
            status
                .due_at
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default()
        ),
        (None, p) => format!("the campaign is {}", p.as_str()),
    });

    // Reviewers hear that it opened, a reminder, and that it is overdue: once each.
    let started = status.started_at.as_ref().map(|t| t.0).unwrap_or(now);
    let remind_at = started + due.duration_since(started) * 3 / 4;
    let counts = status.counts.clone().unwrap_or_default();
    let mut tell = Vec::new();
    if !status.notified.iter().any(|n| n == "opened") {
        tell.push(("opened", NotificationEvent::ReviewOpened, counts.undecided));
    }
    if phase == ReviewPhase::Open
        && closed == 0
        && counts.undecided > 0
        && now >= remind_at
        && now < due
        && !status.notified.iter().any(|n| n == "reminder")
    {
        tell.push((
            "reminder",
            NotificationEvent::ReviewReminder,
            counts.undecided,
        ));
    }
    if closed > 0 && !status.notified.iter().any(|n| n == "overdue") {
        tell.push(("overdue", NotificationEvent::ReviewOverdue, closed as i64));
    }
    for (mark, kind, undecided) in tell {
        let news = review_news(&review, &status, undecided, now);
        let event = match kind {
            NotificationEvent::ReviewOpened => notifications::Event::ReviewOpened(news),
            NotificationEvent::ReviewReminder => notifications::Event::ReviewReminder(news),
            _ => notifications::Event::ReviewOverdue(news),
        };
        super::notify::review_event(&ctx, &policy, &event, review.object_ref(&()));
        status.notified.push(mark.to_string());
    }

    // Items are recorded before anything refers to them.
    let encoded = encode_json(&items).map_err(|e| Error::Kube(kube::Error::Service(e.into())))?;
    if before.as_deref() != Some(encoded.digest.as_str()) || status.items_records.is_empty() {
        let names = records::write(
            &ctx.client,
            &shard_set(&review, RecordPart::Items),
            &encoded,
        )
        .await?;
        status.items_records = names;
        status.items_digest = Some(encoded.digest.clone());
    }

    if phase.is_over() {
        status.ended_at = Some(Time(now));
        let evidence = evidence(&ctx, &review, &policy, &status, &items, phase, now);
        let encoded =
            encode_json(&evidence).map_err(|e| Error::Kube(kube::Error::Service(e.into())))?;
        let mut set = shard_set(&review, RecordPart::Evidence);
        set.prefix = format!("{}-evidence-{}", review.name_any(), &encoded.digest[..10]);
        set.retain_until = Some(retention::retain_until(
            policy.spec.evidence_retention.as_deref(),
            now,
        ));
        let names = records::write(&ctx.client, &set, &encoded).await?;
        status.evidence = Some(EvidenceRef {
            records: names,
            digest: encoded.digest,
            created_at: Time(now),
        });
        let counts = status.counts.clone().unwrap_or_default();
        ctx.publish(
            review.as_ref(),
            EventType::Normal,
            if phase == ReviewPhase::Completed { "ReviewCompleted" } else { "ReviewEnded" },
            "Review",
            format!(
                "{} items: {} kept, {} revoked ({} removed, {} a person must remove); evidence in {}",
                counts.items,
                counts.kept,
                counts.revoked,
                counts.applied,
                counts.not_applicable,
                status.evidence.as_ref().map(|e| e.records.join(", ")).unwrap_or_default()
            ),
        )
        .await;
        info!(review = %name, namespace = %ns, phase = phase.as_str(), "access review over");
    }
    status.observed_generation = review.metadata.generation;
    write_status(&ctx, &review, &status).await?;

    if phase.is_over() {
        return recur(&review, &mut status.clone(), &ctx, now).await;
    }
    let until_due = due
        .duration_since(now)
        .unsigned_abs()
        .max(Duration::from_secs(1));
    let until_reminder = if now < remind_at {
        remind_at.duration_since(now).unsigned_abs()
    } else {
        until_due
    };
    let until_due = until_due.min(until_reminder.max(Duration::from_secs(1)));
    let next = if unproven_wait {
        // The admission policies are read again this often.
        super::admission::REFRESH.min(until_due)
    } else if waiting.is_some() {
        RETRY_REVOCATIONS.min(until_due)
    } else if now >= due {
        Duration::from_secs(1)
    } else {
        OPEN_RECHECK.min(until_due)
    };
    Ok(Action::requeue(next))
}

/// `tailkeeper_review_items` of one campaign.
fn export_counts(ctx: &Context, ns: &str, name: &str, counts: Option<&crate::api::ReviewCounts>) {
    let Some(c) = counts else { return };
    for (state, value) in [
        ("undecided", c.undecided),
        ("kept", c.kept),
        ("revoked", c.revoked),
        ("pending", c.pending),
    ] {
        ctx.metrics
            .review_items
            .get_or_create(&crate::metrics::ReviewLabels {
                namespace: ns.to_string(),
                review: name.to_string(),
                state: state.to_string(),
            })
            .set(value);
    }
}

fn review_news(
    review: &AccessReview,
    status: &AccessReviewStatus,
    undecided: i64,
    now: Timestamp,
) -> notifications::ReviewNews {
    notifications::ReviewNews {
        namespace: review.metadata.namespace.clone().unwrap_or_default(),
        name: review.name_any(),
        uid: review.uid().unwrap_or_default(),
        policy: review.spec.policy_ref.name.clone(),
        description: review.spec.description.clone(),
        scope: describe_scope(&review.spec),
        items: status.counts.as_ref().map_or(0, |c| c.items),
        undecided,
        undecided_action: format!("{:?}", review.spec.undecided),
        due_at: status.due_at.as_ref().map(|t| t.0),
        reviewers: status
            .reviewers
            .iter()
            .map(|r| (r.reviewer.clone(), r.assigned, r.decided))
            .collect(),
        at: now,
    }
}

fn shard_set<'a>(review: &'a AccessReview, part: RecordPart) -> ShardSet<'a> {
    ShardSet {
        namespace: review.metadata.namespace.as_deref().unwrap_or_default(),
        prefix: format!(
            "{}-{}",
            review.name_any(),
            if part == RecordPart::Items {
                "items"
            } else {
                "evidence"
            }
        ),
        review: review.name_any(),
        part,
        // Evidence outlives its campaign: the garbage collector never takes it.
        owner: (part == RecordPart::Items).then(|| owner(review)),
        retain_until: None,
        review_uid: review.uid().unwrap_or_default(),
        field_manager: FIELD_MANAGER,
    }
}

fn owner(review: &AccessReview) -> OwnerReference {
    OwnerReference {
        api_version: AccessReview::api_version(&()).to_string(),
        kind: AccessReview::kind(&()).to_string(),
        name: review.name_any(),
        uid: review.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

async fn wait(
    ctx: &Context,
    review: &AccessReview,
    mut status: AccessReviewStatus,
    why: String,
) -> Result<Action, Error> {
    if status.message.as_deref() != Some(why.as_str()) {
        ctx.publish(
            review,
            EventType::Warning,
            "ReviewWaiting",
            "Review",
            why.clone(),
        )
        .await;
    }
    status.message = Some(why);
    write_status(ctx, review, &status).await?;
    Ok(Action::requeue(WAIT))
}

async fn write_status(
    ctx: &Context,
    review: &AccessReview,
    status: &AccessReviewStatus,
) -> Result<(), Error> {
    if review.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<AccessReview> = Api::namespaced(
        ctx.client.clone(),
        review.metadata.namespace.as_deref().unwrap_or_default(),
    );
    api.patch_status(
        &review.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok(())
}

/// Takes the campaign's decisions that the cluster proves and records what was refused;
/// returns why decisions wait, when the cluster cannot prove them yet.
async fn take_decisions(
    ctx: &Context,
    review: &AccessReview,
    status: &mut AccessReviewStatus,
    items: &mut [Item],
    directory: &crate::compliance::Directory,
    now: Timestamp,
) -> Result<Option<String>, Error> {
    let ns = review.metadata.namespace.clone().unwrap_or_default();
    let uid = review.uid().unwrap_or_default();
    let started = status.started_at.as_ref().map(|t| t.0).unwrap_or(now);
    let mut decisions: Vec<Arc<AccessReviewDecision>> = ctx
        .review_decisions_in(&ns)
        .into_iter()
        .filter(|d| d.spec.review_ref.name == review.name_any())
        .filter(|d| unanswered(d, status))
        .collect();
    decisions.sort_by_key(|d| d.metadata.creation_timestamp.clone().map(|t| t.0));
    if decisions.is_empty() {
        return Ok(None);
    }
    // Without the admission policies nothing proves who wrote a decision: they wait (and
    // count once the cluster proves them), rather than being refused for the cluster's state.
    let proven = match ctx.review_decisions_verified(&ns) {
        Ok(since) => since,
        Err(why) => {
            tracing::debug!(review = %review.name_any(), namespace = %ns, %why, "review decisions wait");
            return Ok(Some(why));
        }
    };
    // Nor while someone other than the policy's owners could rewrite what decisions read (the
    // directory says who manages whom and who is whom): they wait for the boundary's proof.
    let deciders: Vec<&str> = decisions.iter().map(|d| d.spec.reviewer.as_str()).collect();
    let closed = match ctx.boundaries.verdict(
        &(ns.clone(), review.spec.policy_ref.name.clone()),
        &deciders,
    ) {
        Ok(closed) => closed,
        Err(why) => {
            tracing::debug!(review = %review.name_any(), namespace = %ns, %why, "review decisions wait");
            return Ok(Some(why));
        }
    };
    // ...asked again past the cache for these reviewers, just before their decisions count.
    let policy = ctx.cached_policy(&ns, &review.spec.policy_ref.name);
    let confirmed = match &policy {
        None => Err(format!(
            "AccessPolicy {ns}/{} is not known yet",
            review.spec.policy_ref.name
        )),
        Some(policy) => {
            let integration = ctx.cached_integration(&ns, &policy.spec.integration_ref.name);
            super::boundary::confirm(
                ctx,
                policy,
                Some(directory),
                integration.as_deref(),
                super::boundary::Fresh::For(&deciders),
            )
            .await
            .map_err(|u| u.message().to_string())
        }
    };
    if let Err(why) = confirmed {
        tracing::debug!(review = %review.name_any(), namespace = %ns, %why, "review decisions wait");
        return Ok(Some(why));
    }
    let api: Api<AccessReviewDecision> = Api::namespaced(ctx.client.clone(), &ns);
    for decision in decisions {
        let created = decision.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let refuse_all = |why: String| campaign::Taken::refusing_all(&decision.spec.items, &why);
        let taken = if decision.spec.review_ref.uid != uid {
            refuse_all(format!(
                "reviewRef.uid {} is not this campaign ({uid}): it was recreated",
                decision.spec.review_ref.uid
            ))
        } else if status.phase.is_some_and(ReviewPhase::is_over)
            || status
                .due_at
                .as_ref()
                .is_some_and(|d| created.is_some_and(|c| c >= d.0))
        {
            refuse_all("the campaign was over when the decision was made".into())
        } else if created.is_some_and(|c| c < started) {
            refuse_all("made before the campaign started".into())
        } else if closed.is_some_and(|at| created.is_none_or(|c| c < at)) {
            refuse_all(format!(
                "made while the trust boundary of AccessPolicy {} was not proven (someone it should not could change what decisions read); decide again",
                review.spec.policy_ref.name
            ))
        } else {
            match proven {
                Some(since) if created.is_none_or(|c| c < since) => refuse_all(
                    "made before the admission policies that prove reviewers were installed".into(),
                ),
                _ => campaign::decide(
                    items,
                    &Submitted {
                        name: &decision.name_any(),
                        reviewer: &decision.spec.reviewer,
                        group: decision.spec.group.as_deref(),
                        decision: decision.spec.decision,
                        comment: decision.spec.comment.as_deref(),
                        items: &decision.spec.items,
                        at: created.unwrap_or(now),
                    },
                    directory,
                ),
            }
        };
        info!(review = %review.name_any(), namespace = %ns, decision = %decision.name_any(),
            accepted = taken.accepted, refused = taken.refused.len(), "review decision taken");
        let message = (!taken.refused.is_empty()).then(|| {
            let reasons: BTreeSet<&str> =
                taken.refused.iter().map(|(_, why)| why.as_str()).collect();
            format!(
                "{} of {} items refused: {}",
                taken.refused.len(),
                decision.spec.items.len(),
                reasons.into_iter().take(3).collect::<Vec<_>>().join("; ")
            )
        });
        let record = AccessReviewDecisionStatus {
            accepted: taken.accepted as i64,
            refused: taken.refused.len() as i64,
            refusals: taken
                .refused
                .iter()
                .take(MAX_REFUSALS)
                .map(|(item, reason)| Refusal {
                    item: item.clone(),
                    reason: reason.clone(),
                })
                .collect(),
            message: message.clone(),
            observed_at: Some(Time(now)),
        };
        if taken.refused.is_empty() {
            ctx.publish(
                review,
                EventType::Normal,
                "DecisionTaken",
                "Review",
                format!(
                    "{} decided {} on {} items ({})",
                    decision.spec.reviewer,
                    decision.spec.decision.as_str(),
                    taken.accepted,
                    decision.name_any()
                ),
            )
            .await;
        } else {
            ctx.publish_apart(
                decision.as_ref(),
                EventType::Warning,
                "DecisionRefused",
                "Review",
                message.clone().unwrap_or_default(),
                Some(review.object_ref(&())),
            )
            .await;
        }
        status.decisions.insert(
            0,
            DecisionRecord {
                name: decision.name_any(),
                reviewer: decision.spec.reviewer.clone(),
                accepted: taken.accepted as i64,
                refused: taken.refused.len() as i64,
                message,
            },
        );
        status.decisions.truncate(MAX_DECISIONS);
        api.patch_status(
            &decision.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": record })),
        )
        .await?;
    }
    Ok(None)
}

/// Whether `decision` is still to be answered: no status in the cache, and not one this
/// campaign has just answered (the cache may not show that answer yet).
fn unanswered(decision: &AccessReviewDecision, status: &AccessReviewStatus) -> bool {
    decision
        .status
        .as_ref()
        .and_then(|s| s.observed_at.as_ref())
        .is_none()
        && !status
            .decisions
            .iter()
            .any(|d| Some(d.name.as_str()) == decision.metadata.name.as_deref())
}

/// Carries out `Revoke` decisions not yet applied, within the policy's enforcement limits.
/// Returns why some wait, if they do.
async fn revoke(
    ctx: &Context,
    review: &AccessReview,
    policy: &AccessPolicy,
    items: &mut [Item],
    now: Timestamp,
) -> Option<String> {
    let pending: Vec<usize> = (0..items.len())
        .filter(|&i| campaign::needs_applying(&items[i]))
        .collect();
    if pending.is_empty() {
        return None;
    }
    // Those Tailkeeper cannot take away are recorded as such at once.
    let mut todo = Vec::new();
    for i in pending {
        match campaign::revocation(&items[i]) {
            Revocation::NotApplicable(why) => {
                items[i].applied = Some(Applied {
                    outcome: Outcome::NotApplicable,
                    at: now,
                    removed: Vec::new(),
                    message: why,
                })
            }
            r => todo.push((i, r)),
        }
    }
    if todo.is_empty() {
        return None;
    }
    // The enforcement limits, in people and per policy: the people the policy changed in the
    // last 24 hours (enforcement and every campaign, this one's included) and privileged
    // changes at a time. Taken under the policy's lock, so no other campaign or enforcement
    // uses the same room meanwhile.
    let limits = &policy.spec.enforcement;
    let policy_key = key_of(policy);
    let _limits = ctx.changes.lock(&policy_key).await;
    let directory = ctx.directory(&policy_key);
    let Some(directory) = directory.as_deref().and_then(|d| d.as_ref().ok()) else {
        return Some("the policy's directory is not read yet: revocations wait".into());
    };
    let Some(mut recent) = super::changes::recent_people(ctx, policy, directory, now) else {
        return Some("the policy's other campaigns are not known yet: revocations wait".into());
    };
    recent.extend(limits::changed_in_last_day(
        directory,
        campaign::recent_revocations(items, now)
            .iter()
            .map(|c| (c.login_name.as_str(), c.at.0)),
        now,
    ));
    let per_day = limits.max_changes_per24_hours;
    let mut room = limits::room_today(&recent, per_day);
    let mut waiting = None;
    let mut deferred = 0;
    todo.retain(|(i, _)| {
        let person = limits::person_of(directory, &items[*i].user);
        if recent.contains(&person) {
            return true;
        }
        if room == 0 {
            deferred += 1;
            return false;
        }
        room -= 1;
        recent.insert(person);
        true
    });
    if deferred > 0 {
        waiting = Some(format!(
            "{deferred} revocations wait: the policy changed {} {} in the last 24 hours \
             (enforcement and access reviews together), and its \
             enforcement.maxChangesPer24Hours is {}",
            recent.len(),
            if recent.len() == 1 {
                "person"
            } else {
                "people"
            },
            per_day.clamp(0, 100)
        ));
    }
    let privileged_limit = limits.max_privileged_per_evaluation.max(0) as usize;
    let mut privileged = 0;
    let key = (
        review.metadata.namespace.clone().unwrap_or_default(),
        policy.spec.integration_ref.name.clone(),
    );
    let Some((_, client)) = ctx.cached_client(&key) else {
        return Some("no connection to the tailnet yet: revocations wait".into());
    };
    let mut entries = Vec::new();
    for (i, revocation) in todo {
        match revocation {
            Revocation::LowerRole { login, from } => {
                if privileged >= privileged_limit {
                    waiting.get_or_insert_with(|| format!(
                        "role changes wait: the policy's enforcement.maxPrivilegedPerEvaluation is {privileged_limit}"
                    ));
                    continue;
                }
                privileged += 1;
                let user = ctx.inventory(&key).and_then(|inv| {
                    inv.users
                        .iter()
                        .find(|u| u.login_name.eq_ignore_ascii_case(&login))
                        .cloned()
                });
                let Some(user) = user else {
                    items[i].applied = Some(Applied {
                        outcome: Outcome::AlreadyGone,
                        at: now,
                        removed: Vec::new(),
                        message: format!("{login} is no longer a user of the tailnet"),
                    });
                    continue;
                };
                if user.role != from {
                    items[i].applied = Some(Applied {
                        outcome: Outcome::AlreadyGone,
                        at: now,
                        removed: Vec::new(),
                        message: format!("{login} no longer holds {from} (now {})", user.role),
                    });
                    continue;
                }
                match client.set_user_role(&user.id, "member").await {
                    Ok(()) => {
                        items[i].applied = Some(Applied {
                            outcome: Outcome::Removed,
                            at: now,
                            removed: Vec::new(),
                            message: format!("role of {login} lowered from {from} to member"),
                        });
                        ctx.publish(
                            review,
                            EventType::Normal,
                            "AccessRevoked",
                            "Review",
                            format!("role of {login} lowered from {from} to member"),
                        )
                        .await;
                    }
                    Err(e) => {
                        waiting = Some(format!(
                            "Tailscale refused to lower the role of {login}: {e}"
                        ));
                    }
                }
            }
            Revocation::Entries { login, entitlement } => entries.push((i, login, entitlement)),
            Revocation::NotApplicable(_) => {}
        }
    }
    if !entries.is_empty() {
        if let Err(why) = revoke_entries(ctx, review, &client, &key, items, &entries, now).await {
            ctx.publish(
                review,
                EventType::Warning,
                "RevocationFailed",
                "Review",
                why.clone(),
            )
            .await;
            waiting = Some(why);
        }
    }
    // What was taken away now counts at once, before the status says so.
    for item in items.iter() {
        if item
            .applied
            .as_ref()
            .is_some_and(|a| a.outcome == Outcome::Removed && a.at >= now)
        {
            ctx.changes
                .record(&policy_key, limits::person_of(directory, &item.user), now);
        }
    }
    waiting
}

/// One read-modify-write of the policy file (If-Match) for every entry revocation.
async fn revoke_entries(
    ctx: &Context,
    review: &AccessReview,
    client: &crate::tailscale::Client,
    key: &super::context::Key,
    items: &mut [Item],
    entries: &[(usize, String, String)],
    now: Timestamp,
) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..FILE_ATTEMPTS {
        let file = client
            .get_policy_file()
            .await
            .map_err(|e| format!("reading the policy file: {e}"))?;
        let mut text = file.text.clone();
        let mut outcomes = Vec::new();
        for (i, login, entitlement) in entries {
            let out = campaign::revoke_in_file(&text, login, entitlement)
                .map_err(|e| format!("the policy file was left alone: {e}"))?;
            text = out.text;
            outcomes.push((
                *i,
                login.clone(),
                entitlement.clone(),
                out.removed,
                out.kept,
            ));
        }
        if text != file.text {
            match client.set_policy_file(&text, Some(&file.etag)).await {
                Ok(_) => {
                    ctx.update_inventory_policy_file(key, text);
                }
                Err(e) if e.is_precondition_failed() => {
                    last = e.to_string();
                    continue;
                }
                Err(e) => return Err(format!("Tailscale refused the policy file: {e}")),
            }
        }
        for (i, login, entitlement, removed, kept) in outcomes {
            let applied = if !removed.is_empty() {
                let what = removed
                    .iter()
                    .map(|r| format!("{}: {}", r.location, r.text))
                    .collect::<Vec<_>>()
                    .join("; ");
                ctx.publish(
                    review,
                    EventType::Normal,
                    "AccessRevoked",
                    "Review",
                    format!("{login} removed from {entitlement}: {what}"),
                )
                .await;
                Applied {
                    outcome: Outcome::Removed,
                    at: now,
                    removed,
                    message: format!("{login} removed from {entitlement}"),
                }
            } else if !kept.is_empty() {
                Applied {
                    outcome: Outcome::NotApplicable,
                    at: now,
                    removed: Vec::new(),
                    message: format!(
                        "{login} holds {entitlement} only through Tailkeeper entries ({}): they end with their grants",
                        kept.iter().map(|k| k.location.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                }
            } else {
                Applied {
                    outcome: Outcome::AlreadyGone,
                    at: now,
                    removed: Vec::new(),
                    message: format!("{login} no longer held {entitlement} directly"),
                }
            };
            items[i].applied = Some(applied);
        }
        return Ok(());
    }
    Err(format!(
        "the policy file changed under each of {FILE_ATTEMPTS} attempts (HTTP 412 each time): {last}"
    ))
}

fn evidence(
    ctx: &Context,
    review: &AccessReview,
    policy: &AccessPolicy,
    status: &AccessReviewStatus,
    items: &[Item],
    phase: ReviewPhase,
    now: Timestamp,
) -> Evidence {
    let ns = review.metadata.namespace.clone().unwrap_or_default();
    let started = status.started_at.as_ref().map(|t| t.0).unwrap_or(now);
    let checks = policy
        .status
        .as_ref()
        .map(|s| {
            s.checks
                .iter()
                .map(|c| CheckRecord {
                    name: c.name.clone(),
                    result: serde_json::to_value(c.result)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    message: c.message.clone(),
                    failing: c.failing_count,
                })
                .collect()
        })
        .unwrap_or_default();
    let grants = ctx
        .grants_in(&ns)
        .into_iter()
        .filter(|g| g.spec.policy_ref.name == policy.name_any())
        .filter_map(|g| grant_record(&g, started, now))
        .collect();
    let spec = &review.spec;
    let scope = describe_scope(spec);
    let reviewers = spec
        .reviewers
        .users
        .iter()
        .map(|u| format!("user {u}"))
        .chain(spec.reviewers.groups.iter().map(|g| format!("group {g}")))
        .chain(
            spec.reviewers
                .managers
                .then(|| "each person's manager".to_string()),
        )
        .collect::<Vec<_>>()
        .join(", ");
    Evidence {
        review: review.name_any(),
        namespace: ns,
        uid: review.uid().unwrap_or_default(),
        policy: policy.name_any(),
        description: spec.description.clone(),
        scope,
        reviewers,
        undecided: format!("{:?}", spec.undecided),
        snapshot_at: status.snapshot_at.as_ref().map(|t| t.0).unwrap_or(started),
        started_at: started,
        due_at: status.due_at.as_ref().map(|t| t.0).unwrap_or(now),
        ended_at: now,
        phase: phase.as_str().to_string(),
        items: items.to_vec(),
        checks,
        grants,
    }
}

fn describe_scope(spec: &crate::api::AccessReviewSpec) -> String {
    let s = &spec.scope;
    let mut parts = Vec::new();
    if s.everything {
        parts.push("every entitlement of every user".to_string());
    }
    if s.privileged {
        parts.push("privileged access (roles above member, SSH rules)".to_string());
    }
    if !s.roles.is_empty() {
        parts.push(format!(
            "roles {}",
            s.roles
                .iter()
                .map(|r| campaign::role_name(*r))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !s.groups.is_empty() {
        parts.push(format!("groups {}", s.groups.join(", ")));
    }
    if !s.destinations.is_empty() {
        parts.push(format!("rules to {}", s.destinations.join(", ")));
    }
    parts.join("; ")
}

fn grant_record(g: &AccessGrant, from: Timestamp, to: Timestamp) -> Option<GrantRecord> {
    let status = g.status.as_ref()?;
    let started = status.activated_at.as_ref().map(|t| t.0)?;
    let ended = status.revoked_at.as_ref().map(|t| t.0);
    if started > to || ended.is_some_and(|e| e < from) {
        return None;
    }
    Some(GrantRecord {
        name: g.name_any(),
        user: g.spec.user.clone(),
        access: crate::notifications::describe_access(&g.spec.access),
        phase: status.phase.map(|p| format!("{p:?}")).unwrap_or_default(),
        requested_by: g.spec.requested_by.clone(),
        approved_by: g.spec.approval.as_ref().map(|a| a.approved_by.clone()),
        started_at: Some(started),
        ended_at: ended,
    })
}

/// Starts the next campaign of a recurring one when its time comes.
async fn recur(
    review: &AccessReview,
    status: &mut AccessReviewStatus,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let Some(recurrence) = &review.spec.recurrence else {
        return Ok(Action::await_change());
    };
    if status.next.is_some() {
        return Ok(Action::await_change());
    }
    let started = status.started_at.as_ref().map(|t| t.0).unwrap_or(now);
    let at = started + SignedDuration::from_hours(24 * i64::from(recurrence.every_days));
    if now < at {
        return Ok(Action::requeue(
            at.duration_since(now)
                .unsigned_abs()
                .max(Duration::from_secs(1)),
        ));
    }
    let name = next_name(&review.name_any());
    let ns = review.metadata.namespace.clone().unwrap_or_default();
    let api: Api<AccessReview> = Api::namespaced(ctx.client.clone(), &ns);
    let next = AccessReview {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: review.metadata.labels.clone(),
            annotations: Some(
                [(
                    "tailkeeper.io/previous-review".to_string(),
                    review.name_any(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        spec: review.spec.clone(),
        status: None,
    };
    match api.create(&PostParams::default(), &next).await {
        Ok(_) => {
            ctx.publish(
                review,
                EventType::Normal,
                "ReviewRecurred",
                "Review",
                format!("the next campaign, {name}, has started; this one stays as its record"),
            )
            .await;
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    status.next = Some(name);
    write_status(ctx, review, status).await?;
    Ok(Action::await_change())
}

/// `quarterly-admins` → `quarterly-admins-2`; `quarterly-admins-2` → `quarterly-admins-3`.
pub fn next_name(name: &str) -> String {
    match name.rsplit_once('-') {
        Some((base, n))
            if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && n.len() < 4 =>
        {
            let n: u32 = n.parse().unwrap_or(1);
            format!("{base}-{}", n + 1)
        }
        _ => format!("{name}-2"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_campaign_counts_on_from_the_name() {
        assert_eq!(next_name("quarterly-admins"), "quarterly-admins-2");
        assert_eq!(next_name("quarterly-admins-2"), "quarterly-admins-3");
        assert_eq!(next_name("q-2026"), "q-2026-2", "a year is not a counter");
        assert_eq!(next_name("admins"), "admins-2");
    }
}
