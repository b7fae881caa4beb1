//! The PostgreSQL backend against a real PostgreSQL server (from the distribution's packages,
//! started in a temporary directory): the trust store's contract, one audit chain appended
//! by many connections, idempotency keys, tampering, budget reservations across handles,
//! migrations and bad URLs.

use std::sync::{Arc, OnceLock};

use conclave::aggregate::{Kind, Rule, TallyInput};
use conclave::audit::{AuditError, AuditLog, DecisionRecord, Entry, PgAuditLog};
use conclave::ballot::Ballot;
use conclave::governor::spend::{Charge, SpendAccount};
use conclave::postgres::{Database, DbError, PgSpend};
use conclave::trust::TrustParams;
use conclave::trust::store::{PgTrustStore, TrustStore};

use crate::support::TempPostgres;
use crate::trust_store::{contract, graded};

/// One server for the module's tests; each test has a database of its own.
fn server() -> &'static TempPostgres {
    static SERVER: OnceLock<TempPostgres> = OnceLock::new();
    SERVER.get_or_init(TempPostgres::start)
}

/// A fresh, empty database on the shared server; its URL.
pub(crate) fn fresh_database(name: &str) -> String {
    let base = &server().url;
    let mut c = postgres::Client::connect(base, postgres::NoTls).unwrap();
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .unwrap();
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    base.replace("/postgres", &format!("/{name}"))
}

fn decision(i: u64, key: Option<&str>) -> Entry {
    let input = TallyInput::new(
        Kind::Choice,
        ["buy", "hold"],
        vec![
            Ballot::choice("econ", "hold"),
            Ballot::choice("news", if i.is_multiple_of(3) { "buy" } else { "hold" }),
        ],
    );
    let mut d = DecisionRecord::tallied(
        format!("d{i}"),
        "Buy or hold?",
        "finance",
        input,
        Rule::Plurality,
    )
    .unwrap();
    d.idempotency_key = key.map(str::to_owned);
    Entry::Decision(Box::new(d))
}

#[test]
fn the_trust_store_keeps_the_contract_and_is_shared_by_every_handle() {
    let url = fresh_database("trust_contract");
    let db = Database::connect(&url, 2).unwrap();
    contract(&PgTrustStore::new(&db, TrustParams::default()).unwrap());
    // Another handle (another replica) sees what this one writes.
    let one = PgTrustStore::new(&db, TrustParams::default()).unwrap();
    one.apply(&graded("after-reset", &[("i9", &[("econ", true)])]))
        .unwrap();
    let other_db = Database::connect(&url, 1).unwrap();
    let other = PgTrustStore::new(&other_db, TrustParams::default()).unwrap();
    let snap = other.snapshot().unwrap();
    assert_eq!(snap.get("econ", "finance").unwrap().n, 1);
    assert_eq!(other.version().unwrap(), snap.version);
    assert_eq!(other.batches().unwrap().len(), 1);
}

#[test]
fn concurrent_trust_batches_from_several_replicas_all_land_once() {
    let url = fresh_database("trust_concurrent");
    let handles: Vec<Database> = (0..3)
        .map(|_| Database::connect(&url, 4).unwrap())
        .collect();
    std::thread::scope(|s| {
        for t in 0..9 {
            let db = &handles[t % 3];
            s.spawn(move || {
                let store = PgTrustStore::new(db, TrustParams::default()).unwrap();
                for b in 0..6 {
                    let agent = ["econ", "news", "gen"][b % 3];
                    store
                        .apply(&graded(
                            &format!("t{t}-b{b}"),
                            &[(&format!("i{t}-{b}"), &[(agent, b % 2 == 0)])],
                        ))
                        .unwrap();
                }
            });
        }
    });
    let store = PgTrustStore::new(&handles[0], TrustParams::default()).unwrap();
    let snap = store.snapshot().unwrap();
    // 54 batches, each one graded item: serializable transactions lost none, doubled none.
    assert_eq!(snap.version, 54);
    assert_eq!(store.batches().unwrap().len(), 54);
    let graded_items: u64 = ["econ", "news", "gen"]
        .iter()
        .map(|a| snap.get(a, "finance").unwrap().n)
        .sum();
    assert_eq!(graded_items, 54);
    // The history is one gap-free sequence: each outcome moved the agent's record in its
    // domain and across domains.
    let mut seqs: Vec<u64> = ["econ", "news", "gen"]
        .iter()
        .flat_map(|a| store.history(a).unwrap())
        .map(|e| e.seq)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=108).collect::<Vec<_>>());
}

#[test]
fn many_appenders_on_several_handles_make_one_verifiable_chain() {
    let url = fresh_database("audit_chain");
    let handles: Vec<Database> = (0..3)
        .map(|_| Database::connect(&url, 4).unwrap())
        .collect();
    std::thread::scope(|s| {
        for t in 0..6u64 {
            let log = PgAuditLog::new(&handles[(t % 3) as usize]);
            s.spawn(move || {
                for i in 0..40 {
                    let n = t * 1000 + i;
                    log.append(&decision(n, Some(&format!("key-{n}")))).unwrap();
                }
            });
        }
    });
    let log = PgAuditLog::new(&handles[1]);
    let v = log.verify().unwrap();
    assert_eq!((v.records, v.first_broken.is_none()), (240, true), "{v:?}");
    let records = log.records().unwrap();
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=240).collect::<Vec<_>>()
    );
    // A key is recorded once: a second decision with it is refused, the chain unchanged.
    let err = log.append(&decision(9_999, Some("key-2005"))).unwrap_err();
    assert!(
        matches!(err, AuditError::DuplicateKey(ref k) if k == "key-2005"),
        "{err}"
    );
    let found = log.find_key("key-2005").unwrap().unwrap();
    assert!(matches!(&found.entry, Entry::Decision(d) if d.id == "d2005"));
    assert!(log.find_key("no-such-key").unwrap().is_none());
    assert_eq!(
        log.find("d3007").unwrap().seq,
        log.find_key("key-3007").unwrap().unwrap().seq
    );
    assert_eq!(log.verify().unwrap().records, 240);

    // Rewriting a record in the database is caught, at that record.
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.execute(
        "UPDATE conclave.audit SET record = overlay(record placing '\\x20'::bytea from 80 for 1) WHERE seq = 17",
        &[],
    )
    .unwrap();
    let v = log.verify().unwrap();
    assert_eq!(v.first_broken.as_ref().map(|b| b.seq), Some(17), "{v:?}");
    // So is a record removed at the end (the head still names it).
    let url2 = fresh_database("audit_truncated");
    let log2 = PgAuditLog::new(&Database::connect(&url2, 1).unwrap());
    for i in 0..3 {
        log2.append(&decision(i, None)).unwrap();
    }
    let mut c2 = postgres::Client::connect(&url2, postgres::NoTls).unwrap();
    c2.execute("DELETE FROM conclave.audit WHERE seq = 3", &[])
        .unwrap();
    assert!(log2.verify().unwrap().first_broken.is_some());
}

#[test]
fn budget_reservations_from_several_replicas_never_pass_the_cap() {
    let url = fresh_database("spend");
    let accounts: Vec<Arc<PgSpend>> = (0..3)
        .map(|_| Arc::new(PgSpend::new(&Database::connect(&url, 4).unwrap())))
        .collect();
    let cap = Charge {
        tokens: 10_000,
        usd: f64::INFINITY,
    };
    let call = Charge {
        tokens: 300,
        usd: 0.0,
    };
    let granted = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..12 {
            let account = accounts[t % 3].clone();
            let granted = &granted;
            s.spawn(move || {
                for _ in 0..20 {
                    if account.reserve("p", call, cap).unwrap() {
                        granted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let (r, sp) = account.totals("p").unwrap();
                        assert!(r.tokens + sp.tokens <= cap.tokens);
                        // Each call spends all it reserved.
                        account.settle("p", call, call).unwrap();
                    }
                }
            });
        }
    });
    let (reserved, spent) = accounts[0].totals("p").unwrap();
    assert_eq!(reserved.tokens, 0);
    // 240 asked, each 300 tokens: exactly ⌊10,000 / 300⌋ = 33 fit, whichever replica asked.
    assert_eq!(granted.into_inner(), 33);
    assert_eq!(spent.tokens, 33 * 300);
}

#[test]
fn migrations_are_versioned_and_a_newer_schema_is_refused() {
    let url = fresh_database("migrations");
    // Replicas starting together apply the schema once.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| Database::connect(&url, 1).unwrap());
        }
    });
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let versions: i64 = c
        .query_one("SELECT count(*) FROM conclave.migrations", &[])
        .unwrap()
        .get(0);
    assert_eq!(versions, 2);
    c.execute(
        "INSERT INTO conclave.migrations (version) VALUES (999)",
        &[],
    )
    .unwrap();
    let err = Database::connect(&url, 1).unwrap_err();
    assert!(
        matches!(err, DbError::NewerSchema { found: 999, .. }),
        "{err}"
    );
}

/// Migration 2 on a log written before it (where the grading race could record an outcome
/// twice): the first outcome of each decision holds the index, and no later outcome is
/// accepted.
#[test]
fn the_outcome_index_is_built_for_a_log_written_before_it() {
    use conclave::audit::OutcomeRecord;
    let url = fresh_database("settles_backfill");
    let db = Database::connect(&url, 1).unwrap();
    let log = PgAuditLog::new(&db);
    let d = log.append(&decision(1, None)).unwrap();
    let outcome = |answer: &str| {
        Entry::Outcome(OutcomeRecord {
            decision: d.seq,
            correct: answer.to_owned(),
            source: "test".to_owned(),
            graded: vec![],
            at: 0,
        })
    };
    let first = log.append(&outcome("hold")).unwrap();
    drop(log);
    drop(db);
    // Back to version 1, with a second, contradicting outcome as the race left them.
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.batch_execute(
        "DROP INDEX conclave.audit_settles;
         ALTER TABLE conclave.audit DROP COLUMN settles;
         DELETE FROM conclave.migrations WHERE version >= 2;",
    )
    .unwrap();
    c.execute(
        "INSERT INTO conclave.audit (seq, record)
         SELECT 99, overlay(record PLACING convert_to(replace(convert_from(substring(record FROM 65), 'UTF8'), '\"hold\"', '\"sell\"'), 'UTF8') FROM 65)
         FROM conclave.audit WHERE seq = $1",
        &[&i64::try_from(first.seq).unwrap()],
    )
    .unwrap();
    let db = Database::connect(&url, 1).unwrap();
    let log = PgAuditLog::new(&db);
    let held = log.settled(d.seq, "outcome").unwrap().unwrap();
    assert_eq!(held.seq, first.seq);
    let err = log.append(&outcome("buy")).unwrap_err();
    assert!(
        matches!(&err, AuditError::Settled { answer, record, .. } if answer == "hold" && *record == first.seq),
        "{err}"
    );
}

#[test]
fn bad_urls_and_unreachable_servers_fail_clearly_without_the_password() {
    let err = Database::connect("postgres://u:hunter2@127.0.0.1:1/x", 1).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DbError::Connect { .. }), "{text}");
    assert!(text.contains("127.0.0.1:1/x"), "{text}");
    assert!(!text.contains("hunter2"), "the password leaked: {text}");
    let err = Database::connect("postgres://[not a url", 1).unwrap_err();
    assert!(matches!(err, DbError::Url(_)), "{err}");
}

const REPLICA_AGENTS: &str = r#"
[[agent]]
id = "a1"
kind = "scripted"
scripted = { competence = { default = 0.9 }, latency = { median_ms = 3, p99_ms = 8 } }

[[agent]]
id = "a2"
kind = "scripted"
scripted = { competence = { default = 0.8 }, latency = { median_ms = 3, p99_ms = 8 } }

[[agent]]
id = "a3"
kind = "scripted"
scripted = { competence = { default = 0.7 }, latency = { median_ms = 3, p99_ms = 8 } }
"#;

/// The cap of the policy's `[budget.total]`: each call reserves 1,000 + 512 tokens and
/// spends 680, three calls a decision, so it runs out after about 630 of the 1,000.
const CAP: u64 = 1_300_000;

fn replica_policy() -> String {
    format!(
        r#"id = "desk"
description = "Trading calls by three agents, with a budget shared by every replica."
applies = {{ domains = ["trading"], kinds = ["choice"] }}
pool = {{ agents = ["a1", "a2", "a3"] }}
rule = {{ name = "weighted-plurality" }}
quorum = {{ ballots = 3 }}
early_stop = {{ enabled = false }}
thresholds = {{ accept = 0.0, arbitrate = 0.0, human = 0.0 }}
budget = {{ total = {{ tokens = {CAP} }} }}
"#
    )
}

/// A `conclave serve` replica on the database: the child and its base URL.
fn replica(
    url: &str,
    agents: &std::path::Path,
    policies: &std::path::Path,
) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(["serve", "--addr", "127.0.0.1:0", "--follow-ms", "200"])
        .arg("--agents")
        .arg(agents)
        .arg("--policies")
        .arg(policies)
        .env("CONCLAVE_DATABASE_URL", url)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in: {first}"))
        .to_owned();
    // Keep draining stderr so that the replica never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    (child, base)
}

/// Issue 15's acceptance: three replicas on one real PostgreSQL, 1,000 decisions sent
/// concurrently, one replica SIGKILLed mid-run (its clients retry on another replica with
/// the same idempotency key).
#[test]
fn three_replicas_share_one_chain_one_budget_and_idempotency_through_a_sigkill() {
    use futures_util::StreamExt;
    let url = fresh_database("replicas");
    let dir = tempfile::tempdir().unwrap();
    let (agents, policies) = (dir.path().join("agents.toml"), dir.path().join("policies"));
    std::fs::write(&agents, REPLICA_AGENTS).unwrap();
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("desk.toml"), replica_policy()).unwrap();
    let mut children = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..3 {
        let (c, b) = replica(&url, &agents, &policies);
        children.push(c);
        bases.push(b);
    }
    let client = reqwest::Client::new();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let killed = Arc::new(std::sync::Mutex::new(Some(children.remove(2))));
    // Request i carries key k{i mod 900}: the last 100 repeat a key, on another replica.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let results: Vec<(String, Option<String>, usize)> = runtime.block_on(futures_util::stream::iter(0..1000usize)
        .map(|i| {
            let (client, bases, done, killed) =
                (client.clone(), bases.clone(), done.clone(), killed.clone());
            async move {
                let key = format!("k{}", i % 900);
                let body = serde_json::json!({
                    "model": "desk",
                    "messages": [{"role": "user", "content": format!("Buy, hold or sell #{}?", i % 900)}],
                    "conclave": {"options": ["buy", "hold", "sell"], "truth": "hold",
                                 "seed": i % 900, "idempotency_key": key},
                })
                .to_string();
                let mut answer = None;
                for attempt in 0..3 {
                    let base = &bases[(i + attempt) % 3];
                    let sent = client
                        .post(format!("{base}/v1/chat/completions"))
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 200 => {
                            let id = r.headers()["x-conclave-decision"].to_str().unwrap().to_owned();
                            answer = Some(id);
                            break;
                        }
                        Ok(r) => panic!("request {i}: {} {}", r.status(), r.text().await.unwrap()),
                        // The killed replica: retry on the next one, same key.
                        Err(_) => continue,
                    }
                }
                if done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 300
                    && let Some(mut c) = killed.lock().unwrap().take()
                {
                    c.kill().unwrap(); // SIGKILL
                    c.wait().unwrap();
                }
                (key, answer, i)
            }
        })
        .buffer_unordered(48)
        .collect());
    assert!(
        killed.lock().unwrap().is_none(),
        "the replica was not killed"
    );
    for mut c in children {
        c.kill().unwrap();
        c.wait().unwrap();
    }

    // Every answer is recorded; a key has one decision, and every answer for it names it.
    let db = Database::connect(&url, 1).unwrap();
    let log = PgAuditLog::new(&db);
    let records = log.records().unwrap();
    let mut by_key: std::collections::BTreeMap<String, String> = Default::default();
    let mut tokens = 0;
    let mut budget_stops = 0;
    for r in &records {
        if let Entry::Decision(d) = &r.entry {
            let key = d
                .idempotency_key
                .clone()
                .expect("every decision here has a key");
            assert!(
                by_key.insert(key.clone(), d.id.clone()).is_none(),
                "key {key} is recorded twice"
            );
            let course = d.course.as_ref().unwrap();
            tokens += course.tokens;
            budget_stops += usize::from(course.stop == conclave::decision::Stop::Budget);
        }
    }
    let answered: Vec<_> = results.iter().filter(|r| r.1.is_some()).collect();
    assert!(
        answered.len() >= 990,
        "only {} of 1,000 answered",
        answered.len()
    );
    for (key, id, i) in &answered {
        assert_eq!(
            by_key.get(key),
            id.as_ref(),
            "request {i} (key {key}) got a decision the chain does not hold for its key"
        );
    }
    assert!(by_key.len() <= 900);

    // The chain verifies, through the CLI as an operator runs it (the URL has no password).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(["--database", url.as_str(), "audit", "verify"])
        .env_remove("CONCLAVE_DATABASE_URL")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains(&format!("{} records verified", records.len())),
        "{said}"
    );

    eprintln!(
        "replicas: {} answered, {} decisions recorded for {} keys, {budget_stops} stopped by the budget, {tokens} tokens spent",
        answered.len(),
        records.len(),
        by_key.len()
    );
    // The budget: what was spent and what is still reserved (by the killed replica) stay
    // within the cap, and the cap did bind (so the check is not vacuous).
    let (reserved, spent) = PgSpend::new(&db).totals("desk").unwrap();
    assert!(
        spent.tokens + reserved.tokens <= CAP,
        "{spent:?} + {reserved:?} > {CAP}"
    );
    assert!(tokens <= CAP, "the records spent {tokens} > {CAP}");
    assert!(
        budget_stops > 0 && tokens > CAP / 2,
        "the cap never bound: {tokens} spent, {budget_stops} stops"
    );
    // Decisions starved by the spent budget went to a human, but say nothing about the
    // pool: the ratchet did not suspend the domain.
    let orders = db.directives().unwrap();
    assert!(orders.suspension("trading").is_none(), "{orders:?}");
}

/// The Director's orders are one state for every replica on the database: a suspension given
/// on one replica is followed and lifted on another, hand-overs on both count towards one
/// ratchet (recorded once), and `review --database` reads and gives the same orders.
#[test]
fn orders_given_on_one_replica_hold_on_every_replica() {
    let url = fresh_database("orders");
    let dir = tempfile::tempdir().unwrap();
    let (agents, policies) = (dir.path().join("agents.toml"), dir.path().join("policies"));
    std::fs::write(&agents, REPLICA_AGENTS).unwrap();
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("desk.toml"), replica_policy()).unwrap();
    // Every verdict of this one is too weak: it goes to a human, for the decision's own reason.
    std::fs::write(
        policies.join("weak.toml"),
        replica_policy()
            .replace("id = \"desk\"", "id = \"weak\"")
            .replace("[\"trading\"]", "[\"research\"]")
            .replace(
                "thresholds = { accept = 0.0, arbitrate = 0.0, human = 0.0 }",
                "thresholds = { accept = 1.0, arbitrate = 1.0, human = 1.0 }",
            ),
    )
    .unwrap();
    let (mut a, base_a) = replica(&url, &agents, &policies);
    let (mut b, base_b) = replica(&url, &agents, &policies);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let post = |url: String, body: serde_json::Value| {
        runtime.block_on(async {
            let r = client.post(url).json(&body).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        })
    };
    let get = |url: String| {
        runtime.block_on(async {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        })
    };
    let decide = |base: &str, id: &str, domain: &str| {
        post(
            format!("{base}/v1/decisions"),
            serde_json::json!({"id": id, "question": "Buy, hold or sell?", "domain": domain,
                               "kind": "choice", "options": ["buy", "hold", "sell"]}),
        )
    };
    let (status, v) = post(
        format!("{base_a}/v1/orders"),
        serde_json::json!({"order": {"action": "suspend", "domain": "trading", "reason": "flash crash"}, "by": "alice"}),
    );
    assert_eq!(status, 200, "{v}");
    // The other replica reads it (GET /v1/orders takes up the database's orders) and follows it.
    let seen = get(format!("{base_b}/v1/orders"));
    assert_eq!(seen["suspended"]["trading"]["by"], "alice", "{seen}");
    let (status, v) = decide(&base_b, "t-1", "trading");
    assert_eq!(
        (status, &v["outcome"]["outcome"]),
        (200, &serde_json::json!("human")),
        "{v}"
    );
    // Lifted from the other replica; the first follows.
    let (status, v) = post(
        format!("{base_b}/v1/orders"),
        serde_json::json!({"order": {"action": "resume", "domain": "trading"}, "by": "bob"}),
    );
    assert_eq!(status, 200, "{v}");
    let seen = get(format!("{base_a}/v1/orders"));
    assert_eq!(seen["suspended"], serde_json::json!({}), "{seen}");
    let (status, v) = decide(&base_a, "t-2", "trading");
    assert_eq!(
        (status, &v["outcome"]["outcome"]),
        (200, &serde_json::json!("decided")),
        "{v}"
    );

    // Hand-overs on both replicas count towards one ratchet: the fourth suspends the domain,
    // and the suspension is recorded once.
    for (i, base) in [&base_a, &base_b, &base_a, &base_b].into_iter().enumerate() {
        let (status, v) = decide(base, &format!("w-{i}"), "research");
        assert_eq!(
            (status, &v["outcome"]["outcome"]),
            (200, &serde_json::json!("human")),
            "{v}"
        );
    }
    let db = Database::connect(&url, 1).unwrap();
    let orders = db.directives().unwrap();
    assert_eq!(
        orders.suspension("research").map(|s| s.by.as_str()),
        Some(conclave::governor::director::RATCHET),
        "{orders:?}"
    );
    assert!(
        orders.handovers.values().all(|t| t.len() <= 4),
        "{orders:?}"
    );
    let actions: Vec<String> = PgAuditLog::new(&db)
        .records()
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.entry {
            Entry::Directive(d) => Some(format!("{} {}", d.action, d.domain)),
            _ => None,
        })
        .collect();
    assert_eq!(
        actions,
        ["suspend trading", "resume trading", "ratchet research"]
    );

    // The desk on the database: it lists the suspension and lifts it.
    let review = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_conclave"))
            .args(["--database", url.as_str(), "review"])
            .args(args)
            .env_remove("CONCLAVE_DATABASE_URL")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = review(&["list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("suspended: research, by ratchet"), "{out}");
    let (code, out, err) = review(&["resume", "--domain", "research", "--by", "carol"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("resume research"), "{out}");
    assert!(db.directives().unwrap().suspension("research").is_none());
    let seen = get(format!("{base_b}/v1/orders"));
    assert_eq!(seen["suspended"], serde_json::json!({}), "{seen}");
    for c in [&mut a, &mut b] {
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

/// Appends from many threads of one replica are written in groups; a duplicate key in a
/// group fails that append only.
#[test]
fn group_commit_keeps_one_chain_and_fails_only_the_duplicate_key() {
    let url = fresh_database("group_commit");
    let log = PgAuditLog::new(&Database::connect(&url, 8).unwrap());
    let (ok, dup) = (
        std::sync::atomic::AtomicU64::new(0),
        std::sync::atomic::AtomicU64::new(0),
    );
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (log, ok, dup) = (log.clone(), &ok, &dup);
            s.spawn(move || {
                for i in 0..30u64 {
                    // Keys k0..k59: every key is tried by four threads.
                    let key = format!("k{}", (t * 30 + i) % 60);
                    match log.append(&decision(t * 100 + i, Some(&key))) {
                        Ok(_) => ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                        Err(AuditError::DuplicateKey(k)) => {
                            assert_eq!(k, key);
                            dup.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        }
                        Err(e) => panic!("{e}"),
                    };
                    // Unkeyed entries (with ids of their own) interleave.
                    log.append(&decision(10_000 + t * 100 + i, None)).unwrap();
                }
            });
        }
    });
    assert_eq!((ok.into_inner(), dup.into_inner()), (60, 180));
    let v = log.verify().unwrap();
    assert_eq!((v.records, v.first_broken), (60 + 240, None));
}

/// Concurrent grading on two replicas: for each of ten decisions, 20 simultaneous outcome
/// posts (half "hold", half "sell", alternating between the replicas) leave exactly one
/// outcome record per decision; the winner is answered 200, every loser 409 naming the
/// recorded answer (a later same answer: "already graded"), trust learns once, from the
/// recorded answer, and the chain verifies.
#[test]
fn concurrent_grading_on_two_replicas_records_one_outcome_per_decision() {
    use futures_util::StreamExt;
    let url = fresh_database("grading_race");
    let dir = tempfile::tempdir().unwrap();
    let (agents, policies) = (dir.path().join("agents.toml"), dir.path().join("policies"));
    std::fs::write(&agents, REPLICA_AGENTS).unwrap();
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("desk.toml"),
        replica_policy().replace(
            &format!("budget = {{ total = {{ tokens = {CAP} }} }}\n"),
            "",
        ),
    )
    .unwrap();
    let (c1, b1) = replica(&url, &agents, &policies);
    let (c2, b2) = replica(&url, &agents, &policies);
    // The replicas are killed however the test ends.
    struct Replicas(Vec<std::process::Child>);
    impl Drop for Replicas {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let _replicas = Replicas(vec![c1, c2]);
    let bases = [b1, b2];
    let client = reqwest::Client::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let decisions: Vec<String> = runtime.block_on(async {
        let mut ids = Vec::new();
        for i in 0..10 {
            let body = serde_json::json!({
                "model": "desk",
                "messages": [{"role": "user", "content": format!("Buy, hold or sell #{i}?")}],
                "conclave": {"options": ["buy", "hold", "sell"], "truth": "hold", "seed": i},
            });
            let r = client
                .post(format!("{}/v1/chat/completions", bases[i % 2]))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            ids.push(
                r.headers()["x-conclave-decision"]
                    .to_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        ids
    });
    let posts: Vec<(usize, String, u16, String)> = runtime.block_on(
        futures_util::stream::iter(
            (0..decisions.len()).flat_map(|d| (0..20usize).map(move |k| (d, k))),
        )
        .map(|(d, k)| {
            let (client, base, id) = (client.clone(), bases[k % 2].clone(), decisions[d].clone());
            async move {
                let answer = if k % 2 == 0 { "hold" } else { "sell" };
                let r = client
                    .post(format!("{base}/v1/decisions/{id}/outcome"))
                    .json(&serde_json::json!({"correct": answer}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let body: serde_json::Value = r.json().await.unwrap();
                let message = body["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                (d, answer.to_owned(), status, message)
            }
        })
        .buffer_unordered(200)
        .collect(),
    );
    let db = Database::connect(&url, 2).unwrap();
    let log = PgAuditLog::new(&db);
    let records = log.records().unwrap();
    let trust = PgTrustStore::new(&db, TrustParams::default()).unwrap();
    let batches = trust.batches().unwrap();
    for (d, id) in decisions.iter().enumerate() {
        let seq = log.find(id).unwrap().seq;
        let outcomes: Vec<String> = records
            .iter()
            .filter_map(|r| match &r.entry {
                Entry::Outcome(o) if o.decision == seq => Some(o.correct.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(outcomes.len(), 1, "decision {id}: {outcomes:?}");
        let recorded = &outcomes[0];
        let mine: Vec<&(usize, String, u16, String)> = posts.iter().filter(|p| p.0 == d).collect();
        let ok = mine.iter().filter(|p| p.2 == 200).count();
        assert_eq!(ok, 1, "decision {id}: {mine:?}");
        for (_, answer, status, body) in &mine {
            match status {
                200 => assert_eq!(answer, recorded),
                409 => assert!(
                    body.contains(&format!("\"{recorded}\"")) || body.contains("already graded"),
                    "{body}"
                ),
                s => panic!("decision {id}: status {s}: {body}"),
            }
        }
        // The losers with another answer are told the recorded one.
        assert!(
            mine.iter()
                .filter(|p| p.1 != *recorded)
                .all(|p| p.2 == 409 && p.3.contains(&format!("\"{recorded}\""))),
            "{mine:?}"
        );
        // Trust learned once, from the recorded answer.
        let provenance = format!("decision:{seq}");
        assert_eq!(
            batches
                .iter()
                .filter(|b| b.provenance == provenance)
                .count(),
            1
        );
    }
    assert!(log.verify().unwrap().first_broken.is_none());
}
