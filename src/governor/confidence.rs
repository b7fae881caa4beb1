//! The verdict's confidence: the probability that it is right, given the counted ballots and
//! each voter's measured competence (its trust in the decision's domain).
//!
//! - **Options** (Nitzan–Paroush): an agent of competence q names the right option with
//!   probability q and each wrong one with (1 − q)/(K − 1), independently of the others. The
//!   posterior over the right option, from a uniform prior, is proportional to
//!   `Π_{i names o} q_i · Π_{i does not} (1 − q_i)/(K − 1)`; the confidence is the posterior
//!   of the verdict's option. Competences below chance are raised to chance (1/K): an agent
//!   that is worse than chance is ignored, never read backwards.
//! - **Numbers**: the posterior over where the truth `t` lies. A voter of competence q answers
//!   within the policy's tolerance of `t` with probability q; a wrong answer lands near any
//!   given point with the pool's measured chance ρ that two wrong answers agree (so wrong
//!   answers spread over a width `2·tol/ρ`, and so may the truth, a priori uniformly). Each
//!   voter contributes `q` where its answer is within the tolerance of `t` and `(1 − q)·ρ`
//!   elsewhere; the likelihood is piecewise constant between the points `answer ± tol`, so
//!   the posterior is integrated exactly. The confidence is the posterior mass within the
//!   tolerance of the verdict. Competing clusters of answers take their share of the mass (a
//!   pair of weak voters that agree is no certificate when the other answers could as well
//!   have agreed), and one voter alone gives about its competence. Without a positive
//!   tolerance there is no window to integrate over, and numbers are measured as vectors are.
//! - **Vectors**: a voter *agrees* with the verdict when its answer lies within the policy's
//!   tolerance of it; agreeing adds `ln(q/((1 − q)ρ))` to the log-odds that the verdict is
//!   right and disagreeing `ln((1 − q)/(1 − (1 − q)ρ))`.
//!
//! Competences of numbers and vectors are raised to ½ at least, for the same reason as
//! options. Both measures depend on distances, not on the scale of the answers: they do not
//! collapse when the truth is near 0, as `CQ = 1/(1 + σ/μ)` does (CQ is still reported as the
//! articles define it).
//!
//! Correlated voters make these probabilities overconfident: n agents whose errors
//! correlate carry the evidence of `n_eff = n / (1 + (n − 1)ρ̄)` independent ones (the error
//! ledger's pairwise correlations). The evidence is tempered accordingly: every
//! log-likelihood is multiplied by `n_eff / n` (`temper`; 1 for independent voters). The
//! eval harness measures calibration (ECE, Brier score) over seeds.

use std::collections::BTreeMap;

use crate::ballot::Answer;
use crate::decision::Cast;

/// Competences are kept inside this range (no voter is certain).
const MAX_COMPETENCE: f64 = 0.95;

/// The posterior over the right option, `k` options, given `(option, competence)` votes,
/// their evidence tempered by `temper` (see the module docs).
pub(super) fn option_posterior(k: usize, votes: &[(usize, f64)], temper: f64) -> Vec<f64> {
    if k == 0 {
        return Vec::new();
    }
    let kf = k as f64;
    let mut log_post = vec![0.0; k];
    for &(v, q) in votes {
        let q = q.clamp(1.0 / kf, MAX_COMPETENCE);
        let (right, wrong) = (
            temper * q.ln(),
            temper * ((1.0 - q) / (kf - 1.0).max(1.0)).ln(),
        );
        for (t, lp) in log_post.iter_mut().enumerate() {
            *lp += if v == t { right } else { wrong };
        }
    }
    let max = log_post.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut post: Vec<f64> = log_post.iter().map(|l| (l - max).exp()).collect();
    let z: f64 = post.iter().sum();
    post.iter_mut().for_each(|p| *p /= z);
    post
}

fn competence_of(competence: &BTreeMap<String, f64>, agent: &str) -> f64 {
    competence.get(agent).copied().unwrap_or(0.5)
}

/// The probability that `winner` is the right option.
pub(super) fn of_option(
    options: &[String],
    casts: &[Cast],
    competence: &BTreeMap<String, f64>,
    winner: &str,
    temper: f64,
) -> f64 {
    let Some(w) = options.iter().position(|o| o == winner) else {
        return 0.0;
    };
    let votes: Vec<(usize, f64)> = casts
        .iter()
        .filter_map(|c| {
            let first = match &c.ballot.answer {
                Answer::Choice(o) => Some(o),
                Answer::Ranking(r) => r.first(),
                _ => None,
            }?;
            let i = options.iter().position(|o| o == first)?;
            Some((i, competence_of(competence, &c.ballot.agent)))
        })
        .collect();
    option_posterior(options.len(), &votes, temper)
        .get(w)
        .copied()
        .unwrap_or(0.0)
}

/// The probability that a numeric or vector verdict is right (within `tolerance` of the
/// truth; see the module docs): the posterior over the truth's place for a number, each
/// voter's agreement for a vector. `agreement` is the chance that a wrong answer lies within
/// the tolerance of a given wrong point (the pool's record; ½ before evidence).
pub(super) fn of_point(
    casts: &[Cast],
    competence: &BTreeMap<String, f64>,
    verdict: &[f64],
    tolerance: f64,
    agreement: f64,
    temper: f64,
) -> f64 {
    // A wrong answer at least as likely as a right one to agree reads agreement as no
    // evidence, never as evidence against.
    let rho = if agreement.is_finite() {
        agreement.clamp(0.01, 1.0)
    } else {
        1.0
    };
    if let [v] = verdict
        && let Some(p) = score_posterior(casts, competence, *v, tolerance, rho, temper)
    {
        return p;
    }
    let mut log_odds = 0.0;
    for c in casts {
        let distance = match &c.ballot.answer {
            Answer::Score(v) if verdict.len() == 1 => (v - verdict[0]).abs(),
            Answer::Vector(x) if x.len() == verdict.len() => x
                .iter()
                .zip(verdict)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>()
                .sqrt(),
            _ => continue,
        };
        let q = competence_of(competence, &c.ballot.agent).clamp(0.5, MAX_COMPETENCE);
        log_odds += if distance <= tolerance {
            (q / ((1.0 - q) * rho)).ln()
        } else {
            ((1.0 - q) / (1.0 - (1.0 - q) * rho)).ln()
        };
    }
    1.0 / (1.0 + (-temper * log_odds).exp())
}

/// The posterior probability that the truth lies within `tolerance` of `verdict`, given
/// the counted numeric answers (see the module docs); `None` without a positive tolerance or
/// a numeric answer.
fn score_posterior(
    casts: &[Cast],
    competence: &BTreeMap<String, f64>,
    verdict: f64,
    tolerance: f64,
    rho: f64,
    temper: f64,
) -> Option<f64> {
    if !(tolerance > 0.0 && tolerance.is_finite() && verdict.is_finite()) {
        return None;
    }
    // Each voter: its answer, and the log-likelihoods of a truth near it and elsewhere.
    let voters: Vec<(f64, f64, f64)> = casts
        .iter()
        .filter_map(|c| match c.ballot.answer {
            Answer::Score(x) if x.is_finite() => {
                let q = competence_of(competence, &c.ballot.agent).clamp(0.5, MAX_COMPETENCE);
                Some((x, temper * q.ln(), temper * ((1.0 - q) * rho).ln()))
            }
            _ => None,
        })
        .collect();
    if voters.is_empty() {
        return None;
    }
    // The truth's prior support: the answers' windows, widened to the spread of wrong
    // answers (`2·tol/ρ`) around their middle.
    let (lo, hi) = voters
        .iter()
        .fold((verdict, verdict), |(l, h), (x, ..)| (l.min(*x), h.max(*x)));
    let (lo, hi) = (lo - tolerance, hi + tolerance);
    let spread = 2.0 * tolerance / rho;
    let extra = ((spread - (hi - lo)) / 2.0).max(0.0);
    let (lo, hi) = (lo - extra, hi + extra);
    let mut cuts: Vec<f64> = Vec::with_capacity(2 * voters.len() + 4);
    cuts.extend([lo, hi, verdict - tolerance, verdict + tolerance]);
    for (x, ..) in &voters {
        cuts.extend([x - tolerance, x + tolerance]);
    }
    cuts.retain(|c| c.is_finite());
    cuts.sort_by(f64::total_cmp);
    cuts.dedup();
    // Between two cuts the likelihood is constant: evaluate it at the middle.
    let pieces: Vec<(f64, f64, bool)> = cuts
        .windows(2)
        .filter(|w| w[1] > w[0])
        .map(|w| {
            let m = 0.5 * (w[0] + w[1]);
            let log_l: f64 = voters
                .iter()
                .map(|(x, near, far)| {
                    if (x - m).abs() <= tolerance {
                        near
                    } else {
                        far
                    }
                })
                .sum();
            (log_l, w[1] - w[0], (m - verdict).abs() <= tolerance)
        })
        .collect();
    let max = pieces.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return None;
    }
    let (mut inside, mut total) = (0.0, 0.0);
    for (log_l, width, near) in pieces {
        let mass = (log_l - max).exp() * width;
        total += mass;
        if near {
            inside += mass;
        }
    }
    (total > 0.0 && total.is_finite()).then(|| (inside / total).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ballot::Ballot;

    fn cast(b: Ballot) -> Cast {
        Cast {
            ballot: b,
            weight: 1.0,
            latency_ms: 0,
            tokens: 0,
            cost_usd: 0.0,
            wave: 1,
        }
    }

    #[test]
    fn the_posterior_follows_the_competences() {
        let opts: Vec<String> = ["a", "b", "c"].iter().map(|s| (*s).to_owned()).collect();
        let comp: BTreeMap<String, f64> = [
            ("x".to_owned(), 0.8),
            ("y".to_owned(), 0.8),
            ("z".to_owned(), 0.6),
        ]
        .into();
        let casts = vec![
            cast(Ballot::choice("x", "a")),
            cast(Ballot::choice("y", "a")),
            cast(Ballot::choice("z", "b")),
        ];
        // Votes for a: 0.8·0.8·0.2 vs for b: 0.1·0.1·0.6 vs c: 0.1·0.1·0.2 (× constants).
        let pa = 0.8 * 0.8 * 0.2;
        let pb = 0.1 * 0.1 * 0.6;
        let pc = 0.1 * 0.1 * 0.2;
        let want = pa / (pa + pb + pc);
        assert!((of_option(&opts, &casts, &comp, "a", 1.0) - want).abs() < 1e-12);
        // Below-chance agents are ignored: one alone leaves the prior.
        let low: BTreeMap<String, f64> = [("x".to_owned(), 0.1)].into();
        let one = vec![cast(Ballot::choice("x", "a"))];
        assert!((of_option(&opts, &one, &low, "a", 1.0) - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn agreement_among_unmeasured_agents_is_evidence_when_wrong_answers_scatter() {
        // Ten of thirteen agents never graded (competence ½) agree within the tolerance.
        let comp: BTreeMap<String, f64> = BTreeMap::new();
        let mut casts: Vec<Cast> = (0..10)
            .map(|i| cast(Ballot::score(format!("a{i}"), 0.28 + 0.005 * f64::from(i))))
            .collect();
        casts
            .extend((0..3).map(|i| cast(Ballot::score(format!("b{i}"), 1.1 - 0.6 * f64::from(i)))));
        let scattered = of_point(&casts, &comp, &[0.3], 0.1, 0.1, 1.0);
        let unknown = of_point(&casts, &comp, &[0.3], 0.1, 0.5, 1.0);
        let together = of_point(&casts, &comp, &[0.3], 0.1, 1.0, 1.0);
        assert!(scattered > 0.999 && unknown > 0.98, "{scattered} {unknown}");
        // Wrong answers that always coincide make agreement no evidence at all: what is left
        // is the prior, the verdict's window (0.2 wide) in the answers' span (1.4).
        assert!((together - 0.2 / 1.4).abs() < 1e-9, "{together}");
        // Correlated voters carry less evidence: tempered by n_eff / n.
        let tempered = of_point(&casts, &comp, &[0.3], 0.1, 0.5, 0.25);
        assert!(tempered < unknown && tempered > together, "{tempered}");
        let opts: Vec<String> = ["a", "b", "c"].iter().map(|s| (*s).to_owned()).collect();
        let votes = vec![
            cast(Ballot::choice("x", "a")),
            cast(Ballot::choice("y", "a")),
            cast(Ballot::choice("z", "a")),
        ];
        let known: BTreeMap<String, f64> = ["x", "y", "z"]
            .iter()
            .map(|a| ((*a).to_owned(), 0.8))
            .collect();
        let full = of_option(&opts, &votes, &known, "a", 1.0);
        let third = of_option(&opts, &votes, &known, "a", 1.0 / 3.0);
        let one = of_option(&opts, &votes[..1], &known, "a", 1.0);
        // Three perfectly correlated voters count as one.
        assert!(
            (third - one).abs() < 1e-12 && full > third,
            "{full} {third} {one}"
        );
    }

    #[test]
    fn numeric_confidence_counts_the_clusters_that_could_have_formed_elsewhere() {
        let score = |a: &str, v: f64| cast(Ballot::score(a, v));
        let comp = |q: f64| -> BTreeMap<String, f64> {
            ["a", "b", "c", "d"]
                .iter()
                .map(|a| ((*a).to_owned(), q))
                .collect()
        };
        // One voter alone: about its competence, whatever the pool's record of agreement.
        for (q, rho) in [(0.7, 0.2), (0.9, 0.05), (0.6, 0.01)] {
            let one = of_point(&[score("a", 0.3)], &comp(q), &[0.3], 0.25, rho, 1.0);
            assert!((one - q).abs() < 0.06, "q {q} rho {rho}: {one}");
        }
        // Four weak voters (0.55), two of them within the tolerance of each other, the others
        // scattered: found on a generated pool, where such verdicts were right 60 % of the
        // time. The per-voter log-odds said 0.97; the posterior over the truth's place says
        // much less, and more the more often wrong answers agree.
        let casts = [
            score("a", 0.767),
            score("b", -1.401),
            score("c", -1.254),
            score("d", -0.661),
        ];
        let scattered = of_point(&casts, &comp(0.55), &[-1.254], 0.25, 0.1, 1.0);
        let clumped = of_point(&casts, &comp(0.55), &[-1.254], 0.25, 0.3, 1.0);
        assert!(
            scattered < 0.85 && clumped < scattered,
            "{scattered} {clumped}"
        );
        // Strong voters that agree are a certificate.
        let strong = of_point(&casts[1..3], &comp(0.9), &[-1.3], 0.25, 0.1, 1.0);
        assert!(strong > 0.95, "{strong}");
        // Two equal clusters split the mass.
        let split = [
            score("a", 0.0),
            score("b", 0.01),
            score("c", 1.0),
            score("d", 1.01),
        ];
        let half = of_point(&split, &comp(0.8), &[0.005], 0.25, 0.1, 1.0);
        assert!((half - 0.5).abs() < 0.02, "{half}");
    }

    #[test]
    fn numeric_confidence_does_not_depend_on_the_scale() {
        let comp: BTreeMap<String, f64> = [
            ("x".to_owned(), 0.8),
            ("y".to_owned(), 0.8),
            ("z".to_owned(), 0.8),
        ]
        .into();
        let at = |t: f64| {
            let casts: Vec<Cast> = [("x", t + 0.02), ("y", t - 0.03), ("z", t + 0.01)]
                .iter()
                .map(|(a, v)| cast(Ballot::score(*a, *v)))
                .collect();
            of_point(&casts, &comp, &[t], 0.1, 0.1, 1.0)
        };
        assert!((at(0.0) - at(0.8)).abs() < 1e-12);
        assert!(at(0.0) > 0.98);
    }
}
