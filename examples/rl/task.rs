//! The task: reverse a string of digits. Exact answers, so a verifier scores them without a
//! model, and a policy that knows nothing gets one digit in ten right.

use super::policy::DIGITS;

/// A random prompt.
pub fn prompt(rng: &mut fastrand::Rng) -> [u8; DIGITS] {
    let mut digits = [0u8; DIGITS];
    digits.iter_mut().for_each(|d| *d = rng.u8(0..10));
    digits
}

/// The per-digit reward: the fraction of answer positions that hold the reversed prompt's
/// digit.
pub fn reward(prompt: &[u8], answer: &[u8]) -> f32 {
    let right = (0..DIGITS)
        .filter(|i| answer.get(*i) == prompt.get(DIGITS - 1 - i))
        .count();
    right as f32 / DIGITS as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reversed_prompt_scores_one_and_each_right_digit_a_sixth() {
        let prompt = [1, 2, 3, 4, 5, 6];
        assert_eq!(reward(&prompt, &[6, 5, 4, 3, 2, 1]), 1.0);
        assert_eq!(reward(&prompt, &[6, 0, 0, 0, 0, 1]), 2.0 / 6.0);
        assert_eq!(reward(&prompt, &[1, 2, 3, 4, 5, 6]), 0.0);
    }
}
