//! The Argo CD health check in docs/argocd-health.lua, run for real in Lua 5.1 (the language
//! of gopher-lua, which Argo CD embeds) on sample objects of the three kinds, and the copy of it
//! that docs/gitops.md tells people to put in `argocd-cm`.

use std::path::{Path, PathBuf};

use mlua::{Lua, Table, Value};
use serde_json::json;

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn script() -> String {
    std::fs::read_to_string(repo_file("docs/argocd-health.lua"))
        .expect("docs/argocd-health.lua exists")
}

/// A JSON value as Argo CD hands it to the script: objects and arrays become tables (arrays
/// 1-based), every number a float (gopher-lua has no integers), null is absent.
fn to_lua(lua: &Lua, value: &serde_json::Value) -> mlua::Result<Value> {
    Ok(match value {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => Value::Number(n.as_f64().expect("JSON numbers are finite")),
        serde_json::Value::String(s) => Value::String(lua.create_string(s)?),
        serde_json::Value::Array(items) => {
            let t = lua.create_table()?;
            for (i, item) in items.iter().enumerate() {
                t.set(i + 1, to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
        serde_json::Value::Object(map) => {
            let t = lua.create_table()?;
            for (k, v) in map {
                t.set(k.as_str(), to_lua(lua, v)?)?;
            }
            Value::Table(t)
        }
    })
}

/// Runs the script with `obj` as Argo CD does and returns (status, message).
fn health_of(script: &str, obj: &serde_json::Value) -> (String, String) {
    let lua = Lua::new();
    let value = to_lua(&lua, obj).expect("object converts to Lua");
    lua.globals().set("obj", value).expect("set obj");
    let hs: Table = lua
        .load(script)
        .set_name("argocd-health.lua")
        .eval()
        .unwrap_or_else(|e| panic!("health script failed on {obj}: {e}"));
    let status: String = hs.get("status").expect("hs.status is a string");
    let message: Option<String> = hs.get("message").expect("hs.message is a string or nil");
    // A health script must not leave globals behind (Argo CD reuses nothing, but a leaked global
    // is a sign of a missing `local` that would shadow state between helpers).
    let globals: Vec<String> = lua
        .globals()
        .pairs::<String, Value>()
        .filter_map(|kv| kv.ok().map(|(k, _)| k))
        .filter(|k| !STANDARD_GLOBALS.contains(&k.as_str()) && k != "obj")
        .collect();
    assert!(globals.is_empty(), "the script leaked globals {globals:?}");
    (status, message.unwrap_or_default())
}

const STANDARD_GLOBALS: &[&str] = &[
    "_G",
    "_VERSION",
    "assert",
    "collectgarbage",
    "coroutine",
    "debug",
    "dofile",
    "error",
    "gcinfo",
    "getfenv",
    "getmetatable",
    "io",
    "ipairs",
    "load",
    "loadfile",
    "loadstring",
    "math",
    "module",
    "newproxy",
    "next",
    "os",
    "package",
    "pairs",
    "pcall",
    "print",
    "rawequal",
    "rawget",
    "rawset",
    "require",
    "select",
    "setfenv",
    "setmetatable",
    "string",
    "table",
    "tonumber",
    "tostring",
    "type",
    "unpack",
    "xpcall",
];

fn cond(type_: &str, status: &str, reason: &str, message: &str) -> serde_json::Value {
    json!({
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": 3,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    })
}

fn object(kind: &str, generation: i64, status: Option<serde_json::Value>) -> serde_json::Value {
    let mut obj = json!({
        "apiVersion": "tailkeeper.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "sample", "namespace": "team-a", "generation": generation},
        "spec": {},
    });
    if let Some(status) = status {
        obj["status"] = status;
    }
    obj
}

fn grant(phase: &str, message: &str, conditions: serde_json::Value) -> serde_json::Value {
    object(
        "AccessGrant",
        1,
        Some(json!({
            "observedGeneration": 1,
            "phase": phase,
            "message": message,
            "conditions": conditions,
        })),
    )
}

struct Case {
    name: &'static str,
    obj: serde_json::Value,
    status: &'static str,
    /// The message must contain this.
    message: &'static str,
}

fn cases() -> Vec<Case> {
    let ready = cond("Ready", "True", "Synced", "Synced 42 users and 17 devices");
    vec![
        Case {
            name: "integration never reconciled",
            obj: object("TailscaleIntegration", 1, None),
            status: "Progressing",
            message: "Waiting for Tailkeeper to reconcile",
        },
        Case {
            name: "integration with a new spec not yet observed",
            obj: object(
                "TailscaleIntegration",
                4,
                Some(json!({"observedGeneration": 3, "conditions": [ready.clone()]})),
            ),
            status: "Progressing",
            message: "observe generation 4",
        },
        Case {
            name: "integration whose status lacks observedGeneration",
            obj: object(
                "TailscaleIntegration",
                1,
                Some(json!({"conditions": [ready.clone()]})),
            ),
            status: "Progressing",
            message: "observe generation 1",
        },
        Case {
            name: "integration ready",
            obj: object(
                "TailscaleIntegration",
                3,
                Some(json!({"observedGeneration": 3, "conditions": [ready.clone()]})),
            ),
            status: "Healthy",
            message: "Synced 42 users and 17 devices",
        },
        Case {
            name: "integration stalled on a missing Secret",
            obj: object(
                "TailscaleIntegration",
                3,
                Some(json!({"observedGeneration": 3, "conditions": [
                    cond("Ready", "False", "SecretNotFound", "Secret team-a/ts does not exist"),
                    cond("Stalled", "True", "SecretNotFound", "Secret team-a/ts does not exist: create it"),
                ]})),
            ),
            status: "Degraded",
            message: "Secret team-a/ts does not exist: create it",
        },
        Case {
            name: "integration reconciling",
            obj: object(
                "TailscaleIntegration",
                3,
                Some(json!({"observedGeneration": 3, "conditions": [
                    cond("Reconciling", "True", "Syncing", "First sync in progress"),
                    cond("Ready", "False", "Syncing", "First sync in progress"),
                ]})),
            ),
            status: "Progressing",
            message: "First sync in progress",
        },
        Case {
            name: "Stalled and Reconciling present but False do not count",
            obj: object(
                "TailscaleIntegration",
                3,
                Some(json!({"observedGeneration": 3, "conditions": [
                    cond("Reconciling", "False", "Done", "done"),
                    cond("Stalled", "False", "Fine", "fine"),
                    ready.clone(),
                ]})),
            ),
            status: "Healthy",
            message: "Synced 42 users",
        },
        Case {
            name: "policy failing a retry may fix (Ready=False, not Stalled)",
            obj: object(
                "AccessPolicy",
                3,
                Some(json!({"observedGeneration": 3, "conditions": [
                    cond("Ready", "False", "TailscaleUnavailable", "Tailscale API returned 503; retrying"),
                ]})),
            ),
            status: "Degraded",
            message: "Tailscale API returned 503; retrying",
        },
        Case {
            name: "policy Ready=False without a message falls back to the reason",
            obj: object(
                "AccessPolicy",
                3,
                Some(json!({"observedGeneration": 3, "conditions": [
                    cond("Ready", "False", "ChecksFailing", ""),
                ]})),
            ),
            status: "Degraded",
            message: "ChecksFailing",
        },
        Case {
            name: "policy with Ready=Unknown",
            obj: object(
                "AccessPolicy",
                3,
                Some(json!({"observedGeneration": 3, "conditions": [
                    cond("Ready", "Unknown", "Pending", "Waiting for the integration"),
                ]})),
            ),
            status: "Progressing",
            message: "Waiting for the integration",
        },
        Case {
            name: "policy with a status but no Ready condition yet",
            obj: object(
                "AccessPolicy",
                3,
                Some(json!({"observedGeneration": 3, "checks": []})),
            ),
            status: "Progressing",
            message: "Waiting for the Ready condition",
        },
        Case {
            name: "policy ready with Ready not first in the list",
            obj: object(
                "AccessPolicy",
                3,
                Some(json!({"observedGeneration": 3, "conditions": [
                    cond("CredentialExpiring", "True", "TokenExpiring", "token expires in 5 days"),
                    cond("Ready", "True", "Evaluated", "4 of 4 checks pass"),
                ]})),
            ),
            status: "Healthy",
            message: "4 of 4 checks pass",
        },
        Case {
            name: "grant active",
            obj: grant(
                "Active",
                "alice@example.com is in group:prod until 2026-01-01T02:00:00Z",
                json!([cond("Ready", "True", "Active", "active")]),
            ),
            status: "Healthy",
            message: "alice@example.com is in group:prod",
        },
        Case {
            name: "grant pending",
            obj: grant("Pending", "Waiting to be applied", json!([])),
            status: "Progressing",
            message: "Waiting to be applied",
        },
        Case {
            name: "grant awaiting approval is Suspended: it waits for a person",
            obj: grant(
                "AwaitingApproval",
                "Needs approval by a member of approvers",
                json!([cond("Ready", "False", "AwaitingApproval", "Needs approval")]),
            ),
            status: "Suspended",
            message: "Needs approval by a member of approvers",
        },
        Case {
            name: "grant expired is a healthy record",
            obj: grant(
                "Expired",
                "Expired at 2026-01-01T02:00:00Z; access removed",
                json!([cond("Ready", "False", "Expired", "expired")]),
            ),
            status: "Healthy",
            message: "access removed",
        },
        Case {
            name: "grant revoked is a healthy record",
            obj: grant("Revoked", "Revoked: the AccessGrant was deleted", json!([])),
            status: "Healthy",
            message: "Revoked",
        },
        Case {
            name: "grant denied",
            obj: grant(
                "Denied",
                "group:admins is not grantable by policy team-a/tailnet",
                json!([]),
            ),
            status: "Degraded",
            message: "group:admins is not grantable",
        },
        Case {
            name: "grant failed without a phase message uses the Ready message",
            obj: object(
                "AccessGrant",
                1,
                Some(
                    json!({"observedGeneration": 1, "phase": "Failed", "conditions": [
                        cond("Ready", "False", "PolicyWriteFailed", "policy file rejected: 400"),
                    ]}),
                ),
            ),
            status: "Degraded",
            message: "policy file rejected: 400",
        },
        Case {
            name: "grant stalled takes precedence over its phase",
            obj: grant(
                "Active",
                "active",
                json!([cond(
                    "Stalled",
                    "True",
                    "PolicyUnparseable",
                    "the policy file cannot be parsed"
                )]),
            ),
            status: "Degraded",
            message: "the policy file cannot be parsed",
        },
        Case {
            name: "grant with a spec change not yet observed",
            obj: object(
                "AccessGrant",
                2,
                Some(json!({"observedGeneration": 1, "phase": "Active"})),
            ),
            status: "Progressing",
            message: "observe generation 2",
        },
        Case {
            name: "grant without a phase falls back to Ready",
            obj: object(
                "AccessGrant",
                1,
                Some(json!({"observedGeneration": 1, "conditions": [ready.clone()]})),
            ),
            status: "Healthy",
            message: "Synced",
        },
        Case {
            name: "the phase rule is for grants only",
            obj: object(
                "AccessPolicy",
                3,
                Some(
                    json!({"observedGeneration": 3, "phase": "Active", "conditions": [
                        cond("Ready", "False", "ChecksFailing", "2 of 4 checks fail"),
                    ]}),
                ),
            ),
            status: "Degraded",
            message: "2 of 4 checks fail",
        },
    ]
}

#[test]
fn health_of_sample_objects() {
    let script = script();
    let mut failures = Vec::new();
    let cases = cases();
    assert!(cases.len() >= 10);
    for case in &cases {
        let (status, message) = health_of(&script, &case.obj);
        if status != case.status || !message.contains(case.message) {
            failures.push(format!(
                "{}: got ({status}, {message:?}), want ({}, containing {:?})",
                case.name, case.status, case.message
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_status_is_one_argo_cd_knows() {
    let script = script();
    for case in cases() {
        let (status, _) = health_of(&script, &case.obj);
        assert!(
            [
                "Healthy",
                "Progressing",
                "Degraded",
                "Suspended",
                "Missing",
                "Unknown"
            ]
            .contains(&status.as_str()),
            "{}: {status} is not an Argo CD health status",
            case.name
        );
    }
}

#[test]
fn unknown_grant_phase_is_unknown() {
    let (status, message) = health_of(&script(), &grant("Hibernating", "", json!([])));
    assert_eq!(status, "Unknown");
    assert!(message.contains("Hibernating"), "{message}");
}

#[test]
fn malformed_status_does_not_crash_the_script() {
    // Argo CD shows a script error as an error on the resource; garbage must give a status.
    let script = script();
    for status in [
        json!({"observedGeneration": 3, "conditions": "oops"}),
        json!({"observedGeneration": 3, "conditions": [1, "x", null, {"type": "Ready"}]}),
        json!("a string"),
    ] {
        let (got, _) = health_of(&script, &object("AccessPolicy", 3, Some(status.clone())));
        assert!(
            ["Progressing", "Unknown"].contains(&got.as_str()),
            "{status}: {got}"
        );
    }
}

/// docs/gitops.md embeds the script in an `argocd-cm` snippet; people copy that, so it must be
/// the tested script, registered for all three kinds.
#[test]
fn gitops_doc_embeds_this_script_for_all_three_kinds() {
    let doc = std::fs::read_to_string(repo_file("docs/gitops.md")).expect("docs/gitops.md");
    let start = doc
        .find("```yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm")
        .expect("docs/gitops.md has an argocd-cm ConfigMap snippet")
        + "```yaml\n".len();
    let end = start + doc[start..].find("```").expect("the snippet ends");
    let cm: serde_yaml::Value = serde_yaml::from_str(&doc[start..end]).expect("snippet is YAML");
    let data = cm["data"].as_mapping().expect("argocd-cm has data");
    let script = script();
    for kind in ["TailscaleIntegration", "AccessPolicy", "AccessGrant"] {
        let key = format!("resource.customizations.health.tailkeeper.io_{kind}");
        let embedded = data
            .get(key.as_str())
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("argocd-cm snippet lacks {key}"));
        assert_eq!(
            embedded, script,
            "the {key} script in docs/gitops.md differs from docs/argocd-health.lua"
        );
    }
}
