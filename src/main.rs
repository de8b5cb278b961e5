//! The `kiro-gateway` binary: parse the command line, set up logging, run.

use clap::Parser;
use kiro_gateway::config::{Cli, Command};

// glibc malloc showed up as about a sixth of the gateway's CPU under load (many small, short-lived
// buffers per streamed delta); mimalloc's thread-local free lists make those cheap. The
// `system-allocator` feature keeps glibc's, for heap profilers that hook malloc (heaptrack).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // A missing .env is normal; a broken one is worth saying.
    if let Err(error) = dotenvy::dotenv() {
        if !error.not_found() {
            eprintln!("warning: could not read .env: {error}");
        }
    }
    let cli = Cli::parse();
    let tenancy_command =
        |run: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>>>>| {
            // Logs go to stderr: stdout carries the command's answer (JSON, codes to type).
            kiro_gateway::logging::init_with_writer(
                "warn",
                kiro_gateway::config::LogFormat::Text,
                std::io::stderr,
            );
            let result = tokio::runtime::Runtime::new()
                .map_err(|e| format!("could not start the async runtime: {e}"))
                .and_then(|runtime| runtime.block_on(run));
            match result {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {error}");
                    std::process::ExitCode::FAILURE
                }
            }
        };
    match cli.command {
        Command::AdminKey(command) => {
            tenancy_command(Box::pin(kiro_gateway::tenancy::cli::admin_key(command)))
        }
        Command::Account(command) => {
            tenancy_command(Box::pin(kiro_gateway::tenancy::cli::account(command)))
        }
        Command::User(command) => {
            tenancy_command(Box::pin(kiro_gateway::tenancy::cli::user(command)))
        }
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
