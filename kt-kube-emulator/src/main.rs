//! `kt-kube-emulator serve [--kubeconfig PATH] [--port PORT] [--network loopback|namespace]`:
//! runs an emulated cluster until Ctrl-C, for manual use with `kubectl` or the `kt` command.
//! `--network namespace` runs the node's pods in a network namespace of their own
//! (`PodNetwork::NodeNamespace`, needs root) and prints the address pods reach this machine at.

use std::process::ExitCode;

use kt_kube_emulator::{Emulator, EmulatorConfig, PodNetwork};

const USAGE: &str = "usage: kt-kube-emulator serve [--kubeconfig PATH] [--port PORT] [--network loopback|namespace]";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("serve") {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
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
                "serving on {}; kubeconfig written to {path}; pods reach this machine at {}",
                emulator.url(),
                emulator.host_address()
            );
        }
        None => print!("{}", emulator.kubeconfig_yaml()),
    }
    let _ = tokio::signal::ctrl_c().await;
    emulator.shutdown().await;
    ExitCode::SUCCESS
}
