//! `kt-kube-emulator serve [--kubeconfig PATH] [--port PORT]`: runs an emulated cluster until
//! Ctrl-C, for manual use with `kubectl` or the `kt` command.

use std::process::ExitCode;

use kt_kube_emulator::{Emulator, EmulatorConfig};

const USAGE: &str = "usage: kt-kube-emulator serve [--kubeconfig PATH] [--port PORT]";

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
                "serving on {}; kubeconfig written to {path}",
                emulator.url()
            );
        }
        None => print!("{}", emulator.kubeconfig_yaml()),
    }
    let _ = tokio::signal::ctrl_c().await;
    emulator.shutdown().await;
    ExitCode::SUCCESS
}
