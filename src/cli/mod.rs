//! The `conclave` command line: argument definitions and one module per subcommand.
//!
//! Holds no logic a library user would need: each subcommand reads its input, calls the
//! library and prints the result.

mod agents;
mod audit;
mod config;
mod decide;
mod eval;
mod policy;
mod record;
mod review;
mod serve;
mod tally;
mod trust;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

/// conclave: governed decisions by pools of LLM agents.
#[derive(Debug, Parser)]
#[command(name = "conclave", version, about, long_about = None)]
pub(crate) struct Cli {
    /// The store directory (trust and audit records). Default: from conclave.toml, else
    /// .conclave
    #[arg(long, global = true, env = "CONCLAVE_STORE", value_name = "DIR")]
    store: Option<PathBuf>,
    /// A PostgreSQL database holding trust and the audit chain instead of the store
    /// directory (`serve` and `audit` read it; several replicas share one). Prefer the
    /// environment variable: a URL with a password on the command line is visible to others.
    #[arg(
        long,
        global = true,
        env = "CONCLAVE_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database: Option<String>,
    /// Log what happens on stderr: -v warnings and decisions, -vv every agent call, -vvv
    /// everything (RUST_LOG, when set, takes precedence; by default only errors).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Aggregate recorded ballots with a voting rule (JSON in, JSON out).
    Tally(tally::TallyArgs),
    /// Put a question to a policy's pool and print the governed verdict (recorded in the audit log).
    Decide(decide::DecideArgs),
    /// Run an adversarial evaluation suite: report, plots, and trust recalibration.
    Eval(eval::EvalArgs),
    /// Per-agent trust: show, history, estimate, import/export, rollback, re-admission.
    #[command(subcommand)]
    Trust(trust::TrustCommand),
    /// The decision record: list, show, verify the hash chain, replay, grade outcomes.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Policies and agent definitions: check, explain, schema, which.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Ask a suite's real agents every item and keep their answers as a recording that
    /// `kind = "replay"` agents answer from, offline.
    Record(record::RecordArgs),
    /// The agent pool as its endpoints see it: `agents check` probes each one.
    #[command(subcommand)]
    Agents(agents::AgentsCommand),
    /// The Cognitive Director's desk: escalated decisions, overrides, reweights, suspensions.
    #[command(subcommand)]
    Review(review::ReviewCommand),
    /// Serve governed decisions over HTTP: an OpenAI-compatible alias whose `model` names a
    /// policy, and a JSON API for decisions, outcomes, trust and policies.
    Serve(serve::ServeArgs),
}

/// A failed command: the message for stderr and the exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    /// 2 for bad input, 1 for a negative result (a broken chain, a replay mismatch).
    pub(crate) code: i32,
    /// One line naming the problem.
    pub(crate) message: String,
}

impl CliError {
    /// Bad input: exit code 2.
    pub(crate) fn input(message: impl fmt::Display) -> Self {
        Self {
            code: 2,
            message: message.to_string(),
        }
    }

    /// A check that failed: exit code 1.
    pub(crate) fn failed(message: impl fmt::Display) -> Self {
        Self {
            code: 1,
            message: message.to_string(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Where trust and the audit log are: a store directory or a PostgreSQL database.
#[derive(Debug, Clone)]
pub(crate) enum Place {
    Store(PathBuf),
    Database(String),
}

impl Place {
    /// The store directory, or the database's host and name (never its password).
    fn describe(&self) -> String {
        match self {
            Self::Store(dir) => dir.display().to_string(),
            Self::Database(url) => conclave::postgres::describe_url(url).map_or_else(
                || "the database".to_owned(),
                |d| format!("the database {d}"),
            ),
        }
    }

    /// Connects to the database with `connections` connections.
    fn connect(url: &str, connections: usize) -> Result<conclave::postgres::Database, CliError> {
        conclave::postgres::Database::connect(url, connections).map_err(CliError::input)
    }
}

/// Runs the parsed command line.
///
/// # Errors
/// A [`CliError`] with the exit code to use.
pub(crate) fn run(cli: Cli) -> Result<(), CliError> {
    install_logging(cli.verbose);
    let store = config::Project::find()?.store(cli.store.as_deref());
    let database = cli.database.as_deref().filter(|u| !u.trim().is_empty());
    if database.is_some()
        && !matches!(
            cli.command,
            Command::Audit(_)
                | Command::Serve(_)
                | Command::Tally(_)
                | Command::Policy(_)
                | Command::Agents(_)
                | Command::Record(_)
                | Command::Review(_)
        )
    {
        return Err(CliError::input(
            "--database: only `serve`, `audit` and `review` use a database so far; the other commands use the store directory (--store)",
        ));
    }
    let place = match database {
        Some(url) => Place::Database(url.to_owned()),
        None => Place::Store(store.clone()),
    };
    match cli.command {
        Command::Tally(args) => tally::run(&args),
        Command::Decide(args) => decide::run(&args, &store),
        Command::Eval(args) => eval::run(&args, &store),
        Command::Trust(cmd) => trust::run(cmd, &store),
        Command::Audit(cmd) => audit::run(cmd, &place),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Agents(cmd) => agents::run(cmd),
        Command::Record(args) => record::run(&args),
        Command::Review(cmd) => review::run(cmd, &place),
        Command::Serve(args) => serve::run(&args, &place),
    }
}

/// Installs a tracing subscriber on stderr: `RUST_LOG` when set, else by `-v` count (none:
/// errors only). API keys never reach a log: agents log their id, model and outcome only.
fn install_logging(verbose: u8) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.trim().is_empty() => EnvFilter::try_new(f),
        _ => EnvFilter::try_new(match verbose {
            0 => "error",
            1 => "warn,conclave=info",
            2 => "warn,conclave=debug",
            _ => "trace",
        }),
    };
    // An unreadable RUST_LOG is said once and warnings are logged.
    let filter = filter.unwrap_or_else(|e| {
        eprintln!("warning: RUST_LOG ignored: {e}");
        EnvFilter::new("warn")
    });
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        // From -vv, every agent call's span is printed when it closes (latency, outcome).
        .with_span_events(if verbose >= 2 {
            tracing_subscriber::fmt::format::FmtSpan::CLOSE
        } else {
            tracing_subscriber::fmt::format::FmtSpan::NONE
        })
        .with_filter(filter);
    // A subscriber already installed (a test harness) is kept.
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otlp_layer())
        .try_init();
}

/// The tracer provider exporting over OTLP, kept to flush it at exit.
static TRACES: std::sync::OnceLock<opentelemetry_sdk::trace::SdkTracerProvider> =
    std::sync::OnceLock::new();

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, a layer
/// exporting conclave's spans (the `invoke_workflow` decisions and their `chat` calls, with
/// the GenAI attributes) over OTLP/HTTP in protobuf, batched on a thread of its own. The
/// exporter reads the standard `OTEL_*` variables (headers, timeout); `OTEL_SERVICE_NAME`
/// names the service (default `conclave`).
fn otlp_layer<S>() -> Option<impl tracing_subscriber::Layer<S>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::Layer as _;
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|e| !e.trim().is_empty()));
    if !configured {
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("warning: no OTLP export: {e}");
            return None;
        }
    };
    let service = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "conclave".to_owned());
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    let tracer = provider.tracer("conclave");
    let _ = TRACES.set(provider);
    Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
    )
}

/// Sends the spans still waiting to the OTLP endpoint (at exit).
pub(crate) fn flush_traces() {
    if let Some(p) = TRACES.get()
        && let Err(e) = p.shutdown()
    {
        eprintln!("warning: OTLP export: {e}");
    }
}

/// Reads a whole file, or standard input for `-`.
fn read_input(path: &Path) -> Result<Vec<u8>, CliError> {
    let mut buf = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| CliError::input(format!("cannot read standard input: {e}")))?;
    } else {
        buf = std::fs::read(path)
            .map_err(|e| CliError::input(format!("cannot read {}: {e}", path.display())))?;
    }
    Ok(buf)
}

/// Prints text on stdout. A closed pipe (`conclave … | head`) is not an error.
fn print_text(text: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError {
            code: 1,
            message: format!("cannot write the result: {e}"),
        }),
        _ => Ok(()),
    }
}

/// Prints a JSON document on stdout.
fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| CliError {
        code: 1,
        message: format!("cannot encode the result: {e}"),
    })?;
    text.push('\n');
    print_text(&text)
}

/// The display name of an input path.
fn source_name(path: &Path) -> String {
    if path == Path::new("-") {
        "<stdin>".to_owned()
    } else {
        path.display().to_string()
    }
}

/// A table with conclave's look.
fn table(header: &[&str]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.set_header(header.iter().copied());
    t
}

/// A ballot's answer and confidence on one line (`choice: "hold", confidence: 0.8`), for
/// tables; the agent and the rationale have columns or places of their own.
fn ballot_text(b: &conclave::ballot::Ballot) -> String {
    use conclave::ballot::Answer;
    let mut s = match (&b.answer, b.answer.words()) {
        (Answer::Score(v), _) => num(*v),
        (_, Some(words)) => words,
        (Answer::Abstain(a), None) => format!("abstained ({})", a.as_str()),
        _ => "?".to_owned(),
    };
    if let Some(c) = b.confidence {
        s += &format!(", confidence {c:.2}");
    }
    if let Some(cause) = &b.cause {
        s += &format!(": {cause}");
    }
    s
}

/// A number for people: at most four decimals, trailing zeros dropped (`0.2838`, `0.95`,
/// `12`). JSON output keeps every digit.
fn num(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let s = conclave::ballot::fixed(x, 4);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// An answer in words for people: a number through [`num`], anything else as it is.
fn tidy(answer: &str) -> String {
    answer
        .parse::<f64>()
        .map_or_else(|_| answer.to_owned(), num)
}

/// `1 wave`, `2 waves`.
fn count(n: u64, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// The voting engine's verdict (as recorded) in one line: the winner and the scores, or the
/// value and its consensus quality; what was counted.
fn verdict_text(v: &serde_json::Value) -> String {
    let mut s = match (v.get("winner"), v.get("value"), v.get("vector")) {
        (Some(serde_json::Value::String(w)), _, _) => {
            let mut s = format!("{w} wins");
            if let Some(scores) = v.get("scores").and_then(serde_json::Value::as_object) {
                let parts: Vec<String> = scores
                    .iter()
                    .map(|(o, x)| format!("{o} {}", x.as_f64().map_or_else(|| x.to_string(), num)))
                    .collect();
                s += &format!(" (scores {}", parts.join(", "));
                if let Some(m) = v.get("margin").and_then(serde_json::Value::as_f64) {
                    s += &format!("; margin {}", num(m));
                }
                s += ")";
            }
            s
        }
        (_, Some(x), _) if x.is_number() => format!(
            "value {}{}",
            x.as_f64().map_or_else(|| x.to_string(), num),
            v.get("consensus_quality")
                .and_then(serde_json::Value::as_f64)
                .map_or_else(String::new, |q| format!(" (consensus quality {})", num(q)))
        ),
        (_, _, Some(serde_json::Value::Array(xs))) => format!("a vector of {} values", xs.len()),
        _ => "no winner".to_owned(),
    };
    let counted = v
        .get("counted")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let abstained = v
        .get("abstained")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    s += &format!(
        "; {} counted, {abstained} abstained",
        count(counted, "ballot")
    );
    if let Some(rule) = v.get("rule").and_then(serde_json::Value::as_str) {
        s += &format!("; rule {rule}");
    }
    s
}

/// `left out: A (quarantined); B (below the trust floor …)` and a line feed, or nothing.
fn left_out_text(left: &[conclave::decision::LeftOut]) -> String {
    if left.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = left
        .iter()
        .map(|l| format!("{} ({})", l.agent, l.reason))
        .collect();
    format!("left out: {}\n", parts.join("; "))
}

/// A Unix time as an RFC 3339 date.
fn date(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}
