//! Who holds what, for people: reading an AccessPolicy's published entitlements inventory from
//! the cluster and exporting the part asked for, as `tailkeeper access` and
//! `kubectl tailkeeper access` both do. The policy's status names the ConfigMaps and the
//! digest; each shard must carry that digest (a reader that meets a version being replaced
//! tries again). Reads only: nothing here writes to the cluster.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::ResourceExt;

use crate::api::AccessPolicy;
use crate::entitlements::shards::{self, Published, DATA_KEY, DIGEST_ANNOTATION};
use crate::entitlements::{render, Format, Holding, Inventory, Resolver};

/// What to export of an inventory: the command-line arguments both CLIs share.
#[derive(Clone, Debug, clap::Args)]
pub struct Query {
    /// The AccessPolicy, as NAMESPACE/NAME (or NAME in the current namespace).
    #[arg(long)]
    pub policy: String,
    /// Only what this Tailscale login holds.
    #[arg(long, conflicts_with = "entitlement")]
    pub user: Option<String>,
    /// Only who holds this entitlement (its id: role:admin, group:prod, grant:3f2a9c0d41be).
    #[arg(long)]
    pub entitlement: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Output formats of an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

impl From<OutputFormat> for Format {
    fn from(f: OutputFormat) -> Format {
        match f {
            OutputFormat::Table => Format::Table,
            OutputFormat::Csv => Format::Csv,
            OutputFormat::Json => Format::Json,
        }
    }
}

/// The namespace and name of `policy` (`NAMESPACE/NAME`, or `NAME` in `namespace`).
pub fn policy_name<'a>(policy: &'a str, namespace: &'a str) -> (&'a str, &'a str) {
    match policy.split_once('/') {
        Some((ns, name)) => (ns, name),
        None => (namespace, policy),
    }
}

/// Why an export asked for nothing the inventory has.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("{login} is not a user of the tailnet of AccessPolicy {policy} (logins are matched exactly)")]
    UnknownUser { login: String, policy: String },
    #[error("no entitlement {id} in AccessPolicy {policy}: list every id with `access --policy {policy}`")]
    UnknownEntitlement { id: String, policy: String },
}

/// The holdings `query` asks for, of the inventory of the AccessPolicy named `policy`.
pub fn select<'a>(
    inventory: &'a Inventory,
    query: &Query,
    policy: &str,
) -> Result<Vec<Holding<'a>>, SelectError> {
    let resolver = Resolver::new(inventory);
    match (&query.user, &query.entitlement) {
        (Some(login), _) => {
            if !inventory.users.iter().any(|u| &u.login == login) {
                return Err(SelectError::UnknownUser {
                    login: login.clone(),
                    policy: policy.to_string(),
                });
            }
            Ok(resolver.of_user(login))
        }
        (None, Some(id)) => {
            if !inventory.entitlements.iter().any(|e| &e.id == id) {
                return Err(SelectError::UnknownEntitlement {
                    id: id.clone(),
                    policy: policy.to_string(),
                });
            }
            Ok(resolver.holders(id))
        }
        (None, None) => Ok(resolver.all().collect()),
    }
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error("cannot write the output: {0}")]
    Write(#[from] std::io::Error),
}

/// Read the inventory of the policy `query` names (in `namespace` unless it names one) and
/// write what it asks for to `out`. Returns the status's message when the inventory is not
/// current (what was written is the one last published).
pub async fn export(
    client: &kube::Client,
    namespace: &str,
    query: &Query,
    out: &mut dyn std::io::Write,
) -> Result<Option<String>, ExportError> {
    let (namespace, name) = policy_name(&query.policy, namespace);
    let (published, stale) = read(client, namespace, name).await?;
    let holdings = select(&published.inventory, query, &format!("{namespace}/{name}"))?;
    render(
        &published.inventory,
        holdings.into_iter(),
        query.output.into(),
        out,
    )?;
    out.flush()?;
    Ok(stale)
}

/// Attempts while the operator is replacing the inventory.
const ATTEMPTS: usize = 5;
const BETWEEN_ATTEMPTS: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("AccessPolicy {0} not found")]
    NotFound(String),
    #[error("AccessPolicy {policy} has no entitlements inventory yet: {why}")]
    NotPublished { policy: String, why: String },
    #[error("the inventory of AccessPolicy {policy} is unreadable: {why}")]
    Unreadable { policy: String, why: String },
    #[error("{0}")]
    Kubernetes(#[from] kube::Error),
}

/// The published inventory of `namespace/name`, and the status's message when the inventory is
/// not current (the last one published is returned anyway).
pub async fn read(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<(Published, Option<String>), ReadError> {
    let policy_name = format!("{namespace}/{name}");
    let policies: Api<AccessPolicy> = Api::namespaced(client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut last_problem = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(BETWEEN_ATTEMPTS).await;
        }
        let policy = policies
            .get_opt(name)
            .await?
            .ok_or_else(|| ReadError::NotFound(policy_name.clone()))?;
        let status = policy.status.and_then(|s| s.entitlements);
        let (digest, names, message) = match status {
            Some(s) if s.digest.is_some() && !s.config_maps.is_empty() => {
                (s.digest.unwrap_or_default(), s.config_maps, s.message)
            }
            Some(s) => {
                return Err(ReadError::NotPublished {
                    policy: policy_name,
                    why: s
                        .message
                        .unwrap_or_else(|| "nothing published yet".to_string()),
                })
            }
            None => {
                return Err(ReadError::NotPublished {
                    policy: policy_name,
                    why: "the policy has not been evaluated with an inventory yet (is its integration connected, and may its credential read the policy file?)".to_string(),
                })
            }
        };
        let mut parts = Vec::with_capacity(names.len());
        let mut consistent = true;
        for shard in &names {
            let Some(cm) = config_maps.get_opt(shard).await? else {
                last_problem = format!("ConfigMap {namespace}/{shard} is missing");
                consistent = false;
                break;
            };
            if cm.annotations().get(DIGEST_ANNOTATION) != Some(&digest) {
                last_problem = format!("ConfigMap {namespace}/{shard} holds another version");
                consistent = false;
                break;
            }
            match cm.binary_data.and_then(|mut d| d.remove(DATA_KEY)) {
                Some(bytes) => parts.push(bytes.0),
                None => {
                    last_problem = format!("ConfigMap {namespace}/{shard} has no {DATA_KEY}");
                    consistent = false;
                    break;
                }
            }
        }
        if !consistent {
            continue;
        }
        let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        match shards::decode(&slices, &digest) {
            Ok(published) => return Ok((published, message)),
            Err(e) => last_problem = e.to_string(),
        }
    }
    Err(ReadError::Unreadable {
        policy: policy_name,
        why: last_problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitlements::{build, Attribution, Member};
    use crate::policy_file::document;

    fn inventory() -> Inventory {
        let member = |login: &str, role: &str| Member {
            login: login.into(),
            role: role.into(),
            status: "active".into(),
            user_type: "member".into(),
            person: None,
            role_granted_by: Vec::new(),
        };
        let file = r#"{"groups": {"group:prod": ["bob@example.com"]}}"#;
        build(
            vec![
                member("alice@example.com", "admin"),
                member("bob@example.com", "member"),
            ],
            &document(file).expect("parses"),
            &Attribution::default(),
            Vec::new(),
        )
    }

    fn query(user: Option<&str>, entitlement: Option<&str>) -> Query {
        Query {
            policy: "corp".into(),
            user: user.map(str::to_string),
            entitlement: entitlement.map(str::to_string),
            output: OutputFormat::Table,
        }
    }

    #[test]
    fn a_query_selects_a_users_holdings_an_entitlements_holders_or_everything() {
        let inv = inventory();
        let of = |q: Query| -> Vec<(String, String)> {
            select(&inv, &q, "sec/corp")
                .expect("selects")
                .iter()
                .map(|h| (h.user.to_string(), h.entitlement.to_string()))
                .collect()
        };
        let bob = of(query(Some("bob@example.com"), None));
        assert!(bob.iter().all(|(u, _)| u == "bob@example.com"), "{bob:?}");
        assert!(bob.contains(&("bob@example.com".into(), "group:prod".into())));
        assert_eq!(
            of(query(None, Some("group:prod"))),
            vec![("bob@example.com".to_string(), "group:prod".to_string())]
        );
        assert!(of(query(None, None)).len() > bob.len());
    }

    #[test]
    fn asking_for_what_the_inventory_lacks_says_what_to_do() {
        let inv = inventory();
        let unknown = select(&inv, &query(Some("Bob@example.com"), None), "sec/corp")
            .expect_err("logins are exact");
        assert!(unknown.to_string().contains("matched exactly"), "{unknown}");
        let id =
            select(&inv, &query(None, Some("group:nope")), "sec/corp").expect_err("unknown id");
        assert!(id.to_string().contains("access --policy sec/corp"), "{id}");
    }

    #[test]
    fn a_policy_names_its_namespace_or_takes_the_current_one() {
        assert_eq!(policy_name("sec/corp", "default"), ("sec", "corp"));
        assert_eq!(policy_name("corp", "team"), ("team", "corp"));
    }
}
