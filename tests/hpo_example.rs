//! The hyperparameter-search example (`examples/hpo`): a pool of trainer actors in local
//! processes, trials farmed to them one by one, the bad ones stopped early; the best trial
//! found learns, and only its state is left in the store.

#[allow(dead_code)]
#[path = "../examples/rl/checkpoint.rs"]
mod checkpoint;
#[path = "../examples/hpo/control.rs"]
mod control;
#[allow(dead_code)]
#[path = "../examples/rl/policy.rs"]
mod policy;
#[path = "../examples/hpo/search.rs"]
mod search;
#[path = "../examples/rl/task.rs"]
mod task;
#[path = "../examples/hpo/worker.rs"]
mod worker;

#[kt::test]
async fn the_search_stops_bad_trials_early_and_finds_one_that_learns() {
    let config = control::Config {
        verbose: false,
        ..control::Config::default()
    };
    let search = control::run(config).await.unwrap();
    control::print_summary(&search);
    assert_eq!(search.trials.len(), 12);
    let best = &search.trials[search.best];
    // The best got to the last rung, and no trial that did beat it.
    assert_eq!(best.steps, 90);
    let finals = |t: &control::TrialSummary| t.rewards.get(2).copied();
    let top = search
        .trials
        .iter()
        .filter_map(finals)
        .fold(0.0f32, f32::max);
    assert_eq!(finals(best), Some(top));
    // It learns (chance is 0.1), with a learning rate no extreme of the search space has.
    assert!(top >= 0.5, "{top}");
    assert!((0.003..0.2).contains(&best.hyper.lr), "{:?}", best.hyper);
    // Most trials were stopped early: far fewer steps than training all of them fully.
    assert!(search.stopped_early() >= 8, "{}", search.stopped_early());
    assert!(search.steps * 3 < 12 * 90, "{} steps", search.steps);
    // The best trial's state is kept; the others' are gone.
    let left: Vec<String> = kt::store::ls("hpo/")
        .await
        .unwrap()
        .into_iter()
        .filter(|key| !key.versions.is_empty())
        .map(|key| key.key)
        .collect();
    assert_eq!(left, [worker::state_key(search.best)]);
}
