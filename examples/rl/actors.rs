//! The loop's actors: rollout workers that sample answers from the current policy, a
//! verifier that scores them, and a trainer group (SPMD) that averages its gradients
//! through the collectives interface and publishes each new version of the weights to
//! the data store, where the rollout workers pick it up with `wait_newer`.

use std::time::{Duration, Instant};

use kt::prelude::*;
use kt::store::{TensorSet, Version};
use kt_gpu::{CollectiveHub, Collectives, HostCollectives};
use serde::{Deserialize, Serialize};

use super::policy::{self, Adam, DIGITS, PARAMETERS, TENSORS};
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

/// Reads the policy's flat parameters out of a tensor set of the weights.
fn read_weights(entry: &kt::store::Entry) -> Result<Vec<f32>, Error> {
    let tensors = entry.tensors()?;
    let mut params = Vec::with_capacity(PARAMETERS);
    for (name, _) in TENSORS {
        let view = tensors.tensor(name).map_err(|e| Error::Decode {
            what: format!("tensor '{name}' of the weights"),
            message: e.to_string(),
        })?;
        params.extend(
            view.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    }
    match params.len() == PARAMETERS {
        true => Ok(params),
        false => Err(Error::Decode {
            what: "the weights".into(),
            message: format!(
                "{} parameters, where the policy has {PARAMETERS}",
                params.len()
            ),
        }),
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
            self.params = read_weights(&entry)?;
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
            let forward = policy::forward(&self.params, &prompt);
            out.prompts.extend_from_slice(&prompt);
            for _ in 0..group {
                out.answers
                    .extend_from_slice(&policy::sample(&forward, &mut self.rng));
            }
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
    /// Time computing this rank's gradient, in ms.
    pub gradient_ms: f64,
    /// Time in the all-reduce, in ms.
    pub all_reduce_ms: f64,
    /// Time publishing the weights, in ms (rank 0).
    pub publish_ms: f64,
}

/// One rank of the trainer group: a policy-gradient (GRPO) update on its share of the
/// batch, gradients averaged across ranks, the same Adam step everywhere.
#[kt::actor]
pub struct Trainer {
    weights_key: String,
    params: Vec<f32>,
    adam: Adam,
    group: Option<HostCollectives>,
    rank: usize,
    step: u64,
}

#[kt::actor]
impl Trainer {
    /// Every rank starts from the same weights (`seed`).
    pub fn new(weights_key: String, lr: f32, seed: u64) -> Self {
        Trainer {
            weights_key,
            params: policy::init(seed),
            adam: Adam::new(lr),
            group: None,
            rank: 0,
            step: 0,
        }
    }

    /// Joins the group that meets at `hub`; rank 0 publishes the first weights.
    pub async fn join(
        &mut self,
        ctx: &Context<Self>,
        hub: ActorRef<CollectiveHub>,
    ) -> Result<u64, Error> {
        let member = ctx.group().ok_or_else(|| {
            Error::invalid_options("a Trainer must be spawned as a group (spawn_group)")
        })?;
        self.rank = member.rank;
        self.group = Some(HostCollectives::new(hub, member.rank, member.size));
        match self.rank {
            0 => self.publish().await,
            _ => Ok(0),
        }
    }

    /// One update from `rollouts` and their `rewards`; rank 0 publishes the new weights.
    pub async fn train(
        &mut self,
        rollouts: Rollouts,
        rewards: Vec<f32>,
    ) -> Result<TrainReport, Error> {
        let group = self
            .group
            .as_mut()
            .ok_or_else(|| Error::invalid_options("call join before train"))?;
        let (rank, world) = (group.rank(), group.world_size());
        let started = Instant::now();
        let mut grad = vec![0.0f32; PARAMETERS];
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
            )));
        }
        let samples = rewards.len() as f32;
        let groups = answers.chunks(group_size).zip(rewards.chunks(group_size));
        for (i, (prompt, (answers, rewards))) in prompts.iter().zip(groups).enumerate() {
            // This rank's share: every world-th prompt.
            if i % world != rank {
                continue;
            }
            let mean = rewards.iter().sum::<f32>() / group_size as f32;
            let var = rewards.iter().map(|r| (r - mean).powi(2)).sum::<f32>() / group_size as f32;
            for (answer, reward) in answers.iter().zip(rewards) {
                // GRPO: the reward against its group's, normalized.
                let advantage = (reward - mean) / (var.sqrt() + 1e-3);
                policy::accumulate_gradient(
                    &self.params,
                    prompt,
                    answer,
                    advantage / samples,
                    &mut grad,
                );
            }
        }
        let gradient_ms = started.elapsed().as_secs_f64() * 1e3;
        let started = Instant::now();
        group.all_reduce_sum(&mut grad).await?;
        let all_reduce_ms = started.elapsed().as_secs_f64() * 1e3;
        self.adam.step(&mut self.params, &grad);
        self.step += 1;
        let started = Instant::now();
        let version = match rank {
            0 => self.publish().await?,
            _ => 0,
        };
        Ok(TrainReport {
            version,
            gradient_ms,
            all_reduce_ms,
            publish_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }
}

impl Trainer {
    /// Puts the weights as the next version, in the safetensors layout.
    async fn publish(&self) -> Result<u64, Error> {
        let mut set = TensorSet::new().metadata("task", "reverse digits");
        let mut at = 0;
        for (name, shape) in TENSORS {
            let len: usize = shape.iter().product();
            set = set.add_f32(name, shape, &self.params[at..at + len])?;
            at += len;
        }
        let version = kt::store::put_tensors(self.weights_key.clone(), set)
            .meta("step", self.step)
            .keep_last(2)
            .await?;
        Ok(version.0)
    }
}
