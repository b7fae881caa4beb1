//! Policies and agent definitions: shipped files pass, broken files get pointed
//! diagnostics (snapshots), explanations (snapshots), deny-by-default routing, schemas,
//! and a fuzz loop over the loaders.

use std::fs;
use std::path::{Path, PathBuf};

use conclave::aggregate::Kind;
use conclave::policy::{Catalog, SourceFile, schema_json};
use proptest::prelude::*;

use crate::support::Rng;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `.toml` files of a folder, with paths relative to the crate root (stable snapshots).
fn files(rel: &str) -> Vec<SourceFile> {
    let mut paths: Vec<PathBuf> = fs::read_dir(root().join(rel))
        .expect("folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = fs::read_to_string(&p).expect("read");
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            SourceFile::new(Path::new(rel).join(name), text)
        })
        .collect()
}

fn shipped() -> Catalog {
    Catalog::load(&files("agents"), &files("policies")).unwrap_or_else(|d| {
        panic!(
            "{}",
            d.iter()
                .map(conclave::policy::PolicyDiagnostic::one_line)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

#[test]
fn every_shipped_file_passes_and_documents_itself() {
    let c = shipped();
    assert_eq!(c.policies.len(), files("policies").len());
    assert!(c.agents.len() >= 15);
    for f in files("policies").iter().chain(&files("agents")) {
        let first = f
            .text
            .lines()
            .find(|l| !l.starts_with("#:schema"))
            .unwrap_or_default();
        assert!(
            first.starts_with("# "),
            "{} must open with a comment saying what it does",
            f.path.display()
        );
        for word in ["What:", "Why:", "Expected:"] {
            assert!(
                f.text.contains(word),
                "{}: header lacks {word}",
                f.path.display()
            );
        }
    }
}

#[test]
fn broken_policies_are_pointed_at() {
    let agents = files("agents");
    let shipped_policies = files("policies");
    let cases = files("tests/policy_cases/broken");
    assert!(cases.len() >= 15);
    for case in cases {
        let mut policies = shipped_policies.clone();
        policies.push(case.clone());
        let diags = Catalog::load(&agents, &policies).expect_err("a broken policy must not load");
        assert_eq!(
            diags.len(),
            1,
            "{}: expected one diagnostic, got {:#?}",
            case.path.display(),
            diags
        );
        let d = &diags[0];
        assert_eq!(
            d.path, case.path,
            "the diagnostic must point into the broken file"
        );
        assert!(
            d.line >= 1 && d.column >= 1,
            "{}: no position",
            case.path.display()
        );
        let name = case
            .path
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        insta::assert_snapshot!(format!("policy-{name}"), d.render());
    }
}

#[test]
fn broken_agents_are_pointed_at() {
    let agents = files("agents");
    for case in files("tests/policy_cases/broken-agents") {
        let mut all = agents.clone();
        all.push(case.clone());
        let diags =
            Catalog::load(&all, &files("policies")).expect_err("a broken agent must not load");
        assert_eq!(diags.len(), 1, "{}: {diags:#?}", case.path.display());
        assert_eq!(diags[0].path, case.path);
        let name = case
            .path
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        insta::assert_snapshot!(format!("agent-{name}"), diags[0].render());
    }
}

#[test]
fn explanations_read_as_prose() {
    let c = shipped();
    for p in &c.policies {
        let text = p.explain(&c.agents);
        for section in ["Who votes:", "How:", "Quorum:", "Escalation:", "Cost:"] {
            assert!(text.contains(section), "{}: lacks {section}", p.id());
        }
        insta::assert_snapshot!(format!("explain-{}", p.id()), text);
    }
}

#[test]
fn a_decision_no_policy_covers_is_refused() {
    let c = shipped();
    assert_eq!(
        c.route("trading", Kind::Score).expect("covered").id(),
        "trading"
    );
    assert_eq!(
        c.route("code-review", Kind::Ranking).expect("covered").id(),
        "code-review"
    );
    let refused = c.route("trading", Kind::Vector).expect_err("not covered");
    assert!(
        refused.to_string().contains("denies by default"),
        "{refused}"
    );
    assert!(c.route("weather", Kind::Score).is_err());
    // With no policies at all, everything is refused.
    let empty = Catalog::load(&files("agents"), &[]).expect("agents alone load");
    assert!(empty.route("trading", Kind::Score).is_err());
}

#[test]
fn committed_schemas_match_the_generated_ones() {
    for (policy, path) in [
        (true, "policies/schema.json"),
        (false, "agents/schema.json"),
    ] {
        let committed = fs::read_to_string(root().join(path)).expect("schema file");
        assert_eq!(
            committed,
            schema_json(policy),
            "{path} is stale: run `conclave policy schema > {path}`"
        );
    }
    let committed = fs::read_to_string(root().join("evals/schema.json")).expect("schema file");
    assert_eq!(
        committed,
        conclave::eval::suite::schema_json(),
        "evals/schema.json is stale: run `conclave policy schema --kind suite > evals/schema.json`"
    );
}

/// Mutations of the shipped files: truncations, byte flips, insertions, swapped lines.
fn mutate(text: &str, rng: &mut Rng) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let edits = 1 + (rng.unit() * 4.0) as usize;
    for _ in 0..edits {
        if bytes.is_empty() {
            break;
        }
        let at = (rng.unit() * bytes.len() as f64) as usize % bytes.len();
        match (rng.unit() * 5.0) as u32 {
            0 => bytes.truncate(at),
            1 => {
                const SET: &[u8] = b"=[]{}\",.#\n0123456789-ex";
                bytes[at] = SET[(rng.unit() * SET.len() as f64) as usize % SET.len()];
            }
            2 => {
                const SET: &[u8] = b"\"[]{}=,\n";
                bytes.insert(
                    at,
                    SET[(rng.unit() * SET.len() as f64) as usize % SET.len()],
                );
            }
            3 => {
                bytes.remove(at);
            }
            _ => bytes[at] = (rng.unit() * 256.0) as u8,
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A fuzz loop over both loaders. `CONCLAVE_FUZZ_SECS=600` runs it for ten minutes.
#[test]
fn loaders_never_panic_on_mangled_files() {
    let agents = files("agents");
    let policies = files("policies");
    let secs: u64 = std::env::var("CONCLAVE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut rng = Rng(0xC0DE);
    let mut runs = 0u64;
    let mut rejected = 0u64;
    while runs < 2000 || std::time::Instant::now() < deadline {
        let mangle_agent = rng.unit() < 0.4;
        let mut a = agents.clone();
        let mut p = policies.clone();
        if mangle_agent {
            let i = (rng.unit() * a.len() as f64) as usize % a.len();
            a[i] = SourceFile::new(a[i].path.clone(), mutate(&a[i].text, &mut rng));
        } else {
            let i = (rng.unit() * p.len() as f64) as usize % p.len();
            p[i] = SourceFile::new(p[i].path.clone(), mutate(&p[i].text, &mut rng));
        }
        if let Err(diags) = Catalog::load(&a, &p) {
            rejected += 1;
            for d in &diags {
                // Rendering must not panic either, whatever the span.
                assert!(!d.render().is_empty());
            }
        }
        runs += 1;
    }
    println!(
        "fuzz: {runs} mangled catalogs loaded without a panic ({rejected} rejected with diagnostics)"
    );
}

proptest! {
    /// Arbitrary text as a policy or an agent file: an error or a catalog, never a panic.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}", as_agents in any::<bool>()) {
        let f = SourceFile::new("fuzz.toml", text);
        let _ = if as_agents { Catalog::load(&[f], &[]) } else { Catalog::load(&files("agents"), &[f]) };
    }
}

#[test]
fn the_policy_cli_checks_explains_and_routes() {
    use crate::support::conclave;
    let r = root();
    let dirs = |args: &[&str]| {
        let mut v: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        v.extend([
            "--agents".into(),
            r.join("agents").display().to_string(),
            "--policies".into(),
            r.join("policies").display().to_string(),
        ]);
        v
    };
    let run = |args: Vec<String>| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = conclave(&a, b"");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(dirs(&["policy", "check"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("no problems"), "{out}");
    // A broken file: exit 1, the diagnostic on stderr with file, line and column.
    let broken = r
        .join("tests/policy_cases/broken/quorum-too-large.toml")
        .display()
        .to_string();
    let (code, _, err) = run(dirs(&["policy", "check", &broken]));
    assert_eq!(code, Some(1));
    assert!(
        err.contains("quorum-too-large.toml:6:22") && err.contains("larger than the 3 agents"),
        "{err}"
    );
    let (code, json, _) = run(dirs(&["policy", "check", "--json", &broken]));
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v[0]["line"], 6);
    assert_eq!(v[0]["code"], "policy::quorum");
    // Explain and which.
    let (code, out, _) = run(dirs(&["policy", "explain", "trading"]));
    assert_eq!(code, Some(0));
    assert!(out.contains("geometric median"), "{out}");
    let (code, _, err) = run(dirs(&["policy", "explain", "nope"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown policy \"nope\""), "{err}");
    let (code, out, _) = run(dirs(&[
        "policy",
        "which",
        "--domain",
        "moderation",
        "--kind",
        "choice",
    ]));
    assert_eq!(code, Some(0));
    assert!(out.starts_with("content-moderation"), "{out}");
    let (code, _, err) = run(dirs(&[
        "policy", "which", "--domain", "weather", "--kind", "score",
    ]));
    assert_eq!(code, Some(1));
    assert!(err.contains("refused"), "{err}");
    // The schema command prints what is committed.
    let (code, out, _) = run(vec![
        "policy".into(),
        "schema".into(),
        "--kind".into(),
        "agents".into(),
    ]);
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        fs::read_to_string(r.join("agents/schema.json")).expect("schema")
    );
}

#[test]
fn a_zero_rate_limit_is_refused() {
    let agents = SourceFile::new(
        "agents/a.toml",
        "[[agent]]\nid = \"x\"\nkind = \"scripted\"\nrate_per_minute = 0\nscripted = { competence = { default = 0.8 } }\n",
    );
    let d = Catalog::load(&[agents], &[]).expect_err("refused");
    assert!(
        d.iter()
            .any(|x| x.message.contains("rate_per_minute must be at least 1")),
        "{:?}",
        d.iter().map(|x| x.one_line()).collect::<Vec<_>>()
    );
}

/// `--agents` and `--policies` take one file as well as a folder.
#[test]
fn the_cli_reads_single_files_as_well_as_folders() {
    let out = crate::support::conclave(
        &[
            "policy",
            "check",
            "--agents",
            "agents/panel.toml",
            "--policies",
            "policies/panel.toml",
        ],
        b"",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 agent file and 1 policy checked"), "{text}");
}
