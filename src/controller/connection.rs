//! Connecting to an integration's tailnet: read the credentials from its Secret and hand out the
//! Tailscale client (reused while the spec and Secret are unchanged, so OAuth tokens are too).
//! Used by every reconciler that talks to Tailscale.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::ResourceExt;

use super::context::{key_of, Context};
use crate::api::{CredentialKind, TailscaleIntegration};
use crate::tailscale::{self, ClientConfig, Credentials, Secret as Credential};

/// Secret keys.
pub const API_TOKEN_KEY: &str = "apiToken";
pub const CLIENT_ID_KEY: &str = "clientId";
pub const CLIENT_SECRET_KEY: &str = "clientSecret";

/// A problem the user must fix in the spec or the Secret.
#[derive(Debug)]
pub struct ConnectError {
    pub reason: &'static str,
    pub message: String,
}

/// A ready client for an integration's tailnet.
pub struct Connection {
    pub client: tailscale::Client,
    /// Identifies the client's configuration (spec and Secret version).
    pub fingerprint: u64,
    /// The API token's key ID, when the credential is one.
    pub key_id: Option<String>,
}

pub async fn connect(
    obj: &TailscaleIntegration,
    ctx: &Context,
) -> Result<Connection, ConnectError> {
    let key = key_of(obj);
    // Before the Secret is even read: credentials go only to a host the operator trusts.
    check_api_host(&obj.spec.api_url, &ctx.settings.allowed_api_hosts)?;
    let (credentials, secret_version) = read_credentials(obj, ctx).await?;
    let key_id = credentials.api_key_id();
    let mut fingerprint = DefaultHasher::new();
    (
        &obj.spec.api_url,
        &obj.spec.tailnet,
        obj.spec.credentials.kind.to_string(),
        &obj.spec.credentials.oauth_scopes,
        secret_version,
    )
        .hash(&mut fingerprint);
    let fingerprint = fingerprint.finish();
    let client = ctx
        .tailscale_client(&key, fingerprint, || {
            let mut config = ClientConfig::new(&obj.spec.api_url, &obj.spec.tailnet, credentials);
            config.retry = ctx.settings.retry.clone();
            config.request_timeout = ctx.settings.request_timeout;
            tailscale::Client::new(config)
        })
        .map_err(|e| ConnectError {
            reason: "InvalidSpec",
            message: e.to_string(),
        })?;
    Ok(Connection {
        client,
        fingerprint,
        key_id,
    })
}

/// Whether `api_url`'s host (or `host:port`) is one the operator may send credentials to.
fn check_api_host(api_url: &str, allowed: &[String]) -> Result<(), ConnectError> {
    let url = url::Url::parse(api_url).map_err(|e| ConnectError {
        reason: "InvalidSpec",
        message: format!("apiUrl {api_url:?} is not a URL: {e}"),
    })?;
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let with_port = url
        .port_or_known_default()
        .map(|p| format!("{host}:{p}"))
        .unwrap_or_else(|| host.clone());
    if allowed.iter().any(|a| *a == host || *a == with_port) {
        return Ok(());
    }
    Err(ConnectError {
        reason: "APIHostNotAllowed",
        message: format!(
            "apiUrl host {host} is not one this operator sends credentials to (allowed: {}); the Secret was not read. Use Tailscale's API, or start the operator with --allow-api-host {host}",
            allowed.join(", ")
        ),
    })
}

/// Read the credentials from the integration's Secret, with errors that say what to fix.
async fn read_credentials(
    obj: &TailscaleIntegration,
    ctx: &Context,
) -> Result<(Credentials, String), ConnectError> {
    let ns = obj.namespace().unwrap_or_default();
    let spec = &obj.spec.credentials;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret = match secrets.get_opt(&spec.secret_name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(ConnectError {
                reason: "SecretNotFound",
                message: format!(
                    "Secret {ns}/{} does not exist: create it with the credentials",
                    spec.secret_name
                ),
            })
        }
        Err(kube::Error::Api(e)) if e.code == 403 => {
            return Err(ConnectError {
                reason: "SecretForbidden",
                message: format!(
                    "the operator may not read Secret {ns}/{name}: it reads only the Secrets it is allowed to; add \"{ns}/{name}\" to the chart's credentialSecrets value (or grant its ServiceAccount get on this Secret)",
                    name = spec.secret_name
                ),
            })
        }
        Err(e) => {
            return Err(ConnectError {
                reason: "SecretUnreadable",
                message: format!("cannot read Secret {ns}/{}: {e}", spec.secret_name),
            })
        }
    };
    let value = |k: &str| -> Result<String, ConnectError> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(k))
                    .map(|s| s.clone().into_bytes())
            });
        let text = bytes
            .and_then(|b| String::from_utf8(b).ok())
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        if text.is_empty() {
            Err(ConnectError {
                reason: "SecretKeyMissing",
                message: format!(
                    "Secret {ns}/{} has no key {k:?}, which credentials of type {} need",
                    spec.secret_name, spec.kind
                ),
            })
        } else {
            Ok(text)
        }
    };
    let credentials = match spec.kind {
        CredentialKind::ApiToken => Credentials::ApiToken(Credential::new(value(API_TOKEN_KEY)?)),
        CredentialKind::OAuthClient => Credentials::OAuthClient {
            client_id: value(CLIENT_ID_KEY)?,
            client_secret: Credential::new(value(CLIENT_SECRET_KEY)?),
            scopes: spec.oauth_scopes.clone().unwrap_or_default(),
        },
    };
    // The webhook's signing secrets (one per line, for rotation), when webhooks are on.
    let webhook = match &obj.spec.webhook {
        None => None,
        Some(w) => {
            let text = value(&w.secret_key).map_err(|_| ConnectError {
                reason: "SecretKeyMissing",
                message: format!(
                    "Secret {ns}/{} has no key {:?}, which spec.webhook names for the webhook's signing secret",
                    spec.secret_name, w.secret_key
                ),
            })?;
            Some(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(Credential::new)
                    .collect(),
            )
        }
    };
    ctx.set_webhook_secrets(key_of(obj), webhook);
    let version = secret.resource_version().unwrap_or_default();
    ctx.note_secret_version((ns, spec.secret_name.clone()), version.clone());
    Ok((credentials, version))
}
