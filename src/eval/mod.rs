//! Adversarial evaluation: run a suite of items through the Governor while agents lie,
//! collude, defect, drift, clone themselves, time out or crash; measure how the governed
//! decisions hold up against baselines on the same ballots; learn trust as the run goes;
//! write a report; and recalibrate the trust store from what was learned.
//!
//! A suite runs at many seeds (each an independent replicate of every scenario) and, if it
//! has generators, over many random scenarios; its checks (see [`check`]) are judged over all
//! of them, never at one draw.
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use conclave::eval::{Suite, RunOptions, evaluate_parallel};
//! use conclave::trust::{TrustParams, store::{MemoryTrustStore, TrustStore}};
//!
//! let suite = Suite::load("evals/financenet.toml".as_ref())?;
//! let start = MemoryTrustStore::new(TrustParams::default())?.snapshot()?;
//! let report = evaluate_parallel(&suite, &start, &RunOptions::default(), 0)?;
//! println!("{}", report.summary_table());
//! # Ok(()) }
//! ```

mod agent;
pub mod check;
pub mod generate;
pub mod metrics;
pub mod report;
mod run;
pub mod suite;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use serde::Serialize;

pub use report::Report;
pub use run::{Caught, Progress, RunOptions};
pub use suite::{Suite, SuiteError};

use crate::trust::model::{Status, standing};
use crate::trust::store::{Change, TrustBatch, TrustSnapshot, TrustStore};
use metrics::{Calibration, Delta, Rate};
use report::{Recalibration, TrustMove};
pub use run::{AgentLatency, CallHealth, FailureCount, FalseAlarm, ItemRecord};
use run::{ItemsRun, Pool};

/// A run that could not start or finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// A scenario's pool could not be assembled (an agent that cannot be built or simulated).
    #[error("scenario \"{scenario}\": {reason}")]
    Pool {
        /// The scenario.
        scenario: String,
        /// Why.
        reason: String,
    },
    /// A generated scenario could not be made.
    #[error("generator \"{generator}\", scenario {k}: {reason}")]
    Generate {
        /// The generator.
        generator: String,
        /// Which of its scenarios (from 0).
        k: usize,
        /// Why.
        reason: String,
    },
    /// A sweep's pool could not be made.
    #[error("sweep \"{sweep}\": {reason}")]
    Sweep {
        /// The sweep.
        sweep: String,
        /// Why.
        reason: String,
    },
    /// A runtime for the run could not be started.
    #[error("cannot start a runtime: {0}")]
    Runtime(String),
    /// A run thread panicked (a bug: please report it).
    #[error("a run thread panicked")]
    Panicked,
}

/// One baseline's accuracy on the same items, and the governed vote's lead over it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Baseline {
    /// What it is.
    pub name: String,
    /// Its accuracy on every item (a baseline always decides).
    pub accuracy: Rate,
    /// Its accuracy on the items the governed system decided.
    pub on_decided: Rate,
    /// Governed minus baseline on the items the governed system decided, paired per item:
    /// the quality of the decisions made.
    pub lead: Delta,
    /// Governed minus baseline on every item, escalations counted as misses.
    pub lead_all: Delta,
    /// The items on which the two differ (escalations counted as misses): `[governed right
    /// and the baseline wrong, the baseline right and the governed not]`.
    pub discordant: [usize; 2],
}

/// What deliberation rounds did in one scenario at one seed, on the items deliberated
/// (digest A.12: debate can lower accuracy; the acquiescence detector should catch the
/// cascades that do).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliberationSummary {
    /// Items deliberated (the independent vote's consensus was below τ).
    pub deliberated: usize,
    /// Rounds held after the independent vote, on average.
    pub mean_rounds: f64,
    /// Items on which the acquiescence detector fired.
    pub flagged: usize,
    /// Cascades: the rounds moved the pool from the independent vote's answer onto a wrong
    /// one.
    pub cascades: usize,
    /// Of which onto an adversary's answer.
    pub cascades_onto_adversary: usize,
    /// Cascades the detector flagged.
    pub cascades_flagged: usize,
    /// Honest deliberations: no adversary voted and the rounds did not cascade.
    pub honest: usize,
    /// Honest deliberations flagged (false alarms).
    pub honest_flagged: usize,
    /// The independent vote's accuracy on the items deliberated.
    pub independent: Rate,
    /// The last round's accuracy: deliberation without the detector.
    pub debated: Rate,
    /// The accuracy of the answers kept: deliberation with the detector.
    pub kept: Rate,
    /// Deliberation without the detector minus the independent vote, paired per item.
    pub debate_lead: Delta,
    /// Deliberation with the detector minus the independent vote, paired per item.
    pub kept_lead: Delta,
}

impl DeliberationSummary {
    /// What these deliberated items show (`None`: none).
    fn of(d: &[run::DeliberationRecord]) -> Option<Self> {
        if d.is_empty() {
            return None;
        }
        let count =
            |f: &dyn Fn(&run::DeliberationRecord) -> bool| d.iter().filter(|x| f(x)).count();
        let column = |f: &dyn Fn(&run::DeliberationRecord) -> bool| -> Vec<bool> {
            d.iter().map(f).collect()
        };
        let (independent, debated, kept) = (
            column(&|x| x.independent),
            column(&|x| x.debated),
            column(&|x| x.kept),
        );
        let rate = |v: &[bool]| Rate::wilson(v.iter().filter(|b| **b).count(), v.len());
        Some(Self {
            deliberated: d.len(),
            mean_rounds: d.iter().map(|x| x.rounds as f64).sum::<f64>() / d.len() as f64,
            flagged: count(&|x| x.flagged),
            cascades: count(&|x| x.cascade),
            cascades_onto_adversary: count(&|x| x.onto_adversary),
            cascades_flagged: count(&|x| x.cascade && x.flagged),
            honest: count(&|x| x.honest),
            honest_flagged: count(&|x| x.honest && x.flagged),
            independent: rate(&independent),
            debated: rate(&debated),
            kept: rate(&kept),
            debate_lead: metrics::paired_delta(&debated, &independent),
            kept_lead: metrics::paired_delta(&kept, &independent),
        })
    }

    /// One line: the three accuracies and the detector's record.
    pub(crate) fn line(&self) -> String {
        let pct = |r: &Rate| format!("{}%", crate::ballot::fixed(100.0 * r.value, 1));
        format!(
            "{} deliberated ({:.1} rounds): right {} independently, {} after the rounds, {} kept with the acquiescence detector; cascades onto a wrong answer flagged {}/{} ({} onto an adversary's), honest deliberations flagged {}/{}",
            self.deliberated,
            self.mean_rounds,
            pct(&self.independent),
            pct(&self.debated),
            pct(&self.kept),
            self.cascades_flagged,
            self.cascades,
            self.cascades_onto_adversary,
            self.honest_flagged,
            self.honest,
        )
    }
}

/// One adversary and how fast trust caught it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Adversary {
    /// The agent.
    pub agent: String,
    /// What it did.
    pub attack: String,
    /// Its accuracy since its attack began (graded answers), if it was graded.
    pub accuracy: Option<f64>,
    /// When it was caught.
    #[serde(flatten)]
    pub caught: Caught,
}

/// Trust learned against true competence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentTrust {
    /// The agent.
    pub agent: String,
    /// The domain.
    pub domain: String,
    /// Share of its answers that were right over the run (failures count as wrong).
    pub competence: f64,
    /// Trust learned at the end (the posterior mean).
    pub trust: f64,
    /// What the trust is worth to the vote: the posterior mean, or 0 once quarantined or
    /// ejected (a suspicion quarantine leaves the mean high while the agent has no say).
    pub effective: f64,
    /// Graded outcomes behind it.
    pub n: u64,
    /// Status at the end.
    pub status: Status,
}

/// The effective number of outcomes behind a trust estimate: trust forgets (γ), so it rests
/// on `(Σw)²/Σw²` of the weights γᵏ over the `n` graded outcomes, fewer than `n`.
fn effective_outcomes(n: u64) -> f64 {
    let gamma = crate::trust::TrustParams::default().forgetting;
    if gamma >= 1.0 || n == 0 {
        return n as f64;
    }
    let n = n.min(i32::MAX as u64) as i32;
    let (a, b) = (1.0 - gamma.powi(n), 1.0 - gamma.powi(2 * n));
    (a * a / ((1.0 - gamma) * (1.0 - gamma))) * ((1.0 - gamma * gamma) / b)
}

/// The standard error of the difference of two agents' accuracy estimates.
fn difference_se(a: &AgentTrust, b: &AgentTrust) -> f64 {
    let v = |t: &AgentTrust| {
        let p = t.competence.clamp(0.01, 0.99);
        p * (1.0 - p) / effective_outcomes(t.n.max(1))
    };
    (v(a) + v(b)).sqrt()
}

/// Of the pairs of agents whose competences the run's evidence can tell apart (they differ
/// by more than 1.96 standard errors of the difference), the share that effective learned
/// trust orders the same way (a tie counts half, as in Kendall's τ); with the number of such
/// pairs. Two agents both taken out of the vote (quarantined or ejected, effective trust 0)
/// are not a pair: the vote treats them alike and claims no order between them.
fn resolvable_concordance(agents: &[&AgentTrust]) -> (Option<f64>, usize) {
    let (mut pairs, mut agree) = (0usize, 0.0f64);
    for (i, a) in agents.iter().enumerate() {
        for b in &agents[i + 1..] {
            let d = a.competence - b.competence;
            if d.abs() <= 1.96 * difference_se(a, b) || (a.effective == 0.0 && b.effective == 0.0) {
                continue;
            }
            pairs += 1;
            let e = a.effective - b.effective;
            agree += if e == 0.0 {
                0.5
            } else if e * d > 0.0 {
                1.0
            } else {
                0.0
            };
        }
    }
    ((pairs > 0).then(|| agree / pairs as f64), pairs)
}

/// The agents' competences as far as the run's evidence can order them: agents whose
/// competences differ by less than the standard error of the difference of their trust
/// estimates (√(p₁q₁/n₁ + p₂q₂/n₂), n the effective number of outcomes behind each: trust
/// forgets, so it is less than the number graded) are tied, linked in order of competence,
/// at their group's mean. Ranking them is left to chance by the data, so
/// the rank correlation with learned trust does not count their order.
fn resolvable_competence(agents: &[&AgentTrust]) -> Vec<f64> {
    let se2 = |t: &AgentTrust| {
        let p = t.competence.clamp(0.01, 0.99);
        p * (1.0 - p) / effective_outcomes(t.n.max(1))
    };
    let mut order: Vec<usize> = (0..agents.len()).collect();
    order.sort_by(|&a, &b| agents[b].competence.total_cmp(&agents[a].competence));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        let linked = k > 0 && {
            let prev = agents[order[k - 1]];
            prev.competence - agents[i].competence <= (se2(prev) + se2(agents[i])).sqrt()
        };
        match groups.last_mut() {
            Some(g) if linked => g.push(i),
            _ => groups.push(vec![i]),
        }
    }
    let mut out = vec![0.0; agents.len()];
    for g in groups {
        let mean = g.iter().map(|&i| agents[i].competence).sum::<f64>() / g.len() as f64;
        for i in g {
            out[i] = mean;
        }
    }
    out
}

/// Learning within the run: accuracy per window against the stress in it (digest B.6).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    /// First decision of the window.
    pub from: usize,
    /// Decisions in it.
    pub n: usize,
    /// Governed accuracy.
    pub accuracy: f64,
    /// Stress: the share of graded agent answers that were wrong.
    pub stress: f64,
    /// `A(t) = (Acc(t) − Acc(t−1)) / Stress(t)`; absent for the first window or no stress.
    pub antifragility: Option<f64>,
}

/// Selective prediction: how well the system's confidence orders its answers, against the
/// oracle's (digest B.6; Geifman & El-Yaniv's risk–coverage curve).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct RiskCoverage {
    /// Share of items decided.
    pub coverage: f64,
    /// Accuracy on the items decided.
    pub decided_accuracy: f64,
    /// The oracle's accuracy on its own most confident items, as many as the system decided.
    pub oracle_at_coverage: f64,
    /// Area under the governed system's risk–coverage curve: items ordered decided first,
    /// then by verdict confidence; the risk at each coverage is the share wrong among the
    /// items so far (an item the tally could not answer counts as wrong). Lower is better.
    pub aurc: f64,
    /// The same for the oracle, ordered by its posterior confidence.
    pub oracle_aurc: f64,
}

impl RiskCoverage {
    fn of(records: &[ItemRecord]) -> Self {
        let n = records.len();
        let aurc = |order: &mut Vec<(bool, f64, bool)>| {
            // (decided, confidence, right): decided first, then the most confident first.
            order.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)));
            let mut wrong = 0usize;
            let mut area = 0.0;
            for (k, x) in order.iter().enumerate() {
                wrong += usize::from(!x.2);
                area += wrong as f64 / (k + 1) as f64;
            }
            area / order.len().max(1) as f64
        };
        let mut governed: Vec<(bool, f64, bool)> = records
            .iter()
            .map(|r| {
                (
                    r.correct.is_some(),
                    r.confidence,
                    r.correct.or(r.tally_correct).unwrap_or(false),
                )
            })
            .collect();
        let mut oracle: Vec<(bool, f64, bool)> = records
            .iter()
            .map(|r| (true, r.oracle_confidence, r.oracle))
            .collect();
        let decided = records.iter().filter(|r| r.correct.is_some()).count();
        let right = records.iter().filter(|r| r.correct == Some(true)).count();
        let g = aurc(&mut governed);
        let o = aurc(&mut oracle);
        // `oracle` is now sorted by confidence: its first `decided` items.
        let top = oracle.iter().take(decided).filter(|x| x.2).count();
        Self {
            coverage: decided as f64 / n.max(1) as f64,
            decided_accuracy: right as f64 / decided.max(1) as f64,
            oracle_at_coverage: top as f64 / decided.max(1) as f64,
            aurc: g,
            oracle_aurc: o,
        }
    }
}

/// The figures of one scenario at one seed (`Default`: an empty run, for building reports
/// by hand).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ScenarioReport {
    /// Name.
    pub name: String,
    /// What it does.
    pub about: String,
    /// The attacks.
    pub attacks: Vec<suite::Attack>,
    /// Whether its outcomes recalibrate trust.
    pub recalibrate: bool,
    /// Share of the pool's agents that are adversarial at some point of the run.
    pub corrupted: f64,
    /// For generated scenarios, the share of the pool's weight (log-odds of competence)
    /// attacked.
    pub corrupted_weight: Option<f64>,
    /// Decisions made (items × repetitions).
    pub decisions: usize,
    /// Decided by the vote.
    pub decided: usize,
    /// Ruled by the arbiter.
    pub arbitrated: usize,
    /// Escalated to a human or refused.
    pub escalated: usize,
    /// Wrong decisions (vote or arbiter).
    pub wrong: usize,
    /// Right decisions over all decisions (escalations count as misses).
    pub accuracy: Rate,
    /// Share of items decided (by the vote or the arbiter) rather than escalated.
    pub coverage: f64,
    /// Whether every attack is adversarial (no honest agent made to fail): only then is
    /// the drop from the clean run the attack's doing.
    pub adversarial_only: bool,
    /// Whether every attack only slows agents down.
    pub latency_only: bool,
    /// Right decisions over decisions actually made.
    pub decided_accuracy: Rate,
    /// Wrong decisions over all decisions.
    pub false_decisions: Rate,
    /// Unweighted majority, best single agent, oracle.
    pub baselines: Vec<Baseline>,
    /// Verdict confidence against correctness (decisions made).
    pub calibration: Calibration,
    /// Risk against coverage, beside the oracle's.
    pub risk: RiskCoverage,
    /// Spearman correlation of effective learned trust with true competence.
    pub trust_spearman: Option<f64>,
    /// Of the agent pairs the run's evidence can tell apart by competence, the share that
    /// effective learned trust orders the same way.
    pub trust_concordance: Option<f64>,
    /// Those pairs.
    pub resolvable_pairs: usize,
    /// RMSE of learned trust against true competence after each repetition (digest B.6).
    pub calibration_error: Vec<f64>,
    /// Per agent.
    pub trust: Vec<AgentTrust>,
    /// Adversaries and when they were quarantined.
    pub adversaries: Vec<Adversary>,
    /// Coverage once the pool is rid of its adversaries: over the decisions from
    /// [`RECOVERY_AFTER`] after the last adversary's quarantine to the end of the run. None
    /// without adversaries, or while one of them is not caught.
    pub recovered: Option<Rate>,
    /// Honest agents: neither adversaries nor made faulty, expected to be right at least as
    /// often as the honest floor.
    pub honest: Vec<String>,
    /// Agents the scenario makes weaker than the honest floor (not adversaries; their
    /// quarantine is no false alarm).
    pub weak: Vec<String>,
    /// Honest agents quarantined or ejected during the run (false alarms).
    pub honest_quarantined: Vec<run::FalseAlarm>,
    /// Graded outcomes of honest agents.
    pub honest_graded: u64,
    /// Calls by how they ended.
    pub health: run::CallHealth,
    /// Calls that did not answer, per agent and reason.
    pub failures: Vec<run::FailureCount>,
    /// Per agent, its answered calls and their latency.
    pub agent_latency: Vec<run::AgentLatency>,
    /// Agent calls per decision.
    pub calls_per_decision: f64,
    /// Calls per decision if every pool agent were asked.
    pub pool_per_decision: f64,
    /// `1 − calls / pool`: what early stopping saved.
    pub early_stop_saving: f64,
    /// Tokens per decision.
    pub tokens_per_decision: f64,
    /// Dollars per decision.
    pub usd_per_decision: f64,
    /// Decision latency p50, ms (simulated time for simulated pools).
    pub latency_p50_ms: u64,
    /// Decision latency p99, ms.
    pub latency_p99_ms: u64,
    /// Effective number of independent voters (mean-correlation form) per domain.
    pub n_eff: BTreeMap<String, f64>,
    /// Groups of agents whose errors coincided, per domain.
    pub clusters: BTreeMap<String, Vec<Vec<String>>>,
    /// Learning within the run.
    pub windows: Vec<Window>,
    /// Resilience `R = 1 − ΔP/ΔF` against the first scenario without attacks.
    pub resilience: Option<f64>,
    /// What deliberation did, when any item was deliberated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliberation: Option<DeliberationSummary>,
    /// Share of graded agent answers that were wrong (the failure rate F).
    pub failure_rate: f64,
    /// Trust trajectories: agent → `(decision, trust)`.
    #[serde(skip)]
    pub trajectories: BTreeMap<String, Vec<(usize, f64)>>,
    /// Every decision (written to `items.jsonl`).
    #[serde(skip)]
    pub records: Vec<ItemRecord>,
}

/// One point of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepPoint {
    /// The rule.
    pub rule: String,
    /// Pool size.
    pub pool: usize,
    /// Corrupted fraction asked for.
    pub fraction: f64,
    /// Agents corrupted.
    pub corrupted: usize,
    /// Governed accuracy.
    pub accuracy: f64,
    /// Wrong decisions.
    pub false_decisions: f64,
    /// Escalations.
    pub escalations: f64,
    /// Unweighted majority.
    pub majority: f64,
    /// Best single agent.
    pub best_single: f64,
    /// Oracle.
    pub oracle: f64,
    /// Agent calls per decision.
    pub calls_per_decision: f64,
}

/// A sweep's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepReport {
    /// Name.
    pub name: String,
    /// What it shows.
    pub about: String,
    /// The attack on the corrupted agents.
    pub attack: suite::Mode,
    /// The seed it ran at.
    pub seed: u64,
    /// Every point.
    pub points: Vec<SweepPoint>,
}

/// Everything one seed of a suite ran: every scenario over every item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeedRun {
    /// The seed.
    pub seed: u64,
    /// Per scenario, in the suite's order.
    pub scenarios: Vec<ScenarioReport>,
    /// Interrupted before the end.
    pub interrupted: bool,
    /// The graded outcomes of the recalibrating scenarios.
    #[serde(skip)]
    pub changes: Vec<Change>,
}

/// One unit of work of an evaluation: a seed of the named scenarios, the sweeps, or one
/// generated scenario.
#[derive(Debug, Clone, Copy)]
enum Job {
    Seed(u64),
    Sweeps(u64),
    Generated { set: usize, k: usize },
}

enum Done {
    Seed(SeedRun),
    Sweeps(Vec<SweepReport>),
    Generated {
        set: usize,
        k: usize,
        report: Box<ScenarioReport>,
    },
}

/// The jobs of `suite`, in the order their results are assembled.
fn jobs(suite: &Suite) -> Vec<Job> {
    let mut jobs: Vec<Job> = Vec::new();
    if !suite.scenarios.is_empty() {
        jobs.extend(suite.seeds.iter().map(|&s| Job::Seed(s)));
    }
    if !suite.sweeps.is_empty() {
        jobs.push(Job::Sweeps(
            suite.seeds.first().copied().unwrap_or(suite.seed),
        ));
    }
    for (set, g) in suite.generate.iter().enumerate() {
        jobs.extend((0..g.scenarios).map(|k| Job::Generated { set, k }));
    }
    jobs
}

async fn run_job(
    suite: &Suite,
    start: &TrustSnapshot,
    job: Job,
    opts: &RunOptions,
    done: &AtomicU64,
    total: u64,
) -> Result<Done, EvalError> {
    let plan = |seed| run::Plan {
        seed,
        concurrency: suite.concurrency,
        tolerance: suite.tolerance,
        opts,
        done,
        total,
    };
    Ok(match job {
        Job::Seed(seed) => Done::Seed(run_seed(suite, start, &plan(seed)).await?),
        Job::Sweeps(seed) => Done::Sweeps(run_sweeps(suite, start, &plan(seed)).await?),
        Job::Generated { set, k } => {
            let g = &suite.generate[set];
            let scenario =
                generate::scenario(suite, g, k).map_err(|reason| EvalError::Generate {
                    generator: g.name.clone(),
                    k,
                    reason,
                })?;
            let fresh = TrustSnapshot {
                version: 0,
                params: start.params,
                states: BTreeMap::new(),
            };
            let pool =
                Pool::for_scenario(&scenario.suite, &scenario.scenario).map_err(|reason| {
                    EvalError::Pool {
                        scenario: scenario.scenario.name.clone(),
                        reason,
                    }
                })?;
            let run = run::run_items(
                &pool,
                &scenario.suite.items,
                &fresh,
                1,
                &plan(scenario.seed),
            )
            .await;
            let mut report = scenario_report(&scenario.scenario, run);
            report.corrupted = pool.corrupted_share();
            report.corrupted_weight = Some(scenario.corrupted_weight);
            // Generated decisions are reproducible from the set's seed; unless asked for, only
            // their figures are kept.
            if !opts.keep_generated {
                report.records = Vec::new();
            }
            report.trajectories = BTreeMap::new();
            Done::Generated {
                set,
                k,
                report: Box::new(report),
            }
        }
    })
}

async fn run_seed(
    suite: &Suite,
    start: &TrustSnapshot,
    plan: &run::Plan<'_>,
) -> Result<SeedRun, EvalError> {
    let mut scenarios = Vec::new();
    let mut changes: Vec<Change> = Vec::new();
    let mut interrupted = false;
    let mut clean: Option<(f64, f64)> = None;
    for scenario in &suite.scenarios {
        let pool = Pool::for_scenario(suite, scenario).map_err(|reason| EvalError::Pool {
            scenario: scenario.name.clone(),
            reason,
        })?;
        let mut run = run::run_items(&pool, &suite.items, start, suite.repetitions, plan).await;
        interrupted |= run.interrupted;
        if scenario.recalibrate {
            changes.append(&mut run.changes);
        }
        let mut report = scenario_report(scenario, run);
        report.corrupted = pool.corrupted_share();
        if report.corrupted == 0.0 && clean.is_none() {
            clean = Some((report.accuracy.value, report.failure_rate));
        }
        report.resilience = clean.and_then(|(acc0, f0)| {
            if report.corrupted == 0.0 || acc0 <= 0.0 || f0 <= 0.0 {
                return None;
            }
            let dp = ((acc0 - report.accuracy.value) / acc0).max(0.0);
            let df = (report.failure_rate - f0) / f0;
            (df > 0.0).then(|| 1.0 - dp / df)
        });
        scenarios.push(report);
        if interrupted {
            break;
        }
    }
    Ok(SeedRun {
        seed: plan.seed,
        scenarios,
        interrupted,
        changes,
    })
}

async fn run_sweeps(
    suite: &Suite,
    start: &TrustSnapshot,
    plan: &run::Plan<'_>,
) -> Result<Vec<SweepReport>, EvalError> {
    let mut sweeps = Vec::new();
    for sweep in &suite.sweeps {
        let items = run::sweep_items(sweep, plan.seed);
        let fresh = TrustSnapshot {
            version: 0,
            params: start.params,
            states: BTreeMap::new(),
        };
        let mut points = Vec::new();
        for rule in &sweep.rules {
            for &n in &sweep.pool_sizes {
                for &f in &sweep.fractions {
                    if plan
                        .opts
                        .interrupt
                        .load(std::sync::atomic::Ordering::Relaxed)
                    {
                        break;
                    }
                    let corrupt = (f * n as f64).round() as usize;
                    let pool =
                        Pool::for_sweep(sweep, n, corrupt, *rule, &items).map_err(|reason| {
                            EvalError::Sweep {
                                sweep: sweep.name.clone(),
                                reason,
                            }
                        })?;
                    let run = run::run_items(&pool, &items, &fresh, 1, plan).await;
                    let r = &run.records;
                    let share = |f: &dyn Fn(&ItemRecord) -> bool| {
                        r.iter().filter(|x| f(x)).count() as f64 / r.len().max(1) as f64
                    };
                    let (best, _) = best_single(r);
                    points.push(SweepPoint {
                        rule: rule.name().to_owned(),
                        pool: n,
                        fraction: f,
                        corrupted: corrupt,
                        accuracy: share(&|x| x.correct == Some(true)),
                        false_decisions: share(&|x| x.correct == Some(false)),
                        escalations: share(&|x| x.correct.is_none()),
                        majority: share(&|x| x.majority),
                        best_single: best.iter().filter(|b| **b).count() as f64
                            / best.len().max(1) as f64,
                        oracle: share(&|x| x.oracle),
                        calls_per_decision: r.iter().map(|x| x.calls as f64).sum::<f64>()
                            / r.len().max(1) as f64,
                    });
                }
            }
        }
        sweeps.push(SweepReport {
            name: sweep.name.clone(),
            about: sweep.about.clone(),
            attack: sweep.mode.clone(),
            seed: plan.seed,
            points,
        });
    }
    Ok(sweeps)
}

/// Assembles the report from the jobs' results (in any order).
fn assemble(suite: &Suite, start: &TrustSnapshot, results: Vec<Done>, interrupted: bool) -> Report {
    let mut seeds: Vec<SeedRun> = Vec::new();
    let mut sweeps = Vec::new();
    let mut generated: Vec<Vec<(usize, ScenarioReport)>> = vec![Vec::new(); suite.generate.len()];
    for r in results {
        match r {
            Done::Seed(s) => seeds.push(s),
            Done::Sweeps(s) => sweeps = s,
            Done::Generated { set, k, report } => generated[set].push((k, *report)),
        }
    }
    seeds.sort_by_key(|s| suite.seeds.iter().position(|&x| x == s.seed));
    let partial = interrupted || seeds.iter().any(|s| s.interrupted);
    let generated = suite
        .generate
        .iter()
        .zip(generated)
        .map(|(g, mut runs)| {
            runs.sort_by_key(|(k, _)| *k);
            generate::GeneratedSet::new(g, runs.into_iter().map(|(_, r)| r).collect())
        })
        .collect();
    Report::new(suite, start, seeds, sweeps, generated, partial)
}

/// Runs a suite from trust `start` in the caller's runtime, one job after another: every
/// seed of the named scenarios, the sweeps (at the first seed), every generated scenario.
/// Simulated agents take as long as the runtime's clock says: under a paused clock
/// (`tokio::time::pause`) a run takes as long as its computation.
///
/// # Errors
/// A pool that cannot be built (an agent definition the runner cannot simulate or reach).
pub async fn evaluate(
    suite: &Suite,
    start: &TrustSnapshot,
    opts: &RunOptions,
) -> Result<Report, EvalError> {
    let total = total_decisions(suite);
    let done = AtomicU64::new(0);
    let mut results = Vec::new();
    let mut interrupted = false;
    for job in jobs(suite) {
        if opts.interrupt.load(std::sync::atomic::Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        results.push(run_job(suite, start, job, opts, &done, total).await?);
    }
    Ok(assemble(suite, start, results, interrupted))
}

/// Runs a suite as [`evaluate`] does, its jobs in parallel on up to `threads` threads (0:
/// the available cores), each job in a runtime of its own: on a paused clock when every
/// agent is simulated, on the real clock otherwise. The report is the same as
/// [`evaluate`]'s on a paused clock, whatever the number of threads.
///
/// Blocking: call it from outside any async runtime (or from `spawn_blocking`).
///
/// # Errors
/// A pool that cannot be built, or a runtime that cannot start.
pub fn evaluate_parallel(
    suite: &Suite,
    start: &TrustSnapshot,
    opts: &RunOptions,
    threads: usize,
) -> Result<Report, EvalError> {
    let simulated = suite.simulated();
    let jobs = jobs(suite);
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    } else {
        threads
    };
    // Real endpoints get one job at a time: the suite's concurrency is what they can take.
    let threads = if simulated { threads } else { 1 }.clamp(1, jobs.len().max(1));
    let total = total_decisions(suite);
    let done = AtomicU64::new(0);
    let next = AtomicU64::new(0);
    let results: std::sync::Mutex<Vec<Result<Done, EvalError>>> = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut builder = tokio::runtime::Builder::new_current_thread();
                builder.enable_all();
                if simulated {
                    builder.start_paused(true);
                }
                let runtime = match builder.build() {
                    Ok(r) => r,
                    Err(e) => {
                        if let Ok(mut r) = results.lock() {
                            r.push(Err(EvalError::Runtime(e.to_string())));
                        }
                        return;
                    }
                };
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as usize;
                    let Some(&job) = jobs.get(k) else { break };
                    if opts.interrupt.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let r = runtime.block_on(run_job(suite, start, job, opts, &done, total));
                    let failed = r.is_err();
                    if let Ok(mut all) = results.lock() {
                        all.push(r);
                    }
                    if failed {
                        break;
                    }
                }
            });
        }
    });
    let results = results.into_inner().map_err(|_| EvalError::Panicked)?;
    let ran = results.len();
    let results: Vec<Done> = results.into_iter().collect::<Result<_, _>>()?;
    let interrupted = ran < jobs.len();
    Ok(assemble(suite, start, results, interrupted))
}

/// Decisions a run makes (for progress).
pub fn total_decisions(suite: &Suite) -> u64 {
    let per_seed =
        (suite.items.len() * suite.scenarios.len()) as u64 * u64::from(suite.repetitions);
    let sweeps: u64 = suite
        .sweeps
        .iter()
        .map(|s| (s.items * s.rules.len() * s.pool_sizes.len() * s.fractions.len()) as u64)
        .sum();
    let generated: u64 = suite
        .generate
        .iter()
        .map(|g| (g.scenarios * g.items.1) as u64)
        .sum();
    per_seed * suite.seeds.len() as u64 + sweeps + generated
}

/// Per item, whether the agent with the most right answers was right.
fn best_single(records: &[ItemRecord]) -> (Vec<bool>, Option<String>) {
    let mut score: BTreeMap<&str, usize> = BTreeMap::new();
    for r in records {
        for (a, right) in &r.answers {
            *score.entry(a.as_str()).or_default() += usize::from(*right == Some(true));
        }
    }
    let best = score
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(a, _)| (*a).to_owned());
    let per_item = records
        .iter()
        .map(|r| {
            r.answers
                .iter()
                .any(|(a, right)| Some(a) == best.as_ref() && *right == Some(true))
        })
        .collect();
    (per_item, best)
}

/// Each agent's rate of right answers per domain over the run (graded answers only; an
/// adversary's from where its attack began), and the wrong and all graded answers.
#[allow(clippy::type_complexity)]
fn true_competence(run: &ItemsRun) -> (BTreeMap<(&str, &str), (usize, usize)>, usize, usize) {
    let mut comp: BTreeMap<(&str, &str), (usize, usize)> = BTreeMap::new();
    let mut wrong_answers = 0usize;
    let mut all_answers = 0usize;
    for x in &run.records {
        for (a, graded) in &x.answers {
            let Some(ok) = graded else { continue };
            // An adversary's true competence is measured from where its attack began: what
            // it is now, not an average of two regimes.
            if let Some(c) = run.caught.get(a)
                && x.rep == 0
                && x.index < c.from
            {
                continue;
            }
            let e = comp.entry((a.as_str(), x.domain.as_str())).or_default();
            e.0 += usize::from(*ok);
            e.1 += 1;
            wrong_answers += usize::from(!ok);
            all_answers += 1;
        }
    }
    (comp, wrong_answers, all_answers)
}

/// Learned trust against true competence, per agent and domain graded in the run.
fn agent_trust(run: &ItemsRun, comp: &BTreeMap<(&str, &str), (usize, usize)>) -> Vec<AgentTrust> {
    let params = crate::trust::TrustParams::default();
    let mut trust = Vec::new();
    for ((agent, domain), state) in &run.states {
        let Some(&(k, m)) = comp.get(&(agent.as_str(), domain.as_str())) else {
            continue;
        };
        trust.push(AgentTrust {
            agent: agent.clone(),
            domain: domain.clone(),
            competence: k as f64 / m.max(1) as f64,
            trust: state.trust(),
            effective: match standing(&run.states, &params, agent, domain) {
                Status::Quarantined | Status::Ejected => 0.0,
                _ => state.trust(),
            },
            n: state.n,
            status: standing(&run.states, &params, agent, domain),
        });
    }
    trust
}

/// The attack an adversary was running, in words.
fn attack_of(scenario: &suite::Scenario, agent: &str) -> String {
    scenario
        .attacks
        .iter()
        .filter(|a| !matches!(a.mode, suite::Mode::Stance { .. }))
        .find(|a| a.agents.iter().any(|x| x == agent) || matches!(&a.mode, suite::Mode::Sybil { of, .. } if agent.starts_with(&format!("{of}~"))))
        .map_or_else(
            || "defined adversarial in its agent file".to_owned(),
            |a| match &a.mode {
                suite::Mode::Behave { name, .. } => name.clone(),
                suite::Mode::Sybil { of, .. } => format!("sybil clone of {of}"),
                suite::Mode::Drift { to, over } => format!("drift to {to} over {over} items"),
                suite::Mode::BlindSpot { .. } => "blind spot".to_owned(),
                suite::Mode::Correlated { .. } => "correlated errors".to_owned(),
                suite::Mode::Sycophancy { .. } => "sycophancy".to_owned(),
                suite::Mode::Stance { .. } => "a deliberation stance".to_owned(),
                suite::Mode::Persuade => "persuasive adversary".to_owned(),
            },
        )
}

/// Windows of the run, four per repetition: accuracy, stress (the share of wrong answers)
/// and antifragility (accuracy gained per unit of stress against the previous window).
fn windows(r: &[ItemRecord]) -> Vec<Window> {
    let per = (r.len() / 4).max(1);
    let mut windows: Vec<Window> = Vec::new();
    for (w, chunk) in r.chunks(per).enumerate() {
        let acc =
            chunk.iter().filter(|x| x.correct == Some(true)).count() as f64 / chunk.len() as f64;
        let (bad, all) = chunk.iter().fold((0usize, 0usize), |(b, a), x| {
            (
                b + x
                    .answers
                    .iter()
                    .filter(|(_, ok)| *ok == Some(false))
                    .count(),
                a + x.answers.iter().filter(|(_, ok)| ok.is_some()).count(),
            )
        });
        let stress = bad as f64 / all.max(1) as f64;
        let antifragility = windows
            .last()
            .filter(|_| stress > 0.0)
            .map(|prev| (acc - prev.accuracy) / stress);
        windows.push(Window {
            from: w * per,
            n: chunk.len(),
            accuracy: acc,
            stress,
            antifragility,
        });
    }
    windows
}

/// Per domain: the mean effective number of independent voters, and the clusters of agents
/// whose errors coincide.
#[allow(clippy::type_complexity)]
fn independence_of(run: &ItemsRun) -> (BTreeMap<String, f64>, BTreeMap<String, Vec<Vec<String>>>) {
    let params_ledger = crate::trust::ledger::LedgerParams::default();
    let mut n_eff = BTreeMap::new();
    let mut clusters = BTreeMap::new();
    for (d, l) in &run.ledgers {
        let ind = l.independence(&params_ledger);
        n_eff.insert(d.clone(), ind.n_eff_mean);
        clusters.insert(d.clone(), ind.clusters);
    }
    (n_eff, clusters)
}

/// Decisions after the last adversary's quarantine before coverage is expected back.
pub const RECOVERY_AFTER: usize = 30;

/// Coverage from [`RECOVERY_AFTER`] decisions after the last adversary's quarantine to the end
/// of the run (see [`ScenarioReport::recovered`]).
fn recovered(caught: &BTreeMap<String, run::Caught>, records: &[ItemRecord]) -> Option<Rate> {
    let last = caught
        .values()
        .map(|c| c.quarantined_at)
        .collect::<Option<Vec<usize>>>()?
        .into_iter()
        .max()?;
    let tail = records.get(last + 1 + RECOVERY_AFTER..).unwrap_or_default();
    let decided = tail.iter().filter(|x| x.correct.is_some()).count();
    Some(Rate::wilson(decided, tail.len()))
}

fn scenario_report(scenario: &suite::Scenario, run: ItemsRun) -> ScenarioReport {
    let r = &run.records;
    let n = r.len();
    let count = |f: &dyn Fn(&ItemRecord) -> bool| r.iter().filter(|x| f(x)).count();
    let right = count(&|x| x.correct == Some(true));
    let wrong = count(&|x| x.correct == Some(false));
    let decided_n = right + wrong;
    let governed: Vec<bool> = r.iter().map(|x| x.correct == Some(true)).collect();
    let majority: Vec<bool> = r.iter().map(|x| x.majority).collect();
    let oracle: Vec<bool> = r.iter().map(|x| x.oracle).collect();
    let (best, best_name) = best_single(r);
    let decided_idx: Vec<usize> = (0..n).filter(|&i| r[i].correct.is_some()).collect();
    let governed_decided: Vec<bool> = decided_idx.iter().map(|&i| governed[i]).collect();
    let baseline = |name: String, v: &[bool]| {
        let on: Vec<bool> = decided_idx.iter().map(|&i| v[i]).collect();
        Baseline {
            name,
            accuracy: Rate::wilson(v.iter().filter(|b| **b).count(), v.len()),
            on_decided: Rate::wilson(on.iter().filter(|b| **b).count(), on.len()),
            lead: metrics::paired_delta(&governed_decided, &on),
            lead_all: metrics::paired_delta(&governed, v),
            discordant: [
                governed.iter().zip(v).filter(|(g, b)| **g && !**b).count(),
                governed.iter().zip(v).filter(|(g, b)| !**g && **b).count(),
            ],
        }
    };
    let baselines = vec![
        baseline("unweighted majority".to_owned(), &majority),
        baseline(
            format!("best single agent ({})", best_name.unwrap_or_default()),
            &best,
        ),
        baseline("oracle (true competence)".to_owned(), &oracle),
    ];
    let pairs: Vec<(f64, bool)> = r.iter().filter_map(ItemRecord::calibration_pair).collect();

    // True competence per agent over the run (graded answers only), against learned trust.
    let (comp, wrong_answers, all_answers) = true_competence(&run);
    let trust = agent_trust(&run, &comp);
    // Agents never graded have learned nothing (a dead agent is never heard): they are listed
    // but left out of the correlation.
    let learned: Vec<&AgentTrust> = trust.iter().filter(|t| t.n > 0).collect();
    let x: Vec<f64> = learned.iter().map(|t| t.effective).collect();
    let y = resolvable_competence(&learned);
    let (concordance, resolvable_pairs) = resolvable_concordance(&learned);
    let calibration_error = run
        .states_per_rep
        .iter()
        .filter_map(|states| {
            let pairs: Vec<(f64, f64)> = trust
                .iter()
                .filter_map(|t| {
                    states
                        .get(&(t.agent.clone(), t.domain.clone()))
                        .map(|s| (s.trust(), t.competence))
                })
                .collect();
            metrics::rmse(&pairs)
        })
        .collect();
    let attack_of = |agent: &str| attack_of(scenario, agent);
    let recovered = recovered(&run.caught, r);
    let adversaries = run
        .caught
        .iter()
        .map(|(agent, c)| Adversary {
            agent: agent.clone(),
            attack: attack_of(agent),
            accuracy: (c.graded > 0).then(|| c.right as f64 / c.graded as f64),
            caught: c.clone(),
        })
        .collect();
    let (n_eff, clusters) = independence_of(&run);
    let windows = windows(r);
    let latencies: Vec<u64> = r.iter().map(|x| x.latency_ms).collect();
    let nf = n.max(1) as f64;
    let calls: f64 = r.iter().map(|x| x.calls as f64).sum::<f64>() / nf;
    let pool: f64 = r.iter().map(|x| x.pool as f64).sum::<f64>() / nf;
    ScenarioReport {
        name: scenario.name.clone(),
        about: scenario.about.clone(),
        attacks: scenario.attacks.clone(),
        recalibrate: scenario.recalibrate,
        corrupted: 0.0,
        corrupted_weight: None,
        decisions: n,
        decided: count(&|x| x.outcome == "decided"),
        arbitrated: count(&|x| x.outcome == "arbitrated"),
        escalated: count(&|x| x.outcome == "escalated"),
        wrong,
        accuracy: Rate::wilson(right, n),
        coverage: decided_n as f64 / n.max(1) as f64,
        adversarial_only: scenario.attacks.iter().all(|a| {
            a.mode.adversarial()
                || matches!(a.mode, suite::Mode::Stance { .. })
                || (matches!(&a.mode, suite::Mode::Behave { behaviour, .. } if matches!(behaviour, crate::policy::Behaviour::Honest)))
        }),
        latency_only: !scenario.attacks.is_empty()
            && scenario.attacks.iter().all(|a| {
                matches!(
                    &a.mode,
                    suite::Mode::Behave {
                        behaviour: crate::policy::Behaviour::Slow { .. },
                        ..
                    }
                )
            }),
        decided_accuracy: Rate::wilson(right, decided_n),
        false_decisions: Rate::wilson(wrong, n),
        baselines,
        calibration: metrics::calibration(&pairs),
        risk: RiskCoverage::of(r),
        trust_spearman: metrics::spearman(&x, &y),
        trust_concordance: concordance,
        resolvable_pairs,
        calibration_error,
        trust,
        adversaries,
        recovered,
        honest: run.honest.into_iter().collect(),
        weak: run.weak.into_iter().collect(),
        honest_quarantined: run.false_alarms,
        honest_graded: run.honest_graded,
        health: run.health,
        failures: run.failures.into_values().collect(),
        agent_latency: run
            .latencies
            .iter()
            .map(|(agent, ms)| run::AgentLatency {
                agent: agent.clone(),
                answered: ms.len(),
                p50_ms: metrics::quantile(ms, 0.5),
                p99_ms: metrics::quantile(ms, 0.99),
            })
            .collect(),
        calls_per_decision: calls,
        pool_per_decision: pool,
        early_stop_saving: if pool > 0.0 { 1.0 - calls / pool } else { 0.0 },
        tokens_per_decision: r.iter().map(|x| x.tokens as f64).sum::<f64>() / nf,
        usd_per_decision: r.iter().map(|x| x.cost_usd).sum::<f64>() / nf,
        latency_p50_ms: metrics::quantile(&latencies, 0.5),
        latency_p99_ms: metrics::quantile(&latencies, 0.99),
        n_eff,
        clusters,
        windows,
        resilience: None,
        deliberation: DeliberationSummary::of(
            &r.iter().filter_map(|x| x.deliberation).collect::<Vec<_>>(),
        ),
        failure_rate: wrong_answers as f64 / all_answers.max(1) as f64,
        trajectories: run.trajectories,
        records: run.records,
    }
}

/// Writes the graded outcomes of the recalibrating scenarios into trust, at most
/// `max_outcomes` per agent and domain (the safe envelope; the agent's record across
/// domains, [`ALL_DOMAINS`](crate::trust::model::ALL_DOMAINS), gets what its domains get),
/// as one batch named `eval:RUN_ID` (undo with `conclave trust rollback eval:RUN_ID`).
///
/// The outcomes come from the first seed's run (every seed replicates the same items; the
/// envelope keeps one run from moving trust far). Nothing is written for a partial
/// (interrupted) run, an unhealthy one (too many calls failed for infrastructure reasons:
/// the run measured the infrastructure, not the pool) or a dry run; the returned record says
/// why.
pub fn recalibrate<S: TrustStore + ?Sized>(
    trust: &S,
    report: &Report,
    max_outcomes: u32,
    run_id: &str,
    dry_run: bool,
) -> Recalibration {
    let skip = |why: &str| Recalibration {
        applied: false,
        skipped: Some(why.to_owned()),
        provenance: None,
        items: 0,
        agents: Vec::new(),
    };
    if report.partial {
        return skip("the run was interrupted");
    }
    if !report.health.healthy {
        return skip(&format!(
            "the run is unhealthy ({})",
            report.health.summary()
        ));
    }
    if dry_run {
        return skip("--dry-run");
    }
    let mut used: BTreeMap<(String, String), u32> = BTreeMap::new();
    let mut changes = Vec::new();
    for c in &report.changes {
        let Change::Graded {
            domain,
            item,
            outcomes,
            verdict,
            agreement,
            overturn,
            overturn_odds,
        } = c
        else {
            continue;
        };
        let kept: Vec<(String, bool)> = outcomes
            .iter()
            .filter(|(agent, _)| {
                let n = used.entry((agent.clone(), domain.clone())).or_default();
                *n += 1;
                *n <= max_outcomes
            })
            .cloned()
            .collect();
        if !kept.is_empty() {
            changes.push(Change::Graded {
                domain: domain.clone(),
                item: item.clone(),
                outcomes: kept,
                verdict: *verdict,
                agreement: *agreement,
                overturn: *overturn,
                overturn_odds: *overturn_odds,
            });
        }
    }
    if changes.is_empty() {
        return skip(
            "no scenario recalibrates (only scenarios without attacks do, unless `recalibrate = true`)",
        );
    }
    let before = trust.snapshot().ok();
    let provenance = format!("eval:{run_id}");
    let items = changes.len();
    if let Err(e) = trust.apply(&TrustBatch {
        provenance: provenance.clone(),
        changes,
    }) {
        return skip(&format!("the trust store refused the batch: {e}"));
    }
    let after = trust.snapshot().ok();
    let mut agents = Vec::new();
    if let (Some(b), Some(a)) = (before, after) {
        for ((agent, domain), s) in &a.states {
            if !used.contains_key(&(agent.clone(), domain.clone())) {
                continue;
            }
            let prior = b.get(agent, domain).map_or(0.5, |x| x.trust());
            agents.push(TrustMove {
                agent: agent.clone(),
                domain: domain.clone(),
                before: prior,
                after: s.trust(),
                status: a.standing(agent, domain).as_str().to_owned(),
            });
        }
    }
    Recalibration {
        applied: true,
        skipped: None,
        provenance: Some(provenance),
        items,
        agents,
    }
}
