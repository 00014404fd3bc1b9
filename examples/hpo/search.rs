//! The search: asynchronous successive halving (ASHA, Li et al. 2018). Trials start at the
//! first rung's budget; whenever a worker is free, the most advanced trial that is in the
//! top `1/eta` of its rung's finishers is promoted to the next rung, and only when none is,
//! a new trial starts. Trials never promoted are the ones stopped early.

/// A trial's hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hyper {
    /// Adam's learning rate.
    pub lr: f32,
    /// GRPO's group: answers sampled per prompt.
    pub group: usize,
}

impl Hyper {
    /// A draw from the search space: the learning rate log-uniform in [1e-4, 0.3], the
    /// group one of 4, 8 and 16.
    pub fn sample(rng: &mut fastrand::Rng) -> Hyper {
        let (lo, hi) = (1e-4f32.ln(), 0.3f32.ln());
        Hyper {
            lr: (lo + rng.f32() * (hi - lo)).exp(),
            group: [4, 8, 16][rng.usize(0..3)],
        }
    }
}

/// Work for one worker: train trial `trial` from step `from` to step `to`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Job {
    /// The trial's number.
    pub trial: usize,
    /// Its hyperparameters.
    pub hyper: Hyper,
    /// The step its saved state is at (0: a new trial).
    pub from: u64,
    /// The step to train it to.
    pub to: u64,
}

/// One trial's record.
#[derive(Debug, Clone)]
pub struct Trial {
    /// Its hyperparameters.
    pub hyper: Hyper,
    /// The reward it reached at each rung it finished.
    pub rewards: Vec<f32>,
    /// True while a worker trains it.
    pub running: bool,
}

/// The scheduler's state.
pub struct Asha {
    /// Each rung's budget, in steps (increasing).
    rungs: Vec<u64>,
    eta: usize,
    max_trials: usize,
    trials: Vec<Trial>,
    rng: fastrand::Rng,
}

impl Asha {
    /// A search of `max_trials` trials over `rungs` (steps), keeping the top `1/eta` at
    /// each rung; `seed` makes the draws repeatable.
    pub fn new(rungs: Vec<u64>, eta: usize, max_trials: usize, seed: u64) -> Asha {
        Asha {
            rungs,
            eta: eta.max(2),
            max_trials,
            trials: Vec::new(),
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The next job for a free worker, if any: a promotion, or else a new trial.
    pub fn next_job(&mut self) -> Option<Job> {
        let top = self.rungs.len().saturating_sub(1);
        for rung in (0..top).rev() {
            if let Some(trial) = self.promotable(rung) {
                let record = &mut self.trials[trial];
                record.running = true;
                return Some(Job {
                    trial,
                    hyper: record.hyper,
                    from: self.rungs[rung],
                    to: self.rungs[rung + 1],
                });
            }
        }
        if self.trials.len() < self.max_trials {
            let hyper = Hyper::sample(&mut self.rng);
            self.trials.push(Trial {
                hyper,
                rewards: Vec::new(),
                running: true,
            });
            return Some(Job {
                trial: self.trials.len() - 1,
                hyper,
                from: 0,
                to: *self.rungs.first()?,
            });
        }
        None
    }

    /// A trial that finished `rung`, is not running nor promoted, and is in the top
    /// `1/eta` of the trials that finished it.
    fn promotable(&self, rung: usize) -> Option<usize> {
        let mut finished: Vec<(usize, f32)> = self
            .trials
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.rewards.get(rung).map(|r| (i, *r)))
            .collect();
        finished.sort_by(|a, b| b.1.total_cmp(&a.1));
        let keep = finished.len() / self.eta;
        finished[..keep]
            .iter()
            .map(|(i, _)| *i)
            .find(|i| !self.trials[*i].running && self.trials[*i].rewards.len() == rung + 1)
    }

    /// `job` is done: its trial reached `reward` at the job's rung.
    pub fn report(&mut self, job: &Job, reward: f32) {
        let record = &mut self.trials[job.trial];
        record.running = false;
        record.rewards.push(reward);
    }

    /// Every trial so far.
    pub fn trials(&self) -> &[Trial] {
        &self.trials
    }

    /// The best trial: the highest reward among those that got furthest.
    pub fn best(&self) -> Option<usize> {
        let furthest = self.trials.iter().map(|t| t.rewards.len()).max()?;
        self.trials
            .iter()
            .enumerate()
            .filter(|(_, t)| t.rewards.len() == furthest && furthest > 0)
            .max_by(|a, b| a.1.rewards[furthest - 1].total_cmp(&b.1.rewards[furthest - 1]))
            .map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the scheduler with one worker and a reward that is the learning rate itself.
    fn search(trials: usize) -> Asha {
        let mut asha = Asha::new(vec![1, 3, 9], 3, trials, 5);
        while let Some(job) = asha.next_job() {
            let reward = asha.trials()[job.trial].hyper.lr * job.to as f32;
            asha.report(&job, reward);
        }
        asha
    }

    #[test]
    fn the_top_third_of_each_rung_is_promoted_and_the_rest_stop_early() {
        let asha = search(9);
        let reached = |rungs: usize| {
            asha.trials()
                .iter()
                .filter(|t| t.rewards.len() >= rungs)
                .count()
        };
        assert_eq!((reached(1), reached(2), reached(3)), (9, 3, 1));
        // The best is the trial with the highest learning rate (its reward grows with it).
        let best = asha.best().unwrap();
        let highest = asha
            .trials()
            .iter()
            .map(|t| t.hyper.lr)
            .fold(0.0f32, f32::max);
        assert_eq!(asha.trials()[best].hyper.lr, highest);
    }

    #[test]
    fn a_running_trial_is_not_handed_out_twice() {
        let mut asha = Asha::new(vec![1, 3], 2, 2, 1);
        let (a, b) = (asha.next_job().unwrap(), asha.next_job().unwrap());
        assert_ne!(a.trial, b.trial);
        assert_eq!(asha.next_job(), None, "both trials run; no third");
        asha.report(&a, 1.0);
        asha.report(&b, 0.0);
        let promoted = asha.next_job().unwrap();
        assert_eq!(
            (promoted.trial, promoted.from, promoted.to),
            (a.trial, 1, 3)
        );
        assert_eq!(asha.next_job(), None);
    }

    #[test]
    fn draws_stay_in_the_search_space() {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..1000 {
            let h = Hyper::sample(&mut rng);
            assert!((1e-4..=0.3).contains(&h.lr), "{h:?}");
            assert!([4, 8, 16].contains(&h.group), "{h:?}");
        }
    }
}
