//! Watching the credential Secrets: each Secret an integration names is watched on its own (a
//! metadata watch selecting it by name, which the chart's `resourceNames` Roles allow), so a
//! rotated or fixed Secret reconciles the integrations that name it within seconds rather
//! than at the next retry. The operator never lists or watches any other Secret.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use tokio::task::JoinHandle;
use tracing::{debug, info};

use super::context::Context;
use crate::api::TailscaleIntegration;

/// How often the set of watched Secrets is brought in line with the integrations.
const REFRESH: Duration = Duration::from_secs(2);

/// A Secret, by namespace and name.
type SecretKey = (String, String);

/// The credential Secrets the integrations name.
fn wanted(integrations: &[Arc<TailscaleIntegration>]) -> BTreeSet<SecretKey> {
    integrations
        .iter()
        .map(|i| {
            (
                i.namespace().unwrap_or_default(),
                i.spec.credentials.secret_name.clone(),
            )
        })
        .collect()
}

/// Watch the Secrets the integrations in `store` name, sending the integrations that name a
/// Secret to `trigger` whenever it changes or goes. Runs until `trigger` is closed.
pub async fn watch(
    ctx: Arc<Context>,
    store: Store<TailscaleIntegration>,
    trigger: mpsc::Sender<ObjectRef<TailscaleIntegration>>,
) {
    let mut running: BTreeMap<SecretKey, JoinHandle<()>> = BTreeMap::new();
    loop {
        if trigger.is_closed() {
            break;
        }
        let wanted = wanted(&store.state());
        running.retain(|key, task| {
            let keep = wanted.contains(key) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for key in &wanted {
            if !running.contains_key(key) {
                debug!(namespace = %key.0, secret = %key.1, "watching credential Secret");
                let task = tokio::spawn(watch_one(
                    ctx.clone(),
                    key.clone(),
                    store.clone(),
                    trigger.clone(),
                ));
                running.insert(key.clone(), task);
            }
        }
        tokio::time::sleep(REFRESH).await;
    }
    for task in running.values() {
        task.abort();
    }
}

/// Watch one Secret by name; trigger the integrations that name it (looked up when it changes)
/// on each change, and after each listing when it is not the version they last read (it
/// changed before the watch began, or while it was interrupted).
async fn watch_one(
    ctx: Arc<Context>,
    (namespace, name): SecretKey,
    store: Store<TailscaleIntegration>,
    mut trigger: mpsc::Sender<ObjectRef<TailscaleIntegration>>,
) {
    // Metadata only: the watch never carries the Secret's data.
    let api: Api<PartialObjectMeta<Secret>> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = (namespace.clone(), name.clone());
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    // The version a listing found (None: the Secret does not exist).
    let mut listed: Option<String> = None;
    while let Some(event) = events.next().await {
        let changed = match event {
            Ok(watcher::Event::Init) => {
                listed = None;
                false
            }
            Ok(watcher::Event::InitApply(secret)) => {
                listed = secret.resource_version();
                false
            }
            Ok(watcher::Event::InitDone) => ctx.secret_version(&key) != listed,
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => true,
            // Backed off and retried by the stream (a 403 says the chart does not allow
            // this Secret; the integration's own read reports that).
            Err(e) => {
                debug!(%namespace, secret = %name, error = %e, "credential Secret watch failed; retrying");
                false
            }
        };
        if !changed {
            continue;
        }
        info!(%namespace, secret = %name, "credential Secret changed: reconciling its integrations");
        let naming: Vec<ObjectRef<TailscaleIntegration>> = store
            .state()
            .iter()
            .filter(|i| {
                i.namespace().as_deref() == Some(namespace.as_str())
                    && i.spec.credentials.secret_name == name
            })
            .map(|i| ObjectRef::from_obj(i.as_ref()))
            .collect();
        for integration in naming {
            if trigger.send(integration).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integration(ns: &str, name: &str, secret: &str) -> Arc<TailscaleIntegration> {
        let mut i: TailscaleIntegration = serde_json::from_value(serde_json::json!({
            "apiVersion": "tailkeeper.io/v1alpha1",
            "kind": "TailscaleIntegration",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"credentials": {"type": "APIToken", "secretName": secret}}
        }))
        .expect("integration");
        i.metadata.namespace = Some(ns.into());
        Arc::new(i)
    }

    #[test]
    fn each_secret_named_is_watched_once() {
        let wanted = wanted(&[
            integration("a", "corp", "ts"),
            integration("a", "lab", "ts"),
            integration("b", "corp", "ts"),
            integration("a", "other", "other-secret"),
        ]);
        let keys: Vec<(&str, &str)> = wanted
            .iter()
            .map(|(ns, s)| (ns.as_str(), s.as_str()))
            .collect();
        assert_eq!(keys, [("a", "other-secret"), ("a", "ts"), ("b", "ts")]);
    }
}
