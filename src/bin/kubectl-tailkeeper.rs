//! `kubectl tailkeeper`: ask for access to the tailnet, decide on requests, see grants and who
//! holds what, with the current kubeconfig. Thin: the decisions are in `tailkeeper::kubectl`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use tailkeeper::api::{AccessGrant, AccessPolicy, Decision};
use tailkeeper::grants::terms_of;
use tailkeeper::kubectl::request::{self, Access, Request};
use tailkeeper::kubectl::{decide, show, Error, Session};

/// The field manager of the plugin's writes.
const FIELD_MANAGER: &str = "kubectl-tailkeeper";

/// Just-in-time access to a Tailscale tailnet, governed by Tailkeeper: request access, approve
/// or deny requests, and see grants and who holds what. Uses the kubeconfig as kubectl does
/// (KUBECONFIG, the current context and its namespace).
#[derive(Parser)]
#[command(name = "kubectl-tailkeeper", bin_name = "kubectl tailkeeper", version)]
struct Cli {
    /// The namespace of the grants and policies (default: the kubeconfig context's).
    #[arg(long, short = 'n', global = true)]
    namespace: Option<String>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true)]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ask for access: creates an AccessGrant requested by you, for an item the AccessPolicy
    /// lists as grantable.
    Request(RequestArgs),
    /// Approve a grant awaiting a decision (you must be one of its approvers, and not its
    /// requester).
    Approve(DecideArgs),
    /// Deny a grant awaiting a decision: it ends as Denied and never activates.
    Deny(DecideArgs),
    /// Grants awaiting a decision that you may give (never your own requests).
    Pending,
    /// Your grants (those you requested), with their phase and time left.
    Grants {
        /// Every grant in the namespace, whoever requested it.
        #[arg(long)]
        all: bool,
    },
    /// Who holds what: an AccessPolicy's entitlements inventory.
    Access(tailkeeper::access::Query),
}

#[derive(Args)]
struct RequestArgs {
    #[command(flatten)]
    access: AccessArgs,
    /// The Tailscale login receiving access, for example alice@example.com.
    #[arg(long, value_name = "LOGIN")]
    user: String,
    /// How long the access lasts once active, for example 2h or 30m.
    #[arg(
        long = "for",
        value_name = "DURATION",
        required_unless_present = "standing",
        conflicts_with = "standing"
    )]
    duration: Option<String>,
    /// Ask for standing access, until removed (only where the policy allows it).
    #[arg(long)]
    standing: bool,
    /// Why the access is needed (approvers and access reviews read it).
    #[arg(long)]
    reason: String,
    /// The AccessPolicy that lists the item (in the grant's namespace).
    #[arg(long)]
    policy: String,
    /// The grant's name (default: generated from the login and the item).
    #[arg(long)]
    name: Option<String>,
}

/// The item asked for: exactly one.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct AccessArgs {
    /// Membership of a policy-file group, for example group:prod-db (or prod-db).
    #[arg(long)]
    group: Option<String>,
    /// A Tailscale role: admin, it-admin, network-admin, billing-admin, auditor or member.
    #[arg(long)]
    role: Option<String>,
    /// A network rule template of the policy, by name.
    #[arg(long)]
    rule: Option<String>,
    /// An SSH rule template of the policy, by name.
    #[arg(long)]
    ssh_rule: Option<String>,
    /// A posture attribute template of the policy, by name.
    #[arg(long)]
    posture: Option<String>,
}

impl AccessArgs {
    fn access(self) -> Option<Access> {
        self.group
            .map(Access::Group)
            .or(self.role.map(Access::Role))
            .or(self.rule.map(Access::Rule))
            .or(self.ssh_rule.map(Access::SshRule))
            .or(self.posture.map(Access::Posture))
    }
}

#[derive(Args)]
struct DecideArgs {
    /// The AccessGrant's name.
    name: String,
    /// The approver group you decide through (default: the first of the item's approver
    /// groups you are in; none when the policy lists you by name).
    #[arg(long)]
    group: Option<String>,
    /// A comment kept with the decision (for a denial: why).
    #[arg(long)]
    comment: Option<String>,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Error> {
    let session = Session::connect(cli.context.as_deref(), cli.namespace.as_deref()).await?;
    match cli.command {
        Command::Request(args) => request(&session, args).await,
        Command::Approve(args) => decide(&session, args, Decision::Approved).await,
        Command::Deny(args) => decide(&session, args, Decision::Denied).await,
        Command::Pending => pending(&session).await,
        Command::Grants { all } => grants(&session, all).await,
        Command::Access(query) => access(&session, &query).await,
    }
}

fn grants_api(s: &Session) -> Api<AccessGrant> {
    Api::namespaced(s.client.clone(), &s.namespace)
}

fn params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

/// The AccessPolicy `name`, if it exists and may be read (who may not read policies can still
/// request and decide: the cluster judges).
async fn policy(s: &Session, name: &str) -> Result<Option<AccessPolicy>, Error> {
    let policies: Api<AccessPolicy> = Api::namespaced(s.client.clone(), &s.namespace);
    match policies.get_opt(name).await {
        Ok(p) => Ok(p),
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(None),
        Err(e) => Err(Error::from_kube(format!("read AccessPolicy {name}"), e)),
    }
}

async fn request(s: &Session, args: RequestArgs) -> Result<(), Error> {
    let access = args.access.access().ok_or_else(|| {
        Error::Invalid("name the access: --group, --role, --rule, --ssh-rule or --posture".into())
    })?;
    let wanted = Request {
        policy: args.policy,
        user: args.user,
        access,
        duration: if args.standing { None } else { args.duration },
        reason: args.reason,
        name: args.name,
    };
    let me = s.whoami().await?;
    let grant = request::grant(&wanted, &me.user)?;
    let policies: Api<AccessPolicy> = Api::namespaced(s.client.clone(), &s.namespace);
    let policy = match policies.get_opt(&wanted.policy).await {
        Ok(Some(p)) => Some(p),
        Ok(None) => {
            return Err(Error::NotFound {
                what: format!("AccessPolicy {}", wanted.policy),
                namespace: s.namespace.clone(),
                hint: format!(
                    "a grant names a policy of its own namespace; list them with kubectl get accesspolicies -n {}",
                    s.namespace
                ),
            })
        }
        // Who may not read policies can still ask: the operator judges the request.
        Err(kube::Error::Api(status)) if status.code == 403 => None,
        Err(e) => return Err(Error::from_kube(format!("read AccessPolicy {}", wanted.policy), e)),
    };
    if let Some(p) = &policy {
        request::precheck(&wanted.policy, &p.spec, &grant)?;
    }
    let created = grants_api(s)
        .create(&params(), &grant)
        .await
        .map_err(|e| Error::from_kube("create the AccessGrant", e))?;
    print!(
        "{}",
        request::created(&created, &s.namespace, policy.as_ref().map(|p| &p.spec))
    );
    Ok(())
}

async fn decide(s: &Session, args: DecideArgs, decision: Decision) -> Result<(), Error> {
    let me = s.whoami().await?;
    let name = &args.name;
    let grant = grants_api(s)
        .get_opt(name)
        .await
        .map_err(|e| Error::from_kube(format!("read AccessGrant {name}"), e))?
        .ok_or_else(|| Error::NotFound {
            what: format!("AccessGrant {name}"),
            namespace: s.namespace.clone(),
            hint: format!(
                "kubectl tailkeeper pending -n {} lists the grants awaiting your decision",
                s.namespace
            ),
        })?;
    let policy = policy(s, &grant.spec.policy_ref.name).await?;
    let terms = policy
        .as_ref()
        .and_then(|p| terms_of(&p.spec, &grant.spec.access));
    decide::decidable(&grant, terms, decision)?;
    let group = args
        .group
        .clone()
        .or_else(|| decide::approver_group(terms, &me));
    print!(
        "{}",
        decide::summary(&grant, decision, &me, group.as_deref(), Timestamp::now())
    );
    let verb = match decision {
        Decision::Approved => "approve",
        Decision::Denied => "deny",
    };
    confirm(args.yes, verb)?;
    let patch = decide::patch(
        &grant,
        &me,
        decision,
        group.as_deref(),
        args.comment.as_deref(),
    )?;
    grants_api(s)
        .patch(
            name,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..Default::default()
            },
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| Error::from_kube(format!("{verb} AccessGrant {name}"), e))?;
    let ns = &s.namespace;
    match decision {
        Decision::Approved => println!(
            "accessgrant.tailkeeper.io/{name} approved: Tailkeeper activates it once it has checked the approval (kubectl tailkeeper grants --all -n {ns})"
        ),
        Decision::Denied => println!(
            "accessgrant.tailkeeper.io/{name} denied: Tailkeeper ends it as Denied once it has checked the denial (kubectl tailkeeper grants --all -n {ns})"
        ),
    }
    Ok(())
}

/// Go on only with `--yes`, or once the person at the terminal says yes.
fn confirm(yes: bool, verb: &str) -> Result<(), Error> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::NotConfirmed(format!(
            "nothing done: stdin is not a terminal, so nobody can confirm; to {verb} the grant above, run again with --yes"
        )));
    }
    eprint!("{verb}? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::NotConfirmed(format!("nothing done: cannot read the answer: {e}")))?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(Error::NotConfirmed("nothing done".to_string())),
    }
}

async fn pending(s: &Session) -> Result<(), Error> {
    let me = s.whoami().await?;
    let ns = &s.namespace;
    let grants = grants_api(s)
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::from_kube(format!("list AccessGrants in namespace {ns}"), e))?
        .items;
    let policies = Api::<AccessPolicy>::namespaced(s.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| {
            Error::from_kube(
                format!("list AccessPolicies in namespace {ns} (they say who may decide)"),
                e,
            )
        })?
        .items;
    let waiting = decide::pending(&grants, &policies, &me);
    if waiting.is_empty() {
        println!(
            "No grants in namespace {ns} await a decision you ({}) may give.",
            me.user
        );
        return Ok(());
    }
    print!("{}", show::pending_table(&waiting, Timestamp::now()));
    println!(
        "\nDecide with: kubectl tailkeeper approve NAME -n {ns}   or   kubectl tailkeeper deny NAME -n {ns} --comment WHY"
    );
    Ok(())
}

async fn grants(s: &Session, all: bool) -> Result<(), Error> {
    let me = if all { None } else { Some(s.whoami().await?) };
    let ns = &s.namespace;
    let grants = grants_api(s)
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::from_kube(format!("list AccessGrants in namespace {ns}"), e))?
        .items;
    let shown: Vec<&AccessGrant> = grants
        .iter()
        .filter(|g| match &me {
            Some(me) => g.spec.requested_by.as_deref() == Some(me.user.as_str()),
            None => true,
        })
        .collect();
    if shown.is_empty() {
        match &me {
            Some(me) => println!(
                "No grants requested by {} in namespace {ns} (--all shows everyone's).",
                me.user
            ),
            None => println!("No grants in namespace {ns}."),
        }
        return Ok(());
    }
    print!("{}", show::grants_table(&shown, Timestamp::now(), all));
    Ok(())
}

async fn access(s: &Session, query: &tailkeeper::access::Query) -> Result<(), Error> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let stale = tailkeeper::access::export(&s.client, &s.namespace, query, &mut out).await?;
    if let Some(message) = stale {
        eprintln!("warning: {message}; showing the inventory last published");
    }
    Ok(())
}
