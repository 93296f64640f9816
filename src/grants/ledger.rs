//! The ledger's rules: what to change in Tailscale when a grant starts or ends, given what every
//! other grant of the same tailnet user holds and what Tailscale shows now. Pure: the caller
//! reads Tailscale, calls these, writes the ledger (before changing Tailscale), then applies the
//! changes returned.
//!
//! Roles: the role a user had before their first role grant is recorded once (the baseline).
//! While grants overlap the user holds the least role that includes every held role and the
//! baseline; grants only ever raise, so two grants whose roles neither includes (`it-admin` and
//! `network-admin`) cannot be in effect together: the later one waits. When the last grant ends
//! the baseline comes back, unless a person changed the role meanwhile: then their role stays,
//! and the grants that were active are marked superseded (never raised again).
//!
//! Posture attributes: a value a person had set is recorded before Tailkeeper sets its own and
//! comes back when the last grant of it ends, unless a person changed it meanwhile. A device
//! where a person already set the granted value is left alone entirely. Tailscale's own expiry
//! of the value is the latest end among its holds, and none while a standing hold has it.
//!
//! Holds of standing grants have no expiry: nothing ends them on the clock, only their grant
//! ending or being gone, which the sweeper looks for every few seconds while anything is held.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::api::{AttributeRecord, GrantLedgerSpec, Hold, RoleRecord};

/// Whether role `a` includes everything role `b` may do. A partial order: `owner` ⊇ `admin` ⊇
/// every other role ⊇ `member`; the three specialised admin roles each include `auditor` but not
/// each other. Unknown roles include only themselves (and `member`).
pub fn includes(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    a == b
        || b == "member"
        || a == "owner"
        || (a == "admin" && b != "owner")
        || (b == "auditor" && matches!(a.as_str(), "it-admin" | "network-admin" | "billing-admin"))
}

/// The one role among `roles` that includes all of them, if there is one.
pub fn least_upper_bound<'a>(roles: impl IntoIterator<Item = &'a str> + Clone) -> Option<String> {
    roles
        .clone()
        .into_iter()
        .find(|candidate| roles.clone().into_iter().all(|r| includes(candidate, r)))
        .map(str::to_ascii_lowercase)
}

/// Why a role grant cannot take effect now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleRefusal {
    /// The user's own role does not fit under the granted one: granting would lower or swap it.
    NotARaise { current: String, role: String },
    /// Another active grant holds a role that neither includes: wait until it ends.
    Conflicts { grant: String, held: String },
}

impl RoleRefusal {
    pub fn message(&self, login: &str, role: &str) -> String {
        match self {
            RoleRefusal::NotARaise { current, .. } => format!(
                "{login} holds role {current}, which {role} does not include: a grant only ever raises a role, never lowers or swaps it"
            ),
            RoleRefusal::Conflicts { grant, held } => format!(
                "{login} holds role {held} through grant {grant}, which {role} does not include; this grant waits until that one ends"
            ),
        }
    }
}

/// What starting a role grant changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleStart {
    /// The role to set in Tailscale, when it changes.
    pub set: Option<String>,
    /// Whether the user already held the role (or one including it) without this grant.
    pub already_held: bool,
}

/// What ending a role grant changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleEnd {
    /// The role to set in Tailscale, when it changes.
    pub set: Option<String>,
    /// A person changed the role while grants were active: the role they set stays.
    pub changed_by_person: Option<String>,
    /// Other grants still hold a role for the user.
    pub still_held: bool,
}

/// The hold of a grant, if the ledger has one.
pub fn hold<'a>(ledger: &'a GrantLedgerSpec, grant_uid: &str) -> Option<&'a Hold> {
    ledger.holds.iter().find(|h| h.grant_uid == grant_uid)
}

/// The earliest expiry among the holds (holds of standing grants have none).
pub fn earliest_expiry(ledger: &GrantLedgerSpec) -> Option<Timestamp> {
    ledger
        .holds
        .iter()
        .filter_map(|h| h.expires_at.as_ref().map(|t| t.0))
        .min()
}

/// Whether a hold's expiry passed `grace` ago or more (never, for a standing grant's).
pub fn lapsed(hold: &Hold, now: Timestamp, grace: SignedDuration) -> bool {
    hold.expires_at.as_ref().is_some_and(|t| t.0 + grace <= now)
}

/// How long until the sweeper looks at a ledger again: `grace` after the earliest expiry, and
/// while anything is held at least every `recheck`, so a hold whose grant is gone (deleted past
/// its finalizer) ends within seconds, with or without an expiry. `None`: nothing is held.
pub fn next_look(
    ledger: &GrantLedgerSpec,
    now: Timestamp,
    grace: SignedDuration,
    recheck: Duration,
) -> Option<Duration> {
    if ledger.holds.is_empty() {
        return None;
    }
    let until_expiry = earliest_expiry(ledger)
        .map(|at| Duration::try_from((at + grace).duration_since(now)).unwrap_or(Duration::ZERO));
    Some(until_expiry.map_or(recheck, |wait| wait.min(recheck)))
}

fn record_mut<'a>(ledger: &'a mut GrantLedgerSpec, user_id: &str) -> Option<&'a mut RoleRecord> {
    ledger.roles.iter_mut().find(|r| r.user_id == user_id)
}

/// Compare the role Tailscale shows with the record: a role that is neither the one Tailkeeper
/// set nor the one it was replacing was set by a person, who wins: it becomes the baseline and
/// the grants active so far are superseded. Returns whether that happened.
fn observe(ledger: &mut GrantLedgerSpec, user_id: &str, current: &str) -> bool {
    let Some(record) = record_mut(ledger, user_id) else {
        return false;
    };
    if record.set.eq_ignore_ascii_case(current) {
        // The last change Tailkeeper announced is in effect.
        record.before = None;
        return false;
    }
    if record
        .before
        .as_deref()
        .is_some_and(|b| b.eq_ignore_ascii_case(current))
    {
        // The announced change never reached Tailscale (a stop in between): still pending,
        // and whoever acts next on this user carries it out or replaces it.
        return false;
    }
    record.baseline = current.to_ascii_lowercase();
    record.set = current.to_ascii_lowercase();
    record.before = None;
    for h in ledger
        .holds
        .iter_mut()
        .filter(|h| h.user_id == user_id && h.role.is_some())
    {
        h.superseded = true;
    }
    true
}

/// The roles in effect for a user from holds (not superseded), excluding one grant.
fn held_roles<'a>(
    ledger: &'a GrantLedgerSpec,
    user_id: &str,
    except: &str,
) -> Vec<(&'a str, &'a str)> {
    ledger
        .holds
        .iter()
        .filter(|h| h.user_id == user_id && h.grant_uid != except && !h.superseded)
        .filter_map(|h| h.role.as_deref().map(|r| (h.grant.as_str(), r)))
        .collect()
}

/// Start (or resume) a role grant: `hold` carries the role; `current` is the user's role in
/// Tailscale now. On success the hold is in the ledger and the record says which role Tailkeeper
/// is setting (with the one it replaces in `before`), so a crash before the change loses nothing.
pub fn start_role(
    ledger: &mut GrantLedgerSpec,
    mut hold: Hold,
    current: &str,
) -> Result<RoleStart, RoleRefusal> {
    let role = hold.role.clone().unwrap_or_default().to_ascii_lowercase();
    ledger.holds.retain(|h| h.grant_uid != hold.grant_uid);
    observe(ledger, &hold.user_id, current);
    let baseline = record_mut(ledger, &hold.user_id)
        .map(|r| r.baseline.clone())
        .unwrap_or_else(|| current.to_ascii_lowercase());
    let others = held_roles(ledger, &hold.user_id, &hold.grant_uid);
    let without: Vec<&str> = std::iter::once(baseline.as_str())
        .chain(others.iter().map(|(_, r)| *r))
        .collect();
    let in_effect = least_upper_bound(without.iter().copied()).unwrap_or_else(|| baseline.clone());
    if !includes(&role, &baseline) && !includes(&baseline, &role) {
        return Err(RoleRefusal::NotARaise {
            current: baseline,
            role,
        });
    }
    // Held roles must stay a chain, so that each one ending leaves a role that includes the
    // rest: a role neither including nor included by another grant's waits for it to end.
    if let Some((grant, held)) = others
        .iter()
        .find(|(_, r)| !includes(&role, r) && !includes(r, &role))
    {
        return Err(RoleRefusal::Conflicts {
            grant: grant.to_string(),
            held: held.to_string(),
        });
    }
    let mut with = without.clone();
    with.push(&role);
    let target = least_upper_bound(with.iter().copied()).unwrap_or_else(|| role.clone());
    let already_held = includes(&in_effect, &role);
    let current = current.to_ascii_lowercase();
    let set = (target != current).then(|| target.clone());
    match record_mut(ledger, &hold.user_id) {
        Some(record) => {
            // This plan replaces any change still pending.
            record.before = set.as_ref().map(|_| current.clone());
            record.set = target;
        }
        None => ledger.roles.push(RoleRecord {
            user_id: hold.user_id.clone(),
            login: hold.login.clone(),
            baseline,
            before: set.as_ref().map(|_| current.clone()),
            set: target,
        }),
    }
    hold.role = Some(role);
    hold.superseded = false;
    ledger.holds.push(hold);
    Ok(RoleStart { set, already_held })
}

/// The role change of a user was carried out: clear the note kept for a crash in between.
pub fn role_applied(ledger: &mut GrantLedgerSpec, user_id: &str) {
    if let Some(record) = record_mut(ledger, user_id) {
        record.before = None;
    }
}

/// Tailscale refused a role change: take the grant's hold out and forget the change, as if it
/// had never started.
pub fn role_refused(ledger: &mut GrantLedgerSpec, grant_uid: &str) {
    let Some(index) = ledger.holds.iter().position(|h| h.grant_uid == grant_uid) else {
        return;
    };
    let hold = ledger.holds.remove(index);
    let remaining = ledger
        .holds
        .iter()
        .any(|h| h.user_id == hold.user_id && h.role.is_some());
    if let Some(record) = record_mut(ledger, &hold.user_id) {
        if let Some(before) = record.before.take() {
            record.set = before;
        }
    }
    if !remaining {
        ledger.roles.retain(|r| r.user_id != hold.user_id);
    }
}

/// End a role grant: take its hold out and say which role the user should hold now. `current`
/// is the user's role in Tailscale now (`None`: the user no longer exists).
pub fn end_role(ledger: &mut GrantLedgerSpec, grant_uid: &str, current: Option<&str>) -> RoleEnd {
    let Some(index) = ledger.holds.iter().position(|h| h.grant_uid == grant_uid) else {
        return RoleEnd {
            set: None,
            changed_by_person: None,
            still_held: false,
        };
    };
    let hold = ledger.holds.remove(index);
    let user_id = hold.user_id.clone();
    let remaining = held_roles(ledger, &user_id, "");
    let still_held = !remaining.is_empty();
    let Some(current) = current else {
        if !ledger
            .holds
            .iter()
            .any(|h| h.user_id == user_id && h.role.is_some())
        {
            ledger.roles.retain(|r| r.user_id != user_id);
        }
        return RoleEnd {
            set: None,
            changed_by_person: None,
            still_held,
        };
    };
    let changed = observe(ledger, &user_id, current);
    let mut set = None;
    if !changed {
        let baseline = record_mut(ledger, &user_id)
            .map(|r| r.baseline.clone())
            .unwrap_or_else(|| current.to_ascii_lowercase());
        let roles: Vec<&str> = std::iter::once(baseline.as_str())
            .chain(held_roles(ledger, &user_id, "").iter().map(|(_, r)| *r))
            .collect();
        // Held roles and the baseline always form a chain (start_role refuses the rest).
        let target = least_upper_bound(roles.iter().copied()).unwrap_or(baseline);
        let differs = !target.eq_ignore_ascii_case(current);
        if let Some(record) = record_mut(ledger, &user_id) {
            // This plan replaces any change still pending.
            record.before = differs.then(|| current.to_ascii_lowercase());
            record.set = target.clone();
        }
        if differs {
            set = Some(target);
        }
    }
    if !ledger
        .holds
        .iter()
        .any(|h| h.user_id == user_id && h.role.is_some())
        && set.is_none()
    {
        ledger.roles.retain(|r| r.user_id != user_id);
    }
    RoleEnd {
        set,
        changed_by_person: changed.then(|| current.to_ascii_lowercase()),
        still_held,
    }
}

/// After the last role change of an ended grant was carried out: drop the user's record when
/// no grant holds a role any more.
pub fn role_settled(ledger: &mut GrantLedgerSpec, user_id: &str) {
    role_applied(ledger, user_id);
    if !ledger
        .holds
        .iter()
        .any(|h| h.user_id == user_id && h.role.is_some())
    {
        ledger.roles.retain(|r| r.user_id != user_id);
    }
}

/// Role changes the ledger announced but that may not have reached Tailscale (the operator
/// stopped in between): (user id, role to set, role it replaces). The sweeper finishes them.
pub fn unfinished_roles(ledger: &GrantLedgerSpec) -> Vec<(String, String, String)> {
    ledger
        .roles
        .iter()
        .filter_map(|r| {
            r.before
                .as_ref()
                .map(|b| (r.user_id.clone(), r.set.clone(), b.clone()))
        })
        .collect()
}

/// A posture attribute on one device as Tailscale shows it now.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceAttribute {
    pub device_id: String,
    /// The attribute's value and expiry, when set.
    pub current: Option<(Value, Option<String>)>,
}

/// A change to a posture attribute on one device.
#[derive(Clone, Debug, PartialEq)]
pub enum PostureChange {
    /// Set the value, with Tailscale's own expiry.
    Set {
        device_id: String,
        value: Value,
        expiry: Option<String>,
    },
    /// Remove the attribute.
    Delete { device_id: String },
    /// A person changed the value while the grant was active: left as it is.
    Left { device_id: String, current: Value },
}

fn attribute_index(ledger: &GrantLedgerSpec, device_id: &str, key: &str) -> Option<usize> {
    ledger
        .attributes
        .iter()
        .position(|a| a.device_id == device_id && a.key == key)
}

/// How long the holds of a posture attribute on a device last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum HeldFor {
    /// No hold has it.
    Nothing,
    /// Until the latest expiry among them.
    Until(Timestamp),
    /// A standing grant holds it: no expiry.
    UntilRemoved,
}

impl HeldFor {
    fn of(expires: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Self {
        expires.map_or(HeldFor::UntilRemoved, |t| HeldFor::Until(t.0))
    }

    /// Tailscale's own expiry for the value (`None`: it has none).
    fn expiry(self) -> Option<String> {
        match self {
            HeldFor::Until(at) => Some(at.to_string()),
            HeldFor::Nothing | HeldFor::UntilRemoved => None,
        }
    }
}

/// How long the holds of `key` on a device last, together.
fn held_for(ledger: &GrantLedgerSpec, device_id: &str, key: &str) -> HeldFor {
    ledger
        .holds
        .iter()
        .filter(|h| {
            h.posture
                .as_ref()
                .is_some_and(|p| p.key == key && p.devices.iter().any(|d| d == device_id))
        })
        .map(|h| HeldFor::of(h.expires_at.as_ref()))
        .max()
        .unwrap_or(HeldFor::Nothing)
}

/// Start (or resume) a posture-attribute grant on the user's devices. The hold records the
/// devices where Tailkeeper sets the value; a device where a person already set exactly this
/// value is left alone. Returns the values to set, each with the latest expiry of its holds (none
/// while a standing grant holds it).
pub fn start_posture(
    ledger: &mut GrantLedgerSpec,
    mut hold: Hold,
    devices: &[DeviceAttribute],
) -> Vec<PostureChange> {
    ledger.holds.retain(|h| h.grant_uid != hold.grant_uid);
    let Some(mut posture) = hold.posture.take() else {
        return Vec::new();
    };
    let wanted = Value::String(posture.value.clone());
    posture.devices.clear();
    for device in devices {
        let current = device.current.as_ref().map(|(v, _)| v);
        match attribute_index(ledger, &device.device_id, &posture.key) {
            Some(i) => {
                let record = &mut ledger.attributes[i];
                if current != Some(&Value::String(record.set.clone())) {
                    // A person set another value meanwhile: that is the one to give back.
                    record.human_value = current.map(Value::to_string);
                    record.human_expiry = device.current.as_ref().and_then(|(_, e)| e.clone());
                }
                record.set = posture.value.clone();
            }
            None if current == Some(&wanted) => continue,
            None => ledger.attributes.push(AttributeRecord {
                device_id: device.device_id.clone(),
                key: posture.key.clone(),
                set: posture.value.clone(),
                human_value: current.map(Value::to_string),
                human_expiry: device.current.as_ref().and_then(|(_, e)| e.clone()),
            }),
        }
        posture.devices.push(device.device_id.clone());
    }
    let key = posture.key.clone();
    let devices_set = posture.devices.clone();
    hold.posture = Some(posture);
    ledger.holds.push(hold);
    devices_set
        .into_iter()
        .map(|device_id| {
            let expiry = held_for(ledger, &device_id, &key).expiry();
            PostureChange::Set {
                device_id,
                value: wanted.clone(),
                expiry,
            }
        })
        .collect()
}

/// End a posture-attribute grant: the values to give back on the devices where no other grant
/// holds the attribute. Where others still hold it but end sooner than this one did (a standing
/// grant ending before a timed one), the value is set again with their latest expiry, so
/// Tailscale still ends it on time by itself (unless a person changed it meanwhile). `devices`
/// are the hold's devices as Tailscale shows them now.
pub fn end_posture(
    ledger: &mut GrantLedgerSpec,
    grant_uid: &str,
    devices: &[DeviceAttribute],
) -> Vec<PostureChange> {
    let Some(index) = ledger.holds.iter().position(|h| h.grant_uid == grant_uid) else {
        return Vec::new();
    };
    let hold = ledger.holds.remove(index);
    let ended = HeldFor::of(hold.expires_at.as_ref());
    let Some(posture) = hold.posture else {
        return Vec::new();
    };
    let mut changes = Vec::new();
    for device_id in &posture.devices {
        let current = devices
            .iter()
            .find(|d| &d.device_id == device_id)
            .and_then(|d| d.current.as_ref().map(|(v, _)| v.clone()));
        let rest = held_for(ledger, device_id, &posture.key);
        if rest != HeldFor::Nothing {
            // Another grant still holds it here: it stays, with their expiry if that is sooner.
            let ours = attribute_index(ledger, device_id, &posture.key)
                .map(|i| Value::String(ledger.attributes[i].set.clone()));
            if rest < ended {
                if let Some(value) = current.filter(|v| ours.as_ref() == Some(v)) {
                    changes.push(PostureChange::Set {
                        device_id: device_id.clone(),
                        value,
                        expiry: rest.expiry(),
                    });
                }
            }
            continue;
        }
        let Some(i) = attribute_index(ledger, device_id, &posture.key) else {
            continue;
        };
        let record = ledger.attributes.remove(i);
        let ours = Value::String(record.set.clone());
        match current {
            Some(v) if v != ours => changes.push(PostureChange::Left {
                device_id: device_id.clone(),
                current: v,
            }),
            _ => match record
                .human_value
                .as_deref()
                .and_then(|v| serde_json::from_str::<Value>(v).ok())
            {
                Some(value) => changes.push(PostureChange::Set {
                    device_id: device_id.clone(),
                    value,
                    expiry: record.human_expiry.clone(),
                }),
                None => changes.push(PostureChange::Delete {
                    device_id: device_id.clone(),
                }),
            },
        }
    }
    changes
}

#[cfg(test)]
pub(crate) mod tests;
