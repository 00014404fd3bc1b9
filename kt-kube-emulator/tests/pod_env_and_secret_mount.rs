//! A pod's environment reaches its process: literal values, `$(VAR)` expansion, field
//! references, secret keys, and a secret volume's mount path rewritten to where the file is.

mod common;

use common::{phase, shell_pod, wait_pod};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{LogParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn env_field_refs_secret_keys_and_mounted_files_reach_the_process() {
    let h = common::start().await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds"},
        "stringData": {"token": "s3cr3t", "ca.crt": "CERTIFICATE-BYTES"}
    }))
    .expect("valid");
    h.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");

    let script = r#"echo "name=$POD_NAME ns=$POD_NAMESPACE ip=$POD_IP node=$NODE greeting=$GREETING token=$TOKEN"; echo "file=$(cat "$CA_FILE")"; echo "dir=$CA_DIR""#;
    let mut pod = shell_pod("envy", script, "Never");
    pod["spec"]["volumes"] = json!([{"name": "tls", "secret": {"secretName": "creds"}}]);
    let c = &mut pod["spec"]["containers"][0];
    c["volumeMounts"] = json!([{"name": "tls", "mountPath": "/etc/kt/tls", "readOnly": true}]);
    c["env"] = json!([
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "WHO", "value": "world"},
        {"name": "GREETING", "value": "hello-$(WHO)"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "CA_FILE", "value": "/etc/kt/tls/ca.crt"},
        {"name": "CA_DIR", "value": "/etc/kt/tls"},
    ]);
    h.create_pod(pod).await;
    let pod = wait_pod(&h.pods(), "envy", "Succeeded", |p| phase(p) == "Succeeded").await;
    let ip = pod.status.and_then(|s| s.pod_ip).expect("an IP");
    let log = h
        .pods()
        .logs("envy", &LogParams::default())
        .await
        .expect("logs");
    let expected = format!(
        "name=envy ns=default ip={ip} node={} greeting=hello-world token=s3cr3t",
        h.emulator.node_name()
    );
    assert!(log.contains(&expected), "{log}");
    assert!(log.contains("file=CERTIFICATE-BYTES"), "{log}");
    // The directory is rewritten to the emulator's copy, never left at the container path.
    assert!(!log.contains("dir=/etc/kt/tls"), "{log}");
}

#[tokio::test]
async fn missing_secret_keeps_the_pod_waiting_until_it_exists() {
    let h = common::start().await;
    let mut pod = shell_pod("patient", "echo token=$TOKEN", "Never");
    pod["spec"]["containers"][0]["env"] =
        json!([{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "t"}}}]);
    h.create_pod(pod).await;
    wait_pod(&h.pods(), "patient", "waiting on its secret", |p| {
        common::waiting_reason(p) == Some("CreateContainerConfigError")
    })
    .await;
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "later"}, "stringData": {"t": "now"}}))
            .expect("valid");
    h.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    wait_pod(&h.pods(), "patient", "Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    let log = h
        .pods()
        .logs("patient", &LogParams::default())
        .await
        .expect("logs");
    assert_eq!(log, "token=now\n");
}
