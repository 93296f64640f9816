//! Prometheus metrics, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    pub namespace: String,
    pub policy: String,
    pub check: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IntegrationLabels {
    pub namespace: String,
    pub integration: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub namespace: String,
    pub integration: String,
    /// `Accepted`, or why not (`BadSignature`, `Stale`, `Replayed`, `RateLimited`, ...).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    pub namespace: String,
    pub policy: String,
    /// The receiver (`spec.notifications[].name`).
    pub notification: String,
    /// `Delivered`, or why not (`Refused`, `Failed`, `Misconfigured`, `Dropped`).
    pub outcome: String,
}

/// Every metric the operator exports.
pub struct Metrics {
    pub registry: Registry,
    pub reconciliations: Family<ControllerLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    /// 1 while a check passes, 0 while it fails; absent while it cannot be evaluated.
    pub check_passing: Family<CheckLabels, Gauge>,
    /// Users failing a check.
    pub check_failing_users: Family<CheckLabels, Gauge>,
    pub inventory_users: Family<IntegrationLabels, Gauge>,
    /// Unix time at which the integration's API token expires (absent for OAuth clients).
    pub credential_expiry: Family<IntegrationLabels, Gauge>,
    /// 1 while this replica leads (runs the controllers), 0 while it waits as a standby.
    pub leader: Gauge,
    /// Webhook deliveries received, by outcome.
    pub webhook_deliveries: Family<WebhookLabels, Counter>,
    /// How long after its expiry each grant's access was taken away.
    pub revocation_lateness: Histogram,
    /// Grants whose access is still recorded as held well past their expiry.
    pub revocations_overdue: Gauge,
    /// Grants whose access is due to end but cannot until a person fixes something (the
    /// credential refused or gone, a scope missing, the policy file unparsable).
    pub revocations_blocked: Family<IntegrationLabels, Gauge>,
    /// 1 while a policy's enforcement is refused by a limit, else 0.
    pub enforcement_refused: Family<PolicyLabels, Gauge>,
    /// Users holding each entitlement.
    pub entitlement_holders: Family<EntitlementLabels, Gauge>,
    /// Notifications by receiver and outcome.
    pub notifications: Family<NotificationLabels, Counter>,
    /// An access review's items by state.
    pub review_items: Family<ReviewLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    pub namespace: String,
    pub review: String,
    /// `undecided`, `kept`, `revoked` or `pending` (revocations not carried out yet).
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EntitlementLabels {
    pub namespace: String,
    pub policy: String,
    /// The entitlement's stable id (`group:prod`, `grant:3f2a9c0d41be`, `role:admin`).
    pub entitlement: String,
    /// `role`, `group`, `grant`, `acl` or `ssh`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub namespace: String,
    pub policy: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tailkeeper");
        let reconciliations = Family::<ControllerLabels, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration =
            Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
                Histogram::new([0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
            });
        let check_passing = Family::<CheckLabels, Gauge>::default();
        let check_failing_users = Family::<CheckLabels, Gauge>::default();
        let inventory_users = Family::<IntegrationLabels, Gauge>::default();
        let credential_expiry = Family::<IntegrationLabels, Gauge>::default();
        let leader = Gauge::default();
        let webhook_deliveries = Family::<WebhookLabels, Counter>::default();
        let revocation_lateness =
            Histogram::new([0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0]);
        let revocations_overdue = Gauge::default();
        let revocations_blocked = Family::<IntegrationLabels, Gauge>::default();
        let enforcement_refused = Family::<PolicyLabels, Gauge>::default();
        let entitlement_holders = Family::<EntitlementLabels, Gauge>::default();
        let notifications = Family::<NotificationLabels, Counter>::default();
        let review_items = Family::<ReviewLabels, Gauge>::default();
        registry.register(
            "reconciliations",
            "Reconciliations by controller",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciliations by controller and reason",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconciliations by controller",
            reconcile_duration.clone(),
        );
        registry.register(
            "check_passing",
            "Whether a compliance check passes (1) or fails (0)",
            check_passing.clone(),
        );
        registry.register(
            "check_failing_users",
            "Users failing a compliance check",
            check_failing_users.clone(),
        );
        registry.register(
            "inventory_users",
            "Users in the tailnet at the last sync",
            inventory_users.clone(),
        );
        registry.register(
            "credential_expiry_timestamp_seconds",
            "When the integration's API token expires, as Unix time",
            credential_expiry.clone(),
        );
        registry.register(
            "leader",
            "Whether this replica leads (1) or waits for the leader-election Lease (0)",
            leader.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Tailscale webhook deliveries received, by integration and outcome",
            webhook_deliveries.clone(),
        );
        registry.register(
            "revocation_lateness_seconds",
            "How long after a grant's expiry its access was taken away",
            revocation_lateness.clone(),
        );
        registry.register(
            "revocations_overdue",
            "Grants whose access is still held more than 30 seconds past their expiry",
            revocations_overdue.clone(),
        );
        registry.register(
            "revocations_blocked",
            "Grants whose access is due to end but cannot until a person fixes the integration (credential refused or gone, scope missing, policy file unparsable)",
            revocations_blocked.clone(),
        );
        registry.register(
            "enforcement_refused",
            "Whether a limit refuses the policy's enforcement (1) or not (0)",
            enforcement_refused.clone(),
        );
        registry.register(
            "entitlement_holders",
            "Users holding an entitlement (a role, a group, or a grants, acls or ssh entry)",
            entitlement_holders.clone(),
        );
        registry.register(
            "notifications",
            "Notifications of grants by policy, receiver and outcome (Delivered, Refused, Failed, Misconfigured, Dropped)",
            notifications.clone(),
        );
        registry.register(
            "review_items",
            "An access review's items by state (undecided, kept, revoked, pending revocation)",
            review_items.clone(),
        );
        Self {
            registry,
            reconciliations,
            reconcile_errors,
            reconcile_duration,
            check_passing,
            check_failing_users,
            inventory_users,
            credential_expiry,
            leader,
            webhook_deliveries,
            revocation_lateness,
            revocations_overdue,
            revocations_blocked,
            enforcement_refused,
            entitlement_holders,
            notifications,
            review_items,
        }
    }
}

impl Metrics {
    /// Render in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
