//! RFC 3339 times for the API: formatting milliseconds since the epoch as
//! `2026-11-22T10:15:30.123Z`, and parsing such times (with `Z` or an
//! offset) back. Written out rather than pulled from a date library: the
//! API needs exactly this and nothing more.

use corvee_core::Timestamp;

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Formats a time as RFC 3339 UTC with milliseconds.
pub fn format(at: Timestamp) -> String {
    let millis = at.0 as i64;
    let days = millis.div_euclid(86_400_000);
    let in_day = millis.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (hours, minutes, seconds, ms) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hours:02}:{minutes:02}:{seconds:02}.{ms:03}Z")
}

/// Parses an RFC 3339 time (`2026-11-22T10:15:30Z`, fractional seconds and
/// `+hh:mm` offsets allowed).
pub fn parse(text: &str) -> Option<Timestamp> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok()).flatten()
    };
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    if bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)? as u32, number(8..10)? as u32);
    let (hours, minutes, seconds) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hours > 23 || minutes > 59 || seconds > 60 {
        return None;
    }
    let mut at = 19;
    let mut millis = 0i64;
    if bytes.get(at) == Some(&b'.') {
        let start = at + 1;
        let end = start + text[start..].bytes().take_while(u8::is_ascii_digit).count();
        if end == start {
            return None;
        }
        let fraction = &text[start..end];
        millis = format!("{fraction:0<3}")[..3].parse().ok()?;
        at = end;
    }
    let offset_minutes = match &text[at..] {
        "Z" | "z" => 0,
        rest if rest.len() == 6 && matches!(rest.as_bytes()[0], b'+' | b'-') && rest.as_bytes()[3] == b':' => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (number(at + 1..at + 3)? * 60 + number(at + 4..at + 6)?)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let total = ((days * 86_400 + hours * 3600 + minutes * 60 + seconds) - offset_minutes * 60) * 1000 + millis;
    u64::try_from(total).ok().map(Timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_and_parse() {
        assert_eq!(format(Timestamp(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(format(Timestamp(1_795_342_530_123)), "2026-11-22T10:15:30.123Z");
        assert_eq!(parse("2026-11-22T10:15:30.123Z"), Some(Timestamp(1_795_342_530_123)));
        assert_eq!(parse("2026-11-22T11:15:30.1+01:00"), Some(Timestamp(1_795_342_530_100)));
        assert_eq!(parse("2000-02-29T00:00:00Z").map(format).as_deref(), Some("2000-02-29T00:00:00.000Z"));
        for bad in ["2026-11-22", "2026-13-01T00:00:00Z", "2026-11-22T10:15:30", "yesterday"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        for millis in [1u64, 86_399_999, 951_782_400_000, 4_102_444_800_000] {
            assert_eq!(parse(&format(Timestamp(millis))), Some(Timestamp(millis)));
        }
    }
}
