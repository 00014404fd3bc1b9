//! A small RL post-training loop on kt that learns: GRPO on a policy that must reverse a
//! string of six digits.
//!
//! The driver (this process) runs two rollout workers (sampling answers from the current
//! weights, round robin), a verifier (scoring each answer against the exact solution) and
//! a trainer group of two ranks (SPMD: each computes the policy gradient of half the batch,
//! the ranks sum their gradients through `kt_gpu::Collectives` — its host implementation
//! here, NCCL on GPUs — and take the same Adam step). Rank 0 publishes every new version of
//! the weights to `kt::store` in the safetensors layout; the rollout workers pull them with
//! `wait_newer`. Each actor is a child process of this example (the embedded default).
//!
//! ```text
//! cargo run --release --example rl                  # 150 iterations, synchronous
//! cargo run --release --example rl -- --async 1     # sample the next batch while training, 1 version stale at most
//! cargo run --release --example rl -- --steps 300
//! ```

mod actors;
mod driver;
mod policy;
mod task;

use std::sync::Arc;

use driver::Config;

fn parse_args() -> Result<Config, String> {
    let mut config = Config::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--steps" => {
                config.steps = value("--steps")?
                    .parse()
                    .map_err(|e| format!("--steps: {e}"))?
            }
            "--async" => {
                config.staleness = Some(
                    value("--async")?
                        .parse()
                        .map_err(|e| format!("--async: {e}"))?,
                )
            }
            "--lr" => config.lr = value("--lr")?.parse().map_err(|e| format!("--lr: {e}"))?,
            "--quiet" => config.verbose = false,
            other => {
                return Err(format!(
                    "unknown option {other}; options: --steps N, --async K, --lr X, --quiet"
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
    let run = driver::run(config, Arc::new(kt::LocalProcess::new())).await?;
    driver::print_summary(&run);
    Ok(())
}
