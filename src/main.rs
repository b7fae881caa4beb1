//! The `conclave` binary: parses arguments and hands over to [`cli`].

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    let result = cli::run(args);
    cli::flush_traces();
    if let Err(e) = result {
        // Messages may echo input (an id, a file's text): bounded, control characters escaped.
        eprintln!(
            "error: {}",
            conclave::ballot::printable(&e.to_string(), 2000)
        );
        std::process::exit(e.code);
    }
}
