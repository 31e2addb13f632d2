//! Command-line interface. Exit codes: 0 when the workflow Succeeded, 1 when it
//! Failed or Errored, 2 for invalid input (bad file, unknown flag, lint errors).

mod bench;
mod bench_artifacts;
mod bench_server;
mod lint;
mod plugin;
mod query;
mod remote;
mod run;
mod server;
mod template;

pub use run::store_templates;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::config::Config;

/// Exit code for invalid input.
pub const EXIT_INVALID: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "weft",
    version,
    about = "Run Argo Workflows unchanged on a durable engine with Wasm drivers"
)]
pub struct Cli {
    /// Configuration file (default: $WEFT_CONFIG, <home>/weft.toml, ./weft.toml).
    #[arg(long, global = true, env = "WEFT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory for the embedded store, caches and step directories.
    #[arg(long, global = true, env = "WEFT_HOME")]
    pub home: Option<PathBuf>,
    /// Namespace.
    #[arg(short = 'n', long, global = true, default_value = "default")]
    pub namespace: String,
    /// Talk to this weft (or Argo) server instead of the embedded store, e.g. http://127.0.0.1:2746.
    #[arg(long, global = true, env = "WEFT_SERVER")]
    pub server: Option<String>,
    /// Bearer token for --server.
    #[arg(long, global = true, env = "WEFT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Json,
    Yaml,
    Wide,
    Name,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a workflow file on the embedded engine and wait for it.
    Run(run::RunArgs),
    /// Validate workflow files; report problems with file:line:column.
    Lint(lint::LintArgs),
    /// List workflows.
    List(query::ListArgs),
    /// Show a workflow.
    Get(query::GetArgs),
    /// Print a workflow's step logs.
    Logs(query::LogsArgs),
    /// Delete workflows.
    Delete(query::DeleteArgs),
    /// Continue a workflow: after a crash, and/or resume its suspended nodes.
    Resume(run::ResumeArgs),
    /// Stop a workflow (running steps are cancelled, exit handlers run).
    Stop(run::ControlArgs),
    /// Terminate a workflow (running steps are cancelled, no exit handlers).
    Terminate(run::ControlArgs),
    /// WorkflowTemplates.
    #[command(subcommand)]
    Template(template::TemplateCmd),
    /// ClusterWorkflowTemplates.
    #[command(subcommand, name = "cluster-template")]
    ClusterTemplate(template::TemplateCmd),
    /// CronWorkflows (stored; scheduling comes with `weft server`).
    #[command(subcommand)]
    Cron(template::TemplateCmd),
    /// Plugins: list and inspect.
    #[command(subcommand)]
    Plugin(plugin::PluginCmd),
    /// Serve the Argo Server REST API (/api/v1) with the engine in process.
    Server(server::ServerArgs),
    /// Submit workflow files (to --server; without one, run them on the embedded engine).
    Submit(remote::SubmitArgs),
    /// Follow a workflow until it finishes.
    Watch(remote::NameArgs),
    /// Run a Failed or Errored workflow again (needs --server).
    Retry(remote::NameArgs),
    /// Submit a copy of a workflow under a new name (needs --server).
    Resubmit(remote::NameArgs),
    /// Suspend a running workflow until `weft resume` (needs --server).
    Suspend(run::ControlArgs),
    /// Measure the benchmark workloads beside their bash floor (bench/README.md).
    Bench(bench::BenchArgs),
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_INVALID } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let config = match Config::load(cli.config.as_deref(), cli.home.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("weft: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    init_tracing(&config);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weft: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let quick_exit =
        cli.server.is_none() && matches!(cli.command, Command::Run(_) | Command::Resume(_));
    let result = rt.block_on(dispatch(cli, config));
    if quick_exit && let Ok(code) = result {
        exit_now(code);
    }
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("weft: {e:#}");
            ExitCode::from(if e.downcast_ref::<Invalid>().is_some() {
                EXIT_INVALID
            } else {
                1
            })
        }
    }
}

/// End a `weft run`/`resume` that finished its workflows, without tearing the
/// engine down. By now every state is committed, the logs are flushed, the
/// lock file is gone and the result is printed; what is left is freeing
/// memory the kernel frees faster: the runtime's threads, the Wasm engine's
/// reservations, the allocator's arenas (~1.5 ms of a 20 ms run, strace).
/// Like a `kill -9` at this point, the store's WAL is replayed by the next
/// open. Not taken on an error, when steps may still run and need killing.
fn exit_now(code: u8) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` ends the process at once; nothing runs after it.
    unsafe { libc::_exit(i32::from(code)) }
}

/// An error caused by the user's input (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

async fn dispatch(cli: Cli, config: Config) -> anyhow::Result<u8> {
    let ns = cli.namespace.clone();
    let command = match &cli.server {
        Some(url) => match remote::dispatch(url, cli.token.as_deref(), &ns, cli.command).await {
            Ok(result) => return result,
            Err(local) => local,
        },
        None => cli.command,
    };
    match command {
        Command::Run(a) => run::run(config, &ns, a).await,
        Command::Lint(a) => lint::lint(config, a).await,
        Command::List(a) => query::list(config, &ns, a).await,
        Command::Get(a) => query::get(config, &ns, a).await,
        Command::Logs(a) => query::logs(config, &ns, a).await,
        Command::Delete(a) => query::delete(config, &ns, a).await,
        Command::Resume(a) => run::resume(config, &ns, a).await,
        Command::Stop(a) => run::control(config, &ns, a, "stop").await,
        Command::Terminate(a) => run::control(config, &ns, a, "terminate").await,
        Command::Template(c) => template::run(config, &ns, "WorkflowTemplate", c).await,
        Command::ClusterTemplate(c) => {
            template::run(config, "", "ClusterWorkflowTemplate", c).await
        }
        Command::Cron(c) => template::run(config, &ns, "CronWorkflow", c).await,
        Command::Plugin(c) => plugin::run(config, c).await,
        Command::Bench(a) => bench::bench(a).await,
        Command::Server(a) => server::run(config, a).await,
        Command::Submit(a) => remote::submit_embedded(config, &ns, a).await,
        Command::Watch(a) => {
            let app = crate::app::App::open(config).await?;
            remote::watch_embedded(&app.store, &ns, &a.name).await
        }
        Command::Retry(_) | Command::Resubmit(_) | Command::Suspend(_) => Err(Invalid(
            "retry, resubmit and suspend need a server: pass --server URL or set WEFT_SERVER"
                .into(),
        )
        .into()),
    }
}

fn init_tracing(config: &Config) {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log_format == "json" {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}
