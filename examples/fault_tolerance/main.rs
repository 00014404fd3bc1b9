//! Recovery that makes actors worth it for training: a death is a decision for the driver,
//! not a teardown.
//!
//! The RL example's loop (`examples/rl`: GRPO on reversing six digits) with three trainer
//! ranks. During step 45 the driver kills trainer rank 0's process with SIGKILL. The step
//! fails with `ActorDied`; the driver reforms the trainer group with the two survivors,
//! they restore the checkpoint of step 40 from `kt::store` (the driver's copy: the rank
//! that wrote it is gone), and training goes on with a world of two. Each rank's share of
//! the batch is now bigger than its memory, so the trainers answer with their typed
//! `TrainError::OutOfMemory`; the driver halves the batch and goes on to the end.
//!
//! ```text
//! cargo run --release --example fault_tolerance
//! cargo run --release --example fault_tolerance -- --kill-at 20 --kill-rank 1 --steps 100
//! ```
//!
//! The actors are local processes (the kill is a signal to one of them).

#[allow(dead_code)] // Shared with examples/rl and the tests: each uses its own part.
#[path = "../rl/actors.rs"]
mod actors;
#[path = "../rl/checkpoint.rs"]
mod checkpoint;
#[allow(dead_code)]
#[path = "../rl/driver.rs"]
mod driver;
#[path = "../rl/policy.rs"]
mod policy;
mod recovery;
#[path = "../rl/task.rs"]
mod task;

use recovery::Config;

fn parse_args() -> Result<Config, String> {
    let mut config = Config::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number = |name: &str, text: String| -> Result<u64, String> {
            text.parse().map_err(|e| format!("{name}: {e}"))
        };
        match arg.as_str() {
            "--steps" => config.rl.steps = number("--steps", value("--steps")?)? as usize,
            "--trainers" => config.trainers = number("--trainers", value("--trainers")?)? as usize,
            "--kill-at" => config.kill_at = Some(number("--kill-at", value("--kill-at")?)?),
            "--kill-rank" => {
                config.kill_rank = number("--kill-rank", value("--kill-rank")?)? as usize
            }
            "--no-kill" => config.kill_at = None,
            "--checkpoint-every" => {
                config.checkpoint_every =
                    number("--checkpoint-every", value("--checkpoint-every")?)?
            }
            "--trainer-memory" => {
                config.memory_bytes = Some(number("--trainer-memory", value("--trainer-memory")?)?)
            }
            "--quiet" => config.rl.verbose = false,
            other => {
                return Err(format!(
                    "unknown option {other}; options: --steps N, --trainers N, --kill-at STEP, \
                     --kill-rank R, --no-kill, --checkpoint-every N, --trainer-memory BYTES, --quiet"
                ));
            }
        }
    }
    Ok(config)
}

#[kt::main]
async fn main() -> Result<(), actors::TrainError> {
    let config = match parse_args() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let run = recovery::run(config).await?;
    let last = run.iterations.last();
    println!();
    println!(
        "{} steps in {:.2} s; reward {:.3} at the start, {:.3} over the last 10; finished with {} trainers on batches of {} prompts",
        last.map_or(0, |i| i.step),
        run.loop_s,
        run.iterations.first().map_or(0.0, |i| i.reward),
        run.final_reward(10),
        last.map_or(0, |i| i.world),
        last.map_or(0, |i| i.prompts),
    );
    for event in &run.events {
        println!("  {event}");
    }
    Ok(())
}
