//! Recording a decision's outcome once it is known, with its crash-safe ordering: the outcome
//! goes on the chain first, then trust learns from it under the decision's provenance. A
//! retry after a crash between the two finds the outcome and only completes the trust update
//! (with the same answer; a different one is refused, never recorded beside it).

use super::{
    AuditError, AuditLog, AuditRecord, Entry, GradeError, OutcomeRecord, grade, grade_pool,
};
use crate::trust::store::{Applied, Change, TrustBatch, TrustError, TrustStore};

/// Why an outcome cannot be recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutcomeError {
    /// The record named is not a decision.
    #[error("audit record {0} is not a decision")]
    NotADecision(u64),
    /// The answer does not fit the decision (not one of its options, not a number…).
    #[error("record {seq}: {source}")]
    Grade {
        /// The decision's record.
        seq: u64,
        /// What is wrong.
        source: GradeError,
    },
    /// Trust already learned from this decision.
    #[error("record {seq} was already graded (batch {provenance})")]
    AlreadyGraded {
        /// The decision's record.
        seq: u64,
        /// The trust batch.
        provenance: String,
    },
    /// The decision already has a different outcome on the chain.
    #[error(
        "record {seq} already has the outcome \"{outcome}\" (record {record}); an outcome is final"
    )]
    Final {
        /// The decision's record.
        seq: u64,
        /// The outcome recorded.
        outcome: String,
        /// Its record.
        record: u64,
    },
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The trust store failed.
    #[error(transparent)]
    Trust(#[from] TrustError),
}

/// What recording an outcome did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OutcomeReceipt {
    /// The decision's record.
    pub decision: AuditRecord,
    /// The outcome's record (appended now, or found from an interrupted earlier attempt).
    pub outcome: AuditRecord,
    /// Each voter and whether it was right.
    pub graded: Vec<(String, bool)>,
    /// The trust batch's provenance (`decision:SEQ`), for a rollback.
    pub provenance: String,
    /// The trust update.
    pub applied: Applied,
}

/// Records that the decision `id` (a sequence number or a decision id) was rightly answered
/// `correct` (an option, or a number within `tolerance`), according to `source`, and lets
/// trust learn from it.
///
/// # Errors
/// [`OutcomeError`]: an unknown or non-decision record, an answer that does not fit, a decision
/// already graded or with a different outcome, or a store failure.
pub fn record_outcome(
    log: &dyn AuditLog,
    trust: &dyn TrustStore,
    id: &str,
    correct: &str,
    source: &str,
    tolerance: f64,
) -> Result<OutcomeReceipt, OutcomeError> {
    let record = log.find(id)?;
    let seq = record.seq;
    let Entry::Decision(d) = &record.entry else {
        return Err(OutcomeError::NotADecision(seq));
    };
    let graded =
        grade(d, correct, tolerance).map_err(|source| OutcomeError::Grade { seq, source })?;
    let pool =
        grade_pool(d, correct, tolerance).map_err(|source| OutcomeError::Grade { seq, source })?;
    let provenance = format!("decision:{seq}");
    if trust.batches()?.iter().any(|b| b.provenance == provenance) {
        return Err(graded_already(log, seq, correct, provenance)?);
    }
    // The log records one outcome per decision, whatever the concurrency: a second with the
    // same answer is an interrupted earlier attempt (or a simultaneous one) to complete, one
    // with another answer is refused.
    let entry = Entry::Outcome(OutcomeRecord {
        decision: seq,
        correct: correct.to_owned(),
        source: source.to_owned(),
        graded: graded.clone(),
        at: super::now(),
    });
    let outcome = match log.append(&entry) {
        Ok(r) => r,
        Err(AuditError::Settled { answer, record, .. }) if answer.trim() == correct.trim() => log
            .get(record)?
            .ok_or_else(|| AuditError::NotFound(record.to_string()))?,
        Err(AuditError::Settled { answer, record, .. }) => {
            return Err(OutcomeError::Final {
                seq,
                outcome: answer,
                record,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let applied = trust
        .apply(&TrustBatch {
            provenance: provenance.clone(),
            changes: vec![Change::Graded {
                domain: d.domain.clone(),
                item: d.id.clone(),
                outcomes: graded.clone(),
                verdict: pool.verdict,
                agreement: pool.agreement,
                overturn: pool.overturn,
                overturn_odds: pool.overturn_odds,
            }],
        })
        .map_err(|e| match e {
            // Graded meanwhile by a simultaneous call with the same answer.
            TrustError::DuplicateBatch(p) => {
                graded_already(log, seq, correct, p).unwrap_or_else(|e| e)
            }
            e => e.into(),
        })?;
    Ok(OutcomeReceipt {
        decision: record,
        outcome,
        graded,
        provenance,
        applied,
    })
}

/// The error for a decision whose trust batch exists: `Final` naming the recorded answer
/// when `correct` is another, else `AlreadyGraded`.
fn graded_already(
    log: &dyn AuditLog,
    seq: u64,
    correct: &str,
    provenance: String,
) -> Result<OutcomeError, OutcomeError> {
    Ok(match log.settled(seq, "outcome")? {
        Some(r) => match r.entry.settles() {
            Some((_, _, answer)) if answer.trim() != correct.trim() => OutcomeError::Final {
                seq,
                outcome: answer.to_owned(),
                record: r.seq,
            },
            _ => OutcomeError::AlreadyGraded { seq, provenance },
        },
        None => OutcomeError::AlreadyGraded { seq, provenance },
    })
}

/// What a human's override did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OverrideReceipt {
    /// The override's record.
    pub over: AuditRecord,
    /// The outcome it graded the voters with.
    pub outcome: OutcomeReceipt,
}

/// The Cognitive Director answers the decision `id` in place of the pool: the override and
/// the outcome it implies are appended together (all or nothing), then trust learns from
/// the outcome, as [`record_outcome`] does. Everything is checked before anything is
/// written: an answer that does not fit, a decision already answered by someone (an
/// override) or graded with another answer (an outcome) is refused and writes nothing. A
/// retry of the same answer after a crash between the chain and trust completes the trust
/// update.
///
/// # Errors
/// As [`record_outcome`]; [`OutcomeError::Final`] when the decision was answered or graded
/// otherwise.
#[allow(clippy::too_many_arguments)]
pub fn record_override(
    log: &dyn AuditLog,
    trust: &dyn TrustStore,
    id: &str,
    answer: &str,
    by: &str,
    reason: &str,
    tolerance: f64,
) -> Result<OverrideReceipt, OutcomeError> {
    let record = log.find(id)?;
    let seq = record.seq;
    let Entry::Decision(d) = &record.entry else {
        return Err(OutcomeError::NotADecision(seq));
    };
    let graded =
        grade(d, answer, tolerance).map_err(|source| OutcomeError::Grade { seq, source })?;
    let version = trust.snapshot()?.version;
    let now = super::now();
    let entries = [
        Entry::Override(super::OverrideRecord {
            decision: seq,
            answer: answer.to_owned(),
            by: by.to_owned(),
            reason: reason.to_owned(),
            trust_version: version,
            at: now,
        }),
        Entry::Outcome(OutcomeRecord {
            decision: seq,
            correct: answer.to_owned(),
            source: format!("human:{by}"),
            graded,
            at: now,
        }),
    ];
    let over = match log.append_all(&entries) {
        Ok(records) => records.into_iter().next(),
        // The same answer again: an interrupted override (or a simultaneous one) completes.
        Err(AuditError::Settled {
            answer: recorded, ..
        }) if recorded.trim() == answer.trim() => None,
        Err(AuditError::Settled {
            answer: recorded,
            record,
            ..
        }) => {
            return Err(OutcomeError::Final {
                seq,
                outcome: recorded,
                record,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let outcome = record_outcome(
        log,
        trust,
        &seq.to_string(),
        answer,
        &format!("human:{by}"),
        tolerance,
    )?;
    let over = match over {
        Some(r) => r,
        None => log
            .settled(seq, "override")?
            .ok_or_else(|| AuditError::NotFound(format!("override of {seq}")))?,
    };
    Ok(OverrideReceipt { over, outcome })
}
