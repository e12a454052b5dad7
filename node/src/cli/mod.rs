//! The `hearth` command line: one node's data dir, driven from a shell.
//!
//! Every command opens the data dir (see [`data_dir`]), calls the core's
//! typed handlers with the wall clock and OS randomness (the core takes both
//! as inputs), prints the result, and exits. Write commands end with a clean
//! shutdown (view snapshot + flush); read commands write nothing.
//!
//! `main` returns an exit code from [`run`] and prints the error chain once:
//! 0 ok, 1 error, 2 usage (clap). A closed stdout (`hearth list | head`) is
//! not an error; any other broken pipe (the running node hung up) is.

pub mod cbor_seq;
pub mod client;
pub mod commands;
pub mod config;
pub mod data_dir;
pub mod http_client;
pub mod key_file;
pub mod output;
pub mod render;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::core::{Config, Node};
use crate::store::SledStore;
use commands::{backup, community, log, market, member};
use data_dir::{DataDir, Genesis};
use output::Output;

/// A HearthNet node: a neighbourhood marketplace that works without a server.
#[derive(Debug, Parser)]
#[command(name = "hearth", version, propagate_version = true)]
pub struct Cli {
    /// Where this node keeps its key, config and events [default: the
    /// per-user data directory + `/hearth`, e.g. ~/.local/share/hearth].
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "HEARTH_DATA_DIR",
        value_name = "DIR"
    )]
    pub data_dir: Option<PathBuf>,

    /// Config file to read instead of DIR/config.toml (must exist).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// Override a config key for this run (repeatable), after the file and
    /// the environment: e.g. `--set market.enabled=false`.
    #[arg(
        long = "set",
        global = true,
        help_heading = "Global options",
        value_name = "KEY=VALUE"
    )]
    pub sets: Vec<String>,

    /// Print results as JSON instead of text.
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,

    /// Format of log lines on stderr; the level comes from RUST_LOG
    /// (default `warn`).
    #[arg(long, global = true, help_heading = "Global options", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create this device's identity key and print its node ID.
    Init,
    /// Found a community.
    #[command(subcommand)]
    Community(community::CommunityCommand),
    /// Admit members and set their levels (anchors only); list members.
    #[command(subcommand)]
    Member(member::MemberCommand),
    /// Set your display name, shown to every member beside your ID.
    Name(commands::profile::NameArgs),
    /// Publish a post on the marketplace.
    Post(market::PostArgs),
    /// Change one of your posts (the given fields replace the old ones).
    Update(market::UpdateArgs),
    /// List live posts, newest first.
    List(market::ListArgs),
    /// Show one post, in any state.
    Get(market::GetArgs),
    /// End a post: yours for any reason, someone else's as `stale` (past its
    /// TTL) or `moderated` (trusted members and anchors).
    Expire(market::ExpireArgs),
    /// Search live posts by keyword (title, body, tags).
    Search(market::SearchArgs),
    /// Show this node, its community and its log (and, while `hearth run`
    /// is up, its peers and their last sync).
    Status,
    /// Run the node on the mesh until Ctrl-C (first run: creates an
    /// identity and a community).
    Run(commands::run::RunArgs),
    /// Join a community from an invite string (`hearth community invite`).
    Join {
        /// The invite, as printed by an anchor.
        invite: String,
    },
    /// Export or import the event log (CBOR sequence, RFC 8742).
    #[command(subcommand)]
    Log(log::LogCommand),
    /// Write this node's identity key (encrypted under a passphrase), its
    /// community's genesis, config.toml and the whole log to one file.
    /// Works while `hearth run` is up.
    Backup(backup::BackupArgs),
    /// Restore a `hearth backup` file into a fresh data dir: the same node
    /// (same id, same role) with its log.
    Restore(backup::RestoreArgs),
    /// The HTTP API's bearer token (`api.token` in the data dir).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Serve the Model Context Protocol on stdin/stdout: market tools for
    /// an assistant, through the running node's HTTP API.
    Mcp(commands::mcp::McpArgs),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Replace the token: the old one stops working at once, also on a
    /// running node (it reads the file on every request that needs it).
    Rotate,
}

/// What `hearth token rotate` reports.
#[derive(Debug, serde::Serialize)]
struct Rotated {
    token: String,
    file: PathBuf,
}

fn token(ctx: &mut Ctx, c: TokenCommand) -> anyhow::Result<()> {
    match c {
        TokenCommand::Rotate => {
            std::fs::create_dir_all(ctx.dir.root())
                .with_context(|| format!("creating {}", ctx.dir.root().display()))?;
            let file = crate::api::token::path(ctx.dir.root());
            let token = crate::api::token::rotate(&file)?;
            let rotated = Rotated { token, file };
            ctx.out.show(&rotated, |w| {
                writeln!(
                    w,
                    "new API token written to {} (the old one no longer works)",
                    rotated.file.display()
                )
            })
        }
    }
}

/// What every command gets: where the data is, which config, where to print.
#[derive(Debug)]
pub struct Ctx {
    pub dir: DataDir,
    config_file: Option<PathBuf>,
    sets: Vec<String>,
    pub out: Output,
}

impl Ctx {
    /// The config file, then `HEARTH_*` overrides, validated.
    pub fn config(&self) -> anyhow::Result<Config> {
        let (path, required) = match &self.config_file {
            Some(p) => (p.clone(), true),
            None => (self.dir.config_path(), false),
        };
        let mut config = config::load(&path, required, env_var)?;
        config::apply_flags(&mut config, &self.sets)?;
        Ok(config)
    }

    pub fn open_node(&self) -> anyhow::Result<(Node<SledStore>, Genesis)> {
        self.dir.open_node(self.config()?)
    }

    /// Calls capability `name`: through the running node's socket when
    /// `hearth run` is up on this data dir, else on the data dir directly
    /// (a write then ends with a snapshot and flush). Both paths reach the
    /// same bus dispatch, so they answer alike.
    pub fn call<P: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        params: &P,
        write: bool,
    ) -> anyhow::Result<R> {
        if let Some(mut running) = client::Client::connect(&self.dir.socket_path())? {
            let json = serde_json::to_value(params).context("encoding the request")?;
            let answer = running.call(name, json)?;
            return serde_json::from_value(answer)
                .with_context(|| format!("unexpected answer from the running node to {name}"));
        }
        let (mut node, _) = self.open_node()?;
        let value = ciborium::Value::serialized(params).context("encoding the request")?;
        let answer = node.call(now_ms(), crate::core::bus::Caller::Local, name, value)?;
        if write {
            finish_write(&mut node)?;
        }
        answer
            .deserialized()
            .with_context(|| format!("unexpected answer to {name}"))
    }
}

/// An environment variable; one that is not UTF-8 is passed on lossily, so
/// the config loader names it instead of ignoring it.
fn env_var(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) => Some(v),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(v)) => Some(v.to_string_lossy().into_owned()),
    }
}

/// The wall clock as Unix milliseconds: the `now_ms` the core takes.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Ends a command that wrote: snapshot the views and flush, so the next
/// command opens quickly and nothing is left in memory only.
pub fn finish_write(node: &mut Node<SledStore>) -> anyhow::Result<()> {
    node.shutdown()
        .context("cannot write the view snapshot at shutdown")
}

pub(crate) fn default_data_dir() -> anyhow::Result<PathBuf> {
    dirs::data_dir()
        .map(|d| d.join("hearth"))
        .context("this system has no per-user data directory; pass --data-dir DIR")
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let root = match cli.data_dir {
        Some(d) => d,
        None => default_data_dir()?,
    };
    let mut ctx = Ctx {
        dir: DataDir::new(root),
        config_file: cli.config,
        sets: cli.sets,
        out: Output::new(cli.json),
    };
    match cli.command {
        Command::Init => commands::init::run(&mut ctx),
        Command::Community(c) => community::run(&mut ctx, c),
        Command::Member(c) => member::run(&mut ctx, c),
        Command::Name(a) => commands::profile::name(&mut ctx, a),
        Command::Post(a) => market::post(&mut ctx, a),
        Command::Update(a) => market::update(&mut ctx, a),
        Command::List(a) => market::list(&mut ctx, a),
        Command::Get(a) => market::get(&mut ctx, a),
        Command::Expire(a) => market::expire(&mut ctx, a),
        Command::Search(a) => market::search(&mut ctx, a),
        Command::Status => commands::status::run(&mut ctx),
        Command::Run(a) => commands::run::run(&mut ctx, a),
        Command::Join { invite } => community::join(&mut ctx, &invite),
        Command::Log(c) => log::run(&mut ctx, c),
        Command::Backup(a) => backup::backup(&mut ctx, a),
        Command::Restore(a) => backup::restore(&mut ctx, a),
        Command::Token(c) => token(&mut ctx, c),
        Command::Mcp(a) => commands::mcp::run(&mut ctx, a),
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    // A malformed RUST_LOG falls back to the default rather than failing
    // the command the person actually asked for.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Prints help/version (exit 0) or the usage error (exit 2).
        Err(e) => e.exit(),
    };
    init_tracing(cli.log_format);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if output::is_stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // Errors can quote event text (a name, a field): escaped like
            // everything else from events that reaches a terminal.
            eprintln!("error: {}", render::block(&format!("{e:#}"), "  "));
            ExitCode::FAILURE
        }
    }
}
