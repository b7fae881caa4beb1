//! Pure voting and robust statistics: typed ballots in, a verdict of the counting rule out.
//!
//! No I/O, no async, no clocks: every function here is deterministic, so a recorded
//! decision can be re-tallied bit for bit. [`tally`] is the entry point; the submodules hold
//! the rules themselves, usable on plain slices and arrays.
//!
//! ```
//! use conclave::aggregate::{tally, Kind, Rule, TallyInput};
//! use conclave::ballot::Ballot;
//!
//! let input = TallyInput::new(Kind::Choice, ["buy", "hold", "sell"], vec![
//!     Ballot::choice("econ", "hold"),
//!     Ballot::choice("news", "sell"),
//!     Ballot::choice("gen", "hold"),
//! ]);
//! let result = tally(&input, &Rule::Plurality)?;
//! assert_eq!(result.winners(), ["hold"]);
//! # Ok::<(), conclave::aggregate::TallyError>(())
//! ```

pub mod categorical;
pub mod consensus;
pub mod numeric;
pub mod ranked;
pub mod robust;
mod rule;
pub mod weights;

use std::collections::BTreeMap;

use ndarray::Array2;
use rustc_hash::{FxHashMap, FxHashSet};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ballot::{Abstention, Answer, Ballot};
use rule::Family;
pub use rule::{RULE_NAMES, Rule};

/// What the ballots of a tally answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// One option out of `options`.
    Choice,
    /// A ranking of `options`.
    Ranking,
    /// A number.
    Score,
    /// A vector.
    Vector,
}

impl Kind {
    /// The kind as the word used in files, JSON and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Choice => "choice",
            Self::Ranking => "ranking",
            Self::Score => "score",
            Self::Vector => "vector",
        }
    }
}

/// Recorded ballots to count: the input document of `conclave tally`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TallyInput {
    /// What the ballots answer.
    pub kind: Kind,
    /// The options, for choice and ranking decisions; their order is the tie-break order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// One ballot per agent; abstentions included.
    pub ballots: Vec<Ballot>,
    /// Per-agent weights (≥ 0) for the rules that use them; agents missing here weigh 1.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, f64>,
}

impl TallyInput {
    /// An input with no weights.
    pub fn new<I, S>(kind: Kind, options: I, ballots: Vec<Ballot>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            kind,
            options: options.into_iter().map(Into::into).collect(),
            ballots,
            weights: BTreeMap::new(),
        }
    }

    /// The same input with per-agent weights.
    #[must_use]
    pub fn with_weights<I, S>(mut self, weights: I) -> Self
    where
        I: IntoIterator<Item = (S, f64)>,
        S: Into<String>,
    {
        self.weights = weights.into_iter().map(|(a, w)| (a.into(), w)).collect();
        self
    }
}

/// The most pairwise work Krum and multi-Krum do, counted as n²·d for n ballots of d
/// dimensions (10,000 numbers, or 1,000 vectors of 100 dimensions: about a second; the
/// cost grows with the square of the ballots and with the dimensions).
pub const KRUM_MAX_WORK: usize = 100_000_000;

/// Why ballots could not be counted. Every message names the offending agent, option or
/// parameter.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TallyError {
    /// No rule has this name.
    #[error("unknown rule \"{0}\"; rules are: {list}", list = RULE_NAMES.join(", "))]
    UnknownRule(String),
    /// The rule takes no parameter of this name.
    #[error("rule {rule} has no parameter \"{param}\"{}", accepted_list(accepted))]
    UnknownParam {
        /// The rule.
        rule: &'static str,
        /// The parameter given.
        param: String,
        /// The parameters it accepts, comma separated.
        accepted: String,
    },
    /// A parameter value is out of range or unreadable.
    #[error("rule {rule}, parameter {param}: {reason}")]
    BadParam {
        /// The rule.
        rule: &'static str,
        /// The parameter.
        param: String,
        /// What is wrong.
        reason: String,
    },
    /// The rule cannot count this kind of ballots.
    #[error("rule {rule} cannot count {kind} ballots (it counts {counts})")]
    RuleKind {
        /// The rule.
        rule: &'static str,
        /// The kind of the input.
        kind: &'static str,
        /// What it counts.
        counts: &'static str,
    },
    /// The ballot list is empty.
    #[error("no ballots: the ballot list is empty")]
    NoBallots,
    /// Every ballot is an abstention.
    #[error("no ballots to count: all {0} ballots are abstentions")]
    AllAbstained(usize),
    /// A choice or ranking decision has no options.
    #[error("options: a {0} decision needs a non-empty list of options")]
    NoOptions(&'static str),
    /// An option is listed twice.
    #[error("options: \"{0}\" is listed twice")]
    DuplicateOption(String),
    /// One agent cast two ballots.
    #[error("agent \"{0}\" cast more than one ballot; count each agent once")]
    DuplicateAgent(String),
    /// A ballot names an option that is not among the options.
    #[error("ballot of agent \"{agent}\": unknown option \"{option}\" (options: {options})")]
    UnknownOption {
        /// The agent.
        agent: String,
        /// The option named.
        option: String,
        /// The valid options, comma separated.
        options: String,
    },
    /// A ranking names an option twice.
    #[error("ballot of agent \"{agent}\": ranking names \"{option}\" twice")]
    RepeatedOption {
        /// The agent.
        agent: String,
        /// The repeated option.
        option: String,
    },
    /// A ranking is empty.
    #[error("ballot of agent \"{0}\": empty ranking (abstain instead)")]
    EmptyRanking(String),
    /// A ballot's answer does not fit the decision's kind.
    #[error("ballot of agent \"{agent}\": a {found} ballot in a {kind} decision")]
    WrongAnswer {
        /// The agent.
        agent: String,
        /// The kind of the decision.
        kind: &'static str,
        /// The kind of answer found.
        found: &'static str,
    },
    /// A number is NaN or infinite.
    #[error("ballot of agent \"{0}\": value is not a finite number")]
    NotFinite(String),
    /// A vector is empty.
    #[error("ballot of agent \"{0}\": empty vector")]
    EmptyVector(String),
    /// Vectors of different lengths.
    #[error(
        "ballot of agent \"{agent}\": vector has {found} components, the first ballot's has {expected}"
    )]
    VectorLength {
        /// The agent.
        agent: String,
        /// Length of the first vector.
        expected: usize,
        /// Length of this one.
        found: usize,
    },
    /// A weight is negative, NaN or infinite.
    #[error("weights: weight of agent \"{agent}\" is {value}; weights must be finite and ≥ 0")]
    BadWeight {
        /// The agent.
        agent: String,
        /// The weight given.
        value: f64,
    },
    /// The counted ballots weigh nothing in total.
    #[error("weights: the counted ballots weigh 0 in total")]
    ZeroTotalWeight,
    /// Log-odds needs a competence for every agent.
    #[error(
        "log-odds: agent \"{0}\" has no competence (give it in weights as p in (0, 1), or a confidence on its ballot)"
    )]
    NoCompetence(String),
    /// A competence outside (0, 1).
    #[error("log-odds: competence {value} of agent \"{agent}\" is not in (0, 1)")]
    BadCompetence {
        /// The agent.
        agent: String,
        /// The value.
        value: f64,
    },
    /// Krum compares every pair of ballots (n² distances of d dimensions): more work than
    /// [`KRUM_MAX_WORK`] is refused rather than computed for minutes.
    #[error(
        "{rule}: {n} ballots of {dimensions} dimensions is more than it compares pairwise (n²·d at most {max}); use the geometric median or the median for large pools"
    )]
    TooManyForKrum {
        /// The rule.
        rule: &'static str,
        /// Counted ballots.
        n: usize,
        /// Their dimensions.
        dimensions: usize,
        /// The limit on n²·d.
        max: usize,
    },
    /// Krum needs more ballots than it tolerates.
    #[error("{rule}: {n} counted ballots cannot tolerate f = {f} (needs n ≥ f + 3)")]
    TooFewForKrum {
        /// The rule.
        rule: &'static str,
        /// Counted ballots.
        n: usize,
        /// Tolerated arbitrary ballots.
        f: usize,
    },
}

fn accepted_list(accepted: &str) -> String {
    if accepted.is_empty() {
        " (it takes no parameters)".to_owned()
    } else {
        format!(" (it takes: {accepted})")
    }
}

/// The result of a tally. Fields that do not apply to the rule are `None`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TallyResult {
    /// The rule that counted.
    pub rule: &'static str,
    /// Option rules: every co-winner before tie-breaking, in options order. Empty when a
    /// supermajority was not reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub winners: Option<Vec<String>>,
    /// Option rules: the winner after the deterministic tie-break.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// Option rules: each option's score in the rule's own unit (higher is better), in
    /// options order.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ordered_map"
    )]
    pub scores: Option<Vec<(String, f64)>>,
    /// Score ballots: the aggregate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Vector ballots: the aggregate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f64>>,
    /// Option rules: `(best − second best score) / the largest possible difference`, in [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
    /// Option rules: the winner's share of the first-preference weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub support: Option<f64>,
    /// Option rules: Shannon entropy (bits) of the first-preference weight shares.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entropy: Option<f64>,
    /// Score ballots: consensus quality `1/(1 + σ/μ)` (sample σ, μ = mean |x|, ε = 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consensus_quality: Option<f64>,
    /// Geometric median: the objective `Σ w_i ‖x_i − y‖` at the result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objective: Option<f64>,
    /// Iterative rules: iterations run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iterations: Option<usize>,
    /// Iterative rules: whether the tolerance was met.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub converged: Option<bool>,
    /// Krum rules: the agents whose ballots were selected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selected: Option<Vec<String>>,
    /// Instant runoff: options in the order they were eliminated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eliminated: Option<Vec<String>>,
    /// Every tie-break the rule applied, in words.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tie_breaks: Vec<String>,
    /// The normalised weights the rule counted with (weighted rules only), per agent.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ordered_map"
    )]
    pub weights: Option<Vec<(String, f64)>>,
    /// Number of ballots counted.
    pub counted: usize,
    /// Number of abstentions.
    pub abstained: usize,
    /// Each abstaining agent with its reason.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "ordered_map")]
    pub abstentions: Vec<(String, Abstention)>,
}

impl TallyResult {
    fn empty(rule: &Rule, counted: usize, abstentions: Vec<(String, Abstention)>) -> Self {
        Self {
            rule: rule.name(),
            winners: None,
            winner: None,
            scores: None,
            value: None,
            vector: None,
            margin: None,
            support: None,
            entropy: None,
            consensus_quality: None,
            objective: None,
            iterations: None,
            converged: None,
            selected: None,
            eliminated: None,
            tie_breaks: Vec::new(),
            weights: None,
            counted,
            abstained: abstentions.len(),
            abstentions,
        }
    }

    /// The co-winner set (empty for numeric rules, or when no option qualified).
    pub fn winners(&self) -> &[String] {
        self.winners.as_deref().unwrap_or(&[])
    }
}

fn ordered_map<S, T, K, V>(pairs: &T, s: S) -> Result<S::Ok, S::Error>
where
    S: serde::Serializer,
    T: OrderedPairs<K, V>,
    K: Serialize,
    V: Serialize,
{
    use serde::ser::SerializeMap;
    let pairs = pairs.as_pairs();
    let mut map = s.serialize_map(Some(pairs.len()))?;
    for (k, v) in pairs {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

/// Lets [`ordered_map`] serialise both `Vec<(K, V)>` and `Option<Vec<(K, V)>>`.
trait OrderedPairs<K, V> {
    fn as_pairs(&self) -> &[(K, V)];
}

impl<K, V> OrderedPairs<K, V> for Option<Vec<(K, V)>> {
    fn as_pairs(&self) -> &[(K, V)] {
        self.as_deref().unwrap_or(&[])
    }
}

impl<K, V> OrderedPairs<K, V> for Vec<(K, V)> {
    fn as_pairs(&self) -> &[(K, V)] {
        self
    }
}

/// Validated ballots, by kind, ready for a rule: abstentions split off, options and agents
/// resolved to indices, weights aligned with the counted ballots.
#[derive(Debug)]
struct Prepared<'a> {
    agents: Vec<&'a str>,
    /// The counted ballots, aligned with `agents` and `weights`.
    ballots: Vec<&'a Ballot>,
    /// Weights given in the input, for the rules that must tell them from the default.
    given: &'a BTreeMap<String, f64>,
    weights: Vec<f64>,
    /// The weight given in the input for each counted ballot (`None`: defaulted to 1).
    abstentions: Vec<(String, Abstention)>,
    body: Body,
}

#[derive(Debug)]
enum Body {
    /// Rankings as option indices, best first (a choice is a ranking of length 1).
    Options(Rankings),
    Values(Vec<f64>),
    Vectors(Array2<f64>),
}

/// Rankings stored flat: ranking `i` is `items[ends[i-1]..ends[i]]` (one allocation for
/// the whole profile instead of one per ballot).
#[derive(Debug, Default)]
struct Rankings {
    items: Vec<usize>,
    ends: Vec<usize>,
}

impl Rankings {
    fn push(&mut self, ranking: impl IntoIterator<Item = usize>) {
        self.items.extend(ranking);
        self.ends.push(self.items.len());
    }

    fn slices(&self) -> Vec<&[usize]> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let r = &self.items[start..end];
                start = end;
                r
            })
            .collect()
    }
}

/// Option names to indices (a hash map: faster than a linear scan even for five options).
struct OptionIndex<'a> {
    names: &'a [String],
    map: FxHashMap<&'a str, usize>,
}

impl<'a> OptionIndex<'a> {
    fn new(names: &'a [String], kind: &'static str) -> Result<Self, TallyError> {
        if names.is_empty() {
            return Err(TallyError::NoOptions(kind));
        }
        let mut map = FxHashMap::with_capacity_and_hasher(names.len(), Default::default());
        for (i, o) in names.iter().enumerate() {
            if map.insert(o.as_str(), i).is_some() {
                return Err(TallyError::DuplicateOption(o.clone()));
            }
        }
        Ok(Self { names, map })
    }

    fn get(&self, agent: &str, option: &str) -> Result<usize, TallyError> {
        self.map
            .get(option)
            .copied()
            .ok_or_else(|| TallyError::UnknownOption {
                agent: agent.to_owned(),
                option: option.to_owned(),
                options: self.names.join(", "),
            })
    }
}

fn answer_name(a: &Answer) -> &'static str {
    match a {
        Answer::Choice(_) => "choice",
        Answer::Ranking(_) => "ranking",
        Answer::Score(_) => "score",
        Answer::Vector(_) => "vector",
        Answer::Abstain(_) => "abstain",
    }
}

fn prepare(input: &TallyInput) -> Result<Prepared<'_>, TallyError> {
    if input.ballots.is_empty() {
        return Err(TallyError::NoBallots);
    }
    let n = input.ballots.len();
    let mut seen: FxHashSet<&str> = FxHashSet::with_capacity_and_hasher(n, Default::default());
    for b in &input.ballots {
        if !seen.insert(b.agent.as_str()) {
            return Err(TallyError::DuplicateAgent(b.agent.clone()));
        }
    }
    let kind = input.kind.as_str();
    let options = match input.kind {
        Kind::Choice | Kind::Ranking => Some(OptionIndex::new(&input.options, kind)?),
        Kind::Score | Kind::Vector => None,
    };
    let lookup = |agent: &str, option: &str| -> Result<usize, TallyError> {
        match &options {
            Some(ix) => ix.get(agent, option),
            None => Err(TallyError::NoOptions(kind)),
        }
    };
    let given_weights: FxHashMap<&str, f64> = input
        .weights
        .iter()
        .map(|(a, w)| (a.as_str(), *w))
        .collect();

    let mut agents = Vec::with_capacity(n);
    let mut ballots: Vec<&Ballot> = Vec::with_capacity(n);
    let mut weights = Vec::with_capacity(n);
    let mut abstentions = Vec::new();
    let mut rankings = Rankings::default();
    // `stamp[o] == ballot number + 1` marks options already named by the current ranking.
    let mut stamp = vec![0usize; input.options.len()];
    let mut values: Vec<f64> = Vec::new();
    let mut flat: Vec<f64> = Vec::new();
    let mut dim: Option<usize> = None;

    for b in &input.ballots {
        let agent = b.agent.as_str();
        let wrong = || TallyError::WrongAnswer {
            agent: agent.to_owned(),
            kind,
            found: answer_name(&b.answer),
        };
        match (&b.answer, input.kind) {
            (Answer::Abstain(reason), _) => {
                abstentions.push((agent.to_owned(), reason.clone()));
                continue;
            }
            (Answer::Choice(c), Kind::Choice | Kind::Ranking) => {
                rankings.push([lookup(agent, c)?]);
            }
            (Answer::Ranking(r), Kind::Choice | Kind::Ranking) => {
                if r.is_empty() {
                    return Err(TallyError::EmptyRanking(agent.to_owned()));
                }
                let mark = agents.len() + 1;
                let start = rankings.items.len();
                for o in r {
                    let i = lookup(agent, o)?;
                    if std::mem::replace(&mut stamp[i], mark) == mark {
                        return Err(TallyError::RepeatedOption {
                            agent: agent.to_owned(),
                            option: o.clone(),
                        });
                    }
                    rankings.items.push(i);
                }
                debug_assert!(rankings.items.len() > start);
                rankings.ends.push(rankings.items.len());
            }
            (Answer::Score(v), Kind::Score) => {
                if !v.is_finite() {
                    return Err(TallyError::NotFinite(agent.to_owned()));
                }
                values.push(*v);
            }
            (Answer::Vector(v), Kind::Vector) => {
                if v.is_empty() {
                    return Err(TallyError::EmptyVector(agent.to_owned()));
                }
                let d = *dim.get_or_insert(v.len());
                if v.len() != d {
                    return Err(TallyError::VectorLength {
                        agent: agent.to_owned(),
                        expected: d,
                        found: v.len(),
                    });
                }
                if v.iter().any(|x| !x.is_finite()) {
                    return Err(TallyError::NotFinite(agent.to_owned()));
                }
                flat.extend_from_slice(v);
            }
            _ => return Err(wrong()),
        }
        let given = given_weights.get(agent).copied();
        let w = given.unwrap_or(1.0);
        if !(w.is_finite() && w >= 0.0) {
            return Err(TallyError::BadWeight {
                agent: agent.to_owned(),
                value: w,
            });
        }
        agents.push(agent);
        weights.push(w);
        ballots.push(b);
    }
    if agents.is_empty() {
        return Err(TallyError::AllAbstained(abstentions.len()));
    }
    let body = match input.kind {
        Kind::Choice | Kind::Ranking => Body::Options(rankings),
        Kind::Score => Body::Values(values),
        Kind::Vector => {
            let d = dim.unwrap_or(0);
            let rows = agents.len();
            Body::Vectors(Array2::from_shape_vec((rows, d), flat).map_err(|_| {
                TallyError::VectorLength {
                    agent: String::new(),
                    expected: d,
                    found: 0,
                }
            })?)
        }
    };
    Ok(Prepared {
        agents,
        weights,
        ballots,
        given: &input.weights,
        abstentions,
        body,
    })
}

/// Counts the ballots of `input` by `rule`.
///
/// Abstentions are excluded and reported; agents missing from `input.weights` weigh 1.
///
/// # Errors
/// Bad input (unknown options, repeated options in a ranking, non-finite numbers, vectors of
/// different lengths, two ballots from one agent, negative weights), a rule that does not
/// fit the kind of ballots, or nothing left to count.
pub fn tally(input: &TallyInput, rule: &Rule) -> Result<TallyResult, TallyError> {
    rule.validate()?;
    let family = rule.family();
    let fits = matches!(
        (family, input.kind),
        (
            Family::Choice | Family::Ranked,
            Kind::Choice | Kind::Ranking
        ) | (Family::Numeric | Family::Robust, Kind::Score | Kind::Vector)
    );
    if !fits {
        return Err(TallyError::RuleKind {
            rule: rule.name(),
            kind: input.kind.as_str(),
            counts: match family {
                Family::Choice | Family::Ranked => "choice and ranking ballots",
                Family::Numeric | Family::Robust => "score and vector ballots",
            },
        });
    }
    let mut p = prepare(input)?;
    let abstentions = std::mem::take(&mut p.abstentions);
    let mut result = TallyResult::empty(rule, p.agents.len(), abstentions);
    match &p.body {
        Body::Options(rankings) => {
            count_options(rule, &p, &input.options, &rankings.slices(), &mut result)?;
        }
        Body::Values(values) => count_values(rule, &p, values, &mut result)?,
        Body::Vectors(points) => count_vectors(rule, &p, points, &mut result)?,
    }
    Ok(result)
}

fn named_weights(p: &Prepared<'_>, w: &[f64]) -> Vec<(String, f64)> {
    p.agents
        .iter()
        .zip(w)
        .map(|(a, w)| ((*a).to_owned(), *w))
        .collect()
}

fn normalized(p: &Prepared<'_>) -> Result<Vec<f64>, TallyError> {
    let mut w = p.weights.clone();
    weights::normalize(&mut w).map_err(|_| TallyError::ZeroTotalWeight)?;
    Ok(w)
}

/// Log-odds weights `ln(m−1) + ln(p/(1−p))` from each ballot's competence (the given
/// weight, else its confidence), capped and normalised; one agent one vote when nobody is
/// better than chance.
fn log_odds_weights(
    p: &Prepared<'_>,
    m: usize,
    cap: f64,
    clip: f64,
) -> Result<Vec<f64>, TallyError> {
    let mut w = Vec::with_capacity(p.agents.len());
    for (i, agent) in p.agents.iter().enumerate() {
        let competence = match (p.weights_given(i), p.ballots[i].confidence) {
            (Some(c), _) | (None, Some(c)) => c,
            (None, None) => return Err(TallyError::NoCompetence((*agent).to_owned())),
        };
        if !(competence > 0.0 && competence < 1.0) {
            return Err(TallyError::BadCompetence {
                agent: (*agent).to_owned(),
                value: competence,
            });
        }
        w.push(weights::log_odds(competence, m, clip));
    }
    if w.iter().all(|&x| x == 0.0) {
        // Nobody is better than chance: fall back to one agent, one vote.
        w.iter_mut().for_each(|x| *x = 1.0);
    }
    weights::cap_shares(&mut w, cap);
    weights::normalize(&mut w).map_err(|_| TallyError::ZeroTotalWeight)?;
    Ok(w)
}

fn count_options(
    rule: &Rule,
    p: &Prepared<'_>,
    options: &[String],
    rankings: &[&[usize]],
    out: &mut TallyResult,
) -> Result<(), TallyError> {
    let m = options.len();
    let firsts: Vec<usize> = rankings.iter().map(|r| r[0]).collect();
    let mut tie_breaks = Vec::new();
    // (scores, co-winners, the largest possible score difference, weights used)
    let (scores, winners, scale, used): (Vec<f64>, Vec<usize>, f64, Option<Vec<f64>>) = match *rule
    {
        Rule::Plurality => {
            let s = categorical::counts(&firsts, m);
            let w = categorical::argmax_all(&s);
            (s, w, firsts.len() as f64, None)
        }
        Rule::WeightedPlurality => {
            let w = normalized(p)?;
            let s = categorical::weighted_counts(&firsts, &w, m);
            let win = categorical::argmax_all(&s);
            (s, win, 1.0, Some(w))
        }
        Rule::LogOdds { cap, clip } => {
            let w = log_odds_weights(p, m, cap, clip)?;
            let s = categorical::weighted_counts(&firsts, &w, m);
            let win = categorical::argmax_all(&s);
            (s, win, 1.0, Some(w))
        }
        Rule::Supermajority { threshold } => {
            let w = normalized(p)?;
            let s = categorical::weighted_counts(&firsts, &w, m);
            let win = categorical::supermajority(&s, threshold);
            (s, win, 1.0, p.any_weight().then_some(w))
        }
        Rule::Borda => {
            let s = ranked::borda(rankings, &p.weights, m);
            let win = categorical::argmax_all(&s);
            let total: f64 = p.weights.iter().sum();
            (
                s,
                win,
                total * (m.max(2) - 1) as f64,
                p.any_weight().then(|| p.weights.clone()),
            )
        }
        Rule::Copeland => {
            let pw = ranked::pairwise(rankings, &p.weights, m);
            let s = ranked::copeland(&pw);
            let win = categorical::argmax_all(&s);
            (
                s,
                win,
                (m.max(2) - 1) as f64,
                p.any_weight().then(|| p.weights.clone()),
            )
        }
        Rule::Schulze => {
            let pw = ranked::pairwise(rankings, &p.weights, m);
            let (s, win) = ranked::schulze(&pw);
            (
                s,
                win,
                (m.max(2) - 1) as f64,
                p.any_weight().then(|| p.weights.clone()),
            )
        }
        Rule::Minimax => {
            let pw = ranked::pairwise(rankings, &p.weights, m);
            let s = ranked::minimax(&pw);
            let win = categorical::argmax_all(&s);
            let total: f64 = p.weights.iter().sum();
            (s, win, total, p.any_weight().then(|| p.weights.clone()))
        }
        Rule::InstantRunoff => {
            let irv = ranked::instant_runoff(rankings, &p.weights, m);
            for t in &irv.tie_breaks {
                tie_breaks.push(format!(
                    "round {}: {} tied for fewest first preferences; eliminated {} ({})",
                    t.round,
                    t.tied
                        .iter()
                        .map(|&i| options[i].as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    options[t.eliminated],
                    t.reason
                ));
            }
            out.eliminated = Some(irv.eliminated.iter().map(|&i| options[i].clone()).collect());
            let win = irv.winners.clone();
            (
                irv.scores,
                win,
                irv.final_total.max(f64::MIN_POSITIVE),
                p.any_weight().then(|| p.weights.clone()),
            )
        }
        _ => unreachable_family(rule)?,
    };
    // First-preference shares: support and entropy, whatever the rule.
    let first = if rule.uses_weights() {
        categorical::weighted_counts(&firsts, &p.weights, m)
    } else {
        categorical::counts(&firsts, m)
    };
    let total_first: f64 = first.iter().sum();
    let shares: Vec<f64> = first.iter().map(|c| c / total_first).collect();
    out.entropy = Some(consensus::entropy_bits(&shares));
    if winners.len() > 1 {
        tie_breaks.push(format!(
            "{} tied; {} is listed first in options",
            winners
                .iter()
                .map(|&i| options[i].as_str())
                .collect::<Vec<_>>()
                .join(", "),
            options[winners[0]]
        ));
    }
    if let Some(&w) = winners.first() {
        out.winner = Some(options[w].clone());
        out.support = Some(shares[w]);
    }
    out.margin = Some(consensus::margin(&scores, scale));
    out.winners = Some(winners.iter().map(|&i| options[i].clone()).collect());
    out.scores = Some(options.iter().cloned().zip(scores).collect());
    out.weights = used.map(|w| named_weights(p, &w));
    out.tie_breaks = tie_breaks;
    Ok(())
}

impl Prepared<'_> {
    /// The weight given explicitly for counted ballot `i` (not the default of 1).
    fn weights_given(&self, i: usize) -> Option<f64> {
        // `weights` holds 1.0 for agents without an entry; log-odds must tell the two apart.
        self.given.get(self.agents[i]).copied()
    }

    fn any_weight(&self) -> bool {
        self.weights.iter().any(|&w| w != 1.0)
    }
}

fn unreachable_family<T>(rule: &Rule) -> Result<T, TallyError> {
    // `tally` checks the family before counting; this keeps the match total without a panic.
    Err(TallyError::RuleKind {
        rule: rule.name(),
        kind: "these",
        counts: "another kind of ballots",
    })
}

fn count_values(
    rule: &Rule,
    p: &Prepared<'_>,
    values: &[f64],
    out: &mut TallyResult,
) -> Result<(), TallyError> {
    out.consensus_quality = Some(consensus::consensus_quality(values, 0.0));
    let value = match *rule {
        Rule::Mean => numeric::mean(values),
        Rule::WeightedMean => {
            let w = normalized(p)?;
            out.weights = Some(named_weights(p, &w));
            numeric::weighted_mean(values, &w)
        }
        Rule::Median => numeric::median(values),
        Rule::WeightedMedian => {
            let w = normalized(p)?;
            out.weights = Some(named_weights(p, &w));
            numeric::weighted_median(values, &w)
        }
        Rule::TrimmedMean { trim } => numeric::trimmed_mean(values, trim),
        Rule::WinsorizedMean { trim } => numeric::winsorized_mean(values, trim),
        Rule::GeometricMedian { .. } => {
            let w = normalized(p)?;
            if p.any_weight() {
                out.weights = Some(named_weights(p, &w));
            }
            let v = numeric::weighted_median(values, &w);
            out.objective = Some(
                values
                    .iter()
                    .zip(&w)
                    .map(|(x, w)| w * (x - v).abs())
                    .sum::<f64>()
                    * p.weights.iter().sum::<f64>(),
            );
            out.iterations = Some(0);
            out.converged = Some(true);
            v
        }
        Rule::Krum { .. } | Rule::MultiKrum { .. } | Rule::OutlierDownweight { .. } => {
            let points = Array2::from_shape_vec((values.len(), 1), values.to_vec())
                .map_err(|_| TallyError::NoBallots)?;
            count_vectors(rule, p, &points, out)?;
            out.value = out.vector.take().and_then(|v| v.first().copied());
            return Ok(());
        }
        _ => return unreachable_family(rule),
    };
    out.value = Some(value);
    Ok(())
}

fn count_vectors(
    rule: &Rule,
    p: &Prepared<'_>,
    points: &Array2<f64>,
    out: &mut TallyResult,
) -> Result<(), TallyError> {
    let n = points.nrows();
    let vector: Vec<f64> = match *rule {
        Rule::Mean
        | Rule::WeightedMean
        | Rule::Median
        | Rule::WeightedMedian
        | Rule::TrimmedMean { .. }
        | Rule::WinsorizedMean { .. } => {
            let w = normalized(p)?;
            if matches!(rule, Rule::WeightedMean | Rule::WeightedMedian) {
                out.weights = Some(named_weights(p, &w));
            }
            let mut column = vec![0.0; n];
            points
                .columns()
                .into_iter()
                .map(|c| {
                    column.iter_mut().zip(c).for_each(|(d, s)| *d = *s);
                    match *rule {
                        Rule::Mean => numeric::mean(&column),
                        Rule::WeightedMean => numeric::weighted_mean(&column, &w),
                        Rule::Median => numeric::median(&column),
                        Rule::WeightedMedian => numeric::weighted_median(&column, &w),
                        Rule::TrimmedMean { trim } => numeric::trimmed_mean(&column, trim),
                        Rule::WinsorizedMean { trim } => numeric::winsorized_mean(&column, trim),
                        _ => f64::NAN,
                    }
                })
                .collect()
        }
        Rule::GeometricMedian { tol, max_iter } => {
            let w = normalized(p)?;
            if p.any_weight() {
                out.weights = Some(named_weights(p, &w));
            }
            let gm = robust::geometric_median(points.view(), &w, tol, max_iter);
            // Report the objective in the input's weight units (Σ w_i ‖x_i − y‖).
            out.objective = Some(gm.objective * p.weights.iter().sum::<f64>());
            out.iterations = Some(gm.iterations);
            out.converged = Some(gm.converged);
            gm.point
        }
        Rule::Krum { f } | Rule::MultiKrum { f, .. } => {
            let dimensions = points.ncols().max(1);
            if n.saturating_mul(n).saturating_mul(dimensions) > KRUM_MAX_WORK {
                return Err(TallyError::TooManyForKrum {
                    rule: rule.name(),
                    n,
                    dimensions,
                    max: KRUM_MAX_WORK,
                });
            }
            if n < f + 3 {
                return Err(TallyError::TooFewForKrum {
                    rule: rule.name(),
                    n,
                    f,
                });
            }
            let m = match *rule {
                Rule::MultiKrum { m, .. } => m.unwrap_or(n - f).min(n),
                _ => 1,
            };
            let chosen = robust::multi_krum(points.view(), f, m);
            out.selected = Some(chosen.iter().map(|&i| p.agents[i].to_owned()).collect());
            let d = points.ncols();
            let mut v = vec![0.0; d];
            for &i in &chosen {
                v.iter_mut().zip(points.row(i)).for_each(|(a, x)| *a += x);
            }
            v.iter_mut().for_each(|a| *a /= chosen.len() as f64);
            v
        }
        Rule::OutlierDownweight { lambda } => {
            let w = normalized(p)?;
            let (v, w) = robust::outlier_downweight(points.view(), &w, lambda);
            out.weights = Some(named_weights(p, &w));
            v
        }
        _ => return unreachable_family(rule),
    };
    out.vector = Some(vector);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_schema_describes_every_ballot_kind() {
        let schema = serde_json::to_value(schemars::schema_for!(TallyInput)).unwrap();
        let text = schema.to_string();
        for word in [
            "ballots", "options", "weights", "choice", "ranking", "vector", "abstain",
        ] {
            assert!(text.contains(word), "schema lacks {word}: {text}");
        }
    }

    #[test]
    fn tally_result_json_has_the_contract_fields() {
        let input = TallyInput::new(
            Kind::Choice,
            ["buy", "hold", "sell"],
            vec![
                Ballot::choice("econ", "hold"),
                Ballot::ranking("news", ["sell", "hold", "buy"]),
                Ballot::choice("gen", "hold"),
                Ballot::choice("risk", "sell"),
                Ballot::abstain("slow", Abstention::Timeout),
            ],
        );
        let r = serde_json::to_value(tally(&input, &Rule::Plurality).unwrap()).unwrap();
        assert_eq!(r["rule"], "plurality");
        assert_eq!(r["winners"], serde_json::json!(["hold", "sell"]));
        assert_eq!(r["winner"], "hold");
        assert_eq!(
            r["scores"],
            serde_json::json!({"buy": 0.0, "hold": 2.0, "sell": 2.0})
        );
        assert_eq!(r["margin"], 0.0);
        assert_eq!(r["counted"], 4);
        assert_eq!(r["abstained"], 1);
        assert_eq!(r["abstentions"]["slow"], "timeout");
        assert!(
            r["tie_breaks"][0]
                .as_str()
                .unwrap()
                .contains("hold is listed first")
        );
        assert!(r.get("value").is_none());
        // Options keep their order in the output.
        let keys: Vec<&String> = r["scores"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["buy", "hold", "sell"]);
    }
}
