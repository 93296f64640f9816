//! The bodies receivers get. `Slack`: an incoming-webhook message, `text` (what notifications
//! and old clients show) plus simple `blocks`; everything a person wrote (the reason, names) is
//! escaped so it cannot mention `@channel` or hide a link. `Generic`: one JSON object with the
//! same facts as fields, for code.
//!
//! Both carry what an approver judges and what the grant's status says, never a credential.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::{About, Audience, Event, GrantNews, ReviewNews};
use crate::api::GrantPhase;

/// A Slack incoming-webhook body for `event`, sent to the receiver `notification`.
pub fn slack(event: &Event, notification: &str) -> Value {
    let g = match event.about() {
        About::Grant(g) => g,
        About::Review(r) => return slack_review(event, r, notification),
    };
    let title = title(g.phase);
    let subject = format!("AccessGrant {}/{}", g.namespace, g.name);
    let requester = g.requested_by.as_deref().unwrap_or("nobody recorded");
    let text = match event.audience() {
        Audience::Approvers => format!(
            "{title}: {subject}: {} asks for {} for {} (requested by {requester}). Approvers: {}.",
            g.user,
            g.access_described(),
            duration(g),
            approvers(g),
        ),
        Audience::Requester | Audience::Reviewers => {
            let mut text = format!(
                "{title}: {subject}: {} for {} (requested by {requester}).",
                g.access_described(),
                g.user
            );
            if let Some(message) = &g.message {
                text.push(' ');
                text.push_str(message);
            }
            text
        }
    };
    let mut fields = vec![
        field("User", &g.user),
        field("Access", &g.access_described()),
        field("Duration", &duration(g)),
        field("Requested by", requester),
    ];
    if event.audience() == Audience::Requester {
        if let Some(expires) = g.expires_at.filter(|_| g.phase == GrantPhase::Active) {
            fields.push(field("Expires", &time(expires)));
        }
        if let Some(approval) = g
            .approval
            .as_deref()
            .filter(|_| g.phase == GrantPhase::Active)
        {
            fields.push(field("Approval", approval));
        }
    }
    let mut blocks = vec![
        mrkdwn_section(&format!("*{title}:* {}", escape(&subject))),
        json!({"type": "section", "fields": fields}),
        mrkdwn_section(&format!("*Reason*\n{}", escape(&g.reason))),
    ];
    match event.audience() {
        Audience::Approvers => blocks.push(mrkdwn_section(&format!(
            "*Approvers:* {}. To approve, in your own name:\n```{}```",
            escape(&approvers(g)),
            escape(&approve_command(g))
        ))),
        Audience::Requester | Audience::Reviewers => {
            if let Some(message) = &g.message {
                blocks.push(mrkdwn_section(&format!("*Status*\n{}", escape(message))));
            }
        }
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": escape(&format!(
        "AccessPolicy {}/{} · notification {notification} · {}", g.namespace, g.policy, time(g.at)
    ))}]}));
    json!({"text": escape(&text), "blocks": blocks})
}

/// A `Generic` body for `event`, sent to the receiver `notification` with idempotency id `id`.
/// Every key is always present (`null` when unknown), so receivers can rely on its shape.
pub fn generic(event: &Event, notification: &str, id: &str) -> Value {
    let g = match event.about() {
        About::Grant(g) => g,
        About::Review(r) => return generic_review(event, r, notification, id),
    };
    let mut body = json!({
        "id": id,
        "type": event.kind().as_str(),
        "policy": g.policy,
        "notification": notification,
        "grant": {
            "namespace": g.namespace,
            "name": g.name,
            "uid": g.uid,
            "user": g.user,
            "access": g.access,
            "duration": g.duration,
            "phase": g.phase,
            "reason": g.reason,
            "requestedBy": g.requested_by,
            "message": g.message,
            "approval": g.approval,
            "expiresAt": g.expires_at.map(time),
        },
        "at": time(g.at),
    });
    if event.audience() == Audience::Approvers {
        body["approvers"] = json!({"users": g.approvers.users, "groups": g.approvers.groups});
        body["approve"] = json!(approve_command(g));
    }
    body
}

/// The headline of a review event.
fn review_title(event: &Event) -> &'static str {
    match event {
        Event::ReviewOpened(_) => "Access review opened",
        Event::ReviewReminder(_) => "Access review due soon",
        _ => "Access review overdue",
    }
}

fn reviewers(r: &ReviewNews) -> String {
    if r.reviewers.is_empty() {
        return "none assigned".to_string();
    }
    r.reviewers
        .iter()
        .map(|(who, assigned, decided)| format!("{who} ({decided}/{assigned} decided)"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a reviewer runs to see their items.
pub fn review_command(r: &ReviewNews) -> String {
    format!("kubectl tailkeeper review -n {} {}", r.namespace, r.name)
}

fn slack_review(event: &Event, r: &ReviewNews, notification: &str) -> Value {
    let title = review_title(event);
    let subject = format!("AccessReview {}/{}", r.namespace, r.name);
    let due = r.due_at.map(time).unwrap_or_else(|| "not set".to_string());
    let text = match event {
        Event::ReviewOverdue(_) => format!(
            "{title}: {subject}: {} of {} items were undecided at {due} and were {}. Reviewers: {}.",
            r.undecided,
            r.items,
            if r.undecided_action == "Revoke" { "revoked" } else { "kept" },
            reviewers(r)
        ),
        _ => format!(
            "{title}: {subject}: {} items ({} undecided) of {} to review by {due}; undecided then: {}. Reviewers: {}.",
            r.items,
            r.undecided,
            r.scope,
            r.undecided_action,
            reviewers(r)
        ),
    };
    let mut blocks = vec![
        mrkdwn_section(&format!("*{title}:* {}", escape(&subject))),
        json!({"type": "section", "fields": [
            field("Scope", &r.scope),
            field("Items", &format!("{} ({} undecided)", r.items, r.undecided)),
            field("Due", &due),
            field("Undecided at the due time", &r.undecided_action),
        ]}),
    ];
    if let Some(description) = &r.description {
        blocks.push(mrkdwn_section(&format!("*About*\n{}", escape(description))));
    }
    blocks.push(mrkdwn_section(&format!(
        "*Reviewers:* {}. To see and decide your items:\n```{}```",
        escape(&reviewers(r)),
        escape(&review_command(r))
    )));
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": escape(&format!(
        "AccessPolicy {}/{} · notification {notification} · {}", r.namespace, r.policy, time(r.at)
    ))}]}));
    json!({"text": escape(&text), "blocks": blocks})
}

fn generic_review(event: &Event, r: &ReviewNews, notification: &str, id: &str) -> Value {
    json!({
        "id": id,
        "type": event.kind().as_str(),
        "policy": r.policy,
        "notification": notification,
        "review": {
            "namespace": r.namespace,
            "name": r.name,
            "uid": r.uid,
            "description": r.description,
            "scope": r.scope,
            "items": r.items,
            "undecided": r.undecided,
            "undecidedAction": r.undecided_action,
            "dueAt": r.due_at.map(time),
        },
        "reviewers": r.reviewers.iter().map(|(who, assigned, decided)| json!({
            "reviewer": who, "assigned": assigned, "decided": decided
        })).collect::<Vec<_>>(),
        "command": review_command(r),
        "at": time(r.at),
    })
}

/// The command an approver runs to approve the grant in their own name: the approval names the
/// grant's UID (it covers exactly the grant reviewed) and, when only groups approve, the group.
pub fn approve_command(g: &GrantNews) -> String {
    let a = &g.approvers;
    let group = match (a.users.is_empty(), a.groups.as_slice()) {
        (true, [only]) if shell_safe(only) => format!(r#""group":"{only}","#),
        (true, [_, ..]) => r#""group":"<your approver group>","#.to_string(),
        _ => String::new(),
    };
    format!(
        r#"kubectl -n {} patch accessgrant {} --type merge -p '{{"spec":{{"approval":{{"approvedBy":"<you>",{group}"grantUID":"{}"}}}}}}'"#,
        g.namespace, g.name, g.uid
    )
}

/// A group name that can go into the single-quoted JSON of the command as it is.
fn shell_safe(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '-' | '@' | '/'))
}

/// The headline of a grant in `phase`.
fn title(phase: GrantPhase) -> &'static str {
    match phase {
        GrantPhase::Pending => "Access request pending",
        GrantPhase::AwaitingApproval => "Access awaits approval",
        GrantPhase::Active => "Access granted",
        GrantPhase::Denied => "Access request denied",
        GrantPhase::Failed => "Access request failed",
        GrantPhase::Expired => "Access expired",
        GrantPhase::Revoked => "Access revoked",
    }
}

fn duration(g: &GrantNews) -> String {
    g.duration
        .clone()
        .unwrap_or_else(|| "standing (until removed)".to_string())
}

fn approvers(g: &GrantNews) -> String {
    let a = &g.approvers;
    let mut parts: Vec<String> = a.users.iter().map(|u| format!("user {u}")).collect();
    parts.extend(a.groups.iter().map(|g| format!("group {g}")));
    if parts.is_empty() {
        "none listed".to_string()
    } else {
        parts.join(", ")
    }
}

fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn field(label: &str, value: &str) -> Value {
    json!({"type": "mrkdwn", "text": format!("*{label}*\n{}", escape(value))})
}

fn mrkdwn_section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// Slack's escaping of text: `&`, `<` and `>` (a `<!channel>` or `<url|label>` someone typed
/// shows as typed).
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notifications::grant_event;
    use crate::notifications::tests::{at, news};

    #[test]
    fn slack_asks_approvers_with_the_command_to_approve() {
        let event = grant_event(
            Some(GrantPhase::Pending),
            news(GrantPhase::AwaitingApproval),
        )
        .expect("news");
        assert_eq!(
            slack(&event, "approvers"),
            json!({
                "text": "Access awaits approval: AccessGrant security/alice-oncall: alice@example.com asks for membership of group:oncall for 2h (requested by alice). Approvers: group sre.",
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn",
                        "text": "*Access awaits approval:* AccessGrant security/alice-oncall"}},
                    {"type": "section", "fields": [
                        {"type": "mrkdwn", "text": "*User*\nalice@example.com"},
                        {"type": "mrkdwn", "text": "*Access*\nmembership of group:oncall"},
                        {"type": "mrkdwn", "text": "*Duration*\n2h"},
                        {"type": "mrkdwn", "text": "*Requested by*\nalice"}
                    ]},
                    {"type": "section", "text": {"type": "mrkdwn",
                        "text": "*Reason*\nINC-4711: database failover"}},
                    {"type": "section", "text": {"type": "mrkdwn",
                        "text": "*Approvers:* group sre. To approve, in your own name:\n```kubectl -n security patch accessgrant alice-oncall --type merge -p '{\"spec\":{\"approval\":{\"approvedBy\":\"&lt;you&gt;\",\"group\":\"sre\",\"grantUID\":\"0b6a1c1e-uid\"}}}'```"}},
                    {"type": "context", "elements": [{"type": "mrkdwn",
                        "text": "AccessPolicy security/corp · notification approvers · 2026-11-30T10:00:00Z"}]}
                ]
            })
        );
    }

    #[test]
    fn slack_tells_the_requester_what_was_decided_and_until_when() {
        let mut n = news(GrantPhase::Active);
        n.duration = None;
        n.expires_at = None;
        n.approval = Some("approved by carol through approver group sre".into());
        n.message = Some(
            "membership of group:oncall granted to alice@example.com as standing access".into(),
        );
        let event = grant_event(Some(GrantPhase::AwaitingApproval), n).expect("news");
        assert_eq!(
            slack(&event, "requesters"),
            json!({
                "text": "Access granted: AccessGrant security/alice-oncall: membership of group:oncall for alice@example.com (requested by alice). membership of group:oncall granted to alice@example.com as standing access",
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn",
                        "text": "*Access granted:* AccessGrant security/alice-oncall"}},
                    {"type": "section", "fields": [
                        {"type": "mrkdwn", "text": "*User*\nalice@example.com"},
                        {"type": "mrkdwn", "text": "*Access*\nmembership of group:oncall"},
                        {"type": "mrkdwn", "text": "*Duration*\nstanding (until removed)"},
                        {"type": "mrkdwn", "text": "*Requested by*\nalice"},
                        {"type": "mrkdwn", "text": "*Approval*\napproved by carol through approver group sre"}
                    ]},
                    {"type": "section", "text": {"type": "mrkdwn",
                        "text": "*Reason*\nINC-4711: database failover"}},
                    {"type": "section", "text": {"type": "mrkdwn",
                        "text": "*Status*\nmembership of group:oncall granted to alice@example.com as standing access"}},
                    {"type": "context", "elements": [{"type": "mrkdwn",
                        "text": "AccessPolicy security/corp · notification requesters · 2026-11-30T10:00:00Z"}]}
                ]
            })
        );
    }

    #[test]
    fn what_people_typed_cannot_mention_a_channel_or_hide_a_link() {
        let mut n = news(GrantPhase::AwaitingApproval);
        n.reason = "<!channel> see <https://evil.example|the runbook> & approve".into();
        let event = grant_event(None, n).expect("news");
        let body = slack(&event, "approvers").to_string();
        assert!(
            !body.contains("<!channel>") && !body.contains("<https://"),
            "{body}"
        );
        assert!(
            body.contains(
                "&lt;!channel&gt; see &lt;https://evil.example|the runbook&gt; &amp; approve"
            ),
            "{body}"
        );
    }

    #[test]
    fn generic_carries_the_facts_as_fields() {
        let mut n = news(GrantPhase::Expired);
        n.message = Some("access of alice@example.com expired".into());
        n.at = at("2026-11-30T12:00:01Z");
        let event = grant_event(Some(GrantPhase::Active), n).expect("news");
        let body = generic(&event, "requesters", "2bbc27bec870603b39acc2292883859c");
        assert_eq!(
            body.to_string(),
            r#"{"id":"2bbc27bec870603b39acc2292883859c","type":"GrantEnded","policy":"corp","notification":"requesters","grant":{"namespace":"security","name":"alice-oncall","uid":"0b6a1c1e-uid","user":"alice@example.com","access":{"group":"group:oncall"},"duration":"2h","phase":"Expired","reason":"INC-4711: database failover","requestedBy":"alice","message":"access of alice@example.com expired","approval":null,"expiresAt":null},"at":"2026-11-30T12:00:01Z"}"#
        );
    }

    #[test]
    fn generic_gives_approvers_who_may_approve_and_how() {
        let event = grant_event(None, news(GrantPhase::AwaitingApproval)).expect("news");
        let body = generic(&event, "approvers", "id-1");
        assert_eq!(body["type"], "GrantAwaitingApproval");
        assert_eq!(body["approvers"], json!({"users": [], "groups": ["sre"]}));
        assert_eq!(
            body["approve"],
            r#"kubectl -n security patch accessgrant alice-oncall --type merge -p '{"spec":{"approval":{"approvedBy":"<you>","group":"sre","grantUID":"0b6a1c1e-uid"}}}'"#
        );
    }

    #[test]
    fn the_command_names_the_group_only_when_groups_alone_approve() {
        let mut n = news(GrantPhase::AwaitingApproval);
        n.approvers.users = vec!["carol".into()];
        assert!(!approve_command(&n).contains("\"group\""));
        n.approvers.users.clear();
        n.approvers.groups = vec!["sre".into(), "leads".into()];
        assert!(approve_command(&n).contains(r#""group":"<your approver group>","#));
        n.approvers.groups = vec!["it's".into()];
        assert!(
            approve_command(&n).contains(r#""group":"<your approver group>","#),
            "a name that would break the shell quoting is not pasted in"
        );
    }
}
