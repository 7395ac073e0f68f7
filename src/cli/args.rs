//! The `podgate weights` and `podgate migrate` command lines and their runners, so that
//! `main.rs` only dispatches. Prints the resulting weights, or the error with exit code
//! 2 for input the user can fix and 1 otherwise.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;

use super::{AdminClient, CliError};

/// Where the controller's admin API is.
#[derive(clap::Args)]
pub struct AdminArgs {
    /// The controller's admin API (`admin.listen`).
    #[arg(
        long,
        env = "PODGATE_CONTROLLER",
        default_value = "http://127.0.0.1:9900"
    )]
    pub(crate) controller: String,
    /// File holding the admin bearer token (`admin.token_file` of the controller).
    #[arg(long, env = "PODGATE_TOKEN_FILE")]
    pub(crate) token_file: Option<PathBuf>,
}

/// `podgate weights …`.
#[derive(clap::Subcommand)]
pub enum WeightsAction {
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
        /// `cluster=weight` pairs, e.g. `idc=20 tke=80`.
        #[arg(required_unless_present = "clear")]
        weights: Vec<String>,
        /// Only this application (namespace/service).
        #[arg(long)]
        app: Option<String>,
        /// Remove the run-time weights instead of setting them.
        #[arg(long, conflicts_with = "weights")]
        clear: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// `podgate migrate …`.
#[derive(clap::Args)]
pub struct MigrateArgs {
    /// The application: namespace/service.
    pub(crate) app: String,
    /// The cluster that receives the traffic.
    #[arg(long, required_unless_present_any = ["cancel", "pause", "resume"])]
    pub(crate) to: Option<String>,
    /// Percent of the traffic moved per step.
    #[arg(long, default_value_t = 10)]
    pub(crate) step: u32,
    /// Time between steps, e.g. 30s, 5m, 200ms.
    #[arg(long, default_value = "30s")]
    pub(crate) every: String,
    /// Stop the migration of `app` where it stands.
    #[arg(long, conflicts_with_all = ["to", "pause", "resume"])]
    pub(crate) cancel: bool,
    /// Pause the migration of `app` (it stays where it stands until resumed).
    #[arg(long, conflicts_with_all = ["to", "resume"])]
    pub(crate) pause: bool,
    /// Resume a paused migration of `app`.
    #[arg(long, conflicts_with = "to")]
    pub(crate) resume: bool,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

/// Runs `podgate weights …`.
pub fn run_weights(action: WeightsAction) -> ExitCode {
    match action {
        WeightsAction::Get { json, admin } => {
            run(
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
        } => run(&admin, false, |client| async move {
            client.set_weights(&weights, app.as_deref()).await
        }),
    }
}

/// Runs `podgate migrate …`.
pub fn run_migrate(args: MigrateArgs) -> ExitCode {
    let MigrateArgs {
        app,
        to,
        step,
        every,
        cancel,
        pause,
        resume,
        admin,
    } = args;
    run(&admin, false, |client| async move {
        if cancel {
            client.cancel_migration(&app).await
        } else if pause || resume {
            client.pause_migration(&app, pause).await
        } else {
            let to = to.unwrap_or_default();
            client.migrate(&app, &to, step, &every).await
        }
    })
}

fn run<F, Fut>(admin: &AdminArgs, json: bool, f: F) -> ExitCode
where
    F: FnOnce(AdminClient) -> Fut,
    Fut: Future<Output = Result<Value, CliError>>,
{
    let outcome = match AdminClient::new(&admin.controller, admin.token_file.as_deref()) {
        Ok(client) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(f(client)),
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
            print!("{}", super::weights::render(&view));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("podgate: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
