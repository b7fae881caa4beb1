//! The Governor's overhead (divan): `cargo bench --bench governor`.
//!
//! Seven in-process agents that answer at once. One decision through the full Governor
//! (selection, waves, certification, tally, verdict) against the baseline: the same seven
//! calls spawned and joined by hand, then one tally.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use conclave::agent::{AgentReply, AgentRequest, AgentService};
use conclave::aggregate::{Kind, Rule, TallyInput, tally};
use conclave::ballot::Ballot;
use conclave::decision::Decision;
use conclave::governor::Governor;
use conclave::policy::{Catalog, SourceFile};
use conclave::trust::TrustParams;
use conclave::trust::store::{MemoryTrustStore, TrustStore};
use divan::{Bencher, black_box};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceExt, service_fn};

fn main() {
    divan::main();
}

const OPTIONS: [&str; 3] = ["buy", "hold", "sell"];

fn instant(id: String, choice: &'static str) -> AgentService {
    BoxCloneSyncService::new(service_fn(move |_req: AgentRequest| {
        let ballot = Ballot::choice(id.clone(), choice).with_confidence(0.8);
        async move { Ok::<_, BoxError>(AgentReply::new(ballot)) }
    }))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// The baselines' one tally.
fn plain_tally(ballots: Vec<Ballot>) -> conclave::aggregate::TallyResult {
    let input = TallyInput::new(Kind::Choice, OPTIONS, ballots);
    tally(&input, &Rule::WeightedPlurality).unwrap()
}

fn setup() -> (Governor, Vec<(String, AgentService)>) {
    let (g, services, _) = setup_with_specs();
    (g, services)
}

fn setup_with_specs() -> (
    Governor,
    Vec<(String, AgentService)>,
    Vec<conclave::policy::AgentSpec>,
) {
    let mut agents = String::new();
    for i in 0..7 {
        agents += &format!(
            "[[agent]]\nid = \"a{i}\"\nkind = \"scripted\"\nscripted = {{ competence = {{ default = 0.8 }} }}\n"
        );
    }
    let policy = r#"id = "p"
description = "Overhead benchmark."
applies = { domains = ["d"], kinds = ["choice"] }
pool = { agents = ["a0", "a1", "a2", "a3", "a4", "a5", "a6"] }
rule = { name = "weighted-plurality" }
quorum = { ballots = 7 }
early_stop = { enabled = false }
"#;
    let c = Catalog::load(
        &[SourceFile::new("a", agents)],
        &[SourceFile::new("p", policy)],
    )
    .unwrap();
    let services: Vec<(String, AgentService)> = (0..7)
        .map(|i| (format!("a{i}"), instant(format!("a{i}"), OPTIONS[i % 2])))
        .collect();
    let agent_specs: Vec<_> = c.agents.values().cloned().collect();
    let specs = agent_specs
        .iter()
        .cloned()
        .zip(services.iter().map(|(_, s)| s.clone()))
        .collect();
    let trust = MemoryTrustStore::new(TrustParams::default())
        .unwrap()
        .snapshot()
        .unwrap();
    (
        Governor::new(c.policy("p").unwrap().clone(), specs, trust),
        services,
        agent_specs,
    )
}

#[divan::bench(sample_count = 1000, sample_size = 10)]
fn governor_decision_7_instant_agents(bencher: Bencher<'_, '_>) {
    let rt = runtime();
    let (g, _) = setup();
    let d = Decision::choice("x", "d", "?", OPTIONS);
    bencher.bench_local(|| rt.block_on(g.decide(black_box(d.clone()))).unwrap());
}

#[divan::bench(sample_count = 1000, sample_size = 10)]
fn plain_join_all_and_tally_7_instant_agents(bencher: Bencher<'_, '_>) {
    let rt = runtime();
    let (_, services) = setup();
    let d = std::sync::Arc::new(Decision::choice("x", "d", "?", OPTIONS));
    bencher.bench_local(|| {
        rt.block_on(async {
            let replies = futures_util::future::join_all(
                services
                    .iter()
                    .map(|(_, s)| s.clone().oneshot(AgentRequest::new(d.clone()))),
            )
            .await;
            let ballots = replies.into_iter().map(|r| r.unwrap().ballot).collect();
            plain_tally(ballots)
        })
    });
}

/// The same `join_all`, over the agents wrapped in the Governor's per-agent stack (limit,
/// retry, breaker, timeout): what is left is the Governor's own work.
#[divan::bench(sample_count = 1000, sample_size = 10)]
fn plain_join_all_and_tally_7_stacked_agents(bencher: Bencher<'_, '_>) {
    let rt = runtime();
    let (_, services, specs) = setup_with_specs();
    let stacked: Vec<_> = specs
        .iter()
        .zip(&services)
        .map(|(spec, (_, s))| (spec.timeout_ms, conclave::layer::stack(spec, s.clone())))
        .collect();
    let d = std::sync::Arc::new(Decision::choice("x", "d", "?", OPTIONS));
    bencher.bench_local(|| {
        rt.block_on(async {
            let replies = futures_util::future::join_all(stacked.iter().map(|(ms, s)| {
                tokio::time::timeout(
                    std::time::Duration::from_millis(*ms),
                    s.clone().oneshot(AgentRequest::new(d.clone())),
                )
            }))
            .await;
            let ballots = replies
                .into_iter()
                .map(|r| r.unwrap().unwrap().ballot)
                .collect();
            plain_tally(ballots)
        })
    });
}

#[divan::bench(sample_count = 1000, sample_size = 10)]
fn plain_join_and_tally_7_instant_agents(bencher: Bencher<'_, '_>) {
    let rt = runtime();
    let (_, services) = setup();
    let d = std::sync::Arc::new(Decision::choice("x", "d", "?", OPTIONS));
    bencher.bench_local(|| {
        rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for (_, s) in &services {
                let s = s.clone();
                let req = AgentRequest::new(d.clone());
                set.spawn(async move { s.oneshot(req).await });
            }
            let mut ballots = Vec::new();
            while let Some(r) = set.join_next().await {
                ballots.push(r.unwrap().unwrap().ballot);
            }
            plain_tally(ballots)
        })
    });
}
