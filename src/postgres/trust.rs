//! The trust store in PostgreSQL (feature `postgres`), shared by every replica on the
//! database. A batch runs the same code as the sled store's (`Tables`), inside one
//! serializable transaction. Writers on every replica first queue on one advisory lock (they
//! all move the same version counter, so they would otherwise conflict and start over, and
//! nine at once exhausted the retries); should two still conflict, the loser is tried again
//! from the start, so no change is lost or counted twice.

use std::cell::RefCell;
use std::collections::BTreeMap;

use postgres::IsolationLevel::{RepeatableRead, Serializable};
use postgres::Transaction;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::postgres::{Database, DbError, Tx};
use crate::trust::ledger::{ErrorLedger, LedgerParams};
use crate::trust::model::{TrustParams, TrustState};
use crate::trust::store::*;

/// The advisory lock trust writers queue on ("trust" in ASCII, beside the migrations' key).
const WRITERS: i64 = 0x0074_7275_7374;

/// The trust store in a PostgreSQL [`Database`].
#[derive(Debug, Clone)]
pub struct PgTrustStore {
    db: Database,
    params: TrustParams,
    ledger_params: LedgerParams,
}

fn to_text<T: Serialize>(value: &T) -> String {
    // Our plain data types always serialise.
    serde_json::to_string(value).unwrap_or_default()
}

fn from_text<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, DbError> {
    serde_json::from_str(text).map_err(|e| DbError::corrupt(what, e))
}

type TxResult<T> = Result<T, Tx<TrustError>>;

/// A database error inside a transaction, naming `what` could not be read.
fn corrupt(what: &str) -> impl FnOnce(DbError) -> Tx<TrustError> {
    let what = what.to_owned();
    move |e| {
        Tx::Abort(TrustError::Database(match e {
            DbError::Corrupt { detail, .. } => DbError::Corrupt { what, detail },
            other => other,
        }))
    }
}

/// The tables, inside one transaction.
struct PgTables<'t, 'c> {
    tx: RefCell<&'t mut Transaction<'c>>,
}

impl PgTables<'_, '_> {
    fn one<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
        what: &str,
    ) -> TxResult<Option<T>> {
        let row = self.tx.borrow_mut().query_opt(sql, params)?;
        match row {
            None => Ok(None),
            Some(r) => {
                let text: &str = r.get(0);
                from_text(what, text).map(Some).map_err(corrupt(what))
            }
        }
    }

    fn exec(&self, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> TxResult<()> {
        self.tx.borrow_mut().execute(sql, params)?;
        Ok(())
    }
}

fn seq(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Tables for PgTables<'_, '_> {
    type Error = Tx<TrustError>;

    fn state(&self, key: &Key) -> TxResult<Option<TrustState>> {
        self.one(
            "SELECT state FROM conclave.trust_state WHERE agent = $1 AND domain = $2",
            &[&key.0, &key.1],
            "a trust state",
        )
    }

    fn put_state(&mut self, key: &Key, state: Option<&TrustState>) -> TxResult<()> {
        match state {
            Some(s) => self.exec(
                "INSERT INTO conclave.trust_state (agent, domain, state) VALUES ($1, $2, $3)
                 ON CONFLICT (agent, domain) DO UPDATE SET state = EXCLUDED.state",
                &[&key.0, &key.1, &to_text(s)],
            ),
            None => self.exec(
                "DELETE FROM conclave.trust_state WHERE agent = $1 AND domain = $2",
                &[&key.0, &key.1],
            ),
        }
    }

    fn counter(&self, name: &str) -> TxResult<u64> {
        Ok(self
            .one::<u64>(
                "SELECT value FROM conclave.trust_meta WHERE name = $1",
                &[&name],
                "a trust counter",
            )?
            .unwrap_or(0))
    }

    fn put_counter(&mut self, name: &str, value: u64) -> TxResult<()> {
        self.exec(
            "INSERT INTO conclave.trust_meta (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            &[&name, &value.to_string()],
        )
    }

    fn history_entry(&self, s: u64) -> TxResult<Option<HistoryEntry>> {
        self.one(
            "SELECT entry FROM conclave.trust_history WHERE seq = $1",
            &[&seq(s)],
            "a trust history entry",
        )
    }

    fn put_history(&mut self, entry: &HistoryEntry) -> TxResult<()> {
        self.exec(
            "INSERT INTO conclave.trust_history (seq, agent, entry) VALUES ($1, $2, $3)",
            &[&seq(entry.seq), &entry.agent, &to_text(entry)],
        )
    }

    fn batch(&self, provenance: &str) -> TxResult<Option<BatchSummary>> {
        self.one(
            "SELECT summary FROM conclave.trust_batch WHERE provenance = $1",
            &[&provenance],
            "a trust batch",
        )
    }

    fn put_batch(&mut self, summary: &BatchSummary) -> TxResult<()> {
        self.exec(
            "INSERT INTO conclave.trust_batch (provenance, version, summary) VALUES ($1, $2, $3)
             ON CONFLICT (provenance) DO UPDATE SET summary = EXCLUDED.summary",
            &[
                &summary.provenance,
                &seq(summary.version),
                &to_text(summary),
            ],
        )
    }

    fn ledger(&self, domain: &str) -> TxResult<Option<ErrorLedger>> {
        self.one(
            "SELECT ledger FROM conclave.trust_ledger WHERE domain = $1",
            &[&domain],
            "a correlation ledger",
        )
    }

    fn put_ledger(&mut self, domain: &str, ledger: &ErrorLedger) -> TxResult<()> {
        self.exec(
            "INSERT INTO conclave.trust_ledger (domain, ledger) VALUES ($1, $2)
             ON CONFLICT (domain) DO UPDATE SET ledger = EXCLUDED.ledger",
            &[&domain, &to_text(ledger)],
        )
    }

    fn agent_keys(&self, agent: &str) -> TxResult<Vec<Key>> {
        let rows = self.tx.borrow_mut().query(
            "SELECT domain FROM conclave.trust_state WHERE agent = $1 ORDER BY domain",
            &[&agent],
        )?;
        Ok(rows
            .iter()
            .map(|r| (agent.to_owned(), r.get::<_, String>(0)))
            .collect())
    }

    fn fail(&self, e: TrustError) -> Tx<TrustError> {
        Tx::Abort(e)
    }
}

impl PgTrustStore {
    /// The trust store in `db`. The parameters are written with the first batch and read
    /// back afterwards (as in the sled store), so every replica learns with the same rule.
    ///
    /// # Errors
    /// The database cannot be read, or holds unreadable parameters.
    pub fn new(db: &Database, params: TrustParams) -> Result<Self, TrustError> {
        params.validate()?;
        let stored: Option<String> = db.run(|c| {
            Ok(c.query_opt(
                "SELECT value FROM conclave.trust_meta WHERE name = 'params'",
                &[],
            )?
            .map(|r| r.get(0)))
        })?;
        let params = match stored {
            Some(text) => from_text("the trust parameters", &text)?,
            None => params,
        };
        Ok(Self {
            db: db.clone(),
            params,
            ledger_params: LedgerParams::default(),
        })
    }

    /// Runs `f` over the tables in one serializable transaction, retried on conflict.
    fn transact(
        &self,
        f: impl Fn(&mut PgTables<'_, '_>) -> TxResult<Applied> + Send + 'static,
    ) -> Result<Applied, TrustError> {
        let params = to_text(&self.params);
        self.db.transact_queued(WRITERS, Serializable, move |tx| {
            tx.execute(
                "INSERT INTO conclave.trust_meta (name, value) VALUES ('params', $1)
                 ON CONFLICT DO NOTHING",
                &[&params],
            )?;
            let mut t = PgTables {
                tx: RefCell::new(tx),
            };
            f(&mut t)
        })
    }

    fn read<T: Send + 'static>(
        &self,
        f: impl Fn(&mut Transaction<'_>) -> TxResult<T> + Send + 'static,
    ) -> Result<T, TrustError> {
        self.db.transact(RepeatableRead, f)
    }
}

fn all<T: DeserializeOwned>(
    tx: &mut Transaction<'_>,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
    what: &str,
) -> TxResult<Vec<T>> {
    let rows = tx.query(sql, params)?;
    rows.iter()
        .map(|r| {
            let text: &str = r.get(0);
            from_text(what, text).map_err(corrupt(what))
        })
        .collect()
}

impl TrustStore for PgTrustStore {
    fn snapshot(&self) -> Result<TrustSnapshot, TrustError> {
        let params = self.params;
        self.read(move |tx| {
            let version = match tx.query_opt(
                "SELECT value FROM conclave.trust_meta WHERE name = 'version'",
                &[],
            )? {
                Some(r) => {
                    let text: &str = r.get(0);
                    from_text("the trust version", text).map_err(corrupt("the trust version"))?
                }
                None => 0,
            };
            let mut states = BTreeMap::new();
            for r in tx.query("SELECT agent, domain, state FROM conclave.trust_state", &[])? {
                let text: &str = r.get(2);
                let state: TrustState =
                    from_text("a trust state", text).map_err(corrupt("a trust state"))?;
                states.insert((r.get(0), r.get(1)), state);
            }
            Ok(TrustSnapshot {
                version,
                params,
                states,
            })
        })
    }

    fn version(&self) -> Result<u64, TrustError> {
        Ok(self.db.run(|c| {
            match c.query_opt(
                "SELECT value FROM conclave.trust_meta WHERE name = 'version'",
                &[],
            )? {
                Some(r) => from_text("the trust version", r.get::<_, &str>(0)),
                None => Ok(0),
            }
        })?)
    }

    fn apply(&self, batch: &TrustBatch) -> Result<Applied, TrustError> {
        let (params, lp) = (self.params, self.ledger_params);
        let batch = batch.clone();
        self.transact(move |t| apply_changes(t, &params, &lp, &batch))
    }

    fn history(&self, agent: &str) -> Result<Vec<HistoryEntry>, TrustError> {
        let agent = agent.to_owned();
        self.read(move |tx| {
            let h: Vec<HistoryEntry> = all(
                tx,
                "SELECT entry FROM conclave.trust_history WHERE agent = $1 ORDER BY seq",
                &[&agent],
                "a trust history entry",
            )?;
            if h.is_empty()
                && tx
                    .query_opt(
                        "SELECT 1 FROM conclave.trust_state WHERE agent = $1 LIMIT 1",
                        &[&agent],
                    )?
                    .is_none()
            {
                return Err(Tx::Abort(TrustError::UnknownAgent(agent.clone())));
            }
            Ok(h)
        })
    }

    fn batches(&self) -> Result<Vec<BatchSummary>, TrustError> {
        self.read(|tx| {
            all(
                tx,
                "SELECT summary FROM conclave.trust_batch ORDER BY version",
                &[],
                "a trust batch",
            )
        })
    }

    fn rollback(&self, provenance: &str) -> Result<Applied, TrustError> {
        let provenance = provenance.to_owned();
        // The check and the undo run in one transaction: no other replica can change the
        // states in between.
        self.transact(move |t| {
            let target = t
                .batch(&provenance)?
                .ok_or_else(|| Tx::Abort(TrustError::UnknownBatch(provenance.clone())))?;
            let history: Vec<HistoryEntry> = all(
                &mut t.tx.borrow_mut(),
                "SELECT entry FROM conclave.trust_history WHERE seq >= $1 ORDER BY seq",
                &[&seq(target.first_seq)],
                "a trust history entry",
            )?;
            let (entries, later): (Vec<_>, Vec<_>) = history
                .into_iter()
                .partition(|e| target.changed > 0 && e.seq <= target.last_seq);
            let later: Vec<HistoryEntry> = later
                .into_iter()
                .filter(|e| e.seq > target.last_seq)
                .collect();
            let mut current = BTreeMap::new();
            for e in &entries {
                let key = (e.agent.clone(), e.domain.clone());
                let state = t.state(&key)?;
                current.insert(key, state);
            }
            check_rollback(&target, &entries, &later, |k| {
                current.get(k).cloned().flatten()
            })
            .map_err(Tx::Abort)?;
            rollback_in(t, &target)
        })
    }

    fn ledger(&self, domain: &str) -> Result<ErrorLedger, TrustError> {
        let domain = domain.to_owned();
        Ok(self
            .read(move |tx| {
                PgTables {
                    tx: RefCell::new(tx),
                }
                .ledger(&domain)
            })?
            .unwrap_or_default())
    }

    fn reset(&self) -> Result<(), TrustError> {
        self.db.transact_queued(WRITERS, Serializable, |tx| {
            tx.batch_execute(
                "DELETE FROM conclave.trust_state;
                 DELETE FROM conclave.trust_history;
                 DELETE FROM conclave.trust_batch;
                 DELETE FROM conclave.trust_ledger;
                 DELETE FROM conclave.trust_meta WHERE name <> 'params';",
            )?;
            Ok::<_, Tx<TrustError>>(())
        })
    }
}
