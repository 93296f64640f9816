//! What each policy changed in Tailscale in the last day, counted in people, across
//! enforcement and every access review of the policy, for `maxChangesPer24Hours`. The durable
//! record is in status (the policy's `enforcement.actions`, each campaign's
//! `recentRevocations`); this journal adds what this process changed since, which a cache may
//! not show yet. Changing Tailscale under a policy's limits happens under the policy's lock,
//! so two campaigns, or a campaign and enforcement, cannot both take the last of the day's room.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use jiff::Timestamp;
use kube::ResourceExt;

use super::context::{key_of, Context, Key};
use crate::api::AccessPolicy;
use crate::compliance::limits::{self, DAY};
use crate::compliance::Directory;

#[derive(Default)]
pub struct Journal {
    changed: Mutex<HashMap<Key, Vec<(String, Timestamp)>>>,
    locks: super::ledger::Locks,
}

impl Journal {
    /// Hold the policy's limits while changing Tailscale under them.
    pub async fn lock(&self, policy: &Key) -> tokio::sync::OwnedMutexGuard<()> {
        self.locks.lock(policy).await
    }

    /// Note that the policy changed `person` (a [`limits::person_of`] key) at `at`.
    pub fn record(&self, policy: &Key, person: String, at: Timestamp) {
        if let Ok(mut changed) = self.changed.lock() {
            let entries = changed.entry(policy.clone()).or_default();
            entries.retain(|(_, when)| *when > at - DAY);
            entries.push((person, at));
        }
    }

    fn recorded(&self, policy: &Key, now: Timestamp) -> Vec<String> {
        self.changed.lock().ok().map_or_else(Vec::new, |changed| {
            changed
                .get(policy)
                .into_iter()
                .flatten()
                .filter(|(_, at)| *at > now - DAY)
                .map(|(person, _)| person.clone())
                .collect()
        })
    }
}

/// The people `policy` changed in the day before `now`: its enforcement actions, the
/// revocations of each of its campaigns, and what this process recorded. `None` until the
/// campaigns' cache has been listed (nothing may be changed under the limits before).
pub fn recent_people(
    ctx: &Context,
    policy: &AccessPolicy,
    directory: &Directory,
    now: Timestamp,
) -> Option<BTreeSet<String>> {
    let key = key_of(policy);
    let reviews = ctx.reviews_of(&key.0, &policy.name_any())?;
    let enforcement = policy
        .status
        .as_ref()
        .and_then(|s| s.enforcement.as_ref())
        .map(|e| e.actions.as_slice())
        .unwrap_or_default();
    let mut people = limits::changed_in_last_day(
        directory,
        enforcement
            .iter()
            .map(|a| (a.login_name.as_str(), a.at.0))
            .chain(reviews.iter().flat_map(|r| {
                r.status
                    .iter()
                    .flat_map(|s| s.recent_revocations.iter())
                    .map(|c| (c.login_name.as_str(), c.at.0))
            })),
        now,
    );
    people.extend(ctx.changes.recorded(&key, now));
    Some(people)
}
