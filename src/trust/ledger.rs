//! The error-correlation ledger: which agents fail together.
//!
//! Byzantine guarantees assume independent errors; LLM agents trained on the same data fail
//! in unison, and a cluster failing together looks like consensus (digest A.3, A.13). The
//! ledger keeps, per domain, the recent graded items with which agents were wrong, and
//! derives the pairwise error correlation, the effective number of independent agents, and
//! clusters of agents whose errors coincide. A cluster's combined vote weight is capped at
//! its strongest member's (the trust of a cluster is the max of its members, not the sum):
//! the defence against Sybil clones and colluders.

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
}

impl Default for LedgerParams {
    fn default() -> Self {
        Self {
            capacity: 1000,
            cluster_threshold: 0.7,
            min_overlap: 10,
        }
    }
}

/// Recent graded items of one domain: for each item, which agents answered and whether each
/// was wrong.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorLedger {
    /// Agent ids, in order of first appearance.
    agents: Vec<String>,
    /// Per item: `(agent index, wrong)`.
    items: Vec<Vec<(usize, bool)>>,
}

/// Correlation-derived facts about a pool in one domain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Independence {
    /// The agents, in the order of the matrix.
    pub agents: Vec<String>,
    /// Pairwise error correlation (phi coefficient over items graded for both; 0 where a
    /// pair overlaps on fewer than `min_overlap` items or an agent's errors never vary).
    #[serde(serialize_with = "rows")]
    pub correlation: Array2<f64>,
    /// `n / (1 + (n−1)ρ̄)`.
    pub n_eff_mean: f64,
    /// Participation ratio `(Σλ)² / Σλ²` of the correlation matrix.
    pub n_eff_participation: f64,
    /// Groups of two or more agents whose errors coincide.
    pub clusters: Vec<Vec<String>>,
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
        for item in &self.items {
            dense.iter_mut().for_each(|d| *d = None);
            for &(a, wrong) in item {
                dense[a] = Some(f64::from(u8::from(wrong)));
            }
            for a in 0..n {
                let Some(xa) = dense[a] else { continue };
                for b in 0..n {
                    let Some(xb) = dense[b] else { continue };
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
