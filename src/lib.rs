#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod agent;
pub mod aggregate;
pub mod audit;
pub mod ballot;
pub mod decision;
pub mod directives;
#[cfg(feature = "eval")]
pub mod eval;
pub mod governor;
pub mod layer;
pub mod policy;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod recording;
mod rng;
#[cfg(feature = "serve")]
pub mod serve;
pub mod spend;
#[cfg(feature = "sled")]
pub mod store;
pub mod time;
pub mod trust;

// What an embedder uses, at the crate root.
pub use agent::scripted::ScriptedAgent;
pub use agent::{AgentReply, AgentRequest, AgentService, BuildError, build as build_agent};
pub use aggregate::{Kind, Rule, TallyError, TallyInput, TallyResult, tally};
pub use audit::{AuditError, AuditLog, MemoryAuditLog};
pub use ballot::{Abstention, Answer, Ballot};
pub use decision::{Decision, Outcome, Truth, Verdict};
pub use governor::{
    Directives, Director, EscalateWith, Escalation, Governor, GovernorBuildError, GovernorBuilder,
    GovernorError, MemoryOrderBook, Order, OrderBook, OrdersError, PolicyRouter, Supervisor,
};
pub use policy::{
    AgentSpec, Budget, Catalog, Policy, PolicyBuilder, PolicyError, SourceFile, Thresholds,
};
pub use trust::TrustParams;
pub use trust::store::{MemoryTrustStore, TrustSnapshot, TrustStore};

#[cfg(feature = "openai")]
pub use agent::openai::OpenAiAgent;
#[cfg(feature = "sled")]
pub use audit::SledAuditLog;
#[cfg(feature = "sled")]
pub use store::Store;
#[cfg(feature = "sled")]
pub use trust::store::SledTrustStore;

/// Tower, whose `Service` and layers the Governor, the router and every agent are: re-exported
/// so that an application composes them without a version of its own.
pub use tower;

/// The README's Rust snippets, compiled and run as doc tests (`cargo test --doc`).
#[cfg(all(doctest, feature = "cli"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
