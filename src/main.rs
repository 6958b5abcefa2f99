//! The `rekey` binary: parse, set up logging, run, and print the one error (with its cause
//! chain) before mapping it to a documented exit code.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // First, before any secret is read: no core dumps (see src/harden.rs).
    let core_dumps = rekey::harden::disable_core_dumps();
    let cli = rekey::cli::Cli::parse();
    let verbosity = if cli.quiet { -1 } else { cli.verbose as i8 };
    rekey::logging::init(cli.log_format, verbosity);
    rekey::harden::log_core_dumps(core_dumps);
    if let Err(err) = rekey::harden::check_not_root(cli.allow_root) {
        eprintln!(
            "rekey: {}",
            rekey::terminal::escape(&rekey::error::chain(&err))
        );
        return ExitCode::from(rekey::app::exit_code_for(&err));
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rekey: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(rekey::app::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!(
                "rekey: {}",
                rekey::terminal::escape(&rekey::error::chain(&err))
            );
            ExitCode::from(rekey::app::exit_code_for(&err))
        }
    }
}
