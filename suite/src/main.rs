use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The whole Kiada suite in one process: kiada, quiz, and quote behind a local stand-in for a
/// ClusterIP Service.
#[derive(Parser)]
#[command(name = "suite", version)]
struct Cli {
    /// kiada's HTTP port
    #[arg(long, env = "KIADA_LISTEN_PORT", default_value_t = 8080)]
    kiada_port: u16,
    /// kiada's HTTPS port
    #[arg(long, env = "KIADA_TLS_PORT", default_value_t = 8443)]
    kiada_tls_port: u16,
    /// Serve kiada over HTTP only
    #[arg(long, env = "NO_TLS")]
    no_tls: bool,
    /// Port of the balancer in front of the quote instances
    #[arg(long, env = "QUOTE_LISTEN_PORT", default_value_t = 8081)]
    quote_port: u16,
    /// quiz's port
    #[arg(long, env = "QUIZ_LISTEN_PORT", default_value_t = 8082)]
    quiz_port: u16,
    /// Number of quote instances (quote-1, quote-2, …) behind the balancer
    #[arg(long, env = "QUOTE_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=20))]
    quote_replicas: u16,
    /// Directory of the quiz database (quiz.db); created if missing
    #[arg(long, env = "DATA_DIR", value_name = "PATH", default_value = "data")]
    data_dir: PathBuf,
    /// Seconds each service keeps serving after Ctrl-C
    #[arg(long, env = "SHUTDOWN_DELAY", value_name = "SECONDS", default_value = "1", value_parser = kit::config::parse_seconds)]
    shutdown_delay: std::time::Duration,
}

#[global_allocator]
static ALLOCATOR: kit::Allocator = kit::Allocator;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _logs = kit::telemetry::init(kit::LogFormat::Text);
    let config = suite::Config {
        kiada_port: cli.kiada_port,
        kiada_tls_port: (!cli.no_tls).then_some(cli.kiada_tls_port),
        quote_port: cli.quote_port,
        quiz_port: cli.quiz_port,
        quote_replicas: cli.quote_replicas.into(),
        data_dir: cli.data_dir,
        shutdown_delay: cli.shutdown_delay,
    };
    let suite = match suite::start(&config).await {
        Ok(suite) => suite,
        Err(err) => {
            tracing::error!("cannot start the suite: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", suite.banner());
    kit::shutdown_signal().await;
    suite.stop().await;
    ExitCode::SUCCESS
}
