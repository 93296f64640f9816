//! Smoke test of the real-apiserver test harness (tests/support/control_plane.rs).

mod support;

use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::{
    api::core::v1::{ConfigMap, Namespace, Secret},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams},
    Error,
};
use support::ControlPlane;

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some([("k".to_string(), "v".to_string())].into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn admin_creates_namespace_and_configmap() {
    let cp = ControlPlane::shared().await;
    let ns = cp.create_namespace("smoke-admin").await;
    let cms = Api::<ConfigMap>::namespaced(cp.admin_client().await, &ns);
    cms.create(&PostParams::default(), &config_map("hello"))
        .await
        .unwrap();
    let got = cms.get("hello").await.unwrap();
    assert_eq!(got.data.unwrap()["k"], "v");

    // kubectl uses the same admin kubeconfig.
    let out = cp
        .kubectl()
        .args(["get", "configmap", "hello", "-n", &ns, "-o", "name"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configmap/hello"
    );
}

#[tokio::test]
async fn rbac_forbids_unprivileged_user() {
    let cp = ControlPlane::shared().await;
    let ns = cp.create_namespace("smoke-rbac").await;
    let secrets = Api::<Secret>::namespaced(cp.client_as("mallory").await, &ns);
    match secrets.list(&ListParams::default()).await {
        Err(Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403 for mallory, got {other:?}"),
    }
}

#[tokio::test]
async fn impersonating_kubeconfig_has_the_given_identity() {
    let cp = ControlPlane::shared().await;
    let kubeconfig = cp.impersonating_kubeconfig(
        "system:serviceaccount:x:operator",
        &["system:serviceaccounts"],
    );
    let out = std::process::Command::new(cp.bin_dir().join("kubectl"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let who = String::from_utf8_lossy(&out.stdout);
    assert!(
        who.starts_with("system:serviceaccount:x:operator "),
        "{who}"
    );
    assert!(who.contains("system:serviceaccounts"), "{who}");
    assert!(!who.contains("system:masters"), "{who}");
}

#[tokio::test]
async fn watch_sees_created_configmap() {
    let cp = ControlPlane::shared().await;
    let ns = cp.create_namespace("smoke-watch").await;
    let cms = Api::<ConfigMap>::namespaced(cp.admin_client().await, &ns);
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut events = cms
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .unwrap()
        .boxed();
    cms.create(&PostParams::default(), &config_map("watched"))
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = events.try_next().await.unwrap() {
            if let WatchEvent::Added(cm) = event {
                if cm.metadata.name.as_deref() == Some("watched") {
                    return true;
                }
            }
        }
        false
    })
    .await
    .expect("no watch event within 20s");
    assert!(seen, "watch ended without an Added event");
}

#[tokio::test]
async fn namespace_deletion_completes_when_controller_manager_runs() {
    let cp = ControlPlane::shared().await;
    if !cp.has_controller_manager() {
        eprintln!("skipped: no kube-controller-manager");
        return;
    }
    let ns = cp.create_namespace("smoke-delete").await;
    let client = cp.admin_client().await;
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &config_map("doomed"))
        .await
        .unwrap();
    let namespaces = Api::<Namespace>::all(client);
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        while namespaces.get_opt(&ns).await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("namespace not deleted within 60s");
}

/// Names of the CustomResourceDefinitions in the YAML files of the CRD dir the
/// harness applies (`TAILKEEPER_TEST_CRDS_DIR` or `crds/`).
fn expected_crds() -> Vec<String> {
    use serde::Deserialize as _;
    let dir = std::env::var_os("TAILKEEPER_TEST_CRDS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds"));
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_json::Value::deserialize(doc).unwrap();
            if value["kind"] == "CustomResourceDefinition" {
                names.push(value["metadata"]["name"].as_str().unwrap().to_owned());
            }
        }
    }
    names
}

#[tokio::test]
async fn crds_are_established() {
    let cp = ControlPlane::shared().await;
    let crds = Api::<CustomResourceDefinition>::all(cp.admin_client().await);
    for name in expected_crds() {
        let crd = crds
            .get(&name)
            .await
            .unwrap_or_else(|e| panic!("CRD {name}: {e}"));
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "CRD {name} not Established");
    }
}
