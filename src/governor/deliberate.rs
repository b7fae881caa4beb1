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
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tower::ServiceExt;

use super::{Counted, Inner, consensus, sanitize};
use crate::agent::{AgentRequest, Case, Round};
use crate::aggregate::{Kind, Rule};
use crate::ballot::{Answer, Ballot};
use crate::decision::{Cast, Decision};
use crate::policy::Deliberation;

/// One round of a deliberated decision, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundRecord {
    /// 1 for the independent vote, then 2, 3, ….
    pub round: u32,
    /// Every counted position of the round (an agent that failed keeps its last one).
    pub ballots: Vec<Ballot>,
    /// The weight each was counted with, by agent.
    pub weights: Vec<(String, f64)>,
    /// The round's consensus (CQ with the policy's ε for numbers and vectors, the winner's
    /// weight share for options).
    pub consensus: f64,
    /// The probability that the round's verdict is right.
    pub confidence: f64,
}

/// What the rounds came to.
pub(super) struct Deliberated {
    pub(super) rounds: Vec<RoundRecord>,
    pub(super) counted: Counted,
    pub(super) tokens: u64,
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
        d: Deliberation,
        rule: Rule,
        first: &[Cast],
        counted: Counted,
        agreement: f64,
    ) -> Deliberated {
        let competence = self.seating(&decision.domain).competence.clone();
        let tolerance = self.policy.thresholds.tolerance;
        // The base weights: each voter's weight in the independent vote.
        let base: Vec<(String, f64)> = first
            .iter()
            .filter(|c| !c.ballot.is_abstention())
            .map(|c| (c.ballot.agent.clone(), c.weight))
            .collect();
        let mut casts: Vec<Cast> = first
            .iter()
            .filter(|c| !c.ballot.is_abstention())
            .cloned()
            .collect();
        let mut counted = counted;
        let mut consensus = round_consensus(decision.kind, &counted, &casts, d.epsilon);
        let mut rounds = vec![record(1, &casts, consensus, counted.confidence)];
        let (mut tokens, mut cost) = (0u64, 0.0f64);
        let deadline = self
            .policy
            .budget
            .decision_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        for k in 2..=d.rounds {
            if consensus >= d.tau || deadline.is_some_and(|t| Instant::now() >= t) {
                break;
            }
            let asked = self
                .ask_round(decision, k, &casts, &counted, consensus)
                .await;
            let mut next = Vec::with_capacity(casts.len());
            for (prev, reply) in casts.iter().zip(asked) {
                let (ballot, t, c, latency) = match reply {
                    Some(r) if !r.0.is_abstention() => r,
                    // An agent that cannot answer keeps its position.
                    _ => (prev.ballot.clone(), 0, 0.0, 0),
                };
                tokens += t;
                cost += c;
                let held = consistency(&prev.ballot.answer, &ballot.answer, tolerance);
                let w = base
                    .iter()
                    .find(|(a, _)| *a == ballot.agent)
                    .map_or(0.0, |(_, w)| *w);
                next.push(Cast {
                    weight: (w - d.beta * (1.0 - held)).max(0.0),
                    ballot,
                    latency_ms: latency,
                    tokens: t,
                    cost_usd: c,
                    wave: k,
                });
            }
            casts = next;
            counted = self.count(decision, &mut casts, rule, &competence, agreement);
            consensus = round_consensus(decision.kind, &counted, &casts, d.epsilon);
            rounds.push(record(k, &casts, consensus, counted.confidence));
            if counted.result.is_none() {
                break;
            }
        }
        Deliberated {
            rounds,
            counted,
            tokens,
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
    ) -> Vec<Option<(Ballot, u64, f64, u64)>> {
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
                let started = Instant::now();
                let limit = Duration::from_millis(member.spec.timeout_ms.max(1));
                let reply = tokio::time::timeout(limit, member.service.clone().oneshot(request))
                    .await
                    .ok()?
                    .ok()?;
                let t = u64::from(reply.tokens_in) + u64::from(reply.tokens_out);
                let ballot = sanitize(&member.spec, decision, reply.ballot);
                Some((
                    ballot,
                    t,
                    reply.cost_usd,
                    started.elapsed().as_millis() as u64,
                ))
            }
        });
        join_all(calls).await
    }
}

fn record(round: u32, casts: &[Cast], consensus: f64, confidence: f64) -> RoundRecord {
    RoundRecord {
        round,
        ballots: casts.iter().map(|c| c.ballot.clone()).collect(),
        weights: casts
            .iter()
            .map(|c| (c.ballot.agent.clone(), c.weight))
            .collect(),
        consensus,
        confidence,
    }
}
