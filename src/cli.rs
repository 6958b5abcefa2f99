//! The command line (docs/src/operating.md, "Commands"). Parsing only; commands live in their own modules.

use crate::logging::LogFormat;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// `rekey --version`: the version, the commit it was built from (build.rs), the features built
/// in, and a loud warning when they include the test hooks (SECURITY.md, *Build*).
pub fn long_version() -> &'static str {
    static TEXT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let features = features();
        let mut text = format!(
            "{}\ncommit: {}\nfeatures: {}",
            env!("CARGO_PKG_VERSION"),
            // Set by build.rs; a build without it (a copied source tree) says so.
            option_env!("REKEY_GIT_COMMIT").unwrap_or("unknown"),
            if features.is_empty() {
                "none".to_string()
            } else {
                features.join(", ")
            }
        );
        if cfg!(feature = "test-hooks") {
            text.push_str(
                "\nWARNING: test hooks are built in: REKEY_CRASH_AT, REKEY_TEST_CLOCK_OFFSET and \
                 REKEY_SECRET_REGISTRY are obeyed. This is a test build; never run it in \
                 production.",
            );
        }
        text
    });
    &TEXT
}

/// The cargo features this binary was built with.
pub fn features() -> Vec<&'static str> {
    [
        ("emulator", cfg!(feature = "emulator")),
        ("test-hooks", cfg!(feature = "test-hooks")),
        ("aws", cfg!(feature = "aws")),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .map(|(name, _)| name)
    .collect()
}

#[derive(Parser, Debug)]
#[command(
    name = "rekey",
    version,
    long_version = long_version(),
    about = "Rotates SaaS API client credentials (Taegis XDR, Cisco XDR) into your vault, without ever losing one.",
    long_about = "rekey reads an inventory of API clients (slots), creates, rotates or retires them at \
their platform with a bootstrap credential, and stores each new CLIENT_ID/CLIENT_SECRET in a vault \
backend. A new pair is stored before it is used, verified before it becomes current, and the old one \
is deleted only after a grace period.\n\nExit codes: 0 success; 1 some slots failed or need attention; \
2 bad configuration or usage (also: root in the container without --allow-root); 3 another run holds a slot's lease; 4 a provider or backend was \
unreachable before any change; 5 `plan --detailed-exitcode`: changes are pending.",
    after_help = "Try it with no setup:  rekey demo"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto, env = "REKEY_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// More log detail (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Run even as root inside the container image (REKEY_IN_CONTAINER=1), which is refused
    /// otherwise (exit 2).
    #[arg(long, global = true, env = "REKEY_ALLOW_ROOT", value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_root: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show what `apply` would do for each slot, and why. Changes nothing.
    #[command(after_help = "Example:\n  rekey plan -c inventory.toml --only 'siem-*'")]
    Plan(RunArgs),
    /// Create, rotate, promote and retire credentials as the plan says.
    #[command(
        after_help = "Examples:\n  rekey apply -c inventory.toml\n  rekey apply -c inventory.toml --only siem-ingest-acme --force --output json"
    )]
    Apply(RunArgs),
    /// Each slot's age, state, generation and last result; exit 1 if any is overdue, stuck or failed.
    #[command(after_help = "Example:\n  rekey status -c inventory.toml --output json")]
    Status(RunArgs),
    /// Exchange every stored current pair for a token; exit 1 if any fails.
    #[command(after_help = "Example:\n  rekey verify -c inventory.toml")]
    Verify(RunArgs),
    /// Check every backend (reachable, writable) and every provider's bootstrap credential
    /// (a token exchange). Changes nothing; exit 4 if something is unreachable, 1 if refused.
    #[command(after_help = "Example:\n  rekey check -c inventory.toml")]
    Check(CheckArgs),
    /// Long-running scheduler: apply on a cron schedule (`--once` for one cycle).
    #[command(
        after_help = "Examples:\n  rekey run -c inventory.toml --schedule '0 */6 * * *' --timezone Europe/Berlin --jitter 10m --metrics-listen 0.0.0.0:9899\n  rekey run -c inventory.toml --once --pushgateway http://pushgateway:9091"
    )]
    Run(ScheduleArgs),
    /// Make a slot's previous credential current again while it is still alive (inside its
    /// grace period); the newer one drains. Refused once the previous client is gone.
    #[command(
        after_help = "Example:\n  rekey rollback -c inventory.toml siem-ingest-acme --hold 48h"
    )]
    Rollback(RollbackArgs),
    /// Print a slot's current CLIENT_ID/CLIENT_SECRET (the only command that prints a secret).
    #[command(
        after_help = "Examples:\n  rekey get -c inventory.toml siem-ingest-acme > siem.env\n  rekey get -c inventory.toml siem-ingest-acme --format json"
    )]
    Get(GetArgs),
    /// Run a command with a slot's current pair in its environment (CLIENT_ID, CLIENT_SECRET);
    /// no file, no shell; exits with the command's exit code.
    #[command(
        after_help = "Examples:\n  rekey exec -c inventory.toml siem-ingest-acme -- python export.py\n  rekey exec -c inventory.toml siem-ingest-acme --env-prefix US1_ -- ./sync.sh    # US1_CLIENT_ID, US1_CLIENT_SECRET"
    )]
    Exec(ExecArgs),
    /// Print shell completions: `rekey completions bash > /etc/bash_completion.d/rekey`.
    #[command(
        after_help = "Examples:\n  source <(rekey completions bash)\n  rekey completions zsh > \"${fpath[1]}/_rekey\"\n  rekey completions fish > ~/.config/fish/completions/rekey.fish"
    )]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `rekey man > rekey.1 && man ./rekey.1`.
    Man,
    /// Generate an age identity for the file backend (written 0600).
    #[command(
        after_help = "Example:\n  rekey keygen -o rekey.key    # prints the public recipient (age1...)"
    )]
    Keygen(KeygenArgs),
    /// File-store maintenance: `rekey store upgrade` authenticates, after review, records
    /// written before records were authenticated.
    #[command(subcommand)]
    Store(StoreCommand),
    /// The whole job on the embedded default: emulator, age file backend, sample inventory.
    #[command(
        after_help = "Examples:\n  rekey demo\n  rekey demo --dir ./rekey-demo    # keep the inventory, identity and store"
    )]
    Demo(DemoArgs),
    /// Run the Taegis-compatible API emulator on a loopback port.
    #[cfg(feature = "emulator")]
    #[command(
        after_help = "Example:\n  ADMIN_SECRET=... rekey emulator --listen 127.0.0.1:8484 --bootstrap 11772:admin-client:ADMIN_SECRET"
    )]
    Emulator(crate::emulator::EmulatorArgs),
    /// Not in this build (a production build leaves the emulator out).
    #[cfg(not(feature = "emulator"))]
    #[command(hide = true, disable_help_flag = true)]
    Emulator {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
}

/// The shared flags each command does not use, with why. Given on the command line they are
/// refused (exit 2) rather than ignored, so that `status --webhook URL` cannot look as if it
/// notified anyone. Values from the environment (a CronJob's `REKEY_*` variables, set for every
/// command of the image) are not refused.
fn unused_flags(command: &str) -> (&'static [&'static str], &'static str) {
    const OUTPUTS: [&str; 8] = [
        "metrics_file",
        "pushgateway",
        "metrics_instance",
        "audit_log",
        "webhook",
        "webhook_format",
        "webhook_timeout",
        "webhook_events",
    ];
    static PLAN: std::sync::LazyLock<Vec<&str>> =
        std::sync::LazyLock::new(|| [&OUTPUTS[..], &["allow_mass_retire"]].concat());
    static READ_ONLY: std::sync::LazyLock<Vec<&str>> = std::sync::LazyLock::new(|| {
        [
            &OUTPUTS[..],
            &[
                "force",
                "allow_mass_retire",
                "concurrency",
                "detailed_exitcode",
            ],
        ]
        .concat()
    });
    match command {
        "plan" => (&PLAN, "plan changes nothing and sends nothing"),
        "status" | "verify" => (&READ_ONLY, "it only reads, one slot after another"),
        "apply" | "run" => (&["detailed_exitcode"], "it is a plan flag"),
        _ => (&[], ""),
    }
}

/// Refuses a flag the command does not use (see [`unused_flags`]).
pub fn refuse_unused(matches: &clap::ArgMatches) -> Result<(), String> {
    let Some((name, sub)) = matches.subcommand() else {
        return Ok(());
    };
    let (refused, why) = unused_flags(name);
    for id in sub.ids() {
        let id = id.as_str();
        if refused.contains(&id)
            && sub.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
        {
            return Err(format!(
                "--{} does nothing for `rekey {name}` ({why}); leave it out",
                id.replace('_', "-")
            ));
        }
    }
    Ok(())
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The inventory (TOML).
    #[arg(short, long, env = "REKEY_CONFIG", value_name = "FILE")]
    pub config: PathBuf,

    /// Only slots whose name matches (exact name, or a glob with `*`). Repeatable. A selector
    /// that matches no slot is an error (exit 2).
    #[arg(long, value_name = "SELECTOR")]
    pub only: Vec<String>,

    /// Rotate selected slots now, whatever their age.
    #[arg(long)]
    pub force: bool,

    /// Start retiring more slots than `max_retire` / `max_retire_percent` allow
    /// (docs/src/protocol.md, "Retire"); without it such a run refuses with exit code 2 and changes nothing.
    #[arg(long)]
    pub allow_mass_retire: bool,

    /// Report format on stdout: an aligned table, or one JSON document on one line
    /// (docs/src/operating.md, "Machine-readable output").
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// `plan` only: exit 5 when something would change, 0 when nothing would (for pipelines).
    #[arg(long)]
    pub detailed_exitcode: bool,

    /// Slots worked on at once: a number, or `auto` to find it while the run goes (grows while
    /// slots stay quick or more of them finish, halves on 429 or 5xx, backs off as slots slow
    /// down with no gain; see docs/src/scale.md).
    /// Default from the inventory, else 16.
    #[arg(long, value_name = "N|auto")]
    pub concurrency: Option<crate::engine::concurrency::Concurrency>,

    /// Only this shard's slots: those whose name hashes to INDEX modulo COUNT (see
    /// docs/src/deploy.md, "Sharding"). Default: JOB_COMPLETION_INDEX / REKEY_SHARD_COUNT when both are set.
    #[arg(long, value_name = "INDEX/COUNT", value_parser = parse_shard)]
    pub shard: Option<crate::shard::Shard>,

    #[command(flatten)]
    pub obs: ObsArgs,
}

fn parse_shard(s: &str) -> Result<crate::shard::Shard, String> {
    s.parse().map_err(|e: crate::error::Error| e.to_string())
}

/// Where metrics, the audit trail and notifications go (docs/src/operating.md).
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Observability")]
pub struct ObsArgs {
    /// Write Prometheus metrics to FILE after each run (atomically; for the node exporter's
    /// textfile collector, name it `*.prom`).
    #[arg(long, env = "REKEY_METRICS_FILE", value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,

    /// Push metrics to this Pushgateway after each run (group job="rekey", instance, shard).
    // `hide_env_values`: the URL may carry `user:password@`, and `--help` would show it.
    #[arg(
        long,
        env = "REKEY_PUSHGATEWAY",
        value_name = "URL",
        hide_env_values = true
    )]
    pub pushgateway: Option<String>,

    /// The `instance` label of the Pushgateway group: one per deployment of rekey that shares
    /// a Pushgateway (default "").
    #[arg(
        long,
        env = "REKEY_METRICS_INSTANCE",
        value_name = "NAME",
        default_value = ""
    )]
    pub metrics_instance: String,

    /// Append one JSON line per slot state change to FILE (`-` for stdout), fsynced.
    #[arg(long, env = "REKEY_AUDIT_LOG", value_name = "FILE")]
    pub audit_log: Option<PathBuf>,

    /// POST a notification to this URL for each event `--webhook-events` selects.
    #[arg(
        long,
        env = "REKEY_WEBHOOK_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub webhook: Option<String>,

    /// Webhook payload: `generic` (the event as JSON), `cloudevents` (CloudEvents 1.0
    /// structured mode, `application/cloudevents+json`) or `slack` (`{"text": ...}`).
    #[arg(
        long,
        env = "REKEY_WEBHOOK_FORMAT",
        value_enum,
        default_value_t = crate::observe::notify::WebhookFormat::Generic
    )]
    pub webhook_format: crate::observe::notify::WebhookFormat,

    /// Which notifications the webhook gets, comma-separated: `rotated` (a new credential is
    /// current: the event a consumer's reload hook needs), `retired` (a previous client was
    /// deleted), `failed`, `stuck`, `run_failed`,
    /// `draining_in_use`.
    #[arg(
        long,
        env = "REKEY_WEBHOOK_EVENTS",
        value_enum,
        value_delimiter = ',',
        default_value = crate::observe::notify::WebhookEvent::DEFAULT
    )]
    pub webhook_events: Vec<crate::observe::notify::WebhookEvent>,

    /// Timeout of one webhook attempt (3 attempts, with backoff).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub webhook_timeout: std::time::Duration,
}

impl ObsArgs {
    /// The outputs these flags ask for.
    pub fn options(&self) -> crate::observe::Options {
        crate::observe::Options {
            metrics_file: self.metrics_file.clone(),
            pushgateway: self.pushgateway.clone(),
            audit_log: self.audit_log.clone(),
            webhook: self.webhook.clone(),
            webhook_format: self.webhook_format,
            webhook_timeout: self.webhook_timeout,
            webhook_events: self.webhook_events.clone(),
            metrics_instance: self.metrics_instance.clone(),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// The inventory (TOML).
    #[arg(short, long, env = "REKEY_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
    /// Report format on stdout.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct ScheduleArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Run one cycle and exit.
    #[arg(long)]
    pub once: bool,
    /// Cron expression: 5 fields, 6 with seconds first, or a macro (@hourly, @daily, @midnight,
    /// @weekly, @monthly, @yearly, @annually) (default: `[settings] schedule`, else hourly,
    /// `0 * * * *`).
    #[arg(long, env = "REKEY_SCHEDULE", value_name = "CRON")]
    pub schedule: Option<String>,
    /// IANA time zone the schedule is read in (default: `[settings] timezone`, else UTC).
    #[arg(long, value_name = "TZ")]
    pub timezone: Option<String>,
    /// Random delay up to this long after each fire time (default: `[settings] jitter`, else 0).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub jitter: Option<std::time::Duration>,
    /// Serve Prometheus metrics on http://ADDR/metrics while running.
    #[arg(long, env = "REKEY_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RollbackArgs {
    /// The inventory (TOML).
    #[arg(short, long, env = "REKEY_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
    /// Slot name.
    pub slot: String,
    /// No age-based rotation of the slot for this long (`--force` still rotates).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "24h")]
    pub hold: std::time::Duration,
    /// Report format on stdout.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub obs: ObsArgs,
}

#[derive(Args, Debug, Clone)]
pub struct GetArgs {
    /// The inventory (TOML).
    #[arg(short, long, env = "REKEY_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
    /// Slot name.
    pub slot: String,
    /// `env` prints CLIENT_ID=... and CLIENT_SECRET=... lines; `json` one object.
    /// (`--format` is the older name.)
    #[arg(short = 'o', long = "output", alias = "format", value_enum, default_value_t = GetFormat::Env)]
    pub format: GetFormat,
}

#[derive(Args, Debug, Clone)]
pub struct ExecArgs {
    /// The inventory (TOML).
    #[arg(short, long, env = "REKEY_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
    /// Slot name.
    pub slot: String,
    /// Put the pair in PREFIX + CLIENT_ID and PREFIX + CLIENT_SECRET (`US1_`: the names the
    /// Taegis SDK reads for its `us1` environment).
    #[arg(long, value_name = "PREFIX")]
    pub env_prefix: Option<String>,
    /// The variable for the client id (default CLIENT_ID, after --env-prefix).
    #[arg(long, value_name = "NAME")]
    pub id_var: Option<String>,
    /// The variable for the secret (default CLIENT_SECRET, after --env-prefix).
    #[arg(long, value_name = "NAME")]
    pub secret_var: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GetFormat {
    Env,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Show the file stores' records that have no authentication (MAC) and, with `--accept`,
    /// authenticate exactly those. Without `--accept` nothing changes (exit 1 while there are
    /// such records, 0 when there are none).
    #[command(
        after_help = "Examples:\n  rekey store upgrade -c inventory.toml                       # review\n  rekey store upgrade -c inventory.toml --accept 3f9a1c2b7d04e6a5"
    )]
    Upgrade(StoreUpgradeArgs),
}

#[derive(Args, Debug, Clone)]
pub struct StoreUpgradeArgs {
    /// The inventory (TOML).
    #[arg(short, long, env = "REKEY_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
    /// The fingerprint the review printed: authenticates the records it showed, and is
    /// refused (exit 2) if the store's unauthenticated records changed since.
    #[arg(long, value_name = "FINGERPRINT")]
    pub accept: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct KeygenArgs {
    /// Where to write the identity (refused if it exists).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Keep the demo's inventory, identity and store in DIR instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}
