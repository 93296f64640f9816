//! Validation by the real API server (kube-apiserver + etcd, with the CRDs of `crds/`):
//!
//! - malformed resources are refused with `422 Invalid`, and the message names the field and
//!   says what to fix (the OpenAPI limits and the CEL `x-kubernetes-validations` messages);
//! - immutable fields stay immutable on update (CEL transition rules);
//! - unknown fields are refused by server-side apply and under `fieldValidation=Strict`, and
//!   silently pruned by a plain create;
//! - valid resources, minimal and full, are stored with their defaults filled in.
//!
//! Every test creates objects as admin in its own namespace of the shared control plane.

mod support;

use std::time::Instant;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::params::ValidationDirective;
use kube::Client;
use serde_json::{json, Value};
use support::ControlPlane;
use tailkeeper::api::{AccessGrant, AccessPolicy, TailscaleIntegration};

const API_VERSION: &str = "tailkeeper.io/v1alpha1";

#[derive(Clone, Copy, Debug)]
enum Kind {
    Integration,
    Policy,
    Grant,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Integration => "TailscaleIntegration",
            Kind::Policy => "AccessPolicy",
            Kind::Grant => "AccessGrant",
        }
    }

    fn resource(self) -> ApiResource {
        match self {
            Kind::Integration => ApiResource::erase::<TailscaleIntegration>(&()),
            Kind::Policy => ApiResource::erase::<AccessPolicy>(&()),
            Kind::Grant => ApiResource::erase::<AccessGrant>(&()),
        }
    }
}

/// A client and a fresh namespace.
struct Env {
    client: Client,
    ns: String,
}

impl Env {
    async fn new(prefix: &str) -> Env {
        let cp = ControlPlane::shared().await;
        let ns = cp.create_namespace(prefix).await;
        Env {
            client: cp.admin_client().await,
            ns,
        }
    }

    fn api(&self, kind: Kind) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.ns, &kind.resource())
    }

    /// POSTs `kind` `name` with `spec` (any JSON shape; `null` leaves `spec` out).
    async fn create(
        &self,
        kind: Kind,
        name: &str,
        spec: Value,
    ) -> Result<DynamicObject, kube::Error> {
        self.api(kind)
            .create(&PostParams::default(), &object(kind, name, spec))
            .await
    }

    /// Creates an object that must be accepted and returns the stored object as JSON.
    async fn create_ok(&self, kind: Kind, name: &str, spec: Value) -> Value {
        match self.create(kind, name, spec.clone()).await {
            Ok(obj) => serde_json::to_value(obj).expect("object serializes"),
            Err(e) => panic!(
                "{} {name} must be accepted: {}\nspec: {spec:#}",
                kind.name(),
                brief(&e)
            ),
        }
    }

    /// A JSON merge patch of `spec`.
    async fn merge_spec(
        &self,
        kind: Kind,
        name: &str,
        spec: Value,
    ) -> Result<DynamicObject, kube::Error> {
        self.api(kind)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await
    }
}

fn object(kind: Kind, name: &str, spec: Value) -> DynamicObject {
    let mut obj = json!({
        "apiVersion": API_VERSION,
        "kind": kind.name(),
        "metadata": { "name": name },
    });
    if !spec.is_null() {
        obj["spec"] = spec;
    }
    serde_json::from_value(obj).expect("a DynamicObject")
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("bad YAML in the test: {e}\n{text}"))
}

fn brief(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => other.to_string(),
    }
}

/// Checks that `result` is a `422 Invalid` naming `field` (in the message and as a cause) and
/// containing every `expect`; returns the message, or what is wrong.
fn check_invalid(
    result: Result<DynamicObject, kube::Error>,
    field: &str,
    expect: &[&str],
) -> Result<String, String> {
    let status = match result {
        Ok(obj) => {
            let stored = serde_json::to_string(&obj.data).unwrap_or_default();
            return Err(format!("was ACCEPTED; stored {stored}"));
        }
        Err(kube::Error::Api(status)) => status,
        Err(other) => return Err(format!("failed without an API status: {other}")),
    };
    let message = status.message.clone();
    let mut problems = Vec::new();
    if (status.code, status.reason.as_str()) != (422, "Invalid") {
        problems.push(format!(
            "expected 422 Invalid, got {} {}",
            status.code, status.reason
        ));
    }
    for needle in std::iter::once(&field).chain(expect) {
        if !message.contains(needle) {
            problems.push(format!("message lacks {needle:?}"));
        }
    }
    let causes: Vec<&str> = status
        .details
        .as_ref()
        .map(|d| d.causes.iter().map(|c| c.field.as_str()).collect())
        .unwrap_or_default();
    if !causes.contains(&field) {
        problems.push(format!(
            "no cause names field {field:?} (causes: {causes:?})"
        ));
    }
    if problems.is_empty() {
        Ok(message)
    } else {
        Err(format!("{}\n      message: {message}", problems.join("; ")))
    }
}

/// One malformed object: its kind, its whole `spec` as YAML (`~` for none), the field the error
/// must name and further substrings the API server's message must contain.
struct Bad {
    name: &'static str,
    kind: Kind,
    spec: &'static str,
    field: &'static str,
    expect: &'static [&'static str],
}

const DURATION_PATTERN_ERROR: &str = r"should match '^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$'";

fn bad_specs() -> Vec<Bad> {
    use Kind::*;
    vec![
        // ------------------------------------------------------------ TailscaleIntegration
        Bad {
            name: "syncInterval-unparsable",
            kind: Integration,
            spec: "{credentials: {secretName: ts, type: OAuthClient}, syncInterval: 5 minutes}",
            field: "spec.syncInterval",
            expect: &[DURATION_PATTERN_ERROR],
        },
        Bad {
            name: "syncInterval-too-short",
            kind: Integration,
            spec: "{credentials: {secretName: ts, type: OAuthClient}, syncInterval: 5s}",
            field: "spec.syncInterval",
            expect: &["syncInterval must be between 10s and 24h"],
        },
        Bad {
            name: "syncInterval-too-long",
            kind: Integration,
            spec: "{credentials: {secretName: ts, type: OAuthClient}, syncInterval: 24h1s}",
            field: "spec.syncInterval",
            expect: &["syncInterval must be between 10s and 24h"],
        },
        Bad {
            name: "credentialExpiryWarning-too-short",
            kind: Integration,
            spec: "{credentials: {secretName: ts, type: APIToken}, credentialExpiryWarning: 30m}",
            field: "spec.credentialExpiryWarning",
            expect: &["credentialExpiryWarning must be between 1h and 2160h (90 days)"],
        },
        Bad {
            name: "apiUrl-plain-http-remote",
            kind: Integration,
            spec: "{credentials: {secretName: ts, type: OAuthClient}, apiUrl: 'http://api.tailscale.com'}",
            field: "spec.apiUrl",
            expect: &["apiUrl must be an https URL with a host and no credentials (plain http only for 127.0.0.1, localhost or ::1)"],
        },
        Bad {
            name: "apiUrl-plain-http-lookalike",
            kind: Integration,
            spec: "{credentials: {secretName: ts, type: OAuthClient}, apiUrl: 'http://localhost.example.com'}",
            field: "spec.apiUrl",
            expect: &["apiUrl must be an https URL"],
        },
        Bad {
            name: "apiUrl-plain-http-userinfo-trick",
            kind: Integration,
            spec: "{credentials: {secretName: ts, type: OAuthClient}, apiUrl: 'http://localhost@tailscale.example'}",
            field: "spec.apiUrl",
            expect: &["apiUrl must be an https URL"],
        },
        Bad {
            name: "apiUrl-other-scheme",
            kind: Integration,
            spec: "{credentials: {secretName: ts, type: OAuthClient}, apiUrl: 'ftp://api.tailscale.com'}",
            field: "spec.apiUrl",
            expect: &["apiUrl must be an https URL"],
        },
        Bad {
            name: "apiUrl-not-a-url",
            kind: Integration,
            spec: "{credentials: {secretName: ts, type: OAuthClient}, apiUrl: 'api.tailscale.com'}",
            field: "spec.apiUrl",
            expect: &["apiUrl must be an https URL"],
        },
        Bad {
            name: "credentials-type-unknown",
            kind: Integration,
            spec: "{credentials: {secretName: ts, type: Password}}",
            field: "spec.credentials.type",
            expect: &[
                r#"Unsupported value: "Password""#,
                r#"supported values: "APIToken", "OAuthClient""#,
            ],
        },
        Bad {
            name: "oauthScopes-with-APIToken",
            kind: Integration,
            spec: "{credentials: {secretName: ts, type: APIToken, oauthScopes: ['users:read']}}",
            field: "spec.credentials",
            expect: &["oauthScopes apply only to credentials of type OAuthClient"],
        },
        Bad {
            name: "oauthScopes-empty-with-APIToken",
            kind: Integration,
            spec: "{credentials: {secretName: ts, type: APIToken, oauthScopes: []}}",
            field: "spec.credentials",
            expect: &["oauthScopes apply only to credentials of type OAuthClient"],
        },
        Bad {
            name: "credentials-secretName-missing",
            kind: Integration,
            spec: "{credentials: {type: OAuthClient}}",
            field: "spec.credentials.secretName",
            expect: &["Required value"],
        },
        Bad {
            name: "syncInterval-not-a-string",
            kind: Integration,
            spec: "{credentials: {secretName: ts, type: OAuthClient}, syncInterval: 300}",
            field: "spec.syncInterval",
            expect: &[r#"must be of type string: "integer""#],
        },
        Bad {
            name: "credentials-missing",
            kind: Integration,
            spec: "{tailnet: example.com}",
            field: "spec.credentials",
            expect: &["Required value"],
        },
        Bad {
            name: "spec-missing",
            kind: Integration,
            spec: "~",
            field: "spec",
            expect: &["Required value"],
        },
        // ------------------------------------------------------------------- AccessPolicy
        Bad {
            name: "evaluationInterval-too-short",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, evaluationInterval: 10s}",
            field: "spec.evaluationInterval",
            expect: &["evaluationInterval must be between 30s and 24h"],
        },
        Bad {
            name: "maxAffectedPercent-101",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, enforcement: {mode: Enforce, maxAffectedPercent: 101}}",
            field: "spec.enforcement.maxAffectedPercent",
            expect: &["should be less than or equal to 100"],
        },
        Bad {
            name: "maxAffectedPercent-negative",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, enforcement: {maxAffectedPercent: -1}}",
            field: "spec.enforcement.maxAffectedPercent",
            expect: &["should be greater than or equal to 0"],
        },
        Bad {
            name: "maxPrivilegedPerEvaluation-negative",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, enforcement: {maxPrivilegedPerEvaluation: -1}}",
            field: "spec.enforcement.maxPrivilegedPerEvaluation",
            expect: &["should be greater than or equal to 0"],
        },
        Bad {
            name: "maxChangesPer24Hours-over-what-status-keeps",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, enforcement: {maxChangesPer24Hours: 101}}",
            field: "spec.enforcement.maxChangesPer24Hours",
            expect: &["should be less than or equal to 100"],
        },
        Bad {
            name: "serviceAccountRequesters-not-a-serviceaccount",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, grantable: {serviceAccountRequesters: [alice]}}",
            field: "spec.grantable.serviceAccountRequesters",
            expect: &["serviceAccountRequesters must be ServiceAccount user names such as system:serviceaccount:ci:deployer"],
        },
        Bad {
            name: "gitOpsRequesters-not-a-serviceaccount",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, grantable: {gitOpsRequesters: [argocd]}}",
            field: "spec.grantable.gitOpsRequesters",
            expect: &["gitOpsRequesters must be ServiceAccount user names such as system:serviceaccount:argocd:argocd-application-controller"],
        },
        Bad {
            name: "directory-person-without-login",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, directory: {people: [{displayName: Alice, loginNames: []}]}}",
            field: "spec.directory.people[0].loginNames",
            expect: &["should have at least 1 items"],
        },
        Bad {
            name: "enforcement-mode-unknown",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, enforcement: {mode: Delete}}",
            field: "spec.enforcement.mode",
            expect: &[r#"Unsupported value: "Delete""#, r#""Audit", "Enforce""#],
        },
        Bad {
            name: "grantable-group-without-prefix",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, grantable: {groups: [{name: prod, terms: {maxDuration: 8h}}]}}",
            field: "spec.grantable.groups[0].name",
            expect: &["group must be a policy-file group such as group:prod"],
        },
        Bad {
            name: "grantable-group-scim",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, grantable: {groups: [{name: 'group:eng@example.com', terms: {maxDuration: 8h}}]}}",
            field: "spec.grantable.groups[0].name",
            expect: &["SCIM groups with @ cannot be edited"],
        },
        Bad {
            name: "ssh-rule-dst-star",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, grantable: {sshRules: [{name: ssh-prod, action: check, dst: ['tag:prod', '*'], users: [root], terms: {maxDuration: 1h}}]}}",
            field: "spec.grantable.sshRules[0].dst",
            expect: &["ssh destinations must be tags or autogroup:self, never *"],
        },
        Bad {
            name: "maxDuration-over-2160h",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, grantable: {roles: [{role: admin, terms: {maxDuration: 2161h}}]}}",
            field: "spec.grantable.roles[0].terms.maxDuration",
            expect: &["maxDuration must be positive and at most 2160h (90 days)"],
        },
        Bad {
            name: "grantable-role-owner",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, grantable: {roles: [{role: owner, terms: {maxDuration: 1h}}]}}",
            field: "spec.grantable.roles[0].role",
            expect: &[r#"Unsupported value: "owner""#],
        },
        Bad {
            name: "posture-key-without-custom",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, grantable: {postureAttributes: [{name: jit, key: 'node:os', terms: {maxDuration: 1h}}]}}",
            field: "spec.grantable.postureAttributes[0].key",
            expect: &["key must be a custom posture attribute such as custom:jit-prod"],
        },
        Bad {
            name: "notification-name-not-a-label",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, notifications: [{name: SRE_Slack, secretRef: {name: s}, format: Slack}]}",
            field: "spec.notifications[0].name",
            expect: &["name must be a lower-case DNS label such as approvers or sre-slack"],
        },
        Bad {
            name: "notification-names-repeat",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, notifications: [{name: sre, secretRef: {name: a}, format: Slack}, {name: sre, secretRef: {name: b}, format: Generic}]}",
            field: "spec.notifications",
            expect: &["notification names must be unique in the policy"],
        },
        Bad {
            name: "notification-format-unknown",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, notifications: [{name: sre, secretRef: {name: s}, format: Teams}]}",
            field: "spec.notifications[0].format",
            expect: &[r#"Unsupported value: "Teams""#, r#""Slack", "Generic""#],
        },
        Bad {
            name: "notification-event-unknown",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, notifications: [{name: sre, secretRef: {name: s}, format: Slack, events: [GrantRequested]}]}",
            field: "spec.notifications[0].events[0]",
            expect: &[r#"Unsupported value: "GrantRequested""#, r#""GrantAwaitingApproval", "GrantDecided", "GrantEnded""#],
        },
        Bad {
            name: "notification-events-repeat",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, notifications: [{name: sre, secretRef: {name: s}, format: Slack, events: [GrantEnded, GrantEnded]}]}",
            field: "spec.notifications[0].events",
            expect: &["events must not repeat an event"],
        },
        Bad {
            name: "notification-events-empty",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, notifications: [{name: sre, secretRef: {name: s}, format: Slack, events: []}]}",
            field: "spec.notifications[0].events",
            expect: &["should have at least 1 items"],
        },
        Bad {
            name: "notification-without-secret",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, notifications: [{name: sre, format: Slack}]}",
            field: "spec.notifications[0].secretRef",
            expect: &["Required value"],
        },
        Bad {
            name: "notifications-more-than-ten",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, notifications: [{name: a, secretRef: {name: s}, format: Slack}, {name: b, secretRef: {name: s}, format: Slack}, {name: c, secretRef: {name: s}, format: Slack}, {name: d, secretRef: {name: s}, format: Slack}, {name: e, secretRef: {name: s}, format: Slack}, {name: f, secretRef: {name: s}, format: Slack}, {name: g, secretRef: {name: s}, format: Slack}, {name: h, secretRef: {name: s}, format: Slack}, {name: i, secretRef: {name: s}, format: Slack}, {name: j, secretRef: {name: s}, format: Slack}, {name: k, secretRef: {name: s}, format: Slack}]}",
            field: "spec.notifications",
            expect: &["must have at most 10 items"],
        },
        Bad {
            name: "grantRetention-too-short",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, grantRetention: 500ms}",
            field: "spec.grantRetention",
            expect: &["grantRetention must be at least 1s"],
        },
        Bad {
            name: "integrationRef-missing",
            kind: Policy,
            spec: "{evaluationInterval: 10m}",
            field: "spec.integrationRef",
            expect: &["Required value"],
        },
        // -------------------------------------------------------------------- AccessGrant
        Bad {
            name: "grant-two-kinds-of-access",
            kind: Grant,
            spec: "{policyRef: {name: corp}, user: alice@example.com, access: {group: 'group:prod', role: admin}, duration: 2h, reason: incident}",
            field: "spec.access",
            expect: &["set exactly one of access.group, access.role, access.rule, access.sshRule or access.postureAttribute"],
        },
        Bad {
            name: "grant-no-access",
            kind: Grant,
            spec: "{policyRef: {name: corp}, user: alice@example.com, access: {}, duration: 2h, reason: incident}",
            field: "spec.access",
            expect: &["set exactly one of access.group"],
        },
        Bad {
            name: "grant-access-group-without-prefix",
            kind: Grant,
            spec: "{policyRef: {name: corp}, user: alice@example.com, access: {group: prod}, duration: 2h, reason: incident}",
            field: "spec.access.group",
            expect: &["access.group must be a policy-file group such as group:prod"],
        },
        Bad {
            name: "grant-access-group-scim",
            kind: Grant,
            spec: "{policyRef: {name: corp}, user: alice@example.com, access: {group: 'group:eng@example.com'}, duration: 2h, reason: incident}",
            field: "spec.access.group",
            expect: &["SCIM groups with @ cannot be edited"],
        },
        Bad {
            name: "grant-reason-blank",
            kind: Grant,
            spec: "{policyRef: {name: corp}, user: alice@example.com, access: {group: 'group:prod'}, duration: 2h, reason: '   '}",
            field: "spec.reason",
            expect: &["should match"],
        },
        Bad {
            name: "grant-requested-by-empty",
            kind: Grant,
            spec: "{policyRef: {name: corp}, user: alice@example.com, access: {group: 'group:prod'}, duration: 2h, reason: incident, requestedBy: ''}",
            field: "spec.requestedBy",
            expect: &["should be at least 1 chars long"],
        },
        Bad {
            name: "apiUrl-with-credentials",
            kind: Integration,
            spec: "{credentials: {secretName: ts, type: OAuthClient}, apiUrl: 'https://user:pw@api.tailscale.com'}",
            field: "spec.apiUrl",
            expect: &["apiUrl must be an https URL with a host and no credentials"],
        },
        Bad {
            name: "policy-unknown-tailscale-role",
            kind: Policy,
            spec: "{integrationRef: {name: corp}, roles: [{orgRole: engineer, tailscaleRoles: [superuser]}]}",
            field: "spec.roles[0].tailscaleRoles[0]",
            expect: &["should match"],
        },
        Bad {
            name: "grant-role-owner",
            kind: Grant,
            spec: "{policyRef: {name: corp}, user: alice@example.com, access: {role: owner}, duration: 2h, reason: incident}",
            field: "spec.access.role",
            expect: &[
                r#"Unsupported value: "owner""#,
                r#"supported values: "admin", "it-admin", "network-admin", "billing-admin", "auditor", "member""#,
            ],
        },
        Bad {
            name: "grant-user-not-a-login",
            kind: Grant,
            spec: "{policyRef: {name: corp}, user: alice, access: {role: admin}, duration: 2h, reason: incident}",
            field: "spec.user",
            expect: &["user must be a Tailscale login name such as alice@example.com or alice@github"],
        },
        Bad {
            name: "grant-user-with-space",
            kind: Grant,
            spec: "{policyRef: {name: corp}, user: 'alice smith@example.com', access: {role: admin}, duration: 2h, reason: incident}",
            field: "spec.user",
            expect: &["user must be a Tailscale login name"],
        },
        Bad {
            name: "grant-duration-zero",
            kind: Grant,
            spec: "{policyRef: {name: corp}, user: alice@example.com, access: {role: admin}, duration: 0s, reason: incident}",
            field: "spec.duration",
            expect: &["duration must be positive and at most 2160h (90 days)"],
        },
        Bad {
            name: "grant-duration-over-90-days",
            kind: Grant,
            spec: "{policyRef: {name: corp}, user: alice@example.com, access: {role: admin}, duration: 2161h, reason: incident}",
            field: "spec.duration",
            expect: &["duration must be positive and at most 2160h (90 days)"],
        },
        Bad {
            name: "grant-duration-unparsable",
            kind: Grant,
            spec: "{policyRef: {name: corp}, user: alice@example.com, access: {role: admin}, duration: 2 days, reason: incident}",
            field: "spec.duration",
            expect: &[DURATION_PATTERN_ERROR],
        },
        Bad {
            name: "grant-reason-empty",
            kind: Grant,
            spec: "{policyRef: {name: corp}, user: alice@example.com, access: {role: admin}, duration: 2h, reason: ''}",
            field: "spec.reason",
            expect: &["should be at least 1 chars long"],
        },
        Bad {
            name: "grant-approvedBy-empty",
            kind: Grant,
            spec: "{policyRef: {name: corp}, user: alice@example.com, access: {role: admin}, duration: 2h, reason: incident, approval: {approvedBy: ''}}",
            field: "spec.approval.approvedBy",
            expect: &["should be at least 1 chars long"],
        },
        Bad {
            name: "grant-decision-unknown",
            kind: Grant,
            spec: "{policyRef: {name: corp}, user: alice@example.com, access: {role: admin}, duration: 2h, reason: incident, approval: {approvedBy: bob, decision: Maybe}}",
            field: "spec.approval.decision",
            expect: &["Unsupported value", "\"Approved\"", "\"Denied\""],
        },
        Bad {
            name: "grant-policyRef-name-empty",
            kind: Grant,
            spec: "{policyRef: {name: ''}, user: alice@example.com, access: {role: admin}, duration: 2h, reason: incident}",
            field: "spec.policyRef.name",
            expect: &["should be at least 1 chars long"],
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_resources_are_rejected_naming_the_field_and_the_fix() {
    let env = Env::new("validation-bad").await;
    let started = Instant::now();
    let rows = bad_specs();
    assert!(rows.len() >= 20, "the table must keep at least 20 rows");
    let mut failures = Vec::new();
    for row in &rows {
        let object_name = row.name.to_ascii_lowercase();
        let result = env.create(row.kind, &object_name, yaml(row.spec)).await;
        match check_invalid(result, row.field, row.expect) {
            Ok(message) => eprintln!("{:<36} {}: {message}", row.name, row.kind.name()),
            Err(problem) => {
                failures.push(format!("  {} ({}): {problem}", row.name, row.kind.name()))
            }
        }
    }
    eprintln!(
        "{} malformed objects checked in {:.2}s",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {} rows did not behave as expected:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

const MINIMAL_INTEGRATION: &str = "{credentials: {secretName: ts, type: OAuthClient}}";
const MINIMAL_POLICY: &str = "{integrationRef: {name: corp}}";
const MINIMAL_GRANT: &str =
    "{policyRef: {name: corp}, user: alice@example.com, access: {group: 'group:prod'}, duration: 2h, reason: incident 42}";

/// One update that must be refused: a merge patch of `spec` and the message it must produce.
async fn assert_update_refused(
    env: &Env,
    kind: Kind,
    name: &str,
    patch: Value,
    field: &str,
    message: &str,
) {
    let result = env.merge_spec(kind, name, patch.clone()).await;
    match check_invalid(result, field, &[message]) {
        Ok(msg) => eprintln!("update {} {name} {patch}: {msg}", kind.name()),
        Err(problem) => panic!("update of {} {name} with {patch}: {problem}", kind.name()),
    }
}

async fn assert_update_accepted(env: &Env, kind: Kind, name: &str, patch: Value) -> Value {
    match env.merge_spec(kind, name, patch.clone()).await {
        Ok(obj) => serde_json::to_value(obj).expect("object serializes"),
        Err(e) => panic!(
            "update of {} {name} with {patch} must be accepted: {}",
            kind.name(),
            brief(&e)
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_fields_cannot_be_changed() {
    let env = Env::new("validation-immutable").await;
    let started = Instant::now();

    // TailscaleIntegration.spec.tailnet, also from its default.
    env.create_ok(Kind::Integration, "corp", yaml(MINIMAL_INTEGRATION))
        .await;
    assert_update_refused(
        &env,
        Kind::Integration,
        "corp",
        json!({ "tailnet": "example.com" }),
        "spec.tailnet",
        "tailnet is immutable: create a new TailscaleIntegration for another tailnet",
    )
    .await;
    // The API host: credentials must never be redirected by an edit.
    assert_update_refused(
        &env,
        Kind::Integration,
        "corp",
        json!({ "apiUrl": "https://collector.example.net" }),
        "spec.apiUrl",
        "apiUrl is immutable: create another TailscaleIntegration",
    )
    .await;
    // Other fields stay editable.
    let updated = assert_update_accepted(
        &env,
        Kind::Integration,
        "corp",
        json!({ "syncInterval": "1m" }),
    )
    .await;
    assert_eq!(updated["spec"]["syncInterval"], "1m");
    assert_eq!(updated["spec"]["tailnet"], "-");

    // AccessPolicy.spec.integrationRef.
    env.create_ok(Kind::Policy, "corp", yaml(MINIMAL_POLICY))
        .await;
    assert_update_refused(
        &env,
        Kind::Policy,
        "corp",
        json!({ "integrationRef": { "name": "other" } }),
        "spec.integrationRef",
        "integrationRef is immutable: create a new AccessPolicy for another integration",
    )
    .await;
    assert_update_accepted(
        &env,
        Kind::Policy,
        "corp",
        json!({ "enforcement": { "mode": "Enforce" } }),
    )
    .await;

    // AccessGrant: user, access, duration, policyRef.
    env.create_ok(Kind::Grant, "g", yaml(MINIMAL_GRANT)).await;
    for (patch, field, message) in [
        (
            json!({ "user": "bob@example.com" }),
            "spec.user",
            "user is immutable: create a new AccessGrant",
        ),
        (
            json!({ "access": { "group": null, "role": "admin" } }),
            "spec.access",
            "access is immutable: create a new AccessGrant",
        ),
        (
            json!({ "access": { "group": "group:other" } }),
            "spec.access",
            "access is immutable: create a new AccessGrant",
        ),
        (
            json!({ "duration": "3h" }),
            "spec.duration",
            "duration is immutable: create a new AccessGrant",
        ),
        (
            json!({ "duration": "120m" }),
            "spec.duration",
            "duration is immutable: create a new AccessGrant",
        ),
        (
            json!({ "policyRef": { "name": "other" } }),
            "spec.policyRef",
            "policyRef is immutable",
        ),
    ] {
        assert_update_refused(&env, Kind::Grant, "g", patch, field, message).await;
    }

    // A duration cannot be added or removed: a timed grant never turns standing, or back.
    let lose_or_gain =
        "a grant cannot gain or lose its duration (a grant without one is standing): create a new AccessGrant";
    assert_update_refused(
        &env,
        Kind::Grant,
        "g",
        json!({ "duration": null }),
        "spec",
        lose_or_gain,
    )
    .await;
    let mut standing = yaml(MINIMAL_GRANT);
    standing.as_object_mut().expect("spec").remove("duration");
    let created = env.create_ok(Kind::Grant, "standing", standing).await;
    assert!(
        created["spec"].get("duration").is_none(),
        "a standing grant is stored without a duration"
    );
    assert_update_refused(
        &env,
        Kind::Grant,
        "standing",
        json!({ "duration": "1h" }),
        "spec",
        lose_or_gain,
    )
    .await;

    // requestedBy is set when the grant is created, never afterwards: that is when admission
    // proves it (and a GitOps approval rests on it).
    assert_update_refused(
        &env,
        Kind::Grant,
        "g",
        json!({ "requestedBy": "system:serviceaccount:argocd:argocd-application-controller" }),
        "spec",
        "requestedBy can only be set when the grant is created (that is when the API server proves it): create a new AccessGrant",
    )
    .await;
    // requestedBy and approval: set once, then fixed.
    let mut requested = yaml(MINIMAL_GRANT);
    requested["requestedBy"] = json!("alice");
    env.create_ok(Kind::Grant, "requested", requested).await;
    let set = assert_update_accepted(
        &env,
        Kind::Grant,
        "requested",
        json!({ "approval": { "approvedBy": "bob", "comment": "ok" } }),
    )
    .await;
    assert_eq!(set["spec"]["approval"]["approvedBy"], "bob");
    assert_eq!(set["spec"]["requestedBy"], "alice");
    for (patch, message) in [
        (
            json!({ "approval": { "approvedBy": "carol" } }),
            "approval is immutable once set",
        ),
        (
            json!({ "approval": { "comment": "changed" } }),
            "approval is immutable once set",
        ),
        (
            json!({ "approval": { "decision": "Denied" } }),
            "approval is immutable once set",
        ),
        (
            json!({ "approval": null }),
            "approval is immutable once set",
        ),
        (
            json!({ "requestedBy": "mallory" }),
            "requestedBy is immutable once set",
        ),
        (
            json!({ "requestedBy": null }),
            "requestedBy is immutable once set",
        ),
    ] {
        assert_update_refused(&env, Kind::Grant, "requested", patch, "spec", message).await;
    }
    // The reason is what an approver judged: it cannot be rewritten afterwards.
    assert_update_refused(
        &env,
        Kind::Grant,
        "g",
        json!({ "reason": "incident 43" }),
        "spec.reason",
        "reason is immutable: an approver judged it; create a new AccessGrant",
    )
    .await;

    eprintln!(
        "transition rules checked in {:.2}s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_refused_under_strict_validation_and_pruned_otherwise() {
    let env = Env::new("validation-unknown").await;
    let spec = json!({
        "policyRef": { "name": "corp" },
        "user": "alice@example.com",
        "access": { "group": "group:prod" },
        "duration": "2h",
        "reason": "incident",
        "durations": "8h",
    });

    // Server-side apply refuses the misspelt field whatever the directive: without one (as the
    // harness's `apply_yaml` sends it) and with fieldValidation=Strict (kube 5's PatchParams
    // carries the directive; its PostParams does not). The real API server answers 500 with no
    // reason ("failed to create typed patch object"), not 422, so only the message is asserted.
    let api = env.api(Kind::Grant);
    for (name, params) in [
        (
            "apply-default",
            PatchParams::apply("tailkeeper-validation-test"),
        ),
        (
            "apply-strict",
            PatchParams::apply("tailkeeper-validation-test").validation_strict(),
        ),
    ] {
        let obj = object(Kind::Grant, name, spec.clone());
        let err = api
            .patch(name, &params, &Patch::Apply(&obj))
            .await
            .expect_err("server-side apply must refuse an unknown field");
        eprintln!("{name}: {}", brief(&err));
        let kube::Error::Api(status) = &err else {
            panic!("expected an API error, got {err}");
        };
        assert!(
            status
                .message
                .contains(".spec.durations: field not declared in schema"),
            "{}",
            brief(&err)
        );
        assert!(
            api.get_opt(name).await.expect("get").is_none(),
            "nothing is stored"
        );
    }

    // A plain POST with ?fieldValidation=Strict (what `kubectl create` sends) refuses it too.
    let url = format!(
        "/apis/{API_VERSION}/namespaces/{}/accessgrants?fieldValidation=Strict",
        env.ns
    );
    let body =
        serde_json::to_vec(&object(Kind::Grant, "strict-create", spec.clone())).expect("json");
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .body(body)
        .expect("request");
    let err = env
        .client
        .request::<DynamicObject>(req)
        .await
        .expect_err("strict create must refuse an unknown field");
    eprintln!("strict create: {}", brief(&err));
    let kube::Error::Api(status) = &err else {
        panic!("expected an API error, got {err}");
    };
    assert_eq!(
        (status.code, status.reason.as_str()),
        (400, "BadRequest"),
        "{}",
        brief(&err)
    );
    assert!(
        status.message.contains(r#"unknown field "spec.durations""#),
        "{}",
        brief(&err)
    );

    // Without a directive (kube's Api::create sends none; the server defaults to Warn) the
    // object is stored and the unknown field silently pruned: the structural schema keeps only
    // declared fields.
    let stored = env.create_ok(Kind::Grant, "lenient", spec).await;
    assert!(
        stored["spec"].get("durations").is_none(),
        "pruned: {stored:#}"
    );
    assert_eq!(stored["spec"]["duration"], "2h");

    // A strict merge patch refuses it too (the message quotes the whole patched object).
    let strict = PatchParams {
        field_validation: Some(ValidationDirective::Strict),
        ..PatchParams::default()
    };
    let err = api
        .patch(
            "lenient",
            &strict,
            &Patch::Merge(json!({ "spec": { "durations": "8h" } })),
        )
        .await
        .expect_err("a strict merge patch must refuse an unknown field");
    let kube::Error::Api(status) = &err else {
        panic!("expected an API error, got {err}");
    };
    assert_eq!(
        (status.code, status.reason.as_str()),
        (422, "Invalid"),
        "{}",
        brief(&err)
    );
    assert!(
        status
            .message
            .contains(r#"strict decoding error: unknown field "spec.durations""#),
        "{}",
        brief(&err)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_resources_are_stored_with_defaults() {
    let env = Env::new("validation-ok").await;
    let started = Instant::now();

    // ------------------------------------------------------------ TailscaleIntegration
    let minimal = env
        .create_ok(Kind::Integration, "minimal", yaml(MINIMAL_INTEGRATION))
        .await;
    assert_eq!(
        minimal["spec"],
        json!({
            "tailnet": "-",
            "apiUrl": "https://api.tailscale.com",
            "credentials": { "secretName": "ts", "type": "OAuthClient" },
            "syncInterval": "5m",
            "credentialExpiryWarning": "336h",
        })
    );
    let full_spec = yaml(
        "{tailnet: example.com, apiUrl: 'https://api.example.com/tailscale', \
         credentials: {secretName: ts-oauth, type: OAuthClient, oauthScopes: ['users:read', policy_file]}, \
         syncInterval: 1h30m, credentialExpiryWarning: 2160h}",
    );
    let full = env
        .create_ok(Kind::Integration, "full", full_spec.clone())
        .await;
    assert_eq!(full["spec"], full_spec, "nothing added or dropped");
    let typed: TailscaleIntegration =
        serde_json::from_value(full).expect("the Rust type reads it back");
    assert_eq!(typed.spec.sync_interval, "1h30m");

    // Boundaries and the loopback exception for plain http (a local simulator).
    for (i, extra) in [
        json!({ "syncInterval": "10s" }),
        json!({ "syncInterval": "24h" }),
        json!({ "credentialExpiryWarning": "1h" }),
        json!({ "apiUrl": "http://127.0.0.1:8088" }),
        json!({ "apiUrl": "http://localhost:8088/" }),
        json!({ "apiUrl": "http://[::1]:8088" }),
        json!({ "apiUrl": "HTTPS://API.TAILSCALE.COM" }),
        json!({ "credentials": { "secretName": "ts", "type": "APIToken" } }),
    ]
    .into_iter()
    .enumerate()
    {
        let mut spec = yaml(MINIMAL_INTEGRATION);
        for (k, v) in extra.as_object().expect("object") {
            spec[k] = v.clone();
        }
        env.create_ok(Kind::Integration, &format!("edge-{i}"), spec)
            .await;
    }

    // -------------------------------------------------------------------- AccessPolicy
    let minimal = env
        .create_ok(Kind::Policy, "minimal", yaml(MINIMAL_POLICY))
        .await;
    assert_eq!(
        minimal["spec"],
        json!({
            "integrationRef": { "name": "corp" },
            "directory": {},
            "grantable": {},
            "enforcement": {
                "mode": "Audit", "maxAffectedPercent": 10,
                "maxPrivilegedPerEvaluation": 2, "maxChangesPer24Hours": 20
            },
            "evaluationInterval": "10m",
        })
    );
    let partial = env
        .create_ok(
            Kind::Policy,
            "enforce",
            yaml("{integrationRef: {name: corp}, enforcement: {mode: Enforce}}"),
        )
        .await;
    assert_eq!(
        partial["spec"]["enforcement"],
        json!({
            "mode": "Enforce", "maxAffectedPercent": 10,
            "maxPrivilegedPerEvaluation": 2, "maxChangesPer24Hours": 20
        }),
        "a partial enforcement block is completed"
    );
    let full = env
        .create_ok(
            Kind::Policy,
            "full",
            yaml(
                r#"
integrationRef: {name: corp}
directory:
  people:
    - {loginNames: [alice@example.com, alice@github], displayName: Alice, orgRole: engineer}
    - {loginNames: [dave@example.com], status: Offboarded}
  configMaps: [{name: hr, key: people.csv, format: CSV}]
roles: [{orgRole: engineer, tailscaleRoles: [member, admin]}]
exemptions: [{loginName: breakglass@example.com, reason: emergency access}]
grantable:
  gitOpsRequesters: ['system:serviceaccount:argocd:argocd-application-controller']
  groups: [{name: 'group:prod-db', terms: {maxDuration: 8h, standing: true, approvers: {groups: [approvers]}}}]
  roles: [{role: admin, terms: {maxDuration: 2160h, approvalRequired: false}}]
  rules: [{name: db, dst: ['tag:db'], ip: ['tcp:5432'], terms: {maxDuration: 4h}}]
  sshRules: [{name: ssh-prod, action: check, dst: ['tag:prod', 'autogroup:self'], users: [root], terms: {maxDuration: 1h}}]
  postureAttributes: [{name: jit-prod, key: 'custom:jit-prod', terms: {maxDuration: 30m, approvers: {users: [bob]}}}]
enforcement: {mode: Enforce, maxAffectedPercent: 0}
evaluationInterval: 30s
grantRetention: 720h
notifications:
  - {name: approvers, secretRef: {name: sre-slack}, format: Slack, events: [GrantAwaitingApproval]}
  - {name: audit, secretRef: {name: audit-hook}, format: Generic}
"#,
            ),
        )
        .await;
    let spec = &full["spec"];
    assert_eq!(
        spec["notifications"][1]["events"],
        json!([
            "GrantAwaitingApproval",
            "GrantDecided",
            "GrantEnded",
            "ReviewOpened",
            "ReviewReminder",
            "ReviewOverdue"
        ]),
        "a receiver hears of every event by default"
    );
    assert_eq!(
        spec["notifications"][0]["events"],
        json!(["GrantAwaitingApproval"])
    );
    assert_eq!(spec["directory"]["people"][1]["status"], "Offboarded");
    assert_eq!(
        spec["directory"]["people"][0]["status"], "Active",
        "status defaults to Active"
    );
    let groups = &spec["grantable"]["groups"][0]["terms"];
    assert_eq!(
        groups["approvalRequired"], true,
        "approvalRequired defaults to true"
    );
    assert_eq!(groups["approvers"], json!({ "groups": ["approvers"] }));
    let roles = &spec["grantable"]["roles"][0]["terms"];
    assert_eq!(roles["approvalRequired"], false);
    assert_eq!(roles["approvers"], json!({}), "approvers defaults to {{}}");
    let posture = &spec["grantable"]["postureAttributes"][0];
    assert_eq!(
        posture["value"], "true",
        "a posture attribute's value defaults to \"true\""
    );
    assert_eq!(spec["enforcement"]["maxAffectedPercent"], 0);
    assert_eq!(spec["grantRetention"], "720h");
    let typed: AccessPolicy = serde_json::from_value(full).expect("the Rust type reads it back");
    assert_eq!(typed.spec.grantable.ssh_rules.len(), 1);
    assert!(typed.spec.grantable.groups[0].terms.standing);
    assert!(
        !typed.spec.grantable.rules[0].terms.standing,
        "standing access is off unless an item says so"
    );
    assert_eq!(typed.spec.grantable.git_ops_requesters.len(), 1);

    // --------------------------------------------------------------------- AccessGrant
    let minimal = env
        .create_ok(Kind::Grant, "minimal", yaml(MINIMAL_GRANT))
        .await;
    assert_eq!(
        minimal["spec"],
        yaml(MINIMAL_GRANT),
        "a grant has no defaults"
    );
    for (i, access) in [
        json!({ "role": "it-admin" }),
        json!({ "rule": "db" }),
        json!({ "sshRule": "ssh-prod" }),
        json!({ "postureAttribute": "jit-prod" }),
    ]
    .into_iter()
    .enumerate()
    {
        let mut spec = yaml(MINIMAL_GRANT);
        spec["access"] = access;
        spec["duration"] = json!(["1ns", "2160h", "1.5h", "1h30m"][i]);
        spec["user"] = json!(
            [
                "alice@github",
                "a@b",
                "bob@example.com",
                "carol@example.com"
            ][i]
        );
        env.create_ok(Kind::Grant, &format!("access-{i}"), spec)
            .await;
    }
    let full_spec = yaml(
        "{policyRef: {name: corp}, user: alice@example.com, access: {role: admin}, duration: 8h, \
         reason: 'INC-42: restore the database', requestedBy: alice, \
         approval: {approvedBy: bob, comment: approved in the incident channel}}",
    );
    let full = env.create_ok(Kind::Grant, "full", full_spec.clone()).await;
    // A decision that does not say otherwise is an approval.
    let mut stored = full_spec.clone();
    stored["approval"]["decision"] = json!("Approved");
    assert_eq!(full["spec"], stored);
    let typed: AccessGrant = serde_json::from_value(full).expect("the Rust type reads it back");
    assert_eq!(typed.spec.approval.expect("approval").approved_by, "bob");

    eprintln!(
        "valid objects checked in {:.2}s",
        started.elapsed().as_secs_f64()
    );
}

/// Whether the CRD the API server serves for `kind` declares `spec.<field>`.
async fn served_spec_declares(client: &Client, kind: Kind, field: &str) -> bool {
    let resource = kind.resource();
    let crd = Api::<CustomResourceDefinition>::all(client.clone())
        .get(&format!("{}.{}", resource.plural, resource.group))
        .await
        .expect("the CRD is installed");
    crd.spec.versions.iter().any(|v| {
        v.schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .and_then(|s| s.properties.as_ref())
            .and_then(|p| p.get("spec"))
            .and_then(|spec| spec.properties.as_ref())
            .is_some_and(|p| p.contains_key(field))
    })
}

/// `AccessPolicy.spec.grantRetention`: refused under 1s, kept as given, never defaulted. A CRD
/// that predates the field would make the API server prune it silently (it once did), so the
/// served schema is checked first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_retention_is_validated() {
    let env = Env::new("validation-retention").await;
    assert!(
        served_spec_declares(&env.client, Kind::Policy, "grantRetention").await,
        "the served AccessPolicy CRD does not declare spec.grantRetention, so the API server \
         prunes it silently; regenerate crds/ (`cargo run -- crds > crds/tailkeeper.io.yaml`)"
    );
    for (name, retention) in [("too-short", "500ms"), ("zero", "0s")] {
        let result = env
            .create(
                Kind::Policy,
                name,
                json!({ "integrationRef": { "name": "corp" }, "grantRetention": retention }),
            )
            .await;
        match check_invalid(
            result,
            "spec.grantRetention",
            &["grantRetention must be at least 1s"],
        ) {
            Ok(message) => eprintln!("grantRetention {retention}: {message}"),
            Err(problem) => panic!("grantRetention {retention}: {problem}"),
        }
    }
    let result = env
        .create(
            Kind::Policy,
            "unparsable",
            json!({ "integrationRef": { "name": "corp" }, "grantRetention": "30 days" }),
        )
        .await;
    if let Err(problem) = check_invalid(result, "spec.grantRetention", &[DURATION_PATTERN_ERROR]) {
        panic!("grantRetention 30 days: {problem}");
    }
    for (name, retention) in [("one-minute", json!("1m")), ("month", json!("720h"))] {
        let stored = env
            .create_ok(
                Kind::Policy,
                name,
                json!({ "integrationRef": { "name": "corp" }, "grantRetention": retention }),
            )
            .await;
        assert_eq!(stored["spec"]["grantRetention"], retention);
    }
    // Unset keeps ended grants until deleted: no default is filled in. An explicit null is
    // stored as null (the field is `nullable`) and the CEL rule is not run on it.
    let unset = env
        .create_ok(
            Kind::Policy,
            "unset",
            json!({ "integrationRef": { "name": "corp" } }),
        )
        .await;
    assert!(unset["spec"].get("grantRetention").is_none(), "{unset:#}");
    let null = env
        .create_ok(
            Kind::Policy,
            "null",
            json!({ "integrationRef": { "name": "corp" }, "grantRetention": null }),
        )
        .await;
    assert!(null["spec"]["grantRetention"].is_null(), "{null:#}");
    let typed: AccessPolicy = serde_json::from_value(null).expect("the Rust type reads null");
    assert_eq!(typed.spec.grant_retention, None);
}
