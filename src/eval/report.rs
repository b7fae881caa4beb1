//! The report of a run: `report.md` (summary first), `report.json`, SVG plots, and the
//! summary table the terminal shows.
//!
//! `report.json` is byte-identical for the same suite, seed and starting trust; everything
//! that depends on the clock or on earlier runs lives in its `volatile` section.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use super::suite::Suite;
use super::{ScenarioReport, SweepReport};
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
    /// Seed.
    pub seed: u64,
    /// Items.
    pub items: usize,
    /// Repetitions.
    pub repetitions: u32,
    /// Numeric tolerance.
    pub tolerance: f64,
}

/// One acceptance check of the harness.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// What is checked.
    pub check: String,
    /// Where.
    pub scenario: String,
    /// The measured value, in words.
    pub measured: String,
    /// Whether it holds.
    pub pass: bool,
}

/// What the run wrote into the trust store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recalibration {
    /// Whether it was applied (not a dry run, not a partial run).
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
/// between two runs of the same suite and seed.
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
    /// The previous run of the same suite, if one is in the runs folder.
    pub previous: Option<Previous>,
}

/// A comparison with the previous run of the suite.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Previous {
    /// Its id.
    pub run_id: String,
    /// Its accuracy in the first scenario.
    pub accuracy: f64,
    /// This run's accuracy in the first scenario.
    pub now: f64,
    /// Points gained (negative: lost).
    pub delta_points: f64,
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The suite.
    pub suite: SuiteInfo,
    /// Interrupted before the end: figures cover only what ran, trust was not touched.
    pub partial: bool,
    /// The trust store version the run started from.
    pub start_trust_version: u64,
    /// The acceptance checks.
    pub checks: Vec<Check>,
    /// Per scenario.
    pub scenarios: Vec<ScenarioReport>,
    /// Per sweep.
    pub sweeps: Vec<SweepReport>,
    /// What was written into trust.
    pub recalibration: Option<Recalibration>,
    /// Times and comparisons.
    pub volatile: Volatile,
    /// The graded outcomes of the recalibrating scenarios.
    #[serde(skip)]
    pub changes: Vec<Change>,
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
    format!("{:.1}%", 100.0 * x)
}

impl Report {
    pub(crate) fn new(
        suite: &Suite,
        start: &TrustSnapshot,
        scenarios: Vec<ScenarioReport>,
        sweeps: Vec<SweepReport>,
        changes: Vec<Change>,
        partial: bool,
    ) -> Self {
        let mut report = Self {
            suite: SuiteInfo {
                name: suite.name.clone(),
                description: suite.description.clone(),
                hash: suite.hash.clone(),
                seed: suite.seed,
                items: suite.items.len(),
                repetitions: suite.repetitions,
                tolerance: suite.tolerance,
            },
            partial,
            start_trust_version: start.version,
            checks: Vec::new(),
            scenarios,
            sweeps,
            recalibration: None,
            volatile: Volatile::default(),
            changes,
        };
        report.checks = report.acceptance();
        report
    }

    /// The harness's acceptance checks, per scenario.
    fn acceptance(&self) -> Vec<Check> {
        let mut out = Vec::new();
        let clean = self.scenarios.iter().find(|s| s.corrupted == 0.0);
        for s in &self.scenarios {
            // With more than half of the pool corrupted no vote can beat the honest minority
            // before trust has caught the coalition; what counts there is not deciding
            // wrongly (the check below).
            // An agent that is only slow is not outvoted but not waited for (the Governor
            // decides once the quorum is in): the baselines, which wait for every answer,
            // are reported; the check is the cost against the clean run.
            let latency_only = !s.attacks.is_empty()
                && s.attacks.iter().all(|a| {
                    matches!(
                        &a.mode,
                        super::suite::Mode::Behave {
                            behaviour: crate::policy::Behaviour::Slow { .. },
                            ..
                        }
                    )
                });
            if let Some(c) = clean.filter(|_| latency_only) {
                let drop = c.decided_accuracy.value - s.decided_accuracy.value;
                out.push(Check {
                    check: "slow agents only: accuracy within 5 points of clean".to_owned(),
                    scenario: s.name.clone(),
                    measured: format!(
                        "{:+.1} points vs {} (decided {} vs {})",
                        -100.0 * drop,
                        c.name,
                        pct(s.coverage),
                        pct(c.coverage)
                    ),
                    pass: drop <= 0.05 + 1e-12,
                });
            }
            for b in s
                .baselines
                .iter()
                .filter(|_| s.corrupted <= 0.5 && !latency_only)
            {
                if b.name.starts_with("oracle") {
                    continue;
                }
                if s.decided + s.arbitrated == 0 {
                    continue;
                }
                out.push(Check {
                    check: format!("governed not below {} (decided items, 95% CI)", b.name),
                    scenario: s.name.clone(),
                    measured: format!(
                        "{:+.1} points (95% CI {:+.1} to {:+.1}) over {} decided items",
                        100.0 * b.lead.value,
                        100.0 * b.lead.lo,
                        100.0 * b.lead.hi,
                        b.on_decided.n
                    ),
                    pass: b.lead.hi >= 0.0,
                });
            }
            if let Some(c) = clean
                && s.corrupted > 0.0
                && s.corrupted < 0.5
                && s.adversarial_only
            {
                // Decisions made: an escalation is the safe answer to an attack, not an error
                // (the coverage is shown beside it).
                // When the attack takes the strongest agents, even the oracle loses what they
                // knew; the governed vote is held to 5 points beyond that loss.
                let drop = c.decided_accuracy.value - s.decided_accuracy.value;
                let oracle = |x: &ScenarioReport| {
                    x.baselines
                        .iter()
                        .find(|b| b.name.starts_with("oracle"))
                        .map_or(0.0, |b| b.on_decided.value)
                };
                let oracle_drop = (oracle(c) - oracle(s)).max(0.0);
                out.push(Check {
                    check: "under half corrupted: accuracy within 5 points of clean (beyond the oracle's own loss)"
                        .to_owned(),
                    scenario: s.name.clone(),
                    measured: format!(
                        "{:+.1} points vs {}, oracle {:+.1} (decided {} vs {})",
                        -100.0 * drop,
                        c.name,
                        -100.0 * oracle_drop,
                        pct(s.coverage),
                        pct(c.coverage)
                    ),
                    pass: drop - oracle_drop <= 0.05 + 1e-12,
                });
            }
            if s.corrupted > 0.5 {
                let safe = 1.0 - s.false_decisions.value;
                out.push(Check {
                    check: "over half corrupted: no wrong decision in ≥ 90% of items".to_owned(),
                    scenario: s.name.clone(),
                    measured: pct(safe),
                    pass: safe >= 0.9,
                });
            }
            for a in &s.adversaries {
                let (measured, pass) = match a.caught.quarantined_after {
                    Some(0) => ("quarantined before the run".to_owned(), true),
                    Some(k) => (format!("quarantined after {k} graded decisions"), k <= 20),
                    None if a.caught.graded < 20 => (
                        format!("not quarantined; only {} graded decisions", a.caught.graded),
                        true,
                    ),
                    None => (
                        format!("not quarantined after {} graded decisions", a.caught.graded),
                        false,
                    ),
                };
                out.push(Check {
                    check: format!("adversary {} quarantined within 20", a.agent),
                    scenario: s.name.clone(),
                    measured,
                    pass,
                });
            }
            // Honest agents made to fail together (a blind spot, sycophancy) are not
            // adversaries; a trusted one whose error rate jumps is quarantined on suspicion by
            // design, so its effective trust is not meant to follow its competence there.
            if let Some(r) = s.trust_spearman.filter(|_| s.adversarial_only) {
                out.push(Check {
                    check: "effective trust ~ true competence (Spearman ≥ 0.8)".to_owned(),
                    scenario: s.name.clone(),
                    measured: format!("{r:.3}"),
                    pass: r >= 0.8,
                });
            }
        }
        out
    }

    /// Whether every check holds.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }

    /// One paragraph: did the governed vote hold up against the baselines, which
    /// adversaries were caught and how fast, what it cost.
    pub fn verdict(&self) -> String {
        let checked: Vec<&ScenarioReport> = self
            .scenarios
            .iter()
            .filter(|s| s.corrupted <= 0.5)
            .collect();
        let not_below = |k: usize| {
            checked
                .iter()
                .filter(|s| s.baselines.get(k).is_some_and(|b| b.lead.hi >= 0.0))
                .count()
        };
        let above = |k: usize| {
            checked
                .iter()
                .filter(|s| s.baselines.get(k).is_some_and(|b| b.lead.lo > 0.0))
                .count()
        };
        let adversaries: Vec<&super::Adversary> =
            self.scenarios.iter().flat_map(|s| &s.adversaries).collect();
        let caught: Vec<u64> = adversaries
            .iter()
            .filter_map(|a| a.caught.quarantined_after)
            .collect();
        let over: Vec<&ScenarioReport> = self
            .scenarios
            .iter()
            .filter(|s| s.corrupted > 0.5)
            .collect();
        let mean = |f: fn(&ScenarioReport) -> f64| {
            self.scenarios.iter().map(f).sum::<f64>() / self.scenarios.len().max(1) as f64
        };
        let (calls, pool, usd) = (
            mean(|s| s.calls_per_decision),
            mean(|s| s.pool_per_decision),
            mean(|s| s.usd_per_decision),
        );
        let mut v = format!(
            "In the {} scenarios with at most half of the pool corrupted, the governed vote was \
             not below the unweighted majority in {} (significantly above it in {}) and not \
             below the best single agent in {} (above it in {}), on the items it decided. ",
            checked.len(),
            not_below(0),
            above(0),
            not_below(1),
            above(1)
        );
        if !over.is_empty() {
            let worst = over
                .iter()
                .map(|s| 1.0 - s.false_decisions.value)
                .fold(1.0f64, f64::min);
            v += &format!(
                "With more than half corrupted ({} scenarios) it decided wrongly on at most {} \
                 of items, escalating instead. ",
                over.len(),
                pct(1.0 - worst)
            );
        }
        v += &format!(
            "{} of {} adversaries were quarantined{}. A decision asked {:.1} agents of {:.1} on \
             average and cost ${:.5}.",
            caught.len(),
            adversaries.len(),
            caught.iter().max().map_or_else(String::new, |w| format!(
                ", each within {w} graded decisions"
            )),
            calls,
            pool,
            usd
        );
        v
    }

    /// The summary as a terminal table: one row per scenario.
    pub fn summary_table(&self) -> String {
        let mut t = comfy_table::Table::new();
        t.load_style(comfy_table::presets::ASCII_BORDERS_ONLY_CONDENSED);
        t.set_header(vec![
            "scenario",
            "corrupt",
            "decided",
            "right (95% CI)",
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
            let base = |k: usize| {
                s.baselines
                    .get(k)
                    .map_or_else(String::new, |b| pct(b.on_decided.value))
            };
            let caught = s
                .adversaries
                .iter()
                .filter(|a| a.caught.quarantined_after.is_some())
                .count();
            let worst = s
                .adversaries
                .iter()
                .filter_map(|a| a.caught.quarantined_after)
                .max();
            t.add_row(vec![
                s.name.clone(),
                pct(s.corrupted),
                pct(s.coverage),
                format!(
                    "{} ({:.0}–{:.0})",
                    pct(s.decided_accuracy.value),
                    100.0 * s.decided_accuracy.lo,
                    100.0 * s.decided_accuracy.hi
                ),
                base(0),
                base(1),
                base(2),
                pct(s.false_decisions.value),
                pct(s.escalated as f64 / s.decisions.max(1) as f64),
                format!("{:.2}/{:.0}", s.calls_per_decision, s.pool_per_decision),
                s.latency_p99_ms.to_string(),
                if s.adversaries.is_empty() {
                    "—".to_owned()
                } else {
                    format!(
                        "{caught}/{}{}",
                        s.adversaries.len(),
                        worst.map_or_else(String::new, |w| format!(" ≤{w}"))
                    )
                },
            ]);
        }
        let failed: Vec<&Check> = self.checks.iter().filter(|c| !c.pass).collect();
        let mut out = format!("{t}\n");
        if failed.is_empty() {
            let _ = writeln!(out, "all {} checks hold", self.checks.len());
        } else {
            let _ = writeln!(
                out,
                "{} of {} checks fail:",
                failed.len(),
                self.checks.len()
            );
            for c in failed {
                let _ = writeln!(out, "  ✗ {} [{}]: {}", c.check, c.scenario, c.measured);
            }
        }
        out
    }

    /// `report.md`: summary first, then each scenario and sweep.
    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let _ = writeln!(m, "# Evaluation: {}\n", self.suite.name);
        if self.partial {
            let _ = writeln!(
                m,
                "> **PARTIAL RUN** — interrupted before the end. The figures cover only the \
                 decisions made; trust was not recalibrated.\n"
            );
        }
        let _ = writeln!(m, "{}\n", self.suite.description);
        let _ = writeln!(m, "## Summary\n");
        let _ = writeln!(m, "{}\n", self.verdict());
        for s in &self.scenarios {
            let beat: Vec<String> = s
                .baselines
                .iter()
                .map(|b| {
                    format!(
                        "{} {:+.1} pts [{:+.1}, {:+.1}]",
                        b.name,
                        100.0 * b.lead.value,
                        100.0 * b.lead.lo,
                        100.0 * b.lead.hi
                    )
                })
                .collect();
            let _ = writeln!(
                m,
                "- **{}** ({} corrupted): decided {} of the items, right in {} of those (95% CI \
                 {}–{}); wrong {} and escalated {} of all items. Against the baselines on the \
                 items decided: {}.",
                s.name,
                pct(s.corrupted),
                pct(s.coverage),
                pct(s.decided_accuracy.value),
                pct(s.decided_accuracy.lo),
                pct(s.decided_accuracy.hi),
                pct(s.false_decisions.value),
                pct(s.escalated as f64 / s.decisions.max(1) as f64),
                beat.join("; ")
            );
            for a in &s.adversaries {
                let _ = writeln!(
                    m,
                    "  - adversary `{}` ({}): {}",
                    a.agent,
                    a.attack,
                    match a.caught.quarantined_after {
                        Some(0) => "already quarantined when the run began".to_owned(),
                        Some(k) => format!("quarantined after {k} graded decisions"),
                        None => format!(
                            "not quarantined ({} graded decisions, status {})",
                            a.caught.graded,
                            a.caught.status.as_str()
                        ),
                    }
                );
            }
            let _ = writeln!(
                m,
                "  - cost: {:.2} calls per decision of {:.1} possible ({} saved by early stopping), \
                 {:.0} tokens, ${:.5}; latency p50 {} ms, p99 {} ms",
                s.calls_per_decision,
                s.pool_per_decision,
                pct(s.early_stop_saving),
                s.tokens_per_decision,
                s.usd_per_decision,
                s.latency_p50_ms,
                s.latency_p99_ms
            );
        }
        if let Some(r) = &self.recalibration {
            let _ = writeln!(m, "\n### Trust recalibration\n");
            match (&r.provenance, r.applied) {
                (Some(p), true) => {
                    let _ = writeln!(
                        m,
                        "Applied {} graded items as batch `{p}` (undo: `conclave trust rollback {p}`).\n",
                        r.items
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
                &mut m,
                &["agent", "domain", "before", "after", "status"],
                r.agents.iter().map(|a| {
                    vec![
                        a.agent.clone(),
                        a.domain.clone(),
                        format!("{:.3}", a.before),
                        format!("{:.3}", a.after),
                        a.status.to_string(),
                    ]
                }),
            );
        }
        if let Some(p) = &self.volatile.previous {
            let _ = writeln!(
                m,
                "\nCompared with the previous run `{}`: accuracy {} → {} ({:+.1} points).",
                p.run_id,
                pct(p.accuracy),
                pct(p.now),
                p.delta_points
            );
        }
        let _ = writeln!(m, "\n## Checks\n");
        table(
            &mut m,
            &["check", "scenario", "measured", "holds"],
            self.checks.iter().map(|c| {
                vec![
                    c.check.clone(),
                    c.scenario.clone(),
                    c.measured.clone(),
                    if c.pass { "yes" } else { "**no**" }.to_owned(),
                ]
            }),
        );
        let _ = writeln!(m, "\n## Scenarios\n");
        for s in &self.scenarios {
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
                &mut m,
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
            let _ = writeln!(m, "\nWindows (A(t) = ΔAccuracy / Stress):\n");
            table(
                &mut m,
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
        for sw in &self.sweeps {
            let _ = writeln!(m, "## Sweep: {}\n\n{}\n", sw.name, sw.about);
            table(
                &mut m,
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
                        p.rule.to_string(),
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
        let _ = writeln!(
            m,
            "Plots: `accuracy.svg` (accuracy against corrupted fraction), `trust.svg` (trust \
             trajectories), `calibration.svg` (calibration curve)."
        );
        m
    }

    /// Writes `report.md`, `report.json` and the plots into `dir`.
    ///
    /// # Errors
    /// The first file that cannot be written.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))
        };
        let json = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        write("report.json", &(json + "\n"))?;
        write("report.md", &self.markdown())?;
        let mut lines = String::new();
        for sc in &self.scenarios {
            for r in &sc.records {
                let mut v = serde_json::to_value(r).map_err(|e| e.to_string())?;
                v["scenario"] = serde_json::Value::String(sc.name.clone());
                lines.push_str(&v.to_string());
                lines.push('\n');
            }
        }
        write("items.jsonl", &lines)?;
        write("accuracy.svg", &self.accuracy_plot())?;
        write("trust.svg", &self.trust_plot())?;
        write("calibration.svg", &self.calibration_plot())?;
        Ok(())
    }

    /// Accuracy against corrupted fraction: per rule, and the baselines (the largest pool of
    /// the first sweep; without sweeps, the scenarios by their corrupted share).
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
            title = "accuracy vs corrupted share (scenarios)".to_owned();
            let mut s: Vec<&ScenarioReport> = self.scenarios.iter().collect();
            s.sort_by(|a, b| a.corrupted.total_cmp(&b.corrupted));
            series.push((
                "governed".into(),
                s.iter().map(|x| (x.corrupted, x.accuracy.value)).collect(),
            ));
            for k in 0..3 {
                if let Some(name) = s
                    .first()
                    .and_then(|x| x.baselines.get(k))
                    .map(|b| b.name.clone())
                {
                    series.push((
                        name,
                        s.iter()
                            .filter_map(|x| {
                                x.baselines.get(k).map(|b| (x.corrupted, b.accuracy.value))
                            })
                            .collect(),
                    ));
                }
            }
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

    /// Trust per agent over the decisions of the first scenario, with the quarantine line.
    pub fn trust_plot(&self) -> String {
        let Some(s) = self.scenarios.first() else {
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

    /// Calibration curve of verdict confidence, per scenario.
    pub fn calibration_plot(&self) -> String {
        let mut series: Vec<(String, Vec<(f64, f64)>)> =
            vec![("perfect".to_owned(), vec![(0.0, 0.0), (1.0, 1.0)])];
        for s in &self.scenarios {
            series.push((
                s.name.clone(),
                s.calibration
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

/// A line chart as SVG text.
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
        let root = SVGBackend::with_string(&mut svg, (800, 500)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(xrange.0..xrange.1.max(xrange.0 + 1e-9), 0.0f64..1.02);
        let Ok(mut chart) = chart else {
            return svg_fallback(title);
        };
        let _ = chart.configure_mesh().x_desc(xlabel).y_desc(ylabel).draw();
        if let Some(y) = hline {
            let _ = chart.draw_series(DashedLineSeries::new(
                vec![(xrange.0, y), (xrange.1, y)],
                6,
                4,
                RED.stroke_width(1),
            ));
        }
        for (k, (name, pts)) in series.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            if let Ok(s) =
                chart.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            {
                s.label(name.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            }
            if pts.len() < 60 {
                let _ = chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())));
            }
        }
        let _ = chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerLeft)
            .draw();
        let _ = root.present();
    }
    svg
}

fn svg_fallback(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"800\" height=\"60\"><text x=\"10\" y=\"30\">{title}: no data</text></svg>\n"
    )
}
