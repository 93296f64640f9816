//! Reads which admission policies and bindings are installed, every few seconds, for the check
//! in [`crate::grants::admission`]. Read-only; a failure to read counts as "not installed".

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use kube::api::{Api, ListParams};
use tracing::debug;

use super::context::Context;
use crate::grants::admission::{BindingInfo, Installed, PolicyInfo, Scope};

/// How often the installed admission policies are read again.
pub const REFRESH: Duration = Duration::from_secs(5);

/// Read what is installed now.
pub async fn read(client: &kube::Client) -> Installed {
    let policies = Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    let bindings = Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        policies
            .items
            .into_iter()
            .map(|p| PolicyInfo {
                created: p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                fails_closed: p
                    .spec
                    .as_ref()
                    .and_then(|s| s.failure_policy.as_deref())
                    .is_none_or(|f| f == "Fail"),
                name: p.metadata.name.unwrap_or_default(),
            })
            .collect(),
        bindings
            .items
            .into_iter()
            .map(|b| {
                let created = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
                let spec = b.spec;
                let scope = match spec.match_resources.and_then(|m| m.namespace_selector) {
                    None => Scope::All,
                    Some(sel) => {
                        let labels = sel.match_labels.unwrap_or_default();
                        let exprs = sel.match_expressions.unwrap_or_default();
                        match (
                            labels.get("kubernetes.io/metadata.name"),
                            labels.len(),
                            exprs.len(),
                        ) {
                            (Some(ns), 1, 0) => Scope::Only(ns.clone()),
                            (None, 0, 0) => Scope::All,
                            _ => Scope::Other,
                        }
                    }
                };
                BindingInfo {
                    created,
                    policy: spec.policy_name,
                    denies: spec.validation_actions.iter().any(|a| a == "Deny"),
                    scope,
                }
            })
            .collect(),
    ))
}

/// Keep the context's view of the installed admission policies current.
pub async fn refresh(ctx: Arc<Context>) {
    loop {
        let installed = read(&ctx.client).await;
        if let Err(e) = &installed {
            debug!(error = %e, "cannot read the admission policies");
        }
        ctx.set_admission(installed);
        tokio::time::sleep(REFRESH).await;
    }
}
