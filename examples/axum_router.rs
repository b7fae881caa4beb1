//! Serving governed decisions from an axum handler through the `PolicyRouter`.
//!
//! `cargo run --example axum_router` puts three decisions to the app in process (no socket):
//! one the trading policy covers, one the research policy covers, one no policy covers
//! (refused: deny by default). `cargo run --example axum_router -- --serve 127.0.0.1:8080`
//! serves it instead; then
//!
//! ```sh
//! curl -s 127.0.0.1:8080/decide -H 'content-type: application/json' \
//!   -d '{"id":"d1","question":"Buy, hold or sell?","domain":"trading","kind":"choice","options":["buy","hold","sell"]}'
//! ```

use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use conclave::tower::ServiceExt;
use conclave::{
    Catalog, Decision, GovernorError, MemoryTrustStore, PolicyRouter, SourceFile, TrustParams,
    TrustStore,
};

const AGENTS: &str = r#"
[[agent]]
id = "econ"
kind = "scripted"
tags = ["desk"]
scripted = { competence = { default = 0.85 } }

[[agent]]
id = "news"
kind = "scripted"
tags = ["desk", "research"]
scripted = { competence = { default = 0.75 } }

[[agent]]
id = "quant"
kind = "scripted"
tags = ["desk", "research"]
scripted = { competence = { default = 0.8 } }
"#;

const TRADING: &str = r#"
id = "trading"
description = "Buy, hold or sell."
applies = { domains = ["trading"], kinds = ["choice"] }
pool = { tags = ["desk"] }
rule = { name = "weighted-plurality" }
quorum = { ballots = 2 }
"#;

const RESEARCH: &str = r#"
id = "research"
description = "Sector rankings."
applies = { domains = ["research"], kinds = ["ranking"] }
pool = { tags = ["research"] }
rule = { name = "borda" }
quorum = { ballots = 2 }
"#;

/// `POST /decide`: a decision in, its verdict out; 403 when no policy governs it, 422 when
/// it is malformed.
async fn decide(State(router): State<PolicyRouter>, Json(decision): Json<Decision>) -> Response {
    match router.decide(decision).await {
        Ok(verdict) => Json(verdict).into_response(),
        Err(e @ GovernorError::NoPolicy(_)) => {
            (StatusCode::FORBIDDEN, e.to_string()).into_response()
        }
        Err(e @ GovernorError::Invalid(_)) => {
            (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn app() -> Result<Router, Box<dyn std::error::Error>> {
    let catalog = Catalog::load(
        &[SourceFile::new("agents.toml", AGENTS)],
        &[
            SourceFile::new("trading.toml", TRADING),
            SourceFile::new("research.toml", RESEARCH),
        ],
    )
    .map_err(|d| {
        d.iter()
            .map(|x| x.one_line())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let trust = MemoryTrustStore::new(TrustParams::default())?.snapshot()?;
    let router = PolicyRouter::from_catalog(&catalog, |g| g.trust(trust.clone()))?;
    Ok(Router::new()
        .route("/decide", post(decide))
        .with_state(router))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = app()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, addr] = args.as_slice()
        && flag == "--serve"
    {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("serving POST /decide on {}", listener.local_addr()?);
        axum::serve(listener, app).await?;
        return Ok(());
    }
    let decisions = [
        r#"{"id":"d1","question":"Buy, hold or sell?","domain":"trading","kind":"choice","options":["buy","hold","sell"]}"#,
        r#"{"id":"d2","question":"Rank the sectors.","domain":"research","kind":"ranking","options":["energy","tech","health"]}"#,
        r#"{"id":"d3","question":"Approve the loan?","domain":"lending","kind":"choice","options":["yes","no"]}"#,
    ];
    let mut statuses = Vec::new();
    for body in decisions {
        let request = Request::post("/decide")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))?;
        let response = app.clone().oneshot(request).await?;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
        let text = String::from_utf8_lossy(&bytes);
        let shown = if status.is_success() {
            let v: serde_json::Value = serde_json::from_str(&text)?;
            format!("policy {} outcome {}", v["policy"], v["outcome"])
        } else {
            text.into_owned()
        };
        println!("{status}  {shown}");
        statuses.push(status);
    }
    // The uncovered decision is refused, never decided by a policy written for another domain.
    if statuses != [StatusCode::OK, StatusCode::OK, StatusCode::FORBIDDEN] {
        return Err(format!("unexpected statuses {statuses:?}").into());
    }
    Ok(())
}
