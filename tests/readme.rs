//! The README's shell lines, run as written in a copy of the project's files, in order, on
//! one store: every `conclave …` and `cargo run …` line exits 0, and a transcript (`$ command`
//! followed by what it prints) prints what it shows. A synopsis (a line with placeholders such
//! as `ID`, `AGENT` or `[--domain D]`) is a form, not a command: it is run with its
//! placeholders filled in and must be understood (no usage error); it may find no such record.
//! The lines that need what a test machine has not (an API key, a model server, Docker, a
//! long-running server) are listed below with the reason, and nothing else is skipped.
//! The Rust snippets run as doc tests (`ReadmeDoctests` in src/lib.rs).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Lines not run here, each with its reason.
const NOT_RUN: &[(&str, &str)] = &[
    ("cargo fmt --check", "the test command itself"),
    (
        "cargo install --path .",
        "installs into ~/.cargo; CI builds the same binary",
    ),
    ("export ", "sets a variable for the lines after it"),
    (
        "conclave serve",
        "runs until stopped: the serve tests start it and call it",
    ),
    (
        "DESK_TOKEN=change-me docker compose",
        "needs a Docker engine",
    ),
    (
        "conclave eval evals/real-mc.toml",
        "needs an API key for a real endpoint",
    ),
    (
        "conclave eval evals/real-local.toml",
        "needs a local model server (tools/local-llm start)",
    ),
    (
        "conclave audit verify",
        "in the PostgreSQL block: needs the database of the lines above; audit verify runs in the synopsis above",
    ),
    (
        "cargo run --example own_agents",
        "an example: run by the examples test below",
    ),
    (
        "cargo run --example embed",
        "an example: run by the examples test below",
    ),
    (
        "cargo run --example axum_router",
        "an example: run by the examples test below",
    ),
    (
        "cargo run --example tally",
        "an example: run by the examples test below",
    ),
];

/// One shell line of the README: the command, and for a transcript what it shows.
#[derive(Debug)]
struct Line {
    command: String,
    shown: Vec<String>,
}

/// The shell lines of the README's `sh` blocks (comments dropped, continuations joined).
fn lines(readme: &str) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::new();
    let mut in_sh = false;
    let mut in_transcript = false;
    let mut pending = String::new();
    for raw in readme.lines() {
        if raw.starts_with("```") {
            in_sh = raw.trim() == "```sh";
            in_transcript = false;
            continue;
        }
        if !in_sh {
            continue;
        }
        if let Some(c) = raw.strip_prefix("$ ") {
            out.push(Line {
                command: c.trim().to_owned(),
                shown: Vec::new(),
            });
            in_transcript = true;
            continue;
        }
        if in_transcript {
            if let Some(last) = out.last_mut() {
                last.shown.push(raw.to_owned());
            }
            continue;
        }
        let text = strip_comment(raw);
        if text.trim().is_empty() {
            continue;
        }
        if let Some(start) = text.strip_suffix('\\') {
            pending += start;
            continue;
        }
        let command = format!("{pending}{text}").trim().to_owned();
        pending.clear();
        out.push(Line {
            command,
            shown: Vec::new(),
        });
    }
    out
}

/// The line without a trailing `# comment` (a `#` after a space, outside quotes).
fn strip_comment(line: &str) -> String {
    let mut quoted = false;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted && prev.is_whitespace() => return line[..i].trim_end().to_owned(),
            _ => {}
        }
        prev = c;
    }
    line.trim_end().to_owned()
}

/// Splits a command line into words (double quotes group, as the shell does).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any || !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                any = false;
            }
            c => word.push(c),
        }
    }
    if any || !word.is_empty() {
        out.push(word);
    }
    out
}

/// The placeholders of a synopsis and what stands in for them.
const PLACEHOLDERS: &[(&str, &str)] = &[
    ("ID", "1"),
    ("AGENT", "EconAgent"),
    ("RUN", "no-such-run"),
    ("FILE.csv", "tests/fixtures/estimate/ds-002.csv"),
    ("D", "trading"),
    ("N", "7"),
    ("A..B", "7..8"),
    ("V", "0"),
];

/// A synopsis expanded into runnable commands: optional `[…]` groups dropped, alternatives
/// `a | b ID | c` split, placeholders filled in. `None` for a plain command.
fn expand(command: &str) -> Option<Vec<String>> {
    let placeholder = |w: &str| PLACEHOLDERS.iter().any(|(p, _)| *p == w);
    let has_optional = command.contains('[');
    let is_synopsis =
        has_optional || command.contains(" | ") || words(command).iter().any(|w| placeholder(w));
    if !is_synopsis {
        return None;
    }
    // Drop optional groups.
    let mut plain = String::new();
    let mut depth = 0;
    for c in command.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            c if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    // Alternatives share the first two words (`conclave audit list | show ID | verify`).
    let parts: Vec<&str> = plain.split(" | ").collect();
    let head: Vec<String> = words(parts[0]).into_iter().take(2).collect();
    let mut out = Vec::new();
    for (k, part) in parts.iter().enumerate() {
        let mut ws = words(part);
        if k > 0 {
            ws = head.iter().cloned().chain(ws).collect();
        }
        let filled: Vec<String> = ws
            .into_iter()
            .map(|w| {
                PLACEHOLDERS
                    .iter()
                    .find(|(p, _)| *p == w)
                    .map_or(w, |(_, v)| (*v).to_owned())
            })
            .collect();
        out.push(filled.join(" "));
    }
    Some(out)
}

/// A copy of what the README's commands read: agents, policies, evals, examples, fixtures.
fn project_copy(to: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["agents", "policies", "evals", "examples", "tests/fixtures"] {
        copy_dir(&root.join(dir), &to.join(dir));
    }
    std::fs::copy(root.join("conclave.toml"), to.join("conclave.toml")).expect("copy");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

/// Runs `conclave ARGS` in `dir` (the store is the copy's, from its conclave.toml); a
/// trailing `> FILE` writes stdout there.
fn run(dir: &Path, command: &str) -> (i32, String, String) {
    let mut ws = words(command);
    let mut to_file: Option<PathBuf> = None;
    if let Some(i) = ws.iter().position(|w| w == ">") {
        to_file = ws.get(i + 1).map(|f| dir.join(f));
        ws.truncate(i);
    }
    let args: Vec<String> = match ws.first().map(String::as_str) {
        Some("conclave") => ws[1..].to_vec(),
        Some("cargo") => {
            let at = ws
                .iter()
                .position(|w| w == "--")
                .expect("cargo run … -- ARGS");
            ws[at + 1..].to_vec()
        }
        other => panic!("not a conclave command: {other:?} in {command}"),
    };
    let out = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(&args)
        .current_dir(dir)
        .env_remove("CONCLAVE_STORE")
        .env_remove("CONCLAVE_AGENTS")
        .env_remove("CONCLAVE_POLICIES")
        .env_remove("CONCLAVE_DATABASE_URL")
        .output()
        .expect("run conclave");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if let Some(f) = to_file {
        std::fs::write(f, &stdout).expect("write");
    }
    (
        out.status.code().unwrap_or(-1),
        stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_readme_command_runs_as_written() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README");
    let dir = tempfile::tempdir().expect("tmp");
    project_copy(dir.path());
    let mut ran = 0;
    let mut synopses = Vec::new();
    let mut plain = std::collections::BTreeSet::new();
    for line in lines(&readme) {
        let c = &line.command;
        if let Some((_, why)) = NOT_RUN.iter().find(|(p, _)| c.starts_with(p)) {
            println!("not run: {c} ({why})");
            continue;
        }
        // A transcript's pipe to `head` shows the first lines: compare with those.
        let command = c.split(" | head").next().unwrap_or(c).to_owned();
        if let Some(expanded) = expand(&command) {
            synopses.push((command, expanded));
            continue;
        }
        plain.insert(command.clone());
        let (code, out, err) = run(dir.path(), &command);
        assert_eq!(code, 0, "`{command}` exited {code}:\n{err}");
        for shown in line.shown.iter().filter(|l| !l.contains('…')) {
            assert!(
                out.lines().any(|l| l.trim_end() == shown.trim_end()),
                "`{command}` does not print the README's line {shown:?}; it printed:\n{out}"
            );
        }
        ran += 1;
    }
    // Synopses after the commands: the store then holds what the commands made.
    let mut done = std::collections::BTreeSet::new();
    for (synopsis, commands) in &synopses {
        for command in commands {
            // The same command as one already run (a synopsis of its options) runs once.
            if plain.contains(command) || !done.insert(command.clone()) {
                continue;
            }
            let (code, _, err) = run(dir.path(), command);
            assert!(
                !err.contains("Usage:") && !err.contains("unexpected argument"),
                "synopsis `{synopsis}` as `{command}` is not understood:\n{err}"
            );
            assert!(
                [0, 1, 2].contains(&code),
                "`{command}` exited {code}:\n{err}"
            );
            ran += 1;
        }
    }
    assert!(ran >= 30, "only {ran} README commands ran");
    println!("{ran} README commands ran");
}

/// The examples the README names run (as `cargo run --example NAME` would) and succeed.
#[test]
fn the_readme_examples_run() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/examples");
    let names: Vec<String> = lines(&readme)
        .iter()
        .filter_map(|l| {
            l.command
                .strip_prefix("cargo run --example ")
                .map(|n| n.trim().to_owned())
        })
        .collect();
    assert!(names.len() >= 4, "{names:?}");
    for name in names {
        let exe = examples.join(&name);
        assert!(
            exe.exists(),
            "{} is missing: `cargo test` builds the examples",
            exe.display()
        );
        let out = Command::new(&exe)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("CONCLAVE_EXAMPLE_BASE_URL")
            .output()
            .expect("run example");
        assert!(
            out.status.success(),
            "example {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "example {name} printed nothing");
    }
}

#[test]
fn synopses_expand_into_commands() {
    assert_eq!(
        expand("conclave audit list | show ID | verify | replay ID"),
        Some(vec![
            "conclave audit list".to_owned(),
            "conclave audit show 1".to_owned(),
            "conclave audit verify".to_owned(),
            "conclave audit replay 1".to_owned(),
        ])
    );
    assert_eq!(
        expand("conclave trust show [--domain D]"),
        Some(vec!["conclave trust show".to_owned()])
    );
    assert_eq!(expand("conclave policy explain trading"), None);
    assert_eq!(
        words(r#"conclave review suspend --reason "flash crash""#),
        ["conclave", "review", "suspend", "--reason", "flash crash"]
    );
    assert_eq!(
        strip_comment(r#"conclave x --reason "a # b"   # note"#),
        r#"conclave x --reason "a # b""#
    );
}
