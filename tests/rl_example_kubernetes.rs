//! The RL example (`examples/rl`) on the Kubernetes backend through the emulator: its
//! actors in pods of two emulated nodes (each node's pods a host of their own), weights
//! crossing from the trainer's pod to the rollouts' over QUIC. Shortened; it must still
//! learn. A binary of its own: the driver's node takes the cluster's CA before any spawn.

mod support;

#[path = "../examples/rl/actors.rs"]
mod actors;
#[path = "../examples/rl/driver.rs"]
mod driver;
#[path = "../examples/rl/policy.rs"]
mod policy;
#[path = "../examples/rl/task.rs"]
mod task;

use std::sync::Arc;

#[kt::test]
async fn on_kubernetes_the_same_loop_learns_with_its_actors_in_pods() {
    let cluster = support::cluster().await;
    let config = driver::Config {
        steps: 60,
        weights_key: "rl-test/kubernetes".into(),
        verbose: false,
        ..driver::Config::default()
    };
    let run = driver::run(config, Arc::new(cluster.k8s.clone()))
        .await
        .unwrap();
    driver::print_summary(&run);
    assert!(
        run.iterations[0].reward < 0.2,
        "{}",
        run.iterations[0].reward
    );
    assert!(run.final_reward(10) >= 0.6, "{}", run.final_reward(10));
}
