//! Benchmarks of the voting engine and the reliability estimator (divan).
//!
//! `cargo bench --bench aggregate`. Every rule at 7, 100 and 10,000 ballots; the geometric
//! median of 1,000 vectors of dimension 384; Dawid–Skene on 10,000 tasks × 20 workers ×
//! 4 labels. The `weighted-mean` rows are the one-pass baseline the others are compared to
//! in BENCHMARKS.md (ratios within one run, not absolute times).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use conclave::aggregate::{Kind, RULE_NAMES, Rule, TallyInput, tally};
use conclave::ballot::Ballot;
use conclave::trust::estimate::{Annotations, Method, estimate};
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

/// splitmix64: a tiny deterministic generator, so every run counts the same ballots.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const OPTIONS: [&str; 5] = ["alpha", "bravo", "charlie", "delta", "echo"];

fn ranked(n: usize) -> TallyInput {
    let mut rng = Rng(n as u64);
    let ballots = (0..n)
        .map(|i| {
            // Correlated preferences: a noisy common ordering, so there is a real winner.
            let mut keyed: Vec<(f64, &str)> = OPTIONS
                .iter()
                .enumerate()
                .map(|(k, o)| (k as f64 * 0.3 + rng.unit(), *o))
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
            Ballot::ranking(format!("a{i}"), keyed.into_iter().map(|(_, o)| o))
        })
        .collect();
    TallyInput::new(Kind::Ranking, OPTIONS, ballots)
}

/// Choice ballots; the weights double as competences in (0.3, 0.9) for log-odds.
fn choice(n: usize) -> TallyInput {
    let mut rng = Rng(n as u64 + 1);
    let ballots = (0..n)
        .map(|i| {
            let o = OPTIONS[rng.below(3).min(rng.below(5))];
            Ballot::choice(format!("a{i}"), o).with_confidence(0.5 + rng.unit() / 2.0)
        })
        .collect();
    let weights: Vec<(String, f64)> = (0..n)
        .map(|i| (format!("a{i}"), 0.3 + 0.6 * rng.unit()))
        .collect();
    TallyInput::new(Kind::Choice, OPTIONS, ballots).with_weights(weights)
}

fn scores(n: usize) -> TallyInput {
    let mut rng = Rng(n as u64 + 2);
    let ballots = (0..n)
        .map(|i| {
            // 80% honest around 0.1, 20% pushing +0.95.
            let v = if rng.below(5) == 0 {
                0.95
            } else {
                0.1 + (rng.unit() - 0.5) * 0.6
            };
            Ballot::score(format!("a{i}"), v)
        })
        .collect();
    let weights: Vec<(String, f64)> = (0..n)
        .map(|i| (format!("a{i}"), 0.2 + rng.unit()))
        .collect();
    TallyInput::new(Kind::Score, Vec::<String>::new(), ballots).with_weights(weights)
}

fn vectors(n: usize, d: usize) -> TallyInput {
    let mut rng = Rng((n * d) as u64);
    let ballots = (0..n)
        .map(|i| {
            let shift = if i % 5 == 0 { 3.0 } else { 0.0 };
            Ballot::vector(
                format!("a{i}"),
                (0..d).map(|_| rng.unit() - 0.5 + shift).collect(),
            )
        })
        .collect();
    TallyInput::new(Kind::Vector, Vec::<String>::new(), ballots)
}

// The rule list of the library, in its order: 4 choice rules, 5 ranked, 10 numeric/robust.
const CHOICE_RULES: &[&str] = RULE_NAMES.split_at(4).0;
const RANKED_RULES: &[&str] = RULE_NAMES.split_at(4).1.split_at(5).0;
const NUMERIC_RULES: &[&str] = RULE_NAMES.split_at(9).1;

fn run(bencher: Bencher<'_, '_>, input: TallyInput, rule: &str) {
    let params: &[(&str, &str)] = match rule {
        "krum" | "multi-krum" => &[("f", "1")],
        _ => &[],
    };
    let rule = Rule::parse(rule, params).expect("rule");
    tally(&input, &rule).expect("tally works on the bench input");
    bencher.bench_local(|| tally(black_box(&input), black_box(&rule)));
}

#[divan::bench(consts = [7, 100, 10_000], args = CHOICE_RULES, sample_count = 30)]
fn choice_rules<const N: usize>(bencher: Bencher<'_, '_>, rule: &str) {
    run(bencher, choice(N), rule);
}

#[divan::bench(consts = [7, 100, 10_000], args = RANKED_RULES, sample_count = 30)]
fn ranked_rules<const N: usize>(bencher: Bencher<'_, '_>, rule: &str) {
    run(bencher, ranked(N), rule);
}

#[divan::bench(consts = [7, 100, 10_000], args = NUMERIC_RULES, sample_count = 30)]
fn numeric_rules<const N: usize>(bencher: Bencher<'_, '_>, rule: &str) {
    run(bencher, scores(N), rule);
}

#[divan::bench(args = ["weighted-mean", "geometric-median", "multi-krum"], sample_count = 20)]
fn vectors_1000x384(bencher: Bencher<'_, '_>, rule: &str) {
    run(bencher, vectors(1000, 384), rule);
}

fn annotations(tasks: usize, workers: usize, labels: usize) -> Annotations {
    let mut rng = Rng(42);
    let names: Vec<String> = (0..labels).map(|l| format!("L{l}")).collect();
    let skill: Vec<f64> = (0..workers).map(|_| 0.35 + 0.6 * rng.unit()).collect();
    let mut rows = Vec::with_capacity(tasks * workers);
    for t in 0..tasks {
        let truth = rng.below(labels);
        for (w, s) in skill.iter().enumerate() {
            let l = if rng.unit() < *s {
                truth
            } else {
                rng.below(labels)
            };
            rows.push((format!("t{t}"), format!("w{w}"), names[l].clone()));
        }
    }
    Annotations::from_triples(rows)
}

#[divan::bench(args = ["dawid-skene", "one-coin", "majority"], sample_count = 10)]
fn estimate_10000x20x4(bencher: Bencher<'_, '_>, method: &str) {
    let data = annotations(10_000, 20, 4);
    let method = Method::from_name(method).expect("method");
    bencher.bench_local(|| estimate(black_box(&data), method));
}
