//! Runs the fake Kiro upstream on a local port, for manual testing and demos.
//!
//! ```text
//! cargo run --example fake_kiro -- --port 8001
//! ```
//!
//! Point the gateway's refresh and API URLs at the printed address and use the printed refresh
//! token. Put `[fake:tool_call]`, `[fake:status:429]`, `[fake:cut_stream]`… in a user message to
//! choose a scripted answer.

use std::net::SocketAddr;

use clap::Parser;
use kiro_gateway::fake_kiro::{self, Chunking, FakeKiroConfig};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(about = "A fake Kiro upstream speaking the real wire format")]
struct Args {
    /// Port to listen on (127.0.0.1).
    #[arg(long, default_value_t = 8001)]
    port: u16,
    /// Send each frame whole instead of splitting at awkward byte boundaries.
    #[arg(long)]
    whole_frames: bool,
    /// Do not require a profileArn in chat requests.
    #[arg(long)]
    no_profile_arn: bool,
    /// Answer every chat request at once with one pre-encoded body of N text deltas (load tests).
    #[arg(long)]
    precomputed: Option<usize>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let mut config = FakeKiroConfig::default();
    if args.whole_frames {
        config.chunking = Chunking::Whole;
    }
    config.rules.require_profile_arn = !args.no_profile_arn;
    if let Some(deltas) = args.precomputed {
        config.precomputed_deltas = Some(deltas);
        config.chunking = Chunking::Whole;
    }
    let refresh_token = config.refresh_token.clone();
    let client_id = config.oidc_client_id.clone();
    let client_secret = config.oidc_client_secret.clone();
    let fake = fake_kiro::start_on(config, SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    let url = fake.base_url();
    // These are the fake's own throwaway credentials, printed so a user can paste them.
    println!("fake Kiro listening on {url}");
    println!("  desktop refresh:  POST {url}/refreshToken");
    println!("  OIDC refresh:     POST {url}/token  (clientId {client_id}, clientSecret {client_secret})");
    println!("  models:           GET  {url}/ListAvailableModels?origin=AI_EDITOR");
    println!("  chat:             POST {url}/generateAssistantResponse");
    println!("refresh token: {refresh_token}");
    println!("access token (valid 1 h): {}", fake.issue_access_token());
    tokio::signal::ctrl_c().await?;
    println!("stopping");
    Ok(())
}
