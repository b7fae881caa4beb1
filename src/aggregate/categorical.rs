//! Categorical counting: plurality scores, co-winner sets, supermajority.

/// Weights are summed in fixed point with this many fractional bits, so that a sum does not
/// depend on the order of the ballots (floating-point addition is not associative, and an
/// order-dependent sum could turn a tie into a win when ballots are merely reordered).
const FIXED_BITS: i32 = 52;

/// A non-negative weight as a fixed-point integer (resolution 2⁻⁵²).
pub(crate) fn fixed(w: f64) -> i128 {
    (w * 2f64.powi(FIXED_BITS)).round() as i128
}

/// A fixed-point sum back as a float.
pub(crate) fn unfixed(x: i128) -> f64 {
    x as f64 / 2f64.powi(FIXED_BITS)
}

/// Sums the weight of each option's votes: `scores[o] = Σ_{i: choice_i = o} w_i`, exactly
/// (in fixed point) and so independently of the ballots' order.
///
/// `choices[i]` is an option index below `k`; `weights` is aligned with `choices`.
pub fn weighted_counts(choices: &[usize], weights: &[f64], k: usize) -> Vec<f64> {
    let mut s = vec![0i128; k];
    for (&c, &w) in choices.iter().zip(weights) {
        if let Some(slot) = s.get_mut(c) {
            *slot += fixed(w);
        }
    }
    s.into_iter().map(unfixed).collect()
}

/// Counts each option's votes (one per ballot): `scores[o] = #{i: choice_i = o}`.
pub fn counts(choices: &[usize], k: usize) -> Vec<f64> {
    let mut s = vec![0.0; k];
    for &c in choices {
        if let Some(slot) = s.get_mut(c) {
            *slot += 1.0;
        }
    }
    s
}

/// Every index holding the maximum score, in index order (the co-winner set). Exact
/// comparison: scores that differ by rounding are not tied.
pub fn argmax_all(scores: &[f64]) -> Vec<usize> {
    let best = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    scores
        .iter()
        .enumerate()
        .filter(|&(_, s)| *s == best)
        .map(|(i, _)| i)
        .collect()
}

/// The option whose share of the total reaches `threshold`, if any (with a threshold above
/// one half there is at most one).
pub fn supermajority(scores: &[f64], threshold: f64) -> Vec<usize> {
    let total: f64 = scores.iter().sum();
    if total <= 0.0 {
        return Vec::new();
    }
    scores
        .iter()
        .enumerate()
        .filter(|&(_, s)| s / total >= threshold)
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_ties() {
        let s = weighted_counts(&[0, 1, 1, 2, 0], &[1.0; 5], 3);
        assert_eq!(s, vec![2.0, 2.0, 1.0]);
        assert_eq!(argmax_all(&s), vec![0, 1]);
    }

    #[test]
    fn supermajority_needs_the_threshold() {
        assert_eq!(supermajority(&[2.0, 1.0], 2.0 / 3.0), vec![0]);
        assert!(supermajority(&[3.0, 2.0], 2.0 / 3.0).is_empty());
    }
}
