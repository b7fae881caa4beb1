//! The error-correlation ledger: which agents fail together.
//!
//! Byzantine guarantees assume independent errors; LLM agents trained on the same data fail
//! in unison, and a cluster failing together looks like consensus (digest A.3, A.13). The
//! ledger keeps, per domain, the recent graded items with which agents were wrong, and
//! derives the pairwise error correlation, the effective number of independent agents, and
//! clusters of agents whose errors coincide. A cluster's combined vote weight is capped at
//! its strongest member's (the trust of a cluster is the max of its members, not the sum):
//! the defence against Sybil clones and colluders.
//!
//! It also keeps what graded decisions say about the pool as a whole ([`PoolRecord`]):
//!
//! - **The verdict monitor.** Each graded decision's verdict (the tally's answer, graded
//!   whether it was decided or escalated) stated a confidence `c`, the probability that it
//!   is right. A one-sided CUSUM tests "verdicts are right with the probability they state"
//!   against "they are right no more often than a coin" (`right`: `ln(0.5/c)`, `wrong`:
//!   `ln(0.5/(1 − c))`, for `c` above ½; verdicts that stated less carry no evidence). One
//!   verdict stated at 0.99 and found wrong adds `ln 50 ≈ 3.9`; a right one at 0.95 takes
//!   `0.64` off. A high statistic says the pool's trust no longer describes it (a coalition
//!   that turned after earning trust, agents wrong together): individual quarantine needs a
//!   dozen graded answers per agent at its false-alarm rate, while one confidently wrong
//!   verdict is evidence against the whole pool at once. A policy that sets
//!   `escalation.verdict_alarm` escalates while the statistic is at or above it (until
//!   graded verdicts, decided or not, bring it back down).
//! - **The agreement chance of wrong numbers.** For numeric answers, how often two wrong
//!   answers to one item lie within the tolerance of each other (each graded item with two or
//!   more wrong answers gives its share of such pairs; a Beta(1, 1) prior, forgetting like
//!   trust). Wrong answers that scatter make agreement strong evidence; wrong answers that
//!   coincide (colluders, a shared misconception) make it weak. The verdict's confidence for
//!   numbers reads it (see the Governor's confidence model).
//! - **How far deliberation can be trusted to overturn the vote.** When deliberation rounds
//!   move the pool off the independent vote's answer, the independent ballots still gave the
//!   new answer odds `o = p_new / p_old` against their own. The move itself is evidence with
//!   a likelihood ratio `Λ` (how much likelier such a move is when the new answer is right):
//!   the new answer is the better bet when `Λ·o > 1`, and the acquiescence detector keeps the
//!   independent vote otherwise. `Λ` is learned from the pool's graded overturns as a
//!   one-parameter logistic regression, `P(right | o) = σ(ln Λ + ln o)`, fitted online (one
//!   Newton step per graded overturn, its information forgotten like trust, a normal prior
//!   on `ln Λ` with mean 0 and standard deviation 2, `ln Λ` kept within ±10). Deliberation
//!   moved by evidence earns a large `Λ` (its overturns are right even against long odds);
//!   a pool that cascades onto confident voices earns `Λ` below 1. Counting the share of
//!   overturns that were right would count the independent odds twice: overturns happen
//!   against the independent vote, so even a reliable pool's would look improbable.

use std::collections::BTreeMap;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::aggregate::consensus;

/// How clusters are found.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerParams {
    /// Items kept per domain (the oldest are dropped first).
    pub capacity: usize,
    /// Agents whose error correlation reaches this value are linked into one cluster.
    pub cluster_threshold: f64,
    /// A pair needs this many items graded for both before its correlation counts.
    pub min_overlap: usize,
    /// Forgetting of the agreement chance per graded item (as trust's).
    pub forgetting: f64,
}

impl Default for LedgerParams {
    fn default() -> Self {
        Self {
            capacity: 1000,
            cluster_threshold: 0.7,
            min_overlap: 10,
            forgetting: 0.98,
        }
    }
}

/// The information of the prior on `ln Λ` (a standard deviation of 2: before any
/// evidence, Λ between 1/50 and 50 is plausible).
const OVERTURN_PRIOR_INFO: f64 = 0.25;
/// `ln Λ` stays within ± this (a pool whose overturns were always right still cannot
/// overturn a vote that gave its answer no chance).
const OVERTURN_MAX_LOG_LR: f64 = 10.0;

/// Confidences are read inside this range (no verdict is certain).
const MAX_CONFIDENCE: f64 = 0.999;

/// What graded decisions say about a domain's pool as a whole (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolRecord {
    /// The verdict monitor's statistic (≥ 0).
    pub alarm: f64,
    /// Graded verdicts folded in.
    pub verdicts: u64,
    /// Agreement of wrong numeric answers: Beta pseudo-counts `[agreeing, not agreeing]`
    /// (the prior included).
    pub agreement: [f64; 2],
    /// Deliberation rounds that moved the pool away from the independent vote's answer:
    /// Beta pseudo-counts `[the new answer right, wrong]` (the prior included).
    pub overturns: [f64; 2],
    /// `ln Λ`: the log likelihood ratio of deliberation's overturns (see the module docs).
    pub overturn_log_lr: f64,
    /// The Fisher information behind `overturn_log_lr`, the prior's included.
    pub overturn_info: f64,
}

impl Default for PoolRecord {
    fn default() -> Self {
        Self {
            alarm: 0.0,
            verdicts: 0,
            agreement: [1.0, 1.0],
            overturns: [1.0, 1.0],
            overturn_log_lr: 0.0,
            overturn_info: OVERTURN_PRIOR_INFO,
        }
    }
}

impl PoolRecord {
    /// Folds in one graded verdict: whether the tally's answer was right, and the
    /// confidence it stated.
    pub fn record_verdict(&mut self, right: bool, confidence: f64) {
        let c = if confidence.is_finite() {
            confidence.clamp(0.5, MAX_CONFIDENCE)
        } else {
            0.5
        };
        let step = if right {
            (0.5 / c).ln()
        } else {
            (0.5 / (1.0 - c)).ln()
        };
        self.alarm = (self.alarm + step).max(0.0);
        self.verdicts += 1;
    }

    /// Folds in one graded numeric item: the share of its pairs of wrong answers that lie
    /// within the tolerance of each other.
    pub fn record_agreement(&mut self, share: f64, params: &LedgerParams) {
        let g = params.forgetting.clamp(0.0, 1.0);
        let share = share.clamp(0.0, 1.0);
        let [a, b] = self.agreement;
        self.agreement = [
            1.0 + g * (a - 1.0) + share,
            1.0 + g * (b - 1.0) + 1.0 - share,
        ];
    }

    /// Folds in one graded overturn: deliberation moved the pool away from the independent
    /// vote's answer, and the answer it moved to was `right` (or not); `odds` are the
    /// independent vote's odds of that answer against its own (records written before they
    /// were kept have none: they count only towards the share of right overturns).
    pub fn record_overturn(&mut self, right: bool, odds: Option<f64>, params: &LedgerParams) {
        let g = params.forgetting.clamp(0.0, 1.0);
        if let Some(o) = odds.filter(|o| o.is_finite() && *o > 0.0) {
            let x = (self.overturn_log_lr + o.ln()).clamp(-30.0, 30.0);
            let p = 1.0 / (1.0 + (-x).exp());
            self.overturn_info = (OVERTURN_PRIOR_INFO
                + g * (self.overturn_info - OVERTURN_PRIOR_INFO))
                + p * (1.0 - p);
            let y = f64::from(u8::from(right));
            self.overturn_log_lr = (self.overturn_log_lr + (y - p) / self.overturn_info)
                .clamp(-OVERTURN_MAX_LOG_LR, OVERTURN_MAX_LOG_LR);
        }
        let [a, b] = self.overturns;
        self.overturns = [
            1.0 + g * (a - 1.0) + f64::from(u8::from(right)),
            1.0 + g * (b - 1.0) + f64::from(u8::from(!right)),
        ];
    }

    /// How much likelier the pool's deliberation is to move off the independent vote's answer
    /// when the answer it moves to is right than when it is wrong: the likelihood ratio `Λ`
    /// its graded overturns have earned (1 before any evidence). The acquiescence detector
    /// lets an overturn stand when `Λ` times the independent vote's odds of the new answer
    /// exceeds 1.
    pub fn overturn_ratio(&self) -> f64 {
        if self.overturn_log_lr.is_finite() {
            self.overturn_log_lr
                .clamp(-OVERTURN_MAX_LOG_LR, OVERTURN_MAX_LOG_LR)
                .exp()
        } else {
            1.0
        }
    }

    /// How often the pool's deliberation, when it overturns the independent vote, moves to
    /// a right answer: the posterior mean (½ before any evidence).
    pub fn overturn_reliability(&self) -> f64 {
        let [a, b] = self.overturns;
        if a > 0.0 && b > 0.0 && (a + b).is_finite() {
            a / (a + b)
        } else {
            0.5
        }
    }

    /// The chance that a wrong numeric answer lies within the tolerance of a given wrong
    /// point: the posterior mean (½ before any evidence).
    pub fn agreement_chance(&self) -> f64 {
        let [a, b] = self.agreement;
        if a > 0.0 && b > 0.0 && (a + b).is_finite() {
            a / (a + b)
        } else {
            0.5
        }
    }
}

/// Among `answers` to one numeric item whose right value is `truth`, the share of pairs of
/// wrong answers that lie within `tolerance` of each other; `None` with fewer than two
/// wrong answers.
pub fn wrong_agreement(answers: &[f64], truth: f64, tolerance: f64) -> Option<f64> {
    let wrong: Vec<f64> = answers
        .iter()
        .copied()
        .filter(|v| v.is_finite() && (v - truth).abs() > tolerance)
        .collect();
    if wrong.len() < 2 {
        return None;
    }
    let (mut pairs, mut agree) = (0u64, 0u64);
    for (i, a) in wrong.iter().enumerate() {
        for b in &wrong[i + 1..] {
            pairs += 1;
            agree += u64::from((a - b).abs() <= tolerance);
        }
    }
    Some(agree as f64 / pairs as f64)
}

/// Recent graded items of one domain: for each item, which agents answered and whether each
/// was wrong; and what they say about the pool as a whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorLedger {
    /// Agent ids, in order of first appearance.
    agents: Vec<String>,
    /// Per item: `(agent index, wrong)`.
    items: Vec<Vec<(usize, bool)>>,
    /// The pool's record (absent in ledgers written before it was kept).
    #[serde(default)]
    pub pool: PoolRecord,
}

/// Correlation-derived facts about a pool in one domain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Independence {
    /// The agents, in the order of the matrix.
    pub agents: Vec<String>,
    /// Pairwise error correlation (phi coefficient over items graded for both; 0 where a
    /// pair overlaps on fewer than `min_overlap` items or an agent's errors never vary).
    /// Deliberately an `ndarray` matrix, the crate the project does its linear algebra in
    /// (the participation ratio is taken from its eigenvalues).
    #[serde(serialize_with = "rows")]
    pub correlation: Array2<f64>,
    /// `n / (1 + (n−1)ρ̄)`.
    pub n_eff_mean: f64,
    /// Participation ratio `(Σλ)² / Σλ²` of the correlation matrix.
    pub n_eff_participation: f64,
    /// Groups of two or more agents whose errors coincide.
    pub clusters: Vec<Vec<String>>,
    /// The pool's record.
    pub pool: PoolRecord,
}

impl ErrorLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one graded item: each agent that answered, and whether it was wrong. Keeps at
    /// most `capacity` items.
    pub fn record<'a, I>(&mut self, outcomes: I, capacity: usize)
    where
        I: IntoIterator<Item = (&'a str, bool)>,
    {
        let mut item = Vec::new();
        for (agent, wrong) in outcomes {
            let i = match self.agents.iter().position(|a| a == agent) {
                Some(i) => i,
                None => {
                    self.agents.push(agent.to_owned());
                    self.agents.len() - 1
                }
            };
            item.push((i, wrong));
        }
        self.items.push(item);
        if self.items.len() > capacity.max(1) {
            let excess = self.items.len() - capacity.max(1);
            self.items.drain(..excess);
        }
    }

    /// Number of items held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no item is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Pairwise error correlation, effective number of agents and clusters.
    pub fn independence(&self, params: &LedgerParams) -> Independence {
        let n = self.agents.len();
        // Per pair: co-graded count, and sums for the phi coefficient.
        let mut count = Array2::<f64>::zeros((n, n));
        let mut sx = Array2::<f64>::zeros((n, n));
        let mut sxy = Array2::<f64>::zeros((n, n));
        let mut dense = vec![None; n];
        let mut present = Vec::new();
        for item in &self.items {
            // The item's graded agents (the last grade of an agent counts), in agent order:
            // the work is the square of the agents graded on the item, not of the pool.
            for &(a, wrong) in item {
                if let Some(d) = dense.get_mut(a) {
                    *d = Some(f64::from(u8::from(wrong)));
                }
            }
            present.clear();
            present.extend(
                item.iter()
                    .filter_map(|&(a, _)| Some((a, dense.get_mut(a)?.take()?))),
            );
            present.sort_unstable_by_key(|&(a, _)| a);
            for &(a, xa) in &present {
                for &(b, xb) in &present {
                    count[[a, b]] += 1.0;
                    sx[[a, b]] += xa;
                    sxy[[a, b]] += xa * xb;
                }
            }
        }
        let mut corr = Array2::<f64>::eye(n);
        for a in 0..n {
            for b in (a + 1)..n {
                let c = count[[a, b]];
                if c < params.min_overlap as f64 || c < 2.0 {
                    continue;
                }
                let (ma, mb) = (sx[[a, b]] / c, sx[[b, a]] / c);
                let cov = sxy[[a, b]] / c - ma * mb;
                let var = (ma * (1.0 - ma)) * (mb * (1.0 - mb));
                if var <= 0.0 {
                    continue;
                }
                let r = (cov / var.sqrt()).clamp(-1.0, 1.0);
                corr[[a, b]] = r;
                corr[[b, a]] = r;
            }
        }
        let clusters = clusters(&corr, params.cluster_threshold)
            .into_iter()
            .map(|c| c.into_iter().map(|i| self.agents[i].clone()).collect())
            .collect();
        Independence {
            agents: self.agents.clone(),
            n_eff_mean: consensus::n_eff_mean_correlation(corr.view()),
            n_eff_participation: consensus::n_eff_participation_ratio(corr.view()),
            correlation: corr,
            clusters,
            pool: self.pool,
        }
    }
}

fn rows<S: serde::Serializer>(m: &Array2<f64>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(m.nrows()))?;
    for row in m.rows() {
        seq.serialize_element(&row.to_vec())?;
    }
    seq.end()
}

/// Connected groups (two or more members) of the graph linking pairs with correlation ≥
/// `threshold`, each sorted, in order of their first member.
fn clusters(corr: &Array2<f64>, threshold: f64) -> Vec<Vec<usize>> {
    let n = corr.nrows();
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for a in 0..n {
        for b in (a + 1)..n {
            if corr[[a, b]] >= threshold {
                let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
                if ra != rb {
                    parent[ra.max(rb)] = ra.min(rb);
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..n {
        let r = root(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    groups.into_values().filter(|g| g.len() > 1).collect()
}

/// Caps each cluster's combined weight at its largest member's weight, scaling the members
/// in proportion. Agents outside every cluster keep their weight.
///
/// ```
/// use conclave::trust::ledger::cap_clusters;
/// let mut w = vec![("a".to_owned(), 0.8), ("clone1".to_owned(), 0.6), ("clone2".to_owned(), 0.6)];
/// cap_clusters(&mut w, &[vec!["clone1".to_owned(), "clone2".to_owned()]]);
/// assert!((w[1].1 + w[2].1 - 0.6).abs() < 1e-12);
/// assert_eq!(w[0].1, 0.8);
/// ```
pub fn cap_clusters(weights: &mut [(String, f64)], clusters: &[Vec<String>]) {
    for cluster in clusters {
        let members: Vec<usize> = weights
            .iter()
            .enumerate()
            .filter(|(_, (a, _))| cluster.contains(a))
            .map(|(i, _)| i)
            .collect();
        let total: f64 = members.iter().map(|&i| weights[i].1).sum();
        let max = members.iter().map(|&i| weights[i].1).fold(0.0, f64::max);
        if total > 0.0 && total > max {
            let scale = max / total;
            for &i in &members {
                weights[i].1 *= scale;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_form_a_cluster_and_independent_agents_do_not() {
        let mut ledger = ErrorLedger::new();
        // a, b: clones (wrong together); c, d: independent of each other and of the clones.
        for i in 0..60u32 {
            let clone_wrong = i % 4 == 0;
            let c_wrong = i % 5 == 1;
            let d_wrong = i % 7 == 2;
            ledger.record(
                [
                    ("a", clone_wrong),
                    ("b", clone_wrong),
                    ("c", c_wrong),
                    ("d", d_wrong),
                ],
                1000,
            );
        }
        let ind = ledger.independence(&LedgerParams::default());
        assert_eq!(ind.clusters, vec![vec!["a".to_owned(), "b".to_owned()]]);
        assert!((ind.correlation[[0, 1]] - 1.0).abs() < 1e-12);
        assert!(ind.n_eff_participation < 4.0 && ind.n_eff_participation > 2.0);
    }

    #[test]
    fn the_agreement_of_wrong_numbers_is_measured() {
        // Truth 0.5, tolerance 0.1: three wrong answers, two of them together.
        let share = wrong_agreement(&[0.5, 0.55, -0.9, -0.85, 0.1], 0.5, 0.1);
        assert_eq!(share, Some(1.0 / 3.0));
        assert_eq!(wrong_agreement(&[0.5, -0.9], 0.5, 0.1), None);
        assert_eq!(wrong_agreement(&[f64::NAN, -0.9, 0.9], 0.5, 0.1), Some(0.0));
        let params = LedgerParams::default();
        let (mut scattered, mut together) = (PoolRecord::default(), PoolRecord::default());
        assert_eq!(scattered.agreement_chance(), 0.5);
        for _ in 0..100 {
            scattered.record_agreement(0.05, &params);
            together.record_agreement(0.95, &params);
        }
        assert!(scattered.agreement_chance() < 0.1, "{scattered:?}");
        assert!(together.agreement_chance() > 0.9, "{together:?}");
    }

    #[test]
    fn the_verdict_monitor_weighs_confident_mistakes() {
        let mut m = PoolRecord::default();
        // Verdicts that said little carry no evidence.
        m.record_verdict(false, 0.4);
        assert_eq!(m.alarm, 0.0);
        // A verdict stated at 0.99 and wrong: ln 50.
        m.record_verdict(false, 0.99);
        assert!((m.alarm - 50f64.ln()).abs() < 1e-12);
        // A second one close by passes ln 1000.
        m.record_verdict(true, 0.95);
        m.record_verdict(false, 0.99);
        assert!(m.alarm > 1000f64.ln(), "{m:?}");
        // Right verdicts bring it down to 0, never below.
        for _ in 0..30 {
            m.record_verdict(true, 0.95);
        }
        assert_eq!(m.alarm, 0.0);
        assert_eq!(m.verdicts, 34);
        // A calibrated pool rarely climbs: verdicts right with the probability they state.
        let mut calibrated = PoolRecord::default();
        let mut seed = 5u64;
        let mut peak: f64 = 0.0;
        let mut over = 0;
        for i in 0..20_000u32 {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let u = (seed >> 11) as f64 / (1u64 << 53) as f64;
            let c = [0.6, 0.8, 0.95, 0.99][(i % 4) as usize];
            calibrated.record_verdict(u < c, c);
            peak = peak.max(calibrated.alarm);
            over += u32::from(calibrated.alarm >= 1000f64.ln());
        }
        assert!(
            over < 20,
            "{over} of 20000 verdicts over ln 1000 (peak {peak})"
        );
    }

    #[test]
    fn overturns_earn_the_likelihood_ratio_their_outcomes_show() {
        let params = LedgerParams::default();
        // Simulated overturns against independent odds spread over 1:50 … 1:1.5, right with
        // probability σ(ln Λ + ln o) for a true Λ: the fitted ratio lands near it.
        for truth in [0.2f64, 1.0, 8.0, 40.0] {
            let mut pool = PoolRecord::default();
            let mut rng = crate::rng::Rng::new(&[b"overturns"]);
            for _ in 0..400 {
                let odds = (-(rng.unit() * (50f64.ln() - 1.5f64.ln()) + 1.5f64.ln())).exp();
                let p = truth * odds / (1.0 + truth * odds);
                pool.record_overturn(rng.unit() < p, Some(odds), &params);
            }
            let fitted = pool.overturn_ratio();
            assert!(
                (fitted.ln() - truth.ln()).abs() < 0.7,
                "true ratio {truth}, fitted {fitted}"
            );
        }
        // A store written before the ratio was kept reads as no evidence for it.
        let old: PoolRecord = serde_json::from_str(
            r#"{"alarm": 0.0, "verdicts": 3, "agreement": [1.0, 1.0], "overturns": [3.0, 1.0]}"#,
        )
        .expect("an older pool record");
        assert_eq!(
            (old.overturn_ratio(), old.overturn_reliability()),
            (1.0, 0.75)
        );
        // Before any evidence the ratio is 1; outcomes without odds (older records) count
        // towards the share of right overturns only.
        let mut pool = PoolRecord::default();
        assert_eq!(pool.overturn_ratio(), 1.0);
        pool.record_overturn(true, None, &params);
        assert_eq!(pool.overturn_ratio(), 1.0);
        assert!(pool.overturn_reliability() > 0.5);
        // Right overturns against long odds earn more than the share of right ones says:
        // after ten right overturns at 1:9, a move at 1:9 stands (the share, 11/12, times
        // the odds 1/9 would not).
        for _ in 0..10 {
            pool.record_overturn(true, Some(1.0 / 9.0), &params);
        }
        assert!(pool.overturn_ratio() / 9.0 > 1.0, "{pool:?}");
        let share = pool.overturn_reliability();
        assert!(share / (1.0 - share) / 9.0 < 1.5, "{pool:?}");
        // Wrong ones bring it down, below 1 once they outnumber the right ones.
        let earned = pool.overturn_ratio();
        for _ in 0..10 {
            pool.record_overturn(false, Some(0.5), &params);
        }
        assert!(pool.overturn_ratio() < earned / 5.0, "{pool:?}");
        for _ in 0..10 {
            pool.record_overturn(false, Some(0.5), &params);
        }
        assert!(pool.overturn_ratio() < 1.0, "{pool:?}");
    }

    #[test]
    fn capacity_drops_the_oldest_items() {
        let mut ledger = ErrorLedger::new();
        for i in 0..20 {
            ledger.record([("a", i % 2 == 0)], 5);
        }
        assert_eq!(ledger.len(), 5);
    }

    #[test]
    fn too_little_overlap_is_no_correlation() {
        let mut ledger = ErrorLedger::new();
        for i in 0..5 {
            ledger.record([("a", i % 2 == 0), ("b", i % 2 == 0)], 100);
        }
        let ind = ledger.independence(&LedgerParams::default());
        assert_eq!(ind.correlation[[0, 1]], 0.0);
        assert!(ind.clusters.is_empty());
    }
}
