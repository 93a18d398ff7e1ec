//! A little cluster in one process: for each Service (quote, quiz, kiada) a Deployment of
//! instances behind a balancer that stands in for the ClusterIP Service and kube-proxy.
//!
//! Each instance is named like a pod of its Deployment (`quote-1`, `quote-2`, …; a replacement
//! takes the next number) and has an admin port of its own, fixed by its slot (`--admin-ports-from`),
//! and an address of its own in 127.0.0.0/8 for the cluster DNS (a pod IP). A rollout replaces
//! the instances one by one as a Deployment's RollingUpdate with `maxSurge: 1, maxUnavailable:
//! 0` does; deleting an instance stops it and starts a replacement at once, as a ReplicaSet
//! replaces a deleted pod.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use balancer::{Balancer, Endpoint};
use kit::Running;
use tokio::task::JoinHandle;

use crate::Error;
use crate::dns;

/// One of the suite's Services, each with its Deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Quote,
    Quiz,
    Kiada,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Kiada, Service::Quiz, Service::Quote];

    pub fn name(self) -> &'static str {
        match self {
            Service::Quote => "quote",
            Service::Quiz => "quiz",
            Service::Kiada => "kiada",
        }
    }

    pub fn parse(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The most instances `--<service>-replicas` may ask for.
    pub fn max_replicas(self) -> usize {
        match self {
            Service::Quote => 20,
            Service::Quiz | Service::Kiada => 5,
        }
    }

    /// Where this Service's admin ports start after `--admin-ports-from`, and how many it has:
    /// twice its most replicas, for the surge of a rollout and instances still draining.
    fn admin_block(self) -> (u16, u16) {
        match self {
            Service::Kiada => (0, 10),
            Service::Quiz => (10, 10),
            Service::Quote => (20, 40),
        }
    }

    /// How many admin ports the suite takes after `--admin-ports-from`.
    pub const ADMIN_PORTS: u16 = 60;

    fn third_octet(self) -> u8 {
        match self {
            Service::Quote => 1,
            Service::Quiz => 2,
            Service::Kiada => 3,
        }
    }

    /// The Service's address in the cluster DNS, as a ClusterIP Service has a virtual IP. The
    /// balancer listens on every address, so on Linux (where all of 127.0.0.0/8 is loopback)
    /// this address with the Service's port reaches it too.
    pub fn virtual_ip(self) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 10, self.third_octet())
    }

    /// The address of the instance in `slot`, as a pod has an IP of its own.
    pub fn pod_ip(self, slot: u16) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, self.third_octet(), (slot + 1) as u8)
    }
}

/// One running instance: a pod of its Deployment.
pub struct Instance {
    pub name: String,
    pub service: Service,
    /// Its address in the cluster DNS (127.0.N.M).
    pub pod_ip: Ipv4Addr,
    /// Where it serves (127.0.0.1 and a port of its own).
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub tls_addr: Option<SocketAddr>,
    pub health: kit::Health,
    pub started: Instant,
    slot: u16,
    terminating: AtomicBool,
    running: Mutex<Option<Running>>,
}

impl Instance {
    /// Serves a built instance.
    pub(crate) fn serve(app: kit::App, name: String, service: Service, slot: u16) -> Arc<Instance> {
        let running = app.spawn();
        Arc::new(Instance {
            pod_ip: service.pod_ip(slot),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, running.addr.port())),
            admin_addr: running.admin_addr,
            tls_addr: running
                .tls_addr
                .map(|a| SocketAddr::from((Ipv4Addr::LOCALHOST, a.port()))),
            health: running.health.clone(),
            started: Instant::now(),
            name,
            service,
            slot,
            terminating: AtomicBool::new(false),
            running: Mutex::new(Some(running)),
        })
    }

    /// Its endpoint in a balancer (`tls`: its HTTPS port's, probed on its HTTP port).
    pub(crate) fn endpoint(&self, tls: bool) -> Option<Endpoint> {
        match tls {
            false => Some(Endpoint::new(self.name.clone(), self.addr)),
            true => Some(Endpoint {
                probe_addr: Some(self.addr),
                ..Endpoint::new(self.name.clone(), self.tls_addr?)
            }),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_addr.port())
    }

    /// SIGTERM sent: in its shutdown delay or draining.
    pub fn is_terminating(&self) -> bool {
        self.terminating.load(Ordering::Relaxed)
    }
}

/// What every instance is built from.
pub(crate) struct Context {
    pub db_path: PathBuf,
    pub quote_url: String,
    pub quiz_url: String,
    /// kiada's certificate and key (made once, shared by every kiada instance).
    pub tls: Option<(PathBuf, PathBuf)>,
    pub resolv_conf: PathBuf,
    pub nameserver: Option<SocketAddr>,
    /// The suite's routes, served on every kiada instance.
    pub extra_routes: axum::Router,
    pub shutdown_delay: Duration,
    /// 0: free admin ports.
    pub admin_ports_from: u16,
    /// The longest the balancers' probe takes to notice an instance that stopped answering:
    /// an exited instance stays among the endpoints until then, as a pod's endpoint stays in
    /// kube-proxy's rules until the EndpointSlice change reaches it.
    pub endpoint_lag: Duration,
}

/// How long a new instance of a rollout may take to become ready before the rollout is given
/// up, as a Deployment's progress deadline gives one up (there 600 s).
pub const READY_DEADLINE: Duration = Duration::from_secs(30);

/// A Service's Deployment: its instances and the balancer in front of them.
pub struct Deployment {
    pub service: Service,
    pub replicas: usize,
    pub balancer: Balancer,
    /// kiada's HTTPS port, balanced like its HTTP port.
    pub tls_balancer: Option<Balancer>,
    ctx: Arc<Context>,
    instances: Mutex<Vec<Arc<Instance>>>,
    /// Admin port and pod IP slots in use.
    slots: Mutex<Vec<bool>>,
    next: AtomicUsize,
    rollout: Mutex<Option<String>>,
    /// Rollouts, replacements and exits under way, awaited on stop.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stopping: AtomicBool,
}

/// Why a rollout or a deletion cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "a rollout of {0} is already under way; wait for it to finish (GET /lab/pods shows it)"
    )]
    RolloutUnderWay(&'static str),
    #[error("no pod named '{0}'; GET /lab/pods lists them")]
    NoSuchPod(String),
    #[error("{0} is terminating already")]
    Terminating(String),
    #[error("the suite is shutting down")]
    ShuttingDown,
}

impl Deployment {
    /// A Deployment whose first instances already serve behind `balancer` (and `tls_balancer`),
    /// numbered 1 to `initial.len()`, each in the slot of its number.
    pub(crate) fn new(
        service: Service,
        balancer: Balancer,
        tls_balancer: Option<Balancer>,
        ctx: Arc<Context>,
        initial: Vec<Arc<Instance>>,
    ) -> Deployment {
        let mut slots = vec![false; usize::from(service.admin_block().1)];
        for instance in &initial {
            slots[usize::from(instance.slot)] = true;
        }
        Deployment {
            service,
            replicas: initial.len(),
            balancer,
            tls_balancer,
            ctx,
            next: AtomicUsize::new(initial.len() + 1),
            instances: Mutex::new(initial),
            slots: Mutex::new(slots),
            rollout: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
        }
    }

    /// The instances now, draining ones included, in the order they started.
    pub fn instances(&self) -> Vec<Arc<Instance>> {
        lock(&self.instances).clone()
    }

    /// What the rollout under way is doing, if one is.
    pub fn rollout_progress(&self) -> Option<String> {
        lock(&self.rollout).clone()
    }

    /// Keeps a task to await on stop, dropping those already done.
    fn track(&self, task: JoinHandle<()>) {
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    fn pod_name(&self, number: usize) -> String {
        format!("{}-{number}", self.service.name())
    }

    fn take_number(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// A free slot, starting from the one the pod's number suggests, so that `quote-2` has the
    /// second admin port of quote's block at every start.
    fn take_slot(&self, number: usize) -> Option<u16> {
        let mut slots = lock(&self.slots);
        let len = slots.len();
        let slot = (0..len)
            .map(|i| (number - 1 + i) % len)
            .find(|&s| !slots[s])?;
        slots[slot] = true;
        Some(slot as u16)
    }

    fn release_slot(&self, slot: u16) {
        if let Some(s) = lock(&self.slots).get_mut(usize::from(slot)) {
            *s = false;
        }
    }

    /// Builds an instance with `number` in a free slot, bound but not serving.
    async fn build(&self, number: usize) -> Result<(kit::App, String, u16), Error> {
        let name = self.pod_name(number);
        let slot = self.take_slot(number).ok_or(Error::NoSlot {
            service: self.service.name(),
        })?;
        match build(self.service, &name, slot, &self.ctx).await {
            Ok(app) => Ok((app, name, slot)),
            Err(e) => {
                self.release_slot(slot);
                Err(e)
            }
        }
    }

    /// Serves a built instance and adds it to the balancers, which send it connections once
    /// its readiness probe passes.
    fn serve(&self, app: kit::App, name: String, slot: u16) -> Arc<Instance> {
        let instance = Instance::serve(app, name, self.service, slot);
        self.balancer
            .add(instance.endpoint(false).expect("an HTTP port"));
        if let (Some(tls), Some(endpoint)) = (&self.tls_balancer, instance.endpoint(true)) {
            tls.add(endpoint);
        }
        lock(&self.instances).push(instance.clone());
        instance
    }

    /// Starts a new instance with `number`.
    async fn start(&self, number: usize) -> Result<Arc<Instance>, Error> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(Error::ShuttingDown);
        }
        let (app, name, slot) = self.build(number).await?;
        tracing::info!(pod = %name, "{}: started; in the Service once its readiness probe passes", self.service.name());
        Ok(self.serve(app, name, slot))
    }

    /// Sends an instance SIGTERM, as the kubelet does to a deleted pod: readiness fails at
    /// once, it serves through its shutdown delay (the balancer's probe takes it out meanwhile),
    /// then drains and exits, and leaves the balancer.
    fn terminate(self: &Arc<Self>, instance: Arc<Instance>) {
        if instance.terminating.swap(true, Ordering::Relaxed) {
            return;
        }
        let running = lock(&instance.running).take();
        tracing::info!(
            pod = %instance.name,
            shutdown_delay_s = self.ctx.shutdown_delay.as_secs_f64(),
            "SIGTERM: readiness fails now; serving through the shutdown delay, then draining"
        );
        let deployment = self.clone();
        let task = tokio::spawn(async move {
            if let Some(running) = running
                && let Err(e) = running.stop().await
            {
                tracing::warn!(pod = %instance.name, "while terminating: {e}");
            }
            deployment.gone(&instance).await;
        });
        self.track(task);
    }

    /// An instance has exited: out of the balancers once their probe has noticed (the
    /// connections they send it meanwhile fail, as with kube-proxy's rules for a pod that
    /// stopped listening before they changed), then out of the list, its slot free again.
    async fn gone(&self, instance: &Instance) {
        let deadline = Instant::now() + self.ctx.endpoint_lag;
        while Instant::now() < deadline
            && self
                .balancer
                .endpoint(&instance.name)
                .is_some_and(|e| e.ready)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.balancer.remove(&instance.name);
        if let Some(tls) = &self.tls_balancer {
            tls.remove(&instance.name);
        }
        lock(&self.instances).retain(|i| i.name != instance.name);
        self.release_slot(instance.slot);
        tracing::info!(pod = %instance.name, "exited; its endpoint is gone");
    }

    /// Replaces every instance, one at a time, as a RollingUpdate with maxSurge 1 and
    /// maxUnavailable 0: a new one starts and becomes ready, then an old one gets SIGTERM.
    /// Returns how many are to be replaced; the rollout goes on in the background.
    pub fn rollout(self: &Arc<Self>) -> Result<usize, ControlError> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(ControlError::ShuttingDown);
        }
        let mut progress = lock(&self.rollout);
        if progress.is_some() {
            return Err(ControlError::RolloutUnderWay(self.service.name()));
        }
        let old: Vec<Arc<Instance>> = self
            .instances()
            .into_iter()
            .filter(|i| !i.is_terminating())
            .collect();
        let count = old.len();
        *progress = Some(format!("replacing {count} pod(s)"));
        tracing::info!(
            service = self.service.name(),
            pods = count,
            "rollout: replacing the pods one by one (maxSurge 1, maxUnavailable 0)"
        );
        let deployment = self.clone();
        let task = tokio::spawn(async move {
            deployment.roll(old).await;
            *lock(&deployment.rollout) = None;
        });
        self.track(task);
        Ok(count)
    }

    async fn roll(self: &Arc<Self>, old: Vec<Arc<Instance>>) {
        let service = self.service.name();
        let total = old.len();
        for (i, previous) in old.into_iter().enumerate() {
            // Deleted meanwhile: its replacement is already there.
            if previous.is_terminating() {
                continue;
            }
            let number = self.take_number();
            let name = self.pod_name(number);
            self.progress(format!(
                "{}/{total}: {name} starting, to replace {}",
                i + 1,
                previous.name
            ));
            let new = match self.start(number).await {
                Ok(new) => new,
                Err(e) => {
                    tracing::warn!(service, "rollout given up: {name}: {e}");
                    return;
                }
            };
            if !self.until_ready(&new.name, READY_DEADLINE).await {
                tracing::warn!(
                    service,
                    pod = %new.name,
                    "rollout given up: the new pod did not become ready within {} s",
                    READY_DEADLINE.as_secs()
                );
                return;
            }
            self.progress(format!(
                "{}/{total}: {name} ready; {} terminating",
                i + 1,
                previous.name
            ));
            self.terminate(previous);
        }
        tracing::info!(
            service,
            pods = total,
            "rollout complete: every pod replaced; the old ones finish draining"
        );
    }

    fn progress(&self, text: String) {
        tracing::info!(service = self.service.name(), "rollout {text}");
        *lock(&self.rollout) = Some(text);
    }

    /// Waits until the balancer sends the instance new connections.
    async fn until_ready(&self, name: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.stopping.load(Ordering::Relaxed) {
                return false;
            }
            if self.balancer.endpoint(name).is_some_and(|e| e.ready) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Deletes an instance: SIGTERM to it and, at once, a replacement, as a ReplicaSet
    /// replaces a deleted pod. Returns the replacement's name.
    pub fn delete(self: &Arc<Self>, name: &str) -> Result<String, ControlError> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(ControlError::ShuttingDown);
        }
        let instance = self
            .instances()
            .into_iter()
            .find(|i| i.name == name)
            .ok_or_else(|| ControlError::NoSuchPod(name.to_owned()))?;
        if instance.is_terminating() {
            return Err(ControlError::Terminating(name.to_owned()));
        }
        let number = self.take_number();
        let replacement = self.pod_name(number);
        self.terminate(instance);
        let deployment = self.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = deployment.start(number).await {
                tracing::warn!(
                    service = deployment.service.name(),
                    "cannot start a replacement: {e}"
                );
            }
        });
        self.track(task);
        Ok(replacement)
    }

    /// Stops everything as on SIGTERM, all at once, and waits for every instance to exit.
    pub(crate) async fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let tasks: Vec<JoinHandle<()>> = lock(&self.tasks).drain(..).collect();
        // Rollouts and replacements start nothing once stopping; exits are waited for below.
        let instances = self.instances();
        let stops: Vec<_> = instances
            .iter()
            .filter_map(|i| lock(&i.running).take())
            .map(|r| tokio::spawn(r.stop()))
            .collect();
        for stop in stops {
            if let Ok(Err(e)) = stop.await {
                tracing::warn!("stopping: {e}");
            }
        }
        for task in tasks {
            let _ = task.await;
        }
        // Instances a rollout started while the others stopped.
        for instance in self.instances() {
            let running = lock(&instance.running).take();
            if let Some(running) = running {
                let _ = running.stop().await;
            }
        }
    }
}

/// Every Deployment, the cluster DNS's address, and how the balancers choose.
pub struct Cluster {
    deployments: Vec<Arc<Deployment>>,
    pub dns_addr: SocketAddr,
    pub mode: balancer::Mode,
    /// For the pods' request counts (`/metrics` on each instance's own port).
    pub(crate) client: reqwest::Client,
}

impl Cluster {
    pub(crate) fn new(
        deployments: Vec<Arc<Deployment>>,
        dns_addr: SocketAddr,
        mode: balancer::Mode,
    ) -> Cluster {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(500))
            .build()
            .expect("an HTTP client without TLS always builds");
        Cluster {
            deployments,
            dns_addr,
            mode,
            client,
        }
    }

    pub fn deployments(&self) -> &[Arc<Deployment>] {
        &self.deployments
    }

    pub fn deployment(&self, service: Service) -> &Arc<Deployment> {
        self.deployments
            .iter()
            .find(|d| d.service == service)
            .expect("every Service has its Deployment")
    }

    /// An instance by name, draining ones included.
    pub fn instance(&self, name: &str) -> Option<Arc<Instance>> {
        self.deployments
            .iter()
            .flat_map(|d| d.instances())
            .find(|i| i.name == name)
    }

    /// The zone as a cluster DNS has it now: each Service's virtual IP and the SRV records of
    /// its named ports; `quote-headless` with the address of every ready quote pod (and a name
    /// and SRV record for each); `quiz-alias`, a CNAME to quiz as the ExternalName experiment
    /// makes it.
    pub fn zone_records(&self) -> Vec<hickory_server::proto::rr::Record> {
        use hickory_server::proto::rr::Name;
        let mut records = Vec::new();
        let named = |port: &str, service: &Name| {
            Name::from_ascii(format!("_{port}._tcp.{service}")).expect("an SRV name")
        };
        for d in &self.deployments {
            let name = dns::service_name(d.service.name());
            records.push(dns::a(&name, d.service.virtual_ip()));
            let http = named("http", &name);
            records.push(dns::srv(&http, d.balancer.addr().port(), 100, &name));
            if let Some(tls) = &d.tls_balancer {
                let https = named("https", &name);
                records.push(dns::srv(&https, tls.addr().port(), 100, &name));
            }
        }
        let quote = self.deployment(Service::Quote);
        let headless = dns::service_name("quote-headless");
        let http = named("http", &headless);
        let ready: Vec<Arc<Instance>> = quote
            .balancer
            .endpoints()
            .into_iter()
            .filter(|e| e.ready)
            .filter_map(|e| quote.instances().into_iter().find(|i| i.name == e.name))
            .collect();
        let weight = 100 / ready.len().max(1) as u16;
        for pod in &ready {
            let dashed = pod.pod_ip.to_string().replace('.', "-");
            let own = Name::from_ascii(format!("{dashed}.{headless}")).expect("a pod's name");
            records.push(dns::a(&headless, pod.pod_ip));
            records.push(dns::a(&own, pod.pod_ip));
            records.push(dns::srv(&http, pod.addr.port(), weight, &own));
        }
        records.push(dns::cname(
            &dns::service_name("quiz-alias"),
            &dns::service_name("quiz"),
        ));
        records
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Builds one instance of `service`, bound but not serving: its pod name, namespace `kiada`
/// and pod IP, its fixed admin port, and what it calls.
pub(crate) async fn build(
    service: Service,
    name: &str,
    slot: u16,
    ctx: &Context,
) -> Result<kit::App, Error> {
    let admin_port = match ctx.admin_ports_from {
        0 => 0,
        from => from + service.admin_block().0 + slot,
    };
    let server = kit::ServerConfig {
        listen_port: 0,
        admin_port,
        shutdown_delay: ctx.shutdown_delay,
        ..kit::ServerConfig::ephemeral()
    };
    let mut identity = kit::Identity::named(name);
    identity.pod_namespace = dns::NAMESPACE.to_owned();
    identity.pod_ip = service.pod_ip(slot).to_string();
    let pod = || name.to_owned();
    match service {
        Service::Quote => quote_service::build(quote_service::Config {
            server,
            identity,
            ..quote_service::Config::local(name)
        })
        .await
        .map_err(|source| Error::Quote { pod: pod(), source }),
        Service::Quiz => quiz::build(quiz::Config {
            server,
            identity,
            ..quiz::Config::local(name, ctx.db_path.clone())
        })
        .await
        .map_err(|source| Error::Quiz { pod: pod(), source }),
        Service::Kiada => kiada::build(kiada::Config {
            server,
            identity,
            tls: ctx.tls.as_ref().map(|(cert, key)| kiada::TlsConfig {
                port: 0,
                cert: cert.clone(),
                key: key.clone(),
            }),
            resolv_conf: ctx.resolv_conf.clone(),
            dns_nameserver: ctx.nameserver,
            extra_routes: Some(ctx.extra_routes.clone()),
            pods_section: true,
            ..kiada::Config::local(name, &ctx.quote_url, &ctx.quiz_url)
        })
        .await
        .map_err(|source| Error::Kiada { pod: pod(), source }),
    }
}
