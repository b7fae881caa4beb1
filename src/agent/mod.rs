//! Agents as Tower services: a request carries the decision, the reply is a ballot.
//!
//! Failure is data: an agent that cannot answer replies with an abstention and its reason
//! (the Governor also turns transport errors and timeouts into abstentions). Agents are
//! [`openai`] (any OpenAI-compatible endpoint), [`scripted`] (simulated) or replayed from a
//! recording of real ones ([`replay`]).

#[cfg(feature = "openai")]
pub mod openai;
pub mod replay;
pub mod scripted;

use std::sync::Arc;

use tower::BoxError;
use tower::util::BoxCloneSyncService;

use crate::ballot::Ballot;
use crate::decision::Decision;
use crate::policy::{AgentKind, AgentSpec, Catalog, Policy};

/// What an agent is asked.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    /// The decision.
    pub decision: Arc<Decision>,
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

/// splitmix64, seeded per (decision, agent): simulated agents are reproducible.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(parts: &[&[u8]]) -> Self {
        // FNV-1a over the parts: stable across runs and platforms.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for p in parts {
            for b in *p {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            h ^= 0xff;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Self(h)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (n ≥ 1).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Standard normal (Box–Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

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
}

/// The service for one agent definition: scripted and replayed agents are simulated,
/// `openai` agents call their endpoint (feature `openai`). Bare: the Governor wraps every
/// agent in its stack ([`crate::layer::stack`]).
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
    }
}

/// The services of a policy's pool and arbiter, in that order, each with its definition:
/// what [`crate::governor::Governor::new`] takes.
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
