//! Statistics of an evaluation run: intervals, calibration, rank correlation.

use serde::Serialize;

/// A proportion with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Rate {
    /// The estimate.
    pub value: f64,
    /// Lower end of the 95 % interval.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
    /// Successes.
    pub k: usize,
    /// Trials.
    pub n: usize,
}

impl Rate {
    /// `k` of `n`, with the Wilson score interval (z = 1.96).
    pub fn wilson(k: usize, n: usize) -> Self {
        if n == 0 {
            return Self {
                value: 0.0,
                lo: 0.0,
                hi: 1.0,
                k,
                n,
            };
        }
        let (kf, nf, z) = (k as f64, n as f64, 1.96f64);
        let p = kf / nf;
        let denom = 1.0 + z * z / nf;
        let centre = (p + z * z / (2.0 * nf)) / denom;
        let half = z * ((p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt()) / denom;
        Self {
            value: p,
            lo: (centre - half).max(0.0),
            hi: (centre + half).min(1.0),
            k,
            n,
        }
    }
}

/// A difference with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Delta {
    /// Mean difference.
    pub value: f64,
    /// Lower end of the 95 % interval.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
    /// Standard error of the mean difference.
    pub se: f64,
    /// Pairs.
    pub n: usize,
}

/// The one-sided exact sign test on paired outcomes: the probability, if neither side were
/// better, of at least `losses` losses among `wins + losses` items on which the two differ
/// (1 when they never differ).
pub fn sign_test(wins: usize, losses: usize) -> f64 {
    use statrs::distribution::{Binomial, DiscreteCDF};
    if losses == 0 {
        return 1.0;
    }
    Binomial::new(0.5, (wins + losses) as u64)
        .map_or(1.0, |b| b.sf(losses as u64 - 1).clamp(0.0, 1.0))
}

/// The mean of paired differences `a − b` (each 0 or 1) with a normal 95 % interval.
pub fn paired_delta(a: &[bool], b: &[bool]) -> Delta {
    let n = a.len().min(b.len());
    if n == 0 {
        return Delta {
            value: 0.0,
            lo: 0.0,
            hi: 0.0,
            se: 0.0,
            n: 0,
        };
    }
    let d: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(u8::from(x)) - f64::from(u8::from(y)))
        .collect();
    let mean = d.iter().sum::<f64>() / n as f64;
    let var = if n > 1 {
        d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    let se = (var / n as f64).sqrt();
    Delta {
        value: mean,
        lo: mean - 1.96 * se,
        hi: mean + 1.96 * se,
        se,
        n,
    }
}

/// One bin of a calibration curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bin {
    /// Lower edge of the confidence bin.
    pub lo: f64,
    /// Upper edge.
    pub hi: f64,
    /// Verdicts in the bin.
    pub n: usize,
    /// Mean stated confidence.
    pub confidence: f64,
    /// Share right.
    pub accuracy: f64,
}

/// Calibration of verdict confidence against correctness.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Calibration {
    /// Expected calibration error over ten equal-width bins.
    pub ece: f64,
    /// Brier score (mean squared error of confidence as a probability of being right).
    pub brier: f64,
    /// Verdicts behind it.
    pub n: usize,
    /// The non-empty bins.
    pub bins: Vec<Bin>,
}

/// ECE and Brier score of `(confidence, right)` pairs.
pub fn calibration(pairs: &[(f64, bool)]) -> Calibration {
    const BINS: usize = 10;
    let n = pairs.len();
    let mut sums = [(0usize, 0.0f64, 0usize); BINS];
    let mut brier = 0.0;
    for &(c, right) in pairs {
        let c = c.clamp(0.0, 1.0);
        let y = f64::from(u8::from(right));
        brier += (c - y).powi(2);
        let b = ((c * BINS as f64) as usize).min(BINS - 1);
        sums[b].0 += 1;
        sums[b].1 += c;
        sums[b].2 += usize::from(right);
    }
    let mut ece = 0.0;
    let mut bins = Vec::new();
    for (b, &(k, conf, right)) in sums.iter().enumerate() {
        if k == 0 {
            continue;
        }
        let (mc, acc) = (conf / k as f64, right as f64 / k as f64);
        ece += (k as f64 / n as f64) * (mc - acc).abs();
        bins.push(Bin {
            lo: b as f64 / BINS as f64,
            hi: (b + 1) as f64 / BINS as f64,
            n: k,
            confidence: mc,
            accuracy: acc,
        });
    }
    Calibration {
        ece,
        brier: if n > 0 { brier / n as f64 } else { 0.0 },
        n,
        bins,
    }
}

/// Average ranks (1-based; ties share their mean rank).
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation (Pearson on average ranks); `None` for fewer than three
/// pairs or a constant side.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 3 {
        return None;
    }
    let (rx, ry) = (ranks(x), ranks(y));
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let mut sxy = 0.0;
    let mut sxx = 0.0;
    let mut syy = 0.0;
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// The `q`-quantile (nearest rank) of `xs`.
pub fn quantile(xs: &[u64], q: f64) -> u64 {
    if xs.is_empty() {
        return 0;
    }
    let mut v = xs.to_vec();
    v.sort_unstable();
    let k = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[k]
}

/// The distribution of one metric over runs (seeds or generated scenarios).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Dist {
    /// Runs.
    pub n: usize,
    /// Mean of the finite values.
    pub mean: f64,
    /// Their sample standard deviation (0 for one value).
    pub sd: f64,
    /// Smallest value.
    pub min: f64,
    /// Median (of all values, infinite ones last).
    pub median: f64,
    /// Largest value (`null` in JSON when infinite).
    pub max: f64,
    /// Lower end of the two-sided 95 % t interval of the mean (the mean for one value).
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
    /// Values that were infinite (an adversary never caught).
    pub infinite: usize,
}

impl Dist {
    /// The distribution of `xs`; `None` when empty.
    pub fn of(xs: &[f64]) -> Option<Self> {
        let mut all: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
        if all.is_empty() {
            return None;
        }
        all.sort_by(f64::total_cmp);
        let finite: Vec<f64> = all.iter().copied().filter(|x| x.is_finite()).collect();
        let k = finite.len();
        let mean = if k > 0 {
            finite.iter().sum::<f64>() / k as f64
        } else {
            f64::INFINITY
        };
        let sd = if k > 1 {
            (finite.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1) as f64).sqrt()
        } else {
            0.0
        };
        let half = if k > 1 {
            t_quantile(0.975, k - 1) * sd / (k as f64).sqrt()
        } else {
            0.0
        };
        let n = all.len();
        let median = if n % 2 == 1 {
            all[n / 2]
        } else {
            (all[n / 2 - 1] + all[n / 2]) / 2.0
        };
        Some(Self {
            n,
            mean,
            sd,
            min: all[0],
            median,
            max: all[n - 1],
            lo: mean - half,
            hi: mean + half,
            infinite: n - k,
        })
    }
}

/// The `p`-quantile of Student's t with `df` degrees of freedom (normal for df = 0).
pub fn t_quantile(p: f64, df: usize) -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal, StudentsT};
    let normal = || {
        Normal::new(0.0, 1.0)
            .ok()
            .and_then(|n| n.try_inverse_cdf(p).ok())
            .unwrap_or(1.96)
    };
    if df == 0 {
        return normal();
    }
    StudentsT::new(0.0, 1.0, df as f64)
        .ok()
        .and_then(|t| t.try_inverse_cdf(p).ok())
        .unwrap_or_else(normal)
}

/// The one-sided 95 % quantile of Student's t with `df` degrees of freedom.
pub fn t_quantile_95(df: usize) -> f64 {
    t_quantile(0.95, df)
}

/// Root mean squared difference.
pub fn rmse(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.is_empty() {
        return None;
    }
    let s: f64 = pairs.iter().map(|(a, b)| (a - b).powi(2)).sum();
    Some((s / pairs.len() as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_the_textbook_value() {
        // 8 of 10: Wilson 95 % interval (0.490, 0.943).
        let r = Rate::wilson(8, 10);
        assert!(
            (r.lo - 0.4902).abs() < 1e-3 && (r.hi - 0.9433).abs() < 1e-3,
            "{r:?}"
        );
    }

    #[test]
    fn the_sign_test_is_the_exact_binomial_tail() {
        // Σ_{i ≥ losses} C(n, i) / 2ⁿ, in exact fractions (as scipy.stats.binomtest with
        // alternative="greater").
        for (wins, losses, p) in [
            (0, 3, 0.125),
            (0, 5, 0.03125),
            (2, 8, 0.0546875),
            (10, 10, 0.588_098_526_000_976_6),
            (30, 10, 0.999_660_225_872_503_4),
        ] {
            let x = sign_test(wins, losses);
            assert!((x - p).abs() < 1e-9, "{wins}/{losses}: {x} vs {p}");
        }
        assert_eq!(sign_test(7, 0), 1.0);
        assert_eq!(sign_test(0, 0), 1.0);
    }

    #[test]
    fn spearman_handles_ties_and_order() {
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), Some(1.0));
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
        // scipy.stats.spearmanr([1,2,2,3],[1,3,2,4]) = 0.9486832980505138
        let s = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]).unwrap_or(0.0);
        assert!((s - 0.948_683_298_050_513_8).abs() < 1e-12, "{s}");
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
    }

    #[test]
    fn calibration_of_a_perfect_forecaster_is_zero() {
        let pairs = vec![(1.0, true), (1.0, true), (0.0, false)];
        let c = calibration(&pairs);
        assert!(c.ece.abs() < 1e-12 && c.brier.abs() < 1e-12);
        let c = calibration(&[(0.9, false)]);
        assert!((c.ece - 0.9).abs() < 1e-12 && (c.brier - 0.81).abs() < 1e-12);
    }

    #[test]
    fn t_quantiles_match_the_tables() {
        // scipy.stats.t.ppf(0.95, 19) = 1.7291328115213678; t.ppf(0.975, 4) = 2.7764451051977987
        assert!((t_quantile_95(19) - 1.729_132_811_521_367_8).abs() < 1e-6);
        assert!((t_quantile(0.975, 4) - 2.776_445_105_197_798_7).abs() < 1e-6);
        assert!((t_quantile(0.975, 0) - 1.959_963_984_540_054).abs() < 1e-6);
    }

    #[test]
    fn distributions_keep_infinite_values_apart() {
        let d = Dist::of(&[3.0, 1.0, f64::INFINITY, 2.0]).unwrap_or_else(|| unreachable!());
        assert_eq!((d.n, d.infinite), (4, 1));
        assert!((d.mean - 2.0).abs() < 1e-12 && (d.median - 2.5).abs() < 1e-12);
        assert!(d.max.is_infinite() && d.min == 1.0);
        assert!(Dist::of(&[]).is_none());
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let xs: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&xs, 0.5), 50);
        assert_eq!(quantile(&xs, 0.99), 99);
        assert_eq!(quantile(&[7], 0.99), 7);
    }
}
