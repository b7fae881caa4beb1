//! The evaluation harness: the shipped suites' checks on seeded runs, reproducibility,
//! recalibration and its envelope, interruption, and bad suites.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use conclave::eval::{Report, RunOptions, Suite, evaluate, recalibrate};
use conclave::trust::TrustParams;
use conclave::trust::store::{MemoryTrustStore, TrustSnapshot, TrustStore};

use crate::support::conclave;

fn fresh() -> TrustSnapshot {
    MemoryTrustStore::new(TrustParams::default())
        .unwrap()
        .snapshot()
        .unwrap()
}

/// Runs a suite on simulated time from `start`.
fn run(suite: &Suite, start: &TrustSnapshot, opts: &RunOptions) -> Report {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(evaluate(suite, start, opts))
        .unwrap()
}

fn failures(report: &Report) -> Vec<String> {
    report
        .checks
        .iter()
        .filter(|c| !c.pass)
        .map(|c| format!("{} [{}]: {}", c.check, c.scenario, c.measured))
        .collect()
}

#[test]
fn the_financenet_suite_passes_its_checks() {
    let mut suite = Suite::load(Path::new("evals/financenet.toml")).unwrap();
    // The sweep is informative, not checked; it is the slow part in a debug build.
    suite.sweeps.clear();
    let report = run(&suite, &fresh(), &RunOptions::default());
    let failed = failures(&report);
    assert!(failed.is_empty(), "failed checks:\n{}", failed.join("\n"));
    // The figures behind the checks, one by one.
    let by_name = |n: &str| report.scenarios.iter().find(|s| s.name == n).unwrap();
    let defined = by_name("as-defined");
    let catch = &defined.adversaries[0];
    assert_eq!(catch.agent, "MaliciousAgent");
    assert!(
        catch.caught.quarantined_after.is_some_and(|k| k <= 20),
        "{catch:?}"
    );
    for b in &defined.baselines {
        assert!(b.lead.hi >= 0.0, "{} lead {:?}", b.name, b.lead);
    }
    let majority = &defined.baselines[0];
    assert!(
        majority.lead.value > 0.0,
        "the robust vote beats the unweighted majority when one agent pushes +0.95: {:?}",
        majority.lead
    );
    let collusion = by_name("collusion");
    assert!(collusion.corrupted > 0.5);
    assert!(
        1.0 - collusion.false_decisions.value >= 0.9,
        "{:?}",
        collusion.false_decisions
    );
    for s in &report.scenarios {
        if let Some(r) = s.trust_spearman.filter(|_| s.adversarial_only) {
            assert!(r >= 0.8, "{}: Spearman {r}", s.name);
        }
        for a in &s.adversaries {
            if a.caught.graded >= 20 {
                assert!(
                    a.caught.quarantined_after.is_some_and(|k| k <= 20),
                    "{}: {a:?}",
                    s.name
                );
            }
        }
    }
    // Graded outcomes only from the scenario that shows the pool as it is.
    assert!(!report.changes.is_empty());
    assert!(report.scenarios.iter().filter(|s| s.recalibrate).count() == 1);
}

#[test]
fn the_attacks_suite_passes_its_checks() {
    let suite = Suite::load(Path::new("evals/attacks.toml")).unwrap();
    let report = run(&suite, &fresh(), &RunOptions::default());
    let failed = failures(&report);
    assert!(failed.is_empty(), "failed checks:\n{}", failed.join("\n"));
    let by_name = |n: &str| report.scenarios.iter().find(|s| s.name == n).unwrap();
    // Injected text in a rationale changes nothing: the verdicts are those of the clean run.
    let (clean, injected) = (by_name("clean"), by_name("injection"));
    let answers = |s: &conclave::eval::ScenarioReport| {
        s.records
            .iter()
            .map(|r| (r.answer.clone(), r.correct))
            .collect::<Vec<_>>()
    };
    assert_eq!(answers(clean), answers(injected));
    // Every adversary that kept answering was quarantined within 20 graded decisions.
    let mut caught = 0;
    for s in &report.scenarios {
        for a in &s.adversaries {
            if let Some(k) = a.caught.quarantined_after {
                assert!(k <= 20, "{}: {a:?}", s.name);
                caught += 1;
            }
        }
    }
    assert!(caught >= 15, "{caught} adversaries caught");
    // Sybil clones answer as their original and are caught with it.
    let sybil = by_name("sybil");
    assert_eq!(sybil.adversaries.len(), 4);
    assert!(sybil.pool_per_decision > clean.pool_per_decision);
}

fn strip_volatile(text: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(text).unwrap();
    v.as_object_mut().unwrap().remove("volatile");
    v
}

fn report_json(dir: &Path) -> String {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    runs.sort();
    std::fs::read_to_string(runs.last().unwrap().join("report.json")).unwrap()
}

/// `conclave --store STORE eval SUITE --runs RUNS EXTRA...`, which must succeed.
fn eval_cli(store: &Path, suite: &Path, runs: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "--store",
        store.to_str().unwrap(),
        "eval",
        suite.to_str().unwrap(),
        "--runs",
        runs.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = conclave(&args, b"");
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

/// A small FinanceNet suite: 60 sentiment items and the calls, two scenarios.
fn small_suite(dir: &Path) -> PathBuf {
    let root = std::env::current_dir().unwrap();
    let text = format!(
        r#"[suite]
name = "small"
agents = ["{root}/agents/financenet.toml"]
policies = ["{root}/policies/trading.toml", "{root}/policies/allocation.toml"]
data = ["{root}/evals/financenet/sentiment.jsonl", "{root}/evals/financenet/calls.jsonl"]
seed = 3

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
fn the_same_suite_and_seed_give_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    let suite = small_suite(dir.path());
    let store = dir.path().join("store");
    let mut texts = Vec::new();
    for k in 0..2 {
        let runs = dir.path().join(format!("runs{k}"));
        eval_cli(&store, &suite, &runs, &["--dry-run"]);
        texts.push(report_json(&runs));
    }
    assert_ne!(
        texts[0], texts[1],
        "the volatile section differs (run id, times)"
    );
    assert_eq!(strip_volatile(&texts[0]), strip_volatile(&texts[1]));
    // Another seed, another run.
    let runs = dir.path().join("runs-seed");
    eval_cli(&store, &suite, &runs, &["--dry-run", "--seed", "4"]);
    assert_ne!(
        strip_volatile(&texts[0]),
        strip_volatile(&report_json(&runs))
    );
}

#[test]
fn a_second_run_starts_from_recalibrated_trust_and_does_as_well() {
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
    let acc = |r: &serde_json::Value| r["scenarios"][0]["accuracy"]["value"].as_f64().unwrap();
    assert!(
        acc(&second) >= acc(&first),
        "{} < {}",
        acc(&second),
        acc(&first)
    );
    let previous = &second["volatile"]["previous"];
    assert_eq!(previous["run_id"], provenance.trim_start_matches("eval:"));
    let delta = previous["delta_points"].as_f64().unwrap();
    assert!((delta - 100.0 * (acc(&second) - acc(&first))).abs() < 1e-9);

    // The first run's batch can be undone by name.
    let batches = batches(&store);
    assert_eq!(batches.as_array().unwrap().len(), 2, "{batches}");
    // By its run id alone, as the run folder is named.
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
fn a_dry_run_leaves_trust_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let suite = small_suite(dir.path());
    let store = dir.path().join("store");
    let runs = dir.path().join("runs");
    let out = eval_cli(&store, &suite, &runs, &["--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("trust not changed: --dry-run"), "{text}");
    let batches = batches(&store);
    assert_eq!(batches.as_array().map(Vec::len), Some(0));
    // The run folder holds the report, the per-item record and the three plots.
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let run = entries.pop().unwrap();
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
}

#[test]
fn an_interrupted_run_is_partial_and_changes_no_trust() {
    let dir = tempfile::tempdir().unwrap();
    let suite = Suite::load(&small_suite(dir.path())).unwrap();
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    let opts = RunOptions {
        interrupt,
        progress: Some(Arc::new(move |done, _| {
            if done >= 25 {
                flag.store(true, Ordering::Relaxed);
            }
        })),
    };
    let report = run(&suite, &fresh(), &opts);
    assert!(report.partial);
    let decisions: usize = report.scenarios.iter().map(|s| s.decisions).sum();
    assert!((25..60).contains(&decisions), "{decisions}");
    assert!(report.markdown().contains("PARTIAL RUN"));
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
    for ((agent, domain), s) in &snap.states {
        assert!(s.n <= 5, "{agent}/{domain}: {} outcomes", s.n);
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
    // Wait until the run has opened its store (so the signal handler is in place), then
    // interrupt it.
    for _ in 0..600 {
        if store.join("CONCLAVE-STORE").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
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
