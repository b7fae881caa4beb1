//! The HTTP API in process, on 127.0.0.1, with scripted agents and in-memory stores.

use std::sync::Arc;

use conclave::audit::MemoryAuditLog;
use conclave::serve::{ServeConfig, ServeState, router};
use conclave::trust::TrustParams;
use conclave::trust::store::MemoryTrustStore;
use serde_json::{Value, json};

const AGENTS: &str = r#"
[[agent]]
id = "a1"
kind = "scripted"
scripted = { competence = { default = 0.9 }, latency = { median_ms = 2, p99_ms = 5 } }

[[agent]]
id = "a2"
kind = "scripted"
scripted = { competence = { default = 0.9 }, latency = { median_ms = 2, p99_ms = 5 } }

[[agent]]
id = "a3"
kind = "scripted"
scripted = { competence = { default = 0.9 }, latency = { median_ms = 2, p99_ms = 5 } }
"#;

const POLICY: &str = r#"id = "desk"
description = "Trading calls by three agents."
applies = { domains = ["trading"], kinds = ["choice"] }
pool = { agents = ["a1", "a2", "a3"] }
rule = { name = "weighted-plurality" }
quorum = { ballots = 3 }
early_stop = { enabled = false }
thresholds = { accept = 0.0, arbitrate = 0.0, human = 0.0 }
"#;

/// A server on an ephemeral loopback port: its base URL.
async fn serve(token: Option<&str>) -> String {
    let trust = Arc::new(MemoryTrustStore::new(TrustParams::default()).expect("store"));
    serve_on(token, trust, Arc::new(MemoryAuditLog::default())).await
}

/// A server on these stores (two servers on the same stores are two replicas).
async fn serve_on(
    token: Option<&str>,
    trust: Arc<MemoryTrustStore>,
    log: Arc<MemoryAuditLog>,
) -> String {
    let catalog = crate::support::catalog(AGENTS, POLICY);
    let config = ServeConfig {
        token: token.map(str::to_owned),
        body_limit: 4096,
    };
    let state = ServeState::new(catalog, trust, log, config).expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, router(Arc::new(state)))
            .await
            .expect("serve");
    });
    format!("http://{addr}")
}

async fn send(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let client = reqwest::Client::new();
    let mut req = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    };
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("text");
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v, headers)
}

fn chat(model: &str, question: &str, ext: Value) -> String {
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": question},
        ],
        "conclave": ext,
    })
    .to_string()
}

#[tokio::test]
async fn a_chat_completion_is_a_governed_decision() {
    let base = serve(None).await;
    let url = format!("{base}/v1/chat/completions");
    let ext = json!({"options": ["buy", "hold", "sell"], "truth": "hold", "seed": 3});
    let (status, v, headers) = send("POST", &url, None, Some(chat("desk", "Trade?", ext))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "desk", "the panel never leaks through model");
    let answer = v["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    assert!(["buy", "hold", "sell"].contains(&answer), "{v}");
    assert_eq!(v["conclave"]["ballots"], 3, "{v}");
    // Usage is summed over the panel: three scripted calls of 600 + 80 tokens.
    assert_eq!(
        (
            v["usage"]["prompt_tokens"].as_u64(),
            v["usage"]["completion_tokens"].as_u64(),
            v["usage"]["total_tokens"].as_u64()
        ),
        (Some(1800), Some(240), Some(2040)),
        "{v}"
    );
    let id = v["conclave"]["decision"].as_str().expect("id").to_owned();
    assert_eq!(
        headers
            .get("x-conclave-decision")
            .and_then(|h| h.to_str().ok()),
        Some(id.as_str())
    );
    assert_eq!(
        headers
            .get("x-conclave-outcome")
            .and_then(|h| h.to_str().ok()),
        Some("decided")
    );
    // The record is in the audit log, and grading it teaches trust.
    let (status, record, _) = send("GET", &format!("{base}/v1/decisions/{id}"), None, None).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["entry"]["entry"], "decision", "{record}");
    let outcome = format!("{base}/v1/decisions/{id}/outcome");
    let (status, graded, _) = send(
        "POST",
        &outcome,
        None,
        Some(json!({"correct": "hold"}).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{graded}");
    assert_eq!(
        graded["graded"].as_array().map(Vec::len),
        Some(3),
        "{graded}"
    );
    let (status, again, _) = send(
        "POST",
        &outcome,
        None,
        Some(json!({"correct": "hold"}).to_string()),
    )
    .await;
    assert_eq!(
        (status, &again["error"]["code"]),
        (409, &json!("already_graded"))
    );
    let (status, trust, _) = send("GET", &format!("{base}/v1/trust"), None, None).await;
    assert_eq!(status, 200);
    assert!(trust.to_string().contains("a1"), "{trust}");
    // The same idempotency key gives the same decision, once.
    let ext = json!({"options": ["buy", "hold", "sell"], "idempotency_key": "k-1"});
    let (_, first, _) = send(
        "POST",
        &url,
        None,
        Some(chat("desk", "Trade?", ext.clone())),
    )
    .await;
    let (_, second, _) = send("POST", &url, None, Some(chat("desk", "Trade?", ext))).await;
    assert_eq!(
        first["conclave"]["decision"],
        second["conclave"]["decision"]
    );
    // The JSON API: a Decision in, a Verdict out, routed by domain and kind.
    let d = json!({"id": "d-1", "question": "Trade?", "domain": "trading", "kind": "choice",
                   "options": ["buy", "sell"], "seed": 1, "truth": "buy"});
    let (status, verdict, _) = send(
        "POST",
        &format!("{base}/v1/decisions"),
        None,
        Some(d.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{verdict}");
    assert_eq!(verdict["policy"], "desk", "{verdict}");
    let (status, p, _) = send("GET", &format!("{base}/v1/policies"), None, None).await;
    assert_eq!((status, &p["policies"][0]["id"]), (200, &json!("desk")));
}

#[tokio::test]
async fn bad_requests_get_a_status_and_one_line_of_json() {
    let base = serve(Some("s3cret")).await;
    let url = format!("{base}/v1/chat/completions");
    let ok = chat("desk", "Trade?", json!({"options": ["buy", "sell"]}));
    let cases: Vec<(&str, Option<&str>, String, u16, &str)> = vec![
        ("no token", None, ok.clone(), 401, "unauthorized"),
        (
            "a wrong token",
            Some("guess"),
            ok.clone(),
            401,
            "unauthorized",
        ),
        (
            "an unknown policy",
            Some("s3cret"),
            chat("nope", "Trade?", json!({})),
            404,
            "unknown_policy",
        ),
        (
            "malformed JSON",
            Some("s3cret"),
            "{\"model\": ".to_owned(),
            400,
            "malformed_json",
        ),
        (
            "a body too large",
            Some("s3cret"),
            chat("desk", &"x".repeat(10_000), json!({})),
            413,
            "body_too_large",
        ),
        (
            "no user message",
            Some("s3cret"),
            json!({"model": "desk", "messages": []}).to_string(),
            400,
            "invalid_request",
        ),
        (
            "a scale that is not two numbers",
            Some("s3cret"),
            chat("desk", "Sentiment?", json!({"kind": "score", "scale": [1]})),
            400,
            "invalid_request",
        ),
        (
            "a scale on a choice",
            Some("s3cret"),
            chat(
                "desk",
                "Trade?",
                json!({"options": ["buy", "sell"], "scale": [-1, 1]}),
            ),
            422,
            "refused",
        ),
        (
            "an unknown extension field",
            Some("s3cret"),
            chat("desk", "Trade?", json!({"optoins": ["a"]})),
            400,
            "invalid_request",
        ),
    ];
    for (what, token, body, status, code) in cases {
        let (got, v, _) = send("POST", &url, token, Some(body)).await;
        assert_eq!(got, status, "{what}: {v}");
        assert_eq!(v["error"]["code"], code, "{what}: {v}");
        assert!(!v.to_string().contains('\n'), "{what}: one line");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
    // With the token, it answers; /healthz needs none.
    let (status, v, _) = send("POST", &url, Some("s3cret"), Some(ok)).await;
    assert_eq!(status, 200, "{v}");
    let (status, v, _) = send("GET", &format!("{base}/healthz"), None, None).await;
    assert_eq!((status, &v["status"]), (200, &json!("ok")));
    let (status, v, _) = send(
        "GET",
        &format!("{base}/v1/decisions/missing"),
        Some("s3cret"),
        None,
    )
    .await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (404, &json!("unknown_decision"))
    );
}

/// The Director's orders hold over HTTP and are given over HTTP: a suspended domain's
/// decisions go to a human (without counting towards the ratchet), orders are recorded in the
/// log as they take effect, and a person's answer overrides an escalated decision.
#[tokio::test]
async fn orders_over_http_are_recorded_and_followed() {
    use conclave::audit::{AuditLog, Entry};
    use conclave::{Directives, Director, MemoryOrderBook};
    let catalog = crate::support::catalog(AGENTS, POLICY);
    let trust = Arc::new(MemoryTrustStore::new(TrustParams::default()).expect("store"));
    let log = Arc::new(MemoryAuditLog::default());
    let book = Arc::new(MemoryOrderBook::new(Directives::default(), log.clone()));
    let director = Director::kept_in(book).expect("director");
    let state = ServeState::new(
        catalog,
        trust,
        log.clone(),
        ServeConfig {
            token: Some("s3cret".into()),
            body_limit: 4096,
        },
    )
    .and_then(|s| s.with_director(director.clone()))
    .expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        axum::serve(listener, router(Arc::new(state)))
            .await
            .expect("serve");
    });
    let t = Some("s3cret");
    let orders = format!("{base}/v1/orders");
    let suspend = json!({"order": {"action": "suspend", "domain": "trading", "reason": "flash crash"}, "by": "alice"}).to_string();
    // Orders need the token.
    let (status, _, _) = send("POST", &orders, None, Some(suspend.clone())).await;
    assert_eq!(status, 401);
    let (status, v, _) = send("POST", &orders, t, Some(suspend)).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["record"].as_u64().is_some(), "{v}");
    assert_eq!(v["orders"]["suspended"]["trading"]["by"], "alice", "{v}");

    let url = format!("{base}/v1/chat/completions");
    let ext = json!({"options": ["buy", "sell"]});
    let (status, v, headers) = send("POST", &url, t, Some(chat("desk", "Trade?", ext))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        headers
            .get("x-conclave-outcome")
            .and_then(|h| h.to_str().ok()),
        Some("human"),
        "{v}"
    );
    let content = v["choices"][0]["message"]["content"].as_str().unwrap_or("");
    assert!(content.starts_with("escalated:"), "{content}");
    // A hand-over because the domain is suspended says nothing about the pool: not counted.
    assert!(
        director
            .current()
            .handovers
            .get("trading")
            .is_none_or(Vec::is_empty)
    );
    let id = v["conclave"]["decision"]
        .as_str()
        .expect("decision id")
        .to_owned();

    // A person answers it: override and outcome recorded together; a second answer is refused.
    let over = format!("{base}/v1/decisions/{id}/override");
    let answer = json!({"answer": "sell", "by": "alice", "reason": "checked the book"}).to_string();
    let (status, v, _) = send("POST", &over, t, Some(answer)).await;
    assert_eq!(status, 200, "{v}");
    let other = json!({"answer": "buy", "by": "bob", "reason": "disagree"}).to_string();
    let (status, v, _) = send("POST", &over, t, Some(other)).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (409, &json!("already_graded")),
        "{v}"
    );

    // Resumed: decisions are made again; resuming twice is a conflict, bad orders a 400.
    let resume =
        json!({"order": {"action": "resume", "domain": "trading"}, "by": "alice"}).to_string();
    let (status, v, _) = send("POST", &orders, t, Some(resume.clone())).await;
    assert_eq!(status, 200, "{v}");
    let (status, v, _) = send("POST", &orders, t, Some(resume)).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (409, &json!("not_suspended")),
        "{v}"
    );
    let bad = json!({"order": {"action": "reweight", "agent": "a1", "domain": "trading", "factor": 11.0, "seconds": 60}, "by": "alice"}).to_string();
    let (status, v, _) = send("POST", &orders, t, Some(bad)).await;
    assert_eq!(status, 400, "{v}");
    let nameless =
        json!({"order": {"action": "suspend", "domain": "trading", "reason": "x"}, "by": ""})
            .to_string();
    let (status, v, _) = send("POST", &orders, t, Some(nameless)).await;
    assert_eq!(status, 400, "{v}");
    let (status, v, headers) = send(
        "POST",
        &url,
        t,
        Some(chat("desk", "Trade?", json!({"options": ["buy", "sell"]}))),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        headers
            .get("x-conclave-outcome")
            .and_then(|h| h.to_str().ok()),
        Some("decided"),
        "{v}"
    );
    let (status, v, _) = send("GET", &orders, t, None).await;
    assert_eq!(
        (status, v["suspended"].as_object().map(|m| m.len())),
        (200, Some(0)),
        "{v}"
    );
    // Each order given is one record in the chain.
    let actions: Vec<String> = log
        .records()
        .expect("records")
        .into_iter()
        .filter_map(|r| match r.entry {
            Entry::Directive(d) => Some(d.action),
            _ => None,
        })
        .collect();
    assert_eq!(actions, ["suspend", "resume"]);
}

/// The binary refuses to listen beyond loopback without a token.
#[test]
fn serve_refuses_an_open_address_without_a_token() {
    let out = crate::support::conclave(&["serve", "--addr", "0.0.0.0:0"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("without authentication"), "{err}");
}

/// A Python venv with the official `openai` package (made once under target/, from PyPI).
fn python_openai() -> std::path::PathBuf {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/py-openai");
    let python = venv.join("bin/python");
    let ready = |p: &std::path::Path| {
        std::process::Command::new(p)
            .args(["-c", "import openai"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready(&python) {
        let ok = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && std::process::Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "openai>=1.40"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            ok && ready(&python),
            "cannot make a venv with the openai package (python3 -m venv, pip install openai)"
        );
    }
    python
}

/// The official Python `openai` client calls the binary's `/v1/chat/completions` with a
/// policy as `model` and the options in `extra_body`, and gets the governed answer; SIGTERM
/// stops the server cleanly.
#[test]
fn the_python_openai_client_gets_a_governed_answer() {
    use std::io::{BufRead, BufReader};
    let python = python_openai();
    let dir = tempfile::tempdir().expect("tmp");
    let (agents, policies) = (dir.path().join("agents.toml"), dir.path().join("policies"));
    std::fs::write(&agents, AGENTS).expect("write");
    std::fs::create_dir_all(&policies).expect("dir");
    std::fs::write(policies.join("desk.toml"), POLICY).expect("write");
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_conclave"))
        .arg("--store")
        .arg(dir.path().join("store"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--token-env",
            "DESK_TOKEN",
        ])
        .arg("--agents")
        .arg(&agents)
        .arg("--policies")
        .arg(&policies)
        .env("DESK_TOKEN", "s3cret")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let mut lines = BufReader::new(server.stderr.take().expect("stderr")).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    let base = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in: {first}"))
        .to_owned();
    let script = r#"
import json, sys, openai
client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="s3cret")
r = client.chat.completions.create(
    model="desk",
    messages=[{"role": "user", "content": "Buy, hold or sell?"}],
    extra_body={"conclave": {"options": ["buy", "hold", "sell"], "truth": "hold", "seed": 4}},
)
out = {"content": r.choices[0].message.content, "model": r.model, "total": r.usage.total_tokens,
       "outcome": r.model_extra["conclave"]["outcome"]["outcome"]}
try:
    openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="wrong").chat.completions.create(
        model="desk", messages=[{"role": "user", "content": "x"}])
except openai.AuthenticationError as e:
    out["bad_token"] = e.status_code
try:
    client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
except openai.NotFoundError as e:
    out["unknown_policy"] = e.status_code
# Streaming: the governed answer as chunks, the conclave object on the finishing chunk.
chunks = list(client.chat.completions.create(
    model="desk",
    messages=[{"role": "user", "content": "Buy, hold or sell?"}],
    stream=True,
    stream_options={"include_usage": True},
    extra_body={"conclave": {"options": ["buy", "hold", "sell"], "truth": "hold", "seed": 4}},
))
out["streamed"] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
out["finish"] = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
out["streamed_outcome"] = [c.model_extra["conclave"]["outcome"]["outcome"] for c in chunks if (c.model_extra or {}).get("conclave")]
out["streamed_usage"] = [c.usage.total_tokens for c in chunks if c.usage]
# The policies are the models.
out["models"] = [m.id for m in client.models.list()]
# A choice policy asked without options says what to send.
try:
    client.chat.completions.create(model="desk", messages=[{"role": "user", "content": "Buy?"}])
except openai.BadRequestError as e:
    out["no_options"] = [e.status_code, str(e)]
print(json.dumps(out))
"#;
    let out = std::process::Command::new(&python)
        .args(["-c", script, &base])
        .output()
        .expect("python");
    // Stop the server the way an orchestrator does, then judge.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let status = server.wait().expect("wait");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).expect("json");
    assert!(
        ["buy", "hold", "sell"].contains(&v["content"].as_str().unwrap_or("")),
        "{v}"
    );
    assert_eq!(v["model"], "desk", "{v}");
    assert_eq!(
        (v["bad_token"].as_u64(), v["unknown_policy"].as_u64()),
        (Some(401), Some(404)),
        "{v}"
    );
    assert!(
        ["buy", "hold", "sell"].contains(&v["streamed"].as_str().unwrap_or("")),
        "{v}"
    );
    assert_eq!(v["finish"], serde_json::json!(["stop"]), "{v}");
    assert_eq!(v["streamed_outcome"], serde_json::json!(["decided"]), "{v}");
    assert!(
        v["streamed_usage"][0].as_u64().is_some_and(|t| t > 0),
        "{v}"
    );
    assert_eq!(v["models"], serde_json::json!(["desk"]), "{v}");
    assert_eq!(v["no_options"][0], 400, "{v}");
    assert!(
        v["no_options"][1]
            .as_str()
            .is_some_and(|m| m.contains("options") && m.contains("extra_body")),
        "{v}"
    );
    assert!(status.success(), "{status:?}: {rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("conclave stopped")),
        "{rest:?}"
    );
}

async fn text(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("get");
    (r.status().as_u16(), r.text().await.expect("text"))
}

/// The value of the first exposition line starting with `series`.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Two replicas on one audit log: a key decided on one is answered by the other from the
/// log, and recorded once.
#[tokio::test]
async fn a_key_decided_by_one_replica_is_answered_by_another_from_the_log() {
    let trust = Arc::new(MemoryTrustStore::new(TrustParams::default()).expect("store"));
    let log = Arc::new(MemoryAuditLog::default());
    let one = serve_on(None, trust.clone(), log.clone()).await;
    let two = serve_on(None, trust, log.clone()).await;
    let ext = json!({"options": ["buy", "hold", "sell"], "idempotency_key": "order-77"});
    let body = chat("desk", "Trade?", ext);
    let (s1, first, _) = send(
        "POST",
        &format!("{one}/v1/chat/completions"),
        None,
        Some(body.clone()),
    )
    .await;
    let (s2, second, h2) = send(
        "POST",
        &format!("{two}/v1/chat/completions"),
        None,
        Some(body),
    )
    .await;
    assert_eq!((s1, s2), (200, 200), "{first} {second}");
    assert_eq!(
        first["conclave"]["decision"],
        second["conclave"]["decision"]
    );
    assert_eq!(
        first["choices"][0]["message"]["content"],
        second["choices"][0]["message"]["content"]
    );
    assert_eq!(
        h2.get("x-conclave-outcome").and_then(|h| h.to_str().ok()),
        first["conclave"]["outcome"]["outcome"].as_str()
    );
    let decisions = conclave::AuditLog::records(&*log)
        .expect("records")
        .into_iter()
        .filter(|r| matches!(r.entry, conclave::audit::Entry::Decision(_)))
        .count();
    assert_eq!(decisions, 1, "the key was recorded more than once");
}

/// `POST /v1/checks` routes and explains with no agent called; `/metrics` counts what was
/// governed.
#[tokio::test]
async fn checks_call_no_agent_and_metrics_count_what_was_governed() {
    let base = serve(None).await;
    let check = json!({"id": "c-1", "question": "Trade?", "domain": "trading", "kind": "choice",
                       "options": ["buy", "sell"]});
    let (status, c, _) = send(
        "POST",
        &format!("{base}/v1/checks"),
        None,
        Some(check.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(
        (c["policy"].as_str(), c["admissible"].as_bool()),
        (Some("desk"), Some(true)),
        "{c}"
    );
    assert_eq!(c["pool"].as_array().map(Vec::len), Some(3), "{c}");
    assert_eq!(c["pool"][0]["standing"], "provisional", "{c}");
    assert!(
        c["explanation"].as_str().is_some_and(|e| e.contains("a1")),
        "{c}"
    );
    let bad = json!({"id": "c-2", "question": "Trade?", "domain": "trading", "kind": "choice",
                     "options": ["buy"], "policy": "desk"});
    let (status, c, _) = send(
        "POST",
        &format!("{base}/v1/checks"),
        None,
        Some(bad.to_string()),
    )
    .await;
    assert_eq!(
        (status, c["admissible"].as_bool()),
        (200, Some(false)),
        "{c}"
    );
    let (status, c, _) = send(
        "POST",
        &format!("{base}/v1/checks"),
        None,
        Some(
            json!({"id": "c-3", "question": "Rate?", "domain": "weather", "kind": "score"})
                .to_string(),
        ),
    )
    .await;
    assert_eq!(
        (status, c["error"]["code"].as_str()),
        (404, Some("no_policy")),
        "{c}"
    );
    // Checks called nobody.
    let (status, m) = text(&format!("{base}/metrics")).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(sample(&m, "conclave_decisions_total{"), None, "{m}");
    for i in 0..3 {
        let ext = json!({"options": ["buy", "hold", "sell"], "truth": "hold", "seed": i});
        let (status, v, _) = send(
            "POST",
            &format!("{base}/v1/chat/completions"),
            None,
            Some(chat("desk", "Trade?", ext)),
        )
        .await;
        assert_eq!(status, 200, "{v}");
    }
    let (_, m) = text(&format!("{base}/metrics")).await;
    assert_eq!(
        sample(
            &m,
            "conclave_decisions_total{policy=\"desk\",outcome=\"decided\"}"
        ),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "conclave_agent_calls_total{agent=\"a1\",cause=\"answered\"}"
        ),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "conclave_decision_duration_seconds_count{policy=\"desk\"}"
        ),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "conclave_tokens_total{policy=\"desk\"}"),
        Some(3.0 * 3.0 * 680.0),
        "{m}"
    );
    assert!(
        m.contains("conclave_agents{standing=\"quarantined\"} 0"),
        "{m}"
    );
    assert!(m.trim_end().ends_with("# EOF"), "{m}");
}

/// A grading on one replica reaches the other's Governors when it catches up with the
/// store (what `serve::follow` does every `--follow-ms`).
#[tokio::test]
async fn a_replica_catches_up_with_trust_changed_by_another() {
    let trust = Arc::new(MemoryTrustStore::new(TrustParams::default()).expect("store"));
    let log = Arc::new(MemoryAuditLog::default());
    let state = |trust: Arc<MemoryTrustStore>, log: Arc<MemoryAuditLog>| {
        Arc::new(
            ServeState::new(
                crate::support::catalog(AGENTS, POLICY),
                trust,
                log,
                ServeConfig::default(),
            )
            .expect("state"),
        )
    };
    let (one, two) = (state(trust.clone(), log.clone()), state(trust, log));
    let start = |s: Arc<ServeState>| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, router(s)).await.expect("serve") });
        format!("http://{addr}")
    };
    let (a, b) = (start(one).await, start(two.clone()).await);
    let ext = json!({"options": ["buy", "hold", "sell"], "truth": "hold"});
    let body = chat("desk", "Trade?", ext);
    let (_, first, _) = send(
        "POST",
        &format!("{a}/v1/chat/completions"),
        None,
        Some(body),
    )
    .await;
    let id = first["conclave"]["decision"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, graded, _) = send(
        "POST",
        &format!("{a}/v1/decisions/{id}/outcome"),
        None,
        Some(json!({"correct": "hold"}).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{graded}");
    // Before catching up, the other replica still decides on the trust it started with.
    let before = send("POST", &format!("{b}/v1/decisions"), None, Some(json!({"id": "x1", "question": "Trade?", "domain": "trading", "kind": "choice", "options": ["buy", "hold", "sell"], "truth": "hold"}).to_string())).await.1;
    assert_eq!(before["trust_version"], 0, "{before}");
    two.catch_up().expect("catch up");
    let after = send("POST", &format!("{b}/v1/decisions"), None, Some(json!({"id": "x2", "question": "Trade?", "domain": "trading", "kind": "choice", "options": ["buy", "hold", "sell"], "truth": "hold"}).to_string())).await.1;
    assert_eq!(after["trust_version"], 1, "{after}");
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, a decision's spans (`invoke_workflow` and its
/// `chat` calls, with GenAI attributes) reach the OTLP/HTTP endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_when_configured() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    let dir = tempfile::tempdir().expect("tmp");
    let (agents, policies) = (dir.path().join("agents.toml"), dir.path().join("policies"));
    std::fs::write(&agents, AGENTS).expect("write");
    std::fs::create_dir_all(&policies).expect("dir");
    std::fs::write(policies.join("desk.toml"), POLICY).expect("write");
    let endpoint = collector.uri();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_conclave"))
            .arg("--store")
            .arg(dir.path().join("store"))
            .args([
                "decide",
                "--policy",
                "desk",
                "--options",
                "buy,hold,sell",
                "Trade?",
            ])
            .arg("--agents")
            .arg(&agents)
            .arg("--policies")
            .arg(&policies)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            .env_remove("RUST_LOG")
            .output()
            .expect("run")
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let received = collector.received_requests().await.expect("recorded");
    let body: Vec<u8> = received.iter().flat_map(|r| r.body.clone()).collect();
    let has = |s: &str| body.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(!received.is_empty(), "nothing was exported");
    for s in [
        "invoke_workflow desk",
        "chat",
        "gen_ai.operation.name",
        "gen_ai.usage.input_tokens",
        "conclave",
    ] {
        assert!(has(s), "{s} is not in the exported spans");
    }
}

/// A store held by `conclave serve` is refused to other commands with the server's address,
/// where its data can be read meanwhile; once the server stops, the command runs.
#[test]
fn a_store_held_by_serve_says_where_to_read_it() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tmp");
    let (agents, policies) = (dir.path().join("agents.toml"), dir.path().join("desk.toml"));
    std::fs::write(&agents, AGENTS).expect("write");
    std::fs::write(&policies, POLICY).expect("write");
    let store = dir.path().join("store");
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_conclave"))
        .arg("--store")
        .arg(&store)
        .args(["serve", "--addr", "127.0.0.1:0", "--agents"])
        .arg(&agents)
        .arg("--policies")
        .arg(&policies)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let mut lines = BufReader::new(server.stderr.take().expect("stderr")).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    let base = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in: {first}"))
        .to_owned();
    let show = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_conclave"))
            .arg("--store")
            .arg(&store)
            .args(["trust", "show"])
            .output()
            .expect("trust show")
    };
    let held = show();
    let err = String::from_utf8_lossy(&held.stderr);
    assert_eq!(held.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("in use by `conclave serve` at {base}")) && err.contains("/v1/trust"),
        "{err}"
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    assert!(server.wait().expect("wait").success());
    let free = show();
    assert!(
        free.status.success(),
        "{}",
        String::from_utf8_lossy(&free.stderr)
    );
    assert!(!store.join("SERVING").exists());
}
