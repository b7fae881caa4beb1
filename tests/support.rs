//! Helpers shared by the test modules.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The folder holding the reference fixtures.
pub(crate) fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs the `conclave` binary with `args`, feeding `stdin`.
pub(crate) fn conclave(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn conclave");
    // The command may exit before reading its input (bad arguments): a broken pipe is fine.
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    child.wait_with_output().expect("wait for conclave")
}

/// `|a − b| ≤ rel·max(|a|, |b|)`, with an absolute floor of 1e-12 for values near zero.
pub(crate) fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()) + 1e-12
}

/// splitmix64: a tiny seeded generator for reproducible simulated streams.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Agent and policy files loaded together; a test's own files must load, so any diagnostic
/// fails the test with its one-line form.
pub(crate) fn catalog(agents: &str, policy: &str) -> conclave::Catalog {
    conclave::Catalog::load(
        &[conclave::SourceFile::new("agents.toml", agents)],
        &[conclave::SourceFile::new("policy.toml", policy)],
    )
    .unwrap_or_else(|d| {
        panic!(
            "{}",
            d.iter()
                .map(|x| x.one_line())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// Three random voters and an arbiter (`judge`, with this behaviour), and a policy whose
/// thresholds send most of their decisions to it: the agent file's text and the policy's.
pub(crate) fn arbitration_files(arbiter_behaviour: &str) -> (String, &'static str) {
    let mut agents = String::new();
    for id in ["r1", "r2", "r3"] {
        agents += &format!(
            "[[agent]]\nid = \"{id}\"\nkind = \"scripted\"\nscripted = {{ competence = {{ default = 0.5 }}, behaviour = {{ kind = \"random\" }} }}\n\n"
        );
    }
    agents += &format!(
        "[[agent]]\nid = \"judge\"\nkind = \"scripted\"\nscripted = {{ competence = {{ default = 0.95 }}, behaviour = {{ kind = \"{arbiter_behaviour}\" }} }}\n"
    );
    (
        agents,
        r#"id = "arb"
description = "Arbitration test."
applies = { domains = ["trading"], kinds = ["choice"] }
pool = { agents = ["r1", "r2", "r3"] }
rule = { name = "plurality" }
quorum = { ballots = 3 }
early_stop = { enabled = false }
thresholds = { accept = 0.95, arbitrate = 0.9, human = 0.1 }
budget = { arbitration_ms = 5000 }
escalation = { arbiter = "judge", human = true }
"#,
    )
}
