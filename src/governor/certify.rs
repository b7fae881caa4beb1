//! When to stop asking: certificates that the remaining agents cannot, or almost surely will
//! not, change the verdict.

use super::Seat;
use crate::agent::Rng;
use crate::aggregate::{Kind, Rule};
use crate::ballot::Answer;
use crate::decision::{Cast, Decision, Stop};
use crate::policy::Policy;

/// What a certificate is about: the policy, its rule, the decision, the voters' estimated
/// competences, and the ballots the quorum needs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Vote<'a> {
    pub(super) policy: &'a Policy,
    pub(super) rule: Rule,
    pub(super) decision: &'a Decision,
    pub(super) competence: &'a std::collections::BTreeMap<String, f64>,
    pub(super) need: usize,
    /// The chance that a wrong numeric answer agrees with a given wrong point.
    pub(super) agreement: f64,
    /// How much of their evidence the voters carry (`n_eff / n`).
    pub(super) temper: f64,
}

/// Decisions with more options than this stop early only when the uncast weight cannot
/// change the winner (no probabilistic certificate).
pub(super) const PROBABLE_OPTIONS: usize = 8;

/// Whether the fan-out can stop after the ballots in `casts`, with `unasked` seats left.
pub(super) fn check(vote: &Vote<'_>, casts: &[Cast], unasked: &[&Seat]) -> Option<Stop> {
    let Vote {
        policy,
        rule,
        decision,
        competence,
        need,
        agreement,
        temper,
    } = *vote;
    let counted = casts.iter().filter(|c| !c.ballot.is_abstention()).count();
    if counted < need {
        return None;
    }
    // The weight quorum too: never stop before the share of the pool's weight it asks for
    // has been cast (otherwise the verdict would fail its own quorum).
    let cast_weight: f64 = casts
        .iter()
        .filter(|c| !c.ballot.is_abstention())
        .map(|c| c.weight)
        .sum();
    let total_weight: f64 =
        casts.iter().map(|c| c.weight).sum::<f64>() + unasked.iter().map(|s| s.weight).sum::<f64>();
    if total_weight > 0.0 && cast_weight / total_weight < policy.quorum_weight_share - 1e-12 {
        return None;
    }
    match decision.kind {
        Kind::Choice | Kind::Ranking => {
            if !plurality_family(rule) {
                // Ranked rules have no cheap certificate: every selected agent is asked.
                return None;
            }
            let k = decision.options.len();
            let unweighted = matches!(rule, Rule::Plurality);
            let w = |x: f64| if unweighted { 1.0 } else { x };
            let mut scores = vec![0.0; k];
            let mut votes: Vec<(usize, f64, f64)> = Vec::new();
            for c in casts {
                let first = match &c.ballot.answer {
                    Answer::Choice(o) => decision.options.iter().position(|x| x == o),
                    Answer::Ranking(r) => r
                        .first()
                        .and_then(|o| decision.options.iter().position(|x| x == o)),
                    _ => None,
                };
                if let Some(i) = first {
                    scores[i] += w(c.weight);
                    let q = competence
                        .get(c.ballot.agent.as_str())
                        .copied()
                        .unwrap_or(0.5);
                    votes.push((i, w(c.weight), q));
                }
            }
            let remaining: f64 = unasked.iter().map(|s| w(s.weight)).sum();
            let mut order: Vec<usize> = (0..k).collect();
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
            let (leader, runner) = (order[0], order.get(1).copied());
            if let Rule::Supermajority { threshold } = rule {
                let cast_total: f64 = scores.iter().sum();
                return (scores[leader] >= threshold * (cast_total + remaining))
                    .then_some(Stop::Certified);
            }
            let gap = scores[leader] - runner.map_or(0.0, |r| scores[r]);
            if gap > remaining {
                return Some(Stop::Certified);
            }
            // The probabilistic certificate costs about 4,000·k² per reply (k possible truths,
            // each sampled): beyond a few options only the exact one above is given, so that
            // one request with many options cannot hold a worker.
            if k > PROBABLE_OPTIONS {
                return None;
            }
            let delta = policy.early_stop_risk?;
            let rest: Vec<(f64, f64)> = unasked
                .iter()
                .map(|s| (w(s.weight), s.competence))
                .collect();
            let p = leader_probability(k, &votes, &rest, leader, decision.seed, temper);
            (p >= 1.0 - delta).then_some(Stop::Confident)
        }
        Kind::Score => {
            // Numbers have no winner to certify: stop once the quorum's median is right with
            // probability at least 1 − δ (the verdict's own confidence measure, around the
            // median), as for choices; never below the acceptance threshold. (The stop once
            // asked only for the acceptance threshold: at 0.75 a quarter of early stops could
            // be wrong where the full pool was right, against the policy's stated δ.)
            let delta = policy.early_stop_risk?;
            let mut values: Vec<f64> = casts
                .iter()
                .filter_map(|c| match c.ballot.answer {
                    Answer::Score(v) => Some(v),
                    _ => None,
                })
                .collect();
            if values.is_empty() {
                return None;
            }
            values.sort_by(f64::total_cmp);
            let n = values.len();
            let median = if n % 2 == 1 {
                values[n / 2]
            } else {
                (values[n / 2 - 1] + values[n / 2]) / 2.0
            };
            let c = super::confidence::of_point(
                casts,
                competence,
                &[median],
                policy.thresholds.tolerance,
                agreement,
                temper,
            );
            (c >= (1.0 - delta).max(policy.thresholds.accept)).then_some(Stop::Confident)
        }
        Kind::Vector => None,
    }
}

/// Whether the calls in flight (`asked`: agent and seat) could settle the vote by themselves:
/// some answer of theirs lets the fan-out stop with only `unasked` seats left. The soonest
/// settling answer is all of them naming one option, so each option is tried. Kinds and rules
/// without a certificate count as settleable (the next wave waits for the calls in flight).
pub(super) fn settleable(
    vote: &Vote<'_>,
    casts: &[Cast],
    asked: &[(&str, &Seat)],
    unasked: &[&Seat],
) -> bool {
    let Vote { rule, decision, .. } = *vote;
    let certifiable =
        matches!(decision.kind, Kind::Choice | Kind::Ranking) && plurality_family(rule);
    if !certifiable {
        return true;
    }
    let mut hypothetical: Vec<Cast> = casts.to_vec();
    decision.options.iter().any(|option| {
        hypothetical.truncate(casts.len());
        hypothetical.extend(asked.iter().map(|(agent, seat)| Cast {
            ballot: crate::ballot::Ballot::choice(*agent, option.as_str()),
            weight: seat.weight,
            latency_ms: 0,
            tokens: 0,
            cost_usd: 0.0,
            wave: 0,
        }));
        check(vote, &hypothetical, unasked).is_some()
    })
}

/// The rules that count first choices only: the ones with a cheap certificate.
fn plurality_family(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::Plurality
            | Rule::WeightedPlurality
            | Rule::LogOdds { .. }
            | Rule::Supermajority { .. }
    )
}

/// Above this many remaining agents the leader's chance is approximated (normal margins, union
/// bound) instead of sampled.
const NORMAL_FROM: usize = 6;

/// The probability that the full pool elects `leader`, given the cast votes `(option,
/// weight, competence)` and the remaining agents `(weight, competence)`.
///
/// The right answer is unknown: its posterior follows from the cast votes (an agent of
/// competence q votes the right option with probability q, each wrong one with
/// (1 − q)/(K − 1)). For each possible right answer, the remaining agents' votes are
/// enumerated exactly when there are at most 4,096 combinations, else sampled (4,000 draws,
/// seeded by the decision) up to 6 agents, else approximated (normal margins; the union bound
/// over challengers leans towards asking more agents).
pub(super) fn leader_probability(
    k: usize,
    votes: &[(usize, f64, f64)],
    rest: &[(f64, f64)],
    leader: usize,
    seed: u64,
    temper: f64,
) -> f64 {
    if k < 2 {
        return 1.0;
    }
    let kf = k as f64;
    // Posterior over the right answer (the verdict's confidence uses the same one).
    let cast: Vec<(usize, f64)> = votes.iter().map(|&(v, _, q)| (v, q)).collect();
    let post = super::confidence::option_posterior(k, &cast, temper);

    let mut base = vec![0.0; k];
    for &(v, w, _) in votes {
        base[v] += w;
    }
    let wins = |scores: &[f64]| {
        // The leader stays first (ties go to the option listed first, as the tally does).
        (0..k).all(|o| {
            o == leader || scores[leader] > scores[o] || (scores[leader] == scores[o] && leader < o)
        })
    };
    let m = rest.len();
    let combos = (k as f64).powi(m as i32);
    let mut total = 0.0;
    for (t, &pt) in post.iter().enumerate() {
        if pt < 1e-12 {
            continue;
        }
        let vote_p = |agent: usize, option: usize| {
            let q = rest[agent].1;
            if option == t {
                q
            } else {
                (1.0 - q) / (kf - 1.0)
            }
        };
        let p_win = if combos <= 4096.0 {
            let mut p = 0.0;
            let mut choice = vec![0usize; m];
            loop {
                let mut scores = base.clone();
                let mut prob = 1.0;
                for (a, &o) in choice.iter().enumerate() {
                    scores[o] += rest[a].0;
                    prob *= vote_p(a, o);
                }
                if wins(&scores) {
                    p += prob;
                }
                // Next combination (odometer).
                let mut i = 0;
                while i < m {
                    choice[i] += 1;
                    if choice[i] < k {
                        break;
                    }
                    choice[i] = 0;
                    i += 1;
                }
                if i == m {
                    break;
                }
            }
            p
        } else if m > NORMAL_FROM {
            // Many agents left: the margin of the leader over each challenger is a sum of
            // independent terms, so a normal approximation is close, and the union bound over
            // challengers leans towards asking more agents. O(k²·m) instead of sampling's
            // 4,000·m per possible truth.
            let mut lose = 0.0;
            for c in (0..k).filter(|&c| c != leader) {
                let mut mean = base[leader] - base[c];
                let mut var = 0.0;
                for (a, &(w, _)) in rest.iter().enumerate() {
                    let (pl, pc) = (vote_p(a, leader), vote_p(a, c));
                    mean += w * (pl - pc);
                    var += w * w * (pl + pc - (pl - pc).powi(2));
                }
                lose += if var <= 0.0 {
                    f64::from(u8::from(mean < 0.0 || (mean == 0.0 && c < leader)))
                } else {
                    0.5 * statrs::function::erf::erfc(
                        mean / (var.sqrt() * std::f64::consts::SQRT_2),
                    )
                };
            }
            (1.0 - lose).max(0.0)
        } else {
            let mut rng = Rng::new(&[&seed.to_le_bytes(), &(t as u64).to_le_bytes(), b"certify"]);
            let draws = 4000;
            let mut hits = 0;
            for _ in 0..draws {
                let mut scores = base.clone();
                for &(w, q) in rest {
                    let o = if rng.unit() < q {
                        t
                    } else {
                        let j = rng.below(k - 1);
                        if j >= t { j + 1 } else { j }
                    };
                    scores[o] += w;
                }
                if wins(&scores) {
                    hits += 1;
                }
            }
            f64::from(hits) / f64::from(draws)
        };
        total += pt * p_win;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_left_means_certain_and_a_landslide_is_likely() {
        assert!((leader_probability(3, &[(0, 1.0, 0.8)], &[], 0, 1, 1.0) - 1.0).abs() < 1e-12);
        let votes = [(0, 1.0, 0.8), (0, 1.0, 0.8), (0, 1.0, 0.8), (0, 1.0, 0.8)];
        let p = leader_probability(3, &votes, &[(1.0, 0.8), (1.0, 0.8), (1.0, 0.8)], 0, 1, 1.0);
        assert!(p > 0.999, "{p}");
        let split = [(0, 1.0, 0.6), (1, 1.0, 0.6)];
        let p = leader_probability(3, &split, &[(1.0, 0.6), (1.0, 0.6), (1.0, 0.6)], 0, 1, 1.0);
        assert!(p < 0.8, "{p}");
    }

    #[test]
    fn the_normal_approximation_agrees_with_enumeration() {
        for (lead, rest_q) in [(3, 0.7), (2, 0.65), (4, 0.6)] {
            let votes: Vec<(usize, f64, f64)> = (0..lead)
                .map(|_| (0, 1.0, 0.7))
                .chain([(1, 1.0, 0.7)])
                .collect();
            // Two options, 12 remaining agents: 4,096 combinations, enumerated exactly; a
            // 13th agent without weight forces the approximation on the same question.
            let rest: Vec<(f64, f64)> = vec![(1.0, rest_q); 12];
            let exact = leader_probability(2, &votes, &rest, 0, 3, 1.0);
            let approx = leader_probability(
                2,
                &votes,
                &[rest.clone(), vec![(0.0, 0.7)]].concat(),
                0,
                3,
                1.0,
            );
            assert!((exact - approx).abs() < 0.06, "{exact} vs {approx}");
        }
        // A landslide stays certain, a dead heat does not.
        let sure = leader_probability(4, &[(0, 5.0, 0.9); 10], &[(0.5, 0.7); 20], 0, 1, 1.0);
        assert!(sure > 0.999, "{sure}");
        let open = leader_probability(
            4,
            &[(0, 1.0, 0.6), (1, 1.0, 0.6)],
            &[(1.0, 0.6); 20],
            0,
            1,
            1.0,
        );
        assert!(open < 0.7, "{open}");
    }

    #[test]
    fn approximation_agrees_with_enumeration_on_three_options() {
        let votes = [(0, 0.9, 0.8), (1, 0.7, 0.6), (0, 0.8, 0.7)];
        let rest: Vec<(f64, f64)> = vec![(0.8, 0.7); 6];
        let exact = leader_probability(3, &votes, &rest, 0, 7, 1.0);
        let many: Vec<(f64, f64)> = vec![(0.8, 0.7); 6];
        // 3 options × 6 agents: exact; 8 agents: approximated.
        let sampled =
            leader_probability(3, &votes, &[many, vec![(0.0, 0.7); 2]].concat(), 0, 7, 1.0);
        assert!((exact - sampled).abs() < 0.03, "{exact} vs {sampled}");
    }
}
