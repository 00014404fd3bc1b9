//! With `PodNetwork::NodeNamespace` the node is a host of its own: pods run in the node's
//! network namespace, reach this machine only at `Emulator::host_address`, never at its
//! loopback, and have a `/dev/shm` of the node's, apart from this machine's.

mod common;

use std::net::TcpListener;

use common::{phase, shell_pod, wait_pod};
use serde_json::json;
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn pods_of_a_node_namespace_reach_the_host_only_at_its_address() {
    let Some(h) = common::start_in_node_namespace().await else {
        return;
    };
    let host = h.emulator.host_address();
    let on_host = TcpListener::bind((host, 0)).expect("listen on the host address");
    let on_loopback = TcpListener::bind(("127.0.0.1", 0)).expect("listen on loopback");
    let shm_name = format!("kt-emu-test-{}", std::process::id());
    let host_shm = std::path::Path::new("/dev/shm").join(format!("{shm_name}-host"));
    let pod_shm = std::path::Path::new("/dev/shm").join(format!("{shm_name}-pod"));
    std::fs::write(&host_shm, b"host").expect("a file in the host's /dev/shm");

    // The pod reports over a connection to the host address: its network namespace,
    // whether the host's loopback listener answers, and what its /dev/shm holds.
    let script = r#"
        exec 3<>/dev/tcp/$HOST/$HOST_PORT || exit 1
        echo > /dev/shm/$SHM-pod
        {
          echo "netns $(readlink /proc/self/ns/net)"
          if (exec 4<>/dev/tcp/127.0.0.1/$LOOPBACK_PORT) 2>/dev/null; then echo "loopback reached"; else echo "loopback refused"; fi
          if [ -e /dev/shm/$SHM-host ]; then echo "host shm visible"; else echo "host shm hidden"; fi
          if [ -e /dev/shm/$SHM-pod ]; then echo "own shm visible"; fi
        } >&3
        exec 3>&-
        exec sleep 30
    "#;
    let mut pod = shell_pod("isolated", script, "Never");
    pod["spec"]["containers"][0]["command"] = json!(["/bin/bash", "-c", script]);
    pod["spec"]["containers"][0]["env"] = json!([
        {"name": "HOST", "value": host.to_string()},
        {"name": "HOST_PORT", "value": on_host.local_addr().expect("port").port().to_string()},
        {"name": "LOOPBACK_PORT", "value": on_loopback.local_addr().expect("port").port().to_string()},
        {"name": "SHM", "value": shm_name},
    ]);
    h.create_pod(pod).await;

    // Accepted asynchronously: a pod that never connects fails the test at the timeout
    // below instead of leaving a blocked thread the runtime would wait for.
    on_host
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let on_host = tokio::net::TcpListener::from_std(on_host).expect("a tokio listener");
    let report = tokio::spawn(async move {
        let (mut from_pod, peer) = on_host
            .accept()
            .await
            .expect("the pod connects to the host");
        let mut report = String::new();
        from_pod
            .read_to_string(&mut report)
            .await
            .expect("the report");
        (report, peer)
    });
    let Ok(report) = tokio::time::timeout(common::WAIT, report).await else {
        let now = h.pods().get_opt("isolated").await;
        panic!(
            "the pod did not report within {:?}; now: {now:#?}",
            common::WAIT
        );
    };
    let (report, peer) = report.expect("the accept task");
    let running = wait_pod(&h.pods(), "isolated", "Running", |p| phase(p) == "Running").await;
    let status = running.status.expect("a status");
    let pod_ip = status.pod_ip.expect("a pod IP");
    // The node's pods share its namespace, so a connection leaves from the node's first
    // address unless the pod binds its own (kt's workers bind their pod IP).
    let node_subnet = |ip: &str| ip.rsplit_once('.').map(|(net, _)| net.to_string());
    assert_eq!(node_subnet(&peer.ip().to_string()), node_subnet(&pod_ip));
    assert_ne!(
        peer.ip(),
        host,
        "the pod connects from the node, not the host"
    );
    assert!(pod_ip.starts_with("198.1"), "{pod_ip}");
    assert_eq!(status.host_ip, Some(host.to_string()));

    let mine = std::fs::read_link("/proc/self/ns/net").expect("this process's namespace");
    let theirs = report
        .lines()
        .find_map(|l| l.strip_prefix("netns "))
        .expect("the pod names its namespace");
    assert_ne!(theirs, mine.to_string_lossy(), "{report}");
    assert!(report.contains("loopback refused"), "{report}");
    assert!(report.contains("host shm hidden"), "{report}");
    assert!(report.contains("own shm visible"), "{report}");
    assert!(
        !pod_shm.exists(),
        "the pod's /dev/shm file shows on the host"
    );
    std::fs::remove_file(&host_shm).expect("remove the host's file");
}

#[tokio::test]
async fn the_node_namespace_goes_with_the_emulator() {
    let Some(h) = common::start_in_node_namespace().await else {
        return;
    };
    let host = h.emulator.host_address();
    let links = || {
        let out = std::process::Command::new("ip")
            .args(["-br", "addr"])
            .output()
            .expect("ip runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(links().contains(&host.to_string()), "{}", links());
    h.emulator.shutdown().await;
    assert!(!links().contains(&format!("{host}/")), "{}", links());
}
