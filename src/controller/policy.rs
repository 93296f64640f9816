//! The AccessPolicy reconciler: load the directory, evaluate the four checks against the
//! integration's inventory, and write them to status, with Events when a check changes and
//! Prometheus gauges per check.
//!
//! Checks only report here: nothing is changed in Tailscale.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use tracing::{debug, info, instrument};

use super::boundary::Unproven;
use super::context::{key_of, Context, Inventory};
use super::status::apply_status;
use super::Error;
use crate::api::{
    find_condition, AccessGrant, AccessPolicy, AccessPolicyStatus, CheckResultValue, CheckStatus,
    ConditionStatus, Conditions, DirectoryChange, DirectoryFileFormat, DirectoryStatus,
    EnforcementAction, EnforcementMode, EnforcementStatus, FailingUser, GrantPhase, KState,
    RemovedEntry, TailscaleIntegration,
};
use crate::compliance::enforcement::{self, Limits, Plan, RefusalReason, Remedy};
use crate::compliance::{
    self, CheckName, CheckResult, Directory, DirectoryFormat, Evaluation, Person, RoleGrant,
};
use crate::duration;
use crate::grants::lifecycle::Beneficiary;
use crate::metrics::CheckLabels;

/// At most this many failing users are listed per check; `failingCount` has the total.
pub const MAX_FAILING_USERS: usize = 100;

#[instrument(skip_all, fields(namespace = %cached.namespace().unwrap_or_default(), policy = %cached.name_any()))]
pub async fn reconcile(cached: Arc<AccessPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (ns, name) = key_of(cached.as_ref());
    let api: Api<AccessPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    // The status is the policy's memory (enforcement's actions, which the daily limit counts,
    // and the trust boundary's verdict): read it from the API server, never from a cache that
    // may not show the last pass's write yet. One GET per pass.
    let Some(obj) = api.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let obj = Arc::new(obj);
    let now = Timestamp::now();
    let previous = obj.status.clone().unwrap_or_default();
    let mut conditions = Conditions::new(&previous.conditions, obj.metadata.generation, now);
    let interval =
        duration::parse(&obj.spec.evaluation_interval).unwrap_or(Duration::from_secs(600));

    let integration_name = &obj.spec.integration_ref.name;
    let integration = Api::<TailscaleIntegration>::namespaced(ctx.client.clone(), &ns)
        .get_opt(integration_name)
        .await?;
    let inventory = ctx.inventory(&(ns.clone(), integration_name.clone()));
    let status_ready = integration
        .as_ref()
        .and_then(|i| i.status.as_ref())
        .and_then(|s| find_condition(&s.conditions, "Ready"))
        .is_some_and(|c| c.status == "True");
    // A sync that succeeded but whose status write is still on the way (its users are already
    // here, with a revision the status does not show yet) counts as connected: those are the
    // users evaluated below.
    let synced_since_status = inventory.as_ref().is_some_and(|inv| {
        integration
            .as_ref()
            .and_then(|i| i.status.as_ref())
            .and_then(|s| s.inventory.as_ref())
            .is_none_or(|shown| shown.revision != inv.revision)
    });
    let connected = status_ready || synced_since_status;
    // An integration that has not reported yet is neither connected nor disconnected: every
    // check, AccessControlConfigured included, waits for its first sync.
    let first_sync_pending = integration.as_ref().is_some_and(|i| {
        i.status
            .as_ref()
            .and_then(|s| find_condition(&s.conditions, "Ready"))
            .is_none()
    });
    let directory = load_directory(&obj, &ctx).await;
    // Who is who decides everything: every change is said, person by person.
    let directory_report = match &directory {
        Ok((dir, _)) => Some(
            report_directory_change(
                &ctx,
                &obj,
                ctx.directory(&key_of(obj.as_ref())).as_deref(),
                dir,
                previous.directory.as_ref(),
                now,
            )
            .await,
        ),
        Err(_) => None,
    };
    // Grants read it too: access is for people the directory knows. Active grants of people it
    // says have left (or no longer knows) end now, not at their expiry (standing: never).
    ctx.set_directory(key_of(obj.as_ref()), directory.clone().map(|(d, _)| d));
    if let Ok((dir, _)) = &directory {
        for g in ctx.grants_in(&ns).iter().filter(|g| {
            g.spec.policy_ref.name == name
                && g.status.as_ref().and_then(|s| s.phase) == Some(GrantPhase::Active)
                && g.metadata.deletion_timestamp.is_none()
                && Beneficiary::of(dir, &g.spec.user).ends_access()
        }) {
            ctx.recheck_grant(ObjectRef::from_obj(g.as_ref()));
        }
    }
    let role_grants = active_role_grants(&obj, &ctx).await?;
    // Who could rewrite what this policy's decisions read: proven before anything is decided
    // (grants and reviews read the verdict kept here).
    // After an exposure closes, decisions made before stay suspect: the time it closed is kept
    // (the condition's transition, reason ExposureClosed) for grants and reviews to judge by.
    let was = find_condition(&previous.conditions, TRUST_BOUNDARY_PROVEN);
    let closed_before = was.is_some_and(|c| {
        (c.status == ConditionStatus::False.as_str() && c.reason == BOUNDARY_EXPOSED)
            || (c.status == ConditionStatus::True.as_str() && c.reason == BOUNDARY_CLOSED)
    });
    let closed_at = was
        .filter(|c| c.status == ConditionStatus::True.as_str() && c.reason == BOUNDARY_CLOSED)
        .map_or(now, |c| c.last_transition_time.0);
    let boundary = super::boundary::check(
        &ctx,
        &obj,
        directory.as_ref().ok().map(|(d, _)| d),
        integration.as_ref(),
        closed_before.then_some(closed_at),
    )
    .await;
    if boundary.is_ok() {
        // Grants waiting on the proof are looked at now, not at their next retry.
        for g in ctx.grants_in(&ns).iter().filter(|g| {
            g.spec.policy_ref.name == name
                && g.metadata.deletion_timestamp.is_none()
                && matches!(
                    g.status.as_ref().and_then(|s| s.phase),
                    None | Some(GrantPhase::Pending | GrantPhase::AwaitingApproval)
                )
        }) {
            ctx.recheck_grant(ObjectRef::from_obj(g.as_ref()));
        }
    }
    match &boundary {
        Ok(()) if closed_before => conditions.set(
            TRUST_BOUNDARY_PROVEN,
            ConditionStatus::True,
            BOUNDARY_CLOSED,
            "the exposure is closed: no requester, approver, reviewer or person the directory lists can change the directory, the credential Secret, the ledgers, the review records or the grants' status, read the credential, or act as a GitOps requester; approvals, GitOps requests and review decisions made before it closed never count (check the directory for changes made meanwhile)",
        ),
        Ok(()) => conditions.set(
            TRUST_BOUNDARY_PROVEN,
            ConditionStatus::True,
            BOUNDARY_HOLDS,
            "no requester, approver, reviewer or person the directory lists can change the directory, the credential Secret, the ledgers, the review records or the grants' status, read the credential, or act as a GitOps requester",
        ),
        // Not asked this time (the API server failed, or RBAC changed meanwhile): decisions wait
        // (the kept verdict says so), and the condition stays as it was, so the memory of an
        // exposure is not lost to a failed check.
        Err(Unproven::Unchecked(_)) if was.is_some() => {
            if let Some(c) = was {
                let status = match c.status.as_str() {
                    "True" => ConditionStatus::True,
                    "False" => ConditionStatus::False,
                    _ => ConditionStatus::Unknown,
                };
                conditions.set(
                    TRUST_BOUNDARY_PROVEN,
                    status,
                    &c.reason.clone(),
                    c.message.clone(),
                );
            }
        }
        Err(unproven) => {
            let (reason, why) = match unproven {
                Unproven::Exposed(why) => (BOUNDARY_EXPOSED, why),
                Unproven::Unchecked(why) => (BOUNDARY_UNCHECKED, why),
            };
            conditions.set(
                TRUST_BOUNDARY_PROVEN,
                ConditionStatus::False,
                reason,
                why.clone(),
            );
            let was = find_condition(&previous.conditions, TRUST_BOUNDARY_PROVEN)
                .map(|c| (c.status.clone(), c.message.clone()));
            let announce = reason == BOUNDARY_EXPOSED;
            if announce && was != Some((ConditionStatus::False.as_str().to_string(), why.clone())) {
                ctx.publish(
                    obj.as_ref(),
                    EventType::Warning,
                    reason,
                    "ProveBoundary",
                    why.clone(),
                )
                .await;
            }
        }
    }

    let mut requeue = interval;
    let mut directory_status = previous.directory.clone();
    let mut plan: Option<Plan> = None;
    // Checks 1, 2 and 4 need the directory and the inventory; when either is missing they are
    // Unknown (never a false Fail: a broken directory must not report everyone as a stranger).
    let (evaluation, unknown_reason) = match (&directory, &inventory) {
        (Ok((dir, sources)), Some(inv)) => {
            let (digest, last_change) = directory_report.clone().unwrap_or_default();
            directory_status = Some(DirectoryStatus {
                people: dir.len() as i64,
                sources: *sources,
                digest: Some(digest),
                last_change,
            });
            let recent = super::changes::recent_people(&ctx, &obj, dir, Timestamp::now())
                .unwrap_or_default();
            let (evaluation, planned) = evaluate(&obj, dir, inv, &role_grants, connected, &recent);
            plan = Some(planned);
            (evaluation, None)
        }
        (Err(message), _) => (
            evaluate_without_users(&obj, connected),
            Some(("DirectoryInvalid", message.clone())),
        ),
        (Ok(_), None) => {
            let message = match &integration {
                None => format!("TailscaleIntegration {ns}/{integration_name} does not exist"),
                Some(_) if !connected && !first_sync_pending => format!(
                    "TailscaleIntegration {ns}/{integration_name} is not connected: {}",
                    ready_message(integration.as_ref())
                ),
                Some(_) => format!("waiting for the first inventory sync of TailscaleIntegration {ns}/{integration_name}"),
            };
            let reason = if integration.is_none() {
                "IntegrationNotFound"
            } else if connected || first_sync_pending {
                "WaitingForInventory"
            } else {
                "IntegrationNotReady"
            };
            (
                evaluate_without_users(&obj, connected),
                Some((reason, message)),
            )
        }
    };

    let checks = check_statuses(
        &evaluation,
        unknown_reason.as_ref().map(|(_, m)| m.as_str()),
        first_sync_pending,
        now,
    );
    let passing = checks
        .iter()
        .filter(|c| c.result == CheckResultValue::Pass)
        .count();
    let failing: Vec<&str> = checks
        .iter()
        .filter(|c| c.result == CheckResultValue::Fail)
        .map(|c| c.name.as_str())
        .collect();

    match &unknown_reason {
        None => {
            conditions.set_kstatus(
                KState::Ready,
                "Evaluated",
                &format!("{passing} of 4 checks pass"),
            );
            conditions.set(
                "Compliant",
                ConditionStatus::from_bool(failing.is_empty()),
                if failing.is_empty() {
                    "AllChecksPass"
                } else {
                    "ChecksFailing"
                },
                if failing.is_empty() {
                    "All four checks pass".to_string()
                } else {
                    format!("Failing: {}", failing.join(", "))
                },
            );
        }
        Some((reason @ "WaitingForInventory", message)) => {
            conditions.set_kstatus(KState::Reconciling, reason, message);
            conditions.set(
                "Compliant",
                ConditionStatus::Unknown,
                reason,
                message.clone(),
            );
            requeue = Duration::from_secs(5);
        }
        Some((reason @ "DirectoryInvalid", message)) => {
            conditions.set_kstatus(KState::Stalled, reason, message);
            conditions.set(
                "Compliant",
                ConditionStatus::Unknown,
                reason,
                message.clone(),
            );
        }
        Some((reason, message)) => {
            // The integration's own status tells why; its changes re-trigger this policy.
            conditions.set_kstatus(KState::Failing, reason, message);
            conditions.set(
                "Compliant",
                ConditionStatus::Unknown,
                reason,
                message.clone(),
            );
        }
    }

    let enforcement = match (&plan, connected) {
        (Some(plan), true) => Some(
            enforce(
                &obj,
                plan,
                &previous,
                boundary.as_ref().map(|_| ()).map_err(Unproven::message),
                &mut conditions,
                &ctx,
            )
            .await,
        ),
        _ => previous.enforcement.clone(),
    };
    if enforcement.as_ref().is_some_and(|e| !e.actions.is_empty())
        && enforcement != previous.enforcement
    {
        // Tailscale changed: look again soon rather than at the next interval.
        requeue = requeue.min(Duration::from_secs(2));
    }
    // Whether approvals of this policy's grants are proven by the cluster (grants that need
    // one activate only then); looked at again soon while they are not.
    match ctx.approvals_verified(&ns) {
        Ok(_) => conditions.set(
            APPROVALS_PROVEN,
            ConditionStatus::True,
            "AdmissionPoliciesInForce",
            "the admission policies that check requesters and approvers are in force",
        ),
        Err(message) => {
            conditions.set(
                APPROVALS_PROVEN,
                ConditionStatus::False,
                "AdmissionPoliciesMissing",
                message,
            );
            requeue = requeue.min(Duration::from_secs(10));
        }
    }
    let entitlements = super::entitlements::publish(
        &ctx,
        &obj,
        integration.as_ref(),
        inventory.as_deref(),
        directory.as_ref().ok().map(|(d, _)| d),
        previous.entitlements.as_ref(),
    )
    .await;
    let status = AccessPolicyStatus {
        observed_generation: obj.metadata.generation,
        entitlements,
        conditions: conditions.into_vec(),
        checks_passing: Some(format!("{passing}/4")),
        shared_users: evaluation.shared_users.clone(),
        directory: directory_status,
        checks,
        enforcement,
    };
    export_metrics(&ctx, &ns, &name, &status);
    announce_changes(&obj, &previous, &status, &unknown_reason, &ctx).await;
    apply_status(&api, obj.as_ref(), obj.status.as_ref(), &status).await?;
    super::reports::publish(&ctx, &obj, &status.checks).await;
    debug!(passing, "policy evaluated");
    Ok(Action::requeue(requeue))
}

fn evaluate(
    obj: &AccessPolicy,
    directory: &Directory,
    inventory: &Inventory,
    role_grants: &[RoleGrant],
    connected: bool,
    recent: &BTreeSet<String>,
) -> (Evaluation, Plan) {
    let users: Vec<compliance::TailscaleUser> = inventory
        .users
        .iter()
        .map(|u| compliance::TailscaleUser {
            id: u.id.clone(),
            login_name: u.login_name.clone(),
            display_name: u.display_name.clone(),
            role: u.role.clone(),
            status: u.status.clone(),
            user_type: u.user_type.clone(),
        })
        .collect();
    let inputs = compliance::Inputs {
        users: &users,
        directory,
        role_rules: &obj.spec.roles,
        exemptions: &obj.spec.exemptions,
        active_role_grants: role_grants,
        integration_connected: connected,
    };
    let limits = enforcement_limits(&obj.spec.enforcement);
    (
        compliance::evaluate(&inputs),
        enforcement::plan(
            &inputs,
            &limits,
            recent,
            inventory.policy_file.as_deref().ok().map(String::as_str),
        ),
    )
}

fn enforcement_limits(spec: &crate::api::Enforcement) -> Limits {
    Limits {
        max_affected_percent: spec.max_affected_percent,
        max_privileged: spec.max_privileged_per_evaluation,
        max_per_day: spec.max_changes_per24_hours,
    }
}

/// `AccessControlConfigured` reads only the policy and the connection, so it is evaluated even
/// when the users or the directory are unavailable.
fn evaluate_without_users(obj: &AccessPolicy, connected: bool) -> Evaluation {
    compliance::evaluate(&compliance::Inputs {
        users: &[],
        directory: &Directory::default(),
        role_rules: &obj.spec.roles,
        exemptions: &obj.spec.exemptions,
        active_role_grants: &[],
        integration_connected: connected,
    })
}

/// Build the status of each check. With `unknown`, every check but `AccessControlConfigured`
/// is Unknown with that message (that one too with `all_unknown`).
fn check_statuses(
    evaluation: &Evaluation,
    unknown: Option<&str>,
    all_unknown: bool,
    now: Timestamp,
) -> Vec<CheckStatus> {
    CheckName::ALL
        .iter()
        .map(|&name| {
            let outcome = evaluation.check(name);
            let skip = all_unknown || name != CheckName::AccessControlConfigured;
            if let (Some(message), true) = (unknown, skip) {
                CheckStatus {
                    name: name.to_string(),
                    result: CheckResultValue::Unknown,
                    message: format!("Not evaluated: {message}"),
                    failing_users: Vec::new(),
                    failing_count: 0,
                    evaluated_at: Time(now),
                }
            } else {
                CheckStatus {
                    name: name.to_string(),
                    result: match outcome.result {
                        CheckResult::Pass => CheckResultValue::Pass,
                        CheckResult::Fail => CheckResultValue::Fail,
                    },
                    message: outcome.message.clone(),
                    failing_users: outcome
                        .findings
                        .iter()
                        .take(MAX_FAILING_USERS)
                        .map(|f| FailingUser {
                            login_name: f.login_name.clone(),
                            reason: f.reason.clone(),
                        })
                        .collect(),
                    failing_count: outcome.findings.len() as i64,
                    evaluated_at: Time(now),
                }
            }
        })
        .collect()
}

/// Load the directory from the inline entries and the ConfigMaps. Returns the directory and the
/// number of sources, or a message that says which source is broken and how.
/// The condition saying whether the cluster proves who approved this policy's grants.
pub const APPROVALS_PROVEN: &str = "ApprovalsProven";
/// The condition saying whether what this policy's decisions read is out of reach of the
/// identities it knows ([`crate::boundary`]).
pub const TRUST_BOUNDARY_PROVEN: &str = "TrustBoundaryProven";
/// `TrustBoundaryProven` True.
const BOUNDARY_HOLDS: &str = "InputsOutOfReach";
/// `TrustBoundaryProven` True after having been False: what was decided before it closed
/// never counts.
const BOUNDARY_CLOSED: &str = "ExposureClosed";
/// `TrustBoundaryProven` False because the API server could not be asked (not sticky).
const BOUNDARY_UNCHECKED: &str = "CheckFailed";
/// `TrustBoundaryProven` False (and its Warning Event; `EnforcementRefused`'s reason then).
const BOUNDARY_EXPOSED: &str = "InputsExposed";

/// At most this many people are spelled out in a directory change's report.
const CHANGED_PEOPLE_SHOWN: usize = 20;

/// The directory's digest, and its last change: reported now (Event, log) when this reading
/// differs from the last one (in memory, or by digest after a restart), else as it was.
async fn report_directory_change(
    ctx: &Context,
    obj: &AccessPolicy,
    before: Option<&Result<Directory, String>>,
    after: &Directory,
    previous: Option<&DirectoryStatus>,
    now: Timestamp,
) -> (String, Option<DirectoryChange>) {
    let digest = hex_digest(&serde_json::to_vec(after.people()).unwrap_or_default());
    let kept = previous.and_then(|p| p.last_change.clone());
    let summary = match before {
        Some(Ok(before)) => {
            let changes = compliance::changes::between(before, after);
            if changes.is_empty() {
                return (digest, kept);
            }
            format!(
                "{} {} changed: {}",
                changes.len(),
                if changes.len() == 1 { "person" } else { "people" },
                compliance::changes::summary(&changes, CHANGED_PEOPLE_SHOWN)
            )
        }
        // First reading since the operator started: compare with what the status recorded.
        _ => match previous.and_then(|p| p.digest.as_deref()) {
            Some(seen) if seen != digest => {
                "the directory changed while Tailkeeper was not reading it (what changed for whom is not known; compare the sources' history)".to_string()
            }
            _ => return (digest, kept),
        },
    };
    let written_by = last_writer(ctx, obj).await;
    let message = match &written_by {
        Some(by) => format!("{summary} (last written by {by})"),
        None => summary.clone(),
    };
    info!(%message, "people directory changed");
    ctx.publish(
        obj,
        EventType::Normal,
        "DirectoryChanged",
        "ReadDirectory",
        truncate(&message, EVENT_DETAIL_CHARS),
    )
    .await;
    (
        digest,
        Some(DirectoryChange {
            at: Time(now),
            summary: truncate(&summary, EVENT_DETAIL_CHARS),
            written_by,
        }),
    )
}

fn hex_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The latest write to the directory's sources (the policy's spec, its ConfigMaps) the cluster
/// records in managedFields: `manager (operation) at time`, with the object it wrote.
async fn last_writer(ctx: &Context, obj: &AccessPolicy) -> Option<String> {
    let ns = obj.namespace().unwrap_or_default();
    let mut entries: Vec<(String, ManagedFieldsEntry)> = obj
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|e| e.subresource.is_none())
        .map(|e| (format!("AccessPolicy {}", obj.name_any()), e.clone()))
        .collect();
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    for source in &obj.spec.directory.config_maps {
        if let Ok(Some(cm)) = config_maps.get_metadata_opt(&source.name).await {
            entries.extend(
                cm.metadata
                    .managed_fields
                    .into_iter()
                    .flatten()
                    .map(|e| (format!("ConfigMap {}", source.name), e)),
            );
        }
    }
    writer_of(entries)
}

/// The most recent of `entries` (by time), in words.
fn writer_of(entries: Vec<(String, ManagedFieldsEntry)>) -> Option<String> {
    entries
        .into_iter()
        .filter(|(_, e)| e.time.is_some())
        .max_by_key(|(_, e)| e.time.as_ref().map(|t| t.0))
        .map(|(object, e)| {
            format!(
                "{} ({}) to {object} at {}",
                e.manager.unwrap_or_else(|| "an unnamed manager".into()),
                e.operation.unwrap_or_else(|| "a write".into()),
                e.time.map(|t| t.0.to_string()).unwrap_or_default()
            )
        })
}

pub(super) async fn load_directory(
    obj: &AccessPolicy,
    ctx: &Context,
) -> Result<(Directory, i64), String> {
    let ns = obj.namespace().unwrap_or_default();
    let mut sources: Vec<(String, Vec<Person>)> = Vec::new();
    if !obj.spec.directory.people.is_empty() {
        sources.push((
            "inline people".to_string(),
            obj.spec.directory.people.clone(),
        ));
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    for source in &obj.spec.directory.config_maps {
        let cm = config_maps
            .get_opt(&source.name)
            .await
            .map_err(|e| format!("cannot read ConfigMap {ns}/{}: {e}", source.name))?
            .ok_or_else(|| format!("ConfigMap {ns}/{} does not exist", source.name))?;
        let data = cm.data.unwrap_or_default();
        let keys: Vec<&String> = match &source.key {
            Some(k) => {
                if !data.contains_key(k) {
                    return Err(format!("ConfigMap {ns}/{} has no key {k:?}", source.name));
                }
                vec![k]
            }
            None => data
                .keys()
                .filter(|k| DirectoryFormat::from_key(k).is_some())
                .collect(),
        };
        if keys.is_empty() {
            return Err(format!(
                "ConfigMap {ns}/{} has no key ending in .csv, .json, .yaml or .yml; name the key and its format in directory.configMaps",
                source.name
            ));
        }
        for key in keys {
            let format = match source.format {
                Some(DirectoryFileFormat::Csv) => DirectoryFormat::Csv,
                Some(DirectoryFileFormat::Json) => DirectoryFormat::Json,
                Some(DirectoryFileFormat::Yaml) => DirectoryFormat::Yaml,
                None => DirectoryFormat::from_key(key).ok_or_else(|| {
                    format!(
                        "cannot tell the format of ConfigMap {ns}/{} key {key:?}: set format to CSV, JSON or YAML",
                        source.name
                    )
                })?,
            };
            let origin = format!("ConfigMap {ns}/{} key {key}", source.name);
            let people = compliance::parse_people(format, &data[key])
                .map_err(|e| e.with_origin(origin.as_str()).to_string())?;
            sources.push((origin, people));
        }
    }
    // An export that lost its orgRole column would make every role look invalid (and Enforce
    // lower them all): a source whose active people have no organisational role is refused.
    for (origin, people) in &sources {
        if let Some(problem) = compliance::missing_org_roles(people) {
            return Err(format!("{origin}: {problem}"));
        }
    }
    let count = sources.len() as i64;
    // People's Kubernetes identities follow from their logins by the cluster's rule, if set.
    let sources: Vec<_> = match &ctx.settings.identity_username_prefix {
        Some(prefix) => sources
            .into_iter()
            .map(|(origin, people)| (origin, compliance::with_login_identities(people, prefix)))
            .collect(),
        None => sources,
    };
    let directory = Directory::build(sources).map_err(|e| e.to_string())?;
    Ok((directory, count))
}

/// Active role grants of this policy: they make a role valid while they last.
async fn active_role_grants(obj: &AccessPolicy, ctx: &Context) -> Result<Vec<RoleGrant>, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let grants = Api::<AccessGrant>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default())
        .await?;
    let name = obj.name_any();
    Ok(grants
        .items
        .into_iter()
        .filter(|g| g.spec.policy_ref.name == name)
        .filter(|g| g.status.as_ref().and_then(|s| s.phase) == Some(GrantPhase::Active))
        .filter_map(|g| {
            let role = g.spec.access.role?;
            let role = serde_json::to_value(role).ok()?.as_str()?.to_string();
            Some(RoleGrant {
                login_name: g.spec.user.clone(),
                role,
            })
        })
        .collect())
}

fn ready_message(integration: Option<&TailscaleIntegration>) -> String {
    integration
        .and_then(|i| i.status.as_ref())
        .and_then(|s| find_condition(&s.conditions, "Ready"))
        .map(|c| c.message.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "it has not reported yet".to_string())
}

fn export_metrics(ctx: &Context, ns: &str, policy: &str, status: &AccessPolicyStatus) {
    let refused = find_condition(&status.conditions, "EnforcementRefused").is_some();
    ctx.metrics
        .enforcement_refused
        .get_or_create(&crate::metrics::PolicyLabels {
            namespace: ns.to_string(),
            policy: policy.to_string(),
        })
        .set(i64::from(refused));
    for check in &status.checks {
        let labels = CheckLabels {
            namespace: ns.to_string(),
            policy: policy.to_string(),
            check: check.name.clone(),
        };
        match check.result {
            CheckResultValue::Unknown => {
                ctx.metrics.check_passing.remove(&labels);
                ctx.metrics.check_failing_users.remove(&labels);
            }
            result => {
                ctx.metrics
                    .check_passing
                    .get_or_create(&labels)
                    .set(i64::from(result == CheckResultValue::Pass));
                ctx.metrics
                    .check_failing_users
                    .get_or_create(&labels)
                    .set(check.failing_count);
            }
        }
    }
}

/// An Event per check whose result changed, and one when evaluation becomes impossible.
async fn announce_changes(
    obj: &AccessPolicy,
    previous: &AccessPolicyStatus,
    status: &AccessPolicyStatus,
    unknown: &Option<(&str, String)>,
    ctx: &Context,
) {
    for check in &status.checks {
        let before = previous
            .checks
            .iter()
            .find(|c| c.name == check.name)
            .map(|c| c.result);
        if before == Some(check.result) {
            continue;
        }
        let (type_, reason) = match check.result {
            CheckResultValue::Pass => (EventType::Normal, "CheckPassed"),
            CheckResultValue::Fail => (EventType::Warning, "CheckFailed"),
            CheckResultValue::Unknown => continue,
        };
        ctx.publish(
            obj,
            type_,
            reason,
            // Events are aggregated by reason and action: naming the check in the action keeps
            // each check's change an Event of its own.
            &check.name,
            format!("{}: {}", check.name, check.message),
        )
        .await;
    }
    if let Some((reason, message)) = unknown {
        let was = find_condition(&previous.conditions, "Ready").map(|c| c.reason.as_str());
        if was != Some(*reason) {
            ctx.publish(obj, EventType::Warning, reason, "Evaluate", message.clone())
                .await;
        }
    }
}

/// Carry out (in `Enforce` mode) or only count (in `Audit` mode) the remedies for the failing
/// checks, within the blast-radius limit. Every change in Tailscale gets an Event and a line in
/// status; a refusal gets a condition and a Warning Event.
/// The most characters of removed text an Event quotes (the status keeps every entry).
const EVENT_DETAIL_CHARS: usize = 600;
/// Attempts at the policy file while others write it (HTTP 412).
const DEPROVISION_ATTEMPTS: usize = 3;

fn truncate(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_string();
    }
    let cut: String = text.chars().take(chars).collect();
    format!("{cut}… (all of it in status.enforcement.actions)")
}

/// Remove the direct entries of `logins` from the policy file, read-modify-write under
/// `If-Match`. Returns the new file (when it changed) and what was removed, exactly.
async fn deprovision(
    client: &crate::tailscale::Client,
    logins: &std::collections::BTreeSet<String>,
) -> Result<(Option<String>, Vec<RemovedEntry>), String> {
    let mut last = String::new();
    for _ in 0..DEPROVISION_ATTEMPTS {
        let file = client
            .get_policy_file()
            .await
            .map_err(|e| format!("reading the policy file: {e}"))?;
        let outcome = crate::policy_file::deprovision(&file.text, logins)
            .map_err(|e| format!("the policy file was left alone: {e}"))?;
        if outcome.removed.is_empty() {
            return Ok((None, Vec::new()));
        }
        let removed = outcome
            .removed
            .iter()
            .map(|r| RemovedEntry {
                location: r.location.clone(),
                text: r.text.clone(),
            })
            .collect();
        match client
            .set_policy_file(&outcome.text, Some(&file.etag))
            .await
        {
            Ok(_) => return Ok((Some(outcome.text), removed)),
            Err(e) if e.is_precondition_failed() => last = e.to_string(),
            Err(e) => return Err(format!("Tailscale refused the policy file: {e}")),
        }
    }
    Err(format!(
        "the policy file changed under each of {DEPROVISION_ATTEMPTS} attempts (HTTP 412 each time): {last}"
    ))
}

async fn enforce(
    obj: &AccessPolicy,
    plan: &Plan,
    previous: &AccessPolicyStatus,
    boundary: Result<(), &str>,
    conditions: &mut Conditions,
    ctx: &Context,
) -> EnforcementStatus {
    let mut status = previous.enforcement.clone().unwrap_or_default();
    status.pending = plan.remedies.len() as i64;
    status.privileged_pending = plan.privileged as i64;
    status.changes_in_last24_hours = plan.recent_changes as i64;
    status.refused = plan.refused.as_ref().map(|r| r.message.clone());
    let enforcing = obj.spec.enforcement.mode == EnforcementMode::Enforce;
    // A directory someone else could have written decides nothing in Tailscale.
    // (A plan the limits refuse is refused for that, first: it would change nothing anyway.)
    let would_act = enforcing && plan.refused.is_none() && !plan.remedies.is_empty();
    let proven = match (would_act, boundary) {
        (false, _) => Ok(()),
        (true, Err(why)) => Err(why.to_string()),
        // Before changing Tailscale, every answer is asked again past the cache: a right
        // granted since the last RBAC event the watch reported must not steer enforcement.
        (true, Ok(())) => {
            let directory = ctx.directory(&key_of(obj));
            let directory = directory.as_deref().and_then(|d| d.as_ref().ok());
            let integration = ctx.cached_integration(
                &obj.namespace().unwrap_or_default(),
                &obj.spec.integration_ref.name,
            );
            super::boundary::confirm(
                ctx,
                obj,
                directory,
                integration.as_deref(),
                super::boundary::Fresh::All,
            )
            .await
            .map_err(|u| u.message().to_string())
        }
    };
    if let Err(why) = proven {
        let message = format!(
            "enforcement would make {} changes, but it reads inputs that are not out of reach: {why}",
            plan.remedies.len()
        );
        conditions.set(
            "EnforcementRefused",
            ConditionStatus::True,
            BOUNDARY_EXPOSED,
            message.clone(),
        );
        let was = previous
            .enforcement
            .as_ref()
            .and_then(|e| e.refused.clone());
        if was.as_deref() != Some(message.as_str()) {
            ctx.publish(
                obj,
                EventType::Warning,
                "EnforcementRefused",
                "Enforce",
                message.clone(),
            )
            .await;
        }
        status.refused = Some(message);
        return status;
    }
    let refused_now = enforcing && plan.refused.is_some();
    conditions.set_or_clear(
        "EnforcementRefused",
        refused_now,
        plan.refused
            .as_ref()
            .map_or(RefusalReason::BlastRadiusExceeded, |r| r.reason)
            .as_str(),
        status.refused.as_deref().unwrap_or_default(),
    );
    if refused_now {
        let was = previous
            .enforcement
            .as_ref()
            .and_then(|e| e.refused.clone());
        if was != status.refused {
            let message = status.refused.clone().unwrap_or_default();
            ctx.publish(
                obj,
                EventType::Warning,
                "EnforcementRefused",
                "Enforce",
                message,
            )
            .await;
        }
    }
    if !enforcing || plan.refused.is_some() || plan.remedies.is_empty() {
        return status;
    }
    let (ns, _) = key_of(obj);
    let integration_key = (ns.clone(), obj.spec.integration_ref.name.clone());
    let client = match ctx.cached_client(&integration_key) {
        Some((_, c)) => c,
        None => {
            conditions.set(
                "EnforcementFailed",
                ConditionStatus::True,
                "NotConnected",
                "no connection to the tailnet yet".to_string(),
            );
            return status;
        }
    };
    // The day's room is taken under the policy's lock, counted again now: a campaign of the
    // policy may have used it since the plan was made.
    let policy_key = key_of(obj);
    let _limits = ctx.changes.lock(&policy_key).await;
    let directory = ctx.directory(&policy_key);
    let Some(directory) = directory.as_deref().and_then(|d| d.as_ref().ok()) else {
        return status;
    };
    let Some(recent) = super::changes::recent_people(ctx, obj, directory, Timestamp::now()) else {
        // The campaigns' revocations are not known yet: nothing is changed before they are.
        return status;
    };
    if let Some(refusal) = enforcement::daily_refusal(
        &plan.people,
        &enforcement_limits(&obj.spec.enforcement),
        &recent,
    ) {
        conditions.set(
            "EnforcementRefused",
            ConditionStatus::True,
            refusal.reason.as_str(),
            refusal.message.clone(),
        );
        status.refused = Some(refusal.message);
        return status;
    }
    let mut failures = Vec::new();
    for remedy in &plan.remedies {
        let mut removed = Vec::new();
        let (result, action, detail) = match remedy {
            Remedy::Suspend { user_id, login } => (
                client
                    .suspend_user(user_id)
                    .await
                    .map_err(|e| e.to_string()),
                "Suspended",
                format!("account of offboarded {login} suspended"),
            ),
            Remedy::LowerRole {
                user_id,
                login,
                from,
                to,
            } => (
                client
                    .set_user_role(user_id, to)
                    .await
                    .map_err(|e| e.to_string()),
                "RoleLowered",
                format!("role of {login} lowered from {from} to {to}"),
            ),
            Remedy::Deprovision { login, logins, .. } => {
                let result = deprovision(&client, logins).await.map(|(text, entries)| {
                    removed = entries;
                    if let Some(text) = text {
                        ctx.update_inventory_policy_file(&integration_key, text);
                    }
                });
                let what = removed
                    .iter()
                    .map(|r| format!("{}: {}", r.location, r.text))
                    .collect::<Vec<_>>()
                    .join("; ");
                (
                    result,
                    "Deprovisioned",
                    format!(
                        "removed {} direct entries of offboarded {login} from the policy file: {}",
                        removed.len(),
                        truncate(&what, EVENT_DETAIL_CHARS)
                    ),
                )
            }
        };
        match result {
            Ok(()) if action == "Deprovisioned" && removed.is_empty() => {
                // Someone removed them first: nothing was changed, nothing to record.
            }
            Ok(()) => {
                ctx.changes.record(
                    &policy_key,
                    crate::compliance::limits::person_of(directory, remedy.login()),
                    Timestamp::now(),
                );
                info!(%detail, "enforcement changed Tailscale");
                ctx.publish(obj, EventType::Normal, action, "Enforce", detail.clone())
                    .await;
                status.actions.insert(
                    0,
                    EnforcementAction {
                        login_name: remedy.login().to_string(),
                        action: action.to_string(),
                        detail,
                        at: Time(Timestamp::now()),
                        removed: removed.into_iter().take(MAX_FAILING_USERS).collect(),
                    },
                );
                ctx.update_inventory_user(&integration_key, remedy);
            }
            Err(e) => {
                let message = format!("{detail} failed: {e}");
                ctx.publish(
                    obj,
                    EventType::Warning,
                    "EnforcementFailed",
                    "Enforce",
                    message.clone(),
                )
                .await;
                failures.push(message);
            }
        }
    }
    status.actions.truncate(MAX_FAILING_USERS);
    conditions.set_or_clear(
        "EnforcementFailed",
        !failures.is_empty(),
        "TailscaleRefused",
        &failures.join("; "),
    );
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_write_to_a_source_names_its_manager_and_object() {
        let entry = |manager: &str, at: &str| ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Update".into()),
            time: Some(Time(at.parse().unwrap())),
            ..Default::default()
        };
        let said = writer_of(vec![
            (
                "AccessPolicy corp".into(),
                entry("helm", "2026-01-01T00:00:00Z"),
            ),
            (
                "ConfigMap people".into(),
                entry("kubectl-edit", "2026-02-01T00:00:00Z"),
            ),
            (
                "ConfigMap old".into(),
                entry("hr-sync", "2025-12-01T00:00:00Z"),
            ),
        ]);
        assert_eq!(
            said.as_deref(),
            Some("kubectl-edit (Update) to ConfigMap people at 2026-02-01T00:00:00Z")
        );
        assert_eq!(writer_of(Vec::new()), None);
    }
}
