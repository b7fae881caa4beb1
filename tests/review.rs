//! The Cognitive Director: the review queue, overrides, reweights, suspensions, the ratchet
//! and the causal barrier, through the CLI and the library.

use std::fs;
use std::path::Path;

use conclave::governor::director::{RATCHET, RATCHET_WINDOW_SECS};
use conclave::{
    Catalog, Decision, Directives, Director, EscalateWith, Governor, MemoryTrustStore, Outcome,
    SourceFile, TrustParams, TrustStore, Truth,
};

use crate::support::conclave;

const AGENTS: &str = r#"
[[agent]]
id = "a1"
kind = "scripted"
scripted = { competence = { default = 0.8 } }

[[agent]]
id = "a2"
kind = "scripted"
scripted = { competence = { default = 0.8 } }

[[agent]]
id = "a3"
kind = "scripted"
scripted = { competence = { default = 0.8 } }
"#;

/// Trading decisions always go to a human (nothing reaches 0.99); research ones are decided.
const POLICIES: [(&str, &str); 2] = [
    (
        "trading.toml",
        r#"id = "trading"
description = "Every call reviewed."
applies = { domains = ["trading"], kinds = ["choice"] }
pool = { agents = ["a1", "a2", "a3"] }
rule = { name = "weighted-plurality" }
quorum = { ballots = 3 }
early_stop = { enabled = false }
thresholds = { accept = 0.999, arbitrate = 0.999, human = 0.999 }
"#,
    ),
    (
        "research.toml",
        r#"id = "research"
description = "Decided by the vote."
applies = { domains = ["research"], kinds = ["choice"] }
pool = { agents = ["a1", "a2", "a3"] }
rule = { name = "weighted-plurality" }
quorum = { ballots = 3 }
early_stop = { enabled = false }
thresholds = { accept = 0.0, arbitrate = 0.0, human = 0.0 }
"#,
    ),
];

struct Desk {
    _dir: tempfile::TempDir,
    store: String,
    agents: String,
    policies: String,
}

impl Desk {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let agents = dir.path().join("agents");
        let policies = dir.path().join("policies");
        fs::create_dir_all(&agents).expect("dir");
        fs::create_dir_all(&policies).expect("dir");
        fs::write(agents.join("a.toml"), AGENTS).expect("write");
        for (name, text) in POLICIES {
            fs::write(policies.join(name), text).expect("write");
        }
        let s = |p: &Path| p.to_str().expect("utf-8").to_owned();
        Self {
            store: s(&dir.path().join("store")),
            agents: s(&agents),
            policies: s(&policies),
            _dir: dir,
        }
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut full = vec!["--store", self.store.as_str()];
        full.extend_from_slice(args);
        let out = conclave(&full, b"");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        out
    }

    fn decide(&self, policy: &str, seed: u64) -> serde_json::Value {
        let seed = seed.to_string();
        let out = self.ok(&[
            "decide",
            "--policy",
            policy,
            "--options",
            "buy,hold,sell",
            "--truth",
            "hold",
            "--seed",
            &seed,
            "--agents",
            &self.agents,
            "--policies",
            &self.policies,
            "--json",
            "Trade?",
        ]);
        serde_json::from_str(&out).expect("verdict json")
    }
}

#[test]
fn the_directors_desk_through_the_cli() {
    let desk = Desk::new();
    // An escalated decision waits in the queue.
    let v = desk.decide("trading", 0);
    assert_eq!(v["outcome"]["outcome"], "human", "{v}");
    let id = v["decision"].as_str().expect("id").to_owned();
    let listed = desk.ok(&["review", "list"]);
    assert!(listed.contains(&id), "{listed}");
    let shown = desk.ok(&["review", "show", &id]);
    assert!(shown.contains("trust version now: 0"), "{shown}");

    // An override: recorded in the chain, graded, and out of the queue.
    let out = desk.ok(&[
        "review",
        "decide",
        &id,
        "--answer",
        "hold",
        "--by",
        "alice",
        "--reason",
        "checked the filing",
        "--seen-version",
        "0",
    ]);
    assert!(out.contains("answered \"hold\" by alice"), "{out}");
    let chain = desk.ok(&["audit", "list", "--json"]);
    let chain: serde_json::Value = serde_json::from_str(&chain).expect("json");
    let kinds: Vec<&str> = chain
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["entry"]["entry"].as_str().unwrap_or(""))
        .collect();
    assert!(
        kinds.contains(&"override") && kinds.contains(&"outcome"),
        "{kinds:?}"
    );
    // The decision's record shows its escalation, the override and who made it, and the
    // graded outcome; it still replays bit for bit.
    let shown = desk.ok(&["audit", "show", &id]);
    for needle in [
        "outcome: to a human",
        "course: stopped",
        "later:",
        "override of record",
        "answer hold by alice",
        "checked the filing",
        "outcome of record",
        "correct answer hold",
    ] {
        assert!(shown.contains(needle), "{needle} missing from:\n{shown}");
    }
    let replayed = desk.ok(&["audit", "replay", &id]);
    assert!(replayed.contains("bit for bit"), "{replayed}");
    let listed: serde_json::Value =
        serde_json::from_str(&desk.ok(&["review", "list", "--json"])).expect("json");
    assert_eq!(
        listed["waiting"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );
    let trust = desk.ok(&["trust", "show", "--json"]);
    assert!(trust.contains("a1"), "graded voters have trust: {trust}");
    // An answer that is not an option is refused before anything is written.
    let (code, _, err) = desk.run(&[
        "review", "decide", &id, "--answer", "maybe", "--by", "alice",
    ]);
    assert_eq!(code, 2, "{err}");

    // The causal barrier: an order prepared against version 0 is refused now.
    let (code, _, err) = desk.run(&[
        "review",
        "suspend",
        "--domain",
        "research",
        "--by",
        "bob",
        "--seen-version",
        "0",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("trust changed since version 0 (now 1)") && err.contains("decision:"),
        "{err}"
    );

    // A reweight: a1 silenced in research for an hour.
    desk.ok(&[
        "review", "reweight", "a1", "--domain", "research", "--factor", "0", "--for", "1h", "--by",
        "alice",
    ]);
    let v = desk.decide("research", 1);
    let a1 = v["ballots"]
        .as_array()
        .expect("ballots")
        .iter()
        .find(|c| c["ballot"]["agent"] == "a1")
        .expect("a1 asked");
    assert_eq!(a1["weight"], 0.0, "{a1}");
    let listed: serde_json::Value =
        serde_json::from_str(&desk.ok(&["review", "list", "--json"])).expect("json");
    let r = &listed["reweights"][0];
    let left = r["until"].as_u64().expect("until") - conclave::audit::now();
    assert!(
        (3500..=3600).contains(&left),
        "expires an hour from now: {r}"
    );

    // Suspend and resume: research decisions go to a human meanwhile.
    assert_eq!(desk.decide("research", 2)["outcome"]["outcome"], "decided");
    desk.ok(&[
        "review", "suspend", "--domain", "research", "--by", "alice", "--reason", "incident",
    ]);
    let v = desk.decide("research", 3);
    assert_eq!(v["outcome"]["outcome"], "human");
    assert!(
        v["outcome"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("suspended") && r.contains("incident")),
        "{v}"
    );
    desk.ok(&["review", "resume", "--domain", "research", "--by", "alice"]);
    assert_eq!(desk.decide("research", 4)["outcome"]["outcome"], "decided");
    let (code, _, err) = desk.run(&["review", "resume", "--domain", "research", "--by", "alice"]);
    assert_eq!(code, 2, "{err}");

    // The ratchet: more than three hand-overs within 72 h suspend trading by themselves.
    for seed in 10..13 {
        assert_eq!(desk.decide("trading", seed)["outcome"]["outcome"], "human");
    }
    let listed = desk.ok(&["review", "list"]);
    assert!(
        listed.contains("suspended: trading, by ratchet"),
        "{listed}"
    );
    let chain = desk.ok(&["audit", "list"]);
    assert!(chain.contains("ratchet"), "{chain}");
    let v = desk.decide("trading", 13);
    assert!(
        v["outcome"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("by ratchet")),
        "{v}"
    );
    desk.ok(&["review", "resume", "--domain", "trading", "--by", "alice"]);
    let listed = desk.ok(&["review", "list"]);
    assert!(!listed.contains("suspended: trading"), "{listed}");
    // The chain still verifies with every kind of record in it.
    desk.ok(&["audit", "verify"]);
}

fn catalog() -> Catalog {
    let policies: Vec<SourceFile> = POLICIES
        .iter()
        .map(|(n, t)| SourceFile::new(*n, *t))
        .collect();
    Catalog::load(&[SourceFile::new("a.toml", AGENTS)], &policies).expect("catalog")
}

fn decision(i: u64, domain: &str) -> Decision {
    Decision::choice(format!("d{i}"), domain, "Trade?", ["buy", "hold", "sell"])
        .with_seed(i)
        .with_truth(Truth::Option("hold".into()))
}

#[tokio::test(start_paused = true)]
async fn the_director_from_the_library() {
    let c = catalog();
    let trust = MemoryTrustStore::new(TrustParams::default())
        .expect("store")
        .snapshot()
        .expect("snapshot");
    let director = Director::default();
    let escalated = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = escalated.clone();
    let build = |policy: &str| {
        let seen = seen.clone();
        Governor::builder(c.policy(policy).expect("policy").clone())
            .agents_from(&c)
            .expect("agents")
            .trust(trust.clone())
            .director(director.clone())
            .escalate_with(move |_d, v| {
                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async move { v }
            })
            .build()
            .expect("governor")
    };
    let research = build("research");
    let trading = build("trading");
    let now = conclave::audit::now();

    // A reweight applies at once, and only while it lasts.
    let reweight = conclave::Order::Reweight {
        agent: "a2".into(),
        domain: "research".into(),
        factor: 0.0,
        seconds: 3600,
    };
    director.order(reweight, "alice", now).expect("reweight");
    let v = research
        .decide(decision(0, "research"))
        .await
        .expect("verdict");
    let w = |v: &conclave::Verdict, a: &str| {
        v.ballots
            .iter()
            .find(|c| c.ballot.agent == a)
            .map(|c| c.weight)
    };
    assert_eq!(w(&v, "a2"), Some(0.0));
    assert!(w(&v, "a1").is_some_and(|x| x > 0.0));
    let orders = director.current();
    assert_eq!(orders.factor("a2", "research", now + 3599), 0.0);
    assert_eq!(orders.factor("a2", "research", now + 3600), 1.0, "expired");
    assert_eq!(orders.factor("a2", "trading", now), 1.0, "per domain");
    assert!(
        Directives::default()
            .reweight("a1", "x", f64::NAN, 10, "x", now)
            .is_err()
    );

    // Suspension sends the domain's decisions to a human, through the closure hook.
    let suspend = conclave::Order::Suspend {
        domain: "research".into(),
        reason: "incident".into(),
    };
    director.order(suspend, "alice", now).expect("suspend");
    let v = research
        .decide(decision(1, "research"))
        .await
        .expect("verdict");
    assert!(matches!(&v.outcome, Outcome::Human { reason } if reason.contains("incident")));
    assert_eq!(escalated.load(std::sync::atomic::Ordering::Relaxed), 1);
    let resume = conclave::Order::Resume {
        domain: "research".into(),
    };
    director.order(resume, "alice", now).expect("resumed");
    let v = research
        .decide(decision(2, "research"))
        .await
        .expect("verdict");
    assert!(
        matches!(v.outcome, Outcome::Decided { .. }),
        "{:?}",
        v.outcome
    );

    // The ratchet: the fourth hand-over in trading suspends it.
    for i in 0..4 {
        let v = trading
            .decide(decision(10 + i, "trading"))
            .await
            .expect("verdict");
        assert!(matches!(v.outcome, Outcome::Human { .. }));
    }
    let s = director
        .current()
        .suspension("trading")
        .cloned()
        .expect("ratchet");
    assert_eq!(s.by, RATCHET);
    // Hand-overs older than the window do not count.
    let mut d = Directives::default();
    for k in 0..10 {
        assert!(d.handover("x", k * RATCHET_WINDOW_SECS).is_none());
    }
    let _ = EscalateWith(|_d: Decision, v: conclave::Verdict| async move { v });
}
