//! The published form of an inventory: gzipped JSON cut into shards that each fit a ConfigMap
//! (whose whole object must stay under 1 MiB), and back. Pure: bytes in, bytes out.

use std::io::{Read, Write};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Inventory;

/// The label on every shard ConfigMap: the UID of the AccessPolicy it belongs to.
pub const POLICY_UID_LABEL: &str = "tailkeeper.io/entitlements-of";
/// The annotation with a shard's digest (all shards of one version share it).
pub const DIGEST_ANNOTATION: &str = "tailkeeper.io/digest";
/// The annotation with a shard's place, `index/count`.
pub const SHARD_ANNOTATION: &str = "tailkeeper.io/shard";
/// The key of a shard's bytes in the ConfigMap's `binaryData`.
pub const DATA_KEY: &str = "inventory.json.gz";

/// Bytes of compressed data per shard: with base64 (4/3) and metadata, well under 1 MiB.
pub const SHARD_BYTES: usize = 700 * 1024;
/// The most shards a reader accepts (about 100 MiB compressed): a bound, not a target.
pub const MAX_SHARDS: usize = 150;
/// The most bytes a reader inflates, so a corrupted or hostile shard cannot exhaust memory.
pub const MAX_INFLATED_BYTES: u64 = 1 << 30;

/// What is published for one AccessPolicy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Published {
    /// `namespace/name` of the AccessPolicy.
    pub policy: String,
    /// The integration's inventory revision it was built from.
    pub revision: String,
    #[serde(flatten)]
    pub inventory: Inventory,
}

/// A published inventory, encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Hex SHA-256 of the uncompressed JSON: equal content, equal digest.
    pub digest: String,
    pub shards: Vec<Vec<u8>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("no shards")]
    Empty,
    #[error("{0} shards is more than the {MAX_SHARDS} a reader accepts")]
    TooMany(usize),
    #[error("the shards do not inflate: {0}")]
    Inflate(String),
    #[error("the record inflates to more than {MAX_INFLATED_BYTES} bytes")]
    TooLarge,
    #[error("the shards' digest is {found}, not {expected}: they are from different versions")]
    Digest { expected: String, found: String },
    #[error("the record is not valid JSON: {0}")]
    Json(String),
}

pub fn encode(published: &Published) -> Result<Encoded, String> {
    encode_json(published)
}

/// Encodes any record the same way (access reviews keep their items and evidence so).
pub fn encode_json<T: Serialize>(value: &T) -> Result<Encoded, String> {
    let json = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    let digest = hex::encode(Sha256::digest(&json));
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(&json).map_err(|e| e.to_string())?;
    let compressed = encoder.finish().map_err(|e| e.to_string())?;
    let shards = compressed
        .chunks(SHARD_BYTES)
        .map(<[u8]>::to_vec)
        .collect::<Vec<_>>();
    Ok(Encoded {
        digest,
        shards: if shards.is_empty() {
            vec![Vec::new()]
        } else {
            shards
        },
    })
}

/// Reassembles shards given in order and checks them against `digest`.
pub fn decode(shards: &[&[u8]], digest: &str) -> Result<Published, DecodeError> {
    decode_json(shards, digest)
}

/// Reassembles shards of any record encoded by [`encode_json`] and checks them against
/// `digest`.
pub fn decode_json<T: serde::de::DeserializeOwned>(
    shards: &[&[u8]],
    digest: &str,
) -> Result<T, DecodeError> {
    if shards.is_empty() {
        return Err(DecodeError::Empty);
    }
    if shards.len() > MAX_SHARDS {
        return Err(DecodeError::TooMany(shards.len()));
    }
    let compressed: Vec<u8> = shards.concat();
    let mut json = Vec::new();
    GzDecoder::new(compressed.as_slice())
        .take(MAX_INFLATED_BYTES + 1)
        .read_to_end(&mut json)
        .map_err(|e| DecodeError::Inflate(e.to_string()))?;
    if json.len() as u64 > MAX_INFLATED_BYTES {
        return Err(DecodeError::TooLarge);
    }
    let found = hex::encode(Sha256::digest(&json));
    if found != digest {
        return Err(DecodeError::Digest {
            expected: digest.to_string(),
            found,
        });
    }
    serde_json::from_slice(&json).map_err(|e| DecodeError::Json(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitlements::{AddedBy, Entitlement, Kind, Member};

    fn published(users: usize, entitlements: usize) -> Published {
        Published {
            policy: "ns/policy".into(),
            revision: "r1".into(),
            inventory: Inventory {
                users: (0..users)
                    .map(|i| Member {
                        login: format!("user{i:05}@example.com"),
                        role: "member".into(),
                        status: "active".into(),
                        user_type: "member".into(),
                        person: Some(format!("Person {i}")),
                        role_granted_by: Vec::new(),
                    })
                    .collect(),
                groups: Vec::new(),
                entitlements: (0..entitlements)
                    .map(|i| Entitlement {
                        id: format!("grant:{:012x}", i * 7919),
                        kind: Kind::Grant,
                        description: format!("group:g{i} → tag:t{i} (tcp:{i})"),
                        locations: vec![format!("grants[{i}]")],
                        src: vec![format!("group:g{i}"), format!("user{i:05}@example.com")],
                        dst: Vec::new(),
                        added_by: AddedBy::Person,
                        holders: i,
                    })
                    .collect(),
                posture: Vec::new(),
            },
        }
    }

    #[test]
    fn an_inventory_comes_back_as_it_was_published() {
        let p = published(50, 20);
        let encoded = encode(&p).expect("encodes");
        assert_eq!(encoded.shards.len(), 1);
        let shards: Vec<&[u8]> = encoded.shards.iter().map(Vec::as_slice).collect();
        assert_eq!(decode(&shards, &encoded.digest), Ok(p));
    }

    #[test]
    fn a_large_inventory_is_cut_into_shards_that_each_fit_a_config_map() {
        // Random-looking logins compress poorly: force several shards.
        let mut p = published(0, 0);
        p.inventory.users = (0..100_000u64)
            .map(|i| Member {
                login: format!(
                    "{:016x}{:016x}@example.com",
                    i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    i.wrapping_mul(0xC2B2_AE3D_27D4_EB4F).rotate_left(17)
                ),
                role: "member".into(),
                status: "active".into(),
                user_type: "member".into(),
                person: None,
                role_granted_by: Vec::new(),
            })
            .collect();
        let encoded = encode(&p).expect("encodes");
        assert!(
            encoded.shards.len() > 1,
            "{} shard(s)",
            encoded.shards.len()
        );
        assert!(encoded.shards.iter().all(|s| s.len() <= SHARD_BYTES));
        let shards: Vec<&[u8]> = encoded.shards.iter().map(Vec::as_slice).collect();
        assert_eq!(
            decode(&shards, &encoded.digest).map(|d| d.inventory.users.len()),
            Ok(100_000)
        );
    }

    #[test]
    fn shards_of_different_versions_or_out_of_order_are_refused() {
        let a = encode(&published(10, 3)).expect("encodes");
        let b = encode(&published(11, 3)).expect("encodes");
        assert_ne!(a.digest, b.digest);
        let b_shards: Vec<&[u8]> = b.shards.iter().map(Vec::as_slice).collect();
        assert!(matches!(
            decode(&b_shards, &a.digest),
            Err(DecodeError::Digest { .. })
        ));
        assert_eq!(decode(&[], &a.digest), Err(DecodeError::Empty));
        assert!(matches!(
            decode(&[b"not gzip"], &a.digest),
            Err(DecodeError::Inflate(_))
        ));
        let many: Vec<&[u8]> = vec![b""; MAX_SHARDS + 1];
        assert_eq!(
            decode(&many, &a.digest),
            Err(DecodeError::TooMany(MAX_SHARDS + 1))
        );
    }

    #[test]
    fn equal_content_has_an_equal_digest() {
        let a = encode(&published(10, 3)).expect("encodes");
        let b = encode(&published(10, 3)).expect("encodes");
        assert_eq!(a.digest, b.digest);
    }
}
