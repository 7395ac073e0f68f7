//! The `podgate` binary: one executable, three roles (controller, proxy, demo).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// mimalloc: the proxy allocates a few small buffers per request; glibc malloc showed
/// up at ~6 % of its CPU time in profiles. Version 2 (feature `v2`): it returns freed
/// pages to the OS after 10 ms where version 3 waits a second and longer, and the
/// controller is idle after its start-up lists: 80 MB instead of 105 MB resident at
/// 150,000 endpoints, the same proxy and Index speed (benches/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `podgate --version`: the version, the git commit and the build date (`build.rs`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PODGATE_GIT_COMMIT"),
    ", built ",
    env!("PODGATE_BUILD_DATE"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "podgate",
    version = VERSION,
    about = "Pod IPs from Kubernetes clusters straight into an L7 load balancer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as `text` (colours only on a terminal) or `json`; beats `log_format`
    /// in the configuration file.
    #[arg(long, global = true, value_enum, env = "PODGATE_LOG_FORMAT")]
    log_format: Option<podgate::logging::LogFormat>,
}

#[derive(Subcommand)]
enum Command {
    /// Control plane: watch clusters, push pod IPs to the configured LBs.
    Controller {
        /// The controller's configuration (podgate.yaml; see deploy/podgate.yaml).
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Data plane: the built-in L7 proxy, driven by its admin API.
    Proxy {
        /// The proxy's configuration (proxy.yaml; see deploy/proxy.yaml).
        #[arg(short, long)]
        config: PathBuf,
        /// Worker threads; 1 runs everything on one thread (current_thread runtime).
        /// Default: one per CPU.
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Everything on one machine: two simulated clusters, backends, controller, proxy.
    Demo {
        /// Where the proxy serves plain HTTP. Each address falls back to a free port
        /// if it is taken.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// The proxy's admin API (the LB contract).
        #[arg(long, default_value = "127.0.0.1:9901")]
        proxy_admin: std::net::SocketAddr,
        /// The controller's admin view.
        #[arg(long, default_value = "127.0.0.1:9900")]
        admin: std::net::SocketAddr,
        /// The app's host name.
        #[arg(long, default_value = podgate::demo::DEFAULT_HOST)]
        host: String,
        /// Exit after the scenario instead of scaling the app until Ctrl-C.
        #[arg(long)]
        once: bool,
        /// No pauses between the steps (they are paced for a person reading along).
        #[arg(long)]
        fast: bool,
    },
    /// Run-time cluster weights, kept by the controller (globally or per application).
    Weights {
        #[command(subcommand)]
        action: podgate::cli::args::WeightsAction,
    },
    /// Move an application's traffic to one cluster in steps; `--cancel` stops it.
    Migrate(podgate::cli::args::MigrateArgs),
    /// The controller's overview: clusters, LB targets, problems (like the web UI's).
    Status(podgate::cli::inspect::StatusArgs),
    /// List upstreams, hosts or pods as the controller has them.
    Get(podgate::cli::inspect::GetArgs),
    /// Which rule serves a URL, and which pods would answer with what probability.
    Explain(podgate::cli::inspect::ExplainArgs),
    /// Why a pod is or is not in the LB: `podgate why pod shop/web-1` (or its IP).
    Why(podgate::cli::inspect::WhyArgs),
    /// Validate a controller or proxy configuration without starting anything: exit 0
    /// if it would start, 2 with the offending field otherwise.
    Check {
        /// The configuration file to check.
        #[arg(short, long)]
        config: PathBuf,
        /// Which configuration it is. Default: a controller's if it names `clusters`.
        #[arg(long, value_enum)]
        role: Option<podgate::cli::check::Role>,
    },
    /// Print a kubeconfig for one watched cluster from its API address, CA and a
    /// ServiceAccount token (docs/operating.md).
    Kubeconfig(podgate::cli::kubeconfig::KubeconfigArgs),
    /// Print a shell completion script, e.g. `podgate completions bash > /etc/bash_completion.d/podgate`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Proxy { config, workers } => run_proxy(&config, workers, cli.log_format),
        Command::Controller { config } => run_controller(&config, cli.log_format),
        Command::Demo {
            listen,
            proxy_admin,
            admin,
            host,
            once,
            fast,
        } => {
            let options = podgate::demo::DemoOptions {
                listen: free_or_any(listen),
                proxy_admin: free_or_any(proxy_admin),
                controller_admin: free_or_any(admin),
                host,
                once,
                fast,
            };
            run_demo(options)
        }
        Command::Weights { action } => podgate::cli::args::run_weights(action),
        Command::Migrate(args) => podgate::cli::args::run_migrate(args),
        Command::Status(args) => podgate::cli::inspect::run_status(&args),
        Command::Get(args) => podgate::cli::inspect::run_get(&args),
        Command::Explain(args) => podgate::cli::inspect::run_explain(&args),
        Command::Why(args) => podgate::cli::inspect::run_why(&args),
        Command::Check { config, role } => podgate::cli::check::run(&config, role),
        Command::Kubeconfig(args) => podgate::cli::kubeconfig::run(&args),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "podgate",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// Bad configuration exits with 2 and a message naming the field.
fn run_controller(
    path: &std::path::Path,
    log_format: Option<podgate::logging::LogFormat>,
) -> ExitCode {
    let config = match podgate::controller::config::ControllerConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("podgate controller: {e}");
            return ExitCode::from(2);
        }
    };
    podgate::logging::init(log_format.unwrap_or(config.log_format));
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let options = podgate::controller::RunOptions {
                events: true,
                ..Default::default()
            };
            let controller = podgate::controller::start(&config, options).await?;
            tracing::info!(admin = %controller.admin_addr, "serving");
            shutdown_signal().await;
            controller.shutdown().await;
            Ok(())
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "podgate controller: {}",
                podgate::logging::causes(e.as_ref())
            );
            // What the operator must fix before a restart can help: 2, as for a bad file.
            let fix_first = e
                .downcast_ref::<podgate::controller::ControllerError>()
                .is_some_and(|c| {
                    use podgate::cluster::ClusterError;
                    use podgate::controller::ControllerError;
                    matches!(
                        c,
                        ControllerError::Config(_)
                            | ControllerError::Admin { .. }
                            | ControllerError::Cluster(
                                ClusterError::Kubeconfig { .. } | ClusterError::Infer { .. }
                            )
                    )
                });
            if fix_first {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `addr` if it can be bound now, else the same IP with port 0.
fn free_or_any(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => addr,
        Err(e) => {
            eprintln!("podgate demo: {addr} is not free ({e}); using a free port instead");
            std::net::SocketAddr::new(addr.ip(), 0)
        }
    }
}

fn run_demo(options: podgate::demo::DemoOptions) -> ExitCode {
    // The demo narrates on stdout; logs only for errors unless RUST_LOG asks for more.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error,kube_client=off"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let result = runtime().and_then(|rt| {
        rt.block_on(podgate::demo::run(options))
            .map_err(anyhow::Error::from)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podgate demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Bad configuration exits with 2 and a message naming the field; a failure at run
/// time exits with 1.
fn run_proxy(
    path: &std::path::Path,
    workers: Option<usize>,
    log_format: Option<podgate::logging::LogFormat>,
) -> ExitCode {
    let config = match podgate::proxy::ProxyConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("podgate proxy: {e}");
            return ExitCode::from(2);
        }
    };
    if workers == Some(0) {
        eprintln!("podgate proxy: --workers: must be at least 1");
        return ExitCode::from(2);
    }
    podgate::logging::init(log_format.unwrap_or(config.log_format));
    match serve(config, workers) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podgate proxy: {}", podgate::logging::causes(e.as_ref()));
            // A bad file, a port in use, unusable certificates: fix first, exit 2.
            if e.downcast_ref::<podgate::proxy::ProxyError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn serve(config: podgate::proxy::ProxyConfig, workers: Option<usize>) -> anyhow::Result<()> {
    // Sockets from a predecessor (a handover) or systemd, taken before any thread starts.
    let mut inherited = podgate::proxy::handover::Inherited::from_env();
    let runtime = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
    .context("cannot start the runtime")?;
    runtime.block_on(async {
        // Every handler before the proxy says it listens: a SIGHUP or SIGTERM from
        // then on is never lost (nor does SIGHUP's default action end the process).
        let mut signals = Signals::new().context("cannot install the signal handlers")?;
        let handle = podgate::proxy::start_with(config, &mut inherited).await?;
        drop(inherited);
        podgate::proxy::handover::notify_ready();
        while let Signal::Reload = signals.next().await {
            // SIGHUP: a new process of this binary takes over the sockets; this one
            // drains. If the new one fails, this one keeps serving; SIGTERM meanwhile
            // abandons the handover (the new process is killed) and stops.
            let outcome = tokio::select! {
                r = hand_over(&handle) => Some(r),
                Signal::Stop = signals.stop() => None,
            };
            match outcome {
                Some(Ok(pid)) => {
                    tracing::info!(successor = pid, "handed over: draining");
                    break;
                }
                Some(Err(e)) => {
                    handle.resume_state_writes();
                    tracing::error!(error = %podgate::logging::causes(e.as_ref()), "handover failed: still serving");
                }
                None => {
                    handle.resume_state_writes();
                    break;
                }
            }
        }
        tracing::info!("shutting down");
        handle.shutdown().await;
        Ok(())
    })
}

/// Saves the state file and starts a successor on this proxy's sockets.
async fn hand_over(handle: &podgate::proxy::ProxyHandle) -> anyhow::Result<u32> {
    handle
        .save_state()
        .await
        .context("cannot write the state file")?;
    // From here the state file is the successor's: this process's writer stops (and
    // resumes if the handover fails).
    handle.stop_state_writes();
    let sockets = handle.sockets().context("cannot duplicate the sockets")?;
    Ok(podgate::proxy::handover::start_successor(sockets).await?)
}

/// What a signal asks the proxy to do.
enum Signal {
    /// SIGTERM or SIGINT: drain and exit.
    Stop,
    /// SIGHUP: hand over to a new process, then drain and exit.
    Reload,
}

/// The proxy's signal streams, made once: a signal that arrives while nobody waits is
/// kept for the next wait.
struct Signals {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal that asks for something.
    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.interrupt.recv() => Signal::Stop,
            _ = self.hangup.recv() => Signal::Reload,
        }
    }

    /// The next SIGTERM or SIGINT (a SIGHUP meanwhile is ignored: a handover runs).
    async fn stop(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.interrupt.recv() => Signal::Stop,
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// Every option and argument of every subcommand says what it is for.
    #[test]
    fn every_argument_has_help_text() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let command = super::Cli::command();
        command.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&command, "podgate", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }
}
