//! The policy: a one-hidden-layer MLP over flat `Vec<f32>` parameters, in plain Rust.
//!
//! Input: the prompt's digits, one-hot (`DIGITS × 10`); a ReLU hidden layer; output: one
//! softmax over the 10 digits for each of the `DIGITS` answer positions, sampled
//! independently. Small enough that a step is microseconds, so the loop's time goes where
//! a real RL loop's goes: moving weights and rollouts between actors.

/// Digits per prompt and per answer.
pub const DIGITS: usize = 6;
/// Input and output width: a one-hot digit per position.
pub const WIDTH: usize = DIGITS * 10;
/// Hidden units.
pub const HIDDEN: usize = 64;

/// The tensors of the flat parameter vector, in order: name and shape (the safetensors
/// layout the weights travel in, so a candle or PyTorch trainer could read them).
pub const TENSORS: [(&str, &[usize]); 4] = [
    ("w1", &[HIDDEN, WIDTH]),
    ("b1", &[HIDDEN]),
    ("w2", &[WIDTH, HIDDEN]),
    ("b2", &[WIDTH]),
];

/// How many parameters the policy has.
pub const PARAMETERS: usize = HIDDEN * WIDTH + HIDDEN + WIDTH * HIDDEN + WIDTH;

const W1: usize = 0;
const B1: usize = W1 + HIDDEN * WIDTH;
const W2: usize = B1 + HIDDEN;
const B2: usize = W2 + WIDTH * HIDDEN;

/// Fresh parameters: small random weights (seeded), zero biases.
pub fn init(seed: u64) -> Vec<f32> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut params = vec![0.0; PARAMETERS];
    let scale1 = (2.0 / DIGITS as f32).sqrt();
    let scale2 = (1.0 / HIDDEN as f32).sqrt();
    for w in &mut params[W1..B1] {
        *w = (rng.f32() * 2.0 - 1.0) * scale1;
    }
    for w in &mut params[W2..B2] {
        *w = (rng.f32() * 2.0 - 1.0) * scale2;
    }
    params
}

/// One forward pass: the hidden activations and each position's probabilities.
pub struct Forward {
    /// The hidden layer's activations.
    pub hidden: [f32; HIDDEN],
    /// Each answer position's probabilities over the digits.
    pub probs: [[f32; 10]; DIGITS],
}

/// The forward pass for `prompt` (its digits).
pub fn forward(params: &[f32], prompt: &[u8; DIGITS]) -> Forward {
    let mut hidden = [0.0f32; HIDDEN];
    for (j, h) in hidden.iter_mut().enumerate() {
        let row = &params[W1 + j * WIDTH..W1 + (j + 1) * WIDTH];
        // The input is one-hot: one weight per position.
        let sum: f32 = prompt
            .iter()
            .enumerate()
            .map(|(i, d)| row[i * 10 + *d as usize])
            .sum();
        *h = (sum + params[B1 + j]).max(0.0);
    }
    let mut probs = [[0.0f32; 10]; DIGITS];
    for (i, p) in probs.iter_mut().enumerate() {
        for (d, logit) in p.iter_mut().enumerate() {
            let o = i * 10 + d;
            let row = &params[W2 + o * HIDDEN..W2 + (o + 1) * HIDDEN];
            *logit = row.iter().zip(&hidden).map(|(w, h)| w * h).sum::<f32>() + params[B2 + o];
        }
        let max = p.iter().copied().fold(f32::MIN, f32::max);
        let mut total = 0.0;
        for logit in p.iter_mut() {
            *logit = (*logit - max).exp();
            total += *logit;
        }
        p.iter_mut().for_each(|v| *v /= total);
    }
    Forward { hidden, probs }
}

/// Samples an answer from the probabilities.
pub fn sample(forward: &Forward, rng: &mut fastrand::Rng) -> [u8; DIGITS] {
    let mut answer = [0u8; DIGITS];
    for (a, p) in answer.iter_mut().zip(&forward.probs) {
        let mut u = rng.f32();
        *a = 9;
        for (d, pd) in p.iter().enumerate() {
            if u < *pd {
                *a = d as u8;
                break;
            }
            u -= pd;
        }
    }
    answer
}

/// Adds to `grad` the gradient of `-advantage × log π(answer | prompt)` (policy gradient).
pub fn accumulate_gradient(
    params: &[f32],
    prompt: &[u8; DIGITS],
    answer: &[u8; DIGITS],
    advantage: f32,
    grad: &mut [f32],
) {
    let f = forward(params, prompt);
    // d(-A log p_a)/d logit_d = -A (1[d = a] - p_d)
    let mut dlogits = [0.0f32; WIDTH];
    for i in 0..DIGITS {
        for d in 0..10 {
            let target = if answer[i] as usize == d { 1.0 } else { 0.0 };
            dlogits[i * 10 + d] = -advantage * (target - f.probs[i][d]);
        }
    }
    let mut dhidden = [0.0f32; HIDDEN];
    for (o, g) in dlogits.iter().enumerate() {
        if *g == 0.0 {
            continue;
        }
        let row = W2 + o * HIDDEN;
        for j in 0..HIDDEN {
            grad[row + j] += g * f.hidden[j];
            dhidden[j] += g * params[row + j];
        }
        grad[B2 + o] += g;
    }
    for j in 0..HIDDEN {
        if f.hidden[j] <= 0.0 {
            continue;
        }
        let g = dhidden[j];
        for (i, d) in prompt.iter().enumerate() {
            grad[W1 + j * WIDTH + i * 10 + *d as usize] += g;
        }
        grad[B1 + j] += g;
    }
}

/// Appends `group` answers to `prompt` sampled from the policy to `answers`.
pub fn sample_answers(
    params: &[f32],
    prompt: &[u8; DIGITS],
    group: usize,
    rng: &mut fastrand::Rng,
    answers: &mut Vec<u8>,
) {
    let forward = forward(params, prompt);
    for _ in 0..group {
        answers.extend_from_slice(&sample(&forward, rng));
    }
}

/// The GRPO gradient of a batch: `group` answers per prompt, each answer's advantage its
/// reward against its group's (normalized), averaged over all the batch's answers. Only
/// the prompts whose index `mine` accepts are computed (a rank's share; the ranks' sums
/// add up to the whole batch's gradient).
pub fn grpo_gradient(
    params: &[f32],
    prompts: &[[u8; DIGITS]],
    answers: &[[u8; DIGITS]],
    rewards: &[f32],
    group: usize,
    mine: impl Fn(usize) -> bool,
) -> Vec<f32> {
    let mut grad = vec![0.0f32; PARAMETERS];
    let samples = rewards.len() as f32;
    let groups = answers.chunks(group).zip(rewards.chunks(group));
    for (i, (prompt, (answers, rewards))) in prompts.iter().zip(groups).enumerate() {
        if !mine(i) {
            continue;
        }
        let mean = rewards.iter().sum::<f32>() / group as f32;
        let var = rewards.iter().map(|r| (r - mean).powi(2)).sum::<f32>() / group as f32;
        for (answer, reward) in answers.iter().zip(rewards) {
            let advantage = (reward - mean) / (var.sqrt() + 1e-3);
            accumulate_gradient(params, prompt, answer, advantage / samples, &mut grad);
        }
    }
    grad
}

/// Adam, on the flat parameters.
pub struct Adam {
    lr: f32,
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl Adam {
    /// Adam with learning rate `lr` and the usual betas.
    pub fn new(lr: f32) -> Self {
        Adam {
            lr,
            m: vec![0.0; PARAMETERS],
            v: vec![0.0; PARAMETERS],
            t: 0,
        }
    }

    /// Adam resumed from a checkpoint: the moments `m` and `v` after `t` steps.
    pub fn resume(lr: f32, m: Vec<f32>, v: Vec<f32>, t: i32) -> Self {
        Adam { lr, m, v, t }
    }

    /// The first and second moments and the step count, for a checkpoint.
    pub fn state(&self) -> (&[f32], &[f32], i32) {
        (&self.m, &self.v, self.t)
    }

    /// One step along `-grad`.
    pub fn step(&mut self, params: &mut [f32], grad: &[f32]) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        self.t += 1;
        let (c1, c2) = (1.0 - B1.powi(self.t), 1.0 - B2.powi(self.t));
        for i in 0..params.len() {
            self.m[i] = B1 * self.m[i] + (1.0 - B1) * grad[i];
            self.v[i] = B2 * self.v[i] + (1.0 - B2) * grad[i] * grad[i];
            params[i] -= self.lr * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + 1e-8);
        }
    }
}
