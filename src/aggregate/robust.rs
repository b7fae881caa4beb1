//! Robust aggregation of points (scores or vectors): geometric median, Krum and multi-Krum,
//! and exponential outlier down-weighting.

use ndarray::{ArrayView1, ArrayView2};

use super::numeric;

/// The result of the Weiszfeld iteration.
#[derive(Debug, Clone, PartialEq)]
pub struct GeometricMedian {
    /// The estimate.
    pub point: Vec<f64>,
    /// `Σ w_i ‖x_i − point‖` with the weights as given.
    pub objective: f64,
    /// Iterations run.
    pub iterations: usize,
    /// Whether the step fell below the tolerance (or the estimate was proven optimal).
    pub converged: bool,
}

fn dist(a: ArrayView1<'_, f64>, b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Weighted geometric median `argmin_y Σ w_i ‖x_i − y‖` of the rows of `points`.
///
/// Weiszfeld's iteration from the weighted mean, with the Vardi–Zhang modification: when the
/// iterate coincides with data points (distance 0, where the plain iteration divides by
/// zero), their weight `η` is set aside, the step is taken from the others, and the iterate
/// is proven optimal when `‖R‖ ≤ η` (`R` the pull of the other points). Stops when a step
/// moves the estimate by at most `tol·(1 + ‖y‖)` or after `max_iter` iterations. For
/// one-dimensional points the weighted median is returned directly (exact).
///
/// Breakdown point `⌊(n−1)/2⌋` for equal weights, under independent errors.
pub fn geometric_median(
    points: ArrayView2<'_, f64>,
    weights: &[f64],
    tol: f64,
    max_iter: usize,
) -> GeometricMedian {
    let (n, d) = points.dim();
    let objective = |y: &[f64]| -> f64 {
        points
            .rows()
            .into_iter()
            .zip(weights)
            .map(|(x, w)| w * dist(x, y))
            .sum()
    };
    if n == 0 || d == 0 {
        return GeometricMedian {
            point: vec![0.0; d],
            objective: 0.0,
            iterations: 0,
            converged: true,
        };
    }
    if d == 1 {
        let values: Vec<f64> = points.column(0).to_vec();
        let point = vec![numeric::weighted_median(&values, weights)];
        let objective = objective(&point);
        return GeometricMedian {
            point,
            objective,
            iterations: 0,
            converged: true,
        };
    }
    let total: f64 = weights.iter().sum();
    let mut y = vec![0.0; d];
    for (x, &w) in points.rows().into_iter().zip(weights) {
        y.iter_mut().zip(x).for_each(|(a, b)| *a += w * b / total);
    }
    let mut num = vec![0.0; d];
    let mut next = vec![0.0; d];
    let mut converged = false;
    let mut iterations = 0;
    while iterations < max_iter {
        iterations += 1;
        num.iter_mut().for_each(|a| *a = 0.0);
        let mut den = 0.0;
        let mut eta = 0.0;
        let scale = 1.0 + norm(&y);
        for (x, &w) in points.rows().into_iter().zip(weights) {
            if w == 0.0 {
                continue;
            }
            let di = dist(x, &y);
            if di <= 1e-15 * scale {
                eta += w;
                continue;
            }
            let inv = w / di;
            den += inv;
            num.iter_mut().zip(x).for_each(|(a, b)| *a += inv * b);
        }
        if den == 0.0 {
            // Every weighted point sits on the iterate: it is the median.
            converged = true;
            break;
        }
        // T̃ = num/den; R = num − den·y.
        let r = num
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - den * b).powi(2))
            .sum::<f64>()
            .sqrt();
        if eta > 0.0 && r <= eta {
            converged = true;
            break;
        }
        let beta = if eta > 0.0 { eta / r } else { 0.0 };
        for ((nx, a), b) in next.iter_mut().zip(&num).zip(&y) {
            *nx = (1.0 - beta) * (a / den) + beta * b;
        }
        let step = next
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        std::mem::swap(&mut y, &mut next);
        if step <= tol * scale {
            converged = true;
            break;
        }
    }
    let objective = objective(&y);
    GeometricMedian {
        point: y,
        objective,
        iterations,
        converged,
    }
}

/// Krum scores: for each row, the sum of squared distances to its `n − f − 2` nearest other
/// rows (at least 1). Memory is O(n); time O(n²·d).
pub fn krum_scores(points: ArrayView2<'_, f64>, f: usize) -> Vec<f64> {
    let n = points.nrows();
    let k = n.saturating_sub(f + 2).max(1).min(n.saturating_sub(1));
    let mut buf = Vec::with_capacity(n);
    (0..n)
        .map(|i| {
            buf.clear();
            let xi = points.row(i);
            for j in (0..n).filter(|&j| j != i) {
                let xj = points.row(j);
                buf.push(
                    xi.iter()
                        .zip(xj)
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f64>(),
                );
            }
            if k == 0 || buf.is_empty() {
                return 0.0;
            }
            if k < buf.len() {
                buf.select_nth_unstable_by(k - 1, f64::total_cmp);
            }
            numeric::sum(buf[..k].iter().copied())
        })
        .collect()
}

/// The indices of the `m` rows with the lowest Krum scores, best first (ties: lower index
/// first). `m = 1` is Krum.
pub fn multi_krum(points: ArrayView2<'_, f64>, f: usize, m: usize) -> Vec<usize> {
    let scores = krum_scores(points, f);
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    order.truncate(m.max(1));
    order
}

/// Outlier scores `d_i / median_j(d_j)`, with `d_i` the distance of row `i` from `center`.
/// A typical row scores about 1. When more than half the rows sit on the centre
/// (median distance 0), rows on it score 0 and every other row scores +∞.
pub fn outlier_scores(points: ArrayView2<'_, f64>, center: &[f64]) -> Vec<f64> {
    let d: Vec<f64> = points.rows().into_iter().map(|x| dist(x, center)).collect();
    let s = numeric::median(&d);
    d.iter()
        .map(|&di| {
            if s > 0.0 {
                di / s
            } else if di == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        })
        .collect()
}

/// Exponential down-weighting `w_i ← w_i·exp(−λ·outlierScore_i)`, renormalised, then the
/// weighted mean. The centre is the weighted geometric median. Returns the aggregate and the
/// final weights (summing to 1).
pub fn outlier_downweight(
    points: ArrayView2<'_, f64>,
    weights: &[f64],
    lambda: f64,
) -> (Vec<f64>, Vec<f64>) {
    let center = geometric_median(points, weights, 1e-10, 1000).point;
    let scores = outlier_scores(points, &center);
    let mut w: Vec<f64> = weights
        .iter()
        .zip(&scores)
        .map(|(w, s)| {
            if *s == 0.0 {
                *w
            } else {
                w * (-lambda * s).exp()
            }
        })
        .collect();
    if super::weights::normalize(&mut w).is_err() {
        // Every ballot decayed to nothing: the centre itself is the answer.
        return (center, weights.to_vec());
    }
    let d = points.ncols();
    let mut v = vec![0.0; d];
    for (x, &wi) in points.rows().into_iter().zip(&w) {
        v.iter_mut().zip(x).for_each(|(a, b)| *a += wi * b);
    }
    (v, w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    #[test]
    fn geometric_median_of_a_square_is_its_centre() {
        let p = array![[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]];
        let gm = geometric_median(p.view(), &[0.25; 4], 1e-12, 1000);
        assert!(gm.converged);
        assert!((gm.point[0] - 1.0).abs() < 1e-9 && (gm.point[1] - 1.0).abs() < 1e-9);
    }

    #[test]
    fn geometric_median_on_a_data_point() {
        // The median is the heavy point itself: the zero-distance case must not blow up.
        let p = array![[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]];
        let w = [0.6, 0.1, 0.1, 0.1, 0.1];
        let gm = geometric_median(p.view(), &w, 1e-12, 1000);
        assert!(gm.converged);
        assert!(gm.point.iter().all(|x| x.abs() < 1e-9), "{:?}", gm.point);
        // Two identical points and one far away.
        let p = array![[1.0, 1.0], [1.0, 1.0], [50.0, -3.0]];
        let gm = geometric_median(p.view(), &[1.0 / 3.0; 3], 1e-12, 1000);
        assert!((gm.point[0] - 1.0).abs() < 1e-9 && (gm.point[1] - 1.0).abs() < 1e-9);
        assert!(gm.point.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn financenet_malicious_outlier_is_isolated() {
        // Digest A.3 / G.1 claim 7: three honest agents in [−0.2, 0.4], one at +0.95.
        let p = Array2::from_shape_vec((4, 1), vec![-0.2, 0.1, 0.4, 0.95]).unwrap();
        let gm = geometric_median(p.view(), &[0.25; 4], 1e-10, 1000);
        assert!((-0.2..=0.4).contains(&gm.point[0]), "{:?}", gm.point);
        let (v, w) = outlier_downweight(p.view(), &[0.25; 4], 2.0);
        assert!(w[3] < w[1] && w[3] < w[2], "{w:?}");
        assert!(v[0] < 0.95 / 4.0 + 0.075, "{v:?}");
    }

    #[test]
    fn krum_prefers_the_cluster() {
        let p = array![[0.0], [0.1], [-0.1], [0.05], [100.0]];
        let chosen = multi_krum(p.view(), 1, 1);
        assert_ne!(chosen[0], 4);
        let all = multi_krum(p.view(), 1, 4);
        assert!(!all.contains(&4));
    }
}
