//! Embedding conclave: build a governed pool from code and call it as a Tower service.
//!
//! `cargo run --example embed`
//!
//! Five simulated analysts (one compromised, pushing the same wrong option every time) vote
//! on buy / hold / sell under a policy written inline. The application wraps the Governor in
//! a Tower layer of its own (here: a counter of escalations) and makes decisions. No files,
//! no network, no API key.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use conclave::agent::AgentService;
use conclave::agent::scripted::ScriptedAgent;
use conclave::decision::{Decision, Outcome, Truth};
use conclave::governor::Governor;
use conclave::policy::{Catalog, SourceFile};
use conclave::trust::TrustParams;
use conclave::trust::store::{MemoryTrustStore, TrustStore};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder, ServiceExt};

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

const POLICY: &str = r#"
id = "desk"
description = "The trading desk's buy/hold/sell calls."
applies = { domains = ["trading"], kinds = ["choice"] }
pool = { agents = ["econ", "news", "quant", "generalist", "rogue"] }
rule = { name = "weighted-plurality", alpha = 0.6 }
quorum = { ballots = 3 }
early_stop = { risk = 0.01 }
thresholds = { accept = 0.6, arbitrate = 0.45, human = 0.3 }
escalation = { human = true }
"#;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let catalog = Catalog::load(
        &[SourceFile::new("inline-agents", AGENTS)],
        &[SourceFile::new("inline-policy", POLICY)],
    )
    .map_err(|d| {
        d.iter()
            .map(|x| x.one_line())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let policy = catalog.policy("desk").ok_or("no policy")?.clone();
    let agents: Vec<(_, AgentService)> = catalog
        .agents
        .values()
        .map(|spec| {
            Ok((
                spec.clone(),
                BoxCloneSyncService::new(ScriptedAgent::new(spec.clone())?),
            ))
        })
        .collect::<Result<_, conclave::agent::scripted::NotScripted>>()?;
    let trust = MemoryTrustStore::new(TrustParams::default())?.snapshot()?;

    // The application's own layer around the Governor: count what escalated.
    let escalations = Arc::new(AtomicUsize::new(0));
    let counter = escalations.clone();
    let mut service = ServiceBuilder::new()
        .map_response(move |v: conclave::decision::Verdict| {
            if !matches!(v.outcome, Outcome::Decided { .. }) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            v
        })
        .service(Governor::new(policy, agents, trust));

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
        println!(
            "{:<6} {:<6} {:<8} {:>5} {:>10.2}  {:?}",
            i,
            truth,
            verdict.winner().unwrap_or("-"),
            verdict.calls,
            verdict.consensus,
            verdict.outcome
        );
    }
    println!("escalated: {}", escalations.load(Ordering::Relaxed));
    Ok(())
}
