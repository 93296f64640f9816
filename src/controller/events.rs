//! Publishes Kubernetes Events (`events.k8s.io/v1`), counting repeats into a series.
//!
//! Does what kube's `Recorder` does — an Event repeated on the same object with the same type,
//! reason, action and related object within [`SERIES_WINDOW`] becomes a `series` count on the
//! first one instead of a new object — but remembers only each Event's name, count and last
//! time, not the whole Event: after a burst of a thousand grants kube's recorder held about
//! 3 MiB of Events for six minutes. An Event the API server no longer has (Events expire, an
//! hour by default) is created afresh.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use sha2::{Digest, Sha256};

/// How long a repeat still counts into the earlier Event (kube's recorder uses the same).
pub const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// How often forgotten series are swept from memory.
const SWEEP_INTERVAL: SignedDuration = SignedDuration::from_mins(1);

pub struct Recorder {
    client: kube::Client,
    reporter: Reporter,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    series: HashMap<[u8; 16], Seen>,
    swept_at: Option<Timestamp>,
}

struct Seen {
    name: String,
    count: i32,
    last: Timestamp,
}

impl Recorder {
    pub fn new(client: kube::Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            state: Mutex::default(),
        }
    }

    /// Publishes `ev` on `regarding`: a new Event, or one more in the series of an earlier one.
    pub async fn publish(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = series_key(&self.reporter, ev, regarding);
        let earlier = self.earlier(&key, now);
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let (name, count) = match earlier {
            Some((name, count)) => {
                let patch = serde_json::json!({
                    "series": { "count": count + 1, "lastObservedTime": MicroTime(now) }
                });
                match events
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => (name, count + 1),
                    Err(kube::Error::Api(status)) if status.is_not_found() => {
                        self.create(&events, ev, regarding, now).await?
                    }
                    Err(e) => return Err(e),
                }
            }
            None => self.create(&events, ev, regarding, now).await?,
        };
        if let Ok(mut state) = self.state.lock() {
            state.series.insert(
                key,
                Seen {
                    name,
                    count,
                    last: now,
                },
            );
        }
        Ok(())
    }

    /// Publishes `ev` as an Event of its own, never counted into an earlier one (nor a later
    /// one into it).
    pub async fn publish_apart(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        self.create(&events, ev, regarding, Timestamp::now())
            .await?;
        Ok(())
    }

    /// The name and count of the series `key` continues, if it is recent; sweeps old ones.
    fn earlier(&self, key: &[u8; 16], now: Timestamp) -> Option<(String, i32)> {
        let mut state = self.state.lock().ok()?;
        if state.swept_at.is_none_or(|at| at + SWEEP_INTERVAL <= now) {
            state
                .series
                .retain(|_, seen| seen.last + SERIES_WINDOW > now);
            state.swept_at = Some(now);
        }
        state
            .series
            .get(key)
            .filter(|seen| seen.last + SERIES_WINDOW > now)
            .map(|seen| (seen.name.clone(), seen.count))
    }

    async fn create(
        &self,
        events: &Api<K8sEvent>,
        ev: &Event,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> Result<(String, i32), kube::Error> {
        let event = new_event(&self.reporter, ev, regarding, now);
        let created = events.create(&PostParams::default(), &event).await?;
        Ok((
            created
                .metadata
                .name
                .or(event.metadata.name)
                .unwrap_or_default(),
            1,
        ))
    }
}

/// What makes two Events one series: the reporter, the object (by UID and name), type, reason,
/// action and related object — not the note, as in kube's recorder.
fn series_key(reporter: &Reporter, ev: &Event, regarding: &ObjectReference) -> [u8; 16] {
    let mut hash = Sha256::new();
    let mut field = |s: &str| {
        hash.update((s.len() as u64).to_le_bytes());
        hash.update(s.as_bytes());
    };
    field(&reporter.controller);
    field(reporter.instance.as_deref().unwrap_or(""));
    for reference in std::iter::once(Some(regarding)).chain(std::iter::once(ev.secondary.as_ref()))
    {
        let r = reference.cloned().unwrap_or_default();
        for part in [r.api_version, r.kind, r.namespace, r.name, r.uid] {
            field(part.as_deref().unwrap_or(""));
        }
    }
    field(type_name(ev.type_));
    field(&ev.reason);
    field(&ev.action);
    let digest = hash.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

fn new_event(
    reporter: &Reporter,
    ev: &Event,
    regarding: &ObjectReference,
    now: Timestamp,
) -> K8sEvent {
    K8sEvent {
        action: Some(ev.action.clone()),
        reason: Some(ev.reason.clone()),
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding.clone()),
        related: ev.secondary.clone(),
        note: ev.note.clone(),
        metadata: ObjectMeta {
            namespace: regarding.namespace.clone(),
            name: Some(format!(
                "{}.{:x}",
                regarding.name.as_deref().unwrap_or(&reporter.controller),
                now.as_nanosecond()
            )),
            ..Default::default()
        },
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(
            reporter
                .instance
                .clone()
                .unwrap_or_else(|| reporter.controller.clone()),
        ),
        type_: Some(type_name(ev.type_).into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reporter() -> Reporter {
        Reporter {
            controller: "tailkeeper".into(),
            instance: Some("pod-a".into()),
        }
    }

    fn grant(name: &str, uid: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("tailkeeper.io/v1alpha1".into()),
            kind: Some("AccessGrant".into()),
            namespace: Some("team".into()),
            name: Some(name.into()),
            uid: Some(uid.into()),
            ..Default::default()
        }
    }

    fn event(reason: &str, note: &str) -> Event {
        Event {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some(note.into()),
            action: "Reconcile".into(),
            secondary: None,
        }
    }

    #[test]
    fn a_repeat_with_another_note_continues_the_series() {
        let a = series_key(&reporter(), &event("Failed", "one"), &grant("g", "u1"));
        let b = series_key(&reporter(), &event("Failed", "two"), &grant("g", "u1"));
        assert_eq!(a, b);
    }

    #[test]
    fn another_object_reason_type_or_related_object_starts_a_new_series() {
        let base = series_key(&reporter(), &event("Failed", "x"), &grant("g", "u1"));
        let recreated = series_key(&reporter(), &event("Failed", "x"), &grant("g", "u2"));
        let reason = series_key(&reporter(), &event("Expired", "x"), &grant("g", "u1"));
        let mut normal = event("Failed", "x");
        normal.type_ = EventType::Normal;
        let normal = series_key(&reporter(), &normal, &grant("g", "u1"));
        let mut related = event("Failed", "x");
        related.secondary = Some(grant("other", "u9"));
        let related = series_key(&reporter(), &related, &grant("g", "u1"));
        for other in [recreated, reason, normal, related] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        let mut a = event("Fail", "x");
        a.action = "edReconcile".into();
        let mut b = event("Failed", "x");
        b.action = "Reconcile".into();
        assert_ne!(
            series_key(&reporter(), &a, &grant("g", "u")),
            series_key(&reporter(), &b, &grant("g", "u"))
        );
    }

    #[test]
    fn the_event_names_its_object_reporter_and_time() {
        let now: Timestamp = "2026-11-30T10:00:00Z".parse().unwrap();
        let e = new_event(&reporter(), &event("Failed", "why"), &grant("g", "u1"), now);
        assert_eq!(e.metadata.namespace.as_deref(), Some("team"));
        assert!(e.metadata.name.as_deref().unwrap().starts_with("g."));
        assert_eq!(e.reporting_instance.as_deref(), Some("pod-a"));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.note.as_deref(), Some("why"));
        assert!(e.series.is_none());
    }
}
