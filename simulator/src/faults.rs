//! Fault injection: a queue of faults consumed by matching requests, and the JSON form of a
//! [`Fault`] used by the control API and seed-free test scripts.
//!
//! Faults are consumed in queue order: a request takes the first queued fault whose endpoint
//! matches its own name (or `*`), which keeps scenarios such as "two 429s, then success"
//! deterministic.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{Fault, FaultKind};

/// Pending faults, in the order they were injected.
#[derive(Debug, Default)]
pub(crate) struct FaultQueue {
    queue: VecDeque<Fault>,
}

impl FaultQueue {
    pub(crate) fn push(&mut self, fault: Fault) {
        // A fault that affects no request would only sit in the queue and confuse inspection.
        if fault.count > 0 {
            self.queue.push_back(fault);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.queue.clear();
    }

    /// Take one use of the first fault matching `endpoint`, dropping it once used up.
    pub(crate) fn take(&mut self, endpoint: &str) -> Option<FaultKind> {
        let index = self
            .queue
            .iter()
            .position(|f| f.endpoint == "*" || f.endpoint == endpoint)?;
        let fault = &mut self.queue[index];
        fault.count -= 1;
        let kind = fault.kind.clone();
        if fault.count == 0 {
            self.queue.remove(index);
        }
        Some(kind)
    }

    pub(crate) fn pending(&self) -> Vec<Fault> {
        self.queue.iter().cloned().collect()
    }
}

/// Flat JSON form of a [`Fault`]: `kind` is `status`, `hang` or `latency`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FaultWire {
    #[serde(default = "any_endpoint")]
    endpoint: String,
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_after_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ms: Option<u64>,
    #[serde(default = "one")]
    count: u32,
}

fn any_endpoint() -> String {
    "*".to_string()
}

fn one() -> u32 {
    1
}

impl TryFrom<FaultWire> for Fault {
    type Error = String;

    fn try_from(wire: FaultWire) -> Result<Self, Self::Error> {
        let kind = match wire.kind.as_str() {
            "status" => {
                let status = wire
                    .status
                    .ok_or_else(|| "a status fault needs \"status\"".to_string())?;
                if !(100..=599).contains(&status) {
                    return Err(format!("status {status} is not an HTTP status"));
                }
                FaultKind::Status {
                    status,
                    retry_after_secs: wire.retry_after_secs,
                    message: wire.message.unwrap_or_default(),
                }
            }
            "hang" => FaultKind::Hang,
            "latency" => {
                let ms = wire
                    .ms
                    .ok_or_else(|| "a latency fault needs \"ms\"".to_string())?;
                FaultKind::Latency(Duration::from_millis(ms))
            }
            other => {
                return Err(format!(
                    "unknown fault kind {other:?} (want status, hang or latency)"
                ))
            }
        };
        Ok(Fault {
            endpoint: wire.endpoint,
            kind,
            count: wire.count,
        })
    }
}

impl From<Fault> for FaultWire {
    fn from(fault: Fault) -> Self {
        let mut wire = FaultWire {
            endpoint: fault.endpoint,
            kind: String::new(),
            status: None,
            retry_after_secs: None,
            message: None,
            ms: None,
            count: fault.count,
        };
        match fault.kind {
            FaultKind::Status {
                status,
                retry_after_secs,
                message,
            } => {
                wire.kind = "status".to_string();
                wire.status = Some(status);
                wire.retry_after_secs = retry_after_secs;
                wire.message = Some(message);
            }
            FaultKind::Hang => wire.kind = "hang".to_string(),
            FaultKind::Latency(delay) => {
                wire.kind = "latency".to_string();
                wire.ms = Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
            }
        }
        wire
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_fault(endpoint: &str, count: u32) -> Fault {
        Fault {
            endpoint: endpoint.to_string(),
            kind: FaultKind::Status {
                status: 429,
                retry_after_secs: Some(1),
                message: "rate limited".to_string(),
            },
            count,
        }
    }

    #[test]
    fn faults_are_consumed_in_order_and_by_endpoint() {
        let mut q = FaultQueue::default();
        q.push(status_fault("users.list", 2));
        q.push(Fault {
            endpoint: "*".to_string(),
            kind: FaultKind::Hang,
            count: 1,
        });
        q.push(status_fault("acl.get", 0)); // ignored
        assert!(matches!(
            q.take("users.list"),
            Some(FaultKind::Status { .. })
        ));
        // acl.get skips the users.list fault and hits the wildcard.
        assert_eq!(q.take("acl.get"), Some(FaultKind::Hang));
        assert!(matches!(
            q.take("users.list"),
            Some(FaultKind::Status { .. })
        ));
        assert_eq!(q.take("users.list"), None);
        assert!(q.pending().is_empty());
    }

    #[test]
    fn json_round_trip() {
        let json = r#"{"endpoint":"users.list","kind":"status","status":429,"retryAfterSecs":1,"message":"rate limited","count":2}"#;
        let fault: Fault = serde_json::from_str(json).expect("valid fault");
        assert_eq!(fault, status_fault("users.list", 2));
        let back = serde_json::to_value(&fault).expect("serializable");
        assert_eq!(back["retryAfterSecs"], 1);

        let latency: Fault =
            serde_json::from_str(r#"{"kind":"latency","ms":250}"#).expect("valid fault");
        assert_eq!(latency.endpoint, "*");
        assert_eq!(latency.count, 1);
        assert_eq!(latency.kind, FaultKind::Latency(Duration::from_millis(250)));

        assert!(serde_json::from_str::<Fault>(r#"{"kind":"explode"}"#).is_err());
        assert!(serde_json::from_str::<Fault>(r#"{"kind":"status"}"#).is_err());
    }
}
