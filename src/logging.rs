//! Logging setup: human on a terminal, JSON otherwise (or as asked).

use std::io::IsTerminal;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human when stderr is a terminal, JSON otherwise.
    Auto,
    Human,
    Json,
}

/// Installs the global subscriber. Logs go to stderr; stdout is for reports and `get`.
/// `RUST_LOG` overrides the level given by `-v`/`-q`.
pub fn init(format: LogFormat, verbosity: i8) {
    let default = match verbosity {
        i8::MIN..=-1 => "error",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // vaultrs and rustify log every non-2xx answer at ERROR (a 404 is routine for the vault
    // backend); rekey reports what matters itself.
    // `rekey run` is a service: at the default level it still says what each cycle did and
    // when the next one fires (src/app/scheduler.rs logs those at info).
    let scheduler = if verbosity == 0 {
        "rekey::app::scheduler=info,"
    } else {
        ""
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "rekey={default},{scheduler}vaultrs=off,rustify=off,warn"
        ))
    });
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        // Every field value is escaped (src/terminal.rs, `escape`): messages and errors may
        // quote servers, plugins or the inventory. The level colours are rekey's own.
        use tracing_subscriber::field::MakeExt;
        let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
            let text = format!("{value:?}");
            let text = crate::terminal::escape(&text);
            if field.name() == "message" {
                write!(w, "{text}")
            } else {
                write!(w, "{}={text}", field.name())
            }
        })
        .delimited(" ");
        builder
            .fmt_fields(fields)
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .try_init()
    };
}
