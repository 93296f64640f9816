//! The README's one-command demo, `hack/demo.sh --once`, run as CI would run it: it must bring
//! up etcd, kube-apiserver, the simulator and the operator, show the integration Ready and the
//! policy at `1/4` checks passing (dave is unknown, carol is offboarded but still idle, bob is
//! an engineer holding admin), then stop everything it started and exit 0.
//!
//! The script reuses this build's binaries (`TAILKEEPER_BIN`, `TAILSCALE_SIM_BIN`) and the
//! Kubernetes tools of `hack/k8s-tools.sh` (or `TAILKEEPER_TEST_BIN_DIR`).

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The demo must finish (including teardown) within this.
const TIMEOUT: Duration = Duration::from_secs(300);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// `tailscale-sim` of the same profile as this build, next to `tailkeeper`. Cargo does not
/// build binaries of (dev-)dependencies for tests, so build it here; `None` (and the script
/// builds it) when it cannot be located.
fn simulator_binary() -> Option<PathBuf> {
    let out_dir = Path::new(env!("CARGO_BIN_EXE_tailkeeper")).parent()?;
    let profile = match out_dir.file_name()?.to_str()? {
        "debug" => "dev",
        other => other,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--profile",
            profile,
            "-p",
            "tailscale-sim",
            "--bin",
            "tailscale-sim",
        ])
        .current_dir(repo())
        .stdin(Stdio::null())
        .status()
        .expect("run cargo build -p tailscale-sim");
    assert!(
        status.success(),
        "cargo build -p tailscale-sim failed: {status}"
    );
    let sim = out_dir.join("tailscale-sim");
    sim.exists().then_some(sim)
}

/// Reads a child's pipe to the end on a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Waits for the script; past `TIMEOUT` it gets SIGTERM (its trap stops what it started),
/// then its whole process group SIGKILL.
fn wait_with_timeout(child: &mut Child) -> Result<ExitStatus, String> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for hack/demo.sh") {
            return Ok(status);
        }
        if start.elapsed() > TIMEOUT {
            let pid = child.id() as libc::pid_t;
            // SAFETY: plain kill(2) of our own child and its process group.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let grace = Instant::now();
            while grace.elapsed() < Duration::from_secs(30) {
                if child.try_wait().expect("wait").is_some() {
                    return Err(format!("hack/demo.sh did not finish within {TIMEOUT:?}"));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = child.wait();
            return Err(format!(
                "hack/demo.sh did not finish within {TIMEOUT:?}, nor 30s after SIGTERM"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `(name, pid)` of every process the script reports starting
/// (`    <name>  pid <pid>  log <path>`).
fn started_processes(stdout: &str) -> Vec<(String, u32)> {
    stdout
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [name, "pid", pid, "log", _] => Some((name.to_string(), pid.parse().ok()?)),
                _ => None,
            }
        })
        .collect()
}

/// The port of `<label>  http(s)://127.0.0.1:<port>[/...]` in the summary.
fn summary_port(stdout: &str, label: &str) -> Option<u16> {
    stdout.lines().find_map(|line| {
        let rest = line.trim_start().strip_prefix(label)?;
        let url = rest.trim();
        let after = url.split("127.0.0.1:").nth(1)?;
        after
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    })
}

/// The whitespace-separated words of the last line starting with `prefix` (the report comes
/// after the `kubectl apply` output that names the same objects).
fn row<'a>(stdout: &'a str, prefix: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with(prefix))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default()
}

#[test]
fn demo_script_runs_once_and_cleans_up() {
    let sim_port = free_port();
    let state_dir =
        std::env::temp_dir().join(format!("tailkeeper-demo-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state_dir);

    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("hack/demo.sh"))
        .args(["--once", "--debug", "--sim-port", &sim_port.to_string()])
        .arg("--state-dir")
        .arg(&state_dir)
        .current_dir(repo())
        .env("TAILKEEPER_BIN", env!("CARGO_BIN_EXE_tailkeeper"))
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(sim) = simulator_binary() {
        cmd.env("TAILSCALE_SIM_BIN", sim);
    }
    if let Some(dir) = std::env::var_os("TAILKEEPER_TEST_BIN_DIR") {
        cmd.env("TAILKEEPER_K8S_BIN_DIR", dir);
    }
    // SAFETY: only an async-signal-safe prctl between fork and exec. If this test process
    // dies, the script gets SIGTERM and its trap stops what it started.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            );
            Ok(())
        });
    }

    let started = Instant::now();
    let mut child = cmd.spawn().expect("start hack/demo.sh");
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let status = wait_with_timeout(&mut child);
    let elapsed = started.elapsed();
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    let transcript = format!("--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    eprintln!("hack/demo.sh --once took {:.1}s", elapsed.as_secs_f64());

    let status = status.unwrap_or_else(|e| panic!("{e}\n{transcript}"));
    assert!(
        status.success(),
        "hack/demo.sh exited with {status}\n{transcript}"
    );

    // The integration is Ready and the policy reports 1/4.
    let integration = row(&stdout, "tailscaleintegration.tailkeeper.io/corp");
    assert!(
        integration.contains(&"True") && integration.contains(&"OAuthClient"),
        "integration row: {integration:?}\n{transcript}"
    );
    let policy = row(&stdout, "accesspolicy.tailkeeper.io/corp");
    assert!(
        policy.contains(&"1/4") && policy.contains(&"True"),
        "policy row: {policy:?}\n{transcript}"
    );
    assert!(
        stdout.contains("(1/4 passing)"),
        "checks header\n{transcript}"
    );
    for (check, expected) in [
        ("UserIdentified", vec!["Fail", "dave@example.com"]),
        ("OffboardedAccessRemoved", vec!["Fail", "carol@example.com"]),
        ("AccessControlConfigured", vec!["Pass", "-"]),
        ("UserAccessValid", vec!["Fail", "bob@example.com"]),
    ] {
        let words = row(&stdout, &format!("{check} "));
        assert_eq!(
            words.get(1..),
            Some(expected.as_slice()),
            "check {check}\n{transcript}"
        );
    }
    assert!(
        stdout.contains("export KUBECONFIG=") && stdout.contains("/_sim/state"),
        "how to explore\n{transcript}"
    );

    // The grant walk-through: requested by frank, refused to frank as approver, approved by
    // erin through her group, admin in Tailscale while Active, member again once Expired.
    let grant_rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("frank-admin "))
        .collect();
    assert!(
        grant_rows.len() == 2
            && grant_rows[0].contains(" Active ")
            && grant_rows[1].contains(" Expired "),
        "the grant's rows: {grant_rows:?}\n{transcript}"
    );
    let roles: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("frank in Tailscale: "))
        .collect();
    assert_eq!(
        roles,
        ["\"role\":\"admin\"", "\"role\":\"member\""],
        "frank's role while Active, then after\n{transcript}"
    );
    assert!(
        stdout.contains("you cannot approve your own grant"),
        "frank's own approval refused by the admission policy\n{transcript}"
    );
    assert!(
        stdout.contains("kubectl --context erin patch ag frank-admin"),
        "how to approve by hand\n{transcript}"
    );
    // The example access review opened over the two admins, two undecided.
    let review = row(&stdout, "admins-q4 ");
    assert_eq!(
        review.get(..5),
        Some(["admins-q4", "corp", "Open", "2", "2"].as_slice()),
        "the access review's row\n{transcript}"
    );

    // Everything it started is gone: processes, ports, state dir.
    let processes = started_processes(&stdout);
    let mut names: Vec<&str> = processes.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["etcd", "kube-apiserver", "tailkeeper", "tailscale-sim"],
        "started processes\n{transcript}"
    );
    for (name, pid) in &processes {
        // A live process with the same pid and name would be ours (pid reuse within
        // seconds by a same-named process is not a concern).
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert_ne!(
            comm.trim(),
            name.as_str(),
            "{name} (pid {pid}) survived the demo\n{transcript}"
        );
    }
    let apiserver_port = summary_port(&stdout, "kube-apiserver").expect("apiserver port");
    let operator_port = summary_port(&stdout, "operator").expect("operator port");
    for (what, port) in [
        ("simulator", sim_port),
        ("kube-apiserver", apiserver_port),
        ("operator", operator_port),
    ] {
        assert!(
            port_is_free(port),
            "{what} port {port} still in use after the demo\n{transcript}"
        );
    }
    assert!(
        !state_dir.exists(),
        "state dir {} not removed\n{transcript}",
        state_dir.display()
    );
    assert!(elapsed < TIMEOUT, "took {elapsed:?}\n{transcript}");
}
