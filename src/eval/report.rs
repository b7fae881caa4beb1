//! The report of a run: `report.md` (summary first), `report.json`, `items.jsonl` (every
//! decision with its replayable record), SVG plots, and the summary the terminal shows.
//!
//! A run covers every seed of the suite (and its generated scenarios); the summary gives each
//! figure's distribution over seeds, and the checks are judged over all of them (see
//! [`check`]).
//!
//! `report.json` is byte-identical for the same suite, seeds and starting trust; everything
//! that depends on the clock or on earlier runs lives in its `volatile` section.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use super::check::{self, Check, Outcome};
use super::generate::GeneratedSet;
use super::metrics::{Dist, calibration};
use super::run::{CallHealth, FailureCount};
use super::suite::Suite;
use super::{ScenarioReport, SeedRun, SweepReport};
use crate::aggregate::Kind;
use crate::ballot::AbstentionClass;
use crate::trust::store::{Change, TrustSnapshot};

/// What the suite was.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuiteInfo {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// SHA-256 of the suite and its data files.
    pub hash: String,
    /// The first seed.
    pub seed: u64,
    /// Every seed the scenarios ran at.
    pub seeds: Vec<u64>,
    /// Items.
    pub items: usize,
    /// Repetitions.
    pub repetitions: u32,
    /// Numeric tolerance.
    pub tolerance: f64,
    /// The share of the option items a uniform guess gets right (the mean of 1/options over
    /// choice and ranking items; none when every item is numeric): accuracy at or below it
    /// says the checks describe a pool that knows nothing.
    pub chance: Option<f64>,
}

/// Whether the run measured the pool or the infrastructure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    /// At most `limit` of the completed calls failed for infrastructure reasons.
    pub healthy: bool,
    /// The limit (the suite's `max_failed_calls`).
    pub limit: f64,
    /// Calls by how they ended, over every seed and scenario.
    pub calls: CallHealth,
    /// Share of completed calls that failed for infrastructure reasons not injected.
    pub share: f64,
    /// The failed calls not injected by a scenario, per agent and reason, most first.
    pub failures: Vec<FailureCount>,
}

impl Health {
    fn of(limit: f64, reports: &[&ScenarioReport]) -> Self {
        let mut calls = CallHealth::default();
        let mut failures: std::collections::BTreeMap<(String, String), FailureCount> =
            std::collections::BTreeMap::new();
        for s in reports {
            let h = &s.health;
            calls.completed += h.completed;
            calls.answered += h.answered;
            calls.infrastructure += h.infrastructure;
            calls.injected += h.injected;
            calls.malformed += h.malformed;
            calls.declined += h.declined;
            for f in &s.failures {
                if f.class != AbstentionClass::Infrastructure || f.injected {
                    continue;
                }
                match failures.entry((f.agent.clone(), f.reason.clone())) {
                    std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(f),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(f.clone());
                    }
                }
            }
        }
        let decisions: usize = reports.iter().map(|s| s.decisions).sum();
        let share = calls.infrastructure as f64 / calls.completed.max(1) as f64;
        let mut failures: Vec<FailureCount> = failures.into_values().collect();
        failures.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.agent.cmp(&b.agent)));
        Self {
            healthy: share <= limit + 1e-12 && (calls.completed > 0 || decisions == 0),
            limit,
            calls,
            share,
            failures,
        }
    }

    /// One line: how many calls failed, of how many, and the commonest causes.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} of {} calls ({}) failed for infrastructure reasons (limit {})",
            self.calls.infrastructure,
            self.calls.completed,
            pct(self.share),
            pct(self.limit)
        );
        if self.calls.completed == 0 {
            s = "no agent call completed".to_owned();
        }
        let top: Vec<String> = self
            .failures
            .iter()
            .take(4)
            .map(|f| {
                let causes = f.causes_text();
                if causes.is_empty() {
                    format!("{} {} ×{}", f.agent, f.reason, f.calls)
                } else {
                    format!("{} {} ×{}: {causes}", f.agent, f.reason, f.calls)
                }
            })
            .collect();
        if !top.is_empty() {
            s += &format!(": {}", top.join(", "));
        }
        s
    }
}

/// One check of the report: see [`check::Check`].
pub type CheckResult = Check;

/// What the run wrote into the trust store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recalibration {
    /// Whether it was applied (not a dry run, not a partial or unhealthy run).
    pub applied: bool,
    /// Why not, if not.
    pub skipped: Option<String>,
    /// The batch's provenance (`conclave trust rollback` takes it).
    pub provenance: Option<String>,
    /// Graded items written.
    pub items: usize,
    /// Per agent and domain: trust before and after.
    pub agents: Vec<TrustMove>,
}

/// One agent's trust before and after recalibration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrustMove {
    /// The agent.
    pub agent: String,
    /// The domain.
    pub domain: String,
    /// Before.
    pub before: f64,
    /// After.
    pub after: f64,
    /// Status after.
    pub status: String,
}

/// Clock times, durations and comparisons with earlier runs: everything that may differ
/// between two runs of the same suite and seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Volatile {
    /// The run id (also the trust provenance and the folder name).
    pub run_id: String,
    /// Start, seconds since the epoch.
    pub started_at: u64,
    /// Wall time, ms.
    pub duration_ms: u64,
    /// Decisions per second of wall time.
    pub decisions_per_second: f64,
    /// The run whose recalibration this one started from, if its report is in the runs folder.
    pub previous: Option<Previous>,
}

/// A comparison with the previous run of the suite, scenario by scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Previous {
    /// Its id.
    pub run_id: String,
    /// Per scenario present in both runs.
    pub scenarios: Vec<PreviousScenario>,
}

/// One scenario against the previous run (means over seeds).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreviousScenario {
    /// The scenario.
    pub name: String,
    /// Accuracy over all items then.
    pub accuracy_before: f64,
    /// Now.
    pub accuracy_now: f64,
    /// Coverage then.
    pub coverage_before: f64,
    /// Now.
    pub coverage_now: f64,
}

/// One adversary of a scenario over seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdversarySummary {
    /// The agent.
    pub agent: String,
    /// What it did.
    pub attack: String,
    /// Graded decisions until quarantine at the seeds where it was caught.
    pub delays: Option<Dist>,
    /// Seeds where it was caught.
    pub caught: usize,
    /// Seeds where it was not.
    pub missed: usize,
}

/// One scenario over every seed: each figure's distribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioSummary {
    /// Name.
    pub name: String,
    /// What it does.
    pub about: String,
    /// Share of the pool adversarial.
    pub corrupted: f64,
    /// Seeds.
    pub seeds: usize,
    /// Share of items decided.
    pub coverage: Dist,
    /// Accuracy over all items (an escalation is not a right answer).
    pub accuracy: Dist,
    /// Accuracy of the decisions made.
    pub decided_accuracy: Dist,
    /// Wrong decisions over all items.
    pub wrong: Dist,
    /// Escalations over all items.
    pub escalated: Dist,
    /// The unweighted majority's accuracy over all items.
    pub majority: Dist,
    /// The best single agent's.
    pub best_single: Dist,
    /// The oracle's.
    pub oracle: Dist,
    /// Governed minus majority over all items.
    pub lead_majority: Dist,
    /// The oracle's accuracy on its most confident items, as many as the system decided.
    pub oracle_at_coverage: Dist,
    /// Area under the risk–coverage curve, governed.
    pub aurc: Dist,
    /// The oracle's.
    pub oracle_aurc: Dist,
    /// Calibration of verdict confidence, pooled over seeds: ECE.
    pub ece: f64,
    /// Brier score, pooled.
    pub brier: f64,
    /// Spearman of learned trust with true competence, where measurable.
    pub spearman: Option<Dist>,
    /// Agent calls per decision.
    pub calls_per_decision: Dist,
    /// Agents the policy could ask per decision.
    pub pool_per_decision: f64,
    /// Dollars per decision.
    pub usd_per_decision: Dist,
    /// Decision latency p99, ms.
    pub latency_p99_ms: Dist,
    /// The adversaries.
    pub adversaries: Vec<AdversarySummary>,
    /// Seeds at which an honest agent was quarantined.
    pub false_alarm_seeds: usize,
    /// Calls by how they ended, summed over seeds.
    pub calls: CallHealth,
    /// Calls that did not answer, per agent and reason, summed over seeds.
    pub failures: Vec<FailureCount>,
    /// What deliberation did, pooled over seeds, when any item was deliberated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliberation: Option<super::DeliberationSummary>,
}

fn dist(runs: &[&ScenarioReport], f: impl Fn(&ScenarioReport) -> f64) -> Dist {
    let v: Vec<f64> = runs.iter().map(|s| f(s)).collect();
    Dist::of(&v).unwrap_or(Dist {
        n: 0,
        mean: 0.0,
        sd: 0.0,
        min: 0.0,
        median: 0.0,
        max: 0.0,
        lo: 0.0,
        hi: 0.0,
        infinite: 0,
    })
}

impl ScenarioSummary {
    fn of(runs: &[&ScenarioReport]) -> Option<Self> {
        let first = runs.first()?;
        let base = |k: usize| {
            move |s: &ScenarioReport| s.baselines.get(k).map_or(0.0, |b| b.accuracy.value)
        };
        let pairs: Vec<(f64, bool)> = runs
            .iter()
            .flat_map(|s| s.records.iter())
            .filter_map(super::run::ItemRecord::calibration_pair)
            .collect();
        let cal = calibration(&pairs);
        let spearman: Vec<f64> = runs.iter().filter_map(|s| s.trust_spearman).collect();
        let adversaries = first
            .adversaries
            .iter()
            .map(|a| {
                let found: Vec<Option<u64>> = runs
                    .iter()
                    .map(|s| {
                        s.adversaries
                            .iter()
                            .find(|x| x.agent == a.agent)
                            .and_then(|x| x.caught.quarantined_after)
                    })
                    .collect();
                let delays: Vec<f64> = found.iter().flatten().map(|&k| k as f64).collect();
                AdversarySummary {
                    agent: a.agent.clone(),
                    attack: a.attack.clone(),
                    delays: Dist::of(&delays),
                    caught: delays.len(),
                    missed: found.len() - delays.len(),
                }
            })
            .collect();
        let mut calls = CallHealth::default();
        let mut failures: std::collections::BTreeMap<(String, String, bool), FailureCount> =
            std::collections::BTreeMap::new();
        for s in runs {
            calls.completed += s.health.completed;
            calls.answered += s.health.answered;
            calls.infrastructure += s.health.infrastructure;
            calls.injected += s.health.injected;
            calls.malformed += s.health.malformed;
            calls.declined += s.health.declined;
            for f in &s.failures {
                match failures.entry((f.agent.clone(), f.reason.clone(), f.injected)) {
                    std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(f),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(f.clone());
                    }
                }
            }
        }
        Some(Self {
            name: first.name.clone(),
            about: first.about.clone(),
            corrupted: first.corrupted,
            seeds: runs.len(),
            coverage: dist(runs, |s| s.coverage),
            accuracy: dist(runs, |s| s.accuracy.value),
            decided_accuracy: dist(runs, |s| s.decided_accuracy.value),
            wrong: dist(runs, |s| s.false_decisions.value),
            escalated: dist(runs, |s| s.escalated as f64 / s.decisions.max(1) as f64),
            majority: dist(runs, base(0)),
            best_single: dist(runs, base(1)),
            oracle: dist(runs, base(2)),
            lead_majority: dist(runs, |s| {
                s.baselines.first().map_or(0.0, |b| b.lead_all.value)
            }),
            oracle_at_coverage: dist(runs, |s| s.risk.oracle_at_coverage),
            aurc: dist(runs, |s| s.risk.aurc),
            oracle_aurc: dist(runs, |s| s.risk.oracle_aurc),
            ece: cal.ece,
            brier: cal.brier,
            spearman: Dist::of(&spearman),
            calls_per_decision: dist(runs, |s| s.calls_per_decision),
            pool_per_decision: first.pool_per_decision,
            usd_per_decision: dist(runs, |s| s.usd_per_decision),
            latency_p99_ms: dist(runs, |s| s.latency_p99_ms as f64),
            adversaries,
            false_alarm_seeds: runs
                .iter()
                .filter(|s| !s.honest_quarantined.is_empty())
                .count(),
            calls,
            failures: failures.into_values().collect(),
            deliberation: super::DeliberationSummary::of(
                &runs
                    .iter()
                    .flat_map(|s| s.records.iter())
                    .filter_map(|r| r.deliberation)
                    .collect::<Vec<_>>(),
            ),
        })
    }
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The suite.
    pub suite: SuiteInfo,
    /// Interrupted before the end: figures cover only what ran, trust was not touched.
    pub partial: bool,
    /// Whether the calls mostly went through (else the figures describe the infrastructure).
    pub health: Health,
    /// The trust store version the run started from.
    pub start_trust_version: u64,
    /// The checks, each judged over every seed (or generated scenario).
    pub checks: Vec<Check>,
    /// Per scenario, over every seed.
    pub scenarios: Vec<ScenarioSummary>,
    /// Calibration of the vote's confidence on the decisions it made, pooled over every named
    /// scenario and seed.
    pub calibration: super::metrics::Calibration,
    /// Per seed, every scenario.
    pub seeds: Vec<SeedRun>,
    /// Per sweep (at the first seed).
    pub sweeps: Vec<SweepReport>,
    /// Per generator, its scenarios and their rates.
    pub generated: Vec<GeneratedSet>,
    /// What was written into trust.
    pub recalibration: Option<Recalibration>,
    /// Times and comparisons.
    pub volatile: Volatile,
    /// The graded outcomes of the recalibrating scenarios of the first seed.
    #[serde(skip)]
    pub changes: Vec<Change>,
}

/// The share of the suite's option items a uniform guess gets right.
fn chance(suite: &Suite) -> Option<f64> {
    let guesses: Vec<f64> = suite
        .items
        .iter()
        .filter(|i| matches!(i.kind, Kind::Choice | Kind::Ranking) && !i.options.is_empty())
        .map(|i| 1.0 / i.options.len() as f64)
        .collect();
    (!guesses.is_empty()).then(|| guesses.iter().sum::<f64>() / guesses.len() as f64)
}

/// A markdown table: the header, its separator, one line per row.
fn table(m: &mut String, head: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    let _ = writeln!(m, "| {} |", head.join(" | "));
    let _ = writeln!(m, "|{}", "---|".repeat(head.len()));
    for row in rows {
        let _ = writeln!(m, "| {} |", row.join(" | "));
    }
}

fn pct(x: f64) -> String {
    format!("{}%", crate::ballot::fixed(100.0 * x, 1))
}

/// A share over seeds: the mean, and the range when it varies.
fn pct_range(d: &Dist) -> String {
    if d.n > 1 && (d.max - d.min) > 5e-4 {
        format!(
            "{} ({:.0}–{:.0})",
            pct(d.mean),
            100.0 * d.min,
            100.0 * d.max
        )
    } else {
        pct(d.mean)
    }
}

impl Report {
    pub(crate) fn new(
        suite: &Suite,
        start: &TrustSnapshot,
        seeds: Vec<SeedRun>,
        sweeps: Vec<SweepReport>,
        generated: Vec<GeneratedSet>,
        partial: bool,
    ) -> Self {
        let per_seed: Vec<&[ScenarioReport]> =
            seeds.iter().map(|s| s.scenarios.as_slice()).collect();
        let mut checks = check::judge(&suite.checks, &per_seed);
        for g in &generated {
            checks.extend(check::judge_generated(&suite.checks, &g.name, &g.reports));
        }
        let scenarios = seeds
            .first()
            .map(|s0| {
                s0.scenarios
                    .iter()
                    .filter_map(|sc| {
                        let runs: Vec<&ScenarioReport> = seeds
                            .iter()
                            .filter_map(|s| s.scenarios.iter().find(|x| x.name == sc.name))
                            .collect();
                        ScenarioSummary::of(&runs)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let all: Vec<&ScenarioReport> = seeds
            .iter()
            .flat_map(|s| s.scenarios.iter())
            .chain(generated.iter().flat_map(|g| g.reports.iter()))
            .collect();
        let health = Health::of(suite.max_failed_calls, &all);
        let pairs: Vec<(f64, bool)> = seeds
            .iter()
            .flat_map(|s| s.scenarios.iter())
            .flat_map(|s| s.records.iter())
            .filter_map(super::run::ItemRecord::calibration_pair)
            .collect();
        Self {
            calibration: calibration(&pairs),
            suite: SuiteInfo {
                name: suite.name.clone(),
                description: suite.description.clone(),
                hash: suite.hash.clone(),
                seed: suite.seed,
                seeds: seeds.iter().map(|s| s.seed).collect(),
                items: suite.items.len(),
                repetitions: suite.repetitions,
                tolerance: suite.tolerance,
                chance: chance(suite),
            },
            partial,
            health,
            start_trust_version: start.version,
            checks,
            scenarios,
            changes: seeds.first().map(|s| s.changes.clone()).unwrap_or_default(),
            seeds,
            sweeps,
            generated,
            recalibration: None,
            volatile: Volatile::default(),
        }
    }

    /// Whether the run is healthy and every check holds.
    pub fn passed(&self) -> bool {
        self.health.healthy && !self.partial && self.checks.iter().all(|c| c.pass)
    }

    /// The first seed's scenario reports (what a single-seed run gives).
    pub fn first_seed(&self) -> &[ScenarioReport] {
        self.seeds.first().map_or(&[], |s| s.scenarios.as_slice())
    }

    /// What must be read before any figure: an unhealthy or partial run (`None` when
    /// neither).
    pub fn banner(&self) -> Option<String> {
        let mut out = String::new();
        if !self.health.healthy {
            let _ = writeln!(out, "UNHEALTHY RUN: {}.", self.health.summary());
            let _ = writeln!(
                out,
                "No trust was written; failed calls are not graded, so the figures below do not describe the pool."
            );
        }
        if self.partial {
            let _ = writeln!(
                out,
                "PARTIAL RUN: interrupted; the figures cover what ran, and trust was not changed."
            );
        }
        (!out.is_empty()).then_some(out)
    }

    /// The line that says how the checks came out.
    pub fn checks_line(&self) -> String {
        let runs = self.seeds.len();
        let generated: usize = self.generated.iter().map(|g| g.outcomes.len()).sum();
        let over = match (runs, generated) {
            (0, g) => format!("over {g} generated scenarios"),
            (1, 0) => format!("at seed {}", self.suite.seed),
            (r, 0) => format!("over {r} seeds"),
            (1, g) => format!(
                "at seed {} and over {g} generated scenarios",
                self.suite.seed
            ),
            (r, g) => format!("over {r} seeds and {g} generated scenarios"),
        };
        if !self.health.healthy {
            return format!(
                "checks not judged: the run is unhealthy ({}); its figures describe the infrastructure, not the pool",
                self.health.summary()
            );
        }
        let failed = self.checks.iter().filter(|c| !c.pass).count();
        let evidence = self
            .checks
            .iter()
            .filter(|c| c.outcome == Outcome::NotEnoughEvidence)
            .count();
        if self.checks.is_empty() {
            return "no checks: the suite declares none (default_checks = false)".to_owned();
        }
        if failed == 0 {
            match self.no_better_than_chance() {
                Some(why) => format!(
                    "NO BETTER THAN CHANCE {over}: {why}; the {} checks hold, but say little about the pool",
                    self.checks.len()
                ),
                None => format!("all {} checks hold {over}", self.checks.len()),
            }
        } else if evidence > 0 {
            format!(
                "{failed} of {} checks fail {over} ({evidence} for not enough evidence)",
                self.checks.len()
            )
        } else {
            format!("{failed} of {} checks fail {over}", self.checks.len())
        }
    }

    /// The scenarios with at most half of the pool corrupted whose accuracy over all items is
    /// at or below chance, in words (`None` when there are none, or chance is not defined).
    pub fn no_better_than_chance(&self) -> Option<String> {
        let chance = self.suite.chance?;
        let weak: Vec<&ScenarioSummary> = self
            .scenarios
            .iter()
            .filter(|s| s.corrupted <= 0.5 && s.accuracy.mean <= chance)
            .collect();
        if weak.is_empty() {
            return None;
        }
        let names: Vec<&str> = weak.iter().map(|s| s.name.as_str()).collect();
        let lo = weak.iter().map(|s| s.accuracy.mean).fold(1.0, f64::min);
        let hi = weak.iter().map(|s| s.accuracy.mean).fold(0.0, f64::max);
        let decided = weak.iter().map(|s| s.coverage.mean).fold(0.0, f64::max);
        let right = if hi - lo > 5e-4 {
            format!("{}–{}", pct(lo), pct(hi))
        } else {
            pct(lo)
        };
        Some(format!(
            "in {} the pool was right on {right} of all items, at or below chance ({}), and decided at most {} of them",
            names.join(", "),
            pct(chance),
            pct(decided)
        ))
    }

    /// One paragraph: did the governed vote hold up against the baselines over the seeds,
    /// which adversaries were caught and how fast, what escalation and decisions cost.
    pub fn verdict(&self) -> String {
        let k = self.seeds.len();
        let holds = |m: check::Metric| {
            let cs: Vec<&Check> = self
                .checks
                .iter()
                .filter(|c| c.metric == m && !c.scenario.starts_with("generated"))
                .collect();
            (cs.iter().filter(|c| c.pass).count(), cs.len())
        };
        let (maj, maj_n) = holds(check::Metric::LeadMajority);
        let (best, best_n) = holds(check::Metric::LeadBestDecided);
        let low: Vec<&ScenarioSummary> = self
            .scenarios
            .iter()
            .filter(|s| s.corrupted <= 0.5)
            .collect();
        let high: Vec<&ScenarioSummary> = self
            .scenarios
            .iter()
            .filter(|s| s.corrupted > 0.5)
            .collect();
        let mean = |xs: &[&ScenarioSummary], f: fn(&ScenarioSummary) -> f64| {
            xs.iter().map(|s| f(s)).sum::<f64>() / xs.len().max(1) as f64
        };
        let mut v = String::new();
        if !low.is_empty() {
            v += &format!(
                "Over {k} seed{}: in the {} scenarios with at most half of the pool corrupted, \
                 the system decided {} of the items on average and was right on {} of all items \
                 (majority {}); accuracy over all items was not below the unweighted majority's \
                 in {maj} of {maj_n} checked scenarios, and the decisions made were not below \
                 the best single agent's in {best} of {best_n}. ",
                if k == 1 { "" } else { "s" },
                low.len(),
                pct(mean(&low, |s| s.coverage.mean)),
                pct(mean(&low, |s| s.accuracy.mean)),
                pct(mean(&low, |s| s.majority.mean)),
            );
        }
        if !high.is_empty() {
            let worst = high.iter().map(|s| s.wrong.max).fold(0.0f64, f64::max);
            v += &format!(
                "With more than half corrupted ({} scenarios) it decided wrongly on at most {} \
                 of items at any seed, escalating instead. ",
                high.len(),
                pct(worst)
            );
        }
        let advs: Vec<&AdversarySummary> =
            self.scenarios.iter().flat_map(|s| &s.adversaries).collect();
        if !advs.is_empty() {
            let caught: usize = advs.iter().map(|a| a.caught).sum();
            let missed: usize = advs.iter().map(|a| a.missed).sum();
            let worst = advs
                .iter()
                .filter_map(|a| a.delays.map(|d| d.max))
                .fold(0.0f64, f64::max);
            let delays: Vec<f64> = self
                .seeds
                .iter()
                .flat_map(|s| &s.scenarios)
                .flat_map(|s| &s.adversaries)
                .filter_map(|a| a.caught.quarantined_after.map(|k| k as f64))
                .collect();
            v += &format!(
                "Adversaries were quarantined in {caught} of {} runs (median {}, worst {worst:.0} \
                 graded decisions). ",
                caught + missed,
                Dist::of(&delays).map_or_else(|| "—".to_owned(), |d| format!("{:.0}", d.median)),
            );
        }
        if !self.scenarios.is_empty() {
            if self.calibration.n > 0 {
                v += &format!(
                    "Verdict confidence, on the {} decisions the vote made: ECE {:.3}, Brier {:.3}. ",
                    self.calibration.n, self.calibration.ece, self.calibration.brier
                );
            }
            let alarms: usize = self.scenarios.iter().map(|s| s.false_alarm_seeds).sum();
            let runs: usize = self.scenarios.iter().map(|s| s.seeds).sum();
            v += &format!("An honest agent was quarantined in {alarms} of {runs} scenario runs. ",);
            let all: Vec<&ScenarioSummary> = self.scenarios.iter().collect();
            v += &format!(
                "A decision asked {:.1} agents of {:.1} on average and cost ${:.5}. ",
                mean(&all, |s| s.calls_per_decision.mean),
                mean(&all, |s| s.pool_per_decision),
                mean(&all, |s| s.usd_per_decision.mean),
            );
        }
        for g in &self.generated {
            let r = &g.rates;
            v += &format!(
                "Over {} generated scenarios ({}): accuracy not below the majority's in {} of \
                 the {} with at most half corrupted (the oracle's: {}; below it beyond chance: \
                 {}), not below the best single agent's in {}; wrong decisions ≤ 5% of items in {} of the {} above half; detection median {}, \
                 95th percentile {}; an honest agent quarantined in {} of scenarios. ",
                r.scenarios,
                g.name,
                pct(r.not_below_majority),
                r.at_most_half,
                pct(r.oracle_not_below_majority),
                pct(r.below_majority_beyond_chance),
                pct(r.not_below_best_single),
                pct(r.safe_over_half),
                r.over_half,
                r.detection
                    .map_or_else(|| "—".to_owned(), |d| fmt_delay(d.median)),
                r.detection
                    .map_or_else(|| "—".to_owned(), |_| fmt_delay(percentile_delay(g, 0.95))),
                pct(r.false_alarm_scenarios),
            );
        }
        v.trim_end().to_owned()
    }

    /// The summary as a terminal table: one row per scenario, means over seeds (with the
    /// range of accuracy), then the checks.
    pub fn summary_table(&self) -> String {
        let mut t = comfy_table::Table::new();
        t.load_style(comfy_table::presets::ASCII_BORDERS_ONLY_CONDENSED);
        t.set_header(vec![
            "scenario",
            "corrupt",
            "decided",
            "right, all items",
            "right, decided",
            "majority",
            "best one",
            "oracle",
            "wrong",
            "escalated",
            "calls",
            "p99 ms",
            "caught (graded)",
        ]);
        for s in &self.scenarios {
            let caught: usize = s.adversaries.iter().map(|a| a.caught).sum();
            let total: usize = s.adversaries.iter().map(|a| a.caught + a.missed).sum();
            let worst = s
                .adversaries
                .iter()
                .filter_map(|a| a.delays.map(|d| d.max))
                .fold(f64::NAN, f64::max);
            t.add_row(vec![
                s.name.clone(),
                pct(s.corrupted),
                pct(s.coverage.mean),
                pct_range(&s.accuracy),
                pct(s.decided_accuracy.mean),
                pct(s.majority.mean),
                pct(s.best_single.mean),
                pct(s.oracle.mean),
                pct(s.wrong.mean),
                pct(s.escalated.mean),
                format!(
                    "{:.2}/{:.0}",
                    s.calls_per_decision.mean, s.pool_per_decision
                ),
                format!("{:.0}", s.latency_p99_ms.median),
                if total == 0 {
                    "—".to_owned()
                } else if worst.is_nan() {
                    format!("{caught}/{total}")
                } else {
                    format!("{caught}/{total} ≤{worst:.0}")
                },
            ]);
        }
        let mut out = String::new();
        if !self.scenarios.is_empty() {
            let _ = writeln!(out, "{t}");
        }
        for s in &self.scenarios {
            if let Some(d) = &s.deliberation {
                let _ = writeln!(out, "deliberation in {}: {}", s.name, d.line());
            }
        }
        for g in &self.generated {
            let r = &g.rates;
            let _ = writeln!(
                out,
                "generated {}: {} scenarios; ≥ majority in {} of {} (≤ half corrupted; below it beyond chance in {}); safe in {} of {} (> half); detection median {}, p95 {}; false alarms in {}",
                g.name,
                r.scenarios,
                pct(r.not_below_majority),
                r.at_most_half,
                pct(r.below_majority_beyond_chance),
                pct(r.safe_over_half),
                r.over_half,
                r.detection
                    .map_or_else(|| "—".to_owned(), |d| fmt_delay(d.median)),
                r.detection
                    .map_or_else(|| "—".to_owned(), |_| fmt_delay(percentile_delay(g, 0.95))),
                pct(r.false_alarm_scenarios),
            );
        }
        let _ = writeln!(out, "{}", self.checks_line());
        if self.health.healthy {
            for c in self.checks.iter().filter(|c| !c.pass) {
                let _ = writeln!(
                    out,
                    "  ✗ {} [{}{}]: {}",
                    c.check,
                    c.scenario,
                    c.agent
                        .as_ref()
                        .map_or_else(String::new, |a| format!(", {a}")),
                    c.measured
                );
            }
        }
        out
    }

    /// `report.md`: summary first, then the checks, the generated sets, each scenario and
    /// sweep.
    pub fn markdown(&self) -> String {
        let mut m = String::new();
        self.md_header(&mut m);
        self.md_summary(&mut m);
        self.md_calls(&mut m);
        self.md_trust(&mut m);
        self.md_checks(&mut m);
        self.md_generated(&mut m);
        self.md_scenarios(&mut m);
        self.md_sweeps(&mut m);
        let _ = writeln!(
            m,
            "Plots: `accuracy.svg` (accuracy against corrupted fraction), `trust.svg` (trust \
             trajectories, first seed), `calibration.svg` (calibration curve, pooled over seeds). \
             Every decision of the first seed (of every seed with `--items all`), with its \
             replayable record, is in `items.jsonl` (`conclave audit replay --items \
             items.jsonl`)."
        );
        m
    }

    /// The title, health warnings, description, seeds and verdict.
    fn md_header(&self, m: &mut String) {
        let _ = writeln!(m, "# Evaluation: {}\n", self.suite.name);
        if !self.health.healthy {
            let _ = writeln!(
                m,
                "> **UNHEALTHY RUN** — {}. Failed calls are not graded and no trust was \
                 written: the figures below describe the infrastructure, not the pool.\n",
                self.health.summary()
            );
        }
        if self.partial {
            let _ = writeln!(
                m,
                "> **PARTIAL RUN** — interrupted before the end. The figures cover only the \
                 decisions made; trust was not recalibrated.\n"
            );
        }
        let _ = writeln!(m, "{}\n", self.suite.description);
        let _ = writeln!(
            m,
            "Seeds: {} ({}). {}.\n",
            self.seeds.len(),
            seed_list(&self.suite.seeds),
            self.checks_line()
        );
        let _ = writeln!(m, "## Summary\n");
        let _ = writeln!(m, "{}\n", self.verdict());
    }
    /// One line per scenario.
    fn md_summary(&self, m: &mut String) {
        for s in &self.scenarios {
            let _ = writeln!(
                m,
                "- **{}** ({} corrupted, {} seeds): decided {} of the items (min {}, max {}); \
                 right on {} of all items (min {}, max {}) and on {} of the decisions made; \
                 wrong {}, escalated {}. Majority {}, best single agent {}, oracle {} (all \
                 items); the oracle on its {} most confident items: {}. AURC {:.3} (oracle \
                 {:.3}); ECE {:.3}, Brier {:.3} (pooled).",
                s.name,
                pct(s.corrupted),
                s.seeds,
                pct(s.coverage.mean),
                pct(s.coverage.min),
                pct(s.coverage.max),
                pct(s.accuracy.mean),
                pct(s.accuracy.min),
                pct(s.accuracy.max),
                pct(s.decided_accuracy.mean),
                pct(s.wrong.mean),
                pct(s.escalated.mean),
                pct(s.majority.mean),
                pct(s.best_single.mean),
                pct(s.oracle.mean),
                pct(s.coverage.mean),
                pct(s.oracle_at_coverage.mean),
                s.aurc.mean,
                s.oracle_aurc.mean,
                s.ece,
                s.brier,
            );
            for a in &s.adversaries {
                let _ = writeln!(
                    m,
                    "  - adversary `{}` ({}): quarantined at {} of {} seeds{}",
                    a.agent,
                    a.attack,
                    a.caught,
                    a.caught + a.missed,
                    a.delays.map_or_else(String::new, |d| format!(
                        ", after {:.0}–{:.0} graded decisions (median {:.0})",
                        d.min, d.max, d.median
                    ))
                );
            }
            if s.false_alarm_seeds > 0 {
                let _ = writeln!(
                    m,
                    "  - an honest agent was quarantined at {} of {} seeds",
                    s.false_alarm_seeds, s.seeds
                );
            }
            if let Some(d) = &s.deliberation {
                let _ = writeln!(m, "  - deliberation: {}", d.line());
            }
        }
    }
    /// Calls that did not answer, by class.
    fn md_calls(&self, m: &mut String) {
        let failures: Vec<(&str, &FailureCount)> = self
            .scenarios
            .iter()
            .flat_map(|s| s.failures.iter().map(move |f| (s.name.as_str(), f)))
            .collect();
        let _ = writeln!(m, "\n### Calls that did not answer\n");
        let _ = writeln!(
            m,
            "{} calls completed over every seed and scenario: {} answered, {} failed for \
             infrastructure reasons (not graded), {} failed as the scenarios injected (not \
             graded), {} malformed (graded as wrong), {} declined. {}.\n",
            self.health.calls.completed,
            self.health.calls.answered,
            self.health.calls.infrastructure,
            self.health.calls.injected,
            self.health.calls.malformed,
            self.health.calls.declined,
            if self.health.healthy {
                "The run is healthy".to_owned()
            } else {
                format!("The run is unhealthy: {}", self.health.summary())
            }
        );
        if !failures.is_empty() {
            table(
                m,
                &[
                    "scenario", "agent", "reason", "class", "injected", "calls", "causes",
                ],
                failures.iter().map(|(s, f)| {
                    vec![
                        (*s).to_owned(),
                        f.agent.clone(),
                        f.reason.clone(),
                        f.class.as_str().to_owned(),
                        if f.injected { "yes" } else { "no" }.to_owned(),
                        f.calls.to_string(),
                        f.causes_text().replace('|', "/"),
                    ]
                }),
            );
        }
    }
    /// The recalibration and what changed since the previous run.
    fn md_trust(&self, m: &mut String) {
        if let Some(r) = &self.recalibration {
            let _ = writeln!(m, "\n### Trust recalibration\n");
            match (&r.provenance, r.applied) {
                (Some(p), true) => {
                    let _ = writeln!(
                        m,
                        "Applied {} graded items of seed {} as batch `{p}` (undo: `conclave trust rollback {p}`).\n",
                        r.items, self.suite.seed
                    );
                }
                _ => {
                    let _ = writeln!(
                        m,
                        "Not applied: {}.\n",
                        r.skipped.as_deref().unwrap_or("dry run")
                    );
                }
            }
            table(
                m,
                &["agent", "domain", "before", "after", "status"],
                r.agents.iter().map(|a| {
                    vec![
                        a.agent.clone(),
                        a.domain.clone(),
                        format!("{:.3}", a.before),
                        format!("{:.3}", a.after),
                        a.status.clone(),
                    ]
                }),
            );
        }
        if let Some(p) = &self.volatile.previous {
            let _ = writeln!(m, "\n### Against the previous run `{}`\n", p.run_id);
            table(
                m,
                &[
                    "scenario",
                    "accuracy then",
                    "now",
                    "Δ points",
                    "coverage then",
                    "now",
                ],
                p.scenarios.iter().map(|s| {
                    vec![
                        s.name.clone(),
                        pct(s.accuracy_before),
                        pct(s.accuracy_now),
                        format!("{:+.1}", 100.0 * (s.accuracy_now - s.accuracy_before)),
                        pct(s.coverage_before),
                        pct(s.coverage_now),
                    ]
                }),
            );
        }
    }
    /// The checks, each with its verdict.
    fn md_checks(&self, m: &mut String) {
        let _ = writeln!(m, "\n## Checks\n");
        let _ = writeln!(
            m,
            "Each check is judged over every seed by its statistic: `share` (the criterion \
             holds, with evidence, at that share of seeds), `mean` (the one-sided 95% \
             Student-t bound of the mean over seeds), `pooled` (every seed's items together). \
             A run without enough evidence counts against the check.\n"
        );
        table(
            m,
            &["check", "scenario", "criterion", "measured", "holds"],
            self.checks.iter().map(|c| {
                vec![
                    c.check.clone(),
                    match &c.agent {
                        Some(a) => format!("{} ({a})", c.scenario),
                        None => c.scenario.clone(),
                    },
                    c.criterion.clone(),
                    c.measured.clone(),
                    match c.outcome {
                        Outcome::Holds => "yes".to_owned(),
                        Outcome::Fails => "**no**".to_owned(),
                        Outcome::NotEnoughEvidence => "**no** (evidence)".to_owned(),
                    },
                ]
            }),
        );
    }
    /// The generated sets.
    fn md_generated(&self, m: &mut String) {
        for g in &self.generated {
            let r = &g.rates;
            let _ = writeln!(m, "\n## Generated scenarios: {}\n\n{}\n", g.name, g.about);
            let _ = writeln!(
                m,
                "{} scenarios (seed {}). With at most half of the agents corrupted ({}): \
                 accuracy over all items not below the unweighted majority's in {} (the \
                 oracle's, weighting every agent by its true competence: {}); below it beyond \
                 chance (exact sign test at 5% on the items where they differ) in {}; over \
                 their items, right where the majority was wrong on {} and the reverse on {}; \
                 not below the best single agent's in {}. Above half ({}): wrong decisions ≤ \
                 5% of items in {}. Detection: {}{}. An honest agent quarantined in {} of \
                 scenarios. Mean coverage {}.\n",
                r.scenarios,
                g.seed,
                r.at_most_half,
                pct(r.not_below_majority),
                pct(r.oracle_not_below_majority),
                pct(r.below_majority_beyond_chance),
                r.versus_majority[0],
                r.versus_majority[1],
                pct(r.not_below_best_single),
                r.over_half,
                pct(r.safe_over_half),
                r.detection.map_or_else(
                    || "no adversary caught".to_owned(),
                    |d| format!(
                        "median {}, 95th percentile {}, worst {} graded decisions ({} never caught)",
                        fmt_delay(d.median),
                        fmt_delay(percentile_delay(g, 0.95)),
                        fmt_delay(d.max),
                        d.infinite
                    )
                ),
                if r.detection_without_evidence > 0 {
                    format!(
                        "; {} adversaries graded too few times to say",
                        r.detection_without_evidence
                    )
                } else {
                    String::new()
                },
                pct(r.false_alarm_scenarios),
                pct(r.coverage),
            );
            table(
                m,
                &[
                    "scenario",
                    "pool and attacks",
                    "corrupted",
                    "right",
                    "decided",
                    "wrong",
                    "majority",
                    "best one",
                    "caught",
                    "false alarms",
                ],
                g.outcomes.iter().map(|o| {
                    vec![
                        o.name.clone(),
                        o.about.clone(),
                        pct(o.corrupted),
                        pct(o.accuracy),
                        pct(o.coverage),
                        pct(o.wrong),
                        pct(o.majority),
                        pct(o.best_single),
                        o.detection
                            .iter()
                            .map(|(_, k, g)| {
                                k.map_or_else(|| format!("no ({g})"), |k| k.to_string())
                            })
                            .collect::<Vec<_>>()
                            .join(" "),
                        o.false_alarms.to_string(),
                    ]
                }),
            );
        }
    }
    /// Each scenario at the first seed.
    fn md_scenarios(&self, m: &mut String) {
        let _ = writeln!(m, "\n## Scenarios (first seed, {})\n", self.suite.seed);
        for s in self.first_seed() {
            let _ = writeln!(m, "### {}\n\n{}\n", s.name, s.about);
            let _ = writeln!(
                m,
                "Decisions {}: decided {}, arbitrated {}, escalated {}, wrong {}. Accuracy over \
                 decisions made {} (95% CI {}–{}). Calibration of verdict confidence: ECE {:.3}, \
                 Brier {:.3}. Learned trust vs true competence: Spearman {}; calibration error \
                 per repetition {}. Effective independent voters {}. Resilience R {}.\n",
                s.decisions,
                s.decided,
                s.arbitrated,
                s.escalated,
                s.wrong,
                pct(s.decided_accuracy.value),
                pct(s.decided_accuracy.lo),
                pct(s.decided_accuracy.hi),
                s.calibration.ece,
                s.calibration.brier,
                s.trust_spearman
                    .map_or_else(|| "n/a".to_owned(), |r| format!("{r:.3}")),
                s.calibration_error
                    .iter()
                    .map(|x| format!("{x:.3}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                s.n_eff
                    .iter()
                    .map(|(d, n)| format!("{n:.2} ({d})"))
                    .collect::<Vec<_>>()
                    .join(", "),
                s.resilience
                    .map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}"))
            );
            table(
                m,
                &[
                    "agent",
                    "domain",
                    "true competence",
                    "learned trust",
                    "effective",
                    "n",
                    "status",
                ],
                s.trust.iter().map(|t| {
                    vec![
                        t.agent.clone(),
                        t.domain.clone(),
                        format!("{:.3}", t.competence),
                        format!("{:.3}", t.trust),
                        format!("{:.3}", t.effective),
                        t.n.to_string(),
                        t.status.as_str().to_owned(),
                    ]
                }),
            );
            if !s.agent_latency.is_empty() {
                let _ = writeln!(m, "\nAnswered calls and their latency, per agent:\n");
                table(
                    m,
                    &["agent", "answered", "latency p50 ms", "latency p99 ms"],
                    s.agent_latency.iter().map(|l| {
                        vec![
                            l.agent.clone(),
                            l.answered.to_string(),
                            l.p50_ms.to_string(),
                            l.p99_ms.to_string(),
                        ]
                    }),
                );
            }
            let _ = writeln!(m, "\nWindows (A(t) = ΔAccuracy / Stress):\n");
            table(
                m,
                &["from", "n", "accuracy", "stress", "A(t)"],
                s.windows.iter().map(|w| {
                    vec![
                        w.from.to_string(),
                        w.n.to_string(),
                        pct(w.accuracy),
                        pct(w.stress),
                        w.antifragility
                            .map_or_else(|| "—".to_owned(), |a| format!("{a:+.2}")),
                    ]
                }),
            );
            let _ = writeln!(m);
        }
    }
    /// Each sweep.
    fn md_sweeps(&self, m: &mut String) {
        for sw in &self.sweeps {
            let _ = writeln!(
                m,
                "## Sweep: {} (seed {})\n\n{}\n",
                sw.name, sw.seed, sw.about
            );
            table(
                m,
                &[
                    "rule",
                    "pool",
                    "corrupted",
                    "governed",
                    "wrong",
                    "escalated",
                    "majority",
                    "best single",
                    "oracle",
                    "calls/dec",
                ],
                sw.points.iter().map(|p| {
                    vec![
                        p.rule.clone(),
                        p.pool.to_string(),
                        format!("{} ({})", pct(p.fraction), p.corrupted),
                        pct(p.accuracy),
                        pct(p.false_decisions),
                        pct(p.escalations),
                        pct(p.majority),
                        pct(p.best_single),
                        pct(p.oracle),
                        format!("{:.2}", p.calls_per_decision),
                    ]
                }),
            );
            let _ = writeln!(m);
        }
    }

    /// Writes `report.md`, `report.json`, `items.jsonl` (every decision of the first seed, or
    /// of every seed with `all_items`) and the plots into `dir`. Each seed's run is
    /// reproducible from the suite and the seed, so the other seeds' decisions can always be
    /// recorded again (`conclave eval SUITE --seeds N`).
    ///
    /// # Errors
    /// The first file that cannot be written.
    pub fn write(&self, dir: &Path, all_items: bool) -> Result<(), String> {
        use std::io::Write as _;
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))
        };
        let json = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        write("report.json", &(json + "\n"))?;
        write("report.md", &self.markdown())?;
        // Every decision of the first seed (or of every seed and generated scenario), one JSON
        // object per line, streamed.
        let p = dir.join("items.jsonl");
        let file =
            std::fs::File::create(&p).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
        let mut out = std::io::BufWriter::new(file);
        let seeds = self
            .seeds
            .iter()
            .take(if all_items { usize::MAX } else { 1 })
            .flat_map(|s| s.scenarios.iter());
        let generated = self.generated.iter().flat_map(|g| g.reports.iter());
        for sc in seeds.chain(generated) {
            for r in &sc.records {
                let line = ItemLine {
                    scenario: &sc.name,
                    item: r,
                };
                serde_json::to_writer(&mut out, &line).map_err(|e| e.to_string())?;
                out.write_all(b"\n")
                    .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
            }
        }
        out.flush()
            .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
        write("accuracy.svg", &self.accuracy_plot())?;
        write("trust.svg", &self.trust_plot())?;
        write("calibration.svg", &self.calibration_plot())?;
        Ok(())
    }

    /// Accuracy against corrupted fraction: per rule, and the baselines (the largest pool of
    /// the first sweep; without sweeps, the scenarios by their corrupted share, means over
    /// seeds).
    pub fn accuracy_plot(&self) -> String {
        let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        let title;
        if let Some(sw) = self.sweeps.first() {
            let n = sw.points.iter().map(|p| p.pool).max().unwrap_or(0);
            title = format!("{}: accuracy vs corrupted fraction ({n} agents)", sw.name);
            let pts: Vec<_> = sw.points.iter().filter(|p| p.pool == n).collect();
            let mut rules: Vec<&str> = pts.iter().map(|p| p.rule.as_str()).collect();
            rules.dedup();
            for r in rules {
                series.push((
                    format!("governed ({r})"),
                    pts.iter()
                        .filter(|p| p.rule == r)
                        .map(|p| (p.fraction, p.accuracy))
                        .collect(),
                ));
            }
            if let Some(r0) = pts.first().map(|p| p.rule.clone()) {
                let base = pts.iter().filter(|p| p.rule == r0);
                series.push((
                    "unweighted majority".into(),
                    base.clone().map(|p| (p.fraction, p.majority)).collect(),
                ));
                series.push((
                    "best single agent".into(),
                    base.clone().map(|p| (p.fraction, p.best_single)).collect(),
                ));
                series.push((
                    "oracle".into(),
                    base.map(|p| (p.fraction, p.oracle)).collect(),
                ));
            }
        } else {
            title = "accuracy vs corrupted share (scenarios, mean over seeds)".to_owned();
            let mut s: Vec<&ScenarioSummary> = self.scenarios.iter().collect();
            s.sort_by(|a, b| a.corrupted.total_cmp(&b.corrupted));
            let line =
                |f: fn(&ScenarioSummary) -> f64| s.iter().map(|x| (x.corrupted, f(x))).collect();
            series.push(("governed".into(), line(|x| x.accuracy.mean)));
            series.push(("unweighted majority".into(), line(|x| x.majority.mean)));
            series.push(("best single agent".into(), line(|x| x.best_single.mean)));
            series.push(("oracle".into(), line(|x| x.oracle.mean)));
        }
        let xmax = series
            .iter()
            .flat_map(|(_, pts)| pts.iter().map(|p| p.0))
            .fold(0.1f64, f64::max);
        line_plot(
            &title,
            "corrupted fraction",
            "accuracy",
            (0.0, xmax),
            &series,
            None,
        )
    }

    /// Trust per agent over the decisions of the first scenario of the first seed, with the
    /// quarantine line.
    pub fn trust_plot(&self) -> String {
        let Some(s) = self.first_seed().first() else {
            return line_plot("trust", "decision", "trust", (0.0, 1.0), &[], Some(0.5));
        };
        let xmax = s.decisions.max(1) as f64;
        let series: Vec<(String, Vec<(f64, f64)>)> = s
            .trajectories
            .iter()
            .map(|(a, t)| (a.clone(), t.iter().map(|&(x, y)| (x as f64, y)).collect()))
            .collect();
        line_plot(
            &format!("{}: trust trajectories (dashed: quarantine floor)", s.name),
            "decision",
            "trust",
            (0.0, xmax),
            &series,
            Some(0.5),
        )
    }

    /// Calibration curve of verdict confidence, per scenario, pooled over seeds.
    pub fn calibration_plot(&self) -> String {
        let mut series: Vec<(String, Vec<(f64, f64)>)> =
            vec![("perfect".to_owned(), vec![(0.0, 0.0), (1.0, 1.0)])];
        for s in self.first_seed() {
            let pairs: Vec<(f64, bool)> = self
                .seeds
                .iter()
                .filter_map(|sd| sd.scenarios.iter().find(|x| x.name == s.name))
                .flat_map(|x| x.records.iter())
                .filter_map(super::run::ItemRecord::calibration_pair)
                .collect();
            series.push((
                s.name.clone(),
                calibration(&pairs)
                    .bins
                    .iter()
                    .map(|b| (b.confidence, b.accuracy))
                    .collect(),
            ));
        }
        line_plot(
            "calibration of verdict confidence",
            "stated confidence",
            "share right",
            (0.0, 1.0),
            &series,
            None,
        )
    }
}

/// One line of `items.jsonl`.
#[derive(Serialize)]
struct ItemLine<'a> {
    scenario: &'a str,
    #[serde(flatten)]
    item: &'a super::ItemRecord,
}

/// Seeds as `a–b` when consecutive, else listed.
fn seed_list(seeds: &[u64]) -> String {
    match (seeds.first(), seeds.last()) {
        (Some(a), Some(b)) if seeds.windows(2).all(|w| w[1] == w[0].wrapping_add(1)) => {
            if a == b {
                a.to_string()
            } else {
                format!("{a}–{b}")
            }
        }
        _ => seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn fmt_delay(d: f64) -> String {
    if d.is_finite() {
        format!("{d:.0}")
    } else {
        "never".to_owned()
    }
}

/// The `q`-quantile (nearest rank) of a generated set's detection delays, never-caught
/// adversaries graded at least 25 times counting as infinite.
fn percentile_delay(g: &GeneratedSet, q: f64) -> f64 {
    let mut v: Vec<f64> = Vec::new();
    for o in &g.outcomes {
        for (_, caught, graded) in &o.detection {
            match caught {
                Some(k) => v.push(*k as f64),
                None if *graded >= 25 => v.push(f64::INFINITY),
                None => {}
            }
        }
    }
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let k = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[k]
}

/// Okabe and Ito's colours, distinguishable with every common colour-vision deficiency
/// (yellow left out: it does not show on white).
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(230, 159, 0),   // orange
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(0, 0, 0),       // black
];

/// Series `k`'s colour and whether it is dashed (after the seven colours, dashed lines).
fn series_style(k: usize) -> (RGBColor, bool) {
    (PALETTE[k % PALETTE.len()], (k / PALETTE.len()) % 2 == 1)
}

/// A line chart as SVG text; the legend stands beside the plot, never over the data.
fn line_plot(
    title: &str,
    xlabel: &str,
    ylabel: &str,
    xrange: (f64, f64),
    series: &[(String, Vec<(f64, f64)>)],
    hline: Option<f64>,
) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (860, 500)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let (plot, legend) = root.split_horizontally(660);
        let chart = ChartBuilder::on(&plot)
            .caption(title, ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(xrange.0..xrange.1.max(xrange.0 + 1e-9), 0.0f64..1.02);
        let Ok(mut chart) = chart else {
            return svg_fallback(title);
        };
        let _ = chart.configure_mesh().x_desc(xlabel).y_desc(ylabel).draw();
        let grey = RGBColor(120, 120, 120);
        if let Some(y) = hline {
            let _ = chart.draw_series(DashedLineSeries::new(
                vec![(xrange.0, y), (xrange.1, y)],
                6,
                4,
                grey.stroke_width(1),
            ));
        }
        for (k, (_, pts)) in series.iter().enumerate() {
            let (color, dashed) = series_style(k);
            let style = color.stroke_width(2);
            let _ = if dashed {
                chart.draw_series(DashedLineSeries::new(pts.iter().copied(), 8, 5, style))
            } else {
                chart.draw_series(LineSeries::new(pts.iter().copied(), style))
            };
            if pts.len() < 60 {
                let _ = chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())));
            }
        }
        // The legend: one row per series, beside the plot.
        let rows = series.len().min(22);
        for (k, (name, _)) in series.iter().take(rows).enumerate() {
            let (color, dashed) = series_style(k);
            let y = 50 + 20 * k as i32;
            let style = color.stroke_width(2);
            let segments: Vec<Vec<(i32, i32)>> = if dashed {
                vec![vec![(8, y), (16, y)], vec![(21, y), (30, y)]]
            } else {
                vec![vec![(8, y), (30, y)]]
            };
            for seg in segments {
                let _ = legend.draw(&PathElement::new(seg, style));
            }
            let label: String = name.chars().take(24).collect();
            let _ = legend.draw(&Text::new(label, (36, y - 7), ("sans-serif", 13)));
        }
        if series.len() > rows {
            let y = 50 + 20 * rows as i32;
            let _ = legend.draw(&Text::new(
                format!("… and {} more", series.len() - rows),
                (8, y - 7),
                ("sans-serif", 13),
            ));
        }
        if hline.is_some() {
            let y = 50 + 20 * (rows as i32 + 1);
            let _ = legend.draw(&PathElement::new(
                vec![(8, y), (16, y)],
                grey.stroke_width(1),
            ));
            let _ = legend.draw(&PathElement::new(
                vec![(21, y), (30, y)],
                grey.stroke_width(1),
            ));
            let _ = legend.draw(&Text::new("floor", (36, y - 7), ("sans-serif", 13)));
        }
        let _ = root.present();
    }
    svg
}

fn svg_fallback(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"800\" height=\"60\"><text x=\"10\" y=\"30\">{title}: no data</text></svg>\n"
    )
}
