//! The protocol's small formats: offsets, cursors, RFC 3339 instants, base64.

use crate::store::From;

/// Digits in each part of an offset, zero-padded so that offsets sort as strings.
const OFFSET_DIGITS: usize = 16;

/// The offset of a position (a count of chunks): `{generation}_{chunks}`, two parts of
/// 16 digits. The generation is 0 today; it leaves room for a log that is ever
/// rewritten (compacted) to mint offsets that sort after every earlier one.
pub fn offset(chunks: u64) -> String {
    format!("{:0OFFSET_DIGITS$}_{chunks:0OFFSET_DIGITS$}", 0)
}

/// Parses an offset we minted (`None` if malformed or of another generation).
pub fn parse_offset(text: &str) -> Option<u64> {
    let (generation, chunks) = text.split_once('_')?;
    let digits =
        |part: &str| part.len() == OFFSET_DIGITS && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(generation) || !digits(chunks) || generation.bytes().any(|b| b != b'0') {
        return None;
    }
    chunks.parse().ok()
}

/// Parses a read's `offset` parameter: `-1`, `now` or an offset we minted.
pub fn parse_from(text: &str) -> Option<From> {
    match text {
        "-1" => Some(From::At(0)),
        "now" => Some(From::Tail),
        other => parse_offset(other).map(From::At),
    }
}

/// Cursor intervals: 20 s counted from 2024-10-09T00:00:00Z (protocol section 10.1).
const CURSOR_EPOCH_MS: u64 = 1_728_432_000_000;
const CURSOR_INTERVAL_MS: u64 = 20_000;

/// The cursor for a live answer: the current interval, or, when the client's cursor
/// is not behind it, the client's advanced by a pseudo-random jitter of up to an hour.
pub fn cursor(client: Option<&str>, now_ms: u64) -> String {
    let current = now_ms.saturating_sub(CURSOR_EPOCH_MS) / CURSOR_INTERVAL_MS;
    match client.and_then(|c| c.parse::<u64>().ok()) {
        Some(theirs) if theirs >= current => {
            let jitter_secs = 1 + (now_ms.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % 3600;
            (theirs + jitter_secs.div_ceil(CURSOR_INTERVAL_MS / 1000).max(1)).to_string()
        }
        _ => current.to_string(),
    }
}

/// Parses `Stream-TTL`: a decimal integer without sign, leading zero or fraction.
pub fn parse_ttl(text: &str) -> Option<u64> {
    let ok = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if ok {
        text.parse().ok()
    } else {
        None
    }
}

/// Parses an RFC 3339 timestamp into milliseconds since the Unix epoch.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = text.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &text[start..i.min(start + 3)];
        millis = format!("{frac:0<3}").parse().ok()?;
    }
    let offset_secs = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let d = |x: u8| i64::from(x - b'0');
            let secs =
                (d(digits[0]) * 10 + d(digits[1])) * 3600 + (d(digits[2]) * 10 + d(digits[3])) * 60;
            if *sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    u64::try_from(secs * 1000 + millis).ok()
}

/// Formats milliseconds since the Unix epoch as RFC 3339 in UTC.
pub fn format_rfc3339(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Standard base64 (RFC 4648, padded).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for group in data.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_sort_and_parse() {
        assert!(offset(9) < offset(10));
        assert_eq!(parse_offset(&offset(42)), Some(42));
        assert_eq!(parse_offset("12,3"), None);
        assert_eq!(parse_from("-1"), Some(From::At(0)));
        assert_eq!(parse_from("now"), Some(From::Tail));
    }

    #[test]
    fn ttl_syntax() {
        assert_eq!(parse_ttl("3600"), Some(3600));
        for bad in ["+3600", "03600", "3600.0", "3.6e3", "", "-1"] {
            assert_eq!(parse_ttl(bad), None, "{bad}");
        }
    }

    #[test]
    fn rfc3339_round_trip() {
        let ms = parse_rfc3339("2025-01-02T03:04:05.678Z").unwrap();
        assert_eq!(format_rfc3339(ms), "2025-01-02T03:04:05.678Z");
        assert_eq!(parse_rfc3339("2025-01-02T04:04:05.678+01:00"), Some(ms));
        assert_eq!(parse_rfc3339("not a date"), None);
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn cursors_advance() {
        let now = CURSOR_EPOCH_MS + 1_000_000;
        let current: u64 = cursor(None, now).parse().unwrap();
        let next: u64 = cursor(Some(&current.to_string()), now).parse().unwrap();
        assert!(next > current);
    }
}
