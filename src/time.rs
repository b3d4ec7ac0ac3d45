//! Timestamps on the wire: RFC 3339 in UTC with a `Z`, e.g. `2026-12-24T19:00:00Z`
//! (fractions of a second only when there are any).

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::Serializer;

pub fn format(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(t))
}

pub fn serialize_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize(t, s),
        None => s.serialize_none(),
    }
}

/// Parses an RFC 3339 timestamp with any offset into UTC. Refused: a leap
/// second (`…:60`, which would be stored as the next minute's first second)
/// and a time whose UTC year is outside 0000–9999 (it could not be written
/// back as RFC 3339).
pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc);
    let leap = t.nanosecond() >= 1_000_000_000;
    (!leap && (0..=9999).contains(&t.year())).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_utc_with_z() {
        let t = parse("2026-12-25T04:00:00+09:00").unwrap();
        assert_eq!(format(&t), "2026-12-24T19:00:00Z");
        assert!(parse("tomorrow").is_none());
        assert!(parse("2026-12-24").is_none());
    }

    #[test]
    fn leap_seconds_and_years_past_four_digits_are_refused() {
        assert!(parse("2026-12-31T23:59:60Z").is_none());
        assert!(parse("2026-12-31T23:59:60.5Z").is_none());
        assert!(parse("2026-12-31T23:59:59.999Z").is_some());
        assert!(
            parse("0000-01-01T00:00:00+01:00").is_none(),
            "year -1 in UTC"
        );
        assert!(
            parse("9999-12-31T23:00:00-02:00").is_none(),
            "year 10000 in UTC"
        );
        let edge = parse("0000-01-01T00:00:00Z").unwrap();
        assert_eq!(format(&edge), "0000-01-01T00:00:00Z");
        let edge = parse("9999-12-31T23:59:59Z").unwrap();
        assert_eq!(format(&edge), "9999-12-31T23:59:59Z");
    }
}
