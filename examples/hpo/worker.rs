//! A worker of the pool: trains any trial from wherever it stopped. A trial's state (the
//! weights and Adam's moments, the RL example's checkpoint layout) lives in `kt::store`
//! under `hpo/trial-N` between rungs, so the worker that resumes a promoted trial need not
//! be the one that started it.

use std::time::Instant;

use kt::prelude::*;
use serde::{Deserialize, Serialize};

use super::checkpoint;
use super::policy::{self, Adam, DIGITS};
use super::search::Job;
use super::task;

/// Prompts per training step.
pub const PROMPTS: usize = 16;
/// The reward a rung reports: the mean over its last this many steps.
const REPORT_OVER: usize = 5;

/// What a job did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    /// The mean reward of the job's last steps.
    pub reward: f32,
    /// Every step's mean reward.
    pub curve: Vec<f32>,
    /// Wall time, in ms.
    pub ms: f64,
}

/// The store key of trial `trial`'s state.
pub fn state_key(trial: usize) -> String {
    format!("hpo/trial-{trial}")
}

/// Trains trials.
#[kt::actor]
pub struct TrialWorker;

#[kt::actor]
impl TrialWorker {
    pub fn new() -> Self {
        TrialWorker
    }

    /// Trains `job.trial` from its saved state at step `job.from` (fresh weights at 0) to
    /// step `job.to`, and saves the state again.
    pub async fn train(&mut self, job: Job) -> Result<Progress, Error> {
        let started = Instant::now();
        let key = state_key(job.trial);
        let (mut params, mut adam) = match job.from {
            0 => (policy::init(job.trial as u64), Adam::new(job.hyper.lr)),
            from => {
                let saved = checkpoint::load(&key, job.hyper.lr).await?;
                if saved.step != from {
                    return Err(Error::Decode {
                        what: format!("trial state {key}"),
                        message: format!(
                            "saved at step {}, where the job resumes at {from}",
                            saved.step
                        ),
                    });
                }
                (saved.params, saved.adam)
            }
        };
        let mut rng = fastrand::Rng::with_seed(job.trial as u64 * 1_000_003 + job.from);
        let group = job.hyper.group;
        let mut curve = Vec::with_capacity((job.to - job.from) as usize);
        for _ in job.from..job.to {
            let mut prompts = Vec::with_capacity(PROMPTS);
            let mut answers = Vec::with_capacity(PROMPTS * group * DIGITS);
            for _ in 0..PROMPTS {
                let prompt = task::prompt(&mut rng);
                policy::sample_answers(&params, &prompt, group, &mut rng, &mut answers);
                prompts.push(prompt);
            }
            let (answers, _) = answers.as_chunks::<DIGITS>();
            let rewards: Vec<f32> = answers
                .iter()
                .enumerate()
                .map(|(i, answer)| task::reward(&prompts[i / group], answer))
                .collect();
            curve.push(rewards.iter().sum::<f32>() / rewards.len() as f32);
            let grad = policy::grpo_gradient(&params, &prompts, answers, &rewards, group, |_| true);
            adam.step(&mut params, &grad);
        }
        checkpoint::save(&key, &params, &adam, job.to).await?;
        let last = &curve[curve.len().saturating_sub(REPORT_OVER)..];
        Ok(Progress {
            reward: last.iter().sum::<f32>() / last.len().max(1) as f32,
            curve,
            ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }
}
