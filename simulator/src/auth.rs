//! Authentication (API keys and OAuth access tokens) and scope checks.
//!
//! Credentials arrive as `Authorization: Bearer <token>` or as HTTP Basic with the token as the
//! user name and an empty password, as Tailscale accepts both. API keys carry every scope
//! (`all`); OAuth access tokens carry the scopes of their client, narrowed to the `scope`
//! requested at the token exchange.
//!
//! Scope rules: a resource scope `X` allows reading and writing `X`, `X:read` allows reading,
//! `all` allows everything and `all:read` every read. The legacy `devices` scope covers the
//! `devices:*` resources. Some operations (creating user invites) also need a user-owned key,
//! i.e. an API access token: an OAuth token is refused whatever its scopes ([`Caller`]).

use std::time::Instant;

use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine;
use jiff::Timestamp;

use crate::error::ApiError;
use crate::state::State;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// What an endpoint needs: a resource and read or write access to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Need {
    pub resource: &'static str,
    pub access: Access,
}

pub(crate) const USERS_READ: Need = Need {
    resource: "users",
    access: Access::Read,
};
pub(crate) const USERS_WRITE: Need = Need {
    resource: "users",
    access: Access::Write,
};
pub(crate) const POLICY_READ: Need = Need {
    resource: "policy_file",
    access: Access::Read,
};
pub(crate) const POLICY_WRITE: Need = Need {
    resource: "policy_file",
    access: Access::Write,
};
pub(crate) const DEVICES_READ: Need = Need {
    resource: "devices:core",
    access: Access::Read,
};
pub(crate) const ATTRIBUTES_READ: Need = Need {
    resource: "devices:posture_attributes",
    access: Access::Read,
};
pub(crate) const ATTRIBUTES_WRITE: Need = Need {
    resource: "devices:posture_attributes",
    access: Access::Write,
};

pub(crate) const LOGS_CONFIGURATION_READ: Need = Need {
    resource: "logs:configuration",
    access: Access::Read,
};

pub(crate) const WEBHOOKS_READ: Need = Need {
    resource: "webhooks",
    access: Access::Read,
};
pub(crate) const WEBHOOKS_WRITE: Need = Need {
    resource: "webhooks",
    access: Access::Write,
};

/// Does one held scope satisfy `need`?
fn scope_grants(scope: &str, need: Need) -> bool {
    let read = need.access == Access::Read;
    let legacy_devices = need.resource.starts_with("devices:");
    match scope {
        "all" => true,
        "all:read" => read,
        "devices" if legacy_devices => true,
        "devices:read" if legacy_devices => read,
        s if s == need.resource => true,
        s => read && s.strip_suffix(":read") == Some(need.resource),
    }
}

pub(crate) fn scopes_grant(scopes: &[String], need: Need) -> bool {
    scopes.iter().any(|s| scope_grants(s, need))
}

/// May a client holding `client_scopes` obtain a token with `requested`?
///
/// A client may ask for any scope it holds or any narrower read scope of it.
pub(crate) fn may_request(client_scopes: &[String], requested: &str) -> bool {
    if client_scopes.iter().any(|s| s == requested) {
        return true;
    }
    let (resource, access) = match requested.strip_suffix(":read") {
        Some(resource) => (resource, Access::Read),
        None => (requested, Access::Write),
    };
    // Otherwise only a read scope may be narrowed from a broader held scope.
    client_scopes.iter().any(|s| match (s.as_str(), access) {
        ("all", _) => true,
        ("all:read", Access::Read) => true,
        (held, Access::Read) => held == resource,
        _ => false,
    })
}

/// The token in `Authorization`, from either Bearer or Basic (user name, empty password).
pub(crate) fn credential(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let user = decoded.split_once(':').map_or(decoded.as_str(), |(u, _)| u);
        return (!user.is_empty()).then(|| user.to_string());
    }
    None
}

/// Basic credentials as (user, password), for the token endpoint's client authentication.
pub(crate) fn basic_pair(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Who is calling: the scopes of the credential and whether it is a user-owned API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    pub scopes: Vec<String>,
    /// The id of the API access token used, or `None` for an OAuth access token (owned by the
    /// tailnet, not by a user).
    pub api_key_id: Option<String>,
    /// The API key's id or the OAuth client's id: who the audit log says acted.
    pub id: String,
}

impl Caller {
    /// Tailscale refuses some operations (creating user invites) to anything but a
    /// user-owned key, whatever its scopes.
    pub fn require_user_owned(&self) -> Result<(), ApiError> {
        if self.api_key_id.is_some() {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "operation only permitted for user-owned keys",
            ))
        }
    }
}

/// The request's credential, or 401.
pub(crate) fn authenticate(state: &State, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let invalid = || ApiError::unauthorized("API token invalid");
    let token = credential(headers).ok_or_else(invalid)?;
    if let Some(key) = state.api_keys.iter().find(|k| k.key == token) {
        if key.expires <= Timestamp::now() {
            return Err(ApiError::unauthorized("API key expired"));
        }
        return Ok(Caller {
            scopes: vec!["all".to_string()],
            api_key_id: Some(key.id.clone()),
            id: key.id.clone(),
        });
    }
    match state.tokens.get(&token) {
        Some(t) if t.expires_at > Instant::now() => Ok(Caller {
            scopes: t.scopes.clone(),
            api_key_id: None,
            id: t.client_id.clone(),
        }),
        _ => Err(invalid()),
    }
}

/// Authenticate and check the scope `need` (`None`: any valid credential will do).
pub(crate) fn authorize(
    state: &State,
    headers: &HeaderMap,
    need: Option<Need>,
) -> Result<Caller, ApiError> {
    let caller = authenticate(state, headers)?;
    match need {
        Some(need) if !scopes_grant(&caller.scopes, need) => Err(ApiError::forbidden()),
        _ => Ok(caller),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn scopes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn scope_rules() {
        assert!(scopes_grant(&scopes(&["users:read"]), USERS_READ));
        assert!(!scopes_grant(&scopes(&["users:read"]), USERS_WRITE));
        assert!(scopes_grant(&scopes(&["users"]), USERS_READ));
        assert!(scopes_grant(&scopes(&["users"]), USERS_WRITE));
        assert!(scopes_grant(&scopes(&["all:read"]), POLICY_READ));
        assert!(!scopes_grant(&scopes(&["all:read"]), POLICY_WRITE));
        assert!(scopes_grant(&scopes(&["all"]), ATTRIBUTES_WRITE));
        assert!(scopes_grant(&scopes(&["devices:core"]), DEVICES_READ));
        assert!(scopes_grant(&scopes(&["devices:core:read"]), DEVICES_READ));
        assert!(!scopes_grant(&scopes(&["devices:core"]), ATTRIBUTES_READ));
        assert!(scopes_grant(
            &scopes(&["devices:posture_attributes:read"]),
            ATTRIBUTES_READ
        ));
        assert!(!scopes_grant(
            &scopes(&["devices:posture_attributes:read"]),
            ATTRIBUTES_WRITE
        ));
        assert!(!scopes_grant(&scopes(&["policy_file"]), USERS_READ));
        assert!(scopes_grant(&scopes(&["webhooks:read"]), WEBHOOKS_READ));
        assert!(!scopes_grant(&scopes(&["webhooks:read"]), WEBHOOKS_WRITE));
        assert!(scopes_grant(&scopes(&["webhooks"]), WEBHOOKS_WRITE));
        assert!(!scopes_grant(&scopes(&["users"]), WEBHOOKS_READ));
    }

    #[test]
    fn requestable_scopes() {
        let client = scopes(&["users", "policy_file:read"]);
        assert!(may_request(&client, "users"));
        assert!(may_request(&client, "users:read"));
        assert!(may_request(&client, "policy_file:read"));
        assert!(!may_request(&client, "policy_file"));
        assert!(!may_request(&client, "devices:core:read"));
        assert!(may_request(&scopes(&["all:read"]), "devices:core:read"));
        assert!(!may_request(&scopes(&["all:read"]), "users"));
    }

    #[test]
    fn credentials_from_bearer_and_basic() {
        let mut headers = HeaderMap::new();
        assert_eq!(credential(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer tskey-api-x"),
        );
        assert_eq!(credential(&headers).as_deref(), Some("tskey-api-x"));
        // "tskey-api-x:" in base64.
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dHNrZXktYXBpLXg6"),
        );
        assert_eq!(credential(&headers).as_deref(), Some("tskey-api-x"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(credential(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Digest abc"),
        );
        assert_eq!(credential(&headers), None);
    }
}
