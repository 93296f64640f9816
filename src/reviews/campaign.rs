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

impl Taken {
    /// Every one of `items` refused for the same reason.
    pub fn refusing_all(items: &[String], why: &str) -> Self {
        Taken {
            accepted: 0,
            refused: items
                .iter()
                .map(|id| (id.clone(), why.to_string()))
                .collect(),
        }
    }
}

/// Takes what `submitted` may decide into `items`: items assigned to the reviewer (by name,
/// or through the group it names, which the directory — when it lists the reviewer's groups
/// — must agree with), undecided, and not the reviewer's own access. A reviewer the directory
/// does not know (no person lists the user in `kubernetesUsers`), or who left, decides
/// nothing: nobody could tell whether the access is their own.
pub fn decide(items: &mut [Item], submitted: &Submitted<'_>, directory: &Directory) -> Taken {
    let mut taken = Taken::default();
    let refuse_all = |why: String| Taken::refusing_all(submitted.items, &why);
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
        if item
            .decision
            .as_ref()
            .is_some_and(|d| d.record.as_deref() == Some(submitted.name))
        {
            // Taken before (a restart between recording the items and the decision's status).
            taken.accepted += 1;
            continue;
        }
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

/// The logins whose access the campaign took away in the day before `now` (each once, at its
/// latest removal, most recent first, at most 100): what the policy's daily limit counts of it.
pub fn recent_revocations(items: &[Item], now: Timestamp) -> Vec<crate::api::RecentChange> {
    let since = now - crate::compliance::limits::DAY;
    let mut latest: BTreeMap<String, Timestamp> = BTreeMap::new();
    for item in items {
        if let Some(a) = &item.applied {
            if a.outcome == super::Outcome::Removed && a.at > since {
                let at = latest.entry(item.user.to_ascii_lowercase()).or_insert(a.at);
                *at = (*at).max(a.at);
            }
        }
    }
    let mut changes: Vec<crate::api::RecentChange> = latest
        .into_iter()
        .map(|(login_name, at)| crate::api::RecentChange {
            login_name,
            at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at),
        })
        .collect();
    changes.sort_by_key(|c| std::cmp::Reverse(c.at.0));
    changes.truncate(100);
    changes
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

/// What revoking one item did to the policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRevocation {
    pub text: String,
    pub removed: Vec<super::RemovedText>,
    /// Entries within the entitlement naming the user that Tailkeeper keeps (a grant's).
    pub kept: Vec<super::RemovedText>,
}

/// Removes `login`'s direct entries within `entitlement` (a group or a rule, found by its
/// content in `text` as it is now) and nothing else, byte for byte.
pub fn revoke_in_file(
    text: &str,
    login: &str,
    entitlement: &str,
) -> Result<FileRevocation, crate::policy_file::PolicyFileError> {
    let document = crate::policy_file::document(text)?;
    let locations = crate::entitlements::locations_of(&document, entitlement);
    let logins = BTreeSet::from([login.to_string()]);
    let out = crate::policy_file::deprovision_within(text, &logins, &locations)?;
    Ok(FileRevocation {
        text: out.text,
        removed: out
            .removed
            .into_iter()
            .map(|r| super::RemovedText {
                location: r.location,
                text: r.text,
            })
            .collect(),
        kept: out
            .kept
            .into_iter()
            .map(|k| super::RemovedText {
                location: k.location,
                text: k.text,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Recurrence, ReviewScope, Reviewers};
    use crate::compliance::{parse_people, DirectoryFormat};
    use crate::entitlements::{build, Attribution, Member};
    use crate::policy_file::document;

    const FILE: &str = r#"{
  "groups": {
    "group:prod": ["erin@example.com", "alice@example.com"],
    "group:eng": ["frank@example.com"],
  },
  "grants": [
    {"src": ["group:prod"], "dst": ["tag:prod"], "ip": ["*"]},
    {"src": ["frank@example.com"], "dst": ["tag:db:5432"], "ip": ["tcp:5432"]},
    {"src": ["autogroup:member"], "dst": ["tag:wiki"], "ip": ["443"]},
  ],
  "ssh": [
    {"action": "check", "src": ["alice@example.com"], "dst": ["tag:prod"], "users": ["root"]},
  ],
}"#;

    fn inventory() -> Inventory {
        let member = |login: &str, role: &str| Member {
            login: login.into(),
            role: role.into(),
            status: "active".into(),
            user_type: "member".into(),
            person: None,
            role_granted_by: Vec::new(),
        };
        build(
            vec![
                member("alice@example.com", "admin"),
                member("bob@example.com", "it-admin"),
                member("erin@example.com", "member"),
                member("frank@example.com", "member"),
            ],
            &document(FILE).expect("parses"),
            &Attribution::default(),
            Vec::new(),
        )
    }

    fn directory() -> Directory {
        let people = parse_people(
            DirectoryFormat::Yaml,
            "
- {loginName: alice@example.com, kubernetesUsers: [alice], kubernetesGroups: [leads]}
- {loginName: bob@example.com, kubernetesUsers: [bob]}
- {loginName: carol@example.com, kubernetesUsers: [carol]}
- {loginName: erin@example.com, manager: carol@example.com}
- {loginName: frank@example.com, manager: nobody@example.com}
- {loginName: gone@example.com, kubernetesUsers: [gone], status: offboarded}
",
        )
        .expect("directory");
        Directory::build([("inline", people)]).expect("directory")
    }

    fn spec(scope: ReviewScope, reviewers: Reviewers) -> AccessReviewSpec {
        AccessReviewSpec {
            policy_ref: crate::api::LocalRef { name: "p".into() },
            scope,
            reviewers,
            duration: "1h".into(),
            undecided: UndecidedAction::Keep,
            recurrence: Some(Recurrence { every_days: 90 }),
            description: None,
        }
    }

    fn users(names: &[&str]) -> Reviewers {
        Reviewers {
            users: names.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        }
    }

    fn holdings(items: &[Item]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|i| (i.user.clone(), i.entitlement.clone()))
            .collect()
    }

    fn submitted<'a>(reviewer: &'a str, items: &'a [String]) -> Submitted<'a> {
        Submitted {
            name: "d1",
            reviewer,
            group: None,
            decision: ReviewDecision::Revoke,
            comment: Some("not needed"),
            items,
            at: "2026-11-30T10:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn what_a_campaign_took_away_today_counts_each_login_once_at_its_latest() {
        let everything = ReviewScope {
            everything: true,
            ..Default::default()
        };
        let mut items = snapshot(
            &spec(everything, users(&["bob"])),
            &inventory(),
            Some(&directory()),
        )
        .unwrap();
        let now: Timestamp = "2026-06-02T12:00:00Z".parse().unwrap();
        let removed = |hours_ago: i64| {
            Some(super::super::Applied {
                outcome: Outcome::Removed,
                at: now - jiff::SignedDuration::from_hours(hours_ago),
                removed: Vec::new(),
                message: String::new(),
            })
        };
        let of = |items: &[Item], user: &str| -> Vec<usize> {
            (0..items.len())
                .filter(|&i| items[i].user == user)
                .collect()
        };
        let alice = of(&items, "alice@example.com");
        assert!(alice.len() >= 2, "alice holds several: {items:?}");
        items[alice[0]].applied = removed(3);
        items[alice[1]].applied = removed(1);
        let frank = of(&items, "frank@example.com");
        items[frank[0]].applied = removed(30);
        let erin = of(&items, "erin@example.com");
        items[erin[0]].applied = Some(super::super::Applied {
            outcome: Outcome::NotApplicable,
            ..removed(1).unwrap()
        });
        let recent = recent_revocations(&items, now);
        let got: Vec<(&str, Timestamp)> = recent
            .iter()
            .map(|c| (c.login_name.as_str(), c.at.0))
            .collect();
        assert_eq!(
            got,
            [(
                "alice@example.com",
                now - jiff::SignedDuration::from_hours(1)
            )],
            "a day old and nothing taken away do not count"
        );
    }

    #[test]
    fn a_scope_selects_roles_groups_destinations_privileged_access_or_everything() {
        let inv = inventory();
        let dir = directory();
        let roles = ReviewScope {
            roles: vec![TailscaleRole::Admin],
            ..Default::default()
        };
        let items = snapshot(&spec(roles, users(&["bob"])), &inv, Some(&dir)).unwrap();
        assert_eq!(
            holdings(&items),
            [("alice@example.com".into(), "role:admin".into())]
        );
        let groups = ReviewScope {
            groups: vec!["group:prod".into()],
            ..Default::default()
        };
        let items = snapshot(&spec(groups, users(&["bob"])), &inv, Some(&dir)).unwrap();
        assert_eq!(
            holdings(&items),
            [
                ("alice@example.com".into(), "group:prod".into()),
                ("erin@example.com".into(), "group:prod".into())
            ]
        );
        // A destination names a rule by its dst; an ACL-style host:port matches its host.
        let dst = ReviewScope {
            destinations: vec!["tag:db".into()],
            ..Default::default()
        };
        let items = snapshot(&spec(dst, users(&["bob"])), &inv, Some(&dir)).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].user, "frank@example.com");
        assert!(items[0].entitlement.starts_with("grant:"));
        assert!(!destination_matches("tag:dbx:5432", "tag:db"));
        // Privileged: roles above member and SSH rules.
        let privileged = ReviewScope {
            privileged: true,
            ..Default::default()
        };
        let items = snapshot(&spec(privileged, users(&["carol"])), &inv, Some(&dir)).unwrap();
        let mut got: Vec<(String, Kind)> = items.iter().map(|i| (i.user.clone(), i.kind)).collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("alice@example.com".into(), Kind::Role),
                ("alice@example.com".into(), Kind::Ssh),
                ("bob@example.com".into(), Kind::Role),
            ]
        );
        // Everything: every holding, including through groups and autogroups.
        let all = ReviewScope {
            everything: true,
            ..Default::default()
        };
        let items = snapshot(&spec(all, users(&["carol"])), &inv, Some(&dir)).unwrap();
        let mut erin: Vec<String> = items
            .iter()
            .filter(|i| i.user == "erin@example.com")
            .map(|i| format!("{} {}", i.entitlement.split(':').next().unwrap(), i.via))
            .collect();
        erin.sort();
        assert_eq!(
            erin,
            [
                "grant via autogroup:member",
                "grant via group:prod",
                "group direct",
                "role direct"
            ]
        );
        // Ids are stable and distinct.
        let again = snapshot(
            &spec(
                ReviewScope {
                    everything: true,
                    ..Default::default()
                },
                users(&["carol"]),
            ),
            &inv,
            Some(&dir),
        )
        .unwrap();
        assert_eq!(items, again);
        let ids: BTreeSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids.len(), items.len());
    }

    #[test]
    fn managers_review_their_peoples_items_when_the_directory_names_them() {
        let reviewers = Reviewers {
            managers: true,
            groups: vec!["leads".into()],
            ..Default::default()
        };
        let scope = ReviewScope {
            groups: vec!["group:prod".into(), "group:eng".into()],
            ..Default::default()
        };
        let items = snapshot(&spec(scope, reviewers), &inventory(), Some(&directory())).unwrap();
        let of = |user: &str| items.iter().find(|i| i.user == user).unwrap();
        assert_eq!(
            of("erin@example.com").reviewers,
            ["group:leads", "user:carol"]
        );
        assert_eq!(
            of("erin@example.com").manager.as_deref(),
            Some("carol@example.com")
        );
        // A manager the directory does not know reviews nothing: only the listed group does.
        assert_eq!(of("frank@example.com").reviewers, ["group:leads"]);
        assert_eq!(of("frank@example.com").manager, None);
    }

    #[test]
    fn only_assigned_reviewers_decide_and_never_on_their_own_access() {
        let scope = ReviewScope {
            groups: vec!["group:prod".into()],
            ..Default::default()
        };
        let mut items = snapshot(
            &spec(scope, users(&["alice", "gone", "zed"])),
            &inventory(),
            Some(&directory()),
        )
        .unwrap();
        let ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
        let (alices, erins) = (ids[0].clone(), ids[1].clone());
        let dir = directory();
        // Not in the directory, or offboarded: nothing counts.
        let all = [alices.clone(), erins.clone()];
        let t = decide(&mut items, &submitted("zed", &all), &dir);
        assert_eq!(t.accepted, 0);
        assert!(t
            .refused
            .iter()
            .all(|(_, why)| why.contains("not in the directory")));
        let t = decide(&mut items, &submitted("gone", &all), &dir);
        assert!(t.refused.iter().all(|(_, why)| why.contains("offboarded")));
        // Bob is in the directory but not a reviewer of this campaign.
        let t = decide(&mut items, &submitted("bob", &all), &dir);
        assert!(t
            .refused
            .iter()
            .all(|(_, why)| why.contains("not assigned to bob")));
        // Alice: not her own item; an unknown id is named; repeats count once.
        let mixed = [
            alices.clone(),
            erins.clone(),
            "i-nope".into(),
            erins.clone(),
        ];
        let t = decide(&mut items, &submitted("alice", &mixed), &dir);
        assert_eq!(t.accepted, 1);
        assert_eq!(
            t.refused,
            [
                (
                    alices.clone(),
                    "your own access: another reviewer must decide it".to_string()
                ),
                (
                    "i-nope".to_string(),
                    "not an item of this campaign".to_string()
                )
            ]
        );
        let d = items[1].decision.clone().expect("decided");
        assert_eq!(
            (d.decision, d.by.as_str()),
            (ReviewDecision::Revoke, "alice")
        );
        assert_eq!(d.record.as_deref(), Some("d1"));
        // The same decision again (a restart) is taken once, not refused.
        let again = decide(
            &mut items,
            &submitted("alice", std::slice::from_ref(&erins)),
            &dir,
        );
        assert_eq!((again.accepted, again.refused.len()), (1, 0));
        // Another decision on a decided item is refused: the first stands.
        let mut later = submitted("alice", std::slice::from_ref(&erins));
        later.name = "d2";
        later.decision = ReviewDecision::Keep;
        let t = decide(&mut items, &later, &dir);
        assert!(t.refused[0]
            .1
            .starts_with("already decided (Revoke by alice)"));
        assert_eq!(
            items[1].decision.as_ref().unwrap().decision,
            ReviewDecision::Revoke
        );
    }

    #[test]
    fn a_group_decides_only_when_the_directory_agrees() {
        let reviewers = Reviewers {
            groups: vec!["leads".into()],
            ..Default::default()
        };
        let scope = ReviewScope {
            groups: vec!["group:eng".into()],
            ..Default::default()
        };
        let dir = directory();
        let mut items = snapshot(&spec(scope, reviewers), &inventory(), Some(&dir)).unwrap();
        let ids = [items[0].id.clone()];
        let mut through = submitted("bob", &ids);
        through.group = Some("leads");
        // bob's person lists no groups: the identity provider's word (proven at admission)
        // stands. alice's lists `leads`; carol claims a group... tested through alice below.
        let t = decide(&mut items.clone(), &through, &dir);
        assert_eq!(t.accepted, 1);
        let mut wrong = submitted("alice", &ids);
        wrong.group = Some("admins");
        let t = decide(&mut items, &wrong, &dir);
        assert!(
            t.refused[0]
                .1
                .contains("does not list alice in group admins"),
            "{t:?}"
        );
        let mut right = submitted("alice", &ids);
        right.group = Some("leads");
        assert_eq!(decide(&mut items, &right, &dir).accepted, 1);
    }

    #[test]
    fn the_due_time_decides_the_rest_and_the_phase_follows() {
        let scope = ReviewScope {
            groups: vec!["group:prod".into()],
            ..Default::default()
        };
        let mut items = snapshot(
            &spec(scope, users(&["bob"])),
            &inventory(),
            Some(&directory()),
        )
        .unwrap();
        assert_eq!(phase(&items), ReviewPhase::Open);
        let ids = [items[0].id.clone()];
        let mut keep = submitted("bob", &ids);
        keep.decision = ReviewDecision::Keep;
        decide(&mut items, &keep, &directory());
        assert_eq!(phase(&items), ReviewPhase::Open, "one undecided");
        let now: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        assert_eq!(close(&mut items, UndecidedAction::Revoke, now), 1);
        assert_eq!(close(&mut items, UndecidedAction::Revoke, now), 0);
        assert_eq!(
            phase(&items),
            ReviewPhase::Open,
            "a revocation to carry out"
        );
        let c = counts(&items);
        assert_eq!(
            (
                c.items,
                c.decided,
                c.kept,
                c.revoked,
                c.pending,
                c.undecided
            ),
            (2, 1, 1, 1, 1, 0)
        );
        items[1].applied = Some(super::super::Applied {
            outcome: Outcome::Removed,
            at: now,
            removed: Vec::new(),
            message: String::new(),
        });
        assert_eq!(phase(&items), ReviewPhase::Overdue);
        assert_eq!(counts(&items).applied, 1);
        let shares = progress(&items, 10);
        assert_eq!(shares[0].reviewer, "user:bob");
        assert_eq!((shares[0].assigned, shares[0].decided), (2, 1));
        // Everything decided by reviewers in time: Completed.
        let mut all = items.clone();
        all[1].decision.as_mut().unwrap().by = "bob".into();
        assert_eq!(phase(&all), ReviewPhase::Completed);
    }

    use super::super::Outcome;

    #[test]
    fn revoking_takes_a_role_an_entry_or_a_membership_and_names_what_a_person_must_do() {
        let all = ReviewScope {
            everything: true,
            ..Default::default()
        };
        let items = snapshot(
            &spec(all, users(&["carol"])),
            &inventory(),
            Some(&directory()),
        )
        .unwrap();
        let find = |user: &str, prefix: &str, via: &str| {
            items
                .iter()
                .find(|i| {
                    i.user == user && i.entitlement.starts_with(prefix) && i.via.to_string() == via
                })
                .unwrap_or_else(|| panic!("{user} {prefix} {via}: {items:?}"))
        };
        assert_eq!(
            revocation(find("alice@example.com", "role:", "direct")),
            Revocation::LowerRole {
                login: "alice@example.com".into(),
                from: "admin".into()
            }
        );
        assert_eq!(
            revocation(find("frank@example.com", "grant:", "direct")),
            Revocation::Entries {
                login: "frank@example.com".into(),
                entitlement: find("frank@example.com", "grant:", "direct")
                    .entitlement
                    .clone()
            }
        );
        assert_eq!(
            revocation(find("erin@example.com", "grant:", "via group:prod")),
            Revocation::Entries {
                login: "erin@example.com".into(),
                entitlement: "group:prod".into()
            }
        );
        assert!(matches!(
            revocation(find("erin@example.com", "grant:", "via autogroup:member")),
            Revocation::NotApplicable(why) if why.contains("autogroup:member")
        ));
        let mut granted = find("erin@example.com", "group:", "direct").clone();
        granted.added_by = AddedBy::Tailkeeper {
            owner: Some("x".into()),
            grants: vec!["team/g1".into()],
        };
        assert!(matches!(
            revocation(&granted),
            Revocation::NotApplicable(why) if why.contains("held through grant team/g1")
        ));
    }

    #[test]
    fn revoking_in_the_file_removes_the_users_entry_in_that_entitlement_only() {
        let inv = inventory();
        let frank_rule = inv
            .entitlements
            .iter()
            .find(|e| e.src == ["frank@example.com"])
            .unwrap()
            .id
            .clone();
        // The rule moved since the snapshot (a rule was added before it): found by content.
        let moved = FILE.replace(
            "  \"grants\": [\n",
            "  \"grants\": [\n    {\"src\": [\"bob@example.com\"], \"dst\": [\"tag:x\"], \"ip\": [\"*\"]},\n",
        );
        let out = revoke_in_file(&moved, "frank@example.com", &frank_rule).unwrap();
        assert_eq!(out.removed.len(), 1);
        assert_eq!(out.removed[0].location, "grants[2]");
        assert!(
            out.text.contains("\"group:eng\": [\"frank@example.com\"]"),
            "group stays"
        );
        assert_eq!(
            out.text,
            moved.replace(
                "    {\"src\": [\"frank@example.com\"], \"dst\": [\"tag:db:5432\"], \"ip\": [\"tcp:5432\"]},\n",
                ""
            )
        );
        let out = revoke_in_file(FILE, "erin@example.com", "group:prod").unwrap();
        assert_eq!(
            out.text,
            // The entry and its comma go; the space before the next stays, as in deprovisioning.
            FILE.replace(
                "[\"erin@example.com\", \"alice@example.com\"]",
                "[ \"alice@example.com\"]"
            )
        );
        // Gone meanwhile: nothing to remove.
        let out = revoke_in_file(FILE, "erin@example.com", "group:eng").unwrap();
        assert!(out.removed.is_empty());
        assert_eq!(out.text, FILE);
    }

    #[test]
    fn ten_thousand_items_fit_the_records_shards() {
        let member = |i: usize| Member {
            login: format!("user{i:05}@example.com"),
            role: if i.is_multiple_of(100) {
                "admin"
            } else {
                "member"
            }
            .into(),
            status: "active".into(),
            user_type: "member".into(),
            person: Some(format!("Person {i}")),
            role_granted_by: Vec::new(),
        };
        let logins: Vec<String> = (0..10_000)
            .map(|i| format!("\"user{i:05}@example.com\""))
            .collect();
        let file = format!(r#"{{"groups": {{"group:all": [{}]}}}}"#, logins.join(","));
        let inv = build(
            (0..10_000).map(member).collect(),
            &document(&file).unwrap(),
            &Attribution::default(),
            Vec::new(),
        );
        let scope = ReviewScope {
            groups: vec!["group:all".into()],
            ..Default::default()
        };
        let reviewers = Reviewers {
            users: vec!["alice".into(), "bob".into()],
            managers: true,
            ..Default::default()
        };
        let items = snapshot(&spec(scope, reviewers), &inv, Some(&directory())).unwrap();
        assert_eq!(items.len(), 10_000);
        let encoded = crate::entitlements::shards::encode_json(&items).unwrap();
        assert!(encoded
            .shards
            .iter()
            .all(|s| s.len() <= crate::entitlements::shards::SHARD_BYTES));
        let slices: Vec<&[u8]> = encoded.shards.iter().map(Vec::as_slice).collect();
        let back: Vec<Item> =
            crate::entitlements::shards::decode_json(&slices, &encoded.digest).unwrap();
        assert_eq!(back, items);
    }
}
