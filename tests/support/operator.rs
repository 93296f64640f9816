//! The operator under test: its binary as a child process, running with exactly the Helm chart's
//! RBAC, against the shared control plane and a simulator; and helpers to wait for it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use kube::Client;
use tailkeeper::api::{AccessGrant, AccessPolicy, CheckResultValue, TailscaleIntegration};
use tailscale_sim::{SimConfig, Simulator};

use super::ControlPlane;

/// How long a test waits for the operator to converge before failing.
pub const CONVERGE: Duration = Duration::from_secs(45);

/// The operator as a child process, killed when dropped.
pub struct Operator {
    child: Option<Child>,
    log: PathBuf,
    port: u16,
    webhook_port: u16,
    identity: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Leader-election identities (`POD_NAME`) of the operators running now. An operator started
/// after another stopped gets its identity back, as a container restarted in its pod keeps its
/// pod name (and so takes its Lease back at once); operators running at once differ.
static IDENTITIES: std::sync::Mutex<BTreeSet<String>> = std::sync::Mutex::new(BTreeSet::new());

fn claim_identity(namespace: &str) -> String {
    let mut live = IDENTITIES.lock().unwrap_or_else(|e| e.into_inner());
    (0..)
        .map(|i| format!("{namespace}-operator-{i}"))
        .find(|id| live.insert(id.clone()))
        .expect("a free identity")
}

impl Operator {
    /// Start the operator for `namespace`, which is also the namespace of its leader-election
    /// Lease (the release namespace of the chart's RBAC in tests).
    pub fn start(kubeconfig: &Path, namespace: &str) -> Operator {
        Self::start_with(kubeconfig, namespace, &[])
    }

    /// [`Operator::start`] with more command-line arguments.
    pub fn start_with(kubeconfig: &Path, namespace: &str, args: &[&str]) -> Operator {
        let mut all = vec!["--watch-namespace", namespace];
        all.extend_from_slice(args);
        Self::spawn(kubeconfig, namespace, &all)
    }

    /// An operator watching every namespace, as a cluster-wide install runs it; its Lease is
    /// in `namespace`.
    #[allow(dead_code)] // used by some test binaries only
    pub fn start_cluster_wide(kubeconfig: &Path, namespace: &str, args: &[&str]) -> Operator {
        Self::spawn(kubeconfig, namespace, args)
    }

    fn spawn(kubeconfig: &Path, namespace: &str, args: &[&str]) -> Operator {
        let identity = claim_identity(namespace);
        let port = free_port();
        let webhook_port = free_port();
        let log = std::env::temp_dir().join(format!("tailkeeper-operator-{namespace}-{port}.log"));
        let out = std::fs::File::create(&log).expect("operator log file");
        let err = out.try_clone().expect("log handle");
        // A profiler to run the operator under, e.g. `TAILKEEPER_TEST_WRAPPER=heaptrack cargo
        // bench --bench grants` (see BENCHMARKS.md).
        let mut command = match std::env::var("TAILKEEPER_TEST_WRAPPER") {
            Ok(w) => {
                let mut c = Command::new(w);
                c.arg(env!("CARGO_BIN_EXE_tailkeeper"));
                c
            }
            Err(_) => Command::new(env!("CARGO_BIN_EXE_tailkeeper")),
        };
        let child = command
            .args(["run", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--request-timeout-secs", "5", "--max-attempts", "3"])
            .arg("--webhook-listen")
            .arg(format!("127.0.0.1:{webhook_port}"))
            .arg("--webhook-advertise-url")
            .arg(format!("http://127.0.0.1:{webhook_port}"))
            // The simulator listens on loopback: the one host the tests trust with credentials.
            .args(["--allow-api-host", "127.0.0.1"])
            .args(["--lease-namespace", namespace])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", &identity)
            .env(
                "RUST_LOG",
                std::env::var("TAILKEEPER_TEST_LOG")
                    .unwrap_or_else(|_| "info,tailkeeper=debug".into()),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("operator starts");
        Operator {
            child: Some(child),
            log,
            port,
            webhook_port,
            identity,
        }
    }

    /// The webhook endpoint of integration `name` in `namespace`.
    pub fn webhook_url(&self, namespace: &str, name: &str) -> String {
        format!(
            "http://127.0.0.1:{}/tailscale/{namespace}/{name}",
            self.webhook_port
        )
    }

    /// Its identity in the leader-election Lease (`POD_NAME`).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Its process id, while it runs.
    #[allow(dead_code)] // used by the benchmarks
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `/readyz`: status code and body (`ready` on the leader, `standby` on a standby), or
    /// `None` while it does not answer.
    pub async fn readyz(&self) -> Option<(u16, String)> {
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        let r = reqwest::get(&url).await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    }

    /// Wait until it leads and its caches are synced (`/readyz` answers `ready`).
    pub async fn wait_ready(&self) {
        self.wait_readyz("ready", |_, body| body == "ready").await;
    }

    /// Wait until `/readyz` answers 200, as a leader or as a standby.
    pub async fn wait_serving(&self) -> String {
        self.wait_readyz("ready or standby", |status, _| status == 200)
            .await
    }

    async fn wait_readyz(&self, what: &str, ok: impl Fn(u16, &str) -> bool) -> String {
        eventually(
            &format!("the operator's /readyz to answer {what}"),
            Duration::from_secs(30),
            || async {
                let (status, body) = self.readyz().await?;
                ok(status, &body).then_some(body)
            },
        )
        .await
    }

    pub async fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        reqwest::get(&url)
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kill it (SIGKILL): no chance to release its Lease.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.release_identity();
        }
    }

    /// Stop it as Kubernetes stops a pod (SIGTERM) and wait for it to exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let child = self.child.as_ref().expect("the operator is running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        // SAFETY: sends a signal to our own child process, which has not been reaped yet.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM");
        self.wait_exit("stop on SIGTERM", Duration::from_secs(30))
            .await
    }

    /// Wait until it exits by itself, for at most `timeout` (then kill it and panic naming
    /// `what`).
    pub async fn wait_exit(&mut self, what: &str, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the operator is running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait for the operator") {
                self.release_identity();
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.release_identity();
                panic!("timed out after {timeout:?} waiting for the operator to {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn release_identity(&self) {
        IDENTITIES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.identity);
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("operator log ({}):\n{}", self.log.display(), self.logs());
        }
    }
}

/// Poll `probe` until it yields a value or `timeout` passes (then panic naming `what`).
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A small realistic tailnet, as in the demo.
pub async fn demo_simulator() -> Simulator {
    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/seed.json");
    let seed = tailscale_sim::seed::Seed::load(&seed).expect("demo seed parses");
    sim.apply_seed(&seed).expect("demo seed applies");
    sim
}

/// The examples, pointed at this test's simulator.
pub fn examples(sim: &Simulator) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .expect("example")
                .replace("http://127.0.0.1:8088", &sim.url())
        })
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// The chart as `helm template tailkeeper` renders it (release `tailkeeper`) with `args`.
pub fn render_chart(cp: &ControlPlane, args: &[&str]) -> String {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/tailkeeper");
    let out = Command::new(cp.bin_dir().join("helm"))
        .args(["template", "tailkeeper"])
        .arg(&chart)
        .args(args)
        .args(["--kube-version", "1.37.2"])
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Install the chart's ServiceAccount and namespaced RBAC (as `helm template` renders them with
/// `watchNamespace` set) and return a kubeconfig that impersonates that ServiceAccount: the
/// operator runs with exactly the chart's permissions, so a missing rule fails a test.
pub async fn chart_identity(cp: &ControlPlane, ns: &str) -> PathBuf {
    chart_identity_with(cp, ns, &[]).await
}

/// [`chart_identity`] with more chart values (`key=value`, as `--set` takes them).
pub async fn chart_identity_with(cp: &ControlPlane, ns: &str, values: &[&str]) -> PathBuf {
    let watch = format!("watchNamespace={ns}");
    let mut args = vec!["--namespace", ns, "--set", &watch];
    for value in values {
        args.extend(["--set", value]);
    }
    let rendered = render_chart(cp, &args);
    let mut rbac = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&rendered) {
        let value = <serde_yaml::Value as serde::Deserialize>::deserialize(doc)
            .expect("rendered YAML parses");
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        let name = value["metadata"]["name"].as_str().unwrap_or_default();
        let admission_reader = matches!(kind, "ClusterRole" | "ClusterRoleBinding")
            && name.contains("admission-reader");
        if matches!(kind, "ServiceAccount" | "Role" | "RoleBinding") || admission_reader {
            rbac.push(serde_yaml::to_string(&value).expect("YAML"));
        }
    }
    assert!(
        rbac.len() >= 3,
        "the chart renders a ServiceAccount, Roles and RoleBindings"
    );
    cp.apply_yaml(&rbac.join("\n---\n"), Some(ns))
        .await
        .expect("chart RBAC applies");
    let sa = format!("system:serviceaccount:{ns}:tailkeeper");
    cp.impersonating_kubeconfig(
        &sa,
        &[
            "system:serviceaccounts",
            &format!("system:serviceaccounts:{ns}"),
        ],
    )
}

pub struct Env {
    pub cp: &'static ControlPlane,
    pub kubeconfig: PathBuf,
    pub client: Client,
    pub ns: String,
    pub sim: Simulator,
    pub operator: Operator,
}

impl Env {
    pub async fn new(prefix: &str, sim: Simulator) -> Env {
        Self::with_chart_values(prefix, sim, |_| Vec::new()).await
    }

    /// An environment whose operator runs under the chart's RBAC rendered with more values,
    /// given the namespace (`key=value`, as `--set` takes them).
    pub async fn with_chart_values(
        prefix: &str,
        sim: Simulator,
        values: impl FnOnce(&str) -> Vec<String>,
    ) -> Env {
        Self::with_chart_values_and_args(prefix, sim, values, &[]).await
    }

    /// [`Env::with_chart_values`], the operator started with more command-line arguments.
    pub async fn with_chart_values_and_args(
        prefix: &str,
        sim: Simulator,
        values: impl FnOnce(&str) -> Vec<String>,
        args: &[&str],
    ) -> Env {
        let cp = ControlPlane::shared().await;
        let ns = cp.create_namespace(prefix).await;
        let values = values(&ns);
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let kubeconfig = chart_identity_with(cp, &ns, &values).await;
        let operator = Operator::start_with(&kubeconfig, &ns, args);
        operator.wait_ready().await;
        Env {
            client: cp.admin_client().await,
            kubeconfig,
            cp,
            ns,
            sim,
            operator,
        }
    }

    pub fn policies(&self) -> Api<AccessPolicy> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn integrations(&self) -> Api<TailscaleIntegration> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn apply(&self, yaml: &str) {
        self.cp
            .apply_yaml(yaml, Some(&self.ns))
            .await
            .expect("apply");
    }

    /// Wait until the integration's condition `type_` has `status`, returning the condition's
    /// reason and message.
    pub async fn integration_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
    ) -> (String, String) {
        let api = self.integrations();
        eventually(
            &format!("integration {name} {type_}={status}"),
            CONVERGE,
            || async {
                let i = api.get_opt(name).await.ok()??;
                let c = tailkeeper::api::find_condition(&i.status?.conditions, type_)?.clone();
                (c.status == status).then_some((c.reason, c.message))
            },
        )
        .await
    }

    /// Wait until the policy's check `name` has `result`, returning the check.
    pub async fn check(
        &self,
        policy: &str,
        name: &str,
        result: CheckResultValue,
    ) -> tailkeeper::api::CheckStatus {
        let api = self.policies();
        eventually(
            &format!("check {name} to be {result:?}"),
            CONVERGE,
            || async {
                let p = api.get_opt(policy).await.ok()??;
                let c = p.status?.checks.into_iter().find(|c| c.name == name)?;
                (c.result == result).then_some(c)
            },
        )
        .await
    }

    pub async fn events(&self, reason: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        api.list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .collect()
    }

    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        self.cp
            .kubectl()
            .args(["-n", &self.ns])
            .args(args)
            .output()
            .expect("kubectl runs")
    }
}

static ADMISSION: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// Install the chart's ValidatingAdmissionPolicies (cluster-wide, once per test binary), exactly
/// as `helm template` renders them.
pub async fn install_admission_policies(cp: &ControlPlane) {
    ADMISSION
        .get_or_init(|| async {
            let yaml = render_chart(cp, &["--show-only", "templates/admissionpolicy.yaml"]);
            cp.apply_yaml(&yaml, None)
                .await
                .expect("admission policies apply");
            // The API server compiles policies asynchronously: wait until a violating request is
            // refused, so tests never race the policy's arrival.
            wait_for_admission(cp).await;
        })
        .await;
}

async fn wait_for_admission(cp: &ControlPlane) {
    let ns = cp.create_namespace("admission-probe").await;
    let api: Api<AccessGrant> = Api::namespaced(cp.admin_client().await, &ns);
    let probe: AccessGrant = serde_json::from_value(serde_json::json!({
        "apiVersion": "tailkeeper.io/v1alpha1",
        "kind": "AccessGrant",
        "metadata": {"name": "probe"},
        "spec": {"policyRef": {"name": "p"}, "user": "a@b", "access": {"group": "group:x"},
                 "duration": "1h", "reason": "probe", "requestedBy": "somebody-else"}
    }))
    .expect("probe grant");
    eventually(
        "the admission policies to take effect",
        Duration::from_secs(30),
        || async {
            match api.create(&Default::default(), &probe).await {
                Err(kube::Error::Api(e)) if e.code == 403 || e.code == 422 => Some(()),
                Ok(_) => {
                    let _ = api.delete("probe", &Default::default()).await;
                    None
                }
                Err(_) => None,
            }
        },
    )
    .await;
}

impl Env {
    pub fn grants(&self) -> Api<AccessGrant> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Wait until a grant reaches `phase`, returning it.
    pub async fn grant_phase(&self, name: &str, phase: tailkeeper::api::GrantPhase) -> AccessGrant {
        let api = self.grants();
        eventually(
            &format!("grant {name} to be {phase:?}"),
            CONVERGE,
            || async {
                let g = api.get_opt(name).await.ok()??;
                (g.status.as_ref()?.phase == Some(phase)).then_some(g)
            },
        )
        .await
    }
}

/// The credentials Secret `ts`, bound to `integration`: an API token and a webhook signing
/// secret (one per line).
pub async fn set_credentials(env: &Env, integration: &str, token: &str, webhook_secret: &str) {
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(env.client.clone(), &env.ns);
    secrets
        .patch(
            "ts",
            &kube::api::PatchParams::apply("test").force(),
            &kube::api::Patch::Apply(serde_json::json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ts", "annotations": {
                    "tailkeeper.io/integrations": integration, "tailkeeper.io/api-url": env.sim.url()}},
                "stringData": {"apiToken": token, "webhookSecret": webhook_secret}})),
        )
        .await
        .expect("credentials Secret");
}

/// A tailnet of alice and bob where the directory says bob left, connected through an
/// integration `corp` that syncs once an hour and receives the webhooks the simulator sends
/// for `events`. Returns once `OffboardedAccessRemoved` fails (bob's account is active).
pub async fn offboarding_with_webhooks(prefix: &str, events: &[&str]) -> Env {
    offboarding_with_webhooks_at(prefix, events, false).await.0
}

/// [`offboarding_with_webhooks`]; with `standby`, a second operator runs too, standing by, and
/// Tailscale posts to the standby's endpoint rather than the leader's.
pub async fn offboarding_with_webhooks_at(
    prefix: &str,
    events: &[&str],
    standby: bool,
) -> (Env, Option<Operator>) {
    let sim = Simulator::start(tailscale_sim::SimConfig::default())
        .await
        .expect("simulator");
    sim.add_user(tailscale_sim::SimUser::member(
        "alice@example.com",
        "member",
        "active",
    ));
    sim.add_user(tailscale_sim::SimUser::member(
        "bob@example.com",
        "member",
        "active",
    ));
    let env = Env::new(prefix, sim).await;
    let standby = standby.then(|| Operator::start(&env.kubeconfig, &env.ns));
    if let Some(standby) = &standby {
        let serving = standby.wait_serving().await;
        assert!(
            serving.contains("standby"),
            "the second operator stands by: {serving}"
        );
    }
    let receiver = standby.as_ref().unwrap_or(&env.operator);
    // Tailscale is told where to post; it answers with the signing secret.
    let hook = env
        .sim
        .add_webhook(&receiver.webhook_url(&env.ns, "corp"), events);
    let key = env.sim.create_api_key(Duration::from_secs(86400 * 60));
    set_credentials(&env, "corp", &key.key, &hook.secret).await;
    env.apply(&format!(
        r#"
apiVersion: tailkeeper.io/v1alpha1
kind: TailscaleIntegration
metadata: {{name: corp}}
spec:
  apiUrl: {}
  syncInterval: 1h
  credentials: {{type: APIToken, secretName: ts}}
  webhook: {{}}
---
apiVersion: tailkeeper.io/v1alpha1
kind: AccessPolicy
metadata: {{name: corp}}
spec:
  integrationRef: {{name: corp}}
  directory:
    people:
      - {{loginNames: [alice@example.com], orgRole: engineer}}
      - {{loginNames: [bob@example.com], orgRole: engineer, status: Offboarded}}
  roles:
    - {{orgRole: engineer, tailscaleRoles: [member]}}
"#,
        env.sim.url()
    ))
    .await;
    env.check("corp", "OffboardedAccessRemoved", CheckResultValue::Fail)
        .await;
    (env, standby)
}

/// What a process has used so far, read from `/proc`.
#[allow(dead_code)] // used by the benchmarks
#[derive(Clone, Copy, Debug)]
pub struct ProcessUsage {
    /// Resident memory now, KiB.
    pub rss_kib: u64,
    /// Peak resident memory, KiB.
    pub peak_kib: u64,
    /// Of the resident memory: the heap and other anonymous pages, and the binary's own pages
    /// (file-backed), KiB.
    pub anon_kib: u64,
    pub file_kib: u64,
    /// CPU time, user and system.
    pub cpu: Duration,
}

/// The usage of process `pid`, or `None` once it is gone.
#[allow(dead_code)] // used by the benchmarks
pub fn process_usage(pid: u32) -> Option<ProcessUsage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name (in parentheses, which may hold spaces): utime and stime are the
    // 12th and 13th fields, in clock ticks of 1/100 s on Linux.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ProcessUsage {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
        anon_kib: field("RssAnon:")?,
        file_kib: field("RssFile:")?,
        cpu: Duration::from_millis(ticks * 10),
    })
}

/// RBAC for the test users: anyone authenticated may create, approve and delete grants in the
/// namespace; the admission policies, not RBAC, decide who may approve.
#[allow(dead_code)] // used by some test binaries only
pub const GRANT_USERS_RBAC: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: grant-users}
rules:
  - apiGroups: [tailkeeper.io]
    resources: [accessgrants]
    verbs: [get, list, watch, create, update, patch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: grant-users}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: grant-users}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:authenticated"}
"#;

/// The annotations binding a credential Secret to `integration` and the API at `api_url`, as
/// YAML flow mapping.
#[allow(dead_code)] // used by some test binaries only
pub fn bound_to(integration: &str, api_url: &str) -> String {
    format!("{{tailkeeper.io/integrations: {integration}, tailkeeper.io/api-url: \"{api_url}\"}}")
}

/// YAML for the TailscaleIntegration `tailnet` of this test's simulator, reading a new API
/// token from the Secret `tailnet-token` (both included), to apply with the rest of a setup.
#[allow(dead_code)] // used by some test binaries only
pub fn token_integration(env: &Env) -> String {
    let key = env.sim.create_api_key(Duration::from_secs(30 * 86400));
    format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: tailnet-token, annotations: {}}}
stringData: {{apiToken: {}}}
---
apiVersion: tailkeeper.io/v1alpha1
kind: TailscaleIntegration
metadata: {{name: tailnet}}
spec:
  apiUrl: {}
  credentials: {{type: APIToken, secretName: tailnet-token}}
"#,
        bound_to("tailnet", &env.sim.url()),
        key.key,
        env.sim.url()
    )
}
