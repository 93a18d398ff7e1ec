use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kiada::ServiceEnv;
use kiada::backends::discovery;

/// kiada, the front end: text and HTML pages over the quote and quiz services.
#[derive(Parser)]
#[command(name = "kiada", version)]
struct Cli {
    #[command(flatten)]
    server: kit::ServerConfig,
    #[command(flatten)]
    identity: kit::IdentityArgs,
    /// Full URL of the quote endpoint [default: from QUOTE_SERVICE_HOST/PORT, else http://quote/quote]
    #[arg(long, env = "QUOTE_URL", value_name = "URL")]
    quote_url: Option<String>,
    /// Base URL of the quiz service [default: from QUIZ_SERVICE_HOST/PORT, else http://quiz]
    #[arg(long, env = "QUIZ_URL", value_name = "URL")]
    quiz_url: Option<String>,
    /// Seconds each backend call may take before the page shows a timeout
    #[arg(long, env = "BACKEND_TIMEOUT", value_name = "SECONDS", default_value = "2", value_parser = kit::config::parse_seconds)]
    backend_timeout: Duration,
    /// Milliseconds an idle backend connection is kept for reuse (0: a new connection per call)
    #[arg(
        long,
        env = "BACKEND_POOL_IDLE_MS",
        value_name = "MS",
        default_value_t = 1000
    )]
    backend_pool_idle_ms: u64,
    /// Status message shown on the pages until a line on stdin replaces it
    #[arg(long, env = "INITIAL_STATUS_MESSAGE", value_name = "TEXT", default_value = kiada::page::status::DEFAULT)]
    initial_status_message: String,
    /// HTTPS port (0 picks a free port)
    #[arg(long, env = "TLS_PORT", default_value_t = 8443)]
    tls_port: u16,
    /// Serve HTTP only
    #[arg(long, env = "NO_TLS")]
    no_tls: bool,
    /// PEM certificate chain for HTTPS; a self-signed one is made when neither file exists
    #[arg(
        long,
        env = "TLS_CERT_FILE",
        value_name = "PATH",
        default_value = "/etc/kiada/tls/tls.crt"
    )]
    tls_cert: PathBuf,
    /// PEM private key for HTTPS
    #[arg(
        long,
        env = "TLS_KEY_FILE",
        value_name = "PATH",
        default_value = "/etc/kiada/tls/tls.key"
    )]
    tls_key: PathBuf,
    /// Pod address ranges, comma-separated (IPv4 and IPv6), to say what the client IP is
    #[arg(long, env = "POD_CIDRS", value_name = "CIDRS")]
    pod_cidrs: Option<kiada::page::client_ip::Cidrs>,
    /// Node address ranges, comma-separated (IPv4 and IPv6), to say what the client IP is
    #[arg(long, env = "NODE_CIDRS", value_name = "CIDRS")]
    node_cidrs: Option<kiada::page::client_ip::Cidrs>,
    /// Resolver configuration the DNS lab (/lab/dns) reads
    #[arg(long, env = "RESOLV_CONF", value_name = "PATH", default_value = kiada::labs::dns::RESOLV_CONF)]
    resolv_conf: PathBuf,
    /// Names the DNS lab may look up: any, the cluster domain's, or only this pod's namespace's
    #[arg(long, env = "DNS_LAB_SCOPE", value_enum, default_value_t = kiada::labs::dns::Scope::Any)]
    dns_lab_scope: kiada::labs::dns::Scope,
    /// The cluster's DNS domain, for the DNS lab's scope
    #[arg(
        long,
        env = "CLUSTER_DOMAIN",
        value_name = "DOMAIN",
        default_value = "cluster.local"
    )]
    cluster_domain: String,
}

/// What Kubernetes injects for a Service that existed when the pod started.
fn service_env(url: Option<String>, name: &str) -> ServiceEnv {
    ServiceEnv {
        url,
        service_host: std::env::var(format!("{name}_SERVICE_HOST")).ok(),
        service_port: std::env::var(format!("{name}_SERVICE_PORT")).ok(),
    }
}

#[global_allocator]
static ALLOCATOR: kit::Allocator = kit::Allocator;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _logs = kit::telemetry::init(cli.server.log_format);
    let status = kiada::Status::new(&cli.initial_status_message);
    status.follow_stdin();
    let identity = cli.identity.resolve();
    let dns_names = kiada::labs::dns::Names {
        scope: cli.dns_lab_scope,
        namespace: identity.pod_namespace.clone(),
        cluster_domain: cli.cluster_domain,
    };
    let config = kiada::Config {
        server: cli.server,
        identity,
        quote: discovery::discover(
            service_env(cli.quote_url, "QUOTE"),
            "/quote",
            "http://quote/quote",
        ),
        quiz: discovery::discover(service_env(cli.quiz_url, "QUIZ"), "", "http://quiz"),
        backend_timeout: cli.backend_timeout,
        backend_pool_idle: Duration::from_millis(cli.backend_pool_idle_ms),
        status,
        tls: (!cli.no_tls).then_some(kiada::TlsConfig {
            port: cli.tls_port,
            cert: cli.tls_cert,
            key: cli.tls_key,
        }),
        resolver: None,
        networks: kiada::page::client_ip::Networks {
            pods: cli.pod_cidrs.unwrap_or_default().0,
            nodes: cli.node_cidrs.unwrap_or_default().0,
        },
        resolv_conf: cli.resolv_conf,
        dns_names,
    };
    kit::main_with(kiada::build(config)).await
}
