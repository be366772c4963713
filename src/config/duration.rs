//! Durations as `proxy.yaml` writes them (`500ms`, `10s`, `5m`, `1h`), read through `humantime`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// An hour, in milliseconds.
pub(super) const HOUR: u64 = 3_600_000;
/// A day, in milliseconds.
pub(super) const DAY: u64 = 24 * HOUR;

/// Why a text is not a duration of the configuration; each message quotes the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The text is not a number followed by a unit.
    #[error("{0:?} is not a duration: write e.g. 500ms, 10s, 5m or 1h")]
    NotADuration(String),
    /// The number is followed by a unit other than `ms`, `s`, `m` or `h`.
    #[error("{0:?} has an unknown unit: use ms, s, m or h")]
    UnknownUnit(String),
    /// The number overflows: the duration cannot be represented.
    #[error("{0:?} is too long")]
    TooLong(String),
}

/// Parses a duration written as a number and a unit: `ms`, `s`, `m` or `h` (none is seconds),
/// with blanks around and between them allowed.
///
/// Only these forms: `humantime` alone would also take `1h 30m`, `2days`, `5min` or `1.5s`, which the
/// configuration has never accepted and its reference does not list. The number is read by
/// `humantime`, which refuses what it cannot hold instead of wrapping: past `u64::MAX` seconds,
/// or past `u64::MAX` nanoseconds (584 years) written in `ms`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(DurationError::NotADuration(text.to_owned()));
    }
    let unit = match unit.trim() {
        "" => "s",
        unit @ ("ms" | "s" | "m" | "h") => unit,
        _ => return Err(DurationError::UnknownUnit(text.to_owned())),
    };
    humantime::parse_duration(&format!("{number}{unit}")).map_err(|error| match error {
        humantime::DurationError::NumberOverflow => DurationError::TooLong(text.to_owned()),
        // Not reached: the text is digits and a unit humantime knows.
        _ => DurationError::NotADuration(text.to_owned()),
    })
}

/// Deserializes `250ms`, `10s`, `5m`, `1h` (or a bare number of seconds); used by the duration
/// keys as `#[serde(with = "duration")]`.
pub(super) fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(de)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

/// Writes milliseconds as the configuration does: `500ms`, `10s`, `5m`, `1h`.
pub(crate) fn written(ms: u64) -> String {
    match ms {
        0 => "0s".into(),
        ms if ms % HOUR == 0 => format!("{}h", ms / HOUR),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_too_long_to_hold_is_an_error_not_a_panic() {
        for text in ["18446744073709551615h", "18446744073709551615m", "99999999999999999999s"] {
            let error = parse_duration(text).unwrap_err().to_string();
            assert!(error.contains(text), "{error}");
        }
        assert_eq!(parse_duration("18446744073709551615s"), Ok(Duration::from_secs(u64::MAX)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("ten").is_err());
    }

    /// The forms the configuration reference lists, and nothing `humantime` adds to them.
    #[test]
    fn only_a_number_and_one_of_ms_s_m_h_is_a_duration() {
        for (text, expected) in [
            ("0s", Duration::ZERO),
            ("0", Duration::ZERO),
            ("100ms", Duration::from_millis(100)),
            ("30s", Duration::from_secs(30)),
            ("30", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            (" 10s ", Duration::from_secs(10)),
            ("10 s", Duration::from_secs(10)),
            ("007s", Duration::from_secs(7)),
            // The most milliseconds humantime holds (its nanoseconds are a u64): over 584 years.
            ("18446744073709ms", Duration::from_millis(18_446_744_073_709)),
        ] {
            assert_eq!(parse_duration(text), Ok(expected), "{text:?}");
        }
        for text in ["", " ", "ten", "-5s", "+5s", ".5s", "s", "ms"] {
            assert_eq!(parse_duration(text), Err(DurationError::NotADuration(text.trim().to_owned())), "{text:?}");
        }
        for text in
            ["1h30m", "1h 30m", "2d", "1w", "1y", "1M", "5min", "10sec", "2hours", "100us", "5ns", "5S", "1 0s", "1.5s"]
        {
            assert_eq!(parse_duration(text), Err(DurationError::UnknownUnit(text.to_owned())), "{text:?}");
        }
        assert_eq!(
            parse_duration("10 parsecs").unwrap_err().to_string(),
            "\"10 parsecs\" has an unknown unit: use ms, s, m or h"
        );
        assert_eq!(
            parse_duration("ten").unwrap_err().to_string(),
            "\"ten\" is not a duration: write e.g. 500ms, 10s, 5m or 1h"
        );
        for text in ["99999999999999999999s", "18446744073710ms", "5124095576030432h"] {
            assert_eq!(parse_duration(text).unwrap_err().to_string(), format!("{text:?} is too long"));
        }
    }

    #[test]
    fn a_bare_number_in_yaml_is_seconds() {
        #[derive(Deserialize)]
        struct Keys {
            #[serde(with = "super")]
            timeout: Duration,
        }
        let read = |yaml: &str| serde_yaml_ng::from_str::<Keys>(yaml).map(|k| k.timeout).map_err(|e| e.to_string());
        assert_eq!(read("timeout: 30"), Ok(Duration::from_secs(30)));
        assert_eq!(read("timeout: \"30\""), Ok(Duration::from_secs(30)));
        assert_eq!(read("timeout: 250ms"), Ok(Duration::from_millis(250)));
        assert!(read("timeout: 1h30m").is_err_and(|e| e.contains("unknown unit")));
        assert!(read("timeout: -1").is_err());
    }

    #[test]
    fn written_is_the_largest_whole_unit() {
        assert_eq!(
            [0, 250, 10_000, 300_000, HOUR, DAY, 1500].map(written),
            ["0s", "250ms", "10s", "5m", "1h", "24h", "1500ms"]
        );
    }
}
