//! The audit log in sled, inside the on-disk [`Store`] (feature `sled`).

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{
    AuditError, AuditLog, AuditRecord, Entry, Hash, Verification, decode, encode, verify_chain,
};
use crate::store::Store;

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
        };
        log.index_settled()?;
        Ok(log)
    }

    /// Indexes the outcomes and overrides of a log written before they were indexed (once:
    /// the first of each per decision holds the index, as it was the one that stood).
    fn index_settled(&self) -> Result<(), AuditError> {
        let err = |e| self.store.sled_err(e);
        if self.meta.get(b"settled-indexed").map_err(err)?.is_some() {
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

impl AuditLog for SledAuditLog {
    fn append(&self, entry: &Entry) -> Result<AuditRecord, AuditError> {
        super::only_record(self.append_all(std::slice::from_ref(entry))?)
    }

    fn append_all(&self, entries: &[Entry]) -> Result<Vec<AuditRecord>, AuditError> {
        let result = (&self.records, &self.meta, &self.keys, &self.settled).transaction(
            |(records, meta, keys, settled)| {
                let (mut seq, mut prev) = match meta.get(b"head")? {
                    Some(v) => match parse_head(&v) {
                        Some((s, h)) => (s, h),
                        None => {
                            return Err(ConflictableTransactionError::Abort(
                                AuditError::Unreadable {
                                    seq: 0,
                                    detail: "the head is damaged; run `conclave audit verify`"
                                        .to_owned(),
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
                        if let Some(at) = settled.get(key.as_bytes())? {
                            let at = seq_of(&at).unwrap_or(0);
                            let found = match records.get(at.to_be_bytes())? {
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
                        settled.insert(key.as_bytes(), &seq.to_be_bytes())?;
                    }
                    if let Entry::Decision(d) = entry
                        && let Some(k) = &d.idempotency_key
                    {
                        if keys.get(k.as_bytes())?.is_some() {
                            return Err(ConflictableTransactionError::Abort(
                                AuditError::DuplicateKey(k.clone()),
                            ));
                        }
                        keys.insert(k.as_bytes(), &seq.to_be_bytes())?;
                    }
                    let (hash, value) = encode(seq, &prev, entry);
                    records.insert(&seq.to_be_bytes(), value)?;
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
                meta.insert(b"head", head)?;
                Ok(out)
            },
        );
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
