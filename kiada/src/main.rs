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
    /// Where the DNS lab sends its queries (the search list and ndots still come from
    /// resolv.conf) [default: resolv.conf's first nameserver, port 53]
    #[arg(long, env = "DNS_LAB_NAMESERVER", value_name = "IP:PORT")]
    nameserver: Option<std::net::SocketAddr>,
    /// The cluster's DNS domain, for the DNS lab's scope
    #[arg(
        long,
        env = "CLUSTER_DOMAIN",
        value_name = "DOMAIN",
        default_value = "cluster.local"
    )]
    cluster_domain: String,
    /// The port the quote pods listen on, which the check asks at their own addresses
    #[arg(
        long,
        env = "CHECK_POD_PORT",
        value_name = "PORT",
        default_value_t = 8080
    )]
    check_pod_port: u16,
    /// kiada's NodePort, which the check asks on this node's address
    #[arg(
        long,
        env = "CHECK_NODE_PORT",
        value_name = "PORT",
        default_value_t = 30080
    )]
    check_node_port: u16,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Test the chapter's claims in this cluster (asks this pod's running kiada, GET /lab/check)
    /// and print the report; exit status 0 when nothing failed, 1 when a claim failed
    Check {
        /// Claims or groups, comma-separated (names, variables, spread, headless, ready, vip,
        /// affinity, local, nodeport, canary, experiments, policy; dns, traffic, network, all)
        #[arg(long, value_name = "CLAIMS")]
        only: Option<String>,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
        /// The kiada to ask [default: http://127.0.0.1:<listen port>]
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
}

/// `kiada check`: asks the kiada of this pod for its report and prints it.
async fn check(url: &str, only: Option<&str>, json: bool) -> ExitCode {
    let client = reqwest::Client::builder()
        .timeout(kiada::labs::check::TIME_LIMIT + Duration::from_secs(10))
        .no_proxy()
        .build()
        .expect("an HTTP client without TLS always builds");
    let mut target = match reqwest::Url::parse(&format!("{}/lab/check", url.trim_end_matches('/')))
    {
        Ok(target) => target,
        Err(e) => {
            eprintln!("kiada check: '{url}' is not a URL: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(only) = only {
        target.query_pairs_mut().append_pair("only", only);
    }
    let request = client.get(target).header("accept", "application/json");
    let res = match request.send().await {
        Ok(res) => res,
        Err(e) => {
            eprintln!("kiada check: cannot ask {url}: {e} (is kiada running in this pod?)");
            return ExitCode::from(2);
        }
    };
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    if !status.is_success() {
        eprintln!("kiada check: {url} answered {status}: {}", body.trim());
        return ExitCode::from(2);
    }
    let report: kiada::labs::check::Report = match serde_json::from_str(&body) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("kiada check: {url} answered something that is not a report: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        println!("{body}");
    } else {
        print!("{}", report.text());
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
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
    if let Some(Command::Check { only, json, url }) = &cli.command {
        let url = url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", cli.server.listen_port));
        return check(&url, only.as_deref(), *json).await;
    }
    let _logs = kit::telemetry::init(cli.server.log_format);
    let status = kiada::Status::new(&cli.initial_status_message);
    status.follow_stdin();
    let identity = cli.identity.resolve();
    let dns_names = kiada::labs::dns::Names {
        scope: cli.dns_lab_scope,
        namespace: identity.pod_namespace.clone(),
        cluster_domain: cli.cluster_domain.clone(),
    };
    let quote = discovery::discover(
        service_env(cli.quote_url, "QUOTE"),
        "/quote",
        "http://quote/quote",
    );
    let quiz = discovery::discover(service_env(cli.quiz_url, "QUIZ"), "", "http://quiz");
    let mut check = kiada::labs::check::Targets::new(&quote.url, &quiz.url);
    if let Some(name) = &check.quote {
        // The variables Kubernetes would inject for that Service, as this process got them.
        let prefix = kiada::labs::check::Targets::env_prefix(name);
        check.service_host = std::env::var(format!("{prefix}_SERVICE_HOST")).ok();
        check.service_port_env = std::env::var(format!("{prefix}_SERVICE_PORT")).ok();
        let link = format!("{prefix}_PORT_");
        check.declared_ports = std::env::vars()
            .filter(|(k, _)| k.starts_with(&link) && k.ends_with("_TCP_PORT"))
            .filter_map(|(_, v)| v.parse().ok())
            .collect();
    }
    check.pod_port = cli.check_pod_port;
    check.node_port = cli.check_node_port;
    check.namespace = identity.pod_namespace.clone();
    check.node_name = identity.node_name.clone();
    check.node_ip = identity.node_ip.parse().ok();
    check.cluster_domain = cli.cluster_domain.clone();
    let config = kiada::Config {
        server: cli.server,
        identity,
        quote,
        quiz,
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
        check: Some(check),
        dns_names,
        dns_nameserver: cli.nameserver,
        extra_routes: None,
        pods_section: false,
    };
    kit::main_with(kiada::build(config)).await
}
