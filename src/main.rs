//! The `rekey` binary: parse, set up logging, run, and print the one error (with its cause
//! chain) before mapping it to a documented exit code.

#![deny(clippy::print_stdout, clippy::print_stderr)]

use clap::{CommandFactory, FromArgMatches};
use rekey::app::commands as app;
use rekey::cli::{Cli, Command};
use rekey::error::Result;
use std::process::ExitCode;

fn main() -> ExitCode {
    // First, before any secret is read: no core dumps (see src/harden.rs).
    let core_dumps = rekey::harden::disable_core_dumps();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let verbosity = if cli.quiet { -1 } else { cli.verbose as i8 };
    rekey::logging::init(cli.log_format, verbosity);
    rekey::harden::log_core_dumps(core_dumps);
    if let Err(why) = rekey::cli::refuse_unused(&matches) {
        rekey::errln!("rekey: {why}");
        return ExitCode::from(rekey::error::exit::USAGE);
    }
    if let Err(err) = rekey::harden::check_not_root(cli.allow_root) {
        rekey::errln!(
            "rekey: {}",
            rekey::terminal::escape_paragraph(&rekey::error::chain(&err))
        );
        return ExitCode::from(rekey::app::exit_code_for(&err));
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            rekey::errln!("rekey: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            rekey::errln!(
                "rekey: {}",
                rekey::terminal::escape_paragraph(&rekey::error::chain(&err))
            );
            ExitCode::from(rekey::app::exit_code_for(&err))
        }
    }
}

/// Hands the command to the module that carries it out. Here, above every command module, so
/// that `rekey run` and `rekey demo` (which use the commands of `app`) are not imported by it.
async fn dispatch(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Plan(args) => app::plan(&args).await,
        Command::Apply(args) => app::apply(&args).await,
        Command::Status(args) => rekey::app::status::run(&args).await,
        Command::Verify(args) => rekey::app::verify::run(&args).await,
        Command::Check(args) => rekey::app::check::run(&args).await,
        Command::Run(args) => rekey::app::scheduler::run(&args).await,
        Command::Rollback(args) => app::rollback(&args).await,
        Command::Get(args) => app::get(&args).await,
        Command::Exec(args) => rekey::app::exec::run(&args).await,
        Command::Completions { shell } => rekey::app::shell::completions(shell),
        Command::Man => rekey::app::shell::man(),
        Command::Store(rekey::cli::StoreCommand::Upgrade(args)) => {
            rekey::app::store::upgrade(&args).await
        }
        Command::Keygen(args) => {
            let recipient = rekey::backend::file::generate_identity(&args.output)?;
            rekey::errln!(
                "wrote a new age identity to {} (mode 0600)",
                args.output.display()
            );
            rekey::outln!("{recipient}")?;
            Ok(app::exit::OK)
        }
        #[cfg(feature = "emulator")]
        Command::Demo(args) => rekey::app::demo::run(&args).await,
        #[cfg(not(feature = "emulator"))]
        Command::Demo(_) => Err(rekey::error::Error::config(
            "this rekey was built without the `emulator` feature; the demo needs it",
        )),
        #[cfg(feature = "emulator")]
        Command::Emulator(args) => rekey::emulator::run(args).await.map(|()| app::exit::OK),
        #[cfg(not(feature = "emulator"))]
        Command::Emulator { .. } => Err(rekey::error::Error::config(
            "this rekey was built without the `emulator` feature (a production build); the emulator is not in it",
        )),
    }
}
