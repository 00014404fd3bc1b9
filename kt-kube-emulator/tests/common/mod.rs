//! Shared test setup: an emulator, a kube client built from its kubeconfig, pod builders
//! and waiting on conditions through watches (never sleeps).

#![allow(dead_code)]

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kt_kube_emulator::{Emulator, EmulatorConfig};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::await_condition;
use serde_json::{Value, json};

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Harness {
    pub emulator: Emulator,
    pub client: kube::Client,
}

pub async fn start() -> Harness {
    start_with(EmulatorConfig::default()).await
}

pub async fn start_with(config: EmulatorConfig) -> Harness {
    harness_of(Emulator::start(config).await.expect("the emulator starts")).await
}

/// A kube client for a started emulator.
async fn harness_of(emulator: Emulator) -> Harness {
    let kubeconfig =
        Kubeconfig::from_yaml(&emulator.kubeconfig_yaml()).expect("a valid kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube accepts the kubeconfig");
    let client = kube::Client::try_from(config).expect("a client");
    Harness { emulator, client }
}

/// An emulator whose pods run in a network namespace of the node's own; `None`, after
/// saying why, where this machine does not allow one (not root) — unless
/// `KT_EMULATOR_NETWORK=namespace` (CI) asks for it, which makes that a failure.
pub async fn start_in_node_namespace() -> Option<Harness> {
    start_in_node_namespaces(EmulatorConfig::default()).await
}

/// Like [`start_in_node_namespace`], for `config`'s nodes: each in a namespace of its own.
pub async fn start_in_node_namespaces(config: EmulatorConfig) -> Option<Harness> {
    use kt_kube_emulator::{EmulatorError, PodNetwork};
    let config = config.network(PodNetwork::NodeNamespace);
    match Emulator::start(config).await {
        Err(EmulatorError::Network(error))
            if std::env::var("KT_EMULATOR_NETWORK").as_deref() != Ok("namespace") =>
        {
            eprintln!("skipped: {error}");
            None
        }
        started => Some(harness_of(started.expect("the emulator starts")).await),
    }
}

impl Harness {
    pub fn pods(&self) -> Api<Pod> {
        Api::default_namespaced(self.client.clone())
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        Api::default_namespaced(self.client.clone())
    }

    pub async fn create_pod(&self, pod: Value) -> Pod {
        let pod: Pod = serde_json::from_value(pod).expect("a valid pod");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("the pod is created")
    }
}

/// A pod running `/bin/sh -c script` with the given restart policy.
pub fn shell_pod(name: &str, script: &str, restart: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"test": name}},
        "spec": {
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "busybox:1.36", "command": ["/bin/sh", "-c", script]}]
        }
    })
}

/// Waits, through a watch, until `name` satisfies `condition`; returns that pod.
pub async fn wait_pod(
    api: &Api<Pod>,
    name: &str,
    what: &str,
    condition: impl Fn(&Pod) -> bool,
) -> Pod {
    let cond = move |p: Option<&Pod>| p.is_some_and(&condition);
    match tokio::time::timeout(WAIT, await_condition(api.clone(), name, cond)).await {
        Ok(Ok(Some(pod))) => pod,
        Ok(other) => panic!("waiting for {name} to be {what}: {other:?}"),
        Err(_) => {
            let now = api.get_opt(name).await;
            panic!("{name} did not become {what} within {WAIT:?}; now: {now:#?}")
        }
    }
}

/// Waits, through a watch, until `name` is gone.
pub async fn wait_deleted<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let cond = |o: Option<&K>| o.is_none();
    let waited = tokio::time::timeout(WAIT, await_condition(api.clone(), name, cond)).await;
    assert!(
        matches!(waited, Ok(Ok(_))),
        "{name} was not deleted within {WAIT:?}"
    );
}

pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

pub fn condition<'a>(
    p: &'a Pod,
    kind: &str,
) -> Option<&'a k8s_openapi::api::core::v1::PodCondition> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
}

pub fn is_ready(p: &Pod) -> bool {
    condition(p, "Ready").is_some_and(|c| c.status == "True")
}

pub fn container(p: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStatus> {
    p.status.as_ref()?.container_statuses.as_ref()?.first()
}

pub fn waiting_reason(p: &Pod) -> Option<&str> {
    container(p)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .as_deref()
}

pub fn terminated(p: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStateTerminated> {
    container(p)?.state.as_ref()?.terminated.as_ref()
}
