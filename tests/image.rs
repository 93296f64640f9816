//! The operator image (built by hack/image.sh with podman from Debian's packages), run as the
//! chart's Deployment runs it: user 65532, read-only root, no capabilities, no privilege
//! escalation, the chart's environment and arguments, and in-cluster configuration: a
//! ServiceAccount token from the TokenRequest API and the cluster's CA at the standard path,
//! `KUBERNETES_SERVICE_HOST`/`PORT` set, no kubeconfig. It must become leader, serve its probes
//! and reconcile the examples under the chart's RBAC.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_yaml::Value;
use support::operator::{chart_identity, demo_simulator, examples, render_chart, CONVERGE};
use support::ControlPlane;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Build the image (cached by podman and cargo after the first time): its reference.
fn build_image() -> String {
    let out = Command::new("bash")
        .arg(repo().join("hack/image.sh"))
        .current_dir(repo())
        .output()
        .expect("hack/image.sh runs");
    assert!(
        out.status.success(),
        "hack/image.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("the image reference")
        .to_string()
}

fn podman() -> Command {
    let mut cmd = Command::new("podman");
    let conf = std::env::var("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache")
        })
        .join("tailkeeper/containers.conf");
    cmd.env("CONTAINERS_CONF", conf);
    cmd
}

/// Removes the container when the test ends, however it ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", &self.0]).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_in_cluster_as_the_chart_runs_it() {
    let image = tokio::task::spawn_blocking(build_image)
        .await
        .expect("build");
    let cp = ControlPlane::shared().await;
    let sim = demo_simulator().await;
    let ns = cp.create_namespace("image").await;
    // The chart's ServiceAccount and RBAC for a namespaced install.
    chart_identity(cp, &ns).await;

    // What the kubelet would mount: a token of the ServiceAccount, the CA, the namespace.
    let admin = cp.admin_client().await;
    let token = Api::<ServiceAccount>::namespaced(admin, &ns)
        .create_token_request(
            "tailkeeper",
            &PostParams::default(),
            &TokenRequest {
                spec: Some(TokenRequestSpec {
                    expiration_seconds: Some(3600),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("TokenRequest")
        .status
        .and_then(|s| s.token)
        .expect("token");
    let mount = tempfile_dir(&ns);
    std::fs::write(mount.join("token"), token).unwrap();
    std::fs::write(mount.join("ca.crt"), cp.ca_pem()).unwrap();
    std::fs::write(mount.join("namespace"), &ns).unwrap();

    // The chart's container, as helm renders it for this namespace.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let rendered = render_chart(
        cp,
        &[
            "--namespace",
            &ns,
            "--set",
            &format!("watchNamespace={ns}"),
            "--set",
            &format!("service.port={port}"),
            "--set",
            "allowedApiHosts={127.0.0.1}",
            "--show-only",
            "templates/deployment.yaml",
        ],
    );
    let deployment: Value = serde_yaml::from_str(&rendered).expect("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], Value::Bool(true));
    assert_eq!(security["allowPrivilegeEscalation"], Value::Bool(false));
    let user = pod["securityContext"]["runAsUser"]
        .as_u64()
        .or_else(|| security["runAsUser"].as_u64())
        .expect("runAsUser");
    let server = url::Url::parse(cp.server_url()).expect("server URL");
    let name = format!("tk-image-{ns}");
    let mut run = podman();
    run.args(["run", "-d", "--name", &name, "--network", "host"])
        .args(["--user", &format!("{user}:{user}")])
        .args(["--read-only", "--cap-drop", "ALL"])
        .args(["--security-opt", "no-new-privileges"])
        .arg("-v")
        .arg(format!(
            "{}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
            mount.display()
        ))
        .args(["-e", "KUBERNETES_SERVICE_HOST=127.0.0.1"])
        .args([
            "-e",
            &format!("KUBERNETES_SERVICE_PORT={}", server.port().expect("port")),
        ])
        .args(["-e", &format!("POD_NAME={name}")])
        .args(["-e", &format!("POD_NAMESPACE={ns}")]);
    for env in container["env"].as_sequence().expect("env") {
        if let (Some(k), Some(v)) = (env["name"].as_str(), env["value"].as_str()) {
            run.args(["-e", &format!("{k}={v}")]);
        }
    }
    run.arg(&image);
    for arg in container["args"].as_sequence().expect("args") {
        run.arg(arg.as_str().expect("arg"));
    }
    let out = run.output().expect("podman run");
    assert!(
        out.status.success(),
        "podman run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _container = Container(name.clone());
    let logs = || {
        let out = podman().args(["logs", &name]).output().expect("logs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };

    // It leads and serves its probes...
    let ready = format!("http://127.0.0.1:{port}/readyz");
    let leads = within(Duration::from_secs(60), || async {
        let r = reqwest::get(&ready).await.ok()?;
        (r.status().is_success() && r.text().await.ok()? == "ready").then_some(())
    })
    .await;
    assert!(leads, "not ready; its logs:\n{}", logs());
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .expect("healthz");
    assert!(health.status().is_success());

    // ...and reconciles the examples with its in-cluster identity.
    cp.apply_yaml(&examples(&sim), Some(&ns))
        .await
        .expect("examples apply");
    let integrations: Api<tailkeeper::api::TailscaleIntegration> =
        Api::namespaced(cp.admin_client().await, &ns);
    let synced = within(CONVERGE, || async {
        let i = integrations.get("corp").await.ok()?;
        let c = tailkeeper::api::find_condition(&i.status?.conditions, "Ready")?.clone();
        (c.status == "True").then_some(())
    })
    .await;
    assert!(synced, "integration not Ready; its logs:\n{}", logs());
    let text = logs();
    assert!(text.contains("became leader"), "{text}");
}

/// Whether `check` answers within `limit` (polled every 200 ms).
async fn within<F, Fut>(limit: Duration, check: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await.is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// A directory for the ServiceAccount mount, readable by user 65532.
fn tempfile_dir(ns: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tailkeeper-image-{ns}"));
    std::fs::create_dir_all(&dir).expect("mount dir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}
