//! Durations on the command line: `500ms`, `30s`, `5m`, `2h`, `1d`, or
//! combinations like `1h30m`; a bare number is seconds.

use std::time::Duration;

/// Parses a duration argument (clap's value parser).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration (examples: 500ms, 30s, 5m, 1h30m)".to_string());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total_ms: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits_end = rest.find(|character: char| !character.is_ascii_digit()).unwrap_or(rest.len());
        if digits_end == 0 {
            return Err(format!(
                "invalid duration {text:?}: expected a number before {rest:?} (examples: 500ms, 30s, 5m, 1h30m)"
            ));
        }
        let number: u64 =
            rest[..digits_end].parse().map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        rest = &rest[digits_end..];
        let unit_end = rest.find(|character: char| character.is_ascii_digit()).unwrap_or(rest.len());
        let unit_ms = match &rest[..unit_end] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(format!("invalid duration {text:?}: a number without a unit inside it")),
            unit => return Err(format!("invalid duration {text:?}: unknown unit {unit:?} (use ms, s, m, h or d)")),
        };
        rest = &rest[unit_end..];
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("invalid duration {text:?}: too long"))?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// A duration in whole milliseconds for the API, saturating.
pub fn as_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
