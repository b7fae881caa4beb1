//! The trust stores: the same behaviour in memory and in sled; persistence; bad input.

use conclave::store::Store;
use conclave::trust::model::ALL_DOMAINS;
use conclave::trust::store::{
    Change, MemoryTrustStore, SledTrustStore, TrustBatch, TrustError, TrustStore,
};
use conclave::trust::{Status, TrustParams, TrustState};

pub(crate) fn graded(provenance: &str, items: &[(&str, &[(&str, bool)])]) -> TrustBatch {
    TrustBatch {
        provenance: provenance.to_owned(),
        changes: items
            .iter()
            .map(|(item, outcomes)| Change::Graded {
                domain: "finance".to_owned(),
                item: (*item).to_owned(),
                outcomes: outcomes
                    .iter()
                    .map(|(a, r)| ((*a).to_owned(), *r))
                    .collect(),
                verdict: None,
                agreement: None,
                overturn: None,
                overturn_odds: None,
            })
            .collect(),
    }
}

/// The behaviour every store must have.
pub(crate) fn contract(store: &dyn TrustStore) {
    let empty = store.snapshot().unwrap();
    assert_eq!(empty.version, 0);
    assert!(empty.states.is_empty());

    let a = store
        .apply(&graded(
            "run-1",
            &[
                ("i1", &[("econ", true), ("news", false)]),
                ("i2", &[("econ", true), ("news", true)]),
            ],
        ))
        .unwrap();
    assert_eq!(a.version, 1);
    // Two agents, each in its domain and across domains.
    assert_eq!(a.changed, 4);
    assert_eq!(
        store
            .snapshot()
            .unwrap()
            .get("econ", ALL_DOMAINS)
            .unwrap()
            .n,
        2
    );
    let s1 = store.snapshot().unwrap();
    assert_eq!(s1.version, 1);
    assert_eq!(s1.get("econ", "finance").unwrap().n, 2);
    assert!(
        s1.get("econ", "finance").unwrap().trust() > s1.get("news", "finance").unwrap().trust()
    );

    // A provenance counts once.
    assert!(matches!(
        store.apply(&graded("run-1", &[])),
        Err(TrustError::DuplicateBatch(_))
    ));
    assert_eq!(
        store.snapshot().unwrap(),
        s1,
        "a refused batch changes nothing"
    );

    store
        .apply(&graded("run-2", &[("i3", &[("econ", false)])]))
        .unwrap();
    // run-1 cannot be undone while run-2 sits on top of econ …
    let err = store.rollback("run-1").unwrap_err();
    assert!(
        matches!(&err, TrustError::ChangedSince { later, .. } if later == "run-2"),
        "{err}"
    );
    // … but run-2 can, then run-1.
    store.rollback("run-2").unwrap();
    assert_eq!(store.snapshot().unwrap().states, s1.states);
    assert!(matches!(
        store.rollback("run-2"),
        Err(TrustError::AlreadyRolledBack { .. })
    ));
    store.rollback("run-1").unwrap();
    assert!(store.snapshot().unwrap().states.is_empty());
    assert!(matches!(
        store.rollback("nope"),
        Err(TrustError::UnknownBatch(_))
    ));

    // History keeps everything, with provenance.
    store
        .apply(&graded("run-3", &[("i4", &[("econ", true)])]))
        .unwrap();
    let h = store.history("econ").unwrap();
    let provenances: Vec<&str> = h
        .iter()
        .filter(|e| e.domain == "finance")
        .map(|e| e.provenance.as_str())
        .collect();
    assert_eq!(
        provenances,
        [
            "run-1",
            "run-2",
            "rollback:run-2",
            "rollback:run-1",
            "run-3"
        ]
    );
    assert!(matches!(
        store.history("ghost"),
        Err(TrustError::UnknownAgent(_))
    ));

    // Re-admission: only of known agents.
    assert!(matches!(
        store.apply(&TrustBatch {
            provenance: "admit-ghost".into(),
            changes: vec![Change::Readmit {
                agent: "ghost".into(),
                domain: None
            }]
        }),
        Err(TrustError::UnknownAgent(_))
    ));
    let p = TrustParams::default();
    let mut ejected = TrustState::new(&p);
    ejected.ejected = true;
    store
        .apply(&TrustBatch {
            provenance: "import".into(),
            changes: vec![Change::Set {
                agent: "bad".into(),
                domain: "finance".into(),
                state: ejected,
            }],
        })
        .unwrap();
    assert_eq!(
        store
            .snapshot()
            .unwrap()
            .get("bad", "finance")
            .unwrap()
            .status(&p),
        Status::Ejected
    );
    store
        .apply(&TrustBatch {
            provenance: "admit-bad".into(),
            changes: vec![Change::Readmit {
                agent: "bad".into(),
                domain: None,
            }],
        })
        .unwrap();
    assert_eq!(
        store
            .snapshot()
            .unwrap()
            .get("bad", "finance")
            .unwrap()
            .status(&p),
        Status::Provisional
    );

    // Re-admission in one domain also restarts the record across domains, which would
    // otherwise keep the agent out of that domain.
    let mut across = TrustState::new(&p);
    across.ejected = true;
    store
        .apply(&TrustBatch {
            provenance: "import-across".into(),
            changes: vec![Change::Set {
                agent: "bad".into(),
                domain: ALL_DOMAINS.into(),
                state: across,
            }],
        })
        .unwrap();
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.standing("bad", "finance"), Status::Ejected);
    store
        .apply(&TrustBatch {
            provenance: "admit-bad-finance".into(),
            changes: vec![Change::Readmit {
                agent: "bad".into(),
                domain: Some("finance".into()),
            }],
        })
        .unwrap();
    assert_eq!(
        store.snapshot().unwrap().standing("bad", "finance"),
        Status::Provisional
    );

    // The ledger sees graded items.
    assert!(!store.ledger("finance").unwrap().is_empty());

    // Graded overturns teach the pool how far its deliberation outweighs the independent
    // vote: right ones against odds of 1:9 raise the ratio past 9, so that such a move
    // would stand; an overturn without odds (an older record) moves only the share.
    let overturns = |right: bool, odds: Option<f64>, n: usize| TrustBatch {
        provenance: format!("desk-{}", odds.is_some()),
        changes: (0..n)
            .map(|i| Change::Graded {
                domain: "desk".into(),
                item: format!("o{i}"),
                outcomes: vec![("econ".into(), right)],
                verdict: None,
                agreement: None,
                overturn: Some(right),
                overturn_odds: odds,
            })
            .collect(),
    };
    store.apply(&overturns(true, None, 3)).unwrap();
    let pool = store.ledger("desk").unwrap().pool;
    assert_eq!(pool.overturn_ratio(), 1.0);
    assert!(pool.overturn_reliability() > 0.75, "{pool:?}");
    store.apply(&overturns(true, Some(1.0 / 9.0), 10)).unwrap();
    let pool = store.ledger("desk").unwrap().pool;
    assert!(pool.overturn_ratio() > 9.0, "{pool:?}");

    store.reset().unwrap();
    assert!(store.snapshot().unwrap().states.is_empty());
    assert!(store.batches().unwrap().is_empty());
}

#[test]
fn memory_store_keeps_the_contract() {
    contract(&MemoryTrustStore::new(TrustParams::default()).unwrap());
}

#[test]
fn sled_store_keeps_the_contract_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    {
        let store = Store::open(&path).unwrap();
        contract(&SledTrustStore::new(&store, TrustParams::default()).unwrap());
        let t = SledTrustStore::new(&store, TrustParams::default()).unwrap();
        t.apply(&graded("after-reset", &[("i9", &[("econ", true)])]))
            .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let t = SledTrustStore::new(&store, TrustParams::default()).unwrap();
    let snap = t.snapshot().unwrap();
    assert_eq!(snap.get("econ", "finance").unwrap().n, 1);
    assert_eq!(t.batches().unwrap().len(), 1);
}

#[test]
fn parameters_are_fixed_by_the_first_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let strict = TrustParams {
        loss_weight: 5.0,
        ..TrustParams::default()
    };
    SledTrustStore::new(&store, strict)
        .unwrap()
        .apply(&graded("r", &[("i", &[("a", true)])]))
        .unwrap();
    let reopened = SledTrustStore::new(&store, TrustParams::default()).unwrap();
    assert_eq!(reopened.snapshot().unwrap().params, strict);
}
