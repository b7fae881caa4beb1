//! The eval runner's throughput (divan): `cargo bench --bench eval`.
//!
//! 200 multiple-choice items through `conclave::eval::evaluate` (one scenario, one seed: Governor,
//! online trust, baselines on the whole pool, metrics, report) on simulated time, with
//! pools of 5, 20 and 100 scripted agents, against the baseline: the same 200 decisions
//! through a bare Governor (no trust learning, no baselines, no report) on the same pool.
//! The ratio is the harness's own cost.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use conclave::agent::AgentService;
use conclave::agent::scripted::ScriptedAgent;
use conclave::decision::{Decision, Truth};
use conclave::eval::{RunOptions, Suite, evaluate};
use conclave::governor::Governor;
use conclave::trust::TrustParams;
use conclave::trust::store::{MemoryTrustStore, TrustSnapshot, TrustStore};
use divan::Bencher;
use tower::util::BoxCloneSyncService;

fn main() {
    divan::main();
}

const ITEMS: usize = 200;

/// Writes a suite of `ITEMS` items over `n` agents into `dir`.
fn write_suite(dir: &Path, n: usize) -> Suite {
    let mut agents = String::new();
    for i in 0..n {
        let c = 0.6 + 0.25 * i as f64 / n.max(2) as f64;
        agents += &format!(
            "[[agent]]\nid = \"a{i:03}\"\nkind = \"scripted\"\ndomains = [\"d\"]\nfamily = \"f{i}\"\nscripted = {{ competence = {{ default = {c} }} }}\n\n"
        );
    }
    std::fs::write(dir.join("agents.toml"), agents).unwrap();
    let ids: Vec<String> = (0..n).map(|i| format!("\"a{i:03}\"")).collect();
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            "id = \"p\"\ndescription = \"Runner benchmark.\"\napplies = {{ domains = [\"d\"], kinds = [\"choice\"] }}\npool = {{ agents = [{}], max = {n} }}\nrule = {{ name = \"log-odds\" }}\nquorum = {{ ballots = 3 }}\nearly_stop = {{ enabled = true, risk = 0.01 }}\n",
            ids.join(", ")
        ),
    )
    .unwrap();
    let mut items = String::new();
    for k in 0..ITEMS {
        let truth = ["a", "b", "c", "d"][k % 4];
        items += &format!(
            "{{\"id\": \"i{k}\", \"question\": \"Q{k}?\", \"kind\": \"choice\", \"options\": [\"a\", \"b\", \"c\", \"d\"], \"truth\": \"{truth}\", \"domain\": \"d\"}}\n"
        );
    }
    std::fs::write(dir.join("items.jsonl"), items).unwrap();
    std::fs::write(
        dir.join("suite.toml"),
        "[suite]\nname = \"bench\"\nagents = [\"agents.toml\"]\npolicies = [\"policy.toml\"]\ndata = [\"items.jsonl\"]\nseeds = 1\n",
    )
    .unwrap();
    Suite::load(&dir.join("suite.toml")).unwrap()
}

fn fresh() -> TrustSnapshot {
    MemoryTrustStore::new(TrustParams::default())
        .unwrap()
        .snapshot()
        .unwrap()
}

fn paused() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

#[divan::bench(args = [5, 20, 100], sample_count = 5, sample_size = 1)]
fn runner(bencher: Bencher<'_, '_>, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let suite = write_suite(dir.path(), n);
    let start = fresh();
    bencher.bench_local(|| {
        let report = paused()
            .block_on(evaluate(&suite, &start, &RunOptions::default()))
            .unwrap();
        assert_eq!(report.first_seed()[0].decisions, ITEMS);
    });
}

#[divan::bench(args = [5, 20, 100], sample_count = 5, sample_size = 1)]
fn bare_governor(bencher: Bencher<'_, '_>, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let suite = write_suite(dir.path(), n);
    let services: Vec<(conclave::policy::AgentSpec, AgentService)> = suite
        .catalog
        .agents
        .values()
        .map(|s| {
            (
                s.clone(),
                BoxCloneSyncService::new(ScriptedAgent::new(s.clone()).unwrap()),
            )
        })
        .collect();
    let governor = Governor::new(suite.catalog.policies[0].clone(), services, fresh());
    let decisions: Vec<Decision> = suite
        .items
        .iter()
        .map(|it| {
            Decision::choice(&it.id, &it.domain, &it.question, it.options.clone())
                .with_truth(it.truth.clone())
        })
        .collect();
    bencher.bench_local(|| {
        paused().block_on(async {
            for d in &decisions {
                let v = governor.decide(d.clone()).await.unwrap();
                assert!(matches!(d.truth, Some(Truth::Option(_))) && v.calls > 0);
            }
        });
    });
}
