//! The driver: spawns the actors, runs the loop, prints each iteration's reward and where
//! its time went, and sums the run up.

use std::sync::Arc;
use std::time::Instant;

use kt::prelude::*;
use kt_gpu::CollectiveHub;

use super::actors::{Rollout, Rollouts, TrainError, TrainReport, Trainer, TrainerSetup, Verifier};

/// How to run the loop.
#[derive(Debug, Clone)]
pub struct Config {
    /// Training iterations.
    pub steps: usize,
    /// Prompts per iteration (split between the rollout workers).
    pub prompts: usize,
    /// Answers sampled per prompt (GRPO's group).
    pub group: usize,
    /// Adam's learning rate.
    pub lr: f32,
    /// `Some(k)`: rollouts for the next iteration are sampled while the trainers train this
    /// one, with weights at most `k` versions old; `None`: each iteration waits for the last.
    pub staleness: Option<u64>,
    /// The data-store key of the weights.
    pub weights_key: String,
    /// Print a line per iteration.
    pub verbose: bool,
    /// What each actor type asks for.
    pub computes: Computes,
}

/// What each actor type asks for: on Kubernetes each is a pod spec of its own.
#[derive(Debug, Clone, Default)]
pub struct Computes {
    /// Each rollout worker.
    pub rollout: Compute,
    /// The verifier.
    pub verifier: Compute,
    /// Each trainer rank.
    pub trainer: Compute,
}

impl Computes {
    /// Pods sized to their work: a trainer rank 1 CPU and 1 GiB, a rollout worker half a
    /// CPU and 512 MiB, the verifier a quarter CPU and 256 MiB — in `verifier_image`, when
    /// given (an image of its own that holds the same executable as the others).
    pub fn for_pods(verifier_image: Option<String>) -> Computes {
        let mut verifier = Compute::new().cpus(0.25).memory("256Mi");
        if let Some(image) = verifier_image {
            verifier = verifier.image(image);
        }
        Computes {
            rollout: Compute::new().cpus(0.5).memory("512Mi"),
            verifier,
            trainer: Compute::new().cpus(1.0).memory("1Gi"),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            steps: 150,
            prompts: 64,
            group: 16,
            lr: 0.01,
            staleness: None,
            weights_key: "rl/policy".into(),
            verbose: true,
            computes: Computes::default(),
        }
    }
}

/// One iteration's figures.
#[derive(Debug, Clone, Default)]
pub struct Iteration {
    /// The mean reward of its answers.
    pub reward: f32,
    /// The weights version they were sampled with.
    pub policy_version: u64,
    /// Times, in ms: sampling (the driver's wait for it, weight pulls included).
    pub generate_ms: f64,
    /// Of which pulling the weights from the store.
    pub pull_ms: f64,
    /// Scoring.
    pub score_ms: f64,
    /// Training, as the driver waited for it.
    pub train_ms: f64,
    /// Of which the gradient, the all-reduce and publishing the weights (rank 0's).
    pub report: TrainReport,
}

/// Everything the run measured.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Each iteration, in order.
    pub iterations: Vec<Iteration>,
    /// Wall time of the loop, in s (spawning excluded).
    pub loop_s: f64,
    /// Time to spawn every actor, in s.
    pub spawn_s: f64,
}

impl Run {
    /// The mean reward of the last `n` iterations.
    pub fn final_reward(&self, n: usize) -> f32 {
        let last = &self.iterations[self.iterations.len().saturating_sub(n)..];
        last.iter().map(|i| i.reward).sum::<f32>() / last.len().max(1) as f32
    }
}

/// Samples one iteration's rollouts: the prompts split between the two workers (round
/// robin), sampled at once.
pub async fn generate(
    rollouts: Arc<ActorGroup<Rollout>>,
    config: Config,
    min_version: u64,
) -> Result<(Rollouts, f64), Error> {
    let started = Instant::now();
    let half = config.prompts / 2;
    let calls = [half, config.prompts - half]
        .map(|n| rollouts.any().generate(n, config.group, min_version));
    let mut merged = Rollouts::default();
    for call in calls {
        merged.extend(call.await??);
    }
    Ok((merged, started.elapsed().as_secs_f64() * 1e3))
}

/// Runs the loop on `placement`.
pub async fn run(config: Config, placement: Arc<dyn kt::Placement>) -> Result<Run, TrainError> {
    let started = Instant::now();
    let key = config.weights_key.clone();
    let computes = &config.computes;
    let rollouts = Arc::new(
        Rollout::spawn_group(2, key.clone(), 7)
            .compute(computes.rollout.clone())
            .on(placement.clone())
            .await?,
    );
    let verifier = Verifier::spawn()
        .compute(computes.verifier.clone())
        .on(placement.clone())
        .await?;
    let trainers = Trainer::spawn_group(2, TrainerSetup::new(key, config.lr, 11))
        .compute(computes.trainer.clone())
        .on(placement)
        .await?;
    // The hub of the trainers' all-reduce lives in this process; keep it while they train.
    let hub = CollectiveHub::for_members(trainers.members()).await?;
    let mut version = 0;
    for joined in trainers.all().join(hub.clone()).await? {
        version = version.max(joined?);
    }
    let spawn_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut run = Run {
        spawn_s,
        ..Run::default()
    };
    let mut next = Some(tokio::spawn(generate(
        rollouts.clone(),
        config.clone(),
        version,
    )));
    for step in 0..config.steps {
        let Some(sampling) = next.take() else { break };
        let sampled = sampling.await.map_err(|e| Error::Protocol {
            message: format!("the sampling task failed: {e}"),
        })?;
        let (batch, generate_ms) = sampled?;
        let pull_ms = batch.pull_ms;
        let policy_version = batch.policy_version;
        if let Some(staleness) = config.staleness
            && step + 1 < config.steps
        {
            // Sample the next iteration while the trainers train this one, with weights
            // at most `staleness` versions behind the ones this iteration makes.
            let min_version = (version + 1).saturating_sub(staleness).max(1);
            next = Some(tokio::spawn(generate(
                rollouts.clone(),
                config.clone(),
                min_version,
            )));
        }
        let scoring = Instant::now();
        let rewards = verifier.score(batch.clone()).await?;
        let score_ms = scoring.elapsed().as_secs_f64() * 1e3;
        let reward = rewards.iter().sum::<f32>() / rewards.len().max(1) as f32;
        let training = Instant::now();
        let reports = trainers.all().train(batch, rewards).await?;
        let train_ms = training.elapsed().as_secs_f64() * 1e3;
        let report = reports
            .into_iter()
            .next()
            .unwrap_or_else(|| Ok(TrainReport::default()))?;
        version = report.version;
        if config.staleness.is_none() && step + 1 < config.steps {
            next = Some(tokio::spawn(generate(
                rollouts.clone(),
                config.clone(),
                version,
            )));
        }
        let iteration = Iteration {
            reward,
            policy_version,
            generate_ms,
            pull_ms,
            score_ms,
            train_ms,
            report,
        };
        if config.verbose {
            print_iteration(step, &iteration);
        }
        run.iterations.push(iteration);
    }
    run.loop_s = started.elapsed().as_secs_f64();
    drop(hub);
    Ok(run)
}

fn print_iteration(step: usize, i: &Iteration) {
    println!(
        "iter {step:>4}  reward {:.3}  policy v{:<4} generate {:>6.2} ms (pull {:>5.2})  score {:>5.2} ms  \
         train {:>6.2} ms (gradient {:>5.2}, all-reduce {:>5.2}, publish {:>5.2})",
        i.reward,
        i.policy_version,
        i.generate_ms,
        i.pull_ms,
        i.score_ms,
        i.train_ms,
        i.report.gradient_ms,
        i.report.all_reduce_ms,
        i.report.publish_ms,
    );
}

/// The run's summary: rewards at the start and end, and the mean time of each part.
pub fn print_summary(run: &Run) {
    let n = run.iterations.len().max(1) as f64;
    let mean = |f: fn(&Iteration) -> f64| run.iterations.iter().map(f).sum::<f64>() / n;
    println!();
    println!(
        "{} iterations in {:.2} s (spawning the actors before them: {:.2} s); reward {:.3} at the start, {:.3} over the last 10",
        run.iterations.len(),
        run.loop_s,
        run.spawn_s,
        run.iterations.first().map_or(0.0, |i| i.reward),
        run.final_reward(10),
    );
    println!("mean time per iteration:");
    println!(
        "  generate   {:>7.2} ms (pulling weights {:.2} ms)",
        mean(|i| i.generate_ms),
        mean(|i| i.pull_ms)
    );
    println!("  score      {:>7.2} ms", mean(|i| i.score_ms));
    println!("  train      {:>7.2} ms", mean(|i| i.train_ms));
    println!("    gradient   {:>7.2} ms", mean(|i| i.report.gradient_ms));
    println!(
        "    all-reduce {:>7.2} ms",
        mean(|i| i.report.all_reduce_ms)
    );
    println!("    publish    {:>7.2} ms", mean(|i| i.report.publish_ms));
}
