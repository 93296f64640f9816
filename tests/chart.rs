//! The Helm chart (charts/tailkeeper) and the Dockerfile.
//!
//! Static checks render the chart with `helm template`; the others install it into the real
//! kube-apiserver of the test harness (tests/support) and check what the operator's
//! ServiceAccount may and may not do there.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    },
};

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
        core::v1::{Namespace, Pod, ServiceAccount},
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde::Deserialize as _;
use serde_json::json;
use serde_yaml::Value;
use support::ControlPlane;

/// The Kubernetes version the tests render for (what hack/k8s-tools.sh builds).
const KUBE_VERSION: &str = "1.37.2";
const CRD_NAMES: [&str; 3] = [
    "tailscaleintegrations.tailkeeper.io",
    "accesspolicies.tailkeeper.io",
    "accessgrants.tailkeeper.io",
];

// ------------------------------------------------------------------------------- helpers

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    repo().join("charts/tailkeeper")
}

/// The tool bin dir (helm, kubeconform, kubectl, ...) without starting a control plane.
fn tools() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("TAILKEEPER_TEST_BIN_DIR") {
            return PathBuf::from(dir);
        }
        let out = Command::new("bash")
            .arg(repo().join("hack/k8s-tools.sh"))
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("run hack/k8s-tools.sh");
        assert!(out.status.success(), "hack/k8s-tools.sh failed");
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        PathBuf::from(
            stdout
                .lines()
                .last()
                .expect("bin dir on the last line")
                .trim(),
        )
    })
}

/// A fresh directory under the cargo target tmp dir.
fn scratch(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "chart-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn helm() -> Command {
    let mut cmd = Command::new(tools().join("helm"));
    // Keep Helm's config and cache out of $HOME and independent between runs.
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm-home");
    cmd.env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"));
    cmd
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    out
}

fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// `helm template` of the chart as release `tk` in `namespace` with `--set` values.
fn template(namespace: &str, sets: &[&str]) -> String {
    let mut cmd = helm();
    cmd.arg("template").arg("tk").arg(chart_dir()).args([
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
    ]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    run_ok(&mut cmd)
}

/// The non-empty documents of a multi-document YAML stream.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = find(docs, kind);
    assert_eq!(found.len(), 1, "expected one {kind}, got {}", found.len());
    found[0]
}

fn str_of(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v:?}"))
}

/// (apiGroup, resource, verb) of every rule.
fn permissions(rules: &Value) -> BTreeSet<(String, String, String)> {
    let mut set = BTreeSet::new();
    for rule in rules.as_sequence().expect("rules is a list") {
        assert!(
            rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(),
            "unexpected rule shape {rule:?}"
        );
        for g in rule["apiGroups"].as_sequence().expect("apiGroups") {
            for r in rule["resources"].as_sequence().expect("resources") {
                for v in rule["verbs"].as_sequence().expect("verbs") {
                    set.insert((
                        str_of(g).to_string(),
                        str_of(r).to_string(),
                        str_of(v).to_string(),
                    ));
                }
            }
        }
    }
    set
}

/// Exactly what the operator needs (the brief of the chart).
/// The operator may list admission policies and their bindings (to know whether approvals are
/// proven), ask SubjectAccessReviews and watch RBAC objects (to prove the trust boundary),
/// through a ClusterRole of its own bound once per release namespace, and nothing more: no
/// write to RBAC, no read of any other cluster-wide kind.
fn assert_admission_reader(docs: &[Value]) {
    let role = find(docs, "ClusterRole")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "tk-tailkeeper-admission-reader")
        .expect("the admission reader ClusterRole");
    let mut expected: BTreeSet<(String, String, String)> = [
        "validatingadmissionpolicies",
        "validatingadmissionpolicybindings",
    ]
    .iter()
    .map(|r| {
        (
            "admissionregistration.k8s.io".to_string(),
            r.to_string(),
            "list".to_string(),
        )
    })
    .collect();
    expected.insert((
        "authorization.k8s.io".into(),
        "subjectaccessreviews".into(),
        "create".into(),
    ));
    for resource in [
        "roles",
        "rolebindings",
        "clusterroles",
        "clusterrolebindings",
    ] {
        for verb in ["list", "watch"] {
            expected.insert((
                "rbac.authorization.k8s.io".into(),
                resource.into(),
                verb.into(),
            ));
        }
    }
    assert_eq!(permissions(&role["rules"]), expected);
    let binding = find(docs, "ClusterRoleBinding")
        .into_iter()
        .find(|b| b["roleRef"]["name"] == "tk-tailkeeper-admission-reader")
        .expect("the admission reader's binding");
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(binding["subjects"][0]["namespace"], "tk-system");
}

fn operator_permissions() -> BTreeSet<(String, String, String)> {
    let mut set = BTreeSet::new();
    let mut add = |group: &str, resources: &[&str], verbs: &[&str]| {
        for r in resources {
            for v in verbs {
                set.insert((group.to_string(), r.to_string(), v.to_string()));
            }
        }
    };
    let kinds = ["tailscaleintegrations", "accesspolicies", "accessgrants"];
    add("tailkeeper.io", &kinds, &["get", "list", "watch"]);
    add(
        "tailkeeper.io",
        &[
            "tailscaleintegrations/status",
            "accesspolicies/status",
            "accessgrants/status",
        ],
        &["get", "patch", "update"],
    );
    add("tailkeeper.io", &["accessgrants"], &["patch", "update"]);
    add(
        "tailkeeper.io",
        &["grantledgers"],
        &["get", "list", "watch", "create", "update", "delete"],
    );
    // Access reviews: campaigns and decisions read, their status written, and the next
    // campaign of a recurring one created.
    add(
        "tailkeeper.io",
        &["accessreviews", "accessreviewdecisions"],
        &["get", "list", "watch"],
    );
    add(
        "tailkeeper.io",
        &["accessreviews/status", "accessreviewdecisions/status"],
        &["get", "patch", "update"],
    );
    add("tailkeeper.io", &["accessreviews"], &["create"]);
    // Records: items written and replaced; evidence written once and watched (by label) to
    // release it when its retention ends.
    add(
        "tailkeeper.io",
        &["accessreviewrecords"],
        &["get", "list", "watch", "create", "patch", "delete"],
    );
    add("openreports.io", &["reports"], &["get", "create", "patch"]);
    add(
        "",
        &["configmaps"],
        &["get", "list", "watch", "create", "patch", "delete"],
    );
    add("events.k8s.io", &["events"], &["create", "patch"]);
    add("", &["events"], &["create", "patch"]);
    set
}

/// What kube-lease-manager does to its Lease: get, create on first use, and patch (server-side
/// apply to take it, strategic merge to renew and release it).
fn lease_permissions() -> BTreeSet<(String, String, String)> {
    ["get", "create", "patch"]
        .iter()
        .map(|v| {
            (
                "coordination.k8s.io".to_string(),
                "leases".to_string(),
                v.to_string(),
            )
        })
        .collect()
}

/// Whether the ServiceAccount `sa` (namespace, name) may `verb` the `resource` (written
/// `[group/]resource[/subresource]`, core group without a prefix) in `namespace` (None: in all
/// namespaces), asked of the apiserver's authorizer with a SubjectAccessReview.
async fn can_i(
    cp: &ControlPlane,
    sa: (&str, &str),
    verb: &str,
    resource: &str,
    namespace: Option<&str>,
) -> bool {
    can_i_on(cp, sa, verb, resource, namespace, None).await
}

/// [`can_i`] on the object `name`.
async fn can_i_on(
    cp: &ControlPlane,
    sa: (&str, &str),
    verb: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> bool {
    let parts: Vec<&str> = resource.split('/').collect();
    let (group, resource, subresource) = match parts[..] {
        [r] => ("", r, None),
        [g, r] if g.contains('.') => (g, r, None),
        [r, sub] => ("", r, Some(sub)),
        [g, r, sub] => (g, r, Some(sub)),
        _ => panic!("bad resource {resource}"),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{}:{}", sa.0, sa.1)),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{}", sa.0),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource: subresource.map(Into::into),
                verb: Some(verb.into()),
                namespace: namespace.map(Into::into),
                name: name.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(cp.admin_client().await)
        .create(&PostParams::default(), &review)
        .await
        .expect("SubjectAccessReview");
    answer.status.expect("review status").allowed
}

fn helm_install(cp: &ControlPlane, release: &str, namespace: &str, sets: &[&str]) -> String {
    let mut cmd = helm();
    cmd.arg("install")
        .arg(release)
        .arg(chart_dir())
        .arg("--kubeconfig")
        .arg(cp.kubeconfig_path())
        .args(["--namespace", namespace]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    run_ok(&mut cmd)
}

async fn label_restricted(cp: &ControlPlane, ns: &str) {
    let patch = json!({"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/warn-version": "latest",
    }}});
    Api::<Namespace>::all(cp.admin_client().await)
        .patch(ns, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("label namespace restricted");
}

// ------------------------------------------------------------------------ static checks

#[test]
fn helm_lint_strict_passes() {
    for sets in [
        &[][..],
        &["watchNamespace=team-a"][..],
        &[
            "serviceMonitor.enabled=true",
            "replicas=2",
            "logFormat=text",
        ][..],
    ] {
        let mut cmd = helm();
        cmd.args(["lint", "--strict"]).arg(chart_dir());
        for s in sets {
            cmd.args(["--set", s]);
        }
        let out = run_ok(&mut cmd);
        assert!(out.contains("0 chart(s) failed"), "{out}");
        assert!(!out.contains("[WARNING]"), "helm lint warns: {out}");
    }
}

#[test]
fn chart_crds_equal_the_top_level_crds() {
    let top = fs::read_to_string(repo().join("crds/tailkeeper.io.yaml")).expect("crds/");
    let chart = fs::read_to_string(chart_dir().join("crds/tailkeeper.io.yaml"))
        .expect("charts/tailkeeper/crds/tailkeeper.io.yaml");
    assert!(
        top == chart,
        "charts/tailkeeper/crds/tailkeeper.io.yaml differs from crds/tailkeeper.io.yaml: \
         cp crds/tailkeeper.io.yaml charts/tailkeeper/crds/"
    );
    // Nothing else hides in crds/ (Helm would install it too).
    let entries: Vec<_> = fs::read_dir(chart_dir().join("crds"))
        .expect("read crds/")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(entries, ["tailkeeper.io.yaml"]);
}

#[test]
fn chart_metadata_matches_the_crate() {
    let chart: Value =
        serde_yaml::from_str(&fs::read_to_string(chart_dir().join("Chart.yaml")).expect("Chart"))
            .expect("Chart.yaml parses");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "tailkeeper");
    assert_eq!(chart["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(chart["kubeVersion"], ">=1.30.0-0");

    // The kubeVersion constraint is enforced.
    let out = run(helm()
        .arg("template")
        .arg("tk")
        .arg(chart_dir())
        .args(["--kube-version", "1.29.0"]));
    assert!(!out.status.success(), "Kubernetes 1.29 must be refused");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(">=1.30.0-0"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ...yet `helm template` needs no --kube-version: helm assumes the Kubernetes of its own
    // client libraries, as release builds of helm do.
    let out = run(helm().arg("template").arg("tk").arg(chart_dir()));
    assert!(
        out.status.success(),
        "helm template without --kube-version: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn values_schema_rejects_unknown_keys_and_bad_values() {
    for (set, needle) in [
        ("bogus=1", "bogus"),
        ("image.bogus=1", "bogus"),
        ("serviceAccount.nmae=x", "nmae"),
        ("serviceMonitor.enable=true", "enable"),
        ("resources.request.cpu=1", "request"),
        ("logFormat=xml", "logFormat"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("replicas=-1", "replicas"),
        ("service.port=70000", "port"),
        ("watchNamespace=Not_A_Namespace", "watchNamespace"),
        ("credentialSecrets={just-a-name}", "credentialSecrets"),
        // --set makes 7 a number; an EnvVar value must be a string (use --set-string).
        ("extraEnv[0].name=A,extraEnv[0].value=7", "value"),
        ("extraEnv[0].nmae=A", "nmae"),
    ] {
        let out = run(helm().arg("template").arg("tk").arg(chart_dir()).args([
            "--kube-version",
            KUBE_VERSION,
            "--set",
            set,
        ]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--set {set} must be rejected");
        assert!(
            stderr.contains("values don't meet the specifications of the schema")
                || stderr.contains("at '"),
            "--set {set}: not a schema error: {stderr}"
        );
        assert!(stderr.contains(needle), "--set {set}: {stderr}");
    }
    // Valid values pass.
    template(
        "tk",
        &[
            "logFormat=text",
            "watchNamespace=team-a",
            "replicas=3",
            "serviceMonitor.enabled=true",
            "serviceMonitor.scrapeTimeout=10s",
            "image.tag=dev",
            "nodeSelector.kubernetes\\.io/os=linux",
        ],
    );
}

/// Every key in values.yaml is described by the schema and vice versa (a value the schema does
/// not know could never be set; a schema key without a default is undocumented).
#[test]
fn values_and_schema_describe_the_same_keys() {
    /// Objects whose inside is Kubernetes' business, not the chart's.
    const OPAQUE: &[&str] = &["resources", "grafanaDashboard.labels"];
    fn leaves(prefix: &str, v: &serde_json::Value, out: &mut BTreeSet<String>) {
        for (k, v) in v.as_object().expect("an object") {
            let path = format!("{prefix}{k}");
            match v.as_object() {
                Some(m) if !m.is_empty() && !OPAQUE.contains(&path.as_str()) => {
                    leaves(&format!("{path}."), v, out)
                }
                _ => {
                    out.insert(path);
                }
            }
        }
    }
    fn schema_leaves(prefix: &str, s: &serde_json::Value, out: &mut BTreeSet<String>) {
        assert_eq!(
            s.get("additionalProperties"),
            Some(&json!(false)),
            "schema object {prefix:?} must set additionalProperties: false"
        );
        for (k, v) in s["properties"].as_object().expect("properties") {
            let path = format!("{prefix}{k}");
            if v.get("properties").is_some() && !OPAQUE.contains(&path.as_str()) {
                schema_leaves(&format!("{path}."), v, out);
            } else {
                if v.get("properties").is_some() {
                    assert_eq!(v.get("additionalProperties"), Some(&json!(false)), "{path}");
                }
                out.insert(path);
            }
        }
    }
    let values: serde_json::Value = serde_yaml::from_str(
        &fs::read_to_string(chart_dir().join("values.yaml")).expect("values.yaml"),
    )
    .expect("values.yaml parses");
    let schema: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(chart_dir().join("values.schema.json")).expect("schema"),
    )
    .expect("values.schema.json parses");
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    let mut from_values = BTreeSet::new();
    leaves("", &values, &mut from_values);
    let mut from_schema = BTreeSet::new();
    schema_leaves("", &schema, &mut from_schema);
    from_schema.remove("global");
    assert_eq!(from_values, from_schema);

    // The README documents every value.
    let readme = fs::read_to_string(chart_dir().join("README.md")).expect("chart README");
    for key in &from_values {
        assert!(
            readme.contains(&format!("| `{key}` |")),
            "charts/tailkeeper/README.md does not document `{key}`"
        );
    }
}

#[test]
fn deployment_runs_the_operator_under_the_restricted_profile() {
    let docs = documents(&template("tk-system", &[]));
    let deployment = one(&docs, "Deployment");
    assert_eq!(deployment["metadata"]["namespace"], "tk-system");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let pod = &deployment["spec"]["template"]["spec"];
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert_eq!(psc["runAsUser"], 65532);
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["serviceAccountName"], "tk-tailkeeper");
    assert!(pod.get("hostNetwork").is_none() && pod.get("hostPID").is_none());

    let containers = pod["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["image"], "ghcr.io/tailkeeper/tailkeeper:0.1.0");
    assert_eq!(c["args"], serde_yaml::from_str::<Value>("[run]").unwrap());
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["privileged"], false);
    assert_eq!(
        sc["capabilities"]["drop"],
        serde_yaml::from_str::<Value>("[ALL]").unwrap()
    );
    assert!(sc["capabilities"].get("add").is_none());
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");

    // Port, probes and the environment the CLI reads.
    assert_eq!(c["ports"][0]["name"], "http");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "http");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "http");
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    let env: BTreeMap<&str, &Value> = c["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .map(|e| (str_of(&e["name"]), e))
        .collect();
    assert!(
        !env.contains_key("WATCH_NAMESPACE"),
        "empty watchNamespace must watch all namespaces"
    );
    assert_eq!(env["TAILKEEPER_LOG_FORMAT"]["value"], "json");
    assert_eq!(env["TAILKEEPER_LISTEN"]["value"], "0.0.0.0:8080");
    assert_eq!(
        env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );

    // The Service selects exactly the pods of the Deployment, on the named port.
    let service = one(&docs, "Service");
    let selector = service["spec"]["selector"].as_mapping().expect("selector");
    let labels = deployment["spec"]["template"]["metadata"]["labels"]
        .as_mapping()
        .expect("pod labels");
    for (k, v) in selector {
        assert_eq!(
            labels.get(k),
            Some(v),
            "pod lacks the Service's label {k:?}"
        );
    }
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"]
    );
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(service["spec"]["ports"][0]["port"], 8080);
    assert!(find(&docs, "ServiceMonitor").is_empty());
}

#[test]
fn values_reach_the_deployment() {
    let docs = documents(&template(
        "tk-system",
        &[
            "watchNamespace=team-a",
            "logFormat=text",
            "replicas=2",
            "image.repository=registry.example.com/tk",
            "image.tag=dev",
            "image.pullPolicy=Always",
            "service.port=9090",
            "podLabels.team=sre",
            "podAnnotations.example\\.com/a=b",
            "serviceAccount.name=custom-sa",
            "nodeSelector.kubernetes\\.io/os=linux",
            "extraEnv[0].name=TAILKEEPER_MAX_ATTEMPTS",
            "extraEnv[0].value=seven",
            "serviceMonitor.enabled=true",
            "serviceMonitor.interval=15s",
            "serviceMonitor.labels.release=prom",
        ],
    ));
    let d = one(&docs, "Deployment");
    let pod = &d["spec"]["template"];
    let c = &pod["spec"]["containers"][0];
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(c["image"], "registry.example.com/tk:dev");
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(pod["metadata"]["labels"]["team"], "sre");
    assert_eq!(pod["metadata"]["annotations"]["example.com/a"], "b");
    assert_eq!(pod["spec"]["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(pod["spec"]["serviceAccountName"], "custom-sa");
    assert_eq!(c["ports"][0]["containerPort"], 9090);
    let env: BTreeMap<&str, &Value> = c["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .map(|e| (str_of(&e["name"]), &e["value"]))
        .collect();
    assert_eq!(env["WATCH_NAMESPACE"], &Value::from("team-a"));
    assert_eq!(env["TAILKEEPER_LOG_FORMAT"], &Value::from("text"));
    assert_eq!(env["TAILKEEPER_LISTEN"], &Value::from("0.0.0.0:9090"));
    assert_eq!(env["TAILKEEPER_MAX_ATTEMPTS"], &Value::from("seven"));
    assert_eq!(
        one(&docs, "ServiceAccount")["metadata"]["name"],
        "custom-sa"
    );
    let sm = one(&docs, "ServiceMonitor");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["interval"], "15s");
    assert_eq!(sm["metadata"]["labels"]["release"], "prom");
    // Every binding names the ServiceAccount the pod runs as.
    for kind in ["RoleBinding", "ClusterRoleBinding"] {
        for b in find(&docs, kind) {
            assert_eq!(b["subjects"][0]["name"], "custom-sa");
            assert_eq!(b["subjects"][0]["namespace"], "tk-system");
        }
    }
}

#[test]
fn rbac_is_exactly_what_the_operator_needs_cluster_wide() {
    let docs = documents(&template("tk-system", &[]));
    assert!(find(&docs, "Role")
        .iter()
        .all(|r| str_of(&r["metadata"]["name"]).ends_with("-leader-election")));
    let operator: Vec<_> = find(&docs, "ClusterRole")
        .into_iter()
        .filter(|r| r["metadata"]["name"] == "tk-tailkeeper")
        .collect();
    assert_eq!(operator.len(), 1, "one operator ClusterRole");
    assert_eq!(permissions(&operator[0]["rules"]), operator_permissions());
    let binding = *find(&docs, "ClusterRoleBinding")
        .iter()
        .find(|b| b["metadata"]["name"] == "tk-tailkeeper")
        .expect("the operator's ClusterRoleBinding");
    assert_admission_reader(&docs);
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], "tk-tailkeeper");
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(binding["subjects"][0]["name"], "tk-tailkeeper");
    assert_eq!(binding["subjects"][0]["namespace"], "tk-system");

    let lease = one(&docs, "Role");
    assert_eq!(lease["metadata"]["namespace"], "tk-system");
    assert_eq!(permissions(&lease["rules"]), lease_permissions());
    let lease_binding = one(&docs, "RoleBinding");
    assert_eq!(lease_binding["metadata"]["namespace"], "tk-system");
    assert_eq!(lease_binding["roleRef"]["name"], lease["metadata"]["name"]);
}

#[test]
fn rbac_is_namespaced_when_watching_one_namespace() {
    let docs = documents(&template("tk-system", &["watchNamespace=team-a"]));
    // The only cluster-wide grant of a namespaced operator: listing admission policies.
    assert_admission_reader(&docs);
    for b in find(&docs, "ClusterRoleBinding") {
        assert_eq!(
            b["roleRef"]["name"], "tk-tailkeeper-admission-reader",
            "no other cluster-wide binding for a namespaced operator"
        );
    }
    assert!(
        find(&docs, "ClusterRole")
            .iter()
            .all(|r| r["metadata"]["name"] != "tk-tailkeeper"),
        "no operator ClusterRole for a namespaced operator"
    );
    let roles = find(&docs, "Role");
    assert_eq!(roles.len(), 2);
    let operator = roles
        .iter()
        .find(|r| r["metadata"]["namespace"] == "team-a")
        .expect("operator Role in the watched namespace");
    // Without credentialSecrets, the Secrets of the watched namespace.
    let mut expected = operator_permissions();
    for verb in ["get", "list", "watch"] {
        expected.insert(("".into(), "secrets".into(), verb.into()));
    }
    assert_eq!(permissions(&operator["rules"]), expected);
    let lease = roles
        .iter()
        .find(|r| r["metadata"]["namespace"] == "tk-system")
        .expect("lease Role in the release namespace");
    assert_eq!(permissions(&lease["rules"]), lease_permissions());
    for b in find(&docs, "RoleBinding") {
        let ns = &b["metadata"]["namespace"];
        let role = roles
            .iter()
            .find(|r| {
                r["metadata"]["name"] == b["roleRef"]["name"] && &r["metadata"]["namespace"] == ns
            })
            .unwrap_or_else(|| {
                panic!(
                    "RoleBinding {:?} binds no Role of its namespace",
                    b["metadata"]
                )
            });
        assert_eq!(b["subjects"][0]["namespace"], "tk-system", "{role:?}");
    }
}

#[test]
fn credential_secrets_are_the_only_secrets_the_operator_may_get() {
    let docs = documents(&template(
        "tk-system",
        &["credentialSecrets={tailscale/ts-oauth,tailscale/backup,corp/creds}"],
    ));
    let mut granted = BTreeMap::new();
    for role in find(&docs, "Role") {
        let rules = role["rules"].as_sequence().expect("rules");
        if !rules.iter().any(|r| {
            r["resources"]
                .as_sequence()
                .is_some_and(|rs| rs.iter().any(|x| x == "secrets"))
        }) {
            continue;
        }
        assert_eq!(role["metadata"]["name"], "tk-tailkeeper-credentials");
        assert_eq!(rules.len(), 1, "{role:?}");
        assert_eq!(
            rules[0]["verbs"],
            serde_yaml::from_str::<Value>("[get, list, watch]").unwrap(),
            "read and watched by name"
        );
        let names: Vec<String> = rules[0]["resourceNames"]
            .as_sequence()
            .expect("resourceNames: never all Secrets of a namespace")
            .iter()
            .map(|n| str_of(n).to_string())
            .collect();
        granted.insert(str_of(&role["metadata"]["namespace"]).to_string(), names);
    }
    assert_eq!(
        granted,
        BTreeMap::from([
            ("corp".to_string(), vec!["creds".to_string()]),
            (
                "tailscale".to_string(),
                vec!["ts-oauth".to_string(), "backup".to_string()]
            ),
        ])
    );
    for binding in find(&docs, "RoleBinding")
        .into_iter()
        .filter(|b| b["metadata"]["name"] == "tk-tailkeeper-credentials")
    {
        assert_eq!(binding["roleRef"]["name"], "tk-tailkeeper-credentials");
        assert_eq!(binding["subjects"][0]["name"], "tk-tailkeeper");
        assert_eq!(binding["subjects"][0]["namespace"], "tk-system");
    }
    for role in find(&docs, "ClusterRole") {
        assert!(
            !permissions(&role["rules"])
                .iter()
                .any(|(_, r, v)| r == "secrets" && v == "get"),
            "no ClusterRole reads Secrets: {:?}",
            role["metadata"]["name"]
        );
    }

    // Watching one namespace, listed Secrets replace the namespace's.
    let docs = documents(&template(
        "tk-system",
        &["watchNamespace=team-a", "credentialSecrets={team-a/ts}"],
    ));
    let operator = find(&docs, "Role")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "tk-tailkeeper")
        .expect("operator Role");
    assert_eq!(permissions(&operator["rules"]), operator_permissions());
    // A Secret outside the watched namespace could serve no integration: said at once.
    let out = run(helm().arg("template").arg("tk").arg(chart_dir()).args([
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "watchNamespace=team-a",
        "--set",
        "credentialSecrets={team-b/ts}",
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr
                .contains("credentialSecrets: team-b/ts is outside the watched namespace team-a"),
        "{stderr}"
    );
}

#[test]
fn the_webhook_endpoint_is_off_by_default_and_exposes_only_itself() {
    let off = documents(&template("tk-system", &[]));
    assert!(find(&off, "Ingress").is_empty());
    let service = one(&off, "Service");
    assert_eq!(service["spec"]["ports"].as_sequence().unwrap().len(), 1);
    let container = &one(&off, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert!(!serde_yaml::to_string(&container["env"])
        .unwrap()
        .contains("TAILKEEPER_WEBHOOK_LISTEN"));

    let on = documents(&template(
        "tk-system",
        &[
            "webhook.enabled=true",
            "webhook.port=9443",
            "webhook.ingress.enabled=true",
            "webhook.ingress.host=tk.example.com",
        ],
    ));
    let container = &one(&on, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    let env = container["env"].as_sequence().unwrap();
    assert!(env
        .iter()
        .any(|e| e["name"] == "TAILKEEPER_WEBHOOK_LISTEN" && e["value"] == "0.0.0.0:9443"));
    assert!(container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "webhook" && p["containerPort"] == 9443));
    let service = one(&on, "Service");
    assert!(service["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "webhook" && p["port"] == 9443 && p["targetPort"] == "webhook"));
    let ingress = one(&on, "Ingress");
    let rule = &ingress["spec"]["rules"][0];
    assert_eq!(rule["host"], "tk.example.com");
    let paths = rule["http"]["paths"].as_sequence().unwrap();
    assert_eq!(paths.len(), 1, "only the webhook path");
    assert_eq!(paths[0]["path"], "/tailscale/");
    assert_eq!(paths[0]["backend"]["service"]["port"]["name"], "webhook");
}

/// The metric families the operator exports (`# TYPE` lines of its registry, with a sample in
/// each labelled family: empty families are not rendered).
fn exported_metrics() -> BTreeSet<String> {
    use tailkeeper::metrics::*;
    let m = Metrics::default();
    let (ns, name) = ("ns".to_string(), "x".to_string());
    let controller = ControllerLabels {
        controller: name.clone(),
    };
    m.reconciliations.get_or_create(&controller).inc();
    m.reconcile_duration.get_or_create(&controller).observe(0.1);
    m.reconcile_errors
        .get_or_create(&ErrorLabels {
            controller: name.clone(),
            reason: name.clone(),
        })
        .inc();
    let check = CheckLabels {
        namespace: ns.clone(),
        policy: name.clone(),
        check: name.clone(),
    };
    m.check_passing.get_or_create(&check).set(1);
    m.check_failing_users.get_or_create(&check).set(0);
    let integration = IntegrationLabels {
        namespace: ns.clone(),
        integration: name.clone(),
    };
    m.inventory_users.get_or_create(&integration).set(1);
    m.credential_expiry.get_or_create(&integration).set(1);
    m.revocations_blocked.get_or_create(&integration).set(0);
    m.webhook_deliveries
        .get_or_create(&WebhookLabels {
            namespace: ns.clone(),
            integration: name.clone(),
            outcome: name.clone(),
        })
        .inc();
    m.enforcement_refused
        .get_or_create(&PolicyLabels {
            namespace: ns,
            policy: name,
        })
        .set(0);
    m.render()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The `tailkeeper_*` metric families a PromQL expression reads (suffixes of histograms and
/// counters mapped to their family).
fn metrics_read_by(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("tailkeeper_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_count", "_sum", "_total"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        names.insert(family.to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_alert_and_dashboard_query_reads_a_metric_the_operator_exports() {
    let exported = exported_metrics();
    assert!(
        exported.contains("tailkeeper_revocation_lateness_seconds"),
        "{exported:?}"
    );
    let docs = documents(&template(
        "tk-system",
        &[
            "prometheusRule.enabled=true",
            "grafanaDashboard.enabled=true",
        ],
    ));
    let mut queries: Vec<(String, String)> = Vec::new();
    let rule = one(&docs, "PrometheusRule");
    for group in rule["spec"]["groups"].as_sequence().unwrap() {
        for r in group["rules"].as_sequence().unwrap() {
            queries.push((
                str_of(&r["alert"]).to_string(),
                str_of(&r["expr"]).to_string(),
            ));
        }
    }
    let dashboard = find(&docs, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "tk-tailkeeper-dashboard")
        .expect("the dashboard ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: serde_json::Value =
        serde_json::from_str(str_of(&dashboard["data"]["tailkeeper.json"])).expect("JSON");
    for panel in json["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push((
                panel["title"].as_str().unwrap().to_string(),
                target["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    assert!(queries.len() >= 15, "{queries:?}");
    for (what, expr) in &queries {
        let read = metrics_read_by(expr);
        assert!(
            !read.is_empty(),
            "{what}: {expr} reads no Tailkeeper metric"
        );
        for name in read {
            assert!(
                exported.contains(&name),
                "{what}: {expr} reads {name}, which the operator does not export ({exported:?})"
            );
        }
    }
}

#[test]
fn the_alerts_pass_their_promtool_tests() {
    let docs = documents(&template("tk-system", &["prometheusRule.enabled=true"]));
    let rule = one(&docs, "PrometheusRule");
    let dir = scratch("promtool");
    fs::write(
        dir.join("rules.yaml"),
        serde_yaml::to_string(&rule["spec"]).expect("YAML"),
    )
    .expect("rules.yaml");
    fs::copy(
        repo().join("tests/prometheus/rules_test.yaml"),
        dir.join("rules_test.yaml"),
    )
    .expect("rules_test.yaml");
    let out = run(Command::new(tools().join("promtool"))
        .current_dir(&dir)
        .args(["check", "rules", "rules.yaml"]));
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(Command::new(tools().join("promtool"))
        .current_dir(&dir)
        .args(["test", "rules", "rules_test.yaml"]));
    assert!(
        out.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn only_the_viewer_and_requester_aggregate_into_the_built_in_roles() {
    let docs = documents(&template("tk-system", &[]));
    let roles = find(&docs, "ClusterRole");
    let by_name = |name: &str| {
        *roles
            .iter()
            .find(|r| r["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("ClusterRole {name}"))
    };
    let set = |rules: &[(&str, &str, &[&str])]| -> BTreeSet<(String, String, String)> {
        rules
            .iter()
            .flat_map(|(group, resource, verbs)| {
                verbs
                    .iter()
                    .map(move |v| (group.to_string(), resource.to_string(), v.to_string()))
            })
            .collect()
    };
    let label = |r: &Value, which: &str| {
        r["metadata"]["labels"][format!("rbac.authorization.k8s.io/aggregate-to-{which}").as_str()]
            == "true"
    };
    let read = ["get", "list", "watch"];
    let all = [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ];

    let view = by_name("tk-tailkeeper-view");
    assert!(label(view, "view") && label(view, "edit") && label(view, "admin"));
    let tk = "tailkeeper.io";
    assert_eq!(
        permissions(&view["rules"]),
        set(&[
            (tk, "tailscaleintegrations", &read),
            (tk, "accesspolicies", &read),
            (tk, "accessgrants", &read),
            (tk, "grantledgers", &read),
            (tk, "accessreviews", &read),
            (tk, "accessreviewdecisions", &read),
        ])
    );
    let requester = by_name("tk-tailkeeper-requester");
    assert!(label(requester, "edit") && label(requester, "admin") && !label(requester, "view"));
    assert_eq!(
        permissions(&requester["rules"]),
        set(&[(tk, "accessgrants", &["create", "delete"])]),
        "edit lets people ask for access, never change the rules"
    );
    for (name, rules) in [
        (
            "tk-tailkeeper-approver",
            set(&[
                (
                    tk,
                    "accessgrants",
                    &["get", "list", "watch", "patch", "update"],
                ),
                (tk, "accesspolicies", &read),
                // Reviewers: campaigns, their items (records of their own, no ConfigMap) and
                // decisions.
                (tk, "accessreviews", &read),
                (tk, "accessreviewrecords", &read),
                (
                    tk,
                    "accessreviewdecisions",
                    &["get", "list", "watch", "create"],
                ),
            ]),
        ),
        (
            "tk-tailkeeper-policy-admin",
            set(&[
                (tk, "accesspolicies", &all),
                (tk, "accessreviews", &all),
                (tk, "accessreviewrecords", &read),
            ]),
        ),
        (
            "tk-tailkeeper-directory-admin",
            set(&[("", "configmaps", &all)]),
        ),
        (
            "tk-tailkeeper-platform-admin",
            set(&[
                (tk, "tailscaleintegrations", &all),
                ("", "secrets", &["create", "update", "patch", "delete"]),
            ]),
        ),
    ] {
        let role = by_name(name);
        assert!(
            !label(role, "view") && !label(role, "edit") && !label(role, "admin"),
            "{name} is bound explicitly, never aggregated"
        );
        assert_eq!(permissions(&role["rules"]), rules, "{name}");
    }
    // Nobody but the operator writes status or ledgers; a review decision, once created, is
    // never changed or deleted by a person.
    for r in &roles {
        if r["metadata"]["name"] == "tk-tailkeeper" {
            continue;
        }
        for (_, resource, verb) in permissions(&r["rules"]) {
            assert!(
                !resource.ends_with("/status"),
                "{:?} grants {resource}",
                r["metadata"]["name"]
            );
            assert!(
                resource != "grantledgers" || read.contains(&verb.as_str()),
                "{:?} may {verb} grantledgers",
                r["metadata"]["name"]
            );
            assert!(
                resource != "accessreviewdecisions"
                    || read.contains(&verb.as_str())
                    || verb == "create",
                "{:?} may {verb} accessreviewdecisions",
                r["metadata"]["name"]
            );
        }
    }

    let without = documents(&template(
        "tk-system",
        &[
            "rbac.aggregateToDefaultRoles=false",
            "rbac.personaRoles=false",
        ],
    ));
    assert_eq!(
        find(&without, "ClusterRole").len(),
        2,
        "the operator's and the admission reader"
    );
    let none = documents(&template(
        "tk-system",
        &[
            "rbac.create=false",
            "rbac.aggregateToDefaultRoles=false",
            "rbac.personaRoles=false",
        ],
    ));
    for kind in ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"] {
        assert!(
            find(&none, kind).is_empty(),
            "rbac.create=false renders a {kind}"
        );
    }
}

/// NOTES.txt as the user sees it is checked by the install tests (only `helm install` renders
/// it); here its content.
#[test]
fn notes_tell_how_to_check_and_upgrade_crds() {
    let notes = fs::read_to_string(chart_dir().join("templates/NOTES.txt")).expect("NOTES.txt");
    assert!(notes.contains("kubectl get tsi,ap,ag -A"));
    assert!(notes.contains("kubectl apply --server-side -f crds/"));
    assert!(notes.contains("never upgrades"));
}

// -------------------------------------------------------------------------- kubeconform

/// kubeconform's JSON schemas are normally downloaded; there is no network here. Build them,
/// "standalone-strict" like the published ones, from the OpenAPI v2 document of the real
/// kube-apiserver: the definition of each kind plus everything it references, with
/// `additionalProperties: false` on every object with properties.
fn write_kubeconform_schemas(
    cp: &ControlPlane,
    dir: &Path,
    api_kinds: &BTreeSet<(String, String)>,
) {
    let raw = run_ok(cp.kubectl().args(["get", "--raw", "/openapi/v2"]));
    let openapi: serde_json::Value = serde_json::from_str(&raw).expect("OpenAPI v2 JSON");
    let defs = openapi["definitions"].as_object().expect("definitions");

    fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                    out.push(r.trim_start_matches("#/definitions/").to_string());
                }
                m.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    fn strict(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                if m.get("format").and_then(|f| f.as_str()) == Some("int-or-string") {
                    *v = json!({"oneOf": [{"type": "string"}, {"type": "integer"}]});
                    return;
                }
                if m.contains_key("properties") && !m.contains_key("additionalProperties") {
                    m.insert("additionalProperties".into(), json!(false));
                }
                m.values_mut().for_each(strict);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strict),
            _ => {}
        }
    }

    for (api_version, kind) in api_kinds {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version.as_str()),
        };
        let root = defs
            .iter()
            .find(|(_, d)| {
                d["x-kubernetes-group-version-kind"]
                    .as_array()
                    .is_some_and(|gvks| {
                        gvks.iter().any(|gvk| {
                            gvk["group"] == group
                                && gvk["version"] == version
                                && gvk["kind"] == *kind
                        })
                    })
            })
            .map(|(name, _)| name.clone())
            .unwrap_or_else(|| panic!("the apiserver has no schema for {api_version} {kind}"));
        let mut needed = BTreeMap::new();
        let mut todo = vec![root.clone()];
        while let Some(name) = todo.pop() {
            if needed.contains_key(&name) {
                continue;
            }
            let def = defs
                .get(&name)
                .unwrap_or_else(|| panic!("dangling $ref {name}"))
                .clone();
            refs(&def, &mut todo);
            needed.insert(name, def);
        }
        if let Some(q) = needed.get_mut("io.k8s.apimachinery.pkg.api.resource.Quantity") {
            *q = json!({"oneOf": [{"type": "string"}, {"type": "number"}]});
        }
        let mut schema = json!({"$ref": format!("#/definitions/{root}"), "definitions": needed});
        strict(&mut schema);
        // kubeconform: {{ .Group }} is the first part of apiVersion ("v1" for the core group).
        let file = dir.join(format!(
            "{}-{}-{}.json",
            kind.to_lowercase(),
            api_version.split('/').next().expect("apiVersion"),
            version
        ));
        fs::write(file, serde_json::to_vec(&schema).expect("schema JSON")).expect("write schema");
    }
}

fn kubeconform(schemas: &Path, manifests: &str) -> Output {
    let location = format!(
        "{}/{{{{ .ResourceKind }}}}-{{{{ .Group }}}}-{{{{ .ResourceAPIVersion }}}}.json",
        schemas.display()
    );
    run_with_stdin(
        Command::new(tools().join("kubeconform"))
            .args([
                "-strict",
                "-summary",
                "-output",
                "text",
                "-skip",
                "ServiceMonitor,PrometheusRule",
            ])
            .args(["-schema-location", &location, "-"]),
        manifests,
    )
}

#[tokio::test]
async fn rendered_manifests_validate_with_kubeconform_strict() {
    let cp = ControlPlane::shared().await;
    let renders = [
        template("tk-system", &[]),
        template("tk-system", &["watchNamespace=team-a"]),
        template(
            "tk-system",
            &[
                "serviceMonitor.enabled=true",
                "prometheusRule.enabled=true",
                "grafanaDashboard.enabled=true",
                "webhook.enabled=true",
                "webhook.ingress.enabled=true",
                "webhook.ingress.host=tailkeeper.example.com",
                "webhook.ingress.tls[0].secretName=tk-tls",
                "webhook.ingress.tls[0].hosts[0]=tailkeeper.example.com",
                "extraEnv[0].name=A",
                "extraEnv[0].value=b",
                "tolerations[0].operator=Exists",
                "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=kubernetes.io/os",
                "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=In",
                "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values[0]=linux",
            ],
        ),
    ];
    let mut kinds = BTreeSet::new();
    for r in &renders {
        for d in documents(r) {
            if d["kind"] != "ServiceMonitor" && d["kind"] != "PrometheusRule" {
                kinds.insert((
                    str_of(&d["apiVersion"]).to_string(),
                    str_of(&d["kind"]).to_string(),
                ));
            }
        }
    }
    let dir = scratch("kubeconform-schemas");
    write_kubeconform_schemas(cp, &dir, &kinds);

    for r in &renders {
        let out = kubeconform(&dir, r);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "kubeconform -strict rejects the chart:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("Invalid: 0, Errors: 0"), "{text}");
        assert!(!text.contains("Valid: 0,"), "nothing was validated: {text}");
    }

    // The generated schemas are strict: a misspelt field and a wrong type are caught.
    for (broken, needle) in [
        (
            renders[0].replace(
                "readOnlyRootFilesystem: true",
                "readOnlyRootFileSystem: true",
            ),
            "readOnlyRootFileSystem",
        ),
        (
            renders[0].replace("replicas: 1", "replicas: \"one\""),
            "replicas",
        ),
    ] {
        let out = kubeconform(&dir, &broken);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success(),
            "kubeconform missed {needle}:\n{text}"
        );
        assert!(text.contains(needle), "{text}");
    }
    let _ = fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- against the apiserver

#[tokio::test]
async fn rendered_manifests_pass_server_side_dry_run() {
    let cp = ControlPlane::shared().await;
    for watch in [false, true] {
        let ns = cp.create_namespace("chart-dry-run").await;
        label_restricted(cp, &ns).await;
        let watched = cp.create_namespace("chart-dry-run-watched").await;
        let sets = if watch {
            vec![format!("watchNamespace={watched}")]
        } else {
            vec![]
        };
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let manifests = template(&ns, &sets);
        let out = run_with_stdin(
            cp.kubectl().args([
                "apply",
                "--server-side",
                "--dry-run=server",
                "--field-manager=tailkeeper-chart-test",
                "-f",
                "-",
            ]),
            &manifests,
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "server-side dry-run failed (watchNamespace: {watch}):\n{stdout}\n{stderr}"
        );
        // The restricted Pod Security level warns about a Deployment whose pods it would reject.
        assert!(
            !stderr.contains("PodSecurity"),
            "pod template violates the restricted profile: {stderr}"
        );
        let applied = stdout
            .lines()
            .filter(|l| l.contains("(server dry run)"))
            .count();
        assert_eq!(applied, documents(&manifests).len(), "{stdout}");
        let needle = if watch {
            "role.rbac.authorization.k8s.io/tk-tailkeeper serverside-applied"
        } else {
            "clusterrole.rbac.authorization.k8s.io/tk-tailkeeper serverside-applied"
        };
        assert!(stdout.contains(needle), "{stdout}");
    }
}

#[tokio::test]
async fn helm_install_cluster_wide_grants_exactly_the_operator_rbac() {
    let cp = ControlPlane::shared().await;
    let ns = cp.create_namespace("chart-install").await;
    label_restricted(cp, &ns).await;
    let other = cp.create_namespace("chart-install-other").await;
    let credentials = format!("credentialSecrets={{{other}/ts-oauth}}");
    let notes = helm_install(cp, "tk-cluster", &ns, &[&credentials]);
    assert!(
        notes.contains(&format!(
            "the operator may get only these Secrets: {other}/ts-oauth"
        )),
        "{notes}"
    );
    assert!(notes.contains("STATUS: deployed"), "{notes}");
    assert!(notes.contains("kubectl get tsi,ap,ag -A"), "{notes}");
    assert!(
        notes.contains("ClusterRole and ClusterRoleBinding"),
        "{notes}"
    );
    assert!(
        notes.contains(&format!(
            "kubectl -n {ns} rollout status deployment/tk-cluster-tailkeeper"
        )),
        "{notes}"
    );
    assert!(
        notes.contains("kubectl apply --server-side -f crds/"),
        "{notes}"
    );

    let client = cp.admin_client().await;
    // The CRDs from crds/ are installed and served.
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for name in CRD_NAMES {
        crds.get(name)
            .await
            .unwrap_or_else(|e| panic!("CRD {name}: {e}"));
    }
    let deployment = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("tk-cluster-tailkeeper")
        .await
        .expect("Deployment");
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .get("tk-cluster-tailkeeper")
        .await
        .expect("ServiceAccount");
    let role = Api::<ClusterRole>::all(client.clone())
        .get("tk-cluster-tailkeeper")
        .await
        .expect("ClusterRole");
    assert!(role.rules.is_some_and(|r| !r.is_empty()));
    Api::<ClusterRoleBinding>::all(client.clone())
        .get("tk-cluster-tailkeeper")
        .await
        .expect("ClusterRoleBinding");
    Api::<Role>::namespaced(client.clone(), &ns)
        .get("tk-cluster-tailkeeper-leader-election")
        .await
        .expect("lease Role");
    Api::<RoleBinding>::namespaced(client.clone(), &ns)
        .get("tk-cluster-tailkeeper-leader-election")
        .await
        .expect("lease RoleBinding");
    for name in [
        "tk-cluster-tailkeeper-view",
        "tk-cluster-tailkeeper-requester",
        "tk-cluster-tailkeeper-approver",
        "tk-cluster-tailkeeper-policy-admin",
        "tk-cluster-tailkeeper-directory-admin",
        "tk-cluster-tailkeeper-platform-admin",
    ] {
        Api::<ClusterRole>::all(client.clone())
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("ClusterRole {name}: {e}"));
    }

    // The pod the Deployment would create is admitted in a namespace enforcing `restricted`.
    let template = deployment.spec.template;
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("tk-cluster-tailkeeper-probe".into()),
            labels: template.metadata.and_then(|m| m.labels),
            ..Default::default()
        },
        spec: template.spec,
        ..Default::default()
    };
    Api::<Pod>::namespaced(client.clone(), &ns)
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &pod,
        )
        .await
        .expect("the operator pod is admitted under PodSecurity restricted");

    // What the ServiceAccount may do, checked by the apiserver's authorizer.
    let sa = (ns.as_str(), "tk-cluster-tailkeeper");
    for (verb, resource) in [
        ("list", "tailkeeper.io/tailscaleintegrations"),
        ("watch", "tailkeeper.io/accesspolicies"),
        ("get", "tailkeeper.io/accessgrants"),
        ("patch", "tailkeeper.io/accessgrants"),
        ("list", "configmaps"),
    ] {
        assert!(
            can_i(cp, sa, verb, resource, None).await,
            "operator cannot {verb} {resource}"
        );
    }
    for (verb, resource) in [
        ("patch", "tailkeeper.io/tailscaleintegrations/status"),
        ("patch", "tailkeeper.io/accesspolicies/status"),
        ("update", "tailkeeper.io/accessgrants/status"),
        ("create", "events.k8s.io/events"),
        ("patch", "events.k8s.io/events"),
        ("create", "events"),
        // Entitlements inventories, published as ConfigMaps their policy owns.
        ("create", "configmaps"),
        ("patch", "configmaps"),
        ("delete", "configmaps"),
    ] {
        assert!(
            can_i(cp, sa, verb, resource, Some(&other)).await,
            "operator cannot {verb} {resource} in {other}"
        );
    }
    // Credentials: exactly the Secret listed, never any other, never cluster-wide.
    let secret = |namespace: &str, name: &str| {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        async move { can_i_on(cp, sa, "get", "secrets", Some(&namespace), Some(&name)).await }
    };
    assert!(secret(&other, "ts-oauth").await, "the listed Secret");
    assert!(
        can_i_on(cp, sa, "watch", "secrets", Some(&other), Some("ts-oauth")).await,
        "watched by name"
    );
    assert!(
        !secret(&other, "db-password").await,
        "another Secret beside it"
    );
    assert!(!secret(&ns, "ts-oauth").await, "the same name elsewhere");
    assert!(!can_i(cp, sa, "get", "secrets", None).await, "all Secrets");
    assert!(
        !can_i(cp, sa, "get", "secrets", Some(&other)).await,
        "any Secret of the namespace"
    );
    for (verb, resource) in [
        ("list", "secrets"),
        ("watch", "secrets"),
        ("update", "secrets"),
        ("create", "tailkeeper.io/accessgrants"),
        ("delete", "tailkeeper.io/accessgrants"),
        ("update", "tailkeeper.io/tailscaleintegrations"),
        ("patch", "tailkeeper.io/accesspolicies"),
        ("update", "configmaps"),
        ("list", "pods"),
        ("create", "coordination.k8s.io/leases"),
        ("delete", "events.k8s.io/events"),
    ] {
        assert!(
            !can_i(cp, sa, verb, resource, Some(&other)).await,
            "operator may {verb} {resource}: more than it needs"
        );
    }
    for verb in ["get", "create", "patch"] {
        assert!(can_i(cp, sa, verb, "coordination.k8s.io/leases", Some(&ns)).await);
    }
    for verb in ["update", "delete", "list", "watch"] {
        assert!(!can_i(cp, sa, verb, "coordination.k8s.io/leases", Some(&ns)).await);
    }
}

/// Installed as users install it: on a cluster without Tailkeeper's CRDs, Helm creates them
/// from the chart's crds/; the kinds are served with their schema and rules; `helm upgrade`
/// then changes the release (and leaves the CRDs to the user, as the NOTES say).
#[tokio::test]
async fn helm_installs_the_crds_on_a_fresh_cluster_and_upgrades_the_release() {
    let cp = ControlPlane::start_without_crds()
        .await
        .expect("a control plane of this test's own");
    let client = cp.admin_client().await;
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let all_crds = CRD_NAMES.iter().copied().chain([
        "grantledgers.tailkeeper.io",
        "accessreviews.tailkeeper.io",
        "accessreviewdecisions.tailkeeper.io",
        "accessreviewrecords.tailkeeper.io",
    ]);
    for name in all_crds.clone() {
        assert!(
            crds.get_opt(name).await.expect("get").is_none(),
            "a fresh cluster has no {name}"
        );
    }
    let ns = cp.create_namespace("fresh").await;
    let notes = helm_install(&cp, "tk-fresh", &ns, &[]);
    assert!(notes.contains("STATUS: deployed"), "{notes}");
    for name in all_crds {
        let crd = crds
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{name} is served");
    }
    // The kinds are served with their schema and rules.
    let good = "apiVersion: tailkeeper.io/v1alpha1\nkind: AccessPolicy\nmetadata: {name: corp}\nspec: {integrationRef: {name: corp}}\n";
    cp.apply_yaml(good, Some(&ns))
        .await
        .expect("a valid policy");
    let bad = good.replace(
        "integrationRef: {name: corp}",
        "integrationRef: {name: corp}, evaluationInterval: 10s",
    );
    let err = cp
        .apply_yaml(&bad, Some(&ns))
        .await
        .expect_err("the CRD's rules apply");
    assert!(
        format!("{err:#}").contains("evaluationInterval must be between 30s and 24h"),
        "{err:#}"
    );

    // An upgrade changes the release.
    let mut upgrade = helm();
    upgrade
        .args(["upgrade", "tk-fresh"])
        .arg(chart_dir())
        .arg("--kubeconfig")
        .arg(cp.kubeconfig_path())
        .args(["--namespace", &ns])
        .args(["--set", "replicas=2", "--set", "webhook.enabled=true"]);
    let notes = run_ok(&mut upgrade);
    assert!(
        notes.contains("STATUS: deployed") && notes.contains("REVISION: 2"),
        "{notes}"
    );
    let deployment = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("tk-fresh-tailkeeper")
        .await
        .expect("Deployment");
    assert_eq!(deployment.spec.replicas, Some(2));
    let service = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client, &ns)
        .get("tk-fresh-tailkeeper")
        .await
        .expect("Service");
    assert!(service
        .spec
        .and_then(|s| s.ports)
        .unwrap_or_default()
        .iter()
        .any(|p| p.name.as_deref() == Some("webhook")));
}

#[tokio::test]
async fn helm_install_namespaced_confines_the_operator_to_its_namespace() {
    let cp = ControlPlane::shared().await;
    let ns = cp.create_namespace("chart-ns-install").await;
    let watched = cp.create_namespace("chart-ns-watched").await;
    let other = cp.create_namespace("chart-ns-other").await;
    let set = format!("watchNamespace={watched}");
    let notes = helm_install(cp, "tk-ns", &ns, &[&set]);
    assert!(
        notes.contains(&format!("Role and RoleBinding in namespace \"{watched}\"")),
        "{notes}"
    );

    let client = cp.admin_client().await;
    let deployment = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("tk-ns-tailkeeper")
        .await
        .expect("Deployment");
    let env = deployment.spec.template.spec.expect("pod").containers[0]
        .env
        .clone()
        .expect("env");
    assert!(env
        .iter()
        .any(|e| e.name == "WATCH_NAMESPACE" && e.value.as_deref() == Some(watched.as_str())));
    Api::<Role>::namespaced(client.clone(), &watched)
        .get("tk-ns-tailkeeper")
        .await
        .expect("operator Role in the watched namespace");
    assert!(
        Api::<ClusterRoleBinding>::all(client.clone())
            .get_opt("tk-ns-tailkeeper")
            .await
            .expect("get")
            .is_none(),
        "a namespaced install must not bind cluster-wide"
    );

    let sa = (ns.as_str(), "tk-ns-tailkeeper");
    for (verb, resource) in [
        ("list", "tailkeeper.io/tailscaleintegrations"),
        ("watch", "tailkeeper.io/accessgrants"),
        ("get", "secrets"),
        ("watch", "configmaps"),
        ("patch", "tailkeeper.io/accesspolicies/status"),
        ("create", "events.k8s.io/events"),
    ] {
        assert!(
            can_i(cp, sa, verb, resource, Some(&watched)).await,
            "{verb} {resource} in {watched}"
        );
        assert!(
            !can_i(cp, sa, verb, resource, Some(&other)).await,
            "{verb} {resource} in {other}"
        );
    }
    assert!(!can_i(cp, sa, "list", "tailkeeper.io/tailscaleintegrations", None).await);
    // Its own namespace's Secrets: read and watched (each credential Secret by name).
    assert!(can_i(cp, sa, "watch", "secrets", Some(&watched)).await);
    assert!(!can_i(cp, sa, "update", "secrets", Some(&watched)).await);
    assert!(can_i(cp, sa, "patch", "coordination.k8s.io/leases", Some(&ns)).await);
    assert!(
        !can_i(
            cp,
            sa,
            "patch",
            "coordination.k8s.io/leases",
            Some(&watched)
        )
        .await
    );
}

// ---------------------------------------------------------------------------- Dockerfile

struct Instruction {
    keyword: String,
    args: String,
}

/// Instructions of the Dockerfile, continuation lines joined, comments dropped.
fn dockerfile() -> Vec<Instruction> {
    let text = fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile at the repo root");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(stripped) = trimmed.strip_suffix('\\') {
            current.push_str(stripped);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push(Instruction {
            keyword: keyword.to_uppercase(),
            args: args.trim().to_string(),
        });
        current.clear();
    }
    out
}

fn quoted_paths_after(manifest: &str, key: &str) -> Vec<String> {
    manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix(key))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .filter_map(|v| v.trim().strip_prefix('"'))
        .filter_map(|v| v.split('"').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn dockerfile_final_stage_is_distroless_nonroot() {
    let ins = dockerfile();
    let froms: Vec<_> = ins
        .iter()
        .enumerate()
        .filter(|(_, i)| i.keyword == "FROM")
        .collect();
    assert!(froms.len() >= 2, "multi-stage: a builder and a final stage");
    let (final_at, final_from) = froms.last().expect("a FROM");
    assert_eq!(
        final_from.args.split_whitespace().next(),
        Some("gcr.io/distroless/static-debian12:nonroot")
    );
    let final_stage = &ins[final_at + 1..];
    let user = final_stage
        .iter()
        .rev()
        .find(|i| i.keyword == "USER")
        .expect("USER in the final stage");
    assert!(
        ["65532", "65532:65532", "nonroot", "nonroot:nonroot"].contains(&user.args.as_str()),
        "USER {}",
        user.args
    );
    let get = |kw: &str| {
        final_stage
            .iter()
            .rev()
            .find(|i| i.keyword == kw)
            .unwrap_or_else(|| panic!("{kw} in the final stage"))
            .args
            .clone()
    };
    assert_eq!(get("ENTRYPOINT"), r#"["/tailkeeper"]"#);
    assert_eq!(get("CMD"), r#"["run"]"#);
    let copies: Vec<_> = final_stage.iter().filter(|i| i.keyword == "COPY").collect();
    assert_eq!(copies.len(), 1, "the final stage holds only the binary");
    assert!(copies[0].args.contains("--from="), "{}", copies[0].args);
    assert!(
        copies[0].args.ends_with("/tailkeeper"),
        "{}",
        copies[0].args
    );
    assert!(
        !final_stage.iter().any(|i| i.keyword == "RUN"),
        "distroless has no shell: no RUN in the final stage"
    );
}

#[test]
fn dockerfile_builds_a_static_binary_with_a_cached_dependency_layer() {
    let ins = dockerfile();
    let first_from = &ins.iter().find(|i| i.keyword == "FROM").expect("FROM").args;
    assert!(first_from.contains("rust:"), "{first_from}");

    // The Rust version of the builder satisfies the crate's rust-version.
    let arg = ins
        .iter()
        .find(|i| i.keyword == "ARG" && i.args.starts_with("RUST_VERSION="))
        .expect("ARG RUST_VERSION");
    let parse = |v: &str| -> (u32, u32) {
        let mut it = v
            .split('.')
            .map(|p| p.parse::<u32>().expect("numeric version"));
        (it.next().expect("major"), it.next().expect("minor"))
    };
    let builder = parse(arg.args.trim_start_matches("RUST_VERSION="));
    let needed = parse(env!("CARGO_PKG_RUST_VERSION"));
    assert!(
        builder >= needed,
        "builder Rust {builder:?} < rust-version {needed:?}"
    );

    let position = |pred: &dyn Fn(&Instruction) -> bool, what: &str| {
        ins.iter()
            .position(pred)
            .unwrap_or_else(|| panic!("the Dockerfile has no {what}"))
    };
    let copy_manifests = position(
        &|i| i.keyword == "COPY" && i.args.contains("Cargo.toml") && i.args.contains("Cargo.lock"),
        "COPY of Cargo.toml and Cargo.lock",
    );
    let dep_build = position(
        &|i| i.keyword == "RUN" && i.args.contains("cargo build"),
        "RUN cargo build",
    );
    let copy_src = position(
        &|i| i.keyword == "COPY" && i.args.split_whitespace().next() == Some("src"),
        "COPY src",
    );
    let final_build = ins
        .iter()
        .rposition(|i| i.keyword == "RUN" && i.args.contains("cargo build"))
        .expect("cargo build");
    assert!(
        copy_manifests < dep_build && dep_build < copy_src && copy_src < final_build,
        "dependencies must build from the manifests alone, before the sources are copied"
    );
    for run in [&ins[dep_build], &ins[final_build]] {
        assert!(
            run.args.contains("--locked"),
            "builds use Cargo.lock: {}",
            run.args
        );
        assert!(run.args.contains("--release"), "{}", run.args);
        assert!(
            run.args.contains("x86_64-unknown-linux-musl") || run.args.contains("${TARGET}"),
            "{}",
            run.args
        );
    }
    let target = ins
        .iter()
        .find(|i| i.keyword == "ARG" && i.args.starts_with("TARGET="))
        .map(|i| i.args.clone())
        .unwrap_or_default();
    assert!(
        target == "TARGET=x86_64-unknown-linux-musl"
            || ins[dep_build].args.contains("x86_64-unknown-linux-musl"),
        "a static musl binary for distroless/static"
    );
    assert!(
        ins.iter()
            .any(|i| i.keyword == "RUN" && i.args.contains("musl-tools")),
        "musl-tools (musl-gcc) for ring's C code"
    );

    // Every workspace member's manifest is copied, and every target it declares is stubbed,
    // before the dependency build: otherwise cargo cannot load the workspace there.
    let root = fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    let members_line = root
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("workspace members");
    let members: Vec<&str> = members_line.split('"').skip(1).step_by(2).collect();
    assert!(!members.is_empty());
    let before: Vec<&Instruction> = ins[..dep_build].iter().collect();
    let stub_script = &ins[dep_build].args;
    for member in members {
        let dir = if member == "." {
            String::new()
        } else {
            format!("{member}/")
        };
        let manifest_path = format!("{dir}Cargo.toml");
        assert!(
            before
                .iter()
                .any(|i| i.keyword == "COPY"
                    && i.args.split_whitespace().any(|a| a == manifest_path)),
            "{manifest_path} is not copied before the dependency build"
        );
        let manifest = fs::read_to_string(repo().join(&manifest_path)).expect("member manifest");
        for path in quoted_paths_after(&manifest, "path") {
            if !path.ends_with(".rs") {
                continue; // a path dependency
            }
            let full = format!("{dir}{path}");
            assert!(
                stub_script.contains(&full),
                "{full} (a target of {manifest_path}) is not stubbed before the dependency build"
            );
        }
        assert!(
            !repo().join(&dir).join("build.rs").exists(),
            "{dir}build.rs exists: the Dockerfile must copy it before the dependency build"
        );
    }
}

#[test]
fn dockerignore_keeps_the_context_small_but_complete() {
    let text = fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    let patterns: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let ignores = |path: &str| {
        patterns.iter().any(|p| {
            let p = p.trim_end_matches('/');
            if let Some(name) = p.strip_prefix("**/") {
                return path.split('/').any(|seg| seg == name);
            }
            if let Some(ext) = p.strip_prefix("*.") {
                return !path.contains('/') && path.ends_with(&format!(".{ext}"));
            }
            path == p || path.starts_with(&format!("{p}/"))
        })
    };
    assert!(ignores("target"), "target/ must not be sent to the builder");
    assert!(ignores(".git"), ".git must not be sent to the builder");
    // Whatever the Dockerfile copies must stay in the context.
    for i in dockerfile()
        .iter()
        .filter(|i| i.keyword == "COPY" && !i.args.contains("--from"))
    {
        let mut parts: Vec<&str> = i.args.split_whitespace().collect();
        parts.pop(); // destination
        for source in parts {
            assert!(
                !ignores(source),
                ".dockerignore excludes {source}, which the Dockerfile copies"
            );
        }
    }
}

/// The shell and YAML blocks of the README's "Install in a cluster" section, in order.
fn readme_install_blocks() -> Vec<(String, String)> {
    let readme = fs::read_to_string(repo().join("README.md")).expect("README.md");
    let start = readme
        .find("## Install in a cluster")
        .expect("the install section");
    let end = start + readme[start..].find("\n## ").expect("the next section");
    let mut blocks = Vec::new();
    let mut lines = readme[start..end].lines();
    while let Some(line) = lines.next() {
        if let Some(lang) = line.strip_prefix("```").filter(|l| !l.is_empty()) {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            blocks.push((lang.to_string(), body.join("\n") + "\n"));
        }
    }
    blocks
}

/// The README's install steps, run as written on a fresh cluster: its shell blocks verbatim
/// (bash, with the tools on PATH), its YAML with only the placeholders filled in and `apiUrl`
/// pointed at the simulator (the one change a reader would not make). No kubelet runs here, so
/// the operator the chart installs runs beside the cluster, as the chart's ServiceAccount and
/// with the Deployment's arguments. (Two workers: the shell steps block one while the simulator
/// answers on the other.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_install_steps_work_as_written() {
    let cp = ControlPlane::start_without_crds()
        .await
        .expect("a control plane of this test's own");
    let blocks = readme_install_blocks();
    let shell: Vec<&String> = blocks
        .iter()
        .filter(|(lang, _)| lang == "sh")
        .map(|(_, body)| body)
        .collect();
    let yaml = blocks
        .iter()
        .find(|(lang, _)| lang == "yaml")
        .map(|(_, body)| body.clone())
        .expect("the YAML block");
    assert!(shell.len() >= 4, "{blocks:?}");

    // The reader's working directory: the repository's crds/ and charts/, and their export.
    let dir = scratch("readme");
    for entry in ["crds", "charts"] {
        std::os::unix::fs::symlink(repo().join(entry), dir.join(entry)).expect("symlink");
    }
    fs::write(
        dir.join("hr-export.csv"),
        "loginName,displayName,orgRole,status\nalice@example.com,Alice,engineer,active\nbob@example.com,Bob,it,active\n",
    )
    .expect("export");
    let path = format!(
        "{}:{}",
        tools().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let sh = |script: &str| {
        let mut cmd = Command::new("bash");
        cmd.args(["-euo", "pipefail", "-c", script])
            .current_dir(&dir)
            .env("PATH", &path)
            .env("KUBECONFIG", cp.kubeconfig_path());
        for (key, value) in helm().get_envs() {
            if let Some(value) = value {
                cmd.env(key, value);
            }
        }
        run_ok(&mut cmd)
    };

    // 1. CRDs and the chart.
    let out = sh(shell[0]);
    assert!(out.contains("STATUS: deployed"), "{out}");

    // The operator the chart installed, as its ServiceAccount would run it.
    let sim = tailscale_sim::Simulator::start(tailscale_sim::SimConfig::default())
        .await
        .expect("simulator");
    sim.add_user(tailscale_sim::SimUser::member(
        "alice@example.com",
        "member",
        "active",
    ));
    sim.add_user(tailscale_sim::SimUser::member(
        "bob@example.com",
        "it-admin",
        "active",
    ));
    let oauth = sim.create_oauth_client(&["users:read", "policy_file:read"]);
    let kubeconfig = cp.impersonating_kubeconfig(
        "system:serviceaccount:tailkeeper-system:tailkeeper",
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:tailkeeper-system",
        ],
    );
    let operator = support::operator::Operator::start_cluster_wide(
        &kubeconfig,
        "tailkeeper-system",
        &["--allow-api-host", "127.0.0.1"],
    );
    operator.wait_ready().await;

    // 2. The namespace and the directory.
    sh(shell[1]);
    // 3. The YAML, placeholders filled in.
    let yaml = yaml
        .replace("<OAuth client id>", &oauth.id)
        .replace("<OAuth client secret>", &oauth.secret)
        .replace(
            "spec:\n  credentials:",
            &format!("spec:\n  apiUrl: {}\n  credentials:", sim.url()),
        )
        .replace(
            "annotations: {tailkeeper.io/integrations: corp}",
            &format!(
                "annotations: {{tailkeeper.io/integrations: corp, tailkeeper.io/api-url: \"{}\"}}",
                sim.url()
            ),
        );
    assert!(
        yaml.contains("apiUrl"),
        "the integration's spec is where the README has it"
    );
    let mut apply = Command::new(tools().join("kubectl"));
    apply
        .args(["apply", "-f", "-"])
        .env("KUBECONFIG", cp.kubeconfig_path());
    let out = run_with_stdin(&mut apply, &yaml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 4. Waiting for Ready, then the checks.
    let out = sh(shell[2]);
    assert!(
        out.contains("UserIdentified") && out.contains("checksPassing"),
        "{out}"
    );
    // 5. Sync now.
    let out = sh(shell[3]);
    assert!(out.contains("condition met"), "{out}");
}
