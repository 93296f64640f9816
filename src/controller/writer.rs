//! The policy writer: the only code that writes the policy file. One runs per tailnet
//! (integration) and folds every pending change, from every grant, into one read-modify-write:
//! GET the HuJSON with its ETag, apply the minimal edits for the desired state, POST with
//! If-Match; on 412 re-read and re-apply. A file that cannot be parsed is never overwritten.
//!
//! The desired state is the union of the entries of every grant the ledger holds. It is seeded
//! from the integration's `GrantLedger` when the writer starts, so a restart loses nothing, and is
//! then kept current by requests. Grants are named by (namespace, UID). Ownership in the file
//! itself is fenced by marker comments carrying the integration's identity (see
//! [`crate::policy_file`]), so two installations never remove each other's entries.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::api::{Api, ListParams};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::api::{GrantLedger, RuleTemplate};
use crate::grants::rule_entries;
use crate::policy_file::{self, Entries, Owner, PolicyFileError};
use crate::tailscale;

use super::context::Key;

/// How many times a write met a changed file (412) before the round gives up.
const MAX_CONFLICTS: u32 = 5;

/// How long the writer waits for more requests after one arrives, and at most, before writing.
#[derive(Clone, Copy, Debug)]
pub struct BatchWindow {
    pub quiet: Duration,
    pub max: Duration,
}

impl Default for BatchWindow {
    fn default() -> Self {
        Self {
            quiet: Duration::from_millis(80),
            max: Duration::from_millis(600),
        }
    }
}

/// A grant's entries as the writer holds them, with when they lapse.
#[derive(Clone, Debug)]
struct Held {
    entries: Entries,
    expires: Option<Timestamp>,
}

/// What a grant asks of the policy file.
#[derive(Clone, Debug)]
pub enum Want {
    /// Exactly these entries (a group membership, an ssh entry, or entries recorded earlier).
    Entries(Entries),
    /// A network rule template for a user: `grants` or legacy `acls` entries, whichever the
    /// file uses, decided at write time.
    Rule {
        template: RuleTemplate,
        login: String,
    },
}

/// The writer's answer to a request.
#[derive(Clone, Debug)]
pub struct Written {
    /// The entries now in force for the grant (record them in its status).
    pub entries: Entries,
    /// Memberships that were already in the file without Tailkeeper (not owned by the grant).
    pub already_present: Vec<(String, String)>,
    /// Whether this round changed the file.
    pub changed: bool,
}

/// Why a request could not be carried out.
#[derive(Clone, Debug, thiserror::Error)]
pub enum WriteError {
    /// Tailscale refused this grant's change (for example the policy's `tests` fail with it).
    #[error("Tailscale refused the change: {0}")]
    Rejected(String),
    /// The policy file cannot be parsed: it is never overwritten; a person must fix it.
    #[error("the policy file cannot be parsed, so Tailkeeper will not overwrite it: {0}")]
    Unparsable(String),
    /// The credential may not write the policy file (HTTP 403: the `policy_file` scope).
    #[error("{0}")]
    Forbidden(String),
    /// Tailscale refused the integration's credential (HTTP 401): a person must fix it.
    #[error("{0}")]
    Unauthorized(String),
    /// Every attempt met a policy file changed since it was read (HTTP 412 each time).
    #[error("{0}")]
    Contended(String),
    /// Tailscale failed or could not be reached; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A person removed or changed this grant's entries in Tailscale: they are not put back.
    #[error("{0}")]
    RemovedInTailscale(String),
}

struct Request {
    grant: Key,
    /// `None` drops the grant's entries.
    want: Option<Want>,
    /// Only look: read the file and notice entries a person removed (`grant` and `want` unused).
    verify: bool,
    /// When the entries lapse: the writer removes them at that instant by itself.
    expires: Option<Timestamp>,
    reply: oneshot::Sender<Result<Written, WriteError>>,
}

/// A handle to one tailnet's writer task.
#[derive(Clone)]
pub struct PolicyWriter {
    tx: mpsc::UnboundedSender<Request>,
}

impl PolicyWriter {
    /// Ask that `grant`'s entries be in the file until `expires`; resolves once they are (or
    /// cannot be). At `expires` the writer takes them out by itself, without waiting for anyone.
    pub async fn want(
        &self,
        grant: Key,
        want: Want,
        expires: Option<Timestamp>,
    ) -> Result<Written, WriteError> {
        self.request(grant, Some(want), expires).await
    }

    /// Ask that `grant`'s entries leave the file (those another active grant also wants stay).
    pub async fn drop_grant(&self, grant: Key) -> Result<Written, WriteError> {
        self.request(grant, None, None).await
    }

    /// Ask the writer to read the file and notice entries of its grants that a person removed
    /// or changed (after a change Tailkeeper did not make); does not wait.
    pub fn verify(&self) {
        let (reply, _) = oneshot::channel();
        let _ = self.tx.send(Request {
            grant: (String::new(), String::new()),
            want: None,
            verify: true,
            expires: None,
            reply,
        });
    }

    async fn request(
        &self,
        grant: Key,
        want: Option<Want>,
        expires: Option<Timestamp>,
    ) -> Result<Written, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request {
                grant,
                want,
                verify: false,
                expires,
                reply,
            })
            .map_err(|_| WriteError::Unavailable("the policy writer stopped".into()))?;
        rx.await
            .unwrap_or_else(|_| Err(WriteError::Unavailable("the policy writer stopped".into())))
    }
}

/// Counters of the writers' work, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub writes: std::sync::atomic::AtomicU64,
    pub conflicts: std::sync::atomic::AtomicU64,
    pub rounds: std::sync::atomic::AtomicU64,
}

/// The writers of every tailnet, created on first use.
#[derive(Default)]
pub struct Writers {
    map: Mutex<HashMap<Key, (u64, Owner, PolicyWriter)>>,
    pub stats: Arc<WriterStats>,
    pub window: BatchWindow,
    /// Told the integration after each write, so it syncs and its inventory follows at once.
    written: std::sync::OnceLock<WriteNotice>,
    /// Grants whose entries a person removed or changed, with what and who, until dropped.
    drifted: Arc<Mutex<HashMap<Key, String>>>,
    /// Told each grant (namespace, UID) found drifted, so its reconciler ends it.
    drift_notice: std::sync::OnceLock<mpsc::UnboundedSender<Key>>,
}

/// Where a writer says that it changed an integration's policy file.
pub type WriteNotice = futures::channel::mpsc::Sender<
    kube::runtime::reflector::ObjectRef<crate::api::TailscaleIntegration>,
>;

impl Writers {
    pub fn new(window: BatchWindow) -> Self {
        Self {
            window,
            ..Default::default()
        }
    }

    /// After each write, send the integration's reference to `notice` (once set, for good).
    pub fn notify_writes_to(&self, notice: WriteNotice) {
        let _ = self.written.set(notice);
    }

    /// Send the (namespace, UID) of each grant found drifted to `notice` (once set, for good).
    pub fn notify_drift_to(&self, notice: mpsc::UnboundedSender<Key>) {
        let _ = self.drift_notice.set(notice);
    }

    /// What a person removed or changed of grant `grant`'s entries (namespace, UID), if so.
    pub fn drift(&self, grant: &Key) -> Option<String> {
        lock(&self.drifted).get(grant).cloned()
    }

    /// Ask the writer of `integration`, if one runs, to look for entries a person removed.
    pub fn verify(&self, integration: &Key) {
        if let Some((_, _, writer)) = lock(&self.map).get(integration) {
            writer.verify();
        }
    }

    /// The writer of an integration. A new Tailscale client (`fingerprint` changed) starts a new
    /// writer, seeded afresh.
    pub fn get(
        &self,
        kube: &kube::Client,
        integration: &Key,
        fingerprint: u64,
        client: &tailscale::Client,
        owner: &Owner,
    ) -> PolicyWriter {
        let mut map = lock(&self.map);
        // A new client, or a new integration under the same name (another owner), starts anew.
        if let Some((fp, o, w)) = map.get(integration) {
            if *fp == fingerprint && o == owner && !w.tx.is_closed() {
                return w.clone();
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let task = WriterTask {
            kube: kube.clone(),
            integration: integration.clone(),
            client: client.clone(),
            owner: owner.clone(),
            wanted: None,
            retry_at: None,
            in_sync: false,
            window: self.window,
            stats: self.stats.clone(),
            written: self.written.get().cloned(),
            placed: BTreeMap::new(),
            drifted: self.drifted.clone(),
            drift_notice: self.drift_notice.get().cloned(),
            last_notice: None,
            notice_due: None,
        };
        tokio::spawn(task.run(rx));
        let writer = PolicyWriter { tx };
        map.insert(
            integration.clone(),
            (fingerprint, owner.clone(), writer.clone()),
        );
        writer
    }
}

struct WriterTask {
    kube: kube::Client,
    integration: Key,
    client: tailscale::Client,
    /// Whose entries this writer keeps (the identity in its markers).
    owner: Owner,
    /// Entries of every active grant; `None` until seeded.
    wanted: Option<BTreeMap<Key, Held>>,
    /// After a failed round that only removed lapsed entries, when to try again.
    retry_at: Option<Instant>,
    /// Whether the file has matched `wanted` since the writer started: until then a round must
    /// read the file even for a drop (entries of grants that lapsed while nothing ran are in
    /// it, and only a round takes them out).
    in_sync: bool,
    window: BatchWindow,
    stats: Arc<WriterStats>,
    written: Option<WriteNotice>,
    /// Grants whose entries this writer saw in the file after writing them, and since when: if
    /// they go missing, a person removed or changed them.
    placed: BTreeMap<Key, Timestamp>,
    drifted: Arc<Mutex<HashMap<Key, String>>>,
    drift_notice: Option<mpsc::UnboundedSender<Key>>,
    /// When the integration was last told of a write, and when a held-back notice is due.
    last_notice: Option<Instant>,
    notice_due: Option<Instant>,
}

/// The least time between two write notices to an integration (each costs a sync).
const NOTICE_INTERVAL: Duration = Duration::from_secs(2);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl WriterTask {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        loop {
            // Wake for the next request, or at the next expiry to take lapsed entries out: a
            // grant's access ends on time even while its reconciler is busy elsewhere.
            // A write notice held back during a burst is due then too.
            let wake = match (self.next_wake(), self.notice_due) {
                (Some(expiry), Some(notice)) => Some(expiry.min(notice)),
                (expiry, notice) => expiry.or(notice),
            };
            let first = match wake {
                Some(at) => tokio::select! {
                    r = rx.recv() => match r {
                        Some(r) => r,
                        None => return,
                    },
                    _ = tokio::time::sleep_until(at.into()) => {
                        if self.notice_due.is_some_and(|due| due <= Instant::now()) {
                            self.notice_due = None;
                            self.tell_written();
                        }
                        if self.next_wake().is_some_and(|at| at <= Instant::now()) {
                            let ok = self.flush(Vec::new()).await;
                            self.retry_at =
                                (!ok).then(|| Instant::now() + Duration::from_secs(1));
                        }
                        continue;
                    }
                },
                None => match rx.recv().await {
                    Some(r) => r,
                    None => return,
                },
            };
            let mut batch = vec![first];
            let started = Instant::now();
            // Fold whatever else arrives while requests keep coming, up to the window.
            loop {
                // An expiry due meanwhile ends the window: lapsed access goes first.
                let until_expiry = self.next_wake().map_or(self.window.max, |at| {
                    at.saturating_duration_since(Instant::now())
                });
                let left = self
                    .window
                    .max
                    .saturating_sub(started.elapsed())
                    .min(until_expiry);
                if left.is_zero() {
                    break;
                }
                match tokio::time::timeout(self.window.quiet.min(left), rx.recv()).await {
                    Ok(Some(r)) => batch.push(r),
                    Ok(None) | Err(_) => break,
                }
            }
            if self.flush(batch).await {
                self.retry_at = None;
            }
        }
    }

    /// The earliest expiry of the entries held (or the retry time after a failed removal).
    fn next_wake(&self) -> Option<Instant> {
        let now = Timestamp::now();
        let earliest = self
            .wanted
            .as_ref()?
            .values()
            .filter_map(|h| h.expires)
            .min()?;
        let wait = Duration::try_from(earliest.duration_since(now)).unwrap_or(Duration::ZERO);
        let at = Instant::now() + wait;
        Some(self.retry_at.map_or(at, |r| r.max(at)))
    }

    /// Seed the desired state from the integration's ledgers: every hold with policy-file
    /// entries that has not expired.
    async fn seed(&self) -> Result<BTreeMap<Key, Held>, WriteError> {
        let (ns, name) = &self.integration;
        let ledgers = Api::<GrantLedger>::namespaced(self.kube.clone(), ns)
            .list(
                &ListParams::default()
                    .labels(&format!("{}={name}", super::ledger::INTEGRATION_LABEL)),
            )
            .await
            .map_err(|e| {
                WriteError::Unavailable(format!(
                    "cannot read the grant ledgers to seed the policy writer: {e}"
                ))
            })?;
        let now = Timestamp::now();
        let mut wanted = BTreeMap::new();
        for (key, entries, expires) in ledgers
            .items
            .iter()
            .flat_map(|l| super::ledger::seeded_entries(&l.spec, ns))
        {
            // Entries of standing grants (no expiry) are wanted until their grant ends.
            if expires.is_none_or(|at| at > now) {
                wanted.insert(key, Held { entries, expires });
            }
        }
        debug!(integration = %name, grants = wanted.len(), "policy writer seeded");
        Ok(wanted)
    }

    /// One read-modify-write for `batch` (and for entries that lapsed); false when it failed.
    async fn flush(&mut self, batch: Vec<Request>) -> bool {
        self.stats
            .rounds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.wanted.is_none() {
            match self.seed().await {
                Ok(w) => self.wanted = Some(w),
                Err(e) => {
                    for r in batch {
                        let _ = r.reply.send(Err(e.clone()));
                    }
                    return false;
                }
            }
        }
        // Drops of grants the writer no longer holds (their entries lapsed and were taken out
        // at expiry) need no round trip; answering them at once keeps the next expiry on time.
        let now = Timestamp::now();
        let held = self.wanted.as_ref().filter(|_| self.in_sync);
        let lapsed =
            held.is_some_and(|w| w.values().any(|h| h.expires.is_some_and(|at| at <= now)));
        let (verify, batch): (Vec<Request>, Vec<Request>) =
            batch.into_iter().partition(|r| r.verify);
        let verify = !verify.is_empty();
        // A grant found drifted is not put back: its reconciler ends it (and then drops it).
        let batch = self.refuse_drifted(batch);
        for r in batch.iter().filter(|r| r.want.is_none()) {
            lock(&self.drifted).remove(&r.grant);
        }
        let held = self.wanted.as_ref().filter(|_| self.in_sync);
        let (idle, batch): (Vec<Request>, Vec<Request>) = batch
            .into_iter()
            .partition(|r| r.want.is_none() && held.is_some_and(|w| !w.contains_key(&r.grant)));
        for r in idle {
            let _ = r.reply.send(Ok(Written {
                entries: Entries::default(),
                already_present: Vec::new(),
                changed: false,
            }));
        }
        if batch.is_empty() && !lapsed && !verify {
            return true;
        }
        let mut pending: Vec<Request> = batch;
        let mut conflicts = 0;
        loop {
            let file = match self.client.get_policy_file().await {
                Ok(f) => f,
                Err(e) if e.is_forbidden() => {
                    reply_all(pending, WriteError::Forbidden(e.tailscale_message()));
                    return false;
                }
                Err(e) if e.is_unauthorized() => {
                    reply_all(pending, WriteError::Unauthorized(e.to_string()));
                    return false;
                }
                Err(e) => {
                    reply_all(pending, WriteError::Unavailable(e.to_string()));
                    return false;
                }
            };
            let now = Timestamp::now();
            // Entries this writer had placed that are gone: a person removed or changed them.
            // Tailkeeper never puts them back; the grant ends instead.
            let current = self.wanted.clone().unwrap_or_default();
            for key in self.drift(&file.text, &current, now).await {
                if let Some(w) = self.wanted.as_mut() {
                    w.remove(&key);
                }
            }
            pending = self.refuse_drifted(pending);
            let legacy = match policy_file::uses_legacy_acls(&file.text) {
                Ok(l) => l,
                Err(e) => {
                    reply_all(pending, unparsable(e));
                    return false;
                }
            };
            // The grants of this round, resolved against the file's form.
            let resolved: Vec<(Key, Option<Entries>)> = pending
                .iter()
                .map(|r| (r.grant.clone(), r.want.as_ref().map(|w| resolve(w, legacy))))
                .collect();
            let mut base = self.wanted.clone().unwrap_or_default();
            base.retain(|_, h| h.expires.is_none_or(|at| at > now));
            let mut next = base.clone();
            for (r, (key, entries)) in pending.iter().zip(&resolved) {
                match entries {
                    Some(e) if r.expires.is_none_or(|at| at > now) => {
                        next.insert(
                            key.clone(),
                            Held {
                                entries: e.clone(),
                                expires: r.expires,
                            },
                        );
                    }
                    _ => {
                        next.remove(key);
                    }
                }
            }
            // Editing a large file is CPU work: off the async workers, so nothing else (the
            // Lease renewal above all) waits behind it.
            let (text, wanted, owner) = (file.text.clone(), desired(&next), self.owner.clone());
            let edited =
                tokio::task::spawn_blocking(move || policy_file::reconcile(&text, &owner, &wanted))
                    .await
                    .unwrap_or_else(|e| {
                        Err(PolicyFileError::Internal(format!(
                            "the edit task failed: {e}"
                        )))
                    });
            let outcome = match edited {
                Ok(o) => o,
                Err(e) => {
                    reply_all(pending, unparsable(e));
                    return false;
                }
            };
            if !outcome.changed {
                self.mark_placed(&next, now);
                self.wanted = Some(next);
                self.in_sync = true;
                self.reply_written(pending, resolved, outcome.already_present, false);
                return true;
            }
            match self
                .client
                .set_policy_file(&outcome.text, Some(&file.etag))
                .await
            {
                Ok(_) => {
                    self.stats
                        .writes
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    info!(integration = %self.integration.1, added = outcome.added.len(), removed = outcome.removed.len(), "policy file written");
                    self.mark_placed(&next, now);
                    self.written_now();
                    self.wanted = Some(next);
                    self.in_sync = true;
                    self.reply_written(pending, resolved, outcome.already_present, true);
                    return true;
                }
                Err(e) if e.is_precondition_failed() && conflicts >= MAX_CONFLICTS => {
                    reply_all(
                        pending,
                        WriteError::Contended(format!(
                            "the policy file changed under each of {} attempts to write it (HTTP 412 each time); retrying",
                            conflicts + 1
                        )),
                    );
                    return false;
                }
                Err(e) if e.is_forbidden() => {
                    reply_all(pending, WriteError::Forbidden(e.tailscale_message()));
                    return false;
                }
                Err(e) if e.is_unauthorized() => {
                    reply_all(pending, WriteError::Unauthorized(e.to_string()));
                    return false;
                }
                Err(e) if e.is_precondition_failed() => {
                    // Someone else wrote in between: re-read and re-apply.
                    conflicts += 1;
                    self.stats
                        .conflicts
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    debug!(
                        conflicts,
                        "policy file changed during the write; re-reading"
                    );
                }
                Err(e) if e.status() == Some(400) => {
                    // Find the grants whose change Tailscale refuses; fail those, keep the rest.
                    let culprits = self.find_rejected(&file.text, &base, &resolved).await;
                    if culprits.is_empty() {
                        reply_all(
                            pending,
                            WriteError::Unavailable(format!(
                                "Tailscale refused the policy file: {}",
                                e.tailscale_message()
                            )),
                        );
                        return false;
                    }
                    let mut kept = Vec::new();
                    for r in pending {
                        match culprits.iter().find(|(k, _)| *k == r.grant) {
                            Some((_, message)) => {
                                let _ = r.reply.send(Err(WriteError::Rejected(message.clone())));
                            }
                            None => kept.push(r),
                        }
                    }
                    if kept.is_empty() {
                        return true;
                    }
                    pending = kept;
                }
                Err(e) => {
                    reply_all(pending, WriteError::Unavailable(e.to_string()));
                    return false;
                }
            }
        }
    }

    /// Answer the requests that want entries of a drifted grant with what a person removed;
    /// return the others.
    fn refuse_drifted(&self, requests: Vec<Request>) -> Vec<Request> {
        let drifted = lock(&self.drifted);
        let (refused, kept): (Vec<Request>, Vec<Request>) = requests
            .into_iter()
            .partition(|r| r.want.is_some() && drifted.contains_key(&r.grant));
        for r in refused {
            let detail = drifted.get(&r.grant).cloned().unwrap_or_default();
            let _ = r.reply.send(Err(WriteError::RemovedInTailscale(detail)));
        }
        kept
    }

    /// After a write: tell the integration (it syncs, so its inventory follows), at most once
    /// per [`NOTICE_INTERVAL`]; writes in between are told at the end of it, together.
    fn written_now(&mut self) {
        let now = Instant::now();
        match self.last_notice {
            Some(last) if now < last + NOTICE_INTERVAL => {
                self.notice_due.get_or_insert(last + NOTICE_INTERVAL);
            }
            _ => self.tell_written(),
        }
    }

    fn tell_written(&mut self) {
        self.last_notice = Some(Instant::now());
        if let Some(notice) = &mut self.written {
            // Full or closed: a sync is already on its way, or nobody listens.
            let _ = notice.try_send(
                kube::runtime::reflector::ObjectRef::new(&self.integration.1)
                    .within(&self.integration.0),
            );
        }
    }

    /// Every grant of `next` is in the file now (placed since `now`, unless earlier).
    fn mark_placed(&mut self, next: &BTreeMap<Key, Held>, now: Timestamp) {
        self.placed.retain(|key, _| next.contains_key(key));
        for key in next.keys() {
            self.placed.entry(key.clone()).or_insert(now);
        }
    }

    /// The grants this writer placed whose entries `text` no longer holds (a person removed
    /// or changed them). Each is recorded, with who changed the file when the configuration
    /// audit log says, and announced so its reconciler ends it.
    async fn drift(
        &mut self,
        text: &str,
        wanted: &BTreeMap<Key, Held>,
        now: Timestamp,
    ) -> Vec<Key> {
        let placed: Vec<(Key, Timestamp, &Held)> = self
            .placed
            .iter()
            .filter_map(|(key, since)| Some((key.clone(), *since, wanted.get(key)?)))
            // Lapsed entries are the writer's to take out, not a person's doing.
            .filter(|(_, _, held)| held.expires.is_none_or(|at| at > now))
            .collect();
        let mut all = Entries::default();
        for (_, _, held) in &placed {
            all.extend(&held.entries);
        }
        // One read of the file for all of them; most of the time nothing is missing.
        let Ok(missing) = policy_file::absent(text, &self.owner, &all) else {
            return Vec::new();
        };
        if missing.is_empty() {
            return Vec::new();
        }
        let mut found = Vec::new();
        for (key, since, held) in placed {
            let gone = common(&held.entries, &missing);
            if gone.is_empty() {
                continue;
            }
            let who = self.who_removed(&gone, since, now).await;
            let detail = format!(
                "{} removed or changed in Tailscale{}",
                describe(&gone),
                who.map(|w| format!(" by {w}")).unwrap_or_default()
            );
            warn!(grant = %key.1, %detail, "a person removed what a grant holds; it is not put back");
            lock(&self.drifted).insert(key.clone(), detail);
            self.placed.remove(&key);
            if let Some(notice) = &self.drift_notice {
                let _ = notice.send(key.clone());
            }
            found.push(key);
        }
        found
    }

    /// Who changed the file so that `gone` left it, from the configuration audit log (when the
    /// credential may read it): the latest change whose old file held them and new one not.
    async fn who_removed(
        &self,
        gone: &Entries,
        since: Timestamp,
        now: Timestamp,
    ) -> Option<String> {
        let start = since - jiff::SignedDuration::from_secs(2);
        let end = now + jiff::SignedDuration::from_secs(2);
        let log = match self.client.configuration_log(start, end).await {
            Ok(log) => log,
            Err(e) => {
                debug!(error = %e, "the configuration audit log cannot be read");
                return None;
            }
        };
        let holds = |value: &Option<Value>| {
            value
                .as_ref()
                .and_then(Value::as_str)
                .and_then(|t| policy_file::absent(t, &self.owner, gone).ok())
                .map(|m| m.is_empty())
        };
        log.iter()
            .rev()
            .filter(|e| e.is_policy_change())
            .find(|e| holds(&e.old) == Some(true) && holds(&e.new) == Some(false))
            .map(|e| e.who())
    }

    /// Validate each added grant alone on top of the current state; those Tailscale refuses are
    /// the culprits, with Tailscale's message.
    async fn find_rejected(
        &self,
        text: &str,
        base: &BTreeMap<Key, Held>,
        resolved: &[(Key, Option<Entries>)],
    ) -> Vec<(Key, String)> {
        let mut culprits = Vec::new();
        for (key, entries) in resolved {
            let Some(entries) = entries else { continue };
            let mut alone = base.clone();
            alone.insert(
                key.clone(),
                Held {
                    entries: entries.clone(),
                    expires: None,
                },
            );
            let Ok(candidate) = policy_file::reconcile(text, &self.owner, &desired(&alone)) else {
                continue;
            };
            if !candidate.changed {
                continue;
            }
            match self.client.validate_policy_file(&candidate.text).await {
                Ok(v) if !v.is_valid() => culprits.push((key.clone(), validation_message(&v))),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "cannot validate a candidate policy file"),
            }
        }
        culprits
    }

    fn reply_written(
        &self,
        pending: Vec<Request>,
        resolved: Vec<(Key, Option<Entries>)>,
        already: Vec<(String, String)>,
        changed: bool,
    ) {
        for (r, (_, entries)) in pending.into_iter().zip(resolved) {
            let entries = entries.unwrap_or_default();
            let already_present = already
                .iter()
                .filter(|m| {
                    entries
                        .members
                        .iter()
                        .any(|e| e.0 == m.0 && e.1.eq_ignore_ascii_case(&m.1))
                })
                .cloned()
                .collect();
            let _ = r.reply.send(Ok(Written {
                entries,
                already_present,
                changed,
            }));
        }
    }
}

fn resolve(want: &Want, legacy: bool) -> Entries {
    match want {
        Want::Entries(e) => e.clone(),
        Want::Rule { template, login } => {
            let values = rule_entries(template, login, legacy);
            if legacy {
                Entries {
                    acls: values,
                    ..Default::default()
                }
            } else {
                Entries {
                    grants: values,
                    ..Default::default()
                }
            }
        }
    }
}

/// The entries of `a` that are also in `b`.
fn common(a: &Entries, b: &Entries) -> Entries {
    Entries {
        members: a.members.intersection(&b.members).cloned().collect(),
        grants: a
            .grants
            .iter()
            .filter(|r| b.grants.contains(r))
            .cloned()
            .collect(),
        ssh: a
            .ssh
            .iter()
            .filter(|r| b.ssh.contains(r))
            .cloned()
            .collect(),
        acls: a
            .acls
            .iter()
            .filter(|r| b.acls.contains(r))
            .cloned()
            .collect(),
    }
}

/// Entries in words, for a status message.
fn describe(entries: &Entries) -> String {
    let mut parts: Vec<String> = entries
        .members
        .iter()
        .map(|(group, login)| format!("the membership of {login} in {group}"))
        .collect();
    for (section, rules) in [
        ("grants", &entries.grants),
        ("acls", &entries.acls),
        ("ssh", &entries.ssh),
    ] {
        parts.extend(rules.iter().map(|r| format!("the {section} entry {r}")));
    }
    parts.join(", ")
}

fn desired(wanted: &BTreeMap<Key, Held>) -> Entries {
    let mut d = Entries::default();
    for h in wanted.values() {
        d.extend(&h.entries);
    }
    d
}

fn reply_all(pending: Vec<Request>, error: WriteError) {
    for r in pending {
        let _ = r.reply.send(Err(error.clone()));
    }
}

fn unparsable(e: PolicyFileError) -> WriteError {
    match e {
        e @ PolicyFileError::Parse { .. } => WriteError::Unparsable(e.to_string()),
        other => WriteError::Rejected(other.to_string()),
    }
}

/// Tailscale's validation message with the failing tests' errors.
fn validation_message(v: &tailscale::Validation) -> String {
    let mut parts = Vec::new();
    if !v.message.is_empty() {
        parts.push(v.message.clone());
    }
    if let Some(Value::Array(items)) = &v.data {
        for item in items {
            let user = item.get("user").and_then(Value::as_str).unwrap_or("");
            for err in item
                .get("errors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(err) = err.as_str() {
                    parts.push(if user.is_empty() {
                        err.to_string()
                    } else {
                        format!("{user}: {err}")
                    });
                }
            }
        }
    }
    parts.join("; ")
}
