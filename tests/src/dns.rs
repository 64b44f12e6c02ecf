//! A real DNS server for the DNS discovery tests: Debian's dnsmasq on a port of 127.0.0.1, answering names from a hosts file the test rewrites.
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
    time::{Duration, Instant},
};

use hickory_resolver::{
    TokioResolver,
    config::{NameServerConfigGroup, ResolveHosts, ResolverConfig},
    name_server::TokioConnectionProvider,
};
use nix::sys::signal::Signal;
use testbed::{ChildProcess, Output};

use crate::{free_port, process::block_on};

/// The domain the server answers for by itself: a name of it that is not
/// in the hosts file does not exist (NXDOMAIN), and no question goes
/// anywhere else.
pub const DOMAIN: &str = "test";

/// How long a change to the hosts file may take to show in the answers.
const RELOAD: Duration = Duration::from_secs(10);

/// A dnsmasq serving `DOMAIN` from a hosts file, stopped when dropped (the
/// child process is killed on drop).
pub struct Dnsmasq {
    process: ChildProcess,
    address: SocketAddr,
    hosts_file: PathBuf,
    /// Each name and its addresses, as last written.
    names: Mutex<BTreeMap<String, Vec<IpAddr>>>,
    _directory: tempfile::TempDir,
}

impl Dnsmasq {
    /// The program: on PATH, or where Debian's dnsmasq-base puts it
    /// (/usr/sbin, which a non-root PATH may lack).
    fn program() -> PathBuf {
        let installed = Path::new("/usr/sbin/dnsmasq");
        if installed.exists() {
            return installed.to_path_buf();
        }
        PathBuf::from("dnsmasq")
    }

    /// Starts dnsmasq on a free port of 127.0.0.1, in the foreground, with
    /// no upstream server, no /etc/hosts and a TTL of a second, answering
    /// the names of `names`.
    pub fn start(names: &[(&str, &[IpAddr])]) -> Self {
        let directory = tempfile::tempdir().expect("a directory for the hosts file");
        let hosts_file = directory.path().join("hosts");
        let names: BTreeMap<String, Vec<IpAddr>> =
            names.iter().map(|(name, addresses)| (name.to_string(), sorted(addresses))).collect();
        write_hosts(&hosts_file, &names);
        let mut last_error = String::new();
        for _ in 0..3 {
            let address = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let mut command = Command::new(Self::program());
            command.args([
                "--keep-in-foreground",
                "--log-facility=-",
                "--conf-file=/dev/null",
                "--pid-file=",
                // The tests run as root: dnsmasq would switch to `nobody`,
                // who cannot read the test's private directory on SIGHUP.
                "--user=root",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--local-ttl=1",
            ]);
            command.arg(format!("--port={}", address.port()));
            command.arg(format!("--local=/{DOMAIN}/"));
            command.arg(format!("--addn-hosts={}", hosts_file.display()));
            let mut process = ChildProcess::start("dnsmasq", command, Output::Captured)
                .unwrap_or_else(|error| panic!("{error} (scripts/install-tools.sh --for-tests installs dnsmasq)"));
            match process.wait_for_address(address, Duration::from_secs(10)) {
                Ok(()) => {
                    let server = Self { process, address, hosts_file, names: Mutex::new(names), _directory: directory };
                    server.wait_until_answering();
                    return server;
                }
                // Another process took the port meanwhile: another one.
                Err(error) => last_error = error.to_string(),
            }
        }
        panic!("dnsmasq did not start: {last_error}");
    }

    /// `127.0.0.1:PORT`, as `--dns-server` takes it.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Makes `name` answer `addresses` (none: the name no longer exists),
    /// and waits until the server answers so.
    pub fn set(&self, name: &str, addresses: &[IpAddr]) {
        {
            let mut names = self.names.lock().expect("not poisoned");
            names.insert(name.to_owned(), sorted(addresses));
            write_hosts(&self.hosts_file, &names);
        }
        // dnsmasq reads its hosts files again on SIGHUP.
        self.process.signal(Signal::SIGHUP).unwrap_or_else(|error| panic!("{error}"));
        self.wait_until_answering();
    }

    /// Waits until every name answers the addresses last written.
    fn wait_until_answering(&self) {
        let expected = self.names.lock().expect("not poisoned").clone();
        let deadline = Instant::now() + RELOAD;
        loop {
            let answered: BTreeMap<String, Vec<IpAddr>> =
                expected.keys().map(|name| (name.clone(), self.resolve(name))).collect();
            if answered == expected {
                return;
            }
            assert!(Instant::now() < deadline, "dnsmasq answers {answered:?}, not {expected:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The addresses the server answers for `name` (A and AAAA), sorted;
    /// none when the name does not exist, or the server does not answer.
    pub fn resolve(&self, name: &str) -> Vec<IpAddr> {
        let servers = NameServerConfigGroup::from_ips_clear(&[self.address.ip()], self.address.port(), true);
        let mut builder = TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, Vec::new(), servers),
            TokioConnectionProvider::default(),
        );
        builder.options_mut().use_hosts_file = ResolveHosts::Never;
        builder.options_mut().timeout = Duration::from_secs(1);
        let resolver = builder.build();
        let fqdn = format!("{name}.");
        let mut addresses: Vec<IpAddr> = block_on(async {
            let (v4, v6) = tokio::join!(resolver.ipv4_lookup(fqdn.as_str()), resolver.ipv6_lookup(fqdn.as_str()));
            let v4 = v4.into_iter().flat_map(|found| found.into_iter().map(|a| IpAddr::from(a.0)).collect::<Vec<_>>());
            let v6 = v6.into_iter().flat_map(|found| found.into_iter().map(|a| IpAddr::from(a.0)).collect::<Vec<_>>());
            v4.chain(v6).collect()
        });
        addresses.sort();
        addresses
    }
}

fn sorted(addresses: &[IpAddr]) -> Vec<IpAddr> {
    let mut addresses = addresses.to_vec();
    addresses.sort();
    addresses
}

/// Writes the hosts file anew, in one rename, so that dnsmasq never reads
/// half of it.
fn write_hosts(path: &Path, names: &BTreeMap<String, Vec<IpAddr>>) {
    let mut text = String::new();
    for (name, addresses) in names {
        for address in addresses {
            text.push_str(&format!("{address} {name}\n"));
        }
    }
    let written = path.with_extension("new");
    std::fs::write(&written, text).expect("write the hosts file");
    std::fs::rename(&written, path).expect("replace the hosts file");
}
