//! The RL example (`examples/rl`), shortened: it must learn — the mean reward rises from
//! near chance (0.1) to at least 0.9 — synchronously and with bounded staleness, its
//! actors in local processes. (`rl_example_kubernetes.rs` runs it with its actors in pods.)

mod support;

#[allow(dead_code)] // Shared with examples/fault_tolerance: this test uses its own part.
#[path = "../examples/rl/actors.rs"]
mod actors;
#[path = "../examples/rl/checkpoint.rs"]
mod checkpoint;
#[allow(dead_code)] // Shared with the example: this test uses its own part.
#[path = "../examples/rl/driver.rs"]
mod driver;
#[path = "../examples/rl/plot.rs"]
mod plot;
#[path = "../examples/rl/policy.rs"]
mod policy;
#[path = "../examples/rl/task.rs"]
mod task;

use std::sync::Arc;

fn config(key: &str, staleness: Option<u64>) -> driver::Config {
    driver::Config {
        steps: 120,
        staleness,
        weights_key: key.into(),
        verbose: false,
        ..driver::Config::default()
    }
}

#[kt::test]
async fn the_loop_learns_to_reverse_digits() {
    let run = driver::run(
        config("rl-test/sync", None),
        Arc::new(kt::LocalProcess::new()),
    )
    .await
    .unwrap();
    driver::print_summary(&run);
    assert_eq!(run.iterations.len(), 120);
    assert!(
        run.iterations[0].reward < 0.2,
        "{}",
        run.iterations[0].reward
    );
    assert!(run.final_reward(10) >= 0.9, "{}", run.final_reward(10));
    // Each iteration sampled with the weights the one before it made.
    for (step, iteration) in run.iterations.iter().enumerate() {
        assert_eq!(
            iteration.policy_version,
            step as u64 + 1,
            "iteration {step}"
        );
    }
    // The reward curve, as SVG and PNG.
    let dir = tempfile::tempdir().unwrap();
    let rewards: Vec<f32> = run.iterations.iter().map(|i| i.reward).collect();
    let paths = plot::save(&rewards, &dir.path().join("reward"), "reward").unwrap();
    let svg = std::fs::read_to_string(&paths[0]).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("<polyline"),
        "{svg:.200}"
    );
    let png = std::fs::read(&paths[1]).unwrap();
    assert_eq!(&png[1..4], b"PNG");
}

#[kt::test]
async fn with_bounded_staleness_rollouts_are_at_most_one_version_behind_and_it_still_learns() {
    let run = driver::run(
        config("rl-test/async", Some(1)),
        Arc::new(kt::LocalProcess::new()),
    )
    .await
    .unwrap();
    for (step, iteration) in run.iterations.iter().enumerate() {
        // Iteration `step` trains version `step + 1` into `step + 2`; its samples are of
        // `step + 1` or, one behind, `step`.
        let newest = step as u64 + 1;
        assert!(
            iteration.policy_version + 1 >= newest && iteration.policy_version <= newest,
            "iteration {step} sampled with v{}",
            iteration.policy_version
        );
    }
    assert!(run.final_reward(10) >= 0.85, "{}", run.final_reward(10));
}
