//! The process-wide state of the node layer: this process's one [`Node`], the runtime its
//! tasks run on, and the CA and address a backend asks the driver's node to use.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use kt_core::Error;

use super::{Node, lock};
use crate::wire::TransportError;
use crate::wire::tls::{ClusterCa, Identity};

static GLOBAL: Mutex<Option<Arc<Node>>> = Mutex::new(None);

/// The CA the driver's node is to use, when a backend brings one (see [`use_ca`]).
static DRIVER_CA: Mutex<Option<ClusterCa>> = Mutex::new(None);

/// The address the driver's node is to bind, when a backend or the user names one (see
/// [`use_address`]).
static DRIVER_ADDRESS: Mutex<Option<IpAddr>> = Mutex::new(None);

/// Names the address this driver's node binds, in place of the one it would pick.
pub const NODE_IP_ENV: &str = "KT_NODE_IP";

static RUNTIME: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();

/// Makes this driver's node use `ca` (a cluster's CA, shared with the workers a backend
/// starts there) instead of this user's machine CA. It must come before the node
/// starts, that is before the first spawn; a node already started with another CA is an
/// error, since its workers could not trust each other.
pub fn use_ca(ca: ClusterCa) -> Result<(), Error> {
    if let Some(node) = &*lock(&GLOBAL) {
        let same = node
            .ca()
            .is_some_and(|current| current.certificate_der() == ca.certificate_der());
        return if same {
            Ok(())
        } else {
            Err(Error::invalid_options(
                "this process's node already started with another CA: set up the \
                          cluster placement before the first spawn",
            ))
        };
    }
    *lock(&DRIVER_CA) = Some(ca);
    Ok(())
}

/// Makes this driver's node bind `ip`, an address its peers can reach: on a cluster, one
/// that pods can route to, so that actors living in the driver can be called from pods.
/// Without it the node binds [`NODE_IP_ENV`] (`KT_NODE_IP`), else `POD_IP`, else (inside a
/// pod) the address its route to the API server leaves from, else `127.0.0.1`. It must come
/// before the node starts; a node already bound elsewhere is an error.
pub fn use_address(ip: IpAddr) -> Result<(), Error> {
    if let Some(node) = &*lock(&GLOBAL) {
        return if node.address().ip() == ip {
            Ok(())
        } else {
            Err(Error::invalid_options(format!(
                "this process's node already listens on {}, not {ip}: name the driver's \
                 address before the first spawn",
                node.address().ip()
            )))
        };
    }
    *lock(&DRIVER_ADDRESS) = Some(ip);
    Ok(())
}

/// Where the driver's node binds, from the first of: the address named by [`use_address`],
/// `KT_NODE_IP`, `POD_IP`, the local end of the route toward `KUBERNETES_SERVICE_HOST`
/// (set in every pod), loopback.
fn driver_address(
    named: Option<IpAddr>,
    var: impl Fn(&str) -> Option<String>,
) -> Result<IpAddr, TransportError> {
    let ip = chosen_address(named, var)?;
    if ip.is_unspecified() {
        // The node's address travels in every handle it exports: peers must be able to
        // dial it, and nobody can dial 0.0.0.0.
        return Err(TransportError::Io(format!(
            "the driver's node cannot listen on {ip}: its address goes into the handles it \
             hands out, so name one address of this machine that peers can reach \
             ({NODE_IP_ENV} or driver_address)"
        )));
    }
    Ok(ip)
}

fn chosen_address(
    named: Option<IpAddr>,
    var: impl Fn(&str) -> Option<String>,
) -> Result<IpAddr, TransportError> {
    if let Some(ip) = named {
        return Ok(ip);
    }
    // `POD_IP`: what kt's pods set through the downward API (the worker layer's
    // `LISTEN_IP_ENV`; named here since the node layer comes below it).
    for name in [NODE_IP_ENV, "POD_IP"] {
        if let Some(value) = var(name).filter(|v| !v.trim().is_empty()) {
            return value.trim().parse().map_err(|_| {
                TransportError::Io(format!(
                    "{name}={value:?} is not an IP address: set it to an address of this \
                     machine that peers can reach, or unset it"
                ))
            });
        }
    }
    let api_server = var("KUBERNETES_SERVICE_HOST").and_then(|host| host.parse::<IpAddr>().ok());
    if let Some(api_server) = api_server {
        let port = var("KUBERNETES_SERVICE_PORT")
            .and_then(|p| p.parse().ok())
            .unwrap_or(443);
        match source_address_toward(SocketAddr::new(api_server, port)) {
            Ok(ip) => return Ok(ip),
            Err(error) => tracing::warn!(
                "cannot find this pod's address (route toward the API server {api_server}: \
                 {error}); binding 127.0.0.1, so pods cannot call actors of this driver; set \
                 {NODE_IP_ENV}"
            ),
        }
    }
    Ok(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The local address the kernel would send from toward `peer`: connecting a UDP socket
/// sends nothing, it only picks the route.
fn source_address_toward(peer: SocketAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = match peer {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = std::net::UdpSocket::bind(any)?;
    socket.connect(peer)?;
    Ok(socket.local_addr()?.ip())
}

/// Tells the transport which runtime lives as long as the process (`#[kt::main]`'s, or the
/// runtime shared by `#[kt::test]`s), so the node's tasks run there. Without it the node
/// gets a runtime of its own on a background thread.
pub fn use_runtime(runtime: tokio::runtime::Handle) {
    let _ = RUNTIME.set(runtime);
}

/// The runtime the node's tasks run on: it must outlive every caller's runtime.
pub(super) fn node_runtime() -> Result<tokio::runtime::Handle, TransportError> {
    if let Some(handle) = RUNTIME.get() {
        return Ok(handle.clone());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("kt-node".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(runtime) => {
                    let _ = tx.send(Ok(runtime.handle().clone()));
                    runtime.block_on(std::future::pending::<()>());
                }
                Err(error) => {
                    let _ = tx.send(Err(TransportError::Io(error.to_string())));
                }
            }
        })
        .map_err(|e| TransportError::Io(e.to_string()))?;
    let handle = rx.recv().map_err(|e| TransportError::Io(e.to_string()))??;
    Ok(RUNTIME.get_or_init(|| handle).clone())
}

impl Node {
    /// This process's node, started on first use as a driver: with this user's machine
    /// CA (see [`crate::wire::directory`]), so that other drivers on this machine trust
    /// its workers, or with a fresh session CA when the state directory cannot be used.
    pub fn global() -> Result<Arc<Node>, TransportError> {
        let mut global = lock(&GLOBAL);
        if let Some(node) = &*global {
            return Ok(node.clone());
        }
        let ca = match lock(&DRIVER_CA).take() {
            Some(ca) => ca,
            None => match crate::wire::directory::machine_ca() {
                Ok(ca) => ca,
                Err(error) => {
                    tracing::warn!("{error}; using a CA for this process only");
                    ClusterCa::generate()?
                }
            },
        };
        let ip = driver_address(lock(&DRIVER_ADDRESS).take(), |name| {
            std::env::var(name).ok()
        })?;
        let identity = ca.issue("kt driver")?;
        let node = Node::start_at(&identity, Some(ca), SocketAddr::new(ip, 0))?;
        *global = Some(node.clone());
        Ok(node)
    }

    /// Starts this process's node with an identity given by its driver (worker mode).
    pub fn install(identity: &Identity) -> Result<Arc<Node>, TransportError> {
        if let Ok(current) = tokio::runtime::Handle::try_current() {
            use_runtime(current);
        }
        let node = Node::start(identity, None)?;
        *lock(&GLOBAL) = Some(node.clone());
        Ok(node)
    }

    /// Starts this process's node on `bind` with an identity given by its driver (a
    /// worker the driver dials: a pod listening on its own IP).
    pub fn install_at(identity: &Identity, bind: SocketAddr) -> Result<Arc<Node>, TransportError> {
        if let Ok(current) = tokio::runtime::Handle::try_current() {
            use_runtime(current);
        }
        let node = Node::start_at(identity, None, bind)?;
        *lock(&GLOBAL) = Some(node.clone());
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_driver_binds_the_first_address_it_is_given() {
        let named: IpAddr = "10.1.2.3".parse().expect("an IP");
        let vars = [("KT_NODE_IP", "10.9.9.9"), ("POD_IP", "10.8.8.8")];
        assert_eq!(
            driver_address(Some(named), env(&vars)).expect("chosen"),
            named
        );
        assert_eq!(
            driver_address(None, env(&vars))
                .expect("chosen")
                .to_string(),
            "10.9.9.9"
        );
        assert_eq!(
            driver_address(None, env(&vars[1..]))
                .expect("chosen")
                .to_string(),
            "10.8.8.8"
        );
        assert_eq!(
            driver_address(None, env(&[])).expect("chosen"),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
    }

    #[test]
    fn inside_a_pod_the_driver_binds_its_route_to_the_api_server() {
        // Loopback stands for the API server: the route toward it leaves from loopback.
        let vars = [("KUBERNETES_SERVICE_HOST", "127.0.0.2")];
        assert_eq!(
            driver_address(None, env(&vars))
                .expect("chosen")
                .to_string(),
            "127.0.0.1"
        );
    }

    #[test]
    fn an_unspecified_address_is_refused() {
        for vars in [[("KT_NODE_IP", "0.0.0.0")], [("POD_IP", "::")]] {
            let error = driver_address(None, env(&vars)).expect_err("nobody can dial it");
            assert!(error.to_string().contains("name one address"), "{error}");
        }
    }

    #[test]
    fn a_malformed_node_ip_is_refused_by_name() {
        let error = driver_address(None, env(&[("KT_NODE_IP", "pod-ip")]))
            .expect_err("not an IP")
            .to_string();
        assert!(error.contains("KT_NODE_IP=\"pod-ip\""), "{error}");
    }
}
