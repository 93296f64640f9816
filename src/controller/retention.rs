//! Evidence retention: a campaign's evidence records are labelled `held` when written, and the
//! chart's admission policy refuses to delete them while they are. This controller watches the
//! held records (metadata only, by label) and, once a record's `retain-until` has passed,
//! labels it `released`, saying so in an Event; from then on it may be deleted. Decisions are
//! [`crate::reviews::retention`]'s.

use std::sync::Arc;
use std::time::Duration;

use futures::{Future, StreamExt};
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector;
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use tracing::{info, warn};

use super::context::{Context, FIELD_MANAGER};
use super::Error;
use crate::api::AccessReviewRecord;
use crate::reviews::retention::{self, Retention};

type Record = PartialObjectMeta<AccessReviewRecord>;

/// The longest single wait: a year's retention is looked at again daily (timers that long are
/// not worth trusting, and a clock step is noticed).
const LONGEST_WAIT: Duration = Duration::from_secs(86400);

/// The controller, run until `shutdown`.
pub fn run(
    ctx: Arc<Context>,
    namespace: &Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> {
    let api: Api<Record> = match namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let held = format!("{}={}", retention::LABEL, retention::HELD);
    let (store, writer) = reflector::store::<Record>();
    // Metadata only: records carry up to a megabyte of evidence each, none of it needed here.
    let records = watcher(api, watcher::Config::default().labels(&held))
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    Controller::for_stream(records, store)
        .graceful_shutdown_on(shutdown)
        .run(
            |record, ctx| super::timed("retention", ctx.clone(), reconcile(record, ctx)),
            super::error_policy::<Record>,
            ctx,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "evidence retention reconcile failed");
            }
        })
}

async fn reconcile(record: Arc<Record>, ctx: Arc<Context>) -> Result<Action, Error> {
    let now = Timestamp::now();
    let name = record.name_any();
    let ns = record.namespace().unwrap_or_default();
    match retention::check(record.metadata.annotations.as_ref(), now) {
        Retention::Until(until) => Ok(Action::requeue(
            until
                .duration_since(now)
                .unsigned_abs()
                .clamp(Duration::from_secs(1), LONGEST_WAIT),
        )),
        Retention::Unknown(why) => {
            // Kept: nothing says it may go.
            warn!(record = %name, namespace = %ns, %why, "evidence record kept: it says not until when");
            Ok(Action::await_change())
        }
        Retention::Release => {
            let api: Api<AccessReviewRecord> = Api::namespaced(ctx.client.clone(), &ns);
            // A merge patch of the one label: an apply as the records' writer would drop what
            // that writer applied and this patch does not repeat.
            api.patch_metadata(
                &name,
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.to_string()),
                    ..Default::default()
                },
                &Patch::Merge(serde_json::json!({
                    "metadata": {"labels": {retention::LABEL: retention::RELEASED}},
                })),
            )
            .await?;
            let until = record
                .annotations()
                .get(retention::RETAIN_UNTIL)
                .cloned()
                .unwrap_or_default();
            info!(record = %name, namespace = %ns, %until, "evidence retention ended");
            ctx.publish(
                record.as_ref(),
                EventType::Normal,
                "RetentionEnded",
                "Release",
                format!(
                    "evidence record {name} was kept until {until} (its policy's evidenceRetention): it may be deleted now"
                ),
            )
            .await;
            Ok(Action::await_change())
        }
    }
}
