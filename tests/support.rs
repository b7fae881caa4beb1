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
    catalog_of(agents, &[policy])
}

/// Agent and policy files loaded together, several policies.
pub(crate) fn catalog_of(agents: &str, policies: &[&str]) -> conclave::Catalog {
    let files: Vec<conclave::SourceFile> = policies
        .iter()
        .enumerate()
        .map(|(i, p)| match policies.len() {
            1 => conclave::SourceFile::new("policy.toml", *p),
            _ => conclave::SourceFile::new(format!("policy{i}.toml"), *p),
        })
        .collect();
    conclave::Catalog::load(&[conclave::SourceFile::new("agents.toml", agents)], &files)
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

/// A real PostgreSQL server for one test, from the distribution's packages, in a temporary
/// directory on 127.0.0.1 (stopped when dropped, and when the test process exits). When the
/// tests run as root, the server runs as the `postgres` user (PostgreSQL refuses root).
pub(crate) struct TempPostgres {
    pub(crate) url: String,
    server: std::process::Child,
    _dir: tempfile::TempDir,
}

fn pg_bin(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("CONCLAVE_PG_BIN") {
        return PathBuf::from(dir).join(name);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/{name}): `apt-get install postgresql` (.ci/run does), or set CONCLAVE_PG_BIN"
        )
    })
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program args` as the `postgres` user when this process is root.
fn as_pg_user(program: &std::path::Path) -> std::process::Command {
    if is_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        std::process::Command::new(program)
    }
}

impl TempPostgres {
    pub(crate) fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("conclave-pg")
            .tempdir()
            .unwrap();
        if is_root() {
            let ok = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(
                ok.success(),
                "cannot hand the directory to the postgres user"
            );
        }
        let data = dir.path().join("data");
        let init = as_pg_user(&pg_bin("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "conclave",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // The server's stdin is this process's pipe: when the test process ends, however it
        // ends, the shell reads EOF and stops the server.
        let script = format!(
            "{} -D '{}' -p {port} -k '{}' -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=32MB & pid=$!; read _; kill -INT $pid; wait $pid",
            pg_bin("postgres").display(),
            data.display(),
            dir.path().display(),
        );
        let mut cmd = as_pg_user(std::path::Path::new("/bin/sh"));
        let server = cmd
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("postgres://conclave@127.0.0.1:{port}/postgres");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let ready = std::process::Command::new(pg_bin("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "conclave"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ready {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "PostgreSQL did not start within 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Self {
            url,
            server,
            _dir: dir,
        }
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        // Closing stdin stops the server (see `start`); wait for it to be gone.
        drop(self.server.stdin.take());
        let _ = self.server.wait();
    }
}
