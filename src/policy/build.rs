//! Policies built in code: [`PolicyBuilder`] and the validation it shares with the TOML
//! loader (one check per section; the loader points each problem at its file's span).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::{
    AgentSpec, AuditLevel, Budget, Deliberation, Policy, Provisional, RobustSwitch, Thresholds,
    pool_needed,
};
use crate::aggregate::{Kind, Rule};

/// The part of a policy a [`Problem`] is about (the loader underlines it in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Section {
    /// `applies`.
    Applies,
    /// The pool as a whole.
    Pool,
    /// The pool's `i`-th agent id.
    PoolAgent(usize),
    /// `selection`.
    Selection,
    /// `rule`.
    Rule,
    /// `rule.alpha`.
    Alpha,
    /// `protocol`.
    Protocol,
    /// `protocol.tolerate`.
    Tolerate,
    /// `quorum` as a whole.
    Quorum,
    /// `quorum.ballots`.
    QuorumBallots,
    /// `thresholds`.
    Thresholds,
    /// `budget`.
    Budget,
    /// `escalation` as a whole.
    Escalation,
    /// `escalation.arbiter`.
    Arbiter,
    /// `early_stop`.
    EarlyStop,
    /// `admission`.
    Admission,
    /// `deliberation`.
    Deliberation,
}

/// One thing wrong with a policy.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Problem {
    /// A stable code, e.g. `policy::quorum`.
    pub code: &'static str,
    /// Where.
    pub section: Section,
    /// What is wrong.
    pub message: String,
    /// A short label for the offending text.
    pub label: Option<String>,
    /// What to do about it.
    pub help: Option<String>,
}

impl Problem {
    fn new(code: &'static str, section: Section, message: impl Into<String>) -> Self {
        Self {
            code,
            section,
            message: message.into(),
            label: None,
            help: None,
        }
    }

    fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
}

/// A policy that does not validate: every problem found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct PolicyError {
    /// The policy's id.
    pub id: String,
    /// The problems, in section order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policy \"{}\" is not valid:", self.id)?;
        for p in &self.problems {
            write!(f, "\n  {}: {}", p.code, p.message)?;
            if let Some(h) = &p.help {
                write!(f, " (help: {h})")?;
            }
        }
        Ok(())
    }
}

/// Every setting of a policy before validation, with the digest's defaults: the policy as it
/// will be, but for its pool, which is resolved against the agents when it is checked.
#[derive(Debug, Clone)]
pub(super) struct Draft {
    pub(super) policy: Policy,
    pub(super) pool_ids: Vec<String>,
    pub(super) pool_tags: Vec<String>,
    pub(super) pool_max: Option<u32>,
}

impl Draft {
    pub(super) fn new(id: String) -> Self {
        Self {
            policy: Policy {
                id,
                description: String::new(),
                domains: Vec::new(),
                kinds: Vec::new(),
                pool: Vec::new(),
                pool_min: 1,
                pool_max: 0,
                max_per_family: None,
                selection: (0.3, 0.7),
                rule: Rule::WeightedPlurality,
                alpha: 0.6,
                robust: None,
                quorum_ballots: 1,
                quorum_weight_share: 0.0,
                quorum_n_eff: 1.0,
                early_stop_risk: Some(0.01),
                thresholds: Thresholds {
                    accept: 0.75,
                    arbitrate: 0.55,
                    human: 0.3,
                    tolerance: 0.1,
                },
                budget: Budget::default(),
                trust_floor: 0.0,
                provisional: Provisional::Reduced,
                measure_provisional: true,
                arbiter: None,
                human: true,
                lost_majority: 0.5,
                verdict_alarm: None,
                deliberation: None,
                limits: crate::decision::Limits::default(),
                audit: AuditLevel::default(),
                source: PathBuf::new(),
                hash: String::new(),
            },
            pool_ids: Vec::new(),
            pool_tags: Vec::new(),
            pool_max: None,
        }
    }

    /// Checks every section against the agents; the policy, if nothing is wrong.
    pub(super) fn validate(
        self,
        agents: &BTreeMap<String, AgentSpec>,
        source: PathBuf,
        hash: String,
    ) -> Result<Policy, Vec<Problem>> {
        let mut problems = Vec::new();
        let pool = self.check_pool(agents, &mut problems);
        let pool_max = self.pool_max.unwrap_or(u32::MAX).min(pool.len() as u32);
        let reachable = reachable(&pool, self.policy.max_per_family, agents).min(pool_max);
        self.check_applies(&mut problems);
        self.check_weights(&mut problems);
        self.check_robust(reachable, &mut problems);
        self.check_quorum(&pool, reachable, &mut problems);
        self.check_thresholds(&mut problems);
        self.check_budget(&pool, agents, &mut problems);
        self.check_escalation(agents, &mut problems);
        self.check_deliberation(&mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Policy {
            pool,
            pool_max,
            source,
            hash,
            ..self.policy
        })
    }

    fn check_applies(&self, problems: &mut Vec<Problem>) {
        if self.policy.domains.is_empty() || self.policy.kinds.is_empty() {
            problems.push(Problem::new(
                "policy::applies",
                Section::Applies,
                "a policy must apply to at least one domain and one kind",
            ));
        }
        if self
            .policy
            .domains
            .iter()
            .any(|d| d == crate::trust::model::ALL_DOMAINS)
        {
            problems.push(Problem::new(
                "policy::applies",
                Section::Applies,
                "domain \"*\" is reserved: trust keeps each agent's record across every domain under it",
            ));
        }
        if let Some(k) = self
            .policy
            .kinds
            .iter()
            .find(|k| !self.policy.rule.counts(**k))
        {
            problems.push(Problem::new(
                "policy::rule",
                Section::Rule,
                format!(
                    "rule {} cannot count {} decisions",
                    self.policy.rule.name(),
                    k.as_str()
                ),
            ));
        }
    }

    /// The pool: explicit ids, then every agent with a listed tag.
    fn check_pool(
        &self,
        agents: &BTreeMap<String, AgentSpec>,
        problems: &mut Vec<Problem>,
    ) -> Vec<String> {
        let mut pool: Vec<String> = Vec::new();
        let before = problems.len();
        for (i, a) in self.pool_ids.iter().enumerate() {
            if agents.contains_key(a) {
                if !pool.contains(a) {
                    pool.push(a.clone());
                }
            } else {
                let known: Vec<&str> = agents.keys().map(String::as_str).collect();
                problems.push(
                    Problem::new(
                        "policy::unknown-agent",
                        Section::PoolAgent(i),
                        format!("unknown agent \"{a}\""),
                    )
                    .label("no agent file defines this id")
                    .help(if known.is_empty() {
                        "no agents are defined: add agents/*.toml".to_owned()
                    } else {
                        format!("defined agents: {}", known.join(", "))
                    }),
                );
            }
        }
        for (id, spec) in agents {
            if spec.tags.iter().any(|t| self.pool_tags.contains(t)) && !pool.contains(id) {
                pool.push(id.clone());
            }
        }
        if pool.is_empty() && problems.len() == before {
            problems.push(Problem::new(
                "policy::empty-pool",
                Section::Pool,
                "the pool is empty: no agent matches its ids or tags",
            ));
        }
        if let Some(max) = self.pool_max
            && max < self.policy.pool_min
        {
            problems.push(Problem::new(
                "policy::pool-size",
                Section::Pool,
                format!("pool max {max} is below its min {}", self.policy.pool_min),
            ));
        }
        if (pool.len() as u32) < self.policy.pool_min && !pool.is_empty() {
            problems.push(Problem::new(
                "policy::pool-size",
                Section::Pool,
                format!(
                    "the pool has {} agents but needs at least {}",
                    pool.len(),
                    self.policy.pool_min
                ),
            ));
        }
        pool
    }

    /// Selection weights, the rule's α, early stopping and admission: shares and risks.
    fn check_weights(&self, problems: &mut Vec<Problem>) {
        let (expertise, trust) = self.policy.selection;
        if !(expertise >= 0.0 && trust >= 0.0 && ((expertise + trust) - 1.0).abs() < 1e-9) {
            problems.push(
                Problem::new("policy::weights", Section::Selection, format!("selection weights expertise {expertise} + trust {trust} must be ≥ 0 and sum to 1"))
                    .help("they split one unit of attention between expertise and measured trust, e.g. expertise = 0.3, trust = 0.7"),
            );
        }
        if !(0.0..=1.0).contains(&self.policy.alpha) {
            problems.push(Problem::new(
                "policy::weights",
                Section::Alpha,
                format!(
                    "alpha {} is outside 0–1: w = α·trust + (1−α)·quality cannot sum to 1",
                    self.policy.alpha
                ),
            ));
        }
        if let Some(risk) = self.policy.early_stop_risk
            && !(risk > 0.0 && risk < 0.5)
        {
            problems.push(Problem::new(
                "policy::early-stop",
                Section::EarlyStop,
                "early_stop.risk must be in (0, 0.5)",
            ));
        }
        if !(0.0..=1.0).contains(&self.policy.trust_floor) {
            problems.push(Problem::new(
                "policy::admission",
                Section::Admission,
                "admission.trust_floor must be in 0–1",
            ));
        }
    }

    /// The robust switch and the breakdown point of its rule against the pool.
    fn check_robust(&self, reachable: u32, problems: &mut Vec<Problem>) {
        let Some(switch) = &self.policy.robust else {
            return;
        };
        if !(0.0..=1.0).contains(&switch.byzantine_fraction) {
            problems.push(Problem::new(
                "policy::protocol",
                Section::Protocol,
                "byzantine_fraction must be in 0–1",
            ));
        }
        if let Some(f) = switch.tolerate
            && let Some(need) = pool_needed(&switch.rule, f)
            && reachable < need
        {
            problems.push(
                Problem::new("policy::breakdown", Section::Tolerate, format!(
                    "{} tolerates {f} faulty agents only with at least {need} voters; this pool can ask {reachable}",
                    switch.rule.name()
                ))
                .help("add agents to the pool, lower `tolerate`, or pick a rule with a higher breakdown point"),
            );
        }
    }

    fn check_quorum(&self, pool: &[String], reachable: u32, problems: &mut Vec<Problem>) {
        let ballots = self.policy.quorum_ballots;
        if ballots == 0 {
            problems.push(Problem::new(
                "policy::quorum",
                Section::QuorumBallots,
                "quorum of 0 ballots: a decision would need no votes",
            ));
        }
        if ballots > reachable && !pool.is_empty() {
            problems.push(
                Problem::new("policy::quorum", Section::QuorumBallots, format!("quorum of {ballots} ballots is larger than the {reachable} agents this pool can ask"))
                    .help("lower the quorum or add agents (mind pool.max and max_per_family)"),
            );
        }
        if !(0.0..=1.0).contains(&self.policy.quorum_weight_share) {
            problems.push(Problem::new(
                "policy::quorum",
                Section::Quorum,
                "quorum weight_share must be in 0–1",
            ));
        }
        let n_eff = self.policy.quorum_n_eff;
        if !(n_eff.is_finite() && n_eff <= f64::from(reachable.max(1))) {
            problems.push(Problem::new(
                "policy::quorum",
                Section::Quorum,
                format!("quorum n_eff {n_eff} exceeds the {reachable} agents the pool can ask"),
            ));
        }
    }

    fn check_thresholds(&self, problems: &mut Vec<Problem>) {
        let v = &self.policy.thresholds;
        let in_range = [v.accept, v.arbitrate, v.human]
            .iter()
            .all(|x| (0.0..=1.0).contains(x));
        if !(v.tolerance.is_finite() && v.tolerance > 0.0) {
            problems.push(
                Problem::new(
                    "policy::thresholds",
                    Section::Thresholds,
                    format!("thresholds.tolerance {} must be a number > 0", v.tolerance),
                )
                .help("numeric answers within the tolerance of the verdict agree with it"),
            );
        }
        if !(in_range && v.human <= v.arbitrate && v.arbitrate <= v.accept) {
            problems.push(
                Problem::new("policy::thresholds", Section::Thresholds, format!(
                    "thresholds out of order: need 0 ≤ human ({}) ≤ arbitrate ({}) ≤ accept ({}) ≤ 1",
                    v.human, v.arbitrate, v.accept
                ))
                .help("a decision below `arbitrate` goes to the arbiter, below `human` to a person; defaults are 0.75 / 0.55 / 0.3"),
            );
        }
    }

    /// Budgets against the cheapest possible quorum.
    fn check_budget(
        &self,
        pool: &[String],
        agents: &BTreeMap<String, AgentSpec>,
        problems: &mut Vec<Problem>,
    ) {
        let budget = &self.policy.budget;
        let ballots = self.policy.quorum_ballots;
        let prompt = budget.prompt_tokens.unwrap_or(1000);
        let members = || pool.iter().filter_map(|id| agents.get(id));
        let k = ballots as usize;
        if let Some(limit) = budget.tokens {
            let mut tokens: Vec<u64> = members()
                .map(|a| u64::from(prompt) + u64::from(a.max_tokens))
                .collect();
            tokens.sort_unstable();
            if tokens.len() >= k {
                let need: u64 = tokens[..k].iter().sum();
                if need > limit {
                    problems.push(Problem::new("policy::budget", Section::Budget, format!(
                        "token budget {limit} cannot cover a quorum of {ballots}: the cheapest {ballots} calls need {need} tokens"
                    )));
                }
            }
        }
        if let Some(total) = budget.total {
            if total.tokens.is_none() && total.money_usd.is_none() {
                problems.push(Problem::new(
                    "policy::budget",
                    Section::Budget,
                    "budget.total sets no limit: give `tokens`, `money_usd` or both",
                ));
            }
            if total
                .money_usd
                .is_some_and(|m| !(m.is_finite() && m >= 0.0))
            {
                problems.push(Problem::new(
                    "policy::budget",
                    Section::Budget,
                    "budget.total.money_usd must be a non-negative number",
                ));
            }
            if total.window_s == Some(0) {
                problems.push(Problem::new(
                    "policy::budget",
                    Section::Budget,
                    "budget.total.window_s must be at least 1 second",
                ));
            }
        }
        if let Some(limit) = budget.money_usd {
            let mut costs: Vec<f64> = members().map(|a| a.call_cost(prompt)).collect();
            costs.sort_by(f64::total_cmp);
            if costs.len() >= k {
                let need: f64 = costs[..k].iter().sum();
                if need > limit + 1e-12 {
                    problems.push(Problem::new("policy::budget", Section::Budget, format!(
                        "money budget ${limit} cannot cover a quorum of {ballots}: the cheapest {ballots} calls cost ${need:.4}"
                    )));
                }
            }
        }
    }

    fn check_escalation(&self, agents: &BTreeMap<String, AgentSpec>, problems: &mut Vec<Problem>) {
        if let Some(a) = &self.policy.arbiter
            && !agents.contains_key(a)
        {
            problems.push(
                Problem::new(
                    "policy::unknown-agent",
                    Section::Arbiter,
                    format!("unknown arbiter agent \"{a}\""),
                )
                .label("no agent file defines this id"),
            );
        }
        if !(self.policy.lost_majority > 0.0 && self.policy.lost_majority <= 1.0) {
            problems.push(Problem::new(
                "policy::escalation",
                Section::Escalation,
                format!(
                    "escalation.lost_majority {} must be a share in (0, 1]",
                    self.policy.lost_majority
                ),
            ));
        }
        if let Some(limit) = self.policy.verdict_alarm
            && !(limit.is_finite() && limit > 0.0)
        {
            problems.push(Problem::new(
                "policy::escalation",
                Section::Escalation,
                format!(
                    "escalation.verdict_alarm {limit} must be a log-likelihood ratio > 0 (e.g. 6.9)"
                ),
            ));
        }
    }
}

impl Draft {
    /// Rounds, τ, β (α + β ≤ 1) and ε in their ranges.
    fn check_deliberation(&self, problems: &mut Vec<Problem>) {
        let Some(d) = &self.policy.deliberation else {
            return;
        };
        let mut bad = |m: String| {
            problems.push(Problem::new(
                "policy::deliberation",
                Section::Deliberation,
                m,
            ));
        };
        if !(2..=10).contains(&d.rounds) {
            bad(format!(
                "deliberation.rounds {} must be 2–10 (the independent round included)",
                d.rounds
            ));
        }
        if !(d.tau > 0.0 && d.tau <= 1.0) {
            bad(format!("deliberation.tau {} must be in (0, 1]", d.tau));
        }
        if !(d.beta >= 0.0 && self.policy.alpha + d.beta <= 1.0 + 1e-12) {
            bad(format!(
                "deliberation.beta {} must be ≥ 0 with alpha + beta ≤ 1 (alpha is {})",
                d.beta, self.policy.alpha
            ));
        }
        if !(d.epsilon.is_finite() && d.epsilon > 0.0) {
            bad(format!("deliberation.epsilon {} must be > 0", d.epsilon));
        }
        if let Some(budget) = self.policy.budget.decision_ms
            && d.min_time_ms >= budget
        {
            bad(format!(
                "deliberation.min_time_ms {} is not below budget.decision_ms {budget}: the policy would never deliberate",
                d.min_time_ms
            ));
        }
    }
}

/// How many of the pool can be asked at once, given at most `per_family` per model family.
fn reachable(
    pool: &[String],
    per_family: Option<u32>,
    agents: &BTreeMap<String, AgentSpec>,
) -> u32 {
    let Some(n) = per_family else {
        return pool.len() as u32;
    };
    let mut per: BTreeMap<String, u32> = BTreeMap::new();
    pool.iter()
        .filter(|id| {
            let fam = agents
                .get(*id)
                .and_then(|a| a.family.clone())
                .unwrap_or_else(|| (*id).clone());
            let c = per.entry(fam).or_default();
            *c += 1;
            *c <= n
        })
        .count() as u32
}

/// Builds a [`Policy`] in code, with the same checks as a policy file.
///
/// ```
/// use conclave::{Kind, Policy, Rule};
/// # use std::collections::BTreeMap;
/// # let agents = BTreeMap::new();
/// let err = Policy::builder("desk")
///     .applies(["trading"], [Kind::Choice])
///     .pool(["econ", "news", "quant"])
///     .rule(Rule::WeightedPlurality)
///     .quorum(2)
///     .build(&agents)
///     .unwrap_err();
/// assert!(err.to_string().contains("unknown agent \"econ\""));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct PolicyBuilder {
    draft: Draft,
}

impl Policy {
    /// A builder for a policy with this id and the digest's defaults (weighted plurality,
    /// α 0.6, quorum 1, early stopping at risk 0.01, thresholds 0.75 / 0.55 / 0.3, human
    /// escalation, lost majority ½).
    pub fn builder(id: impl Into<String>) -> PolicyBuilder {
        PolicyBuilder {
            draft: Draft::new(id.into()),
        }
    }
}

impl Policy {
    /// A builder holding this policy's settings, to derive a variant (checked again on
    /// build). Its pool is the resolved list of ids.
    pub fn to_builder(&self) -> PolicyBuilder {
        PolicyBuilder {
            draft: Draft {
                policy: self.clone(),
                pool_ids: self.pool.clone(),
                pool_tags: Vec::new(),
                pool_max: Some(self.pool_max),
            },
        }
    }
}

impl PolicyBuilder {
    /// What it is for.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.draft.policy.description = text.into();
        self
    }

    /// The domains and decision kinds it governs.
    pub fn applies<D: Into<String>>(
        mut self,
        domains: impl IntoIterator<Item = D>,
        kinds: impl IntoIterator<Item = Kind>,
    ) -> Self {
        self.draft.policy.domains = domains.into_iter().map(Into::into).collect();
        self.draft.policy.kinds = kinds.into_iter().collect();
        self
    }

    /// The agents that may vote, by id.
    pub fn pool<A: Into<String>>(mut self, agents: impl IntoIterator<Item = A>) -> Self {
        self.draft.pool_ids = agents.into_iter().map(Into::into).collect();
        self
    }

    /// Also every agent with one of these tags.
    pub fn pool_tags<T: Into<String>>(mut self, tags: impl IntoIterator<Item = T>) -> Self {
        self.draft.pool_tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Fewest agents the pool may have, and most asked per decision (default: all).
    pub fn pool_size(mut self, min: u32, max: Option<u32>) -> Self {
        self.draft.policy.pool_min = min;
        self.draft.pool_max = max;
        self
    }

    /// At most `n` agents per model family.
    pub fn max_per_family(mut self, n: u32) -> Self {
        self.draft.policy.max_per_family = Some(n);
        self
    }

    /// Selection weights of expertise and trust (they sum to 1; default 0.3 / 0.7).
    pub fn selection(mut self, expertise: f64, trust: f64) -> Self {
        self.draft.policy.selection = (expertise, trust);
        self
    }

    /// The voting rule.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.draft.policy.rule = rule;
        self
    }

    /// WBFT α: weight = α·trust + (1−α)·quality.
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.draft.policy.alpha = alpha;
        self
    }

    /// When a robust rule takes over.
    pub fn robust(mut self, switch: RobustSwitch) -> Self {
        self.draft.policy.robust = Some(switch);
        self
    }

    /// Ballots (not abstentions) a decision needs.
    pub fn quorum(mut self, ballots: u32) -> Self {
        self.draft.policy.quorum_ballots = ballots;
        self
    }

    /// Share of the pool's weight that must have voted.
    pub fn quorum_weight_share(mut self, share: f64) -> Self {
        self.draft.policy.quorum_weight_share = share;
        self
    }

    /// Effective independent voters required.
    pub fn quorum_n_eff(mut self, n_eff: f64) -> Self {
        self.draft.policy.quorum_n_eff = n_eff;
        self
    }

    /// Early stopping at this risk δ, or `None` to ask every selected agent.
    pub fn early_stop(mut self, risk: Option<f64>) -> Self {
        self.draft.policy.early_stop_risk = risk;
        self
    }

    /// Acceptance and escalation thresholds.
    pub fn thresholds(mut self, thresholds: Thresholds) -> Self {
        self.draft.policy.thresholds = thresholds;
        self
    }

    /// Spending limits per decision.
    pub fn budget(mut self, budget: Budget) -> Self {
        self.draft.policy.budget = budget;
        self
    }

    /// Admission by trust: the floor, how provisional agents count, and whether agents
    /// still being measured are always asked.
    pub fn admission(mut self, trust_floor: f64, provisional: Provisional, measure: bool) -> Self {
        self.draft.policy.trust_floor = trust_floor;
        self.draft.policy.provisional = provisional;
        self.draft.policy.measure_provisional = measure;
        self
    }

    /// The arbiter agent for weak decisions.
    pub fn arbiter(mut self, agent: impl Into<String>) -> Self {
        self.draft.policy.arbiter = Some(agent.into());
        self
    }

    /// Whether decisions below the human threshold go to a person (else they are refused).
    pub fn human(mut self, human: bool) -> Self {
        self.draft.policy.human = human;
        self
    }

    /// Escalate while more than this share of the pool is quarantined, ejected or below the
    /// trust floor (default ½).
    pub fn lost_majority(mut self, share: f64) -> Self {
        self.draft.policy.lost_majority = share;
        self
    }

    /// Escalate while the domain's verdict monitor is at or above this limit.
    pub fn verdict_alarm(mut self, limit: f64) -> Self {
        self.draft.policy.verdict_alarm = Some(limit);
        self
    }

    /// Deliberation rounds when the independent vote's consensus is weak.
    pub fn deliberation(mut self, deliberation: Deliberation) -> Self {
        self.draft.policy.deliberation = Some(deliberation);
        self
    }

    /// How much of each decision is recorded.
    pub fn audit(mut self, level: AuditLevel) -> Self {
        self.draft.policy.audit = level;
        self
    }

    /// Checks the policy against the agents it names.
    ///
    /// # Errors
    /// [`PolicyError`] with every problem found.
    pub fn build(self, agents: &BTreeMap<String, AgentSpec>) -> Result<Policy, PolicyError> {
        let id = self.draft.policy.id.clone();
        let hash = crate::audit::hex(&<sha2::Sha256 as sha2::Digest>::digest(format!(
            "{:?}",
            self.draft
        )));
        self.draft
            .validate(agents, PathBuf::from(format!("<code:{id}>")), hash)
            .map_err(|problems| PolicyError { id, problems })
    }
}
