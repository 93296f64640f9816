use serde_json::Value;

/// An error from the Tailscale API or from reaching it. Messages name the endpoint, carry the
/// HTTP status and quote Tailscale's own message; they never contain a credential.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Tailscale answered with an error status.
    #[error("Tailscale API {endpoint}: HTTP {status}: {message}")]
    Api {
        endpoint: &'static str,
        status: u16,
        /// Tailscale's `message`, verbatim.
        message: String,
        /// Tailscale's `data` (for example failing policy tests), when present.
        data: Option<Value>,
    },
    /// The request never got an answer (connection refused, reset, TLS failure).
    #[error("Tailscale API {endpoint}: cannot reach Tailscale: {message}")]
    Transport {
        endpoint: &'static str,
        message: String,
    },
    /// No answer within the request timeout.
    #[error("Tailscale API {endpoint}: no answer within {seconds:.1}s")]
    Timeout {
        endpoint: &'static str,
        seconds: f64,
    },
    /// A retryable failure persisted through every attempt.
    #[error("Tailscale API {endpoint}: gave up after {attempts} attempts; last error: {last}")]
    RetriesExhausted {
        endpoint: &'static str,
        attempts: u32,
        last: Box<Error>,
    },
    /// Tailscale answered 2xx with a body that does not parse.
    #[error("Tailscale API {endpoint}: unexpected answer: {message}")]
    Decode {
        endpoint: &'static str,
        message: String,
    },
    /// The client cannot be built from its configuration.
    #[error("invalid Tailscale client configuration: {0}")]
    Config(String),
}

impl Error {
    /// The HTTP status Tailscale answered, looking through retries.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            Error::RetriesExhausted { last, .. } => last.status(),
            _ => None,
        }
    }

    /// Tailscale's own message when it sent one, else this error's text.
    pub fn tailscale_message(&self) -> String {
        match self {
            Error::Api { message, .. } => message.clone(),
            Error::RetriesExhausted { last, .. } => last.tailscale_message(),
            other => other.to_string(),
        }
    }

    /// A write was refused because the policy file changed since it was read (HTTP 412).
    pub fn is_precondition_failed(&self) -> bool {
        self.status() == Some(412)
    }

    /// The credential was refused (HTTP 401): retrying will not help until it is replaced.
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(401)
    }

    /// The credential lacks a scope or the plan lacks the feature (HTTP 403).
    pub fn is_forbidden(&self) -> bool {
        self.status() == Some(403)
    }

    /// Whether a later attempt may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Api { status, .. } => is_retryable_status(*status),
            Error::Transport { .. } | Error::Timeout { .. } => true,
            Error::RetriesExhausted { last, .. } => last.is_transient(),
            Error::Decode { .. } | Error::Config(_) => false,
        }
    }
}

/// Statuses worth another attempt: throttling and server-side failures (but not 501, which
/// means the endpoint does not exist).
pub(crate) fn is_retryable_status(status: u16) -> bool {
    status == 429 || status == 408 || (status >= 500 && status != 501)
}
