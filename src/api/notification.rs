//! Outgoing notifications of an `AccessPolicy`: where people hear about its grants (a Slack
//! channel, or any HTTPS endpoint) and which events they hear about. What is sent, and how, is
//! in [`crate::notifications`].

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::LocalRef;

/// Every event, in the order the default subscribes to them.
pub const ALL_NOTIFICATION_EVENTS: [NotificationEvent; 6] = [
    NotificationEvent::GrantAwaitingApproval,
    NotificationEvent::GrantDecided,
    NotificationEvent::GrantEnded,
    NotificationEvent::ReviewOpened,
    NotificationEvent::ReviewReminder,
    NotificationEvent::ReviewOverdue,
];

fn default_events() -> Vec<NotificationEvent> {
    ALL_NOTIFICATION_EVENTS.to_vec()
}

/// One receiver of a policy's notifications.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// The receiver's name, unique in the policy (a lower-case DNS label such as `approvers`):
    /// Events and metrics name it, never its URL.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("name must be a lower-case DNS label such as approvers or sre-slack"))]
    pub name: String,

    /// A Secret in the policy's namespace holding the receiver's `url` (a credential: a Slack
    /// incoming-webhook URL lets anyone post to the channel) and, for the `Generic` format, the
    /// `secret` that signs each body. The operator reads only Secrets it is given: list it in
    /// the chart's `credentialSecrets` value. The URL must be `https`.
    pub secret_ref: LocalRef,

    /// `Slack`: a Slack incoming-webhook message (`text` and `blocks`). `Generic`: a JSON body
    /// signed with HMAC-SHA256 (header `Tailkeeper-Signature`), for any other receiver.
    pub format: NotificationFormat,

    /// What the receiver hears about (default: all). `GrantAwaitingApproval` is for
    /// approvers (it says how to approve); `GrantDecided` (activated, denied or failed) and
    /// `GrantEnded` (expired or revoked) are for requesters; `ReviewOpened`, `ReviewReminder`
    /// and `ReviewOverdue` are for an access review's reviewers.
    #[serde(default = "default_events")]
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = Rule::new("self.all(e, self.exists_one(f, f == e))").message("events must not repeat an event"))]
    pub events: Vec<NotificationEvent>,
}

/// The body a receiver gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NotificationFormat {
    /// A Slack incoming-webhook message: `text` and simple `blocks`.
    Slack,
    /// A signed JSON body `{id, type, policy, notification, grant: {...}, at, ...}`.
    Generic,
}

/// Something people are told about: grants' news for approvers and requesters, access
/// reviews' for reviewers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum NotificationEvent {
    /// A grant waits for an approver: who asks for what, for how long, why, and how to approve.
    GrantAwaitingApproval,
    /// A grant was decided: active (approved, or needing no approval), denied, or failed.
    GrantDecided,
    /// A grant's access ended: expired, or revoked.
    GrantEnded,
    /// An access review opened: its reviewers, what they review and by when.
    ReviewOpened,
    /// An access review is three quarters through its time with items undecided.
    ReviewReminder,
    /// An access review's due time passed with items undecided: they got `spec.undecided`.
    ReviewOverdue,
}

impl NotificationEvent {
    /// The name as the API spells it (the Generic body's `type`, metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationEvent::GrantAwaitingApproval => "GrantAwaitingApproval",
            NotificationEvent::GrantDecided => "GrantDecided",
            NotificationEvent::GrantEnded => "GrantEnded",
            NotificationEvent::ReviewOpened => "ReviewOpened",
            NotificationEvent::ReviewReminder => "ReviewReminder",
            NotificationEvent::ReviewOverdue => "ReviewOverdue",
        }
    }
}
