//! Reliability without ground truth: Dawid–Skene, one-coin Dawid–Skene and majority vote
//! over `task,worker,label` annotations.
//!
//! The EM follows Dawid & Skene (1979) as crowd-kit implements it, so results can be checked
//! against it: start from majority-vote label probabilities, alternate the M-step (priors
//! and per-worker confusion matrices) and the E-step (label posteriors), and stop when the
//! evidence lower bound per annotation improves by less than `tol`.
//!
//! ```
//! use conclave::trust::estimate::{Annotations, Method, estimate};
//! let csv = "task,worker,label\nt1,a,x\nt1,b,x\nt1,c,y\nt2,a,y\nt2,b,y\nt2,c,y\n";
//! let data = Annotations::from_csv(csv.as_bytes())?;
//! let est = estimate(&data, Method::DawidSkene);
//! assert_eq!(est.label("t1"), Some("x"));
//! # Ok::<(), conclave::trust::estimate::EstimateError>(())
//! ```

use std::collections::HashMap;

use serde::Serialize;

/// Default iteration cap of [`estimate`].
pub const DEFAULT_MAX_ITER: usize = 1000;
/// Default tolerance of [`estimate`] on the per-annotation evidence lower bound.
pub const DEFAULT_TOL: f64 = 1e-9;

/// Probabilities are clipped at this floor before logarithms, as crowd-kit does.
const EPS: f64 = 1e-10;

/// Which estimator to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Method {
    /// Full confusion matrix per worker.
    DawidSkene,
    /// One skill per worker: right with probability `s`, otherwise uniformly wrong.
    OneCoin,
    /// Majority vote; a worker's skill is its agreement with the majority.
    Majority,
}

impl Method {
    /// Parses `dawid-skene`, `one-coin` or `majority`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "dawid-skene" => Some(Self::DawidSkene),
            "one-coin" => Some(Self::OneCoin),
            "majority" => Some(Self::Majority),
            _ => None,
        }
    }
}

/// Why annotations could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EstimateError {
    /// The header lacks a required column.
    #[error("CSV header lacks column \"{missing}\" (found: {found}); expected task,worker,label")]
    MissingColumn {
        /// The missing column.
        missing: &'static str,
        /// The columns present.
        found: String,
    },
    /// A row could not be read.
    #[error("CSV line {line}: {message}")]
    Row {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// No annotations at all.
    #[error("no annotations: the CSV has a header but no rows")]
    Empty,
}

/// Annotations indexed for the estimators: tasks and workers in order of first appearance,
/// labels sorted (ties between labels go to the one that sorts first).
#[derive(Debug, Clone, Default)]
pub struct Annotations {
    tasks: Vec<String>,
    workers: Vec<String>,
    labels: Vec<String>,
    /// `(task, worker, label)` indices.
    rows: Vec<[u32; 3]>,
    /// `rows[task_ends[t-1]..task_ends[t]]` are task `t`'s annotations.
    task_ends: Vec<usize>,
}

impl Annotations {
    /// Builds the index from `(task, worker, label)` triples.
    pub fn from_triples<I, S>(triples: I) -> Self
    where
        I: IntoIterator<Item = (S, S, S)>,
        S: AsRef<str>,
    {
        let mut task_ix: HashMap<String, usize> = HashMap::new();
        let mut worker_ix: HashMap<String, usize> = HashMap::new();
        let mut label_names: Vec<String> = Vec::new();
        let mut label_ix: HashMap<String, usize> = HashMap::new();
        let mut a = Self::default();
        let mut raw_rows = Vec::new();
        for (t, w, l) in triples {
            let t = intern(&mut task_ix, &mut a.tasks, t.as_ref());
            let w = intern(&mut worker_ix, &mut a.workers, w.as_ref());
            let l = intern(&mut label_ix, &mut label_names, l.as_ref());
            raw_rows.push((t, w, l));
        }
        // Relabel so that label indices follow sorted label names.
        let mut order: Vec<usize> = (0..label_names.len()).collect();
        order.sort_by(|&x, &y| label_names[x].cmp(&label_names[y]));
        let mut rank = vec![0; order.len()];
        for (r, &i) in order.iter().enumerate() {
            rank[i] = r;
        }
        a.labels = order.iter().map(|&i| label_names[i].clone()).collect();
        // Indices fit in u32: each is below the number of distinct names, and more than
        // 4 billion annotations would not fit in memory as strings in the first place.
        a.rows = raw_rows
            .into_iter()
            .map(|(t, w, l)| [t as u32, w as u32, rank[l] as u32])
            .collect();
        // Group annotations by task (stable), so the EM can sum each task's evidence in one
        // place. Order within a task is kept; no estimate depends on it beyond rounding.
        a.rows.sort_by_key(|r| r[0]);
        a.task_ends = Vec::with_capacity(a.tasks.len());
        for (i, r) in a.rows.iter().enumerate() {
            if i + 1 == a.rows.len() || a.rows[i + 1][0] != r[0] {
                a.task_ends.push(i + 1);
            }
        }
        a
    }

    /// Reads CSV with a header naming `task`, `worker` and `label` (in any order; other
    /// columns are ignored). Feature `csv`.
    ///
    /// # Errors
    /// A missing column, an unreadable or short row, an empty field, or no rows.
    #[cfg(feature = "csv")]
    pub fn from_csv<R: std::io::Read>(reader: R) -> Result<Self, EstimateError> {
        let mut rdr = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(reader);
        let headers = rdr.headers().map_err(|e| row_error(&e, 1))?.clone();
        let col = |name: &'static str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| EstimateError::MissingColumn {
                    missing: name,
                    found: headers.iter().collect::<Vec<_>>().join(", "),
                })
        };
        let (ti, wi, li) = (col("task")?, col("worker")?, col("label")?);
        let mut triples = Vec::new();
        for rec in rdr.records() {
            let rec = rec.map_err(|e| row_error(&e, 0))?;
            let line = rec.position().map_or(0, csv::Position::line);
            let field = |i: usize, name: &str| -> Result<String, EstimateError> {
                match rec.get(i) {
                    Some(v) if !v.is_empty() => Ok(v.to_owned()),
                    _ => Err(EstimateError::Row {
                        line,
                        message: format!("empty {name}"),
                    }),
                }
            };
            triples.push((
                field(ti, "task")?,
                field(wi, "worker")?,
                field(li, "label")?,
            ));
        }
        if triples.is_empty() {
            return Err(EstimateError::Empty);
        }
        Ok(Self::from_triples(triples))
    }

    /// Each task's annotations as `(worker, label)` indices, tasks in index order.
    fn by_task(&self) -> impl Iterator<Item = &[[u32; 3]]> + '_ {
        let mut start = 0;
        self.task_ends.iter().map(move |&end| {
            let group = &self.rows[start..end];
            start = end;
            group
        })
    }

    /// The annotations as `(task, worker, label)` indices.
    fn triples(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        self.rows
            .iter()
            .map(|&[t, w, l]| (t as usize, w as usize, l as usize))
    }

    /// How many annotations each worker gave, workers in order of first appearance.
    pub fn worker_counts(&self) -> Vec<(&str, u64)> {
        let mut counts = vec![0u64; self.workers.len()];
        for r in &self.rows {
            counts[r[1] as usize] += 1;
        }
        self.workers
            .iter()
            .map(String::as_str)
            .zip(counts)
            .collect()
    }

    /// Number of annotations.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no annotations.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

#[cfg(feature = "csv")]
fn row_error(e: &csv::Error, fallback_line: u64) -> EstimateError {
    let line = e.position().map_or(fallback_line, csv::Position::line);
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("{len} fields where the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_owned(),
        _ => e.to_string(),
    };
    EstimateError::Row { line, message }
}

fn intern(ix: &mut HashMap<String, usize>, names: &mut Vec<String>, s: &str) -> usize {
    if let Some(&i) = ix.get(s) {
        return i;
    }
    names.push(s.to_owned());
    ix.insert(s.to_owned(), names.len() - 1);
    names.len() - 1
}

/// What an estimator concluded, borrowing the names from the [`Annotations`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate<'a> {
    /// The most probable label per task, tasks in order of first appearance.
    #[serde(serialize_with = "pairs")]
    pub labels: Vec<(&'a str, &'a str)>,
    /// Each worker's probability of being right: `Σ_k prior_k · confusion_kk`.
    #[serde(serialize_with = "pairs")]
    pub skills: Vec<(&'a str, f64)>,
    /// EM iterations run (0 for majority vote).
    pub iterations: usize,
    /// Whether EM stopped on the tolerance rather than the iteration cap.
    pub converged: bool,
    /// Estimated prior of each label.
    #[serde(serialize_with = "pairs")]
    pub priors: Vec<(&'a str, f64)>,
}

impl Estimate<'_> {
    /// The estimated label of `task`.
    pub fn label(&self, task: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(t, _)| *t == task)
            .map(|(_, l)| *l)
    }

    /// The estimated skill of `worker`.
    pub fn skill(&self, worker: &str) -> Option<f64> {
        self.skills
            .iter()
            .find(|(w, _)| *w == worker)
            .map(|(_, s)| *s)
    }
}

fn pairs<S, K, V>(p: &[(K, V)], s: S) -> Result<S::Ok, S::Error>
where
    S: serde::Serializer,
    K: Serialize,
    V: Serialize,
{
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(p.len()))?;
    for (k, v) in p {
        m.serialize_entry(k, v)?;
    }
    m.end()
}

/// Runs `method` to convergence: at most [`DEFAULT_MAX_ITER`] iterations, stopping when the
/// evidence lower bound per annotation improves by less than [`DEFAULT_TOL`]. (crowd-kit's
/// default tolerance, 1e-5, stops early on slowly converging data.)
pub fn estimate(data: &Annotations, method: Method) -> Estimate<'_> {
    estimate_with(data, method, DEFAULT_MAX_ITER, DEFAULT_TOL)
}

/// Runs `method` with an iteration cap and a tolerance on the per-annotation evidence
/// lower bound.
pub fn estimate_with(
    data: &Annotations,
    method: Method,
    max_iter: usize,
    tol: f64,
) -> Estimate<'_> {
    let em = Em::new(data);
    let mut probas = em.majority_probas();
    let (iterations, converged, errors, priors) = match method {
        Method::Majority => {
            let priors = em.priors(&probas);
            (0, true, None, priors)
        }
        Method::DawidSkene | Method::OneCoin => {
            let one_coin = method == Method::OneCoin;
            let mut priors = em.priors(&probas);
            let mut errors = em.m_step(&probas, one_coin);
            let mut loss = f64::NEG_INFINITY;
            let mut iterations = 0;
            let mut converged = false;
            while iterations < max_iter {
                iterations += 1;
                probas = em.e_step(&priors, &errors);
                priors = em.priors(&probas);
                errors = em.m_step(&probas, one_coin);
                let new_loss = em.elbo(&probas, &priors, &errors) / data.len() as f64;
                if new_loss - loss < tol {
                    converged = true;
                    break;
                }
                loss = new_loss;
            }
            (iterations, converged, Some(errors), priors)
        }
    };
    let k = em.k;
    let label_of: Vec<usize> = (0..em.t)
        .map(|t| {
            let row = &probas[t * k..(t + 1) * k];
            let mut best = 0;
            for (i, &p) in row.iter().enumerate() {
                if p > row[best] {
                    best = i;
                }
            }
            best
        })
        .collect();
    let skills: Vec<f64> = match &errors {
        Some(err) => (0..em.w)
            .map(|w| (0..k).map(|c| priors[c] * err.get(w, c, c)).sum())
            .collect(),
        None => {
            let mut agree = vec![0u64; em.w];
            let mut count = vec![0u64; em.w];
            for (t, w, l) in data.triples() {
                count[w] += 1;
                agree[w] += u64::from(label_of[t] == l);
            }
            agree
                .iter()
                .zip(&count)
                .map(|(&a, &c)| a as f64 / c as f64)
                .collect()
        }
    };
    Estimate {
        labels: data
            .tasks
            .iter()
            .zip(&label_of)
            .map(|(t, &l)| (t.as_str(), data.labels[l].as_str()))
            .collect(),
        skills: data
            .workers
            .iter()
            .map(String::as_str)
            .zip(skills)
            .collect(),
        iterations,
        converged,
        priors: data.labels.iter().map(String::as_str).zip(priors).collect(),
    }
}

/// Adds to `acc` (of length k) the k-wide row `table[(w·k + l)·k..]` of each annotation in
/// `group`. The sum stays in registers for the usual small label counts; a plain loop would
/// store and reload `acc` on every annotation.
fn sum_rows(acc: &mut [f64], group: &[[u32; 3]], table: &[f64]) {
    fn fixed<const K: usize>(acc: &mut [f64], group: &[[u32; 3]], table: &[f64]) {
        let mut sum = [0.0; K];
        sum.copy_from_slice(acc);
        for &[_, w, l] in group {
            let at = (w as usize * K + l as usize) * K;
            if let Some(row) = table.get(at..at + K) {
                for c in 0..K {
                    sum[c] += row[c];
                }
            }
        }
        acc.copy_from_slice(&sum);
    }
    let k = acc.len();
    match k {
        2 => fixed::<2>(acc, group, table),
        3 => fixed::<3>(acc, group, table),
        4 => fixed::<4>(acc, group, table),
        5 => fixed::<5>(acc, group, table),
        6 => fixed::<6>(acc, group, table),
        8 => fixed::<8>(acc, group, table),
        _ => {
            for &[_, w, l] in group {
                let at = (w as usize * k + l as usize) * k;
                acc.iter_mut()
                    .zip(&table[at..at + k])
                    .for_each(|(a, e)| *a += e);
            }
        }
    }
}

/// Confusion matrices: `get(w, obs, true)` is the probability that worker `w` says `obs`
/// when the truth is `true`. Rows for labels a worker never gave are absent (as in
/// crowd-kit) and read as 0.
struct Errors {
    k: usize,
    values: Vec<f64>,
    present: Vec<bool>,
}

impl Errors {
    fn get(&self, w: usize, obs: usize, truth: usize) -> f64 {
        if self.present[w * self.k + obs] {
            self.values[(w * self.k + obs) * self.k + truth]
        } else {
            0.0
        }
    }
}

struct Em<'a> {
    data: &'a Annotations,
    t: usize,
    w: usize,
    k: usize,
    present: Vec<bool>,
}

impl<'a> Em<'a> {
    fn new(data: &'a Annotations) -> Self {
        let (t, w, k) = (data.tasks.len(), data.workers.len(), data.labels.len());
        let mut present = vec![false; w * k];
        for (_, wi, l) in data.triples() {
            present[wi * k + l] = true;
        }
        Self {
            data,
            t,
            w,
            k,
            present,
        }
    }

    /// Share of each task's votes per label.
    fn majority_probas(&self) -> Vec<f64> {
        let k = self.k;
        let mut p = vec![0.0; self.t * k];
        for (row, group) in p.chunks_exact_mut(k).zip(self.data.by_task()) {
            let share = 1.0 / group.len() as f64;
            for &[_, _, l] in group {
                row[l as usize] += share;
            }
        }
        p
    }

    fn priors(&self, probas: &[f64]) -> Vec<f64> {
        let k = self.k;
        let mut pr = vec![0.0; k];
        for row in probas.chunks_exact(k) {
            pr.iter_mut().zip(row).for_each(|(a, b)| *a += b);
        }
        pr.iter_mut().for_each(|a| *a /= self.t as f64);
        pr
    }

    fn m_step(&self, probas: &[f64], one_coin: bool) -> Errors {
        let k = self.k;
        let mut values = vec![0.0; self.w * k * k];
        if one_coin {
            let mut skill = vec![0.0; self.w];
            let mut count = vec![0.0; self.w];
            for (t, w, l) in self.data.triples() {
                skill[w] += probas[t * k + l];
                count[w] += 1.0;
            }
            let off = |s: f64| {
                if k > 1 {
                    (1.0 - s) / (k - 1) as f64
                } else {
                    0.0
                }
            };
            for w in 0..self.w {
                let s = skill[w] / count[w];
                for obs in 0..k {
                    for truth in 0..k {
                        let v = if obs == truth { s } else { off(s) };
                        values[(w * k + obs) * k + truth] = v.clamp(EPS, 1.0 - EPS);
                    }
                }
            }
        } else {
            for (t, w, l) in self.data.triples() {
                let row = &mut values[(w * k + l) * k..(w * k + l + 1) * k];
                row.iter_mut()
                    .zip(&probas[t * k..(t + 1) * k])
                    .for_each(|(a, b)| *a += b);
            }
            for w in 0..self.w {
                let mut col_sum = vec![0.0; k];
                for obs in (0..k).filter(|&o| self.present[w * k + o]) {
                    let row = &mut values[(w * k + obs) * k..(w * k + obs + 1) * k];
                    row.iter_mut().for_each(|x| *x = x.max(EPS));
                    col_sum
                        .iter_mut()
                        .zip(row.iter())
                        .for_each(|(a, b)| *a += b);
                }
                for obs in (0..k).filter(|&o| self.present[w * k + o]) {
                    let row = &mut values[(w * k + obs) * k..(w * k + obs + 1) * k];
                    row.iter_mut().zip(&col_sum).for_each(|(x, s)| *x /= s);
                }
            }
        }
        Errors {
            k,
            values,
            present: self.present.clone(),
        }
    }

    fn e_step(&self, priors: &[f64], errors: &Errors) -> Vec<f64> {
        let k = self.k;
        let log_prior: Vec<f64> = priors.iter().map(|p| p.max(EPS).log2()).collect();
        // One logarithm per confusion entry, not one per annotation.
        let log_err: Vec<f64> = errors.values.iter().map(|p| p.log2()).collect();
        let mut probas = vec![0.0; self.t * k];
        for (row, group) in probas.chunks_exact_mut(k).zip(self.data.by_task()) {
            row.copy_from_slice(&log_prior);
            sum_rows(row, group, &log_err);
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            row.iter_mut().for_each(|x| *x = (*x - max).exp2());
            let s: f64 = row.iter().sum();
            row.iter_mut().for_each(|x| *x /= s);
        }
        probas
    }

    fn elbo(&self, probas: &[f64], priors: &[f64], errors: &Errors) -> f64 {
        let k = self.k;
        let log_prior: Vec<f64> = priors.iter().map(|p| p.max(EPS).ln()).collect();
        // ln(error) + ln(prior) per confusion entry, computed once.
        let log_term: Vec<f64> = errors
            .values
            .chunks_exact(k)
            .flat_map(|row| row.iter().zip(&log_prior).map(|(e, lp)| e.ln() + lp))
            .collect();
        let mut evidence = vec![0.0; k];
        let mut joint = 0.0;
        for (row, group) in probas.chunks_exact(k).zip(self.data.by_task()) {
            evidence.iter_mut().for_each(|x| *x = 0.0);
            sum_rows(&mut evidence, group, &log_term);
            joint += row.iter().zip(&evidence).map(|(p, e)| p * e).sum::<f64>();
        }
        let entropy: f64 = probas
            .iter()
            .map(|&p| {
                let p = p.max(EPS);
                -p * p.ln()
            })
            .sum();
        joint + entropy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_and_ties() {
        let data = Annotations::from_triples([
            ("t1", "a", "y"),
            ("t1", "b", "x"),
            ("t2", "a", "x"),
            ("t2", "b", "x"),
        ]);
        let est = estimate(&data, Method::Majority);
        // Tie on t1 goes to the label that sorts first.
        assert_eq!(est.label("t1"), Some("x"));
        assert_eq!(est.skill("b"), Some(1.0));
        assert_eq!(est.skill("a"), Some(0.5));
    }

    #[test]
    fn dawid_skene_finds_the_reliable_workers() {
        // Three good workers and one who always says the opposite.
        let mut rows = Vec::new();
        for t in 0..40 {
            let truth = if t % 3 == 0 { "pos" } else { "neg" };
            let wrong = if truth == "pos" { "neg" } else { "pos" };
            let task = format!("t{t}");
            for w in ["a", "b", "c"] {
                let noisy = (t + w.len() * 7) % 10 == 0;
                rows.push((
                    task.clone(),
                    w.to_owned(),
                    if noisy { wrong } else { truth }.to_owned(),
                ));
            }
            rows.push((task, "liar".to_owned(), wrong.to_owned()));
        }
        let data = Annotations::from_triples(rows);
        for m in [Method::DawidSkene, Method::OneCoin] {
            let est = estimate(&data, m);
            assert!(est.skill("liar").unwrap() < 0.2, "{m:?} {:?}", est.skills);
            assert!(est.skill("a").unwrap() > 0.8, "{m:?} {:?}", est.skills);
            assert!(est.iterations >= 1);
        }
    }

    #[test]
    fn csv_errors_are_named() {
        let e = Annotations::from_csv("task,worker\nt,w\n".as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("lacks column \"label\""), "{e}");
        let e = Annotations::from_csv("task,worker,label\nt,w\n".as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = Annotations::from_csv("task,worker,label\n".as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no annotations"), "{e}");
        let e = Annotations::from_csv("task,worker,label\nt,,x\n".as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty worker"), "{e}");
    }
}
