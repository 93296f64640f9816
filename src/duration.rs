//! Go-style durations (`90s`, `15m`, `1h30m`, `1.5h`), the format the CRDs use because the API
//! server's CEL `duration()` validates the same syntax. Pure.

use std::time::Duration;

/// Parse a Go duration. Negative durations are refused: none of Tailkeeper's fields allow them.
pub fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".to_string());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("duration {text:?} lacks a unit (use ns, us, ms, s, m or h)"))?;
        if number_len == 0 {
            return Err(format!("duration {text:?}: expected a number at {rest:?}"));
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| {
            format!(
                "duration {text:?}: {:?} is not a number",
                &rest[..number_len]
            )
        })?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(format!(
                    "duration {text:?}: unknown unit {other:?} (use ns, us, ms, s, m or h)"
                ))
            }
        };
        total += number * seconds_per_unit;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1e12 {
        return Err(format!("duration {text:?} is too large"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Format a duration compactly in Go's style (`1h30m0s` becomes `1h30m`).
pub fn format(d: Duration) -> String {
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        if out.is_empty() && d.subsec_millis() > 0 {
            return format!("{}ms", d.as_millis());
        }
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("90s", 90.0),
            ("15m", 900.0),
            ("1h30m", 5400.0),
            ("1.5h", 5400.0),
            ("250ms", 0.25),
            ("2h0m5s", 7205.0),
            ("0", 0.0),
        ];
        for (text, secs) in cases {
            assert_eq!(parse(text).unwrap().as_secs_f64(), secs, "{text}");
        }
    }

    #[test]
    fn refuses_malformed_durations_with_a_reason() {
        for text in ["", "10", "5 minutes", "h", "1x", "-5m", "1h-5m"] {
            let err = parse(text).unwrap_err();
            assert!(
                err.contains("duration") || err.contains("empty"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_secs(300)), "5m");
        assert_eq!(format(Duration::from_secs(0)), "0s");
        assert_eq!(format(Duration::from_millis(120)), "120ms");
    }
}
