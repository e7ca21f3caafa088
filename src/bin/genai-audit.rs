//! `genai-audit`: audits exported agent traces (OTLP JSON or trace scripts) with the
//! same engine as the `GenAiAuditProcessor`.
//!
//! ```text
//! genai-audit check FILE...          # report; exit 0 clean, 1 findings, 2 unreadable input
//! genai-audit check --by agent FILE... # cost, calls and tokens per agent (model, ...)
//! genai-audit diff BEFORE AFTER      # what moved; --fail-over PCT: a CI gate on cost
//! genai-audit prices MODEL           # the rates the audit would price MODEL at
//! genai-audit report --html OUT.html FILE...  # the audit as one HTML page
//! genai-audit enrich FILE... -o OUT  # the same spans, enriched, as OTLP JSON
//! genai-audit serve --forward URL     # the live audit: OTLP in, audited OTLP out
//! ```

use std::fs;
use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use genai_audit::costs::{self, Breakdown, Diff, DiffInput, GroupBy, HtmlReport, PriceReport};
use genai_audit::otlp::{
    audit, enrich as enrich_inputs, AuditOptions, EnrichError, InputError, Inputs,
    DEFAULT_MAX_LINE_BYTES,
};
use genai_audit::report::{Report, ReportOptions, Summary};
use genai_audit::serve::{parse_duration, parse_size, ForwardProtocol, ServeOptions, Server};
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
        /// Instead of the trees, a table of calls, tokens and cost per group: agent,
        /// model, provider, trace, root, session or user (repeatable; with --json, the
        /// tables are in the summary's `breakdowns`).
        #[arg(long = "by", value_name = "GROUP")]
        by: Vec<GroupBy>,
    },
    /// Compares two runs: invocations matched by agent name (root spans by name when an
    /// input has none), and what moved in calls, tokens, cost, models and findings.
    /// Exit status: 0, 1 when a --fail-over limit is exceeded, 2 unreadable input.
    #[command(override_usage = "genai-audit diff [OPTIONS] BEFORE AFTER")]
    Diff {
        /// BEFORE and AFTER: one file each (`-`: standard input, for one of them).
        #[command(flatten)]
        input: Input,
        /// Exit 1 when the total cost grew by more than PCT percent (growth from $0
        /// always exceeds it).
        #[arg(long, value_name = "PCT")]
        fail_over: Option<f64>,
        /// Exit 1 when the total tokens (input + output) grew by more than PCT percent.
        #[arg(long, value_name = "PCT")]
        fail_over_tokens: Option<f64>,
        /// Print the diff as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Prints the rates the audit would price MODEL at (USD per million tokens, by
    /// tier). Exit status: 0 priced, 1 no price for MODEL, 2 unreadable price file.
    Prices {
        /// The model, as spans name it (e.g. `gpt-4o-mini`).
        model: String,
        /// The provider, as spans name it (e.g. `openai`, `aws.bedrock`).
        #[arg(long, value_name = "P")]
        provider: Option<String>,
        /// When: a date (`2025-10-01`, at midnight UTC) or an RFC 3339 time (default:
        /// now).
        #[arg(long, value_name = "DATE")]
        at: Option<String>,
        /// A price file in the genai-prices JSON format (default:
        /// GENAI_AUDIT_PRICES_FILE, else the bundled prices).
        #[arg(long, value_name = "PATH")]
        prices_file: Option<PathBuf>,
        /// Print the rates as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Writes the audit as one self-contained HTML page: a summary, and per trace a
    /// waterfall timeline with tokens, cost and findings. Exit status: 0 written, 2
    /// unreadable input or unwritable output (the previous OUT is then untouched).
    Report {
        /// Where to write the page.
        #[arg(long, value_name = "OUT.html", required = true)]
        html: PathBuf,
        #[command(flatten)]
        input: Input,
        /// Show every trace (by default, past 20 traces, those with findings and then
        /// the most expensive).
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
    /// Audits live: receives OTLP (HTTP and gRPC) as a Collector's otlp receiver does,
    /// holds each trace until it is complete, audits it as `check` does, and sends the
    /// enriched spans on (--forward) and/or appends them as OTLP JSON lines (--output).
    /// Stops cleanly on SIGTERM or Ctrl-C: everything held is audited and sent first.
    Serve(Box<ServeArgs>),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// OTLP/HTTP address (`POST /v1/traces`, `GET /metrics`, `GET /healthz`).
    #[arg(long, default_value = "0.0.0.0:4318", value_name = "ADDR")]
    listen: SocketAddr,
    /// OTLP/gRPC address, or `off`.
    #[arg(long, default_value = "0.0.0.0:4317", value_name = "ADDR|off")]
    grpc_listen: String,
    /// A trace whose local root arrived is audited once no span of it arrived for this
    /// long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    wait: Duration,
    /// A trace is audited when it is this old, complete or not.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    max_trace_age: Duration,
    /// The most memory held spans may take (e.g. `512MiB`); past it, new data is
    /// refused with 503 / UNAVAILABLE, so that clients retry.
    #[arg(long, default_value = "512MiB", value_parser = parse_size, value_name = "BYTES")]
    max_memory: usize,
    /// The largest request accepted, after decompression (larger: 413).
    #[arg(long, default_value = "20MiB", value_parser = parse_size, value_name = "BYTES")]
    max_request_bytes: usize,
    /// Where audited spans are sent (e.g. `http://collector:4318`).
    #[arg(long, value_name = "URL")]
    forward: Option<String>,
    /// How they are sent: `http/protobuf`, `http/json` or `grpc`.
    #[arg(long, default_value = "http/protobuf", value_name = "PROTOCOL")]
    forward_protocol: ForwardProtocol,
    /// A header sent with every forwarded request (repeatable).
    #[arg(long, value_parser = parse_header, value_name = "K=V")]
    forward_header: Vec<(String, String)>,
    /// The first wait before a failed send is tried again (doubled each time, up to
    /// 30 s or the destination's Retry-After).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    forward_retry_initial: Duration,
    /// How long a send is tried before its spans are counted as dropped.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    forward_retry_max_elapsed: Duration,
    /// Also (or only) append the audited spans to this file, as OTLP JSON lines.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// On shutdown, how long sending what was held may take.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    shutdown_timeout: Duration,
    /// How often metrics are pushed to the destination.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    metrics_interval: Duration,
    /// How long a request may take to arrive once its headers have (headers must come
    /// within 10 s, or this if shorter); slower gets 408 and the connection closed.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    read_timeout: Duration,
    /// How long a kept-alive connection may stay with no request before it is closed.
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// The most connections open at once (HTTP and gRPC together).
    #[arg(long, default_value_t = 1024, value_name = "N")]
    max_connections: usize,
    /// How long one attempt to send to --forward may take.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    forward_timeout: Duration,
    /// A PEM file of certificate authorities trusted for an https:// --forward, besides
    /// the system's.
    #[arg(long, value_name = "FILE")]
    forward_ca: Option<PathBuf>,
    #[command(flatten)]
    audit: AuditArgs,
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("{text:?} is not a header like K=V")),
    }
}

#[derive(Debug, Args)]
struct Input {
    /// Input files (`-`: standard input). OTLP JSON or trace scripts, told by content.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<String>,
    /// The longest line (or single-request file) read, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_LINE_BYTES, value_name = "BYTES")]
    max_line_bytes: usize,
    #[command(flatten)]
    audit: AuditArgs,
}

/// How each trace is audited (for `check`, `enrich` and `serve`).
#[derive(Debug, Args)]
struct AuditArgs {
    /// A child ending less than this after its parent, in another resource, counts as
    /// ending before it (e.g. `2ms`, `500us`, `0`).
    #[arg(long, default_value = "2ms", value_parser = parse_duration)]
    skew: Duration,
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

impl Input {
    fn options(&self) -> AuditOptions {
        self.audit.options()
    }
}

impl AuditArgs {
    fn options(&self) -> AuditOptions {
        AuditOptions {
            skew: self.skew,
            leak_policy: self.leak_policy,
            contamination_policy: self.contamination_policy,
            prices_file: self.prices_file.clone(),
            max_tracked_spans: self.max_tracked_spans,
            max_span_age: self.max_span_age_secs.map(Duration::from_secs),
        }
    }
}

/// Why the command stopped early.
enum Failure {
    /// Unreadable input or an unusable setting (exit 2).
    Input(String),
    /// Writing the output failed (exit 2).
    Write(io::Error),
    /// Standard output was closed (`| head`): end quietly.
    ClosedOutput,
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Write(e)
    }
}

fn load(input: &Input) -> Result<Inputs, InputError> {
    let mut inputs = Inputs::new(input.max_line_bytes);
    for file in &input.files {
        if file == "-" {
            inputs.read(file, io::stdin().lock())?;
        } else {
            let opened = fs::File::open(file).map_err(|e| InputError {
                file: file.clone(),
                line: 0,
                reason: format!("cannot read: {e}"),
            })?;
            inputs.read(file, opened)?;
        }
    }
    Ok(inputs)
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

/// Reads the inputs, and audits them, handing each trace's report spans to
/// `on_trace`; with `out`, writes the enriched spans there.
fn run_audit(
    input: &Input,
    on_trace: &mut dyn FnMut(Vec<genai_audit::report::ReportSpan>),
    out: Option<&mut dyn Write>,
) -> Result<(), Failure> {
    if std::env::var_os("GENAI_AUDIT_DISABLED").is_some() {
        eprintln!("genai-audit: GENAI_AUDIT_DISABLED applies to the processor only; the command audits all the same");
    }
    let inputs = load(input).map_err(|e| Failure::Input(e.to_string()))?;
    let bar = progress_bar(inputs.spans());
    let progress = |done| {
        if let Some(bar) = &bar {
            bar.set_position(done);
        }
    };
    let result = match out {
        None => audit(&inputs, &input.options(), on_trace, &progress)
            .map_err(|e| Failure::Input(e.to_string())),
        Some(out) => enrich_inputs(&inputs, &input.options(), on_trace, &progress, out).map_err(
            |e| match e {
                EnrichError::Write(e) if is_closed(&e) => Failure::ClosedOutput,
                EnrichError::Write(e) => Failure::Write(e),
                other => Failure::Input(other.to_string()),
            },
        ),
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result
}

fn is_closed(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::BrokenPipe
}

fn check(
    input: &Input,
    fail_on: &[FindingCode],
    json: bool,
    all: bool,
    by: &[GroupBy],
) -> ExitCode {
    let options = ReportOptions {
        color: !json && io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        all,
        trees: !json && by.is_empty(),
        ..ReportOptions::default()
    };
    let mut report = Report::new(options);
    let mut breakdown = Breakdown::new(by);
    let on_trace = &mut |trace: Vec<genai_audit::report::ReportSpan>| {
        breakdown.add_trace(&trace);
        report.add_trace(trace);
    };
    if let Err(failure) = run_audit(input, on_trace, None) {
        return fail(failure, "");
    }
    let failed = report.summary().count(fail_on) > 0;
    let code = if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    };
    let mut stdout = io::BufWriter::new(io::stdout().lock());
    let written = if json && !breakdown.is_empty() {
        let summary: Summary = report.summary().clone();
        writeln!(stdout, "{}", breakdown.summary_json(&summary))
    } else if json {
        let summary: Summary = report.summary().clone();
        writeln!(stdout, "{}", summary.to_json())
    } else {
        breakdown
            .write(&mut stdout)
            .and_then(|()| report.write(&mut stdout).map(|_| ()))
    };
    match written.and_then(|()| stdout.flush()) {
        Ok(()) => code,
        Err(e) if is_closed(&e) => code,
        Err(e) => {
            eprintln!("genai-audit: cannot write the report: {e}");
            ExitCode::from(2)
        }
    }
}

/// `enrich` to `output` (`-`: standard output). A file is written beside its target
/// and renamed over it only once everything is written; on any error it is removed
/// and the target (the input too, when `-o` names it) is as it was.
fn enrich(input: &Input, output: &Path) -> ExitCode {
    let mut report = Report::new(ReportOptions {
        trees: false,
        ..ReportOptions::default()
    });
    let name = output.display().to_string();
    if output.as_os_str() == "-" {
        let mut out = io::BufWriter::new(io::stdout().lock());
        let on_trace = &mut |trace| report.add_trace(trace);
        let result = run_audit(input, on_trace, Some(&mut out)).and_then(|()| {
            out.flush().map_err(|e| {
                if is_closed(&e) {
                    Failure::ClosedOutput
                } else {
                    Failure::Write(e)
                }
            })
        });
        if let Err(failure) = result {
            return fail(failure, &name);
        }
    } else {
        let on_trace = &mut |trace| report.add_trace(trace);
        let result = costs::replace_file(output, |file| {
            let mut out = io::BufWriter::with_capacity(1 << 20, file);
            run_audit(input, on_trace, Some(&mut out))?;
            // Written whole: a failed write or flush is an error, before the rename.
            out.flush().map_err(Failure::Write)
        });
        if let Err(failure) = result {
            return fail(failure, &name);
        }
    }
    let summary = report.summary();
    eprintln!(
        "genai-audit: {} spans enriched, {} findings",
        summary.spans, summary.findings_total
    );
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    // A write over the file-size limit fails (and is handled) instead of killing us.
    #[cfg(unix)]
    // SAFETY: setting a signal's action to "ignore" before any other thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            input,
            fail_on,
            json,
            all,
            by,
        } => check(&input, &fail_on, json, all, &by),
        Command::Diff {
            input,
            fail_over,
            fail_over_tokens,
            json,
        } => diff(input, fail_over, fail_over_tokens, json),
        Command::Prices {
            model,
            provider,
            at,
            prices_file,
            json,
        } => prices(
            &model,
            provider.as_deref(),
            at.as_deref(),
            prices_file.as_deref(),
            json,
        ),
        Command::Report { html, input, all } => html_report(&input, &html, all),
        Command::Enrich { input, output } => enrich(&input, &output),
        Command::Serve(args) => serve(*args),
    }
}

/// `serve` until SIGTERM or Ctrl-C; then everything held is audited and sent.
fn serve(args: ServeArgs) -> ExitCode {
    let grpc_listen = match args.grpc_listen.as_str() {
        "off" | "" => None,
        addr => match addr.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(e) => {
                eprintln!("genai-audit: --grpc-listen {addr}: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let options = ServeOptions {
        listen: args.listen,
        grpc_listen,
        wait: args.wait,
        max_trace_age: args.max_trace_age,
        max_memory: args.max_memory,
        max_request_bytes: args.max_request_bytes,
        forward: args.forward,
        forward_protocol: args.forward_protocol,
        forward_headers: args.forward_header,
        retry_initial: args.forward_retry_initial,
        retry_max_elapsed: args.forward_retry_max_elapsed,
        output: args.output,
        audit: args.audit.options(),
        shutdown_timeout: args.shutdown_timeout,
        metrics_interval: args.metrics_interval,
        read_timeout: args.read_timeout,
        idle_timeout: args.idle_timeout,
        max_connections: args.max_connections,
        forward_timeout: args.forward_timeout,
        forward_ca: args.forward_ca,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("genai-audit-serve-io")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("genai-audit: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(async move {
        let server = match Server::start(options).await {
            Ok(server) => server,
            Err(e) => {
                eprintln!("genai-audit: {e}");
                return ExitCode::from(2);
            }
        };
        match server.grpc_addr() {
            Some(grpc) => eprintln!(
                "genai-audit serve: OTLP/HTTP on http://{}, OTLP/gRPC on {grpc}",
                server.http_addr()
            ),
            None => eprintln!(
                "genai-audit serve: OTLP/HTTP on http://{}",
                server.http_addr()
            ),
        }
        stopped().await;
        eprintln!("genai-audit serve: stopping: auditing and sending what is held");
        // A second signal exits at once, as a process killed by it would.
        tokio::spawn(async {
            stopped().await;
            eprintln!("genai-audit serve: a second signal: exiting now, what is held is lost");
            std::process::exit(130);
        });
        server.shutdown().await;
        eprintln!("genai-audit serve: stopped");
        ExitCode::SUCCESS
    });
    // Nothing left running may hold the exit (a blocked push of the last metrics).
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

/// Waits for SIGTERM or Ctrl-C (SIGINT).
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Writes `text` to standard output; a closed output ends quietly with `code`.
fn print(text: &str, code: ExitCode) -> ExitCode {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => code,
        Err(e) if is_closed(&e) => code,
        Err(e) => {
            eprintln!("genai-audit: cannot write: {e}");
            ExitCode::from(2)
        }
    }
}

/// `diff BEFORE AFTER`: each file audited on its own, then compared.
fn diff(
    mut input: Input,
    fail_over: Option<f64>,
    fail_over_tokens: Option<f64>,
    json: bool,
) -> ExitCode {
    let files = std::mem::take(&mut input.files);
    let [before, after] = files.as_slice() else {
        return fail(
            Failure::Input("diff takes two files: BEFORE AFTER".to_owned()),
            "",
        );
    };
    if before == "-" && after == "-" {
        return fail(
            Failure::Input(
                "diff: `-` (standard input) can be only one of the two files".to_owned(),
            ),
            "",
        );
    }
    for limit in [fail_over, fail_over_tokens].into_iter().flatten() {
        if !(limit.is_finite() && limit >= 0.0) {
            return fail(
                Failure::Input(format!(
                    "--fail-over {limit}: must be a percentage of 0 or more"
                )),
                "",
            );
        }
    }
    let mut sides = Vec::with_capacity(2);
    for file in [before, after] {
        let mut side = DiffInput::new();
        input.files = vec![file.clone()];
        if let Err(failure) = run_audit(&input, &mut |trace| side.add_trace(&trace), None) {
            return fail(failure, "");
        }
        sides.push(side);
    }
    let (Some(after), Some(before)) = (sides.pop(), sides.pop()) else {
        return ExitCode::from(2);
    };
    let diff = Diff::new(before, after);
    let outcome = costs::DiffGates::new(&diff, fail_over, fail_over_tokens);
    let code = if outcome.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    };
    let text = if json {
        format!("{}\n", outcome.to_json(&diff))
    } else {
        outcome.to_text(&diff)
    };
    print(&text, code)
}

/// `prices MODEL`: exit 0 priced, 1 no price, 2 unreadable price file or date.
fn prices(
    model: &str,
    provider: Option<&str>,
    at: Option<&str>,
    file: Option<&Path>,
    json: bool,
) -> ExitCode {
    let prices = match costs::load_prices(file) {
        Ok(prices) => prices,
        Err(reason) => return fail(Failure::Input(reason.to_string()), ""),
    };
    let time = match at.map(costs::parse_time).transpose() {
        Ok(time) => time.unwrap_or_else(std::time::SystemTime::now),
        Err(reason) => return fail(Failure::Input(format!("--at {reason}")), ""),
    };
    let report = PriceReport::new(&prices, model, provider, time);
    let code = if report.card.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    let mut text = Vec::new();
    let written = if json {
        writeln!(text, "{}", report.to_json())
    } else {
        report.write(&mut text)
    };
    match written {
        Ok(()) => print(&String::from_utf8_lossy(&text), code),
        Err(e) => fail(Failure::Write(e), "the rates"),
    }
}

/// `report --html OUT FILE...`: the page, written atomically.
fn html_report(input: &Input, output: &Path, all: bool) -> ExitCode {
    let mut page = HtmlReport::new(ReportOptions {
        all,
        ..ReportOptions::default()
    });
    if let Err(failure) = run_audit(input, &mut |trace| page.add_trace(trace), None) {
        return fail(failure, "");
    }
    let mut html = Vec::new();
    let summary = match page.write(&mut html) {
        Ok(summary) => summary,
        Err(e) => return fail(Failure::Write(e), &output.display().to_string()),
    };
    if let Err(e) = costs::write_file_atomically(output, &html) {
        return fail(Failure::Write(e), &output.display().to_string());
    }
    eprintln!(
        "genai-audit: wrote {} ({} traces, {} findings, total cost {})",
        output.display(),
        summary.traces,
        summary.findings_total,
        format_args!("${:.6}", summary.cost_usd)
    );
    ExitCode::SUCCESS
}

/// Reports `failure` (writing to `output`) and gives the exit status.
fn fail(failure: Failure, output: &str) -> ExitCode {
    match failure {
        Failure::Input(reason) => {
            eprintln!("genai-audit: {reason}");
            ExitCode::from(2)
        }
        Failure::Write(e) => {
            eprintln!("genai-audit: cannot write {output}: {e}");
            ExitCode::from(2)
        }
        Failure::ClosedOutput => ExitCode::SUCCESS,
    }
}
