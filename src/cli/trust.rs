//! `conclave trust …`: reliability estimation (and, later, the trust store).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{CliError, print_json, read_input, source_name};
use conclave::trust::estimate::{Annotations, Method, estimate};

/// `conclave trust` subcommands.
#[derive(Debug, Subcommand)]
pub(super) enum TrustCommand {
    /// Estimate each worker's reliability and each task's label from task,worker,label CSV.
    Estimate(EstimateArgs),
}

/// Arguments of `conclave trust estimate`.
#[derive(Debug, Args)]
pub(super) struct EstimateArgs {
    /// dawid-skene (full confusion matrices), one-coin, or majority.
    #[arg(long, default_value = "dawid-skene")]
    method: String,
    /// Print JSON (the only output format; accepted for uniformity).
    #[arg(long)]
    json: bool,
    /// CSV with header task,worker,label, or - for standard input.
    file: PathBuf,
}

pub(super) fn run(cmd: TrustCommand) -> Result<(), CliError> {
    match cmd {
        TrustCommand::Estimate(args) => {
            let method = Method::from_name(&args.method).ok_or_else(|| {
                CliError::input(format!(
                    "unknown method \"{}\"; methods are: dawid-skene, one-coin, majority",
                    args.method
                ))
            })?;
            let bytes = read_input(&args.file)?;
            let name = source_name(&args.file);
            let data = Annotations::from_csv(bytes.as_slice())
                .map_err(|e| CliError::input(format!("{name}: {e}")))?;
            print_json(&estimate(&data, method))
        }
    }
}
