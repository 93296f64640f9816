use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser, Subcommand, ValueEnum};
use tailkeeper::controller::leader::{LeaderElection, Timings};
use tailkeeper::controller::{self, RunConfig, Settings};

/// Tailkeeper: access governance for Tailscale, as a Kubernetes operator.
#[derive(Parser)]
#[command(name = "tailkeeper", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator against the cluster of the current kubeconfig (or the in-cluster
    /// service account).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML (what `crds/` holds).
    Crds {
        /// Print the CRD reference as Markdown instead (what docs/crd-reference.md holds).
        #[arg(long)]
        markdown: bool,
    },
    /// Who holds what: an AccessPolicy's entitlements inventory, as published by the operator
    /// (reads the policy and its ConfigMaps with the current kubeconfig).
    Access(AccessArgs),
}

#[derive(clap::Args)]
struct AccessArgs {
    #[command(flatten)]
    query: tailkeeper::access::Query,
    /// The namespace of the policy when --policy has none (default: the kubeconfig's).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only this namespace (for namespaced RBAC); all namespaces when unset.
    #[arg(long, env = "WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, env = "TAILKEEPER_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Address of the Tailscale webhook endpoint (`POST /tailscale/<namespace>/<integration>`);
    /// off when unset. Integrations opt in with spec.webhook.
    #[arg(long, env = "TAILKEEPER_WEBHOOK_LISTEN")]
    webhook_listen: Option<SocketAddr>,
    /// Where the other replicas reach this one's webhook endpoint (for example
    /// `http://10.1.2.3:8081`; by default the pod's IP from `POD_IP`, which the chart sets, and
    /// the webhook port). A standby passes each
    /// delivery it receives on to the leader's; without it, deliveries reaching a standby get
    /// 503 and are retried by Tailscale.
    #[arg(long, env = "TAILKEEPER_WEBHOOK_ADVERTISE_URL")]
    webhook_advertise_url: Option<String>,
    /// Log format.
    #[arg(long, env = "TAILKEEPER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Timeout of one Tailscale API request, in seconds.
    #[arg(long, env = "TAILKEEPER_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    request_timeout_secs: u64,
    /// Attempts per Tailscale request (retries on 429, 5xx and timeouts).
    #[arg(long, env = "TAILKEEPER_MAX_ATTEMPTS", default_value_t = 5)]
    max_attempts: u32,
    /// API hosts the operator sends credentials to (repeatable; `host` or `host:port`). Default:
    /// Tailscale's API host only. An integration whose apiUrl names another host is refused
    /// before its Secret is read.
    #[arg(
        long = "allow-api-host",
        env = "TAILKEEPER_ALLOWED_API_HOSTS",
        value_delimiter = ',',
        default_value = "api.tailscale.com"
    )]
    allowed_api_hosts: Vec<String>,
    /// How the API server names people who sign in with the identity provider: this prefix and
    /// their e-mail (the `usernamePrefix` of its OIDC or structured authentication, with the
    /// `email` claim), e.g. `oidc:`. With it, every person of a directory is also the
    /// Kubernetes user `<prefix><login>` for each e-mail login, so their approvals and
    /// decisions count as theirs without listing `kubernetesUsers`. Unset: only listed
    /// identities map.
    #[arg(long, env = "TAILKEEPER_IDENTITY_USERNAME_PREFIX")]
    identity_username_prefix: Option<String>,
    /// Hosts notifications may be posted to over plain http (repeatable; `host` or
    /// `host:port`; for tests and local receivers). Every other receiver must be https.
    #[arg(
        long = "allow-notification-http-host",
        env = "TAILKEEPER_NOTIFICATION_HTTP_HOSTS",
        value_delimiter = ','
    )]
    notification_http_hosts: Vec<String>,
    /// Attempts per notification (retries on 408, 429, 5xx, timeouts and connection errors).
    #[arg(long, env = "TAILKEEPER_NOTIFICATION_ATTEMPTS", default_value_t = 10)]
    notification_attempts: u32,
    /// Timeout of one notification attempt, in seconds.
    #[arg(
        long,
        env = "TAILKEEPER_NOTIFICATION_TIMEOUT_SECS",
        default_value_t = 10
    )]
    notification_timeout_secs: u64,
    /// How long a notification may keep being retried, in seconds, before it gives up.
    #[arg(
        long,
        env = "TAILKEEPER_NOTIFICATION_GIVE_UP_SECS",
        default_value_t = 600
    )]
    notification_give_up_secs: u64,
    /// The name prefix of the admission policies that prove who approved a grant (the chart's
    /// full name). Grants that need approval activate only while they are installed.
    #[arg(
        long,
        env = "TAILKEEPER_ADMISSION_POLICY_PREFIX",
        default_value = "tailkeeper"
    )]
    admission_policy_prefix: String,
    /// Hold a leader-election Lease before reconciling, so that of several replicas only one
    /// writes. `--leader-election=false` runs the controllers at once (a single local process).
    #[arg(
        long,
        env = "TAILKEEPER_LEADER_ELECTION",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "true",
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
    )]
    leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, env = "TAILKEEPER_LEASE_NAME", default_value = "tailkeeper")]
    lease_name: String,
    /// Namespace of the Lease (the operator's own, from the downward API). Default: the watched
    /// namespace, else `default`.
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// This replica's identity in the Lease, unique among the replicas. Default: `POD_NAME`,
    /// else `<hostname>-<pid>`.
    #[arg(long, env = "TAILKEEPER_LEASE_IDENTITY")]
    lease_identity: Option<String>,
    /// How long the Lease stays valid after each renewal, in seconds. When the leader dies, a
    /// standby takes over within about this long: revocations are late by at most that.
    #[arg(long, env = "TAILKEEPER_LEASE_DURATION_SECS", default_value_t = 15)]
    lease_duration_secs: u64,
    /// How long before the Lease expires the leader renews it, in seconds (also the clock skew
    /// between nodes that is tolerated).
    #[arg(long, env = "TAILKEEPER_LEASE_RENEW_GRACE_SECS", default_value_t = 5)]
    lease_renew_grace_secs: u64,
    /// How often a standby reads the Lease, in seconds.
    #[arg(long, env = "TAILKEEPER_LEASE_RETRY_PERIOD_SECS", default_value_t = 2)]
    lease_retry_period_secs: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds { markdown: true } => {
            print!("{}", tailkeeper::api::reference_markdown());
            ExitCode::SUCCESS
        }
        Command::Crds { markdown: false } => match tailkeeper::api::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot render the CRDs: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Access(args) => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(access(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => {
            tailkeeper::telemetry::init(matches!(args.log_format, LogFormat::Json));
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "tailkeeper failed");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn access(args: AccessArgs) -> anyhow::Result<()> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to Kubernetes (kubeconfig): {e}"))?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config)
        .map_err(|e| anyhow::anyhow!("cannot build the Kubernetes client: {e}"))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let stale = tailkeeper::access::export(&client, &namespace, &args.query, &mut out).await?;
    if let Some(message) = stale {
        eprintln!("warning: {message}; showing the inventory last published");
    }
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let kube_config = kube::Config::infer().await.map_err(|e| {
        anyhow::anyhow!("cannot connect to Kubernetes (kubeconfig or in-cluster config): {e}")
    })?;
    let connect = |config: kube::Config| {
        tailkeeper::controller::kube_client::build(config)
            .map_err(|e| anyhow::anyhow!("cannot build the Kubernetes client: {e}"))
    };
    let client = connect(kube_config.clone())?;
    // The Lease gets a connection of its own (see controller::run).
    let lease_client = connect(kube_config)?;
    let mut settings = Settings {
        request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
        allowed_api_hosts: args
            .allowed_api_hosts
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect(),
        admission_policy_prefix: args.admission_policy_prefix,
        identity_username_prefix: args.identity_username_prefix,
        ..Settings::default()
    };
    settings.retry.max_attempts = args.max_attempts.max(1);
    let notifications = &mut settings.notifications;
    notifications.plain_http_hosts = args
        .notification_http_hosts
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    notifications.retry.max_attempts = args.notification_attempts.max(1);
    notifications.retry.give_up_after = Duration::from_secs(args.notification_give_up_secs);
    notifications.request_timeout = Duration::from_secs(args.notification_timeout_secs.max(1));
    let timings = Timings::new(
        args.lease_duration_secs,
        args.lease_renew_grace_secs,
        args.lease_retry_period_secs,
    )
    .map_err(|e| anyhow::anyhow!("leader-election timings: {e}"))?;
    let leader_election = args.leader_election.then(|| LeaderElection {
        timings,
        lease_name: args.lease_name,
        namespace: args
            .lease_namespace
            .filter(|ns| !ns.is_empty())
            .or_else(|| args.watch_namespace.clone())
            .unwrap_or_else(|| "default".to_string()),
        identity: args
            .lease_identity
            .filter(|id| !id.is_empty())
            .unwrap_or_else(LeaderElection::default_identity),
    });
    let config = RunConfig {
        namespace: args.watch_namespace,
        listen: args.listen,
        webhook_listen: args.webhook_listen,
        webhook_advertise: args.webhook_advertise_url.or_else(|| {
            // In a pod (the chart sets POD_IP): this pod's address and the webhook port.
            let ip: std::net::IpAddr = std::env::var("POD_IP").ok()?.parse().ok()?;
            let port = args.webhook_listen?.port();
            Some(format!("http://{}", SocketAddr::new(ip, port)))
        }),
        settings,
        leader_election,
    };
    controller::run(client, lease_client, config, shutdown_signal()).await
}

/// Resolves on SIGINT or SIGTERM (what Kubernetes sends before killing a pod).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}
