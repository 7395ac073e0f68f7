//! The `podgate` binary: one executable, three roles (controller, proxy, demo).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "podgate",
    version,
    about = "Pod IPs from Kubernetes clusters straight into an L7 load balancer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Control plane: watch clusters, push pod IPs to the configured LBs.
    Controller {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Data plane: the built-in L7 proxy, driven by its admin API.
    Proxy {
        #[arg(short, long)]
        config: PathBuf,
        /// Worker threads; 1 runs everything on one thread (current_thread runtime).
        /// Default: one per CPU.
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Everything on one machine: two simulated clusters, backends, controller, proxy.
    Demo {
        /// Where the proxy serves plain HTTP (falls back to a free port if taken).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Exit after the scenario instead of serving until Ctrl-C.
        #[arg(long)]
        once: bool,
    },
    /// Run-time cluster weights, kept by the controller (globally or per application).
    Weights {
        #[command(subcommand)]
        action: WeightsAction,
    },
    /// Move an application's traffic to one cluster in steps; `--cancel` stops it.
    Migrate {
        /// The application: namespace/service.
        app: String,
        /// The cluster that receives the traffic.
        #[arg(long, required_unless_present = "cancel")]
        to: Option<String>,
        /// Percent of the traffic moved per step.
        #[arg(long, default_value_t = 10)]
        step: u32,
        /// Time between steps, e.g. 30s, 5m, 200ms.
        #[arg(long, default_value = "30s")]
        every: String,
        /// Stop the migration of `app` where it stands.
        #[arg(long, conflicts_with = "to")]
        cancel: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Where the controller's admin API is.
#[derive(clap::Args)]
struct AdminArgs {
    #[arg(
        long,
        env = "PODGATE_CONTROLLER",
        default_value = "http://127.0.0.1:9900"
    )]
    controller: String,
    /// File holding the admin bearer token (`admin.token_file` of the controller).
    #[arg(long, env = "PODGATE_TOKEN_FILE")]
    token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum WeightsAction {
    /// Show every cluster's weight, per-application weights and migrations.
    Get {
        /// Print the controller's JSON instead of a summary.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Set weights, e.g. `idc=20 tke=80` (a cluster not listed gets 0); with `--clear`
    /// instead, go back to the configuration (or, with `--app`, to the annotations).
    Set {
        #[arg(required_unless_present = "clear")]
        weights: Vec<String>,
        /// Only this application (namespace/service).
        #[arg(long)]
        app: Option<String>,
        #[arg(long, conflicts_with = "weights")]
        clear: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Proxy { config, workers } => run_proxy(&config, workers),
        Command::Controller { config } => run_controller(&config),
        Command::Demo { listen, once } => run_demo(listen, once),
        Command::Weights { action } => run_weights(action),
        Command::Migrate {
            app,
            to,
            step,
            every,
            cancel,
            admin,
        } => run_admin(&admin, |client| async move {
            match (cancel, to) {
                (true, _) => client.cancel_migration(&app).await,
                (false, to) => {
                    let to = to.unwrap_or_default();
                    client.migrate(&app, &to, step, &every).await
                }
            }
        }),
    }
}

fn run_weights(action: WeightsAction) -> ExitCode {
    match action {
        WeightsAction::Get { json, admin } => {
            run_admin_with(
                &admin,
                json,
                |client| async move { client.get_weights().await },
            )
        }
        WeightsAction::Set {
            weights,
            app,
            clear: _,
            admin,
        } => run_admin(&admin, |client| async move {
            client.set_weights(&weights, app.as_deref()).await
        }),
    }
}

fn run_admin<F, Fut>(admin: &AdminArgs, f: F) -> ExitCode
where
    F: FnOnce(podgate::cli::AdminClient) -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value, podgate::cli::CliError>>,
{
    run_admin_with(admin, false, f)
}

/// Runs one admin-API command: prints the resulting weights, or the error (exit 2 for
/// input the user can fix, 1 otherwise).
fn run_admin_with<F, Fut>(admin: &AdminArgs, json: bool, f: F) -> ExitCode
where
    F: FnOnce(podgate::cli::AdminClient) -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value, podgate::cli::CliError>>,
{
    let result = podgate::cli::AdminClient::new(&admin.controller, admin.token_file.as_deref())
        .map(|client| async move { f(client).await });
    let outcome = match result {
        Ok(fut) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(fut),
            Err(e) => {
                eprintln!("podgate: cannot start the runtime: {e}");
                return ExitCode::FAILURE;
            }
        },
        Err(e) => Err(e),
    };
    match outcome {
        Ok(view) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&view).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(view) => {
            print!("{}", podgate::cli::weights::render(&view));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("podgate: {e}");
            ExitCode::from(e.exit_code())
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
fn run_controller(path: &std::path::Path) -> ExitCode {
    let config = match podgate::controller::config::ControllerConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("podgate controller: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing();
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let options = podgate::controller::RunOptions {
                events: true,
                ..Default::default()
            };
            let controller = podgate::controller::start(&config, options).await?;
            tracing::info!(admin = %controller.admin_addr, "serving");
            shutdown_signal().await;
            Ok(())
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podgate controller: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_demo(listen: std::net::SocketAddr, once: bool) -> ExitCode {
    // The demo narrates on stdout; logs only for errors unless RUST_LOG asks for more.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error,kube_client=off"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let listen = match std::net::TcpListener::bind(listen) {
                Ok(_) => listen,
                Err(e) => {
                    eprintln!(
                        "podgate demo: {listen} is not free ({e}); using a free port instead"
                    );
                    std::net::SocketAddr::new(listen.ip(), 0)
                }
            };
            podgate::demo::run(listen, once)
                .await
                .map_err(anyhow::Error::from)
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podgate demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

/// Bad configuration exits with 2 and a message naming the field; a failure at run
/// time exits with 1.
fn run_proxy(path: &std::path::Path, workers: Option<usize>) -> ExitCode {
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
    init_tracing();
    match serve(config, workers) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podgate proxy: {e:#}");
            if e.downcast_ref::<podgate::proxy::ProxyError>()
                .is_some_and(|p| matches!(p, podgate::proxy::ProxyError::Config(_)))
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn serve(config: podgate::proxy::ProxyConfig, workers: Option<usize>) -> anyhow::Result<()> {
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
        let handle = podgate::proxy::start(config).await?;
        shutdown_signal().await;
        tracing::info!("shutting down");
        handle.shutdown().await;
        Ok(())
    })
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
