//! `%START_TIME%` as Envoy prints it: UTC, `strftime`-like, with Envoy's
//! own `%s`, `%f`/`%Nf` and `%ENS`. No time-zone database is needed:
//! Envoy prints access-log times in UTC.

use std::{cell::Cell, fmt::Write as _, time::SystemTime};

/// Envoy's default: `%Y-%m-%dT%H:%M:%E3SZ`.
pub fn default_start_time(t: SystemTime) -> String {
    let mut out = Vec::with_capacity(24);
    push_default_start_time(&mut out, t);
    // ASCII digits and separators only.
    String::from_utf8(out).unwrap_or_default()
}

thread_local! {
    /// The last second [`push_default_start_time`] formatted, and its
    /// `YYYY-MM-DDTHH:MM:SS`: every request of that second reuses it, so
    /// only the milliseconds are formatted per request.
    static LAST_SECOND: Cell<(i64, [u8; 19])> = const { Cell::new((i64::MIN, [0; 19])) };
}

/// Appends `t` in Envoy's default format to `out`, without allocating.
pub fn push_default_start_time(out: &mut Vec<u8>, t: SystemTime) {
    let (secs, millis) = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_millis()),
        Err(_) => (0, 0),
    };
    let (cached, mut prefix) = LAST_SECOND.get();
    if cached != secs {
        let text = format_time(t, "%Y-%m-%dT%H:%M:%S");
        match <[u8; 19]>::try_from(text.as_bytes()) {
            Ok(p) => {
                prefix = p;
                LAST_SECOND.set((secs, prefix));
            }
            // A year past 9999: not cacheable, and not worth a fast path.
            Err(_) => {
                out.extend_from_slice(text.as_bytes());
                let _ = std::io::Write::write_fmt(out, format_args!(".{millis:03}Z"));
                return;
            }
        }
    }
    // The prefix came from `format_time`: ASCII digits and separators.
    out.extend_from_slice(&prefix);
    let digits = [
        b'.',
        b'0' + (millis / 100) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
        b'Z',
    ];
    out.extend_from_slice(&digits);
}

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Civil date of days since 1970-01-01 (H. Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// `t` formatted with `fmt` in UTC.
pub fn format_time(t: SystemTime, fmt: &str) -> String {
    let (secs, nanos) = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(_) => (0, 0),
    };
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, mo, d) = civil(days);
    let (h, mi, s) = (sod / 3600, (sod / 60) % 60, sod % 60);
    let wday = (days + 4).rem_euclid(7) as usize;
    let before: u32 = [
        31,
        if is_leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
    ]
    .iter()
    .take(mo as usize - 1)
    .sum();
    let yday = before + d;
    let month = MONTHS[mo as usize - 1];
    let fraction = |out: &mut String, digits: usize| {
        let digits = digits.clamp(1, 9);
        let scaled = nanos / 10u32.pow(9 - digits as u32);
        let _ = write!(out, "{scaled:0digits$}");
    };
    let mut out = String::with_capacity(fmt.len() + 16);
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // `%Nf` and `%ENS`: a digit count first.
        let mut digits = None;
        let mut extended = false;
        if chars.peek() == Some(&'E') {
            extended = true;
            chars.next();
        }
        if let Some(n) = chars.peek().and_then(|c| c.to_digit(10)) {
            digits = Some(n as usize);
            chars.next();
        }
        let Some(conv) = chars.next() else {
            out.push('%');
            break;
        };
        let _ = match conv {
            'Y' => write!(out, "{y:04}"),
            'y' => write!(out, "{:02}", y.rem_euclid(100)),
            'm' => write!(out, "{mo:02}"),
            'd' => write!(out, "{d:02}"),
            'e' => write!(out, "{d:2}"),
            'j' => write!(out, "{yday:03}"),
            'H' => write!(out, "{h:02}"),
            'I' => write!(out, "{:02}", if h % 12 == 0 { 12 } else { h % 12 }),
            'p' => write!(out, "{}", if h < 12 { "AM" } else { "PM" }),
            'M' => write!(out, "{mi:02}"),
            'S' if extended => {
                let _ = write!(out, "{s:02}");
                if let Some(n) = digits.filter(|n| *n > 0) {
                    out.push('.');
                    fraction(&mut out, n);
                }
                Ok(())
            }
            'S' => write!(out, "{s:02}"),
            'T' => write!(out, "{h:02}:{mi:02}:{s:02}"),
            'R' => write!(out, "{h:02}:{mi:02}"),
            'F' => write!(out, "{y:04}-{mo:02}-{d:02}"),
            'D' => write!(out, "{mo:02}/{d:02}/{:02}", y.rem_euclid(100)),
            'z' => write!(out, "+0000"),
            'Z' => write!(out, "UTC"),
            's' => write!(out, "{secs}"),
            'f' => {
                fraction(&mut out, digits.unwrap_or(9));
                Ok(())
            }
            'a' => write!(out, "{}", &DAYS[wday][..3]),
            'A' => write!(out, "{}", DAYS[wday]),
            'b' | 'h' => write!(out, "{}", &month[..3]),
            'B' => write!(out, "{month}"),
            'n' => writeln!(out),
            '%' => write!(out, "%"),
            other => write!(out, "%{other}"),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn formats_as_envoy() {
        // 2026-12-07T12:05:11.093Z, a Monday.
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_645_111_093);
        assert_eq!(default_start_time(t), "2026-12-07T12:05:11.093Z");
        assert_eq!(format_time(t, "%s"), "1796645111");
        assert_eq!(
            format_time(t, "%Y/%m/%dT%H:%M:%S.%3f%z"),
            "2026/12/07T12:05:11.093+0000"
        );
        assert_eq!(format_time(t, "%a %b %e %j %f"), "Mon Dec  7 341 093000000");
        assert_eq!(
            format_time(t, "%E6S %T %F 100%%"),
            "11.093000 12:05:11 2026-12-07 100%"
        );
        // The cached second: same second, then the next, then back.
        let later = t + Duration::from_millis(900);
        assert_eq!(default_start_time(later), "2026-12-07T12:05:11.993Z");
        assert_eq!(
            default_start_time(later + Duration::from_millis(8)),
            "2026-12-07T12:05:12.001Z"
        );
        assert_eq!(default_start_time(t), "2026-12-07T12:05:11.093Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(format_time(leap, "%F %j"), "2000-02-29 060");
    }
}
