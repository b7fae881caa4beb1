//! Benchmarks of the trust store and the audit log on disk (sled), divan.
//!
//! `cargo bench --bench store`: a trust snapshot of 100 agents; one batch of 10,000 graded
//! outcomes; audit appends, each flushed; `audit verify` over 100,000 records. The
//! in-memory stores run the same operations as the baseline of each row.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use conclave::aggregate::{Kind, Rule, TallyInput};
use conclave::audit::{AuditLog, DecisionRecord, Entry, MemoryAuditLog, SledAuditLog};
use conclave::ballot::Ballot;
use conclave::store::Store;
use conclave::trust::TrustParams;
use conclave::trust::store::{Change, MemoryTrustStore, SledTrustStore, TrustBatch, TrustStore};
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

fn graded_batch(provenance: &str, agents: usize, items: usize) -> TrustBatch {
    TrustBatch {
        provenance: provenance.to_owned(),
        changes: (0..items)
            .map(|i| Change::Graded {
                domain: "finance".into(),
                item: format!("item-{i}"),
                outcomes: (0..agents)
                    .map(|a| (format!("agent-{a:03}"), (i * 7 + a) % 5 != 0))
                    .collect(),
                verdict: None,
                agreement: None,
                overturn: None,
                overturn_odds: None,
            })
            .collect(),
    }
}

fn decision(i: u64) -> Entry {
    let input = TallyInput::new(
        Kind::Choice,
        ["buy", "hold", "sell"],
        (0..7)
            .map(|a| {
                Ballot::choice(
                    format!("agent-{a}"),
                    ["buy", "hold", "sell"][((i + a) % 3) as usize],
                )
                .with_confidence(0.7)
            })
            .collect(),
    );
    Entry::Decision(Box::new(
        DecisionRecord::tallied(format!("d{i}"), "Trade?", "finance", input, Rule::Plurality)
            .unwrap(),
    ))
}

fn stores() -> &'static (tempfile::TempDir, Store) {
    static S: OnceLock<(tempfile::TempDir, Store)> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    })
}

#[divan::bench(sample_count = 50)]
fn trust_snapshot_100_agents_sled(bencher: Bencher<'_, '_>) {
    let (_, store) = stores();
    let t = SledTrustStore::new(store, TrustParams::default()).unwrap();
    if t.snapshot().unwrap().states.is_empty() {
        t.apply(&graded_batch("seed", 100, 20)).unwrap();
    }
    bencher.bench_local(|| black_box(t.snapshot().unwrap()));
}

#[divan::bench(sample_count = 50)]
fn trust_snapshot_100_agents_memory(bencher: Bencher<'_, '_>) {
    let t = MemoryTrustStore::new(TrustParams::default()).unwrap();
    t.apply(&graded_batch("seed", 100, 20)).unwrap();
    bencher.bench_local(|| black_box(t.snapshot().unwrap()));
}

#[divan::bench(sample_count = 10)]
fn trust_batch_10000_updates_sled(bencher: Bencher<'_, '_>) {
    bencher
        .with_inputs(|| {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let t = SledTrustStore::new(&store, TrustParams::default()).unwrap();
            (dir, store, t, graded_batch("run", 100, 100))
        })
        .bench_local_values(|(dir, store, t, batch)| {
            t.apply(&batch).unwrap();
            (dir, store, t)
        });
}

#[divan::bench(sample_count = 10)]
fn trust_batch_10000_updates_memory(bencher: Bencher<'_, '_>) {
    bencher
        .with_inputs(|| {
            (
                MemoryTrustStore::new(TrustParams::default()).unwrap(),
                graded_batch("run", 100, 100),
            )
        })
        .bench_local_values(|(t, batch)| {
            t.apply(&batch).unwrap();
            t
        });
}

#[divan::bench(sample_count = 30)]
fn audit_append_flushed_sled(bencher: Bencher<'_, '_>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = SledAuditLog::new(&store).unwrap();
    let entry = decision(1);
    bencher.bench_local(|| log.append(&entry).unwrap());
}

#[divan::bench(sample_count = 30)]
fn audit_append_memory(bencher: Bencher<'_, '_>) {
    let log = MemoryAuditLog::new();
    let entry = decision(1);
    bencher.bench_local(|| log.append(&entry).unwrap());
}

#[divan::bench(sample_count = 10)]
fn audit_append_1000_in_one_flush_sled(bencher: Bencher<'_, '_>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = SledAuditLog::new(&store).unwrap();
    let entries: Vec<Entry> = (0..1000).map(decision).collect();
    bencher.bench_local(|| log.append_all(&entries).unwrap());
}

#[divan::bench(sample_count = 5)]
fn audit_verify_100000_records_sled(bencher: Bencher<'_, '_>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = SledAuditLog::new(&store).unwrap();
    let entries: Vec<Entry> = (0..1000).map(decision).collect();
    for _ in 0..100 {
        log.append_all(&entries).unwrap();
    }
    bencher.bench_local(|| {
        let v = log.verify().unwrap();
        assert_eq!(v.records, 100_000);
        assert!(v.first_broken.is_none());
    });
}

#[divan::bench(sample_count = 5)]
fn audit_verify_100000_records_memory(bencher: Bencher<'_, '_>) {
    let log = MemoryAuditLog::new();
    let entries: Vec<Entry> = (0..1000).map(decision).collect();
    for _ in 0..100 {
        log.append_all(&entries).unwrap();
    }
    bencher.bench_local(|| black_box(log.verify().unwrap()));
}
