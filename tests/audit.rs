//! The audit log and the store through the CLI: tamper detection, replay, outcome
//! back-fill, bad stores, and durability under SIGKILL.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use conclave::aggregate::{Kind, Rule, TallyInput};
use conclave::audit::{AuditLog, DecisionRecord, Entry, SledAuditLog};
use conclave::ballot::{Abstention, Ballot};
use conclave::store::Store;
use conclave::trust::TrustParams;
use conclave::trust::store::{Change, SledTrustStore, TrustBatch, TrustStore};

use crate::support::{Rng, conclave};

fn run(store: &Path, args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["--store", store.to_str().expect("utf-8 path")];
    full.extend_from_slice(args);
    let out = conclave(&full, b"");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn decision(i: u64) -> Entry {
    let input = TallyInput::new(
        Kind::Choice,
        ["buy", "hold", "sell"],
        vec![
            Ballot::choice("econ", "hold").with_confidence(0.8),
            Ballot::choice("news", if i.is_multiple_of(3) { "sell" } else { "hold" }),
            Ballot::ranking("gen", ["buy", "hold", "sell"]),
            Ballot::abstain("slow", Abstention::Timeout),
        ],
    )
    .with_weights([("econ", 0.79), ("news", 0.73), ("gen", 0.59)]);
    Entry::Decision(Box::new(
        DecisionRecord::tallied(
            format!("trade-{i}"),
            "Buy, hold or sell?",
            "finance",
            input,
            Rule::WeightedPlurality,
        )
        .expect("tally"),
    ))
}

fn fill(dir: &Path, n: u64) {
    let store = Store::open(dir).expect("open");
    let log = SledAuditLog::new(&store).expect("log");
    for i in 0..n {
        log.append(&decision(i)).expect("append");
    }
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in walk(dir) {
        out.push((e.display().to_string(), fs::read(&e).unwrap_or_default()));
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                files.extend(walk(&p));
            } else {
                files.push(p);
            }
        }
    }
    files
}

#[test]
fn flipping_one_byte_is_caught_and_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().join("store");
    fill(&d, 12);
    let (code, out, _) = run(&d, &["audit", "verify"]);
    assert_eq!(code, 0);
    assert!(out.contains("12 records verified"), "{out}");
    for target in [1u64, 7, 12] {
        let copy = dir.path().join(format!("copy-{target}"));
        fs::create_dir_all(&copy).expect("mkdir");
        for f in walk(&d) {
            let rel = f.strip_prefix(&d).expect("prefix");
            fs::create_dir_all(copy.join(rel).parent().expect("parent")).expect("mkdir");
            fs::copy(&f, copy.join(rel)).expect("copy");
        }
        {
            let store = Store::open(&copy).expect("open");
            let log = SledAuditLog::new(&store).expect("log");
            log.tamper(target, |v| {
                let at = 64 + (v.len() - 64) / 2;
                v[at] ^= 0x04;
            })
            .expect("tamper");
        }
        let (code, _, err) = run(&copy, &["audit", "verify"]);
        assert_eq!(
            code, 1,
            "verify must fail after tampering with record {target}"
        );
        assert!(err.contains(&format!("broken at record {target}")), "{err}");
        let (code, json, _) = run(&copy, &["audit", "verify", "--json"]);
        assert_eq!(code, 1);
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v["first_broken"]["seq"], target);
    }
    // An untouched record replays bit for bit.
    let (code, out, err) = run(&d, &["audit", "replay", "5"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("matches the recorded one bit for bit"),
        "{out}"
    );
    let (code, out, _) = run(&d, &["audit", "replay", "trade-5", "--json"]);
    assert_eq!(code, 0);
    let r: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(r["matches"], true);
    assert_eq!(r["seq"], 6);
}

#[test]
fn outcome_backfill_grades_voters_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().join("store");
    fill(&d, 3);
    let (code, out, err) = run(
        &d,
        &["audit", "outcome", "1", "--correct", "sell", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["outcome_record"], 4);
    let graded = v["graded"].as_array().expect("graded");
    assert_eq!(graded.len(), 3, "abstentions are not graded: {out}");
    let (_, show, _) = run(&d, &["trust", "show", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&show).expect("json");
    let trust_of = |agent: &str| {
        s["agents"]
            .as_array()
            .expect("agents")
            .iter()
            .find(|a| a["agent"] == agent)
            .expect("agent")["trust"]
            .as_f64()
            .expect("trust")
    };
    assert!(
        trust_of("news") > trust_of("econ"),
        "news voted sell, which was right"
    );
    // Grading twice would count twice: refused.
    let (code, _, err) = run(&d, &["audit", "outcome", "1", "--correct", "sell"]);
    assert_eq!(code, 2);
    assert!(err.contains("already graded"), "{err}");
    // An answer that is not an option.
    let (code, _, err) = run(&d, &["audit", "outcome", "2", "--correct", "short"]);
    assert_eq!(code, 2);
    assert!(err.contains("not an option"), "{err}");
    // The chain is still intact, outcome included.
    let (code, out, _) = run(&d, &["audit", "verify"]);
    assert_eq!(code, 0);
    assert!(out.contains("4 records verified"), "{out}");
    let (code, out, _) = run(&d, &["audit", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("outcome") && out.contains("trade-2"), "{out}");
    // The back-fill is a batch that can be rolled back.
    let (code, _, err) = run(&d, &["trust", "rollback", "decision:1"]);
    assert_eq!(code, 0, "{err}");
    let (_, show, _) = run(&d, &["trust", "show", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&show).expect("json");
    assert!(s["agents"].as_array().expect("agents").is_empty());
}

#[test]
fn bad_stores_get_a_clear_error_and_stay_untouched() {
    let dir = tempfile::tempdir().expect("tmp");
    // A foreign directory.
    let foreign = dir.path().join("foreign");
    fs::create_dir_all(&foreign).expect("mkdir");
    fs::write(foreign.join("thesis.tex"), "\\section{Mine}").expect("write");
    let before = listing(&foreign);
    for args in [
        &["trust", "show"][..],
        &["audit", "list"],
        &["trust", "reset", "--yes"],
    ] {
        let (code, _, err) = run(&foreign, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("is not a conclave store"), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1);
    }
    assert_eq!(
        listing(&foreign),
        before,
        "a foreign directory must not be touched"
    );

    // A newer format.
    let newer = dir.path().join("newer");
    fill(&newer, 1);
    fs::write(
        newer.join("CONCLAVE-STORE"),
        r#"{"format": 7, "created_by": "conclave 9.0"}"#,
    )
    .expect("write");
    let before = listing(&newer);
    let (code, _, err) = run(&newer, &["audit", "verify"]);
    assert_eq!(code, 2);
    assert!(err.contains("newer conclave"), "{err}");
    assert_eq!(listing(&newer), before);

    // Damaged database files: refused, not read as an empty store.
    let damaged = dir.path().join("damaged");
    fill(&damaged, 5);
    let db = damaged.join("sled").join("db");
    let mut bytes = fs::read(&db).expect("db");
    for i in (0..bytes.len()).step_by(61) {
        bytes[i] ^= 0xA5;
    }
    fs::write(&db, bytes).expect("write");
    let before = listing(&damaged);
    for args in [
        &["audit", "list"][..],
        &["trust", "show"],
        &["audit", "verify"],
    ] {
        let (code, _, err) = run(&damaged, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("is damaged"), "{err}");
    }
    assert_eq!(
        listing(&damaged),
        before,
        "a damaged store must be left as it is"
    );

    // Malformed import JSON: refused, the store untouched.
    let store = dir.path().join("import");
    let (code, _, err) = run(&store, &["trust", "import", "-"]);
    assert_eq!(code, 2);
    assert!(err.contains("EOF") || err.contains("expected"), "{err}");
    let bad = dir.path().join("bad.json");
    fs::write(&bad, r#"{"version": 1, "params": {}, "states": [{"agent": "a", "domain": "d", "state": {"alpha": -1}}]}"#)
        .expect("write");
    let (code, _, err) = run(&store, &["trust", "import", bad.to_str().expect("path")]);
    assert_eq!(code, 2);
    assert!(err.contains("states[0]"), "{err}");
    let (_, out, _) = run(&store, &["trust", "show", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["version"], 0, "a refused import changes nothing");

    // Unknown agents.
    let (code, _, err) = run(&store, &["trust", "history", "ghost"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown agent \"ghost\""), "{err}");
    let (code, _, err) = run(&store, &["trust", "admit", "ghost"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown agent \"ghost\""), "{err}");
}

#[test]
fn a_store_held_by_another_process_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().join("store");
    let held = Store::open(&d).expect("open");
    let (code, _, err) = run(&d, &["trust", "show"]);
    assert_eq!(code, 2);
    assert!(err.contains("in use by another conclave process"), "{err}");
    drop(held);
    let (code, _, _) = run(&d, &["trust", "show"]);
    assert_eq!(code, 0);
}

#[test]
fn export_import_round_trip() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = dir.path().join("a");
    {
        let store = Store::open(&a).expect("open");
        let t = SledTrustStore::new(&store, TrustParams::default()).expect("trust");
        t.apply(&TrustBatch {
            provenance: "run-1".into(),
            changes: vec![Change::Graded {
                domain: "finance".into(),
                item: "i1".into(),
                outcomes: vec![("econ".into(), true), ("news".into(), false)],
                verdict: None,
                agreement: None,
                overturn: None,
                overturn_odds: None,
            }],
        })
        .expect("apply");
    }
    let (code, export, _) = run(&a, &["trust", "export"]);
    assert_eq!(code, 0);
    let file = dir.path().join("export.json");
    fs::write(&file, &export).expect("write");
    let b = dir.path().join("b");
    let (code, _, err) = run(&b, &["trust", "import", file.to_str().expect("path")]);
    assert_eq!(code, 0, "{err}");
    let (_, show_a, _) = run(&a, &["trust", "show", "--json"]);
    let (_, show_b, _) = run(&b, &["trust", "show", "--json"]);
    let agents =
        |s: &str| serde_json::from_str::<serde_json::Value>(s).expect("json")["agents"].clone();
    assert_eq!(agents(&show_a), agents(&show_b));
}

// --- Durability under SIGKILL ----------------------------------------------------------

const AGENTS: usize = 500;

/// Runs in a child process (see `kill_children`): applies batch after batch, each setting
/// every agent's evidence count to the batch number, or appends audit record after record;
/// prints a line after each call returns.
#[test]
#[ignore = "run as a child process by the durability test"]
fn durability_child() {
    let Ok(dir) = std::env::var("CONCLAVE_DURABILITY_DIR") else {
        return;
    };
    let mode = std::env::var("CONCLAVE_DURABILITY_MODE").unwrap_or_default();
    println!("durability child started");
    let store = Store::open(Path::new(&dir)).expect("open");
    if mode == "trust" {
        let t = SledTrustStore::new(&store, TrustParams::default()).expect("trust");
        let start = t.batches().expect("batches").len() as u64;
        for k in start + 1.. {
            let mut state = conclave::trust::TrustState::new(&TrustParams::default());
            state.n = k;
            let changes = (0..AGENTS)
                .map(|i| Change::Set {
                    agent: format!("agent-{i:04}"),
                    domain: "d".into(),
                    state: state.clone(),
                })
                .collect();
            t.apply(&TrustBatch {
                provenance: format!("batch-{k}"),
                changes,
            })
            .expect("apply");
            println!("applied {k}");
        }
    } else if mode == "override" {
        // A decision, then a human's override of it (override and outcome together, then
        // trust), again and again.
        let log = SledAuditLog::new(&store).expect("log");
        let trust = SledTrustStore::new(&store, TrustParams::default()).expect("trust");
        // Decision ids are unique in a log: a restarted child numbers on from the records.
        let base = log.records().expect("records").len() as u64;
        for i in base.. {
            let r = log.append(&decision(i)).expect("append");
            conclave::audit::record_override(
                &log,
                &trust,
                &r.seq.to_string(),
                "hold",
                "alice",
                "checked the filing",
                0.0,
            )
            .expect("override");
            println!("overrode {}", r.seq);
        }
    } else if mode == "orders" {
        // The Director suspends and resumes a domain, again and again: each order and its
        // record in one step.
        use conclave::governor::OrderBook;
        let log = SledAuditLog::new(&store).expect("log");
        for i in 0.. {
            let suspended = log
                .orders()
                .expect("orders")
                .suspension("trading")
                .is_some();
            let order = if suspended {
                conclave::Order::Resume {
                    domain: "trading".into(),
                }
            } else {
                conclave::Order::Suspend {
                    domain: "trading".into(),
                    reason: format!("drill {i}"),
                }
            };
            let (_, record) = log
                .change(order.change("alice", 0).expect("order"))
                .expect("change");
            println!("ordered {}", record.expect("recorded").seq);
        }
    } else if mode == "cycle" {
        // Open, decide, record the outcome, close: again and again (every open makes sled
        // write a snapshot; the outcome goes on the chain, then into trust).
        drop(store);
        for i in 0.. {
            let store = Store::open(Path::new(&dir)).expect("open");
            let log = SledAuditLog::new(&store).expect("log");
            let trust = SledTrustStore::new(&store, TrustParams::default()).expect("trust");
            complete_back_fills(&log, &trust);
            let base = log.records().expect("records").len() as u64;
            let r = log.append(&decision(base + i)).expect("append");
            conclave::audit::record_outcome(&log, &trust, &r.seq.to_string(), "hold", "test", 0.0)
                .expect("outcome");
            println!("cycled {}", r.seq);
        }
    } else {
        let log = SledAuditLog::new(&store).expect("log");
        let base = log.records().expect("records").len() as u64;
        for i in base.. {
            let r = log.append(&decision(i)).expect("append");
            println!("appended {}", r.seq);
        }
    }
}

/// Completes every back-fill a kill interrupted: an outcome on the chain whose trust update
/// is missing. Returns how many it completed.
fn complete_back_fills(log: &SledAuditLog, trust: &SledTrustStore) -> usize {
    let batches: std::collections::BTreeSet<String> = trust
        .batches()
        .expect("batches")
        .into_iter()
        .map(|b| b.provenance)
        .collect();
    let mut completed = 0;
    for r in log.records().expect("records") {
        if let Entry::Outcome(o) = &r.entry
            && !batches.contains(&format!("decision:{}", o.decision))
        {
            conclave::audit::record_outcome(
                log,
                trust,
                &o.decision.to_string(),
                &o.correct,
                "test",
                0.0,
            )
            .expect("completed");
            completed += 1;
        }
    }
    completed
}

/// Starts the child, lets it work for `delay`, kills it with SIGKILL, and returns what it
/// reported as done.
/// When a kill's delay starts counting: at the child's own signals, never at a fixed time
/// after the spawn (a busy machine can take longer than any fixed delay to start a process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// The child printed "started" (it runs, before it opens the store).
    Start,
    /// The child reported its first completed step.
    FirstReport,
}

/// Runs the durability child in `mode`, SIGKILLs it `delay` after its signal `after`, and
/// returns the steps it reported as completed.
fn kill_child(dir: &Path, mode: &str, delay: Duration, after: After) -> Vec<u64> {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "audit::durability_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CONCLAVE_DURABILITY_DIR", dir)
        .env("CONCLAVE_DURABILITY_MODE", mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let (signal, signals) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut reported = Vec::new();
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if l.contains("durability child started") {
                let _ = signal.send(After::Start);
            }
            // Only the child's own reports ("applied N", "appended N", "cycled N"), which may
            // follow the harness's "test … ... " on the same line; the harness's other lines
            // ("running 1 test") must not count.
            let at = l
                .find("applied ")
                .map(|i| i + 8)
                .or_else(|| l.find("appended ").map(|i| i + 9))
                .or_else(|| l.find("cycled ").map(|i| i + 7))
                .or_else(|| l.find("overrode ").map(|i| i + 9))
                .or_else(|| l.find("ordered ").map(|i| i + 8));
            if let Some(n) =
                at.and_then(|at| l[at..].split_whitespace().next()?.parse::<u64>().ok())
            {
                if reported.is_empty() {
                    let _ = signal.send(After::FirstReport);
                }
                reported.push(n);
            }
        }
        reported
    });
    // Wait for the signal (a child that exits first ends the wait: the sender is dropped).
    while let Ok(got) = signals.recv_timeout(Duration::from_secs(600)) {
        if got == after {
            break;
        }
    }
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    reader.join().expect("reader")
}

#[test]
fn trust_batches_and_audit_appends_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut rng = Rng(20_261_130);
    // Trust: each batch is all or nothing.
    let trust_dir = dir.path().join("trust");
    let mut reported = 0;
    for round in 0..20 {
        let delay = Duration::from_millis(80 + (rng.unit() * 900.0) as u64);
        // Half the kills count from the child's start, half from its first batch (so that
        // some batch always returns, at any machine speed).
        let after = if round % 2 == 0 {
            After::Start
        } else {
            After::FirstReport
        };
        let done = kill_child(&trust_dir, "trust", delay, after);
        reported = reported.max(done.last().copied().unwrap_or(0));
        let store =
            Store::open(&trust_dir).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        let t = SledTrustStore::new(&store, TrustParams::default()).expect("trust");
        let snap = t.snapshot().expect("snapshot");
        let counts: std::collections::BTreeSet<u64> = snap.states.values().map(|s| s.n).collect();
        assert!(
            counts.len() <= 1,
            "round {round}: a batch was half applied: evidence counts {counts:?}"
        );
        let applied = counts.first().copied().unwrap_or(0);
        if applied > 0 {
            assert_eq!(snap.states.len(), AGENTS, "round {round}");
        }
        assert!(
            applied >= reported,
            "round {round}: batch {reported} returned but only {applied} is in the store"
        );
        assert_eq!(
            snap.version, applied,
            "round {round}: version and batches disagree"
        );
        let v = SledAuditLog::new(&store)
            .expect("log")
            .verify()
            .expect("verify");
        assert!(v.first_broken.is_none(), "round {round}: {v:?}");
    }
    assert!(
        reported > 0,
        "the child never completed a batch: raise the delays"
    );
    println!("trust: 20 kills, {reported} batches of {AGENTS} updates, none half-applied");

    // Audit: every append that returned is there, and the chain verifies.
    let audit_dir = dir.path().join("audit");
    let mut returned = 0;
    for round in 0..20 {
        let delay = Duration::from_millis(20 + (rng.unit() * 200.0) as u64);
        let after = if round % 2 == 0 {
            After::Start
        } else {
            After::FirstReport
        };
        let done = kill_child(&audit_dir, "audit", delay, after);
        returned = returned.max(done.last().copied().unwrap_or(0));
        let store =
            Store::open(&audit_dir).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        let log = SledAuditLog::new(&store).expect("log");
        let v = log.verify().expect("verify");
        assert!(v.first_broken.is_none(), "round {round}: {v:?}");
        assert!(
            v.records >= returned,
            "round {round}: append {returned} returned but only {} records survive",
            v.records
        );
    }
    assert!(returned > 0);
    println!("audit: 20 kills, {returned} appends returned, all present, chain intact");
}

#[test]
fn kills_during_open_decide_and_outcome_leave_a_store_that_opens_and_completes() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().join("cycle");
    let mut rng = Rng(20_261_204);
    let mut cycled = 0;
    let mut completed = 0;
    for round in 0..20 {
        let delay = Duration::from_millis(40 + (rng.unit() * 600.0) as u64);
        // Half the kills count from the child's start (they hit opens and first cycles),
        // half from its first completed cycle (so that some cycle always completes).
        let after = if round % 2 == 0 {
            After::Start
        } else {
            After::FirstReport
        };
        let done = kill_child(&d, "cycle", delay, after);
        // The highest decision record a completed cycle reported.
        cycled = cycled.max(done.last().copied().unwrap_or(0));
        // Whatever the kill interrupted (an open, an append, an outcome before its trust
        // update), the store opens, the chain verifies, and nothing returned is lost.
        let store = Store::open(&d).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        let log = SledAuditLog::new(&store).expect("log");
        let v = log.verify().expect("verify");
        assert!(v.first_broken.is_none(), "round {round}: {v:?}");
        let trust = SledTrustStore::new(&store, TrustParams::default()).expect("trust");
        completed += complete_back_fills(&log, &trust);
        // Each decision has at most one outcome, and each outcome exactly one trust batch.
        let records = log.records().expect("records");
        let mut outcomes = std::collections::BTreeMap::new();
        let mut decisions = 0u64;
        for r in &records {
            match &r.entry {
                Entry::Outcome(o) => *outcomes.entry(o.decision).or_insert(0) += 1,
                Entry::Decision(_) => decisions += 1,
                _ => {}
            }
        }
        assert!(
            outcomes.values().all(|&n| n == 1),
            "round {round}: {outcomes:?}"
        );
        let batches = trust.batches().expect("batches");
        assert_eq!(batches.len(), outcomes.len(), "round {round}");
        // Judged only on what the child reported: nothing returned yet, nothing to find.
        assert!(
            cycled == 0
                || records
                    .iter()
                    .any(|r| r.seq == cycled && matches!(r.entry, Entry::Decision(_))),
            "round {round}: decision record {cycled} returned but is not in the store ({decisions} decisions kept)"
        );
    }
    assert!(
        cycled > 0,
        "the child never completed a cycle, though half the kills wait for one"
    );
    println!(
        "cycle: 20 kills, decision records up to {cycled} returned and kept, {completed} interrupted back-fills completed"
    );
}

/// Kills during `review suspend` and `review resume`: at every kill point the orders in effect
/// are exactly what the recorded orders say (suspended iff the last record is a suspension),
/// and every order that reported itself done is recorded.
#[test]
fn kills_during_orders_leave_them_recorded_exactly_when_in_effect() {
    use conclave::governor::OrderBook;
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().join("orders");
    let mut rng = Rng(20_261_209);
    let mut ordered = 0;
    for round in 0..16 {
        let delay = Duration::from_millis(10 + (rng.unit() * 300.0) as u64);
        let after = if round % 2 == 0 {
            After::Start
        } else {
            After::FirstReport
        };
        let done = kill_child(&d, "orders", delay, after);
        ordered = ordered.max(done.last().copied().unwrap_or(0));
        let store = Store::open(&d).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        let log = SledAuditLog::new(&store).expect("log");
        assert!(
            log.verify().expect("verify").first_broken.is_none(),
            "round {round}"
        );
        let records = log.records().expect("records");
        let last = records.iter().rev().find_map(|r| match &r.entry {
            Entry::Directive(o) => Some(o.action.clone()),
            _ => None,
        });
        let suspended = log
            .orders()
            .expect("orders")
            .suspension("trading")
            .is_some();
        assert_eq!(
            suspended,
            last.as_deref() == Some("suspend"),
            "round {round}: in effect {suspended}, last record {last:?}"
        );
        assert!(
            records.len() as u64 >= ordered,
            "round {round}: order {ordered} reported, {} records",
            records.len()
        );
    }
    assert!(ordered > 0, "no order completed before a kill");
    println!("orders: 16 kills, {ordered} orders recorded");
}

/// Kills during `review decide` (an override): at every kill point the decision has either
/// no answer or its override and its outcome together (never an override alone); a retry of
/// the same answer completes the trust update; a second reviewer's other answer is refused
/// and writes nothing.
#[test]
fn kills_during_an_override_leave_it_whole_or_absent() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().join("override");
    let mut rng = Rng(20_261_208);
    let mut overrode = 0;
    let mut completed = 0;
    for round in 0..16 {
        let delay = Duration::from_millis(10 + (rng.unit() * 300.0) as u64);
        let after = if round % 2 == 0 {
            After::Start
        } else {
            After::FirstReport
        };
        let done = kill_child(&d, "override", delay, after);
        overrode = overrode.max(done.last().copied().unwrap_or(0));
        let store = Store::open(&d).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        let log = SledAuditLog::new(&store).expect("log");
        assert!(
            log.verify().expect("verify").first_broken.is_none(),
            "round {round}"
        );
        let trust = SledTrustStore::new(&store, TrustParams::default()).expect("trust");
        let records = log.records().expect("records");
        let mut overrides: std::collections::BTreeMap<u64, usize> = Default::default();
        let mut outcomes: std::collections::BTreeMap<u64, usize> = Default::default();
        for r in &records {
            match &r.entry {
                Entry::Override(o) => *overrides.entry(o.decision).or_default() += 1,
                Entry::Outcome(o) => *outcomes.entry(o.decision).or_default() += 1,
                _ => {}
            }
        }
        let batches: std::collections::BTreeSet<String> = trust
            .batches()
            .expect("batches")
            .into_iter()
            .map(|b| b.provenance)
            .collect();
        let decisions: Vec<u64> = records
            .iter()
            .filter(|r| matches!(r.entry, Entry::Decision(_)))
            .map(|r| r.seq)
            .collect();
        for &seq in &decisions {
            let (over, out) = (
                overrides.get(&seq).copied().unwrap_or(0),
                outcomes.get(&seq).copied().unwrap_or(0),
            );
            assert!(
                over == out && over <= 1,
                "round {round}: decision {seq} has {over} overrides and {out} outcomes"
            );
            let interrupted = over == 1 && !batches.contains(&format!("decision:{seq}"));
            if interrupted {
                // The same answer again completes an interrupted trust update.
                conclave::audit::record_override(
                    &log,
                    &trust,
                    &seq.to_string(),
                    "hold",
                    "alice",
                    "",
                    0.0,
                )
                .unwrap_or_else(|e| panic!("round {round}: completing {seq}: {e}"));
                completed += 1;
            }
        }
        // A second reviewer's other answer is refused and writes nothing (the last decision
        // answered).
        if let Some(&seq) = decisions.iter().rev().find(|s| overrides.contains_key(s)) {
            let before = log.records().expect("records").len();
            let other = conclave::audit::record_override(
                &log,
                &trust,
                &seq.to_string(),
                "sell",
                "bob",
                "",
                0.0,
            );
            assert!(
                matches!(other, Err(conclave::audit::OutcomeError::Final { .. })),
                "round {round}: {other:?}"
            );
            assert_eq!(log.records().expect("records").len(), before);
        }
        assert!(
            overrode == 0
                || records
                    .iter()
                    .any(|r| matches!(&r.entry, Entry::Override(o) if o.decision == overrode)),
            "round {round}: override of {overrode} returned but is not in the store"
        );
    }
    assert!(overrode > 0, "the child never completed an override");
    println!(
        "override: 16 kills, overrides up to decision {overrode} kept whole, {completed} interrupted trust updates completed"
    );
}

#[test]
fn estimate_apply_writes_skills_with_provenance() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().join("store");
    let csv = crate::support::fixtures_dir()
        .join("estimate")
        .join("ds-002.csv");
    let csv = csv.to_str().expect("path");
    let (code, out, err) = run(
        &d,
        &["trust", "estimate", "--apply", "--domain", "labels", csv],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let provenance = v["applied"]["provenance"]
        .as_str()
        .expect("provenance")
        .to_owned();
    assert!(
        provenance.starts_with("estimate:dawid-skene:"),
        "{provenance}"
    );
    let (_, show, _) = run(&d, &["trust", "show", "--domain", "labels", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&show).expect("json");
    let rows = s["agents"].as_array().expect("agents");
    assert_eq!(rows.len(), v["skills"].as_object().expect("skills").len());
    // Trust follows the estimated skill.
    for row in rows {
        let skill = v["skills"][row["agent"].as_str().expect("agent")]
            .as_f64()
            .expect("skill");
        let trust = row["trust"].as_f64().expect("trust");
        assert!((trust - skill).abs() < 0.1, "{row} vs skill {skill}");
    }
    let (_, batches, _) = run(&d, &["trust", "batches", "--json"]);
    assert!(batches.contains(&provenance));
    // The same file again is the same batch: refused.
    let (code, _, err) = run(
        &d,
        &["trust", "estimate", "--apply", "--domain", "labels", csv],
    );
    assert_eq!(code, 2);
    assert!(err.contains("already applied"), "{err}");
}

#[test]
fn ledger_reports_clusters_from_graded_outcomes() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().join("store");
    {
        let store = Store::open(&d).expect("open");
        let t = SledTrustStore::new(&store, TrustParams::default()).expect("trust");
        let mut rng = Rng(3);
        let changes = (0..80)
            .map(|i| {
                let blind = rng.unit() < 0.3;
                Change::Graded {
                    domain: "finance".into(),
                    item: format!("i{i}"),
                    outcomes: vec![
                        ("clone-a".into(), !blind),
                        ("clone-b".into(), !blind),
                        ("econ".into(), rng.unit() < 0.85),
                    ],
                    verdict: None,
                    agreement: None,
                    overturn: None,
                    overturn_odds: None,
                }
            })
            .collect();
        t.apply(&TrustBatch {
            provenance: "run".into(),
            changes,
        })
        .expect("apply");
    }
    let (code, out, err) = run(&d, &["trust", "ledger", "--domain", "finance"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("clone-a, clone-b"), "{out}");
    let (_, json, _) = run(&d, &["trust", "ledger", "--domain", "finance", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["items"], 80);
    assert!(
        v["independence"]["n_eff_participation"]
            .as_f64()
            .expect("n_eff")
            < 2.5
    );
}

#[test]
fn grading_skips_failures_and_grades_the_verdict_against_its_confidence() {
    // One grading rule for eval and back-fill: failed calls (timeout, error, cancelled) are
    // not answers, while a malformed reply is the model's own (graded wrong, by the documented
    // rule of `Truth::grade`); the verdict is graded with the confidence recorded.
    let input = TallyInput::new(
        Kind::Score,
        Vec::<String>::new(),
        vec![
            Ballot::score("a", 0.30),
            Ballot::score("b", 0.32),
            Ballot::score("c", -0.9),
            Ballot::score("d", -0.85),
            Ballot::abstain("slow", Abstention::Timeout),
            Ballot::abstain("broken", Abstention::Error),
            Ballot::abstain("garbled", Abstention::Malformed),
            Ballot::abstain("cut", Abstention::Cancelled),
        ],
    );
    let mut record =
        DecisionRecord::tallied("d1", "Sentiment?", "finance", input, Rule::Median).expect("tally");
    let graded = conclave::audit::grade(&record, "0.3", 0.1).expect("grade");
    assert_eq!(
        graded,
        vec![
            ("a".to_owned(), true),
            ("b".to_owned(), true),
            ("c".to_owned(), false),
            ("d".to_owned(), false),
            ("garbled".to_owned(), false)
        ]
    );
    // Without a stated confidence, no verdict grade; the two wrong answers agree.
    let pool = conclave::audit::grade_pool(&record, "0.3", 0.1).expect("grade");
    assert_eq!(pool.verdict, None);
    assert_eq!(pool.agreement, Some(1.0));
    // The median of 0.32, 0.30, −0.85, −0.9 is −0.275: wrong, at the confidence recorded.
    record.confidence = Some(0.8);
    let pool = conclave::audit::grade_pool(&record, "0.3", 0.1).expect("grade");
    assert_eq!(pool.verdict, Some((false, 0.8)));
    // The store folds it into the domain's pool record.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let trust = SledTrustStore::new(&store, TrustParams::default()).expect("trust");
    trust
        .apply(&TrustBatch {
            provenance: "decision:1".into(),
            changes: vec![Change::Graded {
                domain: "finance".into(),
                item: "d1".into(),
                outcomes: graded,
                verdict: pool.verdict,
                agreement: pool.agreement,
                overturn: pool.overturn,
                overturn_odds: pool.overturn_odds,
            }],
        })
        .expect("apply");
    let ledger = trust.ledger("finance").expect("ledger");
    assert_eq!(ledger.pool.verdicts, 1);
    assert!((ledger.pool.alarm - (0.5f64 / 0.2).ln()).abs() < 1e-12);
    assert!(ledger.pool.agreement_chance() > 0.5);
}

#[test]
fn absurd_imported_states_are_refused_and_the_store_stays_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let good = serde_json::json!({
        "version": 1,
        "states": [{"agent": "econ", "domain": "finance", "state": {
            "alpha": 10.0, "beta": 3.0, "n": 11, "errors": 2, "suspicion": 0.0,
            "recent_errors": 0, "clean_streak": 3, "suspect": false, "ejected": false
        }}]
    });
    let file = dir.path().join("trust.json");
    std::fs::write(&file, good.to_string()).expect("write");
    let (code, _, err) = run(&store, &["trust", "import", file.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");
    for (field, value) in [
        ("alpha", serde_json::json!(1e308)),
        ("beta", serde_json::json!(1e20)),
        // Subnormal pseudo-counts (they hung or panicked `trust show`), and a tiny one.
        ("alpha", serde_json::json!(5e-324)),
        ("beta", serde_json::json!(1e-320)),
        ("alpha", serde_json::json!(1e-9)),
        ("suspicion", serde_json::json!(-1.0)),
        ("errors", serde_json::json!(99)),
    ] {
        let mut bad = good.clone();
        bad["states"][0]["state"][field] = value.clone();
        bad["states"][0]["agent"] = serde_json::json!(format!("bad-{field}-{value}"));
        std::fs::write(&file, bad.to_string()).expect("write");
        let (code, out, err) = run(&store, &["trust", "import", file.to_str().expect("utf-8")]);
        assert_eq!(code, 2, "{field} = {value}: {out} {err}");
        assert!(err.contains("not a valid trust state"), "{err}");
    }
    // Every later read works, quickly: nothing absurd got in.
    let started = std::time::Instant::now();
    let (code, out, err) = run(&store, &["trust", "show"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("econ") && !out.contains("bad-"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_back_fill_retried_after_a_crash_completes_once_and_never_contradicts() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().join("store");
    fill(&d, 2);
    // The crash: the outcome of record 1 reached the chain, its trust update did not.
    {
        let store = Store::open(&d).expect("store");
        let log = SledAuditLog::new(&store).expect("log");
        log.append(&Entry::Outcome(conclave::audit::OutcomeRecord {
            decision: 1,
            correct: "sell".into(),
            source: "ground-truth".into(),
            graded: vec![("news".into(), true), ("econ".into(), false)],
            at: 0,
        }))
        .expect("append");
    }
    // A different answer on retry: refused, nothing written.
    let (code, _, err) = run(&d, &["audit", "outcome", "1", "--correct", "hold"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already has the outcome \"sell\""), "{err}");
    // The same answer: the trust update is completed, no second outcome record.
    let (code, out, err) = run(
        &d,
        &["audit", "outcome", "1", "--correct", "sell", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v["outcome_record"], 3,
        "the record written before the crash"
    );
    let (_, list, _) = run(&d, &["audit", "list", "--json"]);
    let outcomes = list.matches("\"outcome\"").count();
    assert_eq!(outcomes, 1, "{list}");
    let (_, batches, _) = run(&d, &["trust", "batches"]);
    assert!(batches.contains("decision:1"), "{batches}");
    // And once complete, again: already graded.
    let (code, _, err) = run(&d, &["audit", "outcome", "1", "--correct", "sell"]);
    assert_eq!(code, 2);
    assert!(err.contains("already graded"), "{err}");
}

#[test]
fn what_a_killed_open_leaves_behind_does_not_break_the_store() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().join("store");
    fill(&d, 3);
    // A kill while sled wrote a snapshot, and while conclave checked a copy.
    fs::write(d.join("sled").join("snap.0000000000FFFFFF.generating"), b"").expect("write");
    fs::create_dir_all(d.join("check-copy").join("sled")).expect("mkdir");
    fs::write(
        d.join("check-copy").join("sled").join("db"),
        vec![7u8; 4096],
    )
    .expect("write");
    let (code, out, err) = run(&d, &["audit", "verify"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3 records verified"), "{out}");
    assert!(
        !d.join("check-copy").exists(),
        "the scratch copy is cleared"
    );
    let names: Vec<String> = fs::read_dir(d.join("sled"))
        .expect("sled")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with(".generating")),
        "{names:?}"
    );
    // Nothing is left in the temporary folder either.
    let tmp_checks = fs::read_dir(std::env::temp_dir())
        .expect("tmp")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("conclave-check-{}", std::process::id()))
        })
        .count();
    assert_eq!(tmp_checks, 0);
}

#[test]
fn a_store_that_lost_its_database_or_manifest_is_never_read_as_empty() {
    let dir = tempfile::tempdir().expect("tmp");
    // Database and manifest deleted: refused, untouched, nothing written by decide.
    let gone = dir.path().join("gone");
    fill(&gone, 2);
    fs::remove_dir_all(gone.join("sled")).expect("rm");
    fs::remove_file(gone.join("COMMITTED")).expect("rm");
    let before = listing(&gone);
    let (code, _, err) = run(&gone, &["trust", "show"]);
    assert_eq!(code, 2);
    assert!(err.contains("database (sled/) is missing"), "{err}");
    let (code, _, _) = run(
        &gone,
        &[
            "decide",
            "--policy",
            "trading",
            "Sentiment?",
            "--numeric",
            "--truth",
            "0.1",
        ],
    );
    assert_eq!(code, 2);
    assert_eq!(listing(&gone), before, "the damaged store was modified");
    // Manifest deleted, database intact: read, and the manifest recreated.
    let intact = dir.path().join("intact");
    fill(&intact, 2);
    fs::remove_file(intact.join("COMMITTED")).expect("rm");
    let (code, out, err) = run(&intact, &["audit", "verify"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 records verified"), "{out}");
    assert!(intact.join("COMMITTED").exists());
    // Manifest deleted and database damaged: refused on a copy, the files untouched.
    let broken = dir.path().join("broken");
    fill(&broken, 2);
    // An open writes a snapshot; then the manifest is lost and the snapshot damaged.
    let (code, _, err) = run(&broken, &["audit", "verify"]);
    assert_eq!(code, 0, "{err}");
    fs::remove_file(broken.join("COMMITTED")).expect("rm");
    let snap = fs::read_dir(broken.join("sled"))
        .expect("sled")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("snap."))
        })
        .expect("a snapshot");
    let mut bytes = fs::read(&snap).expect("read");
    for b in bytes.iter_mut().take(16) {
        *b ^= 0x5a;
    }
    fs::write(&snap, bytes).expect("write");
    let before = listing(&broken);
    let (code, _, err) = run(&broken, &["trust", "show"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        listing(&broken),
        before,
        "a refused open modified the damaged files"
    );
}

/// A store with one agent file and one policy file, and `conclave decide` on them (options
/// buy, hold, sell; the truth hold).
struct Desk {
    dir: tempfile::TempDir,
    store: std::path::PathBuf,
}

impl Desk {
    fn new(pool: &str, policy: &str) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        for (sub, text) in [("agents", pool), ("policies", policy)] {
            fs::create_dir_all(dir.path().join(sub)).expect("dir");
            fs::write(dir.path().join(sub).join("file.toml"), text).expect("write");
        }
        let store = dir.path().join("store");
        Self { dir, store }
    }

    /// The verdict of one decision under `policy` at `seed`, as JSON. Its id is `policy-seed`:
    /// simulated agents draw from the id and the seed, so a run is the same every time.
    fn decide(&self, policy: &str, seed: u64) -> serde_json::Value {
        let path = |sub: &str| {
            self.dir
                .path()
                .join(sub)
                .to_str()
                .expect("utf-8")
                .to_owned()
        };
        let (a, p, id, seed) = (
            path("agents"),
            path("policies"),
            format!("{policy}-{seed}"),
            seed.to_string(),
        );
        let (code, out, err) = run(
            &self.store,
            &[
                "decide",
                "--policy",
                policy,
                "--options",
                "buy,hold,sell",
                "--truth",
                "hold",
                "--seed",
                &seed,
                "--id",
                &id,
                "--agents",
                &a,
                "--policies",
                &p,
                "--json",
                "Trade?",
            ],
        );
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).expect("json")
    }
}

#[test]
fn audit_show_gives_an_arbitrated_decision_in_full_and_replay_matches() {
    let (pool, policy) = crate::support::arbitration_files("honest");
    let desk = Desk::new(&pool, policy);
    let store = desk.store.clone();
    let mut arbitrated = None;
    for seed in 0..30 {
        let v = desk.decide("arb", seed);
        if v["outcome"]["outcome"] == "arbitrated" {
            arbitrated = Some(v);
            break;
        }
    }
    let v = arbitrated.expect("three random voters fall below 0.9 within 30 seeds");
    let id = v["decision"].as_str().expect("id").to_owned();
    assert_eq!(v["ruling"]["agent"], "judge");
    let (code, shown, err) = run(&store, &["audit", "show", &id]);
    assert_eq!(code, 0, "{err}");
    for needle in [
        "outcome: arbitrated by judge",
        "arbiter's ruling:",
        "course: stopped",
        "confidence:",
    ] {
        assert!(shown.contains(needle), "{needle} missing from:\n{shown}");
    }
    let (code, out, err) = run(&store, &["audit", "replay", &id]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn audit_show_gives_a_deliberated_decision_round_by_round_and_replay_matches() {
    // Four agents moved by evidence, one that follows the most confident voice, and a
    // persuasive liar. A cold pool's deliberation is not trusted to overturn its own vote
    // (flagged); graded outcomes show its overturns are right, and later ones stand.
    let fast = "latency = { median_ms = 5, p99_ms = 10 }";
    let mut pool = String::new();
    for i in 0..4 {
        pool += &format!(
            "[[agent]]\nid = \"e{i}\"\nkind = \"scripted\"\nscripted = {{ competence = {{ default = 0.6 }}, stance = \"evidence\", {fast} }}\n\n"
        );
    }
    pool += &format!(
        "[[agent]]\nid = \"s\"\nkind = \"scripted\"\nscripted = {{ competence = {{ default = 0.6 }}, stance = \"confident\", {fast} }}\n\n"
    );
    pool += &format!(
        "[[agent]]\nid = \"liar\"\nkind = \"scripted\"\nscripted = {{ competence = {{ default = 0.6 }}, confidence = {{ model = \"constant\", value = 0.99 }}, behaviour = {{ kind = \"always-wrong\" }}, {fast} }}\n"
    );
    let desk = Desk::new(
        &pool,
        r#"id = "d"
description = "Deliberating desk."
applies = { domains = ["trading"], kinds = ["choice"] }
pool = { agents = ["e0", "e1", "e2", "e3", "s", "liar"] }
rule = { name = "weighted-plurality" }
quorum = { ballots = 6 }
early_stop = { enabled = false }
thresholds = { accept = 0.0, arbitrate = 0.0, human = 0.0 }
deliberation = { rounds = 3, tau = 0.95 }
"#,
    );
    let store = desk.store.clone();
    let (mut moved, mut flagged) = (None, None);
    for seed in 0..120 {
        let v = desk.decide("d", seed);
        let id = v["decision"].as_str().expect("id").to_owned();
        let rounds = v["rounds"].as_array().cloned().unwrap_or_default();
        if let Some(last) = rounds.last() {
            if last["acquiescence"].is_string() {
                flagged.get_or_insert(id.clone());
            } else if rounds.len() > 1 && last["answer"] != rounds[0]["answer"] {
                moved.get_or_insert(id.clone());
            }
        }
        if moved.is_some() && flagged.is_some() {
            break;
        }
        // The outcome is graded: trust, and the pool's record of its overturns, learn.
        let (code, out, err) = run(&store, &["audit", "outcome", &id, "--correct", "hold"]);
        assert_eq!(code, 0, "{out}{err}");
    }
    let (moved, flagged) = (
        moved.expect("an overturn that stood within 120 decisions"),
        flagged.expect("a flagged deliberation within 120 decisions"),
    );
    let (code, ledger, err) = run(
        &store,
        &["trust", "ledger", "--domain", "trading", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(ledger.contains("overturns"), "{ledger}");
    // The graded overturns carried the independent vote's odds: the pool's likelihood ratio
    // for its overturns has moved off 1.
    let _ = run(&store, &["audit", "outcome", &moved, "--correct", "hold"]);
    let (code, ledger, err) = run(
        &store,
        &["trust", "ledger", "--domain", "trading", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&ledger).expect("ledger JSON");
    let log_lr = json
        .pointer("/independence/pool/overturn_log_lr")
        .and_then(serde_json::Value::as_f64);
    assert!(log_lr.is_some_and(|l| l != 0.0), "{ledger}");
    let (code, ledger, err) = run(&store, &["trust", "ledger", "--domain", "trading"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        ledger.contains("deliberation overturned the independent vote rightly"),
        "{ledger}"
    );
    for (id, extra) in [(&moved, None), (&flagged, Some("flagged: the pool moved"))] {
        let (code, shown, err) = run(&store, &["audit", "show", id]);
        assert_eq!(code, 0, "{err}");
        for needle in [
            "round 1: consensus",
            "round 2: consensus",
            "course: stopped",
            "outcome: decided",
        ]
        .into_iter()
        .chain(extra)
        {
            assert!(shown.contains(needle), "{needle} missing from:\n{shown}");
        }
        let (code, out, err) = run(&store, &["audit", "replay", id]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("bit for bit"), "{out}");
    }
}

/// Appends from many threads at once (a server's workers) all land, in one intact chain; a
/// reopened store accepts what was committed.
#[test]
fn concurrent_appends_from_many_threads_all_land() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("store");
    {
        let store = Store::open(&path).expect("open");
        let log = std::sync::Arc::new(SledAuditLog::new(&store).expect("log"));
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        log.append(&decision(t * 100 + i)).expect("append");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let v = log.verify().expect("verify");
        assert_eq!((v.records, v.first_broken), (200, None));
    }
    let store = Store::open(&path).expect("reopen");
    let log = SledAuditLog::new(&store).expect("log");
    assert_eq!(log.records().expect("records").len(), 200);
}
