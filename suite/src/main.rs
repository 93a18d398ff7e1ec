use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The whole Kiada suite in one process, as a little cluster: kiada, quiz and quote each as a
/// Deployment of instances behind a local stand-in for its ClusterIP Service, and a cluster DNS.
#[derive(Parser)]
#[command(name = "suite", version)]
struct Cli {
    /// kiada's Service port (its instances listen on ports of their own behind it)
    #[arg(long, env = "KIADA_LISTEN_PORT", default_value_t = 8080)]
    kiada_port: u16,
    /// kiada's HTTPS Service port
    #[arg(long, env = "KIADA_TLS_PORT", default_value_t = 8443)]
    kiada_tls_port: u16,
    /// Serve kiada over HTTP only
    #[arg(long, env = "NO_TLS")]
    no_tls: bool,
    /// quote's Service port
    #[arg(long, env = "QUOTE_LISTEN_PORT", default_value_t = 8081)]
    quote_port: u16,
    /// quiz's Service port
    #[arg(long, env = "QUIZ_LISTEN_PORT", default_value_t = 8082)]
    quiz_port: u16,
    /// Number of quote instances (quote-1, quote-2, …)
    #[arg(long, env = "QUOTE_REPLICAS", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=20))]
    quote_replicas: u16,
    /// Number of quiz instances, sharing the database
    #[arg(long, env = "QUIZ_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=5))]
    quiz_replicas: u16,
    /// Number of kiada instances
    #[arg(long, env = "KIADA_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=5))]
    kiada_replicas: u16,
    /// How a Service picks a ready pod for each new connection: at random, as kube-proxy's
    /// iptables mode, or in turn, as IPVS's default
    #[arg(long, env = "BALANCE", value_enum, default_value_t = Balance::Random)]
    balance: Balance,
    /// The first admin port: kiada-N gets FROM+N-1, quiz-N FROM+10+N-1, quote-N FROM+20+N-1
    /// (0: free ports)
    #[arg(long, env = "ADMIN_PORTS_FROM", value_name = "PORT", default_value_t = 9901, value_parser = clap::value_parser!(u16).range(0..=65475))]
    admin_ports_from: u16,
    /// The cluster DNS's port on 127.0.0.1, UDP and TCP (0: a free one)
    #[arg(long, env = "DNS_LISTEN_PORT", default_value_t = 0)]
    dns_port: u16,
    /// Directory of the quiz database (quiz.db), kiada's certificate and the pods' resolv.conf;
    /// created if missing
    #[arg(long, env = "DATA_DIR", value_name = "PATH", default_value = "data")]
    data_dir: PathBuf,
    /// Where request lines go, appended; - for the terminal [default: <data-dir>/access.log]
    #[arg(long, env = "ACCESS_LOG", value_name = "PATH")]
    access_log: Option<PathBuf>,
    /// Empty the quiz answers of the database before starting
    #[arg(long, env = "RESET")]
    reset: bool,
    /// Seconds each instance keeps serving after SIGTERM (a rollout, a deletion, Ctrl-C)
    #[arg(long, env = "SHUTDOWN_DELAY", value_name = "SECONDS", default_value = "2", value_parser = kit::config::parse_seconds)]
    shutdown_delay: std::time::Duration,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Balance {
    Random,
    RoundRobin,
}

#[global_allocator]
static ALLOCATOR: kit::Allocator = kit::Allocator;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let access_log = match cli.access_log {
        Some(path) if path.as_os_str() == "-" => None,
        Some(path) => Some(path),
        None => Some(cli.data_dir.join("access.log")),
    };
    if let Err(e) = suite::logs::init(access_log.as_deref()) {
        eprintln!("cannot start the suite: {e}");
        return ExitCode::FAILURE;
    }
    let config = suite::Config {
        kiada_port: cli.kiada_port,
        kiada_tls_port: (!cli.no_tls).then_some(cli.kiada_tls_port),
        quote_port: cli.quote_port,
        quiz_port: cli.quiz_port,
        quote_replicas: cli.quote_replicas.into(),
        quiz_replicas: cli.quiz_replicas.into(),
        kiada_replicas: cli.kiada_replicas.into(),
        balance: match cli.balance {
            Balance::Random => balancer::Mode::Random,
            Balance::RoundRobin => balancer::Mode::RoundRobin,
        },
        admin_ports_from: cli.admin_ports_from,
        dns_port: cli.dns_port,
        reset: cli.reset,
        shutdown_delay: cli.shutdown_delay,
        ..suite::Config::local(&cli.data_dir)
    };
    let suite = match suite::start(&config).await {
        Ok(suite) => suite,
        Err(err) => {
            tracing::error!("cannot start the suite: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", suite.banner(access_log.as_deref()));
    kit::shutdown_signal().await;
    suite.stop().await;
    ExitCode::SUCCESS
}
