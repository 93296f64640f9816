//! A real Kubernetes control plane for integration tests: etcd + kube-apiserver
//! (+ kube-controller-manager when available), all listening on 127.0.0.1 only.
//!
//! One control plane is started per test binary, on first use of
//! [`ControlPlane::shared`]. Binaries come from `hack/k8s-tools.sh` (built and
//! cached on first use; honours `KUBEBUILDER_ASSETS`), or from the directory in
//! `TAILKEEPER_TEST_BIN_DIR` when that is set.
//!
//! Isolation between tests is by namespace: use [`ControlPlane::create_namespace`].
//!
//! Teardown: children are spawned from a dedicated, never-exiting thread with
//! `PR_SET_PDEATHSIG = SIGKILL`, so they die with the test binary whatever way it
//! exits; on a normal exit an `atexit` hook also kills them and removes the
//! temp dir. The temp dir (with every component's log) is kept when any test
//! panicked or `TAILKEEPER_KEEP_TEST_CLUSTER=1`; its path is printed then. If
//! the test binary is killed by a signal the temp dir stays behind in
//! `$TMPDIR`; the next run removes such leftovers of dead processes.
//!
//! Authentication is by static tokens (`--token-auth-file`): an admin in group
//! `system:masters` and the users of [`TEST_USERS`]. Tokens are random per
//! run and are never printed.

use std::{
    collections::BTreeMap,
    fs,
    io::{self, Write},
    net::{TcpListener, TcpStream},
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _};
use k8s_openapi::{
    api::core::v1::{Namespace, ServiceAccount},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    api::{Api, DynamicObject, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    core::{GroupVersionKind, TypeMeta},
    discovery::Scope,
    runtime::wait::{await_condition, conditions},
    Client, Config,
};

/// Static-token test users and their groups.
pub const TEST_USERS: &[(&str, &[&str])] = &[
    ("alice", &["dev"]),
    ("bob", &["sre", "approvers"]),
    ("carol", &["approvers"]),
    ("mallory", &[]),
];

/// User name of the admin token (group `system:masters`).
pub const ADMIN_USER: &str = "tailkeeper-test-admin";
/// Field manager used for server-side apply by the harness.
pub const FIELD_MANAGER: &str = "tailkeeper-tests";

const SA_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const CLUSTER_NAME: &str = "tailkeeper-test";
const READY_TIMEOUT: Duration = Duration::from_secs(120);

pub struct ControlPlane {
    bin_dir: PathBuf,
    dir: PathBuf,
    server: String,
    ca_pem: String,
    admin_token: String,
    user_tokens: BTreeMap<String, String>,
    kubeconfig: PathBuf,
    has_controller_manager: bool,
    logs: Vec<(&'static str, PathBuf)>,
    counter: AtomicU64,
}

static SHARED: tokio::sync::OnceCell<Result<ControlPlane, String>> =
    tokio::sync::OnceCell::const_new();

impl ControlPlane {
    /// The control plane of this test binary, started on first use.
    ///
    /// Panics (in every caller) when it cannot be started.
    pub async fn shared() -> &'static ControlPlane {
        let started = SHARED
            .get_or_init(|| async {
                Self::start(true).await.map_err(|e| {
                    let mut state = cleanup_state();
                    for (_, child) in &mut state.children {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                    match state.dirs.last() {
                        Some(dir) => format!("{e:?}\n(state and logs kept in {})", dir.display()),
                        None => format!("{e:?}"),
                    }
                })
            })
            .await;
        match started {
            Ok(cp) => cp,
            Err(e) => panic!("test control plane failed to start: {e}"),
        }
    }

    /// Admin kubeconfig (token of a `system:masters` member).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// Directory with kube-apiserver, kubectl, etcd, helm, kubeconform
    /// (and kube-controller-manager when it was built).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// `https://127.0.0.1:<port>` of the kube-apiserver.
    pub fn server_url(&self) -> &str {
        &self.server
    }

    /// PEM of the CA that signed the kube-apiserver serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Whether kube-controller-manager runs (namespace deletion, ownerReference
    /// GC, ServiceAccount tokens). Without it namespaces stay `Terminating`.
    pub fn has_controller_manager(&self) -> bool {
        self.has_controller_manager
    }

    /// Log files of the components (name, path); the temp dir is kept after a
    /// failed test so they can be read.
    pub fn log_files(&self) -> &[(&'static str, PathBuf)] {
        &self.logs
    }

    /// A new client with admin rights. Create clients per test: a `kube::Client`
    /// is bound to the tokio runtime it was created on.
    pub async fn admin_client(&self) -> Client {
        self.client_from_yaml(&self.kubeconfig_yaml(&self.admin_token, None, &[]))
            .await
            .expect("admin kube client")
    }

    /// A client authenticated with the static token of a [`TEST_USERS`] user.
    pub async fn client_as(&self, user: &str) -> Client {
        let token = self
            .user_tokens
            .get(user)
            .unwrap_or_else(|| panic!("{user:?} is not one of the test users {TEST_USERS:?}"));
        self.client_from_yaml(&self.kubeconfig_yaml(token, None, &[]))
            .await
            .unwrap_or_else(|e| panic!("kube client for {user}: {e:#}"))
    }

    /// A client with admin credentials that impersonates `user` with `groups`: exactly that
    /// identity's RBAC, for personas beyond [`TEST_USERS`].
    #[allow(dead_code)] // used by some test binaries only
    pub async fn client_impersonating(&self, user: &str, groups: &[&str]) -> Client {
        self.client_from_yaml(&self.kubeconfig_yaml(&self.admin_token, Some(user), groups))
            .await
            .unwrap_or_else(|e| panic!("kube client impersonating {user}: {e:#}"))
    }

    /// Writes a kubeconfig with admin credentials that impersonates `user` with
    /// `groups` (`as` / `as-groups`), so a process using it has exactly that
    /// identity's RBAC. For a ServiceAccount pass e.g.
    /// `("system:serviceaccount:NS:NAME", &["system:serviceaccounts", "system:serviceaccounts:NS"])`;
    /// the apiserver adds `system:authenticated` itself.
    pub fn impersonating_kubeconfig(&self, user: &str, groups: &[&str]) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let path = self
            .dir
            .join(format!("kubeconfig-as-{}-{n}.yaml", sanitize(user, 40)));
        let yaml = self.kubeconfig_yaml(&self.admin_token, Some(user), groups);
        write_private(&path, yaml.as_bytes()).expect("write impersonating kubeconfig");
        path
    }

    /// Creates a namespace `<prefix>-<n>-<random>` and returns its name.
    pub async fn create_namespace(&self, prefix: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{n}-{}", sanitize(prefix, 40), &random_hex(3));
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(self.admin_client().await)
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        name
    }

    /// `kubectl --kubeconfig <admin kubeconfig>`.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("kubectl"));
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    /// Server-side applies (field manager [`FIELD_MANAGER`], forced) every
    /// document of a multi-document YAML string as admin, and waits until the
    /// CustomResourceDefinitions among them are Established. Namespaced objects
    /// without a namespace go to `namespace` (or `default`).
    pub async fn apply_yaml(&self, yaml: &str, namespace: Option<&str>) -> anyhow::Result<()> {
        let client = self.admin_client().await;
        let crds = apply_documents(&client, yaml, namespace).await?;
        wait_established(&client, &crds).await
    }

    // ---------------------------------------------------------------- startup

    /// A control plane of the caller's own, without this project's CRDs (to install them the
    /// way users do). Its processes stop when the test binary exits.
    pub async fn start_without_crds() -> anyhow::Result<ControlPlane> {
        Self::start(false).await
    }

    async fn start(with_crds: bool) -> anyhow::Result<ControlPlane> {
        install_exit_hooks();
        let bin_dir = tokio::task::spawn_blocking(locate_tools).await??;
        let started = Instant::now();
        for b in ["etcd", "kube-apiserver", "kubectl"] {
            if !bin_dir.join(b).exists() {
                bail!("{b} not found in {}", bin_dir.display());
            }
        }
        let has_controller_manager = bin_dir.join("kube-controller-manager").exists();

        remove_stale_dirs();
        let dir = std::env::temp_dir().join(format!(
            "tailkeeper-cp-{}-{}",
            std::process::id(),
            random_hex(4)
        ));
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        cleanup_state().dirs.push(dir.clone());

        let ports = free_ports(3)?;
        let (etcd_client, etcd_peer, apiserver_port) = (ports[0], ports[1], ports[2]);

        // Credentials.
        let (sa_key, sa_pub) = (dir.join("sa.key"), dir.join("sa.pub"));
        let (private_pem, public_pem) = generate_sa_key()?;
        write_private(&sa_key, private_pem.as_bytes())?;
        fs::write(&sa_pub, public_pem)?;
        let admin_token = random_hex(24);
        let user_tokens: BTreeMap<String, String> = TEST_USERS
            .iter()
            .map(|(u, _)| (u.to_string(), random_hex(24)))
            .collect();
        let mut csv = format!("{admin_token},{ADMIN_USER},{ADMIN_USER},\"system:masters\"\n");
        for (user, groups) in TEST_USERS {
            let token = &user_tokens[*user];
            if groups.is_empty() {
                csv.push_str(&format!("{token},{user},{user}\n"));
            } else {
                csv.push_str(&format!("{token},{user},{user},\"{}\"\n", groups.join(",")));
            }
        }
        let token_file = dir.join("tokens.csv");
        write_private(&token_file, csv.as_bytes())?;

        let logs = vec![
            ("etcd", dir.join("etcd.log")),
            ("kube-apiserver", dir.join("kube-apiserver.log")),
            (
                "kube-controller-manager",
                dir.join("kube-controller-manager.log"),
            ),
        ];
        eprintln!("test control plane: state and logs in {}", dir.display());

        // etcd
        let peer = format!("http://127.0.0.1:{etcd_peer}");
        let client_url = format!("http://127.0.0.1:{etcd_client}");
        let mut etcd = Command::new(bin_dir.join("etcd"));
        etcd.arg("--name=tailkeeper-test")
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=tailkeeper-test={peer}"))
            .arg("--unsafe-no-fsync=true")
            .arg("--log-level=warn");
        spawn_logged("etcd", etcd, &logs[0].1)?;
        wait_tcp("etcd", etcd_client, &logs[0].1).await?;

        // kube-apiserver
        let cert_dir = dir.join("certs");
        let mut apiserver = Command::new(bin_dir.join("kube-apiserver"));
        apiserver
            .arg(format!("--etcd-servers={client_url}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={apiserver_port}"))
            .arg(format!("--cert-dir={}", cert_dir.display()))
            .arg(format!("--token-auth-file={}", token_file.display()))
            .arg("--authorization-mode=RBAC")
            .arg(format!("--service-account-issuer={SA_ISSUER}"))
            .arg(format!("--service-account-key-file={}", sa_pub.display()))
            .arg(format!(
                "--service-account-signing-key-file={}",
                sa_key.display()
            ))
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            // The kubernetes Service's endpoints would be 127.0.0.1, which
            // Endpoints validation rejects; nothing in tests needs them.
            .arg("--endpoint-reconciler-type=none")
            .arg("--enable-priority-and-fairness=false")
            .arg("--profiling=false");
        if !has_controller_manager {
            // Nobody would create the `default` ServiceAccount pods need.
            apiserver.arg("--disable-admission-plugins=ServiceAccount");
        }
        spawn_logged("kube-apiserver", apiserver, &logs[1].1)?;

        // The self-signed serving cert (server cert, then its CA) appears in --cert-dir.
        let crt = cert_dir.join("apiserver.crt");
        let ca_pem = poll("kube-apiserver serving certificate", &logs[1].1, || {
            let pem = fs::read_to_string(&crt).ok()?;
            last_pem_block(&pem)
        })
        .await?;
        let ca_file = dir.join("ca.crt");
        fs::write(&ca_file, &ca_pem)?;

        let mut cp = ControlPlane {
            bin_dir,
            server: format!("https://127.0.0.1:{apiserver_port}"),
            kubeconfig: dir.join("kubeconfig"),
            dir: dir.clone(),
            ca_pem,
            admin_token,
            user_tokens,
            has_controller_manager,
            logs,
            counter: AtomicU64::new(0),
        };
        let admin_yaml = cp.kubeconfig_yaml(&cp.admin_token, None, &[]);
        write_private(&cp.kubeconfig, admin_yaml.as_bytes())?;

        let client = cp.client_from_yaml(&admin_yaml).await?;
        wait_ready(&client, &cp.logs[1].1).await?;

        if cp.has_controller_manager {
            let mut kcm = Command::new(cp.bin_dir.join("kube-controller-manager"));
            kcm.arg(format!("--kubeconfig={}", cp.kubeconfig.display()))
                .arg(
                    "--controllers=namespace-controller,garbage-collector-controller,\
                     serviceaccount-controller,serviceaccount-token-controller,\
                     root-ca-certificate-publisher-controller,clusterrole-aggregation-controller",
                )
                .arg(format!(
                    "--service-account-private-key-file={}",
                    sa_key.display()
                ))
                .arg(format!("--root-ca-file={}", ca_file.display()))
                .arg("--use-service-account-credentials=false")
                .arg("--leader-elect=false")
                .arg("--bind-address=127.0.0.1")
                .arg("--secure-port=0");
            spawn_logged("kube-controller-manager", kcm, &cp.logs[2].1)?;
            // The serviceaccount controller creating `default/default` shows it works.
            let sas = Api::<ServiceAccount>::namespaced(client.clone(), "default");
            let kcm_log = cp.logs[2].1.clone();
            let start = Instant::now();
            loop {
                if let Some(msg) = exited("kube-controller-manager") {
                    bail!("{msg}\n{}", log_tail(&kcm_log, 40));
                }
                if sas.get_opt("default").await?.is_some() {
                    break;
                }
                if start.elapsed() > READY_TIMEOUT {
                    bail!(
                        "kube-controller-manager did not create default/default ServiceAccount \
                         within {READY_TIMEOUT:?}\n{}",
                        log_tail(&kcm_log, 40)
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        } else {
            cp.logs.pop();
            eprintln!(
                "test control plane: no kube-controller-manager; namespace deletion and GC do not run"
            );
        }

        if with_crds {
            apply_crd_dir(&client).await.context("applying crds/")?;
        }
        eprintln!(
            "test control plane: ready at {} in {:.1}s",
            cp.server,
            started.elapsed().as_secs_f64()
        );
        Ok(cp)
    }

    // ---------------------------------------------------------------- helpers

    fn kubeconfig_yaml(&self, token: &str, as_user: Option<&str>, as_groups: &[&str]) -> String {
        use base64::Engine as _;
        let mut user = serde_json::json!({ "token": token });
        if let Some(u) = as_user {
            user["as"] = u.into();
            if !as_groups.is_empty() {
                user["as-groups"] = as_groups.into();
            }
        }
        let doc = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{
                "name": CLUSTER_NAME,
                "cluster": {
                    "server": self.server,
                    "certificate-authority-data":
                        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem),
                },
            }],
            "users": [{ "name": "test-user", "user": user }],
            "contexts": [{
                "name": CLUSTER_NAME,
                "context": { "cluster": CLUSTER_NAME, "user": "test-user" },
            }],
            "current-context": CLUSTER_NAME,
        });
        serde_yaml::to_string(&doc).expect("kubeconfig yaml")
    }

    async fn client_from_yaml(&self, yaml: &str) -> anyhow::Result<Client> {
        let kubeconfig = Kubeconfig::from_yaml(yaml)?;
        let config =
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }
}

// -------------------------------------------------------------------- tools

fn locate_tools() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("TAILKEEPER_TEST_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/k8s-tools.sh");
    eprintln!(
        "test control plane: running {} (slow only on first use)",
        script.display()
    );
    // stderr is inherited so build progress is visible (it bypasses test capture).
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("run {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed with {}", script.display(), out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| anyhow!("{} printed no bin dir", script.display()))?;
    Ok(PathBuf::from(last.trim()))
}

// ------------------------------------------------------------------ processes

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Children are forked by this thread, which never exits: PR_SET_PDEATHSIG
/// fires when the *thread* that forked a child ends, and tokio test runtimes'
/// threads end with each test.
fn spawner() -> &'static mpsc::Sender<SpawnRequest> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("control-plane-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // The sender lives in a static, so this is not reached; never exit anyway.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn control-plane-spawner thread");
        tx
    })
}

#[derive(Default)]
struct CleanupState {
    children: Vec<(&'static str, Child)>,
    /// The state dirs of the control planes started (the shared one, and any of a test's own).
    dirs: Vec<PathBuf>,
}

fn cleanup_state() -> std::sync::MutexGuard<'static, CleanupState> {
    static STATE: Mutex<CleanupState> = Mutex::new(CleanupState {
        children: Vec::new(),
        dirs: Vec::new(),
    });
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

static ANY_PANIC: AtomicBool = AtomicBool::new(false);

fn spawn_logged(name: &'static str, mut cmd: Command, log: &Path) -> anyhow::Result<()> {
    let file = fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let program = cmd.get_program().to_owned();
    let (tx, rx) = mpsc::channel();
    spawner()
        .send((cmd, tx))
        .map_err(|_| anyhow!("spawner thread is gone"))?;
    let child = rx
        .recv()
        .map_err(|_| anyhow!("spawner thread is gone"))?
        .with_context(|| format!("spawn {}", program.to_string_lossy()))?;
    cleanup_state().children.push((name, child));
    Ok(())
}

/// `Some(description)` when the named child has exited.
fn exited(name: &str) -> Option<String> {
    let mut state = cleanup_state();
    let (_, child) = state.children.iter_mut().find(|(n, _)| *n == name)?;
    match child.try_wait() {
        Ok(Some(status)) => Some(format!("{name} exited early with {status}")),
        Ok(None) => None,
        Err(e) => Some(format!("{name}: wait failed: {e}")),
    }
}

fn install_exit_hooks() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            ANY_PANIC.store(true, Ordering::SeqCst);
            previous(info)
        }));
        // SAFETY: registering a plain extern "C" fn.
        unsafe { libc::atexit(cleanup_at_exit) };
    });
}

extern "C" fn cleanup_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        let mut state = cleanup_state();
        // Kill in reverse start order; Child::kill never signals a reaped pid.
        while let Some((_, mut child)) = state.children.pop() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in std::mem::take(&mut state.dirs) {
            let keep = std::env::var_os("TAILKEEPER_KEEP_TEST_CLUSTER").is_some_and(|v| v != "0");
            if keep || ANY_PANIC.load(Ordering::SeqCst) {
                let _ = writeln!(
                    io::stderr(),
                    "test control plane: kept state and logs in {}",
                    dir.display()
                );
            } else {
                let _ = fs::remove_dir_all(&dir);
            }
        }
    });
}

/// Removes `tailkeeper-cp-<pid>-*` dirs left by test binaries that died.
fn remove_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("tailkeeper-cp-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

// ------------------------------------------------------------------ readiness

async fn poll<T>(
    what: &str,
    log: &Path,
    mut probe: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(20);
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        if let Some(msg) = exited_any() {
            bail!("{msg} while waiting for {what}\n{}", log_tail(log, 40));
        }
        if start.elapsed() > READY_TIMEOUT {
            bail!(
                "timed out after {READY_TIMEOUT:?} waiting for {what}\n{}",
                log_tail(log, 40)
            );
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

fn exited_any() -> Option<String> {
    let names: Vec<&'static str> = cleanup_state().children.iter().map(|(n, _)| *n).collect();
    names.into_iter().find_map(exited)
}

async fn wait_tcp(what: &str, port: u16, log: &Path) -> anyhow::Result<()> {
    poll(what, log, || TcpStream::connect(("127.0.0.1", port)).ok())
        .await
        .map(drop)
}

async fn wait_ready(client: &Client, log: &Path) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(50);
    let mut last_err: String;
    loop {
        let req = http::Request::get("/readyz").body(Vec::new())?;
        match client.request_text(req).await {
            Ok(body) if body.trim() == "ok" => return Ok(()),
            Ok(body) => last_err = body,
            Err(e) => last_err = e.to_string(),
        }
        if let Some(msg) = exited_any() {
            bail!("{msg} while waiting for /readyz\n{}", log_tail(log, 60));
        }
        if start.elapsed() > READY_TIMEOUT {
            bail!(
                "kube-apiserver not ready after {READY_TIMEOUT:?}; last /readyz: {last_err}\n{}",
                log_tail(log, 60)
            );
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(1000));
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let tail = all[all.len().saturating_sub(lines)..].join("\n");
            format!("--- last {lines} lines of {} ---\n{tail}", path.display())
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

// ---------------------------------------------------------------- manifests

async fn apply_crd_dir(client: &Client) -> anyhow::Result<()> {
    let dir = match std::env::var_os("TAILKEEPER_TEST_CRDS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("crds"),
    };
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(());
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    let mut crds = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
        crds.extend(
            apply_documents(client, &text, None)
                .await
                .with_context(|| format!("apply {}", file.display()))?,
        );
    }
    wait_established(client, &crds).await
}

/// Applies every document; returns the names of the CRDs among them.
async fn apply_documents(
    client: &Client,
    yaml: &str,
    namespace: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    use serde::Deserialize as _;
    let mut crds = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_json::Value::deserialize(doc)?;
        if value.is_null() {
            continue; // empty document
        }
        let tm: TypeMeta =
            serde_json::from_value(value.clone()).context("document without apiVersion/kind")?;
        let gvk = GroupVersionKind::try_from(&tm)?;
        let name = value["metadata"]["name"]
            .as_str()
            .ok_or_else(|| anyhow!("{} without metadata.name", tm.kind))?
            .to_owned();
        let (resource, caps) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .with_context(|| format!("discover {}/{}", tm.api_version, tm.kind))?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Cluster => Api::all_with(client.clone(), &resource),
            Scope::Namespaced => {
                let ns = value["metadata"]["namespace"]
                    .as_str()
                    .or(namespace)
                    .unwrap_or("default");
                Api::namespaced_with(client.clone(), ns, &resource)
            }
        };
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&value),
        )
        .await
        .map_err(concise)
        .with_context(|| format!("apply {} {name}", tm.kind))?;
        if gvk.group == "apiextensions.k8s.io" && gvk.kind == "CustomResourceDefinition" {
            crds.push(name);
        }
    }
    Ok(crds)
}

/// kube's API errors print the whole Status twice; keep code, reason, message.
fn concise(e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(s) => anyhow!("{} {}: {}", s.code, s.reason, s.message),
        other => other.into(),
    }
}

async fn wait_established(client: &Client, crds: &[String]) -> anyhow::Result<()> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    for name in crds {
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(api.clone(), name, conditions::is_crd_established()),
        )
        .await
        .map_err(|_| anyhow!("CRD {name} not Established within 30s"))??;
    }
    Ok(())
}

// -------------------------------------------------------------------- misc

fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    // Hold all listeners until every port is chosen so they are distinct.
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    Ok(listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<io::Result<_>>()?)
}

fn random_hex(bytes: usize) -> String {
    use ring::rand::SecureRandom as _;
    let mut buf = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .expect("system randomness");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// An ECDSA P-256 key pair for signing/verifying ServiceAccount tokens:
/// (private key as PKCS#8 PEM, public key as SubjectPublicKeyInfo PEM).
fn generate_sa_key() -> anyhow::Result<(String, String)> {
    use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow!("generate ECDSA key"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| anyhow!("parse generated ECDSA key"))?;
    // SubjectPublicKeyInfo { id-ecPublicKey, prime256v1 } header, then the
    // 65-byte uncompressed point.
    const SPKI_P256_PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    let mut spki = SPKI_P256_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    Ok((pem("PRIVATE KEY", pkcs8.as_ref()), pem("PUBLIC KEY", &spki)))
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The CA certificate of kube-apiserver's self-signed `apiserver.crt`, which
/// holds the serving certificate followed by its CA (`None` while incomplete).
fn last_pem_block(pem: &str) -> Option<String> {
    const END: &str = "-----END CERTIFICATE-----";
    if pem.matches(END).count() < 2 {
        return None;
    }
    let end = pem.rfind(END)? + END.len();
    let begin = pem[..end].rfind("-----BEGIN CERTIFICATE-----")?;
    Some(format!("{}\n", &pem[begin..end]))
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    f.write_all(contents)?;
    Ok(())
}

/// Lower-case DNS-label-ish: `[a-z0-9-]`, no leading/trailing `-`, at most `max` chars.
fn sanitize(s: &str, max: usize) -> String {
    let mut out: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(max)
        .collect();
    while out.ends_with('-') {
        out.pop();
    }
    let out = out.trim_start_matches('-').to_owned();
    if out.is_empty() {
        "test".to_owned()
    } else {
        out
    }
}
