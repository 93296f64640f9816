//! The ledger in Kubernetes: one `GrantLedger` per integration, read and written under one lock
//! per integration, always before the change in Tailscale it records. Starting and ending a
//! grant's access both go through here, for every kind of access, so the same cause fails the
//! same way; and the sweeper ends every hold whose grant expired, ended or is gone, whatever was
//! deleted, from the ledger alone.
//!
//! This module decides nothing itself: [`crate::grants::ledger`] says what to change.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use tracing::{info, warn};

use super::connection::connect;
use super::context::{key_of, Context, Key};
use super::writer::{Want, WriteError};
use crate::api::{
    AccessGrant, GrantLedger, GrantLedgerSpec, GrantPhase, GroupMember, HeldEntries, HeldPosture,
    Hold, TailscaleIntegration,
};
use crate::grants::ledger::{self as rules, DeviceAttribute, PostureChange, RoleRefusal};
use crate::policy_file::Entries;
use crate::tailscale;

/// How long after an expiry the sweeper ends a hold its grant's reconciler has not ended.
const SWEEP_GRACE: jiff::SignedDuration = jiff::SignedDuration::from_secs(1);

/// How soon a failed revocation is tried again.
pub const REVOCATION_RETRY: Duration = Duration::from_secs(2);

/// Event and condition reasons of a revocation that did not happen yet.
pub mod reason {
    /// A person must fix the integration first (credential refused or gone, scope missing,
    /// policy file unparsable): raised at once, alerted at once.
    pub const BLOCKED: &str = "RevocationBlocked";
    /// A failure a retry may fix (Tailscale or the API server unavailable, a contended file).
    pub const FAILED: &str = "RevocationFailed";
}

/// The grants whose access is due to end but cannot until a person fixes their integration,
/// per integration (namespace, name), by grant UID; exported as
/// `tailkeeper_revocations_blocked`. A grant stays marked through transient failures and is
/// cleared once its access ended.
#[derive(Default)]
pub struct Blocked(Mutex<HashMap<Key, BTreeSet<String>>>);

impl Blocked {
    /// Note how an attempt to end the access of `grants` through `integration` failed: a
    /// failure a person must fix marks them blocked; other failures change nothing. Returns
    /// the reason to report it with.
    pub fn failed<'a>(
        &self,
        metrics: &crate::metrics::Metrics,
        integration: &Key,
        grants: impl IntoIterator<Item = &'a str>,
        failure: &Failure,
    ) -> &'static str {
        if !failure.stalled() {
            return reason::FAILED;
        }
        self.update(metrics, integration, |set| {
            set.extend(grants.into_iter().map(str::to_string))
        });
        reason::BLOCKED
    }

    /// Note that the access of `grant` ended (or that nothing is held for it any more).
    pub fn ended(&self, metrics: &crate::metrics::Metrics, grant: &str) {
        let integrations: Vec<Key> = match self.0.lock() {
            Ok(all) => all
                .iter()
                .filter(|(_, set)| set.contains(grant))
                .map(|(k, _)| k.clone())
                .collect(),
            Err(_) => return,
        };
        for integration in integrations {
            self.update(metrics, &integration, |set| {
                set.remove(grant);
            });
        }
    }

    fn update(
        &self,
        metrics: &crate::metrics::Metrics,
        integration: &Key,
        change: impl FnOnce(&mut BTreeSet<String>),
    ) {
        let Ok(mut all) = self.0.lock() else {
            return;
        };
        let set = all.entry(integration.clone()).or_default();
        let before = set.len();
        change(set);
        let after = set.len();
        if after == 0 {
            all.remove(integration);
        }
        if before != after || after == 0 {
            metrics
                .revocations_blocked
                .get_or_create(&crate::metrics::IntegrationLabels {
                    namespace: integration.0.clone(),
                    integration: integration.1.clone(),
                })
                .set(after as i64);
        }
    }
}

/// Why a change in Tailscale did not happen: one vocabulary for every kind of access.
#[derive(Debug, Clone)]
pub enum Failure {
    /// The credential lacks a scope (HTTP 403): a person must add it; the grant resumes then.
    MissingScope {
        scope: &'static str,
        message: String,
    },
    /// The credential was refused (HTTP 401).
    Unauthorized(String),
    /// Tailscale refused this change for good (unknown user, the policy file's tests).
    Rejected(String),
    /// The policy file cannot be parsed: a person must fix it; noticed within seconds.
    Unparsable(String),
    /// The policy file kept changing under every attempt to write it.
    Contended(String),
    /// Tailscale or Kubernetes failed or could not be reached; retried soon.
    Unavailable(String),
    /// The integration cannot be reached (deleted and no spec recorded, Secret missing).
    Blocked(String),
    /// The ledger changed since it was read (HTTP 409): read it again and start over.
    LedgerChanged,
}

impl Failure {
    /// The condition reason and Event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::MissingScope { .. } => "MissingScope",
            Failure::Unauthorized(_) => "CredentialsRefused",
            Failure::Rejected(_) => "RejectedByTailscale",
            Failure::Unparsable(_) => "PolicyFileUnparsable",
            Failure::Contended(_) => "PolicyFileContended",
            Failure::Unavailable(_) => "TailscaleUnavailable",
            Failure::Blocked(_) => "IntegrationUnavailable",
            Failure::LedgerChanged => "LedgerChanged",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Failure::MissingScope { scope, message } => format!(
                "the integration's credential lacks the {scope:?} scope: add it to the OAuth client (or use a token that has it); Tailscale said: {message}"
            ),
            Failure::Unauthorized(m)
            | Failure::Rejected(m)
            | Failure::Unparsable(m)
            | Failure::Contended(m)
            | Failure::Unavailable(m)
            | Failure::Blocked(m) => m.clone(),
            Failure::LedgerChanged => {
                "the grant ledger changed while it was being written; retrying".into()
            }
        }
    }

    /// A person must change something (Stalled), as opposed to a retry fixing it.
    pub fn stalled(&self) -> bool {
        matches!(
            self,
            Failure::MissingScope { .. }
                | Failure::Unauthorized(_)
                | Failure::Unparsable(_)
                | Failure::Blocked(_)
        )
    }

    /// The grant can never take effect as asked.
    pub fn terminal(&self) -> bool {
        matches!(self, Failure::Rejected(_))
    }

    /// When to look again.
    pub fn retry(&self) -> Duration {
        match self {
            // A fixed policy file or credential is noticed within seconds.
            Failure::Unparsable(_) | Failure::MissingScope { .. } | Failure::Unauthorized(_) => {
                Duration::from_secs(3)
            }
            Failure::Blocked(_) => Duration::from_secs(10),
            _ => Duration::from_secs(2),
        }
    }

    /// A Tailscale error from a call that needs `scope`.
    pub fn tailscale(e: &tailscale::Error, scope: &'static str) -> Failure {
        match e.status() {
            Some(403) => Failure::MissingScope {
                scope,
                message: e.tailscale_message(),
            },
            Some(401) => Failure::Unauthorized(format!(
                "Tailscale refused the integration's credential: {e}"
            )),
            _ if e.is_transient() => Failure::Unavailable(e.to_string()),
            _ => Failure::Rejected(format!("Tailscale refused the change: {e}")),
        }
    }

    fn write(e: WriteError) -> Failure {
        match e {
            WriteError::Rejected(m) => {
                Failure::Rejected(format!("Tailscale refused the change: {m}"))
            }
            WriteError::Unparsable(m) => Failure::Unparsable(format!(
                "the policy file cannot be parsed, so Tailkeeper will not overwrite it: {m}"
            )),
            WriteError::Forbidden(m) => Failure::MissingScope {
                scope: "policy_file",
                message: m,
            },
            WriteError::Unauthorized(m) => Failure::Unauthorized(format!(
                "Tailscale refused the integration's credential: {m}"
            )),
            WriteError::Contended(m) => Failure::Contended(m),
            WriteError::Unavailable(m) => Failure::Unavailable(m),
            // Only an active grant's entries can drift; its reconciler ends it.
            WriteError::RemovedInTailscale(m) => Failure::Rejected(m),
        }
    }

    fn kube(e: kube::Error) -> Failure {
        match &e {
            kube::Error::Api(status) if status.code == 409 => Failure::LedgerChanged,
            _ => Failure::Unavailable(format!("cannot write the grant ledger: {e}")),
        }
    }
}

/// One lock per integration's ledger: ledger writes and the Tailscale changes they record never
/// interleave between two grants of the same tailnet.
#[derive(Default)]
pub struct Locks {
    map: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
}

impl Locks {
    pub(super) async fn lock(&self, key: &Key) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = match self.map.lock() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            map.entry(key.clone()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// A ledger read under its lock, saved after each step.
struct Txn {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    api: Api<GrantLedger>,
    name: String,
    stored: Option<GrantLedger>,
    spec: GrantLedgerSpec,
}

impl Txn {
    /// Open the ledger `key` (namespace, ledger name) of `integration`'s tailnet, as the API
    /// server has it.
    async fn open(ctx: &Context, key: &Key, integration: &str) -> Result<Txn, Failure> {
        Self::open_as(ctx, key, integration, Read::Fresh).await
    }

    /// Open a ledger; from the cache, a write made on a stale copy fails (HTTP 409) and
    /// changes nothing, so the caller reads afresh and starts over.
    async fn open_as(
        ctx: &Context,
        key: &Key,
        integration: &str,
        read: Read,
    ) -> Result<Txn, Failure> {
        let guard = ctx.ledger_locks.lock(key).await;
        let api: Api<GrantLedger> = Api::namespaced(ctx.client.clone(), &key.0);
        let stored = match read {
            Read::Fresh => api.get_opt(&key.1).await.map_err(Failure::kube)?,
            Read::Cache => ctx
                .ledgers_in(&key.0)
                .into_iter()
                .find(|l| l.name_any() == key.1)
                .map(|l| (*l).clone()),
        };
        let spec = stored
            .as_ref()
            .map(|l| l.spec.clone())
            .unwrap_or_else(|| GrantLedgerSpec {
                integration: integration.to_string(),
                ..Default::default()
            });
        Ok(Txn {
            _guard: guard,
            api,
            name: key.1.clone(),
            stored,
            spec,
        })
    }

    /// Write the ledger if it changed (optimistically: a concurrent writer is a bug, and the
    /// conflict surfaces as a retry rather than a lost record). A ledger left with nothing to
    /// record is deleted.
    async fn save(&mut self) -> Result<(), Failure> {
        let empty = self.spec.holds.is_empty()
            && self.spec.roles.is_empty()
            && self.spec.attributes.is_empty();
        let saved = match &self.stored {
            Some(l) if l.spec == self.spec => return Ok(()),
            Some(_) if empty => {
                self.api
                    .delete(&self.name, &DeleteParams::default())
                    .await
                    .map_err(Failure::kube)?;
                self.stored = None;
                return Ok(());
            }
            None if empty => return Ok(()),
            Some(l) => {
                let mut next = l.clone();
                next.spec = self.spec.clone();
                self.api
                    .replace(&self.name, &PostParams::default(), &next)
                    .await
            }
            None => {
                let mut next = GrantLedger::new(&self.name, self.spec.clone());
                next.metadata.labels = Some(
                    [(INTEGRATION_LABEL.to_string(), self.spec.integration.clone())]
                        .into_iter()
                        .collect(),
                );
                self.api.create(&PostParams::default(), &next).await
            }
        };
        self.stored = Some(saved.map_err(Failure::kube)?);
        Ok(())
    }
}

/// Where a transaction reads the ledger from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Read {
    Fresh,
    Cache,
}

/// The label naming a ledger's integration (the writer lists a tailnet's ledgers by it).
pub const INTEGRATION_LABEL: &str = "tailkeeper.io/integration";

/// The ledger of one Tailscale user of an integration: `<integration>.<user id>`, made a valid
/// object name.
pub fn ledger_key(integration: &Key, user_id: &str) -> Key {
    let id: String = user_id
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let id = id.trim_matches('-');
    let mut name = format!(
        "{}.{}",
        integration.1,
        if id.is_empty() { "user" } else { id }
    );
    name.truncate(253);
    (
        integration.0.clone(),
        name.trim_end_matches(['-', '.']).to_string(),
    )
}

/// What a started grant holds.
#[derive(Clone, Debug)]
pub struct Started {
    /// When its access ends; `None` for a standing grant.
    pub expires: Option<Timestamp>,
    /// A human description of what changed (or that nothing had to).
    pub note: String,
    /// Whether the user already held the access without this grant.
    pub already_held: bool,
    /// The hold as recorded.
    pub hold: Option<Hold>,
}

/// Why a grant did not start.
#[derive(Debug)]
pub enum NotStarted {
    /// A role grant that would not raise, or that must wait for another grant to end.
    Role(RoleRefusal),
    /// The user has no devices to carry a posture attribute.
    NoDevices,
    Failed(Failure),
}

impl From<Failure> for NotStarted {
    fn from(f: Failure) -> Self {
        NotStarted::Failed(f)
    }
}

/// What a started grant asks for, resolved by the reconciler.
#[derive(Clone)]
pub enum Request {
    PolicyFile(Want),
    Role(String),
    Posture { key: String, value: String },
}

/// The client and identity of an integration, for starting and ending holds.
pub struct Reach {
    pub integration: Key,
    pub client: tailscale::Client,
    pub fingerprint: u64,
    pub owner: crate::policy_file::Owner,
    /// The integration's spec as JSON and its UID, recorded for after its deletion.
    pub connection: Option<String>,
    pub uid: Option<String>,
    pub secret: Option<String>,
}

impl Reach {
    /// The policy writer of this tailnet.
    pub fn writer(&self, ctx: &Context) -> super::writer::PolicyWriter {
        ctx.writers.get(
            &ctx.client,
            &self.integration,
            self.fingerprint,
            &self.client,
            &self.owner,
        )
    }
}

/// Start (or resume) a grant's access, until `expires` (`None`: standing, no expiry). The hold
/// is in the ledger before Tailscale changes.
pub async fn start(
    ctx: &Context,
    reach: &Reach,
    grant: &AccessGrant,
    user: &tailscale::User,
    expires: Option<Timestamp>,
    request: Request,
) -> Result<Started, NotStarted> {
    // Most starts are a user's first: read the cached ledger (usually none) rather than ask
    // the API server; a stale copy fails to save before anything changes in Tailscale.
    match start_from(
        ctx,
        reach,
        grant,
        user,
        expires,
        request.clone(),
        Read::Cache,
    )
    .await
    {
        Err(NotStarted::Failed(Failure::LedgerChanged)) => {
            start_from(ctx, reach, grant, user, expires, request, Read::Fresh).await
        }
        other => other,
    }
}

async fn start_from(
    ctx: &Context,
    reach: &Reach,
    grant: &AccessGrant,
    user: &tailscale::User,
    expires: Option<Timestamp>,
    request: Request,
    read: Read,
) -> Result<Started, NotStarted> {
    let uid = grant.uid().unwrap_or_default();
    let key = ledger_key(&reach.integration, &user.id);
    let mut txn = Txn::open_as(ctx, &key, &reach.integration.1, read).await?;
    if read == Read::Cache && rules::hold(&txn.spec, &uid).is_some() {
        // A resumed start: decide on the ledger as the API server has it.
        return Err(Failure::LedgerChanged.into());
    }
    txn.spec.connection = reach.connection.clone().or(txn.spec.connection.take());
    txn.spec.integration_uid = reach.uid.clone().or(txn.spec.integration_uid.take());
    txn.spec.credentials_secret = reach.secret.clone().or(txn.spec.credentials_secret.take());
    // A resumed start keeps the expiry it began with: a crash never lengthens a grant.
    let expires = rules::hold(&txn.spec, &uid)
        .map(|h| h.expires_at.as_ref().map(|t| t.0))
        .unwrap_or(expires);
    let hold = Hold {
        grant: grant.name_any(),
        grant_uid: uid.clone(),
        user_id: user.id.clone(),
        login: grant.spec.user.clone(),
        expires_at: expires.map(Time),
        role: None,
        superseded: false,
        entries: None,
        posture: None,
    };
    match request {
        Request::PolicyFile(want) => {
            // Entries known up front (a membership, an SSH rule) are recorded with the hold;
            // a network rule's depend on the file's form and are recorded once written.
            let known = match &want {
                Want::Entries(e) => Some(held_entries(e)),
                Want::Rule { .. } => None,
            };
            let mut recorded = rules::hold(&txn.spec, &uid).cloned();
            if recorded.is_none() {
                let mut hold = hold;
                hold.entries = known.clone();
                txn.spec.holds.push(hold.clone());
                txn.save().await?;
                recorded = Some(hold);
            }
            // The hold is recorded; release the ledger while the writer works, so that the
            // writer can fold many grants into one write (it serialises the file itself).
            drop(txn);
            let writer = reach.writer(ctx);
            match writer.want(writer_key(grant), want, expires).await {
                Ok(written) => {
                    let already_held = !written.already_present.is_empty();
                    let entries = held_entries(&written.entries);
                    let mut hold = recorded;
                    if hold.as_ref().and_then(|h| h.entries.as_ref()) != Some(&entries) {
                        let mut txn = Txn::open(ctx, &key, &reach.integration.1).await?;
                        match txn.spec.holds.iter_mut().find(|h| h.grant_uid == uid) {
                            Some(h) => h.entries = Some(entries),
                            None => {
                                // Ended (its grant deleted) while the writer worked: take it out.
                                writer
                                    .drop_grant(writer_key(grant))
                                    .await
                                    .map_err(Failure::write)?;
                                return Err(Failure::Blocked(
                                    "the grant ended while its access was being applied".into(),
                                )
                                .into());
                            }
                        }
                        txn.save().await?;
                        hold = rules::hold(&txn.spec, &uid).cloned();
                    }
                    Ok(Started {
                        expires,
                        note: if already_held {
                            " (already held; it will be kept at expiry)".into()
                        } else {
                            String::new()
                        },
                        already_held,
                        hold,
                    })
                }
                Err(e) => {
                    let failure = Failure::write(e);
                    if failure.terminal() {
                        let mut txn = Txn::open(ctx, &key, &reach.integration.1).await?;
                        txn.spec.holds.retain(|h| h.grant_uid != uid);
                        txn.save().await?;
                    }
                    Err(failure.into())
                }
            }
        }
        Request::Role(role) => {
            let current = reach
                .client
                .get_user(&user.id)
                .await
                .map_err(|e| Failure::tailscale(&e, "users"))?;
            let mut hold = hold;
            hold.role = Some(role);
            let start =
                rules::start_role(&mut txn.spec, hold, &current.role).map_err(NotStarted::Role)?;
            txn.save().await?;
            if let Some(to) = &start.set {
                if let Err(e) = reach.client.set_user_role(&user.id, to).await {
                    let failure = Failure::tailscale(&e, "users");
                    if failure.terminal() {
                        rules::role_refused(&mut txn.spec, &uid);
                        txn.save().await?;
                    }
                    return Err(failure.into());
                }
                rules::role_applied(&mut txn.spec, &user.id);
                txn.save().await?;
            }
            Ok(Started {
                expires,
                note: match &start.set {
                    Some(to) => format!(" (role set to {to})"),
                    None => " (already held; nothing changed)".into(),
                },
                already_held: start.already_held,
                hold: rules::hold(&txn.spec, &uid).cloned(),
            })
        }
        Request::Posture { key, value } => {
            let devices = reach
                .client
                .list_devices()
                .await
                .map_err(|e| Failure::tailscale(&e, "devices:core:read"))?;
            let mine: Vec<String> = devices
                .iter()
                .filter(|d| d.user.eq_ignore_ascii_case(&grant.spec.user))
                .map(|d| {
                    if d.id.is_empty() {
                        d.node_id.clone()
                    } else {
                        d.id.clone()
                    }
                })
                .collect();
            if mine.is_empty() {
                return Err(NotStarted::NoDevices);
            }
            let current = read_attributes(&reach.client, &mine, &key).await?;
            let mut hold = hold;
            hold.posture = Some(HeldPosture {
                key: key.clone(),
                value,
                devices: Vec::new(),
            });
            let changes = rules::start_posture(&mut txn.spec, hold, &current);
            txn.save().await?;
            let comment = format!(
                "AccessGrant {}/{}",
                grant.namespace().unwrap_or_default(),
                grant.name_any()
            );
            apply_posture(&reach.client, &key, &changes, &comment).await?;
            Ok(Started {
                expires,
                note: if changes.is_empty() {
                    " (already held; nothing changed)".into()
                } else {
                    String::new()
                },
                already_held: changes.is_empty(),
                hold: rules::hold(&txn.spec, &uid).cloned(),
            })
        }
    }
}

/// What ending a hold did.
#[derive(Clone, Debug, Default)]
pub struct Ended {
    /// Human notes: the role set back, a person's change left alone.
    pub notes: Vec<String>,
    /// A person changed what the grant had set; it was left as they set it.
    pub changed_by_person: bool,
    /// Whether there was a hold to end (false: someone else ended it first).
    pub ended: bool,
}

/// End a grant's hold, whatever its kind; nothing to do when the ledger holds nothing for it.
pub async fn end(
    ctx: &Context,
    reach: &Reach,
    ledger: &Key,
    grant_uid: &str,
) -> Result<Ended, Failure> {
    let namespace = ledger.0.as_str();
    let mut txn = Txn::open(ctx, ledger, &reach.integration.1).await?;
    let Some(hold) = rules::hold(&txn.spec, grant_uid).cloned() else {
        return Ok(Ended::default());
    };
    let mut ended = Ended {
        ended: true,
        ..Ended::default()
    };
    if let Some(_role) = &hold.role {
        let current = match reach.client.get_user(&hold.user_id).await {
            Ok(u) => Some(u.role),
            Err(e) if e.status() == Some(404) => None,
            Err(e) => return Err(Failure::tailscale(&e, "users")),
        };
        let end = rules::end_role(&mut txn.spec, grant_uid, current.as_deref());
        txn.save().await?;
        if let Some(to) = &end.set {
            if let Err(e) = reach.client.set_user_role(&hold.user_id, to).await {
                return Err(Failure::tailscale(&e, "users"));
            }
            ended.notes.push(format!("role set to {to}"));
        }
        if let Some(role) = end.changed_by_person {
            ended.changed_by_person = true;
            ended.notes.push(format!(
                "role of {} was changed to {role} in Tailscale while the grant was active; left as it is",
                hold.login
            ));
        }
        if current.is_none() {
            ended.notes.push("the user no longer exists".into());
        }
        rules::role_settled(&mut txn.spec, &hold.user_id);
        txn.save().await?;
    } else if let Some(posture) = &hold.posture {
        let current = read_attributes(&reach.client, &posture.devices, &posture.key).await?;
        let changes = rules::end_posture(&mut txn.spec, grant_uid, &current);
        txn.save().await?;
        for c in &changes {
            if let PostureChange::Left { device_id, current } = c {
                ended.changed_by_person = true;
                ended.notes.push(format!(
                    "{} on device {device_id} was changed to {current} while the grant was active; left as it is",
                    posture.key
                ));
            }
        }
        apply_posture(
            &reach.client,
            &posture.key,
            &changes,
            "restored by Tailkeeper",
        )
        .await?;
    } else {
        // Policy-file entries (recorded or still being written): the writer drops them, keeping
        // any another active grant still wants.
        let writer = reach.writer(ctx);
        writer
            .drop_grant((namespace.to_string(), grant_uid.to_string()))
            .await
            .map_err(Failure::write)?;
        txn.spec.holds.retain(|h| h.grant_uid != grant_uid);
        txn.save().await?;
    }
    // How late access that expired was taken away (access ended early, by a deletion, is not;
    // a standing grant's never expires).
    if let Some(expired) = &hold.expires_at {
        let late = Timestamp::now().duration_since(expired.0);
        if !late.is_negative() {
            ctx.metrics.revocation_lateness.observe(late.as_secs_f64());
        }
    }
    Ok(ended)
}

/// The ledger that holds access for a grant, from the cache: its key and what it records.
pub fn holder(ctx: &Context, grant: &AccessGrant) -> Option<(Key, GrantLedgerSpec)> {
    let uid = grant.uid()?;
    let ns = grant.namespace().unwrap_or_default();
    ctx.ledgers_in(&ns)
        .into_iter()
        .find(|l| rules::hold(&l.spec, &uid).is_some())
        .map(|l| (key_of(l.as_ref()), l.spec.clone()))
}

/// The same, asked of the API server (the cache may lag behind a write just made).
pub async fn holder_fresh(
    ctx: &Context,
    grant: &AccessGrant,
    integration: &str,
) -> Result<Option<(Key, GrantLedgerSpec)>, kube::Error> {
    let (Some(uid), ns) = (grant.uid(), grant.namespace().unwrap_or_default()) else {
        return Ok(None);
    };
    let list = Api::<GrantLedger>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default().labels(&format!("{INTEGRATION_LABEL}={integration}")))
        .await?;
    Ok(list
        .items
        .into_iter()
        .find(|l| rules::hold(&l.spec, &uid).is_some())
        .map(|l| (key_of(&l), l.spec)))
}

/// How the writer names a grant: by UID, so a grant recreated under the same name is another.
pub fn writer_key(grant: &AccessGrant) -> Key {
    (
        grant.namespace().unwrap_or_default(),
        grant.uid().unwrap_or_default(),
    )
}

/// The policy-file entries of the holds of a ledger, as the writer seeds them, each with its
/// expiry (`None`: standing).
pub fn seeded_entries(
    ledger: &GrantLedgerSpec,
    namespace: &str,
) -> Vec<(Key, Entries, Option<Timestamp>)> {
    ledger
        .holds
        .iter()
        .filter_map(|h| {
            let e = h.entries.as_ref()?;
            let mut entries = Entries::default();
            for m in &e.members {
                entries.members.insert((m.group.clone(), m.login.clone()));
            }
            let parse = |v: &Vec<String>| -> Vec<serde_json::Value> {
                v.iter()
                    .filter_map(|s| serde_json::from_str(s).ok())
                    .collect()
            };
            entries.grants = parse(&e.grants);
            entries.acls = parse(&e.acls);
            entries.ssh = parse(&e.ssh);
            Some((
                (namespace.to_string(), h.grant_uid.clone()),
                entries,
                h.expires_at.as_ref().map(|t| t.0),
            ))
        })
        .collect()
}

fn held_entries(e: &Entries) -> HeldEntries {
    HeldEntries {
        members: e
            .members
            .iter()
            .map(|(group, login)| GroupMember {
                group: group.clone(),
                login: login.clone(),
            })
            .collect(),
        grants: e.grants.iter().map(|v| v.to_string()).collect(),
        acls: e.acls.iter().map(|v| v.to_string()).collect(),
        ssh: e.ssh.iter().map(|v| v.to_string()).collect(),
    }
}

async fn read_attributes(
    client: &tailscale::Client,
    devices: &[String],
    key: &str,
) -> Result<Vec<DeviceAttribute>, Failure> {
    let mut out = Vec::new();
    for device_id in devices {
        let attrs = match client.get_posture_attributes(device_id).await {
            Ok(a) => a,
            // A device removed meanwhile holds nothing any more.
            Err(e) if e.status() == Some(404) => {
                out.push(DeviceAttribute {
                    device_id: device_id.clone(),
                    current: None,
                });
                continue;
            }
            Err(e) => return Err(Failure::tailscale(&e, "devices:posture_attributes")),
        };
        let current = attrs.attributes.get(key).cloned().map(|v| {
            let expiry = attrs
                .expiries
                .get(key)
                .and_then(|e| e.as_str())
                .map(str::to_string);
            (v, expiry)
        });
        out.push(DeviceAttribute {
            device_id: device_id.clone(),
            current,
        });
    }
    Ok(out)
}

async fn apply_posture(
    client: &tailscale::Client,
    key: &str,
    changes: &[PostureChange],
    comment: &str,
) -> Result<(), Failure> {
    let scope = "devices:posture_attributes";
    for change in changes {
        let result = match change {
            PostureChange::Set {
                device_id,
                value,
                expiry,
            } => {
                let expiry = expiry.as_deref().and_then(|e| e.parse::<Timestamp>().ok());
                client
                    .set_posture_attribute_value(device_id, key, value, expiry, comment)
                    .await
            }
            PostureChange::Delete { device_id } => {
                client.delete_posture_attribute(device_id, key).await
            }
            PostureChange::Left { .. } => Ok(()),
        };
        match result {
            Ok(()) => {}
            Err(e) if e.status() == Some(404) => {}
            Err(e) => return Err(Failure::tailscale(&e, scope)),
        }
    }
    Ok(())
}

/// How to reach an integration's tailnet: from the cache or the API server, else (deleted) from
/// the spec the ledger recorded.
pub async fn reach(
    ctx: &Context,
    integration: &Key,
    recorded: &GrantLedgerSpec,
) -> Result<Reach, Failure> {
    let (ns, name) = integration;
    let live = match ctx.cached_integration(ns, name) {
        Some(i) => Some((*i).clone()),
        None => Api::<TailscaleIntegration>::namespaced(ctx.client.clone(), ns)
            .get_opt(name)
            .await
            .map_err(|e| Failure::Unavailable(e.to_string()))?,
    };
    let obj = match live {
        Some(i) => i,
        None => {
            let spec = recorded
                .connection
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok())
                .ok_or_else(|| {
                    Failure::Blocked(format!(
                        "TailscaleIntegration {ns}/{name} does not exist and its ledger records no connection"
                    ))
                })?;
            let mut i = TailscaleIntegration::new(name, spec);
            i.metadata.namespace = Some(ns.clone());
            i.metadata.uid = recorded.integration_uid.clone();
            i
        }
    };
    reach_integration(ctx, &obj).await
}

/// The client and identity of a live integration.
pub async fn reach_integration(
    ctx: &Context,
    obj: &TailscaleIntegration,
) -> Result<Reach, Failure> {
    let key = key_of(obj);
    let (client, fingerprint) = match ctx.cached_client(&key) {
        Some((fingerprint, client)) => (client, fingerprint),
        None => {
            let c = connect(obj, ctx).await.map_err(|e| {
                Failure::Blocked(format!(
                    "cannot connect to TailscaleIntegration {}/{}: {}",
                    key.0, key.1, e.message
                ))
            })?;
            (c.client, c.fingerprint)
        }
    };
    Ok(Reach {
        owner: owner_of(obj)?,
        integration: key,
        client,
        fingerprint,
        connection: serde_json::to_string(&obj.spec).ok(),
        uid: obj.uid(),
        secret: Some(obj.spec.credentials.secret_name.clone()),
    })
}

/// The identity in the markers of an integration's policy-file entries: its UID (stable for the
/// object's life, distinct per cluster and per integration), shortened.
pub(super) fn owner_id(obj: &TailscaleIntegration) -> Option<String> {
    let uid: String = obj
        .uid()?
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    Some(uid)
}

fn owner_of(obj: &TailscaleIntegration) -> Result<crate::policy_file::Owner, Failure> {
    let uid = owner_id(obj).unwrap_or_default();
    crate::policy_file::Owner::new(&uid).map_err(|e| {
        Failure::Blocked(format!(
            "TailscaleIntegration {}/{} has no usable UID for ownership markers: {e}",
            obj.namespace().unwrap_or_default(),
            obj.name_any()
        ))
    })
}

/// The sweeper: end every hold whose grant expired, ended or no longer exists; finish role
/// changes a stop interrupted. Wakes at the earliest expiry and on every grant change.
pub async fn sweep(ledger: Arc<GrantLedger>, ctx: Arc<Context>) -> Result<Action, super::Error> {
    let ns = ledger.namespace().unwrap_or_default();
    let key = key_of(ledger.as_ref());
    let now = Timestamp::now();
    let mut due: Vec<Hold> = Vec::new();
    let grants: Api<AccessGrant> = Api::namespaced(ctx.client.clone(), &ns);
    for h in &ledger.spec.holds {
        // At expiry the grant's own reconciler ends its access (and records how); the sweeper
        // steps in if it has not a moment later. A standing grant's hold has no expiry: it
        // ends when its grant ends or is gone, below.
        if rules::lapsed(h, now, SWEEP_GRACE) {
            due.push(h.clone());
            continue;
        }
        let cached = ctx
            .cached_grant(&ns, &h.grant)
            .filter(|g| g.uid().as_deref() == Some(h.grant_uid.as_str()));
        // The cache may not hold a grant yet (just after a start): a grant is gone only when
        // the API server says so.
        let grant = match cached {
            Some(g) => Some((*g).clone()),
            None => grants
                .get_opt(&h.grant)
                .await?
                .filter(|g| g.uid().as_deref() == Some(h.grant_uid.as_str())),
        };
        let ended = grant.as_ref().is_none_or(|g| {
            matches!(
                g.status.as_ref().and_then(|s| s.phase),
                Some(
                    GrantPhase::Expired
                        | GrantPhase::Revoked
                        | GrantPhase::Denied
                        | GrantPhase::Failed
                )
            )
        });
        if ended {
            due.push(h.clone());
        }
    }
    let unfinished = rules::unfinished_roles(&ledger.spec);
    if due.is_empty() && unfinished.is_empty() {
        return Ok(next_wake(&ledger.spec));
    }
    let integration = (ns.clone(), ledger.spec.integration.clone());
    let reach = match reach(&ctx, &integration, &ledger.spec).await {
        Ok(r) => r,
        Err(f) => {
            let message = format!(
                "cannot end {} grant(s) whose access is due to end: {}",
                due.len(),
                f.message()
            );
            let reason = ctx.blocked_revocations.failed(
                &ctx.metrics,
                &integration,
                due.iter().map(|h| h.grant_uid.as_str()),
                &f,
            );
            warn!(ledger = %key.1, reason, %message);
            ctx.publish(
                ledger.as_ref(),
                EventType::Warning,
                reason,
                "Revoke",
                message,
            )
            .await;
            return Ok(Action::requeue(f.retry()));
        }
    };
    for hold in &due {
        let result = end(&ctx, &reach, &key, &hold.grant_uid).await;
        if result.is_ok() {
            ctx.blocked_revocations.ended(&ctx.metrics, &hold.grant_uid);
        }
        match result {
            Ok(ended) if !ended.ended => {}
            Ok(ended) => {
                let gone = ctx.cached_grant(&ns, &hold.grant).is_none();
                info!(grant = %hold.grant, user = %hold.login, gone, "access ended by the ledger");
                ctx.publish(
                    ledger.as_ref(),
                    EventType::Normal,
                    "AccessEnded",
                    "Revoke",
                    format!(
                        "access of {} from grant {} ended{}{}",
                        hold.login,
                        hold.grant,
                        if gone {
                            " (the grant no longer exists)"
                        } else {
                            ""
                        },
                        if ended.notes.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", ended.notes.join("; "))
                        }
                    ),
                )
                .await;
            }
            Err(f) => {
                let message = format!(
                    "cannot end the access of {} from grant {}: {}",
                    hold.login,
                    hold.grant,
                    f.message()
                );
                let reason = ctx.blocked_revocations.failed(
                    &ctx.metrics,
                    &integration,
                    due.iter().map(|h| h.grant_uid.as_str()),
                    &f,
                );
                warn!(reason, %message);
                ctx.publish(
                    ledger.as_ref(),
                    EventType::Warning,
                    reason,
                    "Revoke",
                    message,
                )
                .await;
                return Ok(Action::requeue(REVOCATION_RETRY));
            }
        }
    }
    for (user_id, set, before) in unfinished {
        if let Err(f) = finish_role(&ctx, &reach, &key, &user_id, &set, &before).await {
            warn!(user = %user_id, error = %f.message(), "cannot finish an interrupted role change");
            return Ok(Action::requeue(REVOCATION_RETRY));
        }
    }
    Ok(Action::requeue(Duration::from_millis(200)))
}

async fn finish_role(
    ctx: &Context,
    reach: &Reach,
    ledger: &Key,
    user_id: &str,
    set: &str,
    before: &str,
) -> Result<(), Failure> {
    let mut txn = Txn::open(ctx, ledger, &reach.integration.1).await?;
    // Re-read under the lock: a grant may have moved on since the sweep began.
    if !rules::unfinished_roles(&txn.spec)
        .iter()
        .any(|(u, s, b)| u == user_id && s == set && b == before)
    {
        return Ok(());
    }
    match reach.client.get_user(user_id).await {
        Ok(u) if u.role.eq_ignore_ascii_case(before) => {
            reach
                .client
                .set_user_role(user_id, set)
                .await
                .map_err(|e| Failure::tailscale(&e, "users"))?;
        }
        Ok(_) => {}
        Err(e) if e.status() == Some(404) => {}
        Err(e) => return Err(Failure::tailscale(&e, "users")),
    }
    rules::role_settled(&mut txn.spec, user_id);
    txn.save().await
}

/// A grant's deletion can reach this controller before the grant cache has seen it (they
/// watch separately): while anything is held, look again soon (as well as at the earliest
/// expiry), so a grant that is gone loses its access within seconds, standing ones included.
fn next_wake(spec: &GrantLedgerSpec) -> Action {
    match rules::next_look(spec, Timestamp::now(), SWEEP_GRACE, SWEEP_RECHECK) {
        Some(wait) => Action::requeue(wait),
        None => Action::await_change(),
    }
}

/// How often the sweeper looks again at a ledger that holds access (a cache read, no request
/// unless a grant seems gone).
const SWEEP_RECHECK: Duration = Duration::from_secs(5);

/// The ledgers a grant change may concern: those holding access for it (a deleted grant's
/// hold is still there).
pub fn ledgers_for<K: ResourceExt>(ctx: &Context, grant: &K) -> Vec<ObjectRef<GrantLedger>> {
    let Some(uid) = grant.uid() else {
        return Vec::new();
    };
    ctx.ledgers_in(&grant.namespace().unwrap_or_default())
        .iter()
        .filter(|l| rules::hold(&l.spec, &uid).is_some())
        .map(|l| ObjectRef::from_obj(l.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{IntegrationLabels, Metrics};

    fn gauge(metrics: &Metrics, integration: &str) -> i64 {
        metrics
            .revocations_blocked
            .get_or_create(&IntegrationLabels {
                namespace: "ns".into(),
                integration: integration.into(),
            })
            .get()
    }

    #[test]
    fn only_a_failure_a_person_must_fix_blocks_and_only_an_end_unblocks() {
        let metrics = Metrics::default();
        let blocked = Blocked::default();
        let corp: Key = ("ns".into(), "corp".into());
        let unauthorized = Failure::Unauthorized("HTTP 401".into());
        assert_eq!(
            blocked.failed(&metrics, &corp, ["a", "b"], &unauthorized),
            reason::BLOCKED
        );
        assert_eq!(gauge(&metrics, "corp"), 2);
        // The same grants failing again count once.
        blocked.failed(
            &metrics,
            &corp,
            ["a"],
            &Failure::Blocked("no Secret".into()),
        );
        assert_eq!(gauge(&metrics, "corp"), 2);
        // A transient failure neither blocks nor clears what is blocked.
        let unavailable = Failure::Unavailable("HTTP 503".into());
        assert_eq!(
            blocked.failed(&metrics, &corp, ["c"], &unavailable),
            reason::FAILED
        );
        assert_eq!(gauge(&metrics, "corp"), 2);
        // Another integration is counted apart.
        let missing = Failure::MissingScope {
            scope: "policy_file",
            message: "HTTP 403".into(),
        };
        blocked.failed(&metrics, &("ns".into(), "lab".into()), ["z"], &missing);
        assert_eq!((gauge(&metrics, "corp"), gauge(&metrics, "lab")), (2, 1));
        blocked.ended(&metrics, "a");
        blocked.ended(&metrics, "c");
        assert_eq!(gauge(&metrics, "corp"), 1);
        blocked.ended(&metrics, "b");
        blocked.ended(&metrics, "z");
        assert_eq!((gauge(&metrics, "corp"), gauge(&metrics, "lab")), (0, 0));
    }
}
