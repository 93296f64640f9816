//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas only one
//! reconciles and writes.
//!
//! [kube-lease-manager] makes the writes: it creates the Lease on first use, takes a free Lease
//! with a server-side apply (two replicas racing for it conflict, and only one wins), clears an
//! expired one first, renews its own with a strategic-merge patch `grace` before it expires and
//! clears it on release. So it needs `get`, `create` and `patch` on leases, in the lease namespace
//! only; the chart's leader-election Role grants exactly that (never `update`, `list` or
//! `watch`).
//!
//! This module decides when to call it, from its own `get` of the Lease:
//! - A standby reads the Lease every [`RETRY_PERIOD`] and asks the manager to take it once it is
//!   free (released by a leader that shut down: taken over within about a retry period) or
//!   expired (its leader died: taken over within the lease duration). It becomes leader only when
//!   a fresh read of the Lease names it as holder with time to spare.
//! - A leader lets the manager renew the Lease and reads it back after each renewal is due. If
//!   the Lease names another holder, is cleared, or is not seen renewed by [`STEP_DOWN_MARGIN`]
//!   before it expires (the API server is unreachable, say), leadership is lost:
//!   [`Leadership::lost`] resolves and the caller stops its controllers at once, before any other
//!   replica may take the Lease.
//!
//! Timings ([`Timings`], configurable): the Lease lasts [`LEASE_DURATION`] (15 s by default)
//! from each renewal; renewal is due [`RENEW_GRACE`] (5 s) before it expires, which is also the
//! clock skew between nodes that is tolerated; a standby looks every [`RETRY_PERIOD`] (2 s); a
//! leader steps down [`STEP_DOWN_MARGIN`] (1.5 s) before expiry when it has not seen its
//! renewal. Close to client-go's defaults (15 s lease, 10 s renew deadline, 2 s retry). When a
//! leader dies, a standby takes over within the lease duration plus one retry period; a
//! shorter lease hands over faster (revocations are late by at most that) at the price of more
//! Lease writes and less tolerance of a slow API server.
//!
//! [kube-lease-manager]: https://docs.rs/kube-lease-manager

use std::future::Future;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseManagerError, LeaseParams};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// How long a Lease stays valid after its last renewal (default).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// The leader renews this long before its Lease expires (default).
pub const RENEW_GRACE: Duration = Duration::from_secs(5);
/// How often a standby reads the Lease; the delay of a takeover after a release (default).
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);
/// A leader that has not seen its renewal this long before the Lease expires steps down.
pub const STEP_DOWN_MARGIN: Duration = Duration::from_millis(1500);
/// How long one attempt of the manager to take (or renew) the Lease may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a leader waits between renewal checks once its renewal is due.
const CONFIRM_INTERVAL: Duration = Duration::from_millis(500);

/// How long the Lease lasts, when it is renewed, and how often a standby looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    pub lease_duration: Duration,
    pub renew_grace: Duration,
    pub retry_period: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            lease_duration: LEASE_DURATION,
            renew_grace: RENEW_GRACE,
            retry_period: RETRY_PERIOD,
        }
    }
}

impl Timings {
    /// Timings in whole seconds, checked: the renewal must be due early enough to be confirmed
    /// before the step-down deadline, and before the Lease expires.
    pub fn new(lease_duration: u64, renew_grace: u64, retry_period: u64) -> Result<Self, String> {
        let t = Timings {
            lease_duration: Duration::from_secs(lease_duration),
            renew_grace: Duration::from_secs(renew_grace),
            retry_period: Duration::from_secs(retry_period),
        };
        let least_grace = STEP_DOWN_MARGIN + 2 * CONFIRM_INTERVAL;
        if t.renew_grace <= least_grace {
            return Err(format!(
                "the renew grace ({renew_grace}s) must exceed {least_grace:?}, the time to confirm a renewal before stepping down"
            ));
        }
        if t.renew_grace >= t.lease_duration {
            return Err(format!(
                "the renew grace ({renew_grace}s) must be shorter than the lease duration ({lease_duration}s)"
            ));
        }
        if t.retry_period.is_zero() || t.retry_period >= t.lease_duration {
            return Err(format!(
                "the retry period ({retry_period}s) must be at least 1s and shorter than the lease duration ({lease_duration}s)"
            ));
        }
        Ok(t)
    }
}

/// Which Lease to hold, and as whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderElection {
    /// Name of the Lease (`tailkeeper` by default).
    pub lease_name: String,
    /// Namespace of the Lease: the operator's own (`POD_NAMESPACE`).
    pub namespace: String,
    /// Unique among the replicas: the pod name (`POD_NAME`), else `<hostname>-<pid>`.
    pub identity: String,
    pub timings: Timings,
}

impl LeaderElection {
    /// The identity of this process when none is given: `POD_NAME`, else `<hostname>-<pid>`.
    pub fn default_identity() -> String {
        if let Some(pod) = std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()) {
            return pod;
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "tailkeeper".to_string());
        format!("{host}-{}", std::process::id())
    }

    fn params(&self) -> LeaseParams {
        LeaseParams::new(
            self.identity.clone(),
            self.timings.lease_duration.as_secs(),
            self.timings.renew_grace.as_secs(),
        )
    }

    async fn manager(&self, client: &kube::Client) -> Result<LeaseManager, LeaseManagerError> {
        LeaseManager::new(
            client.clone(),
            self.lease_name.clone(),
            self.namespace.clone(),
            self.params(),
            LeaseCreateMode::AutoCreate,
        )
        .await
    }
}

/// The Lease as this process read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Reading {
    holder: Option<String>,
    /// `renewTime + leaseDurationSeconds`; `None` when either is missing (not validly held).
    expires: Option<SystemTime>,
}

impl Reading {
    fn of(lease: Option<&Lease>) -> Reading {
        let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
            return Reading::default();
        };
        let expires = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(renewed), Some(secs)) if secs > 0 => {
                Some(SystemTime::from(renewed.0) + Duration::from_secs(secs.unsigned_abs().into()))
            }
            _ => None,
        };
        Reading {
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            expires,
        }
    }

    /// How long the Lease stays valid from `now` (zero when expired or not held).
    fn remaining(&self, now: SystemTime) -> Duration {
        match (&self.holder, self.expires) {
            (Some(_), Some(expires)) => expires.duration_since(now).unwrap_or_default(),
            _ => Duration::ZERO,
        }
    }

    /// The holder, while the Lease is valid and it is not `me`.
    fn other_holder(&self, me: &str, now: SystemTime) -> Option<&str> {
        self.holder
            .as_deref()
            .filter(|h| *h != me && !self.remaining(now).is_zero())
    }

    fn held_by(&self, me: &str) -> bool {
        self.holder.as_deref() == Some(me)
    }

    /// Held by `me`, and its renewal (`renew_grace` before expiry) is not due yet: safe to
    /// start acting on.
    fn fresh_for(&self, me: &str, now: SystemTime, renew_grace: Duration) -> bool {
        self.held_by(me) && self.remaining(now) > renew_grace
    }
}

/// Read the Lease, giving up after `timeout`.
async fn read(api: &Api<Lease>, name: &str, timeout: Duration) -> Result<Reading, kube::Error> {
    let lease = tokio::time::timeout(timeout, api.get_opt(name))
        .await
        .map_err(|_| {
            kube::Error::Service(format!("reading Lease {name} timed out after {timeout:?}").into())
        })??;
    Ok(Reading::of(lease.as_ref()))
}

/// The local instant until which `reading` says the Lease is valid.
fn valid_until(reading: &Reading) -> Instant {
    Instant::now() + reading.remaining(SystemTime::now())
}

/// Errors a retry cannot fix: missing RBAC, mostly.
fn fatal(error: &LeaseManagerError) -> bool {
    matches!(
        error,
        LeaseManagerError::KubeError(kube::Error::Api(e)) if e.code == 401 || e.code == 403
    )
}

/// This process holds the Lease. Keep [`Leadership::lost`] polled while acting on it (it renews
/// the Lease), and [`Leadership::release`] it on a graceful shutdown.
pub struct Leadership {
    config: LeaderElection,
    api: Api<Lease>,
    manager: LeaseManager,
    /// The Lease as last seen held by us.
    seen: Reading,
}

/// Wait until this process holds the Lease. `None` when `shutdown` resolves first.
pub async fn acquire(
    client: kube::Client,
    config: LeaderElection,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Option<Leadership>> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    info!(
        lease = %config.lease_name,
        namespace = %config.namespace,
        identity = %config.identity,
        "waiting for leadership"
    );
    let retry_period = config.timings.retry_period;
    let mut candidate = Candidate {
        client,
        api,
        config,
        manager: None,
        seen_holder: None,
    };
    tokio::pin!(shutdown);
    loop {
        let step = async {
            let attempt = candidate.attempt().await;
            if matches!(attempt, Ok(None)) {
                tokio::time::sleep(retry_period).await;
            }
            attempt
        };
        let outcome = tokio::select! {
            _ = &mut shutdown => None,
            attempt = step => Some(attempt),
        };
        match outcome {
            Some(Ok(Some(leadership))) => return Ok(Some(leadership)),
            Some(Ok(None)) => {}
            Some(Err(e)) => return Err(e),
            None => {
                // A manager in hand may just have taken the Lease: give it back.
                if let Some(manager) = candidate.manager.take() {
                    let _ = tokio::time::timeout(ATTEMPT_TIMEOUT, manager.release()).await;
                }
                info!("shutdown while waiting for leadership");
                return Ok(None);
            }
        }
    }
}

/// A standby's state between attempts.
struct Candidate {
    client: kube::Client,
    api: Api<Lease>,
    config: LeaderElection,
    /// The manager that is taking or renewing the Lease for us. Dropped whenever another replica
    /// holds it: the manager only re-reads a Lease it believes expired, so a fresh one sees a
    /// release at once.
    manager: Option<LeaseManager>,
    seen_holder: Option<String>,
}

impl Candidate {
    /// One attempt: `Some` once the Lease is ours; `Err` on a problem no retry can fix.
    async fn attempt(&mut self) -> anyhow::Result<Option<Leadership>> {
        let me = self.config.identity.clone();
        let timings = self.config.timings;
        let reading = match read(&self.api, &self.config.lease_name, timings.retry_period).await {
            Ok(r) => r,
            Err(kube::Error::Api(e)) if e.code == 401 || e.code == 403 => {
                return Err(self.forbidden(&e.to_string()));
            }
            Err(e) => {
                warn!(error = %e, "cannot read the leader-election Lease; retrying");
                return Ok(None);
            }
        };
        if let Some(holder) = reading.other_holder(&me, SystemTime::now()) {
            if self.seen_holder.as_deref() != Some(holder) {
                info!(leader = %holder, "standby: another replica leads");
                self.seen_holder = Some(holder.to_string());
            }
            self.manager = None;
            return Ok(None);
        }
        // Free, expired, or ours (a restarted container keeps its pod name): let the manager
        // take, or renew, it.
        if self.manager.is_none() {
            match self.config.manager(&self.client).await {
                Ok(m) => self.manager = Some(m),
                Err(e) if fatal(&e) => return Err(self.forbidden(&e.to_string())),
                Err(e) => {
                    warn!(error = %e, "cannot set up the leader-election Lease; retrying");
                    return Ok(None);
                }
            }
        }
        let Some(manager) = self.manager.as_ref() else {
            return Ok(None);
        };
        match tokio::time::timeout(ATTEMPT_TIMEOUT, manager.changed()).await {
            Ok(Err(e)) if fatal(&e) => return Err(self.forbidden(&e.to_string())),
            Ok(Err(e)) => debug!(error = %e, "taking the Lease failed; retrying"),
            Ok(Ok(_)) | Err(_) => {}
        }
        // Only a fresh read decides.
        let reading = match read(&self.api, &self.config.lease_name, timings.retry_period).await {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %e, "cannot read the Lease back; retrying");
                return Ok(None);
            }
        };
        if reading.fresh_for(&me, SystemTime::now(), timings.renew_grace) {
            info!(
                lease = %self.config.lease_name,
                namespace = %self.config.namespace,
                identity = %me,
                "became leader"
            );
            let Some(manager) = self.manager.take() else {
                return Ok(None);
            };
            return Ok(Some(Leadership {
                seen: reading,
                config: self.config.clone(),
                api: self.api.clone(),
                manager,
            }));
        }
        if !reading.held_by(&me) {
            // Lost a race for it: start from a fresh view next time.
            self.manager = None;
        }
        // Else ours but due for renewal (a restart): the manager renews it on the next attempt.
        Ok(None)
    }

    fn forbidden(&self, error: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "leader election: no access to Lease {} in namespace {} ({error}); grant get, \
             create and patch on coordination.k8s.io leases there, or run with \
             --leader-election=false",
            self.config.lease_name,
            self.config.namespace
        )
    }
}

impl Leadership {
    /// Keeps the Lease renewed; resolves, with the reason, when leadership is lost or can no
    /// longer be confirmed. Stop acting at once then: another replica may take over as soon as
    /// the Lease expires.
    pub async fn lost(&self) -> String {
        let renew = async {
            loop {
                match self.manager.changed().await {
                    Ok(true) => {}
                    Ok(false) => return "the Lease is no longer ours".to_string(),
                    Err(e) => {
                        warn!(error = %e, "cannot renew the Lease; retrying");
                        tokio::time::sleep(CONFIRM_INTERVAL).await;
                    }
                }
            }
        };
        let confirm = async {
            let me = self.config.identity.as_str();
            let timings = self.config.timings;
            let mut seen = self.seen.clone();
            loop {
                let until = valid_until(&seen);
                let deadline = until
                    .checked_sub(STEP_DOWN_MARGIN)
                    .unwrap_or_else(Instant::now);
                // Read once the renewal is due (with a little time for it), then every
                // CONFIRM_INTERVAL until it shows.
                let due = until
                    .checked_sub(timings.renew_grace)
                    .unwrap_or_else(Instant::now)
                    + CONFIRM_INTERVAL;
                let check = async {
                    tokio::time::sleep_until(due).await;
                    loop {
                        match read(&self.api, &self.config.lease_name, timings.retry_period).await {
                            Ok(r) if r.held_by(me) && r.expires > seen.expires => return Ok(r),
                            Ok(r) if !r.held_by(me) => {
                                return Err(match r.holder {
                                    Some(h) => format!("the Lease is now held by {h}"),
                                    None => "the Lease was cleared".to_string(),
                                });
                            }
                            Ok(_) => debug!("renewal of the Lease not seen yet"),
                            Err(e) => debug!(error = %e, "cannot read the Lease"),
                        }
                        tokio::time::sleep(CONFIRM_INTERVAL).await;
                    }
                };
                let outcome = tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => None,
                    result = check => Some(result),
                };
                match outcome {
                    Some(Ok(renewed)) => seen = renewed,
                    Some(Err(reason)) => return reason,
                    None => return "the Lease was not seen renewed before it expires".to_string(),
                }
            }
        };
        tokio::select! {
            reason = renew => reason,
            reason = confirm => reason,
        }
    }

    /// Give the Lease up (graceful shutdown), so a standby takes over at once.
    pub async fn release(self) {
        match tokio::time::timeout(ATTEMPT_TIMEOUT, self.manager.release()).await {
            Ok(Ok(())) => info!(lease = %self.config.lease_name, "released the Lease"),
            Ok(Err(e)) => warn!(error = %e, "cannot release the Lease; it expires by itself"),
            Err(_) => warn!("releasing the Lease timed out; it expires by itself"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(holder: Option<&str>, renewed_secs_ago: Option<u64>, duration: Option<i32>) -> Lease {
        let now = jiff::Timestamp::now();
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(Into::into),
                renew_time: renewed_secs_ago.map(|s| {
                    MicroTime(now - jiff::SignedDuration::from_secs(s.try_into().unwrap()))
                }),
                lease_duration_seconds: duration,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_missing_or_empty_lease_is_free() {
        let now = SystemTime::now();
        for r in [Reading::of(None), Reading::of(Some(&Lease::default()))] {
            assert_eq!(r.other_holder("me", now), None);
            assert!(!r.held_by("me"));
            assert_eq!(r.remaining(now), Duration::ZERO);
        }
    }

    #[test]
    fn a_valid_lease_of_another_replica_blocks() {
        let r = Reading::of(Some(&lease(Some("other"), Some(1), Some(15))));
        let now = SystemTime::now();
        assert_eq!(r.other_holder("me", now), Some("other"));
        assert!(r.remaining(now) > Duration::from_secs(12));
        assert!(!r.fresh_for("me", now, RENEW_GRACE));
    }

    #[test]
    fn an_expired_or_incomplete_lease_of_another_replica_does_not_block() {
        let now = SystemTime::now();
        for l in [
            lease(Some("other"), Some(20), Some(15)),
            lease(Some("other"), None, Some(15)),
            lease(Some("other"), Some(1), None),
            lease(Some(""), Some(1), Some(15)),
        ] {
            let r = Reading::of(Some(&l));
            assert_eq!(r.other_holder("me", now), None, "{l:?}");
        }
    }

    #[test]
    fn our_lease_is_fresh_until_its_renewal_is_due() {
        let now = SystemTime::now();
        assert!(
            Reading::of(Some(&lease(Some("me"), Some(0), Some(15)))).fresh_for(
                "me",
                now,
                RENEW_GRACE
            )
        );
        assert!(
            Reading::of(Some(&lease(Some("me"), Some(8), Some(15)))).fresh_for(
                "me",
                now,
                RENEW_GRACE
            )
        );
        // Within the grace window, or expired (a restarted container): renew first.
        assert!(
            !Reading::of(Some(&lease(Some("me"), Some(12), Some(15)))).fresh_for(
                "me",
                now,
                RENEW_GRACE
            )
        );
        assert!(
            !Reading::of(Some(&lease(Some("me"), Some(30), Some(15)))).fresh_for(
                "me",
                now,
                RENEW_GRACE
            )
        );
        assert!(Reading::of(Some(&lease(Some("me"), Some(30), Some(15)))).held_by("me"));
    }

    #[test]
    fn timings_are_checked() {
        // The defaults pass, and LeaseParams (which panics on inconsistent timings) takes them.
        assert_eq!(Timings::new(15, 5, 2), Ok(Timings::default()));
        let _ = LeaderElection {
            lease_name: "tailkeeper".into(),
            namespace: "default".into(),
            identity: "me".into(),
            timings: Timings::new(8, 3, 1).expect("a short lease"),
        }
        .params();
        // A renewal must be confirmable before the step-down deadline, which comes before
        // expiry; a standby must look more often than the Lease lasts.
        assert!(Timings::new(15, 2, 2).unwrap_err().contains("must exceed"));
        assert!(Timings::new(5, 5, 2)
            .unwrap_err()
            .contains("shorter than the lease duration"));
        assert!(Timings::new(15, 5, 0).unwrap_err().contains("at least 1s"));
        assert!(Timings::new(15, 5, 15).is_err());
    }

    #[test]
    fn the_default_identity_is_the_pod_name_or_host_and_pid() {
        let id = LeaderElection::default_identity();
        match std::env::var("POD_NAME") {
            Ok(pod) if !pod.is_empty() => assert_eq!(id, pod),
            _ => assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}"),
        }
    }
}
