//! Bad input to `conclave tally` and `conclave trust estimate`: exit code 2, one line on
//! stderr naming the problem, nothing on stdout, never a panic.

use crate::support::conclave;

/// `(what, arguments, standard input, words the message must contain)`.
const CASES: &[(&str, &[&str], &str, &[&str])] = &[
    (
        "malformed JSON names line and column",
        &["tally", "--rule", "plurality", "-"],
        "{\"kind\":\"choice\",\n \"options\":[\"a\"], \"ballots\":[{\"agent\":\"x\",\"choice\":\"a\"},]}",
        &["invalid JSON", "line 2 column"],
    ),
    (
        "empty document",
        &["tally", "--rule", "mean", "-"],
        "",
        &["invalid JSON", "EOF"],
    ),
    (
        "trailing garbage",
        &["tally", "--rule", "mean", "-"],
        r#"{"kind":"score","ballots":[{"agent":"x","value":1}]} x"#,
        &["trailing characters", "line 1 column"],
    ),
    (
        "unknown rule",
        &["tally", "--rule", "majority-ish", "-"],
        "{}",
        &["unknown rule \"majority-ish\"", "schulze"],
    ),
    (
        "unknown parameter",
        &["tally", "--rule", "borda", "--param", "trim=0.1", "-"],
        "{}",
        &["borda has no parameter \"trim\""],
    ),
    (
        "parameter out of range",
        &[
            "tally",
            "--rule",
            "trimmed-mean",
            "--param",
            "trim=0.5",
            "-",
        ],
        "{}",
        &["trim", "[0, 0.5)"],
    ),
    (
        "parameter without a value",
        &["tally", "--rule", "krum", "--param", "f", "-"],
        "{}",
        &["expected KEY=VALUE"],
    ),
    (
        "unknown option",
        &["tally", "--rule", "plurality", "-"],
        r#"{"kind":"choice","options":["buy","hold"],"ballots":[{"agent":"econ","choice":"hodl"}]}"#,
        &["agent \"econ\"", "unknown option \"hodl\"", "buy, hold"],
    ),
    (
        "ranking names an option twice",
        &["tally", "--rule", "schulze", "-"],
        r#"{"kind":"ranking","options":["a","b","c"],"ballots":[{"agent":"x","ranking":["a","b","a"]}]}"#,
        &["agent \"x\"", "names \"a\" twice"],
    ),
    (
        "NaN",
        &["tally", "--rule", "mean", "-"],
        r#"{"kind":"score","ballots":[{"agent":"x","value":NaN}]}"#,
        &["not a finite number", "line 1 column 49"],
    ),
    (
        "infinity",
        &["tally", "--rule", "median", "-"],
        r#"{"kind":"score","ballots":[{"agent":"x","value":1e999}]}"#,
        &["out of range", "finite"],
    ),
    (
        "empty ballot list",
        &["tally", "--rule", "mean", "-"],
        r#"{"kind":"score","ballots":[]}"#,
        &["no ballots"],
    ),
    (
        "only abstentions",
        &["tally", "--rule", "plurality", "-"],
        r#"{"kind":"choice","options":["a"],"ballots":[{"agent":"x","abstain":"timeout"}]}"#,
        &["all 1 ballots are abstentions"],
    ),
    (
        "vectors of different lengths",
        &["tally", "--rule", "geometric-median", "-"],
        r#"{"kind":"vector","ballots":[{"agent":"x","vector":[1,2]},{"agent":"y","vector":[1]}]}"#,
        &["agent \"y\"", "1 components", "2"],
    ),
    (
        "wrong type",
        &["tally", "--rule", "mean", "-"],
        r#"{"kind":"score","ballots":[{"agent":"x","value":"high"}]}"#,
        &["ballots[0].value", "invalid type"],
    ),
    (
        "unknown kind",
        &["tally", "--rule", "mean", "-"],
        r#"{"kind":"scores","ballots":[]}"#,
        &["kind", "unknown variant `scores`"],
    ),
    (
        "unknown field",
        &["tally", "--rule", "mean", "-"],
        r#"{"kind":"score","ballots":[],"weight":{}}"#,
        &["unknown field `weight`"],
    ),
    (
        "ballot with two answers",
        &["tally", "--rule", "mean", "-"],
        r#"{"kind":"score","ballots":[{"agent":"x","value":1,"choice":"a"}]}"#,
        &["both \"choice\" and \"value\""],
    ),
    (
        "rule does not fit the kind",
        &["tally", "--rule", "borda", "-"],
        r#"{"kind":"score","ballots":[{"agent":"x","value":1}]}"#,
        &["borda cannot count score ballots"],
    ),
    (
        "negative weight",
        &["tally", "--rule", "weighted-mean", "-"],
        r#"{"kind":"score","ballots":[{"agent":"x","value":1}],"weights":{"x":-1}}"#,
        &["weight of agent \"x\" is -1"],
    ),
    (
        "two ballots from one agent",
        &["tally", "--rule", "plurality", "-"],
        r#"{"kind":"choice","options":["a","b"],"ballots":[{"agent":"x","choice":"a"},{"agent":"x","choice":"b"}]}"#,
        &["agent \"x\" cast more than one ballot"],
    ),
    (
        "choice decision without options",
        &["tally", "--rule", "plurality", "-"],
        r#"{"kind":"choice","ballots":[{"agent":"x","choice":"a"}]}"#,
        &["needs a non-empty list of options"],
    ),
    (
        "krum with too few ballots",
        &["tally", "--rule", "krum", "--param", "f=2", "-"],
        r#"{"kind":"score","ballots":[{"agent":"x","value":1},{"agent":"y","value":2}]}"#,
        &["cannot tolerate f = 2"],
    ),
    (
        "missing file",
        &["tally", "--rule", "mean", "/nonexistent/ballots.json"],
        "",
        &["cannot read /nonexistent/ballots.json"],
    ),
    (
        "CSV with a missing column",
        &["trust", "estimate", "-"],
        "task,worker\nt1,w1\n",
        &["lacks column \"label\""],
    ),
    (
        "CSV with a short row",
        &["trust", "estimate", "-"],
        "task,worker,label\nt1,w1,a\nt2,w1\n",
        &["line 3", "2 fields"],
    ),
    (
        "CSV with an empty field",
        &["trust", "estimate", "--method", "one-coin", "-"],
        "task,worker,label\nt1,,a\n",
        &["line 2", "empty worker"],
    ),
    (
        "CSV with no rows",
        &["trust", "estimate", "-"],
        "task,worker,label\n",
        &["no annotations"],
    ),
    (
        "unknown method",
        &["trust", "estimate", "--method", "glad", "-"],
        "task,worker,label\nt,w,l\n",
        &["unknown method \"glad\""],
    ),
];

#[test]
fn bad_input_exits_2_with_one_line() {
    for (what, args, stdin, words) in CASES {
        let out = conclave(args, stdin.as_bytes());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{what}: exit code; stderr: {err}"
        );
        assert!(out.stdout.is_empty(), "{what}: printed on stdout");
        assert!(!err.contains("panicked"), "{what}: panicked: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{what}: not one line: {err}"
        );
        for w in *words {
            assert!(err.contains(w), "{what}: message lacks {w:?}: {err}");
        }
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A deterministic sweep of mangled inputs: truncations and byte flips of a valid document.
    let valid = br#"{"kind":"ranking","options":["a","b","c"],"ballots":[{"agent":"x","ranking":["a","b"]},{"agent":"y","choice":"c","confidence":0.5},{"agent":"z","abstain":"timeout"}],"weights":{"x":2}}"#;
    for cut in (0..valid.len()).step_by(7) {
        let out = conclave(&["tally", "--rule", "schulze", "-"], &valid[..cut]);
        assert!(matches!(out.status.code(), Some(0 | 2)), "cut {cut}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
    for (i, flip) in [
        (3usize, b'X'),
        (20, b'0'),
        (60, b']'),
        (100, b'"'),
        (150, b'-'),
    ] {
        let mut v = valid.to_vec();
        v[i] = flip;
        let out = conclave(&["tally", "--rule", "instant-runoff", "-"], &v);
        assert!(matches!(out.status.code(), Some(0 | 2)), "flip at {i}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
}

#[test]
fn hostile_files_get_a_bounded_printable_diagnostic_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    // A syntax error at column 70,000 (the renderer used to panic past column 65,535).
    let long = dir.path().join("long.toml");
    std::fs::write(
        &long,
        format!(
            "id = \"x\"\ndescription = \"{}\" oops\n",
            "a".repeat(70_000)
        ),
    )
    .unwrap();
    // A 5 MB agent id ending in a terminal escape sequence.
    let huge = dir.path().join("huge.toml");
    std::fs::write(
        &huge,
        format!(
            "id = \"x\"\ndescription = \"d\"\napplies = {{ domains = [\"a\"], kinds = [\"choice\"] }}\npool = {{ agents = [\"{}\\u001b[31m\"] }}\nrule = {{ name = \"plurality\" }}\nquorum = {{ ballots = 1 }}\n",
            "z".repeat(5_000_000)
        ),
    )
    .unwrap();
    for file in [&long, &huge] {
        let out = conclave(&["policy", "check", file.to_str().unwrap()], b"");
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = [out.stdout, out.stderr].concat();
        assert!(text.len() < 4000, "{} bytes of diagnostics", text.len());
        assert!(
            !text.contains(&0x1b),
            "a raw escape character reached the terminal"
        );
    }
    // The same files in a policies folder do not crash `decide` either.
    let folder = dir.path().join("policies");
    std::fs::create_dir(&folder).unwrap();
    std::fs::copy(&long, folder.join("long.toml")).unwrap();
    let out = conclave(
        &[
            "decide",
            "--policies",
            folder.to_str().unwrap(),
            "--policy",
            "x",
            "q",
            "--options",
            "a,b",
        ],
        b"",
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn krum_refuses_more_ballots_than_it_can_compare_in_time() {
    let ballots: Vec<String> = (0..12_000)
        .map(|i| format!("{{\"agent\":\"a{i}\",\"value\":{}}}", i % 7))
        .collect();
    let input = format!("{{\"kind\":\"score\",\"ballots\":[{}]}}", ballots.join(","));
    let started = std::time::Instant::now();
    let out = conclave(
        &["tally", "--rule", "krum", "--param", "f=1", "-"],
        input.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("more than it compares pairwise"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

/// Runs `conclave ARGS` in `dir`, with no configuration from the environment.
fn conclave_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(args)
        .current_dir(dir)
        .env_remove("CONCLAVE_STORE")
        .env_remove("CONCLAVE_AGENTS")
        .env_remove("CONCLAVE_POLICIES")
        .output()
        .expect("run conclave")
}

/// Outside a project folder the commands say where they looked and that nothing was found
/// (exit 2), a missing file is named as missing, and a conclave.toml in a parent folder is
/// found from below it.
#[test]
fn outside_a_project_the_commands_say_where_they_looked() {
    let dir = tempfile::tempdir().expect("tmp");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    for args in [
        &["policy", "check"][..],
        &["decide", "--policy", "trading", "Sentiment?", "--numeric"],
        &["policy", "explain", "trading"],
    ] {
        let out = conclave_in(&empty, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("no agents found")
                && err.contains(&empty.join("agents").display().to_string())
                && err.contains("conclave.toml"),
            "{args:?}: {err}"
        );
    }
    // A file that does not exist is named as missing (not sixteen unknown agents).
    let root = env!("CARGO_MANIFEST_DIR");
    let out = conclave_in(
        &empty,
        &[
            "policy",
            "check",
            "--agents",
            "nosuch.toml",
            "--policies",
            &format!("{root}/policies"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("nosuch.toml") && err.contains("does not exist"),
        "{err}"
    );
    assert!(!err.contains("unknown agent"), "{err}");
    // A project file in a parent folder is found from a folder below it.
    let project = dir.path().join("project");
    let below = project.join("deep/er");
    std::fs::create_dir_all(&below).expect("mkdir");
    std::fs::write(
        project.join("conclave.toml"),
        format!("agents = \"{root}/agents\"\npolicies = \"{root}/policies\"\nstore = \"state\"\n"),
    )
    .expect("write");
    let out = conclave_in(&below, &["policy", "check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = conclave_in(
        &below,
        &[
            "decide",
            "--policy",
            "trading",
            "Sentiment?",
            "--numeric",
            "--truth",
            "0.2",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        project.join("state/CONCLAVE-STORE").exists(),
        "the store is the project's"
    );
    // A project file with an unknown key is refused with its path.
    std::fs::write(project.join("conclave.toml"), "agent = \"x\"\n").expect("write");
    let out = conclave_in(&below, &["policy", "check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("conclave.toml") && err.contains("agent"),
        "{err}"
    );
}

/// `trust show --domain` with a domain the store has no record of says so, naming the
/// domains it has.
#[test]
fn trust_show_names_an_unknown_domain() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = env!("CARGO_MANIFEST_DIR");
    let store = dir.path().join("store");
    let store = store.to_str().expect("path");
    let out = conclave_in(
        dir.path(),
        &[
            "--store",
            store,
            "trust",
            "estimate",
            "--apply",
            "--domain",
            "labels",
            &format!("{root}/tests/fixtures/estimate/ds-002.csv"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = conclave_in(
        dir.path(),
        &["--store", store, "trust", "show", "--domain", "nosuch"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("\"nosuch\"") && err.contains("labels"),
        "{err}"
    );
}

/// A choice with one option or a duplicate is refused before any agent is asked (it
/// panicked with one option), and nothing is recorded. (The CLI drops empty pieces of
/// `--options`, such as a trailing comma; the library refuses an empty option.)
#[test]
fn decide_refuses_one_duplicate_or_empty_options() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let root = env!("CARGO_MANIFEST_DIR");
    for (options, says) in [
        ("buy", "at least two options"),
        ("buy,hold,buy", "listed twice"),
        ("buy,,", "at least two options"),
    ] {
        let out = conclave_in(
            std::path::Path::new(root),
            &[
                "decide",
                "--store",
                store.to_str().expect("utf-8"),
                "--policy",
                "panel",
                "Which?",
                "--options",
                options,
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{options}: {err}");
        assert!(err.contains(says), "{options}: {err}");
    }
    let out = conclave_in(
        std::path::Path::new(root),
        &["audit", "show", "--store", store.to_str().expect("utf-8")],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("Which?"), "{text}");
}
