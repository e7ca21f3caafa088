//! Configuration: policies, bounds, and the environment variables read at `build()`
//! for whatever code did not set.
//!
//! | variable | values | default |
//! | --- | --- | --- |
//! | `GENAI_AUDIT_DISABLED` | `true`/`false` | `false` (true: pure pass-through) |
//! | `GENAI_AUDIT_LEAK_POLICY` | `flag`, `close` | `flag` |
//! | `GENAI_AUDIT_CONTAMINATION_POLICY` | `flag`, `repair` | `flag` |
//! | `GENAI_AUDIT_MAX_TRACKED_SPANS` | integer ≥ 1 | 65536 |
//! | `GENAI_AUDIT_MAX_SPAN_AGE_SECS` | integer ≥ 1 | 3600 |
//! | `GENAI_AUDIT_PRICES_FILE` | path to a genai-prices JSON file | bundled prices |
//! | `GENAI_AUDIT_BUDGET_USD` | number > 0, per invocation | none |
//! | `GENAI_AUDIT_BUDGET_TOKENS` | integer ≥ 1 (input + output), per invocation | none |
//!
//! Values are compared without regard to case and surrounding blanks. An invalid value
//! is reported through OpenTelemetry's internal log (`otel_warn!`, name
//! `GenAiAudit.InvalidConfig`) and the default is used: configuration never panics.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use opentelemetry::otel_warn;

use crate::budget::Budget;

/// Environment variable: `true` turns the processor into a pure pass-through.
pub const ENV_DISABLED: &str = "GENAI_AUDIT_DISABLED";
/// Environment variable: the [`LeakPolicy`].
pub const ENV_LEAK_POLICY: &str = "GENAI_AUDIT_LEAK_POLICY";
/// Environment variable: the [`ContaminationPolicy`].
pub const ENV_CONTAMINATION_POLICY: &str = "GENAI_AUDIT_CONTAMINATION_POLICY";
/// Environment variable: the most spans tracked at once.
pub const ENV_MAX_TRACKED_SPANS: &str = "GENAI_AUDIT_MAX_TRACKED_SPANS";
/// Environment variable: the age in seconds after which an open span is evicted.
pub const ENV_MAX_SPAN_AGE_SECS: &str = "GENAI_AUDIT_MAX_SPAN_AGE_SECS";
/// Environment variable: a price file in the genai-prices JSON format.
pub const ENV_PRICES_FILE: &str = "GENAI_AUDIT_PRICES_FILE";
/// Environment variable: the cost budget of every invocation, in USD (a number > 0).
pub const ENV_BUDGET_USD: &str = "GENAI_AUDIT_BUDGET_USD";
/// Environment variable: the token budget (input + output) of every invocation (an
/// integer ≥ 1).
pub const ENV_BUDGET_TOKENS: &str = "GENAI_AUDIT_BUDGET_TOKENS";

/// Default for the most spans tracked at once.
pub const DEFAULT_MAX_TRACKED_SPANS: usize = 65_536;
/// Default for the age after which an open span is evicted.
pub const DEFAULT_MAX_SPAN_AGE: Duration = Duration::from_secs(3600);

/// What happens to a recognised child still open when its parent ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LeakPolicy {
    /// The parent gets `unclosed_child` and the leak attributes; the child, if it ever
    /// ends, is exported with `late_end`.
    #[default]
    Flag,
    /// As `Flag`, and the child is also exported at once, ended at the parent's end
    /// time with an error status and `closed_by_audit`.
    Close,
}

/// What happens to a span contaminated by another invocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ContaminationPolicy {
    /// Record the finding; change nothing else.
    #[default]
    Flag,
    /// Record the finding and correct the value, keeping the original under
    /// `genai_audit.reported.<key>`.
    Repair,
}

/// A shorter name for [`ContaminationPolicy`], as in
/// `.contamination_policy(Policy::Repair)`.
pub type Policy = ContaminationPolicy;

/// A policy name that is not one of the accepted values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsePolicyError {
    value: String,
    expected: &'static str,
}

impl fmt::Display for ParsePolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown policy {:?}: expected {}",
            self.value, self.expected
        )
    }
}

impl std::error::Error for ParsePolicyError {}

fn parse_policy<T: Copy>(
    s: &str,
    values: &[(&str, T)],
    expected: &'static str,
) -> Result<T, ParsePolicyError> {
    let wanted = s.trim();
    values
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
        .map(|(_, value)| *value)
        .ok_or_else(|| ParsePolicyError {
            value: s.to_owned(),
            expected,
        })
}

impl FromStr for LeakPolicy {
    type Err = ParsePolicyError;

    /// `flag` or `close`, without regard to case and surrounding blanks.
    fn from_str(s: &str) -> Result<Self, ParsePolicyError> {
        parse_policy(
            s,
            &[("flag", LeakPolicy::Flag), ("close", LeakPolicy::Close)],
            "`flag` or `close`",
        )
    }
}

impl FromStr for ContaminationPolicy {
    type Err = ParsePolicyError;

    /// `flag` or `repair`, without regard to case and surrounding blanks.
    fn from_str(s: &str) -> Result<Self, ParsePolicyError> {
        parse_policy(
            s,
            &[
                ("flag", ContaminationPolicy::Flag),
                ("repair", ContaminationPolicy::Repair),
            ],
            "`flag` or `repair`",
        )
    }
}

/// Settings as code gave them; `None` means "not set in code".
#[derive(Debug, Default, Clone)]
pub(crate) struct Settings {
    pub(crate) disabled: Option<bool>,
    pub(crate) leak_policy: Option<LeakPolicy>,
    pub(crate) contamination_policy: Option<ContaminationPolicy>,
    pub(crate) max_tracked_spans: Option<usize>,
    pub(crate) max_span_age: Option<Duration>,
    pub(crate) prices_file: Option<std::path::PathBuf>,
    /// Code set a budget (`with_budget`): the environment's is not read.
    pub(crate) budget_in_code: bool,
}

/// Settings after the environment filled the gaps.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Resolved {
    pub(crate) disabled: bool,
    pub(crate) leak_policy: LeakPolicy,
    pub(crate) contamination_policy: ContaminationPolicy,
    pub(crate) max_tracked_spans: usize,
    pub(crate) max_span_age: Duration,
    pub(crate) prices_file: Option<std::path::PathBuf>,
    /// The budget of every invocation from the environment, when code set none.
    pub(crate) env_budget: Option<Budget>,
}

impl Settings {
    /// Fills what code did not set from `env` (a variable lookup), then defaults.
    pub(crate) fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Resolved {
        let max_tracked_spans = self
            .max_tracked_spans
            .map(|n| valid_or_default(ENV_MAX_TRACKED_SPANS, n, n >= 1, DEFAULT_MAX_TRACKED_SPANS))
            .unwrap_or_else(|| {
                from_env(&env, ENV_MAX_TRACKED_SPANS, |s| {
                    s.parse::<usize>().ok().filter(|n| *n >= 1)
                })
                .unwrap_or(DEFAULT_MAX_TRACKED_SPANS)
            });
        let max_span_age = self
            .max_span_age
            .map(|d| valid_or_default(ENV_MAX_SPAN_AGE_SECS, d, !d.is_zero(), DEFAULT_MAX_SPAN_AGE))
            .unwrap_or_else(|| {
                from_env(&env, ENV_MAX_SPAN_AGE_SECS, |s| {
                    s.parse::<u64>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .map(Duration::from_secs)
                })
                .unwrap_or(DEFAULT_MAX_SPAN_AGE)
            });
        Resolved {
            disabled: self.disabled.unwrap_or_else(|| {
                from_env(&env, ENV_DISABLED, |s| {
                    match s.to_ascii_lowercase().as_str() {
                        "true" => Some(true),
                        "false" => Some(false),
                        _ => None,
                    }
                })
                .unwrap_or(false)
            }),
            leak_policy: self.leak_policy.unwrap_or_else(|| {
                from_env(&env, ENV_LEAK_POLICY, |s| s.parse().ok()).unwrap_or_default()
            }),
            contamination_policy: self.contamination_policy.unwrap_or_else(|| {
                from_env(&env, ENV_CONTAMINATION_POLICY, |s| s.parse().ok()).unwrap_or_default()
            }),
            max_tracked_spans,
            max_span_age,
            prices_file: self.prices_file.clone().or_else(|| {
                env(ENV_PRICES_FILE)
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .map(std::path::PathBuf::from)
            }),
            env_budget: if self.budget_in_code {
                None
            } else {
                env_budget(&env)
            },
        }
    }
}

/// The budget of every invocation that `GENAI_AUDIT_BUDGET_USD` and
/// `GENAI_AUDIT_BUDGET_TOKENS` give (an invalid one warns and counts as unset).
fn env_budget(env: &impl Fn(&str) -> Option<String>) -> Option<Budget> {
    let usd = from_env(env, ENV_BUDGET_USD, |s| {
        s.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0)
    });
    let tokens = from_env(env, ENV_BUDGET_TOKENS, |s| {
        s.parse::<u64>().ok().filter(|n| *n >= 1)
    });
    match (usd, tokens) {
        (Some(usd), Some(tokens)) => Some(Budget::usd(usd).with_tokens(tokens)),
        (Some(usd), None) => Some(Budget::usd(usd)),
        (None, Some(tokens)) => Some(Budget::tokens(tokens)),
        (None, None) => None,
    }
}

fn valid_or_default<T>(name: &'static str, value: T, valid: bool, default: T) -> T {
    if valid {
        value
    } else {
        otel_warn!(name: "GenAiAudit.InvalidConfig", setting = name, reason = "must be at least 1; using the default");
        default
    }
}

fn from_env<T>(
    env: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> Option<T> {
    let raw = env(name)?;
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return None;
    }
    let parsed = parse(trimmed);
    if parsed.is_none() {
        otel_warn!(name: "GenAiAudit.InvalidConfig", variable = name, value = raw.clone(), reason = "invalid value; using the default");
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults() {
        let r = Settings::default().resolve(env(&[]));
        assert_eq!(
            r,
            Resolved {
                disabled: false,
                leak_policy: LeakPolicy::Flag,
                contamination_policy: ContaminationPolicy::Flag,
                max_tracked_spans: 65_536,
                max_span_age: Duration::from_secs(3600),
                prices_file: None,
                env_budget: None,
            }
        );
    }

    #[test]
    fn budgets_from_the_environment() {
        let budget = |pairs: &[(&str, &str)]| Settings::default().resolve(env(pairs)).env_budget;
        assert_eq!(budget(&[(ENV_BUDGET_USD, "0.5")]), Some(Budget::usd(0.5)));
        assert_eq!(
            budget(&[(ENV_BUDGET_USD, "2"), (ENV_BUDGET_TOKENS, "1000")]),
            Some(Budget::usd(2.0).with_tokens(1000))
        );
        assert_eq!(
            budget(&[(ENV_BUDGET_TOKENS, " 7 ")]),
            Some(Budget::tokens(7))
        );
        // Invalid values warn and set no budget.
        for bad in ["-1", "0", "abc", "NaN", "inf", ""] {
            assert_eq!(budget(&[(ENV_BUDGET_USD, bad)]), None, "{bad:?}");
        }
        for bad in ["0", "-3", "1.5", "x"] {
            assert_eq!(budget(&[(ENV_BUDGET_TOKENS, bad)]), None, "{bad:?}");
        }
        // A valid half is kept.
        assert_eq!(
            budget(&[(ENV_BUDGET_USD, "abc"), (ENV_BUDGET_TOKENS, "10")]),
            Some(Budget::tokens(10))
        );
        // Code wins: a budget set in the builder ignores the environment.
        let code = Settings {
            budget_in_code: true,
            ..Settings::default()
        };
        assert_eq!(code.resolve(env(&[(ENV_BUDGET_USD, "1")])).env_budget, None);
    }

    #[test]
    fn environment_fills_gaps() {
        let r = Settings::default().resolve(env(&[
            (ENV_DISABLED, "TRUE"),
            (ENV_LEAK_POLICY, " close "),
            (ENV_CONTAMINATION_POLICY, "Repair"),
            (ENV_MAX_TRACKED_SPANS, "10"),
            (ENV_MAX_SPAN_AGE_SECS, "5"),
            (ENV_PRICES_FILE, "/tmp/prices.json"),
        ]));
        assert!(r.disabled);
        assert_eq!(r.leak_policy, LeakPolicy::Close);
        assert_eq!(r.contamination_policy, ContaminationPolicy::Repair);
        assert_eq!(r.max_tracked_spans, 10);
        assert_eq!(r.max_span_age, Duration::from_secs(5));
        assert_eq!(
            r.prices_file.as_deref(),
            Some(std::path::Path::new("/tmp/prices.json"))
        );
    }

    #[test]
    fn code_wins_over_environment() {
        let s = Settings {
            disabled: Some(false),
            leak_policy: Some(LeakPolicy::Flag),
            contamination_policy: Some(ContaminationPolicy::Flag),
            max_tracked_spans: Some(7),
            max_span_age: Some(Duration::from_secs(9)),
            prices_file: None,
            budget_in_code: false,
        };
        let r = s.resolve(env(&[
            (ENV_DISABLED, "true"),
            (ENV_LEAK_POLICY, "close"),
            (ENV_CONTAMINATION_POLICY, "repair"),
            (ENV_MAX_TRACKED_SPANS, "10"),
            (ENV_MAX_SPAN_AGE_SECS, "5"),
        ]));
        assert!(!r.disabled);
        assert_eq!(r.leak_policy, LeakPolicy::Flag);
        assert_eq!(r.contamination_policy, ContaminationPolicy::Flag);
        assert_eq!(r.max_tracked_spans, 7);
        assert_eq!(r.max_span_age, Duration::from_secs(9));
    }

    #[test]
    fn invalid_values_fall_back_to_defaults() {
        let r = Settings::default().resolve(env(&[
            (ENV_DISABLED, "yes"),
            (ENV_LEAK_POLICY, "drop"),
            (ENV_CONTAMINATION_POLICY, ""),
            (ENV_MAX_TRACKED_SPANS, "0"),
            (ENV_MAX_SPAN_AGE_SECS, "-3"),
        ]));
        assert_eq!(r, Settings::default().resolve(env(&[])));
        let s = Settings {
            max_tracked_spans: Some(0),
            max_span_age: Some(Duration::ZERO),
            ..Settings::default()
        };
        let r = s.resolve(env(&[]));
        assert_eq!(r.max_tracked_spans, DEFAULT_MAX_TRACKED_SPANS);
        assert_eq!(r.max_span_age, DEFAULT_MAX_SPAN_AGE);
    }
}
