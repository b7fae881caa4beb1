//! Ranked rules: Borda, the pairwise (Condorcet) methods Copeland, Schulze and minimax, and
//! instant runoff.
//!
//! A ranking is a slice of option indices, best first. Partial rankings are allowed: listed
//! options beat unlisted ones, and unlisted options are tied with each other. Every ballot
//! counts with its weight (1 for an unweighted profile).

use ndarray::Array2;

use super::categorical::{fixed, unfixed};

/// Borda scores: with `m` options, positions give `m−1, m−2, …` points; unlisted options 0.
pub fn borda<R: AsRef<[usize]>>(rankings: &[R], weights: &[f64], m: usize) -> Vec<f64> {
    // Exact (fixed-point) sums: the result does not depend on the ballots' order.
    let mut s = vec![0i128; m];
    for (r, &w) in rankings.iter().zip(weights) {
        let w = fixed(w);
        for (pos, &o) in r.as_ref().iter().enumerate() {
            if let Some(slot) = s.get_mut(o) {
                *slot += w * (m - 1 - pos.min(m - 1)) as i128;
            }
        }
    }
    s.into_iter().map(unfixed).collect()
}

/// The pairwise preference matrix: `P[[a, b]]` is the weight of the ballots that rank `a`
/// above `b`.
pub fn pairwise<R: AsRef<[usize]>>(rankings: &[R], weights: &[f64], m: usize) -> Array2<f64> {
    // Exact (fixed-point) sums: the result does not depend on the ballots' order.
    let mut p = Array2::<i128>::zeros((m, m));
    let mut listed = vec![false; m];
    for (r, &w) in rankings.iter().zip(weights) {
        let r = r.as_ref();
        let w = fixed(w);
        if w == 0 {
            continue;
        }
        for (i, &a) in r.iter().enumerate() {
            for &b in &r[i + 1..] {
                p[[a, b]] += w;
            }
        }
        if r.len() < m {
            listed.iter_mut().for_each(|x| *x = false);
            r.iter().for_each(|&o| listed[o] = true);
            for &a in r {
                for (b, _) in listed.iter().enumerate().filter(|(_, l)| !**l) {
                    p[[a, b]] += w;
                }
            }
        }
    }
    p.mapv(unfixed)
}

/// Copeland scores: 1 per pairwise win, 0.5 per pairwise tie.
pub fn copeland(p: &Array2<f64>) -> Vec<f64> {
    let m = p.nrows();
    (0..m)
        .map(|a| {
            (0..m)
                .filter(|&b| b != a)
                .map(|b| match p[[a, b]].total_cmp(&p[[b, a]]) {
                    std::cmp::Ordering::Greater => 1.0,
                    std::cmp::Ordering::Equal => 0.5,
                    std::cmp::Ordering::Less => 0.0,
                })
                .sum()
        })
        .collect()
}

/// Schulze (beat-path) over pairwise margins. Returns, per option, the number of options it
/// beats by strongest path, and the winners: options no other option beats.
pub fn schulze(p: &Array2<f64>) -> (Vec<f64>, Vec<usize>) {
    let m = p.nrows();
    let mut s = Array2::<f64>::zeros((m, m));
    for a in 0..m {
        for b in 0..m {
            let d = p[[a, b]] - p[[b, a]];
            if a != b && d > 0.0 {
                s[[a, b]] = d;
            }
        }
    }
    // Widest paths (Floyd–Warshall with min/max).
    for k in 0..m {
        for i in 0..m {
            if i == k || s[[i, k]] == 0.0 {
                continue;
            }
            for j in 0..m {
                if j == i || j == k {
                    continue;
                }
                let via = s[[i, k]].min(s[[k, j]]);
                if via > s[[i, j]] {
                    s[[i, j]] = via;
                }
            }
        }
    }
    let beats = |a: usize, b: usize| s[[a, b]] > s[[b, a]];
    let scores = (0..m)
        .map(|a| (0..m).filter(|&b| b != a && beats(a, b)).count() as f64)
        .collect();
    let winners = (0..m)
        .filter(|&a| (0..m).all(|b| b == a || !beats(b, a)))
        .collect();
    (scores, winners)
}

/// Minimax scores: minus each option's largest pairwise defeat margin
/// `max_b (P[b, a] − P[a, b])`, so that the highest score wins.
pub fn minimax(p: &Array2<f64>) -> Vec<f64> {
    let m = p.nrows();
    (0..m)
        .map(|a| {
            let worst = (0..m)
                .filter(|&b| b != a)
                .map(|b| p[[b, a]] - p[[a, b]])
                .fold(f64::NEG_INFINITY, f64::max);
            if worst == f64::NEG_INFINITY {
                0.0
            } else {
                -worst
            }
        })
        .collect()
}

/// The Condorcet winner (beats every other option pairwise), if there is one.
pub fn condorcet_winner(p: &Array2<f64>) -> Option<usize> {
    let m = p.nrows();
    (0..m).find(|&a| (0..m).all(|b| b == a || p[[a, b]] > p[[b, a]]))
}

/// A tie for elimination in instant runoff and how it was broken.
#[derive(Debug, Clone, PartialEq)]
pub struct RunoffTie {
    /// The round (1-based).
    pub round: usize,
    /// The options tied for fewest first preferences.
    pub tied: Vec<usize>,
    /// The option eliminated.
    pub eliminated: usize,
    /// How the tie was broken, in words.
    pub reason: &'static str,
}

/// The outcome of instant runoff.
#[derive(Debug, Clone, PartialEq)]
pub struct Runoff {
    /// The winners: the option with a majority, or every option still standing when they are
    /// exactly tied.
    pub winners: Vec<usize>,
    /// Each option's first-preference weight in the last round it took part in.
    pub scores: Vec<f64>,
    /// Options in elimination order.
    pub eliminated: Vec<usize>,
    /// Ties for elimination and how each was broken.
    pub tie_breaks: Vec<RunoffTie>,
    /// Weight of the non-exhausted ballots in the final round.
    pub final_total: f64,
}

/// Instant runoff; see [`crate::aggregate::Rule::InstantRunoff`] for the tie-break.
pub fn instant_runoff<R: AsRef<[usize]>>(rankings: &[R], weights: &[f64], m: usize) -> Runoff {
    let borda_scores = borda(rankings, weights, m);
    let mut standing = vec![true; m];
    let mut scores = vec![0.0; m];
    let mut eliminated = Vec::new();
    let mut tie_breaks = Vec::new();
    let mut round = 0;
    loop {
        round += 1;
        let mut exact = vec![0i128; m];
        for (r, &w) in rankings.iter().zip(weights) {
            if let Some(&top) = r.as_ref().iter().find(|&&o| standing[o]) {
                exact[top] += fixed(w);
            }
        }
        let count: Vec<f64> = exact.into_iter().map(unfixed).collect();
        let alive: Vec<usize> = (0..m).filter(|&o| standing[o]).collect();
        for &o in &alive {
            scores[o] = count[o];
        }
        let total: f64 = alive.iter().map(|&o| count[o]).sum();
        if let Some(&w) = alive.iter().find(|&&o| count[o] > total / 2.0) {
            return Runoff {
                winners: vec![w],
                scores,
                eliminated,
                tie_breaks,
                final_total: total,
            };
        }
        let low = alive
            .iter()
            .map(|&o| count[o])
            .fold(f64::INFINITY, f64::min);
        let tied: Vec<usize> = alive.iter().copied().filter(|&o| count[o] == low).collect();
        if tied.len() == alive.len() {
            return Runoff {
                winners: alive,
                scores,
                eliminated,
                tie_breaks,
                final_total: total,
            };
        }
        let out = if tied.len() == 1 {
            tied[0]
        } else {
            let least = tied
                .iter()
                .map(|&o| borda_scores[o])
                .fold(f64::INFINITY, f64::min);
            let by_borda: Vec<usize> = tied
                .iter()
                .copied()
                .filter(|&o| borda_scores[o] == least)
                .collect();
            let (out, reason) = if by_borda.len() == 1 {
                (by_borda[0], "lowest Borda score")
            } else {
                (
                    by_borda[by_borda.len() - 1],
                    "equal Borda scores; listed last in options",
                )
            };
            tie_breaks.push(RunoffTie {
                round,
                tied,
                eliminated: out,
                reason,
            });
            out
        };
        standing[out] = false;
        eliminated.push(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(rows: &[(&[usize], usize)]) -> (Vec<Vec<usize>>, Vec<f64>) {
        let mut r = Vec::new();
        for (ranking, count) in rows {
            for _ in 0..*count {
                r.push(ranking.to_vec());
            }
        }
        let w = vec![1.0; r.len()];
        (r, w)
    }

    #[test]
    fn schulze_wikipedia_example() {
        // The classic 45-voter example (A..E = 0..4); Schulze winner is E.
        let (r, w) = profile(&[
            (&[0, 2, 1, 4, 3], 5),
            (&[0, 3, 4, 2, 1], 5),
            (&[1, 4, 3, 0, 2], 8),
            (&[2, 0, 1, 4, 3], 3),
            (&[2, 0, 4, 1, 3], 7),
            (&[2, 1, 0, 3, 4], 2),
            (&[3, 2, 4, 1, 0], 7),
            (&[4, 1, 0, 3, 2], 8),
        ]);
        let p = pairwise(&r, &w, 5);
        let (_, winners) = schulze(&p);
        assert_eq!(winners, vec![4]);
    }

    #[test]
    fn partial_rankings_prefer_listed_options() {
        let p = pairwise(&[vec![2]], &[1.0], 3);
        assert_eq!(p[[2, 0]], 1.0);
        assert_eq!(p[[2, 1]], 1.0);
        assert_eq!(p[[0, 1]], 0.0);
        assert_eq!(p[[1, 0]], 0.0);
        assert_eq!(borda(&[vec![2]], &[1.0], 3), vec![0.0, 0.0, 2.0]);
    }

    #[test]
    fn runoff_transfers_votes() {
        // 0 leads on first preferences but 1 wins after 2's votes transfer.
        let (r, w) = profile(&[(&[0, 1, 2], 4), (&[1, 0, 2], 3), (&[2, 1, 0], 2)]);
        let irv = instant_runoff(&r, &w, 3);
        assert_eq!(irv.winners, vec![1]);
        assert_eq!(irv.eliminated, vec![2]);
        assert!(irv.tie_breaks.is_empty());
    }

    #[test]
    fn minimax_and_copeland_find_the_condorcet_winner() {
        let (r, w) = profile(&[(&[0, 1, 2], 2), (&[1, 0, 2], 1), (&[2, 0, 1], 1)]);
        let p = pairwise(&r, &w, 3);
        assert_eq!(condorcet_winner(&p), Some(0));
        let mm = minimax(&p);
        assert!(mm[0] > mm[1] && mm[0] > mm[2]);
        assert_eq!(copeland(&p), vec![2.0, 1.0, 0.0]);
    }
}
