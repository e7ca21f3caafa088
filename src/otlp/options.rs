//! How exported traces are audited: the options a caller gives, and the settings they
//! resolve to, every value checked (an exported trace has a caller to tell, so a bad
//! setting is an error here, where the processor would warn and use its default).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_sdk::metrics::SdkMeterProvider;

use crate::config::{
    ContaminationPolicy, LeakPolicy, ENV_BUDGET_TOKENS, ENV_BUDGET_USD, ENV_CONTAMINATION_POLICY,
    ENV_LEAK_POLICY, ENV_MAX_SPAN_AGE_SECS, ENV_MAX_TRACKED_SPANS, ENV_PRICES_FILE,
};
use crate::engine::{Engine, EngineBuilder};
use crate::metrics::MetricOptions;
use crate::pricing::{GenAiPrices, Pricer};
use crate::processor::DEFAULT_CARDINALITY_LIMIT;

/// How exported spans are audited. Settings left `None` come from the
/// `GENAI_AUDIT_*` environment variables, then the defaults.
///
/// The bounds differ from the processor's in one way: by default an exported trace is
/// audited with no bound on tracked spans or span age (everything in it has ended, and
/// its memory is the input's); `max_tracked_spans` and `max_span_age`, or their
/// variables, bound each trace on its own, as the processor would have bounded it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditOptions {
    /// A start less than this before an end is replayed after it, and a child ending
    /// less than this after its parent, in another resource, counts as ending before it
    /// (default 2 ms: JavaScript SDKs stamp starts with a millisecond clock and ends
    /// with a high-resolution one).
    pub skew: Duration,
    /// Leak policy.
    pub leak_policy: Option<LeakPolicy>,
    /// Contamination policy.
    pub contamination_policy: Option<ContaminationPolicy>,
    /// A price file in the genai-prices JSON format.
    pub prices_file: Option<PathBuf>,
    /// The most spans of one trace tracked at once.
    pub max_tracked_spans: Option<usize>,
    /// The age after which an open span is evicted (judged against the replayed time).
    pub max_span_age: Option<Duration>,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            skew: Duration::from_millis(2),
            leak_policy: None,
            contamination_policy: None,
            prices_file: None,
            max_tracked_spans: None,
            max_span_age: None,
        }
    }
}

/// A setting that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError(pub String);

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingsError {}

/// The settings every trace is audited with.
#[derive(Debug, Clone)]
pub(crate) struct RunSettings {
    pub(crate) skew: Duration,
    leak_policy: LeakPolicy,
    contamination_policy: ContaminationPolicy,
    pricer: Arc<dyn Pricer>,
    max_tracked_spans: usize,
    max_span_age: Duration,
    pub(crate) enrich: bool,
    /// With `enrich`: hand back each changed attribute list as a [`List`] rather than
    /// a change to the span's text.
    ///
    /// [`List`]: super::write_back::List
    pub(crate) lists: bool,
    /// Where the audit's metrics go (none: no metrics).
    pub(crate) meter_provider: Option<SdkMeterProvider>,
}

/// No bound: more spans than any input holds, longer than any trace lasts.
const UNBOUNDED_SPANS: usize = u32::MAX as usize;
const UNBOUNDED_AGE: Duration = Duration::from_secs(u64::MAX / 1_000_000_000);

fn env_value(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.trim().is_empty())
}

fn parse_env<T>(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    expected: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, SettingsError> {
    match env_value(env, name) {
        None => Ok(None),
        Some(raw) => parse(raw.trim())
            .map(Some)
            .ok_or_else(|| SettingsError(format!("{name}={raw:?}: must be {expected}"))),
    }
}

impl AuditOptions {
    /// Resolves these options with the environment `env` (a variable's value by name):
    /// every value is checked, and the price file read. `enrich`: the spans will be
    /// written back.
    pub(crate) fn settings(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        enrich: bool,
    ) -> Result<RunSettings, SettingsError> {
        let leak_policy = match self.leak_policy {
            Some(p) => p,
            None => parse_env(env, ENV_LEAK_POLICY, "`flag` or `close`", |s| {
                s.parse().ok()
            })?
            .unwrap_or_default(),
        };
        let contamination_policy = match self.contamination_policy {
            Some(p) => p,
            None => parse_env(env, ENV_CONTAMINATION_POLICY, "`flag` or `repair`", |s| {
                s.parse().ok()
            })?
            .unwrap_or_default(),
        };
        let max_tracked_spans = match self.max_tracked_spans {
            Some(0) => {
                return Err(SettingsError(
                    "--max-tracked-spans must be at least 1".to_owned(),
                ))
            }
            Some(n) => n,
            None => parse_env(
                env,
                ENV_MAX_TRACKED_SPANS,
                "an integer of at least 1",
                |s| s.parse::<usize>().ok().filter(|n| *n >= 1),
            )?
            .unwrap_or(UNBOUNDED_SPANS),
        };
        let max_span_age = match self.max_span_age {
            Some(age) if age.is_zero() => {
                return Err(SettingsError(
                    "--max-span-age-secs must be at least 1".to_owned(),
                ))
            }
            Some(age) => age,
            None => parse_env(
                env,
                ENV_MAX_SPAN_AGE_SECS,
                "an integer of at least 1",
                |s| {
                    s.parse::<u64>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .map(Duration::from_secs)
                },
            )?
            .unwrap_or(UNBOUNDED_AGE),
        };
        parse_env(env, ENV_BUDGET_USD, "a number greater than 0", |s| {
            s.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0)
        })?;
        parse_env(env, ENV_BUDGET_TOKENS, "an integer of at least 1", |s| {
            s.parse::<u64>().ok().filter(|n| *n >= 1)
        })?;
        let prices_file = match &self.prices_file {
            Some(path) => Some(path.clone()),
            None => env_value(env, ENV_PRICES_FILE).map(PathBuf::from),
        };
        let pricer: Arc<dyn Pricer> =
            match prices_file {
                None => Arc::new(GenAiPrices::bundled()),
                Some(path) => Arc::new(GenAiPrices::from_file(&path).map_err(|e| {
                    SettingsError(format!("the price file {}: {e}", path.display()))
                })?),
            };
        Ok(RunSettings {
            skew: self.skew,
            leak_policy,
            contamination_policy,
            pricer,
            max_tracked_spans,
            max_span_age,
            enrich,
            lists: false,
            meter_provider: None,
        })
    }
}

impl RunSettings {
    /// The engine these settings describe (every one set in code, so the environment
    /// changes nothing more; `GENAI_AUDIT_DISABLED` does not apply).
    pub(crate) fn engine_builder(&self) -> EngineBuilder {
        Engine::builder()
            .with_disabled(false)
            .leak_policy(self.leak_policy)
            .contamination_policy(self.contamination_policy)
            .with_shared_pricer(Arc::clone(&self.pricer))
            .with_max_tracked_spans(self.max_tracked_spans)
            .with_max_span_age(self.max_span_age)
    }

    /// The metrics' options: the processor's defaults.
    pub(crate) fn metric_options(&self) -> MetricOptions {
        MetricOptions {
            cardinality_limit: DEFAULT_CARDINALITY_LIMIT,
            token_usage: false,
        }
    }
}
