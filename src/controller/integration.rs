//! The TailscaleIntegration reconciler: connect with the integration's credentials, sync the
//! inventory on `syncInterval`, and report the connection and the credential's health.
//!
//! It only reads from Tailscale; it never changes anything there.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::ResourceExt;
use sha2::{Digest, Sha256};
use tracing::{info, instrument};

use super::connection::{connect, ConnectError, Connection};
use super::context::{key_of, Context, Inventory};
use super::status::apply_status;
use super::Error;
use crate::api::{
    find_condition, ConditionStatus, Conditions, CredentialKind, CredentialStatus, InventoryStatus,
    KState, TailscaleIntegration, TailscaleIntegrationStatus, SYNC_REQUEST_ANNOTATION,
};
use crate::duration;
use crate::metrics::IntegrationLabels;
use crate::tailscale::{self, UserType};

/// Why a sync did not happen.
enum SyncError {
    /// The user must fix the spec or the Secret: retrying alone will not help.
    Config {
        reason: &'static str,
        message: String,
    },
    /// Tailscale refused or failed.
    Tailscale(tailscale::Error),
}

impl From<ConnectError> for SyncError {
    fn from(e: ConnectError) -> Self {
        SyncError::Config {
            reason: e.reason,
            message: e.message,
        }
    }
}

/// When to look again after a problem a person must fix in the spec or the Secret (a fixed
/// Secret is noticed at once: it is watched).
const CONFIG_RETRY: Duration = Duration::from_secs(30);
/// When to look again after Tailscale refused or failed the sync.
const TAILSCALE_RETRY: Duration = Duration::from_secs(15);

struct Synced {
    inventory: Inventory,
    credential: CredentialStatus,
}

#[instrument(skip_all, fields(namespace = %obj.namespace().unwrap_or_default(), integration = %obj.name_any()))]
pub async fn reconcile(obj: Arc<TailscaleIntegration>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = key_of(obj.as_ref());
    let ns = key.0.clone();
    let api: Api<TailscaleIntegration> = Api::namespaced(ctx.client.clone(), &ns);
    let now = Timestamp::now();
    let previous = obj.status.clone().unwrap_or_default();
    let mut status = TailscaleIntegrationStatus {
        observed_generation: obj.metadata.generation,
        last_sync_request: obj.annotations().get(SYNC_REQUEST_ANNOTATION).cloned(),
        ..previous.clone()
    };
    let mut conditions = Conditions::new(&previous.conditions, obj.metadata.generation, now);
    let sync_interval =
        duration::parse(&obj.spec.sync_interval).unwrap_or(Duration::from_secs(300));
    let labels = IntegrationLabels {
        namespace: ns.clone(),
        integration: key.1.clone(),
    };

    let requeue = match sync(&obj, &ctx).await {
        Ok(synced) => {
            let inv = &synced.inventory;
            let message = format!(
                "Synced {} users{} from tailnet {}",
                inv.users.len(),
                inv.devices
                    .map(|d| format!(" and {d} devices"))
                    .unwrap_or_default(),
                obj.spec.tailnet
            );
            status.inventory = Some(inventory_status(inv));
            status.last_sync_time = Some(Time(now));
            status.last_sync_duration_ms = Some(started.elapsed().as_millis() as i64);
            ctx.metrics
                .inventory_users
                .get_or_create(&labels)
                .set(inv.users.len() as i64);
            let expiry_requeue = credential_expiry(
                &obj,
                &synced.credential,
                now,
                &mut conditions,
                &ctx,
                &labels,
            )
            .await;
            status.credentials = Some(synced.credential);
            conditions.set_kstatus(KState::Ready, "Synced", &message);
            // The policy file changed since the last sync: if it was not the writer's own
            // doing, a person may have removed what a grant holds; the writer looks.
            let file_changed = ctx.inventory(&key).is_some_and(|before| {
                before.policy_file.as_ref().ok() != synced.inventory.policy_file.as_ref().ok()
            });
            ctx.set_inventory(key.clone(), synced.inventory);
            if file_changed {
                ctx.writers.verify(&key);
            }
            expiry_requeue.map_or(sync_interval, |d| d.min(sync_interval))
        }
        Err(SyncError::Config { reason, message }) => {
            conditions.set_kstatus(KState::Stalled, reason, &message);
            keep_expiring(&previous, &mut conditions);
            ctx.metrics
                .reconcile_errors
                .get_or_create(&error_labels(reason))
                .inc();
            CONFIG_RETRY.min(sync_interval)
        }
        Err(SyncError::Tailscale(e)) => {
            let (state, reason) = if e.is_unauthorized() {
                (KState::Stalled, "Unauthorized")
            } else if e.is_forbidden() {
                (KState::Stalled, "Forbidden")
            } else {
                (KState::Failing, "TailscaleUnavailable")
            };
            let message = format!("Tailscale refused or failed the sync: {e}");
            conditions.set_kstatus(state, reason, &message);
            keep_expiring(&previous, &mut conditions);
            ctx.metrics
                .reconcile_errors
                .get_or_create(&error_labels(reason))
                .inc();
            TAILSCALE_RETRY.min(sync_interval)
        }
    };
    status.conditions = conditions.into_vec();
    announce_ready_change(&obj, &previous, &status, &ctx).await;
    apply_status(&api, obj.as_ref(), obj.status.as_ref(), &status).await?;
    Ok(Action::requeue(requeue))
}

async fn sync(obj: &TailscaleIntegration, ctx: &Context) -> Result<Synced, SyncError> {
    let Connection {
        client,
        key_id,
        credential_digest,
        ..
    } = connect(obj, ctx).await?;
    if ctx.rotations.rotated(&key_of(obj), credential_digest) {
        let message = format!(
            "the credentials in Secret {}/{} changed: requests to Tailscale use the new ones from now on",
            obj.namespace().unwrap_or_default(),
            obj.spec.credentials.secret_name
        );
        info!(%message);
        ctx.publish(
            obj,
            EventType::Normal,
            "CredentialsRotated",
            "Connect",
            message,
        )
        .await;
    }
    let kind = obj.spec.credentials.kind;

    let users = client
        .list_users(UserType::All)
        .await
        .map_err(SyncError::Tailscale)?;
    // Device counts are informative: a credential without the devices scope still syncs users.
    let device_list = match client.list_devices().await {
        Ok(d) => Some(d),
        Err(e) if e.is_forbidden() => None,
        Err(e) => return Err(SyncError::Tailscale(e)),
    };
    let devices = device_list.as_ref().map(|d| d.len() as i64);
    let wants_posture = obj
        .spec
        .inventory
        .as_ref()
        .is_some_and(|i| i.posture_attributes);
    let posture = match (wants_posture, device_list) {
        (false, _) => None,
        (true, None) => Some(Err(
            "posture attributes need the device list (the devices:core:read scope)".to_string(),
        )),
        (true, Some(list)) => Some(read_posture(&client, list).await.map(Arc::new)),
    };
    // The policy file feeds the entitlements inventory; a credential that may not read it
    // still syncs users, and the policies say why their inventory is missing.
    let policy_file = match client.get_policy_file().await {
        Ok(file) => Ok(Arc::new(file.text)),
        Err(e) if e.is_forbidden() => Err(format!(
            "the credential may not read the policy file (it needs the policy_file:read scope): {e}"
        )),
        Err(e) => Err(format!("the policy file could not be read: {e}")),
    };
    let expires_at = match (&key_id, kind) {
        (Some(id), CredentialKind::ApiToken) => match client.get_key(id).await {
            Ok(k) => k.expires,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the API token's expiry");
                None
            }
        },
        _ => None,
    };
    Ok(Synced {
        inventory: Inventory {
            revision: revision(&users, policy_file.as_ref().ok().map(|t| t.as_str())),
            users,
            devices,
            policy_file,
            posture,
            synced_at: Timestamp::now(),
        },
        credential: CredentialStatus {
            kind,
            key_id,
            expires_at: expires_at.map(Time),
        },
    })
}

/// How many posture-attribute reads run at once.
const POSTURE_READS: usize = 16;

/// The custom posture attributes of every user's device (tagged devices belong to no user).
async fn read_posture(
    client: &tailscale::Client,
    devices: Vec<tailscale::Device>,
) -> Result<Vec<crate::entitlements::DevicePosture>, String> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    let owned: Vec<tailscale::Device> =
        devices.into_iter().filter(|d| !d.user.is_empty()).collect();
    let per_device: Vec<Vec<crate::entitlements::DevicePosture>> = stream::iter(owned)
        .map(|device| async move {
            // The id grants set attributes by (see the ledger), so attributions match.
            let id = if device.id.is_empty() { &device.node_id } else { &device.id };
            let read = client.get_posture_attributes(id).await.map_err(|e| {
                if e.is_forbidden() {
                    format!("posture attributes are not included: the credential may not read them (it needs the devices:posture_attributes scope): {e}")
                } else {
                    format!("posture attributes are not included: {e}")
                }
            })?;
            Ok::<_, String>(
                read.attributes
                    .into_iter()
                    .filter(|(key, _)| key.starts_with("custom:"))
                    .map(|(key, value)| crate::entitlements::DevicePosture {
                        login: device.user.clone(),
                        device_id: id.clone(),
                        device: device.name.clone(),
                        key,
                        value: match value {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        },
                        granted_by: Vec::new(),
                    })
                    .collect(),
            )
        })
        .buffer_unordered(POSTURE_READS)
        .try_collect()
        .await?;
    Ok(per_device.into_iter().flatten().collect())
}

/// Raise or clear `CredentialsExpiring`; returns when to look again so the warning appears on
/// time even with a long sync interval.
async fn credential_expiry(
    obj: &TailscaleIntegration,
    credential: &CredentialStatus,
    now: Timestamp,
    conditions: &mut Conditions,
    ctx: &Context,
    labels: &IntegrationLabels,
) -> Option<Duration> {
    let Some(Time(expires)) = credential.expires_at else {
        conditions.set_or_clear("CredentialsExpiring", false, "", "");
        ctx.metrics.credential_expiry.remove(labels);
        return None;
    };
    ctx.metrics
        .credential_expiry
        .get_or_create(labels)
        .set(expires.as_second());
    let window = duration::parse(&obj.spec.credential_expiry_warning)
        .unwrap_or(Duration::from_secs(14 * 86400));
    let window = SignedDuration::try_from(window).unwrap_or(SignedDuration::from_hours(336));
    let left = expires.duration_since(now);
    if left <= window {
        let message = format!(
            "The API token {} expires at {expires} (in {}): create a new token and update Secret {}, or switch to an OAuth client, which does not expire",
            credential.key_id.as_deref().unwrap_or("in use"),
            human(left),
            obj.spec.credentials.secret_name,
        );
        let was = obj
            .status
            .as_ref()
            .and_then(|s| find_condition(&s.conditions, "CredentialsExpiring"))
            .is_some_and(|c| c.status == "True");
        conditions.set(
            "CredentialsExpiring",
            ConditionStatus::True,
            "TokenExpiresSoon",
            message.clone(),
        );
        if !was {
            ctx.publish(
                obj,
                EventType::Warning,
                "CredentialsExpiring",
                "CheckCredentials",
                message,
            )
            .await;
        }
        None
    } else {
        conditions.set_or_clear("CredentialsExpiring", false, "", "");
        (left - window).try_into().ok()
    }
}

/// Keep a raised expiry warning while a sync fails (the failure does not make it less true).
fn keep_expiring(previous: &TailscaleIntegrationStatus, conditions: &mut Conditions) {
    if let Some(c) = find_condition(&previous.conditions, "CredentialsExpiring") {
        conditions.set(
            "CredentialsExpiring",
            ConditionStatus::True,
            &c.reason,
            c.message.clone(),
        );
    }
}

/// Publish an Event when the integration connects, fails or changes the reason it fails.
async fn announce_ready_change(
    obj: &TailscaleIntegration,
    previous: &TailscaleIntegrationStatus,
    status: &TailscaleIntegrationStatus,
    ctx: &Context,
) {
    let (Some(new), old) = (
        find_condition(&status.conditions, "Ready"),
        find_condition(&previous.conditions, "Ready"),
    ) else {
        return;
    };
    if old.is_some_and(|o| o.status == new.status && o.reason == new.reason) {
        return;
    }
    if new.status == "True" {
        info!(message = %new.message, "integration connected");
        ctx.publish(
            obj,
            EventType::Normal,
            "Connected",
            "Sync",
            new.message.clone(),
        )
        .await;
    } else {
        info!(reason = %new.reason, message = %new.message, "integration not ready");
        ctx.publish(
            obj,
            EventType::Warning,
            &new.reason,
            "Sync",
            new.message.clone(),
        )
        .await;
    }
}

fn inventory_status(inv: &Inventory) -> InventoryStatus {
    let mut by_role = BTreeMap::new();
    let mut by_status = BTreeMap::new();
    let mut members = 0;
    for u in &inv.users {
        *by_role.entry(u.role.clone()).or_insert(0) += 1;
        *by_status.entry(u.status.clone()).or_insert(0) += 1;
        if u.user_type != "shared" {
            members += 1;
        }
    }
    InventoryStatus {
        users: inv.users.len() as i64,
        members,
        shared: inv.users.len() as i64 - members,
        devices: inv.devices.unwrap_or(0),
        by_role,
        by_status,
        revision: inv.revision.clone(),
    }
}

/// A digest of what the checks and the entitlements read: each user and the policy file; equal
/// inventories give equal revisions.
fn revision(users: &[tailscale::User], policy_file: Option<&str>) -> String {
    let mut lines: Vec<String> = users
        .iter()
        .map(|u| {
            format!(
                "{}\t{}\t{}\t{}\t{}",
                u.id,
                u.login_name.to_lowercase(),
                u.role,
                u.status,
                u.user_type
            )
        })
        .collect();
    lines.sort();
    if let Some(text) = policy_file {
        lines.push(format!(
            "policy\t{}",
            hex::encode(Sha256::digest(text.as_bytes()))
        ));
    }
    let digest = Sha256::digest(lines.join("\n").as_bytes());
    hex::encode(&digest[..8])
}

fn human(d: SignedDuration) -> String {
    let secs = d.as_secs().max(0);
    if secs >= 86400 {
        format!("{}d{}h", secs / 86400, (secs % 86400) / 3600)
    } else if secs >= 3600 {
        format!("{}h{}m", secs / 3600, (secs % 3600) / 60)
    } else {
        format!("{}m", secs / 60)
    }
}

fn error_labels(reason: &str) -> crate::metrics::ErrorLabels {
    crate::metrics::ErrorLabels {
        controller: "integration".into(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, login: &str, role: &str) -> tailscale::User {
        tailscale::User {
            id: id.into(),
            login_name: login.into(),
            role: role.into(),
            status: "active".into(),
            user_type: "member".into(),
            ..Default::default()
        }
    }

    #[test]
    fn revision_ignores_order_and_tracks_roles() {
        let a = vec![user("1", "a@x", "member"), user("2", "b@x", "admin")];
        let b = vec![user("2", "b@x", "admin"), user("1", "a@x", "member")];
        assert_eq!(revision(&a, None), revision(&b, None));
        let c = vec![user("1", "a@x", "member"), user("2", "b@x", "member")];
        assert_ne!(revision(&a, None), revision(&c, None));
    }

    #[test]
    fn revision_tracks_the_policy_file() {
        let a = vec![user("1", "a@x", "member")];
        assert_eq!(revision(&a, Some("{}")), revision(&a, Some("{}")));
        assert_ne!(revision(&a, Some("{}")), revision(&a, Some("{ }")));
        assert_ne!(revision(&a, Some("{}")), revision(&a, None));
    }

    #[test]
    fn inventory_counts_members_shared_roles_and_statuses() {
        let mut shared = user("3", "guest@y", "member");
        shared.user_type = "shared".into();
        let inv = Inventory {
            users: vec![
                user("1", "a@x", "member"),
                user("2", "b@x", "admin"),
                shared,
            ],
            devices: Some(4),
            policy_file: Err("not read".into()),
            posture: None,
            revision: "r".into(),
            synced_at: Timestamp::UNIX_EPOCH,
        };
        let s = inventory_status(&inv);
        assert_eq!((s.users, s.members, s.shared, s.devices), (3, 2, 1, 4));
        assert_eq!(s.by_role.get("member"), Some(&2));
        assert_eq!(s.by_status.get("active"), Some(&3));
    }
}
