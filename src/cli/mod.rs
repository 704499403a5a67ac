//! The `rune` command line. It talks only to etcd: it writes desired state and
//! reads what the controller and agents report.

pub mod cast;
pub mod delete;
pub mod get;
pub mod history;
pub mod output;
pub mod scale;
pub mod wait;

use clap::{Parser, Subcommand};

use crate::exit::{self, EXIT_CODES_HELP, Exit};
use crate::store::{EtcdArgs, Store};

#[derive(Debug, Parser)]
#[command(
    name = "rune",
    version,
    about = "Scale, restart and stop services whose desired state lives in etcd",
    after_help = EXIT_CODES_HELP,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub etcd: EtcdArgs,
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
    /// Change a service's scale, immediately or gradually, health-gated.
    Scale(scale::ScaleArgs),
    /// Stop every instance, then start them again from the current spec.
    Restart(scale::RestartArgs),
    /// Scale to 0 and wait until every process is gone; the spec stays.
    Stop(scale::StopArgs),
    /// The last operations on a service and their outcome.
    History(history::HistoryArgs),
    /// Delete a service.
    #[command(subcommand)]
    Delete(delete::DeleteCommand),
}

/// Runs the CLI and returns the process exit code.
pub async fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage as i32
            } else {
                0
            };
        }
    };
    match run(cli).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit as i32
        }
    }
}

async fn run(cli: Cli) -> exit::Result<()> {
    let store = Store::connect(&cli.etcd).await?;
    match cli.command {
        Command::Cast(args) => cast::run(&store, args).await,
        Command::Get(cmd) => get::run(&store, cmd).await,
        Command::Scale(a) => scale::scale(&store, a).await,
        Command::Restart(a) => scale::restart(&store, a).await,
        Command::Stop(a) => scale::stop(&store, a).await,
        Command::History(a) => history::run(&store, a).await,
        Command::Delete(cmd) => delete::run(&store, cmd).await,
    }
}
