//! Outgoing notifications, decided from plain data: which change of a grant is news, which of a
//! policy's receivers hear of it, and what each receives ([`plan`]); the bodies ([`render`]),
//! their signature and idempotency id ([`sign`]), where the operator may post ([`target`]) and
//! how a failed delivery is retried ([`retry`]). No I/O: the operator's sender
//! (`controller::notify`) reads the receiver's Secret, posts, sleeps and reports.
//!
//! Approvers hear of a grant awaiting approval, with the command that approves it; requesters
//! hear of the decision and of the end; an access review's reviewers hear that it opened, a
//! reminder when three quarters of its time have passed with items undecided, and that it is
//! overdue. A message carries what an approver judges and what the
//! grant's status says, never a credential: the receiver's URL and signing secret stay in its
//! Secret.

pub mod render;
pub mod retry;
pub mod sign;
pub mod target;

use jiff::Timestamp;

use crate::api::{
    find_condition, AccessGrant, AccessGrantStatus, AccessPolicySpec, Approvers, GrantAccess,
    GrantPhase, Notification, NotificationEvent, NotificationFormat,
};

/// The reason of the Warning Event a policy gets when a delivery gives up.
pub const NOTIFICATION_FAILED: &str = "NotificationFailed";

/// What people are told about one grant: what an approver judges and what its status says.
#[derive(Clone, Debug, PartialEq)]
pub struct GrantNews {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The AccessPolicy (same namespace).
    pub policy: String,
    /// The Tailscale login receiving access.
    pub user: String,
    pub access: GrantAccess,
    /// `None`: a standing grant.
    pub duration: Option<String>,
    /// Why the access is needed (the requester's words).
    pub reason: String,
    pub requested_by: Option<String>,
    pub phase: GrantPhase,
    /// The status message: why the grant is in its phase.
    pub message: Option<String>,
    /// How it was approved (the `Approved` condition's message), once active.
    pub approval: Option<String>,
    /// Who may approve it under the policy (empty when the policy no longer lists the item).
    pub approvers: Approvers,
    pub expires_at: Option<Timestamp>,
    /// When the grant entered its phase.
    pub at: Timestamp,
}

impl GrantNews {
    /// The news of `grant` with `status` (the one just written), under `policy`, at `at`.
    /// `None` before the grant has a phase.
    pub fn of(
        grant: &AccessGrant,
        status: &AccessGrantStatus,
        policy: &AccessPolicySpec,
        at: Timestamp,
    ) -> Option<Self> {
        let approvers = crate::grants::terms_of(policy, &grant.spec.access)
            .map(|t| t.approvers.clone())
            .unwrap_or_default();
        Some(GrantNews {
            namespace: grant.metadata.namespace.clone().unwrap_or_default(),
            name: grant.metadata.name.clone().unwrap_or_default(),
            uid: grant.metadata.uid.clone().unwrap_or_default(),
            policy: grant.spec.policy_ref.name.clone(),
            user: grant.spec.user.clone(),
            access: grant.spec.access.clone(),
            duration: grant.spec.duration.clone(),
            reason: grant.spec.reason.clone(),
            requested_by: grant.spec.requested_by.clone(),
            phase: status.phase?,
            message: status.message.clone(),
            approval: find_condition(&status.conditions, "Approved").map(|c| c.message.clone()),
            approvers,
            expires_at: status.expires_at.as_ref().map(|t| t.0),
            at,
        })
    }

    /// The access in words: `membership of group:prod`, `role admin`, `network rule db`...
    pub fn access_described(&self) -> String {
        describe_access(&self.access)
    }
}

/// A grant's access in words.
pub fn describe_access(access: &GrantAccess) -> String {
    if let Some(group) = &access.group {
        format!("membership of {group}")
    } else if let Some(role) = access.role {
        format!("role {}", crate::grants::role_name(role))
    } else if let Some(rule) = &access.rule {
        format!("network rule {rule}")
    } else if let Some(ssh) = &access.ssh_rule {
        format!("SSH rule {ssh}")
    } else if let Some(attr) = &access.posture_attribute {
        format!("posture attribute {attr}")
    } else {
        "no access".to_string()
    }
}

/// What reviewers are told about one access review.
#[derive(Clone, Debug, PartialEq)]
pub struct ReviewNews {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The AccessPolicy (same namespace).
    pub policy: String,
    pub description: Option<String>,
    /// The scope in words.
    pub scope: String,
    pub items: i64,
    pub undecided: i64,
    /// `Keep` or `Revoke`: what the due time does to undecided items.
    pub undecided_action: String,
    pub due_at: Option<Timestamp>,
    /// Each reviewer (`user:<name>`, `group:<name>`) with how many items they have and have
    /// decided, most items first (bounded, as in status).
    pub reviewers: Vec<(String, i64, i64)>,
    pub at: Timestamp,
}

/// Something people are told about. Each variant is one [`NotificationEvent`] a receiver
/// subscribes to.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A grant waits for an approver: told to approvers.
    GrantAwaitingApproval(GrantNews),
    /// A grant became active, or was denied or failed: told to its requester.
    GrantDecided(GrantNews),
    /// A grant's access ended (expired or revoked): told to its requester.
    GrantEnded(GrantNews),
    /// An access review opened: told to its reviewers.
    ReviewOpened(ReviewNews),
    /// An access review nears its due time with items undecided: told to its reviewers.
    ReviewReminder(ReviewNews),
    /// An access review passed its due time with items undecided: told to its reviewers.
    ReviewOverdue(ReviewNews),
}

/// Whom a message speaks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    Approvers,
    Requester,
    Reviewers,
}

/// What an event is about.
pub enum About<'a> {
    Grant(&'a GrantNews),
    Review(&'a ReviewNews),
}

impl Event {
    /// The event as a receiver subscribes to it.
    pub fn kind(&self) -> NotificationEvent {
        match self {
            Event::GrantAwaitingApproval(_) => NotificationEvent::GrantAwaitingApproval,
            Event::GrantDecided(_) => NotificationEvent::GrantDecided,
            Event::GrantEnded(_) => NotificationEvent::GrantEnded,
            Event::ReviewOpened(_) => NotificationEvent::ReviewOpened,
            Event::ReviewReminder(_) => NotificationEvent::ReviewReminder,
            Event::ReviewOverdue(_) => NotificationEvent::ReviewOverdue,
        }
    }

    pub fn audience(&self) -> Audience {
        match self {
            Event::GrantAwaitingApproval(_) => Audience::Approvers,
            Event::GrantDecided(_) | Event::GrantEnded(_) => Audience::Requester,
            Event::ReviewOpened(_) | Event::ReviewReminder(_) | Event::ReviewOverdue(_) => {
                Audience::Reviewers
            }
        }
    }

    /// The grant or review the event is about.
    pub fn about(&self) -> About<'_> {
        match self {
            Event::GrantAwaitingApproval(g) | Event::GrantDecided(g) | Event::GrantEnded(g) => {
                About::Grant(g)
            }
            Event::ReviewOpened(r) | Event::ReviewReminder(r) | Event::ReviewOverdue(r) => {
                About::Review(r)
            }
        }
    }

    /// What makes this event this event, and not another: the same for every delivery of it,
    /// across retries and restarts (the idempotency id is derived from it).
    pub fn key(&self) -> String {
        match self.about() {
            About::Grant(g) => format!("{}/{}/{:?}", self.kind().as_str(), g.uid, g.phase),
            About::Review(r) => format!("{}/{}", self.kind().as_str(), r.uid),
        }
    }

    /// The object the event is about, `Kind namespace/name`, for Events and logs.
    pub fn subject(&self) -> String {
        match self.about() {
            About::Grant(g) => format!("AccessGrant {}/{}", g.namespace, g.name),
            About::Review(r) => format!("AccessReview {}/{}", r.namespace, r.name),
        }
    }
}

/// Which event, if any, a grant's change from `previous` to `phase` is. Reaching `Pending` (or
/// staying put) is no news.
pub fn grant_event_kind(
    previous: Option<GrantPhase>,
    phase: GrantPhase,
) -> Option<NotificationEvent> {
    if previous == Some(phase) {
        return None;
    }
    match phase {
        GrantPhase::Pending => None,
        GrantPhase::AwaitingApproval => Some(NotificationEvent::GrantAwaitingApproval),
        GrantPhase::Active | GrantPhase::Denied | GrantPhase::Failed => {
            Some(NotificationEvent::GrantDecided)
        }
        GrantPhase::Expired | GrantPhase::Revoked => Some(NotificationEvent::GrantEnded),
    }
}

/// The event a grant's change from `previous` to the phase in `news` is, if it is news.
pub fn grant_event(previous: Option<GrantPhase>, news: GrantNews) -> Option<Event> {
    Some(match grant_event_kind(previous, news.phase)? {
        NotificationEvent::GrantAwaitingApproval => Event::GrantAwaitingApproval(news),
        NotificationEvent::GrantDecided => Event::GrantDecided(news),
        NotificationEvent::GrantEnded => Event::GrantEnded(news),
        NotificationEvent::ReviewOpened
        | NotificationEvent::ReviewReminder
        | NotificationEvent::ReviewOverdue => return None,
    })
}

/// Whether any of `notifications` subscribes to `kind`.
pub fn subscribed(notifications: &[Notification], kind: NotificationEvent) -> bool {
    notifications.iter().any(|n| n.events.contains(&kind))
}

/// How a delivery ended, for the metric `tailkeeper_notifications_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered,
    /// The receiver refused it (a 3xx or 4xx other than 408 and 429): not retried.
    Refused,
    /// Every attempt failed (5xx, 408, 429, timeouts, connection errors), or a Secret could
    /// not be read for another reason.
    Failed,
    /// Its Secret is missing, unreadable to the operator, lacks a key, or names a URL the
    /// operator does not post to.
    Misconfigured,
    /// The queue was full: the operator had more to send than it could hold.
    Dropped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "Delivered",
            Outcome::Refused => "Refused",
            Outcome::Failed => "Failed",
            Outcome::Misconfigured => "Misconfigured",
            Outcome::Dropped => "Dropped",
        }
    }
}

/// One message for one receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The receiver (`spec.notifications[].name`).
    pub notification: String,
    /// The Secret (policy's namespace) holding the receiver's URL and signing secret.
    pub secret: String,
    pub format: NotificationFormat,
    pub event: NotificationEvent,
    /// Stable across retries and restarts: receivers de-duplicate on it.
    pub id: String,
    /// The JSON body.
    pub body: String,
}

/// What to send to whom: one delivery per receiver of `notifications` subscribed to `event`,
/// in the receiver's format.
pub fn plan(notifications: &[Notification], event: &Event) -> Vec<Delivery> {
    let kind = event.kind();
    notifications
        .iter()
        .filter(|n| n.events.contains(&kind))
        .map(|n| {
            let id = sign::delivery_id(&event.key(), &n.name);
            let body = match n.format {
                NotificationFormat::Slack => render::slack(event, &n.name),
                NotificationFormat::Generic => render::generic(event, &n.name, &id),
            };
            Delivery {
                notification: n.name.clone(),
                secret: n.secret_ref.name.clone(),
                format: n.format,
                event: kind,
                id,
                body: body.to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    /// A grant of group:oncall for alice, requested by alice, in `phase`.
    pub(crate) fn news(phase: GrantPhase) -> GrantNews {
        GrantNews {
            namespace: "security".into(),
            name: "alice-oncall".into(),
            uid: "0b6a1c1e-uid".into(),
            policy: "corp".into(),
            user: "alice@example.com".into(),
            access: GrantAccess {
                group: Some("group:oncall".into()),
                ..Default::default()
            },
            duration: Some("2h".into()),
            reason: "INC-4711: database failover".into(),
            requested_by: Some("alice".into()),
            phase,
            message: None,
            approval: None,
            approvers: Approvers {
                users: vec![],
                groups: vec!["sre".into()],
            },
            expires_at: None,
            at: at("2026-11-30T10:00:00Z"),
        }
    }

    fn receivers() -> Vec<Notification> {
        serde_json::from_value(json!([
            {"name": "approvers", "secretRef": {"name": "slack"}, "format": "Slack",
             "events": ["GrantAwaitingApproval"]},
            {"name": "requesters", "secretRef": {"name": "hooks"}, "format": "Generic",
             "events": ["GrantDecided", "GrantEnded"]},
            {"name": "audit", "secretRef": {"name": "audit"}, "format": "Generic"}
        ]))
        .expect("notifications")
    }

    #[test]
    fn each_phase_change_is_one_event_and_pending_or_no_change_is_none() {
        use GrantPhase::*;
        let cases = [
            (None, Pending, None),
            (
                None,
                AwaitingApproval,
                Some(NotificationEvent::GrantAwaitingApproval),
            ),
            (
                Some(Pending),
                AwaitingApproval,
                Some(NotificationEvent::GrantAwaitingApproval),
            ),
            (Some(AwaitingApproval), AwaitingApproval, None),
            (Some(AwaitingApproval), Pending, None),
            (
                Some(AwaitingApproval),
                Active,
                Some(NotificationEvent::GrantDecided),
            ),
            (Some(Pending), Active, Some(NotificationEvent::GrantDecided)),
            (None, Denied, Some(NotificationEvent::GrantDecided)),
            (Some(Pending), Failed, Some(NotificationEvent::GrantDecided)),
            (Some(Active), Expired, Some(NotificationEvent::GrantEnded)),
            (Some(Active), Revoked, Some(NotificationEvent::GrantEnded)),
            (Some(Active), Active, None),
        ];
        for (from, to, want) in cases {
            assert_eq!(grant_event_kind(from, to), want, "{from:?} -> {to:?}");
        }
    }

    #[test]
    fn approvers_hear_of_requests_and_requesters_of_decisions_and_ends() {
        let notifications = receivers();
        let names = |phase, from| {
            let event = grant_event(from, news(phase)).expect("news");
            plan(&notifications, &event)
                .into_iter()
                .map(|d| (d.notification, d.format, event.audience()))
                .collect::<Vec<_>>()
        };
        use NotificationFormat::*;
        assert_eq!(
            names(GrantPhase::AwaitingApproval, Some(GrantPhase::Pending)),
            [
                ("approvers".to_string(), Slack, Audience::Approvers),
                ("audit".to_string(), Generic, Audience::Approvers)
            ]
        );
        for (phase, from) in [
            (GrantPhase::Active, GrantPhase::AwaitingApproval),
            (GrantPhase::Denied, GrantPhase::Pending),
            (GrantPhase::Expired, GrantPhase::Active),
            (GrantPhase::Revoked, GrantPhase::Active),
        ] {
            assert_eq!(
                names(phase, Some(from)),
                [
                    ("requesters".to_string(), Generic, Audience::Requester),
                    ("audit".to_string(), Generic, Audience::Requester)
                ],
                "{phase:?}"
            );
        }
        assert!(grant_event(Some(GrantPhase::Pending), news(GrantPhase::Pending)).is_none());
    }

    #[test]
    fn a_delivery_is_identified_the_same_way_every_time_and_differently_per_receiver_and_phase() {
        let notifications = receivers();
        let event = grant_event(None, news(GrantPhase::Active)).expect("news");
        let first = plan(&notifications, &event);
        let again = plan(&notifications, &event);
        assert_eq!(
            first, again,
            "retries and restarts send the same id and body"
        );
        assert_ne!(first[0].id, first[1].id, "each receiver has its own id");
        let ended = grant_event(Some(GrantPhase::Active), news(GrantPhase::Expired)).expect("news");
        assert_ne!(plan(&notifications, &ended)[0].id, first[0].id);
        assert_eq!(first[0].id.len(), 32);
    }

    #[test]
    fn events_default_to_all_three() {
        let n: Notification = serde_json::from_value(
            json!({"name": "all", "secretRef": {"name": "s"}, "format": "Slack"}),
        )
        .expect("notification");
        assert_eq!(n.events, crate::api::ALL_NOTIFICATION_EVENTS);
        assert!(subscribed(&[n], NotificationEvent::GrantEnded));
    }

    #[test]
    fn news_reads_the_grant_its_status_and_who_may_approve() {
        let policy: AccessPolicySpec = serde_json::from_value(json!({
            "integrationRef": {"name": "t"},
            "grantable": {"groups": [{"name": "group:oncall",
                "terms": {"maxDuration": "8h", "approvers": {"users": ["carol"], "groups": ["sre"]}}}]}
        }))
        .expect("policy");
        let grant: AccessGrant = serde_json::from_value(json!({
            "apiVersion": "tailkeeper.io/v1alpha1", "kind": "AccessGrant",
            "metadata": {"name": "alice-oncall", "namespace": "security", "uid": "u-1"},
            "spec": {"policyRef": {"name": "corp"}, "user": "alice@example.com",
                     "access": {"group": "group:oncall"}, "duration": "2h",
                     "reason": "incident", "requestedBy": "alice"},
            "status": {"phase": "Active", "message": "membership of group:oncall granted",
                       "expiresAt": "2026-11-30T12:00:00Z",
                       "conditions": [{"type": "Approved", "status": "True", "reason": "ApprovedByApprover",
                                       "message": "approved by carol", "lastTransitionTime": "2026-11-30T10:00:00Z"}]}
        }))
        .expect("grant");
        let status = grant.status.clone().expect("status");
        let n = GrantNews::of(&grant, &status, &policy, at("2026-11-30T10:00:00Z")).expect("news");
        assert_eq!(n.phase, GrantPhase::Active);
        assert_eq!(n.approval.as_deref(), Some("approved by carol"));
        assert_eq!(n.approvers.users, ["carol"]);
        assert_eq!(n.approvers.groups, ["sre"]);
        assert_eq!(n.expires_at, Some(at("2026-11-30T12:00:00Z")));
        assert_eq!(n.access_described(), "membership of group:oncall");
    }
}
