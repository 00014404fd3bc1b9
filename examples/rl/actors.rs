//! The loop's actors: rollout workers that sample answers from the current policy, a
//! verifier that scores them, and a trainer group (SPMD) that averages its gradients
//! through the collectives interface and publishes each new version of the weights to
//! the data store, where the rollout workers pick it up with `wait_newer`.

use std::time::{Duration, Instant};

use kt::prelude::*;
use kt::store::Version;
use kt_gpu::{CollectiveHub, Collectives, HostCollectives};
use serde::{Deserialize, Serialize};

use super::checkpoint;
use super::policy::{self, Adam, DIGITS};
use super::task;

/// How long a rollout worker waits for a version of the weights before it gives up.
const WEIGHTS_WAIT: Duration = Duration::from_secs(60);

/// One batch of sampled answers: `group` answers for each prompt.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rollouts {
    /// The version of the weights the answers were sampled with.
    pub policy_version: u64,
    /// Answers per prompt.
    pub group: usize,
    /// The prompts, `DIGITS` bytes each.
    #[serde(with = "kt::raw")]
    pub prompts: Vec<u8>,
    /// The answers, `group × DIGITS` bytes per prompt.
    #[serde(with = "kt::raw")]
    pub answers: Vec<u8>,
    /// Time spent pulling weights, in ms.
    pub pull_ms: f64,
}

impl Rollouts {
    /// The first `prompts` prompts of the batch and their answers.
    pub fn first(&self, prompts: usize) -> Rollouts {
        let prompts = prompts.min(self.prompts.len() / DIGITS);
        Rollouts {
            prompts: self.prompts[..prompts * DIGITS].to_vec(),
            answers: self.answers[..prompts * self.group * DIGITS].to_vec(),
            policy_version: self.policy_version,
            group: self.group,
            pull_ms: self.pull_ms,
        }
    }

    /// Appends `other`'s prompts and answers (of the same group size).
    pub fn extend(&mut self, other: Rollouts) {
        self.group = other.group;
        self.policy_version = match self.prompts.is_empty() {
            true => other.policy_version,
            false => self.policy_version.min(other.policy_version),
        };
        self.prompts.extend(other.prompts);
        self.answers.extend(other.answers);
        self.pull_ms = self.pull_ms.max(other.pull_ms);
    }
}

/// Samples answers from the newest policy it has.
#[kt::actor]
pub struct Rollout {
    weights_key: String,
    seed: u64,
    params: Vec<f32>,
    version: Version,
    rng: fastrand::Rng,
}

#[kt::actor]
impl Rollout {
    pub fn new(weights_key: String, seed: u64) -> Self {
        Rollout {
            weights_key,
            seed,
            params: Vec::new(),
            version: Version::NONE,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// Each member of a group samples prompts of its own: its rank joins the seed.
    #[kt(on_start)]
    fn seed_by_rank(&mut self, ctx: &Context<Self>) {
        let rank = ctx.group().map_or(0, |member| member.rank) as u64;
        self.rng = fastrand::Rng::with_seed(self.seed.wrapping_mul(31).wrapping_add(rank));
    }

    /// Samples `group` answers for each of `prompts` new prompts, with weights of version
    /// `min_version` or newer (pulled from the store, waiting for them if need be).
    pub async fn generate(
        &mut self,
        prompts: usize,
        group: usize,
        min_version: u64,
    ) -> Result<Rollouts, Error> {
        let started = Instant::now();
        while self.version.0 < min_version {
            let entry = kt::store::wait_newer(self.weights_key.clone(), self.version)
                .timeout(WEIGHTS_WAIT)
                .await?;
            self.params = checkpoint::read_weights(&entry)?;
            self.version = entry.version();
        }
        let pull_ms = started.elapsed().as_secs_f64() * 1e3;
        let mut out = Rollouts {
            policy_version: self.version.0,
            group,
            prompts: Vec::with_capacity(prompts * DIGITS),
            answers: Vec::with_capacity(prompts * group * DIGITS),
            pull_ms,
        };
        for _ in 0..prompts {
            let prompt = task::prompt(&mut self.rng);
            out.prompts.extend_from_slice(&prompt);
            policy::sample_answers(
                &self.params,
                &prompt,
                group,
                &mut self.rng,
                &mut out.answers,
            );
        }
        Ok(out)
    }
}

/// Scores answers against the task's exact solutions.
#[kt::actor]
pub struct Verifier;

#[kt::actor]
impl Verifier {
    pub fn new() -> Self {
        Verifier
    }

    /// The reward of every answer, in order.
    pub fn score(&self, rollouts: Rollouts) -> Vec<f32> {
        let answers = rollouts.answers.chunks_exact(DIGITS);
        let prompts = rollouts
            .prompts
            .chunks_exact(DIGITS)
            .flat_map(|p| std::iter::repeat_n(p, rollouts.group));
        prompts
            .zip(answers)
            .map(|(prompt, answer)| task::reward(prompt, answer))
            .collect()
    }
}

/// What one trainer step did, as rank 0 saw it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainReport {
    /// The weights version published (rank 0), or 0.
    pub version: u64,
    /// The optimizer steps taken so far.
    pub step: u64,
    /// Time computing this rank's gradient, in ms.
    pub gradient_ms: f64,
    /// Time in the all-reduce, in ms.
    pub all_reduce_ms: f64,
    /// Time publishing the weights (and a checkpoint, when one was due), in ms (rank 0).
    pub publish_ms: f64,
}

/// How every rank of a trainer group is set up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerSetup {
    /// The data-store key of the weights; checkpoints go to `{weights_key}/checkpoint`.
    pub weights_key: String,
    /// Adam's learning rate.
    pub lr: f32,
    /// Every rank starts from the same weights, made from this seed.
    pub seed: u64,
    /// Rank 0 checkpoints the weights and the optimizer's state every this many steps
    /// (0: never).
    pub checkpoint_every: u64,
    /// The activation memory one rank has for its share of a batch, in bytes; `None`:
    /// unbounded. It stands in for a GPU's memory: a share that needs more fails the step
    /// with [`TrainError::OutOfMemory`] before any work, as a CUDA allocation would.
    pub memory_bytes: Option<u64>,
}

impl TrainerSetup {
    /// A setup with no checkpoints and unbounded memory.
    pub fn new(weights_key: impl Into<String>, lr: f32, seed: u64) -> Self {
        TrainerSetup {
            weights_key: weights_key.into(),
            lr,
            seed,
            checkpoint_every: 0,
            memory_bytes: None,
        }
    }

    /// The key rank 0 checkpoints to.
    pub fn checkpoint_key(&self) -> String {
        format!("{}/checkpoint", self.weights_key)
    }
}

/// Activation memory one sample needs in a training step: the hidden layer and the output
/// probabilities, kept for the backward pass.
pub const BYTES_PER_SAMPLE: u64 = ((policy::HIDDEN + policy::WIDTH) * 4) as u64;

/// A trainer's own errors, beside kt's.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum TrainError {
    /// This rank's share of the batch does not fit its memory.
    #[error(
        "out of memory: a share of {samples} samples needs {needed} bytes of activations and \
         this rank has {available}; train on smaller batches or on more ranks"
    )]
    OutOfMemory {
        /// Samples in the largest rank's share.
        samples: u64,
        /// Bytes they need.
        needed: u64,
        /// Bytes a rank has.
        available: u64,
    },
    /// A kt failure: the group's collective, the store, a malformed batch.
    #[error(transparent)]
    Kt(#[from] Error),
}

/// One rank of the trainer group: a policy-gradient (GRPO) update on its share of the
/// batch, gradients averaged across ranks, the same Adam step everywhere.
#[kt::actor]
pub struct Trainer {
    setup: TrainerSetup,
    params: Vec<f32>,
    adam: Adam,
    group: Option<HostCollectives>,
    step: u64,
}

#[kt::actor]
impl Trainer {
    pub fn new(setup: TrainerSetup) -> Self {
        Trainer {
            params: policy::init(setup.seed),
            adam: Adam::new(setup.lr),
            group: None,
            step: 0,
            setup,
        }
    }

    /// Joins the group that meets at `hub`, at the rank the hub gives this actor (a group
    /// reformed after a death has new ranks); rank 0 publishes the weights this rank
    /// holds as a new version, which it answers with (0 on other ranks).
    pub async fn join(
        &mut self,
        ctx: &Context<Self>,
        hub: ActorRef<CollectiveHub>,
    ) -> Result<u64, Error> {
        let group = HostCollectives::join(hub, ctx.id()).await?;
        let rank = group.rank();
        self.group = Some(group);
        match rank {
            0 => self.publish().await,
            _ => Ok(0),
        }
    }

    /// Takes the weights and the optimizer's state from the newest checkpoint; answers
    /// with its step. Without a checkpoint yet, starts over from the first weights.
    pub async fn restore(&mut self) -> Result<u64, Error> {
        match checkpoint::load(&self.setup.checkpoint_key(), self.setup.lr).await {
            Ok(restored) => {
                self.params = restored.params;
                self.adam = restored.adam;
                self.step = restored.step;
            }
            Err(Error::KeyNotFound { .. }) => *self = Trainer::new(self.setup.clone()),
            Err(error) => return Err(error),
        }
        Ok(self.step)
    }

    /// One update from `rollouts` and their `rewards`; rank 0 publishes the new weights
    /// (and a checkpoint, when one is due).
    pub async fn train(
        &mut self,
        rollouts: Rollouts,
        rewards: Vec<f32>,
    ) -> Result<TrainReport, TrainError> {
        let group = self
            .group
            .as_mut()
            .ok_or_else(|| Error::invalid_options("call join before train"))?;
        let (rank, world) = (group.rank(), group.world_size());
        let started = Instant::now();
        let group_size = rollouts.group;
        let (prompts, _) = rollouts.prompts.as_chunks::<DIGITS>();
        let (answers, _) = rollouts.answers.as_chunks::<DIGITS>();
        if group_size == 0
            || answers.len() != prompts.len() * group_size
            || rewards.len() != answers.len()
        {
            return Err(Error::invalid_options(format!(
                "a batch of {} prompts with {} answers ({group_size} each) and {} rewards",
                prompts.len(),
                answers.len(),
                rewards.len()
            ))
            .into());
        }
        if let Some(available) = self.setup.memory_bytes {
            // Every rank checks the largest share, so all of them fail together rather
            // than some waiting in the all-reduce for the ones that cannot fit.
            let samples = (prompts.len().div_ceil(world) * group_size) as u64;
            let needed = samples * BYTES_PER_SAMPLE;
            if needed > available {
                return Err(TrainError::OutOfMemory {
                    samples,
                    needed,
                    available,
                });
            }
        }
        // This rank's share: every world-th prompt.
        let mut grad =
            policy::grpo_gradient(&self.params, prompts, answers, &rewards, group_size, |i| {
                i % world == rank
            });
        let gradient_ms = started.elapsed().as_secs_f64() * 1e3;
        let started = Instant::now();
        group.all_reduce_sum(&mut grad).await?;
        let all_reduce_ms = started.elapsed().as_secs_f64() * 1e3;
        self.adam.step(&mut self.params, &grad);
        self.step += 1;
        let started = Instant::now();
        let version = match rank {
            0 => {
                let every = self.setup.checkpoint_every;
                if every > 0 && self.step.is_multiple_of(every) {
                    let key = self.setup.checkpoint_key();
                    checkpoint::save(&key, &self.params, &self.adam, self.step).await?;
                }
                self.publish().await?
            }
            _ => 0,
        };
        Ok(TrainReport {
            version,
            step: self.step,
            gradient_ms,
            all_reduce_ms,
            publish_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// This rank's process id (for the fault-tolerance example, which kills one).
    pub fn pid(&self) -> u32 {
        std::process::id()
    }
}

impl Trainer {
    /// Puts the weights as the next version.
    async fn publish(&self) -> Result<u64, Error> {
        let version = kt::store::put_tensors(
            self.setup.weights_key.clone(),
            checkpoint::weights(&self.params)?,
        )
        .meta("step", self.step)
        .keep_last(2)
        .await?;
        Ok(version.0)
    }
}
