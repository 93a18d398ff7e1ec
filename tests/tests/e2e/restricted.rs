//! Each service binary run the way its pod runs it, on this machine, with every setting read from
//! the manifests (and from the Dockerfile, for what the image sets): the pod's user and group
//! with no supplementary groups but its fsGroup, every capability dropped and no new privileges
//! (`setpriv`), in a mount namespace of its own (`unshare -m`) where every file system is
//! read-only but the pod's volumes (its emptyDirs as tmpfs of their size limit, quiz's volume
//! claim as a directory of the fsGroup, the Secret volume of the PostgreSQL variant as the kubelet
//! lays it out), in a network namespace of its own (`ip netns`) with the pod's address and its
//! sysctls, with exactly the environment the pod gets (the image's variables, the downward API,
//! the Services' variables, the container's `env`; no HOME) and the kubelet's `/etc/hosts` and
//! `/etc/resolv.conf`. Then the manifests' probes are asked on the pod's address at the times
//! they declare, the service serves, its memory stays under its limit, and on SIGTERM it drains
//! and exits 0 within `terminationGracePeriodSeconds`.
//!
//! The binaries are the debug builds in target/debug (what `cargo build --workspace --bins`
//! leaves; the images hold the release builds of the same code). It needs root, `ip`
//! (iproute2), `unshare` and `setpriv` (util-linux); without them it records a skip.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec, Probe, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The documents of a directory's YAML files (`kubectl apply -f <dir>`).
fn documents(dir: &str) -> Vec<serde_yaml_ng::Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| crate::kustomize::documents(&std::fs::read_to_string(f).unwrap()))
        .collect()
}

fn of_kind<T: serde::de::DeserializeOwned>(docs: &[serde_yaml_ng::Value], kind: &str) -> Vec<T> {
    docs.iter()
        .filter(|d| d["kind"] == kind)
        .map(|d| serde_yaml_ng::from_value(d.clone()).unwrap())
        .collect()
}

fn deployment(dir: &str, name: &str) -> Deployment {
    of_kind::<Deployment>(&documents(dir), "Deployment")
        .into_iter()
        .find(|d| d.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no Deployment {name} in {dir}"))
}

/// Why this machine cannot run pods this way, if it cannot.
fn unavailable() -> Option<String> {
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !root_user {
        return Some("needs root (network and mount namespaces, setpriv)".into());
    }
    for (tool, package) in [
        ("ip", "iproute2"),
        ("unshare", "util-linux"),
        ("setpriv", "util-linux"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{tool} is missing (apt-get install {package})"));
        }
    }
    None
}

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program).args(args).output().expect(program);
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A network namespace with one veth pair: the pod's end with the pod's address, and this
/// machine's end (the node's side, where the test sends the kubelet's probes from).
struct Netns {
    name: String,
    host_if: String,
    host_ip: Ipv4Addr,
    pod_ip: Ipv4Addr,
}

impl Netns {
    fn create(sysctls: &[(String, String)]) -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // A /30 in kind's pod range per run, chosen by process and run.
        let index = (pid.wrapping_mul(8).wrapping_add(n)) % 16384;
        let (c, d) = ((index / 64) as u8, ((index % 64) * 4) as u8);
        let net = Netns {
            name: format!("kiada-rt-{pid}-{n}"),
            host_if: format!("krt{}h{n}", pid % 100_000),
            host_ip: Ipv4Addr::new(10, 244, c, d + 1),
            pod_ip: Ipv4Addr::new(10, 244, c, d + 2),
        };
        let pod_if = format!("krt{}c{n}", pid % 100_000);
        run("ip", &["netns", "add", &net.name]);
        run(
            "ip",
            &[
                "link",
                "add",
                &net.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &pod_if,
                "netns",
                &net.name,
            ],
        );
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/30", net.host_ip),
                "dev",
                &net.host_if,
            ],
        );
        run("ip", &["link", "set", &net.host_if, "up"]);
        run("ip", &["-n", &net.name, "link", "set", "lo", "up"]);
        run(
            "ip",
            &[
                "-n",
                &net.name,
                "addr",
                "add",
                &format!("{}/30", net.pod_ip),
                "dev",
                &pod_if,
            ],
        );
        run("ip", &["-n", &net.name, "link", "set", &pod_if, "up"]);
        // The pod's sysctls, which are the network namespace's own.
        for (name, value) in sysctls {
            assert!(
                name.starts_with("net."),
                "{name}: only net.* sysctls are namespaced"
            );
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &net.name,
                    "sh",
                    "-c",
                    r#"printf '%s\n' "$1" > "$2""#,
                    "sh",
                    value,
                    &format!("/proc/sys/{}", name.replace('.', "/")),
                ],
            );
        }
        net
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// The setup that runs as root inside the pod's namespaces before the service: a stage tmpfs,
/// every writable mount made read-only (but /proc, /sys, /dev), the mount points the volumes need
/// (an overlay over the nearest existing directory, as a container runtime has its image's
/// root, made read-only again), the volumes, then the service through setpriv. The tmpfs
/// volumes come last: the bind mounts' sources, the stage and the list of mounts live in the
/// checkout's target directory, which a tmpfs on the pod's /tmp hides when the checkout is
/// under /tmp.
const SETUP: &str = r#"set -eu
stage=$1 specs=$2
shift 2
mount -t tmpfs -o mode=0700,size=4m kiada-stage "$stage"
mounts=$(cat /proc/self/mountinfo)
while read -r _ _ _ _ point options _; do
  point=$(printf '%b' "$point")
  case "$point" in
    /proc|/proc/*|/sys|/sys/*|/dev|/dev/*|"$stage") continue ;;
  esac
  case ",$options," in
    *,rw,*) mount -o remount,bind,ro "$point" ;;
  esac
done <<EOF
$mounts
EOF
n=0
overlays=
while IFS='	' read -r kind src dst opts; do
  [ -e "$dst" ] && continue
  parent=$(dirname "$dst")
  while [ ! -d "$parent" ]; do parent=$(dirname "$parent"); done
  n=$((n + 1))
  mkdir -p "$stage/$n/upper" "$stage/$n/work"
  mount -t overlay "kiada-mountpoint-$n" -o "lowerdir=$parent,upperdir=$stage/$n/upper,workdir=$stage/$n/work" "$parent"
  overlays="$overlays $parent"
  if [ "$kind" = file ]; then
    mkdir -p "$(dirname "$dst")"
    : > "$dst"
  else
    mkdir -p "$dst"
  fi
done < "$specs"
for parent in $overlays; do mount -o remount,bind,ro "$parent"; done
tmpfs_volumes=$(grep '^tmpfs	' "$specs" || true)
while IFS='	' read -r kind src dst opts; do
  case "$kind" in
    bind|file)
      mount --bind "$src" "$dst"
      mount -o "remount,bind,$opts" "$dst"
      ;;
  esac
done < "$specs"
mount -o remount,bind,ro "$stage"
while IFS='	' read -r kind src dst opts; do
  if [ "$kind" = tmpfs ]; then mount -t tmpfs -o "$opts" kiada-volume "$dst"; fi
done <<TMPFS
$tmpfs_volumes
TMPFS
cd /
exec setpriv "$@"
"#;

/// What a container of the manifests needs to run here.
struct Pod {
    /// The Deployment's name and the container's.
    deployment: String,
    container: Container,
    spec: PodSpec,
    labels: BTreeMap<String, String>,
    /// The Services of the namespace (their variables are in the pod's environment).
    services: Vec<Service>,
    /// Secrets by name → key → value, as the test creates them.
    secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// Environment variables the test changes (the negative case).
    env_overrides: Vec<(String, String)>,
    /// A Service the pod reaches by name (in its /etc/hosts): its name, its port, and the port
    /// on this machine's loopback it forwards to, as kube-proxy would to its pod.
    service: Option<(&'static str, u16, u16)>,
}

impl Pod {
    fn from_manifests(dir: &str, deployment: &str) -> Pod {
        let d = deployment_in(dir, deployment);
        let template = d.spec.template.clone();
        let spec = template.spec.unwrap();
        assert_eq!(spec.containers.len(), 1, "{deployment}: one container");
        let mut services = of_kind::<Service>(&documents("manifests"), "Service");
        if dir != "manifests" {
            services.extend(of_kind::<Service>(&documents(dir), "Service"));
        }
        Pod {
            deployment: deployment.to_owned(),
            container: spec.containers[0].clone(),
            spec,
            labels: template.metadata.unwrap().labels.unwrap_or_default(),
            services,
            secrets: BTreeMap::new(),
            env_overrides: Vec::new(),
            service: None,
        }
    }
}

fn deployment_in(dir: &str, name: &str) -> Deployment {
    deployment(dir, name)
}

/// A quantity of bytes (`16Mi`, `64Mi`, `1Gi`, `128M`).
fn bytes(q: &Quantity) -> u64 {
    let s = q.0.as_str();
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number.parse().unwrap_or_else(|_| panic!("{s}"));
    n * match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        other => panic!("unit {other} in {s}"),
    }
}

/// The variables the kubelet gives a pod for each Service of its namespace with a ClusterIP
/// (and for `kubernetes`), with addresses of a made-up service range.
fn service_variables(services: &[Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut add = |name: &str, ip: &str, ports: &[(Option<String>, i32)]| {
        let n = name.to_uppercase().replace('-', "_");
        let first = ports[0].1;
        out.push((format!("{n}_SERVICE_HOST"), ip.to_owned()));
        out.push((format!("{n}_SERVICE_PORT"), first.to_string()));
        for (port_name, port) in ports {
            if let Some(p) = port_name {
                out.push((
                    format!("{n}_SERVICE_PORT_{}", p.to_uppercase().replace('-', "_")),
                    port.to_string(),
                ));
            }
        }
        out.push((format!("{n}_PORT"), format!("tcp://{ip}:{first}")));
        for (_, port) in ports {
            let prefix = format!("{n}_PORT_{port}_TCP");
            out.push((prefix.clone(), format!("tcp://{ip}:{port}")));
            out.push((format!("{prefix}_PROTO"), "tcp".into()));
            out.push((format!("{prefix}_PORT"), port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.to_owned()));
        }
    };
    add("kubernetes", "10.96.0.1", &[(Some("https".into()), 443)]);
    for (i, s) in services.iter().enumerate() {
        let spec = s.spec.as_ref().unwrap();
        if spec.cluster_ip.as_deref() == Some("None")
            || spec.type_.as_deref() == Some("ExternalName")
        {
            continue;
        }
        let ports: Vec<(Option<String>, i32)> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone(), p.port))
            .collect();
        add(
            s.metadata.name.as_deref().unwrap(),
            &format!("10.96.{}.{}", 1 + i / 200, 10 + i % 200),
            &ports,
        );
    }
    out
}

fn container_port(c: &Container, port: &IntOrString) -> u16 {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => {
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .unwrap_or_else(|| panic!("no container port {name}"))
                .container_port
        }
    };
    u16::try_from(n).unwrap()
}

/// A service running as its pod.
struct Running {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    net: Netns,
    _work: tempfile::TempDir,
    /// Host directories behind the pod's volume claims, by mount path.
    claims: BTreeMap<String, PathBuf>,
}

impl Running {
    fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pod's sysctls.
fn sysctls(pod: &Pod) -> Vec<(String, String)> {
    let psc = pod.spec.security_context.clone().unwrap_or_default();
    psc.sysctls
        .iter()
        .flatten()
        .map(|s| (s.name.clone(), s.value.clone()))
        .collect()
}

fn start(pod: &Pod, net: Netns) -> Running {
    let c = &pod.container;
    let spec = &pod.spec;
    let psc = spec.security_context.clone().unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let uid = sc.run_as_user.or(psc.run_as_user).expect("runAsUser");
    let gid = sc.run_as_group.or(psc.run_as_group).expect("runAsGroup");
    assert_ne!(uid, 0, "runAsNonRoot");
    let fs_group = psc.fs_group;
    let caps = sc.capabilities.clone().unwrap_or_default();
    assert_eq!(
        caps.drop.as_deref(),
        Some(&["ALL".to_owned()][..]),
        "every capability dropped"
    );
    assert!(caps.add.is_none_or(|a| a.is_empty()), "no capability added");
    assert_eq!(
        sc.read_only_root_filesystem,
        Some(true),
        "this run models a read-only root file system"
    );

    // Not in /tmp, which the pod's emptyDir hides before the files are bound.
    std::fs::create_dir_all(root().join("target")).unwrap();
    let work = tempfile::Builder::new()
        .prefix("restricted-")
        .tempdir_in(root().join("target"))
        .unwrap();
    let pod_name = format!(
        "{}-5f7c9d8b6-rt{}",
        pod.deployment,
        net.host_if.trim_start_matches("krt")
    );
    let group = fs_group.unwrap_or(0);
    let chown = |path: &Path, gid: i64| {
        run("chown", &[&format!("0:{gid}"), path.to_str().unwrap()]);
    };
    let chmod = |path: &Path, mode: &str| run("chmod", &[mode, path.to_str().unwrap()]);

    // The volumes, as the kubelet mounts them.
    let mut specs: Vec<(String, String, String, String)> = Vec::new();
    let mut claims = BTreeMap::new();
    for m in c.volume_mounts.iter().flatten() {
        let v = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == m.name)
            .unwrap_or_else(|| panic!("no volume {}", m.name));
        let ro = if m.read_only == Some(true) {
            "ro"
        } else {
            "rw"
        };
        if let Some(e) = &v.empty_dir {
            // Writable by anyone, of the fsGroup when there is one; a tmpfs no larger than the
            // size limit.
            let size = e.size_limit.as_ref().map_or(64 << 20, bytes);
            let mode = if fs_group.is_some() { "2777" } else { "0777" };
            specs.push((
                "tmpfs".into(),
                "-".into(),
                m.mount_path.clone(),
                format!("size={size},mode={mode},gid={group}"),
            ));
        } else if v.persistent_volume_claim.is_some() {
            // A new volume: root's, and with fsGroup, of that group, group-writable, setgid.
            let dir = work.path().join(format!("claim-{}", v.name));
            std::fs::create_dir(&dir).unwrap();
            if let Some(g) = fs_group {
                chown(&dir, g);
                chmod(&dir, "2775");
            }
            claims.insert(m.mount_path.clone(), dir.clone());
            specs.push((
                "bind".into(),
                dir.display().to_string(),
                m.mount_path.clone(),
                ro.into(),
            ));
        } else if let Some(s) = &v.secret {
            // The kubelet's layout: a timestamped directory, `..data` pointing at it, and each
            // key a symlink through `..data`; files of defaultMode, of the fsGroup.
            let name = s.secret_name.as_deref().unwrap();
            let dir = work.path().join(format!("secret-{}", v.name));
            std::fs::create_dir(&dir).unwrap();
            match pod.secrets.get(name) {
                None => assert_eq!(s.optional, Some(true), "Secret {name} is needed"),
                Some(data) => {
                    let stamp = dir.join("..2026_01_01_00_00_00.000000000");
                    std::fs::create_dir(&stamp).unwrap();
                    let mode = format!("{:o}", s.default_mode.unwrap_or(0o644));
                    for (key, value) in data {
                        let file = stamp.join(key);
                        std::fs::write(&file, value).unwrap();
                        chown(&file, group);
                        chmod(&file, &mode);
                        std::os::unix::fs::symlink(format!("..data/{key}"), dir.join(key)).unwrap();
                    }
                    std::os::unix::fs::symlink(stamp.file_name().unwrap(), dir.join("..data"))
                        .unwrap();
                }
            }
            chown(&dir, group);
            chmod(&dir, "0755");
            specs.push((
                "bind".into(),
                dir.display().to_string(),
                m.mount_path.clone(),
                "ro".into(),
            ));
        } else {
            panic!(
                "volume {}: only emptyDir, persistentVolumeClaim and secret are modelled",
                v.name
            );
        }
    }
    // A container runtime's /dev/shm.
    specs.push((
        "tmpfs".into(),
        "-".into(),
        "/dev/shm".into(),
        "size=67108864,mode=1777".into(),
    ));
    // The kubelet's /etc/hosts and the cluster DNS's /etc/resolv.conf (ndots 5; no route to the
    // DNS server here, so a lookup fails at once). Hosts of the test's own backends come first.
    let hosts = work.path().join("hosts");
    let mut hosts_text = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    if let Some((service, _, _)) = pod.service {
        hosts_text.push_str(&format!("{}\t{service}\n", net.host_ip));
    }
    hosts_text.push_str(&format!("{}\t{pod_name}\n", net.pod_ip));
    std::fs::write(&hosts, hosts_text).unwrap();
    let resolv = work.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "search kiada.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n",
    )
    .unwrap();
    for (file, path) in [(&hosts, "/etc/hosts"), (&resolv, "/etc/resolv.conf")] {
        chmod(file, "0644");
        specs.push((
            "file".into(),
            file.display().to_string(),
            path.into(),
            "ro".into(),
        ));
    }

    // The image: its environment and entrypoint, the binary where the image has it.
    let (image_env, entrypoint) = crate::release::image_config(&c.name);
    let mut command: Vec<String> = c.command.clone().unwrap_or(entrypoint);
    command.extend(c.args.clone().unwrap_or_default());
    let binary = Path::new(&command[0])
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    specs.push((
        "file".into(),
        e2e::binary(&binary).display().to_string(),
        command[0].clone(),
        "ro".into(),
    ));
    // The tmpfs volumes are mounted last (SETUP says why), so none may hold another volume.
    for (kind, _, dst, _) in specs.iter().filter(|s| s.0 != "tmpfs") {
        for (_, _, tmpfs, _) in specs.iter().filter(|s| s.0 == "tmpfs") {
            assert!(
                !Path::new(dst).starts_with(tmpfs),
                "the {kind} volume {dst} lies in the tmpfs volume {tmpfs}: not modelled"
            );
        }
    }
    let spec_file = work.path().join("mounts");
    std::fs::write(
        &spec_file,
        specs
            .iter()
            .map(|(k, s, d, o)| format!("{k}\t{s}\t{d}\t{o}\n"))
            .collect::<String>(),
    )
    .unwrap();

    // The environment: the image's, the runtime's HOSTNAME, the Services', then the container's.
    let mut env: Vec<(String, String)> = image_env;
    env.push(("HOSTNAME".into(), pod_name.clone()));
    env.extend(service_variables(&pod.services));
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            v.clone()
        } else {
            let field = e
                .value_from
                .as_ref()
                .and_then(|f| f.field_ref.as_ref())
                .unwrap_or_else(|| panic!("{}: only values and fieldRefs are modelled", e.name))
                .field_path
                .clone();
            match field.as_str() {
                "metadata.name" => pod_name.clone(),
                "metadata.namespace" => "kiada".into(),
                "status.podIP" => net.pod_ip.to_string(),
                "spec.nodeName" => "kind-worker".into(),
                "status.hostIP" => "172.18.0.3".into(),
                other => {
                    let label = other
                        .strip_prefix("metadata.labels['")
                        .and_then(|l| l.strip_suffix("']"))
                        .unwrap_or_else(|| panic!("fieldRef {other}"));
                    pod.labels[label].clone()
                }
            }
        };
        env.retain(|(k, _)| k != &e.name);
        env.push((e.name.clone(), value));
    }
    for (k, v) in &pod.env_overrides {
        env.retain(|(old, _)| old != k);
        env.push((k.clone(), v.clone()));
    }
    assert!(
        env.iter().all(|(k, _)| k != "HOME"),
        "no HOME in a pod's environment"
    );

    let stage = work.path().join("stage");
    std::fs::create_dir(&stage).unwrap();
    let mut setpriv = vec![format!("--reuid={uid}"), format!("--regid={gid}")];
    match fs_group.filter(|g| *g != gid) {
        Some(g) => setpriv.push(format!("--groups={g}")),
        None => setpriv.push("--clear-groups".into()),
    }
    setpriv.extend(["--inh-caps=-all".into(), "--bounding-set=-all".into()]);
    if sc.allow_privilege_escalation == Some(false) {
        setpriv.push("--no-new-privs".into());
    }
    setpriv.push("--".into());
    setpriv.extend(command);

    let mut child = Command::new("ip")
        .args([
            "netns", "exec", &net.name, "unshare", "--mount", "--", "/bin/sh", "-c", SETUP, "sh",
        ])
        .arg(&stage)
        .arg(&spec_file)
        .args(&setpriv)
        .env_clear()
        .envs(env)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ip netns exec runs");
    let logs = Arc::new(Mutex::new(Vec::new()));
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let logs = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                logs.lock().unwrap().push(line);
            }
        });
    }
    Running {
        child,
        logs,
        net,
        _work: work,
        claims,
    }
}

/// One probe as the kubelet sends it: HTTP GET on the pod's address, the probe's timeout, a
/// status from 200 to 399 passes.
async fn probe(pod: &Pod, running: &Running, probe: &Probe) -> Result<u16, String> {
    let get = probe.http_get.as_ref().expect("an httpGet probe");
    let port = container_port(&pod.container, &get.port);
    let url = format!(
        "http://{}:{port}{}",
        running.net.pod_ip,
        get.path.as_deref().unwrap_or("/")
    );
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1) as u64);
    match reqwest::Client::new()
        .get(&url)
        .timeout(timeout)
        .send()
        .await
    {
        Ok(res) if (200..400).contains(&res.status().as_u16()) => Ok(res.status().as_u16()),
        Ok(res) => Err(format!("{url}: {}", res.status())),
        Err(e) => Err(format!("{url}: {e}")),
    }
}

fn secs(s: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(s.map_or(default, |s| s as u64))
}

/// The readiness probe at its initial delay and then every period: ready within its failure
/// threshold, or the error.
async fn wait_ready(pod: &Pod, running: &mut Running, started: Instant) -> Result<(), String> {
    let p = pod
        .container
        .readiness_probe
        .as_ref()
        .expect("a readiness probe");
    tokio::time::sleep_until((started + secs(p.initial_delay_seconds, 0)).into()).await;
    let mut last = String::new();
    for _ in 0..p.failure_threshold.unwrap_or(3) {
        if let Some(status) = running.exited() {
            return Err(format!("exited with {status} before it was ready"));
        }
        match probe(pod, running, p).await {
            Ok(_) => return Ok(()),
            Err(e) => last = e,
        }
        tokio::time::sleep(secs(p.period_seconds, 10)).await;
    }
    Err(format!(
        "not ready after {} probes: {last}",
        p.failure_threshold.unwrap_or(3)
    ))
}

/// What a run found.
struct Report {
    /// Mount points writable inside the pod.
    writable: Vec<String>,
    /// Files in the pod's volume claims after it served.
    claim_files: BTreeMap<String, Vec<String>>,
}

/// The writable mounts the pod's process sees (from its own mountinfo), but the kernel's.
fn writable_mounts(pid: u32) -> Vec<String> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let (point, options) = (f[4], f[5]);
            // The kernel's, and /dev: a container's is a tmpfs of the runtime's with the device
            // nodes, here the machine's, where only root may create files.
            let kernel = ["/proc", "/sys", "/dev/pts", "/dev/mqueue"]
                .iter()
                .any(|k| point == *k || point.starts_with(&format!("{k}/")))
                || point == "/dev";
            (options.split(',').any(|o| o == "rw") && !kernel).then(|| point.to_owned())
        })
        .collect()
}

/// Runs the pod: probes, `serve` (the service's own requests, given the base URL), SIGTERM and
/// the drain. `Err` says what a learner's first `kubectl apply` would have met.
async fn run_pod<F, Fut>(pod: &Pod, serve: F) -> Result<Report, String>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let net = Netns::create(&sysctls(pod));
    let forwarder = pod.service.map(|(_, port, to)| {
        let listener =
            std::net::TcpListener::bind((net.host_ip, port)).expect("the Service's port");
        listener.set_nonblocking(true).unwrap();
        tokio::spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", to)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        })
    });
    let result = run_started(pod, start(pod, net), serve).await;
    if let Some(task) = forwarder {
        task.abort();
    }
    result
}

async fn run_started<F, Fut>(pod: &Pod, mut running: Running, serve: F) -> Result<Report, String>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    let fail = |running: &Running, what: String| {
        Err(format!(
            "{} {what}\n--- its output:\n{}",
            pod.deployment,
            running.logs()
        ))
    };
    if let Err(e) = wait_ready(pod, &mut running, started).await {
        return fail(&running, e);
    }
    let pid = running.child.id();
    let http = pod
        .container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("http"))
        .expect("a port named http")
        .container_port;
    let base = format!("http://{}:{http}", running.net.pod_ip);
    if let Err(e) = serve(base.clone()).await {
        return fail(&running, format!("does not serve: {e}"));
    }
    // Liveness at its initial delay.
    let live = pod
        .container
        .liveness_probe
        .as_ref()
        .expect("a liveness probe");
    tokio::time::sleep_until((started + secs(live.initial_delay_seconds, 0)).into()).await;
    if let Err(e) = probe(pod, &running, live).await {
        return fail(&running, format!("fails its liveness probe: {e}"));
    }
    // Memory under the container's limit.
    let limit = pod
        .container
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"))
        .map(bytes)
        .expect("a memory limit");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    if peak_kb * 1024 > limit {
        return fail(
            &running,
            format!("peaked at {peak_kb} kB, over its limit of {limit} bytes"),
        );
    }
    let writable = writable_mounts(pid);
    let claim_files = running
        .claims
        .iter()
        .map(|(path, dir)| {
            let mut files: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            (path.clone(), files)
        })
        .collect();

    // SIGTERM: readiness fails at once (the endpoint goes), requests are still served through
    // the shutdown delay, and the process exits 0 within the grace period.
    let terminated = Instant::now();
    run("kill", &["-TERM", &pid.to_string()]);
    let ready = pod.container.readiness_probe.as_ref().unwrap();
    let leaving = crate::eventually(Duration::from_secs(2), || async {
        probe(pod, &running, ready).await.is_err()
    })
    .await;
    if !leaving {
        return fail(&running, "still ready after SIGTERM".into());
    }
    match reqwest::get(format!("{base}/")).await {
        Ok(res) if res.status() == 200 => {}
        other => return fail(&running, format!("not serving while it drains: {other:?}")),
    }
    let grace = secs(
        pod.spec.termination_grace_period_seconds.map(|s| s as i32),
        30,
    );
    let exit = loop {
        if let Some(status) = running.exited() {
            break status;
        }
        if terminated.elapsed() > grace {
            return fail(
                &running,
                format!("still running {grace:?} after SIGTERM: SIGKILL"),
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if exit.code() != Some(0) {
        return fail(&running, format!("exited with {exit} after SIGTERM"));
    }
    eprintln!(
        "{}: ready, served, live, drained and exited 0 in {:?} after SIGTERM (grace {grace:?}); peak {peak_kb} kB of {limit}",
        pod.deployment,
        terminated.elapsed()
    );
    Ok(Report {
        writable,
        claim_files,
    })
}

fn skip_unless_possible(test: &str) -> bool {
    match unavailable() {
        Some(why) => {
            e2e::skip(test, &why);
            false
        }
        None => true,
    }
}

/// Writable places are the pod's volumes (and /dev/shm) only.
fn assert_writes_only_to_volumes(pod: &Pod, report: &Report) {
    let mut allowed: Vec<String> = pod
        .container
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.read_only != Some(true))
        .map(|m| m.mount_path.clone())
        .collect();
    allowed.push("/dev/shm".into());
    for point in &report.writable {
        assert!(
            allowed.contains(point),
            "{}: {point} is writable, but it is not a volume of the pod ({allowed:?})",
            pod.deployment
        );
    }
}

async fn get_ok(url: String) -> Result<String, String> {
    let res = reqwest::get(&url)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if res.status() != 200 {
        return Err(format!("{url}: {}", res.status()));
    }
    res.text().await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn quote_runs_under_its_pods_restrictions() {
    if !skip_unless_possible("restricted::quote") {
        return;
    }
    let pod = Pod::from_manifests("manifests", "quote");
    let report = run_pod(&pod, |base| async move {
        let who = get_ok(format!("{base}/")).await?;
        if !who.contains("quote-5f7c9d8b6-") {
            return Err(format!("GET / does not name the pod: {who}"));
        }
        get_ok(format!("{base}/quote")).await.map(|_| ())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_writes_only_to_volumes(&pod, &report);
}

#[tokio::test]
async fn kiada_runs_under_its_pods_restrictions() {
    if !skip_unless_possible("restricted::kiada") {
        return;
    }
    let pod = Pod::from_manifests("manifests", "kiada");
    let https = container_port(&pod.container, &IntOrString::String("https".into()));
    let report = run_pod(&pod, |base| async move {
        // The page, with its backends unreachable here (their names do not resolve).
        let page = get_ok(format!("{base}/")).await?;
        if !page.contains("kiada-5f7c9d8b6-") {
            return Err(format!("the page does not name the pod: {page}"));
        }
        // HTTPS with the certificate kiada makes at start (the Secret is optional and absent).
        let host = base
            .trim_start_matches("http://")
            .split(':')
            .next()
            .unwrap()
            .to_owned();
        tokio::net::TcpStream::connect((host.as_str(), https))
            .await
            .map(|_| ())
            .map_err(|e| format!("HTTPS port {https}: {e}"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_writes_only_to_volumes(&pod, &report);
}

async fn quiz_serves(base: String) -> Result<(), String> {
    let question: serde_json::Value =
        serde_json::from_str(&get_ok(format!("{base}/questions/random")).await?)
            .map_err(|e| e.to_string())?;
    let id = question["id"].as_i64().ok_or("a question id")?;
    let res = reqwest::Client::new()
        .post(format!("{base}/questions/{id}/answers"))
        .json(&serde_json::json!({"questionId": id, "answerIndex": 0}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if res.status() != 200 {
        return Err(format!("an answer: {}", res.status()));
    }
    let stats: serde_json::Value =
        serde_json::from_str(&get_ok(format!("{base}/stats")).await?).map_err(|e| e.to_string())?;
    if stats["answerCount"].as_i64() != Some(1) {
        return Err(format!("the answer was not recorded: {stats}"));
    }
    Ok(())
}

#[tokio::test]
async fn quiz_on_sqlite_runs_under_its_pods_restrictions() {
    if !skip_unless_possible("restricted::quiz_sqlite") {
        return;
    }
    let pod = Pod::from_manifests("manifests", "quiz");
    let report = run_pod(&pod, quiz_serves)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_writes_only_to_volumes(&pod, &report);
    // The database is on the volume claim, where DB_PATH points (the container's value wins
    // over the image's).
    let db = crate::release::image_config("quiz")
        .0
        .into_iter()
        .chain(
            pod.container
                .env
                .iter()
                .flatten()
                .filter_map(|e| Some((e.name.clone(), e.value.clone()?))),
        )
        .rfind(|(k, _)| k == "DB_PATH")
        .map(|(_, v)| v)
        .expect("DB_PATH");
    let (dir, file) = db.rsplit_once('/').unwrap();
    assert!(
        report
            .claim_files
            .get(dir)
            .is_some_and(|f| f.iter().any(|n| n == file)),
        "{db} on the volume: {:?}",
        report.claim_files
    );
}

#[tokio::test]
async fn quiz_on_postgres_runs_under_its_pods_restrictions() {
    if !skip_unless_possible("restricted::quiz_postgres") {
        return;
    }
    let Some(pg) = testkit::Postgres::start("restricted::quiz_postgres", &[]) else {
        return;
    };
    let mut pod = Pod::from_manifests("manifests/postgres", "quiz");
    // The user and database the StatefulSet's server creates, and the Secret docs/operations.md
    // has the learner create. The test server trusts local connections but for this user, whose
    // password it checks (SCRAM), so quiz must have read it from the Secret's file.
    let url = pod
        .container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "DATABASE_URL")
        .and_then(|e| e.value.clone())
        .expect("DATABASE_URL");
    let rest = url.strip_prefix("postgres://").unwrap();
    let (user, rest) = rest.split_once('@').unwrap();
    let (authority, database) = rest.split_once('/').unwrap();
    let (host, port) = authority.split_once(':').unwrap();
    assert_eq!(host, "postgres");
    let password = format!("test-{}", std::process::id());
    pg.sql(
        "postgres",
        &format!("CREATE ROLE {user} LOGIN PASSWORD '{password}'"),
    );
    pg.sql(
        "postgres",
        &format!("CREATE DATABASE {database} OWNER {user}"),
    );
    let hba = pg.sql("postgres", "SHOW hba_file");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("host all {user} 127.0.0.1/32 scram-sha-256\n{rules}"),
    )
    .unwrap();
    pg.sql("postgres", "SELECT pg_reload_conf()");
    // The Secret and key behind DATABASE_PASSWORD_FILE: the volume mounted at its directory,
    // the file's name.
    let file = pod
        .container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "DATABASE_PASSWORD_FILE")
        .and_then(|e| e.value.clone())
        .expect("DATABASE_PASSWORD_FILE");
    let (dir, key) = file.rsplit_once('/').unwrap();
    let mount = pod
        .container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == dir)
        .expect("a volume at the password file's directory");
    let secret = pod
        .spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .and_then(|v| v.secret.as_ref())
        .and_then(|s| s.secret_name.clone())
        .expect("a Secret volume");
    pod.secrets
        .insert(secret, BTreeMap::from([(key.to_owned(), password.clone())]));
    // The Service `postgres` on its port, at the address /etc/hosts gives the name, forwarded
    // to the test server.
    pod.service = Some(("postgres", port.parse().unwrap(), pg.port));
    let report = run_pod(&pod, quiz_serves)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_writes_only_to_volumes(&pod, &report);
    assert!(
        report.claim_files.is_empty(),
        "quiz keeps no volume of its own"
    );
    let answers = pg.sql(database, "SELECT count(*) FROM answers");
    assert_eq!(answers, "1", "the answer is in PostgreSQL");
}

#[tokio::test]
async fn a_binary_that_writes_outside_its_volumes_fails_the_restricted_run() {
    if !skip_unless_possible("restricted::negative") {
        return;
    }
    // quiz told to keep its database in the image's root instead of on its volume claim.
    let mut pod = Pod::from_manifests("manifests", "quiz");
    pod.deployment = "quiz-writing-elsewhere".into();
    pod.env_overrides = vec![("DB_PATH".into(), "/srv/quiz.db".into())];
    let error = match run_pod(&pod, quiz_serves).await {
        Ok(_) => panic!("quiz writing to /srv passed the restricted run"),
        Err(e) => e,
    };
    assert!(error.contains("before it was ready"), "{error}");
    assert!(
        error.contains("/srv/quiz.db"),
        "the failure names where it tried to write: {error}"
    );
    assert!(
        !Path::new("/srv/quiz.db").exists(),
        "nothing was written outside"
    );
}

#[tokio::test]
async fn quiz_without_its_fs_group_cannot_write_its_volume() {
    if !skip_unless_possible("restricted::no_fs_group") {
        return;
    }
    // The volume claim is root's then, and quiz (UID 10001) cannot create its database there.
    let mut pod = Pod::from_manifests("manifests", "quiz");
    pod.deployment = "quiz-without-fsgroup".into();
    pod.spec.security_context.as_mut().unwrap().fs_group = None;
    let error = match run_pod(&pod, quiz_serves).await {
        Ok(_) => panic!("quiz wrote a root-owned volume"),
        Err(e) => e,
    };
    assert!(
        error.contains("before it was ready") && error.contains("/var/lib/quiz/quiz.db"),
        "{error}"
    );
}
