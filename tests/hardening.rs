//! What probing `conclave serve` found (issue 28), each as a test: admission bounds, client
//! ids and idempotency keys, the ratchet counting only the decisions' own hand-overs, a
//! server that stays responsive under a maximal request and slow clients.

use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave::audit::{AuditLog, Entry, MemoryAuditLog};
use conclave::serve::http::HttpLimits;
use conclave::serve::{ServeConfig, ServeState, router};
use conclave::trust::TrustParams;
use conclave::trust::store::{MemoryTrustStore, TrustStore};
use conclave::{Catalog, Directives, Director};
use serde_json::{Value, json};

fn agents(n: usize) -> String {
    (1..=n)
        .map(|i| {
            format!(
                "[[agent]]\nid = \"a{i}\"\nkind = \"scripted\"\nscripted = {{ competence = {{ default = 0.8 }}, latency = {{ median_ms = 2, p99_ms = 5 }} }}\n\n"
            )
        })
        .collect()
}

fn policy(id: &str, domain: &str, agents: usize, extra: &str) -> String {
    let pool = (1..=agents)
        .map(|i| format!("\"a{i}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut extra = extra.to_owned();
    if !extra.contains("thresholds") {
        extra += "\nthresholds = { accept = 0.0, arbitrate = 0.0, human = 0.0 }";
    }
    if !extra.contains("early_stop") {
        extra += "\nearly_stop = { enabled = false }";
    }
    format!(
        "id = \"{id}\"\ndescription = \"A test policy.\"\napplies = {{ domains = [\"{domain}\"], kinds = [\"choice\"] }}\npool = {{ agents = [{pool}] }}\nrule = {{ name = \"weighted-plurality\" }}\nquorum = {{ ballots = 2 }}\n{extra}\n"
    )
}

fn catalog(agents: &str, policies: &[String]) -> Catalog {
    let policies: Vec<&str> = policies.iter().map(String::as_str).collect();
    crate::support::catalog_of(agents, &policies)
}

/// Serves `state` with conclave's own server loop on an ephemeral loopback port.
async fn start(state: ServeState, limits: HttpLimits) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(conclave::serve::http::serve(
        listener,
        router(Arc::new(state)),
        limits,
        std::future::pending(),
    ));
    base
}

async fn post(url: &str, body: &Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("text");
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

fn decision(id: &str, domain: &str, options: &[&str]) -> Value {
    json!({"id": id, "question": "Which one?", "domain": domain, "kind": "choice", "options": options})
}

/// One option, duplicate, empty or too many options, oversized questions and options, bad
/// client ids and keys: each refused with a status and a message, no agent asked, nothing
/// recorded; the library refuses the same decisions.
#[tokio::test]
async fn malformed_and_oversized_decisions_are_refused_before_any_agent_is_asked() {
    let catalog = catalog(&agents(3), &[policy("desk", "trading", 3, "")]);
    let log = Arc::new(MemoryAuditLog::default());
    let trust = Arc::new(MemoryTrustStore::new(TrustParams::default()).expect("trust"));
    let state = ServeState::new(catalog.clone(), trust, log.clone(), ServeConfig::default())
        .expect("state");
    let base = start(state, HttpLimits::default()).await;
    let url = format!("{base}/v1/decisions");
    let many: Vec<String> = (0..65).map(|i| format!("o{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let long_option = "x".repeat(501);
    let cases: Vec<(&str, Value, u16, &str, &str)> = vec![
        (
            "one option",
            decision("d-1", "trading", &["buy"]),
            422,
            "refused",
            "at least two options",
        ),
        (
            "no option",
            decision("d-2", "trading", &[]),
            422,
            "refused",
            "at least two options",
        ),
        (
            "a duplicate",
            decision("d-3", "trading", &["buy", "sell", "buy"]),
            422,
            "refused",
            "twice",
        ),
        (
            "an empty option",
            decision("d-4", "trading", &["buy", " "]),
            422,
            "refused",
            "empty",
        ),
        (
            "65 options",
            decision("d-5", "trading", &many),
            422,
            "refused",
            "65 options",
        ),
        (
            "a long option",
            decision("d-6", "trading", &["buy", &long_option]),
            422,
            "refused",
            "501 characters",
        ),
        (
            "a long question",
            json!({"id": "d-7", "question": "q".repeat(40_000), "domain": "trading", "kind": "choice", "options": ["buy", "sell"]}),
            422,
            "refused",
            "40000 characters",
        ),
        (
            "a numeric id",
            decision("1", "trading", &["buy", "sell"]),
            400,
            "invalid_request",
            "sequence number",
        ),
        (
            "an empty id",
            decision("", "trading", &["buy", "sell"]),
            400,
            "invalid_request",
            "1 to 128",
        ),
        (
            "a path in the id",
            decision("../../x", "trading", &["buy", "sell"]),
            400,
            "invalid_request",
            "letters, digits",
        ),
        (
            "a NUL in the id",
            decision("a\u{0}b", "trading", &["buy", "sell"]),
            400,
            "invalid_request",
            "letters, digits",
        ),
        (
            "a long id",
            decision(&"i".repeat(129), "trading", &["buy", "sell"]),
            400,
            "invalid_request",
            "1 to 128",
        ),
        (
            "a control character in the key",
            json!({"id": "d-8", "question": "Which?", "domain": "trading", "kind": "choice", "options": ["buy", "sell"], "idempotency_key": "k\n1"}),
            400,
            "invalid_request",
            "printable",
        ),
    ];
    for (what, body, status, code, says) in cases {
        let (got, v) = post(&url, &body).await;
        assert_eq!(
            (got, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{what}: {v}"
        );
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{what}: {message}");
    }
    assert_eq!(log.records().expect("records").len(), 0, "nothing recorded");

    // The library refuses the same decisions (no panic, no agent asked).
    let agents = catalog
        .agents
        .values()
        .map(|spec| {
            let agent = conclave::ScriptedAgent::new(spec.clone()).expect("scripted");
            (
                spec.clone(),
                conclave::tower::util::BoxCloneSyncService::new(agent),
            )
        })
        .collect();
    let policy = catalog.policies[0].clone();
    let trust = MemoryTrustStore::new(TrustParams::default()).expect("trust");
    let governor = conclave::Governor::new(policy, agents, trust.snapshot().expect("snapshot"));
    for options in [vec!["buy"], vec!["buy", "buy"], vec!["", "sell"]] {
        let d = conclave::Decision::choice("lib-1", "trading", "Which one?", options.clone());
        let err = governor.decide(d).await.expect_err("refused");
        assert!(
            matches!(err, conclave::GovernorError::Invalid(_)),
            "{options:?}: {err}"
        );
    }
}

/// A decision id is recorded once: a second decision with it is refused (409), and an id is
/// never read as another record's sequence number. A key reused with another request is
/// refused (422) instead of answered with the first request's verdict.
#[tokio::test]
async fn ids_are_unique_and_a_reused_key_with_another_request_is_refused() {
    let catalog = catalog(&agents(3), &[policy("desk", "trading", 3, "")]);
    let log = Arc::new(MemoryAuditLog::default());
    let trust = Arc::new(MemoryTrustStore::new(TrustParams::default()).expect("trust"));
    let state =
        ServeState::new(catalog, trust, log.clone(), ServeConfig::default()).expect("state");
    let base = start(state, HttpLimits::default()).await;
    let url = format!("{base}/v1/decisions");
    let (status, v) = post(&url, &decision("trade-7", "trading", &["buy", "sell"])).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = post(&url, &decision("trade-7", "trading", &["hold", "sell"])).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("duplicate_id")),
        "{v}"
    );
    assert_eq!(log.records().expect("records").len(), 1);
    // A negative tolerance grades nothing.
    let (status, v) = post(
        &format!("{base}/v1/decisions/trade-7/outcome"),
        &json!({"correct": "buy", "tolerance": -1.0}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("tolerance"),
        "{v}"
    );
    assert_eq!(log.records().expect("records").len(), 1);

    let keyed = |id: &str, question: &str, options: &[&str]| json!({"id": id, "question": question, "domain": "trading", "kind": "choice", "options": options, "idempotency_key": "order-42"});
    let (status, first) = post(&url, &keyed("k-1", "Buy or sell?", &["buy", "sell"])).await;
    assert_eq!(status, 200, "{first}");
    // The same request again: the same verdict, nothing new recorded.
    let (status, again) = post(&url, &keyed("k-1", "Buy or sell?", &["buy", "sell"])).await;
    assert_eq!(
        (status, &again["decision"]),
        (200, &first["decision"]),
        "{again}"
    );
    // Another request under the key: refused, naming the decision the key belongs to.
    let (status, v) = post(&url, &keyed("k-2", "Approve the loan?", &["yes", "no"])).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("k-1"),
        "{v}"
    );
    assert_eq!(log.records().expect("records").len(), 2);
}

/// The ratchet counts hand-overs for the decision's own reasons only, and only recorded
/// ones: decisions starved by a spent budget or escalated because the domain is suspended
/// leave the count alone; four too-weak verdicts suspend their domain, the suspension
/// recorded in the log.
#[tokio::test]
async fn the_ratchet_counts_only_the_decisions_own_hand_overs() {
    let policies = [
        // Confidence never reaches 1: every verdict is too weak and goes to a human.
        policy(
            "weak",
            "weak",
            3,
            "thresholds = { accept = 1.0, arbitrate = 1.0, human = 1.0 }",
        ),
        // Not one call fits in this budget: the decision is starved.
        policy(
            "starved",
            "starved",
            3,
            "budget = { total = { tokens = 10 } }",
        ),
        policy("suspended", "suspended", 3, ""),
    ];
    let catalog = catalog(&agents(3), &policies);
    let log = Arc::new(MemoryAuditLog::default());
    let trust = Arc::new(MemoryTrustStore::new(TrustParams::default()).expect("trust"));
    let mut orders = Directives::default();
    orders.suspend(
        "suspended",
        "alice",
        "audit in progress",
        conclave::audit::now(),
    );
    let book = Arc::new(conclave::MemoryOrderBook::new(orders, log.clone()));
    let director = Director::kept_in(book).expect("director");
    let state = ServeState::new(catalog, trust, log.clone(), ServeConfig::default())
        .and_then(|s| s.with_director(director.clone()))
        .expect("state");
    let base = start(state, HttpLimits::default()).await;
    let url = format!("{base}/v1/decisions");
    for i in 0..8 {
        for domain in ["starved", "suspended"] {
            let (status, v) = post(
                &url,
                &decision(&format!("{domain}-{i}"), domain, &["buy", "sell"]),
            )
            .await;
            assert_eq!(
                (status, v["outcome"]["outcome"].as_str()),
                (200, Some("human")),
                "{v}"
            );
        }
    }
    let now = director.current();
    assert!(now.suspension("starved").is_none(), "{now:?}");
    assert!(
        now.handovers.get("starved").is_none_or(Vec::is_empty),
        "{now:?}"
    );
    assert!(
        now.handovers.get("suspended").is_none_or(Vec::is_empty),
        "{now:?}"
    );
    for i in 0..4 {
        let (status, v) = post(
            &url,
            &decision(&format!("weak-{i}"), "weak", &["buy", "sell"]),
        )
        .await;
        assert_eq!(
            (status, v["outcome"]["outcome"].as_str()),
            (200, Some("human")),
            "{v}"
        );
        let suspended = director.current().suspension("weak").cloned();
        assert_eq!(
            suspended.is_some(),
            i == 3,
            "after {} hand-overs: {suspended:?}",
            i + 1
        );
    }
    let ratchets = log
        .records()
        .expect("records")
        .into_iter()
        .filter(|r| matches!(&r.entry, Entry::Directive(d) if d.action == "ratchet" && d.domain == "weak"))
        .count();
    assert_eq!(ratchets, 1);
}

/// An audit log that fails every append while it is down (a store or database outage).
#[derive(Debug, Default)]
struct Flaky {
    log: MemoryAuditLog,
    down: std::sync::atomic::AtomicBool,
}

impl AuditLog for Flaky {
    fn append(&self, entry: &Entry) -> Result<conclave::audit::AuditRecord, conclave::AuditError> {
        if self.down.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(conclave::AuditError::Unreadable {
                seq: 0,
                detail: "the disk is gone".to_owned(),
            });
        }
        self.log.append(entry)
    }
    fn blocks(&self) -> bool {
        false
    }
    fn get(&self, seq: u64) -> Result<Option<conclave::audit::AuditRecord>, conclave::AuditError> {
        self.log.get(seq)
    }
    fn records(&self) -> Result<Vec<conclave::audit::AuditRecord>, conclave::AuditError> {
        self.log.records()
    }
    fn verify(&self) -> Result<conclave::audit::Verification, conclave::AuditError> {
        self.log.verify()
    }
}

/// During an outage of the audit log decisions answer 503 with Retry-After, and their
/// hand-overs do not count: however many fail, the domain is not suspended.
#[tokio::test]
async fn an_outage_answers_503_and_trips_no_ratchet() {
    let weak = policy(
        "weak",
        "weak",
        3,
        "thresholds = { accept = 1.0, arbitrate = 1.0, human = 1.0 }",
    );
    let catalog = catalog(&agents(3), &[weak]);
    let log = Arc::new(Flaky::default());
    let trust = Arc::new(MemoryTrustStore::new(TrustParams::default()).expect("trust"));
    let director = Director::new(Directives::default());
    let state = ServeState::new(catalog, trust, log.clone(), ServeConfig::default())
        .and_then(|s| s.with_director(director.clone()))
        .expect("state");
    let base = start(state, HttpLimits::default()).await;
    let url = format!("{base}/v1/decisions");
    log.down.store(true, std::sync::atomic::Ordering::Relaxed);
    for i in 0..8 {
        let resp = reqwest::Client::new()
            .post(&url)
            .json(&decision(&format!("out-{i}"), "weak", &["buy", "sell"]))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status().as_u16(), 503);
        assert!(resp.headers().contains_key("retry-after"));
    }
    let now = director.current();
    assert!(now.suspension("weak").is_none(), "{now:?}");
    assert!(
        now.handovers.get("weak").is_none_or(Vec::is_empty),
        "{now:?}"
    );
    // Back up: the same decisions are recorded, and their hand-overs count.
    log.down.store(false, std::sync::atomic::Ordering::Relaxed);
    let (status, v) = post(&url, &decision("out-0", "weak", &["buy", "sell"])).await;
    assert_eq!(
        (status, v["outcome"]["outcome"].as_str()),
        (200, Some("human")),
        "{v}"
    );
    assert_eq!(
        director.current().handovers.get("weak").map(Vec::len),
        Some(1)
    );
}

/// A maximal request (64 options, the longest question, nine agents) does not stall the
/// server: `/healthz` answers in well under 100 ms (median of 20) while four run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_while_maximal_requests_run() {
    let catalog = catalog(
        &agents(9),
        &[policy(
            "desk",
            "trading",
            9,
            "early_stop = { enabled = true, risk = 0.05 }",
        )],
    );
    let trust = Arc::new(MemoryTrustStore::new(TrustParams::default()).expect("trust"));
    let state = ServeState::new(
        catalog,
        trust,
        Arc::new(MemoryAuditLog::default()),
        ServeConfig {
            token: None,
            body_limit: 1 << 20,
        },
    )
    .expect("state");
    let base = start(state, HttpLimits::default()).await;
    let options: Vec<String> = (0..64)
        .map(|i| format!("option {i:02} {}", "y".repeat(480)))
        .collect();
    let mut running = Vec::new();
    for r in 0..4 {
        let body = json!({"id": format!("max-{r}"), "question": "q".repeat(32_000), "domain": "trading", "kind": "choice", "options": options});
        let url = format!("{base}/v1/decisions");
        running.push(tokio::spawn(async move { post(&url, &body).await }));
    }
    let client = reqwest::Client::new();
    let mut took = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let r = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(r.status().as_u16(), 200);
        took.push(t.elapsed());
    }
    took.sort();
    assert!(
        took[10] < Duration::from_millis(100),
        "median {:?}",
        took[10]
    );
    for r in running {
        let (status, v) = r.await.expect("join");
        assert_eq!(status, 200, "{v}");
    }
}

/// Slow clients (a request head sent a byte at a time, or nothing at all) hold a connection
/// only until the header timeout, and no more of them than the connection cap: a real
/// request behind 200 of them is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_cannot_starve_real_requests() {
    use tokio::io::AsyncWriteExt;
    let catalog = catalog(&agents(3), &[policy("desk", "trading", 3, "")]);
    let trust = Arc::new(MemoryTrustStore::new(TrustParams::default()).expect("trust"));
    let state = ServeState::new(
        catalog,
        trust,
        Arc::new(MemoryAuditLog::default()),
        ServeConfig::default(),
    )
    .expect("state");
    let limits = HttpLimits {
        header_timeout: Duration::from_millis(500),
        max_connections: 32,
        shutdown_grace: Duration::from_secs(1),
    };
    let base = start(state, limits).await;
    let addr = base.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for i in 0..200 {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        if i % 2 == 0 {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
        }
        slow.push(s);
    }
    // The slow ones keep trickling (a header line each 100 ms) while the real request waits.
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            for s in &mut slow {
                let _ = s.write_all(b"X-Slow: 1\r\n").await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let (status, v) = tokio::time::timeout(
        Duration::from_secs(60),
        post(
            &format!("{base}/v1/decisions"),
            &decision("real-1", "trading", &["buy", "sell"]),
        ),
    )
    .await
    .expect("the real request was answered");
    assert_eq!(status, 200, "{v}");
    trickle.abort();
}

/// The server stops within its shutdown deadline even when a request never finishes, and
/// says that it cut it; a request that finishes in time is drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_has_a_deadline() {
    use conclave::serve::http::Stopped;
    for (handler_secs, expect) in [(3600, Stopped::Cut), (0, Stopped::Drained)] {
        let (started, mut running) = tokio::sync::mpsc::channel::<()>(1);
        let app = axum::Router::new().route(
            "/slow",
            axum::routing::get(move || {
                let started = started.clone();
                async move {
                    let _ = started.send(()).await;
                    tokio::time::sleep(Duration::from_secs(handler_secs)).await;
                    "done"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/slow", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = HttpLimits {
            header_timeout: Duration::from_secs(3600),
            max_connections: 8,
            shutdown_grace: Duration::from_millis(300),
        };
        let server = tokio::spawn(conclave::serve::http::serve(listener, app, limits, async {
            let _ = stopped.await;
        }));
        let request = tokio::spawn(async move { reqwest::get(url).await });
        // The handler runs: the request is in flight when the signal comes.
        running.recv().await.expect("the handler started");
        stop.send(()).expect("stop");
        let ended = tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .expect("stopped within the deadline")
            .expect("join");
        assert_eq!(ended, expect);
        let answered = request
            .await
            .expect("join")
            .is_ok_and(|r| r.status().is_success());
        assert_eq!(answered, expect == Stopped::Drained);
    }
}

/// Krum's size guard counts dimensions: 2,000 vectors of 100 dimensions (4·10⁸ distance
/// terms, minutes of work) are refused at once, 500 of them counted.
#[test]
fn krum_refuses_work_by_ballots_and_dimensions() {
    use conclave::aggregate::{Rule, TallyError, TallyInput, tally};
    use conclave::{Ballot, Kind};
    let ballots = |n: usize| {
        (0..n)
            .map(|i| {
                Ballot::vector(
                    format!("a{i}"),
                    (0..100).map(|j| ((i * 7 + j) % 13) as f64).collect(),
                )
            })
            .collect::<Vec<_>>()
    };
    let rule = Rule::Krum { f: 1 };
    let err = tally(
        &TallyInput::new(Kind::Vector, Vec::<String>::new(), ballots(2_000)),
        &rule,
    )
    .expect_err("too much work");
    assert!(
        matches!(
            err,
            TallyError::TooManyForKrum {
                n: 2_000,
                dimensions: 100,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("100 dimensions"), "{err}");
    let result = tally(
        &TallyInput::new(Kind::Vector, Vec::<String>::new(), ballots(500)),
        &rule,
    )
    .expect("counted");
    assert!(
        result.vector.as_ref().is_some_and(|p| p.len() == 100),
        "{result:?}"
    );
}
