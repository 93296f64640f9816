//! The enforcement limits, counted in people and per policy. Whatever a policy changes in
//! Tailscale (enforcement's suspensions, role changes and removals of entries, and every access
//! review's revocations) counts against the same daily limit, and each limit counts distinct
//! people: suspending someone and removing their entries is one person, so is revoking three of
//! their holdings. A person is the directory's (all their logins), or a login the directory
//! does not know.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};

use super::directory::{login_key, Directory};

/// The day `maxChangesPer24Hours` looks back over.
pub const DAY: SignedDuration = SignedDuration::from_hours(24);

/// The person a login belongs to, as a key: the directory person's first login, else the
/// login itself (both compared case-insensitively).
pub fn person_of(directory: &Directory, login: &str) -> String {
    directory
        .lookup(login)
        .and_then(|p| p.login_names.first())
        .map_or_else(|| login_key(login), |first| login_key(first))
}

/// The people changed in the day before `now`, from changes given as (login, when).
pub fn changed_in_last_day<'a>(
    directory: &Directory,
    changes: impl IntoIterator<Item = (&'a str, Timestamp)>,
    now: Timestamp,
) -> BTreeSet<String> {
    let since = now - DAY;
    changes
        .into_iter()
        .filter(|(_, at)| *at > since)
        .map(|(login, _)| person_of(directory, login))
        .collect()
}

/// How many people `max_affected_percent` of `members` lets one evaluation change: the share
/// rounded down, yet at least one person unless the limit is 0 (else nobody could ever be
/// handled in a tailnet of fewer than 100 / percent members).
pub fn blast_radius(members: usize, max_affected_percent: i32) -> usize {
    let percent = max_affected_percent.clamp(0, 100) as usize;
    if percent == 0 {
        return 0;
    }
    (members * percent / 100).max(1)
}

/// How many more people may be changed today, after `recent`, under `max_per_day`. People in
/// `recent` may be changed again without room: they are counted once.
pub fn room_today(recent: &BTreeSet<String>, max_per_day: i32) -> usize {
    (max_per_day.clamp(0, 100) as usize).saturating_sub(recent.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::{EmploymentStatus, Person};
    use proptest::prelude::*;

    fn directory() -> Directory {
        let person = |logins: &[&str], status| Person {
            login_names: logins.iter().map(|l| l.to_string()).collect(),
            display_name: None,
            org_role: Some("engineer".into()),
            status,
            kubernetes_users: Vec::new(),
            kubernetes_groups: Vec::new(),
            manager: None,
        };
        Directory::build([(
            "inline",
            vec![
                person(
                    &["alice@example.com", "alice@github"],
                    EmploymentStatus::Active,
                ),
                person(&["bob@example.com"], EmploymentStatus::Offboarded),
            ],
        )])
        .expect("directory")
    }

    #[test]
    fn a_persons_logins_are_one_person_and_strangers_are_their_login() {
        let d = directory();
        assert_eq!(person_of(&d, "Alice@GitHub"), "alice@example.com");
        assert_eq!(person_of(&d, "alice@example.com"), "alice@example.com");
        assert_eq!(person_of(&d, "Eve@example.com"), "eve@example.com");
    }

    #[test]
    fn only_the_last_day_counts() {
        let d = directory();
        let now: Timestamp = "2026-06-02T12:00:00Z".parse().unwrap();
        let people = changed_in_last_day(
            &d,
            [
                ("alice@example.com", now - SignedDuration::from_hours(1)),
                ("alice@github", now - SignedDuration::from_hours(2)),
                ("bob@example.com", now - SignedDuration::from_hours(25)),
            ],
            now,
        );
        assert_eq!(people, BTreeSet::from(["alice@example.com".to_string()]));
    }

    proptest! {
        #[test]
        fn at_least_one_person_unless_the_limit_is_zero(members in 0usize..500, percent in -5i32..120) {
            let allowed = blast_radius(members, percent);
            if percent <= 0 {
                prop_assert_eq!(allowed, 0);
            } else {
                prop_assert!(allowed >= 1);
                // Never more than the share, but for the one person a small tailnet is given.
                prop_assert!(allowed == 1 || allowed * 100 <= members * percent.min(100) as usize);
            }
        }

        #[test]
        fn room_is_what_the_day_has_left_in_people(recent in prop::collection::btree_set("[a-e]", 0..6), limit in -3i32..110) {
            let room = room_today(&recent, limit);
            prop_assert_eq!(room + recent.len().min(limit.clamp(0, 100) as usize), limit.clamp(0, 100) as usize);
        }
    }
}
