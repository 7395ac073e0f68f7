//! Durations in the configuration and on the command line, written as people write them: `10s`, `500ms`,
//! `1m30s`, `2h`. A bare number is refused (its unit would be a guess).
//!
//! Owns: parsing and serde glue only. Never panics on input.

use std::time::Duration;

use serde::Deserializer;

/// Why a duration does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("{text:?}: {problem}")]
    Invalid { text: String, problem: Problem },
}

/// What is wrong with a non-empty duration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("expected a number, e.g. 10s or 500ms")]
    NoNumber,
    #[error("number too large")]
    NumberTooLarge,
    #[error("missing unit (ms, s, m or h)")]
    NoUnit,
    #[error("unknown unit {0:?} (ms, s, m or h)")]
    UnknownUnit(String),
    #[error("too long")]
    TooLong,
}

/// Parses `10s`, `250ms`, `1m30s`, `1h`. Units: `ms`, `s`, `m`, `h`.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let bad = |problem| DurationError::Invalid {
        text: text.to_owned(),
        problem,
    };
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad(Problem::NoNumber));
        }
        // Numbers beyond u32 are typos, not durations anyone means.
        let number: u64 = rest[..digits]
            .parse::<u32>()
            .map_err(|_| bad(Problem::NumberTooLarge))?
            .into();
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let millis_per = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err(bad(Problem::NoUnit)),
            other => return Err(bad(Problem::UnknownUnit(other.to_owned()))),
        };
        rest = &rest[unit_len..];
        let part = number
            .checked_mul(millis_per)
            .ok_or_else(|| bad(Problem::TooLong))?;
        total = total
            .checked_add(Duration::from_millis(part))
            .ok_or_else(|| bad(Problem::TooLong))?;
    }
    Ok(total)
}

/// serde `deserialize_with` for a required duration. The parse error is raised while
/// the deserializer still holds the value, so it reports the field and line (serde's
/// formats attach them to errors from a visitor, not to errors made afterwards).
pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_str(DurationVisitor)
}

/// serde `deserialize_with` for an optional duration (`null` or absent → `None`).
pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    d.deserialize_option(OptionalVisitor)
}

struct DurationVisitor;

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a duration such as 10s, 500ms or 1m30s")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Duration, E> {
        parse(text).map_err(E::custom)
    }
}

struct OptionalVisitor;

impl<'de> serde::de::Visitor<'de> for OptionalVisitor {
    type Value = Option<Duration>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a duration such as 10s, 500ms or 1m30s, or nothing")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        required(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_people_write() {
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse(" 2h "), Ok(Duration::from_hours(2)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        for bad in ["", "10", "s", "10x", "1.5s", "-1s", "99999999999999999999s"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
