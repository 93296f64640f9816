//! The contract with Tailscale's official Go client (`tailscale.com/client/tailscale/v2`):
//! `hack/contract` drives an in-process simulator with it, so the simulator cannot drift from
//! the wire format real clients expect. It needs `go` on `PATH` and fails, never skips,
//! without it: CI has Go.
//!
//! The Go program is built once per run into Cargo's scratch directory for integration tests,
//! from the committed `go.mod`/`go.sum` (`-mod=readonly`: a dependency change must be committed,
//! not made silently), with the local toolchain only and no cgo. Go's build cache keeps
//! rebuilds cheap.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use tailscale_sim::{SimConfig, SimDevice, SimUser, Simulator};
use tokio::process::Command;

const USER: &str = "alice@example.com";
const DEVICE: &str = "nContract1CNTRL";

/// The scopes `hack/contract` requests (its `oauthScopes`).
const SCOPES: &[&str] = &[
    "users",
    "policy_file",
    "devices:core",
    "devices:posture_attributes",
    "webhooks",
];

/// Cold builds (module download, compiling the client and the standard library) take tens of
/// seconds on a small machine; a cached one a second or two.
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);
/// The program itself has a 90 s watchdog; this only guards against it not even starting.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn contract_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the simulator crate lives in the workspace")
        .join("hack")
        .join("contract")
}

/// Everything a command printed, for failure messages.
fn printed(output: &Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `go` with the environment every invocation here uses.
fn go() -> Command {
    let mut command = Command::new("go");
    command
        .current_dir(contract_dir())
        // The toolchain on PATH, never a download; a pure-Go static binary.
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        // go.sum is committed: fail rather than update it. No VCS stamping (worktrees, CI
        // checkouts without .git).
        .env("GOFLAGS", "-mod=readonly -buildvcs=false")
        .kill_on_drop(true);
    command
}

async fn build_contract() -> PathBuf {
    match go().arg("version").output().await {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "`go version` failed; the Go client contract test needs a working Go toolchain\n{}",
            printed(&output)
        ),
        Err(err) => panic!(
            "cannot run `go` ({err}): the Go client contract test needs Go (1.24 or later) on \
             PATH. Install it from https://go.dev/dl/ and run the test again; it is never skipped."
        ),
    }
    let binary = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tailscale-go-contract");
    let started = Instant::now();
    let output = tokio::time::timeout(
        BUILD_TIMEOUT,
        go().arg("build").arg("-o").arg(&binary).arg(".").output(),
    )
    .await
    .unwrap_or_else(|_| panic!("`go build` of hack/contract took over {BUILD_TIMEOUT:?}"))
    .expect("`go build` starts");
    assert!(
        output.status.success(),
        "`go build` of hack/contract failed ({})\n{}",
        output.status,
        printed(&output)
    );
    eprintln!("go build of hack/contract: {:?}", started.elapsed());
    binary
}

#[tokio::test]
async fn official_go_client_accepts_every_answer() {
    // Build first: the simulator's OAuth tokens and API key must not age during a cold build.
    let binary = build_contract().await;

    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator starts");
    sim.add_user(SimUser::member("owner@example.com", "owner", "active"));
    sim.add_user(SimUser::member("admin@example.com", "admin", "active"));
    sim.add_user(SimUser::member(USER, "member", "active"));
    sim.add_user(SimUser {
        login_name: "guest@other.example".to_string(),
        user_type: "shared".to_string(),
        ..SimUser::default()
    });
    sim.add_device(SimDevice {
        id: DEVICE.to_string(),
        name: "alice-laptop.example.com".to_string(),
        user: USER.to_string(),
        os: "macOS".to_string(),
        ..SimDevice::default()
    });
    let oauth = sim.create_oauth_client(SCOPES);
    let key = sim.create_api_key(Duration::from_secs(7 * 24 * 3600));

    let started = Instant::now();
    let output = tokio::time::timeout(
        RUN_TIMEOUT,
        Command::new(&binary)
            .env("TAILSCALE_SIM_URL", sim.url())
            .env("TAILSCALE_SIM_API_KEY", &key.key)
            .env("TAILSCALE_SIM_API_KEY_ID", &key.id)
            .env("TAILSCALE_SIM_OAUTH_CLIENT_ID", &oauth.id)
            .env("TAILSCALE_SIM_OAUTH_CLIENT_SECRET", &oauth.secret)
            .env("TAILSCALE_SIM_USER", USER)
            .env("TAILSCALE_SIM_DEVICE", DEVICE)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("the contract program ran over {RUN_TIMEOUT:?}"))
    .expect("the contract program starts");
    eprintln!("contract run: {:?}", started.elapsed());
    assert!(
        output.status.success(),
        "the official Go client disagrees with the simulator ({}):\n{}",
        output.status,
        printed(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}");
    assert!(
        stdout.contains("contract: all "),
        "the contract program exited 0 without its summary line:\n{}",
        printed(&output)
    );

    // The program cleaned up after itself, and every endpoint it exercised was counted.
    assert!(sim.user_invites().is_empty(), "{:?}", sim.user_invites());
    for endpoint in [
        "oauth.token",
        "users.list",
        "users.get",
        "acl.get",
        "acl.set",
        "acl.validate",
        "devices.list",
        "attributes.get",
        "attributes.set",
        "attributes.delete",
        "keys.list",
        "keys.get",
        "invites.create",
        "invites.list",
        "invites.get",
        "invites.resend",
        "invites.delete",
        "webhooks.create",
        "webhooks.list",
        "webhooks.get",
        "webhooks.update",
        "webhooks.rotate",
        "webhooks.delete",
    ] {
        assert!(sim.call_count(endpoint) > 0, "{endpoint} was never called");
    }
}
