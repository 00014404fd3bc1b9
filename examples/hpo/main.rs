//! Hyperparameter search on kt, as Kubetorch describes it: a control loop in the driver
//! farms trials one by one to a pool of trainer actors, reads each trial's progress, and
//! stops the bad ones early.
//!
//! The trials train the RL example's policy (GRPO on reversing six digits) with a learning
//! rate and a GRPO group size drawn from a search space. The search is asynchronous
//! successive halving: every trial gets 10 steps, the top third of those 30, the top third
//! of those 90; a worker that frees up promotes the best waiting trial or starts a new one,
//! so no worker waits for a rung to fill. A trial's state goes to `kt::store` between
//! rungs, so any worker of the pool can resume it.
//!
//! ```text
//! cargo run --release --example hpo
//! cargo run --release --example hpo -- --trials 27 --workers 4
//! ```

#[allow(dead_code)] // Shared with the other examples: this one uses a part of it.
#[path = "../rl/checkpoint.rs"]
mod checkpoint;
mod control;
#[allow(dead_code)]
#[path = "../rl/policy.rs"]
mod policy;
mod search;
#[path = "../rl/task.rs"]
mod task;
mod worker;

use control::Config;

fn parse_args() -> Result<Config, String> {
    let mut config = Config::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            let text = args.next().ok_or(format!("{name} needs a value"))?;
            text.parse().map_err(|e| format!("{name}: {e}"))
        };
        match arg.as_str() {
            "--trials" => config.trials = value("--trials")?,
            "--workers" => config.workers = value("--workers")?,
            "--seed" => config.seed = value("--seed")? as u64,
            "--quiet" => config.verbose = false,
            other => {
                return Err(format!(
                    "unknown option {other}; options: --trials N, --workers N, --seed S, --quiet"
                ));
            }
        }
    }
    Ok(config)
}

#[kt::main]
async fn main() -> kt::Result<()> {
    let config = match parse_args() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let result = control::run(config).await?;
    control::print_summary(&result);
    Ok(())
}
