//! Reading an AccessPolicy's published entitlements inventory from the cluster, as
//! `tailkeeper access` does: the policy's status names the ConfigMaps and the digest; each
//! shard must carry that digest (a reader that meets a version being replaced tries again).

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::ResourceExt;

use crate::api::AccessPolicy;
use crate::entitlements::shards::{self, Published, DATA_KEY, DIGEST_ANNOTATION};

/// Attempts while the operator is replacing the inventory.
const ATTEMPTS: usize = 5;
const BETWEEN_ATTEMPTS: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("AccessPolicy {0} not found")]
    NotFound(String),
    #[error("AccessPolicy {policy} has no entitlements inventory yet: {why}")]
    NotPublished { policy: String, why: String },
    #[error("the inventory of AccessPolicy {policy} is unreadable: {why}")]
    Unreadable { policy: String, why: String },
    #[error("{0}")]
    Kubernetes(#[from] kube::Error),
}

/// The published inventory of `namespace/name`, and the status's message when the inventory is
/// not current (the last one published is returned anyway).
pub async fn read(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<(Published, Option<String>), ReadError> {
    let policy_name = format!("{namespace}/{name}");
    let policies: Api<AccessPolicy> = Api::namespaced(client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut last_problem = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(BETWEEN_ATTEMPTS).await;
        }
        let policy = policies
            .get_opt(name)
            .await?
            .ok_or_else(|| ReadError::NotFound(policy_name.clone()))?;
        let status = policy.status.and_then(|s| s.entitlements);
        let (digest, names, message) = match status {
            Some(s) if s.digest.is_some() && !s.config_maps.is_empty() => {
                (s.digest.unwrap_or_default(), s.config_maps, s.message)
            }
            Some(s) => {
                return Err(ReadError::NotPublished {
                    policy: policy_name,
                    why: s
                        .message
                        .unwrap_or_else(|| "nothing published yet".to_string()),
                })
            }
            None => {
                return Err(ReadError::NotPublished {
                    policy: policy_name,
                    why: "the policy has not been evaluated with an inventory yet (is its integration connected, and may its credential read the policy file?)".to_string(),
                })
            }
        };
        let mut parts = Vec::with_capacity(names.len());
        let mut consistent = true;
        for shard in &names {
            let Some(cm) = config_maps.get_opt(shard).await? else {
                last_problem = format!("ConfigMap {namespace}/{shard} is missing");
                consistent = false;
                break;
            };
            if cm.annotations().get(DIGEST_ANNOTATION) != Some(&digest) {
                last_problem = format!("ConfigMap {namespace}/{shard} holds another version");
                consistent = false;
                break;
            }
            match cm.binary_data.and_then(|mut d| d.remove(DATA_KEY)) {
                Some(bytes) => parts.push(bytes.0),
                None => {
                    last_problem = format!("ConfigMap {namespace}/{shard} has no {DATA_KEY}");
                    consistent = false;
                    break;
                }
            }
        }
        if !consistent {
            continue;
        }
        let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        match shards::decode(&slices, &digest) {
            Ok(published) => return Ok((published, message)),
            Err(e) => last_problem = e.to_string(),
        }
    }
    Err(ReadError::Unreadable {
        policy: policy_name,
        why: last_problem,
    })
}
