//! `kt-kube-emulator serve [--kubeconfig PATH] [--port PORT] [--nodes N] [--network loopback|namespace]`:
//! runs an emulated cluster until Ctrl-C, for manual use with `kubectl` or the `kt` command.
//! `--nodes N` emulates N nodes (default 1), named `kt-emulator-node`,
//! `kt-emulator-node-2`, …. `--network namespace` runs each node's pods in a network
//! namespace of that node's own (`PodNetwork::NodeNamespace`, needs root) and prints the
//! address pods reach this machine at.

use std::process::ExitCode;

use kt_kube_emulator::{Emulator, EmulatorConfig, PodNetwork};

const USAGE: &str = "\
usage: kt-kube-emulator serve [--kubeconfig PATH] [--port PORT] [--nodes N] [--network loopback|namespace]

  --kubeconfig PATH  write the kubeconfig there (else print it on stdout)
  --port PORT        the API server's port on 127.0.0.1 (default: a free one)
  --nodes N          emulate N nodes (default 1): kt-emulator-node, kt-emulator-node-2, ...
  --network loopback each node's pods on loopback IPs of their own (default)
  --network namespace
                     each node a host of its own: its pods in a network namespace of the
                     node's, on 198.18.X.N, reaching other nodes' pods through this
                     machine (needs root)";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => {}
        Some("--help" | "-h" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    let mut kubeconfig = None;
    let mut config = EmulatorConfig::default();
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        match (arg.as_str(), rest.next()) {
            ("--kubeconfig", Some(path)) => kubeconfig = Some(path.clone()),
            ("--port", Some(port)) => match port.parse() {
                Ok(port) => config.listen.1 = port,
                Err(_) => {
                    eprintln!("invalid port {port:?}\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            ("--nodes", Some(count)) => match count.parse::<usize>() {
                Ok(count) if count > 0 => config = config.nodes(count),
                _ => {
                    eprintln!("invalid node count {count:?}\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            ("--network", Some(network)) => match network.as_str() {
                "loopback" => config.network = PodNetwork::SharedLoopback,
                "namespace" => config.network = PodNetwork::NodeNamespace,
                _ => {
                    eprintln!("invalid network {network:?}\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let emulator = match Emulator::start(config).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("kt-kube-emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    match &kubeconfig {
        Some(path) => {
            if let Err(e) = emulator.write_kubeconfig(path) {
                eprintln!("kt-kube-emulator: cannot write {path}: {e}");
                return ExitCode::FAILURE;
            }
            eprintln!(
                "serving on {} with nodes {}; kubeconfig written to {path}; pods reach this \
                 machine at {}",
                emulator.url(),
                emulator.node_names().join(", "),
                emulator.host_address()
            );
        }
        None => print!("{}", emulator.kubeconfig_yaml()),
    }
    let _ = tokio::signal::ctrl_c().await;
    emulator.shutdown().await;
    ExitCode::SUCCESS
}
