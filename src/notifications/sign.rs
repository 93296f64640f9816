//! How a receiver knows a notification is Tailkeeper's, and the same one again.
//!
//! A `Generic` body is signed as Tailscale signs its webhooks (and with the same code,
//! [`crate::webhook`]): `Tailkeeper-Signature: t=<unix>,v1=<hex>`, where `v1` is HMAC-SHA256
//! of `"<t>.<body>"` under the receiver's `secret`. A receiver recomputes it over the raw body,
//! compares in constant time, and refuses a `t` more than five minutes from its clock (each
//! retry is signed afresh). Every delivery also carries `Idempotency-Key`: the same for every
//! attempt, and after a restart, of the same event to the same receiver, so a receiver that
//! remembers the keys it saw drops repeats.

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::webhook::Rejection;

/// The header carrying the signature of a `Generic` body.
pub const SIGNATURE_HEADER: &str = "Tailkeeper-Signature";

/// The header carrying the delivery's idempotency id.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// The signature header for `body` at `timestamp` (Unix seconds) under `secret`.
pub fn sign(body: &[u8], secret: &[u8], timestamp: i64) -> String {
    crate::webhook::sign(body, &[secret], timestamp)
}

/// What a receiver does: check `header` against `body` and `secret` at `now` (well formed,
/// within five minutes, and matching, compared in constant time).
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secret: &[u8],
    now: Timestamp,
) -> Result<(), Rejection> {
    crate::webhook::verify(header, body, &[secret], now).map(|_| ())
}

/// The idempotency id of the delivery of the event `key` to the receiver `notification`: 32 hex
/// characters of SHA-256, so it says nothing about the grant beyond itself.
pub fn delivery_id(key: &str, notification: &str) -> String {
    let digest = Sha256::digest(format!("{key}/{notification}").as_bytes());
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"type":"GrantDecided"}"#;
    const SECRET: &[u8] = b"whsec_test";
    const T: i64 = 1_700_000_000;

    #[test]
    fn signature_matches_a_known_vector() {
        // Computed independently: HMAC-SHA256(key "whsec_test", `1700000000.{"type":"GrantDecided"}`).
        assert_eq!(
            sign(BODY, SECRET, T),
            "t=1700000000,v1=79c329e39598ce1c4c5d6abfa66481d08b50bb12d83f1079e4e3b576ef4cd767"
        );
    }

    #[test]
    fn a_receiver_accepts_only_the_body_signed_with_its_secret_and_fresh() {
        let now = Timestamp::from_second(T + 10).expect("time");
        let header = sign(BODY, SECRET, T);
        assert_eq!(verify(Some(&header), BODY, SECRET, now), Ok(()));
        assert_eq!(
            verify(Some(&header), br#"{"type":"GrantEnded"}"#, SECRET, now),
            Err(Rejection::BadSignature),
            "an altered body"
        );
        assert_eq!(
            verify(Some(&header), BODY, b"another secret", now),
            Err(Rejection::BadSignature),
            "another secret"
        );
        let later = Timestamp::from_second(T + 301).expect("time");
        assert!(matches!(
            verify(Some(&header), BODY, SECRET, later),
            Err(Rejection::Stale { .. })
        ));
        assert_eq!(verify(None, BODY, SECRET, now), Err(Rejection::Unsigned));
    }

    #[test]
    fn the_idempotency_id_depends_on_the_event_and_the_receiver_only() {
        assert_eq!(
            delivery_id("GrantDecided/0b6a1c1e-uid/Active", "requesters"),
            "2bbc27bec870603b39acc2292883859c"
        );
        assert_ne!(
            delivery_id("GrantDecided/0b6a1c1e-uid/Active", "audit"),
            delivery_id("GrantDecided/0b6a1c1e-uid/Active", "requesters")
        );
    }
}
