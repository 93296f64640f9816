//! The control API under `/_sim/`: plain HTTP, no auth, for the demo and for tests that run
//! the simulator as a separate process.
//!
//! Each handler is a thin adapter over the public [`Simulator`] method of the same purpose,
//! so the in-process and the HTTP control surfaces cannot drift apart.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{parse_json, ApiError};
use crate::model::{Fault, SimDevice, SimUser};
use crate::Simulator;

pub(crate) fn routes(sim: Simulator) -> Router {
    Router::new()
        .route("/_sim/state", get(state))
        .route("/_sim/users", put(set_users).post(add_user))
        .route("/_sim/users/{login}", delete(remove_user))
        .route("/_sim/devices", post(add_device))
        .route("/_sim/user-invites", get(user_invites))
        .route("/_sim/user-invites/{id}/accept", post(accept_user_invite))
        .route("/_sim/keys", post(create_key))
        .route("/_sim/oauth-clients", post(create_oauth_client))
        .route("/_sim/oauth/expire-tokens", post(expire_tokens))
        .route("/_sim/policy", put(set_policy))
        .route(
            "/_sim/policy/edit-before-next-write",
            post(edit_before_next_write),
        )
        .route("/_sim/calls", get(calls).delete(reset_calls))
        .route("/_sim/latency", put(set_latency))
        .route(
            "/_sim/faults",
            get(faults).post(inject).delete(clear_faults),
        )
        .with_state(sim)
}

type Reply = Result<Json<Value>, ApiError>;

fn ok() -> Reply {
    Ok(Json(json!({})))
}

async fn state(State(sim): State<Simulator>) -> Json<Value> {
    let (policy, etag) = sim.policy();
    Json(json!({
        "users": sim.users(),
        "userInvites": sim.user_invites(),
        "devices": sim.devices(),
        "policy": policy,
        "etag": etag,
        "calls": sim.calls(),
        "faults": sim.pending_faults(),
    }))
}

async fn set_users(State(sim): State<Simulator>, body: Bytes) -> Reply {
    let users: Vec<SimUser> = parse_json(&body)?;
    sim.set_users(users);
    Ok(Json(json!({ "users": sim.users() })))
}

async fn add_user(State(sim): State<Simulator>, body: Bytes) -> Reply {
    let user: SimUser = parse_json(&body)?;
    Ok(Json(json!({ "id": sim.add_user(user) })))
}

async fn remove_user(
    State(sim): State<Simulator>,
    login: Result<Path<String>, PathRejection>,
) -> Reply {
    let Path(login) = login?;
    if sim.remove_user(&login) {
        ok()
    } else {
        Err(ApiError::not_found("user not found"))
    }
}

async fn add_device(State(sim): State<Simulator>, body: Bytes) -> Reply {
    let device: SimDevice = parse_json(&body)?;
    Ok(Json(json!({ "id": sim.add_device(device) })))
}

async fn user_invites(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!(sim.user_invites()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct AcceptRequest {
    /// Who signs in to accept; defaults to the invite's email.
    login_name: String,
}

/// Body optional: `{"loginName": "..."}`. Answers `{"id": "<new user id>"}`.
async fn accept_user_invite(
    State(sim): State<Simulator>,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Reply {
    let Path(id) = id?;
    let request: AcceptRequest = if body.is_empty() {
        AcceptRequest::default()
    } else {
        parse_json(&body)?
    };
    if !sim.user_invites().iter().any(|i| i.id == id) {
        return Err(ApiError::not_found("user invite not found"));
    }
    let user_id = sim
        .accept_user_invite(&id, &request.login_name)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(json!({ "id": user_id })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyRequest {
    /// Defaults to 90 days, the longest lifetime Tailscale allows.
    #[serde(default = "ninety_days")]
    expires_in_seconds: u64,
}

fn ninety_days() -> u64 {
    90 * 24 * 3600
}

async fn create_key(State(sim): State<Simulator>, body: Bytes) -> Reply {
    let request: KeyRequest = if body.is_empty() {
        KeyRequest {
            expires_in_seconds: ninety_days(),
        }
    } else {
        parse_json(&body)?
    };
    let key = sim.create_api_key(Duration::from_secs(request.expires_in_seconds));
    Ok(Json(json!(key)))
}

#[derive(Debug, Deserialize)]
struct OAuthClientRequest {
    scopes: Vec<String>,
}

async fn create_oauth_client(State(sim): State<Simulator>, body: Bytes) -> Reply {
    let request: OAuthClientRequest = parse_json(&body)?;
    let scopes: Vec<&str> = request.scopes.iter().map(String::as_str).collect();
    Ok(Json(json!(sim.create_oauth_client(&scopes))))
}

async fn expire_tokens(State(sim): State<Simulator>) -> Reply {
    sim.expire_oauth_tokens();
    ok()
}

fn text_body(body: &Bytes) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|_| ApiError::bad_request("body is not valid UTF-8"))
}

/// Answers `{"etag": "<hex>"}` and, like the Tailscale route, a quoted `ETag` header.
async fn set_policy(State(sim): State<Simulator>, body: Bytes) -> Result<Response, ApiError> {
    let etag = sim.set_policy_as_human(text_body(&body)?);
    let mut response = Json(json!({ "etag": etag })).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

async fn edit_before_next_write(State(sim): State<Simulator>, body: Bytes) -> Reply {
    sim.edit_policy_before_next_write(text_body(&body)?);
    ok()
}

async fn calls(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!(sim.calls()))
}

async fn reset_calls(State(sim): State<Simulator>) -> Reply {
    sim.reset_calls();
    ok()
}

#[derive(Debug, Deserialize)]
struct LatencyRequest {
    ms: u64,
}

async fn set_latency(State(sim): State<Simulator>, body: Bytes) -> Reply {
    let request: LatencyRequest = parse_json(&body)?;
    sim.set_latency(Duration::from_millis(request.ms));
    ok()
}

async fn faults(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!(sim.pending_faults()))
}

async fn inject(State(sim): State<Simulator>, body: Bytes) -> Reply {
    let fault: Fault = parse_json(&body)?;
    sim.inject(fault);
    ok()
}

async fn clear_faults(State(sim): State<Simulator>) -> Reply {
    sim.clear_faults();
    ok()
}
