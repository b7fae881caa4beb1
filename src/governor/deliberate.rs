//! Deliberation rounds (digest A.12). When the independent vote's consensus is below the
//! policy's τ, the agents that voted see the others' answers and reasons (anonymised), are
//! told to state where they disagree with the majority before they update (enforced
//! divergence), and answer again. Each round is tallied with weights
//! `w_i(k) = max(0, w_i − β·(1 − consistency_i(k)))`, which is the digest's
//! `α·trust + (1−α−β)·quality + β·consistency` for the WBFT weight `w_i = α·trust + (1−α)·quality`:
//! a changed position costs up to β of weight. Rounds go on while the consensus is below τ
//! and fewer than K_max have been held; every round's positions are kept.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::Instant;
use tower::ServiceExt;

use super::{Counted, Inner, Seating, consensus, sanitize};
use crate::agent::{AgentRequest, Case, Round};
use crate::aggregate::Kind;
use crate::ballot::{Answer, Ballot};
use crate::decision::{Cast, Decision};
use crate::policy::Deliberation;

pub use crate::decision::{RoundRecord, overturned};

/// What the rounds came to.
pub(super) struct Deliberated {
    pub(super) rounds: Vec<RoundRecord>,
    pub(super) counted: Counted,
    pub(super) tokens: u64,
    pub(super) tokens_in: u64,
    pub(super) cost: f64,
}

/// The consensus of a round's counted positions.
pub(super) fn round_consensus(kind: Kind, counted: &Counted, casts: &[Cast], epsilon: f64) -> f64 {
    let answers = casts.iter().filter(|c| !c.ballot.is_abstention());
    match kind {
        Kind::Choice | Kind::Ranking => counted
            .result
            .as_ref()
            .and_then(|r| r.support)
            .unwrap_or(0.0),
        Kind::Score => {
            let values: Vec<f64> = answers
                .filter_map(|c| match c.ballot.answer {
                    Answer::Score(v) => Some(v),
                    _ => None,
                })
                .collect();
            consensus::consensus_quality(&values, epsilon)
        }
        Kind::Vector => {
            let vectors: Vec<&[f64]> = answers
                .filter_map(|c| match &c.ballot.answer {
                    Answer::Vector(v) => Some(v.as_slice()),
                    _ => None,
                })
                .collect();
            consensus::vector_consensus(&vectors, epsilon)
        }
    }
}

/// How far an agent held its position between two rounds, in `[0, 1]`: the same option (or
/// first choice) is 1, another is 0; numbers and vectors lose consistency linearly over twice
/// the policy's tolerance.
fn consistency(before: &Answer, after: &Answer, tolerance: f64) -> f64 {
    let scale = (2.0 * tolerance).max(1e-9);
    match (before, after) {
        (Answer::Choice(a), Answer::Choice(b)) => f64::from(u8::from(a == b)),
        (Answer::Ranking(a), Answer::Ranking(b)) => f64::from(u8::from(a.first() == b.first())),
        (Answer::Score(a), Answer::Score(b)) => 1.0 - ((a - b).abs() / scale).min(1.0),
        (Answer::Vector(a), Answer::Vector(b)) if a.len() == b.len() => {
            let d: f64 = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f64>()
                .sqrt();
            1.0 - (d / scale).min(1.0)
        }
        _ => 0.0,
    }
}

/// The tally's answer in words.
fn answer_words(counted: &Counted) -> Option<String> {
    let r = counted.result.as_ref()?;
    r.winner
        .clone()
        .or_else(|| r.value.map(|v| format!("{v}")))
        .or_else(|| {
            r.vector
                .as_ref()
                .map(|v| format!("a vector of {} numbers", v.len()))
        })
}

impl Inner {
    /// Holds deliberation rounds after the independent vote (`first`, counted as `counted`).
    pub(super) async fn deliberate(
        &self,
        decision: &Arc<Decision>,
        seating: &Seating,
        d: Deliberation,
        first: &[Cast],
        counted: Counted,
        deadline: Option<Instant>,
    ) -> Deliberated {
        let rule = self.rule_for(decision);
        let agreement = self
            .pools
            .get(&decision.domain)
            .map_or(0.5, crate::trust::ledger::PoolRecord::agreement_chance);
        let competence = &seating.competence;
        let tolerance = self.policy.thresholds.tolerance;
        // The independent vote's counted positions, in the order every round keeps; their
        // weights are each voter's base weight.
        let independent: Vec<Cast> = first
            .iter()
            .filter(|c| !c.ballot.is_abstention())
            .cloned()
            .collect();
        let mut casts = independent.clone();
        let first_count = counted.clone();
        let mut counted = counted;
        let mut consensus = round_consensus(decision.kind, &counted, &casts, d.epsilon);
        let mut rounds = vec![record(1, &casts, &counted, consensus)];
        let (mut tokens, mut tokens_in, mut cost) = (0u64, 0u64, 0.0f64);
        // Rounds share the decision's own deadline: none starts after it.
        for k in 2..=d.rounds {
            if consensus >= d.tau || deadline.is_some_and(|t| Instant::now() >= t) {
                break;
            }
            let asked = self
                .ask_round(decision, k, &casts, &counted, consensus)
                .await;
            let mut next = Vec::with_capacity(casts.len());
            for ((prev, base), reply) in casts.iter().zip(&independent).zip(asked) {
                let (ballot, (t, t_in), c, latency) = match reply {
                    Some(r) if !r.0.is_abstention() => r,
                    // An agent that cannot answer keeps its position.
                    _ => (prev.ballot.clone(), (0, 0), 0.0, 0),
                };
                tokens += t;
                tokens_in += t_in;
                cost += c;
                let held = consistency(&prev.ballot.answer, &ballot.answer, tolerance);
                next.push(Cast {
                    weight: (base.weight - d.beta * (1.0 - held)).max(0.0),
                    ballot,
                    latency_ms: latency,
                    tokens: t,
                    cost_usd: c,
                    wave: k,
                });
            }
            casts = next;
            counted = self.count(decision, &mut casts, rule, competence, agreement);
            consensus = round_consensus(decision.kind, &counted, &casts, d.epsilon);
            let mut this = record(k, &casts, &counted, consensus);
            (this.acquiescence, this.odds) = self.acquiescence(
                decision,
                &independent,
                &first_count,
                &counted,
                (competence, agreement),
            );
            let flagged = this.acquiescence.is_some();
            rounds.push(this);
            if flagged {
                // Independent re-evaluation: the independent vote stands.
                tracing::warn!(decision = %decision.id, round = k, "acquiescence flagged; the independent vote stands");
                counted = first_count;
                break;
            }
            if counted.result.is_none() {
                break;
            }
        }
        Deliberated {
            rounds,
            counted,
            tokens,
            tokens_in,
            cost,
        }
    }

    /// Asks every agent of the last round for its next position (at once, each within its
    /// timeout): its ballot, tokens, cost and latency, or `None`.
    async fn ask_round(
        &self,
        decision: &Arc<Decision>,
        k: u32,
        casts: &[Cast],
        counted: &Counted,
        consensus: f64,
    ) -> Vec<Option<(Ballot, (u64, u64), f64, u64)>> {
        let words = answer_words(counted);
        let calls = casts.iter().map(|own| {
            let member = self.members.iter().find(|m| m.spec.id == own.ballot.agent);
            let others = Case::new(
                casts
                    .iter()
                    .filter(|c| c.ballot.agent != own.ballot.agent)
                    .map(|c| (c.ballot.clone(), c.weight)),
                words.clone(),
                consensus,
                counted.confidence,
            );
            let round = Round {
                number: k,
                own: own.ballot.clone(),
                others,
            };
            let request = AgentRequest::deliberation(decision.clone(), Arc::new(round));
            async move {
                let member = member?;
                let hold = self.hold(&member.spec, self.prompt_tokens()).ok()?;
                let started = Instant::now();
                let limit = Duration::from_millis(member.spec.timeout_ms.max(1));
                let reply = tokio::time::timeout(limit, member.service.clone().oneshot(request))
                    .await
                    .ok()?
                    .ok()?;
                let t = u64::from(reply.tokens_in) + u64::from(reply.tokens_out);
                if let Some(hold) = hold {
                    hold.settle(super::spend::Charge {
                        tokens: t,
                        usd: reply.cost_usd,
                    });
                }
                let ballot = sanitize(
                    &member.spec,
                    decision,
                    self.policy.limits.dimensions,
                    reply.ballot,
                );
                Some((
                    ballot,
                    (t, u64::from(reply.tokens_in)),
                    reply.cost_usd,
                    started.elapsed().as_millis() as u64,
                ))
            }
        });
        join_all(calls).await
    }
}

fn record(round: u32, casts: &[Cast], counted: &Counted, consensus: f64) -> RoundRecord {
    RoundRecord {
        round,
        answer: answer_words(counted),
        ballots: casts.iter().map(|c| c.ballot.clone()).collect(),
        weights: casts
            .iter()
            .map(|c| (c.ballot.agent.clone(), c.weight))
            .collect(),
        consensus,
        confidence: counted.confidence,
        acquiescence: None,
        odds: None,
    }
}

/// The tally's answer as an answer (options and numbers).
fn tally_answer(counted: &Counted, kind: Kind) -> Option<Answer> {
    let r = counted.result.as_ref()?;
    match kind {
        Kind::Choice => r.winner.clone().map(Answer::Choice),
        Kind::Ranking => r.winner.clone().map(|w| Answer::Ranking(vec![w])),
        Kind::Score => r.value.map(Answer::Score),
        Kind::Vector => None,
    }
}

impl Inner {
    /// Whether a round (counted `now`) converged away from the independent vote (`first`,
    /// counted `before`) on an answer the independent ballots made improbable.
    fn acquiescence(
        &self,
        decision: &Decision,
        first: &[Cast],
        before: &Counted,
        now: &Counted,
        (competence, agreement): (&std::collections::BTreeMap<String, f64>, f64),
    ) -> (Option<String>, Option<f64>) {
        let (Some(converged), Some(chosen)) = (
            tally_answer(now, decision.kind),
            tally_answer(before, decision.kind),
        ) else {
            return (None, None);
        };
        let tolerance = self.policy.thresholds.tolerance;
        let moved_away = match (&converged, &chosen) {
            (Answer::Score(a), Answer::Score(b)) => (a - b).abs() > tolerance,
            (a, b) => a != b,
        };
        if !moved_away {
            return (None, None);
        }
        // The independent vote's odds of the new answer against its own, times the likelihood
        // ratio this pool's overturns have earned (learned from its graded overturns; 1
        // before any evidence, so that the independent vote then stands).
        let p_new = self.posterior(decision, first, competence, agreement, &converged);
        let p_old = before.confidence;
        let odds = p_new / p_old.max(f64::MIN_POSITIVE);
        let record = self
            .pools
            .get(&decision.domain)
            .copied()
            .unwrap_or_default();
        let ratio = record.overturn_ratio();
        let why = (ratio * odds <= 1.0).then(|| {
            format!(
                "the pool moved to an answer the independent vote gave {:.1}% against {:.1}% for its own, and this pool's graded overturns make a move like this one {ratio:.1} times likelier when it is right than when it is wrong: acquiescence, not evidence; the independent vote stands",
                100.0 * p_new,
                100.0 * p_old,
            )
        });
        (why, odds.is_finite().then_some(odds))
    }
}
