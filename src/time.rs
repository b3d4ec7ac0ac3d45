//! Timestamps on the wire: RFC 3339 in UTC with a `Z`, e.g. `2026-12-24T19:00:00Z`
//! (fractions of a second only when there are any).

use chrono::{DateTime, SecondsFormat, Utc};
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

/// Parses an RFC 3339 timestamp with any offset into UTC.
pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
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
}
