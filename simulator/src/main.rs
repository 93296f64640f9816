//! `tailscale-sim`: the Tailscale API simulator as a process, for the demo and for tests that
//! need it out of process.
//!
//! After binding it prints exactly one line, `tailscale-sim listening on http://ADDR`, to
//! stdout, so a parent started with `--listen 127.0.0.1:0` can learn the port. Logs go to
//! stderr (`RUST_LOG`, default `info`).

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use tailscale_sim::seed::Seed;
use tailscale_sim::{SimConfig, Simulator};

#[derive(Debug, Parser)]
#[command(
    name = "tailscale-sim",
    about = "A stateful simulator of the Tailscale API v2"
)]
struct Args {
    /// Address to listen on; loopback only (e.g. 127.0.0.1:8088, or port 0 for any free port).
    #[arg(long, default_value = "127.0.0.1:8088")]
    listen: String,
    /// Seed file (JSON) with users, devices, policy and fixed credentials.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Tailnet (organization) name accepted in `/tailnet/{tailnet}/` paths.
    #[arg(long, default_value = "example.com")]
    tailnet: String,
    /// Latency added to every Tailscale API request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

/// Parse `--listen`, refusing anything but loopback: the simulator is a test double and must
/// never be reachable from another machine.
fn loopback_addr(listen: &str) -> anyhow::Result<SocketAddr> {
    let addr: SocketAddr = match listen.strip_prefix("localhost:") {
        Some(port) => SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            port.parse::<u16>()
                .with_context(|| format!("invalid port in --listen {listen:?}"))?,
        )),
        None => listen
            .parse()
            .with_context(|| format!("invalid --listen address {listen:?} (want IP:PORT)"))?,
    };
    if !addr.ip().is_loopback() {
        bail!(
            "refusing to listen on {addr}: only loopback addresses (127.0.0.0/8, [::1]) are allowed"
        );
    }
    Ok(addr)
}

async fn shutdown_requested() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let args = Args::parse();
    let addr = loopback_addr(&args.listen)?;
    // Read the seed before binding so a bad seed fails without ever announcing a port.
    let seed = args.seed.as_deref().map(Seed::load).transpose()?;

    let config = SimConfig {
        tailnet_name: args.tailnet,
        ..SimConfig::default()
    };
    let sim = Simulator::start_on(config, addr).await?;
    if let Some(seed) = &seed {
        sim.apply_seed(seed)?;
    }
    sim.set_latency(Duration::from_millis(args.latency_ms));

    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "tailscale-sim listening on {}", sim.url())?;
        stdout.flush()?;
    }

    shutdown_requested().await;
    tracing::info!("shutting down");
    sim.shutdown();
    if tokio::time::timeout(Duration::from_secs(5), sim.wait_stopped())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 5s; exiting anyway");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            loopback_addr("127.0.0.1:0").expect("loopback"),
            "127.0.0.1:0".parse::<SocketAddr>().expect("addr")
        );
        assert!(loopback_addr("[::1]:8088").is_ok());
        assert!(loopback_addr("localhost:8088").is_ok());
        assert!(loopback_addr("0.0.0.0:8088").is_err());
        assert!(loopback_addr("192.168.1.10:8088").is_err());
        assert!(loopback_addr("nonsense").is_err());
    }
}
