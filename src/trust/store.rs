//! Where trust lives: the [`TrustStore`] trait, an in-memory store for tests, and the sled
//! store.
//!
//! Reads return a versioned [`TrustSnapshot`]. Writes come in batches ([`TrustBatch`]: one
//! eval run, one outcome back-fill, one import), each applied atomically and flushed before
//! the call returns. Every change is appended to a history with the batch's provenance, so a
//! batch can be rolled back. The batch logic is written once, against `Tables`, and both
//! stores run it inside their own transaction.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::ledger::{ErrorLedger, LedgerParams};
use super::model::{ALL_DOMAINS, Status, TrustParams, TrustState, graded_records};
#[cfg(feature = "sled")]
use crate::store::StoreError;

#[cfg(feature = "postgres")]
pub use crate::postgres::trust::PgTrustStore;
#[cfg(feature = "sled")]
pub use crate::store::trust::SledTrustStore;

/// Trust in one agent for one domain, keyed `(agent, domain)`.
pub type Key = (String, String);

/// The trust of every known agent at one version of the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustSnapshot {
    /// Incremented by every applied batch; recorded with each decision.
    pub version: u64,
    /// The parameters the states were learned with.
    pub params: TrustParams,
    /// Every state, by `(agent, domain)`.
    #[serde(with = "keyed")]
    pub states: BTreeMap<Key, TrustState>,
}

impl TrustSnapshot {
    /// The state of `agent` in `domain`, if it has one.
    pub fn get(&self, agent: &str, domain: &str) -> Option<&TrustState> {
        self.states.get(&(agent.to_owned(), domain.to_owned()))
    }

    /// Where `agent` stands in `domain`, counting what it did in its other domains (see
    /// [`standing`](super::model::standing)).
    pub fn standing(&self, agent: &str, domain: &str) -> Status {
        super::model::standing(&self.states, &self.params, agent, domain)
    }

    /// Whether any state names `agent`.
    pub fn knows(&self, agent: &str) -> bool {
        self.states.keys().any(|(a, _)| a == agent)
    }

    /// One row per state, for tables and JSON: agent, domain, trust, interval, n, status.
    pub fn rows(&self, domain: Option<&str>) -> Vec<TrustRow> {
        self.states
            .iter()
            .filter(|((_, d), _)| domain.is_none_or(|want| want == d))
            .map(|((agent, domain), s)| {
                let (lo, hi) = s.interval(self.params.credible_level);
                TrustRow {
                    agent: agent.clone(),
                    domain: domain.clone(),
                    trust: s.trust(),
                    lower: lo,
                    upper: hi,
                    n: s.n,
                    status: self.standing(agent, domain),
                }
            })
            .collect()
    }
}

/// One line of `conclave trust show`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrustRow {
    /// The agent.
    pub agent: String,
    /// The domain.
    pub domain: String,
    /// Posterior mean.
    pub trust: f64,
    /// Lower end of the credible interval.
    pub lower: f64,
    /// Upper end of the credible interval.
    pub upper: f64,
    /// Graded outcomes.
    pub n: u64,
    /// Status.
    pub status: Status,
}

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Change {
    /// One graded item (a decision whose right answer is known): every agent that voted,
    /// and whether it was right. Updates each agent's state and the domain's correlation
    /// ledger.
    Graded {
        /// The domain of the decision.
        domain: String,
        /// Which item (a decision id, an eval item id).
        item: String,
        /// `(agent, right)` for each voter.
        outcomes: Vec<(String, bool)>,
        /// The verdict graded: whether the tally's answer was right (decided or escalated),
        /// and the confidence it stated. Feeds the domain's verdict monitor.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        verdict: Option<(bool, f64)>,
        /// For a numeric item with two or more wrong answers, the share of their pairs within
        /// the tolerance of each other ([`wrong_agreement`](super::ledger::wrong_agreement)).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agreement: Option<f64>,
        /// When deliberation moved the pool away from the independent vote's answer: whether
        /// the answer it moved to was right. Feeds the domain's overturn record, which the
        /// acquiescence detector reads.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        overturn: Option<bool>,
        /// With `overturn`: the independent vote's odds of the answer deliberation moved to,
        /// against its own answer ([`RoundRecord::odds`](crate::decision::RoundRecord)).
        /// The overturn record learns how far deliberation's evidence outweighs them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        overturn_odds: Option<f64>,
    },
    /// Sets a state outright (imports, `trust estimate --apply`).
    Set {
        /// The agent.
        agent: String,
        /// The domain.
        domain: String,
        /// The new state.
        state: TrustState,
    },
    /// Re-admits an agent (clears ejection and suspicion, restarts as provisional), in one
    /// domain (and its record across domains, [`ALL_DOMAINS`], which would otherwise keep it
    /// out) or in all of its domains.
    Readmit {
        /// The agent.
        agent: String,
        /// The domain, or every domain of the agent.
        domain: Option<String>,
    },
}

impl Change {
    /// One graded item: `(agent, right)` for each voter, without what it says about the pool
    /// as a whole (set `verdict` and `agreement` on the variant for that).
    pub fn graded(
        domain: impl Into<String>,
        item: impl Into<String>,
        outcomes: Vec<(String, bool)>,
    ) -> Self {
        Self::Graded {
            domain: domain.into(),
            item: item.into(),
            outcomes,
            verdict: None,
            agreement: None,
            overturn: None,
            overturn_odds: None,
        }
    }
}

/// Changes applied together, atomically, under one provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustBatch {
    /// Where the changes come from: an eval run id, `decision:ID`, `import:FILE`, ….
    /// Unique per store: a provenance already applied is refused (so a retried back-fill
    /// cannot count twice).
    pub provenance: String,
    /// The changes, in order.
    pub changes: Vec<Change>,
}

/// One change to one state, as kept in the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Position in the history.
    pub seq: u64,
    /// The store version the batch produced.
    pub version: u64,
    /// The batch's provenance.
    pub provenance: String,
    /// The agent.
    pub agent: String,
    /// The domain.
    pub domain: String,
    /// The state before the batch (`None`: the agent was unknown there).
    pub before: Option<TrustState>,
    /// The state after the batch (`None`: removed, by a rollback).
    pub after: Option<TrustState>,
    /// When, in seconds since the Unix epoch.
    pub at: u64,
}

/// What one batch did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchSummary {
    /// Its provenance.
    pub provenance: String,
    /// The version it produced.
    pub version: u64,
    /// Its history entries are `first_seq..=last_seq` (none if `changed` is 0).
    pub first_seq: u64,
    /// See `first_seq`.
    pub last_seq: u64,
    /// States changed.
    pub changed: usize,
    /// When, in seconds since the Unix epoch.
    pub at: u64,
    /// The provenance of the batch that undid this one, if any.
    pub rolled_back_by: Option<String>,
}

/// Why a trust operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The store failed.
    #[cfg(feature = "sled")]
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database failed.
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    Database(#[from] crate::postgres::DbError),
    /// The agent has no state in the store.
    #[error("unknown agent \"{0}\": it has no trust record in this store")]
    UnknownAgent(String),
    /// No batch has this provenance.
    #[error("no batch \"{0}\" in the trust history")]
    UnknownBatch(String),
    /// The provenance was used before.
    #[error(
        "batch \"{0}\" was already applied; provenances are unique so that nothing counts twice"
    )]
    DuplicateBatch(String),
    /// The batch was rolled back already.
    #[error("batch \"{batch}\" was already rolled back by \"{by}\"")]
    AlreadyRolledBack {
        /// The batch.
        batch: String,
        /// What undid it.
        by: String,
    },
    /// A later batch changed the same state.
    #[error(
        "cannot roll back \"{batch}\": agent \"{agent}\" in domain \"{domain}\" was changed since by \"{later}\"; roll that back first"
    )]
    ChangedSince {
        /// The batch to undo.
        batch: String,
        /// The agent.
        agent: String,
        /// The domain.
        domain: String,
        /// The later batch.
        later: String,
    },
    /// A state set from outside (an import) is not one the model can hold.
    #[error("the state of agent \"{agent}\" in domain \"{domain}\" is not valid: {reason}")]
    InvalidState {
        /// The agent.
        agent: String,
        /// The domain.
        domain: String,
        /// What is wrong.
        reason: String,
    },
    /// The trust parameters are out of range.
    #[error(transparent)]
    Params(#[from] super::model::ParamsError),
}

/// The result of applying a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// The store version after the batch.
    pub version: u64,
    /// States changed.
    pub changed: usize,
}

/// A place to keep trust.
pub trait TrustStore {
    /// The current trust of every agent, with the store version.
    ///
    /// # Errors
    /// The store cannot be read.
    fn snapshot(&self) -> Result<TrustSnapshot, TrustError>;

    /// The store version (what [`TrustStore::snapshot`] would carry): a cheap way to see
    /// whether another process changed trust.
    ///
    /// # Errors
    /// The store cannot be read.
    fn version(&self) -> Result<u64, TrustError> {
        Ok(self.snapshot()?.version)
    }

    /// Applies a batch atomically (all of it or nothing) and makes it durable before
    /// returning.
    ///
    /// # Errors
    /// A duplicate provenance, an unknown agent to re-admit, or a store failure; nothing is
    /// applied then.
    fn apply(&self, batch: &TrustBatch) -> Result<Applied, TrustError>;

    /// Every history entry of `agent`, oldest first.
    ///
    /// # Errors
    /// [`TrustError::UnknownAgent`] if the agent never had a state.
    fn history(&self, agent: &str) -> Result<Vec<HistoryEntry>, TrustError>;

    /// Every batch applied, oldest first.
    ///
    /// # Errors
    /// The store cannot be read.
    fn batches(&self) -> Result<Vec<BatchSummary>, TrustError>;

    /// Undoes the batch with this provenance, as a new batch `rollback:PROVENANCE`.
    ///
    /// # Errors
    /// An unknown or already rolled-back batch, or one whose states a later batch changed.
    fn rollback(&self, provenance: &str) -> Result<Applied, TrustError>;

    /// The correlation ledger of `domain` (empty if nothing was graded there).
    ///
    /// # Errors
    /// The store cannot be read.
    fn ledger(&self, domain: &str) -> Result<ErrorLedger, TrustError>;

    /// Forgets everything: states, history, ledgers. Keeps the parameters.
    ///
    /// # Errors
    /// The store cannot be written.
    fn reset(&self) -> Result<(), TrustError>;
}

/// The tables a batch reads and writes, inside one transaction.
pub(crate) trait Tables {
    type Error;
    fn state(&self, key: &Key) -> Result<Option<TrustState>, Self::Error>;
    fn put_state(&mut self, key: &Key, state: Option<&TrustState>) -> Result<(), Self::Error>;
    fn counter(&self, name: &str) -> Result<u64, Self::Error>;
    fn put_counter(&mut self, name: &str, value: u64) -> Result<(), Self::Error>;
    fn history_entry(&self, seq: u64) -> Result<Option<HistoryEntry>, Self::Error>;
    fn put_history(&mut self, entry: &HistoryEntry) -> Result<(), Self::Error>;
    fn batch(&self, provenance: &str) -> Result<Option<BatchSummary>, Self::Error>;
    fn put_batch(&mut self, summary: &BatchSummary) -> Result<(), Self::Error>;
    fn ledger(&self, domain: &str) -> Result<Option<ErrorLedger>, Self::Error>;
    fn put_ledger(&mut self, domain: &str, ledger: &ErrorLedger) -> Result<(), Self::Error>;
    /// Every state of one agent (for domain-wide re-admission).
    fn agent_keys(&self, agent: &str) -> Result<Vec<Key>, Self::Error>;
    fn fail(&self, e: TrustError) -> Self::Error;
}

/// A state change planned by a batch: the first `before` and the last `after` per key.
type Plan = BTreeMap<Key, (Option<TrustState>, Option<TrustState>)>;

fn run_batch<T: Tables>(
    t: &mut T,
    provenance: &str,
    plan_changes: impl FnOnce(&mut T, &mut Plan) -> Result<(), T::Error>,
) -> Result<Applied, T::Error> {
    if t.batch(provenance)?.is_some() {
        return Err(t.fail(TrustError::DuplicateBatch(provenance.to_owned())));
    }
    let mut plan = Plan::new();
    plan_changes(t, &mut plan)?;
    let version = t.counter("version")? + 1;
    let mut seq = t.counter("history_seq")?;
    let first_seq = seq + 1;
    let at = crate::time::now();
    let mut changed = 0;
    for (key, (before, after)) in &plan {
        if before == after {
            continue;
        }
        seq += 1;
        changed += 1;
        t.put_state(key, after.as_ref())?;
        t.put_history(&HistoryEntry {
            seq,
            version,
            provenance: provenance.to_owned(),
            agent: key.0.clone(),
            domain: key.1.clone(),
            before: before.clone(),
            after: after.clone(),
            at,
        })?;
    }
    t.put_counter("version", version)?;
    t.put_counter("history_seq", seq)?;
    t.put_batch(&BatchSummary {
        provenance: provenance.to_owned(),
        version,
        first_seq,
        last_seq: seq,
        changed,
        at,
        rolled_back_by: None,
    })?;
    Ok(Applied { version, changed })
}

/// The current (planned) state of a key: the plan's latest, else the table's.
fn current<T: Tables>(t: &T, plan: &Plan, key: &Key) -> Result<Option<TrustState>, T::Error> {
    match plan.get(key) {
        Some((_, after)) => Ok(after.clone()),
        None => t.state(key),
    }
}

fn set<T: Tables>(
    t: &T,
    plan: &mut Plan,
    key: Key,
    after: Option<TrustState>,
) -> Result<(), T::Error> {
    let before = match plan.get(&key) {
        Some((b, _)) => b.clone(),
        None => t.state(&key)?,
    };
    plan.insert(key, (before, after));
    Ok(())
}

pub(crate) fn apply_changes<T: Tables>(
    t: &mut T,
    params: &TrustParams,
    ledger_params: &LedgerParams,
    batch: &TrustBatch,
) -> Result<Applied, T::Error> {
    run_batch(t, &batch.provenance, |t, plan| {
        let mut ledgers: BTreeMap<String, ErrorLedger> = BTreeMap::new();
        for change in &batch.changes {
            match change {
                Change::Graded {
                    domain,
                    outcomes,
                    verdict,
                    agreement,
                    overturn,
                    overturn_odds,
                    ..
                } => {
                    for (agent, right) in outcomes {
                        for (d, p) in graded_records(domain, params) {
                            let key = (agent.clone(), d.to_owned());
                            let mut s =
                                current(t, plan, &key)?.unwrap_or_else(|| TrustState::new(params));
                            s.record(&p, *right);
                            set(t, plan, key, Some(s))?;
                        }
                    }
                    if !ledgers.contains_key(domain) {
                        let l = t.ledger(domain)?.unwrap_or_default();
                        ledgers.insert(domain.clone(), l);
                    }
                    if let Some(l) = ledgers.get_mut(domain) {
                        l.record(
                            outcomes.iter().map(|(a, r)| (a.as_str(), !r)),
                            ledger_params.capacity,
                        );
                        if let Some((right, confidence)) = verdict {
                            l.pool.record_verdict(*right, *confidence);
                        }
                        if let Some(share) = agreement {
                            l.pool.record_agreement(*share, ledger_params);
                        }
                        if let Some(right) = overturn {
                            l.pool
                                .record_overturn(*right, *overturn_odds, ledger_params);
                        }
                    }
                }
                Change::Set {
                    agent,
                    domain,
                    state,
                } => {
                    if let Err(reason) = state.check() {
                        return Err(t.fail(TrustError::InvalidState {
                            agent: agent.clone(),
                            domain: domain.clone(),
                            reason,
                        }));
                    }
                    set(
                        t,
                        plan,
                        (agent.clone(), domain.clone()),
                        Some(state.clone()),
                    )?;
                }
                Change::Readmit { agent, domain } => {
                    // In one domain, the agent's record across domains restarts too: a
                    // quarantine there would keep the agent out of this domain.
                    let keys = match domain {
                        Some(d) => vec![
                            (agent.clone(), d.clone()),
                            (agent.clone(), ALL_DOMAINS.to_owned()),
                        ],
                        None => t.agent_keys(agent)?,
                    };
                    let mut any = false;
                    for key in keys {
                        if let Some(mut s) = current(t, plan, &key)? {
                            s.readmit(params);
                            set(t, plan, key, Some(s))?;
                            any = true;
                        }
                    }
                    if !any {
                        return Err(t.fail(TrustError::UnknownAgent(agent.clone())));
                    }
                }
            }
        }
        for (domain, l) in &ledgers {
            t.put_ledger(domain, l)?;
        }
        Ok(())
    })
}

pub(crate) fn rollback_in<T: Tables>(
    t: &mut T,
    target: &BatchSummary,
) -> Result<Applied, T::Error> {
    let provenance = format!("rollback:{}", target.provenance);
    let entries: Vec<HistoryEntry> = (target.first_seq..=target.last_seq)
        .filter(|_| target.changed > 0)
        .map(|seq| t.history_entry(seq))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    let applied = run_batch(t, &provenance, |t, plan| {
        for e in entries.iter().rev() {
            let key = (e.agent.clone(), e.domain.clone());
            set(t, plan, key, e.before.clone())?;
        }
        Ok(())
    })?;
    let mut done = target.clone();
    done.rolled_back_by = Some(provenance);
    t.put_batch(&done)?;
    Ok(applied)
}

/// Checks that nothing after `target` changed its states: the current state of each key must
/// still be the batch's `after`. Names the later batch otherwise.
pub(crate) fn check_rollback(
    target: &BatchSummary,
    entries: &[HistoryEntry],
    later: &[HistoryEntry],
    current: impl Fn(&Key) -> Option<TrustState>,
) -> Result<(), TrustError> {
    if let Some(by) = &target.rolled_back_by {
        return Err(TrustError::AlreadyRolledBack {
            batch: target.provenance.clone(),
            by: by.clone(),
        });
    }
    for e in entries {
        let key = (e.agent.clone(), e.domain.clone());
        if current(&key) != e.after {
            let later = later
                .iter()
                .find(|l| l.agent == e.agent && l.domain == e.domain)
                .map_or_else(
                    || "an unrecorded change".to_owned(),
                    |l| l.provenance.clone(),
                );
            return Err(TrustError::ChangedSince {
                batch: target.provenance.clone(),
                agent: e.agent.clone(),
                domain: e.domain.clone(),
                later,
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// In memory.

#[derive(Debug, Default, Clone)]
struct MemoryTables {
    states: BTreeMap<Key, TrustState>,
    counters: BTreeMap<String, u64>,
    history: BTreeMap<u64, HistoryEntry>,
    batches: BTreeMap<String, BatchSummary>,
    batch_order: Vec<String>,
    ledgers: BTreeMap<String, ErrorLedger>,
}

impl Tables for MemoryTables {
    type Error = TrustError;
    fn state(&self, key: &Key) -> Result<Option<TrustState>, TrustError> {
        Ok(self.states.get(key).cloned())
    }
    fn put_state(&mut self, key: &Key, state: Option<&TrustState>) -> Result<(), TrustError> {
        match state {
            Some(s) => self.states.insert(key.clone(), s.clone()),
            None => self.states.remove(key),
        };
        Ok(())
    }
    fn counter(&self, name: &str) -> Result<u64, TrustError> {
        Ok(self.counters.get(name).copied().unwrap_or(0))
    }
    fn put_counter(&mut self, name: &str, value: u64) -> Result<(), TrustError> {
        self.counters.insert(name.to_owned(), value);
        Ok(())
    }
    fn history_entry(&self, seq: u64) -> Result<Option<HistoryEntry>, TrustError> {
        Ok(self.history.get(&seq).cloned())
    }
    fn put_history(&mut self, entry: &HistoryEntry) -> Result<(), TrustError> {
        self.history.insert(entry.seq, entry.clone());
        Ok(())
    }
    fn batch(&self, provenance: &str) -> Result<Option<BatchSummary>, TrustError> {
        Ok(self.batches.get(provenance).cloned())
    }
    fn put_batch(&mut self, summary: &BatchSummary) -> Result<(), TrustError> {
        if self
            .batches
            .insert(summary.provenance.clone(), summary.clone())
            .is_none()
        {
            self.batch_order.push(summary.provenance.clone());
        }
        Ok(())
    }
    fn ledger(&self, domain: &str) -> Result<Option<ErrorLedger>, TrustError> {
        Ok(self.ledgers.get(domain).cloned())
    }
    fn put_ledger(&mut self, domain: &str, ledger: &ErrorLedger) -> Result<(), TrustError> {
        self.ledgers.insert(domain.to_owned(), ledger.clone());
        Ok(())
    }
    fn agent_keys(&self, agent: &str) -> Result<Vec<Key>, TrustError> {
        Ok(self
            .states
            .keys()
            .filter(|(a, _)| a == agent)
            .cloned()
            .collect())
    }
    fn fail(&self, e: TrustError) -> TrustError {
        e
    }
}

/// A trust store in memory, for tests and embedding without persistence.
#[derive(Debug, Default)]
pub struct MemoryTrustStore {
    params: TrustParams,
    ledger_params: LedgerParams,
    tables: Mutex<MemoryTables>,
}

impl MemoryTrustStore {
    /// An empty store learning with `params`.
    ///
    /// # Errors
    /// Parameters out of range.
    pub fn new(params: TrustParams) -> Result<Self, TrustError> {
        params.validate()?;
        Ok(Self {
            params,
            ledger_params: LedgerParams::default(),
            tables: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryTables> {
        // A panic while holding the lock cannot leave the tables half-written: every batch
        // works on a copy that replaces them only when complete.
        self.tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl TrustStore for MemoryTrustStore {
    fn snapshot(&self) -> Result<TrustSnapshot, TrustError> {
        let t = self.lock();
        Ok(TrustSnapshot {
            version: t.counter("version")?,
            params: self.params,
            states: t.states.clone(),
        })
    }

    fn apply(&self, batch: &TrustBatch) -> Result<Applied, TrustError> {
        let mut guard = self.lock();
        let mut work = guard.clone();
        let applied = apply_changes(&mut work, &self.params, &self.ledger_params, batch)?;
        *guard = work;
        Ok(applied)
    }

    fn history(&self, agent: &str) -> Result<Vec<HistoryEntry>, TrustError> {
        let t = self.lock();
        let h: Vec<HistoryEntry> = t
            .history
            .values()
            .filter(|e| e.agent == agent)
            .cloned()
            .collect();
        if h.is_empty() && !t.states.keys().any(|(a, _)| a == agent) {
            return Err(TrustError::UnknownAgent(agent.to_owned()));
        }
        Ok(h)
    }

    fn batches(&self) -> Result<Vec<BatchSummary>, TrustError> {
        let t = self.lock();
        Ok(t.batch_order
            .iter()
            .filter_map(|p| t.batches.get(p).cloned())
            .collect())
    }

    fn rollback(&self, provenance: &str) -> Result<Applied, TrustError> {
        let mut guard = self.lock();
        let target = guard
            .batches
            .get(provenance)
            .cloned()
            .ok_or_else(|| TrustError::UnknownBatch(provenance.to_owned()))?;
        let entries: Vec<HistoryEntry> = guard
            .history
            .range(target.first_seq..=target.last_seq)
            .map(|(_, e)| e.clone())
            .filter(|_| target.changed > 0)
            .collect();
        let later: Vec<HistoryEntry> = guard
            .history
            .range(target.last_seq + 1..)
            .map(|(_, e)| e.clone())
            .collect();
        check_rollback(&target, &entries, &later, |k| guard.states.get(k).cloned())?;
        let mut work = guard.clone();
        let applied = rollback_in(&mut work, &target)?;
        *guard = work;
        Ok(applied)
    }

    fn ledger(&self, domain: &str) -> Result<ErrorLedger, TrustError> {
        Ok(self.lock().ledgers.get(domain).cloned().unwrap_or_default())
    }

    fn reset(&self) -> Result<(), TrustError> {
        *self.lock() = MemoryTables::default();
        Ok(())
    }
}

/// Serialises a map keyed by `(agent, domain)` as a list of `{agent, domain, state}`.
mod keyed {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Key, TrustState};

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Row {
        agent: String,
        domain: String,
        state: TrustState,
    }

    pub(super) fn serialize<S: Serializer>(
        m: &BTreeMap<Key, TrustState>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let rows: Vec<Row> = m
            .iter()
            .map(|((agent, domain), state)| Row {
                agent: agent.clone(),
                domain: domain.clone(),
                state: state.clone(),
            })
            .collect();
        rows.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<Key, TrustState>, D::Error> {
        let rows = Vec::<Row>::deserialize(d)?;
        Ok(rows
            .into_iter()
            .map(|r| ((r.agent, r.domain), r.state))
            .collect())
    }
}
