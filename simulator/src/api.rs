//! The Tailscale API v2 routes.
//!
//! Every route is wrapped in [`prelude`], which counts the call under its endpoint name, adds
//! the configured latency and applies an injected fault, all before authentication, so tests
//! can count and fault requests that would fail anyway. Handlers then authenticate, check the
//! `{tailnet}` segment, and act under a single acquisition of the state lock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, MethodRouter};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::auth::{self, Need};
use crate::error::{parse_json, ApiError};
use crate::model::{FaultKind, SimDevice, SimUser, ROLES, WEBHOOK_EVENT_TYPES};
use crate::policy::{self, PolicyError};
use crate::state::{
    self, AccessToken, ApiKeyRecord, Attribute, OAuthClientRecord, UserInviteRecord,
};
use crate::webhooks::{self, Endpoint};
use crate::Simulator;

/// Long enough that any client times out first; shutdown releases it earlier.
const HANG: Duration = Duration::from_secs(3600);

/// How an answer is labelled when it carries HuJSON text.
const HUJSON: &str = "application/hujson";

pub(crate) fn routes(sim: Simulator) -> Router {
    // Attach the prelude for `name` to one method router.
    let ep = |name: &'static str, route: MethodRouter<Simulator>| {
        route.route_layer(middleware::from_fn_with_state((sim.clone(), name), prelude))
    };
    Router::new()
        .route("/api/v2/oauth/token", ep("oauth.token", post(oauth_token)))
        .route(
            "/api/v2/tailnet/{tailnet}/users",
            ep("users.list", get(list_users)),
        )
        .route("/api/v2/users/{id}", ep("users.get", get(get_user)))
        .route("/api/v2/users/{id}/role", ep("users.role", post(set_role)))
        .route(
            "/api/v2/users/{id}/suspend",
            ep("users.suspend", post(suspend_user)),
        )
        .route(
            "/api/v2/users/{id}/restore",
            ep("users.restore", post(restore_user)),
        )
        .route(
            "/api/v2/users/{id}/approve",
            ep("users.approve", post(approve_user)),
        )
        .route(
            "/api/v2/users/{id}/delete",
            ep("users.delete", post(delete_user)),
        )
        .route(
            "/api/v2/tailnet/{tailnet}/user-invites",
            ep("invites.list", get(list_user_invites)),
        )
        .route(
            "/api/v2/tailnet/{tailnet}/user-invites",
            ep("invites.create", post(create_user_invites)),
        )
        .route(
            "/api/v2/user-invites/{id}",
            ep("invites.get", get(get_user_invite)),
        )
        .route(
            "/api/v2/user-invites/{id}",
            ep("invites.delete", delete(delete_user_invite)),
        )
        .route(
            "/api/v2/user-invites/{id}/resend",
            ep("invites.resend", post(resend_user_invite)),
        )
        .route(
            "/api/v2/tailnet/{tailnet}/keys",
            ep("keys.list", get(list_keys)),
        )
        .route(
            "/api/v2/tailnet/{tailnet}/keys/{key_id}",
            ep("keys.get", get(get_key)),
        )
        .route("/api/v2/tailnet/{tailnet}/acl", ep("acl.get", get(get_acl)))
        .route(
            "/api/v2/tailnet/{tailnet}/acl",
            ep("acl.set", post(set_acl)),
        )
        .route(
            "/api/v2/tailnet/{tailnet}/logging/configuration",
            ep("logging.configuration", get(configuration_log)),
        )
        .route(
            "/api/v2/tailnet/{tailnet}/acl/validate",
            ep("acl.validate", post(validate_acl)),
        )
        .route(
            "/api/v2/tailnet/{tailnet}/devices",
            ep("devices.list", get(list_devices)),
        )
        .route(
            "/api/v2/device/{id}/attributes",
            ep("attributes.get", get(get_attributes)),
        )
        .route(
            "/api/v2/device/{id}/attributes/{key}",
            ep("attributes.set", post(set_attribute)),
        )
        .route(
            "/api/v2/device/{id}/attributes/{key}",
            ep("attributes.delete", delete(delete_attribute)),
        )
        .route(
            "/api/v2/tailnet/{tailnet}/webhooks",
            ep("webhooks.list", get(list_webhooks)),
        )
        .route(
            "/api/v2/tailnet/{tailnet}/webhooks",
            ep("webhooks.create", post(create_webhook)),
        )
        .route(
            "/api/v2/webhooks/{id}",
            ep("webhooks.get", get(get_webhook)),
        )
        .route(
            "/api/v2/webhooks/{id}",
            ep("webhooks.update", patch(update_webhook)),
        )
        .route(
            "/api/v2/webhooks/{id}",
            ep("webhooks.delete", delete(delete_webhook)),
        )
        .route(
            "/api/v2/webhooks/{id}/rotate",
            ep("webhooks.rotate", post(rotate_webhook)),
        )
        .with_state(sim)
}

/// Count, delay and fault a request before its handler runs.
async fn prelude(
    State((sim, endpoint)): State<(Simulator, &'static str)>,
    request: Request,
    next: Next,
) -> Response {
    // Take the fault when the request arrives, so concurrent requests consume faults in
    // arrival order regardless of how long their latency sleeps last.
    let (latency, fault) = {
        let mut st = sim.lock();
        *st.calls.entry(endpoint.to_string()).or_default() += 1;
        (st.latency, st.faults.take(endpoint))
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        Some(FaultKind::Status {
            status,
            retry_after_secs,
            message,
        }) => {
            tracing::debug!(endpoint, status, "injected status fault");
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = if message.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("injected fault")
                    .to_string()
            } else {
                message
            };
            let mut err = ApiError::new(status, message);
            err.retry_after_secs = retry_after_secs;
            return err.into_response();
        }
        Some(FaultKind::Hang) => {
            tracing::debug!(endpoint, "injected hang");
            tokio::select! {
                _ = tokio::time::sleep(HANG) => {}
                _ = sim.shutdown_signal() => {}
            }
            return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "simulator shutting down")
                .into_response();
        }
        Some(FaultKind::Latency(delay)) => {
            tracing::debug!(endpoint, ?delay, "injected latency");
            tokio::time::sleep(delay).await;
        }
        None => {}
    }
    next.run(request).await
}

/// Debug-log every request: method, path, status, duration. Never headers or bodies, which
/// carry credentials.
pub(crate) async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::debug!(
        %method,
        %path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

fn check_tailnet(st: &state::State, tailnet: &str) -> Result<(), ApiError> {
    if st.is_our_tailnet(tailnet) {
        Ok(())
    } else {
        Err(ApiError::not_found("tailnet not found"))
    }
}

// ---------------------------------------------------------------------------------------------
// OAuth

#[derive(Debug, Deserialize)]
struct TokenRequest {
    client_id: Option<String>,
    client_secret: Option<String>,
    grant_type: Option<String>,
    scope: Option<String>,
}

async fn oauth_token(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Result<Json<Value>, ApiError> {
    let Form(form) = form?;
    if let Some(grant) = form.grant_type.as_deref() {
        if grant != "client_credentials" {
            return Err(ApiError::bad_request(format!(
                "unsupported grant_type {grant:?}; only client_credentials"
            )));
        }
    }
    // Clients may also authenticate with HTTP Basic, as OAuth 2 allows.
    let (client_id, client_secret) = match (form.client_id, form.client_secret) {
        (Some(id), Some(secret)) => (id, secret),
        _ => auth::basic_pair(&headers)
            .ok_or_else(|| ApiError::unauthorized("invalid client credentials"))?,
    };

    let mut st = sim.lock();
    let client = st
        .oauth_clients
        .iter()
        .find(|c| c.id == client_id && c.secret == client_secret)
        .ok_or_else(|| ApiError::unauthorized("invalid client credentials"))?;
    let scopes: Vec<String> = match form.scope.as_deref().map(str::trim) {
        Some(requested) if !requested.is_empty() => {
            let requested: Vec<String> = requested.split_whitespace().map(str::to_string).collect();
            if let Some(bad) = requested
                .iter()
                .find(|s| !auth::may_request(&client.scopes, s))
            {
                return Err(ApiError::bad_request(format!(
                    "invalid scope {bad:?}: not granted to this client"
                )));
            }
            requested
        }
        _ => client.scopes.clone(),
    };
    let ttl = st.config.oauth_token_ttl;
    let client_id = client.id.clone();
    let token = format!(
        "tskey-api-{}-{}",
        crate::model::random_id("k"),
        crate::model::random_alnum(24)
    );
    st.tokens.insert(
        token.clone(),
        AccessToken {
            client_id,
            scopes: scopes.clone(),
            expires_at: Instant::now() + ttl,
        },
    );
    Ok(Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": ttl.as_secs(),
        "scope": scopes.join(" "),
    })))
}

// ---------------------------------------------------------------------------------------------
// Users

fn user_json(user: &SimUser, tailnet_id: &str) -> Value {
    let mut v = json!({
        "id": user.id,
        "displayName": user.display_name,
        "loginName": user.login_name,
        "profilePicUrl": "",
        "tailnetId": tailnet_id,
        "created": user.created,
        "type": user.user_type,
        "role": user.role,
        "status": user.status,
        "deviceCount": user.device_count,
        "currentlyConnected": false,
    });
    if let (Some(last_seen), Some(obj)) = (&user.last_seen, v.as_object_mut()) {
        obj.insert("lastSeen".to_string(), json!(last_seen));
    }
    v
}

async fn list_users(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    tailnet: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(tailnet) = tailnet?;
    let Query(query) = query?;
    let st = sim.lock();
    auth::authorize(&st, &headers, Some(auth::USERS_READ))?;
    check_tailnet(&st, &tailnet)?;
    let wanted_type = query.get("type").map_or("member", String::as_str);
    if !matches!(wanted_type, "member" | "shared" | "all") {
        return Err(ApiError::bad_request(format!(
            "invalid type {wanted_type:?}: want member, shared or all"
        )));
    }
    let role = query.get("role").filter(|r| !r.is_empty());
    let users: Vec<Value> = st
        .users
        .iter()
        .filter(|u| wanted_type == "all" || u.user_type == wanted_type)
        .filter(|u| role.is_none_or(|r| &u.role == r))
        .map(|u| user_json(u, &st.config.tailnet_id))
        .collect();
    Ok(Json(json!({ "users": users })))
}

async fn get_user(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let st = sim.lock();
    auth::authorize(&st, &headers, Some(auth::USERS_READ))?;
    st.users
        .iter()
        .find(|u| u.id == id)
        .map(|u| Json(user_json(u, &st.config.tailnet_id)))
        .ok_or_else(user_not_found)
}

fn user_not_found() -> ApiError {
    ApiError::not_found("user not found")
}

/// Apply `change` to user `id` after authorizing a user write; answers 200 `{}`.
fn mutate_user(
    sim: &Simulator,
    headers: &HeaderMap,
    id: Result<Path<String>, PathRejection>,
    change: impl FnOnce(&mut SimUser) -> Result<(), ApiError>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let mut st = sim.lock();
    auth::authorize(&st, headers, Some(auth::USERS_WRITE))?;
    let user = st.user_mut(&id).ok_or_else(user_not_found)?;
    change(user)?;
    Ok(Json(json!({})))
}

fn refuse_for_owner(user: &SimUser, what: &str) -> Result<(), ApiError> {
    if user.role == "owner" {
        Err(ApiError::bad_request(format!(
            "cannot {what} the tailnet owner; transfer ownership in the admin console first"
        )))
    } else {
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
struct RoleBody {
    role: String,
}

async fn set_role(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    mutate_user(&sim, &headers, id, |user| {
        let RoleBody { role } = parse_json(&body)?;
        if !ROLES.contains(&role.as_str()) {
            return Err(ApiError::bad_request(format!(
                "invalid role {role:?}: want one of {}",
                ROLES.join(", ")
            )));
        }
        refuse_for_owner(user, "change the role of")?;
        if role == "owner" {
            return Err(ApiError::bad_request(
                "cannot make a user the owner; transfer ownership in the admin console",
            ));
        }
        user.role = role;
        Ok(())
    })
}

async fn suspend_user(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    mutate_user(&sim, &headers, id, |user| {
        refuse_for_owner(user, "suspend")?;
        user.status = "suspended".to_string();
        Ok(())
    })
}

async fn restore_user(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    // Restoring a user who is not suspended changes nothing (idempotent, like a retry).
    mutate_user(&sim, &headers, id, |user| {
        if user.status == "suspended" {
            user.status = "active".to_string();
        }
        Ok(())
    })
}

async fn approve_user(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    mutate_user(&sim, &headers, id, |user| {
        if user.status == "needs-approval" {
            user.status = "active".to_string();
        }
        Ok(())
    })
}

async fn delete_user(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let mut st = sim.lock();
    auth::authorize(&st, &headers, Some(auth::USERS_WRITE))?;
    let user = st
        .users
        .iter()
        .find(|u| u.id == id)
        .ok_or_else(user_not_found)?;
    refuse_for_owner(user, "delete")?;
    st.remove_user_where(|u| u.id == id);
    Ok(Json(json!({})))
}

// ---------------------------------------------------------------------------------------------
// Keys

/// An API access token's metadata (never its secret), as both keys routes answer it.
fn api_key_json(key: &ApiKeyRecord) -> Value {
    let expiry_seconds = key.expires.duration_since(key.created).as_secs().max(0);
    json!({
        "id": key.id,
        "description": "",
        "created": state::rfc3339(key.created),
        "expires": state::rfc3339(key.expires),
        "expirySeconds": expiry_seconds,
        "capabilities": {},
        "keyType": "api",
    })
}

/// An OAuth client's metadata (never its secret); OAuth clients do not expire.
fn oauth_client_json(client: &OAuthClientRecord) -> Value {
    json!({
        "id": client.id,
        "description": "",
        "created": state::rfc3339(client.created),
        "scopes": client.scopes,
        "keyType": "client",
    })
}

/// `GET .../keys[?all=true]`: `{"keys": [...]}`, each entry what `GET .../keys/{id}` answers.
///
/// As with Tailscale, only active keys (expired API access tokens are left out), and a caller
/// sees the keys of its owner unless it asks for `all`: an API access token the user's API
/// access tokens (the simulator has one user owning them all), an OAuth access token the
/// tailnet's own keys, i.e. the OAuth clients. With `all=true` both.
async fn list_keys(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    tailnet: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(tailnet) = tailnet?;
    let Query(query) = query?;
    let st = sim.lock();
    // Any valid credential may list key metadata, as it may read a key (see `get_key`).
    let caller = auth::authorize(&st, &headers, None)?;
    check_tailnet(&st, &tailnet)?;
    let all = query
        .get("all")
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let user_owned = caller.api_key_id.is_some();
    let mut keys: Vec<Value> = Vec::new();
    if all || user_owned {
        let now = jiff::Timestamp::now();
        keys.extend(
            st.api_keys
                .iter()
                .filter(|k| k.expires > now)
                .map(api_key_json),
        );
    }
    if all || !user_owned {
        keys.extend(st.oauth_clients.iter().map(oauth_client_json));
    }
    Ok(Json(json!({ "keys": keys })))
}

async fn get_key(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((tailnet, key_id)) = path?;
    let st = sim.lock();
    // Any valid credential may read key metadata (every scope may read its own key).
    auth::authorize(&st, &headers, None)?;
    check_tailnet(&st, &tailnet)?;
    if let Some(key) = st.api_keys.iter().find(|k| k.id == key_id) {
        return Ok(Json(api_key_json(key)));
    }
    if let Some(client) = st.oauth_clients.iter().find(|c| c.id == key_id) {
        return Ok(Json(oauth_client_json(client)));
    }
    Err(ApiError::not_found("key not found"))
}

// ---------------------------------------------------------------------------------------------
// User invites

/// Roles an invite may carry: every role but `owner`.
const INVITE_ROLES: &[&str] = &[
    "member",
    "admin",
    "it-admin",
    "network-admin",
    "billing-admin",
    "auditor",
];

/// A stable number for an id: Tailscale's invites carry numeric `tailnetId` and `inviterId`
/// where its other objects carry string ids.
fn numeric_id(id: &str) -> u64 {
    let hash = Sha256::digest(id.as_bytes());
    u64::from(u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]])).max(1)
}

/// The invite object. `email` and `lastEmailSentAt` only when it was emailed; `inviteUrl`
/// unless the email is in the tailnet's domain (signing in with it is enough then).
fn user_invite_json(st: &state::State, invite: &UserInviteRecord, base_url: &str) -> Value {
    let mut v = json!({
        "id": invite.id,
        "role": invite.role,
        "tailnetId": numeric_id(&st.config.tailnet_id),
        "inviterId": numeric_id(&invite.inviter_key_id),
    });
    let Some(obj) = v.as_object_mut() else {
        return v;
    };
    if !invite.email.is_empty() {
        obj.insert("email".to_string(), json!(invite.email));
    }
    if let Some(sent) = invite.last_email_sent_at {
        obj.insert("lastEmailSentAt".to_string(), json!(state::rfc3339(sent)));
    }
    if invite.email.is_empty() || !st.in_tailnet_domain(&invite.email) {
        obj.insert(
            "inviteUrl".to_string(),
            json!(format!("{base_url}/uinv/{}", invite.code)),
        );
    }
    v
}

fn user_invite_not_found() -> ApiError {
    ApiError::not_found("user invite not found")
}

/// One entry of the create body; both fields are optional.
#[derive(Debug, Deserialize)]
struct CreateUserInvite {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

fn check_invite_email(email: &str) -> Result<(), ApiError> {
    let valid = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.contains('@')
    }) && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid email {email:?}: want an address like user@example.com"
        )))
    }
}

async fn list_user_invites(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    tailnet: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(tailnet) = tailnet?;
    let st = sim.lock();
    auth::authorize(&st, &headers, Some(auth::USERS_READ))?;
    check_tailnet(&st, &tailnet)?;
    let base_url = sim.url();
    // A bare array, unlike most lists.
    let invites: Vec<Value> = st
        .user_invites
        .iter()
        .map(|i| user_invite_json(&st, i, &base_url))
        .collect();
    Ok(Json(Value::Array(invites)))
}

/// `POST .../user-invites` with `[{"role": ..., "email": ...}, ...]`; answers the created
/// invites in the same order. All or nothing: one bad entry rejects the request.
async fn create_user_invites(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    tailnet: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Path(tailnet) = tailnet?;
    let mut st = sim.lock();
    let caller = auth::authorize(&st, &headers, Some(auth::USERS_WRITE))?;
    check_tailnet(&st, &tailnet)?;
    // An invite needs an inviting user: OAuth clients cannot create one, whatever their scopes.
    caller.require_user_owned()?;
    let inviter = caller.api_key_id.unwrap_or_default();
    let requests: Vec<CreateUserInvite> = parse_json(&body)?;
    let mut checked = Vec::with_capacity(requests.len());
    for request in requests {
        let role = request
            .role
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "member".to_string());
        if !INVITE_ROLES.contains(&role.as_str()) {
            return Err(ApiError::bad_request(format!(
                "invalid role {role:?}: want one of {}",
                INVITE_ROLES.join(", ")
            )));
        }
        let email = request.email.unwrap_or_default().trim().to_string();
        if !email.is_empty() {
            check_invite_email(&email)?;
        }
        checked.push((role, email));
    }
    let base_url = sim.url();
    let created: Vec<UserInviteRecord> = checked
        .into_iter()
        .map(|(role, email)| st.add_user_invite(role, email, inviter.clone()))
        .collect();
    let answer: Vec<Value> = created
        .iter()
        .map(|i| user_invite_json(&st, i, &base_url))
        .collect();
    Ok(Json(Value::Array(answer)))
}

async fn get_user_invite(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let st = sim.lock();
    auth::authorize(&st, &headers, Some(auth::USERS_READ))?;
    let invite = st.user_invite(&id).ok_or_else(user_invite_not_found)?;
    Ok(Json(user_invite_json(&st, invite, &sim.url())))
}

async fn delete_user_invite(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let mut st = sim.lock();
    auth::authorize(&st, &headers, Some(auth::USERS_WRITE))?;
    st.take_user_invite(&id).ok_or_else(user_invite_not_found)?;
    Ok(Json(json!({})))
}

/// Resending needs an invite created with an email; it records a new send time.
async fn resend_user_invite(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let mut st = sim.lock();
    auth::authorize(&st, &headers, Some(auth::USERS_WRITE))?;
    let invite = st
        .user_invites
        .iter_mut()
        .find(|i| i.id == id)
        .ok_or_else(user_invite_not_found)?;
    if invite.email.is_empty() {
        return Err(ApiError::bad_request(
            "invite has no email to resend to; share its inviteUrl instead",
        ));
    }
    invite.last_email_sent_at = Some(jiff::Timestamp::now());
    Ok(Json(json!({})))
}

// ---------------------------------------------------------------------------------------------
// Policy file

fn hujson_response(text: String, etag: &str) -> Response {
    let mut response = (StatusCode::OK, text).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(HUJSON));
    if let Ok(value) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        headers.insert(header::ETAG, value);
    }
    response
}

fn policy_error_body(err: PolicyError) -> Value {
    if err.data.is_empty() {
        json!({ "message": err.message })
    } else {
        json!({ "message": err.message, "data": err.data })
    }
}

fn policy_error(err: PolicyError) -> ApiError {
    if err.data.is_empty() {
        ApiError::bad_request(err.message)
    } else {
        ApiError::bad_request(err.message).with_data(json!(err.data))
    }
}

/// The request body as UTF-8 text; a policy is text.
fn body_text(body: &Bytes) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|_| ApiError::bad_request("policy file is not valid UTF-8"))
}

async fn get_acl(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    tailnet: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(tailnet) = tailnet?;
    let st = sim.lock();
    auth::authorize(&st, &headers, Some(auth::POLICY_READ))?;
    check_tailnet(&st, &tailnet)?;
    let etag = st.policy_etag();
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"));
    if !wants_json {
        return Ok(hujson_response(st.policy_text.clone(), &etag));
    }
    // A person may have stored a broken file; Tailscale could not render it as JSON either.
    let value = policy::parse_hujson(&st.policy_text).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stored policy file is not valid HuJSON: {e}"),
        )
    })?;
    let mut response = Json(value).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

async fn set_acl(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    tailnet: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Path(tailnet) = tailnet?;
    let text = body_text(&body)?;
    let mut st = sim.lock();
    let caller = auth::authorize(&st, &headers, Some(auth::POLICY_WRITE))?;
    check_tailnet(&st, &tailnet)?;
    // A scheduled human edit lands "just before" this write, making its If-Match stale.
    if let Some(edit) = st.pending_edit.take() {
        let person = crate::console_actor();
        st.set_policy_logged(edit, "ADMIN_CONSOLE", person);
    }
    if let Some(if_match) = headers.get(header::IF_MATCH) {
        let if_match = if_match
            .to_str()
            .map_err(|_| ApiError::bad_request("invalid If-Match header"))?;
        if !st.if_match_ok(if_match) {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition failed, invalid old hash",
            ));
        }
    }
    let new_text = if text.trim().is_empty() {
        policy::DEFAULT_POLICY
    } else {
        text
    };
    policy::check(new_text, &st.directory()).map_err(policy_error)?;
    let actor = state::LogActor {
        kind: if caller.api_key_id.is_some() {
            "API_KEY"
        } else {
            "OAUTH_CLIENT"
        }
        .to_string(),
        login_name: String::new(),
        display_name: String::new(),
        id: caller.id.clone(),
    };
    st.set_policy_logged(new_text.to_string(), "API", actor);
    Ok(hujson_response(st.policy_text.clone(), &st.policy_etag()))
}

/// `GET /api/v2/tailnet/{t}/logging/configuration?start=&end=`: the configuration audit log
/// between two RFC 3339 times (both optional here), oldest first.
async fn configuration_log(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    tailnet: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(tailnet) = tailnet?;
    let Query(query) = query?;
    let st = sim.lock();
    auth::authorize(&st, &headers, Some(auth::LOGS_CONFIGURATION_READ))?;
    check_tailnet(&st, &tailnet)?;
    let bound = |name: &str| -> Result<Option<jiff::Timestamp>, ApiError> {
        query
            .get(name)
            .map(|v| {
                v.parse::<jiff::Timestamp>().map_err(|_| {
                    ApiError::bad_request(format!("invalid {name}: expected an RFC 3339 time"))
                })
            })
            .transpose()
    };
    let (start, end) = (bound("start")?, bound("end")?);
    let logs: Vec<&state::ConfigLogEntry> = st
        .config_log
        .iter()
        .filter(|e| {
            let at = e.event_time.parse::<jiff::Timestamp>().ok();
            start.is_none_or(|s| at.is_some_and(|a| a >= s))
                && end.is_none_or(|t| at.is_some_and(|a| a <= t))
        })
        .collect();
    Ok(Json(json!({
        "version": "1.1",
        "tailnet": st.config.tailnet_name,
        "logs": logs,
    })))
}

async fn validate_acl(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    tailnet: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Path(tailnet) = tailnet?;
    let st = sim.lock();
    auth::authorize(&st, &headers, Some(auth::POLICY_WRITE))?;
    check_tailnet(&st, &tailnet)?;
    let directory = st.directory();
    // Validation problems answer 200 with a message; only auth and routing fail otherwise.
    let text = match body_text(&body) {
        Ok(text) => text,
        Err(err) => return Ok(Json(json!({ "message": err.message }))),
    };
    let result = if text.trim().is_empty() {
        policy::check(policy::DEFAULT_POLICY, &directory).map(drop)
    } else {
        match policy::parse_hujson(text) {
            // A bare list of tests is run against the stored policy file.
            Ok(tests @ Value::Array(_)) => {
                policy::check_tests_against(&st.policy_text, &tests, &directory)
            }
            Ok(_) => policy::check(text, &directory).map(drop),
            Err(message) => Err(PolicyError {
                message,
                data: Vec::new(),
            }),
        }
    };
    Ok(Json(match result {
        Ok(()) => json!({}),
        Err(err) => policy_error_body(err),
    }))
}

// ---------------------------------------------------------------------------------------------
// Devices and posture attributes

/// Stable addresses in Tailscale's CGNAT and ULA ranges, derived from the node id.
fn device_addresses(id: &str) -> [String; 2] {
    let hash = Sha256::digest(id.as_bytes());
    let (a, b, c) = (hash[0] & 0x3f, hash[1], hash[2] % 254 + 1);
    [
        format!("100.{}.{b}.{c}", 64 + a),
        format!("fd7a:115c:a1e0::{:x}{:02x}:{:x}", a, b, c),
    ]
}

fn device_json(device: &SimDevice) -> Value {
    let hostname = device.name.split('.').next().unwrap_or_default();
    let mut v = json!({
        "id": device.id,
        "nodeId": device.id,
        "name": device.name,
        "hostname": hostname,
        "user": device.user,
        "tags": device.tags,
        "os": device.os,
        "authorized": device.authorized,
        "addresses": device_addresses(&device.id),
    });
    if let (Some(last_seen), Some(obj)) = (&device.last_seen, v.as_object_mut()) {
        obj.insert("lastSeen".to_string(), json!(last_seen));
    }
    v
}

async fn list_devices(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    tailnet: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(tailnet) = tailnet?;
    let st = sim.lock();
    auth::authorize(&st, &headers, Some(auth::DEVICES_READ))?;
    check_tailnet(&st, &tailnet)?;
    let devices: Vec<Value> = st.devices.iter().map(device_json).collect();
    Ok(Json(json!({ "devices": devices })))
}

/// Authorize and look up the device for an attribute request.
fn device_guard<'a>(
    st: &'a mut state::State,
    headers: &HeaderMap,
    need: Need,
    device_id: &str,
) -> Result<&'a mut state::State, ApiError> {
    auth::authorize(st, headers, Some(need))?;
    if st.has_device(device_id) {
        Ok(st)
    } else {
        Err(ApiError::not_found("device not found"))
    }
}

async fn get_attributes(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let mut guard = sim.lock();
    let st = device_guard(&mut guard, &headers, auth::ATTRIBUTES_READ, &id)?;
    let mut attributes = Map::new();
    let mut expiries = Map::new();
    for (key, attr) in st.live_attributes(&id).iter() {
        attributes.insert(key.clone(), attr.value.clone());
        if let Some(expiry) = attr.expiry {
            expiries.insert(key.clone(), json!(state::rfc3339(expiry)));
        }
    }
    Ok(Json(
        json!({ "attributes": attributes, "expiries": expiries }),
    ))
}

/// `0001-01-01T00:00:00Z`, Go's zero `time.Time`.
const GO_ZERO_TIME: jiff::Timestamp = jiff::Timestamp::constant(-62_135_596_800, 0);

/// Body of an attribute write. A `comment` may also be sent; Tailscale only records it in the
/// audit log, so it is accepted and ignored (unknown fields are ignored by serde).
#[derive(Debug, Deserialize)]
struct SetAttribute {
    value: Value,
    expiry: Option<String>,
}

fn check_attribute_key(key: &str) -> Result<(), ApiError> {
    let name = key.strip_prefix("custom:").unwrap_or_default();
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if name.is_empty() || !valid_chars {
        return Err(ApiError::bad_request(format!(
            "invalid attribute key {key:?}: must be \"custom:\" followed by letters, digits, '_', '-' or '.'"
        )));
    }
    Ok(())
}

async fn set_attribute(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Path((id, key)) = path?;
    let mut guard = sim.lock();
    let st = device_guard(&mut guard, &headers, auth::ATTRIBUTES_WRITE, &id)?;
    check_attribute_key(&key)?;
    let request: SetAttribute = parse_json(&body)?;
    if !matches!(
        request.value,
        Value::String(_) | Value::Number(_) | Value::Bool(_)
    ) {
        return Err(ApiError::bad_request(
            "attribute value must be a string, number or boolean",
        ));
    }
    let expiry = match request.expiry.as_deref().filter(|e| !e.is_empty()) {
        Some(text) => Some(
            text.parse::<jiff::Timestamp>()
                .map_err(|e| ApiError::bad_request(format!("invalid expiry {text:?}: {e}")))?,
        )
        // Go's zero time is how its client says "no expiry" (the field is not a pointer).
        .filter(|t| *t != GO_ZERO_TIME),
        None => None,
    };
    st.live_attributes(&id).insert(
        key,
        Attribute {
            value: request.value,
            expiry,
        },
    );
    Ok(Json(json!({})))
}

async fn delete_attribute(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((id, key)) = path?;
    let mut guard = sim.lock();
    let st = device_guard(&mut guard, &headers, auth::ATTRIBUTES_WRITE, &id)?;
    check_attribute_key(&key)?;
    // Deleting an absent attribute succeeds: the desired end state holds.
    st.live_attributes(&id).remove(&key);
    Ok(Json(json!({})))
}

// ---------------------------------------------------------------------------------------------
// Webhooks

/// Event types Tailscale accepts in subscriptions besides those the simulator emits
/// ([`WEBHOOK_EVENT_TYPES`]); accepted so clients written for Tailscale work, never sent.
const OTHER_EVENT_TYPES: &[&str] = &[
    "nodeCreated",
    "nodeNeedsApproval",
    "nodeApproved",
    "nodeKeyExpiringInOneDay",
    "nodeKeyExpired",
    "nodeDeleted",
    "nodeSigned",
    "nodeNeedsSignature",
    "subnetIPForwardingNotEnabled",
    "exitNodeIPForwardingNotEnabled",
];

/// Destinations whose format Tailscale can send; the empty string is its own JSON format. The
/// simulator accepts them all but always sends its own format.
const PROVIDER_TYPES: &[&str] = &["", "slack", "mattermost", "googlechat", "discord"];

/// The webhook object; the secret only in the answers to create and rotate, as with Tailscale.
fn webhook_json(endpoint: &Endpoint, with_secret: bool) -> Value {
    let mut v = json!({
        "endpointId": endpoint.id,
        "endpointUrl": endpoint.url,
        "providerType": endpoint.provider_type,
        "creatorLoginName": endpoint.creator_login_name,
        "created": state::rfc3339(endpoint.created),
        "lastModified": state::rfc3339(endpoint.last_modified),
        "subscriptions": endpoint.subscriptions,
    });
    if let (true, Some(obj)) = (with_secret, v.as_object_mut()) {
        obj.insert("secret".to_string(), json!(endpoint.secret));
    }
    v
}

fn webhook_not_found() -> ApiError {
    ApiError::not_found("webhook not found")
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateWebhook {
    endpoint_url: String,
    #[serde(default)]
    provider_type: String,
    #[serde(default)]
    subscriptions: Vec<String>,
}

/// Reject event types (and categories) Tailscale does not know.
fn check_subscriptions(subscriptions: &[String]) -> Result<(), ApiError> {
    let known = |s: &str| {
        WEBHOOK_EVENT_TYPES.contains(&s)
            || OTHER_EVENT_TYPES.contains(&s)
            || webhooks::CATEGORIES
                .iter()
                .any(|(category, _)| *category == s)
    };
    match subscriptions.iter().find(|s| !known(s)) {
        Some(bad) => Err(ApiError::bad_request(format!(
            "invalid subscription {bad:?}: unknown event type"
        ))),
        None => Ok(()),
    }
}

/// Reject what Tailscale rejects: a URL that is not absolute http(s), an unknown provider or
/// event type.
fn check_webhook(request: &CreateWebhook) -> Result<(), ApiError> {
    let url = reqwest::Url::parse(&request.endpoint_url).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid endpointUrl {:?}: {e}",
            request.endpoint_url
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ApiError::bad_request(format!(
            "invalid endpointUrl {:?}: want an http or https URL",
            request.endpoint_url
        )));
    }
    if !PROVIDER_TYPES.contains(&request.provider_type.as_str()) {
        return Err(ApiError::bad_request(format!(
            "invalid providerType {:?}: want one of \"\", {}",
            request.provider_type,
            PROVIDER_TYPES[1..].join(", ")
        )));
    }
    check_subscriptions(&request.subscriptions)
}

async fn create_webhook(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    tailnet: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Path(tailnet) = tailnet?;
    let mut st = sim.lock();
    auth::authorize(&st, &headers, Some(auth::WEBHOOKS_WRITE))?;
    check_tailnet(&st, &tailnet)?;
    let request: CreateWebhook = parse_json(&body)?;
    check_webhook(&request)?;
    let endpoint = st.add_webhook(
        request.endpoint_url,
        request.provider_type,
        request.subscriptions,
        webhooks::ACTOR.to_string(),
    );
    Ok(Json(webhook_json(&endpoint, true)))
}

async fn list_webhooks(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    tailnet: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(tailnet) = tailnet?;
    let st = sim.lock();
    auth::authorize(&st, &headers, Some(auth::WEBHOOKS_READ))?;
    check_tailnet(&st, &tailnet)?;
    let list: Vec<Value> = st
        .webhooks
        .endpoints
        .iter()
        .map(|e| webhook_json(e, false))
        .collect();
    Ok(Json(json!({ "webhooks": list })))
}

async fn get_webhook(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let st = sim.lock();
    auth::authorize(&st, &headers, Some(auth::WEBHOOKS_READ))?;
    st.webhooks
        .endpoint(&id)
        .map(|e| Json(webhook_json(e, false)))
        .ok_or_else(webhook_not_found)
}

#[derive(Debug, Deserialize)]
struct UpdateWebhook {
    subscriptions: Vec<String>,
}

/// `PATCH /webhooks/{id}` with `{"subscriptions": [...]}`: replaces the subscriptions and
/// answers the webhook (without its secret).
async fn update_webhook(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let mut st = sim.lock();
    auth::authorize(&st, &headers, Some(auth::WEBHOOKS_WRITE))?;
    if st.webhooks.endpoint(&id).is_none() {
        return Err(webhook_not_found());
    }
    let request: UpdateWebhook = parse_json(&body)?;
    check_subscriptions(&request.subscriptions)?;
    st.webhooks
        .set_subscriptions(&id, request.subscriptions)
        .map(|e| Json(webhook_json(e, false)))
        .ok_or_else(webhook_not_found)
}

async fn delete_webhook(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let mut st = sim.lock();
    auth::authorize(&st, &headers, Some(auth::WEBHOOKS_WRITE))?;
    if st.webhooks.remove(&id) {
        Ok(Json(json!({})))
    } else {
        Err(webhook_not_found())
    }
}

async fn rotate_webhook(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let mut st = sim.lock();
    auth::authorize(&st, &headers, Some(auth::WEBHOOKS_WRITE))?;
    st.webhooks
        .rotate(&id)
        .map(|e| Json(webhook_json(e, true)))
        .ok_or_else(webhook_not_found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_keys() {
        assert!(check_attribute_key("custom:approved").is_ok());
        assert!(check_attribute_key("custom:tk-expires_at.v1").is_ok());
        assert!(check_attribute_key("custom:").is_err());
        assert!(check_attribute_key("node:os").is_err());
        assert!(check_attribute_key("custom:a b").is_err());
    }

    #[test]
    fn device_addresses_are_stable_and_in_range() {
        let [v4, v6] = device_addresses("nABC123CNTRL");
        assert_eq!(device_addresses("nABC123CNTRL")[0], v4);
        let ip: std::net::Ipv4Addr = v4.parse().expect("IPv4");
        let [a, b, _, d] = ip.octets();
        assert_eq!(a, 100);
        assert!((64..128).contains(&b) && d != 0 && d != 255);
        assert!(v6.parse::<std::net::Ipv6Addr>().is_ok());
    }
}
