//! Records too large for an object's status, kept as gzipped JSON shards in ConfigMaps
//! (the encoding is [`crate::entitlements::shards`]): an access review's items and its
//! evidence. Used by the operator (writes) and by people's tools (reads).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde::de::DeserializeOwned;

use crate::entitlements::shards::{
    decode_json, Encoded, DIGEST_ANNOTATION, MAX_SHARDS, SHARD_ANNOTATION,
};

/// The label on a review's ConfigMaps: the review's UID.
pub const REVIEW_UID_LABEL: &str = "tailkeeper.io/review-of";
/// The key of an items shard's bytes.
pub const ITEMS_KEY: &str = "items.json.gz";
/// The key of an evidence shard's bytes.
pub const EVIDENCE_KEY: &str = "evidence.json.gz";

/// One set of shards: where and how they are written.
pub struct ShardSet<'a> {
    pub namespace: &'a str,
    /// Names are `<prefix>-<index>`.
    pub prefix: String,
    pub key: &'static str,
    pub owner: OwnerReference,
    /// The label selecting every ConfigMap of the owner (stale shards of this set are
    /// deleted when `kind` matches).
    pub label: (&'static str, String),
    /// `items` or `evidence`: a second label, so one set's clean-up leaves the other alone.
    pub kind: &'static str,
    /// Evidence is immutable: the API server refuses any change to it.
    pub immutable: bool,
    pub field_manager: &'a str,
}

const KIND_LABEL: &str = "tailkeeper.io/record";

/// Writes every shard and deletes older shards of the same set; returns the names in order.
pub async fn write(
    client: &kube::Client,
    set: &ShardSet<'_>,
    encoded: &Encoded,
) -> Result<Vec<String>, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), set.namespace);
    let count = encoded.shards.len();
    let names: Vec<String> = (0..count).map(|i| format!("{}-{i}", set.prefix)).collect();
    for (index, (name, bytes)) in names.iter().zip(&encoded.shards).enumerate() {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(set.namespace.to_string()),
                labels: Some(BTreeMap::from([
                    (set.label.0.to_string(), set.label.1.clone()),
                    (KIND_LABEL.to_string(), set.kind.to_string()),
                    (
                        "app.kubernetes.io/managed-by".to_string(),
                        "tailkeeper".to_string(),
                    ),
                ])),
                annotations: Some(BTreeMap::from([
                    (DIGEST_ANNOTATION.to_string(), encoded.digest.clone()),
                    (SHARD_ANNOTATION.to_string(), format!("{index}/{count}")),
                ])),
                owner_references: Some(vec![set.owner.clone()]),
                ..Default::default()
            },
            binary_data: Some(BTreeMap::from([(
                set.key.to_string(),
                ByteString(bytes.clone()),
            )])),
            immutable: set.immutable.then_some(true),
            ..Default::default()
        };
        api.patch(
            name,
            &PatchParams::apply(set.field_manager).force(),
            &Patch::Apply(&cm),
        )
        .await?;
    }
    if set.immutable {
        return Ok(names);
    }
    let keep: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let selector = format!("{}={},{KIND_LABEL}={}", set.label.0, set.label.1, set.kind);
    for old in api
        .list_metadata(&ListParams::default().labels(&selector))
        .await?
        .items
    {
        let name = old.name_any();
        if !keep.contains(name.as_str()) {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(names)
}

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Unreadable(String),
}

/// Reads the shards `names` (in order) and checks them against `digest`.
pub async fn read<T: DeserializeOwned>(
    client: &kube::Client,
    namespace: &str,
    names: &[String],
    digest: &str,
    key: &str,
) -> Result<T, ReadError> {
    if names.len() > MAX_SHARDS {
        return Err(ReadError::Unreadable(format!(
            "{} shards is more than the {MAX_SHARDS} a reader accepts",
            names.len()
        )));
    }
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut parts = Vec::with_capacity(names.len());
    for name in names {
        let cm = api.get_opt(name).await?.ok_or_else(|| {
            ReadError::Unreadable(format!("ConfigMap {namespace}/{name} is missing"))
        })?;
        if cm.annotations().get(DIGEST_ANNOTATION).map(String::as_str) != Some(digest) {
            return Err(ReadError::Unreadable(format!(
                "ConfigMap {namespace}/{name} holds another version"
            )));
        }
        let bytes = cm
            .binary_data
            .and_then(|mut d| d.remove(key))
            .ok_or_else(|| {
                ReadError::Unreadable(format!("ConfigMap {namespace}/{name} has no {key}"))
            })?;
        parts.push(bytes.0);
    }
    let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    decode_json(&slices, digest).map_err(|e| {
        ReadError::Unreadable(format!(
            "the shards {} do not hold the record: {e}",
            names.join(", ")
        ))
    })
}

/// The items of a review, as its status names them.
pub async fn review_items(
    client: &kube::Client,
    review: &crate::api::AccessReview,
) -> Result<Vec<crate::reviews::Item>, ReadError> {
    let ns = review.namespace().unwrap_or_default();
    let status = review.status.clone().unwrap_or_default();
    let digest = status.items_digest.ok_or_else(|| {
        ReadError::Unreadable(format!(
            "AccessReview {ns}/{} has no items yet{}",
            review.name_any(),
            status.message.map(|m| format!(": {m}")).unwrap_or_default()
        ))
    })?;
    read(client, &ns, &status.items_config_maps, &digest, ITEMS_KEY).await
}

/// The evidence record of a review that is over.
pub async fn review_evidence(
    client: &kube::Client,
    review: &crate::api::AccessReview,
) -> Result<crate::reviews::Evidence, ReadError> {
    let ns = review.namespace().unwrap_or_default();
    let evidence = review
        .status
        .as_ref()
        .and_then(|s| s.evidence.clone())
        .ok_or_else(|| {
            ReadError::Unreadable(format!(
                "AccessReview {ns}/{} has no evidence yet: evidence is recorded when the \
                 campaign is over (Completed or Overdue)",
                review.name_any()
            ))
        })?;
    read(
        client,
        &ns,
        &evidence.config_maps,
        &evidence.digest,
        EVIDENCE_KEY,
    )
    .await
}
