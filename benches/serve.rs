//! `conclave serve` against calling the same scripted agents directly:
//! `cargo bench --bench serve`.
//!
//! Three scripted agents that answer at once (latency 0). The baseline asks the three
//! directly (concurrently) and tallies their ballots; the governed path sends a chat
//! completion over loopback HTTP to the server (axum, the Governor, the audit log and trust
//! on sled; with `CONCLAVE_BENCH_DATABASE_URL=postgres://…` set, also on PostgreSQL: trust,
//! the audit chain and the policy's shared budget there). Each is driven by 1, 16 and 256
//! concurrent clients; the figures are throughput and the p50/p99 latency of one request,
//! and the governed path's overhead over the baseline in the same run.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave::agent::{AgentRequest, AgentService};
use conclave::aggregate::{Kind, Rule, TallyInput, tally};
use conclave::audit::{PgAuditLog, SledAuditLog};
use conclave::decision::Decision;
use conclave::policy::{Catalog, SourceFile};
use conclave::postgres::{Database, PgSpend};
use conclave::serve::{ServeConfig, ServeState, router};
use conclave::store::Store;
use conclave::trust::TrustParams;
use conclave::trust::store::{PgTrustStore, SledTrustStore};
use tower::ServiceExt;

const AGENTS: &str = r#"
[[agent]]
id = "a1"
kind = "scripted"
scripted = { competence = { default = 0.9 }, latency = { median_ms = 0, p99_ms = 0 } }

[[agent]]
id = "a2"
kind = "scripted"
scripted = { competence = { default = 0.9 }, latency = { median_ms = 0, p99_ms = 0 } }

[[agent]]
id = "a3"
kind = "scripted"
scripted = { competence = { default = 0.9 }, latency = { median_ms = 0, p99_ms = 0 } }
"#;

const POLICY: &str = r#"id = "desk"
description = "Serve benchmark: a shared budget too large to bind, so that every call reserves and settles."
applies = { domains = ["trading"], kinds = ["choice"] }
pool = { agents = ["a1", "a2", "a3"] }
rule = { name = "weighted-plurality" }
quorum = { ballots = 3 }
early_stop = { enabled = false }
thresholds = { accept = 0.0, arbitrate = 0.0, human = 0.0 }
budget = { total = { tokens = 1_000_000_000_000 } }
"#;

fn catalog() -> Catalog {
    Catalog::load(
        &[SourceFile::new("agents.toml", AGENTS)],
        &[SourceFile::new("policy.toml", POLICY)],
    )
    .unwrap()
}

/// Runs `requests` calls of `one` from `clients` concurrent clients: (throughput per
/// second, p50, p99).
async fn drive<F, Fut>(clients: usize, requests: usize, one: F) -> (f64, Duration, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let one = Arc::new(one);
    let started = Instant::now();
    let per = requests / clients;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let one = one.clone();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::with_capacity(per);
            for k in 0..per {
                let t = Instant::now();
                one(c * per + k).await;
                times.push(t.elapsed());
            }
            times
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort();
    let q = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    (all.len() as f64 / elapsed.as_secs_f64(), q(0.5), q(0.99))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let c = catalog();
    let policy = c.policy("desk").unwrap().clone();
    let services: Vec<AgentService> = conclave::agent::build_for(&policy, &c)
        .unwrap()
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let trust = Arc::new(SledTrustStore::new(&store, TrustParams::default()).unwrap());
    let log = Arc::new(SledAuditLog::new(&store).unwrap());
    let state = ServeState::new(c.clone(), trust, log, ServeConfig::default()).unwrap();
    let mut urls = vec![("sled", start(state).await)];
    if let Ok(db_url) = std::env::var("CONCLAVE_BENCH_DATABASE_URL") {
        let db = tokio::task::spawn_blocking(move || Database::connect(&db_url, 16).unwrap())
            .await
            .unwrap();
        let trust = Arc::new(PgTrustStore::new(&db, TrustParams::default()).unwrap());
        let log = Arc::new(PgAuditLog::new(&db));
        let state = ServeState::new(c, trust, log, ServeConfig::default())
            .and_then(|s| s.with_spend(Arc::new(PgSpend::new(&db))))
            .unwrap();
        urls.push(("PostgreSQL", start(state).await));
    }
    let client = reqwest::Client::new();
    let mut header = "| clients | direct: req/s, p50, p99 |".to_owned();
    for (name, _) in &urls {
        header += &format!(" governed over HTTP ({name}): req/s, p50, p99 | overhead p50 / p99 |");
    }
    println!("{header}");
    println!("|---:|---|{}", "---|---|".repeat(urls.len()));
    for clients in [1usize, 16, 256] {
        let requests = 2048.max(clients * 8);
        let services = services.clone();
        let direct = drive(clients, requests, move |n| {
            let services = services.clone();
            async move {
                let d = Arc::new(
                    Decision::choice(
                        format!("q{n}"),
                        "trading",
                        "Trade?",
                        ["buy", "hold", "sell"],
                    )
                    .with_seed(n as u64),
                );
                let calls = services
                    .iter()
                    .map(|s| s.clone().oneshot(AgentRequest::new(d.clone())));
                let ballots: Vec<_> = futures_util::future::join_all(calls)
                    .await
                    .into_iter()
                    .filter_map(Result::ok)
                    .map(|r| r.ballot)
                    .collect();
                let input = TallyInput::new(Kind::Choice, ["buy", "hold", "sell"], ballots);
                std::hint::black_box(tally(&input, &Rule::WeightedPlurality).unwrap());
            }
        })
        .await;
        let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
        let mut row = format!(
            "| {clients} | {:.0}, {}, {} |",
            direct.0,
            ms(direct.1),
            ms(direct.2)
        );
        for (_, url) in &urls {
            let (client, url) = (client.clone(), url.clone());
            let governed = drive(clients, requests, move |n| {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    let body = serde_json::json!({
                        "model": "desk",
                        "messages": [{"role": "user", "content": "Trade?"}],
                        "conclave": {"options": ["buy", "hold", "sell"], "seed": n},
                    });
                    let r = client.post(&url).json(&body).send().await.unwrap();
                    let status = r.status();
                    let bytes = r.bytes().await.unwrap();
                    assert!(
                        status.is_success(),
                        "{status}: {}",
                        String::from_utf8_lossy(&bytes)
                    );
                    std::hint::black_box(bytes);
                }
            })
            .await;
            row += &format!(
                " {:.0}, {}, {} | {} / {} |",
                governed.0,
                ms(governed.1),
                ms(governed.2),
                ms(governed.1.saturating_sub(direct.1)),
                ms(governed.2.saturating_sub(direct.2)),
            );
        }
        println!("{row}");
    }
}

/// Serves `state` on an ephemeral loopback port: its chat completions URL.
async fn start(state: ServeState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/v1/chat/completions",
        listener.local_addr().unwrap()
    );
    // The server loop `conclave serve` runs (header timeout, connection cap).
    tokio::spawn(conclave::serve::http::serve(
        listener,
        router(Arc::new(state)),
        conclave::serve::http::HttpLimits::default(),
        std::future::pending(),
    ));
    url
}
