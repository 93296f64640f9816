//! kstatus conditions: the one place that builds and updates `status.conditions`.
//!
//! Flux, Argo CD and `kubectl wait` read `Ready`, `Reconciling` and `Stalled`, so every resource
//! carries `Ready` from its first reconcile. `lastTransitionTime` changes only when a condition's
//! status does, so an unchanged state produces an identical status (and no write churn).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The status of a condition as Kubernetes spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }

    pub fn from_bool(value: bool) -> Self {
        if value {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

/// A set of conditions being rebuilt for a new status, seeded from the previous ones so that
/// transition times survive.
#[derive(Clone, Debug)]
pub struct Conditions {
    previous: Vec<Condition>,
    current: Vec<Condition>,
    generation: Option<i64>,
    now: Timestamp,
}

impl Conditions {
    pub fn new(previous: &[Condition], generation: Option<i64>, now: Timestamp) -> Self {
        Self {
            previous: previous.to_vec(),
            current: Vec::new(),
            generation,
            now,
        }
    }

    /// Set (or replace) a condition.
    pub fn set(
        &mut self,
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
    ) {
        let transition = match self.previous.iter().find(|c| c.type_ == type_) {
            Some(old) if old.status == status.as_str() => old.last_transition_time.clone(),
            _ => Time(self.now),
        };
        let condition = Condition {
            type_: type_.to_string(),
            status: status.as_str().to_string(),
            reason: reason.to_string(),
            message: message.into(),
            observed_generation: self.generation,
            last_transition_time: transition,
        };
        self.current.retain(|c| c.type_ != type_);
        self.current.push(condition);
    }

    /// Set the three kstatus conditions at once: exactly one of ready, reconciling or stalled
    /// describes the resource.
    pub fn set_kstatus(&mut self, state: KState, reason: &str, message: &str) {
        let (ready, reconciling, stalled) = match state {
            KState::Ready => (ConditionStatus::True, false, false),
            KState::Reconciling => (ConditionStatus::False, true, false),
            KState::Stalled => (ConditionStatus::False, false, true),
            KState::Failing => (ConditionStatus::False, false, false),
        };
        self.set("Ready", ready, reason, message);
        self.set_or_clear("Reconciling", reconciling, reason, message);
        self.set_or_clear("Stalled", stalled, reason, message);
    }

    /// Abnormal-true conditions (`Reconciling`, `Stalled`, warnings) are present only while true,
    /// as kstatus recommends.
    pub fn set_or_clear(&mut self, type_: &str, present: bool, reason: &str, message: &str) {
        if present {
            self.set(type_, ConditionStatus::True, reason, message);
        } else {
            self.current.retain(|c| c.type_ != type_);
        }
    }

    pub fn into_vec(mut self) -> Vec<Condition> {
        self.current.sort_by(|a, b| a.type_.cmp(&b.type_));
        self.current
    }
}

/// The overall state a reconcile leaves a resource in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KState {
    /// Converged and healthy.
    Ready,
    /// Still converging (waiting on something that will resolve by itself).
    Reconciling,
    /// Failed in a way a retry cannot fix: the user must change something.
    Stalled,
    /// Failed in a way that a retry may fix (Tailscale down, throttled): `Ready=False` only.
    Failing,
}

/// Look up a condition by type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("valid timestamp")
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let mut first = Conditions::new(&[], Some(1), at(100));
        first.set("Ready", ConditionStatus::True, "Synced", "ok");
        let first = first.into_vec();

        let mut second = Conditions::new(&first, Some(2), at(200));
        second.set("Ready", ConditionStatus::True, "Synced", "still ok");
        let second = second.into_vec();
        assert_eq!(second[0].last_transition_time, Time(at(100)));
        assert_eq!(second[0].observed_generation, Some(2));
        assert_eq!(second[0].message, "still ok");

        let mut third = Conditions::new(&second, Some(2), at(300));
        third.set("Ready", ConditionStatus::False, "Failed", "broken");
        assert_eq!(third.into_vec()[0].last_transition_time, Time(at(300)));
    }

    #[test]
    fn kstatus_sets_exactly_one_abnormal_condition() {
        let mut c = Conditions::new(&[], None, at(1));
        c.set_kstatus(KState::Stalled, "BadSpec", "fix it");
        let v = c.clone().into_vec();
        assert!(find_condition(&v, "Stalled").is_some_and(|c| c.status == "True"));
        assert!(find_condition(&v, "Reconciling").is_none());
        assert!(find_condition(&v, "Ready").is_some_and(|c| c.status == "False"));

        c.set_kstatus(KState::Ready, "Synced", "ok");
        let v = c.into_vec();
        assert!(find_condition(&v, "Stalled").is_none());
        assert!(find_condition(&v, "Ready").is_some_and(|c| c.status == "True"));
    }
}
