//! The `rune` command line. It talks only to etcd: it writes desired state and
//! reads what the controller and agents report.

pub mod cast;
pub mod completions;
pub mod config;
pub mod configs;
pub mod delete;
pub mod describe;
pub mod diff;
pub mod endpoints;
pub mod events;
pub mod get;
pub mod history;
pub mod logs;
pub mod node;
pub mod output;
pub mod rollout;
pub mod scale;
pub mod wait;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::exit::{self, EXIT_CODES_HELP, Exit};
use crate::store::{EtcdArgs, Store};

#[derive(Debug, Parser)]
#[command(
    name = "rune",
    version,
    about = "Scale, restart and stop services whose desired state lives in etcd",
    long_about = LONG_ABOUT,
    after_help = EXIT_CODES_HELP,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Context from the configuration file to use for this command [default: the
    /// file's current-context]. See `rune config --help`.
    #[arg(long, env = "RUNE_CONTEXT", global = true, value_name = "NAME")]
    pub context: Option<String>,
    #[command(flatten)]
    pub secrets: crate::secrets::KeyFileArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update services from spec files.
    #[command(visible_alias = "apply", after_long_help = EXIT_CODES_HELP)]
    Cast(cast::CastArgs),
    /// Show services and instances.
    #[command(subcommand)]
    Get(get::GetCommand),
    /// Show what casting spec files would change, field by field, without writing
    /// (exit 0: nothing, 1: something).
    Diff(diff::DiffArgs),
    /// A service's spec revisions: history (who, why, what changed) and undo.
    #[command(subcommand, after_long_help = EXIT_CODES_HELP)]
    Rollout(rollout::RolloutCommand),
    /// Change a service's scale, immediately or gradually, health-gated.
    Scale(scale::ScaleArgs),
    /// Stop every instance, then start them again from the current spec.
    Restart(scale::RestartArgs),
    /// Scale to 0 and wait until every process is gone; the spec stays.
    Stop(scale::StopArgs),
    /// The last operations on a service and their outcome.
    History(history::HistoryArgs),
    /// Print (or follow, -f) the logs of a service's instances.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Logs(logs::LogsArgs),
    /// Delete a service.
    #[command(subcommand)]
    Delete(delete::DeleteCommand),
    /// What happened to services and their instances (newest last).
    #[command(after_long_help = EXIT_CODES_HELP)]
    Events(events::EventsArgs),
    /// One screen about a service or an instance: spec, status, instances,
    /// operations and events.
    #[command(subcommand)]
    Describe(describe::DescribeCommand),
    /// Act on nodes: cordon, uncordon, drain, forget a lost one.
    #[command(subcommand, after_long_help = EXIT_CODES_HELP)]
    Node(node::NodeCommand),
    /// Create a config or a secret.
    #[command(subcommand, after_long_help = EXIT_CODES_HELP)]
    Create(configs::CreateCommand),
    /// Secrets' encryption keys: rotate-key, generate-key.
    #[command(subcommand, after_long_help = EXIT_CODES_HELP)]
    Secrets(configs::SecretsCommand),
    /// Show and switch contexts (named etcd clusters) in the configuration file.
    #[command(subcommand, after_long_help = config::help())]
    Config(config::ConfigCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = completions::HELP)]
    Completions(completions::CompletionsArgs),
}

const LONG_ABOUT: &str = "\
Scale, restart and stop services whose desired state lives in etcd.

rune talks only to etcd: it writes service specs and reads what the controller and the
agents report. Where etcd is comes from flags, the environment, or a context in the
configuration file (`rune config --help`), in that order of precedence.

Examples:
  rune cast manifests/web.yaml
  rune get services -A
  rune get service web -o yaml | grep -A5 status
  rune --context prod get services
  RUNE_ETCD_ENDPOINTS=http://10.0.0.5:2379 rune get instances web
  source <(rune completions bash)";

/// Runs the CLI and returns the process exit code.
pub async fn main() -> i32 {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match parse(&args) {
        Ok(c) => c,
        Err(Parsed::Clap(e)) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage as i32
            } else {
                0
            };
        }
        Err(Parsed::Config(e)) => {
            eprintln!("error: {e}");
            return e.exit as i32;
        }
    };
    match run(cli).await {
        Ok(()) => 0,
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("error: {e}");
            }
            e.exit as i32
        }
    }
}

enum Parsed {
    Clap(clap::Error),
    Config(exit::Error),
}

/// Parses the command line twice: once to learn which context is selected, then
/// with that context's values as the arguments' defaults, so that flags and the
/// environment still win over it (see `config.rs`).
fn parse(args: &[std::ffi::OsString]) -> Result<Cli, Parsed> {
    let first = Cli::try_parse_from(args).map_err(Parsed::Clap)?;
    if matches!(first.command, Command::Config(_) | Command::Completions(_)) {
        return Ok(first);
    }
    let Some(path) = config::config_path() else {
        return Ok(first);
    };
    let file = config::Config::load(&path).map_err(Parsed::Config)?;
    let source = path.display().to_string();
    let Some(ctx) = file
        .select(first.context.as_deref(), &source)
        .map_err(Parsed::Config)?
    else {
        return Ok(first);
    };
    let matches = config::apply_context(Cli::command(), ctx)
        .try_get_matches_from(args)
        .map_err(Parsed::Clap)?;
    Cli::from_arg_matches(&matches).map_err(Parsed::Clap)
}

async fn run(cli: Cli) -> exit::Result<()> {
    match cli.command {
        Command::Config(cmd) => return config::run(cmd, cli.context.as_deref()),
        Command::Completions(args) => return completions::run(args),
        Command::Secrets(configs::SecretsCommand::GenerateKey { id }) => {
            return configs::generate_key(id);
        }
        _ => {}
    }
    let store = Store::connect(&cli.etcd).await?;
    let keys = &cli.secrets;
    match cli.command {
        Command::Create(configs::CreateCommand::Config(a)) => {
            configs::create(&store, keys, crate::model::SourceKind::Config, a).await
        }
        Command::Create(configs::CreateCommand::Secret(a)) => {
            configs::create(&store, keys, crate::model::SourceKind::Secret, a).await
        }
        Command::Get(get::GetCommand::Configs(a)) => {
            configs::get(&store, keys, crate::model::SourceKind::Config, a).await
        }
        Command::Get(get::GetCommand::Secrets(a)) => {
            configs::get(&store, keys, crate::model::SourceKind::Secret, a).await
        }
        Command::Delete(delete::DeleteCommand::Config(a)) => {
            configs::delete(&store, crate::model::SourceKind::Config, a).await
        }
        Command::Delete(delete::DeleteCommand::Secret(a)) => {
            configs::delete(&store, crate::model::SourceKind::Secret, a).await
        }
        Command::Secrets(cmd) => configs::secrets(&store, keys, cmd).await,
        Command::Cast(args) => cast::run_with_keys(&store, keys, args).await,
        Command::Get(cmd) => get::run(&store, cmd).await,
        Command::Diff(a) => diff::run(&store, a).await,
        Command::Rollout(cmd) => rollout::run(&store, cmd).await,
        Command::Scale(a) => scale::scale(&store, a).await,
        Command::Restart(a) => scale::restart(&store, a).await,
        Command::Stop(a) => scale::stop(&store, a).await,
        Command::History(a) => history::run(&store, a).await,
        Command::Delete(cmd) => delete::run(&store, cmd).await,
        Command::Logs(a) => logs::run(&store, a).await,
        Command::Node(cmd) => node::run(&store, cmd).await,
        Command::Events(a) => events::run(&store, a).await,
        Command::Describe(cmd) => describe::run(&store, cmd).await,
        Command::Config(_) | Command::Completions(_) => unreachable!("handled above"),
    }
}
