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
        return Err(OutcomeError::AlreadyGraded { seq, provenance });
    }
    let earlier = log
        .records()?
        .into_iter()
        .find(|r| matches!(&r.entry, Entry::Outcome(o) if o.decision == seq));
    let outcome = match earlier {
        Some(r) => {
            if let Entry::Outcome(o) = &r.entry
                && o.correct.trim() != correct.trim()
            {
                return Err(OutcomeError::Final {
                    seq,
                    outcome: o.correct.clone(),
                    record: r.seq,
                });
            }
            r
        }
        None => log.append(&Entry::Outcome(OutcomeRecord {
            decision: seq,
            correct: correct.to_owned(),
            source: source.to_owned(),
            graded: graded.clone(),
            at: super::now(),
        }))?,
    };
    let applied = trust.apply(&TrustBatch {
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
    })?;
    Ok(OutcomeReceipt {
        decision: record,
        outcome,
        graded,
        provenance,
        applied,
    })
}
