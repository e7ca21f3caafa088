//! `genai-audit`: audits exported agent traces (OTLP JSON or trace scripts) with the
//! same engine as the `GenAiAuditProcessor`.
//!
//! ```text
//! genai-audit check FILE...          # report; exit 0 clean, 1 findings, 2 unreadable input
//! genai-audit enrich FILE... -o OUT  # the same spans, enriched, as OTLP JSON
//! ```

use std::fs;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use genai_audit::otlp::Input::{Otlp, Script};
use genai_audit::otlp::{
    audit, audit_script, read_input, write_requests, AuditOptions, InputError, Request,
    DEFAULT_MAX_LINE_BYTES,
};
use genai_audit::report::{write_report, ReportOptions, ReportSpan, Summary};
use genai_audit::script::TraceScript;
use genai_audit::{ContaminationPolicy, FindingCode, LeakPolicy};

/// Audits exported gen-ai agent traces: OTLP JSON (one ExportTraceServiceRequest per
/// line, as the Collector's file exporter writes, or one per file) and trace scripts.
///
/// Configuration not given as a flag comes from the GENAI_AUDIT_* environment
/// variables (GENAI_AUDIT_LEAK_POLICY, GENAI_AUDIT_CONTAMINATION_POLICY,
/// GENAI_AUDIT_PRICES_FILE, GENAI_AUDIT_MAX_TRACKED_SPANS,
/// GENAI_AUDIT_MAX_SPAN_AGE_SECS), as for the processor.
#[derive(Debug, Parser)]
#[command(name = "genai-audit", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints each trace as a tree and a summary. Exit status: 0 clean, 1 findings
    /// (of the --fail-on codes), 2 unreadable input.
    Check {
        #[command(flatten)]
        input: Input,
        /// Only these finding codes fail the run (comma-separated; default: any).
        #[arg(long, value_delimiter = ',', value_name = "CODE,...")]
        fail_on: Vec<FindingCode>,
        /// Print only the summary, as one JSON object.
        #[arg(long)]
        json: bool,
        /// Print every trace's tree (by default, past 20 traces, only those with
        /// findings and the most expensive).
        #[arg(long)]
        all: bool,
    },
    /// Writes the same spans, enriched with the audit's attributes, as OTLP JSON (one
    /// request per line). Exit status: 0 written, 2 unreadable input (nothing written).
    Enrich {
        #[command(flatten)]
        input: Input,
        /// Where to write (`-`: standard output).
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: PathBuf,
    },
}

#[derive(Debug, Args)]
struct Input {
    /// Input files (`-`: standard input). OTLP JSON or trace scripts, told by content.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<String>,
    /// A child ending less than this after its parent, in another resource, counts as
    /// ending before it (e.g. `2ms`, `500us`, `0`).
    #[arg(long, default_value = "2ms", value_parser = parse_duration)]
    skew: Duration,
    /// The longest line (or single-request file) read, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_LINE_BYTES, value_name = "BYTES")]
    max_line_bytes: usize,
    /// Leak policy: `flag` or `close` (default: GENAI_AUDIT_LEAK_POLICY, else flag).
    #[arg(long)]
    leak_policy: Option<LeakPolicy>,
    /// Contamination policy: `flag` or `repair` (default:
    /// GENAI_AUDIT_CONTAMINATION_POLICY, else flag).
    #[arg(long)]
    contamination_policy: Option<ContaminationPolicy>,
    /// A price file in the genai-prices JSON format (default: GENAI_AUDIT_PRICES_FILE,
    /// else the bundled prices).
    #[arg(long, value_name = "PATH")]
    prices_file: Option<PathBuf>,
    /// The most spans tracked at once (default: GENAI_AUDIT_MAX_TRACKED_SPANS, else 65536).
    #[arg(long, value_name = "N")]
    max_tracked_spans: Option<usize>,
    /// The age after which an open span is evicted, in seconds (default:
    /// GENAI_AUDIT_MAX_SPAN_AGE_SECS, else 3600).
    #[arg(long, value_name = "SECS")]
    max_span_age_secs: Option<u64>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 2ms"))?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" | "" if number == 0.0 => 1.0,
        "s" => 1.0,
        _ => return Err(format!("{text:?}: unit must be ns, us, ms or s")),
    };
    Duration::try_from_secs_f64(number * scale).map_err(|e| format!("{text:?}: {e}"))
}

impl Input {
    fn options(&self, enrich: bool) -> AuditOptions {
        AuditOptions {
            skew: self.skew,
            leak_policy: self.leak_policy,
            contamination_policy: self.contamination_policy,
            prices_file: self.prices_file.clone(),
            max_tracked_spans: self.max_tracked_spans,
            max_span_age: self.max_span_age_secs.map(Duration::from_secs),
            enrich,
        }
    }
}

/// Everything read from the inputs.
struct Loaded {
    requests: Vec<Request>,
    scripts: Vec<TraceScript>,
}

fn load(input: &Input) -> Result<Loaded, InputError> {
    let mut loaded = Loaded {
        requests: Vec::new(),
        scripts: Vec::new(),
    };
    for file in &input.files {
        let read = if file == "-" {
            read_input(&mut io::stdin().lock(), file, input.max_line_bytes, None)
        } else {
            let opened = fs::File::open(file).map_err(|e| InputError {
                file: file.clone(),
                line: 0,
                reason: format!("cannot read: {e}"),
            })?;
            read_input(
                &mut io::BufReader::with_capacity(1 << 20, opened),
                file,
                input.max_line_bytes,
                None,
            )
        };
        match read? {
            Otlp(requests) => loaded.requests.extend(requests),
            Script(text) => {
                let script = TraceScript::parse(&text).map_err(|e| InputError {
                    file: file.clone(),
                    line: e.line,
                    reason: e.reason,
                })?;
                loaded.scripts.push(script);
            }
        }
    }
    Ok(loaded)
}

/// A progress bar on standard error, only when it is a terminal.
fn progress_bar(total: usize) -> Option<indicatif::ProgressBar> {
    if total < 20_000 || !io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} auditing {pos}/{len} spans [{bar:30}] {per_sec} {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    Some(bar)
}

/// Audits everything loaded; returns the report spans and, for `enrich`, the requests.
fn run_audit(loaded: Loaded, options: &AuditOptions) -> (Vec<ReportSpan>, Vec<Request>) {
    let mut requests = loaded.requests;
    let total: usize = requests
        .iter()
        .flat_map(|r| &r.request.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum();
    let bar = progress_bar(total);
    let mut spans = if requests.is_empty() {
        Vec::new()
    } else {
        audit(&mut requests, options, &mut |done| {
            if let Some(bar) = &bar {
                bar.set_position(done);
            }
        })
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    for script in &loaded.scripts {
        let (reports, request) = audit_script(script, options);
        spans.extend(reports);
        requests.extend(request);
    }
    (spans, requests)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            input,
            fail_on,
            json,
            all,
        } => {
            let loaded = match load(&input) {
                Ok(loaded) => loaded,
                Err(error) => return fail(&error),
            };
            let (spans, _) = run_audit(loaded, &input.options(false));
            let mut stdout = io::BufWriter::new(io::stdout().lock());
            let summary = if json {
                let summary = Summary::of(&spans);
                writeln!(stdout, "{}", summary.to_json()).map(|()| summary)
            } else {
                let options = ReportOptions {
                    color: io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
                    all,
                    ..ReportOptions::default()
                };
                write_report(&mut stdout, &spans, &options)
            };
            let summary = match summary.and_then(|s| stdout.flush().map(|()| s)) {
                Ok(summary) => summary,
                Err(error) => {
                    eprintln!("genai-audit: cannot write the report: {error}");
                    return ExitCode::from(2);
                }
            };
            if summary.count(&fail_on) > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Enrich { input, output } => {
            let loaded = match load(&input) {
                Ok(loaded) => loaded,
                Err(error) => return fail(&error),
            };
            let (spans, requests) = run_audit(loaded, &input.options(true));
            let written = if output.as_os_str() == "-" {
                let mut out = io::BufWriter::new(io::stdout().lock());
                write_requests(&mut out, &requests).and_then(|()| out.flush())
            } else {
                fs::File::create(&output).and_then(|file| {
                    let mut out = io::BufWriter::new(file);
                    write_requests(&mut out, &requests).and_then(|()| out.flush())
                })
            };
            if let Err(error) = written {
                eprintln!("genai-audit: cannot write {}: {error}", output.display());
                return ExitCode::from(2);
            }
            let summary = Summary::of(&spans);
            eprintln!(
                "genai-audit: {} spans enriched, {} findings",
                summary.spans, summary.findings_total
            );
            ExitCode::SUCCESS
        }
    }
}

fn fail(error: &InputError) -> ExitCode {
    if error.line == 0 {
        eprintln!("genai-audit: {}: {}", error.file, error.reason);
    } else {
        eprintln!("genai-audit: {error}");
    }
    ExitCode::from(2)
}
