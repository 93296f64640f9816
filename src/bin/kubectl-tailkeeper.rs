//! `kubectl tailkeeper`: ask for access to the tailnet, decide on requests, see grants and who
//! holds what, and review access, with the current kubeconfig. Thin: the decisions are in
//! `tailkeeper::kubectl`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use tailkeeper::access::OutputFormat;
use tailkeeper::api::{
    AccessGrant, AccessPolicy, AccessReview, AccessReviewDecision, Decision, ReviewDecision,
};
use tailkeeper::grants::terms_of;
use tailkeeper::kubectl::request::{self, Access, Request};
use tailkeeper::kubectl::review::{self, Campaign, Filter, Selection};
use tailkeeper::kubectl::{decide, show, Error, Identity, Session};
use tailkeeper::records::{self, ReadError};

/// The field manager of the plugin's writes.
const FIELD_MANAGER: &str = "kubectl-tailkeeper";

/// Just-in-time access to a Tailscale tailnet, governed by Tailkeeper: request access, approve
/// or deny requests, see grants and who holds what, and decide in access reviews. Uses the
/// kubeconfig as kubectl does (KUBECONFIG, the current context and its namespace).
#[derive(Parser)]
#[command(name = "kubectl-tailkeeper", bin_name = "kubectl tailkeeper", version)]
struct Cli {
    /// The namespace of the grants, policies and reviews (default: the kubeconfig context's).
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
    /// Grants awaiting a decision that you may give (never your own requests), and the open
    /// access reviews with items awaiting yours.
    Pending,
    /// Your grants (those you requested), with their phase and time left.
    Grants {
        /// Every grant in the namespace, whoever requested it.
        #[arg(long)]
        all: bool,
    },
    /// Who holds what: an AccessPolicy's entitlements inventory.
    Access(tailkeeper::access::Query),
    /// Access reviews: without NAME, the open campaigns and your share of each; with NAME, the
    /// campaign's items assigned to you (by name or through a group you are in); with --keep
    /// or --revoke, decide some of them at once.
    #[command(after_help = REVIEW_EXAMPLES)]
    Review(ReviewArgs),
    /// The evidence record of an access review that is over (Completed or Overdue): every
    /// item with its decision, reviewer, time, comment and what was removed, the four checks
    /// at the end and the grants over the period. `-o html` is a self-contained report to
    /// open in a browser and print to PDF.
    Evidence {
        /// The AccessReview.
        name: String,
        /// csv, json or html.
        #[arg(short = 'o', long = "output", default_value = "csv", value_parser = ["csv", "json", "html"])]
        output: String,
    },
}

const REVIEW_EXAMPLES: &str = "Examples:
  kubectl tailkeeper review -A                           open campaigns, your items and time left
  kubectl tailkeeper review q3-admins --undecided        your undecided items of q3-admins
  kubectl tailkeeper review q3-admins -o csv > mine.csv
  kubectl tailkeeper review q3-admins --revoke --items i3f2a9c0d41be,i0b1c2d3e4f5 --comment \"left the team\"
  kubectl tailkeeper review q3-admins --keep --all-undecided --comment \"still on call\" --yes";

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

#[derive(Args)]
#[command(group(ArgGroup::new("decision").args(["keep", "revoke"])))]
#[command(group(
    ArgGroup::new("selection")
        .args(["items", "all_undecided", "user", "entitlement"])
        .multiple(true)
))]
struct ReviewArgs {
    /// The AccessReview (campaign). Without it: the open campaigns and your share of each.
    name: Option<String>,
    /// List the open campaigns of every namespace (without NAME).
    #[arg(long, short = 'A', conflicts_with = "name")]
    all_namespaces: bool,
    /// Only the items of this Tailscale login; with --keep/--revoke, decide those.
    #[arg(long, value_name = "LOGIN", requires = "name")]
    user: Option<String>,
    /// Only the items of this entitlement (its id: role:admin, group:prod, grant:3f2a9c0d41be);
    /// with --keep/--revoke, decide those.
    #[arg(long, value_name = "ID", requires = "name")]
    entitlement: Option<String>,
    /// Only the items nobody decided yet (a decision always takes only those).
    #[arg(long, requires = "name")]
    undecided: bool,
    /// The reviewer group you decide through; also limits your items to those assigned to you
    /// by name or through it (default: the one of your groups that covers every selected item
    /// not assigned to you by name).
    #[arg(long, value_name = "GROUP", requires = "name")]
    group: Option<String>,
    /// How to list the items.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table, requires = "name", conflicts_with = "decision")]
    output: OutputFormat,
    /// Keep the selected items: the access stays, recorded as kept by you.
    #[arg(long, requires_all = ["name", "selection"])]
    keep: bool,
    /// Revoke the selected items: Tailkeeper removes the access from Tailscale (needs
    /// --comment).
    #[arg(long, requires_all = ["name", "selection", "comment"])]
    revoke: bool,
    /// Decide these items (ids from the listing, comma-separated or repeated); an id that is
    /// not an undecided item assigned to you refuses the whole decision.
    #[arg(
        long,
        value_name = "ID",
        value_delimiter = ',',
        requires = "decision",
        conflicts_with_all = ["all_undecided", "user", "entitlement"]
    )]
    items: Vec<String>,
    /// Decide every undecided item assigned to you.
    #[arg(long, requires = "decision", conflicts_with_all = ["user", "entitlement"])]
    all_undecided: bool,
    /// Why (kept in the campaign's evidence); required to revoke.
    #[arg(long, value_name = "TEXT", requires = "decision")]
    comment: Option<String>,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y', requires = "decision")]
    yes: bool,
    /// How long to wait for Tailkeeper to say which items it took (0s: do not wait).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "10s",
        requires = "decision"
    )]
    wait: String,
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
        Command::Review(args) => review(&session, args).await,
        Command::Evidence { name, output } => evidence(&session, &name, &output).await,
    }
}

async fn evidence(s: &Session, name: &str, output: &str) -> Result<(), Error> {
    let ns = &s.namespace;
    let campaign = reviews_api(s)
        .get_opt(name)
        .await
        .map_err(|e| Error::from_kube(format!("read AccessReview {name}"), e))?
        .ok_or_else(|| Error::NotFound {
            what: format!("AccessReview {name}"),
            namespace: ns.clone(),
            hint: format!("list them with: kubectl get accessreviews -n {ns}"),
        })?;
    let record = records::review_evidence(&s.client, &campaign)
        .await
        .map_err(|e| match e {
            ReadError::Kube(e) => {
                Error::from_kube(format!("read the evidence of AccessReview {name}"), e)
            }
            ReadError::Unreadable(why) => Error::Unreadable(why),
        })?;
    let text = match output {
        "json" => tailkeeper::reviews::evidence::to_json(&record),
        "html" => tailkeeper::reviews::evidence::to_html(&record),
        _ => tailkeeper::reviews::evidence::to_csv(&record),
    };
    print!("{text}");
    Ok(())
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
    confirm(args.yes, verb, "the grant above")?;
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

/// Go on only with `--yes`, or once the person at the terminal says yes to `verb` `what`.
fn confirm(yes: bool, verb: &str, what: &str) -> Result<(), Error> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::NotConfirmed(format!(
            "nothing done: stdin is not a terminal, so nobody can confirm; to {verb} {what}, run again with --yes"
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
    } else {
        print!("{}", show::pending_table(&waiting, Timestamp::now()));
        println!(
            "\nDecide with: kubectl tailkeeper approve NAME -n {ns}   or   kubectl tailkeeper deny NAME -n {ns} --comment WHY"
        );
    }
    // Access reviews: only for who may read them, where the kind is installed.
    let mut reviews = match open_reviews(s, false).await {
        Ok(reviews) => reviews,
        Err(kube::Error::Api(status)) if status.code == 403 || status.code == 404 => Vec::new(),
        Err(e) => {
            return Err(Error::from_kube(
                format!("list AccessReviews in namespace {ns}"),
                e,
            ))
        }
    };
    // A campaign without items yet awaits nobody.
    reviews.retain(|r| review::no_items_yet(r).is_none());
    let campaigns = shares(s, &reviews, &me, true).await;
    for c in &campaigns {
        if let Err(why) = &c.share {
            eprintln!(
                "warning: AccessReview {}: {why}",
                c.review.metadata.name.as_deref().unwrap_or_default()
            );
        }
    }
    let awaiting = review::awaiting(&campaigns);
    if !awaiting.is_empty() {
        println!("\nAccess reviews awaiting you:");
        print!(
            "{}",
            review::campaigns_table(&awaiting, Timestamp::now(), false)
        );
        println!("\nReview with: kubectl tailkeeper review NAME -n {ns}");
    }
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

fn reviews_api(s: &Session) -> Api<AccessReview> {
    Api::namespaced(s.client.clone(), &s.namespace)
}

fn decisions_api(s: &Session) -> Api<AccessReviewDecision> {
    Api::namespaced(s.client.clone(), &s.namespace)
}

/// The open AccessReviews of the namespace, or of every namespace.
async fn open_reviews(s: &Session, all_namespaces: bool) -> Result<Vec<AccessReview>, kube::Error> {
    let api = if all_namespaces {
        Api::all(s.client.clone())
    } else {
        reviews_api(s)
    };
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(review::is_open)
        .collect())
}

/// `me`'s share of each of `reviews`, or why it is not known; with `quiet`, campaigns whose
/// items RBAC does not let `me` read are left out (who is no reviewer there has no share).
async fn shares<'a>(
    s: &Session,
    reviews: &'a [AccessReview],
    me: &Identity,
    quiet: bool,
) -> Vec<Campaign<'a>> {
    let mut campaigns = Vec::with_capacity(reviews.len());
    for r in reviews {
        let share = match review::no_items_yet(r) {
            Some(why) => Err(why),
            None => match records::review_items(&s.client, r).await {
                Ok(items) => Ok(review::share(&items, me)),
                Err(ReadError::Kube(kube::Error::Api(status))) if quiet && status.code == 403 => {
                    continue
                }
                Err(ReadError::Kube(e)) => Err(format!(
                    "cannot read its items: {}",
                    Error::from_kube("read them", e)
                )),
                Err(ReadError::Unreadable(why)) => Err(format!("cannot read its items: {why}")),
            },
        };
        campaigns.push(Campaign { review: r, share });
    }
    campaigns
}

async fn review(s: &Session, args: ReviewArgs) -> Result<(), Error> {
    let me = s.whoami().await?;
    let Some(name) = args.name.clone() else {
        return campaigns(s, &me, args.all_namespaces).await;
    };
    if let Some(group) = &args.group {
        review::check_group(group, &me)?;
    }
    let decision = match (args.keep, args.revoke) {
        (true, _) => Some(ReviewDecision::Keep),
        (_, true) => Some(ReviewDecision::Revoke),
        _ => None,
    };
    let decide = match decision {
        Some(decision) => Some(Decide {
            decision,
            comment: review::comment(decision, args.comment.as_deref())?,
            wait: tailkeeper::duration::parse(&args.wait)
                .map_err(|e| Error::Invalid(format!("--wait: {e}")))?,
        }),
        None => None,
    };
    let ns = &s.namespace;
    let campaign = reviews_api(s)
        .get_opt(&name)
        .await
        .map_err(|e| Error::from_kube(format!("read AccessReview {name}"), e))?
        .ok_or_else(|| Error::NotFound {
            what: format!("AccessReview {name}"),
            namespace: ns.clone(),
            hint: format!(
                "kubectl tailkeeper review -n {ns} lists the open campaigns (-A: in every namespace)"
            ),
        })?;
    review::ready(&campaign)?;
    let items = records::review_items(&s.client, &campaign)
        .await
        .map_err(|e| match e {
            ReadError::Kube(e) => {
                Error::from_kube(format!("read the items of AccessReview {name}"), e)
            }
            ReadError::Unreadable(why) => Error::Unreadable(format!(
                "cannot read the items of AccessReview {name}: {why}"
            )),
        })?;
    match decide {
        None => list_items(&campaign, &items, &me, &args),
        Some(decide) => decide_items(s, &campaign, &items, &me, &args, decide).await,
    }
}

/// The open campaigns and `me`'s share of each.
async fn campaigns(s: &Session, me: &Identity, all_namespaces: bool) -> Result<(), Error> {
    let ns = &s.namespace;
    let reviews = open_reviews(s, all_namespaces).await.map_err(|e| {
        Error::from_kube(
            if all_namespaces {
                "list AccessReviews in all namespaces".to_string()
            } else {
                format!("list AccessReviews in namespace {ns}")
            },
            e,
        )
    })?;
    if reviews.is_empty() {
        if all_namespaces {
            println!("No open access reviews in any namespace.");
        } else {
            println!("No open access reviews in namespace {ns} (-A: in every namespace).");
        }
        return Ok(());
    }
    let campaigns = shares(s, &reviews, me, false).await;
    let all: Vec<&Campaign<'_>> = campaigns.iter().collect();
    print!(
        "{}",
        review::campaigns_table(&all, Timestamp::now(), all_namespaces)
    );
    println!(
        "\nYour items of one: kubectl tailkeeper review NAME{}",
        if all_namespaces {
            " -n NAMESPACE".to_string()
        } else {
            format!(" -n {ns}")
        }
    );
    Ok(())
}

fn list_items(
    campaign: &AccessReview,
    items: &[tailkeeper::reviews::Item],
    me: &Identity,
    args: &ReviewArgs,
) -> Result<(), Error> {
    let mine = review::mine(items, me, args.group.as_deref());
    let filter = Filter {
        user: args.user.clone(),
        entitlement: args.entitlement.clone(),
        undecided: args.undecided,
    };
    let shown = review::listed(&mine, &filter);
    match args.output {
        OutputFormat::Json => print!("{}", review::items_json(&shown)?),
        OutputFormat::Csv => print!("{}", review::items_csv(&shown)?),
        OutputFormat::Table => {
            let name = campaign.metadata.name.as_deref().unwrap_or_default();
            if mine.is_empty() {
                println!(
                    "No items of AccessReview {name} are assigned to you ({}{}).",
                    me.user,
                    match &args.group {
                        Some(g) => format!(" or group {g}"),
                        None => " or a group you are in".to_string(),
                    }
                );
                return Ok(());
            }
            if shown.is_empty() {
                println!("None of your items of AccessReview {name} matches.");
            } else {
                print!("{}", review::items_table(&shown));
            }
            print!("{}", review::listing_footer(campaign, &mine, shown.len()));
        }
    }
    Ok(())
}

/// A bulk decision as the arguments give it, checked before anything is read.
struct Decide {
    decision: ReviewDecision,
    comment: Option<String>,
    wait: Duration,
}

async fn decide_items(
    s: &Session,
    campaign: &AccessReview,
    items: &[tailkeeper::reviews::Item],
    me: &Identity,
    args: &ReviewArgs,
    decide: Decide,
) -> Result<(), Error> {
    let Decide {
        decision,
        comment,
        wait,
    } = decide;
    let selection = if !args.items.is_empty() {
        Selection::Items(args.items.clone())
    } else if args.all_undecided {
        Selection::AllUndecided
    } else {
        Selection::Matching {
            user: args.user.clone(),
            entitlement: args.entitlement.clone(),
        }
    };
    let through = args.group.as_deref();
    let selected = review::select(campaign, items, me, through, &selection)?;
    let group = review::decision_group(&selected, me, through)?;
    print!(
        "{}",
        review::summary(
            campaign,
            decision,
            me,
            group.as_deref(),
            comment.as_deref(),
            &selected
        )
    );
    let verb = match decision {
        ReviewDecision::Keep => "keep",
        ReviewDecision::Revoke => "revoke",
    };
    confirm(args.yes, verb, "the items above")?;
    let made = review::decisions(
        campaign,
        me,
        decision,
        group.as_deref(),
        comment.as_deref(),
        &selected,
    )?;
    let name = campaign.metadata.name.as_deref().unwrap_or_default();
    let total = made.len();
    let mut created: Vec<String> = Vec::with_capacity(total);
    for (n, d) in made.iter().enumerate() {
        let done = decisions_api(s).create(&params(), d).await.map_err(|e| {
            Error::from_kube(
                format!(
                    "create AccessReviewDecision {} of {total} for AccessReview {name}{}",
                    n + 1,
                    if created.is_empty() {
                        String::new()
                    } else {
                        format!(" (already created: {})", created.join(", "))
                    }
                ),
                e,
            )
        })?;
        let made_name = done.metadata.name.clone().unwrap_or_default();
        let count = done.spec.items.len();
        println!(
            "accessreviewdecision.tailkeeper.io/{made_name} created ({count} item{})",
            if count == 1 { "" } else { "s" }
        );
        created.push(made_name);
    }
    print!("{}", outcomes(s, &created, wait).await);
    Ok(())
}

/// What Tailkeeper made of the decisions `names`, waiting up to `wait` for it to record them.
async fn outcomes(s: &Session, names: &[String], wait: Duration) -> String {
    let deadline = tokio::time::Instant::now() + wait;
    let mut answers: Vec<Option<String>> = vec![None; names.len()];
    loop {
        for (name, answer) in names.iter().zip(answers.iter_mut()) {
            if answer.is_none() {
                // A read that fails is tried again until the deadline; then the decision
                // counts as unanswered, with how to check it.
                if let Ok(Some(d)) = decisions_api(s).get_opt(name).await {
                    *answer = review::outcome(&d);
                }
            }
        }
        if answers.iter().all(Option::is_some) || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500).min(wait)).await;
    }
    names
        .iter()
        .zip(answers)
        .map(|(name, answer)| answer.unwrap_or_else(|| review::unanswered(name, &s.namespace)))
        .collect()
}
