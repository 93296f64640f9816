//! Records too large for an object's status — an access review's items and its evidence — kept
//! as gzipped JSON cut in AccessReviewRecords (the encoding is
//! [`crate::entitlements::shards`]). Used by the operator (writes) and by people's tools
//! (reads).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde::de::DeserializeOwned;

use crate::api::{AccessReview, AccessReviewRecord, AccessReviewRecordSpec, RecordPart};
use crate::entitlements::shards::{decode_json, Encoded, MAX_SHARDS};
use crate::reviews::retention;

/// The label on a review's records: the review's UID.
pub const REVIEW_UID_LABEL: &str = "tailkeeper.io/review-of";
/// The label naming the part (`Items`, `Evidence`).
const PART_LABEL: &str = "tailkeeper.io/record";

/// One set of shards: where and how they are written.
pub struct ShardSet<'a> {
    pub namespace: &'a str,
    /// Names are `<prefix>-<index>`.
    pub prefix: String,
    pub review: String,
    pub part: RecordPart,
    /// The review, for records that go with it (items); evidence belongs to no object, so
    /// deleting the review never takes it.
    pub owner: Option<OwnerReference>,
    /// Until when the records are kept safe from deletion (evidence).
    pub retain_until: Option<jiff::Timestamp>,
    /// The review's UID (labels every record; older shards of the same part are deleted).
    pub review_uid: String,
    pub field_manager: &'a str,
}

fn part_name(part: RecordPart) -> &'static str {
    match part {
        RecordPart::Items => "Items",
        RecordPart::Evidence => "Evidence",
    }
}

fn labels(set: &ShardSet<'_>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (REVIEW_UID_LABEL.to_string(), set.review_uid.clone()),
        (PART_LABEL.to_string(), part_name(set.part).to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "tailkeeper".to_string(),
        ),
    ]);
    if set.retain_until.is_some() {
        labels.insert(retention::LABEL.to_string(), retention::HELD.to_string());
    }
    labels
}

/// Writes every shard and deletes older shards of the same part (evidence is written once and
/// never deleted by the operator); returns the names in order.
pub async fn write(
    client: &kube::Client,
    set: &ShardSet<'_>,
    encoded: &Encoded,
) -> Result<Vec<String>, kube::Error> {
    let api: Api<AccessReviewRecord> = Api::namespaced(client.clone(), set.namespace);
    let count = encoded.shards.len();
    let names: Vec<String> = (0..count).map(|i| format!("{}-{i}", set.prefix)).collect();
    for (index, (name, bytes)) in names.iter().zip(&encoded.shards).enumerate() {
        let record = AccessReviewRecord {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(set.namespace.to_string()),
                labels: Some(labels(set)),
                annotations: set.retain_until.map(|until| {
                    BTreeMap::from([(retention::RETAIN_UNTIL.to_string(), until.to_string())])
                }),
                owner_references: set.owner.clone().map(|o| vec![o]),
                ..Default::default()
            },
            spec: AccessReviewRecordSpec {
                review: set.review.clone(),
                part: set.part,
                shard: format!("{index}/{count}"),
                digest: encoded.digest.clone(),
                data: ByteString(bytes.clone()),
            },
        };
        api.patch(
            name,
            &PatchParams::apply(set.field_manager).force(),
            &Patch::Apply(&record),
        )
        .await?;
    }
    if set.part == RecordPart::Evidence {
        return Ok(names);
    }
    let keep: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let selector = format!(
        "{REVIEW_UID_LABEL}={},{PART_LABEL}={}",
        set.review_uid,
        part_name(set.part)
    );
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

/// Reads the shards `names` (in order) of `review`'s `part` and checks them against `digest`.
pub async fn read<T: DeserializeOwned>(
    client: &kube::Client,
    namespace: &str,
    review: &str,
    part: RecordPart,
    names: &[String],
    digest: &str,
) -> Result<T, ReadError> {
    if names.len() > MAX_SHARDS {
        return Err(ReadError::Unreadable(format!(
            "{} shards is more than the {MAX_SHARDS} a reader accepts",
            names.len()
        )));
    }
    let api: Api<AccessReviewRecord> = Api::namespaced(client.clone(), namespace);
    let mut parts = Vec::with_capacity(names.len());
    for name in names {
        let record = api.get_opt(name).await?.ok_or_else(|| {
            ReadError::Unreadable(format!("AccessReviewRecord {namespace}/{name} is missing"))
        })?;
        if record.spec.review != review || record.spec.part != part {
            return Err(ReadError::Unreadable(format!(
                "AccessReviewRecord {namespace}/{name} belongs to another review or part"
            )));
        }
        if record.spec.digest != digest {
            return Err(ReadError::Unreadable(format!(
                "AccessReviewRecord {namespace}/{name} holds another version"
            )));
        }
        parts.push(record.spec.data.0);
    }
    let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    decode_json(&slices, digest).map_err(|e| {
        ReadError::Unreadable(format!(
            "the records {} do not hold the {}: {e}",
            names.join(", "),
            part_name(part).to_lowercase()
        ))
    })
}

/// The items of a review, as its status names them.
pub async fn review_items(
    client: &kube::Client,
    review: &AccessReview,
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
    read(
        client,
        &ns,
        &review.name_any(),
        RecordPart::Items,
        &status.items_records,
        &digest,
    )
    .await
}

/// The evidence record of a review that is over.
pub async fn review_evidence(
    client: &kube::Client,
    review: &AccessReview,
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
        &review.name_any(),
        RecordPart::Evidence,
        &evidence.records,
        &evidence.digest,
    )
    .await
}
