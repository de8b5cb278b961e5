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
        Command::Debug(args) => match debug(&args) {
            Ok(text) => {
                print!("{text}");
                std::process::ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                std::process::ExitCode::FAILURE
            }
        },
        Command::ConfigReference => {
            print!("{}", kiro_gateway::config_reference::markdown());
            std::process::ExitCode::SUCCESS
        }
    }
}

fn debug(args: &kiro_gateway::config::DebugArgs) -> Result<String, String> {
    use kiro_gateway::config::DebugAction;
    use kiro_gateway::debug::store;
    match &args.action {
        DebugAction::List => Ok(store::format_list(&store::list(&args.debug_dir)?)),
        DebugAction::Show { id } => {
            let path = store::find(&args.debug_dir, id)?;
            std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read `{}`: {e}", path.display()))
        }
    }
}
