//! Grants as people read them: what access, for how long, how much time is left, and tables of
//! them. Pure.

use jiff::Timestamp;

use crate::api::{find_condition, AccessGrant, GrantAccess, GrantPhase};
use crate::grants::role_name;

/// The access a grant carries, as one short phrase: `group:prod`, `role admin`, `rule db`,
/// `ssh rule prod-shell`, `posture attribute jit-prod`.
pub fn access(a: &GrantAccess) -> String {
    if let Some(group) = &a.group {
        group.clone()
    } else if let Some(role) = a.role {
        format!("role {}", role_name(role))
    } else if let Some(rule) = &a.rule {
        format!("rule {rule}")
    } else if let Some(ssh) = &a.ssh_rule {
        format!("ssh rule {ssh}")
    } else if let Some(attr) = &a.posture_attribute {
        format!("posture attribute {attr}")
    } else {
        "nothing".to_string()
    }
}

/// How long a grant lasts once active: its duration, or `standing`.
pub fn duration(grant: &AccessGrant) -> String {
    grant
        .spec
        .duration
        .clone()
        .unwrap_or_else(|| "standing".to_string())
}

/// A span of time in its two largest units, as people say it: `3d4h`, `1h12m`, `12m5s`, `45s`.
pub fn span(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    let pair = |a: i64, ua: &str, b: i64, ub: &str| {
        if b == 0 {
            format!("{a}{ua}")
        } else {
            format!("{a}{ua}{b}{ub}")
        }
    };
    if d > 0 {
        pair(d, "d", h, "h")
    } else if h > 0 {
        pair(h, "h", m, "m")
    } else if m > 0 {
        pair(m, "m", sec, "s")
    } else {
        format!("{sec}s")
    }
}

/// The time an Active grant has left at `now`: a span, `standing` (no expiry), or `expired`
/// (its expiry has passed, or it ended by expiring); `-` for grants that are not, or no
/// longer, active.
pub fn time_left(grant: &AccessGrant, now: Timestamp) -> String {
    let status = grant.status.as_ref();
    match status.and_then(|s| s.phase) {
        Some(GrantPhase::Active) => match status.and_then(|s| s.expires_at.as_ref()) {
            Some(at) => {
                let left = at.0.as_second() - now.as_second();
                if left > 0 {
                    span(left)
                } else {
                    "expired".to_string()
                }
            }
            None if grant.spec.duration.is_none() => "standing".to_string(),
            // Active and timed but without a recorded expiry: Tailkeeper ends such a grant.
            None => "-".to_string(),
        },
        Some(GrantPhase::Expired) => "expired".to_string(),
        _ => "-".to_string(),
    }
}

/// The grant's phase, `New` before Tailkeeper has looked at it.
pub fn phase(grant: &AccessGrant) -> String {
    match grant.status.as_ref().and_then(|s| s.phase) {
        Some(p) => format!("{p:?}"),
        None => "New".to_string(),
    }
}

/// Why the grant is where it is: its `Ready` condition's reason (`AwaitingApproval`,
/// `DeniedByApprover`, `Expired`, ...), `-` when there is none yet.
pub fn reason(grant: &AccessGrant) -> String {
    grant
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, "Ready"))
        .map_or_else(|| "-".to_string(), |c| c.reason.clone())
}

/// How long ago the grant was created, at `now`.
pub fn age(grant: &AccessGrant, now: Timestamp) -> String {
    grant.metadata.creation_timestamp.as_ref().map_or_else(
        || "-".to_string(),
        |t| span(now.as_second() - t.0.as_second()),
    )
}

fn name(grant: &AccessGrant) -> String {
    grant.metadata.name.clone().unwrap_or_default()
}

fn requester(grant: &AccessGrant) -> String {
    grant
        .spec
        .requested_by
        .clone()
        .unwrap_or_else(|| "-".to_string())
}

/// Grants as a table: name, user, access, duration, phase, why, time left (and who requested
/// them, with `requesters`), age. Oldest first.
pub fn grants_table(grants: &[&AccessGrant], now: Timestamp, requesters: bool) -> String {
    let mut headers = vec![
        "NAME",
        "USER",
        "ACCESS",
        "DURATION",
        "PHASE",
        "REASON",
        "TIME LEFT",
    ];
    if requesters {
        headers.push("REQUESTED BY");
    }
    headers.push("AGE");
    let rows = oldest_first(grants)
        .into_iter()
        .map(|g| {
            let mut row = vec![
                name(g),
                g.spec.user.clone(),
                access(&g.spec.access),
                duration(g),
                phase(g),
                reason(g),
                time_left(g, now),
            ];
            if requesters {
                row.push(requester(g));
            }
            row.push(age(g, now));
            row
        })
        .collect();
    table(&headers, rows)
}

/// Grants awaiting a decision as a table: name, user, access, duration, requester, age and
/// reason. Oldest first.
pub fn pending_table(grants: &[&AccessGrant], now: Timestamp) -> String {
    let headers = [
        "NAME",
        "USER",
        "ACCESS",
        "DURATION",
        "REQUESTED BY",
        "AGE",
        "REASON GIVEN",
    ];
    let rows = oldest_first(grants)
        .into_iter()
        .map(|g| {
            vec![
                name(g),
                g.spec.user.clone(),
                access(&g.spec.access),
                duration(g),
                requester(g),
                age(g, now),
                one_line(&g.spec.reason),
            ]
        })
        .collect();
    table(&headers, rows)
}

fn oldest_first<'a>(grants: &[&'a AccessGrant]) -> Vec<&'a AccessGrant> {
    let mut sorted = grants.to_vec();
    sorted.sort_by(|a, b| {
        let created = |g: &AccessGrant| g.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(a)
            .cmp(&created(b))
            .then_with(|| name(a).cmp(&name(b)))
    });
    sorted
}

/// Text on one line (a reason may have several).
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Aligned columns, as kubectl prints them: three spaces between columns, no trailing blanks.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(w - cell.chars().count() + 3));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AccessGrantStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("time")
    }

    fn grant(name: &str, duration: Option<&str>) -> AccessGrant {
        let mut g: AccessGrant = serde_json::from_value(json!({
            "apiVersion": "tailkeeper.io/v1alpha1", "kind": "AccessGrant",
            "metadata": {"name": name, "creationTimestamp": "2027-01-15T08:00:00Z"},
            "spec": {"policyRef": {"name": "jit"}, "user": "alice@example.com",
                     "access": {"group": "group:oncall"}, "duration": duration,
                     "reason": "incident\n4711", "requestedBy": "alice"}
        }))
        .expect("grant");
        g.spec.duration = duration.map(str::to_string);
        g
    }

    fn in_phase(mut g: AccessGrant, phase: GrantPhase, expires: Option<Timestamp>) -> AccessGrant {
        g.status = Some(AccessGrantStatus {
            phase: Some(phase),
            expires_at: expires.map(Time),
            ..Default::default()
        });
        g
    }

    #[test]
    fn spans_read_as_people_say_them() {
        for (seconds, text) in [
            (0, "0s"),
            (45, "45s"),
            (60, "1m"),
            (725, "12m5s"),
            (3600, "1h"),
            (4320, "1h12m"),
            (4359, "1h12m"),
            (86_400 * 3 + 3600 * 4 + 59, "3d4h"),
            (-5, "0s"),
        ] {
            assert_eq!(span(seconds), text, "{seconds}s");
        }
    }

    #[test]
    fn time_left_is_a_span_standing_expired_or_nothing() {
        let timed = grant("g", Some("2h"));
        let active = in_phase(timed.clone(), GrantPhase::Active, Some(at(4320)));
        assert_eq!(time_left(&active, at(0)), "1h12m");
        assert_eq!(time_left(&active, at(4320)), "expired");
        let standing = in_phase(grant("s", None), GrantPhase::Active, None);
        assert_eq!(time_left(&standing, at(0)), "standing");
        assert_eq!(
            time_left(&in_phase(timed.clone(), GrantPhase::Expired, None), at(0)),
            "expired"
        );
        for phase in [
            GrantPhase::AwaitingApproval,
            GrantPhase::Denied,
            GrantPhase::Revoked,
        ] {
            assert_eq!(time_left(&in_phase(timed.clone(), phase, None), at(0)), "-");
        }
        assert_eq!(time_left(&timed, at(0)), "-");
        assert_eq!(phase(&timed), "New");
    }

    #[test]
    fn every_kind_of_access_reads_as_a_short_phrase() {
        let of = |v: serde_json::Value| access(&serde_json::from_value(v).expect("access"));
        assert_eq!(of(json!({"group": "group:prod"})), "group:prod");
        assert_eq!(of(json!({"role": "it-admin"})), "role it-admin");
        assert_eq!(of(json!({"rule": "db"})), "rule db");
        assert_eq!(of(json!({"sshRule": "shell"})), "ssh rule shell");
        assert_eq!(
            of(json!({"postureAttribute": "jit"})),
            "posture attribute jit"
        );
    }

    #[test]
    fn tables_align_columns_and_list_the_oldest_first() {
        let mut newer = grant("newer", Some("1h"));
        newer.metadata.creation_timestamp = Some(Time(at(100)));
        let mut older = in_phase(
            grant("older", Some("2h")),
            GrantPhase::Active,
            Some(at(7200)),
        );
        older.metadata.creation_timestamp = Some(Time(at(0)));
        let text = grants_table(&[&newer, &older], at(3600), true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "NAME    USER                ACCESS         DURATION   PHASE    REASON   TIME LEFT   REQUESTED BY   AGE"
        );
        assert!(
            lines[1].starts_with("older   alice@example.com   group:oncall   2h         Active"),
            "{text}"
        );
        assert!(
            lines[1].contains("   1h   ") && lines[1].ends_with("alice          1h"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("newer") && lines[2].contains("New"),
            "{text}"
        );
        let pending = pending_table(&[&newer], at(160));
        assert_eq!(
            pending.lines().nth(1),
            Some("newer   alice@example.com   group:oncall   1h         alice          1m    incident 4711"),
            "{pending}"
        );
    }
}
