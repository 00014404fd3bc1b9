//! The RL example (`examples/rl`) on the Kubernetes backend through the emulator: its
//! actors in pods of two emulated nodes (each node's pods a host of their own), weights
//! crossing from the trainer's pod to the rollouts' over QUIC. Shortened; it must still
//! learn. A binary of its own: the driver's node takes the cluster's CA before any spawn.

mod support;

#[allow(dead_code)] // Shared with examples/fault_tolerance: this test uses its own part.
#[path = "../examples/rl/actors.rs"]
mod actors;
#[path = "../examples/rl/checkpoint.rs"]
mod checkpoint;
#[path = "../examples/rl/driver.rs"]
mod driver;
#[path = "../examples/rl/policy.rs"]
mod policy;
#[path = "../examples/rl/task.rs"]
mod task;

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{WatchEvent, WatchParams};

#[kt::test]
async fn on_kubernetes_the_same_loop_learns_with_its_actors_in_pods() {
    let cluster = support::cluster().await;
    let config = driver::Config {
        steps: 60,
        weights_key: "rl-test/kubernetes".into(),
        verbose: false,
        computes: driver::Computes::for_pods(None),
        ..driver::Config::default()
    };
    // Every pod the run creates, as the API server announces them.
    let pods: kube::Api<Pod> =
        kube::Api::namespaced(cluster.kube_client().await, cluster.k8s.namespace());
    let mut events = pods
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let created = Arc::new(Mutex::new(Vec::new()));
    let watching = tokio::spawn({
        let created = created.clone();
        async move {
            while let Some(Ok(event)) = events.next().await {
                if let WatchEvent::Added(pod) = event {
                    created.lock().unwrap().push(pod);
                }
            }
        }
    });
    let run = driver::run(config, Arc::new(cluster.k8s.clone()))
        .await
        .unwrap();
    watching.abort();
    driver::print_summary(&run);
    assert!(
        run.iterations[0].reward < 0.2,
        "{}",
        run.iterations[0].reward
    );
    assert!(run.final_reward(10) >= 0.6, "{}", run.final_reward(10));
    // Each actor type got a pod spec of its own.
    let mut requests: Vec<(String, String, String)> = created
        .lock()
        .unwrap()
        .iter()
        .map(|pod| {
            let annotations = pod.metadata.annotations.clone().unwrap_or_default();
            let type_name = annotations
                .get("kt.dev/type-name")
                .cloned()
                .unwrap_or_default();
            let short = type_name
                .rsplit("::")
                .next()
                .unwrap_or_default()
                .to_string();
            let container = &pod.spec.as_ref().unwrap().containers[0];
            let asked = container
                .resources
                .as_ref()
                .and_then(|r| r.requests.clone())
                .unwrap_or_default();
            let quantity = |name: &str| asked.get(name).map(|q| q.0.clone()).unwrap_or_default();
            (short, quantity("cpu"), quantity("memory"))
        })
        .collect();
    requests.sort();
    let expected = [
        ("Rollout", "500m", "512Mi"),
        ("Rollout", "500m", "512Mi"),
        ("Trainer", "1", "1Gi"),
        ("Trainer", "1", "1Gi"),
        ("Verifier", "250m", "256Mi"),
    ]
    .map(|(t, c, m)| (t.to_string(), c.to_string(), m.to_string()));
    assert_eq!(requests, expected);
}
