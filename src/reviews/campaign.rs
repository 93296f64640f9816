//! A campaign's decisions, pure: which holdings it covers and who reviews each, which
//! decisions count, where it stands, and what revoking an item takes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use super::{Decided, Item};
use crate::api::{
    AccessReviewSpec, ReviewCounts, ReviewDecision, ReviewPhase, ReviewerProgress, TailscaleRole,
    UndecidedAction,
};
use crate::compliance::{Directory, EmploymentStatus};
use crate::entitlements::{is_privileged, AddedBy, Holding, Inventory, Kind, Resolver, Via};

/// The most items one campaign takes: beyond it the campaign refuses to start (narrow the
/// scope) rather than store what nobody could review.
pub const MAX_ITEMS: usize = 50_000;

/// The items `spec` covers in `inventory`, each assigned to its reviewers, sorted by user and
/// entitlement.
pub fn snapshot(
    spec: &AccessReviewSpec,
    inventory: &Inventory,
    directory: Option<&Directory>,
) -> Result<Vec<Item>, String> {
    let resolver = Resolver::new(inventory);
    let scope = &spec.scope;
    let roles: BTreeSet<String> = scope.roles.iter().map(|r| role_name(*r)).collect();
    let selected = |e: &crate::entitlements::Entitlement| {
        scope.everything
            || match e.kind {
                Kind::Role => {
                    let role = e.id.strip_prefix("role:").unwrap_or_default();
                    roles.contains(role) || (scope.privileged && is_privileged(role))
                }
                Kind::Group => scope.groups.iter().any(|g| g == &e.id),
                Kind::Grant | Kind::Acl | Kind::Ssh => {
                    (scope.privileged && e.kind == Kind::Ssh)
                        || e.dst
                            .iter()
                            .any(|d| scope.destinations.iter().any(|s| destination_matches(d, s)))
                }
                Kind::Posture => false,
            }
    };
    let mut items = Vec::new();
    for entitlement in inventory.entitlements.iter().filter(|e| selected(e)) {
        for holding in resolver.holders(&entitlement.id) {
            if items.len() >= MAX_ITEMS {
                return Err(format!(
                    "the scope covers more than {MAX_ITEMS} holdings: narrow it (roles, groups \
                     or destinations) and create the review again"
                ));
            }
            items.push(item(spec, inventory, directory, &holding));
        }
    }
    items.sort_by(|a, b| (&a.user, &a.entitlement).cmp(&(&b.user, &b.entitlement)));
    Ok(items)
}

/// `admin`, `it-admin`… as Tailscale and the inventory write roles.
pub fn role_name(role: TailscaleRole) -> String {
    serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Whether a rule's `dst` entry names the scope's destination: equal, or the host of an ACL
/// `host:port` entry.
fn destination_matches(dst: &str, wanted: &str) -> bool {
    dst == wanted
        || dst
            .strip_prefix(wanted)
            .is_some_and(|rest| rest.starts_with(':') && !wanted.ends_with(':'))
}

fn item(
    spec: &AccessReviewSpec,
    inventory: &Inventory,
    directory: Option<&Directory>,
    holding: &Holding<'_>,
) -> Item {
    let via = holding.via.to_string();
    let digest = Sha256::digest(
        [holding.user, "\0", holding.entitlement, "\0", &via]
            .concat()
            .as_bytes(),
    );
    let id = format!(
        "i{}",
        digest
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let person = inventory
        .users
        .binary_search_by(|u| u.login.as_str().cmp(holding.user))
        .ok()
        .and_then(|i| inventory.users[i].person.clone());
    let mut reviewers: Vec<String> = spec
        .reviewers
        .users
        .iter()
        .map(|u| format!("user:{u}"))
        .chain(spec.reviewers.groups.iter().map(|g| format!("group:{g}")))
        .collect();
    let mut manager = None;
    if spec.reviewers.managers {
        if let Some((login, boss)) = directory.and_then(|d| {
            let login = d.lookup(holding.user)?.manager.clone()?;
            let boss = d.lookup(&login)?;
            Some((login, boss))
        }) {
            reviewers.extend(boss.kubernetes_users.iter().map(|u| format!("user:{u}")));
            manager = Some(login);
        }
    }
    reviewers.sort();
    reviewers.dedup();
    Item {
        id,
        user: holding.user.to_string(),
        person,
        entitlement: holding.entitlement.to_string(),
        kind: holding.kind,
        description: holding.description.to_string(),
        via: holding.via.clone(),
        added_by: holding.added_by.clone(),
        reviewers,
        manager,
        decision: None,
        applied: None,
    }
}

/// A reviewer's decision, as proven by the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted<'a> {
    /// The AccessReviewDecision's name.
    pub name: &'a str,
    /// The Kubernetes user who created it (proven by admission).
    pub reviewer: &'a str,
    /// The reviewer group it decides through (admission proves the reviewer is in it).
    pub group: Option<&'a str>,
    pub decision: ReviewDecision,
    pub comment: Option<&'a str>,
    pub items: &'a [String],
    pub at: Timestamp,
}

/// What became of a decision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Taken {
    pub accepted: usize,
    /// (item, why) for each item refused.
    pub refused: Vec<(String, String)>,
}

/// Takes what `submitted` may decide into `items`: items assigned to the reviewer (by name,
/// or through the group it names, which the directory — when it lists the reviewer's groups
/// — must agree with), undecided, and not the reviewer's own access. A reviewer the directory
/// does not know (no person lists the user in `kubernetesUsers`), or who left, decides
/// nothing: nobody could tell whether the access is their own.
pub fn decide(items: &mut [Item], submitted: &Submitted<'_>, directory: &Directory) -> Taken {
    let mut taken = Taken::default();
    let refuse_all = |why: String| Taken {
        accepted: 0,
        refused: submitted
            .items
            .iter()
            .map(|id| (id.clone(), why.clone()))
            .collect(),
    };
    let Some(reviewer) = directory.person_of_user(submitted.reviewer) else {
        return refuse_all(format!(
            "{} is not in the directory (no person lists it in kubernetesUsers), so nobody can \
             tell whether this access is their own: add them to the directory",
            submitted.reviewer
        ));
    };
    if reviewer.status == EmploymentStatus::Offboarded {
        return refuse_all(format!(
            "{} belongs to an offboarded person",
            submitted.reviewer
        ));
    }
    if let Some(group) = submitted.group {
        if !reviewer.kubernetes_groups.is_empty()
            && !reviewer.kubernetes_groups.iter().any(|g| g == group)
        {
            return refuse_all(format!(
                "the directory does not list {} in group {group}",
                submitted.reviewer
            ));
        }
    }
    let index: HashMap<String, usize> = items
        .iter()
        .enumerate()
        .map(|(i, item)| (item.id.clone(), i))
        .collect();
    let as_user = format!("user:{}", submitted.reviewer);
    let as_group = submitted.group.map(|g| format!("group:{g}"));
    let mut seen = BTreeSet::new();
    for id in submitted.items {
        if !seen.insert(id.as_str()) {
            continue;
        }
        let Some(&i) = index.get(id) else {
            taken
                .refused
                .push((id.clone(), "not an item of this campaign".into()));
            continue;
        };
        let item = &mut items[i];
        let assigned = item.reviewers.contains(&as_user)
            || as_group
                .as_ref()
                .is_some_and(|g| item.reviewers.contains(g));
        let why = if !assigned {
            Some(format!(
                "not assigned to {}{}",
                submitted.reviewer,
                submitted
                    .group
                    .map(|g| format!(" or group {g}"))
                    .unwrap_or_default()
            ))
        } else if reviewer
            .login_names
            .iter()
            .any(|l| l.eq_ignore_ascii_case(&item.user))
        {
            Some("your own access: another reviewer must decide it".into())
        } else {
            item.decision.as_ref().map(|d| {
                format!(
                    "already decided ({} by {})",
                    d.decision.as_str(),
                    if d.by.is_empty() { "default" } else { &d.by }
                )
            })
        };
        match why {
            Some(why) => taken.refused.push((id.clone(), why)),
            None => {
                item.decision = Some(Decided {
                    decision: submitted.decision,
                    by: submitted.reviewer.to_string(),
                    at: submitted.at,
                    comment: submitted.comment.map(str::to_string),
                    record: Some(submitted.name.to_string()),
                });
                taken.accepted += 1;
            }
        }
    }
    taken
}

/// At the due time: every undecided item gets `undecided`. Returns how many did.
pub fn close(items: &mut [Item], undecided: UndecidedAction, now: Timestamp) -> usize {
    let mut closed = 0;
    for item in items.iter_mut().filter(|i| i.decision.is_none()) {
        item.decision = Some(Decided::by_default(undecided, now));
        closed += 1;
    }
    closed
}

/// The phase after this pass: over once every item is decided (by reviewers: Completed; some
/// at the due time: Overdue) and every revocation is carried out or cannot be.
pub fn phase(items: &[Item]) -> ReviewPhase {
    let all_decided = items.iter().all(|i| i.decision.is_some());
    let all_applied = items.iter().all(|i| !needs_applying(i));
    if !all_decided || !all_applied {
        return ReviewPhase::Open;
    }
    if items
        .iter()
        .any(|i| i.decision.as_ref().is_some_and(|d| !d.by_reviewer()))
    {
        ReviewPhase::Overdue
    } else {
        ReviewPhase::Completed
    }
}

/// A `Revoke` not carried out yet.
pub fn needs_applying(item: &Item) -> bool {
    item.applied.is_none()
        && item
            .decision
            .as_ref()
            .is_some_and(|d| d.decision == ReviewDecision::Revoke)
}

pub fn counts(items: &[Item]) -> ReviewCounts {
    let mut c = ReviewCounts {
        items: items.len() as i64,
        ..Default::default()
    };
    for item in items {
        match &item.decision {
            None => c.undecided += 1,
            Some(d) => {
                if d.by_reviewer() {
                    c.decided += 1;
                }
                match d.decision {
                    ReviewDecision::Keep => c.kept += 1,
                    ReviewDecision::Revoke => c.revoked += 1,
                }
            }
        }
        match item.applied.as_ref().map(|a| a.outcome) {
            Some(super::Outcome::Removed | super::Outcome::AlreadyGone) => c.applied += 1,
            Some(super::Outcome::NotApplicable) => c.not_applicable += 1,
            None if needs_applying(item) => c.pending += 1,
            None => {}
        }
    }
    c
}

/// Each reviewer's share, most items first, at most `limit`.
pub fn progress(items: &[Item], limit: usize) -> Vec<ReviewerProgress> {
    let mut by: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for item in items {
        for reviewer in &item.reviewers {
            let entry = by.entry(reviewer).or_default();
            entry.0 += 1;
            if item.decision.as_ref().is_some_and(Decided::by_reviewer) {
                entry.1 += 1;
            }
        }
    }
    let mut out: Vec<ReviewerProgress> = by
        .into_iter()
        .map(|(reviewer, (assigned, decided))| ReviewerProgress {
            reviewer: reviewer.to_string(),
            assigned,
            decided,
        })
        .collect();
    out.sort_by(|a, b| {
        b.assigned
            .cmp(&a.assigned)
            .then(a.reviewer.cmp(&b.reviewer))
    });
    out.truncate(limit);
    out
}

/// What revoking an item takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revocation {
    /// Lower the user's role to `member` in Tailscale.
    LowerRole { login: String, from: String },
    /// Remove the user's direct entries within the entitlement (found in the file as it is
    /// then) — or, held through a group, their membership of that group.
    Entries { login: String, entitlement: String },
    /// Tailkeeper cannot take it away; the reason says who can.
    NotApplicable(String),
}

pub fn revocation(item: &Item) -> Revocation {
    if let AddedBy::Tailkeeper { grants, owner } = &item.added_by {
        return Revocation::NotApplicable(if grants.is_empty() {
            format!(
                "held through an entry of another Tailkeeper installation ({}): it ends with \
                 that installation's grant",
                owner.as_deref().unwrap_or("legacy marker")
            )
        } else {
            format!(
                "held through grant {}: it ends when the grant does; delete the grant to end \
                 it now",
                grants.join(", ")
            )
        });
    }
    match (&item.via, item.kind) {
        (Via::Direct, Kind::Role) => Revocation::LowerRole {
            login: item.user.clone(),
            from: item
                .entitlement
                .strip_prefix("role:")
                .unwrap_or_default()
                .to_string(),
        },
        (Via::Direct, Kind::Group | Kind::Grant | Kind::Acl | Kind::Ssh) => Revocation::Entries {
            login: item.user.clone(),
            entitlement: item.entitlement.clone(),
        },
        (Via::Group(group), _) => Revocation::Entries {
            login: item.user.clone(),
            entitlement: group.clone(),
        },
        (Via::Autogroup(g), _) | (Via::Wildcard(g), _) => Revocation::NotApplicable(format!(
            "held through {g}, which covers users by what they are, not by name: change the \
             rule, or the user's role or type, in Tailscale"
        )),
        (Via::Device(d), _) => Revocation::NotApplicable(format!(
            "a posture attribute on device {d}: remove it in Tailscale"
        )),
        (Via::Direct, Kind::Posture) => Revocation::NotApplicable(
            "a posture attribute set in Tailscale: remove it there".into(),
        ),
    }
}
