//! The trust store in sled, inside the on-disk [`Store`] (feature `sled`).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use crate::store::Store;
use crate::trust::ledger::{ErrorLedger, LedgerParams};
use crate::trust::model::{TrustParams, TrustState};
use crate::trust::store::*;

const TREES: [&str; 5] = [
    "trust",
    "trust_history",
    "trust_batches",
    "trust_meta",
    "trust_ledger",
];

/// The trust store in the on-disk [`Store`].
#[derive(Debug, Clone)]
pub struct SledTrustStore {
    store: Store,
    trees: [sled::Tree; 5],
    params: TrustParams,
    ledger_params: LedgerParams,
}

/// Versioned JSON envelope of every value written, so that a later format can be told apart.
#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    v: u32,
    #[serde(flatten)]
    value: T,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own plain data types to JSON cannot fail (no maps with non-string
    // keys, no custom serialisers that error).
    serde_json::to_vec(&Versioned { v: 1, value }).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let v: Versioned<T> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if v.v > 1 {
        return Err(format!("value written by a newer format (v{})", v.v));
    }
    Ok(v.value)
}

fn state_key(key: &Key) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.0.len() + key.1.len() + 1);
    k.extend_from_slice(key.0.as_bytes());
    k.push(0);
    k.extend_from_slice(key.1.as_bytes());
    k
}

fn split_key(bytes: &[u8]) -> Option<Key> {
    let i = bytes.iter().position(|&b| b == 0)?;
    let agent = std::str::from_utf8(&bytes[..i]).ok()?;
    let domain = std::str::from_utf8(&bytes[i + 1..]).ok()?;
    Some((agent.to_owned(), domain.to_owned()))
}

#[derive(Serialize, Deserialize)]
struct Counter {
    value: u64,
}

#[derive(Serialize, Deserialize)]
struct StateValue {
    state: TrustState,
}

#[derive(Serialize, Deserialize)]
struct LedgerValue {
    ledger: ErrorLedger,
}

#[derive(Serialize, Deserialize)]
struct ParamsValue {
    params: TrustParams,
}

struct SledTables<'a> {
    store: &'a Store,
    trust: &'a TransactionalTree,
    history: &'a TransactionalTree,
    batches: &'a TransactionalTree,
    meta: &'a TransactionalTree,
    ledger: &'a TransactionalTree,
    /// Every key of `trust` by agent, read before the transaction (re-admission by agent).
    agent_index: &'a BTreeMap<String, Vec<Key>>,
}

type TxError = ConflictableTransactionError<TrustError>;

impl SledTables<'_> {
    fn get<T: DeserializeOwned>(
        &self,
        tree: &TransactionalTree,
        name: &'static str,
        key: &[u8],
    ) -> Result<Option<T>, TxError> {
        match tree.get(key)? {
            None => Ok(None),
            Some(v) => decode(&v).map(Some).map_err(|d| {
                ConflictableTransactionError::Abort(TrustError::Store(
                    self.store.record_err(name, key, d),
                ))
            }),
        }
    }
}

impl Tables for SledTables<'_> {
    type Error = TxError;
    fn state(&self, key: &Key) -> Result<Option<TrustState>, TxError> {
        Ok(self
            .get::<StateValue>(self.trust, "trust", &state_key(key))?
            .map(|v| v.state))
    }
    fn put_state(&mut self, key: &Key, state: Option<&TrustState>) -> Result<(), TxError> {
        match state {
            Some(s) => self
                .trust
                .insert(state_key(key), encode(&StateValue { state: s.clone() }))?,
            None => self.trust.remove(state_key(key))?,
        };
        Ok(())
    }
    fn counter(&self, name: &str) -> Result<u64, TxError> {
        Ok(self
            .get::<Counter>(self.meta, "trust_meta", name.as_bytes())?
            .map_or(0, |c| c.value))
    }
    fn put_counter(&mut self, name: &str, value: u64) -> Result<(), TxError> {
        self.meta
            .insert(name.as_bytes(), encode(&Counter { value }))?;
        Ok(())
    }
    fn history_entry(&self, seq: u64) -> Result<Option<HistoryEntry>, TxError> {
        self.get(self.history, "trust_history", &seq.to_be_bytes())
    }
    fn put_history(&mut self, entry: &HistoryEntry) -> Result<(), TxError> {
        self.history
            .insert(&entry.seq.to_be_bytes(), encode(entry))?;
        Ok(())
    }
    fn batch(&self, provenance: &str) -> Result<Option<BatchSummary>, TxError> {
        self.get(self.batches, "trust_batches", provenance.as_bytes())
    }
    fn put_batch(&mut self, summary: &BatchSummary) -> Result<(), TxError> {
        self.batches
            .insert(summary.provenance.as_bytes(), encode(summary))?;
        Ok(())
    }
    fn ledger(&self, domain: &str) -> Result<Option<ErrorLedger>, TxError> {
        Ok(self
            .get::<LedgerValue>(self.ledger, "trust_ledger", domain.as_bytes())?
            .map(|l| l.ledger))
    }
    fn put_ledger(&mut self, domain: &str, ledger: &ErrorLedger) -> Result<(), TxError> {
        self.ledger.insert(
            domain.as_bytes(),
            encode(&LedgerValue {
                ledger: ledger.clone(),
            }),
        )?;
        Ok(())
    }
    fn agent_keys(&self, agent: &str) -> Result<Vec<Key>, TxError> {
        Ok(self.agent_index.get(agent).cloned().unwrap_or_default())
    }
    fn fail(&self, e: TrustError) -> TxError {
        ConflictableTransactionError::Abort(e)
    }
}

impl SledTrustStore {
    /// The trust store inside `store`. The parameters are fixed when the store is first
    /// used and read back afterwards, so that every batch learns with the same rule.
    ///
    /// # Errors
    /// The store cannot be read, or holds unreadable parameters.
    pub fn new(store: &Store, params: TrustParams) -> Result<Self, TrustError> {
        params.validate()?;
        let trees = [
            store.tree(TREES[0])?,
            store.tree(TREES[1])?,
            store.tree(TREES[2])?,
            store.tree(TREES[3])?,
            store.tree(TREES[4])?,
        ];
        let meta = &trees[3];
        let params = match meta.get(b"params").map_err(|e| store.sled_err(e))? {
            Some(v) => {
                decode::<ParamsValue>(&v)
                    .map_err(|d| store.record_err("trust_meta", b"params", d))?
                    .params
            }
            None => params,
        };
        Ok(Self {
            store: store.clone(),
            trees,
            params,
            ledger_params: LedgerParams::default(),
        })
    }

    fn scan<T: DeserializeOwned>(&self, i: usize) -> Result<Vec<(sled::IVec, T)>, TrustError> {
        let mut out = Vec::new();
        for kv in self.trees[i].iter() {
            let (k, v) = kv.map_err(|e| self.store.sled_err(e))?;
            let value = decode(&v).map_err(|d| self.store.record_err(TREES[i], &k, d))?;
            out.push((k, value));
        }
        Ok(out)
    }

    fn agent_index(&self) -> Result<BTreeMap<String, Vec<Key>>, TrustError> {
        let mut index: BTreeMap<String, Vec<Key>> = BTreeMap::new();
        for k in self.trees[0].iter().keys() {
            let k = k.map_err(|e| self.store.sled_err(e))?;
            if let Some(key) = split_key(&k) {
                index.entry(key.0.clone()).or_default().push(key);
            }
        }
        Ok(index)
    }

    fn transact(
        &self,
        f: impl Fn(&mut SledTables<'_>) -> Result<Applied, TxError>,
    ) -> Result<Applied, TrustError> {
        let index = self.agent_index()?;
        let [a, b, c, d, e] = &self.trees;
        let params = self.params;
        let result = (a, b, c, d, e).transaction(|(trust, history, batches, meta, ledger)| {
            if meta.get(b"params")?.is_none() {
                meta.insert(b"params", encode(&ParamsValue { params }))?;
            }
            let mut t = SledTables {
                store: &self.store,
                trust,
                history,
                batches,
                meta,
                ledger,
                agent_index: &index,
            };
            f(&mut t)
        });
        let applied = match result {
            Ok(a) => a,
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(self.store.sled_err(e).into()),
        };
        self.store.flush()?;
        Ok(applied)
    }
}

impl TrustStore for SledTrustStore {
    fn snapshot(&self) -> Result<TrustSnapshot, TrustError> {
        let version = match self.trees[3]
            .get(b"version")
            .map_err(|e| self.store.sled_err(e))?
        {
            Some(v) => {
                decode::<Counter>(&v)
                    .map_err(|d| self.store.record_err("trust_meta", b"version", d))?
                    .value
            }
            None => 0,
        };
        let mut states = BTreeMap::new();
        for (k, v) in self.scan::<StateValue>(0)? {
            let key = split_key(&k).ok_or_else(|| {
                self.store
                    .record_err("trust", &k, "key is not agent\\0domain")
            })?;
            states.insert(key, v.state);
        }
        Ok(TrustSnapshot {
            version,
            params: self.params,
            states,
        })
    }

    fn apply(&self, batch: &TrustBatch) -> Result<Applied, TrustError> {
        let (params, lp) = (self.params, self.ledger_params);
        self.transact(|t| apply_changes(t, &params, &lp, batch))
    }

    fn history(&self, agent: &str) -> Result<Vec<HistoryEntry>, TrustError> {
        let h: Vec<HistoryEntry> = self
            .scan::<HistoryEntry>(1)?
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| e.agent == agent)
            .collect();
        if h.is_empty() && !self.agent_index()?.contains_key(agent) {
            return Err(TrustError::UnknownAgent(agent.to_owned()));
        }
        Ok(h)
    }

    fn batches(&self) -> Result<Vec<BatchSummary>, TrustError> {
        let mut b: Vec<BatchSummary> = self
            .scan::<BatchSummary>(2)?
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        b.sort_by_key(|s| s.version);
        Ok(b)
    }

    fn rollback(&self, provenance: &str) -> Result<Applied, TrustError> {
        let target = self
            .batches()?
            .into_iter()
            .find(|b| b.provenance == provenance)
            .ok_or_else(|| TrustError::UnknownBatch(provenance.to_owned()))?;
        let all: Vec<HistoryEntry> = self
            .scan::<HistoryEntry>(1)?
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        let entries: Vec<HistoryEntry> = all
            .iter()
            .filter(|e| target.changed > 0 && (target.first_seq..=target.last_seq).contains(&e.seq))
            .cloned()
            .collect();
        let later: Vec<HistoryEntry> = all
            .into_iter()
            .filter(|e| e.seq > target.last_seq)
            .collect();
        let snapshot = self.snapshot()?;
        check_rollback(&target, &entries, &later, |k| {
            snapshot.states.get(k).cloned()
        })?;
        self.transact(|t| rollback_in(t, &target))
    }

    fn ledger(&self, domain: &str) -> Result<ErrorLedger, TrustError> {
        match self.trees[4]
            .get(domain.as_bytes())
            .map_err(|e| self.store.sled_err(e))?
        {
            Some(v) => Ok(decode::<LedgerValue>(&v)
                .map_err(|d| self.store.record_err("trust_ledger", domain.as_bytes(), d))?
                .ledger),
            None => Ok(ErrorLedger::default()),
        }
    }

    fn reset(&self) -> Result<(), TrustError> {
        for (i, tree) in self.trees.iter().enumerate() {
            if i == 3 {
                // Keep the parameters; drop the counters.
                tree.remove(b"version")
                    .map_err(|e| self.store.sled_err(e))?;
                tree.remove(b"history_seq")
                    .map_err(|e| self.store.sled_err(e))?;
            } else {
                tree.clear().map_err(|e| self.store.sled_err(e))?;
            }
        }
        self.store.flush()?;
        Ok(())
    }
}
