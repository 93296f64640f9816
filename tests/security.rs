//! Attacks on authority, against the real API server with the operator under the chart's RBAC:
//! each test plays someone trying to gain or redirect access and shows it fails.

mod support;

use std::time::Duration;

use support::operator::{bound_to, Env};
use tailscale_sim::{SimConfig, SimUser, Simulator};

/// Whoever may create a TailscaleIntegration points `apiUrl` at a host of their own and names
/// an existing Secret: the operator must not send the credentials there (nor read them), and
/// says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_go_only_to_api_hosts_the_operator_trusts() {
    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    sim.add_user(SimUser::member("alice@example.com", "member", "active"));
    let env = Env::new("apihost", sim).await;
    let oauth = env.sim.create_oauth_client(&["users:read"]);
    // The simulator again, under a name the operator was not started to trust (it trusts
    // 127.0.0.1 only): a stand-in for a collector of the attacker's.
    let elsewhere = env.sim.url().replace("127.0.0.1", "localhost");
    env.apply(&format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: tailscale-oauth}}
stringData: {{clientId: {}, clientSecret: {}}}
---
apiVersion: tailkeeper.io/v1alpha1
kind: TailscaleIntegration
metadata: {{name: elsewhere}}
spec:
  apiUrl: {elsewhere}
  credentials: {{type: OAuthClient, secretName: tailscale-oauth}}
"#,
        oauth.id, oauth.secret
    ))
    .await;
    let (reason, message) = env
        .integration_condition("elsewhere", "Stalled", "True")
        .await;
    assert_eq!(reason, "APIHostNotAllowed", "{message}");
    assert!(
        message.contains("--allow-api-host localhost") && message.contains("127.0.0.1"),
        "{message}"
    );
    assert!(!message.contains(&oauth.secret), "{message}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        env.sim.call_count("oauth.token"),
        0,
        "no credential was sent to the untrusted host"
    );
    assert_eq!(env.sim.call_count("users.list"), 0);
}

/// Installed with credentialSecrets, the operator reads exactly those Secrets: an integration
/// that names any other Secret (one a creator of integrations hopes the operator will use for
/// them) gets nothing from it and is told what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_reads_only_the_credential_secrets_it_is_given() {
    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    sim.add_user(SimUser::member("alice@example.com", "member", "active"));
    let env = Env::with_chart_values("secretnames", sim, |ns| {
        vec![format!("credentialSecrets={{{ns}/tailscale-oauth}}")]
    })
    .await;
    let oauth = env.sim.create_oauth_client(&["users:read"]);
    let mut yaml = String::new();
    for (secret, integration) in [("tailscale-oauth", "listed"), ("team-secret", "unlisted")] {
        yaml.push_str(&format!(
            r#"
---
apiVersion: v1
kind: Secret
metadata: {{name: {secret}, annotations: {}}}
stringData: {{clientId: {}, clientSecret: {}}}
---
apiVersion: tailkeeper.io/v1alpha1
kind: TailscaleIntegration
metadata: {{name: {integration}}}
spec:
  apiUrl: {}
  credentials: {{type: OAuthClient, secretName: {secret}}}
"#,
            bound_to(integration, &env.sim.url()),
            oauth.id,
            oauth.secret,
            env.sim.url()
        ));
    }
    env.apply(&yaml).await;
    env.integration_condition("listed", "Ready", "True").await;
    let (reason, message) = env
        .integration_condition("unlisted", "Ready", "False")
        .await;
    assert_eq!(reason, "SecretForbidden", "{message}");
    assert!(
        message.contains(&format!(
            "add \"{}/team-secret\" to the chart's credentialSecrets value",
            env.ns
        )),
        "{message}"
    );
    assert!(!message.contains(&oauth.secret), "{message}");
}

/// Each persona the chart defines can do exactly its job and nothing more: the chart's
/// ClusterRoles bound in a namespace as its README says, asked of the API server
/// (SubjectAccessReview) for every write that matters. Holding the built-in `edit` role lets
/// someone request access but never change the rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_persona_can_do_its_job_and_nothing_more() {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    use kube::api::{Api, PostParams};

    let cp = support::control_plane::ControlPlane::shared().await;
    let ns = cp.create_namespace("personas").await;
    let roles =
        support::operator::render_chart(cp, &["--show-only", "templates/aggregated-roles.yaml"]);
    cp.apply_yaml(&roles, None)
        .await
        .expect("persona roles apply");
    let bind = |user: &str, role: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: {user}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\nsubjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]\n"
        )
    };
    let bindings = [
        bind("eddie", "edit"),
        bind("aaron", "tailkeeper-approver"),
        bind("paula", "tailkeeper-policy-admin"),
        bind("dora", "tailkeeper-directory-admin"),
        bind("pete", "tailkeeper-platform-admin"),
    ]
    .join("---\n");
    cp.apply_yaml(&bindings, Some(&ns))
        .await
        .expect("bindings apply");

    let admin = cp.admin_client().await;
    let reviews: Api<SubjectAccessReview> = Api::all(admin);
    // What the API server answers for `user` doing `verb` on `resource` (`name/subresource`).
    let allowed =
        |user: &'static str, group: &'static str, resource: &'static str, verb: &'static str| {
            let reviews = reviews.clone();
            let ns = ns.clone();
            let (resource, subresource) = match resource.split_once('/') {
                Some((r, sub)) => (r, Some(sub.to_string())),
                None => (resource, None),
            };
            async move {
                let review = SubjectAccessReview {
                    spec: SubjectAccessReviewSpec {
                        user: Some(user.into()),
                        resource_attributes: Some(ResourceAttributes {
                            namespace: Some(ns),
                            group: Some(group.into()),
                            resource: Some(resource.into()),
                            subresource,
                            verb: Some(verb.into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                reviews
                    .create(&PostParams::default(), &review)
                    .await
                    .expect("access review")
                    .status
                    .is_some_and(|s| s.allowed)
            }
        };
    let tk = "tailkeeper.io";
    // The built-in edit role picks up the requester persona through aggregation (a controller
    // does that, so wait for it).
    support::operator::eventually(
        "edit to aggregate the requester role",
        support::operator::CONVERGE,
        || async {
            allowed("eddie", tk, "accessgrants", "create")
                .await
                .then_some(())
        },
    )
    .await;
    let matrix: &[(&str, &str, &str, &str, bool)] = &[
        // Requester (anyone with edit): ask and withdraw; nothing else of Tailkeeper's.
        ("eddie", tk, "accessgrants", "create", true),
        ("eddie", tk, "accessgrants", "delete", true),
        ("eddie", tk, "accessgrants", "list", true),
        ("eddie", tk, "accessgrants", "patch", false),
        ("eddie", tk, "accessgrants/status", "patch", false),
        ("eddie", tk, "accesspolicies", "patch", false),
        ("eddie", tk, "accesspolicies", "create", false),
        ("eddie", tk, "tailscaleintegrations", "create", false),
        ("eddie", tk, "tailscaleintegrations", "patch", false),
        ("eddie", tk, "grantledgers", "update", false),
        ("eddie", tk, "grantledgers", "delete", false),
        ("eddie", tk, "accessreviews", "list", true),
        ("eddie", tk, "accessreviews", "create", false),
        ("eddie", tk, "accessreviewdecisions", "create", false),
        // Approver: approve (patch) grants; not create them, not change rules.
        ("aaron", tk, "accessgrants", "patch", true),
        ("aaron", tk, "accessgrants", "create", false),
        ("aaron", tk, "accesspolicies", "get", true),
        ("aaron", tk, "accesspolicies", "patch", false),
        ("aaron", "", "configmaps", "patch", false),
        ("aaron", "", "secrets", "get", false),
        // ...and reviews access: reads campaigns and their items, records decisions, which
        // nobody changes afterwards; never starts or changes a campaign.
        ("aaron", tk, "accessreviews", "list", true),
        ("aaron", tk, "accessreviews", "create", false),
        ("aaron", tk, "accessreviews", "patch", false),
        ("aaron", tk, "accessreviewdecisions", "create", true),
        ("aaron", tk, "accessreviewdecisions", "update", false),
        ("aaron", tk, "accessreviewdecisions", "delete", false),
        ("aaron", tk, "accessreviewdecisions/status", "patch", false),
        ("aaron", tk, "accessreviewrecords", "get", true),
        ("aaron", tk, "accessreviewrecords", "patch", false),
        ("aaron", tk, "accessreviewrecords", "delete", false),
        // Items live in records of their own: the directory's ConfigMaps stay unreadable.
        ("aaron", "", "configmaps", "get", false),
        ("aaron", "", "configmaps", "list", false),
        // Policy admin: rules; never the directory, credentials, grants or integrations.
        ("paula", tk, "accesspolicies", "patch", true),
        ("paula", tk, "accesspolicies", "create", true),
        ("paula", "", "configmaps", "update", false),
        // Directory admin: the directory's ConfigMaps, and nothing that decides.
        ("dora", "", "configmaps", "update", true),
        ("dora", "", "configmaps", "create", true),
        ("dora", tk, "accesspolicies", "patch", false),
        ("dora", tk, "accessgrants", "patch", false),
        ("dora", tk, "accessreviewdecisions", "create", false),
        ("dora", "", "secrets", "get", false),
        ("paula", "", "secrets", "get", false),
        ("paula", "", "secrets", "list", false),
        ("paula", tk, "tailscaleintegrations", "patch", false),
        ("paula", tk, "accessgrants", "patch", false),
        ("paula", tk, "accessreviews", "create", true),
        ("paula", tk, "accessreviews", "delete", true),
        ("paula", tk, "accessreviews/status", "patch", false),
        ("paula", tk, "accessreviewdecisions", "create", false),
        // Platform admin: integrations and their Secrets; not rules, not grants.
        ("pete", tk, "tailscaleintegrations", "create", true),
        ("pete", "", "secrets", "create", true),
        ("pete", tk, "accesspolicies", "patch", false),
        ("pete", tk, "accessgrants", "patch", false),
        ("pete", tk, "grantledgers", "update", false),
    ];
    let mut wrong = Vec::new();
    for &(user, group, resource, verb, expected) in matrix {
        let got = allowed(user, group, resource, verb).await;
        if got != expected {
            wrong.push(format!(
                "{user} {verb} {resource}: allowed={got}, expected {expected}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Without the admission policies that prove who approved (an old cluster, the chart's policies
/// disabled or not installed), an approval is a name anyone could type: a grant that needs one
/// never activates, and an approval given then never counts, even once the policies are back.
/// The same holds for a requester that stands for a review (a GitOps identity): without proof,
/// anyone could have typed its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_admission_policies_approvals_never_count() {
    use kube::api::{Patch, PatchParams, PostParams};
    use support::operator::{eventually, install_admission_policies, CONVERGE};
    use tailkeeper::api::{AccessGrant, GrantPhase};

    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    sim.add_user(SimUser::member("alice@example.com", "member", "active"));
    sim.set_policy_as_human("{\n\t\"groups\": {\"group:oncall\": []},\n}\n");
    let env = Env::new("failclosed", sim).await;
    let key = env.sim.create_api_key(Duration::from_secs(3600));
    env.apply(&format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: token, annotations: {}}}
stringData: {{apiToken: {}}}
---
apiVersion: tailkeeper.io/v1alpha1
kind: TailscaleIntegration
metadata: {{name: tailnet}}
spec: {{apiUrl: {}, credentials: {{type: APIToken, secretName: token}}}}
---
apiVersion: tailkeeper.io/v1alpha1
kind: AccessPolicy
metadata: {{name: jit}}
spec:
  integrationRef: {{name: tailnet}}
  directory: {{people: [{{loginNames: [alice@example.com], orgRole: engineer}}]}}
  roles: [{{orgRole: engineer, tailscaleRoles: [member]}}]
  grantable:
    gitOpsRequesters: ["system:serviceaccount:argocd:argocd-application-controller"]
    groups:
      - name: "group:oncall"
        terms: {{maxDuration: 1h, approvalRequired: true, approvers: {{users: [bob]}}}}
"#,
        bound_to("tailnet", &env.sim.url()),
        key.key,
        env.sim.url()
    ))
    .await;
    env.integration_condition("tailnet", "Ready", "True").await;
    let grants: kube::Api<AccessGrant> = env.grants();
    let grant: AccessGrant = serde_json::from_value(serde_json::json!({
        "apiVersion": "tailkeeper.io/v1alpha1", "kind": "AccessGrant",
        "metadata": {"name": "g"},
        "spec": {"policyRef": {"name": "jit"}, "user": "alice@example.com",
                 "access": {"group": "group:oncall"}, "duration": "1h",
                 "reason": "incident", "requestedBy": "alice"}
    }))
    .expect("grant");
    let created = grants
        .create(&PostParams::default(), &grant)
        .await
        .expect("created");
    // Nothing checks who creates this one either: the GitOps identity's name, typed by anyone.
    let mut borrowed = grant.clone();
    borrowed.metadata.name = Some("borrowed".into());
    borrowed.spec.requested_by =
        Some("system:serviceaccount:argocd:argocd-application-controller".into());
    grants
        .create(&PostParams::default(), &borrowed)
        .await
        .expect("no admission policy refuses it");
    // Nothing checks who writes this: the name of a listed approver, typed by anyone.
    let forged = serde_json::json!({"spec": {"approval": {"approvedBy": "bob", "grantUID": created.metadata.uid}}});
    grants
        .patch("g", &PatchParams::default(), &Patch::Merge(&forged))
        .await
        .expect("no admission policy refuses it");
    let waiting = eventually(
        "the grant to wait for provable approvals",
        CONVERGE,
        || async {
            let g = grants.get("g").await.ok()?;
            let ready = tailkeeper::api::find_condition(&g.status.as_ref()?.conditions, "Ready")?;
            (ready.reason == "ApprovalUnverified").then_some(g)
        },
    )
    .await;
    let status = waiting.status.expect("status");
    assert_eq!(status.phase, Some(GrantPhase::AwaitingApproval));
    let borrowed = env
        .grant_phase("borrowed", GrantPhase::AwaitingApproval)
        .await;
    assert_eq!(
        tailkeeper::api::find_condition(&borrowed.status.expect("status").conditions, "Ready")
            .map(|c| c.reason.as_str()),
        Some("ApprovalUnverified"),
        "a GitOps requester counts no more than an approval while nothing proves it"
    );
    assert!(
        status
            .message
            .unwrap_or_default()
            .contains("grant-identity is not installed"),
        "the message says what is missing"
    );
    assert!(!env.sim.policy().0.contains("alice@example.com"));
    // The policy says so too.
    let policies: kube::Api<tailkeeper::api::AccessPolicy> =
        kube::Api::namespaced(env.client.clone(), &env.ns);
    let proven = |p: &tailkeeper::api::AccessPolicy| {
        tailkeeper::api::find_condition(&p.status.as_ref()?.conditions, "ApprovalsProven")
            .map(|c| c.status.clone())
    };
    eventually(
        "the policy to say approvals are not proven",
        CONVERGE,
        || async { (proven(&policies.get("jit").await.ok()?)? == "False").then_some(()) },
    )
    .await;

    // The policies arrive; the approval given without them still does not count.
    install_admission_policies(env.cp).await;
    let denied = env.grant_phase("g", GrantPhase::Denied).await;
    assert!(
        denied
            .status
            .unwrap()
            .message
            .unwrap_or_default()
            .contains("never counts"),
        "an approval given while unprovable is refused for good"
    );
    let borrowed = env.grant_phase("borrowed", GrantPhase::Denied).await;
    let message = borrowed.status.unwrap().message.unwrap_or_default();
    assert!(
        message.contains("not approved in GitOps") && message.contains("never counts"),
        "a grant created while its requester was unprovable is refused for good: {message}"
    );
    assert!(!env.sim.policy().0.contains("alice@example.com"));
}
