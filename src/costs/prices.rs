//! The rates that would apply to a model: `genai-audit prices MODEL [--provider P]
//! [--at DATE]`.

use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value as Json};

use crate::pricing::{GenAiPrices, RateCard};
use crate::report::escape_controls;

/// The price data the audit would use: `file`, else the file named by
/// `GENAI_AUDIT_PRICES_FILE` (when set and not blank), else the bundled prices. An
/// unreadable or invalid file is an error, with its path and the reason.
pub fn load_prices(file: Option<&Path>) -> Result<GenAiPrices, String> {
    let from_env = std::env::var("GENAI_AUDIT_PRICES_FILE")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let path = file
        .map(Path::to_path_buf)
        .or_else(|| from_env.map(Into::into));
    match path {
        None => Ok(GenAiPrices::bundled()),
        Some(path) => GenAiPrices::from_file(&path)
            .map_err(|e| format!("the price file {}: {e}", path.display())),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn number(text: &str, digits: usize) -> Option<u32> {
    (text.len() == digits && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Reads a time as `genai-audit prices --at` takes it: a date (`2025-10-01`, midnight
/// UTC: prices change on dates at midnight UTC) or an RFC 3339 time
/// (`2025-10-01T14:30:00Z`, `2025-10-01T16:30:00.5+02:00`).
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
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    let bad =
        || format!("{text:?}: not a date (YYYY-MM-DD) or an RFC 3339 time (YYYY-MM-DDTHH:MM:SSZ)");
    let text = text.trim();
    let (date, time) = match text.find(['T', 't', ' ']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (year, month, day) = (
        number(y, 4).ok_or_else(bad)?,
        number(m, 2).ok_or_else(bad)?,
        number(d, 2).ok_or_else(bad)?,
    );
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month) || day == 0 || day > month_days[month as usize - 1] {
        return Err(bad());
    }
    let mut seconds = days_from_civil(i64::from(year), month, day) * 86_400;
    let mut nanos = 0u32;
    if let Some(time) = time {
        let (clock, offset) = match time.find(['Z', 'z', '+', '-']) {
            Some(at) => time.split_at(at),
            None => return Err(bad()),
        };
        let (clock, fraction) = match clock.split_once('.') {
            Some((clock, fraction)) => (clock, Some(fraction)),
            None => (clock, None),
        };
        let mut hms = clock.split(':');
        let (Some(h), Some(mi), Some(s), None) = (hms.next(), hms.next(), hms.next(), hms.next())
        else {
            return Err(bad());
        };
        let (h, mi, s) = (
            number(h, 2).ok_or_else(bad)?,
            number(mi, 2).ok_or_else(bad)?,
            number(s, 2).ok_or_else(bad)?,
        );
        if h > 23 || mi > 59 || s > 60 {
            return Err(bad());
        }
        if let Some(fraction) = fraction {
            if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let digits: String = fraction
                .chars()
                .chain("000000000".chars())
                .take(9)
                .collect();
            nanos = digits.parse().map_err(|_| bad())?;
        }
        seconds += i64::from(h * 3600 + mi * 60 + s.min(59));
        if offset.len() > 1 {
            let sign = if offset.starts_with('-') { 1 } else { -1 };
            let (oh, om) = offset[1..].split_once(':').ok_or_else(bad)?;
            let (oh, om) = (
                number(oh, 2).ok_or_else(bad)?,
                number(om, 2).ok_or_else(bad)?,
            );
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            seconds += sign * i64::from(oh * 3600 + om * 60);
        } else if !offset.eq_ignore_ascii_case("z") {
            return Err(bad());
        }
    }
    let seconds = u64::try_from(seconds).map_err(|_| format!("{text:?}: before 1970"))?;
    Ok(UNIX_EPOCH + Duration::new(seconds, nanos))
}

/// `2025-10-01T00:00:00Z` (to the second).
fn format_time(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Civil from days (inverse of `days_from_civil`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
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
