//! Loading and validating policies (divan): `cargo bench --bench policy`.
//!
//! 1,000 policies over the shipped agents, loaded and checked together (diagnostics, pool
//! resolution, rule parsing, overlap detection). The baseline row parses the same text into
//! untyped TOML values only, so the ratio is the cost of the checks.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use conclave::policy::{Catalog, SourceFile, read_dir_toml};
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

fn policies(n: usize) -> Vec<SourceFile> {
    (0..n)
        .map(|i| {
            SourceFile::new(
                format!("policies/generated-{i:04}.toml"),
                format!(
                    r#"# Generated policy {i}.
id = "policy-{i}"
description = "Generated for the benchmark."
applies = {{ domains = ["domain-{i}"], kinds = ["score", "vector"] }}
pool = {{ agents = ["EconAgent", "NewsAgent", "GeneralistAgent", "MaliciousAgent"], min = 3, max_per_family = 1 }}
selection = {{ expertise = 0.3, trust = 0.7 }}
rule = {{ name = "trimmed-mean", params = {{ trim = 0.25 }}, alpha = 0.6 }}
protocol = {{ robust_rule = "geometric-median", byzantine_fraction = 0.3, tolerate = 1, stakes = "high" }}
quorum = {{ ballots = 3, weight_share = 0.5, n_eff = 2.0 }}
thresholds = {{ accept = 0.75, arbitrate = 0.55, human = 0.3 }}
budget = {{ tokens = 20000, money_usd = 0.5, decision_ms = 30000, arbitration_ms = 60000 }}
escalation = {{ arbiter = "MetaAnalyst", human = true }}
"#
                ),
            )
        })
        .collect()
}

#[divan::bench(sample_count = 20)]
fn load_and_check_1000_policies(bencher: Bencher<'_, '_>) {
    let (agents, _) = read_dir_toml(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("agents")
            .as_path(),
    );
    let files = policies(1000);
    let catalog = Catalog::load(&agents, &files).expect("the generated policies are valid");
    assert_eq!(catalog.policies.len(), 1000);
    bencher.bench_local(|| black_box(Catalog::load(&agents, &files).is_ok()));
}

#[divan::bench(sample_count = 20)]
fn parse_only_1000_policies(bencher: Bencher<'_, '_>) {
    let files = policies(1000);
    bencher.bench_local(|| {
        for f in &files {
            black_box(toml::from_str::<toml::Value>(&f.text).is_ok());
        }
    });
}
