//! The `kiro-gateway` binary: parse the command line, set up logging, run.

use clap::Parser;
use kiro_gateway::config::{Cli, Command};

fn main() -> std::process::ExitCode {
    // A missing .env is normal; a broken one is worth saying.
    if let Err(error) = dotenvy::dotenv() {
        if !error.not_found() {
            eprintln!("warning: could not read .env: {error}");
        }
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            kiro_gateway::logging::init(&args.log_level, args.log_format);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("error: could not start the async runtime: {error}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            match runtime.block_on(kiro_gateway::app::run(*args)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error}");
                    eprintln!("error: {error}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}
