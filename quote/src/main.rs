use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The quote service: answers GET /quote with a random Kubernetes tip.
#[derive(Parser)]
#[command(name = "quote", version)]
struct Cli {
    #[command(flatten)]
    server: kit::ServerConfig,
    #[command(flatten)]
    identity: kit::IdentityArgs,
    /// Replace the bundled tips with this file (tips separated by lines holding only %); it is
    /// re-read when it changes
    #[arg(long, env = "QUOTES_FILE", value_name = "PATH")]
    quotes_file: Option<PathBuf>,
}

#[global_allocator]
static ALLOCATOR: kit::Allocator = kit::Allocator;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _logs = kit::telemetry::init(cli.server.log_format);
    let config = quote_service::Config {
        server: cli.server,
        identity: cli.identity.resolve(),
        quotes_file: cli.quotes_file,
        reload_interval: quote_service::tips::RELOAD_INTERVAL,
    };
    kit::main_with(quote_service::build(config)).await
}
