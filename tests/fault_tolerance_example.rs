//! The fault-tolerance example (`examples/fault_tolerance`), shortened: a trainer's process
//! is killed during a step, the survivors go on as a smaller group from the last
//! checkpoint (whose writer was the killed rank), an out-of-memory answer halves the batch,
//! and the run completes — still learning.

#[allow(dead_code)]
#[path = "../examples/rl/actors.rs"]
mod actors;
#[path = "../examples/rl/checkpoint.rs"]
mod checkpoint;
#[allow(dead_code)]
#[path = "../examples/rl/driver.rs"]
mod driver;
#[path = "../examples/rl/policy.rs"]
mod policy;
#[path = "../examples/fault_tolerance/recovery.rs"]
mod recovery;
#[path = "../examples/rl/task.rs"]
mod task;

use recovery::{Config, Event};

#[kt::test]
async fn after_a_trainer_is_killed_the_survivors_restore_the_checkpoint_halve_the_batch_and_finish()
{
    let mut config = Config {
        kill_at: Some(25),
        ..Config::default()
    };
    config.rl.steps = 60;
    config.rl.verbose = false;
    config.rl.weights_key = "fault-tolerance-test/policy".into();
    let run = recovery::run(config).await.unwrap();
    for event in &run.events {
        println!("{event}");
    }
    let [killed, reformed, halved] = &run.events[..] else {
        panic!("expected a kill, a reform and a halving: {:?}", run.events);
    };
    assert!(
        matches!(
            killed,
            Event::Killed {
                step: 25,
                rank: 0,
                ..
            }
        ),
        "{killed:?}"
    );
    match reformed {
        Event::Reformed {
            cause,
            world: 2,
            restored_step: 20,
            ..
        } => assert!(cause.contains("killed by signal 9"), "{cause}"),
        other => panic!("expected a reform of 2 from step 20, got {other:?}"),
    }
    match halved {
        Event::BatchHalved {
            message,
            prompts: 32,
        } => assert!(message.contains("out of memory"), "{message}"),
        other => panic!("expected the batch halved to 32, got {other:?}"),
    }
    // Steps 1..=24 with three ranks, then 21..=60 again from the checkpoint with two.
    let steps: Vec<u64> = run.iterations.iter().map(|i| i.step).collect();
    let expected: Vec<u64> = (1..=24).chain(21..=60).collect();
    assert_eq!(steps, expected);
    let last = run.iterations.last().unwrap();
    assert_eq!((last.world, last.prompts), (2, 32));
    assert!(
        run.iterations[..24]
            .iter()
            .all(|i| i.world == 3 && i.prompts == 64)
    );
    // It still learns: near chance (0.1) at the start, well above it at the end.
    assert!(
        run.iterations[0].reward < 0.2,
        "{}",
        run.iterations[0].reward
    );
    assert!(run.final_reward(10) >= 0.5, "{}", run.final_reward(10));
}
