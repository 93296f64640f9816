//! The custom resources of group `tailkeeper.io`, version `v1alpha1`, and the status types they
//! share. The YAML in `crds/` is generated from these types (`tailkeeper crds`); a test fails when
//! the committed copy drifts.

mod conditions;
mod grant;
mod integration;
mod ledger;
mod notification;
mod policy;
mod reference;
mod review;

pub use conditions::{find_condition, ConditionStatus, Conditions, KState};
pub use grant::*;
pub use integration::*;
pub use ledger::*;
pub use notification::*;
pub use policy::*;
pub use reference::markdown as reference_markdown;
pub use review::*;

use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every Tailkeeper resource.
pub const GROUP: &str = "tailkeeper.io";

/// The regular expression every duration field must match: a Go duration such as `90s`, `15m` or
/// `1h30m` (the format CEL's `duration()` and Kubernetes use).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// A reference to another object in the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalRef {
    /// Name of the object, in the same namespace as the referring resource.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The CRDs, in the order they should be applied.
pub fn crds(
) -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    vec![
        TailscaleIntegration::crd(),
        AccessPolicy::crd(),
        AccessGrant::crd(),
        GrantLedger::crd(),
        AccessReview::crd(),
        AccessReviewDecision::crd(),
        AccessReviewRecord::crd(),
    ]
}

/// The CRDs rendered as one multi-document YAML stream, exactly as committed under `crds/`.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
