//! The AccessGrant reconciler: judge a grant against its policy, apply it to Tailscale once
//! approved, and take it away the moment it lapses — also across restarts, because the expiry
//! lives in the grant's status. Deleting an active grant revokes it first (finalizer).
//!
//! Policy-file access goes through the tailnet's [`PolicyWriter`](super::writer::PolicyWriter);
//! roles and posture attributes are changed here directly.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::ResourceExt;
use tracing::{info, instrument, warn};

use super::connection::connect;
use super::context::{key_of, Context};
use super::status::apply_status;
use super::writer::{Entries, Want, WriteError};
use super::Error;
use crate::api::{
    find_condition, AccessGrant, AccessGrantStatus, AccessPolicy, AppliedChange, ChangeKind,
    ConditionStatus, Conditions, GrantPhase, KState, TailscaleIntegration,
};
use crate::duration;
use crate::grants::{self, PlannedAccess, Resolution};
use crate::tailscale::{self, UserType};

/// The finalizer that makes deletion revoke first.
pub const FINALIZER: &str = "tailkeeper.io/revoke";

#[instrument(skip_all, fields(namespace = %obj.namespace().unwrap_or_default(), grant = %obj.name_any()))]
pub async fn reconcile(obj: Arc<AccessGrant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<AccessGrant> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Finalizer::Apply(g) => apply(&g, &ctx).await,
            Finalizer::Cleanup(g) => cleanup(&g, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// The grant, its policy and a connection to the policy's tailnet.
struct Scope {
    policy: AccessPolicy,
    integration: TailscaleIntegration,
    client: tailscale::Client,
    fingerprint: u64,
}

/// Why the scope of a grant is unavailable, as a condition reason and message.
struct Blocked {
    reason: &'static str,
    message: String,
    /// Whether the user must fix something (Stalled) or it may resolve by itself.
    stalled: bool,
}

/// An object from a controller cache, else read from the API server.
async fn cached_or_get<K>(
    cached: Option<Arc<K>>,
    api: Api<K>,
    name: &str,
    missing: impl FnOnce() -> Blocked,
) -> Result<K, Blocked>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if let Some(obj) = cached {
        return Ok((*obj).clone());
    }
    api.get_opt(name)
        .await
        .map_err(|e| Blocked {
            reason: "KubernetesAPI",
            message: e.to_string(),
            stalled: false,
        })?
        .ok_or_else(missing)
}

async fn scope(grant: &AccessGrant, ctx: &Context) -> Result<Scope, Blocked> {
    let ns = grant.namespace().unwrap_or_default();
    let policy_name = &grant.spec.policy_ref.name;
    // The controllers' caches first: a burst of grants must not cost three reads each.
    let policy = cached_or_get(
        ctx.cached_policy(&ns, policy_name),
        Api::namespaced(ctx.client.clone(), &ns),
        policy_name,
        || Blocked {
            reason: "PolicyNotFound",
            message: format!("AccessPolicy {ns}/{policy_name} does not exist"),
            stalled: true,
        },
    )
    .await?;
    let integration_name = &policy.spec.integration_ref.name;
    let integration: TailscaleIntegration = cached_or_get(
        ctx.cached_integration(&ns, integration_name),
        Api::namespaced(ctx.client.clone(), &ns),
        integration_name,
        || Blocked {
            reason: "IntegrationNotFound",
            message: format!(
                "TailscaleIntegration {ns}/{integration_name} (of policy {policy_name}) does not exist"
            ),
            stalled: true,
        },
    )
    .await?;
    // The client the integration's last sync built (its reconciler rebuilds it when the spec or
    // the Secret change); connect afresh only when there is none yet.
    if let Some((fingerprint, client)) = ctx.cached_client(&key_of(&integration)) {
        return Ok(Scope {
            policy,
            integration,
            client,
            fingerprint,
        });
    }
    let connection = connect(&integration, ctx).await.map_err(|e| Blocked {
        reason: e.reason,
        message: format!(
            "cannot connect to TailscaleIntegration {ns}/{integration_name}: {}",
            e.message
        ),
        stalled: true,
    })?;
    Ok(Scope {
        policy,
        integration,
        client: connection.client,
        fingerprint: connection.fingerprint,
    })
}

async fn apply(grant: &AccessGrant, ctx: &Context) -> Result<Action, kube::Error> {
    let previous = grant.status.clone().unwrap_or_default();
    match previous.phase {
        Some(GrantPhase::Active) => active(grant, ctx).await,
        Some(
            GrantPhase::Expired | GrantPhase::Revoked | GrantPhase::Denied | GrantPhase::Failed,
        ) => {
            // The phase ended when the grant was revoked, or when it was denied or failed.
            let status = grant.status.clone().unwrap_or_default();
            let ended = status
                .revoked_at
                .map(|t| t.0)
                .or_else(|| {
                    find_condition(&status.conditions, "Ready").map(|c| c.last_transition_time.0)
                })
                .unwrap_or_else(Timestamp::now);
            retention(grant, ctx, ended).await
        }
        None | Some(GrantPhase::Pending | GrantPhase::AwaitingApproval) => {
            pending(grant, ctx).await
        }
    }
}

/// A grant not yet active: judge it, and activate it once approved.
async fn pending(grant: &AccessGrant, ctx: &Context) -> Result<Action, kube::Error> {
    let scope = match scope(grant, ctx).await {
        Ok(s) => s,
        Err(b) => {
            let state = if b.stalled {
                KState::Stalled
            } else {
                KState::Failing
            };
            write(
                grant,
                ctx,
                GrantPhase::Pending,
                state,
                b.reason,
                &b.message,
                |_| {},
            )
            .await?;
            return Ok(Action::requeue(Duration::from_secs(if b.stalled {
                30
            } else {
                5
            })));
        }
    };
    match grants::resolve(&scope.policy.spec, &grant.spec) {
        Resolution::Denied(message) => {
            end(grant, ctx, GrantPhase::Denied, "Denied", &message).await
        }
        Resolution::AwaitingApproval {
            access, approvers, ..
        } => {
            let message = format!(
                "{} for {} awaits approval by {approvers}",
                access.describe(),
                grant.spec.user
            );
            publish_once(
                grant,
                ctx,
                GrantPhase::AwaitingApproval,
                EventType::Normal,
                "AwaitingApproval",
                &message,
            )
            .await;
            write(
                grant,
                ctx,
                GrantPhase::AwaitingApproval,
                KState::Failing,
                "AwaitingApproval",
                &message,
                |_| {},
            )
            .await?;
            Ok(Action::await_change())
        }
        Resolution::Approved { access, duration } => {
            activate(grant, ctx, &scope, access, duration).await
        }
    }
}

async fn activate(
    grant: &AccessGrant,
    ctx: &Context,
    scope: &Scope,
    access: PlannedAccess,
    length: Duration,
) -> Result<Action, kube::Error> {
    let login = grant.spec.user.clone();
    // The user must exist in the tailnet: fail clearly rather than grant to nobody.
    let user = match find_user(ctx, scope, &login).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            let message = format!(
                "Tailscale has no user {login} in tailnet {}",
                scope.integration.spec.tailnet
            );
            return end(grant, ctx, GrantPhase::Failed, "UnknownUser", &message).await;
        }
        Err(e) => return transient(grant, ctx, &e.to_string()).await,
    };
    let now = Timestamp::now();
    // Kubernetes stores times to the second: round the expiry up to one, so the instant recorded
    // in status is exactly the one enforced (before and after a restart) and no grant lasts
    // less than its duration.
    let expires =
        whole_second_up(now + SignedDuration::try_from(length).unwrap_or(SignedDuration::MAX));
    let applied: Vec<AppliedChange> = match &access {
        PlannedAccess::Member { .. }
        | PlannedAccess::Rule { .. }
        | PlannedAccess::SshRule { .. } => {
            let want = match &access {
                PlannedAccess::Member { group } => Want::Entries(Entries {
                    members: vec![(group.clone(), login.clone())],
                    ..Default::default()
                }),
                PlannedAccess::SshRule { template } => Want::Entries(Entries {
                    ssh: vec![grants::ssh_entry(template, &login)],
                    ..Default::default()
                }),
                PlannedAccess::Rule { template } => Want::Rule {
                    template: template.clone(),
                    login: login.clone(),
                },
                _ => unreachable!("matched above"),
            };
            let writer = ctx.writers.get(
                &ctx.client,
                &key_of(&scope.integration),
                scope.fingerprint,
                &scope.client,
            );
            match writer.want(key_of(grant), want, Some(expires)).await {
                Ok(written) => entries_applied(&written.entries, &written.already_present),
                Err(WriteError::Rejected(message)) => {
                    let message = format!("Tailscale refused {}: {message}", access.describe());
                    return end(
                        grant,
                        ctx,
                        GrantPhase::Failed,
                        "RejectedByTailscale",
                        &message,
                    )
                    .await;
                }
                Err(e @ WriteError::Unparsable(_)) => {
                    let message = e.to_string();
                    write(
                        grant,
                        ctx,
                        GrantPhase::Pending,
                        KState::Stalled,
                        "PolicyFileUnparsable",
                        &message,
                        |_| {},
                    )
                    .await?;
                    return Ok(Action::requeue(Duration::from_secs(30)));
                }
                Err(e) => return transient(grant, ctx, &e.to_string()).await,
            }
        }
        PlannedAccess::Role { role } => {
            // The role to restore must be the current one, not the last sync's.
            let user = match scope.client.get_user(&user.id).await {
                Ok(u) => u,
                Err(e) => return tailscale_failure(grant, ctx, &e).await,
            };
            // Record the role to restore before changing it, so a crash in between loses nothing.
            let recorded = grant
                .status
                .iter()
                .flat_map(|s| s.applied.iter())
                .find(|c| c.kind == ChangeKind::Role)
                .and_then(|c| c.previous.clone());
            let previous = match recorded {
                Some(p) => p,
                None => inherited_previous_role(grant, ctx, role)
                    .await?
                    .unwrap_or_else(|| user.role.clone()),
            };
            let change = AppliedChange {
                kind: ChangeKind::Role,
                target: user.id.clone(),
                value: Some(role.clone()),
                previous: Some(previous.clone()),
                owned: !previous.eq_ignore_ascii_case(role),
            };
            let record = vec![change.clone()];
            write(
                grant,
                ctx,
                GrantPhase::Pending,
                KState::Reconciling,
                "Activating",
                "raising the role",
                |s| s.applied = record.clone(),
            )
            .await?;
            if !user.role.eq_ignore_ascii_case(role) {
                if let Err(e) = scope.client.set_user_role(&user.id, role).await {
                    return tailscale_failure(grant, ctx, &e).await;
                }
            }
            vec![change]
        }
        PlannedAccess::PostureAttribute { key, value } => {
            let devices = match scope.client.list_devices().await {
                Ok(d) => d,
                Err(e) => return tailscale_failure(grant, ctx, &e).await,
            };
            let mine: Vec<_> = devices
                .iter()
                .filter(|d| d.user.eq_ignore_ascii_case(&login))
                .collect();
            if mine.is_empty() {
                let message = format!(
                    "{login} has no devices in the tailnet to carry posture attribute {key}"
                );
                return end(grant, ctx, GrantPhase::Failed, "NoDevices", &message).await;
            }
            // Tailscale removes the attribute itself at the latest expiry of the user's active
            // grants of it, so access ends on time even if the operator is down.
            let until = latest_expiry(grant, ctx, key)
                .await?
                .map_or(expires, |t| t.max(expires));
            let mut changes = Vec::new();
            for d in mine {
                let id = if d.id.is_empty() { &d.node_id } else { &d.id };
                let comment = format!(
                    "AccessGrant {}/{}",
                    grant.namespace().unwrap_or_default(),
                    grant.name_any()
                );
                if let Err(e) = scope
                    .client
                    .set_posture_attribute(id, key, value, Some(until), &comment)
                    .await
                {
                    return tailscale_failure(grant, ctx, &e).await;
                }
                changes.push(AppliedChange {
                    kind: ChangeKind::PostureAttribute,
                    target: id.clone(),
                    value: Some(format!("{key}={value}")),
                    previous: None,
                    owned: true,
                });
            }
            changes
        }
    };
    let message = format!(
        "{} granted to {login} until {expires}{}",
        access.describe(),
        if applied.iter().any(|c| !c.owned) {
            " (already held; it will be kept at expiry)"
        } else {
            ""
        }
    );
    info!(%message, "grant activated");
    ctx.publish(
        grant,
        EventType::Normal,
        "Activated",
        "Grant",
        message.clone(),
    )
    .await;
    write(
        grant,
        ctx,
        GrantPhase::Active,
        KState::Ready,
        "Active",
        &message,
        |s| {
            s.activated_at = Some(Time(now));
            s.expires_at = Some(Time(expires));
            s.applied = applied.clone();
        },
    )
    .await?;
    Ok(requeue_at(expires))
}

/// An active grant: keep it in force until its expiry, then revoke it.
async fn active(grant: &AccessGrant, ctx: &Context) -> Result<Action, kube::Error> {
    let Some(Time(expires)) = grant.status.as_ref().and_then(|s| s.expires_at.clone()) else {
        return pending(grant, ctx).await;
    };
    if Timestamp::now() >= expires {
        return revoke(grant, ctx, GrantPhase::Expired).await;
    }
    // Re-assert policy-file entries (after a restart, or if someone removed them by hand).
    let entries = Entries::from_applied(grant);
    if !entries_empty(&entries) {
        if let Ok(scope) = scope(grant, ctx).await {
            let writer = ctx.writers.get(
                &ctx.client,
                &key_of(&scope.integration),
                scope.fingerprint,
                &scope.client,
            );
            if let Err(e) = writer
                .want(key_of(grant), Want::Entries(entries), Some(expires))
                .await
            {
                warn!(error = %e, "cannot re-assert an active grant's policy-file entries");
            }
        }
    }
    Ok(requeue_at(expires))
}

/// Take the access away and record why.
async fn revoke(
    grant: &AccessGrant,
    ctx: &Context,
    phase: GrantPhase,
) -> Result<Action, kube::Error> {
    let scope = match scope(grant, ctx).await {
        Ok(s) => s,
        Err(b) => {
            // Without a connection nothing can be taken away: keep trying, loudly.
            let message = format!("cannot revoke yet: {}", b.message);
            warn!(%message);
            ctx.publish(
                grant,
                EventType::Warning,
                "RevocationBlocked",
                "Revoke",
                message.clone(),
            )
            .await;
            write(
                grant,
                ctx,
                GrantPhase::Active,
                KState::Failing,
                "RevocationBlocked",
                &message,
                |_| {},
            )
            .await?;
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
    };
    let applied = grant
        .status
        .as_ref()
        .map(|s| s.applied.clone())
        .unwrap_or_default();
    let mut notes = Vec::new();
    if !entries_empty(&Entries::from_applied(grant)) {
        let writer = ctx.writers.get(
            &ctx.client,
            &key_of(&scope.integration),
            scope.fingerprint,
            &scope.client,
        );
        if let Err(e) = writer.drop_grant(key_of(grant)).await {
            return revocation_failed(grant, ctx, &e.to_string()).await;
        }
    }
    for change in &applied {
        match change.kind {
            ChangeKind::Role => {
                let (Some(granted), Some(previous)) = (&change.value, &change.previous) else {
                    continue;
                };
                if !change.owned {
                    continue;
                }
                if other_active_grant(grant, ctx, |c| {
                    c.kind == ChangeKind::Role
                        && c.target == change.target
                        && c.value.as_deref() == Some(granted.as_str())
                })
                .await?
                {
                    notes.push(format!(
                        "role {granted} kept: another active grant holds it"
                    ));
                    continue;
                }
                match scope.client.get_user(&change.target).await {
                    Ok(u) if u.role.eq_ignore_ascii_case(granted) => {
                        if let Err(e) = scope.client.set_user_role(&change.target, previous).await {
                            return revocation_failed(grant, ctx, &e.to_string()).await;
                        }
                        notes.push(format!("role set back to {previous}"));
                    }
                    Ok(u) => {
                        let message = format!(
                            "role of {} was changed to {} while the grant was active; left as it is (it would have been set back to {previous})",
                            grant.spec.user, u.role
                        );
                        ctx.publish(
                            grant,
                            EventType::Warning,
                            "RoleChangedMeanwhile",
                            "Revoke",
                            message.clone(),
                        )
                        .await;
                        notes.push(message);
                    }
                    Err(e) if e.status() == Some(404) => {
                        notes.push("the user no longer exists".to_string())
                    }
                    Err(e) => return revocation_failed(grant, ctx, &e.to_string()).await,
                }
            }
            ChangeKind::PostureAttribute => {
                let key = change
                    .value
                    .as_deref()
                    .and_then(|v| v.split_once('='))
                    .map(|(k, _)| k.to_string())
                    .unwrap_or_default();
                if other_active_grant(grant, ctx, |c| {
                    c.kind == ChangeKind::PostureAttribute
                        && c.target == change.target
                        && c.value == change.value
                })
                .await?
                {
                    continue;
                }
                if let Err(e) = scope
                    .client
                    .delete_posture_attribute(&change.target, &key)
                    .await
                {
                    if e.status() != Some(404) {
                        return revocation_failed(grant, ctx, &e.to_string()).await;
                    }
                }
            }
            _ => {}
        }
    }
    let what = if phase == GrantPhase::Expired {
        "expired"
    } else {
        "revoked"
    };
    let mut message = format!("access of {} {what}", grant.spec.user);
    if !notes.is_empty() {
        message.push_str(&format!(" ({})", notes.join("; ")));
    }
    info!(%message, "grant ended");
    ctx.publish(
        grant,
        EventType::Normal,
        if phase == GrantPhase::Expired {
            "Expired"
        } else {
            "Revoked"
        },
        "Revoke",
        message.clone(),
    )
    .await;
    let role_kept = notes.iter().any(|n| n.contains("left as it is"));
    write(
        grant,
        ctx,
        phase,
        KState::Ready,
        if phase == GrantPhase::Expired {
            "Expired"
        } else {
            "Revoked"
        },
        &message,
        |s| {
            s.revoked_at = Some(Time(Timestamp::now()));
        },
    )
    .await?;
    if role_kept {
        set_condition(grant, ctx, "RoleChangedMeanwhile", &message).await?;
    }
    retention(grant, ctx, Timestamp::now()).await
}

/// Deletion: revoke an active grant first; only then may the object go.
async fn cleanup(grant: &AccessGrant, ctx: &Context) -> Result<Action, kube::Error> {
    let phase = grant.status.as_ref().and_then(|s| s.phase);
    let has_changes = grant.status.as_ref().is_some_and(|s| !s.applied.is_empty());
    if phase == Some(GrantPhase::Active) || (phase == Some(GrantPhase::Pending) && has_changes) {
        revoke(grant, ctx, GrantPhase::Revoked).await?;
        // Refuse to drop the finalizer until the revocation is recorded.
        let api: Api<AccessGrant> =
            Api::namespaced(ctx.client.clone(), &grant.namespace().unwrap_or_default());
        let now = api.get(&grant.name_any()).await?;
        if now.status.as_ref().and_then(|s| s.phase) != Some(GrantPhase::Revoked) {
            return Err(kube::Error::Service(
                "revocation not complete; retrying".into(),
            ));
        }
    }
    Ok(Action::await_change())
}

/// Remove terminal grants after the policy's retention period, if it sets one.
/// `ended` is when the grant reached its final phase: the status just written, not the one the
/// reconcile started from.
async fn retention(
    grant: &AccessGrant,
    ctx: &Context,
    ended: Timestamp,
) -> Result<Action, kube::Error> {
    let ns = grant.namespace().unwrap_or_default();
    let policy = Api::<AccessPolicy>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&grant.spec.policy_ref.name)
        .await?;
    let Some(keep) = policy
        .and_then(|p| p.spec.grant_retention.clone())
        .and_then(|r| duration::parse(&r).ok())
    else {
        return Ok(Action::await_change());
    };
    let until = ended + SignedDuration::try_from(keep).unwrap_or(SignedDuration::MAX);
    if Timestamp::now() >= until {
        info!("retention period over; deleting the grant record");
        Api::<AccessGrant>::namespaced(ctx.client.clone(), &ns)
            .delete(&grant.name_any(), &DeleteParams::default())
            .await?;
        return Ok(Action::await_change());
    }
    Ok(requeue_at(until))
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
        if c.type_ == "RoleChangedMeanwhile" {
            conditions.set(
                &c.type_,
                ConditionStatus::True,
                &c.reason,
                c.message.clone(),
            );
        }
    }
    status.conditions = conditions.into_vec();
    let api: Api<AccessGrant> =
        Api::namespaced(ctx.client.clone(), &grant.namespace().unwrap_or_default());
    apply_status(&api, grant, grant.status.as_ref(), &status).await
}

async fn set_condition(
    grant: &AccessGrant,
    ctx: &Context,
    type_: &str,
    message: &str,
) -> Result<(), kube::Error> {
    let api: Api<AccessGrant> =
        Api::namespaced(ctx.client.clone(), &grant.namespace().unwrap_or_default());
    let fresh = api.get(&grant.name_any()).await?;
    let mut status = fresh.status.clone().unwrap_or_default();
    let mut conditions = Conditions::new(
        &status.conditions,
        fresh.metadata.generation,
        Timestamp::now(),
    );
    for c in &status.conditions {
        conditions.set(
            &c.type_,
            ConditionStatus::from_bool(c.status == "True"),
            &c.reason,
            c.message.clone(),
        );
    }
    conditions.set(type_, ConditionStatus::True, type_, message.to_string());
    status.conditions = conditions.into_vec();
    apply_status(&api, &fresh, fresh.status.as_ref(), &status).await
}

/// A failure Tailscale may recover from: stay in the phase, retry soon.
async fn transient(
    grant: &AccessGrant,
    ctx: &Context,
    message: &str,
) -> Result<Action, kube::Error> {
    let phase = grant
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or(GrantPhase::Pending);
    let phase = if phase == GrantPhase::AwaitingApproval {
        GrantPhase::Pending
    } else {
        phase
    };
    write(
        grant,
        ctx,
        phase,
        KState::Failing,
        "TailscaleUnavailable",
        message,
        |_| {},
    )
    .await?;
    Ok(Action::requeue(Duration::from_secs(5)))
}

/// A Tailscale error while activating: refusals (4xx) fail the grant quoting Tailscale; the rest
/// are retried.
async fn tailscale_failure(
    grant: &AccessGrant,
    ctx: &Context,
    e: &tailscale::Error,
) -> Result<Action, kube::Error> {
    if e.is_transient() {
        return transient(grant, ctx, &e.to_string()).await;
    }
    let message = format!("Tailscale refused the change: {e}");
    end(
        grant,
        ctx,
        GrantPhase::Failed,
        "RejectedByTailscale",
        &message,
    )
    .await
}

/// End a grant that will never be active (Denied or Failed): a Warning Event, a Stalled status
/// quoting why, and the retention timer.
async fn end(
    grant: &AccessGrant,
    ctx: &Context,
    phase: GrantPhase,
    reason: &str,
    message: &str,
) -> Result<Action, kube::Error> {
    publish_once(grant, ctx, phase, EventType::Warning, reason, message).await;
    write(grant, ctx, phase, KState::Stalled, reason, message, |_| {}).await?;
    retention(grant, ctx, Timestamp::now()).await
}

async fn revocation_failed(
    grant: &AccessGrant,
    ctx: &Context,
    message: &str,
) -> Result<Action, kube::Error> {
    let message = format!("revocation failed, retrying: {message}");
    warn!(%message);
    ctx.publish(
        grant,
        EventType::Warning,
        "RevocationFailed",
        "Revoke",
        message.clone(),
    )
    .await;
    write(
        grant,
        ctx,
        GrantPhase::Active,
        KState::Failing,
        "RevocationFailed",
        &message,
        |_| {},
    )
    .await?;
    Ok(Action::requeue(Duration::from_secs(2)))
}

/// Publish an Event when the grant enters `phase` (not on every reconcile in it).
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
    scope: &Scope,
    login: &str,
) -> Result<Option<tailscale::User>, tailscale::Error> {
    if let Some(inventory) = ctx.inventory(&key_of(&scope.integration)) {
        if let Some(u) = inventory
            .users
            .iter()
            .find(|u| u.login_name.eq_ignore_ascii_case(login))
        {
            return Ok(Some(u.clone()));
        }
    }
    let users = scope.client.list_users(UserType::All).await?;
    Ok(users
        .into_iter()
        .find(|u| u.login_name.eq_ignore_ascii_case(login)))
}

/// Other active grants in the namespace (not this one) for the same user.
async fn others(grant: &AccessGrant, ctx: &Context) -> Result<Vec<AccessGrant>, kube::Error> {
    let ns = grant.namespace().unwrap_or_default();
    let now = Timestamp::now();
    let list = Api::<AccessGrant>::namespaced(ctx.client.clone(), &ns)
        .list(&Default::default())
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|g| g.name_any() != grant.name_any())
        .filter(|g| g.spec.user.eq_ignore_ascii_case(&grant.spec.user))
        .filter(|g| {
            g.status.as_ref().is_some_and(|s| {
                s.phase == Some(GrantPhase::Active)
                    && s.expires_at.as_ref().is_some_and(|t| t.0 > now)
            })
        })
        .collect())
}

async fn other_active_grant(
    grant: &AccessGrant,
    ctx: &Context,
    matches: impl Fn(&AppliedChange) -> bool,
) -> Result<bool, kube::Error> {
    Ok(others(grant, ctx)
        .await?
        .iter()
        .any(|g| g.status.iter().flat_map(|s| s.applied.iter()).any(&matches)))
}

/// When another active grant already raised the user to `role`, the role to restore is the one
/// that grant recorded, not the raised one.
async fn inherited_previous_role(
    grant: &AccessGrant,
    ctx: &Context,
    role: &str,
) -> Result<Option<String>, kube::Error> {
    Ok(others(grant, ctx).await?.iter().find_map(|g| {
        g.status
            .iter()
            .flat_map(|s| s.applied.iter())
            .find(|c| c.kind == ChangeKind::Role && c.value.as_deref() == Some(role))
            .and_then(|c| c.previous.clone())
    }))
}

/// The latest expiry among the user's other active grants of the same posture attribute.
async fn latest_expiry(
    grant: &AccessGrant,
    ctx: &Context,
    key: &str,
) -> Result<Option<Timestamp>, kube::Error> {
    Ok(others(grant, ctx)
        .await?
        .iter()
        .filter(|g| {
            g.status.iter().flat_map(|s| s.applied.iter()).any(|c| {
                c.kind == ChangeKind::PostureAttribute
                    && c.value
                        .as_deref()
                        .is_some_and(|v| v.starts_with(&format!("{key}=")))
            })
        })
        .filter_map(|g| g.status.as_ref()?.expires_at.as_ref().map(|t| t.0))
        .max())
}

fn entries_applied(entries: &Entries, already_present: &[(String, String)]) -> Vec<AppliedChange> {
    let mut out = Vec::new();
    for (group, login) in &entries.members {
        let owned = !already_present
            .iter()
            .any(|(g, l)| g == group && l.eq_ignore_ascii_case(login));
        out.push(AppliedChange {
            kind: ChangeKind::GroupMembership,
            target: group.clone(),
            value: Some(login.clone()),
            previous: None,
            owned,
        });
    }
    for (section, values, kind) in [
        ("grants", &entries.grants, ChangeKind::Rule),
        ("acls", &entries.acls, ChangeKind::Rule),
        ("ssh", &entries.ssh, ChangeKind::SshRule),
    ] {
        for v in values {
            out.push(AppliedChange {
                kind,
                target: section.to_string(),
                value: Some(v.to_string()),
                previous: None,
                owned: true,
            });
        }
    }
    out
}

fn entries_empty(e: &Entries) -> bool {
    e.members.is_empty() && e.grants.is_empty() && e.acls.is_empty() && e.ssh.is_empty()
}

fn whole_second_up(t: Timestamp) -> Timestamp {
    t.round(
        jiff::TimestampRound::new()
            .smallest(jiff::Unit::Second)
            .mode(jiff::RoundMode::Ceil),
    )
    .unwrap_or(t)
}

/// Requeue for an instant: the reconciler wakes exactly at expiry.
fn requeue_at(at: Timestamp) -> Action {
    let wait = at.duration_since(Timestamp::now());
    Action::requeue(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}
