//! Agents as Tower services: a request carries the decision, the reply is a ballot.
//!
//! Failure is data: an agent that cannot answer replies with an abstention and its reason
//! (the Governor also turns transport errors and timeouts into abstentions). Agents are
//! [`openai`] (any OpenAI-compatible endpoint), [`scripted`] (simulated) or replayed from a
//! recording of real ones ([`replay`]).

#[cfg(feature = "openai")]
pub mod openai;
/// Recordings of real agents' answers (the format lives in [`crate::recording`]).
pub use crate::recording as replay;
pub mod scripted;

use std::sync::Arc;

use tower::BoxError;
use tower::util::BoxCloneSyncService;

use crate::ballot::Ballot;
use crate::decision::Decision;
use crate::policy::{AgentKind, AgentSpec, Catalog, Policy};

/// What an agent is asked: the decision, and for an arbiter the case it rules on.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AgentRequest {
    /// The decision.
    pub decision: Arc<Decision>,
    /// For the arbiter: the panel's ballots with their weights and rationales, and the tally.
    pub case: Option<Arc<Case>>,
    /// In a deliberation round: the agent's own last answer and the others'.
    pub round: Option<Arc<Round>>,
}

/// A deliberation round as one agent sees it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Round {
    /// The round (2, 3, …; the independent vote is round 1).
    pub number: u32,
    /// The agent's own answer in the previous round.
    pub own: Ballot,
    /// The other agents' answers in the previous round, anonymised, with their reasons, and
    /// what the vote made of them.
    pub others: Case,
}

impl Round {
    /// The round in words, for a model's prompt: the others' answers, and the rule of
    /// enforced divergence (say where you disagree with the majority before you update).
    pub fn describe(&self) -> String {
        let own = self
            .own
            .answer
            .words()
            .unwrap_or_else(|| "nothing".to_owned());
        format!(
            "Deliberation, round {}. Your previous answer: {own}.\n{}\nBefore you answer again, state in your rationale where you disagree with the majority and why; change your answer only for a reason you can name, not because others hold it.",
            self.number,
            self.others.describe_peers()
        )
    }
}

impl AgentRequest {
    /// A panel member's question.
    pub fn new(decision: Arc<Decision>) -> Self {
        Self {
            decision,
            case: None,
            round: None,
        }
    }

    /// A deliberation round's question: the decision and the round as the agent sees it.
    pub fn deliberation(decision: Arc<Decision>, round: Arc<Round>) -> Self {
        Self {
            decision,
            case: None,
            round: Some(round),
        }
    }

    /// The arbiter's question: the decision and the case.
    pub fn arbitration(decision: Arc<Decision>, case: Arc<Case>) -> Self {
        Self {
            decision,
            case: Some(case),
            round: None,
        }
    }
}

/// The case an arbiter rules on: what the panel answered and how the vote counted it.
/// Voters are anonymised (`voter 1`, …) so that the arbiter weighs arguments, not names.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Case {
    /// The counted ballots, heaviest first.
    pub ballots: Vec<CaseBallot>,
    /// The tally's answer in words, if it produced one.
    pub tally: Option<String>,
    /// The vote's consensus (winner's weight share, or CQ for numbers).
    pub consensus: f64,
    /// The probability the tally is right, as the Governor measured it.
    pub confidence: f64,
}

/// One panel ballot as the arbiter sees it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CaseBallot {
    /// `voter 1`, `voter 2`, … (heaviest first).
    pub voter: String,
    /// The answer.
    pub answer: crate::ballot::Answer,
    /// The voter's stated confidence.
    pub confidence: Option<f64>,
    /// Its stated reasons (cut to 600 characters).
    pub rationale: Option<String>,
    /// The weight the vote gave it.
    pub weight: f64,
}

impl Case {
    /// The counted ballots of a decision, heaviest first, with the tally's answer, consensus
    /// and confidence.
    pub fn new(
        ballots: impl IntoIterator<Item = (Ballot, f64)>,
        tally: Option<String>,
        consensus: f64,
        confidence: f64,
    ) -> Self {
        let mut counted: Vec<(Ballot, f64)> = ballots
            .into_iter()
            .filter(|(b, _)| !b.is_abstention())
            .collect();
        counted.sort_by(|a, b| b.1.total_cmp(&a.1));
        Self {
            ballots: counted
                .into_iter()
                .enumerate()
                .map(|(i, (b, weight))| CaseBallot {
                    voter: format!("voter {}", i + 1),
                    answer: b.answer,
                    confidence: b.confidence,
                    rationale: b.rationale.map(|r| crate::ballot::clean_excerpt(&r, 600)),
                    weight,
                })
                .collect(),
            tally,
            consensus,
            confidence,
        }
    }

    /// The case in words, for an arbiter's prompt.
    pub fn describe(&self) -> String {
        let mut out = String::from("The panel answered (heaviest vote first):\n");
        out += &self.lines();
        out += &format!(
            "The weighted vote gives {} with consensus {:.2}; its measured chance of being right is {:.2}, too low to stand alone. Weigh the arguments, then rule.",
            self.tally.as_deref().unwrap_or("no answer"),
            self.consensus,
            self.confidence
        );
        out
    }

    /// The other panel members' answers, for a deliberation round.
    pub fn describe_peers(&self) -> String {
        format!(
            "The other panel members answered (heaviest vote first):\n{}The weighted vote gave {} with consensus {:.2}.",
            self.lines(),
            self.tally.as_deref().unwrap_or("no answer"),
            self.consensus
        )
    }

    fn lines(&self) -> String {
        let mut out = String::new();
        for b in &self.ballots {
            let Some(answer) = b.answer.words() else {
                continue;
            };
            out += &format!(
                "- {}: {answer} (weight {:.2}{})",
                b.voter,
                b.weight,
                b.confidence
                    .map_or_else(String::new, |c| format!(", confidence {c:.2}"))
            );
            if let Some(r) = &b.rationale {
                out += &format!(": \"{r}\"");
            }
            out.push('\n');
        }
        out
    }
}

/// What an agent answers (build it with [`AgentReply::new`] or [`AgentReply::priced`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AgentReply {
    /// The ballot (an abstention when it could not answer).
    pub ballot: Ballot,
    /// Prompt tokens used.
    pub tokens_in: u32,
    /// Completion tokens used.
    pub tokens_out: u32,
    /// Dollars spent.
    pub cost_usd: f64,
    /// The reply as the model wrote it (cut to 2,000 characters), for recordings; `None` for
    /// simulated agents.
    pub raw: Option<String>,
}

impl AgentReply {
    /// A reply carrying `ballot`, with no tokens and no cost (an agent of one's own that is
    /// not metered).
    pub fn new(ballot: Ballot) -> Self {
        Self {
            ballot,
            tokens_in: 0,
            tokens_out: 0,
            cost_usd: 0.0,
            raw: None,
        }
    }

    /// A reply carrying `ballot` after a call that used these tokens, priced as `spec` says.
    pub fn priced(
        spec: &crate::policy::AgentSpec,
        ballot: Ballot,
        tokens_in: u32,
        tokens_out: u32,
    ) -> Self {
        Self {
            ballot,
            tokens_in,
            tokens_out,
            cost_usd: spec.cost(tokens_in, tokens_out),
            raw: None,
        }
    }

    /// The same reply with the model's raw text.
    #[must_use]
    pub fn with_raw(mut self, raw: Option<String>) -> Self {
        self.raw = raw;
        self
    }
}

/// Any agent, type-erased at the public edge.
pub type AgentService = BoxCloneSyncService<AgentRequest, AgentReply, BoxError>;

pub(crate) use crate::rng::Rng;

/// Why an agent service cannot be built from its definition.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A simulated or replayed agent whose settings or recording are unusable.
    #[error(transparent)]
    Scripted(#[from] scripted::NotScripted),
    /// An endpoint agent whose definition is incomplete or whose client cannot be made.
    #[cfg(feature = "openai")]
    #[error(transparent)]
    OpenAi(#[from] openai::OpenAiError),
    /// An endpoint agent in a build without the `openai` feature.
    #[error("agent \"{0}\" calls an endpoint, and this build of conclave has no `openai` feature")]
    NoOpenAi(String),
    /// The policy names an agent the catalog does not define.
    #[error("the policy names agent \"{0}\", which no agent file defines")]
    Unknown(String),
    /// An external agent: the application gives its service.
    #[error(
        "agent \"{0}\" is external: the application gives its service (GovernorBuilder::agent); this front end cannot build it"
    )]
    External(String),
}

/// An agent from an async function of the application's own: it receives the request (the
/// decision, and the case or the round when there is one) and returns a reply, usually
/// [`AgentReply::new`] with a [`Ballot`]. An error is an abstention with its cause, as a
/// failed call of any agent is; the Governor adds its timeout, retry and circuit breaker.
///
/// ```
/// use conclave::{AgentReply, Ballot};
/// let agent = conclave::agent::from_fn(|req: conclave::AgentRequest| async move {
///     let choice = if req.decision.question.contains("refund") { "approve" } else { "reject" };
///     Ok(AgentReply::new(Ballot::choice("rules", choice).with_confidence(0.7)))
/// });
/// # let _ = agent;
/// ```
pub fn from_fn<F, Fut>(f: F) -> AgentService
where
    F: Fn(AgentRequest) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<AgentReply, BoxError>> + Send + 'static,
{
    BoxCloneSyncService::new(tower::service_fn(f))
}

/// The service for one agent definition: scripted and replayed agents are simulated,
/// `openai` agents call their endpoint (feature `openai`). Bare: the Governor wraps every
/// agent in its stack (`layer::stack`).
///
/// # Errors
/// [`BuildError`] names the agent and what is wrong.
pub fn build(spec: &AgentSpec) -> Result<AgentService, BuildError> {
    match spec.kind {
        AgentKind::Scripted | AgentKind::Replay => Ok(BoxCloneSyncService::new(
            scripted::ScriptedAgent::new(spec.clone())?,
        )),
        #[cfg(feature = "openai")]
        AgentKind::Openai => Ok(BoxCloneSyncService::new(openai::OpenAiAgent::new(
            spec.clone(),
        )?)),
        #[cfg(not(feature = "openai"))]
        AgentKind::Openai => Err(BuildError::NoOpenAi(spec.id.clone())),
        AgentKind::External => Err(BuildError::External(spec.id.clone())),
    }
}

/// The services of a policy's pool and arbiter, in that order, each with its definition:
/// what `Governor::new` takes.
///
/// # Errors
/// An agent the catalog does not define, or one that cannot be built.
pub fn build_for(
    policy: &Policy,
    catalog: &Catalog,
) -> Result<Vec<(AgentSpec, AgentService)>, BuildError> {
    policy
        .pool
        .iter()
        .chain(policy.arbiter.iter())
        .map(|id| {
            let spec = catalog
                .agents
                .get(id)
                .ok_or_else(|| BuildError::Unknown(id.clone()))?;
            Ok((spec.clone(), build(spec)?))
        })
        .collect()
}

/// An error that comes with the server's own advice on when to try again (HTTP 429 or 503
/// with `Retry-After`). The retry layer waits at least that long, or gives up at once when
/// that is longer than its `max_wait`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (the server asks to retry after {after:?})")]
pub struct RetryAfter {
    /// How long the server asks to wait.
    pub after: std::time::Duration,
    /// The error.
    pub message: String,
}
