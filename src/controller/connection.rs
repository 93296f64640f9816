//! Connecting to an integration's tailnet: read the credentials from its Secret and hand out the
//! Tailscale client (reused while the spec and Secret are unchanged, so OAuth tokens are too).
//! Used by every reconciler that talks to Tailscale.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::ResourceExt;

use super::context::{key_of, Context};
use crate::api::{CredentialKind, TailscaleIntegration, DEFAULT_API_URL};
use crate::tailscale::{self, ClientConfig, Credentials, Secret as Credential};

/// Secret keys.
pub const API_TOKEN_KEY: &str = "apiToken";
pub const CLIENT_ID_KEY: &str = "clientId";
pub const CLIENT_SECRET_KEY: &str = "clientSecret";

/// The annotation binding a credential Secret to the integrations (comma-separated names, of the
/// Secret's namespace) that may use it. Set by whoever creates the Secret, who knows the
/// credential; the chart's admission policies keep it from being added or changed afterwards.
pub const BOUND_INTEGRATIONS: &str = "tailkeeper.io/integrations";
/// The annotation binding a credential Secret to the API it was made for (an origin such as
/// `https://api.tailscale.com`, the default when it is absent).
pub const BOUND_API_URL: &str = "tailkeeper.io/api-url";

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
    /// Identifies the credential's values (never shown anywhere: it only tells a rotation).
    pub credential_digest: u64,
}

/// The credential each integration last connected with (by digest), to tell a rotation. Only
/// the integration reconciler consults it, so each rotation is announced once.
#[derive(Default)]
pub struct Rotations(std::sync::Mutex<std::collections::HashMap<super::context::Key, u64>>);

impl Rotations {
    /// Note that `integration` connects with the credential `digest`; true when it connected
    /// with another before (the Secret's credential was rotated). The first connection after a
    /// start is no rotation.
    pub fn rotated(&self, integration: &super::context::Key, digest: u64) -> bool {
        let Ok(mut seen) = self.0.lock() else {
            return false;
        };
        seen.insert(integration.clone(), digest)
            .is_some_and(|before| before != digest)
    }

    /// Forget a deleted integration.
    pub fn forget(&self, integration: &super::context::Key) {
        if let Ok(mut seen) = self.0.lock() {
            seen.remove(integration);
        }
    }
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
    let credential_digest = digest(&credentials, ctx.webhook_secrets(&key).as_deref());
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
        credential_digest,
    })
}

/// A digest of the credential's values and the webhook's signing secrets.
fn digest(credentials: &Credentials, webhook: Option<&Vec<Credential>>) -> u64 {
    let mut h = DefaultHasher::new();
    match credentials {
        Credentials::ApiToken(token) => token.expose().hash(&mut h),
        Credentials::OAuthClient {
            client_id,
            client_secret,
            ..
        } => (client_id, client_secret.expose()).hash(&mut h),
    }
    for secret in webhook.into_iter().flatten() {
        secret.expose().hash(&mut h);
    }
    h.finish()
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

/// Whether the Secret `secret` (namespace/name) was bound, by whoever created it, to the
/// integration `integration` and to the origin of `api_url`. A credential is sent only where its
/// Secret says: naming it from another integration, or moving an integration to another host,
/// sends it nowhere.
fn check_binding(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    secret: &str,
    integration: &str,
    api_url: &str,
) -> Result<(), ConnectError> {
    let unbound = |why: String| ConnectError {
        reason: "CredentialsNotBound",
        message: format!(
            "{why}; its credentials were not used. Bind a credential when creating its Secret: \
             annotations {BOUND_INTEGRATIONS}: {integration} and, for an API other than \
             {DEFAULT_API_URL}, {BOUND_API_URL}: {api_url}. A binding is never changed \
             afterwards: to bind another integration or host, create a new Secret with the \
             credentials"
        ),
    };
    let annotation = |k: &str| annotations.and_then(|a| a.get(k)).map(|v| v.trim());
    let bound: Vec<&str> = annotation(BOUND_INTEGRATIONS)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if bound.is_empty() {
        return Err(unbound(format!(
            "Secret {secret} is bound to no TailscaleIntegration"
        )));
    }
    if !bound.contains(&integration) {
        return Err(unbound(format!(
            "Secret {secret} is bound to TailscaleIntegration {}, not {integration}",
            bound.join(", ")
        )));
    }
    let origin = |url: &str| url::Url::parse(url).ok().map(|u| u.origin());
    let declared = annotation(BOUND_API_URL).unwrap_or(DEFAULT_API_URL);
    let Some(declared_origin) = origin(declared).filter(|o| o.is_tuple()) else {
        return Err(unbound(format!(
            "Secret {secret}'s annotation {BOUND_API_URL} ({declared:?}) is not a URL"
        )));
    };
    if origin(api_url) != Some(declared_origin) {
        return Err(unbound(format!(
            "Secret {secret} is bound to the API at {declared}, not to this integration's apiUrl {api_url}"
        )));
    }
    Ok(())
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
    check_binding(
        secret.metadata.annotations.as_ref(),
        &format!("{ns}/{}", spec.secret_name),
        &obj.name_any(),
        &obj.spec.api_url,
    )?;
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_rotation_is_a_different_credential_after_a_first_connection() {
        let rotations = Rotations::default();
        let corp = ("ns".to_string(), "corp".to_string());
        let token = |t: &str| digest(&Credentials::ApiToken(Credential::new(t)), None);
        assert!(
            !rotations.rotated(&corp, token("a")),
            "the first connection"
        );
        assert!(!rotations.rotated(&corp, token("a")), "the same credential");
        assert!(rotations.rotated(&corp, token("b")));
        assert!(!rotations.rotated(&("ns".into(), "lab".into()), token("c")));
        // A new webhook signing secret is a rotation too.
        let signing = vec![Credential::new("whsec")];
        assert!(rotations.rotated(
            &corp,
            digest(&Credentials::ApiToken(Credential::new("b")), Some(&signing))
        ));
        rotations.forget(&corp);
        assert!(
            !rotations.rotated(&corp, token("d")),
            "forgotten: a first connection again"
        );
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn check(pairs: &[(&str, &str)], integration: &str, api_url: &str) -> Result<(), String> {
        let a = annotations(pairs);
        check_binding(Some(&a), "ns/creds", integration, api_url).map_err(|e| {
            assert_eq!(e.reason, "CredentialsNotBound");
            e.message
        })
    }

    #[test]
    fn a_secret_is_used_only_by_the_integrations_it_names() {
        let bound = [(BOUND_INTEGRATIONS, "corp, lab")];
        assert!(check(&bound, "corp", DEFAULT_API_URL).is_ok());
        assert!(check(&bound, "lab", "https://api.tailscale.com/").is_ok());
        let other = check(&bound, "evil", DEFAULT_API_URL).unwrap_err();
        assert!(
            other.contains("bound to TailscaleIntegration corp, lab, not evil")
                && other.contains("create a new Secret"),
            "{other}"
        );
        let none = check_binding(None, "ns/creds", "corp", DEFAULT_API_URL)
            .unwrap_err()
            .message;
        assert!(
            none.contains("bound to no TailscaleIntegration")
                && none.contains("tailkeeper.io/integrations: corp"),
            "{none}"
        );
        assert!(check(&[(BOUND_INTEGRATIONS, " , ")], "corp", DEFAULT_API_URL).is_err());
    }

    #[test]
    fn a_secret_goes_only_to_the_api_it_was_made_for() {
        let default = [(BOUND_INTEGRATIONS, "corp")];
        let elsewhere = check(&default, "corp", "https://tailscale.attacker.example").unwrap_err();
        assert!(
            elsewhere.contains("bound to the API at https://api.tailscale.com, not to this integration's apiUrl https://tailscale.attacker.example"),
            "{elsewhere}"
        );
        let local = [
            (BOUND_INTEGRATIONS, "corp"),
            (BOUND_API_URL, "http://127.0.0.1:8088"),
        ];
        assert!(check(&local, "corp", "http://127.0.0.1:8088/").is_ok());
        assert!(
            check(&local, "corp", "http://127.0.0.1:8089").is_err(),
            "another port"
        );
        assert!(
            check(&local, "corp", "https://127.0.0.1:8088").is_err(),
            "another scheme"
        );
        assert!(check(&local, "corp", DEFAULT_API_URL).is_err());
        let garbage = check(
            &[(BOUND_INTEGRATIONS, "corp"), (BOUND_API_URL, "not a url")],
            "corp",
            DEFAULT_API_URL,
        )
        .unwrap_err();
        assert!(garbage.contains("is not a URL"), "{garbage}");
    }
}
