//! `conclave eval`: an adversarial evaluation run, its report, and trust recalibration.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;

use super::{CliError, date, print_json, print_text};
use conclave::eval::report::{Previous, PreviousScenario};
use conclave::eval::{Report, RunOptions, Suite};
use conclave::store::Store;
use conclave::trust::TrustParams;
use conclave::trust::store::{SledTrustStore, TrustStore};

/// Arguments of `conclave eval`.
#[derive(Debug, Args)]
pub(super) struct EvalArgs {
    /// The suite file (evals/*.toml).
    suite: PathBuf,
    /// The first seed (the suite's number of seeds follows it).
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// The seeds to run: `A..B` (A to B, both included), a list `1,5,9`, or one seed.
    #[arg(long, value_parser = parse_seeds)]
    seeds: Option<SeedList>,
    /// Generate this many random scenarios in every generator (one with the defaults if the
    /// suite has none).
    #[arg(long)]
    generate: Option<usize>,
    /// Which decisions items.jsonl records: `first` (the first seed's) or `all` (every seed's
    /// and every generated scenario's).
    #[arg(long, default_value = "first", value_parser = ["first", "all"])]
    items: String,
    /// Threads for simulated runs (default: the available cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Measure only: leave trust as it is.
    #[arg(long)]
    dry_run: bool,
    /// Where run folders go.
    #[arg(long, default_value = "runs")]
    runs: PathBuf,
    /// Exit with code 1 when a check fails or the run is unhealthy.
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
        let n = suite.seeds.len() as u64;
        suite
            .set_seeds((0..n).map(|k| seed.wrapping_add(k)).collect())
            .map_err(CliError::input)?;
    }
    if let Some(seeds) = &a.seeds {
        suite.set_seeds(seeds.0.clone()).map_err(CliError::input)?;
    }
    if let Some(n) = a.generate {
        suite.set_generated(n).map_err(CliError::input)?;
    }
    let store = Store::open(store_dir).map_err(CliError::input)?;
    let trust = SledTrustStore::new(&store, TrustParams::default()).map_err(CliError::input)?;
    let start = trust.snapshot().map_err(CliError::input)?;

    let total = conclave::eval::total_decisions(&suite);
    let bar = progress_bar(total, a.quiet || a.json);
    let opts = RunOptions {
        interrupt,
        progress: bar
            .clone()
            .map(|b| -> conclave::eval::Progress { Arc::new(move |done, _| b.set_position(done)) }),
        keep_generated: a.items == "all",
    };
    let started = std::time::Instant::now();
    let started_at = conclave::audit::now();
    // Simulated pools run on simulated time (a run takes as long as its computation), their
    // seeds in parallel; real endpoints on the clock, one seed after another.
    let mut report = conclave::eval::evaluate_parallel(&suite, &start, &opts, a.threads)
        .map_err(CliError::input)?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let elapsed = started.elapsed();
    let run_id = run_id(&a.runs, &suite.name, started_at);
    report.volatile.run_id.clone_from(&run_id);
    report.volatile.started_at = started_at;
    report.volatile.duration_ms = elapsed.as_millis() as u64;
    let decisions = conclave::eval::total_decisions(&suite);
    report.volatile.decisions_per_second = decisions as f64 / elapsed.as_secs_f64().max(1e-9);
    report.volatile.previous = previous(&trust, &a.runs, &suite.name, &report);

    // The report is on disk before trust changes, so that a run killed while recalibrating
    // leaves the report its trust batch names; it is written again with the recalibration.
    let dir = a.runs.join(&run_id);
    report
        .write(&dir, a.items == "all")
        .map_err(CliError::failed)?;
    report.recalibration = Some(conclave::eval::recalibrate(
        &trust,
        &report,
        suite.max_outcomes,
        &run_id,
        a.dry_run,
    ));
    report
        .write(&dir, a.items == "all")
        .map_err(CliError::failed)?;

    if a.json {
        print_json(&report)?;
    } else {
        print_text(&summary_text(&suite, &report, &dir, elapsed))?;
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
    if a.strict && !report.health.healthy {
        return Err(CliError::failed(format!(
            "the run is unhealthy: {}",
            report.health.summary()
        )));
    }
    if a.strict && !report.passed() {
        return Err(CliError::failed("some checks of the report fail"));
    }
    Ok(())
}

/// What a run prints: the banner, the summary table, the verdict, what happened to trust,
/// the change against the previous run, and where the report is.
fn summary_text(
    suite: &Suite,
    report: &conclave::eval::report::Report,
    dir: &Path,
    elapsed: std::time::Duration,
) -> String {
    let mut text = report.banner().map(|b| b + "\n").unwrap_or_default();
    let seeds = &report.suite.seeds;
    text.push_str(&format!(
        "{} · {} items{}{}{} · {}{:.1} s\n\n",
        suite.name,
        suite.items.len(),
        if suite.scenarios.is_empty() {
            String::new()
        } else {
            format!(" × {} scenarios", suite.scenarios.len())
        },
        if suite.sweeps.is_empty() {
            String::new()
        } else {
            format!(" + {} sweep(s)", suite.sweeps.len())
        },
        if suite.generate.is_empty() {
            String::new()
        } else {
            format!(
                " + {} generated",
                suite.generate.iter().map(|g| g.scenarios).sum::<usize>()
            )
        },
        match (seeds.first(), seeds.last()) {
            _ if suite.scenarios.is_empty() && suite.sweeps.is_empty() => String::new(),
            (Some(f), Some(l)) if seeds.len() > 1 => {
                format!("seeds {f}–{l} ({}) · ", seeds.len())
            }
            (Some(f), _) => format!("seed {f} · "),
            _ => String::new(),
        },
        elapsed.as_secs_f64()
    ));
    text.push_str(&report.summary_table());
    text.push_str(&textwrap::fill(&report.verdict(), 100));
    text.push_str("\n\n");
    if let Some(r) = &report.recalibration {
        match (&r.provenance, r.applied) {
            (Some(p), true) => text.push_str(&format!(
                "trust recalibrated from {} graded items of seed {} (undo: conclave trust rollback {p})\n",
                r.items, report.suite.seed
            )),
            _ => text.push_str(&format!(
                "trust not changed: {}\n",
                r.skipped.as_deref().unwrap_or("dry run")
            )),
        }
    }
    if let Some(p) = &report.volatile.previous {
        let deltas: Vec<String> = p
            .scenarios
            .iter()
            .map(|s| {
                format!(
                    "{} {:+.1} ({:+.1} decided)",
                    s.name,
                    100.0 * (s.accuracy_now - s.accuracy_before),
                    100.0 * (s.coverage_now - s.coverage_before)
                )
            })
            .collect();
        text.push_str(&textwrap::fill(
            &format!(
                "against the previous run {}, points of accuracy over all items: {}",
                p.run_id,
                deltas.join(", ")
            ),
            100,
        ));
        text.push('\n');
    }
    text.push_str(&format!(
        "report: {}/report.md (and report.json, items.jsonl, accuracy.svg, trust.svg, calibration.svg)\n",
        dir.display()
    ));
    text
}

/// Sets `flag` on the first Ctrl-C; a second one ends the process. Returns once the handler
/// is in place (so that a Ctrl-C from the moment the run starts is the run's to handle).
fn watch_ctrl_c(flag: Arc<AtomicBool>) {
    let (ready, installed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            // The first poll registers the handler.
            let mut first = std::pin::pin!(tokio::signal::ctrl_c());
            let early = tokio::select! {
                biased;
                got = &mut first => Some(got),
                () = std::future::ready(()) => None,
            };
            let _ = ready.send(());
            let got = match early {
                Some(got) => got,
                None => first.await,
            };
            if got.is_ok() {
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
    let _ = installed.recv_timeout(std::time::Duration::from_secs(10));
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
    let then = v["scenarios"].as_array()?;
    let scenarios = now
        .scenarios
        .iter()
        .filter_map(|s| {
            let p = then.iter().find(|p| p["name"] == s.name.as_str())?;
            Some(PreviousScenario {
                name: s.name.clone(),
                accuracy_before: p["accuracy"]["mean"].as_f64()?,
                accuracy_now: s.accuracy.mean,
                coverage_before: p["coverage"]["mean"].as_f64()?,
                coverage_now: s.coverage.mean,
            })
        })
        .collect();
    Some(Previous { run_id, scenarios })
}

/// The seeds of `--seeds`.
#[derive(Debug, Clone)]
struct SeedList(Vec<u64>);

/// `A..B` (both included), `a,b,c`, or one seed.
fn parse_seeds(s: &str) -> Result<SeedList, String> {
    let num = |x: &str| {
        x.trim()
            .parse::<u64>()
            .map_err(|_| format!("\"{x}\" is not a seed (a whole number ≥ 0)"))
    };
    let seeds: Vec<u64> = if let Some((a, b)) = s.split_once("..") {
        let (a, b) = (num(a)?, num(b.trim_start_matches('='))?);
        if b < a {
            return Err(format!("the range {s} is empty (write A..B with A ≤ B)"));
        }
        if b - a >= 10_000 {
            return Err(format!("the range {s} has more than 10000 seeds"));
        }
        (a..=b).collect()
    } else {
        s.split(',').map(num).collect::<Result<_, _>>()?
    };
    if seeds.is_empty() {
        return Err("no seed given".to_owned());
    }
    Ok(SeedList(seeds))
}
