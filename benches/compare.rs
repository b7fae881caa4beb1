//! Times the library on the inputs written by `benches/compare/compare.py`, so that
//! conclave and the Python reference libraries count exactly the same ballots.
//!
//! `cargo bench --bench compare -- DIR` reads `DIR/*.json` (a `conclave tally` input plus a
//! `rule` field) and `DIR/*.csv` (`task,worker,label`), and prints one JSON line per input:
//! the median time of `tally` / `estimate` over repeated runs and the answer, for the script
//! to check against the reference answer.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use conclave::aggregate::{Rule, TallyInput, tally};
use conclave::trust::estimate::{Annotations, Method, estimate};
use serde_json::json;

/// Median wall time of `f` over at least 5 runs and at least ~0.5 s, after 3 warm-up runs
/// (so that the allocator has settled on its thresholds before timing starts).
fn median_time<T>(mut f: impl FnMut() -> T) -> Duration {
    for _ in 0..3 {
        std::hint::black_box(f());
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 5 || (start.elapsed() < Duration::from_millis(500) && times.len() < 1000) {
        let t = Instant::now();
        std::hint::black_box(f());
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let dir: PathBuf = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .expect("usage: cargo bench --bench compare -- DIR")
        .into();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => {
                // Parsed straight from the bytes, as `conclave tally` does.
                #[derive(serde::Deserialize)]
                struct Case {
                    rule: String,
                    input: TallyInput,
                }
                let case: Case = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                let rule = Rule::from_name(&case.rule).unwrap();
                let input = case.input;
                let result = tally(&input, &rule).unwrap();
                let t = median_time(|| tally(&input, &rule));
                println!(
                    "{}",
                    json!({"file": name, "ns": t.as_nanos() as u64, "winners": result.winners()})
                );
            }
            Some("csv") => {
                let data = Annotations::from_csv(std::fs::File::open(&path).unwrap()).unwrap();
                for (label, method) in [
                    ("dawid-skene", Method::DawidSkene),
                    ("one-coin", Method::OneCoin),
                    ("majority", Method::Majority),
                ] {
                    let est = estimate(&data, method);
                    let t = median_time(|| estimate(&data, method));
                    println!(
                        "{}",
                        json!({"file": name, "method": label, "ns": t.as_nanos() as u64,
                               "iterations": est.iterations, "labels": est.labels.iter().copied().collect::<std::collections::BTreeMap<_, _>>()})
                    );
                }
            }
            _ => {}
        }
    }
}
