//! The Tailscale API client: the one request path to Tailscale, for authentication, retries,
//! errors and decoding. One file per API resource (users, policy file, keys, devices) holds that
//! resource's requests and types.
//!
//! Credentials live only in [`Secret`]s and Authorization headers: they never reach a log line,
//! an error or a status.

mod auth;
mod devices;
mod error;
mod keys;
mod logging;
mod policy_file;
mod secret;
mod users;

pub use auth::Credentials;
pub use devices::{Device, PostureAttributes};
pub use error::Error;
pub use keys::Key;
pub use logging::{ConfigLogEntry, LogActor, LogTarget};
pub use policy_file::{PolicyFile, Validation};
pub use secret::Secret;
pub use users::{User, UserType};

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, IF_MATCH, RETRY_AFTER,
};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use tracing::{debug, warn};
use url::Url;

use auth::{TokenCache, TokenResponse};

/// How failed requests are retried: capped exponential backoff with jitter.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The delay before the second attempt; it doubles with each further attempt.
    pub base_delay: Duration,
    /// No delay exceeds this, `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`: exponential, capped, with "equal jitter" (half
    /// fixed, half random) so that many clients throttled together do not retry together.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }
}

/// Everything a client needs.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The API base, for example `https://api.tailscale.com` (paths `/api/v2/...` go under it).
    pub api_url: String,
    /// `-`, the organization name or the tailnet ID.
    pub tailnet: String,
    pub credentials: Credentials,
    pub retry: RetryPolicy,
    /// How long one attempt may take.
    pub request_timeout: Duration,
}

impl ClientConfig {
    pub fn new(
        api_url: impl Into<String>,
        tailnet: impl Into<String>,
        credentials: Credentials,
    ) -> Self {
        Self {
            api_url: api_url.into(),
            tailnet: tailnet.into(),
            credentials,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A Tailscale API client. Cheap to clone; clones share the connection pool and token cache.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    tailnet: String,
    credentials: Credentials,
    retry: RetryPolicy,
    timeout: Duration,
    tokens: TokenCache,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base.as_str())
            .field("tailnet", &self.inner.tailnet)
            .finish_non_exhaustive()
    }
}

/// A request body.
pub(crate) enum Body {
    Empty,
    Json(Value),
    HuJson(String),
    Form(Vec<(&'static str, String)>),
}

/// One request, described once and sent as many times as retries need.
pub(crate) struct Request {
    /// A stable name for logs, errors and metrics (`users.list`, `acl.set`, ...).
    pub endpoint: &'static str,
    pub method: Method,
    /// Path segments after `/api/v2/`; each is percent-encoded.
    pub segments: Vec<String>,
    pub query: Vec<(&'static str, String)>,
    pub body: Body,
    pub accept: Option<&'static str>,
    pub if_match: Option<String>,
}

impl Request {
    pub fn new(endpoint: &'static str, method: Method, segments: &[&str]) -> Self {
        Self {
            endpoint,
            method,
            segments: segments.iter().map(|s| s.to_string()).collect(),
            query: Vec::new(),
            body: Body::Empty,
            accept: None,
            if_match: None,
        }
    }
}

/// A successful answer.
pub(crate) struct Response {
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Response {
    pub fn json<T: DeserializeOwned>(&self, endpoint: &'static str) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Decode {
            endpoint,
            message: e.to_string(),
        })
    }

    pub fn text(&self, endpoint: &'static str) -> Result<String, Error> {
        String::from_utf8(self.body.to_vec()).map_err(|e| Error::Decode {
            endpoint,
            message: e.to_string(),
        })
    }
}

/// Tailscale's error body.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    data: Option<Value>,
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        let mut base = Url::parse(config.api_url.trim_end_matches('/'))
            .map_err(|e| Error::Config(format!("apiUrl {:?} is not a URL: {e}", config.api_url)))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Error::Config(format!(
                "apiUrl {:?} must be an http(s) URL",
                config.api_url
            )));
        }
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        if config.tailnet.is_empty() {
            return Err(Error::Config(
                "tailnet must not be empty (use - for the credential's own tailnet)".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("tailkeeper/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                tailnet: config.tailnet,
                credentials: config.credentials,
                retry: config.retry,
                timeout: config.request_timeout,
                tokens: TokenCache::default(),
            }),
        })
    }

    /// The tailnet this client addresses.
    pub fn tailnet(&self) -> &str {
        &self.inner.tailnet
    }

    pub fn credentials(&self) -> &Credentials {
        &self.inner.credentials
    }

    fn url(&self, segments: &[String], query: &[(&'static str, String)]) -> Url {
        let mut url = self.inner.base.clone();
        {
            // `base` is a base URL (checked in `new`), so path_segments_mut cannot fail.
            if let Ok(mut path) = url.path_segments_mut() {
                path.pop_if_empty().extend(["api", "v2"]).extend(segments);
            }
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    /// Send a request through the one request path: authenticate, retry what is worth retrying,
    /// and turn error statuses into [`Error::Api`] with Tailscale's message.
    pub(crate) async fn send(&self, req: &Request) -> Result<Response, Error> {
        let policy = &self.inner.retry;
        let mut attempt = 0u32;
        let mut refreshed_after_401 = false;
        loop {
            attempt += 1;
            let started = Instant::now();
            let outcome = self.attempt(req).await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let (err, retry_after, from_token_endpoint) = match outcome {
                Ok(response) => {
                    debug!(
                        endpoint = req.endpoint,
                        attempt, elapsed_ms, "tailscale request succeeded"
                    );
                    return Ok(response);
                }
                Err(Failure {
                    error,
                    retry_after,
                    from_token_endpoint,
                }) => (error, retry_after, from_token_endpoint),
            };
            // An OAuth access token may be revoked or lapse early: fetch a new one once and
            // retry at once; a second 401 is the credential's fault.
            if err.is_unauthorized()
                && !refreshed_after_401
                && matches!(self.inner.credentials, Credentials::OAuthClient { .. })
                && !from_token_endpoint
                && req.endpoint != "oauth.token"
            {
                refreshed_after_401 = true;
                *self.inner.tokens.slot.lock().await = None;
                debug!(
                    endpoint = req.endpoint,
                    "access token refused; fetching a new one"
                );
                attempt -= 1;
                continue;
            }
            if !err.is_transient() {
                debug!(endpoint = req.endpoint, attempt, elapsed_ms, error = %err, "tailscale request failed");
                return Err(err);
            }
            if attempt >= policy.max_attempts {
                warn!(endpoint = req.endpoint, attempts = attempt, error = %err, "tailscale request failed; giving up");
                return Err(Error::RetriesExhausted {
                    endpoint: req.endpoint,
                    attempts: attempt,
                    last: Box::new(err),
                });
            }
            let delay = retry_after
                .map(|d| d.min(policy.max_delay))
                .unwrap_or_else(|| policy.backoff(attempt));
            debug!(endpoint = req.endpoint, attempt, delay_ms = delay.as_millis() as u64, error = %err, "tailscale request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, req: &Request) -> Result<Response, Failure> {
        let url = self.url(&req.segments, &req.query);
        let mut builder = self
            .inner
            .http
            .request(req.method.clone(), url)
            .timeout(self.inner.timeout);
        if req.endpoint != "oauth.token" {
            // A refused token request is the credential's fault: flag it so that `send` does
            // not answer it by fetching yet another token.
            let token = self.access_token().await.map_err(|error| Failure {
                error,
                retry_after: None,
                from_token_endpoint: true,
            })?;
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                    Failure::from(Error::Config(
                        "the credential contains characters not allowed in an HTTP header".into(),
                    ))
                })?;
            value.set_sensitive(true);
            builder = builder.header(AUTHORIZATION, value);
        }
        if let Some(accept) = req.accept {
            builder = builder.header(ACCEPT, accept);
        }
        if let Some(etag) = &req.if_match {
            builder = builder.header(IF_MATCH, format!("\"{}\"", etag.trim_matches('"')));
        }
        builder = match &req.body {
            Body::Empty => builder,
            Body::Json(v) => builder.json(v),
            Body::HuJson(text) => builder
                .header(CONTENT_TYPE, "application/hujson")
                .body(text.clone()),
            Body::Form(fields) => builder.form(fields),
        };
        let response = builder
            .send()
            .await
            .map_err(|e| Failure::from(self.transport_error(req.endpoint, e)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| Failure::from(self.transport_error(req.endpoint, e)))?;
        if status.is_success() {
            return Ok(Response { headers, body });
        }
        let retry_after = (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error())
            .then(|| parse_retry_after(&headers))
            .flatten();
        let parsed = serde_json::from_slice::<ErrorBody>(&body).ok();
        let secrets = self.credential_values();
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let message = error::quoted(
            parsed.as_ref().map(|b| b.message.as_str()),
            body.len(),
            status.as_u16(),
            &secrets,
        );
        let data = parsed.and_then(|b| b.data);
        Err(Failure {
            error: Error::Api {
                endpoint: req.endpoint,
                status: status.as_u16(),
                message,
                data,
            },
            retry_after,
            from_token_endpoint: false,
        })
    }

    fn transport_error(&self, endpoint: &'static str, e: reqwest::Error) -> Error {
        if e.is_timeout() {
            return Error::Timeout {
                endpoint,
                seconds: self.inner.timeout.as_secs_f64(),
            };
        }
        // Without the URL: it carries no credential, but keeping errors short and uniform.
        let e = e.without_url();
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(inner) = source {
            message.push_str(": ");
            message.push_str(&inner.to_string());
            source = inner.source();
        }
        Error::Transport { endpoint, message }
    }

    /// The token to send: the API token itself, or a cached OAuth access token (fetched when
    /// missing or due for refresh).
    async fn access_token(&self) -> Result<Secret, Error> {
        match &self.inner.credentials {
            Credentials::ApiToken(token) => Ok(token.clone()),
            Credentials::OAuthClient {
                client_id,
                client_secret,
                scopes,
            } => {
                let mut slot = self.inner.tokens.slot.lock().await;
                if let Some(cached) = slot.as_ref() {
                    if Instant::now() < cached.refresh_at {
                        return Ok(cached.token.clone());
                    }
                }
                let mut form = vec![
                    ("client_id", client_id.clone()),
                    ("client_secret", client_secret.expose().to_string()),
                    ("grant_type", "client_credentials".to_string()),
                ];
                if !scopes.is_empty() {
                    form.push(("scope", scopes.join(" ")));
                }
                let mut req = Request::new("oauth.token", Method::POST, &["oauth", "token"]);
                req.body = Body::Form(form);
                let fetched_at = Instant::now();
                let response = Box::pin(self.send(&req)).await?;
                let token: TokenResponse = response.json("oauth.token")?;
                if token.access_token.is_empty() {
                    return Err(Error::Decode {
                        endpoint: "oauth.token",
                        message: "the token endpoint answered without an access_token".into(),
                    });
                }
                let cached = token.into_cached(fetched_at);
                let secret = cached.token.clone();
                *slot = Some(cached);
                debug!("fetched a new OAuth access token");
                Ok(secret)
            }
        }
    }

    /// Every credential value a request of this client may carry (the API token, or the OAuth
    /// client's secret and its cached access token), so that an answer echoing one is redacted.
    fn credential_values(&self) -> Vec<String> {
        match &self.inner.credentials {
            Credentials::ApiToken(token) => vec![token.expose().to_string()],
            Credentials::OAuthClient { client_secret, .. } => {
                let mut values = vec![client_secret.expose().to_string()];
                if let Ok(slot) = self.inner.tokens.slot.try_lock() {
                    if let Some(cached) = slot.as_ref() {
                        values.push(cached.token.expose().to_string());
                    }
                }
                values
            }
        }
    }

    /// Path segments of a tailnet-scoped endpoint.
    pub(crate) fn tailnet_path<'a>(&'a self, rest: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["tailnet", self.inner.tailnet.as_str()];
        v.extend_from_slice(rest);
        v
    }
}

/// A failed attempt and the delay the server asked for, if any.
struct Failure {
    error: Error,
    retry_after: Option<Duration>,
    from_token_endpoint: bool,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            retry_after: None,
            from_token_endpoint: false,
        }
    }
}

/// `Retry-After` as seconds (the HTTP-date form is rare for APIs and treated as absent).
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// The ETag header without its quotes.
pub(crate) fn etag(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(reqwest::header::ETAG)?.to_str().ok()?;
    Some(
        raw.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_under_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for attempt in 1..10 {
            let d = policy.backoff(attempt);
            let ceiling =
                (Duration::from_millis(100) * 2u32.pow(attempt - 1)).min(Duration::from_secs(1));
            assert!(
                d <= ceiling && d >= ceiling / 2,
                "attempt {attempt}: {d:?} vs {ceiling:?}"
            );
        }
    }

    #[test]
    fn urls_escape_the_tailnet() {
        let client = Client::new(ClientConfig::new(
            "http://127.0.0.1:1/base",
            "my org/x",
            Credentials::ApiToken(Secret::new("t")),
        ))
        .unwrap();
        let segments: Vec<String> = client
            .tailnet_path(&["users"])
            .iter()
            .map(|s| s.to_string())
            .collect();
        let url = client.url(&segments, &[("type", "all".into())]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:1/base/api/v2/tailnet/my%20org%2Fx/users?type=all"
        );
    }

    #[test]
    fn bad_configuration_is_refused_with_a_reason() {
        let err = Client::new(ClientConfig::new(
            "not a url",
            "-",
            Credentials::ApiToken(Secret::new("t")),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("not a URL"), "{err}");
        let err = Client::new(ClientConfig::new(
            "ftp://x",
            "-",
            Credentials::ApiToken(Secret::new("t")),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("http(s)"), "{err}");
    }
}
