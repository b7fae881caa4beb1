//! The `conclave` binary: parses arguments and hands over to [`cli`].

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    if let Err(e) = cli::run(args) {
        eprintln!("error: {e}");
        std::process::exit(e.code);
    }
}
