//! Governed decisions over HTTP (`conclave serve`): an OpenAI-compatible alias whose `model`
//! names a policy, and a small JSON API for decisions, outcomes, trust and policies.
//!
//! - `POST /v1/chat/completions`: `model` is a policy id; the last user message is the
//!   question; `conclave` (the OpenAI SDKs send it with `extra_body`) gives `options`, `kind`
//!   (`choice`, `ranking`, `score`), `domain`, `seed` and `idempotency_key`. The reply is a
//!   chat completion whose content is the governed answer (or the escalation), with `usage`
//!   summed over the panel and a `conclave` object; headers `x-conclave-decision` and
//!   `x-conclave-outcome`. The panel's agents never appear as `model`.
//! - `POST /v1/decisions` (a [`Decision`] → its [`Verdict`]),
//!   `GET /v1/decisions/{id}` (its audit record), `POST /v1/decisions/{id}/outcome`
//!   (`{"correct": …}`: grading back-fill; trust learns, and later decisions use it),
//!   `GET /v1/trust`, `GET /v1/policies`, `GET /v1/models` (the policies as OpenAI models),
//!   `GET /healthz`. With `"stream": true` a chat completion comes as server-sent events
//!   in OpenAI's chunk format (decided first, then sent: the answer is one content chunk,
//!   the `conclave` object rides on the finishing chunk).
//!
//! Every error is one line of JSON, `{"error": {"code", "message"}}`, with its HTTP status.
//! With a token, every route but `/healthz` needs `Authorization: Bearer TOKEN`. Bodies are
//! limited (1 MiB by default). Trust and the audit log are the store's traits, so the same
//! router serves any backend.

pub mod http;
mod metrics;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::aggregate::Kind;
use crate::audit::{AuditLog, OutcomeError};
use crate::decision::{Decision, Outcome, Truth, Verdict};
use crate::governor::Governor;
use crate::governor::director::Director;
use crate::policy::Catalog;
use crate::trust::TrustState;
use crate::trust::ledger::LedgerParams;
use crate::trust::store::TrustStore;

/// Idempotency keys remembered (the oldest is forgotten first).
const IDEMPOTENCY_KEYS: usize = 10_000;

/// Verdicts by idempotency key with the request they answered, and the keys in the order they
/// came (the oldest is forgotten first).
type Remembered = (HashMap<String, (Arc<Verdict>, String)>, VecDeque<String>);

/// What an idempotency key promises to answer: the policy, the question, the domain, the
/// kind and the options (a key reused with another request is refused, as the IETF
/// Idempotency-Key draft says).
fn request_print(
    policy: &str,
    question: &str,
    domain: &str,
    kind: Kind,
    options: &[String],
) -> String {
    serde_json::to_string(&(policy, question, domain, kind, options)).unwrap_or_default()
}

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The bearer token every route but `/healthz` needs (none: no authentication).
    pub token: Option<String>,
    /// The largest request body, in bytes.
    pub body_limit: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            token: None,
            body_limit: 1 << 20,
        }
    }
}

/// What the server shares between requests.
pub struct ServeState {
    catalog: Catalog,
    trust: Arc<dyn TrustStore + Send + Sync>,
    log: Arc<dyn AuditLog + Send + Sync>,
    /// One Governor per policy, rebuilt when trust changes here.
    governors: RwLock<BTreeMap<String, Governor>>,
    /// Idempotency key → the verdict given for it.
    seen: Mutex<Remembered>,
    config: ServeConfig,
    next: AtomicU64,
    /// The trust version the Governors were last put on.
    trust_version: AtomicU64,
    metrics: metrics::Metrics,
    /// The Cognitive Director's standing orders, shared by every Governor (kept in the
    /// store's or database's book when it has one).
    director: Option<Director>,
}

impl std::fmt::Debug for ServeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeState")
            .field("policies", &self.catalog.policies.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Why a request failed: an HTTP status, a short code and a message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds a client should wait before retrying (a 503's `Retry-After`).
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The store, the database or the budget account is out of reach: 503, retry later.
    fn unavailable(message: impl std::fmt::Display) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("{message} (nothing was decided or recorded; retry later)"),
            )
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            message.to_string(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

impl ServeState {
    /// The state over `catalog`, with trust and the audit log in these stores.
    ///
    /// # Errors
    /// A policy whose agents cannot be built, or a store that cannot be read.
    pub fn new(
        catalog: Catalog,
        trust: Arc<dyn TrustStore + Send + Sync>,
        log: Arc<dyn AuditLog + Send + Sync>,
        config: ServeConfig,
    ) -> Result<Self, String> {
        let snapshot = trust.snapshot().map_err(|e| e.to_string())?;
        let mut governors = BTreeMap::new();
        for policy in &catalog.policies {
            let services = crate::agent::build_for(policy, &catalog).map_err(|e| e.to_string())?;
            let g =
                Governor::new(policy.clone(), services, snapshot.clone()).with_audit(log.clone());
            governors.insert(policy.id().to_owned(), g);
        }
        let state = Self {
            catalog,
            trust,
            log,
            governors: RwLock::new(governors),
            seen: Mutex::new((HashMap::new(), VecDeque::new())),
            config,
            next: AtomicU64::new(0),
            trust_version: AtomicU64::new(snapshot.version),
            metrics: metrics::Metrics::new(),
            director: None,
        };
        state.refresh(|g| g)?;
        Ok(state)
    }

    /// Decisions follow the Director's orders (suspensions, reweights). A Director kept in
    /// a book ([`Director::kept_in`]) shares them with every replica on it: a hand-over that
    /// trips the ratchet is recorded there, and the `/v1/orders` routes give orders through it.
    ///
    /// # Errors
    /// As [`ServeState::new`].
    pub fn with_director(mut self, director: Director) -> Result<Self, String> {
        let shared = director.clone();
        self.director = Some(director);
        self.refresh(|g| g.with_director(shared.clone()))?;
        Ok(self)
    }

    /// Keeps every policy's `[budget.total]` in `account` (replicas on one database share
    /// `PgSpend`).
    ///
    /// # Errors
    /// As [`ServeState::new`].
    pub fn with_spend(self, account: Arc<dyn crate::spend::SpendAccount>) -> Result<Self, String> {
        self.refresh(|g| g.with_spend(account.clone()))?;
        Ok(self)
    }

    /// Puts the Governors on the store's trust if another process changed it, and takes
    /// up orders another replica gave ([`follow`] calls it periodically).
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn catch_up(&self) -> Result<(), String> {
        let version = self.trust.version().map_err(|e| e.to_string())?;
        if version != self.trust_version.load(Ordering::Relaxed) {
            self.refresh(|g| g)?;
        }
        if let Some(d) = &self.director {
            d.refresh().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Puts every policy's Governor on the store's current trust and ledgers (the agents'
    /// services are built once, in [`ServeState::new`]), after `also`.
    fn refresh(&self, also: impl Fn(Governor) -> Governor) -> Result<(), String> {
        let snapshot = self.trust.snapshot().map_err(|e| e.to_string())?;
        self.trust_version
            .store(snapshot.version, Ordering::Relaxed);
        let mut ledgers = BTreeMap::new();
        for domain in self.catalog.policies.iter().flat_map(|p| p.domains()) {
            if !ledgers.contains_key(domain) {
                let ledger = self.trust.ledger(domain).map_err(|e| e.to_string())?;
                ledgers.insert(
                    domain.clone(),
                    ledger.independence(&LedgerParams::default()),
                );
            }
        }
        let mut governors = self
            .governors
            .write()
            .map_err(|_| "the governors' lock is poisoned".to_owned())?;
        for g in governors.values_mut() {
            *g = also(g.clone())
                .with_trust(snapshot.clone())
                .with_independence(ledgers.clone());
        }
        Ok(())
    }

    fn governor(&self, policy: &str) -> Result<Governor, ApiError> {
        let map = self
            .governors
            .read()
            .map_err(|_| ApiError::internal("the governors' lock is poisoned"))?;
        map.get(policy).cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_policy",
                format!(
                    "no policy \"{policy}\" (policies: {})",
                    map.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    fn fresh_id(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("srv-{nanos}-{n}")
    }

    /// Governs `decision` under `policy`, once per idempotency key: a key this replica
    /// answered is answered from memory, a key any replica recorded from the audit log.
    async fn decide(&self, policy: &str, decision: Decision) -> Result<Arc<Verdict>, ApiError> {
        let key = decision.idempotency_key.clone();
        let print = request_print(
            policy,
            &decision.question,
            &decision.domain,
            decision.kind,
            &decision.options,
        );
        let same = |k: &str, (v, theirs): (Arc<Verdict>, String)| {
            if theirs == print {
                Ok(v)
            } else {
                Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    format!(
                        "idempotency key \"{k}\" was used for another request (decision {}): a key names one request; use a new key for a new one",
                        v.decision
                    ),
                ))
            }
        };
        if let Some(k) = &key {
            if let Some(found) = self.remembered(k)? {
                return same(k, found);
            }
            if let Some(found) = self.recorded(k).await? {
                return same(k, found);
            }
        }
        let governor = self.governor(policy)?;
        let started = std::time::Instant::now();
        let verdict = match governor.decide(decision).await {
            Ok(v) => {
                self.metrics.decided(&v, started.elapsed().as_secs_f64());
                v
            }
            // Another replica recorded this key while this one was deciding: its decision is
            // the one that stands.
            Err(crate::GovernorError::Audit(crate::AuditError::DuplicateKey(k))) => {
                let found = self.recorded(&k).await?.ok_or_else(|| {
                    ApiError::internal(format!("key \"{k}\" is recorded but cannot be found"))
                })?;
                return same(&k, found);
            }
            Err(crate::GovernorError::Audit(crate::AuditError::DuplicateId(id))) => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "duplicate_id",
                    format!(
                        "a decision with id \"{id}\" is recorded already: give each decision an id of its own"
                    ),
                ));
            }
            Err(crate::GovernorError::Audit(e)) => return Err(ApiError::unavailable(e)),
            Err(e @ crate::GovernorError::Unavailable(_)) => {
                return Err(ApiError::unavailable(e));
            }
            Err(e) => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "refused",
                    e.to_string(),
                ));
            }
        };
        let v = Arc::new(verdict);
        if let Some(k) = &key {
            self.remember(k, &v, print)?;
        }
        Ok(v)
    }

    /// The verdict recorded in the audit log under idempotency key `key`, with the request it
    /// answered (remembered here from then on).
    async fn recorded(&self, key: &str) -> Result<Option<(Arc<Verdict>, String)>, ApiError> {
        let log = self.log.clone();
        let k = key.to_owned();
        let found = tokio::task::spawn_blocking(move || log.find_key(&k))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::unavailable)?;
        let Some(record) = found else {
            return Ok(None);
        };
        let crate::audit::Entry::Decision(d) = &record.entry else {
            return Ok(None);
        };
        let v = Arc::new(Verdict::from_record(d).ok_or_else(|| {
            ApiError::internal(format!(
                "record {} of key \"{key}\" is not a governed decision",
                record.seq
            ))
        })?);
        let print = request_print(
            d.policy.as_ref().map_or("", |p| p.id.as_str()),
            &d.question,
            &d.domain,
            d.input.kind,
            &d.input.options,
        );
        self.remember(key, &v, print.clone())?;
        Ok(Some((v, print)))
    }

    fn remembered(&self, key: &str) -> Result<Option<(Arc<Verdict>, String)>, ApiError> {
        let seen = self
            .seen
            .lock()
            .map_err(|_| ApiError::internal("the idempotency lock is poisoned"))?;
        Ok(seen.0.get(key).cloned())
    }

    fn remember(&self, key: &str, v: &Arc<Verdict>, print: String) -> Result<(), ApiError> {
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| ApiError::internal("the idempotency lock is poisoned"))?;
        if seen.0.insert(key.to_owned(), (v.clone(), print)).is_none() {
            seen.1.push_back(key.to_owned());
        }
        while seen.1.len() > IDEMPOTENCY_KEYS {
            if let Some(old) = seen.1.pop_front() {
                seen.0.remove(&old);
            }
        }
        Ok(())
    }
}

/// Follows what other processes sharing the store do: every `every`, when trust changed
/// (a grading on another replica, a recalibration) the Governors are put on the new trust,
/// and orders another replica kept are taken up. A change is seen within `every` plus one
/// round trip. Returns when the state is dropped.
pub async fn follow(state: std::sync::Weak<ServeState>, every: std::time::Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(s) = state.upgrade() else {
            return;
        };
        match tokio::task::spawn_blocking(move || s.catch_up()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not catch up with the store"),
            Err(e) => tracing::warn!(error = %e, "could not catch up with the store"),
        }
    }
}

/// The router over `state`.
pub fn router(state: Arc<ServeState>) -> Router {
    let limit = state.config.body_limit;
    let api = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/decisions", post(decisions))
        .route("/v1/decisions/{id}", get(decision_record))
        .route("/v1/decisions/{id}/outcome", post(outcome))
        .route("/v1/decisions/{id}/override", post(override_decision))
        .route("/v1/orders", get(orders).post(give_order))
        .route("/v1/trust", get(trust))
        .route("/v1/policies", get(policies))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/v1/checks", post(checks))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .merge(api)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn authorize(State(state): State<Arc<ServeState>>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.config.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is needed (Authorization: Bearer …)",
            )
            .into_response();
        }
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A JSON body, or the error that says why not (size, syntax, shape).
fn body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "invalid_body"
        };
        ApiError::new(status, code, r.body_text())
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let code = if e.is_syntax() || e.is_eof() {
            "malformed_json"
        } else {
            "invalid_request"
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, format!("the body: {e}"))
    })
}

/// The `conclave` extension of a chat completion request.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Extension {
    options: Vec<String>,
    kind: Option<Kind>,
    domain: Option<String>,
    seed: u64,
    idempotency_key: Option<String>,
    /// `low`, `medium` or `high`: high stakes switch to the policy's robust rule.
    stakes: Option<crate::decision::Stakes>,
    /// The scale of a numeric answer, `[low, high]`.
    scale: Option<[f64; 2]>,
    /// Simulated agents only: the right answer.
    truth: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<Value>,
    #[serde(default)]
    conclave: Extension,
    /// The answer as server-sent events in OpenAI's chunk format (the decision is governed
    /// first; the governed answer then arrives as one content chunk).
    #[serde(default)]
    stream: bool,
    /// `{"include_usage": true}`: a last chunk with the usage, as OpenAI sends it.
    #[serde(default)]
    stream_options: Option<Value>,
}

/// The text of a chat message's content: a string, or text parts.
fn text_of(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let t: Vec<&str> = parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            (!t.is_empty()).then(|| t.join("\n"))
        }
        _ => None,
    }
}

async fn chat(
    State(state): State<Arc<ServeState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ChatRequest = body(raw)?;
    let question = req
        .messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .and_then(text_of)
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| {
            ApiError::bad(
                "no user message with text content: the question is the last user message",
            )
        })?;
    let policy = state
        .catalog
        .policy(&req.model)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_policy",
                format!("no policy \"{}\": `model` names a policy", req.model),
            )
        })?
        .clone();
    let ext = req.conclave;
    if let Some(k) = &ext.idempotency_key {
        check_key(k)?;
    }
    let domain = ext
        .domain
        .or_else(|| policy.domains().first().cloned())
        .unwrap_or_default();
    let kind = match ext.kind {
        Some(k) => k,
        None if !ext.options.is_empty() => Kind::Choice,
        None if policy.covers(&domain, Kind::Score) => Kind::Score,
        None => {
            let kinds: Vec<&str> = policy.kinds().iter().map(|k| k.as_str()).collect();
            return Err(ApiError::bad(format!(
                "policy \"{}\" governs {} decisions: send the options in the request's `conclave` object, e.g. {{\"conclave\": {{\"options\": [\"yes\", \"no\"]}}}} (with the OpenAI SDKs: extra_body={{\"conclave\": {{\"options\": [...]}}}})",
                policy.id(),
                kinds.join(", ")
            )));
        }
    };
    let mut decision = Decision {
        id: state.fresh_id(),
        question,
        domain,
        kind,
        options: ext.options,
        seed: ext.seed,
        truth: None,
        idempotency_key: ext.idempotency_key,
        stakes: ext.stakes,
        scale: ext.scale,
    };
    if let Some(t) = ext.truth {
        decision.truth = Some(match kind {
            Kind::Score => Truth::Value(
                t.parse()
                    .map_err(|_| ApiError::bad(format!("truth \"{t}\" is not a number")))?,
            ),
            _ => Truth::Option(t),
        });
    }
    let v = state.decide(policy.id(), decision).await?;
    if req.stream {
        let usage = req
            .stream_options
            .as_ref()
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        return Ok(streamed(policy.id(), &v, usage));
    }
    Ok(completion(policy.id(), &v))
}

/// The text a chat completion carries for a verdict: the governed answer, or the escalation.
fn answer_text(v: &Verdict) -> String {
    match &v.outcome {
        Outcome::Arbitrated { ruling, .. } => ruling.clone(),
        Outcome::Human { reason } | Outcome::Refused { reason } => {
            format!("escalated: {reason}")
        }
        _ => v
            .winner()
            .map(str::to_owned)
            .or_else(|| v.value().map(|x| format!("{x}")))
            .unwrap_or_default(),
    }
}

/// The `conclave` object of a completion: the decision, its outcome and what it cost.
fn extension_of(v: &Verdict) -> Value {
    json!({
        "decision": v.decision,
        "outcome": v.outcome,
        "confidence": v.confidence,
        "margin": v.tally.as_ref().and_then(|t| t.margin),
        "consensus": v.consensus,
        "ballots": v.ballots.iter().filter(|c| !c.ballot.is_abstention()).count(),
        "calls": v.calls,
        "cost_usd": v.cost_usd,
        "left_out": v.left_out,
    })
}

/// The usage object, summed over the panel's calls.
fn usage_of(v: &Verdict) -> Value {
    json!({
        "prompt_tokens": v.prompt_tokens,
        "completion_tokens": v.tokens.saturating_sub(v.prompt_tokens),
        "total_tokens": v.tokens,
    })
}

/// The headers every governed answer carries.
fn verdict_headers(v: &Verdict) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("x-conclave-decision", v.decision.as_str()),
        ("x-conclave-outcome", v.outcome.as_str()),
    ] {
        if let Ok(h) = HeaderValue::from_str(value) {
            headers.insert(name, h);
        }
    }
    headers
}

/// A verdict as server-sent events in OpenAI's `chat.completion.chunk` format: the role, the
/// answer in one content chunk, the finish with the `conclave` object, the usage when asked
/// for, then `[DONE]`.
fn streamed(policy: &str, v: &Verdict, usage: bool) -> Response {
    let id = format!("chatcmpl-{}", v.decision);
    let created = crate::time::now();
    let chunk = |delta: Value, finish: Value, extra: Option<(&str, Value)>| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": policy,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        if let Some((k, x)) = extra {
            c[k] = x;
        }
        c
    };
    let mut events = vec![
        chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
            None,
        ),
        chunk(json!({"content": answer_text(v)}), Value::Null, None),
        chunk(
            json!({}),
            json!("stop"),
            Some(("conclave", extension_of(v))),
        ),
    ];
    if usage {
        let mut last = chunk(json!({}), Value::Null, Some(("usage", usage_of(v))));
        last["choices"] = json!([]);
        events.push(last);
    }
    let mut text = String::new();
    for e in events {
        text += &format!("data: {e}\n\n");
    }
    text += "data: [DONE]\n\n";
    let mut headers = verdict_headers(v);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    (headers, text).into_response()
}

/// A chat completion carrying a verdict.
fn completion(policy: &str, v: &Verdict) -> Response {
    let content = answer_text(v);
    let body = json!({
        "id": format!("chatcmpl-{}", v.decision),
        "object": "chat.completion",
        "created": crate::time::now(),
        "model": policy,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }],
        // Summed over the panel's calls.
        "usage": usage_of(v),
        "conclave": extension_of(v),
    });
    (verdict_headers(v), axum::Json(body)).into_response()
}

/// An idempotency key: 1–256 printable characters.
fn check_key(key: &str) -> Result<(), ApiError> {
    let n = key.chars().count();
    if n == 0 || n > 256 || key.chars().any(char::is_control) {
        return Err(ApiError::bad(format!(
            "an idempotency key has 1 to 256 printable characters (this one has {n})"
        )));
    }
    Ok(())
}

/// A policy as an OpenAI model object.
fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "conclave"})
}

/// `GET /v1/models`: the policies, as the models an OpenAI client may name.
async fn models(State(state): State<Arc<ServeState>>) -> axum::Json<Value> {
    let data: Vec<Value> = state
        .catalog
        .policies
        .iter()
        .map(|p| model_object(p.id()))
        .collect();
    axum::Json(json!({"object": "list", "data": data}))
}

/// `GET /v1/models/{id}`: one policy as a model.
async fn model(
    State(state): State<Arc<ServeState>>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    state
        .catalog
        .policy(&id)
        .map(|p| axum::Json(model_object(p.id())))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_policy",
                format!("no policy \"{id}\": each policy is a model"),
            )
        })
}

#[derive(Debug, Deserialize)]
struct DecisionRequest {
    #[serde(flatten)]
    decision: Decision,
    /// The policy (default: the one routed by domain and kind).
    policy: Option<String>,
}

async fn decisions(
    State(state): State<Arc<ServeState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let req: DecisionRequest = body(raw)?;
    crate::decision::check_client_id(&req.decision.id).map_err(ApiError::bad)?;
    if let Some(k) = &req.decision.idempotency_key {
        check_key(k)?;
    }
    let policy = match req.policy {
        Some(p) => p,
        None => state
            .catalog
            .route(&req.decision.domain, req.decision.kind)
            .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "no_policy", e.to_string()))?
            .id()
            .to_owned(),
    };
    let v = state.decide(&policy, req.decision).await?;
    Ok(axum::Json(
        serde_json::to_value(&*v).map_err(ApiError::internal)?,
    ))
}

async fn decision_record(
    State(state): State<Arc<ServeState>>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let record = state
        .log
        .find(&id)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "unknown_decision", e.to_string()))?;
    Ok(axum::Json(
        serde_json::to_value(&record).map_err(ApiError::internal)?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeRequest {
    correct: String,
    #[serde(default = "default_tolerance")]
    tolerance: f64,
    #[serde(default = "default_source")]
    source: String,
}

fn default_tolerance() -> f64 {
    0.1
}

fn default_source() -> String {
    "api".to_owned()
}

/// The status of a failed outcome or override: 409 when the decision is settled already,
/// 404 for an unknown decision, 503 when the store failed, 400 for an answer that does not fit.
fn outcome_error(e: OutcomeError) -> ApiError {
    match e {
        OutcomeError::AlreadyGraded { .. } | OutcomeError::Final { .. } => {
            ApiError::new(StatusCode::CONFLICT, "already_graded", e.to_string())
        }
        OutcomeError::Audit(crate::audit::AuditError::NotFound(_)) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_decision", e.to_string())
        }
        OutcomeError::Audit(crate::audit::AuditError::Settled { .. }) => {
            ApiError::new(StatusCode::CONFLICT, "already_graded", e.to_string())
        }
        OutcomeError::Audit(_) | OutcomeError::Trust(_) => ApiError::unavailable(e),
        _ => ApiError::bad(e.to_string()),
    }
}

/// Grades a decision off the async workers (the log and trust write to disk), then puts the
/// Governors on the trust it taught, so that later decisions weigh the agents by it.
async fn grade<T: Send + 'static>(
    state: &Arc<ServeState>,
    f: impl FnOnce(&dyn AuditLog, &dyn TrustStore) -> Result<T, OutcomeError> + Send + 'static,
) -> Result<T, ApiError> {
    let s = state.clone();
    let done = tokio::task::spawn_blocking(move || f(&*s.log, &*s.trust))
        .await
        .map_err(ApiError::internal)?
        .map_err(outcome_error)?;
    state.refresh(|g| g).map_err(ApiError::internal)?;
    Ok(done)
}

async fn outcome(
    State(state): State<Arc<ServeState>>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let req: OutcomeRequest = body(raw)?;
    let receipt = grade(&state, move |log, trust| {
        crate::audit::record_outcome(log, trust, &id, &req.correct, &req.source, req.tolerance)
    })
    .await?;
    Ok(axum::Json(json!({
        "decision": receipt.decision.seq,
        "outcome": receipt.outcome.seq,
        "graded": receipt.graded,
        "provenance": receipt.provenance,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideRequest {
    answer: String,
    by: String,
    reason: String,
    #[serde(default = "default_tolerance")]
    tolerance: f64,
}

/// A person's answer to a decision (the Director's desk): the override and the outcome it
/// implies are recorded together, then trust learns.
async fn override_decision(
    State(state): State<Arc<ServeState>>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let req: OverrideRequest = body(raw)?;
    let done = grade(&state, move |log, trust| {
        crate::audit::record_override(
            log,
            trust,
            &id,
            &req.answer,
            &req.by,
            &req.reason,
            req.tolerance,
        )
    })
    .await?;
    Ok(axum::Json(json!({
        "decision": done.outcome.decision.seq,
        "override": done.over.seq,
        "outcome": done.outcome.outcome.seq,
        "graded": done.outcome.graded,
    })))
}

fn director(state: &ServeState) -> Result<&Director, ApiError> {
    state.director.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_director",
            "this server follows no Director's orders",
        )
    })
}

/// The Director's standing orders, as every replica on the store or database shares them.
async fn orders(State(state): State<Arc<ServeState>>) -> Result<axum::Json<Value>, ApiError> {
    let d = director(&state)?.clone();
    let current = tokio::task::spawn_blocking(move || d.refresh().map(|()| d.current()))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::unavailable)?;
    Ok(axum::Json(
        serde_json::to_value(&*current).map_err(ApiError::internal)?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderRequest {
    order: crate::governor::Order,
    by: String,
}

/// Gives an order (suspend, resume, reweight): in effect on every replica once recorded.
async fn give_order(
    State(state): State<Arc<ServeState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let req: OrderRequest = body(raw)?;
    let d = director(&state)?.clone();
    if !d.is_kept() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_director",
            "this server's orders are not kept with its audit log: orders cannot be given over HTTP",
        ));
    }
    let record =
        tokio::task::spawn_blocking(move || d.order(req.order, &req.by, crate::time::now()))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| match e {
                crate::directives::OrdersError::Order(
                    crate::governor::director::DirectorError::NotSuspended(_),
                ) => ApiError::new(StatusCode::CONFLICT, "not_suspended", e.to_string()),
                crate::directives::OrdersError::Order(_) => ApiError::bad(e.to_string()),
                _ => ApiError::unavailable(e),
            })?;
    let current = director(&state)?.current();
    Ok(axum::Json(json!({
        "record": record.map(|r| r.seq),
        "version": current.version,
        "orders": serde_json::to_value(&*current).map_err(ApiError::internal)?,
    })))
}

async fn trust(State(state): State<Arc<ServeState>>) -> Result<axum::Json<Value>, ApiError> {
    let snapshot = state.trust.snapshot().map_err(ApiError::internal)?;
    Ok(axum::Json(
        serde_json::to_value(&snapshot).map_err(ApiError::internal)?,
    ))
}

async fn policies(State(state): State<Arc<ServeState>>) -> axum::Json<Value> {
    let list: Vec<Value> = state
        .catalog
        .policies
        .iter()
        .map(|p| {
            json!({
                "id": p.id(),
                "description": p.description(),
                "domains": p.domains(),
                "kinds": p.kinds(),
            })
        })
        .collect();
    axum::Json(json!({"policies": list}))
}

async fn metrics(State(state): State<Arc<ServeState>>) -> Result<Response, ApiError> {
    let s = state.clone();
    let snapshot = tokio::task::spawn_blocking(move || s.trust.snapshot())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let text = state
        .metrics
        .render(&snapshot)
        .map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// `POST /v1/checks`: which policy a decision would go to and what would happen to it, with
/// no agent called: the policy (routed by domain and kind unless named), whether it covers
/// the decision, the problems that would refuse it, each pool member's standing in the
/// domain, whether the domain is suspended, and the policy's explanation.
async fn checks(
    State(state): State<Arc<ServeState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let req: DecisionRequest = body(raw)?;
    let d = &req.decision;
    let policy = match &req.policy {
        Some(id) => state.catalog.policy(id).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_policy",
                format!("no policy \"{id}\""),
            )
        })?,
        None => state
            .catalog
            .route(&d.domain, d.kind)
            .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "no_policy", e.to_string()))?,
    };
    let mut problems = Vec::new();
    if !policy.covers(&d.domain, d.kind) {
        problems.push(format!(
            "policy \"{}\" does not cover {} decisions in domain \"{}\"",
            policy.id(),
            d.kind.as_str(),
            d.domain
        ));
    }
    if matches!(d.kind, Kind::Choice | Kind::Ranking) && d.options.len() < 2 {
        problems.push(format!(
            "a {} decision needs at least two options",
            d.kind.as_str()
        ));
    }
    if d.question.trim().is_empty() {
        problems.push("the question is empty".to_owned());
    }
    let s = state.clone();
    let snapshot = tokio::task::spawn_blocking(move || s.trust.snapshot())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let pool: Vec<Value> = policy
        .pool()
        .iter()
        .map(|agent| {
            json!({
                "agent": agent,
                "standing": snapshot.standing(agent, &d.domain).as_str(),
                "trust": snapshot.get(agent, &d.domain).map(TrustState::trust),
            })
        })
        .collect();
    let suspended = state
        .director
        .as_ref()
        .and_then(|o| o.current().suspension(&d.domain).cloned());
    Ok(axum::Json(json!({
        "policy": policy.id(),
        "policy_hash": policy.hash(),
        "admissible": problems.is_empty(),
        "problems": problems,
        "pool": pool,
        "suspended": suspended,
        "trust_version": snapshot.version,
        "explanation": policy.explain(&state.catalog.agents),
    })))
}
