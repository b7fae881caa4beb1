//! A decision (the request) and its verdict (the outcome).

use serde::{Deserialize, Serialize};

use crate::aggregate::{Kind, Rule, TallyInput, TallyResult};
use crate::ballot::{Answer, Ballot};

/// A question put to a pool of agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Unique id (recorded, and used to seed simulated agents).
    pub id: String,
    /// The question.
    pub question: String,
    /// The domain: picks the policy and the trust records.
    pub domain: String,
    /// What kind of answer is wanted.
    pub kind: Kind,
    /// The options, for choice and ranking decisions.
    #[serde(default)]
    pub options: Vec<String>,
    /// Seed of every random choice made for this decision (agent order ties, simulation).
    #[serde(default)]
    pub seed: u64,
    /// The right answer, known only in evaluation runs: simulated agents use it to be right
    /// with their competence. It is never shown to a real agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truth: Option<Truth>,
    /// A key naming this decision across retries: a log that enforces it (the PostgreSQL
    /// one) records at most one decision per key, and `conclave serve` answers a retried
    /// key with the decision already recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// This decision's stakes, when the caller knows them: `high` switches to the policy's
    /// robust rule (if it has one), as a policy with high stakes does; a decision cannot
    /// lower its policy's stakes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stakes: Option<Stakes>,
    /// The scale of a numeric answer, `[low, high]` (e.g. `[-1, 1]` for a sentiment): agents
    /// are asked for a number on it, and a number outside it is a malformed answer, as an
    /// unknown option is for a choice. None: any finite number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<[f64; 2]>,
}

/// The right answer of an evaluation item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Truth {
    /// The right option.
    Option(String),
    /// The right number.
    Value(f64),
}

impl Truth {
    /// Whether `answer` is right: a choice (or a ranking's first choice) equal to the right
    /// option, a number within `tolerance` of the right one. `None` for abstentions and for
    /// answers of another kind, which are neither.
    pub fn is_right(&self, answer: &Answer, tolerance: f64) -> Option<bool> {
        match (answer, self) {
            (Answer::Choice(c), Self::Option(t)) => Some(c == t),
            (Answer::Ranking(r), Self::Option(t)) => Some(r.first() == Some(t)),
            (Answer::Score(v), Self::Value(t)) => Some((v - t).abs() <= tolerance),
            _ => None,
        }
    }

    /// Whether an answer given in words (an option, or a number as text) is right.
    pub fn is_right_words(&self, words: &str, tolerance: f64) -> bool {
        match self {
            Self::Option(t) => t == words,
            Self::Value(t) => words
                .trim()
                .parse::<f64>()
                .is_ok_and(|x| (x - t).abs() <= tolerance),
        }
    }

    /// How a ballot is graded against this truth, for trust: the one rule used by the eval
    /// harness and by outcome back-fill (`conclave audit outcome`).
    ///
    /// - An answer is right or wrong ([`Truth::is_right`]).
    /// - A **malformed** reply counts as wrong: the endpoint delivered it and the model made
    ///   it unusable, which is the model's quality, not the infrastructure's (a documented
    ///   policy choice; see [`AbstentionClass::Model`]).
    /// - Every other abstention is not graded: a timeout, a transport or HTTP error, an open
    ///   circuit, a cancelled call or a budget says nothing about whether the agent knows the
    ///   answer, and an agent that declines or refuses is not wrong either.
    ///
    /// ```
    /// use conclave::ballot::{Abstention, Answer};
    /// use conclave::decision::Truth;
    ///
    /// let t = Truth::Option("hold".into());
    /// assert_eq!(t.grade(&Answer::Choice("hold".into()), 0.0), Some(true));
    /// assert_eq!(t.grade(&Answer::Abstain(Abstention::Malformed), 0.0), Some(false));
    /// assert_eq!(t.grade(&Answer::Abstain(Abstention::Timeout), 0.0), None);
    /// ```
    ///
    /// [`AbstentionClass::Model`]: crate::ballot::AbstentionClass::Model
    pub fn grade(&self, answer: &Answer, tolerance: f64) -> Option<bool> {
        match answer {
            Answer::Abstain(a) => match a.class() {
                crate::ballot::AbstentionClass::Model => Some(false),
                _ => None,
            },
            _ => self.is_right(answer, tolerance),
        }
    }
}

impl Decision {
    /// A choice among `options`.
    pub fn choice<I, S>(
        id: impl Into<String>,
        domain: impl Into<String>,
        question: impl Into<String>,
        options: I,
    ) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            id: id.into(),
            question: question.into(),
            domain: domain.into(),
            kind: Kind::Choice,
            options: options.into_iter().map(Into::into).collect(),
            seed: 0,
            truth: None,
            idempotency_key: None,
            stakes: None,
            scale: None,
        }
    }

    /// A ranking of `options` (the truth, in evaluation, is the right first choice).
    pub fn ranking<I, S>(
        id: impl Into<String>,
        domain: impl Into<String>,
        question: impl Into<String>,
        options: I,
    ) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            kind: Kind::Ranking,
            ..Self::choice(id, domain, question, options)
        }
    }

    /// A free-text question: real agents answer in words, embedded into vectors (agents
    /// with an `embedding_model`), and the vote combines the vectors.
    pub fn text(
        id: impl Into<String>,
        domain: impl Into<String>,
        question: impl Into<String>,
    ) -> Self {
        Self {
            kind: Kind::Vector,
            ..Self::score(id, domain, question)
        }
    }

    /// A number to estimate.
    pub fn score(
        id: impl Into<String>,
        domain: impl Into<String>,
        question: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            question: question.into(),
            domain: domain.into(),
            kind: Kind::Score,
            options: Vec::new(),
            seed: 0,
            truth: None,
            idempotency_key: None,
            stakes: None,
            scale: None,
        }
    }

    /// The same decision with a seed.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The same decision with a numeric scale (see [`Decision::scale`]).
    #[must_use]
    pub fn with_scale(mut self, low: f64, high: f64) -> Self {
        self.scale = Some([low, high]);
        self
    }

    /// Whether a numeric answer lies on the decision's scale (any finite number without one).
    pub fn on_scale(&self, value: f64) -> bool {
        value.is_finite() && self.scale.is_none_or(|[lo, hi]| (lo..=hi).contains(&value))
    }

    /// What is wrong with the decision's scale, if anything: it must be two finite numbers,
    /// low below high, on a numeric decision.
    ///
    /// # Errors
    /// The problem, in words.
    pub fn check_scale(&self) -> Result<(), String> {
        match self.scale {
            None => Ok(()),
            Some(_) if self.kind != Kind::Score => Err(format!(
                "a scale is for numeric decisions; this one is a {} decision",
                self.kind.as_str()
            )),
            Some(scale) => check_scale_bounds(scale),
        }
    }

    /// The same decision with its right answer (evaluation only).
    #[must_use]
    pub fn with_truth(mut self, truth: Truth) -> Self {
        self.truth = Some(truth);
        self
    }
}

/// Whether `[low, high]` can be a numeric scale: two finite numbers, the low one first.
///
/// # Errors
/// What is wrong, in words.
pub fn check_scale_bounds([lo, hi]: [f64; 2]) -> Result<(), String> {
    if lo.is_finite() && hi.is_finite() && lo < hi {
        Ok(())
    } else {
        Err(format!(
            "the scale [{lo}, {hi}] must be two finite numbers, the low one first"
        ))
    }
}

/// How a decision ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Outcome {
    /// The verdict stands. `weak`: consensus stayed below the acceptance threshold but above
    /// the arbitration threshold after every available agent was asked.
    Decided {
        /// Consensus below the acceptance threshold.
        weak: bool,
    },
    /// Consensus fell below the arbitration threshold and the policy's arbiter ruled. The
    /// programmatic tally stays in the verdict beside the ruling.
    Arbitrated {
        /// The arbiter agent.
        arbiter: String,
        /// Its ruling: an option or a number, as text.
        ruling: String,
    },
    /// Sent to a human: consensus below the human threshold, no quorum, or an arbiter that
    /// could not rule in its time.
    Human {
        /// Why.
        reason: String,
    },
    /// Refused: the policy neither decides nor escalates this (no human review).
    Refused {
        /// Why.
        reason: String,
    },
}

impl Outcome {
    /// Its name as in JSON: `decided`, `arbitrated`, `human` or `refused`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Decided { .. } => "decided",
            Self::Arbitrated { .. } => "arbitrated",
            Self::Human { .. } => "human",
            Self::Refused { .. } => "refused",
        }
    }
}

/// Why the fan-out stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Stop {
    /// The remaining agents could not change the winner.
    Certified,
    /// The winner of the full pool is the leader with probability at least 1 − δ (for
    /// numbers: the quorum's median is right with probability at least 1 − δ).
    Confident,
    /// Every selected agent was asked.
    Exhausted,
    /// The next call would have exceeded the budget.
    Budget,
    /// The decision's time ran out.
    Deadline,
    /// The supervisor halted a failure storm (most calls failing or timing out).
    Halted,
}

/// One ballot as it was counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cast {
    /// The ballot (an abstention when the agent failed).
    pub ballot: Ballot,
    /// The weight it was counted with.
    pub weight: f64,
    /// Time to answer, ms.
    pub latency_ms: u64,
    /// Tokens used (prompt + completion).
    pub tokens: u64,
    /// Cost in dollars.
    pub cost_usd: f64,
    /// The wave it belonged to (1-based).
    pub wave: u32,
}

/// The outcome of a governed decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// The decision.
    pub decision: String,
    /// The policy that governed it.
    pub policy: String,
    /// SHA-256 of the policy file.
    pub policy_hash: String,
    /// The trust snapshot version the weights came from.
    pub trust_version: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The rule (with its parameters) that counted the ballots.
    pub rule: Rule,
    /// The tally of the counted ballots (absent when nothing could be counted).
    pub tally: Option<TallyResult>,
    /// Consensus in [0, 1] as the articles define it: the winner's weight share for option
    /// rules, consensus quality `1/(1 + σ/(μ + ε))` (ε = 0.05) for numbers and vectors.
    pub consensus: f64,
    /// The probability that the verdict is right, given the counted ballots and each voter's
    /// measured trust (see the Governor's documentation); the thresholds apply to it.
    pub confidence: f64,
    /// Every ballot asked for, in the order they arrived, abstentions included.
    pub ballots: Vec<Cast>,
    /// Agent calls made.
    pub calls: usize,
    /// Waves of calls.
    pub waves: u32,
    /// Why the fan-out stopped.
    pub stop: Stop,
    /// Tokens spent.
    pub tokens: u64,
    /// Of `tokens`, prompt tokens (the rest are completion tokens).
    pub prompt_tokens: u64,
    /// Dollars spent.
    pub cost_usd: f64,
    /// The arbiter's ruling as a ballot of the decision's kind, beside the tally (arbitrated
    /// decisions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ruling: Option<Ballot>,
    /// The deliberation rounds, the independent vote first, when the policy deliberated; the
    /// tally, consensus and confidence are then the last round's (`ballots` stay the
    /// independent ones: what trust learns from).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<RoundRecord>,
    /// Pool members left out of the vote, and why: not seated (quarantined, ejected, below
    /// the trust floor, over the pool's size or its family limit) or asked without a say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<LeftOut>,
}

/// The largest decision a policy takes: bounds on what a request may hold, so that one
/// request cannot exhaust memory or time. Checked before any agent is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Options of a choice or ranking (default 64).
    pub options: usize,
    /// Characters of one option (default 500).
    pub option_chars: usize,
    /// Characters of the question (default 32,768).
    pub question_chars: usize,
    /// Dimensions of a vector answer (default 4,096; longer vectors are malformed answers).
    pub dimensions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            options: 64,
            option_chars: 500,
            question_chars: 32_768,
            dimensions: 4_096,
        }
    }
}

/// A decision id given by a client: 1–128 characters of `A–Z a–z 0–9 . _ : -`, not all digits
/// (a number names a record's sequence number).
///
/// # Errors
/// What is wrong with it.
pub fn check_client_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.chars().count() > 128 {
        return Err(format!(
            "a decision id has 1 to 128 characters (this one has {})",
            id.chars().count()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(format!(
            "a decision id holds only letters, digits and . _ : - (not {c:?})"
        ));
    }
    if id.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "decision id \"{id}\" is a number, which names a record's sequence number: give it a letter"
        ));
    }
    Ok(())
}

/// A pool member left out of a decision's vote, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeftOut {
    /// The agent.
    pub agent: String,
    /// Why, in words (`quarantined`, `below the trust floor (trust 0.21 < 0.30)`, …).
    pub reason: String,
}

impl Decision {
    /// Whether the decision is well formed and within `limits`: a choice or ranking has at
    /// least two options, none empty, none twice, at most `limits.options` of at most
    /// `limits.option_chars` characters; the question is not empty and has at most
    /// `limits.question_chars` characters; a numeric scale makes sense.
    ///
    /// # Errors
    /// What is wrong, in words.
    pub fn check(&self, limits: &Limits) -> Result<(), String> {
        if self.question.trim().is_empty() {
            return Err("the question is empty".to_owned());
        }
        let chars = self.question.chars().count();
        if chars > limits.question_chars {
            return Err(format!(
                "the question has {chars} characters, more than the {} this policy takes",
                limits.question_chars
            ));
        }
        if matches!(self.kind, Kind::Choice | Kind::Ranking) {
            let n = self.options.len();
            if n < 2 {
                return Err(format!(
                    "a {} needs at least two options (it has {n})",
                    self.kind.as_str()
                ));
            }
            if n > limits.options {
                return Err(format!(
                    "{n} options, more than the {} this policy takes",
                    limits.options
                ));
            }
            let mut seen = std::collections::HashSet::with_capacity(n);
            for o in &self.options {
                if o.trim().is_empty() {
                    return Err("an option is empty".to_owned());
                }
                let len = o.chars().count();
                if len > limits.option_chars {
                    return Err(format!(
                        "an option has {len} characters, more than the {} this policy takes",
                        limits.option_chars
                    ));
                }
                if !seen.insert(o.trim()) {
                    return Err(format!("option {o:?} is listed twice"));
                }
            }
        }
        self.check_scale()
    }
}

impl Verdict {
    /// The winning option, if the rule chooses options and one won.
    pub fn winner(&self) -> Option<&str> {
        self.tally.as_ref().and_then(|t| t.winner.as_deref())
    }

    /// The aggregate value, for numeric decisions.
    pub fn value(&self) -> Option<f64> {
        self.tally.as_ref().and_then(|t| t.value)
    }

    /// The tally's input: the decision's kind and options, every ballot as it was cast
    /// (abstentions with their reasons) and the weight each was counted with.
    pub fn tally_input(&self, decision: &Decision) -> TallyInput {
        // A deliberated verdict is the last round's tally (unless that round was flagged as
        // acquiescence: then the independent vote's, below).
        if let Some(last) = self.rounds.last().filter(|r| r.acquiescence.is_none()) {
            return TallyInput {
                kind: decision.kind,
                options: decision.options.clone(),
                weights: last.weights.iter().cloned().collect(),
                ballots: last.ballots.clone(),
            };
        }
        TallyInput {
            kind: decision.kind,
            options: decision.options.clone(),
            weights: self
                .ballots
                .iter()
                .map(|c| (c.ballot.agent.clone(), c.weight))
                .collect(),
            ballots: self.ballots.iter().map(|c| c.ballot.clone()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scale_bounds_numeric_answers_and_must_make_sense() {
        let d = Decision::score("s", "trading", "Sentiment?").with_scale(-1.0, 1.0);
        assert!(d.check_scale().is_ok());
        assert!(d.on_scale(-1.0) && d.on_scale(0.3) && d.on_scale(1.0));
        assert!(!d.on_scale(1.000_001) && !d.on_scale(-3.0) && !d.on_scale(f64::NAN));
        let free = Decision::score("s", "trading", "How many?");
        assert!(free.on_scale(1e12) && !free.on_scale(f64::INFINITY));
        for bad in [
            Decision::score("s", "t", "q").with_scale(1.0, 1.0),
            Decision::score("s", "t", "q").with_scale(2.0, -2.0),
            Decision::score("s", "t", "q").with_scale(f64::NEG_INFINITY, 0.0),
            Decision::choice("c", "t", "q", ["a", "b"]).with_scale(0.0, 1.0),
        ] {
            assert!(bad.check_scale().is_err(), "{:?}", bad.scale);
        }
        // Decisions without a scale serialise as before (records keep their hashes).
        let json = serde_json::to_value(&free).expect("json");
        assert!(json.get("scale").is_none());
        let back: Decision =
            serde_json::from_value(serde_json::to_value(&d).expect("json")).expect("round trip");
        assert_eq!(back.scale, Some([-1.0, 1.0]));
    }
}

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
    /// What the round's tally answered, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// The round's consensus (CQ with the policy's ε for numbers and vectors, the winner's
    /// weight share for options).
    pub consensus: f64,
    /// The probability that the round's verdict is right.
    pub confidence: f64,
    /// Set when the round looks like acquiescence rather than deliberation: the pool
    /// converged, far beyond what the independent vote supported, on an answer it did not
    /// choose. The independent vote then stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquiescence: Option<String>,
    /// When the round's answer differs from the independent vote's: the independent vote's
    /// odds of it against its own answer (what the acquiescence detector weighs, and what the
    /// pool's overturn record learns from once the decision is graded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odds: Option<f64>,
}

/// The answer (in words) the rounds of a decision of `kind` moved the pool to, away from the
/// independent vote's: the last round's, when it differs from the first's (numbers: by more
/// than `tolerance`).
pub fn overturned(rounds: &[RoundRecord], kind: Kind, tolerance: f64) -> Option<&str> {
    let (first, last) = (rounds.first()?, rounds.last()?);
    let (old, new) = (first.answer.as_deref()?, last.answer.as_deref()?);
    let moved = match (kind, old.parse::<f64>(), new.parse::<f64>()) {
        (Kind::Score, Ok(a), Ok(b)) => (a - b).abs() > tolerance,
        _ => old != new,
    };
    (rounds.len() > 1 && moved).then_some(new)
}

/// Stakes of the decisions a policy governs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Stakes {
    /// Mistakes are cheap.
    Low,
    /// The default.
    #[default]
    Medium,
    /// One compromised answer could do harm downstream.
    High,
}
