//! Embedding conclave: build a governed pool from code and call it as a Tower service.
//!
//! `cargo run --example embed`
//!
//! Five simulated analysts (one compromised, pushing the same wrong option every time) vote
//! on buy / hold / sell under a policy built in code (checked as a policy file would be). The application wraps the Governor in
//! a Tower layer of its own (here: a counter of escalations) and makes decisions. No files,
//! no network, no API key.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use conclave::tower::{Service, ServiceBuilder, ServiceExt};
use conclave::{
    Catalog, Decision, Governor, Kind, MemoryTrustStore, Outcome, Policy, Rule, SourceFile,
    Thresholds, TrustParams, TrustStore, Truth, Verdict,
};

const AGENTS: &str = r#"
[[agent]]
id = "econ"
kind = "scripted"
scripted = { competence = { default = 0.85 } }

[[agent]]
id = "news"
kind = "scripted"
scripted = { competence = { default = 0.75 } }

[[agent]]
id = "quant"
kind = "scripted"
scripted = { competence = { default = 0.8 } }

[[agent]]
id = "generalist"
kind = "scripted"
scripted = { competence = { default = 0.6 } }

[[agent]]
id = "rogue"
kind = "scripted"
scripted = { competence = { default = 0.8 }, behaviour = { kind = "always-wrong" } }
"#;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Agents from their definitions; the policy in code, checked like a policy file.
    let catalog = Catalog::load(&[SourceFile::new("inline-agents", AGENTS)], &[]).map_err(|d| {
        d.iter()
            .map(|x| x.one_line())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let policy = Policy::builder("desk")
        .description("The trading desk's buy/hold/sell calls.")
        .applies(["trading"], [Kind::Choice])
        .pool(["econ", "news", "quant", "generalist", "rogue"])
        .rule(Rule::WeightedPlurality)
        .alpha(0.6)
        .quorum(3)
        .early_stop(Some(0.01))
        .thresholds(Thresholds {
            accept: 0.6,
            arbitrate: 0.45,
            human: 0.3,
            tolerance: 0.1,
        })
        .human(true)
        .build(&catalog.agents)?;
    let trust = MemoryTrustStore::new(TrustParams::default())?.snapshot()?;
    let governor = Governor::builder(policy)
        .agents_from(&catalog)?
        .trust(trust)
        .build()?;

    // The application's own layer around the Governor: count what escalated.
    let escalations = Arc::new(AtomicUsize::new(0));
    let counter = escalations.clone();
    let mut service = ServiceBuilder::new()
        .map_response(move |v: Verdict| {
            if !matches!(v.outcome, Outcome::Decided { .. }) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            v
        })
        .service(governor);

    println!(
        "{:<6} {:<6} {:<8} {:>5} {:>10}  outcome",
        "item", "truth", "verdict", "calls", "consensus"
    );
    let options = ["buy", "hold", "sell"];
    for i in 0..10u64 {
        let truth = options[(i * 7 % 3) as usize];
        let decision = Decision::choice(
            format!("item-{i}"),
            "trading",
            "Buy, hold or sell?",
            options,
        )
        .with_seed(i)
        .with_truth(Truth::Option(truth.to_owned()));
        let verdict = service.ready().await?.call(decision).await?;
        // A verdict only where the pool decided; what went to a person says why.
        let (answer, outcome) = match &verdict.outcome {
            Outcome::Decided { weak } => (
                verdict.winner().unwrap_or("-"),
                if *weak {
                    "decided (weak)".to_owned()
                } else {
                    "decided".to_owned()
                },
            ),
            Outcome::Human { reason } => ("-", format!("to a person: {reason}")),
            other => ("-", other.as_str().to_owned()),
        };
        println!(
            "{:<6} {:<6} {:<8} {:>5} {:>10.2}  {outcome}",
            i, truth, answer, verdict.calls, verdict.consensus
        );
    }
    println!("escalated: {}", escalations.load(Ordering::Relaxed));
    Ok(())
}
