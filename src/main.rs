use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = rekey::cli::Cli::parse();
    let _ = cli;
    ExitCode::from(2)
}
