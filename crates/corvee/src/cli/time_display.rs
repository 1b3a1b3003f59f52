//! Times for humans: the daemon's RFC 3339 UTC times read into
//! milliseconds, and shown relative to now ("5m ago", "in 25m").

/// Milliseconds since the Unix epoch of an RFC 3339 time such as
/// `2026-11-22T10:15:30.123Z` (any fraction length; `Z` or a `±hh:mm`
/// offset). `None` if it is not one.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = bytes.get(range)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    if bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut index = 19;
    let mut millis = 0;
    if bytes[index] == b'.' {
        index += 1;
        let start = index;
        while index < bytes.len() && bytes[index].is_ascii_digit() {
            index += 1;
        }
        if index == start {
            return None;
        }
        // Milliseconds: the first three digits, padded.
        let fraction = &text[start..index.min(start + 3)];
        millis = fraction.parse::<i64>().ok()? * 10_i64.pow(3 - fraction.len() as u32);
    }
    let offset_minutes = match bytes.get(index)? {
        b'Z' | b'z' if index + 1 == bytes.len() => 0,
        sign @ (b'+' | b'-') if index + 6 == bytes.len() && bytes[index + 3] == b':' => {
            let minutes = number(index + 1..index + 3)? * 60 + number(index + 4..index + 6)?;
            if *sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1_000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A duration in the two largest units that matter: `850ms`, `12s`,
/// `5m 3s`, `2h 5m`, `3d 4h`.
pub fn format_duration_ms(ms: u64) -> String {
    const SECOND: u64 = 1_000;
    const MINUTE: u64 = 60 * SECOND;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    let pair = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit} {small}{small_unit}")
        }
    };
    if ms < SECOND {
        format!("{ms}ms")
    } else if ms < MINUTE {
        format!("{}s", ms / SECOND)
    } else if ms < HOUR {
        pair(ms / MINUTE, "m", ms % MINUTE / SECOND, "s")
    } else if ms < DAY {
        pair(ms / HOUR, "h", ms % HOUR / MINUTE, "m")
    } else {
        pair(ms / DAY, "d", ms % DAY / HOUR, "h")
    }
}

/// `time` relative to `now_ms`: `5m ago`, `in 25m`, `now`; the time as it
/// is if it cannot be read.
pub fn relative(time: &str, now_ms: i64) -> String {
    let Some(at_ms) = parse_rfc3339_ms(time) else {
        return time.to_string();
    };
    let difference = now_ms - at_ms;
    if difference.abs() < 1_000 {
        "now".to_string()
    } else if difference > 0 {
        format!("{} ago", format_duration_ms(difference.unsigned_abs()))
    } else {
        format!("in {}", format_duration_ms(difference.unsigned_abs()))
    }
}

/// `time (5m ago)`: absolute and relative.
pub fn absolute_and_relative(time: &str, now_ms: i64) -> String {
    format!("{time} ({})", relative(time, now_ms))
}
