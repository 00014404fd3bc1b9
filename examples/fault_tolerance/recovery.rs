//! The loop that survives: the RL example's loop, with a driver that treats a trainer's
//! death and a trainer's out-of-memory error as decisions, not as the end of the run.
//!
//! - A trainer's process is killed (`kill -9`, as the kernel's OOM killer or a lost node
//!   would) while the group trains. The step fails with `ActorDied` (the victim's call)
//!   and the survivors' all-reduce fails with the same death; the driver reforms the group
//!   with the survivors (`ActorGroup::from_members(group.survivors())`, a new collective
//!   hub, new ranks and a smaller world), they restore the newest checkpoint from the
//!   store, the new rank 0 publishes its weights, and the loop goes on.
//! - The checkpoint outlives the rank that wrote it: the driver gets a copy of each one, and
//!   a getter that holds a copy serves it (the store's rule), so losing rank 0 loses no data.
//! - A smaller world gives each rank a bigger share of the batch; a rank whose share does
//!   not fit its memory answers with the typed `TrainError::OutOfMemory`, and the driver
//!   halves the batch and trains again.

use std::sync::Arc;
use std::time::Instant;

use kt::prelude::*;
use kt_gpu::CollectiveHub;

use super::actors::{Rollout, TrainError, TrainReport, Trainer, TrainerSetup, Verifier};
use super::driver;

/// How to run the loop, and which fault to inject.
#[derive(Debug, Clone)]
pub struct Config {
    /// The RL loop's settings; `rl.steps` is the number of optimizer steps to reach.
    pub rl: driver::Config,
    /// Trainer ranks at the start.
    pub trainers: usize,
    /// Rank 0 checkpoints every this many steps.
    pub checkpoint_every: u64,
    /// Each rank's activation memory in bytes (see `TrainerSetup::memory_bytes`).
    pub memory_bytes: Option<u64>,
    /// Kill a trainer's process during this step (`None`: no kill).
    pub kill_at: Option<u64>,
    /// The rank whose process is killed.
    pub kill_rank: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rl: driver::Config {
                weights_key: "fault-tolerance/policy".into(),
                ..driver::Config::default()
            },
            trainers: 3,
            checkpoint_every: 10,
            // 64 prompts × 16 answers fit 3 ranks (22 prompts each: 175 kB of activations),
            // not 2 (32 each: 254 kB).
            memory_bytes: Some(200_000),
            kill_at: Some(45),
            kill_rank: 0,
        }
    }
}

/// Something the driver decided or saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// It killed a trainer's process.
    Killed { step: u64, rank: usize, pid: u32 },
    /// The group lost members; the survivors restored a checkpoint and go on.
    Reformed {
        /// What the failed step said.
        cause: String,
        /// The ranks left.
        world: usize,
        /// The checkpoint's step, where training resumes.
        restored_step: u64,
        /// The weights version the new rank 0 published.
        version: u64,
    },
    /// The trainers ran out of memory; the batch was halved.
    BatchHalved { message: String, prompts: usize },
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Killed { step, rank, pid } => write!(
                f,
                "killed trainer rank {rank} (process {pid}) with SIGKILL during step {step}"
            ),
            Event::Reformed {
                cause,
                world,
                restored_step,
                version,
            } => write!(
                f,
                "the step failed ({cause}); reformed the trainer group with {world} survivors, \
                 restored the checkpoint of step {restored_step}, weights republished as v{version}"
            ),
            Event::BatchHalved { message, prompts } => {
                write!(f, "{message}; halved the batch to {prompts} prompts")
            }
        }
    }
}

/// One completed step.
#[derive(Debug, Clone)]
pub struct Iteration {
    /// The optimizer step this iteration made.
    pub step: u64,
    /// The trainer ranks that made it.
    pub world: usize,
    /// The prompts it trained on.
    pub prompts: usize,
    /// The mean reward of its answers.
    pub reward: f32,
}

/// What the run did.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Each completed step, in order (steps redone after a restore appear again).
    pub iterations: Vec<Iteration>,
    /// What happened, in order.
    pub events: Vec<Event>,
    /// Wall time of the loop, in s.
    pub loop_s: f64,
}

impl Run {
    /// The mean reward of the last `n` iterations.
    pub fn final_reward(&self, n: usize) -> f32 {
        let last = &self.iterations[self.iterations.len().saturating_sub(n)..];
        last.iter().map(|i| i.reward).sum::<f32>() / last.len().max(1) as f32
    }
}

/// The trainer group, its hub, and the newest weights version.
struct Trainers {
    group: ActorGroup<Trainer>,
    /// Keeps the group's collective hub alive (members hold non-owning copies).
    _hub: ActorRef<CollectiveHub>,
    version: u64,
}

impl Trainers {
    /// Makes a hub for `group` and has every member join it; rank 0 publishes.
    async fn join(group: ActorGroup<Trainer>) -> Result<Trainers, TrainError> {
        let hub = CollectiveHub::for_members(group.members()).await?;
        let mut version = 0;
        for joined in group.all().join(hub.clone()).await? {
            version = version.max(joined?);
        }
        Ok(Trainers {
            group,
            _hub: hub,
            version,
        })
    }
}

/// What one attempt at a step came to.
enum Outcome {
    Trained(TrainReport),
    /// A member is gone (its own call, or a survivor's collective, says which).
    Lost(Error),
    /// The ranks' shares do not fit; the error says by how much.
    OutOfMemory(TrainError),
}

/// Reads every member's answer to one `train` call.
fn outcome(
    results: Vec<kt::Result<Result<TrainReport, TrainError>>>,
) -> Result<Outcome, TrainError> {
    let mut report = None;
    let mut out_of_memory = None;
    for result in results {
        match result {
            Err(error) if error.is_actor_gone() => return Ok(Outcome::Lost(error)),
            Ok(Err(TrainError::Kt(error))) if error.is_actor_gone() => {
                return Ok(Outcome::Lost(error));
            }
            Ok(Err(oom @ TrainError::OutOfMemory { .. })) => {
                out_of_memory.get_or_insert(oom);
            }
            Ok(Ok(member)) => {
                // Rank 0's report comes first and names the published version.
                report.get_or_insert(member);
            }
            Err(error) => return Err(error.into()),
            Ok(Err(error)) => return Err(error),
        }
    }
    Ok(match (out_of_memory, report) {
        (Some(oom), _) => Outcome::OutOfMemory(oom),
        (None, Some(report)) => Outcome::Trained(report),
        (None, None) => Outcome::Lost(Error::invalid_options("the trainer group has no members")),
    })
}

/// Runs the loop on local processes, injecting the configured kill.
pub async fn run(config: Config) -> Result<Run, TrainError> {
    let placement: Arc<dyn kt::Placement> = Arc::new(kt::LocalProcess::new());
    let key = config.rl.weights_key.clone();
    let rollouts = Arc::new(
        Rollout::spawn_group(2, key.clone(), 7)
            .on(placement.clone())
            .await?,
    );
    let verifier = Verifier::spawn().on(placement.clone()).await?;
    let setup = TrainerSetup {
        checkpoint_every: config.checkpoint_every,
        memory_bytes: config.memory_bytes,
        ..TrainerSetup::new(key, config.rl.lr, 11)
    };
    let checkpoint_key = setup.checkpoint_key();
    let group = Trainer::spawn_group(config.trainers, setup)
        .on(placement)
        .await?;
    let mut trainers = Trainers::join(group).await?;

    let started = Instant::now();
    let mut run = Run::default();
    let mut rl = config.rl.clone();
    let mut step = 0;
    // The driver's copy of the newest checkpoint: it can serve it when its writer is gone.
    let mut checkpoint_copy = None;
    while step < rl.steps as u64 {
        let (mut batch, _) =
            driver::generate(rollouts.clone(), rl.clone(), trainers.version).await?;
        let mut rewards = verifier.score(batch.clone()).await?;
        loop {
            let killed = run.events.iter().any(|e| matches!(e, Event::Killed { .. }));
            // Asked before the step: `pid` would wait behind `train` (both exclusive).
            let victim = match config.kill_at == Some(step + 1) && !killed {
                true => Some(victim(&trainers.group, config.kill_rank).await?),
                false => None,
            };
            let training = trainers.group.all().train(batch.clone(), rewards.clone());
            if let Some((rank, pid)) = victim {
                let event = kill(rank, pid, step + 1)?;
                report(&rl, &event);
                run.events.push(event);
            }
            match outcome(training.each().await)? {
                Outcome::Trained(trained) => {
                    step = trained.step;
                    trainers.version = trained.version;
                    let reward = mean(&rewards);
                    if config.checkpoint_every > 0 && step.is_multiple_of(config.checkpoint_every) {
                        checkpoint_copy = Some(kt::store::get(&checkpoint_key).await?);
                    }
                    if rl.verbose {
                        println!(
                            "step {step:>4}  reward {reward:.3}  trainers {}  prompts {:>3}  policy v{}",
                            trainers.group.len(),
                            batch.prompts.len() / super::policy::DIGITS,
                            batch.policy_version,
                        );
                    }
                    run.iterations.push(Iteration {
                        step,
                        world: trainers.group.len(),
                        prompts: batch.prompts.len() / super::policy::DIGITS,
                        reward,
                    });
                    break;
                }
                Outcome::Lost(cause) => {
                    let survivors = trainers.group.survivors();
                    let world = survivors.len();
                    let group = ActorGroup::from_members(survivors)?;
                    let mut restored_step = 0;
                    for restored in group.all().restore().await? {
                        restored_step = restored?;
                    }
                    trainers = Trainers::join(group).await?;
                    step = restored_step;
                    let cause = match cause {
                        Error::ActorDied { actor, cause } => format!("{actor} is gone: {cause}"),
                        other => other.to_string(),
                    };
                    let event = Event::Reformed {
                        cause,
                        world,
                        restored_step,
                        version: trainers.version,
                    };
                    report(&rl, &event);
                    run.events.push(event);
                    // Sample again, with the restored weights.
                    break;
                }
                Outcome::OutOfMemory(oom) => {
                    let prompts = batch.prompts.len() / super::policy::DIGITS / 2;
                    if prompts == 0 {
                        // Not even one prompt fits: nothing left to halve.
                        return Err(oom);
                    }
                    rl.prompts = prompts;
                    batch = batch.first(prompts);
                    rewards.truncate(prompts * rl.group);
                    let message = oom.to_string();
                    let event = Event::BatchHalved { message, prompts };
                    report(&rl, &event);
                    run.events.push(event);
                }
            }
        }
    }
    run.loop_s = started.elapsed().as_secs_f64();
    drop(checkpoint_copy);
    Ok(run)
}

/// The rank and process id of the trainer to kill.
async fn victim(group: &ActorGroup<Trainer>, rank: usize) -> Result<(usize, u32), TrainError> {
    let victim = group
        .member(rank)
        .ok_or_else(|| Error::invalid_options(format!("no trainer of rank {rank} to kill")))?;
    Ok((rank, victim.pid().await?))
}

/// Kills process `pid` (the trainer of `rank`), as `kill -9` would.
fn kill(rank: usize, pid: u32, step: u64) -> Result<Event, TrainError> {
    // SAFETY: a plain signal to a child process of this driver.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } != 0 {
        return Err(Error::invalid_options(format!(
            "kill -9 {pid}: {}",
            std::io::Error::last_os_error()
        ))
        .into());
    }
    Ok(Event::Killed { step, rank, pid })
}

fn mean(values: &[f32]) -> f32 {
    values.iter().sum::<f32>() / values.len().max(1) as f32
}

fn report(rl: &driver::Config, event: &Event) {
    if rl.verbose {
        println!("  !! {event}");
    }
}
