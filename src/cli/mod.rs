//! The `conclave` command line: argument definitions and one module per subcommand.
//!
//! Holds no logic a library user would need: each subcommand reads its input, calls the
//! library and prints the result.

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Aggregate recorded ballots with a voting rule (JSON in, JSON out).
    Tally(tally::TallyArgs),
    /// Trust: estimate agent reliability from annotations.
    #[command(subcommand)]
    Trust(trust::TrustCommand),
}

/// A failed command: the message for stderr and the exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    /// 2 for bad input, 1 for other failures.
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
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Runs the parsed command line.
///
/// # Errors
/// A [`CliError`] with the exit code to use.
pub(crate) fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Tally(args) => tally::run(&args),
        Command::Trust(cmd) => trust::run(cmd),
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

/// Prints a JSON document on stdout.
fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError {
        code: 1,
        message: format!("cannot encode the result: {e}"),
    })?;
    println!("{text}");
    Ok(())
}

/// The display name of an input path.
fn source_name(path: &PathBuf) -> String {
    if path == Path::new("-") {
        "<stdin>".to_owned()
    } else {
        path.display().to_string()
    }
}
