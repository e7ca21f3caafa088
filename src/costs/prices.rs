//! The rates that would apply to a model: `genai-audit prices MODEL [--provider P]
//! [--at DATE]`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use serde_json::{json, Value as Json};

use crate::pricing::{GenAiPrices, RateCard};
use crate::report::escape_controls;

/// A price file that cannot be used: its path and the reason.
#[derive(Debug, thiserror::Error)]
#[error("the price file {}: {reason}", path.display())]
pub struct PriceFileError {
    /// The file.
    pub path: PathBuf,
    /// Why it cannot be used.
    pub reason: String,
}

/// A `--at` value that is not a time [`parse_time`] reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Not a date or an RFC 3339 time (the text as given).
    #[error("{0:?}: not a date (YYYY-MM-DD) or an RFC 3339 time (YYYY-MM-DDTHH:MM:SSZ)")]
    NotATime(String),
    /// A time before 1970-01-01 (the text, trimmed).
    #[error("{0:?}: before 1970")]
    Before1970(String),
}

/// The price data the audit would use: `file`, else the file named by
/// `GENAI_AUDIT_PRICES_FILE` (when set and not blank), else the bundled prices. An
/// unreadable or invalid file is an error, with its path and the reason.
pub fn load_prices(file: Option<&Path>) -> Result<GenAiPrices, PriceFileError> {
    let from_env = std::env::var("GENAI_AUDIT_PRICES_FILE")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let path = file
        .map(Path::to_path_buf)
        .or_else(|| from_env.map(Into::into));
    match path {
        None => Ok(GenAiPrices::bundled()),
        Some(path) => GenAiPrices::from_file(&path).map_err(|e| PriceFileError {
            reason: e.to_string(),
            path,
        }),
    }
}

/// Reads a time as `genai-audit prices --at` takes it: a date (`2025-10-01`, midnight
/// UTC: prices change on dates at midnight UTC) or an RFC 3339 time
/// (`2025-10-01T14:30:00Z`, `2025-10-01T16:30:00.5+02:00`), read by
/// [jiff](https://docs.rs/jiff)'s ISO 8601 parser: so also `2025-10-01 14:30Z` (no
/// seconds), `+0200` and `+02` offsets, a `,` before the fraction, a bracketed time
/// zone annotation after the offset (`…+02:00[Europe/Paris]`, not checked) and the
/// basic forms (`20251001`, `20251001T143000Z`). A time needs its offset (`Z` for
/// UTC); a second of 60 (a leap second) is read as 59; a time before 1970 is refused.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use genai_audit::costs::parse_time;
/// assert_eq!(parse_time("1970-01-02"), Ok(UNIX_EPOCH + Duration::from_secs(86_400)));
/// assert_eq!(
///     parse_time("2025-10-01T16:30:00+02:00"),
///     parse_time("2025-10-01T14:30:00Z"),
/// );
/// assert!(parse_time("2025-02-30").is_err());
/// ```
pub fn parse_time(text: &str) -> Result<SystemTime, TimeError> {
    let bad = || TimeError::NotATime(text.to_owned());
    let trimmed = at_most_nine_fraction_digits(text.trim());
    let trimmed = trimmed.as_str();
    // A date alone is midnight UTC; with a time, the offset is required (jiff refuses
    // a time without one as a `Timestamp`).
    let time = if trimmed.contains(['T', 't', ' ']) {
        trimmed.parse::<Timestamp>().map_err(|_| bad())?
    } else {
        trimmed
            .parse::<Date>()
            .and_then(|date| date.to_zoned(TimeZone::UTC))
            .map_err(|_| bad())?
            .timestamp()
    };
    if time < Timestamp::UNIX_EPOCH {
        return Err(TimeError::Before1970(trimmed.to_owned()));
    }
    Ok(SystemTime::from(time))
}

/// `text` with a second's fraction cut to nine digits (nanoseconds): RFC 3339 allows
/// any number and jiff reads at most nine.
fn at_most_nine_fraction_digits(text: &str) -> String {
    let Some(dot) = text.find(['.', ',']) else {
        return text.to_owned();
    };
    let digits = text[dot + 1..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    if digits <= 9 {
        return text.to_owned();
    }
    format!("{}{}", &text[..dot + 10], &text[dot + 1 + digits..])
}

/// `2025-10-01T00:00:00Z` (to the second, UTC; a time jiff cannot hold, more than
/// 9999 years away, as 1970-01-01).
fn format_time(time: SystemTime) -> String {
    let time = Timestamp::try_from(time).unwrap_or(Timestamp::UNIX_EPOCH);
    time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `$0.15`, `$1.25`, `$0.075` per million tokens: the shortest text of the rate.
fn rate(per_million: f64) -> String {
    format!("${per_million}")
}

/// What `genai-audit prices` prints for a model: the rates that apply at `time` (see
/// [`RateCard`]), or why there are none.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceReport {
    /// The model asked for.
    pub model: String,
    /// The provider asked for.
    pub provider: Option<String>,
    /// The time of the rates.
    pub time: SystemTime,
    /// The rates (`None`: no price for that model).
    pub card: Option<RateCard>,
}

impl PriceReport {
    /// Looks the model up in `prices`, as the audit would price a call of it.
    pub fn new(
        prices: &GenAiPrices,
        model: &str,
        provider: Option<&str>,
        time: SystemTime,
    ) -> PriceReport {
        PriceReport {
            model: model.to_owned(),
            provider: provider.map(str::to_owned),
            time,
            card: prices.rate_card(provider, model, time),
        }
    }

    /// The report as one JSON object: `model`, `provider` (or `null`), `at` (RFC 3339,
    /// UTC), `priced` (bool), and when priced `matched`, `per_call_usd`,
    /// `reasoning` (`"output"`: billed as output tokens) and `tiers` (each with
    /// `above_input_tokens`, `input_per_million`, `output_per_million`,
    /// `cache_read_per_million`, `cache_write_per_million`; a cache rate is `null` when
    /// those tokens are charged as input).
    pub fn to_json(&self) -> Json {
        let mut out = json!({
            "model": self.model,
            "provider": self.provider,
            "at": format_time(self.time),
            "priced": self.card.is_some(),
        });
        if let (Some(card), Some(map)) = (&self.card, out.as_object_mut()) {
            map.insert("matched".into(), card.matched.clone().into());
            map.insert("per_call_usd".into(), card.per_call_usd.into());
            map.insert("reasoning".into(), "output".into());
            let tiers: Vec<Json> = card
                .tiers
                .iter()
                .map(|t| {
                    json!({
                        "above_input_tokens": t.above_input_tokens,
                        "input_per_million": t.input_per_million,
                        "output_per_million": t.output_per_million,
                        "cache_read_per_million": t.cache_read_per_million,
                        "cache_write_per_million": t.cache_write_per_million,
                    })
                })
                .collect();
            map.insert("tiers".into(), tiers.into());
        }
        out
    }

    /// Prints the rates, USD per million tokens, one tier after another; or `no price
    /// for MODEL`.
    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let model = escape_controls(&self.model);
        let provider = self
            .provider
            .as_deref()
            .map(|p| format!(" (provider {})", escape_controls(p)))
            .unwrap_or_default();
        let at = format_time(self.time);
        let Some(card) = &self.card else {
            return writeln!(
                out,
                "no price for {model}{provider} at {at}: calls of it are counted as unpriced, never as $0"
            );
        };
        writeln!(
            out,
            "{model}{provider} at {at}: {}",
            escape_controls(&card.matched)
        )?;
        if card.per_call_usd != 0.0 {
            writeln!(out, "  per call       ${}", card.per_call_usd)?;
        }
        let many = card.tiers.len() > 1;
        for (i, tier) in card.tiers.iter().enumerate() {
            let indent = if many {
                if i == 0 {
                    let up_to = card.tiers.get(1).map_or(0, |t| t.above_input_tokens);
                    writeln!(out, "  calls of up to {up_to} input tokens:")?;
                } else {
                    writeln!(
                        out,
                        "  calls of more than {} input tokens:",
                        tier.above_input_tokens
                    )?;
                }
                "    "
            } else {
                "  "
            };
            let cache = |r: Option<f64>| r.map_or_else(|| "as input".to_owned(), rate);
            writeln!(
                out,
                "{indent}input          {} per million tokens",
                rate(tier.input_per_million)
            )?;
            writeln!(
                out,
                "{indent}output         {} per million tokens",
                rate(tier.output_per_million)
            )?;
            writeln!(
                out,
                "{indent}cache read     {}",
                per(cache(tier.cache_read_per_million))
            )?;
            writeln!(
                out,
                "{indent}cache write    {}",
                per(cache(tier.cache_write_per_million))
            )?;
        }
        writeln!(out, "  reasoning tokens are billed as output tokens")
    }
}

fn per(text: String) -> String {
    if text.starts_with('$') {
        format!("{text} per million tokens")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn times_round_trip() {
        for text in ["1970-01-01", "2000-02-29", "2025-10-01", "2100-12-31"] {
            let time = parse_time(text).expect(text);
            assert_eq!(format_time(time), format!("{text}T00:00:00Z"));
        }
        let t = parse_time("2025-10-01T14:30:05.25Z").expect("rfc 3339");
        assert_eq!(format_time(t), "2025-10-01T14:30:05Z");
        assert_eq!(
            parse_time("2025-10-01T12:00:00-02:00"),
            parse_time("2025-10-01T14:00:00Z")
        );
        for bad in [
            "2025-13-01",
            "2025-1-01",
            "2025-10-01T25:00:00Z",
            "2025-10-01T10:00:00",
            "x",
            "1969-12-31",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forms_jiff_reads_too() {
        // Accepted since the parser is jiff's: ISO 8601 forms beyond RFC 3339.
        for (text, read) in [
            ("2025-10-01T14:30Z", "2025-10-01T14:30:00Z"),
            ("2025-10-01T14Z", "2025-10-01T14:00:00Z"),
            ("2025-10-01T14:30:05+0200", "2025-10-01T12:30:05Z"),
            ("2025-10-01T14:30:05+02", "2025-10-01T12:30:05Z"),
            ("2025-10-01T14:30:05+02:00:30", "2025-10-01T12:29:35Z"),
            ("2025-10-01T14:30:05+24:00", "2025-09-30T14:30:05Z"),
            ("2025-10-01T14:30:05+25:59", "2025-09-30T12:31:05Z"),
            ("2025-10-01T14:30:05,5Z", "2025-10-01T14:30:05Z"),
            (
                "2025-10-01T14:30:05+02:00[Europe/Paris]",
                "2025-10-01T12:30:05Z",
            ),
            ("20251001", "2025-10-01T00:00:00Z"),
            ("20251001T143005Z", "2025-10-01T14:30:05Z"),
            ("+002025-10-01", "2025-10-01T00:00:00Z"),
        ] {
            assert_eq!(
                parse_time(text).map(format_time).as_deref(),
                Ok(read),
                "{text}"
            );
        }
        // Accepted before and still: lower case, a space, -00:00, a leap second, a
        // fraction of more than nine digits (cut to nine), blanks around.
        for (text, read) in [
            ("2025-10-01t14:30:05z", "2025-10-01T14:30:05Z"),
            (" 2025-10-01 14:30:05Z ", "2025-10-01T14:30:05Z"),
            ("2025-10-01T14:30:05-00:00", "2025-10-01T14:30:05Z"),
            ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59Z"),
            ("2025-10-01T14:30:05.1234567891234Z", "2025-10-01T14:30:05Z"),
        ] {
            assert_eq!(
                parse_time(text).map(format_time).as_deref(),
                Ok(read),
                "{text}"
            );
        }
        assert_eq!(
            parse_time("1970-01-01T00:00:00.1234567899Z"),
            Ok(UNIX_EPOCH + Duration::from_nanos(123_456_789))
        );
        for bad in [
            "2025-10-01T14:30:05.Z",
            "2025-10-01T24:00:00Z",
            "2025-10-01T",
            "2025-W40-3",
            "2025-274",
            "2025-10",
            "2025-10-01T14:30:05+26:00",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_time("0000-01-01"),
            Err(TimeError::Before1970("0000-01-01".to_owned()))
        );
    }

    #[test]
    fn known_and_unknown_models() {
        let prices = GenAiPrices::bundled();
        let when = parse_time("2025-10-01").expect("date");
        let known = PriceReport::new(&prices, "gpt-4o-mini", Some("openai"), when);
        let mut out = Vec::new();
        known.write(&mut out).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains("openai/gpt-4o-mini"), "{text}");
        assert_eq!(known.to_json()["priced"], true);
        let unknown = PriceReport::new(&prices, "no-such-model", None, when);
        let mut out = Vec::new();
        unknown.write(&mut out).expect("write");
        assert!(String::from_utf8(out)
            .expect("utf-8")
            .starts_with("no price for no-such-model"));
        assert_eq!(unknown.to_json()["priced"], false);
    }
}
