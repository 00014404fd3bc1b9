//! The kubeconfig the emulator writes works for the kube client (read from a file) and for
//! kubectl, whose `get pods` prints the usual columns.

mod common;

use std::time::Duration;

use common::{phase, shell_pod, wait_pod};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

#[tokio::test]
async fn kubeconfig_file_serves_kube_and_kubectl() {
    let h = common::start().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("kubeconfig");
    h.emulator.write_kubeconfig(&path).expect("written");

    let kubeconfig = Kubeconfig::read_from(&path).expect("readable");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    assert_eq!(config.default_namespace, "default");
    let client = kube::Client::try_from(config).expect("client");
    h.create_pod(shell_pod("listed", "exec sleep 100", "Always"))
        .await;
    let pods: Api<Pod> = Api::default_namespaced(client);
    let listed = pods.list(&ListParams::default()).await.expect("list");
    assert_eq!(listed.items.len(), 1);
    wait_pod(&h.pods(), "listed", "Running", |p| phase(p) == "Running").await;

    // kubectl is a nice-to-have: checked when installed.
    let mut kubectl = tokio::process::Command::new("kubectl");
    kubectl
        .arg("--kubeconfig")
        .arg(&path)
        .args(["get", "pods"])
        .kill_on_drop(true);
    let output = match tokio::time::timeout(Duration::from_secs(20), kubectl.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            eprintln!("kubectl not available ({e}); skipping that part");
            return;
        }
        Err(_) => panic!("kubectl did not finish"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row[..4], ["listed", "1/1", "Running", "0"]);
}
