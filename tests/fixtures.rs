//! Every reference case under `tests/fixtures/`, through the library and the binary.

use std::collections::BTreeSet;
use std::fs;

use conclave::aggregate::{Rule, TallyInput, tally};
use conclave::trust::estimate::{Annotations, Method, estimate};
use serde_json::Value;

use crate::support::{close, conclave, fixtures_dir};

struct Case {
    name: String,
    rule: String,
    params: Vec<(String, String)>,
    input: Value,
    expect: Value,
}

/// The files of `tests/fixtures/<folder>` ending in `.<ext>`, sorted.
fn fixture_files(folder: &str, ext: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = fs::read_dir(fixtures_dir().join(folder))
        .expect("fixture folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

fn cases() -> Vec<Case> {
    let names = fixture_files("tally", "json");
    assert!(
        names.len() >= 800,
        "expected the full fixture set, found {}",
        names.len()
    );
    names
        .into_iter()
        .map(|p| {
            let v: Value = serde_json::from_slice(&fs::read(&p).expect("read")).expect("json");
            let params = v["params"]
                .as_object()
                .expect("params")
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect();
            Case {
                name: p.file_name().expect("name").to_string_lossy().into_owned(),
                rule: v["rule"].as_str().expect("rule").to_owned(),
                params,
                input: v["input"].clone(),
                expect: v["expect"].clone(),
            }
        })
        .collect()
}

/// Compares a result (as JSON) with a case's expectations; returns the mismatches.
fn check(case: &Case, got: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let num = |v: &Value| v.as_f64().expect("number");
    for (key, want) in case.expect.as_object().expect("expect") {
        let have = &got[key.as_str()];
        let ok = match key.as_str() {
            "winners" => {
                let w: BTreeSet<&str> = want
                    .as_array()
                    .expect("winners")
                    .iter()
                    .map(|x| x.as_str().expect("str"))
                    .collect();
                let h: BTreeSet<&str> = have
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                w == h
            }
            "scores" => want.as_object().expect("scores").iter().all(|(o, s)| {
                have[o.as_str()]
                    .as_f64()
                    .is_some_and(|h| close(h, num(s), 1e-9))
            }),
            "value" | "consensus_quality" => {
                have.as_f64().is_some_and(|h| close(h, num(want), 1e-9))
            }
            "objective" => have.as_f64().is_some_and(|h| h <= num(want) * (1.0 + 1e-7)),
            "vector" => {
                let w = want.as_array().expect("vector");
                if case.rule == "geometric-median" && w.len() == 1 {
                    // In one dimension an even count has a whole interval of medians:
                    // only the objective identifies a correct answer.
                    continue;
                }
                let tol = if case.rule == "geometric-median" {
                    1e-6
                } else {
                    1e-12
                };
                have.as_array().is_some_and(|h| {
                    h.len() == w.len()
                        && h.iter().zip(w).all(|(a, b)| (num(a) - num(b)).abs() <= tol)
                })
            }
            "counted" | "abstained" => have == want,
            other => panic!("{}: unknown expectation key {other}", case.name),
        };
        if !ok {
            bad.push(format!("{}: {key}: expected {want}, got {have}", case.name));
        }
    }
    bad
}

#[test]
fn tally_fixtures_through_the_library() {
    let mut failures = Vec::new();
    let all = cases();
    for case in &all {
        let params: Vec<(&str, &str)> = case
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let rule = Rule::parse(&case.rule, &params).expect("rule");
        let input: TallyInput = serde_json::from_value(case.input.clone()).expect("input");
        match tally(&input, &rule) {
            Ok(r) => failures.extend(check(case, &serde_json::to_value(&r).expect("to json"))),
            Err(e) => failures.push(format!("{}: error {e}", case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[test]
fn tally_fixtures_through_the_binary() {
    let mut failures = Vec::new();
    let all = cases();
    for case in &all {
        let mut args = vec!["tally".to_owned(), "--rule".to_owned(), case.rule.clone()];
        for (k, v) in &case.params {
            args.push("--param".to_owned());
            args.push(format!("{k}={v}"));
        }
        args.push("-".to_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = conclave(&args, case.input.to_string().as_bytes());
        if !out.status.success() {
            failures.push(format!(
                "{}: exit {:?}: {}",
                case.name,
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
            continue;
        }
        let got: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
        failures.extend(check(case, &got));
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

struct EstimateCase {
    name: String,
    csv: Vec<u8>,
    expect: Value,
}

fn estimate_cases() -> Vec<EstimateCase> {
    let csvs = fixture_files("estimate", "csv");
    assert!(!csvs.is_empty());
    csvs.into_iter()
        .map(|p| {
            let expect_path = p.with_extension("expect.json");
            EstimateCase {
                name: p.file_name().expect("name").to_string_lossy().into_owned(),
                csv: fs::read(&p).expect("csv"),
                expect: serde_json::from_slice(&fs::read(&expect_path).expect("expect"))
                    .expect("json"),
            }
        })
        .collect()
}

/// Label agreement ≥ 99% and every skill within 0.02 of crowd-kit's.
fn check_estimate(
    case: &EstimateCase,
    labels: &Value,
    skills: Option<&Value>,
    key: &str,
) -> Vec<String> {
    let want = case.expect[key].as_object().expect("labels");
    let agree = want
        .iter()
        .filter(|(t, l)| labels[t.as_str()] == **l)
        .count();
    let mut bad = Vec::new();
    if (agree as f64) < 0.99 * want.len() as f64 {
        bad.push(format!(
            "{}: {key}: {agree} of {} labels agree",
            case.name,
            want.len()
        ));
    }
    if let Some(skills) = skills {
        for (w, s) in case.expect["skills"].as_object().expect("skills") {
            let h = skills[w.as_str()].as_f64();
            if !h.is_some_and(|h| (h - s.as_f64().expect("num")).abs() <= 0.02) {
                bad.push(format!(
                    "{}: skill of {w}: expected {s}, got {h:?}",
                    case.name
                ));
            }
        }
    }
    bad
}

#[test]
fn estimate_fixtures_through_the_library_and_the_binary() {
    let mut failures = Vec::new();
    for case in estimate_cases() {
        let data = Annotations::from_csv(case.csv.as_slice()).expect("csv");
        let ds = serde_json::to_value(estimate(&data, Method::DawidSkene)).expect("json");
        failures.extend(check_estimate(
            &case,
            &ds["labels"],
            Some(&ds["skills"]),
            "labels",
        ));
        let mv = serde_json::to_value(estimate(&data, Method::Majority)).expect("json");
        failures.extend(check_estimate(
            &case,
            &mv["labels"],
            None,
            "majority_labels",
        ));

        let out = conclave(
            &["trust", "estimate", "--method", "dawid-skene", "-"],
            &case.csv,
        );
        assert!(
            out.status.success(),
            "{}: {}",
            case.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
        failures.extend(check_estimate(
            &case,
            &got["labels"],
            Some(&got["skills"]),
            "labels",
        ));
        assert!(
            got["iterations"].as_u64().is_some_and(|n| n >= 1),
            "{}: iterations",
            case.name
        );
        let out = conclave(
            &["trust", "estimate", "--method", "majority", "-"],
            &case.csv,
        );
        let got: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
        failures.extend(check_estimate(
            &case,
            &got["labels"],
            None,
            "majority_labels",
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn one_coin_matches_crowd_kit() {
    // References computed by crowd-kit's OneCoinDawidSkene (tests/fixtures/one_coin_reference.py).
    for case in estimate_cases() {
        let path = fixtures_dir()
            .join("estimate")
            .join(case.name.replace(".csv", ".one-coin.json"));
        let want: Value =
            serde_json::from_slice(&fs::read(&path).expect("one-coin reference")).expect("json");
        let data = Annotations::from_csv(case.csv.as_slice()).expect("csv");
        let got = serde_json::to_value(estimate(&data, Method::OneCoin)).expect("json");
        let labels = want["labels"].as_object().expect("labels");
        let agree = labels
            .iter()
            .filter(|(t, l)| got["labels"][t.as_str()] == **l)
            .count();
        assert!(
            agree as f64 >= 0.99 * labels.len() as f64,
            "{}: {agree} of {} labels",
            case.name,
            labels.len()
        );
        for (w, s) in want["skills"].as_object().expect("skills") {
            let h = got["skills"][w.as_str()].as_f64().expect("skill");
            assert!(
                (h - s.as_f64().expect("num")).abs() <= 1e-6,
                "{}: {w}: {h} vs {s}",
                case.name
            );
        }
        let out = conclave(
            &["trust", "estimate", "--method", "one-coin", "-"],
            &case.csv,
        );
        let from_cli: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
        assert_eq!(
            from_cli["skills"], got["skills"],
            "{}: binary and library differ",
            case.name
        );
    }
}
