//! Numeric aggregation of scores: means, medians, trimmed and winsorized means.
//!
//! Every function takes a non-empty slice of finite values (the tally checks this) and
//! returns `NaN` for an empty one rather than panicking.

/// Compensated (Neumaier) sum: accurate even when large terms cancel.
pub fn sum(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut s = 0.0f64;
    let mut c = 0.0f64;
    for x in values {
        let t = s + x;
        if s.abs() >= x.abs() {
            c += (s - t) + x;
        } else {
            c += (x - t) + s;
        }
        s = t;
    }
    s + c
}

/// Arithmetic mean.
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    sum(values.iter().copied()) / values.len() as f64
}

/// Weighted mean `Σ w_i x_i / Σ w_i`.
pub fn weighted_mean(values: &[f64], weights: &[f64]) -> f64 {
    let total = sum(weights.iter().copied());
    if values.is_empty() || total <= 0.0 {
        return f64::NAN;
    }
    sum(values.iter().zip(weights).map(|(x, w)| x * w)) / total
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_unstable_by(f64::total_cmp);
    v
}

/// Median; for an even count, the mean of the two middle values.
pub fn median(values: &[f64]) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    let (_, &mut upper, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        return upper;
    }
    // The lower middle is the largest value below position n/2.
    let lower = v[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lower + upper) / 2.0
}

/// Weighted median: sort the values, walk the cumulative weight, and return the first value
/// at which it reaches half the total. When a prefix holds exactly half the weight (within
/// 1e-12 relative), the result is the mean of that value and the next one, so equal weights
/// give the ordinary median.
pub fn weighted_median(values: &[f64], weights: &[f64]) -> f64 {
    let total = sum(weights.iter().copied());
    if values.is_empty() || total <= 0.0 {
        return f64::NAN;
    }
    let mut order: Vec<usize> = (0..values.len()).filter(|&i| weights[i] > 0.0).collect();
    order.sort_unstable_by(|&a, &b| values[a].total_cmp(&values[b]));
    let half = total / 2.0;
    let tol = 1e-12 * total;
    let mut cum = 0.0;
    for (k, &i) in order.iter().enumerate() {
        cum += weights[i];
        if (cum - half).abs() <= tol {
            return match order.get(k + 1) {
                Some(&j) => (values[i] + values[j]) / 2.0,
                None => values[i],
            };
        }
        if cum > half {
            return values[i];
        }
    }
    order.last().map_or(f64::NAN, |&i| values[i])
}

/// How many values a trim fraction cuts from each end: `⌊trim·n⌋`, computed as
/// `scipy.stats.trim_mean` does.
pub fn trim_count(trim: f64, n: usize) -> usize {
    // Truncation toward zero of a non-negative product is the floor.
    (trim * n as f64) as usize
}

/// Trimmed mean: drops `⌊trim·n⌋` values from each end and averages the rest.
pub fn trimmed_mean(values: &[f64], trim: f64) -> f64 {
    let n = values.len();
    let k = trim_count(trim, n);
    if n == 0 || 2 * k >= n {
        return median(values);
    }
    mean(&sorted(values)[k..n - k])
}

/// Winsorized mean: the `⌊trim·n⌋` lowest values are replaced by the next one up, the
/// `⌊trim·n⌋` highest by the next one down, then the mean is taken.
pub fn winsorized_mean(values: &[f64], trim: f64) -> f64 {
    let n = values.len();
    let k = trim_count(trim, n);
    if n == 0 || 2 * k >= n {
        return median(values);
    }
    let mut v = sorted(values);
    let (lo, hi) = (v[k], v[n - k - 1]);
    v[..k].iter_mut().for_each(|x| *x = lo);
    v[n - k..].iter_mut().for_each(|x| *x = hi);
    mean(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(weighted_median(&[4.0, 1.0, 3.0, 2.0], &[1.0; 4]), 2.5);
        assert_eq!(weighted_median(&[1.0, 2.0, 3.0], &[0.1, 0.1, 0.8]), 3.0);
        assert_eq!(weighted_median(&[1.0, 2.0, 3.0], &[0.5, 0.0, 0.5]), 2.0);
    }

    #[test]
    fn trimmed_and_winsorized() {
        let v = [1.0, 2.0, 3.0, 4.0, 100.0];
        assert_eq!(trim_count(0.2, 5), 1);
        assert_eq!(trimmed_mean(&v, 0.2), 3.0);
        assert_eq!(
            winsorized_mean(&v, 0.2),
            (2.0 + 2.0 + 3.0 + 4.0 + 4.0) / 5.0
        );
        assert_eq!(trimmed_mean(&v, 0.0), mean(&v));
    }

    #[test]
    fn compensated_sum_cancels_exactly() {
        assert_eq!(sum([1e16, 1.0, -1e16]), 1.0);
    }
}
