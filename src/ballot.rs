//! Typed ballots: the answer of one agent to one decision.
//!
//! A [`Ballot`] names its agent and carries exactly one [`Answer`]: a choice among options,
//! a ranking of options, a number, a vector (an embedding), or an [`Abstention`] with a
//! reason. Abstentions are data, not errors: they are excluded from every count and
//! reported beside the result.
//!
//! The JSON form is flat, one key naming the kind of answer, as `conclave tally` reads it:
//!
//! ```
//! use conclave::ballot::{Answer, Ballot};
//!
//! let b: Ballot = serde_json::from_str(r#"{"agent": "econ", "choice": "hold", "confidence": 0.8}"#)?;
//! assert_eq!(b.agent, "econ");
//! assert!(matches!(b.answer, Answer::Choice(ref c) if c == "hold"));
//! assert_eq!(b.confidence, Some(0.8));
//!
//! let a: Ballot = serde_json::from_str(r#"{"agent": "slow", "abstain": "timeout"}"#)?;
//! assert!(a.is_abstention());
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The answer of one agent to one decision, with who gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "RawBallot", into = "RawBallot")]
#[schemars(with = "RawBallot")]
pub struct Ballot {
    /// The agent that cast the ballot. One agent casts at most one ballot per tally.
    pub agent: String,
    /// What the agent answered.
    pub answer: Answer,
    /// The agent's self-reported confidence in `[0, 1]`, if it gave one. A feature to be
    /// calibrated against outcomes, never trust itself.
    pub confidence: Option<f64>,
    /// The agent's stated reasons, if any. Recorded for audit; never read by a rule.
    pub rationale: Option<String>,
    /// For an abstention (or a repaired answer), what went wrong, as the transport or the
    /// endpoint told it. Never holds a secret.
    pub cause: Option<Cause>,
}

/// What went wrong with an agent call, typed: kept on the abstention, shown by `conclave
/// decide`, counted by eval reports and kept in the audit record.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, thiserror::Error,
)]
#[error("{}", self.describe())]
#[serde(deny_unknown_fields)]
pub struct Cause {
    /// The kind of failure.
    pub kind: CauseKind,
    /// The HTTP status, when the endpoint answered with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What the server or the parser said (an excerpt, control characters removed).
    pub detail: String,
}

/// The kinds of [`Cause`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CauseKind {
    /// The connection could not be made (refused, unreachable, DNS, TLS).
    Connect,
    /// No answer in time.
    Timeout,
    /// The endpoint answered with an HTTP error status.
    Http,
    /// The endpoint refused the structured-output request itself (every mode tried).
    SchemaRejected,
    /// The reply could not be read as a ballot, even after a repair attempt.
    Unparsable,
    /// The reply was cut at the token limit, even after a retry with a larger one.
    Truncated,
    /// The model refused to answer.
    Refused,
    /// The reply was larger than the agent's response-size limit.
    OverSize,
    /// The endpoint redirected; redirects are not followed.
    Redirect,
    /// Anything else.
    Other,
}

impl CauseKind {
    /// The word used in JSON and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Http => "http",
            Self::SchemaRejected => "schema-rejected",
            Self::Unparsable => "unparsable",
            Self::Truncated => "truncated",
            Self::Refused => "refused",
            Self::OverSize => "over-size",
            Self::Redirect => "redirect",
            Self::Other => "other",
        }
    }
}

/// Longest detail a cause keeps (characters).
const DETAIL_MAX: usize = 300;

impl Cause {
    /// A cause of `kind` saying `detail` (cut to 300 characters, control characters
    /// replaced: it may echo a hostile server).
    pub fn new(kind: CauseKind, detail: impl AsRef<str>) -> Self {
        Self {
            kind,
            status: None,
            detail: clean_excerpt(detail.as_ref(), DETAIL_MAX),
        }
    }

    /// An HTTP error status with the server's message.
    pub fn http(status: u16, detail: impl AsRef<str>) -> Self {
        Self {
            status: Some(status),
            ..Self::new(CauseKind::Http, detail)
        }
    }

    /// Whether trying again may help: connection failures, timeouts, and HTTP 408, 429 and
    /// 5xx. A client error, a redirect, an oversized or unreadable reply will not change.
    pub fn retryable(&self) -> bool {
        match self.kind {
            CauseKind::Connect | CauseKind::Timeout => true,
            CauseKind::Http => matches!(self.status, Some(408 | 429 | 500..=599)),
            _ => false,
        }
    }

    /// The abstention this cause makes: the model's own failures (unreadable or truncated
    /// replies) are `malformed`, a refusal is `refused`, a timeout `timeout`, the rest
    /// `error`.
    pub fn abstention(&self) -> Abstention {
        match self.kind {
            CauseKind::Unparsable | CauseKind::Truncated => Abstention::Malformed,
            CauseKind::Refused => Abstention::Refused,
            CauseKind::Timeout => Abstention::Timeout,
            _ => Abstention::Error,
        }
    }

    /// In words: `http 404: …`, `connect: …`.
    pub fn describe(&self) -> String {
        match self.status {
            Some(s) => format!("{} {s}: {}", self.kind.as_str(), self.detail),
            None => format!("{}: {}", self.kind.as_str(), self.detail),
        }
    }
}

/// `x` with `digits` decimals, never `-0.00`: a value that rounds to zero prints as zero.
pub fn fixed(x: f64, digits: usize) -> String {
    let scale = 10f64.powi(i32::try_from(digits.min(12)).unwrap_or(12));
    let r = (x * scale).round() / scale;
    // -0.0 + 0.0 is +0.0.
    format!("{:.*}", digits, if r == 0.0 { 0.0 } else { r + 0.0 })
}

/// `text` safe to print on a terminal and bounded: control characters escaped (`\u{1b}`),
/// at most `max` characters, then how many more there were.
pub fn printable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n >= max {
            let rest = text.chars().count() - n;
            out += &format!("… ({rest} more characters)");
            return out;
        }
        if c.is_control() && c != '\n' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// At most `max` characters of `text`, control characters replaced by spaces and runs of
/// whitespace collapsed, with `…` when cut.
pub fn clean_excerpt(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut kept = 0usize;
    let mut last_space = false;
    for (n, c) in text.chars().enumerate() {
        if n >= max.saturating_mul(4) || kept >= max {
            out.push('…');
            return out;
        }
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        out.push(c);
        kept += 1;
    }
    out.trim().to_owned()
}

/// One agent's answer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Answer {
    /// One option out of the decision's options.
    Choice(String),
    /// Options in order of preference, best first. A partial ranking lists only some
    /// options: the listed ones are preferred to the unlisted, which are tied.
    Ranking(Vec<String>),
    /// A number, for estimates and scores (for example a sentiment in `[-1, 1]`).
    Score(f64),
    /// A point in ℝᵈ, for example an embedding of a free-text answer.
    Vector(Vec<f64>),
    /// The agent gave no usable answer; the reason says why.
    Abstain(Abstention),
}

impl Answer {
    /// The answer in words: an option, a ranking `a > b > c`, a number, or a vector's size;
    /// `None` for an abstention.
    pub fn words(&self) -> Option<String> {
        match self {
            Self::Choice(c) => Some(c.clone()),
            Self::Ranking(r) => Some(r.join(" > ")),
            Self::Score(v) => Some(format!("{v}")),
            Self::Vector(v) => Some(format!("a vector of {} values", v.len())),
            Self::Abstain(_) => None,
        }
    }
}

/// Why an agent gave no usable answer. Serialised as a short kebab-case word
/// (`"timeout"`, `"malformed"`, …); any other word is kept as [`Abstention::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Abstention {
    /// The agent did not answer in time.
    Timeout,
    /// The transport or the agent failed (connection refused, HTTP 5xx, crash).
    Error,
    /// The answer did not match the ballot schema, even after a repair attempt.
    Malformed,
    /// The agent declined to answer.
    Refused,
    /// The agent was not asked because its circuit breaker was open.
    CircuitOpen,
    /// The agent was not asked because the decision's budget could not cover the call.
    Budget,
    /// The agent chose to abstain (for example, it does not know).
    Declined,
    /// The agent was asked, but the outcome was certain before it answered; its call was
    /// cancelled.
    Cancelled,
    /// Any other reason, kept verbatim.
    Other(String),
}

/// What an abstention says about the agent, for grading and for the health of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AbstentionClass {
    /// The call failed on the way: a timeout, a transport or HTTP error, an open circuit,
    /// or a reason nobody classified. Says nothing about the model's knowledge; never moves
    /// trust; counts against the run's health.
    Infrastructure,
    /// The model answered, but not with a usable ballot (`malformed`): a quality signal of
    /// the agent, graded as a wrong answer.
    Model,
    /// The agent chose not to answer (`refused`, `declined`): not graded.
    Declined,
    /// The call was never made or was cut short by the decision itself (`cancelled`,
    /// `budget`): not a call outcome at all.
    NotCalled,
}

impl AbstentionClass {
    /// The word used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Infrastructure => "infrastructure",
            Self::Model => "model",
            Self::Declined => "declined",
            Self::NotCalled => "not-called",
        }
    }
}

impl Abstention {
    /// What the abstention says about the agent (see [`AbstentionClass`]).
    pub fn class(&self) -> AbstentionClass {
        match self {
            Self::Timeout | Self::Error | Self::CircuitOpen | Self::Other(_) => {
                AbstentionClass::Infrastructure
            }
            Self::Malformed => AbstentionClass::Model,
            Self::Refused | Self::Declined => AbstentionClass::Declined,
            Self::Cancelled | Self::Budget => AbstentionClass::NotCalled,
        }
    }

    /// The reason as the word used in JSON and in reports.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Timeout => "timeout",
            Self::Error => "error",
            Self::Malformed => "malformed",
            Self::Refused => "refused",
            Self::CircuitOpen => "circuit-open",
            Self::Budget => "budget",
            Self::Declined => "declined",
            Self::Cancelled => "cancelled",
            Self::Other(s) => s,
        }
    }
}

impl From<&str> for Abstention {
    fn from(s: &str) -> Self {
        match s {
            "timeout" => Self::Timeout,
            "error" => Self::Error,
            "malformed" => Self::Malformed,
            "refused" => Self::Refused,
            "circuit-open" => Self::CircuitOpen,
            "budget" => Self::Budget,
            "declined" => Self::Declined,
            "cancelled" => Self::Cancelled,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Abstention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Abstention {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Abstention {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::from(s.as_str()))
    }
}

impl Ballot {
    /// A ballot choosing `option`.
    pub fn choice(agent: impl Into<String>, option: impl Into<String>) -> Self {
        Self::new(agent, Answer::Choice(option.into()))
    }

    /// A ballot ranking `options`, best first.
    pub fn ranking<I, S>(agent: impl Into<String>, options: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(
            agent,
            Answer::Ranking(options.into_iter().map(Into::into).collect()),
        )
    }

    /// A ballot giving the number `value`.
    pub fn score(agent: impl Into<String>, value: f64) -> Self {
        Self::new(agent, Answer::Score(value))
    }

    /// A ballot giving the vector `v`.
    pub fn vector(agent: impl Into<String>, v: Vec<f64>) -> Self {
        Self::new(agent, Answer::Vector(v))
    }

    /// An abstention of `agent` for `reason`.
    pub fn abstain(agent: impl Into<String>, reason: Abstention) -> Self {
        Self::new(agent, Answer::Abstain(reason))
    }

    /// A ballot with no confidence and no rationale.
    pub fn new(agent: impl Into<String>, answer: Answer) -> Self {
        Self {
            agent: agent.into(),
            answer,
            confidence: None,
            rationale: None,
            cause: None,
        }
    }

    /// The same ballot with what went wrong.
    #[must_use]
    pub fn with_cause(mut self, cause: Cause) -> Self {
        self.cause = Some(cause);
        self
    }

    /// The same ballot with a self-reported confidence.
    #[must_use]
    pub fn with_confidence(mut self, confidence: f64) -> Self {
        self.confidence = Some(confidence);
        self
    }

    /// The same ballot with a rationale.
    #[must_use]
    pub fn with_rationale(mut self, rationale: impl Into<String>) -> Self {
        self.rationale = Some(rationale.into());
        self
    }

    /// Whether this ballot is an abstention.
    pub fn is_abstention(&self) -> bool {
        matches!(self.answer, Answer::Abstain(_))
    }
}

/// The flat wire form of a ballot: exactly one of `choice`, `ranking`, `value`, `vector`,
/// `abstain` is present.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Ballot")]
struct RawBallot {
    /// The agent that cast the ballot.
    agent: String,
    /// The chosen option (choice ballots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    choice: Option<String>,
    /// Options in order of preference, best first (ranking ballots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ranking: Option<Vec<String>>,
    /// A number (score ballots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<f64>,
    /// A vector, for example an embedding (vector ballots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vector: Option<Vec<f64>>,
    /// The reason for abstaining (abstentions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    abstain: Option<Abstention>,
    /// Self-reported confidence in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    confidence: Option<f64>,
    /// The agent's stated reasons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rationale: Option<String>,
    /// What went wrong, for abstentions: `{"kind": "http", "status": 500, "detail": "…"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cause: Option<Cause>,
}

/// Why a wire ballot is not a ballot.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BallotError {
    /// None of `choice`, `ranking`, `value`, `vector`, `abstain` is present.
    #[error(
        "ballot of agent \"{0}\" has no answer: expected one of choice, ranking, value, vector, abstain"
    )]
    NoAnswer(String),
    /// More than one answer key is present.
    #[error(
        "ballot of agent \"{agent}\" has both \"{first}\" and \"{second}\": a ballot holds one answer"
    )]
    TwoAnswers {
        /// The agent.
        agent: String,
        /// The first answer key found.
        first: &'static str,
        /// The second answer key found.
        second: &'static str,
    },
    /// The confidence is not a number in `[0, 1]`.
    #[error("ballot of agent \"{agent}\": confidence {value} is not in [0, 1]")]
    Confidence {
        /// The agent.
        agent: String,
        /// The value given.
        value: f64,
    },
    /// The agent id is empty.
    #[error("a ballot has an empty agent id")]
    EmptyAgent,
}

impl TryFrom<RawBallot> for Ballot {
    type Error = BallotError;

    fn try_from(raw: RawBallot) -> Result<Self, BallotError> {
        if raw.agent.is_empty() {
            return Err(BallotError::EmptyAgent);
        }
        let mut answers: Vec<(&'static str, Answer)> = Vec::with_capacity(1);
        if let Some(c) = raw.choice {
            answers.push(("choice", Answer::Choice(c)));
        }
        if let Some(r) = raw.ranking {
            answers.push(("ranking", Answer::Ranking(r)));
        }
        if let Some(v) = raw.value {
            answers.push(("value", Answer::Score(v)));
        }
        if let Some(v) = raw.vector {
            answers.push(("vector", Answer::Vector(v)));
        }
        if let Some(a) = raw.abstain {
            answers.push(("abstain", Answer::Abstain(a)));
        }
        if answers.len() > 1 {
            return Err(BallotError::TwoAnswers {
                agent: raw.agent,
                first: answers[0].0,
                second: answers[1].0,
            });
        }
        let Some((_, answer)) = answers.pop() else {
            return Err(BallotError::NoAnswer(raw.agent));
        };
        if let Some(c) = raw.confidence
            && !(0.0..=1.0).contains(&c)
        {
            return Err(BallotError::Confidence {
                agent: raw.agent,
                value: c,
            });
        }
        Ok(Self {
            agent: raw.agent,
            answer,
            confidence: raw.confidence,
            rationale: raw.rationale,
            cause: raw.cause,
        })
    }
}

impl From<Ballot> for RawBallot {
    fn from(b: Ballot) -> Self {
        let mut raw = RawBallot {
            agent: b.agent,
            confidence: b.confidence,
            rationale: b.rationale,
            cause: b.cause,
            ..RawBallot::default()
        };
        match b.answer {
            Answer::Choice(c) => raw.choice = Some(c),
            Answer::Ranking(r) => raw.ranking = Some(r),
            Answer::Score(v) => raw.value = Some(v),
            Answer::Vector(v) => raw.vector = Some(v),
            Answer::Abstain(a) => raw.abstain = Some(a),
        }
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_never_prints_a_negative_zero() {
        assert_eq!(fixed(-0.0, 2), "0.00");
        assert_eq!(fixed(-0.001, 2), "0.00");
        assert_eq!(fixed(-0.006, 2), "-0.01");
        assert_eq!(fixed(0.125, 3), "0.125");
        assert_eq!(
            format!("{:.2}", -0.001),
            "-0.00",
            "what std does, and why `fixed` exists"
        );
    }

    #[test]
    fn round_trips_every_kind() {
        let ballots = vec![
            Ballot::choice("a", "buy")
                .with_confidence(0.5)
                .with_rationale("cheap"),
            Ballot::ranking("b", ["x", "y"]),
            Ballot::score("c", -0.25),
            Ballot::vector("d", vec![1.0, 2.0]),
            Ballot::abstain("e", Abstention::Timeout),
            Ballot::abstain("f", Abstention::Other("rate-limited".into())),
            Ballot::abstain("g", Abstention::Error)
                .with_cause(Cause::http(500, "Input should be 'text' or 'json_object'")),
        ];
        let json = serde_json::to_string(&ballots).unwrap();
        let back: Vec<Ballot> = serde_json::from_str(&json).unwrap();
        assert_eq!(ballots, back);
    }

    #[test]
    fn rejects_two_answers_and_none() {
        let e = serde_json::from_str::<Ballot>(r#"{"agent":"a","choice":"x","value":1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("both \"choice\" and \"value\""), "{e}");
        let e = serde_json::from_str::<Ballot>(r#"{"agent":"a"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no answer"), "{e}");
        let e = serde_json::from_str::<Ballot>(r#"{"agent":"a","choice":"x","colour":1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn rejects_confidence_out_of_range() {
        let e = serde_json::from_str::<Ballot>(r#"{"agent":"a","choice":"x","confidence":1.5}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not in [0, 1]"), "{e}");
    }
}
