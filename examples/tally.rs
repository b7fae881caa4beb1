//! Counting ballots from code: the FinanceNet sentiment case of the articles.
//!
//! `cargo run --example tally`
//!
//! Three honest agents sit between −0.2 and +0.4; a compromised agent pushes +0.95. The
//! trust-weighted mean is dragged towards the attacker; the geometric median and the
//! outlier down-weighting keep the honest consensus.

use conclave::aggregate::weights::wbft;
use conclave::aggregate::{Kind, Rule, TallyInput, tally};
use conclave::ballot::{Abstention, Ballot};

fn main() -> Result<(), conclave::aggregate::TallyError> {
    // WBFT weights w = α·trust + (1−α)·quality with α = 0.6 (digest A.3).
    let weights = [
        ("EconAgent", wbft(0.85, 0.70, 0.6)),
        ("NewsAgent", wbft(0.72, 0.75, 0.6)),
        ("GeneralistAgent", wbft(0.55, 0.65, 0.6)),
        ("MaliciousAgent", 0.5),
    ];
    let input = TallyInput::new(
        Kind::Score,
        Vec::<String>::new(),
        vec![
            Ballot::score("EconAgent", -0.2),
            Ballot::score("NewsAgent", 0.1),
            Ballot::score("GeneralistAgent", 0.4),
            Ballot::score("MaliciousAgent", 0.95),
            Ballot::abstain("SlowAgent", Abstention::Timeout),
        ],
    )
    .with_weights(weights);

    println!("{:<20} {:>8}", "rule", "result");
    for rule in [
        Rule::WeightedMean,
        Rule::Median,
        Rule::GeometricMedian {
            tol: 1e-10,
            max_iter: 1000,
        },
        Rule::OutlierDownweight { lambda: 2.0 },
    ] {
        let result = tally(&input, &rule)?;
        println!(
            "{:<20} {:>+8.3}",
            rule.name(),
            result.value.unwrap_or(f64::NAN)
        );
    }
    let cq = tally(&input, &Rule::Mean)?
        .consensus_quality
        .unwrap_or(f64::NAN);
    println!("consensus quality {cq:.3} (below 0.55: the policy would escalate to arbitration)");
    Ok(())
}
