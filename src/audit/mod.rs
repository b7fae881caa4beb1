//! The decision record: append-only, hash-chained, replayable.
//!
//! Every entry is stored as `prev hash ‖ own hash ‖ JSON body`, where the own hash is
//! SHA-256 over a domain tag, the sequence number, the previous hash and the body bytes. The
//! newest `(seq, hash)` is kept apart as the head. [`AuditLog::verify`] walks the chain and names the
//! first record whose bytes no longer match; [`replay`] recomputes a decision's verdict with
//! the voting engine. Outcomes (the right answer, a human override) are appended as entries
//! of their own that point at the decision: history is never rewritten.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::aggregate::{Rule, TallyError, TallyInput, tally};
use crate::ballot::Ballot;
use crate::decision::{Decision, Verdict};
#[cfg(feature = "sled")]
use crate::store::StoreError;

mod outcome;

pub use outcome::{OutcomeError, OutcomeReceipt, OverrideReceipt, record_outcome, record_override};
// The logs of the stores, at the paths they always had (they live with their stores).
#[cfg(feature = "postgres")]
pub use crate::postgres::audit::PgAuditLog;
#[cfg(feature = "sled")]
pub use crate::store::audit::SledAuditLog;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The policy that governed a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRef {
    /// The policy id.
    pub id: String,
    /// SHA-256 of the policy file, hex.
    pub hash: String,
}

/// Everything needed to recompute a verdict bit for bit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRecord {
    /// The decision's id.
    pub id: String,
    /// The question asked.
    pub question: String,
    /// The domain (trust is per domain).
    pub domain: String,
    /// Kind, options, every ballot (abstentions with their reasons) and the weights used.
    pub input: TallyInput,
    /// The rule and its parameters.
    pub rule: Rule,
    /// The seed of any randomness in the decision (agent order, sampling).
    pub seed: u64,
    /// The governing policy, if any.
    pub policy: Option<PolicyRef>,
    /// The trust snapshot version the weights came from.
    pub trust_version: u64,
    /// The verdict as the voting engine produced it.
    pub verdict: serde_json::Value,
    /// The probability that the verdict is right, as the Governor stated it (absent for a
    /// plain tally and in records written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// How the governed decision ended, with the escalation's reason or the arbiter's
    /// ruling (absent for a plain tally and in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<crate::decision::Outcome>,
    /// What the fan-out did: why it stopped, the consensus, and what it spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub course: Option<Course>,
    /// The arbiter's ruling as a ballot, beside the tally (arbitrated decisions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ruling: Option<Ballot>,
    /// Deliberation rounds, the independent vote first (the input above is the last round's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<crate::decision::RoundRecord>,
    /// Pool members left out of the vote, and why (absent when none was, and in older records).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<crate::decision::LeftOut>,
    /// The decision's idempotency key, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// When, in seconds since the Unix epoch.
    pub at: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The course of a governed decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Course {
    /// Why the fan-out stopped.
    pub stop: crate::decision::Stop,
    /// The vote's consensus.
    pub consensus: f64,
    /// Agent calls made.
    pub calls: usize,
    /// Waves of calls.
    pub waves: u32,
    /// Tokens spent.
    pub tokens: u64,
    /// Of `tokens`, prompt tokens (absent in older records).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub prompt_tokens: u64,
    /// Dollars spent.
    pub cost_usd: f64,
}

impl DecisionRecord {
    /// The ballots of the independent vote: each agent's own judgement, which is what trust
    /// grades (a deliberated record's tally input is its last round's positions; the
    /// independent ones are its first round's).
    pub fn independent_ballots(&self) -> &[crate::ballot::Ballot] {
        self.rounds
            .first()
            .map_or(self.input.ballots.as_slice(), |r| r.ballots.as_slice())
    }

    /// The record without the agents' reasons (the policy's `audit = "summary"`): the
    /// ballots, weights and verdict stay, so that replay still matches.
    #[must_use]
    pub fn summarised(mut self) -> Self {
        for b in &mut self.input.ballots {
            b.rationale = None;
        }
        if let Some(r) = &mut self.ruling {
            r.rationale = None;
        }
        for round in &mut self.rounds {
            for b in &mut round.ballots {
                b.rationale = None;
            }
        }
        self
    }
}

impl DecisionRecord {
    /// Tallies `input` with `rule` and records the result.
    ///
    /// # Errors
    /// The tally's own errors.
    pub fn tallied(
        id: impl Into<String>,
        question: impl Into<String>,
        domain: impl Into<String>,
        input: TallyInput,
        rule: Rule,
    ) -> Result<Self, TallyError> {
        let verdict = serde_json::to_value(tally(&input, &rule)?).unwrap_or_default();
        Ok(Self {
            id: id.into(),
            question: question.into(),
            domain: domain.into(),
            input,
            rule,
            seed: 0,
            policy: None,
            trust_version: 0,
            verdict,
            confidence: None,
            outcome: None,
            course: None,
            ruling: None,
            rounds: Vec::new(),
            left_out: Vec::new(),
            idempotency_key: None,
            at: now(),
        })
    }
}

/// What later became known about a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeRecord {
    /// The sequence number of the decision's record.
    pub decision: u64,
    /// The right answer (an option, or a number as text).
    pub correct: String,
    /// Who says so: `ground-truth`, `human:NAME`, ….
    pub source: String,
    /// Each voter and whether it was right.
    pub graded: Vec<(String, bool)>,
    /// When, in seconds since the Unix epoch.
    pub at: u64,
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Entry {
    /// A decision.
    Decision(Box<DecisionRecord>),
    /// An outcome attached to an earlier decision.
    Outcome(OutcomeRecord),
    /// A human's answer to an earlier decision (the Cognitive Director's override).
    Override(OverrideRecord),
    /// An order of the Cognitive Director: a suspension, a resumption, a reweight, or the
    /// ratchet suspending a domain by itself.
    Directive(DirectiveRecord),
}

impl Entry {
    /// What the entry settles about an earlier decision, which can be settled only once:
    /// (`outcome` or `override`, the decision's record, the answer). `None` for decisions and
    /// orders.
    pub fn settles(&self) -> Option<(&'static str, u64, &str)> {
        match self {
            Self::Outcome(o) => Some(("outcome", o.decision, o.correct.as_str())),
            Self::Override(o) => Some(("override", o.decision, o.answer.as_str())),
            _ => None,
        }
    }

    /// The key under which a log indexes what the entry settles (`outcome:12`).
    pub fn settles_key(&self) -> Option<String> {
        self.settles()
            .map(|(kind, decision, _)| format!("{kind}:{decision}"))
    }
}

/// The `Settled` error for `entry`, found settled by `record`.
fn settled_by(entry: &Entry, record: &AuditRecord) -> AuditError {
    let (kind, decision, _) = entry.settles().unwrap_or(("outcome", 0, ""));
    AuditError::Settled {
        decision,
        kind,
        answer: record
            .entry
            .settles()
            .map(|(_, _, a)| a.to_owned())
            .unwrap_or_default(),
        record: record.seq,
    }
}

/// A human's answer to a decision, overriding the collective one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideRecord {
    /// The sequence number of the decision's record.
    pub decision: u64,
    /// The answer (an option, or a number as text).
    pub answer: String,
    /// Who.
    pub by: String,
    /// Why.
    pub reason: String,
    /// The trust version the reviewer saw.
    pub trust_version: u64,
    /// When, in seconds since the Unix epoch.
    pub at: u64,
}

/// An order of the Cognitive Director.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectiveRecord {
    /// `suspend`, `resume`, `reweight` or `ratchet`.
    pub action: String,
    /// The domain.
    pub domain: String,
    /// The agent (reweights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// What was ordered, in words.
    pub detail: String,
    /// Who.
    pub by: String,
    /// When, in seconds since the Unix epoch.
    pub at: u64,
}

/// A stored entry with its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// Position, from 1.
    pub seq: u64,
    /// Hash of the previous record (zeros for the first), hex.
    #[serde(serialize_with = "hex_ser")]
    pub prev: Hash,
    /// This record's hash, hex.
    #[serde(serialize_with = "hex_ser")]
    pub hash: Hash,
    /// The entry.
    pub entry: Entry,
}

fn hex_ser<S: serde::Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex(h))
}

/// Lower-case hex of a hash.
pub fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why the log could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The store failed.
    #[cfg(feature = "sled")]
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database failed.
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    Database(#[from] crate::postgres::DbError),
    /// A decision with this idempotency key is in the log already.
    #[error("a decision with idempotency key \"{0}\" is recorded already")]
    DuplicateKey(String),
    /// A decision with this id is in the log already (ids name decisions: they are unique).
    #[error("a decision with id \"{0}\" is recorded already: give each decision an id of its own")]
    DuplicateId(String),
    /// The decision already has an outcome (or an override): each is recorded once, and is
    /// final.
    #[error(
        "decision record {decision} already has its {kind}, \"{answer}\" (record {record}); it is final"
    )]
    Settled {
        /// The decision's record.
        decision: u64,
        /// `outcome` or `override`.
        kind: &'static str,
        /// The answer recorded.
        answer: String,
        /// The record holding it.
        record: u64,
    },
    /// No record has this id.
    #[error("no audit record \"{0}\"")]
    NotFound(String),
    /// The record is not the kind the operation needs.
    #[error("audit record {0} is not a decision")]
    NotADecision(u64),
    /// A stored record cannot be read (see `audit verify`).
    #[error("audit record {seq} cannot be read: {detail}")]
    Unreadable {
        /// The record.
        seq: u64,
        /// What is wrong.
        detail: String,
    },
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    /// Records checked.
    pub records: u64,
    /// The first record that does not verify, if any.
    pub first_broken: Option<Broken>,
}

/// A record that fails verification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Broken {
    /// Its sequence number.
    pub seq: u64,
    /// Why.
    pub reason: String,
}

/// The outcome of re-tallying a recorded decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replay {
    /// The record.
    pub seq: u64,
    /// Whether the recomputed verdict equals the recorded one exactly (every float bit).
    pub matches: bool,
    /// The verdict as recorded.
    pub recorded: serde_json::Value,
    /// The verdict as recomputed now.
    pub recomputed: serde_json::Value,
}

/// The one record of a one-entry `append_all` (logs whose single append is a batch of one).
pub(crate) fn only_record(mut records: Vec<AuditRecord>) -> Result<AuditRecord, AuditError> {
    records.pop().ok_or_else(|| AuditError::Unreadable {
        seq: 0,
        detail: "nothing was appended".to_owned(),
    })
}

/// An append-only, hash-chained log of decisions and outcomes.
pub trait AuditLog {
    /// Appends an entry and makes it durable before returning.
    ///
    /// # Errors
    /// The store cannot be written.
    fn append(&self, entry: &Entry) -> Result<AuditRecord, AuditError>;

    /// Appends several entries, durable before returning. Stores override it to write them
    /// in one transaction and one flush (eval runs record thousands of decisions).
    ///
    /// # Errors
    /// The store cannot be written; entries appended before the failure stay. Every log of
    /// conclave's appends all or nothing, and refuses a second outcome or override of one
    /// decision ([`AuditError::Settled`]) and a second decision with one idempotency key.
    fn append_all(&self, entries: &[Entry]) -> Result<Vec<AuditRecord>, AuditError> {
        entries.iter().map(|e| self.append(e)).collect()
    }

    /// The record that settled decision `decision` as `kind` (`outcome` or `override`), if
    /// any.
    ///
    /// # Errors
    /// The store cannot be read.
    fn settled(&self, decision: u64, kind: &str) -> Result<Option<AuditRecord>, AuditError> {
        Ok(self.records()?.into_iter().find(|r| {
            r.entry
                .settles()
                .is_some_and(|(k, d, _)| k == kind && d == decision)
        }))
    }

    /// Whether an append blocks on the disk (writes and fsyncs): the Governor then appends
    /// on tokio's blocking pool, off the async worker. In-memory logs say no.
    fn blocks(&self) -> bool {
        true
    }

    /// The record at `seq`.
    ///
    /// # Errors
    /// The record exists but cannot be read.
    fn get(&self, seq: u64) -> Result<Option<AuditRecord>, AuditError>;

    /// Every record, oldest first (unreadable records are skipped; `verify` names them).
    ///
    /// # Errors
    /// The store cannot be read.
    fn records(&self) -> Result<Vec<AuditRecord>, AuditError>;

    /// Walks the whole chain.
    ///
    /// # Errors
    /// The store cannot be read (a broken chain is a result, not an error).
    fn verify(&self) -> Result<Verification, AuditError>;

    /// Finds a record by sequence number or decision id.
    ///
    /// # Errors
    /// [`AuditError::NotFound`].
    fn find(&self, id: &str) -> Result<AuditRecord, AuditError> {
        if let Ok(seq) = id.parse::<u64>()
            && let Some(r) = self.get(seq)?
        {
            return Ok(r);
        }
        self.records()?
            .into_iter()
            .find(|r| matches!(&r.entry, Entry::Decision(d) if d.id == id))
            .ok_or_else(|| AuditError::NotFound(id.to_owned()))
    }

    /// The decision recorded with idempotency key `key`, if any. Logs that index keys (sled,
    /// PostgreSQL) look it up; the default walks the records.
    ///
    /// # Errors
    /// The store cannot be read.
    fn find_key(&self, key: &str) -> Result<Option<AuditRecord>, AuditError> {
        Ok(self.records()?.into_iter().rev().find(
            |r| matches!(&r.entry, Entry::Decision(d) if d.idempotency_key.as_deref() == Some(key)),
        ))
    }
}

const TAG: &[u8] = b"conclave-audit-v1";

fn digest(seq: u64, prev: &Hash, body: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(TAG);
    h.update(seq.to_be_bytes());
    h.update(prev);
    h.update(body);
    h.finalize().into()
}

pub(crate) fn encode(seq: u64, prev: &Hash, entry: &Entry) -> (Hash, Vec<u8>) {
    // Our entry types always serialise (string keys, no failing serialisers).
    let body = serde_json::to_vec(entry).unwrap_or_default();
    let hash = digest(seq, prev, &body);
    let mut value = Vec::with_capacity(64 + body.len());
    value.extend_from_slice(prev);
    value.extend_from_slice(&hash);
    value.extend_from_slice(&body);
    (hash, value)
}

pub(crate) fn decode(seq: u64, value: &[u8]) -> Result<AuditRecord, String> {
    if value.len() < 64 {
        return Err(format!(
            "{} bytes, shorter than the two hashes",
            value.len()
        ));
    }
    let mut prev = [0u8; 32];
    let mut hash = [0u8; 32];
    prev.copy_from_slice(&value[..32]);
    hash.copy_from_slice(&value[32..64]);
    let entry = serde_json::from_slice(&value[64..])
        .map_err(|e| format!("body is not a valid entry: {e}"))?;
    Ok(AuditRecord {
        seq,
        prev,
        hash,
        entry,
    })
}

/// Walks `(seq, stored bytes)` in order and checks every link, then the head.
pub(crate) fn verify_chain(
    records: impl Iterator<Item = (u64, Vec<u8>)>,
    head: Option<(u64, Hash)>,
) -> Verification {
    let mut expected_prev = [0u8; 32];
    let mut expected_seq = 1;
    let mut count = 0;
    let broken = |seq, reason: String| Some(Broken { seq, reason });
    for (seq, value) in records {
        count += 1;
        if seq != expected_seq {
            return Verification {
                records: count,
                first_broken: broken(
                    expected_seq,
                    format!("record {expected_seq} is missing (next is {seq})"),
                ),
            };
        }
        if value.len() < 64 {
            return Verification {
                records: count,
                first_broken: broken(seq, "record is truncated".to_owned()),
            };
        }
        let (prev, rest) = value.split_at(32);
        let (stored, body) = rest.split_at(32);
        if prev != expected_prev {
            return Verification {
                records: count,
                first_broken: broken(
                    seq,
                    "its link to the previous record does not match".to_owned(),
                ),
            };
        }
        let h = digest(seq, &expected_prev, body);
        if h.as_slice() != stored {
            return Verification {
                records: count,
                first_broken: broken(
                    seq,
                    "its contents do not match its hash (altered after writing)".to_owned(),
                ),
            };
        }
        // The hash proves these are the bytes conclave wrote; a syntax check is enough.
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            return Verification {
                records: count,
                first_broken: broken(seq, format!("its body cannot be read: {e}")),
            };
        }
        expected_prev = h;
        expected_seq += 1;
    }
    let last = expected_seq - 1;
    match head {
        Some((s, h)) if s != last || h != expected_prev => Verification {
            records: count,
            first_broken: broken(
                last.max(1),
                format!(
                    "the chain ends at record {last} but the head says {s}: records were removed or rewritten at the end"
                ),
            ),
        },
        None if last > 0 => Verification {
            records: count,
            first_broken: broken(last, "the head of the chain is missing".to_owned()),
        },
        _ => Verification {
            records: count,
            first_broken: None,
        },
    }
}

/// Re-tallies the decision in `record` and compares the verdict with the recorded one.
///
/// # Errors
/// The record is not a decision, or its ballots no longer tally.
pub fn replay(record: &AuditRecord) -> Result<Replay, AuditError> {
    let Entry::Decision(d) = &record.entry else {
        return Err(AuditError::NotADecision(record.seq));
    };
    replay_decision(record.seq, d)
}

/// Re-tallies one decision record (`seq`: its place, in a log or a file) and compares the
/// verdict with the recorded one. An eval run's `items.jsonl` carries such records.
///
/// # Errors
/// Its ballots no longer tally.
pub fn replay_decision(seq: u64, d: &DecisionRecord) -> Result<Replay, AuditError> {
    let recomputed = tally(&d.input, &d.rule)
        .map(|r| serde_json::to_value(r).unwrap_or_default())
        .map_err(|e| AuditError::Unreadable {
            seq,
            detail: format!("its ballots no longer tally: {e}"),
        })?;
    Ok(Replay {
        seq,
        matches: recomputed == d.verdict,
        recorded: d.verdict.clone(),
        recomputed,
    })
}

/// Why a decision cannot be graded against an answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GradeError {
    /// The answer is not one of the decision's options.
    #[error("\"{answer}\" is not an option of this decision (options: {options})")]
    UnknownOption {
        /// The answer given.
        answer: String,
        /// The options.
        options: String,
    },
    /// A numeric decision needs a numeric answer.
    #[error("\"{0}\" is not a number; this decision's ballots are numbers")]
    NotANumber(String),
    /// Vector decisions have no single right answer to grade against.
    #[error("vector decisions cannot be graded with a single answer")]
    Vector,
    /// A tolerance that is negative or not a number.
    #[error("a tolerance is a finite number ≥ 0, not {0}")]
    Tolerance(f64),
}

/// Which voters of a decision were right, given the right answer, by the same rule as the
/// eval harness ([`Truth::grade`](crate::decision::Truth::grade)): choice and ranking ballots
/// are right when their (first) choice is `correct`, score ballots when they are within
/// `tolerance` of it; a malformed reply is wrong; other abstentions (timeouts, errors,
/// cancelled calls, refusals) are not graded.
///
/// # Errors
/// An answer that is not an option, a non-numeric answer to a numeric decision, a vector
/// decision, or a negative tolerance.
pub fn grade(
    record: &DecisionRecord,
    correct: &str,
    tolerance: f64,
) -> Result<Vec<(String, bool)>, GradeError> {
    if !(tolerance.is_finite() && tolerance >= 0.0) {
        return Err(GradeError::Tolerance(tolerance));
    }
    let truth = truth_of(record, correct)?;
    Ok(record
        .independent_ballots()
        .iter()
        .filter_map(|b| {
            truth
                .grade(&b.answer, tolerance)
                .map(|r| (b.agent.clone(), r))
        })
        .collect())
}

/// What a decision's right answer says about its pool as a whole.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolGrade {
    /// The verdict graded: the tally's answer right or wrong, with the confidence the record
    /// states (`None` for records without one, or without a tallied answer).
    pub verdict: Option<(bool, f64)>,
    /// For numbers, the agreement of the wrong answers
    /// ([`wrong_agreement`](crate::trust::ledger::wrong_agreement)).
    pub agreement: Option<f64>,
    /// When deliberation moved the pool away from the independent vote's answer, whether the
    /// answer it moved to was right.
    pub overturn: Option<bool>,
    /// With `overturn`: the independent vote's odds of the answer deliberation moved to,
    /// against its own (the last round's [`RoundRecord::odds`](crate::decision::RoundRecord)).
    pub overturn_odds: Option<f64>,
}

/// Grades `record`'s verdict and, for numbers, the agreement of its wrong answers, given the
/// right answer `correct`.
///
/// # Errors
/// As [`grade`].
pub fn grade_pool(
    record: &DecisionRecord,
    correct: &str,
    tolerance: f64,
) -> Result<PoolGrade, GradeError> {
    use crate::ballot::Answer;
    use crate::decision::Truth;
    let truth = truth_of(record, correct)?;
    let winner = record.verdict.get("winner").and_then(|w| w.as_str());
    let value = record
        .verdict
        .get("value")
        .and_then(serde_json::Value::as_f64);
    let right = match (&truth, winner, value) {
        (Truth::Option(t), Some(w), _) => Some(w == t),
        (Truth::Value(t), _, Some(v)) => Some((v - t).abs() <= tolerance),
        _ => None,
    };
    let verdict = right.zip(record.confidence);
    let agreement = match truth {
        Truth::Value(t) => {
            let values: Vec<f64> = record
                .independent_ballots()
                .iter()
                .filter_map(|b| match b.answer {
                    Answer::Score(v) => Some(v),
                    _ => None,
                })
                .collect();
            crate::trust::ledger::wrong_agreement(&values, t, tolerance)
        }
        Truth::Option(_) => None,
    };
    let overturn = crate::decision::overturned(&record.rounds, record.input.kind, tolerance)
        .map(|words| truth.is_right_words(words, tolerance));
    let overturn_odds = overturn.and(record.rounds.last()).and_then(|r| r.odds);
    Ok(PoolGrade {
        verdict,
        agreement,
        overturn,
        overturn_odds,
    })
}

/// The right answer `correct` (an option, or a number as text) of `record`'s decision.
fn truth_of(record: &DecisionRecord, correct: &str) -> Result<crate::decision::Truth, GradeError> {
    use crate::aggregate::Kind;
    use crate::decision::Truth;
    let input = &record.input;
    Ok(match input.kind {
        Kind::Choice | Kind::Ranking => {
            if !input.options.iter().any(|o| o == correct) {
                return Err(GradeError::UnknownOption {
                    answer: correct.to_owned(),
                    options: input.options.join(", "),
                });
            }
            Truth::Option(correct.to_owned())
        }
        Kind::Score => Truth::Value(
            correct
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| GradeError::NotANumber(correct.to_owned()))?,
        ),
        Kind::Vector => return Err(GradeError::Vector),
    })
}

pub use crate::time::now;

// ---------------------------------------------------------------------------------------

/// An audit log in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryAuditLog {
    records: Mutex<BTreeMap<u64, Vec<u8>>>,
    /// Decision ids, idempotency keys and settled decisions, each with its record.
    index: Mutex<MemoryIndex>,
}

#[derive(Debug, Default)]
struct MemoryIndex {
    ids: HashMap<String, u64>,
    keys: HashMap<String, u64>,
    settled: HashMap<String, u64>,
}

impl MemoryAuditLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Vec<u8>>> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn index(&self) -> std::sync::MutexGuard<'_, MemoryIndex> {
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Overwrites the stored bytes of a record (to test tamper detection).
    pub fn tamper(&self, seq: u64, f: impl FnOnce(&mut Vec<u8>)) {
        if let Some(v) = self.lock().get_mut(&seq) {
            f(v);
        }
    }
}

impl AuditLog for MemoryAuditLog {
    fn blocks(&self) -> bool {
        false
    }

    fn append(&self, entry: &Entry) -> Result<AuditRecord, AuditError> {
        only_record(self.append_all(std::slice::from_ref(entry))?)
    }

    fn append_all(&self, entries: &[Entry]) -> Result<Vec<AuditRecord>, AuditError> {
        let mut m = self.lock();
        let mut index = self.index();
        // Checked before anything is written: all or nothing.
        let mut ids = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        let mut settles = std::collections::HashSet::new();
        for entry in entries {
            if let Entry::Decision(d) = entry {
                if index.ids.contains_key(&d.id) || !ids.insert(d.id.as_str()) {
                    return Err(AuditError::DuplicateId(d.id.clone()));
                }
                if let Some(k) = &d.idempotency_key
                    && (index.keys.contains_key(k) || !keys.insert(k.as_str()))
                {
                    return Err(AuditError::DuplicateKey(k.clone()));
                }
            }
            if let Some(key) = entry.settles_key() {
                if let Some(&at) = index.settled.get(&key) {
                    let r = m
                        .get(&at)
                        .and_then(|v| decode(at, v).ok())
                        .ok_or_else(|| AuditError::NotFound(at.to_string()))?;
                    return Err(settled_by(entry, &r));
                }
                if !settles.insert(key.clone()) {
                    return Err(AuditError::Unreadable {
                        seq: 0,
                        detail: format!("{key} twice in one append"),
                    });
                }
            }
        }
        let (mut seq, mut prev) = match m.iter().next_back() {
            Some((s, v)) => {
                let mut h = [0u8; 32];
                h.copy_from_slice(v.get(32..64).unwrap_or(&[0u8; 32]));
                (*s, h)
            }
            None => (0, [0u8; 32]),
        };
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            seq += 1;
            let (hash, value) = encode(seq, &prev, entry);
            m.insert(seq, value);
            if let Entry::Decision(d) = entry {
                index.ids.insert(d.id.clone(), seq);
                if let Some(k) = &d.idempotency_key {
                    index.keys.insert(k.clone(), seq);
                }
            }
            if let Some(key) = entry.settles_key() {
                index.settled.insert(key, seq);
            }
            out.push(AuditRecord {
                seq,
                prev,
                hash,
                entry: entry.clone(),
            });
            prev = hash;
        }
        Ok(out)
    }

    fn find(&self, id: &str) -> Result<AuditRecord, AuditError> {
        if let Ok(seq) = id.parse::<u64>()
            && let Some(r) = self.get(seq)?
        {
            return Ok(r);
        }
        let at = self.index().ids.get(id).copied();
        match at {
            Some(seq) => self
                .get(seq)?
                .ok_or_else(|| AuditError::NotFound(id.to_owned())),
            None => Err(AuditError::NotFound(id.to_owned())),
        }
    }

    fn find_key(&self, key: &str) -> Result<Option<AuditRecord>, AuditError> {
        let at = self.index().keys.get(key).copied();
        match at {
            Some(seq) => self.get(seq),
            None => Ok(None),
        }
    }

    fn settled(&self, decision: u64, kind: &str) -> Result<Option<AuditRecord>, AuditError> {
        let at = self
            .index()
            .settled
            .get(&format!("{kind}:{decision}"))
            .copied();
        match at {
            Some(seq) => self.get(seq),
            None => Ok(None),
        }
    }

    fn get(&self, seq: u64) -> Result<Option<AuditRecord>, AuditError> {
        match self.lock().get(&seq) {
            None => Ok(None),
            Some(v) => decode(seq, v)
                .map(Some)
                .map_err(|detail| AuditError::Unreadable { seq, detail }),
        }
    }

    fn records(&self) -> Result<Vec<AuditRecord>, AuditError> {
        Ok(self
            .lock()
            .iter()
            .filter_map(|(s, v)| decode(*s, v).ok())
            .collect())
    }

    fn verify(&self) -> Result<Verification, AuditError> {
        let m = self.lock();
        let head = m.iter().next_back().and_then(|(s, v)| {
            let mut h = [0u8; 32];
            h.copy_from_slice(v.get(32..64)?);
            Some((*s, h))
        });
        Ok(verify_chain(m.iter().map(|(s, v)| (*s, v.clone())), head))
    }
}

/// A verdict and its record: the record is written from the verdict, and a governed
/// decision's verdict read back from its record (the audit floor knows the verdict, not the
/// other way round).
impl Verdict {
    /// The verdict a governed decision's record holds, as far as the record keeps it: the
    /// ballots' latencies, tokens and costs are not kept one by one (they read 0; the
    /// totals are kept). `None` for a plain tally's record (no outcome or course).
    pub fn from_record(r: &DecisionRecord) -> Option<Self> {
        let course = r.course.as_ref()?;
        let policy = r.policy.as_ref();
        Some(Self {
            decision: r.id.clone(),
            policy: policy.map(|p| p.id.clone()).unwrap_or_default(),
            policy_hash: policy.map(|p| p.hash.clone()).unwrap_or_default(),
            trust_version: r.trust_version,
            outcome: r.outcome.clone()?,
            rule: r.rule,
            // The tally is recomputed from the recorded input: a replay gives it bit for bit.
            tally: crate::aggregate::tally(&r.input, &r.rule).ok(),
            consensus: course.consensus,
            confidence: r.confidence.unwrap_or(0.0),
            ballots: r
                .independent_ballots()
                .iter()
                .map(|b| crate::decision::Cast {
                    weight: r.input.weights.get(&b.agent).copied().unwrap_or(1.0),
                    ballot: b.clone(),
                    latency_ms: 0,
                    tokens: 0,
                    cost_usd: 0.0,
                    wave: 1,
                })
                .collect(),
            calls: course.calls,
            waves: course.waves,
            stop: course.stop,
            tokens: course.tokens,
            prompt_tokens: course.prompt_tokens,
            cost_usd: course.cost_usd,
            ruling: r.ruling.clone(),
            rounds: r.rounds.clone(),
            left_out: r.left_out.clone(),
        })
    }

    /// The decision record of this verdict (what `conclave audit replay` re-tallies): the
    /// tally's input, the rule and its parameters, the seed, the policy and its hash, the
    /// trust version, and the verdict as the voting engine produced it.
    pub fn record(&self, decision: &Decision) -> DecisionRecord {
        DecisionRecord {
            id: decision.id.clone(),
            question: decision.question.clone(),
            domain: decision.domain.clone(),
            input: self.tally_input(decision),
            rule: self.rule,
            seed: decision.seed,
            policy: Some(PolicyRef {
                id: self.policy.clone(),
                hash: self.policy_hash.clone(),
            }),
            trust_version: self.trust_version,
            verdict: self
                .tally
                .as_ref()
                .and_then(|t| serde_json::to_value(t).ok())
                .unwrap_or_default(),
            confidence: Some(self.confidence),
            outcome: Some(self.outcome.clone()),
            course: Some(Course {
                stop: self.stop,
                consensus: self.consensus,
                calls: self.calls,
                waves: self.waves,
                tokens: self.tokens,
                prompt_tokens: self.prompt_tokens,
                cost_usd: self.cost_usd,
            }),
            ruling: self.ruling.clone(),
            rounds: self.rounds.clone(),
            left_out: self.left_out.clone(),
            idempotency_key: decision.idempotency_key.clone(),
            at: crate::time::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Kind;
    use crate::ballot::{Abstention, Ballot};

    fn decision(i: u64) -> Entry {
        let input = TallyInput::new(
            Kind::Choice,
            ["buy", "hold", "sell"],
            vec![
                Ballot::choice("econ", "hold").with_confidence(0.8),
                Ballot::choice("news", if i.is_multiple_of(2) { "sell" } else { "hold" }),
                Ballot::abstain("slow", Abstention::Timeout),
            ],
        )
        .with_weights([("econ", 0.79), ("news", 0.73)]);
        Entry::Decision(Box::new(
            DecisionRecord::tallied(
                format!("d{i}"),
                "Trade?",
                "finance",
                input,
                Rule::WeightedPlurality,
            )
            .unwrap(),
        ))
    }

    #[test]
    fn chain_verifies_and_names_the_tampered_record() {
        let log = MemoryAuditLog::new();
        for i in 0..5 {
            let r = log.append(&decision(i)).unwrap();
            assert_eq!(r.seq, i + 1);
        }
        assert_eq!(
            log.verify().unwrap(),
            Verification {
                records: 5,
                first_broken: None
            }
        );
        log.tamper(3, |v| {
            let at = v.len() - 10;
            v[at] ^= 0x01;
        });
        let broken = log.verify().unwrap().first_broken.unwrap();
        assert_eq!(broken.seq, 3);
        // Untouched records still replay bit for bit.
        let r = replay(&log.get(2).unwrap().unwrap()).unwrap();
        assert!(r.matches);
    }

    #[test]
    fn find_by_seq_or_decision_id() {
        let log = MemoryAuditLog::new();
        log.append(&decision(0)).unwrap();
        log.append(&decision(1)).unwrap();
        assert_eq!(log.find("2").unwrap().seq, 2);
        assert_eq!(log.find("d0").unwrap().seq, 1);
        assert!(matches!(log.find("d9"), Err(AuditError::NotFound(_))));
    }
}
