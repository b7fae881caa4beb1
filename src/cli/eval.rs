//! `conclave eval`: an adversarial evaluation run, its report, and trust recalibration.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;

use super::{CliError, date, print_json, print_text};
use conclave::eval::report::Previous;
use conclave::eval::{Report, RunOptions, Suite};
use conclave::policy::AgentKind;
use conclave::store::Store;
use conclave::trust::TrustParams;
use conclave::trust::store::{SledTrustStore, TrustStore};

/// Arguments of `conclave eval`.
#[derive(Debug, Args)]
pub(super) struct EvalArgs {
    /// The suite file (evals/*.toml).
    suite: PathBuf,
    /// Override the suite's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Measure only: leave trust as it is.
    #[arg(long)]
    dry_run: bool,
    /// Where run folders go.
    #[arg(long, default_value = "runs")]
    runs: PathBuf,
    /// Exit with code 1 when a check of the report fails.
    #[arg(long)]
    strict: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// Print the full report as JSON instead of the summary table.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(a: &EvalArgs, store_dir: &Path) -> Result<(), CliError> {
    let interrupt = Arc::new(AtomicBool::new(false));
    watch_ctrl_c(interrupt.clone());
    let mut suite = Suite::load(&a.suite).map_err(CliError::input)?;
    if let Some(seed) = a.seed {
        suite.seed = seed;
    }
    let store = Store::open(store_dir).map_err(CliError::input)?;
    let trust = SledTrustStore::new(&store, TrustParams::default()).map_err(CliError::input)?;
    let start = trust.snapshot().map_err(CliError::input)?;

    // Simulated pools run on simulated time: latencies are real figures of the model, and a
    // run takes as long as the computation, not as the agents' pretend thinking.
    let simulated = suite
        .catalog
        .agents
        .values()
        .all(|s| s.kind == AgentKind::Scripted);
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all();
    if simulated {
        builder.start_paused(true);
    }
    let runtime = builder
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the runtime: {e}")))?;

    let total = conclave::eval::total_decisions(&suite);
    let bar = progress_bar(total, a.quiet || a.json);
    let opts = RunOptions {
        interrupt,
        progress: bar
            .clone()
            .map(|b| -> conclave::eval::Progress { Arc::new(move |done, _| b.set_position(done)) }),
    };
    let started = std::time::Instant::now();
    let started_at = conclave::audit::now();
    let mut report = runtime
        .block_on(conclave::eval::evaluate(&suite, &start, &opts))
        .map_err(CliError::input)?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let elapsed = started.elapsed();
    let run_id = run_id(&a.runs, &suite.name, started_at);
    report.volatile.run_id.clone_from(&run_id);
    report.volatile.started_at = started_at;
    report.volatile.duration_ms = elapsed.as_millis() as u64;
    let decisions: usize = report.scenarios.iter().map(|s| s.decisions).sum::<usize>()
        + report
            .sweeps
            .iter()
            .zip(&suite.sweeps)
            .map(|(r, s)| r.points.len() * s.items)
            .sum::<usize>();
    report.volatile.decisions_per_second = decisions as f64 / elapsed.as_secs_f64().max(1e-9);
    report.volatile.previous = previous(&trust, &a.runs, &suite.name, &report);

    report.recalibration = Some(conclave::eval::recalibrate(
        &trust,
        &report,
        suite.max_outcomes,
        &run_id,
        a.dry_run,
    ));
    let dir = a.runs.join(&run_id);
    report.write(&dir).map_err(CliError::failed)?;

    if a.json {
        print_json(&report)?;
    } else {
        let mut text = format!(
            "{} · {} items × {} scenarios{} · seed {} · {:.1} s\n\n",
            suite.name,
            suite.items.len(),
            suite.scenarios.len(),
            if suite.sweeps.is_empty() {
                String::new()
            } else {
                format!(" + {} sweep(s)", suite.sweeps.len())
            },
            suite.seed,
            elapsed.as_secs_f64()
        );
        text.push_str(&report.summary_table());
        text.push_str(&textwrap::fill(&report.verdict(), 100));
        text.push_str("\n\n");
        if let Some(r) = &report.recalibration {
            match (&r.provenance, r.applied) {
                (Some(p), true) => text.push_str(&format!(
                    "trust recalibrated from {} graded items (undo: conclave trust rollback {p})\n",
                    r.items
                )),
                _ => text.push_str(&format!(
                    "trust not changed: {}\n",
                    r.skipped.as_deref().unwrap_or("dry run")
                )),
            }
        }
        if let Some(p) = &report.volatile.previous {
            text.push_str(&format!(
                "against the previous run {}: {:+.1} points\n",
                p.run_id, p.delta_points
            ));
        }
        text.push_str(&format!(
            "report: {}/report.md (and report.json, accuracy.svg, trust.svg, calibration.svg)\n",
            dir.display()
        ));
        print_text(&text)?;
    }
    if report.partial {
        return Err(CliError {
            code: 130,
            message: format!(
                "interrupted: partial report in {}; trust was not changed",
                dir.display()
            ),
        });
    }
    if a.strict && !report.passed() {
        return Err(CliError::failed("some checks of the report fail"));
    }
    Ok(())
}

/// Sets `flag` on the first Ctrl-C; a second one ends the process.
fn watch_ctrl_c(flag: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                flag.store(true, Ordering::Relaxed);
                eprintln!(
                    "\ninterrupted: finishing the decisions in flight (Ctrl-C again to quit now)"
                );
            }
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        });
    });
}

/// A progress bar on a terminal; none under CI, when piped, or when asked.
fn progress_bar(total: u64, quiet: bool) -> Option<indicatif::ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() || std::env::var_os("CI").is_some() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} {bar:40} {pos}/{len} decisions · {per_sec} · eta {eta}",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

/// `SUITE-YYYYMMDDTHHMMSSZ`, with a counter if that folder exists.
fn run_id(runs: &Path, suite: &str, at: u64) -> String {
    let stamp: String = date(at)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let base = format!("{suite}-{stamp}");
    let mut id = base.clone();
    let mut k = 2;
    while runs.join(&id).exists() {
        id = format!("{base}-{k}");
        k += 1;
    }
    id
}

/// The run of the same suite whose recalibration this run started from: the newest eval
/// batch of the suite in the trust store that was not rolled back, if its report is in `runs`.
fn previous(trust: &SledTrustStore, runs: &Path, suite: &str, now: &Report) -> Option<Previous> {
    let prefix = format!("eval:{suite}-");
    let batch = trust
        .batches()
        .ok()?
        .into_iter()
        .filter(|b| b.provenance.starts_with(&prefix) && b.rolled_back_by.is_none())
        .max_by_key(|b| b.version)?;
    let run_id = batch.provenance.trim_start_matches("eval:").to_owned();
    let text = std::fs::read_to_string(runs.join(&run_id).join("report.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let accuracy = v["scenarios"][0]["accuracy"]["value"].as_f64()?;
    let current = now.scenarios.first()?.accuracy.value;
    Some(Previous {
        run_id,
        accuracy,
        now: current,
        delta_points: 100.0 * (current - accuracy),
    })
}
