//! The four checks as an OpenReports `Report` (`openreports.io/v1alpha1`), one beside each
//! AccessPolicy and owned by it, so that Policy Reporter and Kyverno users see Tailscale's
//! compliance with their other reports. Published only where that CRD is installed; a cluster
//! without it costs one request a minute.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};
use tracing::{debug, warn};

use super::context::{key_of, Context, Key, FIELD_MANAGER};
use crate::api::{AccessPolicy, CheckResultValue, CheckStatus};

/// The Report's source, as Policy Reporter shows it.
pub const SOURCE: &str = "tailkeeper";

/// How long a cluster without the OpenReports CRD is left alone before looking again.
const ABSENT_RECHECK: Duration = Duration::from_secs(60);

/// Failing users named in a result's properties (the policy's status has them all).
const MAX_NAMED_USERS: usize = 20;

/// What was last published per policy, and whether the CRD is known to be absent.
#[derive(Default)]
pub struct Published {
    digests: Mutex<HashMap<Key, u64>>,
    absent_until: Mutex<Option<Instant>>,
}

/// The Report for `policy` with `checks`, as a JSON object ready to apply.
pub fn render(policy: &AccessPolicy, checks: &[CheckStatus]) -> Value {
    let count = |r: CheckResultValue| checks.iter().filter(|c| c.result == r).count();
    let results: Vec<Value> = checks
        .iter()
        .map(|c| {
            let named: Vec<&str> = c
                .failing_users
                .iter()
                .take(MAX_NAMED_USERS)
                .map(|u| u.login_name.as_str())
                .collect();
            let mut result = json!({
                "policy": c.name,
                "source": SOURCE,
                "category": "Tailscale access",
                "result": match c.result {
                    CheckResultValue::Pass => "pass",
                    CheckResultValue::Fail => "fail",
                    // Could not be evaluated (a directory or tailnet that cannot be read).
                    CheckResultValue::Unknown => "error",
                },
                "message": c.message,
                "scored": true,
                "timestamp": {"seconds": c.evaluated_at.0.as_second(), "nanos": 0},
                "properties": {
                    "failingCount": c.failing_count.to_string(),
                    "failingUsers": named.join(", "),
                },
            });
            if c.result == CheckResultValue::Fail {
                result["severity"] = json!(severity(&c.name));
            }
            result
        })
        .collect();
    json!({
        "apiVersion": "openreports.io/v1alpha1",
        "kind": "Report",
        "metadata": {
            "name": format!("tailkeeper-{}", policy.name_any()),
            "namespace": policy.namespace(),
            "labels": {"app.kubernetes.io/managed-by": "tailkeeper"},
            "ownerReferences": [{
                "apiVersion": AccessPolicy::api_version(&()),
                "kind": AccessPolicy::kind(&()),
                "name": policy.name_any(),
                "uid": policy.uid(),
                "controller": true,
            }],
        },
        "source": SOURCE,
        "scope": {
            "apiVersion": AccessPolicy::api_version(&()),
            "kind": AccessPolicy::kind(&()),
            "name": policy.name_any(),
            "namespace": policy.namespace(),
            "uid": policy.uid(),
        },
        "summary": {
            "pass": count(CheckResultValue::Pass),
            "fail": count(CheckResultValue::Fail),
            "error": count(CheckResultValue::Unknown),
            "warn": 0,
            "skip": 0,
        },
        "results": results,
    })
}

/// How much a failing check matters: access kept by people who left is the worst.
fn severity(check: &str) -> &'static str {
    match check {
        "OffboardedAccessRemoved" => "critical",
        "UserAccessValid" | "UserIdentified" => "high",
        _ => "medium",
    }
}

/// Apply the Report for `policy` unless it is what was last applied, or the CRD is absent.
/// Failures are logged, never fatal: the policy's own status is the record.
pub async fn publish(ctx: &Context, policy: &AccessPolicy, checks: &[CheckStatus]) {
    let published = &ctx.reports;
    if published
        .absent_until
        .lock()
        .ok()
        .and_then(|a| *a)
        .is_some_and(|until| Instant::now() < until)
    {
        return;
    }
    let report = render(policy, checks);
    let digest = {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        report.to_string().hash(&mut h);
        h.finish()
    };
    let key = key_of(policy);
    if published
        .digests
        .lock()
        .ok()
        .and_then(|d| d.get(&key).copied())
        == Some(digest)
    {
        return;
    }
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("openreports.io", "v1alpha1", "Report"),
        "reports",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &key.0, &resource);
    let name = format!("tailkeeper-{}", key.1);
    match api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&report),
        )
        .await
    {
        Ok(_) => {
            if let Ok(mut d) = published.digests.lock() {
                d.insert(key, digest);
            }
        }
        Err(kube::Error::Api(e)) if e.code == 404 => {
            debug!("the OpenReports CRD is not installed; no Report published");
            if let Ok(mut a) = published.absent_until.lock() {
                *a = Some(Instant::now() + ABSENT_RECHECK);
            }
        }
        Err(e) => warn!(error = %e, report = %name, "cannot publish the OpenReports Report"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::FailingUser;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn check(name: &str, result: CheckResultValue, failing: &[&str]) -> CheckStatus {
        CheckStatus {
            name: name.into(),
            result,
            message: format!("{name} message"),
            failing_users: failing
                .iter()
                .map(|l| FailingUser {
                    login_name: l.to_string(),
                    reason: "why".into(),
                })
                .collect(),
            failing_count: failing.len() as i64,
            evaluated_at: Time(jiff::Timestamp::from_second(1_800_000_000).unwrap()),
        }
    }

    #[test]
    fn the_report_mirrors_the_checks() {
        let mut policy: AccessPolicy = serde_json::from_value(json!({
            "apiVersion": "tailkeeper.io/v1alpha1", "kind": "AccessPolicy",
            "metadata": {"name": "corp", "namespace": "security", "uid": "u-1"},
            "spec": {"integrationRef": {"name": "corp"}}
        }))
        .unwrap();
        policy.metadata.uid = Some("u-1".into());
        let report = render(
            &policy,
            &[
                check("UserIdentified", CheckResultValue::Fail, &["dave@x"]),
                check(
                    "OffboardedAccessRemoved",
                    CheckResultValue::Fail,
                    &["carol@x"],
                ),
                check("AccessControlConfigured", CheckResultValue::Pass, &[]),
                check("UserAccessValid", CheckResultValue::Unknown, &[]),
            ],
        );
        assert_eq!(report["metadata"]["name"], "tailkeeper-corp");
        assert_eq!(report["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(report["scope"]["kind"], "AccessPolicy");
        assert_eq!(
            report["summary"],
            json!({"pass": 1, "fail": 2, "error": 1, "warn": 0, "skip": 0})
        );
        let results = report["results"].as_array().unwrap();
        assert_eq!(results[1]["policy"], "OffboardedAccessRemoved");
        assert_eq!(results[1]["result"], "fail");
        assert_eq!(results[1]["severity"], "critical");
        assert_eq!(results[1]["properties"]["failingUsers"], "carol@x");
        assert_eq!(results[3]["result"], "error", "Unknown: not evaluated");
        assert!(
            results[2].get("severity").is_none(),
            "only failures have one"
        );
        assert_eq!(results[0]["timestamp"]["seconds"], 1_800_000_000);
    }
}
