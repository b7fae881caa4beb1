//! Your own code in the pool, beside a model behind an endpoint.
//!
//! `cargo run --example own_agents`
//!
//! Three voters decide refund requests (approve, reject, or review by a person):
//! - `model`: a model behind any OpenAI-compatible endpoint (`kind = "openai"`);
//! - `rules`: the application's rule book, an async function (`conclave::agent::from_fn`);
//! - `fraud`: the application's fraud scorer, a plain Tower service of its own.
//!
//! The two in code are declared in the agents file as `kind = "external"` (their id, domains,
//! timeout) and handed to the Governor with `GovernorBuilder::agent`. The Governor treats all
//! three alike: the same timeout, retry and circuit breaker, the same trust weights, the same
//! audit record; an error or a timeout in your code is an abstention with its cause.
//!
//! The endpoint: by default a small stand-in this example starts on 127.0.0.1 (it answers
//! as a cautious model would), so the example needs no key and no network. To use a real
//! model instead, set CONCLAVE_EXAMPLE_BASE_URL (e.g. http://127.0.0.1:8731/v1, started by
//! `tools/local-llm start`) and CONCLAVE_EXAMPLE_MODEL (e.g. smollm2-135m).

use std::future::Ready;
use std::task::{Context, Poll};

use conclave::tower::{BoxError, Service, ServiceExt};
use conclave::{
    AgentReply, AgentRequest, Ballot, Catalog, Decision, Governor, Kind, Outcome, Policy, Rule,
    SourceFile, Thresholds,
};

/// The fraud scorer: any Tower service answering an `AgentRequest` with an `AgentReply`.
#[derive(Debug, Clone)]
struct FraudScorer {
    /// Refunds above this many dollars are suspicious.
    limit: f64,
}

impl Service<AgentRequest> for FraudScorer {
    type Response = AgentReply;
    type Error = BoxError;
    type Future = Ready<Result<AgentReply, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: AgentRequest) -> Self::Future {
        let q = &req.decision.question;
        let repeat = q.contains("third refund") || q.contains("fourth refund");
        let (choice, confidence) = match amount(q) {
            Some(a) if a > self.limit && repeat => ("reject", 0.9),
            Some(a) if a > self.limit || repeat => ("review", 0.7),
            Some(_) => ("approve", 0.8),
            None => ("review", 0.5),
        };
        std::future::ready(Ok(AgentReply::new(
            Ballot::choice("fraud", choice)
                .with_confidence(confidence)
                .with_rationale(format!("amount {:?}, repeat refund: {repeat}", amount(q))),
        )))
    }
}

/// The first dollar amount in a question.
fn amount(q: &str) -> Option<f64> {
    let at = q.find('$')?;
    let digits: String = q[at + 1..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse().ok()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (base_url, model) = match std::env::var("CONCLAVE_EXAMPLE_BASE_URL") {
        Ok(url) => (
            url,
            std::env::var("CONCLAVE_EXAMPLE_MODEL").unwrap_or_else(|_| "any".to_owned()),
        ),
        Err(_) => (stand_in().await?, "stand-in".to_owned()),
    };
    let agents = format!(
        r#"
[[agent]]
id = "model"
kind = "openai"
model = "{model}"
base_url = "{base_url}"
domains = ["refunds"]
timeout_ms = 60000

[[agent]]
id = "rules"
kind = "external"
domains = ["refunds"]
timeout_ms = 1000

[[agent]]
id = "fraud"
kind = "external"
domains = ["refunds"]
timeout_ms = 1000
"#
    );
    let catalog = Catalog::load(&[SourceFile::new("agents.toml", agents)], &[]).map_err(|d| {
        d.iter()
            .map(|x| x.one_line())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let policy = Policy::builder("refunds")
        .description("Refund requests: approve, reject, or review by a person.")
        .applies(["refunds"], [Kind::Choice])
        .pool(["model", "rules", "fraud"])
        .rule(Rule::WeightedPlurality)
        .quorum(2)
        .thresholds(Thresholds {
            accept: 0.75,
            arbitrate: 0.75,
            human: 0.75,
            tolerance: 0.1,
        })
        .human(true)
        .build(&catalog.agents)?;

    // The rule book: an async function of the application's own.
    let rules = conclave::agent::from_fn(|req: AgentRequest| async move {
        let ballot = match amount(&req.decision.question) {
            Some(a) if a <= 100.0 => Ballot::choice("rules", "approve").with_confidence(0.9),
            Some(a) if a >= 1000.0 => Ballot::choice("rules", "reject").with_confidence(0.8),
            Some(_) => Ballot::choice("rules", "review").with_confidence(0.6),
            // Your code may fail: the Governor records it as an abstention with this cause.
            None => return Err("no amount in the request".into()),
        };
        Ok(AgentReply::new(
            ballot.with_rationale("the refund policy's thresholds"),
        ))
    });
    let spec = |id: &str| catalog.agents.get(id).cloned().ok_or("no such agent");
    let governor = Governor::builder(policy)
        .agents_from(&catalog)? // the endpoint agent, built from its definition
        .agent(spec("rules")?, rules)
        .agent(
            spec("fraud")?,
            conclave::tower::util::BoxCloneSyncService::new(FraudScorer { limit: 500.0 }),
        )
        .build()?;

    let requests = [
        "Refund of $40 for a parcel that arrived broken?",
        "Refund of $250 for shoes returned unworn?",
        "Refund of $1200 for a laptop, the customer's third refund this month?",
        "Refund for a late delivery, amount not stated?",
    ];
    for (i, question) in requests.iter().enumerate() {
        let decision = Decision::choice(
            format!("refund-{i}"),
            "refunds",
            *question,
            ["approve", "reject", "review"],
        );
        let v = governor.clone().ready().await?.call(decision).await?;
        let outcome = match &v.outcome {
            Outcome::Decided { weak: false } => format!(
                "decided: {} (confidence {:.2})",
                v.winner().unwrap_or("-"),
                v.confidence
            ),
            Outcome::Decided { weak: true } => format!(
                "decided, weakly: {} (confidence {:.2})",
                v.winner().unwrap_or("-"),
                v.confidence
            ),
            Outcome::Human { reason } => format!("to a person: {reason}"),
            other => other.as_str().to_owned(),
        };
        println!("{question}\n  {outcome}");
        for c in &v.ballots {
            let b = &c.ballot;
            let said = match (&b.answer, &b.cause) {
                (conclave::Answer::Abstain(why), Some(cause)) => {
                    format!("abstained ({}): {cause}", why.as_str())
                }
                (conclave::Answer::Abstain(why), None) => format!("abstained ({})", why.as_str()),
                (answer, _) => answer.words().unwrap_or_default(),
            };
            println!("    {:<6} {said} (weight {:.2})", b.agent, c.weight);
        }
    }
    Ok(())
}

/// A stand-in for a model server on 127.0.0.1: OpenAI's chat-completions shape, answering as
/// a cautious model would (small refunds approved, large ones sent to a person). Returns its
/// base URL.
async fn stand_in() -> Result<String, Box<dyn std::error::Error>> {
    use axum::{Json, Router, routing::post};
    use serde_json::{Value, json};
    async fn chat(Json(req): Json<Value>) -> Json<Value> {
        let question = req["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default();
        let (choice, why) = match amount(question) {
            Some(a) if a <= 300.0 => ("approve", "a modest refund with a stated reason"),
            Some(_) => ("review", "a large refund deserves a second look"),
            None => ("review", "the amount is missing"),
        };
        let content = json!({"rationale": why, "choice": choice, "confidence": 0.7}).to_string();
        Json(json!({
            "id": "chatcmpl-stand-in",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
        }))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let app = Router::new().route("/v1/chat/completions", post(chat));
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/v1"))
}
