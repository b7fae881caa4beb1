//! Consensus measures: consensus quality, margin, vote entropy, effective number of voters.

use ndarray::{Array2, ArrayView2};

/// Consensus quality `CQ = 1 / (1 + σ/(μ + ε))` (digest A.12), with σ the **sample** standard
/// deviation of `values` and μ the mean of `|values|`.
///
/// Conventions: fewer than two values have σ = 0, so CQ = 1; when `μ + ε = 0` (all values
/// zero) CQ is 1 if σ = 0. CQ is sign- and scale-sensitive: answers that agree near 0 score
/// low unless ε is set to the smallest meaningful resolution.
///
/// ```
/// use conclave::aggregate::consensus::consensus_quality;
/// // The FinanceNet merger rounds of the article.
/// assert!((consensus_quality(&[0.1, -0.4, 0.3], 0.0) - 0.425).abs() < 0.001);
/// assert!((consensus_quality(&[-0.10, -0.15, -0.20], 0.0) - 0.75).abs() < 1e-9);
/// ```
pub fn consensus_quality(values: &[f64], epsilon: f64) -> f64 {
    let n = values.len();
    // Identical answers are unanimous (the mean's rounding must not say otherwise).
    if n < 2 || values.iter().all(|x| *x == values[0]) {
        return 1.0;
    }
    let nf = n as f64;
    let mean = values.iter().sum::<f64>() / nf;
    let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (nf - 1.0);
    let sigma = var.sqrt();
    let mu = values.iter().map(|x| x.abs()).sum::<f64>() / nf + epsilon;
    if sigma == 0.0 {
        return 1.0;
    }
    if mu <= 0.0 {
        return 0.0;
    }
    1.0 / (1.0 + sigma / mu)
}

/// Consensus quality of vectors, `1/(1 + σ/(μ + ε))` with σ the root of the sample variance of
/// the vectors around their centroid (`Σ‖x_i − x̄‖² / (n − 1)`) and μ the mean norm: 1 only
/// when every vector is the same.
///
/// ```
/// use conclave::aggregate::consensus::vector_consensus;
/// assert_eq!(vector_consensus(&[&[1.0, 0.0], &[1.0, 0.0]], 0.05), 1.0);
/// assert!(vector_consensus(&[&[1.0, 0.0], &[-1.0, 0.0], &[0.0, 50.0]], 0.05) < 0.6);
/// ```
pub fn vector_consensus(vectors: &[&[f64]], epsilon: f64) -> f64 {
    let n = vectors.len();
    if n < 2 {
        return 1.0;
    }
    let d = vectors[0].len();
    if vectors.iter().any(|v| v.len() != d) {
        return 0.0;
    }
    // Identical vectors are unanimous (the centroid's rounding must not say otherwise).
    if vectors.iter().all(|v| *v == vectors[0]) {
        return 1.0;
    }
    let nf = n as f64;
    let centroid: Vec<f64> = (0..d)
        .map(|j| vectors.iter().map(|v| v[j]).sum::<f64>() / nf)
        .collect();
    let ss: f64 = vectors
        .iter()
        .map(|v| {
            v.iter()
                .zip(&centroid)
                .map(|(a, c)| (a - c).powi(2))
                .sum::<f64>()
        })
        .sum();
    let sigma = (ss / (nf - 1.0)).sqrt();
    if sigma == 0.0 {
        return 1.0;
    }
    let mu = vectors
        .iter()
        .map(|v| v.iter().map(|x| x * x).sum::<f64>().sqrt())
        .sum::<f64>()
        / nf
        + epsilon;
    if mu <= 0.0 {
        return 0.0;
    }
    1.0 / (1.0 + sigma / mu)
}

/// The normalised gap between the best and second-best score, `(s₁ − s₂) / scale`, in
/// `[0, 1]` when `scale` is the largest possible difference. One option gives margin 1.
pub fn margin(scores: &[f64], scale: f64) -> f64 {
    let mut best = f64::NEG_INFINITY;
    let mut second = f64::NEG_INFINITY;
    for &s in scores {
        if s > best {
            second = best;
            best = s;
        } else if s > second {
            second = s;
        }
    }
    if second == f64::NEG_INFINITY {
        return 1.0;
    }
    if scale <= 0.0 {
        return 0.0;
    }
    ((best - second) / scale).clamp(0.0, 1.0)
}

/// Shannon entropy in bits of a distribution of vote shares (zeros contribute nothing).
/// 0 means unanimity; `log2(k)` means an even split over `k` options.
pub fn entropy_bits(shares: &[f64]) -> f64 {
    let h: f64 = shares
        .iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| -p * p.log2())
        .sum();
    h.max(0.0)
}

/// Pearson correlation matrix of agents' error indicators: `errors` has one row per graded
/// item and one column per agent (1.0 = wrong, 0.0 = right). An agent whose errors never
/// vary has correlation 0 with the others (and 1 with itself).
pub fn error_correlation(errors: ArrayView2<'_, f64>) -> Array2<f64> {
    let (items, agents) = errors.dim();
    let mut c = Array2::<f64>::eye(agents);
    if items < 2 {
        return c;
    }
    let means: Vec<f64> = errors
        .columns()
        .into_iter()
        .map(|col| col.sum() / items as f64)
        .collect();
    let sds: Vec<f64> = errors
        .columns()
        .into_iter()
        .zip(&means)
        .map(|(col, m)| col.iter().map(|x| (x - m).powi(2)).sum::<f64>().sqrt())
        .collect();
    for a in 0..agents {
        for b in (a + 1)..agents {
            if sds[a] == 0.0 || sds[b] == 0.0 {
                continue;
            }
            let cov: f64 = errors
                .column(a)
                .iter()
                .zip(errors.column(b))
                .map(|(x, y)| (x - means[a]) * (y - means[b]))
                .sum();
            let r = (cov / (sds[a] * sds[b])).clamp(-1.0, 1.0);
            c[[a, b]] = r;
            c[[b, a]] = r;
        }
    }
    c
}

/// Effective number of independent voters from a correlation matrix, `n / (1 + (n−1)ρ̄)` with
/// ρ̄ the mean off-diagonal correlation (Kish-style design effect). Clamped to `[1, n]`.
///
/// ```
/// use conclave::aggregate::consensus::n_eff_mean_correlation;
/// use ndarray::Array2;
/// assert_eq!(n_eff_mean_correlation(Array2::eye(5).view()), 5.0);
/// assert_eq!(n_eff_mean_correlation(Array2::ones((5, 5)).view()), 1.0);
/// ```
pub fn n_eff_mean_correlation(corr: ArrayView2<'_, f64>) -> f64 {
    let n = corr.nrows();
    if n < 2 {
        return n as f64;
    }
    let off: f64 = corr.sum() - corr.diag().sum();
    let rho = off / (n * (n - 1)) as f64;
    let nf = n as f64;
    (nf / (1.0 + (nf - 1.0) * rho)).clamp(1.0, nf)
}

/// Effective number of voters as the participation ratio of the correlation matrix's
/// eigenvalues, `(Σλ)² / Σλ²`. For a symmetric matrix `Σλ = tr C` and `Σλ² = ‖C‖²_F`, so no
/// eigen-decomposition is needed. Independent agents give `n`, identical agents 1.
pub fn n_eff_participation_ratio(corr: ArrayView2<'_, f64>) -> f64 {
    let trace = corr.diag().sum();
    let frob2: f64 = corr.iter().map(|x| x * x).sum();
    if frob2 <= 0.0 {
        return 0.0;
    }
    trace * trace / frob2
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn article_cq_numbers() {
        // Digest G.1 claims 2–4 (sample σ, ε = 0).
        let r1 = consensus_quality(&[0.1, -0.4, 0.3], 0.0);
        assert!((r1 - 0.425).abs() < 0.0005, "{r1}");
        let r2 = consensus_quality(&[-0.10, -0.15, -0.20], 0.0);
        assert!((r2 - 0.75).abs() < 1e-12, "{r2}");
        let r3 = consensus_quality(&[-0.06, -0.07, -0.09], 0.0);
        assert!((r3 - 0.83).abs() < 0.005, "{r3}");
        assert!(r3 > 0.75);
        // Claim 6 (Apple case): the formula gives 0.43, not the article's 0.45; still < 0.55.
        let apple = consensus_quality(&[-0.3, 0.2, 0.1], 0.0);
        assert!((apple - 0.43).abs() < 0.005 && apple < 0.55, "{apple}");
    }

    #[test]
    fn cq_edge_cases() {
        assert_eq!(consensus_quality(&[0.3], 0.0), 1.0);
        assert_eq!(consensus_quality(&[0.0, 0.0], 0.0), 1.0);
        assert_eq!(consensus_quality(&[0.5, 0.5, 0.5], 0.0), 1.0);
        let with_eps = consensus_quality(&[0.01, -0.01], 0.1);
        assert!(with_eps > consensus_quality(&[0.01, -0.01], 0.0));
    }

    #[test]
    fn margin_and_entropy() {
        assert!((margin(&[0.6, 0.3, 0.1], 1.0) - 0.3).abs() < 1e-12);
        assert_eq!(margin(&[1.0], 1.0), 1.0);
        assert_eq!(entropy_bits(&[1.0, 0.0]), 0.0);
        assert!((entropy_bits(&[0.25; 4]) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn correlation_and_n_eff() {
        // Agents 0 and 1 fail together; agent 2 fails on other items.
        let errors = array![
            [1.0, 1.0, 0.0],
            [0.0, 0.0, 1.0],
            [1.0, 1.0, 0.0],
            [0.0, 0.0, 0.0],
        ];
        let c = error_correlation(errors.view());
        assert!((c[[0, 1]] - 1.0).abs() < 1e-12);
        assert!(c[[0, 2]] < 0.0);
        let pr = n_eff_participation_ratio(c.view());
        assert!((1.0..3.0).contains(&pr), "{pr}");
        assert_eq!(n_eff_participation_ratio(Array2::<f64>::eye(4).view()), 4.0);
        assert!(
            (n_eff_participation_ratio(Array2::<f64>::ones((4, 4)).view()) - 1.0).abs() < 1e-12
        );
        let half = Array2::from_shape_fn((3, 3), |(i, j)| if i == j { 1.0 } else { 0.5 });
        assert!((n_eff_mean_correlation(half.view()) - 1.5).abs() < 1e-12);
    }
}
