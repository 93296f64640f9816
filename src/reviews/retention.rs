//! How long a campaign's evidence is kept safe from deletion, pure: when it may go
//! ([`retain_until`]) and whether a record's time has come ([`check`]). The chart's admission
//! policy refuses to delete a record labelled [`HELD`]; only the operator, once the time has
//! passed, labels it [`RELEASED`].

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// The label saying whether a record is still kept (`held`) or may be deleted (`released`).
pub const LABEL: &str = "tailkeeper.io/retention";
pub const HELD: &str = "held";
pub const RELEASED: &str = "released";
/// The annotation with the instant (RFC 3339) until which a record is kept.
pub const RETAIN_UNTIL: &str = "tailkeeper.io/retain-until";

/// The retention when the policy sets none: a year, what audits commonly ask.
pub const DEFAULT: Duration = Duration::from_secs(365 * 86400);

/// Until when evidence of a campaign that ended at `ended` is kept, under the policy's
/// `evidenceRetention` (which the API server has validated; anything unreadable counts as the
/// default, never as less).
pub fn retain_until(retention: Option<&str>, ended: Timestamp) -> Timestamp {
    let keep = retention
        .and_then(|r| crate::duration::parse(r).ok())
        .unwrap_or(DEFAULT);
    let keep = SignedDuration::try_from(keep).unwrap_or(SignedDuration::MAX);
    ended.checked_add(keep).unwrap_or(Timestamp::MAX)
}

/// Where a held record stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Retention {
    /// Its time has passed: label it released.
    Release,
    /// Keep it until then.
    Until(Timestamp),
    /// It says not until when (written by hand, or damaged): kept, for good.
    Unknown(String),
}

/// Whether a held record (its annotations) may be released at `now`.
pub fn check(annotations: Option<&BTreeMap<String, String>>, now: Timestamp) -> Retention {
    let Some(text) = annotations.and_then(|a| a.get(RETAIN_UNTIL)) else {
        return Retention::Unknown(format!("it has no {RETAIN_UNTIL} annotation"));
    };
    match text.parse::<Timestamp>() {
        Ok(until) if until <= now => Retention::Release,
        Ok(until) => Retention::Until(until),
        Err(e) => Retention::Unknown(format!("its {RETAIN_UNTIL} {text:?} is no instant: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn evidence_is_kept_for_the_policys_retention_else_a_year() {
        let ended = at("2026-03-01T00:00:00Z");
        assert_eq!(
            retain_until(Some("720h"), ended),
            at("2026-03-31T00:00:00Z")
        );
        assert_eq!(retain_until(None, ended), at("2027-03-01T00:00:00Z"));
        assert_eq!(
            retain_until(Some("soon"), ended),
            at("2027-03-01T00:00:00Z"),
            "unreadable is never less"
        );
    }

    #[test]
    fn a_record_is_released_only_once_its_time_has_passed() {
        let annotations = |v: &str| BTreeMap::from([(RETAIN_UNTIL.to_string(), v.to_string())]);
        let now = at("2026-06-01T12:00:00Z");
        assert_eq!(
            check(Some(&annotations("2026-06-01T12:00:01Z")), now),
            Retention::Until(at("2026-06-01T12:00:01Z"))
        );
        assert_eq!(
            check(Some(&annotations("2026-06-01T12:00:00Z")), now),
            Retention::Release
        );
        assert!(matches!(
            check(Some(&annotations("next year")), now),
            Retention::Unknown(_)
        ));
        assert!(matches!(check(None, now), Retention::Unknown(_)));
    }
}
