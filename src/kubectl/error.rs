//! What can go wrong for a person running the plugin, each saying what to do.

/// Why a command did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable kubeconfig (or context).
    #[error("cannot use the kubeconfig: {0}")]
    Kubeconfig(String),
    /// The object named does not exist.
    #[error("{what} not found in namespace {namespace}: {hint}")]
    NotFound {
        what: String,
        namespace: String,
        hint: String,
    },
    /// The API server refused: RBAC, an admission policy or the schema. Its message names what
    /// to fix, so it is quoted as it is.
    #[error("the API server refused to {action} ({status}): {message}")]
    Refused {
        action: String,
        status: String,
        message: String,
    },
    /// The arguments cannot make a valid request.
    #[error("{0}")]
    Invalid(String),
    /// The grant is not in a state where a decision means anything.
    #[error("{0}")]
    NotDecidable(String),
    /// Nobody confirmed: nothing was changed.
    #[error("{0}")]
    NotConfirmed(String),
    /// A record Tailkeeper keeps (an access review's items) could not be read.
    #[error("{0}")]
    Unreadable(String),
    /// The inventory could not be read or has nothing of what was asked.
    #[error(transparent)]
    Access(crate::access::ExportError),
    /// The API server could not be reached, or answered with something unexpected.
    #[error("cannot {action}: {source}")]
    Unreachable {
        action: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// The error for a failed call that was to `action` (`create AccessGrant x`).
    pub fn from_kube(action: impl Into<String>, e: kube::Error) -> Error {
        match e {
            kube::Error::Api(status) => Error::Refused {
                action: action.into(),
                status: http_status(status.code),
                message: status.message,
            },
            other => Error::Unreachable {
                action: action.into(),
                source: other,
            },
        }
    }
}

impl From<crate::access::ExportError> for Error {
    fn from(e: crate::access::ExportError) -> Error {
        use crate::access::{ExportError, ReadError};
        match e {
            ExportError::Read(ReadError::Kubernetes(e)) => {
                Error::from_kube("read the entitlements inventory", e)
            }
            other => Error::Access(other),
        }
    }
}

/// An HTTP status as people read it, with where such refusals come from.
fn http_status(code: u16) -> String {
    let meaning = match code {
        400 => "bad request",
        401 => "unauthorized: your credentials were not accepted; log in again",
        403 => "forbidden by RBAC or an admission policy",
        404 => "not found",
        409 => "conflict: it changed meanwhile; try again",
        422 => "invalid",
        429 => "too many requests; try again shortly",
        500..=599 => "server error",
        _ => "refused",
    };
    format!("HTTP {code}, {meaning}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(message, "Forbidden")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn a_refusal_quotes_the_api_servers_message_and_says_where_it_comes_from() {
        let message = "accessgrants.tailkeeper.io \"g\" is forbidden: ValidatingAdmissionPolicy 'tailkeeper-grant-identity' with binding 'tailkeeper-grant-identity' denied request: you cannot approve your own grant: another approver must";
        let e = Error::from_kube("approve AccessGrant g", api_error(403, message));
        let text = e.to_string();
        assert!(
            text.starts_with("the API server refused to approve AccessGrant g (HTTP 403, forbidden by RBAC or an admission policy): "),
            "{text}"
        );
        assert!(text.ends_with(message), "{text}");
        assert!(matches!(e, Error::Refused { .. }));
        let invalid = Error::from_kube("create AccessGrant g", api_error(422, "spec.user: bad"));
        assert!(invalid
            .to_string()
            .contains("(HTTP 422, invalid): spec.user: bad"));
    }
}
