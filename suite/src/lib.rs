//! The whole suite in one process: kiada, quiz, and N quote instances behind the shared
//! per-connection round-robin balancer, which stands in for the quote ClusterIP Service: it
//! probes each instance's readiness every second and sends new connections only to the ready
//! ones, as a Service's endpoints follow readiness probes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use balancer::{Balancer, Probe};
use kit::Running;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{service}: {source}")]
    Quote {
        service: String,
        source: quote_service::StartError,
    },
    #[error("quiz: {0}")]
    Quiz(#[from] quiz::StartError),
    #[error("kiada: {0}")]
    Kiada(#[from] kiada::StartError),
    #[error("quote balancer: {0}")]
    Balancer(#[from] kit::Error),
}

#[derive(Clone, Debug)]
pub struct Config {
    pub kiada_port: u16,
    /// `None`: kiada serves HTTP only.
    pub kiada_tls_port: Option<u16>,
    pub quote_port: u16,
    pub quiz_port: u16,
    pub quote_replicas: usize,
    /// Holds the quiz database, `quiz.db`; created if missing.
    pub data_dir: PathBuf,
    pub shutdown_delay: Duration,
}

/// Every part of the suite, serving.
pub struct Suite {
    pub kiada: Running,
    pub quiz: Running,
    pub quotes: Vec<(String, Running)>,
    pub balancer: Balancer,
    pub db_path: PathBuf,
}

/// Binds every listener before anything serves: a port already in use stops the start with
/// the port's name, and no part is left running.
pub async fn start(config: &Config) -> Result<Suite, Error> {
    let server = |port: u16| kit::ServerConfig {
        listen_port: port,
        admin_port: 0,
        shutdown_delay: config.shutdown_delay,
        ..kit::ServerConfig::ephemeral()
    };

    let mut quotes = Vec::new();
    for i in 1..=config.quote_replicas.max(1) {
        let name = format!("quote-{i}");
        let app = quote_service::build(quote_service::Config {
            server: server(0),
            ..quote_service::Config::local(&name)
        })
        .await
        .map_err(|source| Error::Quote {
            service: name.clone(),
            source,
        })?;
        quotes.push((name, app));
    }
    let backends: Vec<SocketAddr> = quotes
        .iter()
        .map(|(_, app)| SocketAddr::from(([127, 0, 0, 1], app.addr().port())))
        .collect();

    let db_path = config.data_dir.join("quiz.db");
    let quiz = quiz::build(quiz::Config {
        server: server(config.quiz_port),
        ..quiz::Config::local("quiz-1", db_path.clone())
    })
    .await?;

    // The instances' main ports serve /healthz/ready; probing them there, as the kubelet does,
    // means disabling one on its admin port takes it out of the balancer within a second.
    let balancer = Balancer::start_probed(config.quote_port, backends, Probe::default())?;
    let quote_url = format!("http://127.0.0.1:{}/quote", balancer.addr().port());
    let quiz_url = format!("http://127.0.0.1:{}", quiz.addr().port());
    let kiada = kiada::build(kiada::Config {
        server: server(config.kiada_port),
        tls: config.kiada_tls_port.map(|port| kiada::TlsConfig {
            port,
            // Not there locally: kiada makes a self-signed certificate.
            cert: config.data_dir.join("tls.crt"),
            key: config.data_dir.join("tls.key"),
        }),
        ..kiada::Config::local("kiada-1", &quote_url, &quiz_url)
    })
    .await?;

    // Everything is bound; now serve.
    Ok(Suite {
        kiada: kiada.spawn(),
        quiz: quiz.spawn(),
        quotes: quotes
            .into_iter()
            .map(|(n, app)| (n, app.spawn()))
            .collect(),
        balancer,
        db_path,
    })
}

impl Suite {
    /// What to open and what to try, printed at start.
    pub fn banner(&self) -> String {
        let kiada = self.kiada.addr.port();
        let mut out = String::from("\nThe Kiada suite is running.\n\n");
        out += &format!("  kiada  http://localhost:{kiada}");
        if let Some(tls) = self.kiada.tls_addr {
            out += &format!("  https://localhost:{}", tls.port());
        }
        out += &format!("   admin {}\n", self.kiada.admin_addr);
        out += &format!(
            "  quote  http://localhost:{}   {} instance(s) behind a round-robin balancer \
             (ready ones only, probed every second):\n",
            self.balancer.addr().port(),
            self.quotes.len()
        );
        for (name, app) in &self.quotes {
            out += &format!("           {name:<8} admin {}\n", app.admin_addr);
        }
        out += &format!(
            "  quiz   http://localhost:{}   database {}   admin {}\n",
            self.quiz.addr.port(),
            self.db_path.display(),
            self.quiz.admin_addr
        );
        // The readiness lab: watch the Service while one instance is taken out.
        // There is always at least one instance.
        let (lab_pod, lab_app) = self.quotes.get(1).unwrap_or(&self.quotes[0]);
        let lab_admin = lab_app.admin_url();
        out += &format!(
            "\nTry:\n  curl localhost:{kiada}\n  open http://localhost:{kiada} in a browser \
             (the labs: http://localhost:{kiada}/lab)\n  \
             curl -X POST localhost:{kiada}/question/1/answers/0\n  \
             curl 'localhost:{kiada}/lab/spread?service=quote&n=20&connection=new'\n  \
             curl -N 'localhost:{kiada}/lab/watch?service=quote&interval_ms=250&duration_s=60'\n  \
             curl -X POST {lab_admin}/healthz/ready/disable   # {lab_pod} leaves the watch; \
             /enable brings it back\n  \
             curl localhost:{}/quote\n  curl localhost:{}/stats\n\nPress Ctrl-C to stop.\n",
            self.balancer.addr().port(),
            self.quiz.addr.port(),
        );
        out
    }

    /// Shuts every part down as on SIGTERM, all at once.
    pub async fn stop(self) {
        let mut parts = vec![self.kiada, self.quiz];
        parts.extend(self.quotes.into_iter().map(|(_, app)| app));
        let stops: Vec<_> = parts.into_iter().map(|p| tokio::spawn(p.stop())).collect();
        for stop in stops {
            if let Ok(Err(e)) = stop.await {
                tracing::warn!("stopping: {e}");
            }
        }
        drop(self.balancer);
    }
}
