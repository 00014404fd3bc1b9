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
//! cargo run --release --example rl -- --kubernetes      # pods: kubeconfig and KT_IMAGE from the environment
//! ```
//!
//! On Kubernetes each actor type is a pod spec of its own (`driver::Computes::for_pods`:
//! trainers 1 CPU and 1 GiB, rollouts 0.5 CPU and 512 MiB, the verifier 0.25 CPU and
//! 256 MiB); `--verifier-image IMAGE` runs the verifier in an image of its own, which must
//! hold the same executable as `KT_IMAGE` (kt does not ship code to pods yet).
//!
//! The reward curve goes to `target/rl/reward.svg` and `.png` (`--plot PATH` for another).

#[allow(dead_code)] // Shared with examples/fault_tolerance and the tests: each uses its own part.
mod actors;
mod checkpoint;
mod driver;
mod plot;
mod policy;
mod task;

use std::path::PathBuf;
use std::sync::Arc;

use driver::Config;

/// The command line: the loop's configuration, where the plot goes, and whether the actors
/// go to Kubernetes.
struct Args {
    config: Config,
    plot: PathBuf,
    kubernetes: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut config = Config::default();
    let mut plot = PathBuf::from("target/rl/reward");
    let mut kubernetes = false;
    let mut verifier_image = None;
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
            "--plot" => plot = PathBuf::from(value("--plot")?),
            "--kubernetes" => kubernetes = true,
            "--verifier-image" => verifier_image = Some(value("--verifier-image")?),
            "--quiet" => config.verbose = false,
            other => {
                return Err(format!(
                    "unknown option {other}; options: --steps N, --async K, --lr X, --plot PATH, \
                     --kubernetes, --verifier-image IMAGE, --quiet"
                ));
            }
        }
    }
    if kubernetes {
        // A pod spec per actor type; the local processes of the default reserve nothing.
        config.computes = driver::Computes::for_pods(verifier_image);
    } else if verifier_image.is_some() {
        return Err("--verifier-image needs --kubernetes: local processes run no images".into());
    }
    Ok(Args {
        config,
        plot,
        kubernetes,
    })
}

#[kt::main]
async fn main() -> Result<(), actors::TrainError> {
    let Args {
        config,
        plot,
        kubernetes,
    } = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let placement: Arc<dyn kt::Placement> = match kubernetes {
        // The kubeconfig and KT_IMAGE from the environment (see the README's guide).
        true => Arc::new(kt::Kubernetes::connect().await?),
        false => Arc::new(kt::LocalProcess::new()),
    };
    let run = driver::run(config, placement).await?;
    driver::print_summary(&run);
    let rewards: Vec<f32> = run.iterations.iter().map(|i| i.reward).collect();
    match plot::save(
        &rewards,
        &plot,
        "GRPO on reversing six digits: mean reward per iteration",
    ) {
        Ok(paths) => {
            let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            println!("reward plot: {}", paths.join(", "));
        }
        Err(error) => eprintln!("the reward plot could not be written: {error}"),
    }
    Ok(())
}
