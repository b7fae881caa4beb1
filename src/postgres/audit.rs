//! The audit log in PostgreSQL (feature `postgres`): one hash chain that every replica on the
//! database appends to. An append locks the head row (`SELECT … FOR UPDATE`), links its
//! records to the head and moves it, in one transaction: appends from many replicas are
//! serialised on that row, and the chain stays one chain. A decision's idempotency key is
//! unique in the table, so a key is recorded once whichever replica decides it.
//!
//! Appends that arrive together are written together (group commit): while one transaction
//! writes, the others wait, and the next writer takes them all in one transaction.
//!
//! Records are stored as the sled log stores them (previous hash, hash, JSON body), so
//! `conclave audit verify` checks both the same way.

use std::sync::{Arc, Condvar, Mutex};

use postgres::IsolationLevel::ReadCommitted;

use super::{Database, Tx, unique_violation};
use crate::audit::{
    AuditError, AuditLog, AuditRecord, Entry, Hash, Verification, decode, encode, verify_chain,
};

/// The audit log in a PostgreSQL [`Database`]. Clones share one group commit.
#[derive(Debug, Clone)]
pub struct PgAuditLog {
    db: Database,
    group: Arc<Group>,
}

/// One append waiting in the group: its entries, and where its result goes.
type Slot = Arc<Mutex<Option<Result<Vec<AuditRecord>, AuditError>>>>;

/// Group commit: appends that arrive while one transaction is writing wait, and the next
/// writer takes all of them in one transaction (one lock of the head, one flush).
#[derive(Debug, Default)]
struct Group {
    state: Mutex<Waiting>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct Waiting {
    queue: Vec<(Vec<Entry>, Slot)>,
    writing: bool,
}

impl PgAuditLog {
    /// The audit log in `db`.
    pub fn new(db: &Database) -> Self {
        Self {
            db: db.clone(),
            group: Arc::default(),
        }
    }

    /// Appends `entries` in one transaction of their own.
    fn append_alone(&self, entries: Vec<Entry>) -> Result<Vec<AuditRecord>, AuditError> {
        self.db
            .transact(ReadCommitted, move |tx| append_in(tx, &entries))
    }

    /// Writes a group: all in one transaction; if that fails (a duplicate key among them),
    /// each append alone, so that only the one at fault fails.
    fn write(&self, batch: Vec<(Vec<Entry>, Slot)>) {
        let all: Vec<Entry> = batch.iter().flat_map(|(e, _)| e.iter().cloned()).collect();
        let results: Vec<Result<Vec<AuditRecord>, AuditError>> =
            match (batch.len() > 1).then(|| self.append_alone(all)) {
                Some(Ok(mut records)) => batch
                    .iter()
                    .map(|(e, _)| Ok(records.drain(..e.len()).collect()))
                    .collect(),
                // Any other failure is every append's (nothing of the group was written).
                Some(Err(e))
                    if !matches!(
                        e,
                        AuditError::DuplicateKey(_)
                            | AuditError::DuplicateId(_)
                            | AuditError::Settled { .. }
                    ) =>
                {
                    batch
                        .iter()
                        .map(|_| {
                            Err(AuditError::Database(crate::postgres::DbError::Query(
                                e.to_string(),
                            )))
                        })
                        .collect()
                }
                _ => batch
                    .iter()
                    .map(|(e, _)| self.append_alone(e.clone()))
                    .collect(),
            };
        for ((_, slot), result) in batch.into_iter().zip(results) {
            if let Ok(mut s) = slot.lock() {
                *s = Some(result);
            }
        }
    }

    fn read_rows(
        &self,
        sql: &'static str,
        param: Option<String>,
    ) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
        Ok(self.db.run(move |c| {
            let rows = match &param {
                Some(p) => c.query(sql, &[p])?,
                None => c.query(sql, &[])?,
            };
            Ok(rows
                .iter()
                .map(|r| (u64::try_from(r.get::<_, i64>(0)).unwrap_or(0), r.get(1)))
                .collect())
        })?)
    }

    fn one(&self, sql: &'static str, param: String) -> Result<Option<AuditRecord>, AuditError> {
        match self.read_rows(sql, Some(param))?.into_iter().next() {
            None => Ok(None),
            Some((seq, value)) => decode(seq, &value)
                .map(Some)
                .map_err(|detail| AuditError::Unreadable { seq, detail }),
        }
    }
}

fn hash_of(bytes: &[u8]) -> Option<Hash> {
    bytes.try_into().ok()
}

/// The idempotency key of a decision entry.
fn key_of(entry: &Entry) -> Option<&str> {
    match entry {
        Entry::Decision(d) => d.idempotency_key.as_deref(),
        _ => None,
    }
}

/// The `Settled` error for `entry`, found settled by the row (seq, record).
fn settled(entry: &Entry, row: &postgres::Row) -> AuditError {
    let at = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
    let found = decode(at, row.get(1)).ok();
    let (kind, decision, _) = entry.settles().unwrap_or(("outcome", 0, ""));
    AuditError::Settled {
        decision,
        kind,
        answer: found
            .as_ref()
            .and_then(|r| r.entry.settles())
            .map(|(_, _, a)| a.to_owned())
            .unwrap_or_default(),
        record: at,
    }
}

/// Appends `entries` after the chain's head, inside `tx` (the head row is locked first).
fn append_in(
    tx: &mut postgres::Transaction<'_>,
    entries: &[Entry],
) -> Result<Vec<AuditRecord>, Tx<AuditError>> {
    let head = tx.query_one(
        "SELECT seq, hash FROM conclave.audit_head WHERE id = 1 FOR UPDATE",
        &[],
    )?;
    let mut seq = u64::try_from(head.get::<_, i64>(0)).unwrap_or(0);
    let mut prev = hash_of(head.get(1)).ok_or_else(|| {
        Tx::Abort(AuditError::Unreadable {
            seq,
            detail: "the head of the chain is damaged; run `conclave audit verify`".to_owned(),
        })
    })?;
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        seq += 1;
        let (hash, value) = encode(seq, &prev, entry);
        let decision = match entry {
            Entry::Decision(d) => Some(d.id.as_str()),
            _ => None,
        };
        let key = key_of(entry);
        let settles = entry.settles_key();
        let n = i64::try_from(seq).unwrap_or(i64::MAX);
        if let Some(id) = decision
            && tx
                .query_opt("SELECT 1 FROM conclave.audit WHERE decision = $1", &[&id])?
                .is_some()
        {
            // Checked under the head's lock: appends are one at a time.
            return Err(Tx::Abort(AuditError::DuplicateId(id.to_owned())));
        }
        if let Some(k) = &settles {
            // Checked under the head's lock; the unique index holds it in any case.
            if let Some(row) = tx.query_opt(
                "SELECT seq, record FROM conclave.audit WHERE settles = $1",
                &[k],
            )? {
                return Err(Tx::Abort(settled(entry, &row)));
            }
        }
        tx.execute(
            "INSERT INTO conclave.audit (seq, record, decision, idempotency_key, settles)
             VALUES ($1, $2, $3, $4, $5)",
            &[&n, &value, &decision, &key, &settles],
        )
        .map_err(|e| {
            let constraint = e.as_db_error().and_then(|d| d.constraint()).unwrap_or("");
            match key {
                Some(k) if unique_violation(&e) && !constraint.contains("settles") => {
                    Tx::Abort(AuditError::DuplicateKey(k.to_owned()))
                }
                _ => Tx::Db(e),
            }
        })?;
        out.push(AuditRecord {
            seq,
            prev,
            hash,
            entry: entry.clone(),
        });
        prev = hash;
    }
    let n = i64::try_from(seq).unwrap_or(i64::MAX);
    tx.execute(
        "UPDATE conclave.audit_head SET seq = $1, hash = $2 WHERE id = 1",
        &[&n, &prev.as_slice()],
    )?;
    Ok(out)
}

impl AuditLog for PgAuditLog {
    fn append(&self, entry: &Entry) -> Result<AuditRecord, AuditError> {
        crate::audit::only_record(self.append_all(std::slice::from_ref(entry))?)
    }

    fn append_all(&self, entries: &[Entry]) -> Result<Vec<AuditRecord>, AuditError> {
        let poisoned = || AuditError::Unreadable {
            seq: 0,
            detail: "the group commit's lock is poisoned".to_owned(),
        };
        let slot: Slot = Arc::default();
        let mut state = self.group.state.lock().map_err(|_| poisoned())?;
        state.queue.push((entries.to_vec(), slot.clone()));
        loop {
            if let Some(result) = slot.lock().map_err(|_| poisoned())?.take() {
                return result;
            }
            if state.writing {
                state = self.group.done.wait(state).map_err(|_| poisoned())?;
                continue;
            }
            // Nobody is writing: this append writes everything waiting, its own included.
            state.writing = true;
            let batch = std::mem::take(&mut state.queue);
            drop(state);
            self.write(batch);
            state = self.group.state.lock().map_err(|_| poisoned())?;
            state.writing = false;
            self.group.done.notify_all();
        }
    }

    fn get(&self, seq: u64) -> Result<Option<AuditRecord>, AuditError> {
        self.one(
            "SELECT seq, record FROM conclave.audit WHERE seq = $1::text::bigint",
            seq.to_string(),
        )
    }

    fn records(&self) -> Result<Vec<AuditRecord>, AuditError> {
        Ok(self
            .read_rows("SELECT seq, record FROM conclave.audit ORDER BY seq", None)?
            .into_iter()
            .filter_map(|(seq, v)| decode(seq, &v).ok())
            .collect())
    }

    fn verify(&self) -> Result<Verification, AuditError> {
        // The head and the records in one snapshot: appends going on meanwhile are not seen
        // half.
        let (head, rows) = self
            .db
            .transact(postgres::IsolationLevel::RepeatableRead, |tx| {
                let head = tx.query_one(
                    "SELECT seq, hash FROM conclave.audit_head WHERE id = 1",
                    &[],
                )?;
                let seq = u64::try_from(head.get::<_, i64>(0)).unwrap_or(0);
                let hash = hash_of(head.get(1));
                let rows: Vec<(u64, Vec<u8>)> = tx
                    .query("SELECT seq, record FROM conclave.audit ORDER BY seq", &[])?
                    .iter()
                    .map(|r| (u64::try_from(r.get::<_, i64>(0)).unwrap_or(0), r.get(1)))
                    .collect();
                Ok::<_, Tx<AuditError>>((hash.map(|h| (seq, h)), rows))
            })?;
        let head = match head {
            Some(h) => h,
            None => {
                return Ok(Verification {
                    records: rows.len() as u64,
                    first_broken: Some(crate::audit::Broken {
                        seq: 0,
                        reason: "the head of the chain is damaged".to_owned(),
                    }),
                });
            }
        };
        Ok(verify_chain(rows.into_iter(), Some(head)))
    }

    fn find(&self, id: &str) -> Result<AuditRecord, AuditError> {
        if let Ok(seq) = id.parse::<u64>()
            && let Some(r) = self.get(seq)?
        {
            return Ok(r);
        }
        self.one(
            "SELECT seq, record FROM conclave.audit WHERE decision = $1 ORDER BY seq LIMIT 1",
            id.to_owned(),
        )?
        .ok_or_else(|| AuditError::NotFound(id.to_owned()))
    }

    fn settled(&self, decision: u64, kind: &str) -> Result<Option<AuditRecord>, AuditError> {
        self.one(
            "SELECT seq, record FROM conclave.audit WHERE settles = $1",
            format!("{kind}:{decision}"),
        )
    }

    fn find_key(&self, key: &str) -> Result<Option<AuditRecord>, AuditError> {
        self.one(
            "SELECT seq, record FROM conclave.audit WHERE idempotency_key = $1",
            key.to_owned(),
        )
    }
}

impl crate::directives::OrderBook for PgAuditLog {
    fn orders(&self) -> Result<crate::directives::Directives, crate::directives::OrdersError> {
        self.db
            .directives()
            .map_err(|e| crate::directives::OrdersError::Book(e.to_string()))
    }

    fn change(
        &self,
        change: crate::directives::Change,
    ) -> Result<(crate::directives::Directives, Option<AuditRecord>), crate::directives::OrdersError>
    {
        use crate::directives::{Directives, OrdersError};
        let empty = serde_json::to_string(&Directives::default())
            .map_err(|e| OrdersError::Book(e.to_string()))?;
        // The change runs on the orders read under the row's lock (again if the transaction
        // is retried), so a concurrent change by another replica is never lost.
        self.db.transact(ReadCommitted, move |tx| {
            tx.execute(
                "INSERT INTO conclave.directives (id, value) VALUES (1, $1) ON CONFLICT DO NOTHING",
                &[&empty],
            )?;
            let row = tx.query_one(
                "SELECT value FROM conclave.directives WHERE id = 1 FOR UPDATE",
                &[],
            )?;
            let before: Directives = serde_json::from_str(row.get::<_, &str>(0)).map_err(|e| {
                Tx::Abort(OrdersError::Book(format!(
                    "the Director's orders are unreadable: {e}"
                )))
            })?;
            let Some((after, entry)) = crate::directives::applied(&before, &change)
                .map_err(|e| Tx::Abort(OrdersError::Order(e)))?
            else {
                return Ok((before, None));
            };
            let value = serde_json::to_string(&after)
                .map_err(|e| Tx::Abort(OrdersError::Book(e.to_string())))?;
            tx.execute(
                "UPDATE conclave.directives SET value = $1 WHERE id = 1",
                &[&value],
            )?;
            let record = match entry {
                Some(e) => append_in(tx, &[Entry::Directive(e)])
                    .map_err(|e| match e {
                        Tx::Db(e) => Tx::Db(e),
                        Tx::Abort(e) => Tx::Abort(OrdersError::Book(e.to_string())),
                    })?
                    .pop(),
                None => None,
            };
            Ok((after, record))
        })
    }
}
