//! The audit log in sled, inside the on-disk [`Store`] (feature `sled`).

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use super::Store;
use crate::audit::{
    AuditError, AuditLog, AuditRecord, Entry, Hash, Verification, decode, encode, verify_chain,
};

/// The audit log in the on-disk [`Store`]: tree `audit` (key: big-endian sequence number)
/// and tree `audit_meta` (the head).
#[derive(Debug, Clone)]
pub struct SledAuditLog {
    store: Store,
    records: sled::Tree,
    meta: sled::Tree,
    /// Idempotency key → the sequence number of its decision.
    keys: sled::Tree,
    /// `outcome:SEQ` and `override:SEQ` → the record that settled decision SEQ (each is
    /// recorded once).
    settled: sled::Tree,
    /// Decision id → the sequence number of its decision (ids are unique).
    ids: sled::Tree,
}

impl SledAuditLog {
    /// The audit log inside `store`.
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn new(store: &Store) -> Result<Self, AuditError> {
        let log = Self {
            store: store.clone(),
            records: store.tree("audit")?,
            meta: store.tree("audit_meta")?,
            keys: store.tree("audit_keys")?,
            settled: store.tree("audit_settled")?,
            ids: store.tree("audit_ids")?,
        };
        log.index_settled()?;
        Ok(log)
    }

    /// Indexes the decision ids, outcomes and overrides of a log written before they were
    /// indexed (once: the first of each holds the index, as it was the one that stood).
    fn index_settled(&self) -> Result<(), AuditError> {
        let err = |e| self.store.sled_err(e);
        if self.meta.get(b"indexed-v2").map_err(err)?.is_some() {
            return Ok(());
        }
        for kv in self.records.iter() {
            let (k, v) = kv.map_err(err)?;
            let Some(seq) = seq_of(&k) else { continue };
            let Ok(r) = decode(seq, &v) else { continue };
            if let Some(key) = r.entry.settles_key()
                && self.settled.get(key.as_bytes()).map_err(err)?.is_none()
            {
                self.settled
                    .insert(key.as_bytes(), &seq.to_be_bytes())
                    .map_err(err)?;
            }
        }
        self.meta.insert(b"settled-indexed", &[1u8]).map_err(err)?;
        self.store.flush()?;
        Ok(())
    }

    fn head(&self) -> Result<Option<(u64, Hash)>, AuditError> {
        let Some(v) = self.meta.get(b"head").map_err(|e| self.store.sled_err(e))? else {
            return Ok(None);
        };
        parse_head(&v)
            .map(Some)
            .ok_or_else(|| AuditError::Unreadable {
                seq: 0,
                detail: "the head is damaged".to_owned(),
            })
    }

    /// Overwrites the stored bytes of a record, bypassing the chain (to test tamper
    /// detection; never used by conclave itself).
    ///
    /// # Errors
    /// The store cannot be written.
    pub fn tamper(&self, seq: u64, f: impl FnOnce(&mut Vec<u8>)) -> Result<(), AuditError> {
        if let Some(v) = self
            .records
            .get(seq.to_be_bytes())
            .map_err(|e| self.store.sled_err(e))?
        {
            let mut bytes = v.to_vec();
            f(&mut bytes);
            self.records
                .insert(seq.to_be_bytes(), bytes)
                .map_err(|e| self.store.sled_err(e))?;
            self.store.flush()?;
        }
        Ok(())
    }
}

fn parse_head(v: &[u8]) -> Option<(u64, Hash)> {
    if v.len() != 40 {
        return None;
    }
    let mut s = [0u8; 8];
    s.copy_from_slice(&v[..8]);
    let mut h = [0u8; 32];
    h.copy_from_slice(&v[8..]);
    Some((u64::from_be_bytes(s), h))
}

fn seq_of(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// The log's trees inside one transaction.
struct Trees<'a> {
    records: &'a TransactionalTree,
    meta: &'a TransactionalTree,
    keys: &'a TransactionalTree,
    settled: &'a TransactionalTree,
    ids: &'a TransactionalTree,
}

/// Appends `entries` inside a transaction over the log's trees: unique ids and keys, one
/// outcome and one override per decision.
fn append_in(
    t: &Trees<'_>,
    entries: &[Entry],
) -> Result<Vec<AuditRecord>, ConflictableTransactionError<AuditError>> {
    let (mut seq, mut prev) = match t.meta.get(b"head")? {
        Some(v) => match parse_head(&v) {
            Some((s, h)) => (s, h),
            None => {
                return Err(ConflictableTransactionError::Abort(
                    AuditError::Unreadable {
                        seq: 0,
                        detail: "the head is damaged; run `conclave audit verify`".to_owned(),
                    },
                ));
            }
        },
        None => (0, [0u8; 32]),
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        seq += 1;
        if let Some(key) = entry.settles_key() {
            if let Some(at) = t.settled.get(key.as_bytes())? {
                let at = seq_of(&at).unwrap_or(0);
                let found = match t.records.get(at.to_be_bytes())? {
                    Some(v) => decode(at, &v).ok(),
                    None => None,
                };
                let (kind, decision, _) = entry.settles().unwrap_or(("outcome", 0, ""));
                return Err(ConflictableTransactionError::Abort(AuditError::Settled {
                    decision,
                    kind,
                    answer: found
                        .as_ref()
                        .and_then(|r| r.entry.settles())
                        .map(|(_, _, a)| a.to_owned())
                        .unwrap_or_default(),
                    record: at,
                }));
            }
            t.settled.insert(key.as_bytes(), &seq.to_be_bytes())?;
        }
        if let Entry::Decision(d) = entry {
            if t.ids.get(d.id.as_bytes())?.is_some() {
                return Err(ConflictableTransactionError::Abort(
                    AuditError::DuplicateId(d.id.clone()),
                ));
            }
            t.ids.insert(d.id.as_bytes(), &seq.to_be_bytes())?;
        }
        if let Entry::Decision(d) = entry
            && let Some(k) = &d.idempotency_key
        {
            if t.keys.get(k.as_bytes())?.is_some() {
                return Err(ConflictableTransactionError::Abort(
                    AuditError::DuplicateKey(k.clone()),
                ));
            }
            t.keys.insert(k.as_bytes(), &seq.to_be_bytes())?;
        }
        let (hash, value) = encode(seq, &prev, entry);
        t.records.insert(&seq.to_be_bytes(), value)?;
        out.push(AuditRecord {
            seq,
            prev,
            hash,
            entry: entry.clone(),
        });
        prev = hash;
    }
    let mut head = Vec::with_capacity(40);
    head.extend_from_slice(&seq.to_be_bytes());
    head.extend_from_slice(&prev);
    t.meta.insert(b"head", head)?;
    Ok(out)
}

impl AuditLog for SledAuditLog {
    fn append(&self, entry: &Entry) -> Result<AuditRecord, AuditError> {
        crate::audit::only_record(self.append_all(std::slice::from_ref(entry))?)
    }

    fn append_all(&self, entries: &[Entry]) -> Result<Vec<AuditRecord>, AuditError> {
        let result = (
            &self.records,
            &self.meta,
            &self.keys,
            &self.settled,
            &self.ids,
        )
            .transaction(|(records, meta, keys, settled, ids)| {
                append_in(
                    &Trees {
                        records,
                        meta,
                        keys,
                        settled,
                        ids,
                    },
                    entries,
                )
            });
        let records = match result {
            Ok(r) => r,
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(self.store.sled_err(e).into()),
        };
        self.store.flush()?;
        Ok(records)
    }

    fn get(&self, seq: u64) -> Result<Option<AuditRecord>, AuditError> {
        match self
            .records
            .get(seq.to_be_bytes())
            .map_err(|e| self.store.sled_err(e))?
        {
            None => Ok(None),
            Some(v) => decode(seq, &v)
                .map(Some)
                .map_err(|detail| AuditError::Unreadable { seq, detail }),
        }
    }

    fn records(&self) -> Result<Vec<AuditRecord>, AuditError> {
        let mut out = Vec::new();
        for kv in self.records.iter() {
            let (k, v) = kv.map_err(|e| self.store.sled_err(e))?;
            if let Some(seq) = seq_of(&k)
                && let Ok(r) = decode(seq, &v)
            {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn find_key(&self, key: &str) -> Result<Option<AuditRecord>, AuditError> {
        match self
            .keys
            .get(key.as_bytes())
            .map_err(|e| self.store.sled_err(e))?
        {
            Some(seq) => match seq_of(&seq) {
                Some(seq) => self.get(seq),
                None => Err(AuditError::Unreadable {
                    seq: 0,
                    detail: format!("the index entry of key \"{key}\" is damaged"),
                }),
            },
            None => Ok(None),
        }
    }

    fn find(&self, id: &str) -> Result<AuditRecord, AuditError> {
        if let Ok(seq) = id.parse::<u64>()
            && let Some(r) = self.get(seq)?
        {
            return Ok(r);
        }
        match self
            .ids
            .get(id.as_bytes())
            .map_err(|e| self.store.sled_err(e))?
        {
            Some(v) => self
                .get(seq_of(&v).unwrap_or(0))?
                .ok_or_else(|| AuditError::NotFound(id.to_owned())),
            None => Err(AuditError::NotFound(id.to_owned())),
        }
    }

    fn settled(&self, decision: u64, kind: &str) -> Result<Option<AuditRecord>, AuditError> {
        match self
            .settled
            .get(format!("{kind}:{decision}").as_bytes())
            .map_err(|e| self.store.sled_err(e))?
        {
            Some(v) => self.get(seq_of(&v).unwrap_or(0)),
            None => Ok(None),
        }
    }

    fn verify(&self) -> Result<Verification, AuditError> {
        let head = self.head()?;
        let mut items = Vec::new();
        for kv in self.records.iter() {
            let (k, v) = kv.map_err(|e| self.store.sled_err(e))?;
            items.push((seq_of(&k).unwrap_or(0), v.to_vec()));
        }
        Ok(verify_chain(items.into_iter(), head))
    }
}

/// The key of the Director's orders in the log's meta tree (kept beside the head, so that an
/// order and its record are written in one transaction).
const ORDERS: &[u8] = b"orders";

impl crate::directives::OrderBook for SledAuditLog {
    fn orders(&self) -> Result<crate::directives::Directives, crate::directives::OrdersError> {
        self.store
            .directives()
            .map_err(|e| crate::directives::OrdersError::Book(e.to_string()))
    }

    fn change(
        &self,
        change: crate::directives::Change,
    ) -> Result<(crate::directives::Directives, Option<AuditRecord>), crate::directives::OrdersError>
    {
        use crate::directives::{Directives, OrdersError};
        // Orders written before they moved beside the head (older stores) are the start; read
        // only while the head has none (not on every hand-over).
        let legacy = match self.meta.get(ORDERS).map_err(|e| self.store.sled_err(e)) {
            Ok(Some(_)) => Directives::default(),
            Ok(None) => self
                .store
                .directives()
                .map_err(|e| OrdersError::Book(e.to_string()))?,
            Err(e) => return Err(OrdersError::Book(e.to_string())),
        };
        let result = (
            &self.records,
            &self.meta,
            &self.keys,
            &self.settled,
            &self.ids,
        )
            .transaction(|(records, meta, keys, settled, ids)| {
                let abort = |e: OrdersError| ConflictableTransactionError::Abort(e);
                let before: Directives = match meta.get(ORDERS)? {
                    Some(v) => serde_json::from_slice(&v).map_err(|e| {
                        abort(OrdersError::Book(format!(
                            "the Director's orders are unreadable: {e}"
                        )))
                    })?,
                    None => legacy.clone(),
                };
                let Some((after, entry)) = crate::directives::applied(&before, &change)
                    .map_err(|e| abort(OrdersError::Order(e)))?
                else {
                    return Ok((before, None));
                };
                let bytes = serde_json::to_vec(&after)
                    .map_err(|e| abort(OrdersError::Book(e.to_string())))?;
                meta.insert(ORDERS, bytes)?;
                let record = match entry {
                    Some(e) => append_in(
                        &Trees {
                            records,
                            meta,
                            keys,
                            settled,
                            ids,
                        },
                        &[Entry::Directive(e)],
                    )
                    .map_err(|e| match e {
                        ConflictableTransactionError::Abort(e) => {
                            abort(OrdersError::Book(e.to_string()))
                        }
                        ConflictableTransactionError::Conflict => {
                            ConflictableTransactionError::Conflict
                        }
                        ConflictableTransactionError::Storage(e) => {
                            ConflictableTransactionError::Storage(e)
                        }
                    })?
                    .pop(),
                    None => None,
                };
                Ok((after, record))
            });
        let done = match result {
            Ok(r) => r,
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => {
                return Err(OrdersError::Book(self.store.sled_err(e).to_string()));
            }
        };
        self.store
            .flush()
            .map_err(|e| OrdersError::Book(e.to_string()))?;
        Ok(done)
    }
}
