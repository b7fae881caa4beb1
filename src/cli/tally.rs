//! `conclave tally`: re-tally recorded ballots.

use std::path::PathBuf;

use clap::Args;

use super::{CliError, print_json, read_input, source_name};
use conclave::aggregate::{Rule, TallyInput, tally};

/// Arguments of `conclave tally`.
#[derive(Debug, Args)]
pub(super) struct TallyArgs {
    /// The rule: plurality, weighted-plurality, log-odds, supermajority, borda, copeland,
    /// schulze, instant-runoff, minimax, mean, weighted-mean, median, weighted-median,
    /// trimmed-mean, winsorized-mean, geometric-median, krum, multi-krum, outlier-downweight.
    #[arg(long)]
    rule: String,
    /// A rule parameter, KEY=VALUE (repeatable), e.g. --param trim=0.2.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Print JSON (the only output format of tally; accepted for uniformity).
    #[arg(long)]
    json: bool,
    /// The ballots as JSON, or - for standard input.
    file: PathBuf,
}

pub(super) fn run(args: &TallyArgs) -> Result<(), CliError> {
    let mut params = Vec::with_capacity(args.params.len());
    for p in &args.params {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| CliError::input(format!("--param {p}: expected KEY=VALUE")))?;
        params.push((k.trim(), v.trim()));
    }
    let rule = Rule::parse(&args.rule, &params).map_err(CliError::input)?;
    let bytes = read_input(&args.file)?;
    let name = source_name(&args.file);
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let input: TallyInput = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            CliError::input(format!(
                "{name}: invalid JSON: {}",
                describe_syntax(&bytes, &inner)
            ))
        } else if path == "." {
            CliError::input(format!("{name}: {inner}"))
        } else {
            CliError::input(format!("{name}: {path}: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| CliError::input(format!("{name}: invalid JSON: {e}")))?;
    let result = tally(&input, &rule).map_err(|e| CliError::input(format!("{name}: {e}")))?;
    print_json(&result)
}

/// A JSON syntax error in words, naming non-finite numbers, which JSON cannot hold.
fn describe_syntax(bytes: &[u8], e: &serde_json::Error) -> String {
    let token = bytes
        .split(|&b| b == b'\n')
        .nth(e.line().saturating_sub(1))
        .and_then(|line| line.get(e.column().saturating_sub(1)..))
        .unwrap_or_default();
    let starts = |t: &[u8]| token.starts_with(t);
    if starts(b"NaN") || starts(b"Infinity") || starts(b"-Infinity") || starts(b"inf") {
        format!(
            "not a finite number at line {} column {} (NaN and infinities are not valid ballot values)",
            e.line(),
            e.column()
        )
    } else if e.to_string().starts_with("number out of range") {
        format!("{e} (numbers must be finite)")
    } else {
        e.to_string()
    }
}
