//! How a delivery is retried, decided from plain data: after each attempt, deliver, wait and try
//! again, or give up and say why. Timeouts, connection errors, 408, 429 and 5xx are retried with
//! capped exponential backoff and jitter (a `Retry-After` the receiver sends is honoured); any
//! other answer is final. A delivery gives up after a bounded number of attempts or time, and
//! the reason quotes the receiver's status, never its URL.

use std::time::Duration;

use jiff::Timestamp;

/// How failed deliveries are retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The delay before the second attempt; it doubles with each further attempt.
    pub base_delay: Duration,
    /// No computed delay exceeds this (a receiver's `Retry-After` may ask for longer).
    pub max_delay: Duration,
    /// A delivery never waits for another attempt beyond this long after the first one began.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            give_up_after: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// The delay after attempt `attempt` (1 for the first) failed: `base * 2^(attempt-1)`,
    /// capped, with "equal jitter": half of it fixed, half scaled by `jitter` in `[0, 1]`, so
    /// that receivers failing together are not retried together.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// What one attempt came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered with this HTTP status (and `Retry-After`, when it sent one).
    Answered {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No answer within the request timeout.
    TimedOut,
    /// The connection could not be made or broke (DNS, refused, TLS, reset).
    ConnectionFailed,
}

impl Attempt {
    fn retryable(&self) -> bool {
        match self {
            Attempt::Answered { status, .. } => {
                matches!(status, 408 | 429) || (500..=599).contains(status)
            }
            Attempt::TimedOut | Attempt::ConnectionFailed => true,
        }
    }
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attempt::Answered { status, .. } => write!(f, "answered {}", status_text(*status)),
            Attempt::TimedOut => f.write_str("did not answer in time"),
            Attempt::ConnectionFailed => f.write_str("could not be reached"),
        }
    }
}

/// `HTTP 503 Service Unavailable`.
pub fn status_text(status: u16) -> String {
    match reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("HTTP {status} {reason}"),
        None => format!("HTTP {status}"),
    }
}

/// What to do after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    Delivered,
    RetryIn(Duration),
    GiveUp(GaveUp),
}

/// Why a delivery gave up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GaveUp {
    /// The receiver refused it (a 3xx or 4xx other than 408 and 429): trying again would not help.
    Refused { status: u16 },
    /// Every attempt failed.
    Exhausted { attempts: u32, last: Attempt },
    /// The next attempt would come later than the time allowed (after `waited`).
    OutOfTime {
        attempts: u32,
        last: Attempt,
        waited: Duration,
    },
}

impl GaveUp {
    /// The receiver's last answer, for the metric and the Event.
    pub fn last(&self) -> Attempt {
        match self {
            GaveUp::Refused { status } => Attempt::Answered {
                status: *status,
                retry_after: None,
            },
            GaveUp::Exhausted { last, .. } | GaveUp::OutOfTime { last, .. } => *last,
        }
    }
}

impl std::fmt::Display for GaveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GaveUp::Refused { status } => write!(
                f,
                "the receiver refused it with {} (not retried: check the url in its Secret and the receiver)",
                status_text(*status)
            ),
            GaveUp::Exhausted { attempts, last } => {
                write!(f, "gave up after {attempts} attempts: the receiver {last}")
            }
            GaveUp::OutOfTime {
                attempts,
                last,
                waited,
            } => write!(
                f,
                "gave up after {attempts} attempts in {}s, the time a delivery is allowed: the receiver {last}",
                waited.as_secs()
            ),
        }
    }
}

/// After attempt number `attempts` (1 for the first) came to `attempt`, `elapsed` after the
/// first began: deliver, retry after a delay, or give up. `jitter` is a random number in
/// `[0, 1]`.
pub fn next(
    policy: &RetryPolicy,
    attempts: u32,
    attempt: &Attempt,
    elapsed: Duration,
    jitter: f64,
) -> Next {
    if let Attempt::Answered { status, .. } = attempt {
        if (200..=299).contains(status) {
            return Next::Delivered;
        }
    }
    if !attempt.retryable() {
        let status = match attempt {
            Attempt::Answered { status, .. } => *status,
            _ => 0,
        };
        return Next::GiveUp(GaveUp::Refused { status });
    }
    if attempts >= policy.max_attempts {
        return Next::GiveUp(GaveUp::Exhausted {
            attempts,
            last: *attempt,
        });
    }
    let delay = match attempt {
        Attempt::Answered {
            retry_after: Some(wait),
            ..
        } => *wait,
        _ => policy.backoff(attempts, jitter),
    };
    if elapsed.saturating_add(delay) > policy.give_up_after {
        return Next::GiveUp(GaveUp::OutOfTime {
            attempts,
            last: *attempt,
            waited: elapsed,
        });
    }
    Next::RetryIn(delay)
}

/// A `Retry-After` value: seconds, or an HTTP date (then the time from `now`, none if past).
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
    let when = jiff::civil::DateTime::strptime("%a, %d %b %Y %H:%M:%S GMT", value)
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()?
        .timestamp();
    Duration::try_from(when.duration_since(now)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            give_up_after: Duration::from_secs(60),
        }
    }

    fn answered(status: u16) -> Attempt {
        Attempt::Answered {
            status,
            retry_after: None,
        }
    }

    #[test]
    fn the_backoff_doubles_up_to_the_cap_with_half_of_it_jittered() {
        let p = policy();
        let secs = |attempt, jitter| p.backoff(attempt, jitter).as_secs_f64();
        // Without jitter: half of 1, 2, 4, 8, 10, 10 s.
        let floor: Vec<f64> = (1..=6).map(|a| secs(a, 0.0)).collect();
        assert_eq!(floor, [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]);
        // With all of it: the whole delay.
        let ceiling: Vec<f64> = (1..=6).map(|a| secs(a, 1.0)).collect();
        assert_eq!(ceiling, [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]);
        assert_eq!(secs(3, 0.5), 3.0);
        assert_eq!(secs(40, 1.0), 10.0, "no overflow far out");
        assert_eq!(secs(3, 7.0), 4.0, "jitter is clamped");
    }

    #[test]
    fn server_errors_throttling_timeouts_and_broken_connections_are_retried() {
        let p = policy();
        for attempt in [
            answered(500),
            answered(502),
            answered(503),
            answered(429),
            answered(408),
            Attempt::TimedOut,
            Attempt::ConnectionFailed,
        ] {
            assert_eq!(
                next(&p, 1, &attempt, Duration::ZERO, 0.0),
                Next::RetryIn(Duration::from_millis(500)),
                "{attempt:?}"
            );
        }
        assert_eq!(
            next(&p, 1, &answered(204), Duration::ZERO, 0.0),
            Next::Delivered
        );
    }

    #[test]
    fn other_answers_are_final_and_quote_the_status() {
        for status in [301, 400, 401, 403, 404, 410] {
            let got = next(&policy(), 1, &answered(status), Duration::ZERO, 0.0);
            assert_eq!(got, Next::GiveUp(GaveUp::Refused { status }));
        }
        let refused = GaveUp::Refused { status: 404 };
        assert!(
            refused.to_string().contains("HTTP 404 Not Found"),
            "{refused}"
        );
    }

    #[test]
    fn retry_after_is_honoured_even_beyond_the_cap_but_not_beyond_the_time_allowed() {
        let p = policy();
        let throttled = |secs| Attempt::Answered {
            status: 429,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            next(&p, 1, &throttled(30), Duration::ZERO, 0.0),
            Next::RetryIn(Duration::from_secs(30))
        );
        assert_eq!(
            next(&p, 2, &throttled(30), Duration::from_secs(40), 0.0),
            Next::GiveUp(GaveUp::OutOfTime {
                attempts: 2,
                last: throttled(30),
                waited: Duration::from_secs(40)
            })
        );
    }

    #[test]
    fn a_delivery_gives_up_after_its_attempts_saying_what_the_receiver_did() {
        let p = policy();
        let got = next(&p, 5, &answered(500), Duration::from_secs(10), 0.0);
        let Next::GiveUp(gave_up) = got else {
            panic!("{got:?}")
        };
        assert_eq!(
            gave_up.to_string(),
            "gave up after 5 attempts: the receiver answered HTTP 500 Internal Server Error"
        );
        assert_eq!(gave_up.last(), answered(500));
        let timed_out = GaveUp::Exhausted {
            attempts: 3,
            last: Attempt::TimedOut,
        };
        assert_eq!(
            timed_out.to_string(),
            "gave up after 3 attempts: the receiver did not answer in time"
        );
    }

    #[test]
    fn a_full_schedule_stays_within_its_bounds() {
        let p = policy();
        let mut elapsed = Duration::ZERO;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match next(&p, attempts, &answered(503), elapsed, 1.0) {
                Next::RetryIn(d) => elapsed += d,
                Next::GiveUp(GaveUp::Exhausted { attempts: n, .. }) => {
                    assert_eq!(n, 5);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        // 1 + 2 + 4 + 8 seconds between five attempts.
        assert_eq!(elapsed, Duration::from_secs(15));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now: Timestamp = "1994-11-06T08:49:00Z".parse().expect("time");
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(37))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:48:00 GMT", now),
            None,
            "a date already past"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
