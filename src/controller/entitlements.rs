//! Publishing each AccessPolicy's entitlements inventory: built from the integration's last
//! sync (users and policy file) and the grant ledgers, summarised in the policy's status, kept
//! whole in ConfigMaps owned by the policy (gzipped JSON shards, rewritten only when it
//! changes), and counted per entitlement in Prometheus.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use tracing::{debug, warn};

use super::context::{key_of, Context, Inventory, Key, FIELD_MANAGER};
use crate::api::{
    AccessPolicy, EntitlementsStatus, GrantLedger, HeldEntitlement, PrivilegedUser,
    TailscaleIntegration,
};
use crate::compliance::Directory;
use crate::entitlements::shards::{
    self, Published, DATA_KEY, DIGEST_ANNOTATION, POLICY_UID_LABEL, SHARD_ANNOTATION,
};
use crate::entitlements::{self, Attribution, Member};
use crate::metrics::EntitlementLabels;

/// Privileged users and most-held entitlements listed in status.
pub const SUMMARY_LIMIT: usize = 20;

/// The name of shard `index` of `policy`'s inventory.
pub fn shard_name(policy: &str, index: usize) -> String {
    let suffix = format!("-entitlements-{index}");
    let room = 253 - suffix.len();
    let prefix: String = policy.chars().take(room).collect();
    format!("{}{suffix}", prefix.trim_end_matches(['-', '.']))
}

/// The entitlement ids last exported per policy, so series of entitlements that are gone are
/// removed.
#[derive(Default)]
pub struct Exported {
    ids: Mutex<HashMap<Key, BTreeMap<String, &'static str>>>,
}

/// Build, publish and summarise the inventory of `policy`. Never fails the reconcile: a
/// problem is the status's `message`, and the last published inventory stays in place.
pub async fn publish(
    ctx: &Context,
    policy: &AccessPolicy,
    integration: Option<&TailscaleIntegration>,
    inventory: Option<&Inventory>,
    directory: Option<&Directory>,
    previous: Option<&EntitlementsStatus>,
) -> Option<EntitlementsStatus> {
    let stale = |message: String| {
        Some(EntitlementsStatus {
            message: Some(message),
            ..previous.cloned().unwrap_or_default()
        })
    };
    let (Some(integration), Some(inventory)) = (integration, inventory) else {
        return previous.cloned();
    };
    let text = match &inventory.policy_file {
        Ok(text) => text.clone(),
        Err(message) => return stale(format!("Not current: {message}")),
    };
    let document = match crate::policy_file::document(&text) {
        Ok(d) => d,
        Err(e) => return stale(format!("Not current: {e}")),
    };
    let (ns, name) = key_of(policy);
    let members: Vec<Member> = inventory
        .users
        .iter()
        .map(|u| Member {
            login: u.login_name.clone(),
            role: u.role.clone(),
            status: u.status.clone(),
            user_type: u.user_type.clone(),
            person: directory
                .and_then(|d| d.lookup(&u.login_name))
                .and_then(|p| p.display_name.clone()),
            role_granted_by: Vec::new(),
        })
        .collect();
    let attribution = attribution(
        &ctx.ledgers_in(&ns),
        &integration.name_any(),
        super::ledger::owner_id(integration),
    );
    let (posture, posture_note) = match &inventory.posture {
        Some(Ok(p)) => ((**p).clone(), None),
        Some(Err(why)) => (Vec::new(), Some(why.clone())),
        None => (Vec::new(), None),
    };
    let built = entitlements::build(members, &document, &attribution, posture);
    let summary = entitlements::summarize(&built, SUMMARY_LIMIT);
    export_metrics(ctx, &(ns.clone(), name.clone()), &built);
    let published = Published {
        policy: format!("{ns}/{name}"),
        revision: inventory.revision.clone(),
        inventory: built,
    };
    let encoded = match shards::encode(&published) {
        Ok(e) => e,
        Err(e) => {
            return stale(format!(
                "Not current: the inventory could not be encoded: {e}"
            ))
        }
    };
    let names: Vec<String> = (0..encoded.shards.len())
        .map(|i| shard_name(&name, i))
        .collect();
    let unchanged = previous.is_some_and(|p| {
        p.digest.as_deref() == Some(encoded.digest.as_str()) && p.config_maps == names
    });
    let updated_at = if unchanged {
        previous.and_then(|p| p.updated_at.clone())
    } else {
        if let Err(e) = write_shards(ctx, policy, &encoded, &names).await {
            warn!(error = %e, "publishing the entitlements inventory failed");
            return stale(format!(
                "Not current: the inventory could not be published: {e}"
            ));
        }
        debug!(shards = names.len(), "entitlements inventory published");
        Some(Time(Timestamp::now()))
    };
    Some(EntitlementsStatus {
        // The inventory is current; a part that could not be read is said here.
        message: posture_note,
        users: summary.users as i64,
        entitlements: summary.entitlements as i64,
        holdings: summary.holdings as i64,
        privileged_users: summary
            .privileged
            .into_iter()
            .map(|(login_name, role)| PrivilegedUser { login_name, role })
            .collect(),
        privileged_count: summary.privileged_count as i64,
        most_held: summary
            .most_held
            .into_iter()
            .map(|(id, description, holders)| HeldEntitlement {
                id,
                description,
                holders: holders as i64,
            })
            .collect(),
        config_maps: names,
        digest: Some(encoded.digest),
        updated_at,
    })
}

/// Who added what, from the ledgers of `integration`'s grants.
fn attribution(
    ledgers: &[std::sync::Arc<GrantLedger>],
    integration: &str,
    owner: Option<String>,
) -> Attribution {
    let mut attribution = Attribution {
        owner,
        ..Default::default()
    };
    for ledger in ledgers.iter().filter(|l| l.spec.integration == integration) {
        for hold in &ledger.spec.holds {
            if let Some(role) = &hold.role {
                attribution.add_role(&hold.login, role, &hold.grant);
            }
            if let Some(posture) = &hold.posture {
                for device in &posture.devices {
                    attribution.add_posture(device, &posture.key, &hold.grant);
                }
            }
            if let Some(entries) = &hold.entries {
                for member in &entries.members {
                    attribution.add_member(&member.group, &member.login, &hold.grant);
                }
                for rule in entries
                    .grants
                    .iter()
                    .chain(&entries.acls)
                    .chain(&entries.ssh)
                {
                    attribution.add_rule(rule, &hold.grant);
                }
            }
        }
    }
    attribution
}

/// Apply every shard, then delete this policy's ConfigMaps that are no longer shards.
async fn write_shards(
    ctx: &Context,
    policy: &AccessPolicy,
    encoded: &shards::Encoded,
    names: &[String],
) -> Result<(), kube::Error> {
    let ns = policy.namespace().unwrap_or_default();
    let uid = policy.uid().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = OwnerReference {
        api_version: AccessPolicy::api_version(&()).to_string(),
        kind: AccessPolicy::kind(&()).to_string(),
        name: policy.name_any(),
        uid: uid.clone(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    let count = names.len();
    for (index, (name, bytes)) in names.iter().zip(&encoded.shards).enumerate() {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(BTreeMap::from([
                    (POLICY_UID_LABEL.to_string(), uid.clone()),
                    (
                        "app.kubernetes.io/managed-by".to_string(),
                        "tailkeeper".to_string(),
                    ),
                ])),
                annotations: Some(BTreeMap::from([
                    (DIGEST_ANNOTATION.to_string(), encoded.digest.clone()),
                    (SHARD_ANNOTATION.to_string(), format!("{index}/{count}")),
                    ("tailkeeper.io/policy".to_string(), policy.name_any()),
                ])),
                owner_references: Some(vec![owner.clone()]),
                ..Default::default()
            },
            binary_data: Some(BTreeMap::from([(
                DATA_KEY.to_string(),
                ByteString(bytes.clone()),
            )])),
            ..Default::default()
        };
        api.patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&cm),
        )
        .await?;
    }
    let keep: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let existing = api
        .list_metadata(&ListParams::default().labels(&format!("{POLICY_UID_LABEL}={uid}")))
        .await?;
    for old in existing.items {
        let old_name = old.name_any();
        if !keep.contains(old_name.as_str()) {
            match api.delete(&old_name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// `tailkeeper_entitlement_holders` for every entitlement of the policy; series of
/// entitlements that are gone are removed.
fn export_metrics(ctx: &Context, key: &Key, inventory: &entitlements::Inventory) {
    let labels = |id: &str, kind: &'static str| EntitlementLabels {
        namespace: key.0.clone(),
        policy: key.1.clone(),
        entitlement: id.to_string(),
        kind: kind.to_string(),
    };
    let now: BTreeMap<String, &'static str> = inventory
        .entitlements
        .iter()
        .map(|e| (e.id.clone(), e.kind.as_str()))
        .collect();
    for e in &inventory.entitlements {
        ctx.metrics
            .entitlement_holders
            .get_or_create(&labels(&e.id, e.kind.as_str()))
            .set(e.holders as i64);
    }
    let mut exported = match ctx.exported_entitlements.ids.lock() {
        Ok(m) => m,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(before) = exported.insert(key.clone(), now.clone()) {
        for (id, kind) in before {
            if now.get(&id) != Some(&kind) {
                ctx.metrics.entitlement_holders.remove(&labels(&id, kind));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_are_valid_config_map_names_for_any_policy_name() {
        assert_eq!(shard_name("prod", 0), "prod-entitlements-0");
        let long = format!("{}.{}", "a".repeat(200), "b".repeat(52));
        let name = shard_name(&long, 12);
        assert!(name.len() <= 253, "{}", name.len());
        assert!(name.ends_with("-entitlements-12"));
        let dotted = format!("{}.{}", "a".repeat(237), "b".repeat(10));
        let name = shard_name(&dotted, 3);
        assert!(!name.contains(".-"), "{name}");
        assert!(name.len() <= 253);
    }
}
