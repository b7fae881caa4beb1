//! Vote weights: WBFT blending of trust and quality, normalisation, log-odds, share caps.

/// Why weights cannot be normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WeightError {
    /// All weights are zero (or the slice is empty).
    #[error("the weights sum to zero")]
    ZeroTotal,
    /// A weight is negative, NaN or infinite.
    #[error("a weight is negative or not finite")]
    Invalid,
}

/// The WBFT weight `w = α·trust + (1−α)·quality` (digest A.3), each input in `[0, 1]`.
///
/// ```
/// use conclave::aggregate::weights::wbft;
/// // FinanceNet, α = 0.6: EconAgent trust 0.85, quality 0.70.
/// assert!((wbft(0.85, 0.70, 0.6) - 0.79).abs() < 1e-12);
/// ```
pub fn wbft(trust: f64, quality: f64, alpha: f64) -> f64 {
    alpha * trust + (1.0 - alpha) * quality
}

/// Scales `w` in place so that it sums to 1.
///
/// # Errors
/// [`WeightError::Invalid`] for a negative or non-finite weight, [`WeightError::ZeroTotal`]
/// when nothing is left to scale.
pub fn normalize(w: &mut [f64]) -> Result<(), WeightError> {
    if w.iter().any(|x| !(x.is_finite() && *x >= 0.0)) {
        return Err(WeightError::Invalid);
    }
    let total: f64 = w.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return Err(WeightError::ZeroTotal);
    }
    w.iter_mut().for_each(|x| *x /= total);
    Ok(())
}

/// The Nitzan–Paroush log-odds weight of an agent of competence `p` over `k` options,
/// `ln((k−1)p/(1−p))` (for `k = 2`, `ln(p/(1−p))`), with `p` clipped to `[clip, 1−clip]`
/// so that a claimed certainty cannot take infinite weight. Agents no better than chance
/// (`p ≤ 1/k`) get 0: a negative weight would count their vote against their option,
/// which lets a mis-estimated agent steer the result.
///
/// ```
/// use conclave::aggregate::weights::log_odds;
/// assert!((log_odds(0.75, 2, 0.01) - 3f64.ln()).abs() < 1e-12);
/// assert_eq!(log_odds(0.2, 4, 0.01), 0.0);
/// ```
pub fn log_odds(p: f64, k: usize, clip: f64) -> f64 {
    let p = p.clamp(clip, 1.0 - clip);
    let k = k.max(2) as f64;
    ((k - 1.0) * p / (1.0 - p)).ln().max(0.0)
}

/// Caps every weight so that none exceeds `cap` of the total, re-solving the total after
/// each cap (water-filling): the capped weights end at exactly `cap` of the new total and the
/// others keep their proportions. With `cap·n < 1` no assignment can satisfy the cap and all
/// weights become equal. Zero weights stay zero.
///
/// ```
/// use conclave::aggregate::weights::cap_shares;
/// let mut w = vec![8.0, 1.0, 1.0];
/// cap_shares(&mut w, 0.5);
/// let total: f64 = w.iter().sum();
/// assert!((w[0] / total - 0.5).abs() < 1e-12);
/// ```
pub fn cap_shares(w: &mut [f64], cap: f64) {
    let positive = w.iter().filter(|&&x| x > 0.0).count();
    if positive == 0 || cap >= 1.0 {
        return;
    }
    if cap * positive as f64 <= 1.0 {
        w.iter_mut().filter(|x| **x > 0.0).for_each(|x| *x = 1.0);
        return;
    }
    let mut order: Vec<usize> = (0..w.len()).collect();
    order.sort_by(|&a, &b| w[b].total_cmp(&w[a]));
    let total: f64 = w.iter().sum();
    // Find the smallest k such that capping the k largest leaves the (k+1)-th under the cap:
    // with k capped at share `cap`, the new total T solves T = k·cap·T + rest.
    let mut rest = total;
    for k in 0..positive {
        let t = rest / (1.0 - k as f64 * cap);
        if w[order[k]] <= cap * t {
            for &i in &order[..k] {
                w[i] = cap * t;
            }
            return;
        }
        rest -= w[order[k]];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn financenet_wbft_weights() {
        // Digest A.3 / G.1 claim 1: α = 0.6 gives 0.79 / 0.73 / 0.59.
        let econ = wbft(0.85, 0.70, 0.6);
        let news = wbft(0.72, 0.75, 0.6);
        let generalist = wbft(0.55, 0.65, 0.6);
        assert!((econ - 0.79).abs() < 1e-12);
        assert!((news - 0.732).abs() < 1e-12);
        assert_eq!((news * 100.0).round() / 100.0, 0.73);
        assert!((generalist - 0.59).abs() < 1e-12);
        let mut w = vec![econ, news, generalist];
        normalize(&mut w).unwrap();
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(w[0] > w[1] && w[1] > w[2]);
    }

    #[test]
    fn normalize_rejects_bad_weights() {
        assert_eq!(normalize(&mut [0.0, 0.0]), Err(WeightError::ZeroTotal));
        assert_eq!(normalize(&mut []), Err(WeightError::ZeroTotal));
        assert_eq!(normalize(&mut [1.0, -1.0]), Err(WeightError::Invalid));
        assert_eq!(normalize(&mut [1.0, f64::NAN]), Err(WeightError::Invalid));
    }

    #[test]
    fn cap_shares_caps_and_keeps_proportions() {
        let mut w = vec![10.0, 3.0, 2.0, 1.0];
        cap_shares(&mut w, 0.4);
        let t: f64 = w.iter().sum();
        assert!((w[0] / t - 0.4).abs() < 1e-12);
        assert!((w[1] / w[2] - 1.5).abs() < 1e-12);
        assert!(w.iter().all(|x| x / t <= 0.4 + 1e-12));
        // Two large agents both capped.
        let mut w = vec![10.0, 10.0, 1.0, 1.0, 1.0];
        cap_shares(&mut w, 0.3);
        let t: f64 = w.iter().sum();
        assert!(w.iter().all(|x| x / t <= 0.3 + 1e-12), "{w:?}");
        // Infeasible cap: equal weights.
        let mut w = vec![5.0, 1.0];
        cap_shares(&mut w, 0.4);
        assert_eq!(w, vec![1.0, 1.0]);
    }

    #[test]
    fn log_odds_k_ary() {
        // K-ary form ln((K−1)p/(1−p)).
        assert!((log_odds(0.6, 3, 0.01) - (2.0f64 * 0.6 / 0.4).ln()).abs() < 1e-12);
        // Clipped: certainty is finite.
        assert!(log_odds(1.0, 2, 0.01).is_finite());
    }
}
