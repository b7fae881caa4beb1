//! The library as an embedder uses it: policies and Governors built in code, the policy
//! router, trust updates reaching a running Governor.

use std::sync::Arc;

use conclave::policy::Section;
use conclave::tower::ServiceExt;
use conclave::trust::TrustState;
use conclave::trust::store::{Change, TrustBatch};
use conclave::{
    Catalog, Decision, Governor, GovernorBuildError, GovernorError, Kind, MemoryTrustStore, Policy,
    PolicyRouter, Rule, SourceFile, TrustParams, TrustSnapshot, TrustStore, Truth,
};

const AGENTS: &str = r#"
[[agent]]
id = "a"
kind = "scripted"
tags = ["desk"]
scripted = { competence = { default = 0.9 } }

[[agent]]
id = "b"
kind = "scripted"
tags = ["desk"]
scripted = { competence = { default = 0.8 } }

[[agent]]
id = "c"
kind = "scripted"
tags = ["desk"]
scripted = { competence = { default = 0.7 } }
"#;

const POLICY: &str = r#"
id = "desk"
description = "Desk calls."
applies = { domains = ["trading"], kinds = ["choice"] }
pool = { agents = ["a", "b", "c"] }
rule = { name = "weighted-plurality", alpha = 0.5 }
quorum = { ballots = 2 }
thresholds = { accept = 0.7, arbitrate = 0.5, human = 0.2 }
"#;

fn catalog(policies: &[&str]) -> Catalog {
    let files: Vec<SourceFile> = policies
        .iter()
        .enumerate()
        .map(|(i, p)| SourceFile::new(format!("p{i}.toml"), *p))
        .collect();
    Catalog::load(&[SourceFile::new("agents.toml", AGENTS)], &files).expect("valid catalog")
}

fn decision(i: u64, domain: &str) -> Decision {
    Decision::choice(format!("d{i}"), domain, "Trade?", ["buy", "hold", "sell"])
        .with_seed(i)
        .with_truth(Truth::Option(
            ["buy", "hold", "sell"][(i % 3) as usize].to_owned(),
        ))
}

#[test]
fn a_policy_built_in_code_equals_the_same_policy_from_a_file() {
    let c = catalog(&[POLICY]);
    let from_file = c.policy("desk").expect("policy");
    let built = Policy::builder("desk")
        .description("Desk calls.")
        .applies(["trading"], [Kind::Choice])
        .pool(["a", "b", "c"])
        .rule(Rule::WeightedPlurality)
        .alpha(0.5)
        .quorum(2)
        .thresholds(conclave::Thresholds {
            accept: 0.7,
            arbitrate: 0.5,
            human: 0.2,
            tolerance: 0.1,
        })
        .build(&c.agents)
        .expect("valid");
    // Everything but where it came from.
    let strip = |p: &Policy| {
        let mut v = serde_json::to_value(p).expect("json");
        let o = v.as_object_mut().expect("object");
        o.remove("source");
        o.remove("hash");
        v
    };
    assert_eq!(strip(&built), strip(from_file));
    assert_eq!(built.thresholds(), from_file.thresholds());
}

#[test]
fn the_builder_refuses_what_the_loader_refuses_naming_every_problem() {
    let c = catalog(&[POLICY]);
    let err = Policy::builder("bad")
        .applies(["trading"], [Kind::Choice])
        .pool(["a", "ghost"])
        .quorum(5)
        .alpha(1.5)
        .lost_majority(0.0)
        .build(&c.agents)
        .expect_err("invalid");
    let sections: Vec<Section> = err.problems.iter().map(|p| p.section).collect();
    assert!(sections.contains(&Section::PoolAgent(1)), "{err}");
    assert!(sections.contains(&Section::QuorumBallots), "{err}");
    assert!(sections.contains(&Section::Alpha), "{err}");
    assert!(sections.contains(&Section::Escalation), "{err}");
    let text = err.to_string();
    assert!(text.contains("unknown agent \"ghost\""), "{text}");
    assert!(text.contains("quorum of 5 ballots"), "{text}");
    // A rule that cannot count the kinds it is applied to.
    let err = Policy::builder("mean-on-choices")
        .applies(["trading"], [Kind::Choice])
        .pool(["a", "b"])
        .rule(Rule::Median)
        .build(&c.agents)
        .expect_err("invalid");
    assert_eq!(err.problems[0].section, Section::Rule, "{err}");
}

#[tokio::test(start_paused = true)]
async fn the_builder_checks_every_pool_member_has_a_service() {
    let c = catalog(&[POLICY]);
    let policy = c.policy("desk").expect("policy").clone();
    let only_a: Vec<_> = conclave::agent::build_for(&policy, &c)
        .expect("services")
        .into_iter()
        .filter(|(s, _)| s.id == "a")
        .collect();
    let err = Governor::builder(policy.clone())
        .agents(only_a)
        .build()
        .expect_err("b and c have no service");
    assert!(
        matches!(&err, GovernorBuildError::MissingAgent { agent, .. } if agent == "b"),
        "{err}"
    );
    let g = Governor::builder(policy)
        .agents_from(&c)
        .expect("agents")
        .build()
        .expect("governor");
    let v = g.decide(decision(1, "trading")).await.expect("verdict");
    assert_eq!(v.policy, "desk");
    assert!(v.calls >= 2);
}

#[tokio::test(start_paused = true)]
async fn the_router_sends_each_decision_to_its_policy_and_refuses_the_rest() {
    let research = r#"
id = "research"
description = "Research calls."
applies = { domains = ["research"], kinds = ["choice"] }
pool = { tags = ["desk"] }
rule = { name = "plurality" }
quorum = { ballots = 3 }
"#;
    let c = catalog(&[POLICY, research]);
    let router = PolicyRouter::from_catalog(&c, |g| g).expect("router");
    for i in 0..20 {
        let v = router
            .decide(decision(i, "trading"))
            .await
            .expect("trading");
        assert_eq!(v.policy, "desk");
        let v = router
            .clone()
            .oneshot(decision(i, "research"))
            .await
            .expect("research");
        assert_eq!(v.policy, "research");
        let refused = router.decide(decision(i, "lending")).await;
        assert!(
            matches!(&refused, Err(GovernorError::NoPolicy(r)) if r.domain == "lending"),
            "{refused:?}"
        );
        // A kind the trading policy does not govern is refused too.
        let ranking = Decision::ranking(format!("r{i}"), "trading", "Rank.", ["x", "y"]);
        assert!(matches!(
            router.decide(ranking).await,
            Err(GovernorError::NoPolicy(_))
        ));
    }
    assert!(
        PolicyRouter::default()
            .decide(decision(0, "trading"))
            .await
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn a_recalibration_reaches_a_running_governor_through_the_trust_channel() {
    let c = catalog(&[POLICY]);
    let policy = c.policy("desk").expect("policy").clone();
    let store = MemoryTrustStore::new(TrustParams::default()).expect("store");
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(store.snapshot().expect("snapshot")));
    let g = Governor::builder(policy)
        .agents_from(&c)
        .expect("agents")
        .trust_updates(rx)
        .build()
        .expect("governor");
    let before = g.decide(decision(0, "trading")).await.expect("verdict");
    assert_eq!(before.trust_version, 0);
    assert!(before.ballots.iter().any(|c| c.ballot.agent == "a"));
    // Agent "a" is ejected elsewhere: the next decision is seated without it.
    let mut ejected = TrustState::new(&TrustParams::default());
    ejected.ejected = true;
    let batch = TrustBatch {
        provenance: "test:eject-a".into(),
        changes: vec![Change::Set {
            agent: "a".into(),
            domain: "trading".into(),
            state: ejected,
        }],
    };
    store.apply(&batch).expect("applied");
    let snapshot: TrustSnapshot = store.snapshot().expect("snapshot");
    let version = snapshot.version;
    assert!(version > 0);
    tx.send(Arc::new(snapshot)).expect("sent");
    for i in 1..20 {
        let v = g.decide(decision(i, "trading")).await.expect("verdict");
        assert_eq!(v.trust_version, version);
        assert!(v.ballots.iter().all(|c| c.ballot.agent != "a"));
    }
}

#[tokio::test(start_paused = true)]
async fn an_outcome_is_recorded_once_through_the_library_even_after_a_crash() {
    use conclave::audit::{Entry, OutcomeError, OutcomeRecord, record_outcome};
    use conclave::{AuditLog, MemoryAuditLog};

    let c = catalog(&[POLICY]);
    let policy = c.policy("desk").expect("policy").clone();
    let log = Arc::new(MemoryAuditLog::default());
    let trust = MemoryTrustStore::new(TrustParams::default()).expect("store");
    let g = Governor::builder(policy)
        .agents_from(&c)
        .expect("agents")
        .audit(log.clone())
        .build()
        .expect("governor");
    for i in 0..2 {
        g.decide(decision(i, "trading")).await.expect("verdict");
    }
    // Decision d0: recorded, and trust learns once.
    let r = record_outcome(&*log, &trust, "d0", "buy", "ground-truth", 0.0).expect("recorded");
    assert_eq!(r.provenance, format!("decision:{}", r.decision.seq));
    assert!(!r.graded.is_empty());
    assert!(matches!(
        record_outcome(&*log, &trust, "d0", "buy", "ground-truth", 0.0),
        Err(OutcomeError::AlreadyGraded { .. })
    ));
    // Decision d1: the outcome reached the chain, the process died before trust learned.
    let d1 = log.find("d1").expect("d1");
    log.append(&Entry::Outcome(OutcomeRecord {
        decision: d1.seq,
        correct: "hold".into(),
        source: "ground-truth".into(),
        graded: Vec::new(),
        at: 0,
    }))
    .expect("appended");
    let before = log.records().expect("records").len();
    // A retry with another answer is refused; with the same one it completes, appending nothing.
    assert!(matches!(
        record_outcome(&*log, &trust, "d1", "sell", "ground-truth", 0.0),
        Err(OutcomeError::Final { .. })
    ));
    let r = record_outcome(&*log, &trust, "d1", "hold", "ground-truth", 0.0).expect("completed");
    assert_eq!(log.records().expect("records").len(), before);
    assert!(r.applied.version > 0);
    // Not an option of the decision.
    let d = decision(9, "trading");
    g.decide(d).await.expect("verdict");
    assert!(matches!(
        record_outcome(&*log, &trust, "d9", "maybe", "ground-truth", 0.0),
        Err(OutcomeError::Grade { .. })
    ));
}
