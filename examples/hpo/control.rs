//! The control loop: keeps every worker of the pool busy with the scheduler's next job,
//! reads each job's progress as it comes back, and sums the search up.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use kt::prelude::*;
use kt::store::Versions;

use super::search::{Asha, Hyper, Job};
use super::worker::{Progress, TrialWorker, state_key};

/// How to search.
#[derive(Debug, Clone)]
pub struct Config {
    /// Trials to start.
    pub trials: usize,
    /// Workers in the pool (local processes).
    pub workers: usize,
    /// The rungs' budgets, in training steps.
    pub rungs: Vec<u64>,
    /// Keep the top `1 / eta` of each rung.
    pub eta: usize,
    /// Seeds the draws of hyperparameters.
    pub seed: u64,
    /// Print a line per job.
    pub verbose: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            trials: 12,
            workers: 3,
            rungs: vec![10, 30, 90],
            eta: 3,
            seed: 2026,
            verbose: true,
        }
    }
}

/// One trial, as the search left it.
#[derive(Debug, Clone)]
pub struct TrialSummary {
    /// Its hyperparameters.
    pub hyper: Hyper,
    /// The reward it reached at each rung it finished.
    pub rewards: Vec<f32>,
    /// The steps it was trained for.
    pub steps: u64,
}

/// What the search found.
#[derive(Debug, Clone)]
pub struct Search {
    /// Every trial, by number.
    pub trials: Vec<TrialSummary>,
    /// The best trial's number.
    pub best: usize,
    /// The rungs' budgets.
    pub rungs: Vec<u64>,
    /// Every trial's steps, summed.
    pub steps: u64,
    /// Wall time of the search, in s.
    pub search_s: f64,
}

impl Search {
    /// Trials stopped before the last rung.
    pub fn stopped_early(&self) -> usize {
        self.trials
            .iter()
            .filter(|t| t.rewards.len() < self.rungs.len())
            .count()
    }
}

/// Runs the search on a pool of local processes.
pub async fn run(config: Config) -> Result<Search, Error> {
    let pool = TrialWorker::spawn_group(config.workers)
        .on(Arc::new(kt::LocalProcess::new()))
        .await?;
    let started = Instant::now();
    let mut asha = Asha::new(config.rungs.clone(), config.eta, config.trials, config.seed);
    let mut free: Vec<usize> = (0..pool.len()).rev().collect();
    let mut running = FuturesUnordered::new();
    loop {
        // Hand every free worker the scheduler's next job.
        while let Some(&worker) = free.last() {
            let Some(job) = asha.next_job() else { break };
            free.pop();
            let member = pool.member(worker).cloned().ok_or(Error::NoRuntime)?;
            running.push(async move {
                let progress = member.train(job.clone()).await;
                (worker, job, progress)
            });
        }
        let Some((worker, job, progress)) = running.next().await else {
            break;
        };
        let progress = progress??;
        asha.report(&job, progress.reward);
        if config.verbose {
            print_job(worker, &job, &progress);
        }
        free.push(worker);
    }
    let trials: Vec<TrialSummary> = asha
        .trials()
        .iter()
        .map(|t| TrialSummary {
            hyper: t.hyper,
            rewards: t.rewards.clone(),
            steps: t
                .rewards
                .len()
                .checked_sub(1)
                .map_or(0, |r| config.rungs[r]),
        })
        .collect();
    let best = asha.best().ok_or_else(|| {
        Error::invalid_options("the search ran no trial: ask for --trials 1 or more")
    })?;
    // The best trial's state stays in the store; the others' go.
    for trial in (0..trials.len()).filter(|t| *t != best) {
        kt::store::rm(&state_key(trial), Versions::All).await?;
    }
    Ok(Search {
        steps: trials.iter().map(|t| t.steps).sum(),
        trials,
        best,
        rungs: config.rungs,
        search_s: started.elapsed().as_secs_f64(),
    })
}

fn print_job(worker: usize, job: &Job, progress: &Progress) {
    println!(
        "worker {worker}  trial {:>2} (lr {:.4}, group {:>2})  steps {:>3} -> {:>3}  reward {:.3}  ({:.0} ms)",
        job.trial, job.hyper.lr, job.hyper.group, job.from, job.to, progress.reward, progress.ms
    );
}

/// The trials ranked, the best one, and what stopping early saved.
pub fn print_summary(search: &Search) {
    let mut order: Vec<usize> = (0..search.trials.len()).collect();
    let rank = |t: &TrialSummary| (t.rewards.len(), t.rewards.last().copied().unwrap_or(0.0));
    order.sort_by(|a, b| {
        let (a, b) = (rank(&search.trials[*a]), rank(&search.trials[*b]));
        b.0.cmp(&a.0).then(b.1.total_cmp(&a.1))
    });
    println!();
    println!(
        "trial  lr      group  steps  reward at each rung ({:?} steps)",
        search.rungs
    );
    for i in order {
        let t = &search.trials[i];
        let rewards: Vec<String> = t.rewards.iter().map(|r| format!("{r:.3}")).collect();
        let status = match t.rewards.len() < search.rungs.len() {
            true => "  stopped early",
            false => "",
        };
        println!(
            "{i:>5}  {:.4}  {:>5}  {:>5}  {}{status}",
            t.hyper.lr,
            t.hyper.group,
            t.steps,
            rewards.join("  ")
        );
    }
    let best = &search.trials[search.best];
    let full = search.trials.len() as u64 * search.rungs.last().copied().unwrap_or(0);
    println!();
    println!(
        "best trial: {} (lr {:.4}, group {}), reward {:.3} after {} steps; its state is in the store as {}",
        search.best,
        best.hyper.lr,
        best.hyper.group,
        best.rewards.last().copied().unwrap_or(0.0),
        best.steps,
        state_key(search.best)
    );
    println!(
        "{} of {} trials stopped early; {} training steps in all, where training every trial fully takes {full}; {:.2} s",
        search.stopped_early(),
        search.trials.len(),
        search.steps,
        search.search_s
    );
}
