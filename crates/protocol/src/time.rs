//! Timestamps (PROTOCOL.md header): accepted as RFC 3339 in UTC (`Z` or `+00:00`) with 0
//! to 9 fraction digits; written with `Z`, event timestamps with 9 fraction digits and
//! every other timestamp with 3. As in RFC 3339, a leap second (`:60`) ends a UTC day
//! (`23:59:60`) and nothing else.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

/// Parses a timestamp under the protocol's rules; `None` when it breaks any of them.
pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    let body = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    // Shape check before chrono (whose `%Y` would take a sign or a space): `YYYY-MM-DD`,
    // `T`, `HH:MM:SS` in ASCII digits, then an optional `.` and 1-9 digits.
    let bytes = body.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd";
    if bytes.len() < shape.len()
        || !shape.iter().zip(bytes).all(|(want, got)| match want {
            b'd' => got.is_ascii_digit(),
            sep => got == sep,
        })
    {
        return None;
    }
    if let Some(frac) = body.get(19..)
        && !frac.is_empty()
    {
        let digits = frac.strip_prefix('.')?;
        if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    if &body[17..19] == "60" && &body[11..16] != "23:59" {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(body, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    Some(naive.and_utc())
}

/// An event timestamp: 9 fraction digits, `Z` (the seed's `RFC3339Nano`, fixed width).
pub fn format_event(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Any other timestamp: 3 fraction digits, `Z`.
pub fn format(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The current time in the general format (a convenience for message constructors).
pub fn now() -> String {
    format(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_the_header_allows() {
        for ok in [
            "2026-11-21T10:00:00Z",
            "2026-11-21T10:00:00.1Z",
            "2026-11-21T10:00:00.123456789Z",
            "2026-11-21T10:00:00.123+00:00",
            "0000-01-01T00:00:00Z",
            "2026-12-31T23:59:60Z",
        ] {
            assert!(parse(ok).is_some(), "{ok}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "2026-11-21T10:00:00",
            "2026-11-21T10:00:00+01:00",
            "2026-11-21T10:00:00.1234567890Z",
            "2026-11-21T10:00:00.Z",
            "2026-11-21 10:00:00Z",
            "2026-13-21T10:00:00Z",
            " 026-11-21T10:00:00Z",
            "-026-11-21T10:00:00Z",
            "+2026-11-21T10:00:00Z",
            "2026-11-2110:00:00:0Z",
            "2026-11-21T10:00:60Z",
            "yesterday",
            "",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn writes_fixed_widths() {
        let t = parse("2026-11-21T10:00:00Z").unwrap();
        assert_eq!(format_event(t), "2026-11-21T10:00:00.000000000Z");
        assert_eq!(format(t), "2026-11-21T10:00:00.000Z");
    }
}
