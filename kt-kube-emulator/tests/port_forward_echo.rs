//! Port-forward through `Api::<Pod>::portforward` reaches a TCP echo server in a pod that
//! listens on its own pod IP.

mod common;

use common::{is_ready, shell_pod, wait_pod};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ECHO: &str = r#"
import os, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((os.environ["POD_IP"], 7000))
s.listen()
while True:
    c, _ = s.accept()
    while True:
        data = c.recv(65536)
        if not data:
            break
        c.sendall(data)
    c.close()
"#;

#[tokio::test]
async fn portforward_reaches_an_echo_server_in_the_pod() {
    let Ok(python) = which_python() else {
        eprintln!("python3 not found; skipping");
        return;
    };
    let h = common::start().await;
    let mut pod = shell_pod("echo", "", "Always");
    let c = &mut pod["spec"]["containers"][0];
    c["command"] = json!([python, "-c", ECHO]);
    c["env"] =
        json!([{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]);
    c["ports"] = json!([{"name": "echo", "containerPort": 7000}]);
    c["readinessProbe"] = json!({"tcpSocket": {"port": "echo"}});
    h.create_pod(pod).await;
    wait_pod(&h.pods(), "echo", "Ready", is_ready).await;

    for round in 0..2 {
        let mut forwarder = h
            .pods()
            .portforward("echo", &[7000])
            .await
            .expect("port-forward");
        let mut stream = forwarder.take_stream(7000).expect("a stream for the port");
        let message = format!("ping {round}");
        stream.write_all(message.as_bytes()).await.expect("write");
        let mut buf = vec![0u8; message.len()];
        tokio::time::timeout(common::WAIT, stream.read_exact(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(buf, message.as_bytes());
        drop(stream);
        tokio::time::timeout(common::WAIT, forwarder.join())
            .await
            .expect("in time")
            .expect("clean end");
    }
}

fn which_python() -> Result<String, ()> {
    ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(str::to_string)
        .ok_or(())
}
