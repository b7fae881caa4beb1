//! Checks as data: what a suite asserts about its runs, and how each assertion is judged over
//! many seeds (or over generated scenarios) with a stated statistic.
//!
//! A check names a [`Metric`] (measured per scenario and run), the scenarios it applies to (a
//! [`Class`] or a list of names), a comparison with a threshold, and a [`Statistic`] that
//! turns the runs' values into one verdict:
//!
//! - `share`: the criterion must hold, with evidence, at at least `share` of the runs (point
//!   share: with 20 seeds and `share = 0.95`, at 19 of them).
//! - `mean`: the mean over the runs must lie beyond the threshold at 95 % confidence: the
//!   one-sided Student-t bound over seeds (each seed is an independent replicate of the whole
//!   run, so the spread between seeds carries every source of noise, trust learning
//!   included); with a single seed, the run's own interval over its items.
//! - `pooled`: the metric computed once over every run's items together (rates, leads,
//!   calibration), with its one-sided 95 % bound where it has one.
//!
//! A run without enough evidence for a metric (too few items decided, an adversary graded
//! fewer times than the limit, a rank correlation over tied or too few agents) counts against
//! the check; a check without evidence at all **fails** as "not enough evidence". The checks
//! reported depend only on the suite, never on the outcome.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ScenarioReport;
use super::metrics::{Delta, Dist, Rate, calibration, t_quantile_95};

/// What a check measures, per scenario and run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Metric {
    /// Right decisions over all items (an escalation is not a right answer).
    Accuracy,
    /// Right decisions over the decisions made.
    DecidedAccuracy,
    /// Share of items decided (by the vote or the arbiter) rather than escalated.
    Coverage,
    /// Wrong decisions over all items.
    Wrong,
    /// Escalations over all items.
    Escalated,
    /// Governed accuracy minus the unweighted majority's, over all items, paired per item.
    LeadMajority,
    /// The same on the items the governed system decided.
    LeadMajorityDecided,
    /// Governed accuracy minus the best single agent's (in hindsight), over all items.
    LeadBest,
    /// The same on the items decided.
    LeadBestDecided,
    /// Governed accuracy minus the oracle's (true-competence weights), over all items.
    LeadOracle,
    /// The same on the items decided.
    LeadOracleDecided,
    /// Accuracy over all items lost against the same run's clean scenario, beyond what the
    /// oracle itself loses there: `(clean − this) − max(0, oracle clean − oracle this)`.
    LossVsClean,
    /// Coverage once every adversary is caught — over the decisions from 30 after the last
    /// quarantine to the end of the run — as a share of the same run's clean scenario's
    /// coverage: whether the pool, once rid of its adversaries, decides as much as the pool
    /// that was never attacked. No evidence while an adversary is not caught.
    Recovery,
    /// Per adversary: graded decisions from the start of its attack until quarantine (0 when
    /// it was quarantined before the run). Compared with the threshold, or, for an adversary
    /// right often enough that no test at conclave's false-alarm rate could catch it that
    /// fast, with `relative` times Lorden's bound for its measured accuracy p̂:
    /// `ln(5000) / KL(p̂ ‖ ½)` (5,000 graded decisions between false alarms on an honest
    /// agent at the floor; see `trust::model`). Never caught after that many graded
    /// decisions: a failure; fewer: not enough evidence.
    Detection,
    /// Spearman correlation of effective learned trust with true competence (agents the run
    /// cannot tell apart tied).
    Spearman,
    /// Of the agent pairs whose competences the run's evidence tells apart (they differ by
    /// more than 1.96 standard errors, counting trust's effective number of outcomes), the
    /// share that effective learned trust orders the same way.
    Concordance,
    /// Honest agents (no attack, or only honest failures such as a blind spot) quarantined
    /// or ejected at any point of the run.
    HonestQuarantined,
    /// Expected calibration error of verdict confidence on the decisions made.
    Ece,
    /// Brier score of verdict confidence on the decisions made.
    Brier,
    /// Area under the risk–coverage curve of the governed system (lower is better).
    Aurc,
    /// Share of completed calls that failed for infrastructure reasons not injected by the
    /// scenario.
    InfraFailures,
    /// Of the deliberations that cascaded (the rounds moved the pool from the independent
    /// vote's answer onto a wrong one, an adversary's or a confident honest voice's), the
    /// share the acquiescence detector flagged.
    CascadesFlagged,
    /// Of the honest deliberations (no adversary voted, no cascade), the share flagged: false
    /// alarms.
    HonestFlagged,
    /// On the items deliberated, the accuracy of the answers kept (deliberation with the
    /// acquiescence detector) minus the independent vote's, paired per item.
    DeliberationLead,
    /// The same for the last round's answers: deliberation without the detector.
    DebateLead,
}

/// How a metric's values are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// A share, shown in percent.
    Share,
    /// A difference of shares, shown in points.
    Points,
    /// A count.
    Count,
    /// A coefficient.
    Coefficient,
}

/// What the evidence behind one value is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Basis {
    Items,
    Decided,
    Graded,
    Agents,
    Pairs,
    Calls,
    Cascades,
    Deliberations,
}

impl Metric {
    fn unit(self) -> Unit {
        match self {
            Self::Accuracy
            | Self::DecidedAccuracy
            | Self::Coverage
            | Self::Wrong
            | Self::Escalated
            | Self::InfraFailures
            | Self::CascadesFlagged
            | Self::HonestFlagged
            | Self::Recovery => Unit::Share,
            Self::LeadMajority
            | Self::LeadMajorityDecided
            | Self::LeadBest
            | Self::LeadBestDecided
            | Self::LeadOracle
            | Self::LeadOracleDecided
            | Self::LossVsClean
            | Self::DeliberationLead
            | Self::DebateLead => Unit::Points,
            Self::Detection | Self::HonestQuarantined => Unit::Count,
            Self::Spearman | Self::Concordance | Self::Ece | Self::Brier | Self::Aurc => {
                Unit::Coefficient
            }
        }
    }

    fn basis(self) -> Basis {
        match self {
            Self::DecidedAccuracy
            | Self::LeadMajorityDecided
            | Self::LeadBestDecided
            | Self::LeadOracleDecided
            | Self::Ece
            | Self::Brier => Basis::Decided,
            Self::Detection | Self::HonestQuarantined => Basis::Graded,
            Self::Spearman => Basis::Agents,
            Self::Concordance => Basis::Pairs,
            Self::InfraFailures => Basis::Calls,
            Self::CascadesFlagged => Basis::Cascades,
            Self::HonestFlagged | Self::DeliberationLead | Self::DebateLead => Basis::Deliberations,
            _ => Basis::Items,
        }
    }

    /// Whether the metric can be computed over every run's items pooled.
    fn poolable(self) -> bool {
        !matches!(
            self,
            Self::Detection
                | Self::Recovery
                | Self::Spearman
                | Self::Concordance
                | Self::HonestQuarantined
                | Self::Aurc
        )
    }

    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accuracy => "accuracy",
            Self::DecidedAccuracy => "decided-accuracy",
            Self::Coverage => "coverage",
            Self::Wrong => "wrong",
            Self::Escalated => "escalated",
            Self::LeadMajority => "lead-majority",
            Self::LeadMajorityDecided => "lead-majority-decided",
            Self::LeadBest => "lead-best",
            Self::LeadBestDecided => "lead-best-decided",
            Self::LeadOracle => "lead-oracle",
            Self::LeadOracleDecided => "lead-oracle-decided",
            Self::LossVsClean => "loss-vs-clean",
            Self::Recovery => "recovery",
            Self::Detection => "detection",
            Self::Spearman => "spearman",
            Self::Concordance => "concordance",
            Self::HonestQuarantined => "honest-quarantined",
            Self::Ece => "ece",
            Self::Brier => "brier",
            Self::Aurc => "aurc",
            Self::InfraFailures => "infra-failures",
            Self::CascadesFlagged => "cascades-flagged",
            Self::HonestFlagged => "honest-flagged",
            Self::DeliberationLead => "deliberation-lead",
            Self::DebateLead => "debate-lead",
        }
    }
}

/// A class of scenarios, by what is done to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Every scenario.
    All,
    /// No adversary in the pool.
    Clean,
    /// At least one adversary.
    Attacked,
    /// At most half of the pool adversarial (clean included), except scenarios whose only
    /// attack is a slow agent (the Governor does not wait for it; the baselines do).
    AtMostHalf,
    /// Some but under half of the pool adversarial, every attack adversarial.
    UnderHalf,
    /// More than half of the pool adversarial.
    OverHalf,
    /// Attacked, and every attack adversarial (no honest agent made to fail).
    Adversarial,
    /// Every attack only slows agents down.
    LatencyOnly,
}

impl Class {
    /// Whether scenario `s` is of the class.
    pub fn contains(self, s: &ScenarioReport) -> bool {
        let attacked = s.corrupted > 0.0;
        match self {
            Self::All => true,
            Self::Clean => !attacked,
            Self::Attacked => attacked,
            Self::AtMostHalf => s.corrupted <= 0.5 && !s.latency_only,
            Self::UnderHalf => attacked && s.corrupted < 0.5 && s.adversarial_only,
            Self::OverHalf => s.corrupted > 0.5,
            Self::Adversarial => attacked && s.adversarial_only,
            Self::LatencyOnly => s.latency_only,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Clean => "clean",
            Self::Attacked => "attacked",
            Self::AtMostHalf => "at-most-half",
            Self::UnderHalf => "under-half",
            Self::OverHalf => "over-half",
            Self::Adversarial => "adversarial",
            Self::LatencyOnly => "latency-only",
        }
    }
}

/// The scenarios a check applies to: a class, or scenarios by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Scenarios {
    /// Every scenario of a class.
    Class(Class),
    /// These scenarios.
    Names(Vec<String>),
}

impl Default for Scenarios {
    fn default() -> Self {
        Self::Class(Class::All)
    }
}

/// The comparison with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Op {
    /// At least the threshold.
    #[serde(rename = ">=")]
    AtLeast,
    /// At most the threshold.
    #[serde(rename = "<=")]
    AtMost,
}

impl Op {
    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::AtLeast => value >= threshold - 1e-12,
            Self::AtMost => value <= threshold + 1e-12,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Self::AtLeast => "≥",
            Self::AtMost => "≤",
        }
    }
}

/// How the runs' values become one verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Statistic {
    /// The criterion holds, with evidence, at at least `share` of the runs.
    Share,
    /// The one-sided 95 % confidence bound of the mean over the runs is beyond the threshold.
    Mean,
    /// The metric over every run's items pooled (with its one-sided 95 % bound where it has
    /// one) is beyond the threshold.
    Pooled,
}

/// A check as a suite file writes it (`[[check]]`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// Its name; a check of the defaults with the same name is replaced.
    pub name: String,
    /// What it measures.
    pub metric: Metric,
    /// Where: a class (`all`, `clean`, `attacked`, `at-most-half`, `under-half`,
    /// `over-half`, `adversarial`, `latency-only`) or a list of scenario names.
    #[serde(default)]
    pub scenarios: Scenarios,
    /// Scenarios left out.
    #[serde(default)]
    pub except: Vec<String>,
    /// `>=` or `<=`.
    pub op: Op,
    /// The threshold, in the metric's own unit (shares and leads as fractions: −0.02 is
    /// two points below).
    pub threshold: f64,
    /// `share` (default), `mean` or `pooled`.
    #[serde(default = "share_statistic")]
    pub statistic: Statistic,
    /// For `share` (and the evidence of `mean`): the share of runs needed (default 0.95).
    #[serde(default = "default_share")]
    pub share: f64,
    /// Evidence needed per run: items, decided items or graded outcomes, as the metric
    /// counts (default 20; detection uses its threshold).
    pub min_evidence: Option<usize>,
    /// Judge the suite's generated scenarios (each one run) instead of its named scenarios.
    #[serde(default)]
    pub generated: bool,
    /// Detection: the limit is at least this many times Lorden's bound for the adversary's
    /// accuracy (default 2; 0 keeps the threshold alone).
    pub relative: Option<f64>,
    /// Set to false to drop a default check of this name.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn share_statistic() -> Statistic {
    Statistic::Share
}
fn default_share() -> f64 {
    0.95
}
fn yes() -> bool {
    true
}

/// A checked check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckSpec {
    /// Its name.
    pub name: String,
    /// What it measures.
    pub metric: Metric,
    /// Where.
    pub scenarios: Scenarios,
    /// Left out.
    pub except: Vec<String>,
    /// The comparison.
    pub op: Op,
    /// The threshold.
    pub threshold: f64,
    /// How runs combine.
    pub statistic: Statistic,
    /// Share of runs needed.
    pub share: f64,
    /// Evidence needed per run.
    pub min_evidence: usize,
    /// On the generated scenarios.
    pub generated: bool,
    /// Detection: the limit is at least this many times Lorden's bound.
    pub relative: f64,
}

impl CheckSpec {
    /// Checks a raw check (`scenario_names`: the suite's scenarios).
    ///
    /// # Errors
    /// A threshold or share out of range, an unknown scenario, a statistic the metric
    /// cannot use.
    pub fn from_raw(raw: &RawCheck, scenario_names: &[String]) -> Result<Self, String> {
        let site = format!("check \"{}\"", raw.name);
        if raw.name.trim().is_empty() {
            return Err("a check needs a name".to_owned());
        }
        if !raw.threshold.is_finite() {
            return Err(format!("{site}: the threshold must be a finite number"));
        }
        if !(raw.share > 0.0 && raw.share <= 1.0) {
            return Err(format!("{site}: share {} must be in (0, 1]", raw.share));
        }
        if raw.statistic == Statistic::Pooled && !raw.metric.poolable() {
            return Err(format!(
                "{site}: {} cannot be pooled over runs; use statistic = \"share\" or \"mean\"",
                raw.metric.as_str()
            ));
        }
        if raw.min_evidence == Some(0) {
            return Err(format!(
                "{site}: min_evidence must be at least 1 (no check passes on no evidence)"
            ));
        }
        if raw.metric == Metric::Detection && raw.op != Op::AtMost {
            return Err(format!(
                "{site}: detection is a delay; compare it with op = \"<=\""
            ));
        }
        let mut names: Vec<&String> = raw.except.iter().collect();
        if let Scenarios::Names(n) = &raw.scenarios {
            if raw.generated {
                return Err(format!(
                    "{site}: generated scenarios have no names; give a class"
                ));
            }
            names.extend(n);
        }
        for n in names {
            if !scenario_names.contains(n) {
                return Err(format!(
                    "{site}: unknown scenario \"{n}\" (scenarios: {})",
                    scenario_names.join(", ")
                ));
            }
        }
        Ok(Self {
            name: raw.name.clone(),
            metric: raw.metric,
            scenarios: raw.scenarios.clone(),
            except: raw.except.clone(),
            op: raw.op,
            threshold: raw.threshold,
            statistic: raw.statistic,
            share: raw.share,
            min_evidence: raw.min_evidence.unwrap_or(20),
            generated: raw.generated,
            relative: match raw.relative {
                Some(r) if r.is_finite() && r >= 0.0 => r,
                Some(r) => return Err(format!("{site}: relative {r} must be a number ≥ 0")),
                None => 2.0,
            },
        })
    }

    fn applies(&self, s: &ScenarioReport) -> bool {
        if self.except.contains(&s.name) {
            return false;
        }
        match &self.scenarios {
            Scenarios::Class(c) => c.contains(s),
            Scenarios::Names(n) => n.contains(&s.name),
        }
    }

    /// The criterion in words.
    fn criterion(&self, runs: usize, what: &str) -> String {
        let mut t = show(self.metric, self.threshold);
        if self.metric == Metric::Detection && self.relative > 0.0 {
            t += &format!(
                " (or {}× Lorden's bound for its accuracy, if longer)",
                self.relative
            );
        }
        match self.statistic {
            Statistic::Share => format!(
                "{} {t} at ≥ {:.0}% of {runs} {what}",
                self.op.symbol(),
                100.0 * self.share
            ),
            Statistic::Mean => format!(
                "mean over {runs} {what} {} {t} (one-sided 95% bound)",
                self.op.symbol()
            ),
            Statistic::Pooled => format!(
                "pooled over {runs} {what} {} {t} (one-sided 95% bound)",
                self.op.symbol()
            ),
        }
    }
}

fn spec(
    name: &str,
    metric: Metric,
    class: Class,
    op: Op,
    threshold: f64,
    statistic: Statistic,
) -> CheckSpec {
    CheckSpec {
        name: name.to_owned(),
        metric,
        scenarios: Scenarios::Class(class),
        except: Vec::new(),
        op,
        threshold,
        statistic,
        share: 0.95,
        min_evidence: 20,
        generated: false,
        relative: 2.0,
    }
}

/// The default checks of every suite (documented in evals/README.md). A suite replaces one
/// by declaring a check of the same name, drops one with `enabled = false`, or drops them
/// all with `default_checks = false`.
pub fn defaults() -> Vec<CheckSpec> {
    use Metric as M;
    use Op::{AtLeast, AtMost};
    use Statistic::{Mean, Share};
    vec![
        spec(
            "accuracy over all items not below the unweighted majority's",
            M::LeadMajority,
            Class::AtMostHalf,
            AtLeast,
            -0.02,
            Mean,
        ),
        spec(
            "decisions made not below the best single agent's",
            M::LeadBestDecided,
            Class::AtMostHalf,
            AtLeast,
            -0.02,
            Mean,
        ),
        spec(
            "under half corrupted: accuracy within 5 points of clean beyond the oracle's loss",
            M::LossVsClean,
            Class::UnderHalf,
            AtMost,
            0.05,
            Mean,
        ),
        spec(
            "slow agents only: accuracy within 5 points of clean",
            M::LossVsClean,
            Class::LatencyOnly,
            AtMost,
            0.05,
            Mean,
        ),
        spec(
            "over half corrupted: wrong decisions at most 5% of items",
            M::Wrong,
            Class::OverHalf,
            AtMost,
            0.05,
            Share,
        ),
        spec(
            "adversary quarantined within 20 graded decisions",
            M::Detection,
            Class::Attacked,
            AtMost,
            20.0,
            Share,
        ),
        spec(
            "learned trust orders agents as their competence does (where the evidence tells them apart)",
            M::Concordance,
            Class::Adversarial,
            AtLeast,
            0.9,
            Mean,
        ),
        spec(
            "no honest agent quarantined",
            M::HonestQuarantined,
            Class::All,
            AtMost,
            0.0,
            Share,
        ),
    ]
}

/// The default checks of a suite's generated scenarios (each generated scenario is one run).
pub fn generated_defaults() -> Vec<CheckSpec> {
    use Metric as M;
    use Op::{AtLeast, AtMost};
    let g = |name: &str, metric, class, op, threshold, share: f64| CheckSpec {
        share,
        generated: true,
        ..spec(name, metric, class, op, threshold, Statistic::Share)
    };
    vec![
        g(
            "generated, at most half corrupted: accuracy over all items not below the majority's",
            M::LeadMajority,
            Class::AtMostHalf,
            AtLeast,
            0.0,
            0.95,
        ),
        g(
            "generated, over half corrupted: wrong decisions at most 5% of items",
            M::Wrong,
            Class::OverHalf,
            AtMost,
            0.05,
            0.95,
        ),
        g(
            "generated: adversaries caught within 25 graded decisions (95th percentile)",
            M::Detection,
            Class::Attacked,
            AtMost,
            25.0,
            0.95,
        ),
        CheckSpec {
            relative: 1.25,
            ..g(
                "generated: adversaries caught within 10 graded decisions (median)",
                M::Detection,
                Class::Attacked,
                AtMost,
                10.0,
                0.5,
            )
        },
        g(
            "generated: no honest agent quarantined",
            M::HonestQuarantined,
            Class::All,
            AtMost,
            0.0,
            0.99,
        ),
    ]
}

/// Merges a suite's own checks into the defaults: same name replaces (or, disabled, drops).
///
/// # Errors
/// A check the suite declares that does not check (see [`CheckSpec::from_raw`]), or a name
/// used twice.
pub fn merge(
    defaults: Vec<CheckSpec>,
    raw: &[RawCheck],
    scenario_names: &[String],
) -> Result<Vec<CheckSpec>, String> {
    let mut out = defaults;
    let mut seen: Vec<&str> = Vec::new();
    for r in raw {
        if seen.contains(&r.name.as_str()) {
            return Err(format!("check \"{}\" is declared twice", r.name));
        }
        seen.push(&r.name);
        let pos = out.iter().position(|c| c.name == r.name);
        if !r.enabled {
            match pos {
                Some(p) => {
                    out.remove(p);
                }
                None => {
                    return Err(format!(
                        "check \"{}\": enabled = false names no default check",
                        r.name
                    ));
                }
            }
            continue;
        }
        let c = CheckSpec::from_raw(r, scenario_names)?;
        match pos {
            Some(p) => out[p] = c,
            None => out.push(c),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Judging.

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The criterion holds by the check's statistic.
    Holds,
    /// It does not.
    Fails,
    /// Too little evidence to say that it holds (a failure).
    NotEnoughEvidence,
}

/// One check on one scenario (and, for detection, one adversary), judged over the runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// What is checked.
    pub check: String,
    /// Where (a scenario name, or `generated: NAME`).
    pub scenario: String,
    /// For per-adversary checks, the adversary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The metric.
    pub metric: Metric,
    /// The criterion and its statistic, in words.
    pub criterion: String,
    /// What was measured, in words.
    pub measured: String,
    /// How it came out.
    pub outcome: Outcome,
    /// Whether it holds (`outcome == holds`).
    pub pass: bool,
    /// Runs (seeds or generated scenarios) judged.
    pub runs: usize,
    /// Runs at which the criterion held with evidence.
    pub held: usize,
    /// Runs without enough evidence.
    pub without_evidence: usize,
    /// The values over the runs with evidence.
    pub values: Option<Dist>,
    /// The statistic's value (the bound for `mean` and `pooled`, the share for `share`).
    pub statistic: Option<f64>,
}

/// One value of a metric at one run.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    value: f64,
    /// Its own threshold, where the metric sets one per run (detection).
    limit: Option<f64>,
    /// Its standard error within the run, where the metric has one.
    se: Option<f64>,
    /// Why there is not enough evidence behind it, if there is not.
    short: Option<String>,
}

impl Sample {
    fn of(value: f64, se: Option<f64>, n: usize, need: usize, basis: Basis) -> Self {
        let short = (n < need).then(|| match basis {
            Basis::Items => format!("{n} items"),
            Basis::Decided => format!("{n} decided items"),
            Basis::Graded => format!("{n} graded decisions"),
            Basis::Agents => format!("{n} agents"),
            Basis::Pairs => format!("{n} pairs of agents the evidence tells apart"),
            Basis::Calls => format!("{n} calls"),
            Basis::Cascades => format!("{n} cascades"),
            Basis::Deliberations => format!("{n} deliberations"),
        });
        Self {
            value,
            limit: None,
            se,
            short,
        }
    }

    fn missing(why: impl Into<String>) -> Self {
        Self {
            value: f64::NAN,
            limit: None,
            se: None,
            short: Some(why.into()),
        }
    }
}

fn rate_sample(r: &Rate, need: usize, basis: Basis) -> Sample {
    let se = (r.n > 0).then(|| (r.value * (1.0 - r.value) / r.n as f64).sqrt());
    Sample::of(r.value, se, r.n, need, basis)
}

/// The value of `metric` in scenario `s` of one run (`clean`: that run's clean scenario).
fn sample(
    c: &CheckSpec,
    s: &ScenarioReport,
    clean: Option<&ScenarioReport>,
    agent: Option<&str>,
) -> Sample {
    use Metric as M;
    let need = c.min_evidence;
    let basis = c.metric.basis();
    let lead = |k: usize, decided: bool| match s.baselines.get(k) {
        Some(b) => {
            let d = if decided { &b.lead } else { &b.lead_all };
            Sample::of(d.value, Some(d.se), d.n, need, basis)
        }
        None => Sample::missing("no baseline"),
    };
    match c.metric {
        M::Accuracy => rate_sample(&s.accuracy, need, basis),
        M::DecidedAccuracy => rate_sample(&s.decided_accuracy, need, basis),
        M::Coverage => rate_sample(
            &Rate::wilson(s.decided + s.arbitrated, s.decisions),
            need,
            basis,
        ),
        M::Wrong => rate_sample(&s.false_decisions, need, basis),
        M::Escalated => rate_sample(&Rate::wilson(s.escalated, s.decisions), need, basis),
        M::LeadMajority => lead(0, false),
        M::LeadMajorityDecided => lead(0, true),
        M::LeadBest => lead(1, false),
        M::LeadBestDecided => lead(1, true),
        M::LeadOracle => lead(2, false),
        M::LeadOracleDecided => lead(2, true),
        M::LossVsClean => {
            let Some(c0) = clean.filter(|c0| c0.name != s.name) else {
                return Sample::missing("no clean scenario to compare with");
            };
            let oracle = |x: &ScenarioReport| x.baselines.get(2).map_or(0.0, |b| b.accuracy.value);
            let loss = (c0.accuracy.value - s.accuracy.value) - (oracle(c0) - oracle(s)).max(0.0);
            let var = |r: &Rate| r.value * (1.0 - r.value) / r.n.max(1) as f64;
            let se = (var(&c0.accuracy) + var(&s.accuracy)).sqrt();
            Sample::of(loss, Some(se), s.decisions.min(c0.decisions), need, basis)
        }
        M::Recovery => {
            let Some(c0) = clean.filter(|c0| c0.name != s.name) else {
                return Sample::missing("no clean scenario to compare with");
            };
            let Some(rec) = &s.recovered else {
                return Sample::missing(if s.adversaries.is_empty() {
                    "no adversary"
                } else {
                    "an adversary was never caught"
                });
            };
            if c0.coverage <= 0.0 {
                return Sample::missing("the clean scenario decided nothing");
            }
            let se = (rec.value * (1.0 - rec.value) / rec.n.max(1) as f64).sqrt() / c0.coverage;
            Sample::of(rec.value / c0.coverage, Some(se), rec.n, need, basis)
        }
        M::Detection => {
            let Some(a) = s
                .adversaries
                .iter()
                .find(|a| Some(a.agent.as_str()) == agent)
            else {
                return Sample::missing("adversary not in this run");
            };
            let limit = detection_limit(c, a.accuracy);
            let mut s = match a.caught.quarantined_after {
                Some(k) => Sample::of(k as f64, None, 1, 0, basis),
                None if a.caught.graded as f64 >= limit => {
                    Sample::of(f64::INFINITY, None, 1, 0, basis)
                }
                None if limit.is_infinite() => Sample::missing(format!(
                    "not caught; right {:.0}% of the time, as often as an honest agent",
                    100.0 * a.accuracy.unwrap_or(0.5)
                )),
                None => Sample::missing(format!(
                    "not caught, and only {} graded decisions",
                    a.caught.graded
                )),
            };
            s.limit = Some(limit);
            s
        }
        M::Concordance => match s.trust_concordance {
            Some(r) => Sample::of(r, None, s.resolvable_pairs, 3.min(need), basis),
            None => Sample::missing("no two agents the evidence tells apart"),
        },
        M::Spearman => match s.trust_spearman {
            Some(r) => Sample::of(r, None, 3, 0, basis),
            None => Sample::missing(
                "fewer than three graded agents, or competences the run cannot tell apart",
            ),
        },
        M::HonestQuarantined => {
            if s.honest.is_empty() {
                return Sample::missing("no honest agent");
            }
            Sample::of(
                s.honest_quarantined.len() as f64,
                None,
                s.honest_graded as usize,
                need,
                basis,
            )
        }
        M::Ece => Sample::of(s.calibration.ece, None, s.calibration.n, need, basis),
        M::Brier => Sample::of(s.calibration.brier, None, s.calibration.n, need, basis),
        M::Aurc => Sample::of(s.risk.aurc, None, s.decisions, need, basis),
        M::InfraFailures => {
            let calls = s.health.completed.max(1);
            Sample::of(
                s.health.infrastructure as f64 / calls as f64,
                None,
                s.health.completed as usize,
                1,
                basis,
            )
        }
        M::CascadesFlagged | M::HonestFlagged | M::DeliberationLead | M::DebateLead => {
            let Some(d) = &s.deliberation else {
                return Sample::missing("no item deliberated");
            };
            match c.metric {
                M::CascadesFlagged => {
                    rate_sample(&Rate::wilson(d.cascades_flagged, d.cascades), need, basis)
                }
                M::HonestFlagged => {
                    rate_sample(&Rate::wilson(d.honest_flagged, d.honest), need, basis)
                }
                _ => {
                    let l = if c.metric == M::DebateLead {
                        &d.debate_lead
                    } else {
                        &d.kept_lead
                    };
                    Sample::of(l.value, Some(l.se), l.n, need, basis)
                }
            }
        }
    }
}

/// Lorden's bound: the least average delay (graded decisions) of any sequential test that
/// tells accuracy `p` from the honest floor ½ with 5,000 decisions between false alarms,
/// `ln(5000) / KL(p ‖ ½)`; infinite at or above the floor.
pub fn lorden_bound(p: f64) -> f64 {
    let p = p.clamp(0.0, 1.0);
    if p >= 0.5 {
        return f64::INFINITY;
    }
    let term = |x: f64, y: f64| if x > 0.0 { x * (x / y).ln() } else { 0.0 };
    let kl = term(p, 0.5) + term(1.0 - p, 0.5);
    5000f64.ln() / kl
}

/// The detection limit of check `c` for an adversary of measured accuracy `p`.
fn detection_limit(c: &CheckSpec, p: Option<f64>) -> f64 {
    let relative = if c.relative > 0.0 {
        c.relative * lorden_bound(p.unwrap_or(0.0))
    } else {
        0.0
    };
    c.threshold.max(relative)
}

/// The metric over several runs' items together: `(value, one-sided bound, evidence)`.
fn pooled(c: &CheckSpec, runs: &[&ScenarioReport]) -> Option<(f64, f64, usize)> {
    use Metric as M;
    let bound = |v: f64, se: f64| match c.op {
        Op::AtLeast => v - 1.645 * se,
        Op::AtMost => v + 1.645 * se,
    };
    let rate = |f: &dyn Fn(&ScenarioReport) -> (usize, usize)| {
        let (k, n) = runs
            .iter()
            .map(|s| f(s))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        let r = Rate::wilson(k, n);
        let b = match c.op {
            Op::AtLeast => r.lo,
            Op::AtMost => r.hi,
        };
        (r.value, b, n)
    };
    let paired = |of: &dyn Fn(&ScenarioReport) -> Option<&Delta>| {
        // Σd and Σd² from each run's mean, standard error and count.
        let (mut n, mut sum, mut sq) = (0usize, 0.0f64, 0.0f64);
        for s in runs {
            let Some(d) = of(s) else {
                continue;
            };
            let m = d.n as f64;
            let var = d.se * d.se * m;
            n += d.n;
            sum += d.value * m;
            sq += (m - 1.0).max(0.0) * var + m * d.value * d.value;
        }
        let nf = n.max(1) as f64;
        let mean = sum / nf;
        let var = if n > 1 {
            ((sq - nf * mean * mean) / (nf - 1.0)).max(0.0)
        } else {
            0.0
        };
        Some((mean, bound(mean, (var / nf).sqrt()), n))
    };
    let lead = |k: usize, decided: bool| {
        if runs.iter().any(|s| s.baselines.get(k).is_none()) {
            return None;
        }
        paired(&|s| {
            s.baselines
                .get(k)
                .map(|b| if decided { &b.lead } else { &b.lead_all })
        })
    };
    match c.metric {
        M::Accuracy => Some(rate(&|s| (s.accuracy.k, s.accuracy.n))),
        M::DecidedAccuracy => Some(rate(&|s| (s.decided_accuracy.k, s.decided_accuracy.n))),
        M::Coverage => Some(rate(&|s| (s.decided + s.arbitrated, s.decisions))),
        M::Wrong => Some(rate(&|s| (s.wrong, s.decisions))),
        M::Escalated => Some(rate(&|s| (s.escalated, s.decisions))),
        M::LeadMajority => lead(0, false),
        M::LeadMajorityDecided => lead(0, true),
        M::LeadBest => lead(1, false),
        M::LeadBestDecided => lead(1, true),
        M::LeadOracle => lead(2, false),
        M::LeadOracleDecided => lead(2, true),
        M::Ece | M::Brier => {
            let pairs: Vec<(f64, bool)> = runs
                .iter()
                .flat_map(|s| s.records.iter())
                .filter_map(|r| r.correct.map(|ok| (r.confidence, ok)))
                .collect();
            let cal = calibration(&pairs);
            let v = if c.metric == M::Ece {
                cal.ece
            } else {
                cal.brier
            };
            Some((v, v, pairs.len()))
        }
        M::InfraFailures => Some(rate(&|s| {
            (
                s.health.infrastructure as usize,
                s.health.completed as usize,
            )
        })),
        M::CascadesFlagged => Some(rate(&|s| {
            s.deliberation
                .as_ref()
                .map_or((0, 0), |d| (d.cascades_flagged, d.cascades))
        })),
        M::HonestFlagged => Some(rate(&|s| {
            s.deliberation
                .as_ref()
                .map_or((0, 0), |d| (d.honest_flagged, d.honest))
        })),
        M::DeliberationLead => paired(&|s| s.deliberation.as_ref().map(|d| &d.kept_lead)),
        M::DebateLead => paired(&|s| s.deliberation.as_ref().map(|d| &d.debate_lead)),
        M::LossVsClean
        | M::Recovery
        | M::Detection
        | M::Spearman
        | M::Concordance
        | M::HonestQuarantined
        | M::Aurc => None,
    }
}

fn show(metric: Metric, v: f64) -> String {
    if v.is_infinite() {
        return "never".to_owned();
    }
    match metric.unit() {
        Unit::Share => format!("{:.1}%", 100.0 * v),
        Unit::Points => format!("{:+.1} points", 100.0 * v),
        Unit::Count => format!("{v:.0}"),
        Unit::Coefficient => format!("{v:.3}"),
    }
}

fn show_dist(metric: Metric, d: &Dist) -> String {
    let mut s = format!(
        "min {}, median {}, max {}",
        show(metric, d.min),
        show(metric, d.median),
        show(metric, d.max)
    );
    if d.infinite > 0 {
        s += &format!(" ({} never)", d.infinite);
    }
    s
}

/// Why samples had no evidence: reasons that differ only in their numbers are one reason,
/// with the numbers' range.
fn shortage(samples: &[Sample], what: &str) -> String {
    let runs = samples.len();
    let mut whys: BTreeMap<String, (usize, f64, f64)> = BTreeMap::new();
    for s in samples {
        if let Some(w) = &s.short {
            let (template, number) = numbers_out(w);
            let e = whys
                .entry(template)
                .or_insert((0, f64::INFINITY, f64::NEG_INFINITY));
            e.0 += 1;
            if let Some(x) = number {
                e.1 = e.1.min(x);
                e.2 = e.2.max(x);
            }
        }
    }
    whys.iter()
        .map(|(w, (n, lo, hi))| {
            let range = if lo > hi {
                String::new()
            } else if lo == hi {
                format!("{lo}")
            } else {
                format!("{lo}–{hi}")
            };
            format!("{} at {n} of {runs} {what}", w.replacen('#', &range, 1))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Judges `c` on one list of runs of one scenario (`samples`, one per run, plus the runs'
/// scenario reports for pooling).
fn judge_one(
    c: &CheckSpec,
    scenario: String,
    agent: Option<String>,
    samples: &[Sample],
    reports: &[&ScenarioReport],
    what: &str,
) -> Check {
    let runs = samples.len();
    let with: Vec<&Sample> = samples.iter().filter(|s| s.short.is_none()).collect();
    let without = runs - with.len();
    let held = with
        .iter()
        .filter(|s| c.op.holds(s.value, s.limit.unwrap_or(c.threshold)))
        .count();
    let values = Dist::of(&with.iter().map(|s| s.value).collect::<Vec<_>>());
    let shortage = || shortage(samples, what);
    let mut outcome;
    let statistic;
    let measured;
    match c.statistic {
        Statistic::Share => {
            let share = held as f64 / runs.max(1) as f64;
            statistic = Some(share);
            outcome = if runs > 0 && share >= c.share - 1e-12 {
                Outcome::Holds
            } else {
                Outcome::Fails
            };
            if with.is_empty() {
                outcome = Outcome::NotEnoughEvidence;
            }
            let mut m = format!("held at {held} of {runs} {what}");
            if let Some(d) = &values {
                m += &format!("; {}", show_dist(c.metric, d));
            }
            let limits: Vec<f64> = samples.iter().filter_map(|s| s.limit).collect();
            if let Some(d) = Dist::of(&limits)
                && d.max > c.threshold + 1e-9
            {
                m += &format!(
                    "; limits {}–{} for the accuracies measured",
                    show(c.metric, d.min),
                    show(c.metric, d.max)
                );
            }
            if without > 0 {
                m += &format!("; not enough evidence: {}", shortage());
            }
            measured = m;
        }
        Statistic::Mean => {
            let k = with.len();
            let needed = (c.share * runs as f64).ceil() as usize;
            let bound = if k >= 2 {
                let d = values.as_ref().map_or(0.0, |d| d.sd / (k as f64).sqrt());
                let t = t_quantile_95(k - 1);
                values.as_ref().map(|v| match c.op {
                    Op::AtLeast => v.mean - t * d,
                    Op::AtMost => v.mean + t * d,
                })
            } else {
                with.first().and_then(|s| {
                    s.se.map(|se| match c.op {
                        Op::AtLeast => s.value - 1.645 * se,
                        Op::AtMost => s.value + 1.645 * se,
                    })
                })
            };
            statistic = bound.filter(|b| b.is_finite());
            let mean = values.as_ref().map(|v| v.mean);
            outcome = match (statistic, mean) {
                _ if k == 0 || k < needed.min(runs) => Outcome::NotEnoughEvidence,
                (Some(b), _) if c.op.holds(b, c.threshold) => Outcome::Holds,
                (Some(_), Some(m)) if c.op.holds(m, c.threshold) => Outcome::NotEnoughEvidence,
                (None, _) => Outcome::NotEnoughEvidence,
                _ => Outcome::Fails,
            };
            let mut m = match (mean, statistic, &values) {
                (Some(mean), Some(b), Some(d)) => format!(
                    "mean {}, bound {} over {k} {what} ({})",
                    show(c.metric, mean),
                    show(c.metric, b),
                    show_dist(c.metric, d)
                ),
                (Some(mean), None, Some(d)) => format!(
                    "mean {} over {k} {what}, no interval ({})",
                    show(c.metric, mean),
                    show_dist(c.metric, d)
                ),
                _ => "nothing measured".to_owned(),
            };
            if without > 0 {
                m += &format!("; not enough evidence: {}", shortage());
            }
            measured = m;
        }
        Statistic::Pooled => {
            let p = pooled(c, reports);
            let n = p.map_or(0, |p| p.2);
            statistic = p.map(|p| p.1);
            outcome = match p {
                Some((_, b, n)) if n >= c.min_evidence && c.op.holds(b, c.threshold) => {
                    Outcome::Holds
                }
                Some((v, _, n)) if n < c.min_evidence || c.op.holds(v, c.threshold) => {
                    Outcome::NotEnoughEvidence
                }
                None => Outcome::NotEnoughEvidence,
                _ => Outcome::Fails,
            };
            measured = match p {
                Some((v, b, n)) => format!(
                    "{} (bound {}) over {n} pooled observations from {runs} {what}",
                    show(c.metric, v),
                    show(c.metric, b)
                ),
                None => "nothing measured".to_owned(),
            };
            let _ = n;
        }
    }
    Check {
        check: c.name.clone(),
        scenario,
        agent,
        metric: c.metric,
        criterion: c.criterion(runs, what),
        measured: if outcome == Outcome::NotEnoughEvidence {
            format!("not enough evidence — {measured}")
        } else {
            measured
        },
        pass: outcome == Outcome::Holds,
        outcome,
        runs,
        held,
        without_evidence: without,
        values,
        statistic,
    }
}

/// The first scenario without adversaries in one run.
/// A reason with its first number taken out (`#` in its place), and that number.
fn numbers_out(text: &str) -> (String, Option<f64>) {
    let start = text.find(|c: char| c.is_ascii_digit());
    let Some(start) = start else {
        return (text.to_owned(), None);
    };
    let end = text[start..]
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or(text.len(), |e| start + e);
    let number = text[start..end].trim_end_matches('.').parse().ok();
    (format!("{}#{}", &text[..start], &text[end..]), number)
}

fn clean_of(run: &[ScenarioReport]) -> Option<&ScenarioReport> {
    run.iter()
        .find(|s| s.corrupted == 0.0 && s.attacks.is_empty())
        .or_else(|| run.iter().find(|s| s.corrupted == 0.0))
}

/// Judges the named-scenario checks over `seeds` (each the scenario reports of one seed, in
/// the suite's order; the first decides which checks there are).
pub fn judge(specs: &[CheckSpec], seeds: &[&[ScenarioReport]]) -> Vec<Check> {
    let mut out = Vec::new();
    let Some(first) = seeds.first() else {
        return out;
    };
    for c in specs.iter().filter(|c| !c.generated) {
        for s0 in first.iter().filter(|s| c.applies(s)) {
            let agents: Vec<Option<String>> = if c.metric == Metric::Detection {
                s0.adversaries
                    .iter()
                    .map(|a| Some(a.agent.clone()))
                    .collect()
            } else {
                vec![None]
            };
            for agent in agents {
                let mut samples = Vec::new();
                let mut reports = Vec::new();
                for run in seeds {
                    match run.iter().find(|s| s.name == s0.name) {
                        Some(s) => {
                            samples.push(sample(c, s, clean_of(run), agent.as_deref()));
                            reports.push(s);
                        }
                        None => samples.push(Sample::missing("not run (interrupted)")),
                    }
                }
                out.push(judge_one(
                    c,
                    s0.name.clone(),
                    agent,
                    &samples,
                    &reports,
                    if seeds.len() == 1 { "seed" } else { "seeds" },
                ));
            }
        }
    }
    out
}

/// Judges the generated-scenario checks over one generated set (`name`), each scenario one
/// run; per-adversary metrics pool every adversary of every scenario of the class.
pub fn judge_generated(specs: &[CheckSpec], name: &str, set: &[ScenarioReport]) -> Vec<Check> {
    let mut out = Vec::new();
    for c in specs.iter().filter(|c| c.generated) {
        let runs: Vec<&ScenarioReport> = set.iter().filter(|s| c.applies(s)).collect();
        let mut samples = Vec::new();
        for s in &runs {
            if c.metric == Metric::Detection {
                for a in &s.adversaries {
                    samples.push(sample(c, s, None, Some(&a.agent)));
                }
            } else {
                samples.push(sample(c, s, None, None));
            }
        }
        let what = if c.metric == Metric::Detection {
            "adversaries"
        } else {
            "scenarios"
        };
        out.push(judge_one(
            c,
            format!("generated: {name} ({})", scenarios_label(&c.scenarios)),
            None,
            &samples,
            &runs,
            what,
        ));
    }
    out
}

fn scenarios_label(s: &Scenarios) -> String {
    match s {
        Scenarios::Class(c) => c.as_str().to_owned(),
        Scenarios::Names(n) => n.join(", "),
    }
}
