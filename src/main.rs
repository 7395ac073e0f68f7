//! The `podgate` binary: one executable, three roles (controller, proxy, demo).

use std::path::PathBuf;
use std::process::ExitCode;

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
    },
    /// Everything on one machine: two simulated clusters, backends, controller, proxy.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Controller { .. } | Command::Proxy { .. } | Command::Demo => {
            eprintln!("not implemented yet");
            ExitCode::from(2)
        }
    }
}
