//! The whole suite in one process, as a little cluster: for each of kiada, quiz and quote a
//! Deployment of instances (three quotes by default, as the manifests have) behind a balancer
//! that stands in for its ClusterIP Service and kube-proxy (a random ready endpoint per new
//! connection, readiness probed every second, refused while none is ready), a cluster DNS for
//! the DNS lab, and on kiada's port the routes that show and change the pods: `GET /lab/pods`,
//! `DELETE /lab/pods/NAME`, `POST /lab/rollout?service=NAME`.
//!
//! - `cluster`: the Deployments, their instances, rollouts and deletions;
//! - `dns`: the cluster DNS; `pods`: every pod at a glance; `routes`: the suite's routes;
//! - `logs`: the terminal for state changes, a file for the request lines.

pub mod cluster;
pub mod dns;
pub mod logs;
pub mod pods;
mod routes;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use balancer::{Balancer, Listener, Mode, Options, Probe};

pub use cluster::{Cluster, ControlError, Deployment, Instance, Service};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{pod}: {source}")]
    Quote {
        pod: String,
        source: quote_service::StartError,
    },
    #[error("{pod}: {source}")]
    Quiz {
        pod: String,
        source: quiz::StartError,
    },
    #[error("{pod}: {source}")]
    Kiada {
        pod: String,
        source: kiada::StartError,
    },
    #[error("the {service} Service's port: {source}")]
    Listen {
        service: &'static str,
        source: kit::Error,
    },
    #[error(transparent)]
    Dns(#[from] dns::DnsError),
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--reset: {0}")]
    Reset(quiz::StoreError),
    #[error("kiada's self-signed certificate: {0}")]
    Certificate(String),
    #[error("no admin port left for another {service} instance")]
    NoSlot { service: &'static str },
    #[error("the suite is shutting down")]
    ShuttingDown,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// kiada's Service: the balancer in front of the kiada instances.
    pub kiada_port: u16,
    /// `None`: kiada serves HTTP only.
    pub kiada_tls_port: Option<u16>,
    pub quote_port: u16,
    pub quiz_port: u16,
    pub quote_replicas: usize,
    pub quiz_replicas: usize,
    pub kiada_replicas: usize,
    /// Holds the quiz database, `quiz.db`, kiada's certificate and the pods' `resolv.conf`;
    /// created if missing.
    pub data_dir: PathBuf,
    pub shutdown_delay: Duration,
    /// How each balancer picks an endpoint for a new connection.
    pub balance: Mode,
    /// The readiness probe every balancer asks its endpoints.
    pub probe: Probe,
    /// The first admin port; each instance's is fixed by its slot. 0: free ports.
    pub admin_ports_from: u16,
    /// The cluster DNS's port on 127.0.0.1 (UDP and TCP); 0 picks a free one.
    pub dns_port: u16,
    /// Empty the quiz answers of `quiz.db` before starting.
    pub reset: bool,
}

impl Config {
    /// Free ports everywhere, HTTP only, the manifests' three quotes, one quiz and one kiada.
    pub fn local(data_dir: &Path) -> Config {
        Config {
            kiada_port: 0,
            kiada_tls_port: None,
            quote_port: 0,
            quiz_port: 0,
            quote_replicas: 3,
            quiz_replicas: 1,
            kiada_replicas: 1,
            data_dir: data_dir.to_owned(),
            shutdown_delay: DEFAULT_SHUTDOWN_DELAY,
            balance: Mode::Random,
            probe: Probe::default(),
            admin_ports_from: 0,
            dns_port: 0,
            reset: false,
        }
    }

    fn replicas(&self, service: Service) -> usize {
        let n = match service {
            Service::Quote => self.quote_replicas,
            Service::Quiz => self.quiz_replicas,
            Service::Kiada => self.kiada_replicas,
        };
        n.clamp(1, service.max_replicas())
    }
}

/// Longer than the balancers' probe period (1 s), so that a terminating instance is out of its
/// Service before it stops listening: what a pod's shutdown delay is for.
pub const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::from_secs(2);

/// Every part of the suite, serving.
pub struct Suite {
    cluster: Arc<Cluster>,
    _dns: dns::ClusterDns,
    pub db_path: PathBuf,
}

/// Binds every listener before anything serves: a port already in use stops the start with
/// the port's name, and no part is left running.
pub async fn start(config: &Config) -> Result<Suite, Error> {
    let data = &config.data_dir;
    std::fs::create_dir_all(data).map_err(|source| Error::File {
        path: data.clone(),
        source,
    })?;
    let listen = |service: &'static str, port: u16| {
        Listener::bind(port).map_err(|source| Error::Listen { service, source })
    };
    let mut kiada_listener = Some(listen("kiada", config.kiada_port)?);
    let mut kiada_tls_listener = match config.kiada_tls_port {
        Some(port) => Some(listen("kiada HTTPS", port)?),
        None => None,
    };
    let mut quote_listener = Some(listen("quote", config.quote_port)?);
    let mut quiz_listener = Some(listen("quiz", config.quiz_port)?);
    let port_of = |l: &Option<Listener>| l.as_ref().map_or(0, |l| l.addr().port());
    let dns_sockets = dns::Sockets::bind(config.dns_port)?;
    let dns_addr = dns_sockets.addr();

    let db_path = data.join("quiz.db");
    if config.reset {
        let cleared = quiz::store::sqlite::clear_answers(&db_path).map_err(Error::Reset)?;
        tracing::info!(db = %db_path.display(), answers = cleared, "--reset: quiz answers emptied");
    }
    let resolv_conf = write_resolv_conf(data)?;
    let tls = match config.kiada_tls_port {
        Some(_) => Some(certificate(data)?),
        None => None,
    };

    let registry: routes::Registry = Arc::new(OnceLock::new());
    let ctx = Arc::new(cluster::Context {
        db_path: db_path.clone(),
        quote_url: format!("http://127.0.0.1:{}/quote", port_of(&quote_listener)),
        quiz_url: format!("http://127.0.0.1:{}", port_of(&quiz_listener)),
        tls,
        resolv_conf,
        nameserver: Some(dns_addr),
        extra_routes: routes::router(registry.clone()),
        shutdown_delay: config.shutdown_delay,
        admin_ports_from: config.admin_ports_from,
        endpoint_lag: config.probe.period * config.probe.failure_threshold.max(1)
            + config.probe.timeout,
    });

    // Every instance bound (a taken admin port stops the start here), none serving yet.
    let mut built = Vec::new();
    for service in [Service::Quote, Service::Quiz, Service::Kiada] {
        let mut apps = Vec::new();
        for number in 1..=config.replicas(service) {
            let slot = (number - 1) as u16;
            let name = format!("{}-{number}", service.name());
            let app = cluster::build(service, &name, slot, &ctx).await?;
            apps.push((app, name, slot));
        }
        built.push((service, apps));
    }

    // Everything is bound; now serve.
    let options = |service: &str| Options {
        mode: config.balance,
        probe: Some(config.probe.clone()),
        service: service.to_owned(),
    };
    let mut deployments = Vec::new();
    for (service, apps) in built {
        let instances: Vec<Arc<Instance>> = apps
            .into_iter()
            .map(|(app, name, slot)| Instance::serve(app, name, service, slot))
            .collect();
        let endpoints = |tls: bool| instances.iter().filter_map(|i| i.endpoint(tls)).collect();
        let (listener, tls_listener) = match service {
            Service::Quote => (quote_listener.take(), None),
            Service::Quiz => (quiz_listener.take(), None),
            Service::Kiada => (kiada_listener.take(), kiada_tls_listener.take()),
        };
        let listener = listener.expect("each Service's listener is taken once");
        let balancer = Balancer::serve(listener, endpoints(false), options(service.name()));
        let https = format!("{} HTTPS", service.name());
        let tls_balancer =
            tls_listener.map(|l| Balancer::serve(l, endpoints(true), options(&https)));
        deployments.push(Arc::new(Deployment::new(
            service,
            balancer,
            tls_balancer,
            ctx.clone(),
            instances,
        )));
    }
    // Listed as people meet them: kiada, quiz, quote.
    deployments.sort_by_key(|d| Service::ALL.iter().position(|s| *s == d.service));
    let cluster = Arc::new(Cluster::new(deployments, dns_addr, config.balance));
    let _ = registry.set(Arc::downgrade(&cluster));
    let zone = Arc::downgrade(&cluster);
    let dns = dns::ClusterDns::serve(
        dns_sockets,
        Arc::new(move || zone.upgrade().map(|c| c.zone_records()).unwrap_or_default()),
    )?;
    Ok(Suite {
        cluster,
        _dns: dns,
        db_path,
    })
}

/// The `resolv.conf` a pod in namespace `kiada` gets from the kubelet (`dnsPolicy:
/// ClusterFirst`), naming the suite's cluster DNS; kiada's DNS lab reads its search list and
/// ndots, and sends its queries to the DNS's port (`--nameserver`).
fn write_resolv_conf(data: &Path) -> Result<PathBuf, Error> {
    let path = data.join("resolv.conf");
    let ns = dns::NAMESPACE;
    let domain = dns::CLUSTER_DOMAIN;
    let text = format!(
        "# What a pod in namespace {ns} gets from the kubelet (dnsPolicy: ClusterFirst), here\n\
         # naming the suite's cluster DNS; written by the suite at every start.\n\
         search {ns}.svc.{domain} svc.{domain} {domain}\n\
         nameserver {}\n\
         options ndots:5\n",
        Ipv4Addr::LOCALHOST
    );
    std::fs::write(&path, text).map_err(|source| Error::File {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// One self-signed certificate for every kiada instance, kept in the data directory (unless
/// one is there already), so that a browser that accepted it once accepts every replica.
fn certificate(data: &Path) -> Result<(PathBuf, PathBuf), Error> {
    let (cert, key) = (data.join("tls.crt"), data.join("tls.key"));
    if cert.exists() || key.exists() {
        return Ok((cert, key));
    }
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let made =
        rcgen::generate_simple_self_signed(names).map_err(|e| Error::Certificate(e.to_string()))?;
    let write = |path: &Path, text: String, private: bool| {
        use std::io::Write;
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        if private {
            options.mode(0o600);
        }
        let _ = private;
        options
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|source| Error::File {
                path: path.to_owned(),
                source,
            })
    };
    write(&key, made.signing_key.serialize_pem(), true)?;
    write(&cert, made.cert.pem(), false)?;
    tracing::info!(cert = %cert.display(), "made a self-signed certificate for kiada");
    Ok((cert, key))
}

impl Suite {
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    pub fn deployment(&self, service: Service) -> &Arc<Deployment> {
        self.cluster.deployment(service)
    }

    /// kiada's Service: `http://127.0.0.1:PORT`.
    pub fn kiada_url(&self) -> String {
        self.deployment(Service::Kiada).balancer.url()
    }

    /// An instance by name, if it runs.
    pub fn instance(&self, name: &str) -> Option<Arc<Instance>> {
        self.cluster.instance(name)
    }

    pub fn dns_addr(&self) -> SocketAddr {
        self.cluster.dns_addr
    }

    /// What to open and what to try, printed at start. `access_log`: where the request lines
    /// go (`None`: the terminal).
    pub fn banner(&self, access_log: Option<&Path>) -> String {
        let kiada = self.deployment(Service::Kiada);
        let quote = self.deployment(Service::Quote);
        let quiz = self.deployment(Service::Quiz);
        let port = |d: &Deployment| d.balancer.addr().port();
        let k = port(kiada);
        let pods = |d: &Deployment| match d.replicas {
            1 => "1 pod".to_owned(),
            n => format!("{n} pods"),
        };
        let how = match self.cluster.mode {
            Mode::Random => "a random ready pod per connection, as kube-proxy's iptables mode",
            Mode::RoundRobin => "ready pods in turn per connection, as IPVS's round robin",
        };
        let mut out =
            String::from("\nThe Kiada suite is running: a little cluster in one process.\n\n");
        out += &format!("  kiada  http://localhost:{k}");
        if let Some(tls) = &kiada.tls_balancer {
            out += &format!("  https://localhost:{}", tls.addr().port());
        }
        out += &format!("   {}\n", pods(kiada));
        out += &format!(
            "  quote  http://localhost:{}   {}\n",
            port(quote),
            pods(quote)
        );
        out += &format!(
            "  quiz   http://localhost:{}   {}, answers in {}\n",
            port(quiz),
            pods(quiz),
            self.db_path.display()
        );
        out += &format!(
            "  Each Service is a balancer ({how}; readiness probed every second; refused \
             while no pod is ready).\n\n  pods:\n"
        );
        for service in Service::ALL {
            for i in self.deployment(service).instances() {
                out += &format!(
                    "    {:<9} admin {}   pod IP {}\n",
                    i.name,
                    i.admin_url(),
                    i.pod_ip
                );
            }
        }
        let dns = self.dns_addr();
        out += &format!(
            "\n  cluster DNS  {dns} (cluster.local, namespace kiada), used by the DNS lab: \
             dig @{} -p {} quote-headless.kiada.svc.cluster.local\n",
            dns.ip(),
            dns.port()
        );
        match access_log {
            Some(path) => {
                out += &format!(
                    "  request lines go to {} (--access-log - shows them here)\n",
                    path.display()
                )
            }
            None => out += "  request lines are shown here\n",
        }
        let lab = quote
            .instances()
            .into_iter()
            .nth(1)
            .or_else(|| quote.instances().into_iter().next());
        out += &format!(
            "\nTry:\n  open http://localhost:{k}/lab                  the labs, every pod at a glance\n  \
             curl localhost:{k}/lab/pods\n  \
             curl 'localhost:{k}/lab/spread?service=quote&n=20&connection=new'\n  \
             curl -N 'localhost:{k}/lab/watch?service=quote&interval_ms=250&duration_s=60'   # keep it running, then in another terminal:\n"
        );
        if let Some(pod) = lab {
            out += &format!(
                "  curl -X POST {}/healthz/ready/disable   # {} leaves the watch; /enable brings it back\n",
                pod.admin_url(),
                pod.name
            );
        }
        out += &format!(
            "  curl -X POST 'localhost:{k}/lab/rollout?service=quote'   # a rolling update under the watch: Failures: none\n  \
             curl -X DELETE localhost:{k}/lab/pods/quote-1              # its Deployment replaces it\n  \
             curl 'localhost:{k}/lab/dns?name=quote-headless'           # a headless Service, in the suite's DNS\n  \
             curl -X POST localhost:{k}/question/1/answers/0\n\nPress Ctrl-C to stop.\n"
        );
        out
    }

    /// Shuts every part down as on SIGTERM, all at once.
    pub async fn stop(self) {
        let stops: Vec<_> = self
            .cluster
            .deployments()
            .iter()
            .map(|d| {
                let d = d.clone();
                tokio::spawn(async move { d.stop().await })
            })
            .collect();
        for stop in stops {
            let _ = stop.await;
        }
    }
}
