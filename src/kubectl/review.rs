//! `kubectl tailkeeper review`: access reviews as a reviewer sees them. Which campaigns are open
//! and the reviewer's share of each, the items assigned to them (by name, `user:<me>`, or
//! through a group they are in, `group:<g>`), which of those a bulk decision selects, the group
//! it is given through, and the AccessReviewDecisions that carry it, bound to the campaign's
//! UID. Pure. The operator judges every item (assigned to the reviewer, still undecided, not
//! the reviewer's own access); this only spares reviewers decisions that cannot count and fills
//! in what a decision must say.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::json;

use crate::api::{AccessReview, AccessReviewDecision, ReviewDecision, ReviewPhase};
use crate::reviews::Item;

use super::{request, show, Error, Identity};

/// The most items one AccessReviewDecision names (its schema's limit).
pub const MAX_ITEMS_PER_DECISION: usize = 1000;
/// The most characters of a decision's comment (its schema's limit).
pub const MAX_COMMENT_CHARS: usize = 1000;
/// How many of the selected items are shown before confirming.
pub const SHOWN_BEFORE_CONFIRMING: usize = 10;
/// How many refusals of a decision are printed.
const REFUSALS_SHOWN: usize = 20;

fn name(review: &AccessReview) -> &str {
    review.metadata.name.as_deref().unwrap_or_default()
}

fn namespace(review: &AccessReview) -> &str {
    review.metadata.namespace.as_deref().unwrap_or("default")
}

fn phase(review: &AccessReview) -> Option<ReviewPhase> {
    review.status.as_ref().and_then(|s| s.phase)
}

fn message(review: &AccessReview) -> Option<&str> {
    review
        .status
        .as_ref()
        .and_then(|s| s.message.as_deref())
        .filter(|m| !m.trim().is_empty())
}

fn by_name(item: &Item, me: &Identity) -> bool {
    item.reviewers
        .iter()
        .any(|r| r.strip_prefix("user:") == Some(me.user.as_str()))
}

fn by_group(item: &Item, group: &str) -> bool {
    item.reviewers
        .iter()
        .any(|r| r.strip_prefix("group:") == Some(group))
}

/// Whether `item` is assigned to `me`: by name, or through `through` when given, else through
/// any group `me` is in.
pub fn is_assigned(item: &Item, me: &Identity, through: Option<&str>) -> bool {
    by_name(item, me)
        || match through {
            Some(group) => by_group(item, group),
            None => me.groups.iter().any(|g| by_group(item, g)),
        }
}

/// The items of a campaign assigned to `me` (see [`is_assigned`]), in the campaign's order.
pub fn mine<'a>(items: &'a [Item], me: &Identity, through: Option<&str>) -> Vec<&'a Item> {
    items
        .iter()
        .filter(|i| is_assigned(i, me, through))
        .collect()
}

/// A reviewer's share of a campaign.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Share {
    /// Items assigned to the reviewer.
    pub assigned: usize,
    /// Of those, the ones nobody decided yet.
    pub undecided: usize,
}

/// `me`'s share of a campaign's `items`.
pub fn share(items: &[Item], me: &Identity) -> Share {
    let mine = mine(items, me, None);
    Share {
        assigned: mine.len(),
        undecided: mine.iter().filter(|i| i.decision.is_none()).count(),
    }
}

/// Whether `me` may name `group` as the reviewer group of a decision: the API server must list
/// `me` in it.
pub fn check_group(group: &str, me: &Identity) -> Result<(), Error> {
    if me.in_group(group) {
        return Ok(());
    }
    let groups = me
        .groups
        .iter()
        .filter(|g| !g.starts_with("system:"))
        .cloned()
        .collect::<Vec<_>>();
    Err(Error::Invalid(format!(
        "--group {group}: the API server does not list you ({}) in group {group}, so you cannot decide through it (your groups: {})",
        me.user,
        if groups.is_empty() {
            "none".to_string()
        } else {
            groups.join(", ")
        }
    )))
}

/// Whether the campaign `review` takes decisions and has items to show: it is Open and its
/// items are written. The refusal says why not and what to do.
pub fn ready(review: &AccessReview) -> Result<(), Error> {
    let (name, ns) = (name(review), namespace(review));
    match phase(review) {
        None => Err(Error::NotDecidable(format!(
            "Tailkeeper has not started AccessReview {name} yet{}: try again shortly (is the operator running?)",
            message(review).map(|m| format!(" ({m})")).unwrap_or_default()
        ))),
        Some(p) if p.is_over() => Err(Error::NotDecidable(format!(
            "AccessReview {name} is {}: the campaign is over and takes no more decisions; its record is in its status (kubectl get accessreview {name} -n {ns} -o yaml)",
            p.as_str()
        ))),
        Some(_) if review.status.as_ref().and_then(|s| s.items_digest.as_ref()).is_none() => {
            Err(Error::NotDecidable(format!(
                "AccessReview {name} has no items yet: {}",
                message(review).unwrap_or(
                    "Tailkeeper has not written the campaign's snapshot; try again shortly (is the operator running?)"
                )
            )))
        }
        Some(_) => Ok(()),
    }
}

/// Which items a listing shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this Tailscale login's (compared without case).
    pub user: Option<String>,
    /// Only this entitlement's (its id).
    pub entitlement: Option<String>,
    /// Only those nobody decided yet.
    pub undecided: bool,
}

fn matches(item: &Item, user: Option<&str>, entitlement: Option<&str>) -> bool {
    user.is_none_or(|u| item.user.eq_ignore_ascii_case(u.trim()))
        && entitlement.is_none_or(|e| item.entitlement == e.trim())
}

/// The items of `mine` that `filter` lets through, undecided first (otherwise in the
/// campaign's order).
pub fn listed<'a>(mine: &[&'a Item], filter: &Filter) -> Vec<&'a Item> {
    let mut shown: Vec<&Item> = mine
        .iter()
        .copied()
        .filter(|i| matches(i, filter.user.as_deref(), filter.entitlement.as_deref()))
        .filter(|i| !filter.undecided || i.decision.is_none())
        .collect();
    shown.sort_by_key(|i| i.decision.is_some());
    shown
}

/// The items a bulk decision is about, always among the reviewer's undecided ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// These item ids, each of which must be assigned to the reviewer and undecided.
    Items(Vec<String>),
    /// Every undecided item assigned to the reviewer.
    AllUndecided,
    /// The undecided items of this login and/or this entitlement.
    Matching {
        user: Option<String>,
        entitlement: Option<String>,
    },
}

/// The items `selection` picks among those of `items` assigned to `me` (through `through`, when
/// given) and undecided, in the campaign's order. Ids that are not such items are refused,
/// all of them listed with why, before anything is written.
pub fn select<'a>(
    review: &AccessReview,
    items: &'a [Item],
    me: &Identity,
    through: Option<&str>,
    selection: &Selection,
) -> Result<Vec<&'a Item>, Error> {
    let (name, ns) = (name(review), namespace(review));
    let list = format!(
        "kubectl tailkeeper review {name} -n {ns}{}",
        through.map(|g| format!(" --group {g}")).unwrap_or_default()
    );
    let selected: Vec<&Item> = match selection {
        Selection::Items(ids) => {
            let wanted: BTreeSet<&str> = ids
                .iter()
                .map(|id| id.trim())
                .filter(|id| !id.is_empty())
                .collect();
            if wanted.is_empty() {
                return Err(Error::Invalid(
                    "--items names no item: give item ids such as --items i3f2a9c0d41be,i0b1c2d3e4f5a".into(),
                ));
            }
            let whom = match through {
                Some(g) => format!("{} or group {g}", me.user),
                None => format!("{} or any group you are in", me.user),
            };
            let mut refused = Vec::new();
            for id in &wanted {
                let why = match items.iter().find(|i| i.id == *id) {
                    None => Some("not an item of this campaign".to_string()),
                    Some(i) if !is_assigned(i, me, through) => {
                        Some(format!("not assigned to {whom}"))
                    }
                    Some(i) => i
                        .decision
                        .as_ref()
                        .map(|d| format!("already decided ({})", decided(d))),
                };
                if let Some(why) = why {
                    refused.push(format!("  {id}: {why}"));
                }
            }
            if !refused.is_empty() {
                return Err(Error::Invalid(format!(
                    "nothing decided: of the {} items named, {} not yours to decide in AccessReview {name}:\n{}\nList yours with: {list}",
                    wanted.len(),
                    if refused.len() == 1 {
                        "this is".to_string()
                    } else {
                        format!("these {} are", refused.len())
                    },
                    refused.join("\n")
                )));
            }
            items
                .iter()
                .filter(|i| wanted.contains(i.id.as_str()))
                .collect()
        }
        Selection::AllUndecided => items
            .iter()
            .filter(|i| i.decision.is_none() && is_assigned(i, me, through))
            .collect(),
        Selection::Matching { user, entitlement } => items
            .iter()
            .filter(|i| i.decision.is_none() && is_assigned(i, me, through))
            .filter(|i| matches(i, user.as_deref(), entitlement.as_deref()))
            .collect(),
    };
    if selected.is_empty() {
        let what = match selection {
            Selection::Matching { user, entitlement } => {
                let mut criteria = Vec::new();
                if let Some(u) = user {
                    criteria.push(format!("--user {u}"));
                }
                if let Some(e) = entitlement {
                    criteria.push(format!("--entitlement {e}"));
                }
                format!(" matching {}", criteria.join(" "))
            }
            _ => String::new(),
        };
        return Err(Error::NotDecidable(format!(
            "nothing to decide: no undecided item of AccessReview {name} assigned to you{what}; list yours with: {list}"
        )));
    }
    Ok(selected)
}

/// The reviewer group a decision on `selected` is given through: `given` (already checked and
/// used to select); none when every item is assigned to `me` by name; else the one group of
/// `me`'s that covers every item not assigned by name. When none or several do, the refusal
/// says to choose with `--group`.
pub fn decision_group(
    selected: &[&Item],
    me: &Identity,
    given: Option<&str>,
) -> Result<Option<String>, Error> {
    if let Some(group) = given {
        return Ok(Some(group.to_string()));
    }
    let through_group: Vec<&Item> = selected
        .iter()
        .copied()
        .filter(|i| !by_name(i, me))
        .collect();
    if through_group.is_empty() {
        return Ok(None);
    }
    let covering: Vec<&String> = me
        .groups
        .iter()
        .filter(|g| through_group.iter().all(|i| by_group(i, g)))
        .collect();
    match covering[..] {
        [one] => Ok(Some(one.clone())),
        [] => {
            let parts: Vec<String> = me
                .groups
                .iter()
                .filter_map(|g| {
                    let n = through_group.iter().filter(|i| by_group(i, g)).count();
                    (n > 0).then(|| format!("{g}: {n}"))
                })
                .collect();
            Err(Error::Invalid(format!(
                "the {} selected items assigned to you through a group are assigned through different groups ({}), and a decision is given through one group: decide them in parts, each with --group G",
                through_group.len(),
                parts.join(", ")
            )))
        }
        _ => Err(Error::Invalid(format!(
            "the selected items are assigned to you through each of your groups {}: choose the one you decide through with --group",
            covering
                .iter()
                .map(|g| g.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The start of a decision's generated name: the campaign's name and the short form of the
/// reviewer's user name (`q3-carol-`), as a Kubernetes name allows them.
pub fn generate_name(review: &str, user: &str) -> String {
    let short = user.rsplit(':').next().unwrap_or(user);
    let short = short.split('@').next().unwrap_or(short);
    let mut review = request::dns_label(review);
    review.truncate(36);
    let mut who = request::dns_label(short);
    who.truncate(20);
    let parts: Vec<&str> = [review.trim_matches('-'), who.trim_matches('-')]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        "decision-".to_string()
    } else {
        format!("{}-", parts.join("-"))
    }
}

/// The comment a decision keeps: trimmed, required for `Revoke`, within the schema's limit.
pub fn comment(decision: ReviewDecision, comment: Option<&str>) -> Result<Option<String>, Error> {
    let text = comment.map(str::trim).filter(|c| !c.is_empty());
    match text {
        None if decision == ReviewDecision::Revoke => Err(Error::Invalid(
            "--comment is required to revoke: say why the access goes (the campaign's evidence keeps it)".into(),
        )),
        Some(c) if c.chars().count() > MAX_COMMENT_CHARS => Err(Error::Invalid(format!(
            "--comment has {} characters: a decision keeps at most {MAX_COMMENT_CHARS}",
            c.chars().count()
        ))),
        other => Ok(other.map(str::to_string)),
    }
}

/// The AccessReviewDecisions that record `me`'s `decision` on `selected` items of `review`:
/// at most [`MAX_ITEMS_PER_DECISION`] items each, `reviewer` is `me`, `reviewRef` the campaign
/// read (its UID: a campaign recreated under the same name is another), `group` the reviewer
/// group it is given through.
pub fn decisions(
    review: &AccessReview,
    me: &Identity,
    decision: ReviewDecision,
    group: Option<&str>,
    comment: Option<&str>,
    selected: &[&Item],
) -> Result<Vec<AccessReviewDecision>, Error> {
    let review_name = name(review);
    let uid = review.metadata.uid.as_deref().ok_or_else(|| {
        Error::Invalid(
            "the API server returned the AccessReview without a UID, so a decision cannot name it"
                .to_string(),
        )
    })?;
    let generate_name = generate_name(review_name, &me.user);
    selected
        .chunks(MAX_ITEMS_PER_DECISION)
        .map(|chunk| {
            let mut spec = json!({
                "reviewRef": {"name": review_name, "uid": uid},
                "reviewer": me.user,
                "decision": decision,
                "items": chunk.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
            });
            if let Some(group) = group {
                spec["group"] = json!(group);
            }
            if let Some(comment) = comment {
                spec["comment"] = json!(comment);
            }
            serde_json::from_value(json!({
                "apiVersion": "tailkeeper.io/v1alpha1",
                "kind": "AccessReviewDecision",
                "metadata": {"generateName": generate_name},
                "spec": spec,
            }))
            .map_err(|e| Error::Invalid(format!("cannot make an AccessReviewDecision: {e}")))
        })
        .collect()
}

/// An item's decision as the DECISION/BY column shows it: `Keep/bob`, `Revoke/(due time)`.
fn decided(d: &crate::reviews::Decided) -> String {
    if d.by_reviewer() {
        format!("{}/{}", d.decision.as_str(), d.by)
    } else {
        format!("{}/(due time)", d.decision.as_str())
    }
}

fn decision_cell(item: &Item) -> String {
    item.decision
        .as_ref()
        .map_or_else(|| "-".to_string(), decided)
}

/// Items as a table: id, user, person, access, how it is held, who added it, the decision and
/// who gave it.
pub fn items_table(items: &[&Item]) -> String {
    table(items, true)
}

fn table(items: &[&Item], decisions: bool) -> String {
    let mut headers = vec!["ID", "USER", "PERSON", "ACCESS", "HOW", "ADDED BY"];
    if decisions {
        headers.push("DECISION/BY");
    }
    let rows = items
        .iter()
        .map(|i| {
            let mut row = vec![
                i.id.clone(),
                i.user.clone(),
                i.person.clone().unwrap_or_else(|| "-".to_string()),
                show::one_line(&i.description),
                i.via.to_string(),
                i.added_by.to_string(),
            ];
            if decisions {
                row.push(decision_cell(i));
            }
            row
        })
        .collect();
    show::table(&headers, rows)
}

/// Items as RFC 4180 CSV with a header row.
pub fn items_csv(items: &[&Item]) -> Result<String, Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| Error::Invalid(format!("cannot write CSV: {e}"));
    writer
        .write_record([
            "id",
            "user",
            "person",
            "entitlement",
            "kind",
            "description",
            "how",
            "addedBy",
            "reviewers",
            "decision",
            "decidedBy",
            "comment",
        ])
        .map_err(fail)?;
    for i in items {
        let d = i.decision.as_ref();
        let mut row = [
            i.id.clone(),
            i.user.clone(),
            i.person.clone().unwrap_or_default(),
            i.entitlement.clone(),
            i.kind.as_str().to_string(),
            i.description.clone(),
            i.via.to_string(),
            i.added_by.to_string(),
            i.reviewers.join(" "),
            d.map(|d| d.decision.as_str().to_string())
                .unwrap_or_default(),
            d.map(|d| d.by.clone()).unwrap_or_default(),
            d.and_then(|d| d.comment.clone()).unwrap_or_default(),
        ];
        for cell in &mut row {
            crate::reviews::evidence::neutralise_formula(cell);
        }
        writer.write_record(&row).map_err(fail)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| Error::Invalid(format!("cannot write CSV: {e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::Invalid(format!("cannot write CSV: {e}")))
}

/// Items as a JSON array, as the campaign keeps them.
pub fn items_json(items: &[&Item]) -> Result<String, Error> {
    serde_json::to_string_pretty(items)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| Error::Invalid(format!("cannot write JSON: {e}")))
}

/// What a listing of `shown` of `mine` ends with: the counts and how to decide.
pub fn listing_footer(review: &AccessReview, mine: &[&Item], shown: usize) -> String {
    let undecided = mine.iter().filter(|i| i.decision.is_none()).count();
    let (name, ns) = (name(review), namespace(review));
    let mut out = format!(
        "\n{shown} of your {} items shown; {undecided} undecided{}.\n",
        mine.len(),
        review
            .status
            .as_ref()
            .and_then(|s| s.due_at.as_ref())
            .map(|d| format!(", due {}", due(d.0)))
            .unwrap_or_default()
    );
    if undecided > 0 {
        out.push_str(&format!(
            "Decide with: kubectl tailkeeper review {name} -n {ns} --keep|--revoke --items ID[,ID...] --comment WHY\n"
        ));
    }
    out
}

/// What is about to be decided, for the reviewer to read before confirming: the campaign, the
/// count, the first items, as whom and why.
pub fn summary(
    review: &AccessReview,
    decision: ReviewDecision,
    me: &Identity,
    group: Option<&str>,
    comment: Option<&str>,
    selected: &[&Item],
) -> String {
    let verb = match decision {
        ReviewDecision::Keep => "Keep",
        ReviewDecision::Revoke => "Revoke",
    };
    let count = selected.len();
    let mut out = format!(
        "{verb} {count} item{} of AccessReview {} in namespace {} (policy {})?\n",
        if count == 1 { "" } else { "s" },
        name(review),
        namespace(review),
        review.spec.policy_ref.name
    );
    let first = &selected[..count.min(SHOWN_BEFORE_CONFIRMING)];
    for line in table(first, false).lines() {
        out.push_str(&format!("  {line}\n"));
    }
    if count > first.len() {
        out.push_str(&format!("  ... and {} more\n", count - first.len()));
    }
    let as_whom = match group {
        Some(g) => format!("{} through reviewer group {g}", me.user),
        None => me.user.clone(),
    };
    let chunks = count.div_ceil(MAX_ITEMS_PER_DECISION);
    let rows = [
        ("deciding as", as_whom),
        ("comment", comment.map_or_else(|| "-".to_string(), show::one_line)),
        (
            "recorded in",
            format!(
                "{chunks} AccessReviewDecision{} (at most {MAX_ITEMS_PER_DECISION} items each), bound to the campaign's UID {}",
                if chunks == 1 { "" } else { "s" },
                review.metadata.uid.as_deref().unwrap_or("-")
            ),
        ),
    ];
    for (label, value) in rows {
        out.push_str(&format!("  {label:<13}{value}\n"));
    }
    out
}

/// What the operator made of a decision, once it recorded it (`status.observedAt`): how many
/// items it took and why it refused the others. `None` while it has not.
pub fn outcome(decision: &AccessReviewDecision) -> Option<String> {
    let status = decision.status.as_ref()?;
    status.observed_at.as_ref()?;
    let name = decision.metadata.name.as_deref().unwrap_or_default();
    let ns = decision.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = format!(
        "accessreviewdecision.tailkeeper.io/{name}: {} accepted, {} refused\n",
        status.accepted, status.refused
    );
    for r in status.refusals.iter().take(REFUSALS_SHOWN) {
        out.push_str(&format!("  refused {}: {}\n", r.item, r.reason));
    }
    let listed = status.refusals.len().min(REFUSALS_SHOWN);
    if status.refused > listed as i64 {
        out.push_str(&format!(
            "  ... {} more refused: kubectl get ard {name} -n {ns} -o yaml\n",
            status.refused - listed as i64
        ));
    }
    if let Some(m) = status.message.as_deref().filter(|m| !m.trim().is_empty()) {
        out.push_str(&format!("  {}\n", show::one_line(m)));
    }
    Some(out)
}

/// What to say of a decision the operator did not record in time.
pub fn unanswered(name: &str, namespace: &str) -> String {
    format!(
        "accessreviewdecision.tailkeeper.io/{name} is recorded, but Tailkeeper has not taken it into account yet (is the operator running?): check it later with kubectl get ard {name} -n {namespace} -o yaml\n"
    )
}

/// A due time as the tables show it, in UTC to the minute: `2027-01-29T08:00Z`.
pub fn due(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%MZ").to_string()
}

/// An open campaign and the reviewer's share of it (or why it is not known).
#[derive(Clone, Debug)]
pub struct Campaign<'a> {
    pub review: &'a AccessReview,
    pub share: Result<Share, String>,
}

/// The campaigns in which items await `me`'s decision.
pub fn awaiting<'a, 'b>(campaigns: &'b [Campaign<'a>]) -> Vec<&'b Campaign<'a>> {
    campaigns
        .iter()
        .filter(|c| c.share.as_ref().is_ok_and(|s| s.undecided > 0))
        .collect()
}

/// Open campaigns as a table: (namespace,) name, policy, the items assigned to you, how many
/// of them are undecided, the due time and the time left; soonest due first. Campaigns whose
/// share is not known are listed with `-`, and why below the table.
pub fn campaigns_table(campaigns: &[&Campaign<'_>], now: Timestamp, namespaces: bool) -> String {
    let due_at = |c: &Campaign<'_>| {
        c.review
            .status
            .as_ref()
            .and_then(|s| s.due_at.as_ref())
            .map(|t| t.0)
    };
    let mut sorted = campaigns.to_vec();
    sorted.sort_by(|a, b| {
        let key = |c: &Campaign<'_>| (due_at(c).is_none(), due_at(c));
        key(a)
            .cmp(&key(b))
            .then_with(|| namespace(a.review).cmp(namespace(b.review)))
            .then_with(|| name(a.review).cmp(name(b.review)))
    });
    let mut headers = Vec::new();
    if namespaces {
        headers.push("NAMESPACE");
    }
    headers.extend([
        "NAME",
        "POLICY",
        "YOUR ITEMS",
        "UNDECIDED",
        "DUE",
        "TIME LEFT",
    ]);
    let mut notes = String::new();
    let rows = sorted
        .iter()
        .map(|c| {
            let mut row = Vec::new();
            if namespaces {
                row.push(namespace(c.review).to_string());
            }
            let (assigned, undecided) = match &c.share {
                Ok(s) => (s.assigned.to_string(), s.undecided.to_string()),
                Err(why) => {
                    let which = if namespaces {
                        format!("{}/{}", namespace(c.review), name(c.review))
                    } else {
                        name(c.review).to_string()
                    };
                    notes.push_str(&format!("{which}: {why}\n"));
                    ("-".to_string(), "-".to_string())
                }
            };
            let (due_text, left) = match due_at(c) {
                Some(at) => {
                    let left = at.as_second() - now.as_second();
                    (
                        due(at),
                        if left > 0 {
                            show::span(left)
                        } else {
                            "overdue".to_string()
                        },
                    )
                }
                None => ("-".to_string(), "-".to_string()),
            };
            row.extend([
                name(c.review).to_string(),
                c.review.spec.policy_ref.name.clone(),
                assigned,
                undecided,
                due_text,
                left,
            ]);
            row
        })
        .collect();
    let mut out = show::table(&headers, rows);
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes);
    }
    out
}

/// Why a campaign's share is not known, when its items are not written yet (quoting its
/// status message); `None` when they are.
pub fn no_items_yet(review: &AccessReview) -> Option<String> {
    if review
        .status
        .as_ref()
        .and_then(|s| s.items_digest.as_ref())
        .is_some()
    {
        return None;
    }
    Some(match message(review) {
        Some(m) => format!("no items yet: {}", show::one_line(m)),
        None => "no items yet".to_string(),
    })
}

/// Whether `review` is an open campaign.
pub fn is_open(review: &AccessReview) -> bool {
    phase(review) == Some(ReviewPhase::Open)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AccessReviewDecisionStatus, AccessReviewStatus, Refusal};
    use crate::entitlements::{AddedBy, Kind, Via};
    use crate::reviews::Decided;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn me(user: &str, groups: &[&str]) -> Identity {
        Identity {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn item(id: &str, user: &str, entitlement: &str, reviewers: &[&str]) -> Item {
        Item {
            id: id.into(),
            user: user.into(),
            person: None,
            entitlement: entitlement.into(),
            kind: Kind::Group,
            description: entitlement.into(),
            via: Via::Direct,
            added_by: AddedBy::Person,
            reviewers: reviewers.iter().map(|r| r.to_string()).collect(),
            manager: None,
            decision: None,
            applied: None,
        }
    }

    fn kept_by(mut i: Item, by: &str) -> Item {
        i.decision = Some(Decided {
            decision: ReviewDecision::Keep,
            by: by.into(),
            at: at(0),
            comment: None,
            record: None,
        });
        i
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("time")
    }

    fn review(phase: Option<ReviewPhase>) -> AccessReview {
        let mut r: AccessReview = serde_json::from_value(json!({
            "apiVersion": "tailkeeper.io/v1alpha1", "kind": "AccessReview",
            "metadata": {"name": "q3", "namespace": "sec", "uid": "uid-q3"},
            "spec": {"policyRef": {"name": "corp"}, "scope": {"everything": true},
                     "reviewers": {"users": ["carol"], "groups": ["approvers"]},
                     "duration": "336h"}
        }))
        .expect("review");
        r.status = phase.map(|p| AccessReviewStatus {
            phase: Some(p),
            items_digest: Some("d".into()),
            items_records: vec!["q3-items-0".into()],
            due_at: Some(Time(at(86_400 * 2 + 3600))),
            ..Default::default()
        });
        r
    }

    /// carol reviews by name and through `approvers`; dave's and sre's are not hers.
    fn items() -> Vec<Item> {
        vec![
            item("i1", "alice@example.com", "group:prod", &["user:carol"]),
            item("i2", "bob@example.com", "group:prod", &["group:approvers"]),
            item("i3", "mallory@example.com", "role:admin", &["user:dave"]),
            kept_by(
                item("i4", "erin@example.com", "group:prod", &["user:carol"]),
                "carol",
            ),
            item("i5", "frank@example.com", "role:admin", &["group:sre"]),
            item(
                "i6",
                "Alice@Example.com",
                "role:admin",
                &["group:approvers", "group:sre", "user:dave"],
            ),
        ]
    }

    fn ids(items: &[&Item]) -> Vec<String> {
        items.iter().map(|i| i.id.clone()).collect()
    }

    #[test]
    fn my_items_are_those_assigned_to_me_by_name_or_through_a_group_i_am_in() {
        let items = items();
        let carol = me("carol", &["approvers", "system:authenticated"]);
        assert_eq!(ids(&mine(&items, &carol, None)), ["i1", "i2", "i4", "i6"]);
        assert_eq!(
            share(&items, &carol),
            Share {
                assigned: 4,
                undecided: 3
            }
        );
        // Through one named group: by name, or through that group only.
        let both = me("carol", &["approvers", "sre"]);
        assert_eq!(
            ids(&mine(&items, &both, Some("sre"))),
            ["i1", "i4", "i5", "i6"]
        );
        // A group name is not a user name, nor the other way round.
        assert!(mine(&items, &me("approvers", &["carol"]), None).is_empty());
        assert_eq!(share(&items, &me("mallory", &[])), Share::default());
    }

    #[test]
    fn a_listing_filters_by_login_entitlement_or_undecided_and_shows_the_undecided_first() {
        let items = items();
        let carol = me("carol", &["approvers"]);
        let mine = mine(&items, &carol, None);
        assert_eq!(
            ids(&listed(&mine, &Filter::default())),
            ["i1", "i2", "i6", "i4"]
        );
        let alice = Filter {
            user: Some("alice@example.com".into()),
            ..Default::default()
        };
        assert_eq!(ids(&listed(&mine, &alice)), ["i1", "i6"]);
        let prod = Filter {
            entitlement: Some("group:prod".into()),
            undecided: true,
            ..Default::default()
        };
        assert_eq!(ids(&listed(&mine, &prod)), ["i1", "i2"]);
    }

    #[test]
    fn ids_that_are_not_mine_to_decide_are_refused_all_listed_before_anything_is_written() {
        let items = items();
        let r = review(Some(ReviewPhase::Open));
        let carol = me("carol", &["approvers"]);
        let picked = select(
            &r,
            &items,
            &carol,
            None,
            &Selection::Items(vec!["i2".into(), " i1 ".into(), "i2".into()]),
        )
        .expect("mine");
        assert_eq!(
            ids(&picked),
            ["i1", "i2"],
            "the campaign's order, once each"
        );
        let e = select(
            &r,
            &items,
            &carol,
            None,
            &Selection::Items(vec!["i1".into(), "i3".into(), "i4".into(), "nope".into()]),
        )
        .expect_err("foreign ids");
        let text = e.to_string();
        for needle in [
            "nothing decided: of the 4 items named, these 3 are not yours to decide in AccessReview q3:",
            "  i3: not assigned to carol or any group you are in",
            "  i4: already decided (Keep/carol)",
            "  nope: not an item of this campaign",
            "\nList yours with: kubectl tailkeeper review q3 -n sec",
        ] {
            assert!(text.contains(needle), "{needle:?} in\n{text}");
        }
        assert!(!text.contains("i1:"), "{text}");
        // Through a named group, the other groups' items are not mine.
        let both = me("carol", &["approvers", "sre"]);
        let e = select(
            &r,
            &items,
            &both,
            Some("sre"),
            &Selection::Items(vec!["i2".into()]),
        )
        .expect_err("i2 is assigned through approvers");
        assert!(
            e.to_string()
                .contains("i2: not assigned to carol or group sre"),
            "{e}"
        );
        assert!(select(
            &r,
            &items,
            &carol,
            None,
            &Selection::Items(vec![" ".into()])
        )
        .is_err());
    }

    #[test]
    fn bulk_selections_take_only_my_undecided_items() {
        let items = items();
        let r = review(Some(ReviewPhase::Open));
        let carol = me("carol", &["approvers"]);
        let all = select(&r, &items, &carol, None, &Selection::AllUndecided).expect("all");
        assert_eq!(ids(&all), ["i1", "i2", "i6"]);
        let alice = Selection::Matching {
            user: Some("alice@example.com".into()),
            entitlement: None,
        };
        assert_eq!(
            ids(&select(&r, &items, &carol, None, &alice).expect("alice")),
            ["i1", "i6"]
        );
        let admin_of_alice = Selection::Matching {
            user: Some("alice@example.com".into()),
            entitlement: Some("role:admin".into()),
        };
        assert_eq!(
            ids(&select(&r, &items, &carol, None, &admin_of_alice).expect("one")),
            ["i6"]
        );
        let e = select(
            &r,
            &items,
            &carol,
            None,
            &Selection::Matching {
                user: Some("erin@example.com".into()),
                entitlement: None,
            },
        )
        .expect_err("erin's item is decided");
        assert!(
            e.to_string().contains(
                "nothing to decide: no undecided item of AccessReview q3 assigned to you matching --user erin@example.com"
            ),
            "{e}"
        );
        assert!(select(
            &r,
            &items,
            &me("mallory", &[]),
            None,
            &Selection::AllUndecided
        )
        .is_err());
    }

    #[test]
    fn the_group_is_chosen_only_when_exactly_one_of_mine_covers_what_is_not_mine_by_name() {
        let items = items();
        let pick = |wanted: &[&str]| -> Vec<&Item> {
            items
                .iter()
                .filter(|i| wanted.contains(&i.id.as_str()))
                .collect()
        };
        let carol = me("carol", &["approvers", "system:authenticated"]);
        // By name only: no group.
        assert_eq!(
            decision_group(&pick(&["i1"]), &carol, None).expect("ok"),
            None
        );
        // Through approvers (the only group of hers covering i2 and i6).
        assert_eq!(
            decision_group(&pick(&["i1", "i2", "i6"]), &carol, None).expect("ok"),
            Some("approvers".into())
        );
        // Both approvers and sre cover i6: she must choose.
        let both = me("carol", &["approvers", "sre"]);
        let e = decision_group(&pick(&["i6"]), &both, None).expect_err("two groups");
        assert!(
            e.to_string()
                .contains("through each of your groups approvers, sre: choose the one you decide through with --group"),
            "{e}"
        );
        // i2 only through approvers, i5 only through sre: no one group covers both.
        let e = decision_group(&pick(&["i2", "i5"]), &both, None).expect_err("split");
        assert!(
            e.to_string()
                .contains("different groups (approvers: 1, sre: 1)")
                && e.to_string()
                    .contains("decide them in parts, each with --group G"),
            "{e}"
        );
        assert_eq!(
            decision_group(&pick(&["i6"]), &both, Some("sre")).expect("given"),
            Some("sre".into())
        );
        assert!(check_group("sre", &both).is_ok());
        let e = check_group("sre", &carol).expect_err("not hers");
        assert!(
            e.to_string()
                .contains("does not list you (carol) in group sre")
                && e.to_string().contains("(your groups: approvers)"),
            "{e}"
        );
    }

    #[test]
    fn decisions_bind_to_the_campaigns_uid_name_me_and_hold_at_most_a_thousand_items() {
        let r = review(Some(ReviewPhase::Open));
        let many: Vec<Item> = (0..2500)
            .map(|n| item(&format!("i{n:012x}"), "u@x", "group:prod", &["user:carol"]))
            .collect();
        let selected: Vec<&Item> = many.iter().collect();
        let carol = me("carol", &["approvers"]);
        let made = decisions(
            &r,
            &carol,
            ReviewDecision::Revoke,
            Some("approvers"),
            Some("left the team"),
            &selected,
        )
        .expect("decisions");
        assert_eq!(
            made.iter().map(|d| d.spec.items.len()).collect::<Vec<_>>(),
            [1000, 1000, 500]
        );
        assert_eq!(made[1].spec.items[0], "i0000000003e8");
        assert_eq!(
            made[2].spec.items.last().map(String::as_str),
            Some("i0000000009c3")
        );
        for d in &made {
            assert_eq!(d.metadata.generate_name.as_deref(), Some("q3-carol-"));
            assert_eq!(d.metadata.name, None);
            assert_eq!(
                (
                    d.spec.review_ref.name.as_str(),
                    d.spec.review_ref.uid.as_str()
                ),
                ("q3", "uid-q3")
            );
            assert_eq!(d.spec.reviewer, "carol");
            assert_eq!(d.spec.group.as_deref(), Some("approvers"));
            assert_eq!(d.spec.decision, ReviewDecision::Revoke);
            assert_eq!(d.spec.comment.as_deref(), Some("left the team"));
        }
        let one =
            decisions(&r, &carol, ReviewDecision::Keep, None, None, &selected[..1]).expect("one");
        assert_eq!(one.len(), 1);
        assert_eq!(
            (one[0].spec.group.as_ref(), one[0].spec.comment.as_ref()),
            (None, None)
        );
        let mut no_uid = r.clone();
        no_uid.metadata.uid = None;
        assert!(decisions(&no_uid, &carol, ReviewDecision::Keep, None, None, &selected).is_err());
    }

    #[test]
    fn a_revocation_needs_a_comment_within_the_limit() {
        assert_eq!(comment(ReviewDecision::Keep, None).expect("ok"), None);
        assert_eq!(
            comment(ReviewDecision::Keep, Some("  fine ")).expect("ok"),
            Some("fine".into())
        );
        for missing in [None, Some("   ")] {
            let e = comment(ReviewDecision::Revoke, missing).expect_err("required");
            assert!(
                e.to_string().contains("--comment is required to revoke"),
                "{e}"
            );
        }
        let long = "x".repeat(MAX_COMMENT_CHARS + 1);
        assert!(comment(ReviewDecision::Keep, Some(&long)).is_err());
    }

    #[test]
    fn generated_decision_names_are_kubernetes_names_of_the_campaign_and_the_reviewer() {
        assert_eq!(generate_name("q3", "carol"), "q3-carol-");
        assert_eq!(generate_name("q3", "carol@example.com"), "q3-carol-");
        assert_eq!(
            generate_name("q3.2027", "system:serviceaccount:ops:Review_Bot"),
            "q3-2027-review-bot-"
        );
        let long = generate_name(&"r".repeat(200), &"u".repeat(100));
        assert!(long.len() <= 58 && long.ends_with('-'), "{long}");
        assert_eq!(generate_name("q3", "@"), "q3-");
    }

    #[test]
    fn only_an_open_campaign_with_items_takes_decisions_and_the_refusal_says_why() {
        assert!(ready(&review(Some(ReviewPhase::Open))).is_ok());
        let e = ready(&review(Some(ReviewPhase::Completed))).expect_err("over");
        assert!(
            e.to_string()
                .starts_with("AccessReview q3 is Completed: the campaign is over"),
            "{e}"
        );
        let e = ready(&review(Some(ReviewPhase::Overdue))).expect_err("over");
        assert!(
            e.to_string().contains("is Overdue: the campaign is over"),
            "{e}"
        );
        let e = ready(&review(None)).expect_err("not started");
        assert!(
            e.to_string()
                .contains("has not started AccessReview q3 yet"),
            "{e}"
        );
        let mut snapshotting = review(Some(ReviewPhase::Open));
        if let Some(s) = snapshotting.status.as_mut() {
            s.items_digest = None;
            s.message = Some("waiting for the entitlements inventory of corp".into());
        }
        let e = ready(&snapshotting).expect_err("no items");
        assert_eq!(
            e.to_string(),
            "AccessReview q3 has no items yet: waiting for the entitlements inventory of corp"
        );
        assert_eq!(
            no_items_yet(&snapshotting).as_deref(),
            Some("no items yet: waiting for the entitlements inventory of corp")
        );
    }

    #[test]
    fn the_items_table_shows_who_holds_what_how_and_what_was_decided() {
        let mut items = items();
        items[0].person = Some("Alice Smith".into());
        items[1].via = Via::Group("group:eng".into());
        items[1].description = "group:prod\n(members)".into();
        let shown: Vec<&Item> = vec![&items[0], &items[1], &items[3]];
        let text = items_table(&shown);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(
            lines[0],
            "ID   USER                PERSON        ACCESS                 HOW             ADDED BY   DECISION/BY"
        );
        assert_eq!(
            lines[1],
            "i1   alice@example.com   Alice Smith   group:prod             direct          person     -"
        );
        assert_eq!(
            lines[2],
            "i2   bob@example.com     -             group:prod (members)   via group:eng   person     -"
        );
        assert_eq!(
            lines[3],
            "i4   erin@example.com    -             group:prod             direct          person     Keep/carol"
        );
        let csv = items_csv(&shown).expect("csv");
        assert!(
            csv.starts_with("id,user,person,entitlement,kind,description,how,addedBy,reviewers,decision,decidedBy,comment\n"),
            "{csv}"
        );
        assert!(
            csv.contains("i4,erin@example.com,,group:prod,group,group:prod,direct,person,user:carol,Keep,carol,\n"),
            "{csv}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&items_json(&shown).expect("json")).expect("parses");
        assert_eq!(json[2]["decision"]["by"], "carol");
        assert_eq!(json[0]["person"], "Alice Smith");
    }

    #[test]
    fn a_comment_a_spreadsheet_would_run_is_written_as_text() {
        let mut hostile = item("i9", "erin@example.com", "group:prod", &["user:carol"]);
        hostile.decision = Some(Decided {
            decision: ReviewDecision::Revoke,
            by: "carol".into(),
            at: "2026-11-30T10:00:00Z".parse().unwrap(),
            comment: Some("=HYPERLINK(\"http://evil\")".into()),
            record: None,
        });
        let csv = items_csv(&[&hostile]).expect("csv");
        assert!(
            csv.contains(",carol,\"'=HYPERLINK(\"\"http://evil\"\")\"\n"),
            "{csv}"
        );
    }

    #[test]
    fn the_summary_before_confirming_shows_the_count_the_first_items_and_as_whom() {
        let many: Vec<Item> = (0..12)
            .map(|n| item(&format!("i{n}"), "u@x", "group:prod", &["group:approvers"]))
            .collect();
        let selected: Vec<&Item> = many.iter().collect();
        let text = summary(
            &review(Some(ReviewPhase::Open)),
            ReviewDecision::Revoke,
            &me("carol", &["approvers"]),
            Some("approvers"),
            Some("left\nthe team"),
            &selected,
        );
        assert!(
            text.starts_with(
                "Revoke 12 items of AccessReview q3 in namespace sec (policy corp)?\n  ID   USER   PERSON   ACCESS       HOW      ADDED BY\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\n  i9   u@x    -        group:prod   direct   person\n"),
            "{text}"
        );
        assert!(!text.contains("i10 "), "{text}");
        for line in [
            "  ... and 2 more\n",
            "  deciding as  carol through reviewer group approvers\n",
            "  comment      left the team\n",
            "  recorded in  1 AccessReviewDecision (at most 1000 items each), bound to the campaign's UID uid-q3\n",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
    }

    #[test]
    fn the_operators_answer_reads_as_accepted_and_refused_with_the_reasons() {
        let mut d: AccessReviewDecision = serde_json::from_value(json!({
            "apiVersion": "tailkeeper.io/v1alpha1", "kind": "AccessReviewDecision",
            "metadata": {"name": "q3-carol-x7k2p", "namespace": "sec"},
            "spec": {"reviewRef": {"name": "q3", "uid": "uid-q3"}, "reviewer": "carol",
                     "decision": "Keep", "items": ["i1", "i2"]}
        }))
        .expect("decision");
        assert_eq!(outcome(&d), None, "no answer yet");
        d.status = Some(AccessReviewDecisionStatus {
            accepted: 1,
            refused: 1,
            refusals: vec![Refusal {
                item: "i1".into(),
                reason: "your own access: another reviewer must decide it".into(),
            }],
            message: None,
            observed_at: Some(Time(at(0))),
        });
        assert_eq!(
            outcome(&d).expect("answered"),
            "accessreviewdecision.tailkeeper.io/q3-carol-x7k2p: 1 accepted, 1 refused\n  refused i1: your own access: another reviewer must decide it\n"
        );
        if let Some(s) = d.status.as_mut() {
            s.refused = 30;
        }
        let text = outcome(&d).expect("answered");
        assert!(
            text.contains("  ... 29 more refused: kubectl get ard q3-carol-x7k2p -n sec -o yaml\n"),
            "{text}"
        );
        assert!(unanswered("q3-carol-x7k2p", "sec")
            .contains("check it later with kubectl get ard q3-carol-x7k2p -n sec -o yaml"));
    }

    #[test]
    fn the_campaigns_table_shows_my_share_due_time_and_time_left_soonest_first() {
        let soon = review(Some(ReviewPhase::Open));
        let mut later = review(Some(ReviewPhase::Open));
        later.metadata.name = Some("yearly".into());
        later.metadata.namespace = Some("ops".into());
        if let Some(s) = later.status.as_mut() {
            s.due_at = Some(Time(at(86_400 * 30)));
        }
        let mut past = review(Some(ReviewPhase::Open));
        past.metadata.name = Some("late".into());
        if let Some(s) = past.status.as_mut() {
            s.due_at = Some(Time(at(-60)));
        }
        let campaigns = [
            Campaign {
                review: &later,
                share: Err("no items yet: taking the snapshot".into()),
            },
            Campaign {
                review: &soon,
                share: Ok(Share {
                    assigned: 4,
                    undecided: 3,
                }),
            },
            Campaign {
                review: &past,
                share: Ok(Share {
                    assigned: 2,
                    undecided: 0,
                }),
            },
        ];
        let all: Vec<&Campaign<'_>> = campaigns.iter().collect();
        let text = campaigns_table(&all, at(0), true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "NAMESPACE   NAME     POLICY   YOUR ITEMS   UNDECIDED   DUE                 TIME LEFT"
        );
        assert_eq!(
            lines[1],
            "sec         late     corp     2            0           2027-01-15T07:59Z   overdue"
        );
        assert_eq!(
            lines[2],
            "sec         q3       corp     4            3           2027-01-17T09:00Z   2d1h"
        );
        assert_eq!(
            lines[3],
            "ops         yearly   corp     -            -           2027-02-14T08:00Z   30d"
        );
        assert_eq!(lines[5], "ops/yearly: no items yet: taking the snapshot");
        let waiting = awaiting(&campaigns);
        assert_eq!(waiting.len(), 1);
        assert!(
            campaigns_table(&waiting, at(0), false)
                .starts_with("NAME   POLICY   YOUR ITEMS   UNDECIDED   DUE                 TIME LEFT\nq3     corp     4            3"),
        );
        assert!(is_open(&soon) && !is_open(&review(Some(ReviewPhase::Completed))));
    }
}
