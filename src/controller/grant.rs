//! The AccessGrant reconciler, a short pipeline: load the grant, its policy (from the cache),
//! who its person is in the policy's directory and whether the ledger holds access for it; ask
//! [`lifecycle::decide`] for the next step; carry it out through the ledger ([`super::ledger`],
//! which records every change before making it); write status once. It holds no lifecycle
//! decision of its own.
//!
//! Deleting a grant that holds access ends the access first (finalizer). Should the grant vanish
//! anyway (its finalizer removed by force), the ledger's sweeper ends the access at once.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::ResourceExt;
use tracing::{info, instrument, warn};

use super::admission;
use super::context::{key_of, Context, Key};
use super::ledger::{self, Failure, NotStarted, Reach, Request, Started};
use super::notify;
use super::status::apply_status;
use super::writer::Want;
use super::Error;
use crate::api::{
    find_condition, AccessGrant, AccessGrantStatus, AccessPolicy, AppliedChange, ChangeKind,
    ConditionStatus, Conditions, GrantLedgerSpec, GrantPhase, Hold, KState, TailscaleIntegration,
};
use crate::grants::ledger::RoleRefusal;
use crate::grants::lifecycle::{self, Approver, Beneficiary, GrantState, Revocation, Step};
use crate::grants::{self, ApprovedBy, PlannedAccess};
use crate::policy_file::Entries;
use crate::tailscale::{self, UserType};

/// The finalizer that makes deletion revoke first.
pub const FINALIZER: &str = "tailkeeper.io/revoke";

/// How soon a grant waiting for another role grant to end looks again.
const ROLE_WAIT: Duration = Duration::from_secs(5);

/// How often an Active standing grant is looked at again when nothing else wakes it (its person
/// leaving, or its policy changing or going, wake it at once).
const STANDING_RECHECK: Duration = Duration::from_secs(300);

/// Why a grant reconcile did not finish.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Deletion waits: the access is not ended yet.
    #[error("access not ended yet: {0}")]
    RevocationPending(String),
}

#[instrument(skip_all, fields(namespace = %obj.namespace().unwrap_or_default(), grant = %obj.name_any()))]
pub async fn reconcile(obj: Arc<AccessGrant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<AccessGrant> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Finalizer::Apply(g) => Ok(run(&g, &ctx).await?.action),
            Finalizer::Cleanup(g) => {
                let outcome = run(&g, &ctx).await?;
                match outcome.holding {
                    None => Ok(outcome.action),
                    Some(why) => Err(GrantError::RevocationPending(why)),
                }
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// What a reconcile did: when to look again, and whether access is still held (and why).
struct Outcome {
    action: Action,
    holding: Option<String>,
}

impl From<Action> for Outcome {
    fn from(action: Action) -> Self {
        Outcome {
            action,
            holding: None,
        }
    }
}

async fn run(grant: &AccessGrant, ctx: &Context) -> Result<Outcome, GrantError> {
    let ns = grant.namespace().unwrap_or_default();
    let status = grant.status.clone().unwrap_or_default();
    let policy = load_policy(ctx, &ns, &grant.spec.policy_ref.name).await?;
    let holder = holder(ctx, grant, policy.as_ref()).await?;
    let deleting = grant.metadata.deletion_timestamp.is_some();
    // Who the beneficiary is matters before access starts and while it lasts (access is for
    // people); not once the grant has ended.
    let (beneficiary, approver) = match (&policy, status.phase) {
        (
            Some(p),
            None | Some(GrantPhase::Pending | GrantPhase::AwaitingApproval | GrantPhase::Active),
        ) if !deleting => people(ctx, p, grant).await,
        _ => (Beneficiary::Person, Approver::NotInDirectory),
    };
    let uid = grant.uid().unwrap_or_default();
    let verified = ctx.approvals_verified(&ns);
    // An approval written before the admission policies that prove approvals existed was
    // checked by nothing: it never counts.
    let approved_unproven = grant.spec.approval.is_some()
        && matches!(
            (&verified, approval_written_at(grant)),
            // Times are whole seconds: an approval in the same second is not trusted either.
            (Ok(Some(since)), Some(at)) if at <= *since
        );
    // `requestedBy` is set only when a grant is created (the schema refuses it later): a grant
    // created before those policies were in force names a requester nothing proved.
    let requested_unproven = matches!(
        (&verified, grant.metadata.creation_timestamp.as_ref()),
        (Ok(Some(since)), Some(created)) if created.0 <= *since
    );
    // An approval given while the grant had no governing policy (or under a policy since
    // deleted and recreated) was judged against nothing. Times are whole seconds: one in the
    // policy's own second counts, as the approver named in it is still checked against the
    // policy (by name, or through a group admission proved).
    let approved_before_policy = grant.spec.approval.is_some()
        && matches!(
            (
                approval_written_at(grant),
                policy
                    .as_ref()
                    .and_then(|p| p.metadata.creation_timestamp.as_ref())
            ),
            (Some(at), Some(created)) if at < created.0
        );
    // What its policy's decisions read must be out of reach of whoever could decide it (the
    // requester and the approver among them) before an approval or GitOps request counts.
    let deciding = matches!(
        status.phase,
        None | Some(GrantPhase::Pending | GrantPhase::AwaitingApproval)
    ) && !deleting;
    let boundary = if deciding {
        let deciders: Vec<&str> = grant
            .spec
            .requested_by
            .as_deref()
            .into_iter()
            .chain(grant.spec.approval.as_ref().map(|a| a.approved_by.as_str()))
            .collect();
        ctx.boundaries
            .verdict(&(ns.clone(), grant.spec.policy_ref.name.clone()), &deciders)
    } else {
        Ok(None)
    };
    // Decided before an exposure closed: judged by what someone else could have written.
    // (A GitOps grant decides when it is created; an approver when the approval is written.)
    let decided_at = match grant.spec.approval {
        Some(_) => approval_written_at(grant),
        None => grant.metadata.creation_timestamp.as_ref().map(|t| t.0),
    };
    let decided_while_exposed = matches!(
        (&boundary, decided_at),
        (Ok(Some(closed)), Some(at)) if at < *closed
    );
    let approvals = verified
        .as_ref()
        .map(|_| ())
        .map_err(Clone::clone)
        .and(boundary.map(|_| ()));
    let state = GrantState {
        uid: &uid,
        spec: &grant.spec,
        phase: status.phase,
        expires_at: status.expires_at.as_ref().map(|t| t.0),
        ended_at: ended_at(&status),
        deleting,
        held: holder.is_some(),
        beneficiary,
        approvals,
        approved_unproven,
        requested_unproven,
        approved_before_policy,
        decided_while_exposed,
        approver,
        removed_in_tailscale: ctx.writers.drift(&ledger::writer_key(grant)).is_some(),
    };
    let now = Timestamp::now();
    match lifecycle::decide(&state, policy.as_ref().map(|p| &p.spec), now) {
        Step::Deny { reason, message } => {
            finish(
                grant,
                ctx,
                GrantPhase::Denied,
                reason.as_str(),
                &message,
                policy.as_ref(),
            )
            .await
        }
        Step::Wait {
            phase,
            reason,
            message,
            stalled,
        } => {
            publish_once(
                grant,
                ctx,
                phase,
                EventType::Normal,
                reason.as_str(),
                &message,
            )
            .await;
            let state = if stalled {
                KState::Stalled
            } else {
                KState::Failing
            };
            write(grant, ctx, phase, state, reason.as_str(), &message, |_| {}).await?;
            Ok(match reason {
                // Installing the admission policies is noticed within seconds.
                lifecycle::Reason::ApprovalUnverified => Action::requeue(admission::REFRESH),
                _ if stalled => Action::requeue(Duration::from_secs(30)),
                _ => Action::await_change(),
            }
            .into())
        }
        Step::Activate {
            access,
            duration,
            approved_by,
        } => {
            let Some(policy) = policy else {
                return Ok(Action::requeue(Duration::from_secs(1)).into());
            };
            let expires = duration.map(|d| lifecycle::expiry(now, d));
            activate(grant, ctx, &policy, access, expires, &approved_by).await
        }
        Step::Hold { until } => {
            if let Some(held) = &holder {
                reassert(grant, ctx, held, until).await;
            }
            Ok(until
                .map_or(Action::requeue(STANDING_RECHECK), requeue_at)
                .into())
        }
        Step::Revoke { phase, cause } => {
            // "Active but nothing held" is also what a cache that has not yet seen this
            // grant's own final status looks like (its ledger hold already ended): ask the API
            // server before ending it again, or the record of how it ended is overwritten.
            if cause == Revocation::Unproven && ended_meanwhile(grant, ctx).await? {
                return Ok(Action::await_change().into());
            }
            revoke(grant, ctx, holder, policy.as_ref(), phase, cause).await
        }
        Step::Retain { until } => Ok(requeue_at(until).into()),
        Step::Delete => {
            info!("retention period over; deleting the grant record");
            Api::<AccessGrant>::namespaced(ctx.client.clone(), &ns)
                .delete(&grant.name_any(), &DeleteParams::default())
                .await?;
            Ok(Action::await_change().into())
        }
        Step::Done => Ok(Action::await_change().into()),
    }
}

/// Whether the API server already shows `grant` in a final phase (its cached copy is older).
async fn ended_meanwhile(grant: &AccessGrant, ctx: &Context) -> Result<bool, GrantError> {
    let fresh =
        Api::<AccessGrant>::namespaced(ctx.client.clone(), &grant.namespace().unwrap_or_default())
            .get_opt(&grant.name_any())
            .await?;
    Ok(fresh
        .filter(|g| g.uid() == grant.uid())
        .and_then(|g| g.status.and_then(|s| s.phase))
        .is_some_and(|p| {
            matches!(
                p,
                GrantPhase::Expired | GrantPhase::Revoked | GrantPhase::Denied | GrantPhase::Failed
            )
        }))
}

/// Apply the access until `expires` (`None`: standing) and record how it was approved.
async fn activate(
    grant: &AccessGrant,
    ctx: &Context,
    policy: &AccessPolicy,
    access: PlannedAccess,
    expires: Option<Timestamp>,
    approved_by: &ApprovedBy,
) -> Result<Outcome, GrantError> {
    let ns = grant.namespace().unwrap_or_default();
    let name = &policy.spec.integration_ref.name;
    let integration = match ctx.cached_integration(&ns, name) {
        Some(i) => Some((*i).clone()),
        None => {
            Api::<TailscaleIntegration>::namespaced(ctx.client.clone(), &ns)
                .get_opt(name)
                .await?
        }
    };
    let Some(integration) = integration else {
        let message = format!(
            "TailscaleIntegration {ns}/{name} (of policy {}) does not exist",
            policy.name_any()
        );
        return failed(grant, ctx, &Failure::Blocked(message)).await;
    };
    // The verdict this activation rests on is asked again past the cache for who decided it:
    // nothing that could have been granted a moment ago counts on an answer from before.
    if approved_by.needs_proof() {
        let deciders: Vec<&str> = approved_by
            .identity()
            .into_iter()
            .chain(grant.spec.requested_by.as_deref())
            .collect();
        let directory = ctx.directory(&key_of(policy));
        let directory = directory.as_deref().and_then(|d| d.as_ref().ok());
        if let Err(unproven) = super::boundary::confirm(
            ctx,
            policy,
            directory,
            Some(&integration),
            super::boundary::Fresh::For(&deciders),
        )
        .await
        {
            let reason = lifecycle::Reason::ApprovalUnverified.as_str();
            write(
                grant,
                ctx,
                GrantPhase::AwaitingApproval,
                KState::Stalled,
                reason,
                unproven.message(),
                |_| {},
            )
            .await?;
            return Ok(Action::requeue(admission::REFRESH).into());
        }
    }
    let reach = match ledger::reach_integration(ctx, &integration).await {
        Ok(r) => r,
        Err(f) => return failed(grant, ctx, &f).await,
    };
    let login = grant.spec.user.clone();
    let user = match find_user(ctx, &reach, &login).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            let message = format!(
                "Tailscale has no user {login} in tailnet {}",
                integration.spec.tailnet
            );
            return finish(
                grant,
                ctx,
                GrantPhase::Failed,
                "UnknownUser",
                &message,
                Some(policy),
            )
            .await;
        }
        Err(e) => return failed(grant, ctx, &Failure::tailscale(&e, "users:read")).await,
    };
    let request = match &access {
        PlannedAccess::Member { group } => Request::PolicyFile(Want::Entries(Entries {
            members: [(group.clone(), login.clone())].into_iter().collect(),
            ..Default::default()
        })),
        PlannedAccess::SshRule { template } => Request::PolicyFile(Want::Entries(Entries {
            ssh: vec![grants::ssh_entry(template, &login)],
            ..Default::default()
        })),
        PlannedAccess::Rule { template } => Request::PolicyFile(Want::Rule {
            template: template.clone(),
            login: login.clone(),
        }),
        PlannedAccess::Role { role } => Request::Role(role.clone()),
        PlannedAccess::PostureAttribute { key, value } => Request::Posture {
            key: key.clone(),
            value: value.clone(),
        },
    };
    let started: Started = match ledger::start(ctx, &reach, grant, &user, expires, request).await {
        Ok(s) => s,
        Err(NotStarted::Role(refusal @ RoleRefusal::NotARaise { .. })) => {
            let message = refusal.message(&login, &access_role(&access));
            return finish(
                grant,
                ctx,
                GrantPhase::Denied,
                "RoleNotRaised",
                &message,
                Some(policy),
            )
            .await;
        }
        Err(NotStarted::Role(refusal @ RoleRefusal::Conflicts { .. })) => {
            let message = refusal.message(&login, &access_role(&access));
            publish_once(
                grant,
                ctx,
                GrantPhase::Pending,
                EventType::Normal,
                "WaitingForRoleGrant",
                &message,
            )
            .await;
            write(
                grant,
                ctx,
                GrantPhase::Pending,
                KState::Reconciling,
                "WaitingForRoleGrant",
                &message,
                |_| {},
            )
            .await?;
            return Ok(Action::requeue(ROLE_WAIT).into());
        }
        Err(NotStarted::NoDevices) => {
            let message = format!(
                "{login} has no devices in the tailnet to carry {}",
                access.describe()
            );
            return finish(
                grant,
                ctx,
                GrantPhase::Failed,
                "NoDevices",
                &message,
                Some(policy),
            )
            .await;
        }
        Err(NotStarted::Failed(f)) => return failed(grant, ctx, &f).await,
    };
    let applied = started
        .hold
        .as_ref()
        .map(|h| changes_of(h, started.already_held))
        .unwrap_or_default();
    let lasts = match started.expires {
        Some(at) => format!("until {at}"),
        None => "as standing access, until the grant is deleted or its person leaves".to_string(),
    };
    let message = format!(
        "{} granted to {login} {lasts}{}",
        access.describe(),
        started.note
    );
    info!(%message, "grant activated");
    let approval = approved_by.message(&policy.name_any());
    if matches!(approved_by, ApprovedBy::GitOps { .. }) {
        // Nobody approved it in the cluster: say who stands for the review, and where it was.
        ctx.publish(
            grant,
            EventType::Normal,
            approved_by.reason(),
            "Grant",
            approval.clone(),
        )
        .await;
    }
    ctx.publish(
        grant,
        EventType::Normal,
        "Activated",
        "Grant",
        message.clone(),
    )
    .await;
    let now = Timestamp::now();
    let approved = Raised {
        type_: APPROVED,
        reason: approved_by.reason(),
        message: &approval,
    };
    write_with(
        grant,
        ctx,
        GrantPhase::Active,
        KState::Ready,
        "Active",
        &message,
        &[approved],
        |s| {
            s.activated_at = Some(Time(now));
            s.expires_at = started.expires.map(Time);
            s.revoked_at = None;
            s.applied = applied.clone();
        },
    )
    .await?;
    Ok(started
        .expires
        .map_or(Action::requeue(STANDING_RECHECK), requeue_at)
        .into())
}

/// Ask for an active grant's policy-file entries again (after a restart, or if someone removed
/// them by hand); a steady state writes nothing.
async fn reassert(
    grant: &AccessGrant,
    ctx: &Context,
    (key, recorded): &(Key, GrantLedgerSpec),
    until: Option<Timestamp>,
) {
    let wanted = grant.uid().and_then(|uid| {
        ledger::seeded_entries(recorded, &key.0)
            .into_iter()
            .find(|((_, u), _, _)| *u == uid)
    });
    let Some((_, entries, _)) = wanted else {
        return;
    };
    let integration = (key.0.clone(), recorded.integration.clone());
    let reach = match ledger::reach(ctx, &integration, recorded).await {
        Ok(r) => r,
        Err(f) => {
            warn!(error = %f.message(), "cannot re-assert an active grant's policy-file entries");
            return;
        }
    };
    let writer = reach.writer(ctx);
    if let Err(e) = writer
        .want(ledger::writer_key(grant), Want::Entries(entries), until)
        .await
    {
        warn!(error = %e, "cannot re-assert an active grant's policy-file entries");
    }
}

/// End the grant's access (whatever holds it) and record how, and why, it ended.
async fn revoke(
    grant: &AccessGrant,
    ctx: &Context,
    holder: Option<(Key, GrantLedgerSpec)>,
    policy: Option<&AccessPolicy>,
    phase: GrantPhase,
    cause: Revocation,
) -> Result<Outcome, GrantError> {
    let current = grant.status.as_ref().and_then(|s| s.phase);
    let mut notes = Vec::new();
    // What a person removed, and who (read before ending clears it).
    if cause == Revocation::RemovedInTailscale {
        notes.extend(ctx.writers.drift(&ledger::writer_key(grant)));
    }
    let mut changed_by_person = false;
    if let Some((key, recorded)) = holder {
        let integration = (key.0.clone(), recorded.integration.clone());
        let result = match ledger::reach(ctx, &integration, &recorded).await {
            Ok(reach) => ledger::end(ctx, &reach, &key, &grant.uid().unwrap_or_default()).await,
            Err(f) => Err(f),
        };
        match result {
            Ok(ended) => {
                notes.extend(ended.notes);
                changed_by_person = ended.changed_by_person;
            }
            Err(f) => {
                let message = if f.stalled() {
                    format!(
                        "cannot end the access until TailscaleIntegration {}/{} is fixed (retrying meanwhile): {}",
                        integration.0,
                        integration.1,
                        f.message()
                    )
                } else {
                    format!("cannot end the access yet, retrying: {}", f.message())
                };
                let uid = grant.uid().unwrap_or_default();
                let reason =
                    ctx.blocked_revocations
                        .failed(&ctx.metrics, &integration, [uid.as_str()], &f);
                warn!(reason, %message);
                ctx.publish(grant, EventType::Warning, reason, "Revoke", message.clone())
                    .await;
                let keep = current.unwrap_or(GrantPhase::Pending);
                write(grant, ctx, keep, KState::Failing, reason, &message, |_| {}).await?;
                return Ok(Outcome {
                    action: Action::requeue(f.retry()),
                    holding: Some(message),
                });
            }
        }
    }
    // Nothing is held for the grant any more, whoever ended it.
    ctx.blocked_revocations
        .ended(&ctx.metrics, &grant.uid().unwrap_or_default());
    // A grant that never became active keeps the phase it ended in (Failed, Denied).
    let ended_in = match current {
        Some(
            p @ (GrantPhase::Failed
            | GrantPhase::Denied
            | GrantPhase::Expired
            | GrantPhase::Revoked),
        ) => p,
        _ => phase,
    };
    let what = if ended_in == GrantPhase::Expired {
        "Expired"
    } else {
        "Revoked"
    };
    let mut message = format!("access of {} {}", grant.spec.user, what.to_lowercase());
    if let Some(why) = cause.explain(&grant.spec) {
        message.push_str(&format!(": {why}"));
    }
    if !notes.is_empty() {
        message.push_str(&format!(" ({})", notes.join("; ")));
    }
    if current == Some(GrantPhase::Active)
        || current == Some(GrantPhase::Pending)
        || current.is_none()
    {
        // The Event and the condition name why it ended: Expired, Revoked, or the cause
        // (PersonOffboarded, PersonNotInDirectory, PolicyNotFound).
        let reason = cause.reason().as_str();
        info!(%message, reason, "grant ended");
        ctx.publish(grant, EventType::Normal, reason, "Revoke", message.clone())
            .await;
        if changed_by_person {
            ctx.publish(
                grant,
                EventType::Warning,
                CHANGED_MEANWHILE,
                "Revoke",
                message.clone(),
            )
            .await;
        }
        let now = Timestamp::now();
        let changed = Raised {
            type_: CHANGED_MEANWHILE,
            reason: CHANGED_MEANWHILE,
            message: &message,
        };
        let raised: &[Raised] = if changed_by_person {
            std::slice::from_ref(&changed)
        } else {
            &[]
        };
        write_with(
            grant,
            ctx,
            ended_in,
            KState::Ready,
            reason,
            &message,
            raised,
            |s| {
                s.revoked_at = Some(Time(now));
            },
        )
        .await?;
    }
    Ok(retention_after(grant, ended_in, policy).into())
}

/// A change that could not be made: terminal ones end the grant as Failed; the rest leave it
/// Pending (Stalled when a person must act), to resume without a new approval once fixed.
async fn failed(grant: &AccessGrant, ctx: &Context, f: &Failure) -> Result<Outcome, GrantError> {
    if f.terminal() {
        return finish(
            grant,
            ctx,
            GrantPhase::Failed,
            f.reason(),
            &f.message(),
            None,
        )
        .await;
    }
    let message = f.message();
    let event = if f.stalled() {
        EventType::Warning
    } else {
        EventType::Normal
    };
    publish_once(grant, ctx, GrantPhase::Pending, event, f.reason(), &message).await;
    let state = if f.stalled() {
        KState::Stalled
    } else {
        KState::Failing
    };
    write(
        grant,
        ctx,
        GrantPhase::Pending,
        state,
        f.reason(),
        &message,
        |_| {},
    )
    .await?;
    Ok(Action::requeue(f.retry()).into())
}

/// End a grant that will never be active (Denied or Failed): a Warning Event, a Stalled status
/// quoting why, and the retention timer.
async fn finish(
    grant: &AccessGrant,
    ctx: &Context,
    phase: GrantPhase,
    reason: &str,
    message: &str,
    policy: Option<&AccessPolicy>,
) -> Result<Outcome, GrantError> {
    publish_once(grant, ctx, phase, EventType::Warning, reason, message).await;
    write(grant, ctx, phase, KState::Stalled, reason, message, |_| {}).await?;
    Ok(retention_after(grant, phase, policy).into())
}

/// When to look again at a grant that just ended in `phase`: at the end of its retention.
fn retention_after(
    grant: &AccessGrant,
    phase: GrantPhase,
    policy: Option<&AccessPolicy>,
) -> Action {
    let state = GrantState::ended(&grant.spec, phase, Timestamp::now());
    match lifecycle::decide(&state, policy.map(|p| &p.spec), Timestamp::now()) {
        Step::Retain { until } => requeue_at(until),
        _ => Action::await_change(),
    }
}

async fn load_policy(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<Option<AccessPolicy>, kube::Error> {
    if let Some(p) = ctx.cached_policy(ns, name) {
        return Ok(Some((*p).clone()));
    }
    Api::<AccessPolicy>::namespaced(ctx.client.clone(), ns)
        .get_opt(name)
        .await
}

/// The ledger holding access for the grant, from the cache; for an Active grant the cache
/// does not show held, asked of the API server (the cache may lag behind a write just made, and
/// an Active grant that is not held is revoked).
async fn holder(
    ctx: &Context,
    grant: &AccessGrant,
    policy: Option<&AccessPolicy>,
) -> Result<Option<(Key, GrantLedgerSpec)>, kube::Error> {
    if let Some(found) = ledger::holder(ctx, grant) {
        return Ok(Some(found));
    }
    let active = grant.status.as_ref().and_then(|s| s.phase) == Some(GrantPhase::Active);
    match policy {
        Some(p) if active => ledger::holder_fresh(ctx, grant, &p.spec.integration_ref.name).await,
        _ => Ok(None),
    }
}

/// The beneficiary and the approving identity (an approver, or a GitOps requester) as the
/// policy's directory knows them: from the policy reconciler's last read, else read now.
async fn people(
    ctx: &Context,
    policy: &AccessPolicy,
    grant: &AccessGrant,
) -> (Beneficiary, Approver) {
    let cached = ctx.directory(&key_of(policy));
    let directory = match cached {
        Some(d) => d,
        None => std::sync::Arc::new(
            super::policy::load_directory(policy, ctx)
                .await
                .map(|(d, _)| d),
        ),
    };
    let login = &grant.spec.user;
    match directory.as_ref() {
        Err(why) => (
            Beneficiary::Unavailable(why.clone()),
            Approver::NotInDirectory,
        ),
        Ok(d) => {
            let beneficiary = Beneficiary::of(d, login);
            let approver = grants::approving_identity(&policy.spec, &grant.spec)
                .map_or(Approver::NotInDirectory, |by| Approver::of(d, by, login));
            (beneficiary, approver)
        }
    }
}

/// What the grant cache keeps of a grant's managed fields: only which writes set
/// `spec.approval`, and when (what [`approval_written_at`] reads); the rest is most of a small
/// object's size.
pub fn slim(grant: &mut AccessGrant) {
    let Some(fields) = grant.metadata.managed_fields.as_mut() else {
        return;
    };
    fields.retain(|m| {
        m.fields_v1
            .as_ref()
            .and_then(|f| f.0.get("f:spec"))
            .is_some_and(|spec| spec.get("f:approval").is_some())
    });
    for m in fields.iter_mut() {
        m.fields_v1 = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(
            serde_json::json!({"f:spec": {"f:approval": {}}}),
        ));
    }
}

/// When the approval was written, from the grant's managed fields (the latest write by the
/// field manager that owns `spec.approval`).
fn approval_written_at(grant: &AccessGrant) -> Option<Timestamp> {
    grant
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:spec"))
                .is_some_and(|spec| spec.get("f:approval").is_some())
        })
        .filter_map(|m| m.time.as_ref().map(|t| t.0))
        .max()
}

/// When the grant reached its final phase: when it was revoked, else when `Ready` last changed.
fn ended_at(status: &AccessGrantStatus) -> Option<Timestamp> {
    status
        .revoked_at
        .as_ref()
        .map(|t| t.0)
        .or_else(|| find_condition(&status.conditions, "Ready").map(|c| c.last_transition_time.0))
}

fn access_role(access: &PlannedAccess) -> String {
    match access {
        PlannedAccess::Role { role } => role.clone(),
        other => other.describe(),
    }
}

/// What the grant changed, for its status (the ledger is the record that ends it).
fn changes_of(hold: &Hold, already_held: bool) -> Vec<AppliedChange> {
    let mut out = Vec::new();
    if let Some(role) = &hold.role {
        out.push(AppliedChange {
            kind: ChangeKind::Role,
            target: hold.user_id.clone(),
            value: Some(role.clone()),
            previous: None,
            owned: !already_held,
        });
    }
    if let Some(e) = &hold.entries {
        for m in &e.members {
            out.push(AppliedChange {
                kind: ChangeKind::GroupMembership,
                target: m.group.clone(),
                value: Some(m.login.clone()),
                previous: None,
                owned: !already_held,
            });
        }
        for (section, values, kind) in [
            ("grants", &e.grants, ChangeKind::Rule),
            ("acls", &e.acls, ChangeKind::Rule),
            ("ssh", &e.ssh, ChangeKind::SshRule),
        ] {
            for v in values {
                out.push(AppliedChange {
                    kind,
                    target: section.to_string(),
                    value: Some(v.clone()),
                    previous: None,
                    owned: true,
                });
            }
        }
    }
    if let Some(p) = &hold.posture {
        for d in &p.devices {
            out.push(AppliedChange {
                kind: ChangeKind::PostureAttribute,
                target: d.clone(),
                value: Some(format!("{}={}", p.key, p.value)),
                previous: None,
                owned: true,
            });
        }
    }
    out
}

/// Write the grant's status: phase, kstatus conditions, message and whatever `edit` adds.
async fn write(
    grant: &AccessGrant,
    ctx: &Context,
    phase: GrantPhase,
    state: KState,
    reason: &str,
    message: &str,
    edit: impl FnOnce(&mut AccessGrantStatus),
) -> Result<(), kube::Error> {
    write_with(grant, ctx, phase, state, reason, message, &[], edit).await
}

/// A condition a status write raises besides the kstatus ones; kept from then on.
struct Raised<'a> {
    type_: &'static str,
    reason: &'a str,
    message: &'a str,
}

/// [`write`], also raising `raised` conditions. Conditions raised before (`Approved`,
/// `RoleChangedMeanwhile`) are kept.
#[allow(clippy::too_many_arguments)]
async fn write_with(
    grant: &AccessGrant,
    ctx: &Context,
    phase: GrantPhase,
    state: KState,
    reason: &str,
    message: &str,
    raised: &[Raised<'_>],
    edit: impl FnOnce(&mut AccessGrantStatus),
) -> Result<(), kube::Error> {
    let previous = grant.status.clone().unwrap_or_default();
    let mut status = AccessGrantStatus {
        observed_generation: grant.metadata.generation,
        phase: Some(phase),
        message: Some(message.to_string()),
        ..previous.clone()
    };
    edit(&mut status);
    let mut conditions = Conditions::new(
        &previous.conditions,
        grant.metadata.generation,
        Timestamp::now(),
    );
    conditions.set_kstatus(state, reason, message);
    for c in &previous.conditions {
        if KEPT.contains(&c.type_.as_str()) {
            conditions.set(
                &c.type_,
                ConditionStatus::True,
                &c.reason,
                c.message.clone(),
            );
        }
    }
    for r in raised {
        conditions.set(r.type_, ConditionStatus::True, r.reason, r.message);
    }
    status.conditions = conditions.into_vec();
    let api: Api<AccessGrant> =
        Api::namespaced(ctx.client.clone(), &grant.namespace().unwrap_or_default());
    apply_status(&api, grant, grant.status.as_ref(), &status).await?;
    // People hear of the new phase; this only queues (a sender of its own posts).
    notify::grant_changed(ctx, grant, previous.phase, &status);
    Ok(())
}

/// The condition (and Event) raised when a person changed, during the grant, what it had set
/// (a role, or a posture attribute).
pub const CHANGED_MEANWHILE: &str = "RoleChangedMeanwhile";

/// The condition saying how an activated grant was approved: reason `ApprovedInGitOps`,
/// `ApprovedByApprover` or `ApprovalNotRequired` ([`ApprovedBy`]), a message naming who.
pub const APPROVED: &str = "Approved";

/// Conditions that, once raised, stay on the grant.
const KEPT: [&str; 2] = [CHANGED_MEANWHILE, APPROVED];

/// Publish an Event when the grant enters `phase` or a new reason (not on every reconcile).
async fn publish_once(
    grant: &AccessGrant,
    ctx: &Context,
    phase: GrantPhase,
    type_: EventType,
    reason: &str,
    message: &str,
) {
    let current = grant.status.as_ref().and_then(|s| s.phase);
    let same_reason = grant
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, "Ready"))
        .is_some_and(|c| c.reason == reason);
    if current != Some(phase) || !same_reason {
        ctx.publish(grant, type_, reason, "Grant", message.to_string())
            .await;
    }
}

/// The Tailscale user a grant names: from the last inventory sync when it is there (a burst of
/// grants then costs no user lists), else asked of Tailscale (a user who just signed in).
async fn find_user(
    ctx: &Context,
    reach: &Reach,
    login: &str,
) -> Result<Option<tailscale::User>, tailscale::Error> {
    if let Some(inventory) = ctx.inventory(&reach.integration) {
        if let Some(u) = inventory
            .users
            .iter()
            .find(|u| u.login_name.eq_ignore_ascii_case(login))
        {
            return Ok(Some(u.clone()));
        }
    }
    let users = reach.client.list_users(UserType::All).await?;
    Ok(users
        .into_iter()
        .find(|u| u.login_name.eq_ignore_ascii_case(login)))
}

/// Requeue for an instant: the reconciler wakes exactly at expiry.
fn requeue_at(at: Timestamp) -> Action {
    let wait = at.duration_since(Timestamp::now());
    Action::requeue(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_only_when_the_approval_was_written() {
        let mut grant: AccessGrant = serde_json::from_value(serde_json::json!({
            "apiVersion": "tailkeeper.io/v1alpha1", "kind": "AccessGrant",
            "metadata": {"name": "g", "managedFields": [
                {"manager": "kubectl-create", "operation": "Update", "time": "2026-11-30T10:00:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:user": {}, "f:access": {"f:group": {}}}}},
                {"manager": "kubectl-patch", "operation": "Update", "time": "2026-11-30T10:05:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:approval": {"f:approvedBy": {}, "f:grantUID": {}}}}},
                {"manager": "tailkeeper", "operation": "Apply", "subresource": "status", "time": "2026-11-30T10:06:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:phase": {}}}}
            ]},
            "spec": {"policyRef": {"name": "p"}, "user": "a@b", "access": {"group": "group:x"},
                     "duration": "1h", "reason": "r"}
        }))
        .expect("grant");
        let before = approval_written_at(&grant);
        assert_eq!(
            before.map(|t| t.to_string()).as_deref(),
            Some("2026-11-30T10:05:00Z")
        );
        slim(&mut grant);
        assert_eq!(approval_written_at(&grant), before);
        assert_eq!(grant.metadata.managed_fields.map(|m| m.len()), Some(1));
    }
}
