//! An agent behind any OpenAI-compatible chat-completions endpoint (async-openai).
//!
//! **Structured output that adapts.** The ballot is asked for in the agent's
//! `structured_output` mode: `json_schema` (a strict schema: OpenAI, vLLM, llama.cpp's
//! llama-server, Ollama), `json_object` with the schema (llama-cpp-python, which rejects
//! `json_schema` with HTTP 500), or `prompt` (the schema as instructions, the reply read
//! leniently). `auto`, the default, tries them in that order on the server's refusal of the
//! structured-output request itself (an HTTP 400, 422, 500 or 501 whose message is about the
//! response format) and remembers what works. The schema asks for the rationale first, then
//! the answer, then the confidence, so that a model reasons before it commits (properties are
//! sent in that order: grammar-constrained servers generate in schema order).
//!
//! **Replies are read, never trusted.** A reply is parsed and checked locally; what fails gets
//! one repair attempt that says what was wrong, and a reply cut at the token limit one retry
//! with twice the limit (at most 4,096). Confidence: a number in [0, 1] is kept; one in
//! (1, 100] is read as a percentage; anything else is dropped (the answer still counts). An
//! option is matched exactly, else ignoring case and surrounding spaces. Rationales are kept
//! up to 2,000 characters (longer ones are cut, their length noted). What still fails is an
//! abstention with a typed [`Cause`] (`unparsable`, `truncated`), never a vote.
//!
//! **Safe transport.** Redirects are not followed (the cause names the target); a reply is
//! read up to `max_response_bytes` (default 1 MiB) and no further; HTTP errors keep their
//! status and an excerpt of the server's message (a 404 on a base URL without `/v1` says so);
//! only connection failures, timeouts, 408, 429 and 5xx are worth a retry (the Governor's
//! stack owns retrying: async-openai's own retries are off), and a `Retry-After` is honoured.
//! Usage numbers are the endpoint's claim: a claim beyond what the request and reply can hold
//! (prompt tokens above the prompt's bytes, completion tokens above the limit asked) is
//! logged as absurd and replaced by that bound, so budgets hold whatever an endpoint claims.
//!
//! The API key is read from the environment variable the agent definition names, and never
//! logged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError as ClientError;
use async_openai::middleware::{HttpRequestFactory, ReqwestService};
use serde::Serialize;
use serde_json::{Value, json};
use tower::{BoxError, Service};

use super::{AgentReply, AgentRequest};
use crate::aggregate::Kind;
use crate::ballot::{Abstention, Answer, Ballot, Cause, CauseKind, clean_excerpt};
use crate::decision::Decision;
use crate::policy::{AgentSpec, StructuredOutput};

/// Why an OpenAI-compatible agent cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenAiError {
    /// The definition names no model, or neither an API-key variable nor a base URL.
    #[error("agent \"{0}\" needs a model, and api_key_env unless it has its own base_url")]
    Incomplete(String),
    /// The named environment variable is not set.
    #[error("agent \"{agent}\": the environment variable {var} (its API key) is not set")]
    MissingKey {
        /// The agent.
        agent: String,
        /// The variable's name.
        var: String,
    },
    /// The HTTP client could not be built.
    #[error("agent \"{agent}\": {message}")]
    Client {
        /// The agent.
        agent: String,
        /// What failed.
        message: String,
    },
}

/// The longest rationale kept, in characters.
const RATIONALE_MAX: usize = 2000;
/// The largest token limit a truncated reply is retried with.
const MAX_RETRY_TOKENS: u32 = 4096;

/// The modes, in the order `auto` tries them (the index is what is remembered).
const MODES: [StructuredOutput; 3] = [
    StructuredOutput::JsonSchema,
    StructuredOutput::JsonObject,
    StructuredOutput::Prompt,
];

/// An OpenAI-compatible agent as a Tower service.
#[derive(Clone)]
pub struct OpenAiAgent {
    spec: Arc<AgentSpec>,
    client: Client<OpenAIConfig>,
    /// For probes outside chat completions (`/models`): the same rules (no redirects).
    http: reqwest::Client,
    /// The key, for probes (never printed: this type's `Debug` leaves it out).
    key: Arc<str>,
    /// Under `auto`: the index in [`MODES`] of the first mode to try (what worked last).
    mode: Arc<AtomicU8>,
}

impl std::fmt::Debug for OpenAiAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the client: its configuration holds the key.
        f.debug_struct("OpenAiAgent")
            .field("agent", &self.spec.id)
            .finish_non_exhaustive()
    }
}

impl OpenAiAgent {
    /// The agent of an `openai` definition, its key read from the variable the definition
    /// names.
    ///
    /// # Errors
    /// A definition without model or key variable, or an unset variable.
    pub fn new(spec: AgentSpec) -> Result<Self, OpenAiError> {
        if spec.model.is_none() || (spec.api_key_env.is_none() && spec.base_url.is_none()) {
            return Err(OpenAiError::Incomplete(spec.id));
        }
        // Without a key variable (a server of one's own), no key is sent.
        let key = match &spec.api_key_env {
            Some(var) => std::env::var(var).map_err(|_| OpenAiError::MissingKey {
                agent: spec.id.clone(),
                var: var.clone(),
            })?,
            None => String::new(),
        };
        Self::with_key(spec, key)
    }

    /// The agent with a key the application supplies (from its own secret store).
    ///
    /// # Errors
    /// A definition without a model, or an HTTP client that cannot be built.
    pub fn with_key(spec: AgentSpec, key: impl Into<String>) -> Result<Self, OpenAiError> {
        if spec.model.is_none() {
            return Err(OpenAiError::Incomplete(spec.id));
        }
        let base = spec
            .base_url
            .clone()
            .unwrap_or_else(|| "https://api.openai.com/v1".to_owned());
        let key: Arc<str> = Arc::from(key.into());
        let config = OpenAIConfig::new()
            .with_api_base(base.trim_end_matches('/'))
            .with_api_key(key.to_string());
        // Redirects are not followed: the target's answer would be counted as this agent's.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OpenAiError::Client {
                agent: spec.id.clone(),
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        // The plain transport, without async-openai's retry layer: one retry owner.
        let client = Client::with_config(config).with_http_service(Transport {
            inner: ReqwestService::new(http.clone()),
            limit: spec.max_response_bytes,
        });
        Ok(Self {
            spec: Arc::new(spec),
            client,
            http,
            key,
            mode: Arc::new(AtomicU8::new(0)),
        })
    }

    /// The structured-output mode asked for first.
    pub fn structured_output(&self) -> StructuredOutput {
        match self.spec.structured_output {
            StructuredOutput::Auto => {
                MODES[usize::from(self.mode.load(Ordering::Relaxed)).min(MODES.len() - 1)]
            }
            m => m,
        }
    }

    /// One chat completion: the reply as JSON, or the typed cause of its failure (a refusal
    /// that came with `Retry-After` is a [`RetryAfter`](crate::agent::RetryAfter)).
    async fn complete(&self, body: &Request) -> Result<Value, BoxError> {
        self.client
            .chat()
            .create_byot(body)
            .await
            .map_err(|e| -> BoxError {
                match e {
                    ClientError::Boxed(b) => b,
                    ClientError::Reqwest(e) => Box::new(cause_of(&e)),
                    ClientError::JSONDeserialize(e, _) => Box::new(Cause::new(
                        CauseKind::Unparsable,
                        format!("the endpoint's reply is not a chat completion: {e}"),
                    )),
                    other => Box::new(Cause::new(CauseKind::Other, other.to_string())),
                }
            })
    }

    /// Asks in `mode` (falling back under `auto` on a refusal of the format itself); the
    /// reply and the mode that gave it.
    async fn exchange(
        &self,
        messages: &[Value],
        decision: &Decision,
        max_tokens: u32,
    ) -> Result<(Value, StructuredOutput), BoxError> {
        let first = self.structured_output();
        let auto = self.spec.structured_output == StructuredOutput::Auto;
        let start = MODES.iter().position(|m| *m == first).unwrap_or(0);
        let mut last: Option<BoxError> = None;
        for (k, mode) in MODES.iter().enumerate().skip(start) {
            let body = request(&self.spec, messages, decision, *mode, max_tokens);
            match self.complete(&body).await {
                Ok(v) => {
                    if auto {
                        self.mode.store(k as u8, Ordering::Relaxed);
                    }
                    return Ok((v, *mode));
                }
                Err(e) if auto && format_refused(&*e) && k + 1 < MODES.len() => {
                    tracing::info!(agent = %self.spec.id, mode = ?mode, cause = %e, "structured output refused; trying the next mode");
                    last = Some(e);
                }
                Err(e) if format_refused(&*e) => {
                    return Err(Box::new(Cause::new(
                        CauseKind::SchemaRejected,
                        format!(
                            "the endpoint refused structured output ({e}); set structured_output = \"prompt\" or \"auto\""
                        ),
                    )));
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| "no structured-output mode left to try".into()))
    }

    async fn ask(
        &self,
        decision: &Decision,
        case: Option<&super::Case>,
        round: Option<&super::Round>,
    ) -> Result<AgentReply, BoxError> {
        if decision.kind == Kind::Vector && self.spec.embedding_model.is_none() {
            // Free text becomes a vector through an embeddings model; without one, no answer.
            return Ok(AgentReply::priced(
                &self.spec,
                Ballot::abstain(self.spec.id.clone(), Abstention::Declined).with_cause(Cause::new(
                    CauseKind::Other,
                    "a free-text (vector) decision needs the agent's embedding_model",
                )),
                0,
                0,
            ));
        }
        // A panel member answers alone; the arbiter reads the panel's case first.
        let (role, question) = match (case, round) {
            (None, None) => (
                "You are one voter in a panel. Answer independently.",
                prompt(decision),
            ),
            (None, Some(r)) => (
                "You are one voter in a panel that deliberates: you see the others' answers and reasons, and keep your own judgement.",
                format!("{}\n\n{}", r.describe(), prompt(decision)),
            ),
            (Some(c), _) => (
                "You are the arbiter of a panel whose vote was too uncertain to stand. Rule on the question yourself, weighing the panel's arguments.",
                format!("{}\n\n{}", c.describe(), prompt(decision)),
            ),
        };
        let mut messages = vec![
            json!({"role": "system", "content": self.spec.system_prompt.clone().unwrap_or_else(|| role.to_owned())}),
            json!({"role": "user", "content": question}),
        ];
        let (mut tokens_in, mut tokens_out) = (0u32, 0u32);
        let mut max_tokens = self.spec.max_tokens.max(1);
        let (mut repaired, mut extended) = (false, false);
        loop {
            let started = std::time::Instant::now();
            let (response, mode) = self.exchange(&messages, decision, max_tokens).await?;
            let content = response["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or("");
            let finish = response["choices"][0]["finish_reason"]
                .as_str()
                .unwrap_or("");
            let (used_in, used_out) = usage(&self.spec, &response, &messages, max_tokens);
            tokens_in = tokens_in.saturating_add(used_in);
            tokens_out = tokens_out.saturating_add(used_out);
            tracing::debug!(agent = %self.spec.id, model = ?self.spec.model, mode = ?mode, latency_ms = started.elapsed().as_millis() as u64, tokens_in, tokens_out, finish, "chat completion");
            let raw = Some(clean_excerpt(content, RATIONALE_MAX));
            let problem = match parse_ballot(&self.spec.id, decision, content, mode) {
                Ok(ballot) if decision.kind == Kind::Vector => {
                    // The text answer, embedded.
                    let ballot = match self.embed(ballot).await {
                        Ok(b) => b,
                        Err(cause) => Ballot::abstain(self.spec.id.clone(), cause.abstention())
                            .with_cause(cause),
                    };
                    return Ok(
                        AgentReply::priced(&self.spec, ballot, tokens_in, tokens_out).with_raw(raw),
                    );
                }
                Ok(ballot) => {
                    return Ok(
                        AgentReply::priced(&self.spec, ballot, tokens_in, tokens_out).with_raw(raw),
                    );
                }
                Err(problem) => problem,
            };
            if let Some(refusal) = response["choices"][0]["message"]["refusal"]
                .as_str()
                .filter(|r| !r.is_empty())
            {
                return Ok(self
                    .abstain(
                        Cause::new(CauseKind::Refused, refusal),
                        tokens_in,
                        tokens_out,
                    )
                    .with_raw(raw));
            }
            let truncated = finish == "length";
            if truncated && !extended && max_tokens < MAX_RETRY_TOKENS {
                // Cut at the token limit: once more with room to finish.
                extended = true;
                max_tokens = max_tokens.saturating_mul(2).min(MAX_RETRY_TOKENS);
                continue;
            }
            if truncated {
                return Ok(self
                    .abstain(
                        Cause::new(
                            CauseKind::Truncated,
                            format!("the reply was cut at {max_tokens} tokens: {problem}"),
                        ),
                        tokens_in,
                        tokens_out,
                    )
                    .with_raw(raw));
            }
            if repaired {
                return Ok(self
                    .abstain(
                        Cause::new(CauseKind::Unparsable, problem),
                        tokens_in,
                        tokens_out,
                    )
                    .with_raw(raw));
            }
            repaired = true;
            messages.push(
                json!({"role": "assistant", "content": clean_excerpt(content, RATIONALE_MAX)}),
            );
            messages.push(json!({"role": "user", "content": format!(
                "That answer cannot be counted: {problem}. Reply again with only a JSON object: {}",
                template(decision)
            )}));
        }
    }

    /// Embeds a free-text ballot's answer (the first line of its rationale, as
    /// [`parse_ballot`] keeps it) through the endpoint's `/embeddings`, under the same rules as
    /// chat (no redirects, the size limit, typed causes).
    async fn embed(&self, ballot: Ballot) -> Result<Ballot, Cause> {
        let model = self.spec.embedding_model.clone().unwrap_or_default();
        let text = ballot
            .rationale
            .as_deref()
            .and_then(|r| r.lines().next())
            .unwrap_or("")
            .trim_start_matches("Answer: ")
            .to_owned();
        let base = self
            .spec
            .base_url
            .clone()
            .unwrap_or_else(|| "https://api.openai.com/v1".to_owned());
        let url = format!("{}/embeddings", base.trim_end_matches('/'));
        let mut post = self
            .http
            .post(&url)
            .timeout(std::time::Duration::from_millis(
                self.spec.timeout_ms.max(1),
            ))
            .json(&json!({"model": model, "input": text}));
        if !self.key.is_empty() {
            post = post.bearer_auth(&*self.key);
        }
        let mut response = post.send().await.map_err(|e| cause_of(&e))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(Cause::new(
                CauseKind::Redirect,
                format!("{url} redirects; redirects are not followed"),
            ));
        }
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| cause_of(&e))? {
            if (body.len() + chunk.len()) as u64 > self.spec.max_response_bytes {
                return Err(Cause::new(
                    CauseKind::OverSize,
                    format!(
                        "the embedding exceeded {} bytes (max_response_bytes)",
                        self.spec.max_response_bytes
                    ),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(Cause::http(
                status.as_u16(),
                format!("embeddings: {}", error_message(&body)),
            ));
        }
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            Cause::new(
                CauseKind::Unparsable,
                format!("the embedding is not JSON: {e}"),
            )
        })?;
        let items = v["data"][0]["embedding"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let vector: Vec<f64> = items.iter().filter_map(Value::as_f64).collect();
        if vector.is_empty() || vector.len() != items.len() || vector.iter().any(|x| !x.is_finite())
        {
            return Err(Cause::new(
                CauseKind::Unparsable,
                "the embeddings reply holds no vector of finite numbers",
            ));
        }
        let mut out = Ballot::new(ballot.agent, Answer::Vector(vector));
        out.confidence = ballot.confidence;
        out.rationale = ballot.rationale;
        Ok(out)
    }

    /// Probes the endpoint: is it reachable, does it serve the model (per `/models`), which
    /// structured-output mode works, how long a short answer takes; and what to fix.
    pub async fn probe(&self) -> Probe {
        let base = self
            .spec
            .base_url
            .clone()
            .unwrap_or_else(|| "https://api.openai.com/v1".to_owned());
        let model = self.spec.model.clone().unwrap_or_default();
        let mut probe = Probe {
            agent: self.spec.id.clone(),
            base_url: base.clone(),
            model: model.clone(),
            reachable: false,
            served: None,
            models: Vec::new(),
            structured_output: None,
            latency_ms: None,
            problems: Vec::new(),
        };
        let url = format!("{}/models", base.trim_end_matches('/'));
        let mut get = self
            .http
            .get(&url)
            .timeout(std::time::Duration::from_millis(
                self.spec.timeout_ms.max(1),
            ));
        if !self.key.is_empty() {
            get = get.bearer_auth(&*self.key);
        }
        match get.send().await {
            Err(e) => {
                probe.problems.push(format!(
                    "{}: is the server running at {base}?",
                    cause_of(&e)
                ));
                return probe;
            }
            Ok(r) => {
                probe.reachable = true;
                let status = r.status();
                let body = r.bytes().await.unwrap_or_default();
                if status.is_success() {
                    let list: Value = serde_json::from_slice(&body).unwrap_or_default();
                    probe.models = list["data"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|m| m["id"].as_str().map(str::to_owned))
                                .take(50)
                                .collect()
                        })
                        .unwrap_or_default();
                    let served = probe.models.contains(&model);
                    probe.served = Some(served);
                    if !served {
                        probe.problems.push(format!(
                            "the endpoint does not list the model \"{model}\" (it serves: {}); some servers answer any name with another model",
                            if probe.models.is_empty() { "nothing".to_owned() } else { probe.models.join(", ") }
                        ));
                    }
                } else if status.is_redirection() {
                    probe.problems.push(format!(
                        "{url} redirects (HTTP {}); set base_url to the final address",
                        status.as_u16()
                    ));
                } else if status.as_u16() == 404 {
                    probe.problems.push(format!(
                        "{url} does not exist (HTTP 404): does base_url end with /v1?"
                    ));
                } else if matches!(status.as_u16(), 401 | 403) {
                    probe.problems.push(format!(
                        "the key was refused (HTTP {}): check api_key_env",
                        status.as_u16()
                    ));
                } else {
                    probe.problems.push(format!(
                        "{url}: HTTP {} {}",
                        status.as_u16(),
                        error_message(&body)
                    ));
                }
            }
        }
        let decision = Decision::choice(
            "probe",
            "probe",
            "This is a connectivity check. Which word is a colour?",
            ["red", "table"],
        );
        let started = std::time::Instant::now();
        match self.ask(&decision, None, None).await {
            Ok(reply) => {
                probe.latency_ms = Some(started.elapsed().as_millis() as u64);
                if let Some(cause) = &reply.ballot.cause {
                    probe
                        .problems
                        .push(format!("a test question was not answered usably: {cause}"));
                } else {
                    probe.structured_output = Some(self.structured_output());
                }
            }
            Err(e) => probe.problems.push(format!("a test question failed: {e}")),
        }
        probe
    }

    /// A malformed-reply abstention with its cause, priced for the tokens it used.
    fn abstain(&self, cause: Cause, tokens_in: u32, tokens_out: u32) -> AgentReply {
        let ballot = Ballot::abstain(self.spec.id.clone(), cause.abstention()).with_cause(cause);
        AgentReply::priced(&self.spec, ballot, tokens_in, tokens_out)
    }
}

/// What [`OpenAiAgent::probe`] found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probe {
    /// The agent.
    pub agent: String,
    /// Its endpoint.
    pub base_url: String,
    /// The model it asks for.
    pub model: String,
    /// The endpoint answered at all.
    pub reachable: bool,
    /// Whether `/models` lists the model (`None`: the list could not be read).
    pub served: Option<bool>,
    /// The models `/models` lists (at most 50).
    pub models: Vec<String>,
    /// The structured-output mode a test question was answered in.
    pub structured_output: Option<StructuredOutput>,
    /// How long the test question took.
    pub latency_ms: Option<u64>,
    /// What to fix, in words (empty: nothing).
    pub problems: Vec<String>,
}

/// Whether an error is the endpoint refusing the structured-output request itself.
fn format_refused(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    let Some(c) = e.downcast_ref::<Cause>() else {
        return false;
    };
    if c.kind == CauseKind::SchemaRejected {
        return true;
    }
    let detail = c.detail.to_ascii_lowercase();
    c.kind == CauseKind::Http
        && matches!(c.status, Some(400 | 422 | 500 | 501))
        && [
            "response_format",
            "json_schema",
            "json_object",
            "schema",
            "grammar",
        ]
        .iter()
        .any(|w| detail.contains(w))
}

/// The cause of a transport failure.
fn cause_of(e: &reqwest::Error) -> Cause {
    // reqwest's messages name the URL, never the headers: no key can leak through them.
    let kind = if e.is_connect() {
        CauseKind::Connect
    } else if e.is_timeout() {
        CauseKind::Timeout
    } else if e.is_redirect() {
        CauseKind::Redirect
    } else {
        CauseKind::Other
    };
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = format!("{detail}: {s}");
        source = s.source();
    }
    Cause::new(kind, detail)
}

/// The usage to count: the endpoint's claim, unless it claims more than the request and the
/// reply can hold (then the bound, and a warning).
fn usage(spec: &AgentSpec, response: &Value, messages: &[Value], max_tokens: u32) -> (u32, u32) {
    let prompt_bytes: usize = messages
        .iter()
        .map(|m| m["content"].as_str().map_or(0, str::len))
        .sum();
    // A token covers at least one byte; the chat template adds a few dozen.
    let in_bound = u32::try_from(prompt_bytes + 64).unwrap_or(u32::MAX);
    let out_bound = max_tokens.saturating_add(16);
    let claim = |key: &str, bound: u32| -> u32 {
        match response["usage"][key].as_u64() {
            Some(n) if n <= u64::from(bound) => n as u32,
            Some(n) => {
                tracing::warn!(agent = %spec.id, field = key, claimed = n, counted = bound, "absurd usage claimed by the endpoint; counting the most the request could use");
                bound
            }
            // Not reported: count the most it could have been.
            None => bound,
        }
    };
    (
        claim("prompt_tokens", in_bound),
        claim("completion_tokens", out_bound),
    )
}

fn prompt(decision: &Decision) -> String {
    let reason = "First give a short rationale (one or two sentences)";
    match decision.kind {
        Kind::Choice => format!(
            "{}\nOptions: {}.\n{reason}, then your choice (exactly one of the options), then your confidence in [0, 1] that it is right.",
            decision.question,
            decision.options.join(", ")
        ),
        Kind::Ranking => format!(
            "{}\nOptions: {}.\n{reason}, then rank every option from best to worst, then your confidence in [0, 1] that your first choice is right.",
            decision.question,
            decision.options.join(", ")
        ),
        Kind::Score => format!(
            "{}\n{reason}, then your answer as a number{}, then your confidence in [0, 1] that it is right.",
            decision.question,
            scale_words(decision)
        ),
        Kind::Vector => format!(
            "{}\n{reason}, then your answer in a few words or one sentence, then your confidence in [0, 1] that it is right.",
            decision.question
        ),
    }
}

/// The reply's form in words, for prompt mode and the repair prompt.
fn template(decision: &Decision) -> String {
    let answer = match decision.kind {
        Kind::Ranking => format!(
            "\"ranking\": [every option, best first, from: {}]",
            quoted(&decision.options)
        ),
        Kind::Score => format!("\"value\": <a number{}>", scale_words(decision)),
        Kind::Vector => "\"answer\": \"<your answer>\"".to_owned(),
        _ => format!("\"choice\": <one of {}>", quoted(&decision.options)),
    };
    format!(
        "{{\"rationale\": \"<one or two sentences>\", {answer}, \"confidence\": <a number from 0 to 1>}}"
    )
}

/// " from LOW to HIGH" for a numeric decision with a scale, else nothing.
fn scale_words(decision: &Decision) -> String {
    decision
        .scale
        .map(|[lo, hi]| format!(" from {lo} to {hi}"))
        .unwrap_or_default()
}

fn quoted(options: &[String]) -> String {
    options
        .iter()
        .map(|o| format!("\"{o}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A JSON object whose keys keep their order (serde_json's own map sorts them).
#[derive(Debug, Clone)]
pub struct Ordered(Vec<(&'static str, Node)>);

/// A value of an [`Ordered`] object.
#[derive(Debug, Clone)]
enum Node {
    Value(Value),
    Object(Ordered),
}

impl Serialize for Ordered {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Serialize for Node {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Value(v) => v.serialize(s),
            Self::Object(o) => o.serialize(s),
        }
    }
}

impl Ordered {
    /// As a plain JSON value (keys then sorted).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// A request body.
type Request = Ordered;

/// The JSON Schema of the answer, in the strict form structured-output servers accept (every
/// property required, no other property allowed), its properties in the order a model should
/// produce them: rationale, answer, confidence.
pub fn ballot_schema(decision: &Decision) -> Ordered {
    let (key, answer) = match decision.kind {
        Kind::Ranking => (
            "ranking",
            json!({"type": "array", "items": {"type": "string", "enum": decision.options}, "minItems": 1, "maxItems": decision.options.len(), "uniqueItems": true}),
        ),
        Kind::Score => (
            "value",
            match decision.scale {
                Some([lo, hi]) => json!({"type": "number", "minimum": lo, "maximum": hi}),
                None => json!({"type": "number"}),
            },
        ),
        Kind::Vector => ("answer", json!({"type": "string", "maxLength": 1000})),
        Kind::Choice => (
            "choice",
            json!({"type": "string", "enum": decision.options}),
        ),
    };
    let properties = Ordered(vec![
        (
            "rationale",
            Node::Value(json!({"type": "string", "maxLength": 600})),
        ),
        (key, Node::Value(answer)),
        (
            "confidence",
            Node::Value(json!({"type": "number", "minimum": 0, "maximum": 1})),
        ),
    ]);
    Ordered(vec![
        ("type", Node::Value(json!("object"))),
        ("properties", Node::Object(properties)),
        (
            "required",
            Node::Value(json!(["rationale", key, "confidence"])),
        ),
        ("additionalProperties", Node::Value(json!(false))),
    ])
}

/// The chat-completions body for `mode`.
fn request(
    spec: &AgentSpec,
    messages: &[Value],
    decision: &Decision,
    mode: StructuredOutput,
    max_tokens: u32,
) -> Request {
    let mut messages = messages.to_vec();
    let format = match mode {
        StructuredOutput::JsonSchema | StructuredOutput::Auto => Some(Ordered(vec![
            ("type", Node::Value(json!("json_schema"))),
            (
                "json_schema",
                Node::Object(Ordered(vec![
                    ("name", Node::Value(json!("ballot"))),
                    ("strict", Node::Value(json!(true))),
                    ("schema", Node::Object(ballot_schema(decision))),
                ])),
            ),
        ])),
        StructuredOutput::JsonObject => Some(Ordered(vec![
            ("type", Node::Value(json!("json_object"))),
            ("schema", Node::Object(ballot_schema(decision))),
        ])),
        StructuredOutput::Prompt => {
            if let Some(last) = messages.last_mut()
                && let Some(text) = last["content"].as_str()
            {
                last["content"] = json!(format!(
                    "{text}\nReply with only a JSON object, in this order: {}",
                    template(decision)
                ));
            }
            None
        }
    };
    let mut body = vec![
        ("model", Node::Value(json!(spec.model))),
        ("messages", Node::Value(Value::Array(messages))),
        ("temperature", Node::Value(json!(spec.temperature))),
        ("max_tokens", Node::Value(json!(max_tokens))),
    ];
    if let Some(f) = format {
        body.push(("response_format", Node::Object(f)));
    }
    Ordered(body)
}

/// The first JSON object in `text` (a reply may wrap it in prose or a code fence).
fn first_object(text: &str) -> Option<&str> {
    let start = text.find('{')?;
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, c) in text[start..].char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[start..=start + i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// The option `text` names: exactly, else ignoring case and surrounding spaces.
fn option_of<'a>(options: &'a [String], text: &str) -> Option<&'a String> {
    options.iter().find(|o| *o == text).or_else(|| {
        let t = text.trim();
        options.iter().find(|o| o.trim().eq_ignore_ascii_case(t))
    })
}

/// A reported confidence by the documented rule: [0, 1] as is, (1, 100] as a percentage,
/// anything else dropped.
fn confidence_of(v: &Value) -> Option<f64> {
    let c = v
        .as_f64()
        .or_else(|| v.as_str()?.trim().trim_end_matches('%').parse().ok())?;
    if (0.0..=1.0).contains(&c) {
        Some(c)
    } else if c > 1.0 && c <= 100.0 {
        Some(c / 100.0)
    } else {
        None
    }
}

/// Reads and checks a model's answer; the error says what is wrong, for the repair prompt.
fn parse_ballot(
    agent: &str,
    decision: &Decision,
    content: &str,
    mode: StructuredOutput,
) -> Result<Ballot, String> {
    let text = content.trim();
    if text.is_empty() {
        return Err("the answer was empty".to_owned());
    }
    // Structured modes must give the object itself (a code fence is forgiven); prompt mode
    // may wrap it in prose.
    let unfenced = text
        .trim_start_matches("```json")
        .trim_start_matches("```")
        .trim_end_matches("```")
        .trim();
    let object = match mode {
        StructuredOutput::Prompt => first_object(unfenced).unwrap_or(unfenced),
        _ => unfenced,
    };
    let v: Value =
        serde_json::from_str(object).map_err(|e| format!("it is not valid JSON ({e})"))?;
    let obj = v.as_object().ok_or("it is not a JSON object")?;
    let answer = match decision.kind {
        Kind::Choice | Kind::Ranking if obj.get("ranking").is_some_and(Value::is_array) => {
            let items = obj
                .get("ranking")
                .and_then(Value::as_array)
                .ok_or("no ranking")?;
            let mut ranking: Vec<String> = Vec::new();
            for item in items {
                let name = item.as_str().ok_or("\"ranking\" must list option names")?;
                let o = option_of(&decision.options, name).ok_or_else(|| {
                    format!(
                        "\"{name}\" is not one of the options {}",
                        decision.options.join(", ")
                    )
                })?;
                if ranking.contains(o) {
                    return Err(format!("\"{o}\" is ranked twice"));
                }
                ranking.push(o.clone());
            }
            if ranking.is_empty() {
                return Err("the ranking is empty".to_owned());
            }
            if decision.kind == Kind::Choice {
                Answer::Choice(ranking.swap_remove(0))
            } else {
                Answer::Ranking(ranking)
            }
        }
        Kind::Choice | Kind::Ranking => {
            let c = obj
                .get("choice")
                .and_then(Value::as_str)
                .ok_or("\"choice\" must be a string")?;
            let o = option_of(&decision.options, c).ok_or_else(|| {
                format!(
                    "\"{}\" is not one of the options {}",
                    clean_excerpt(c, 80),
                    decision.options.join(", ")
                )
            })?;
            // A choice alone, for a ranking decision, is a partial ranking.
            if decision.kind == Kind::Ranking {
                Answer::Ranking(vec![o.clone()])
            } else {
                Answer::Choice(o.clone())
            }
        }
        Kind::Score => {
            let x = obj
                .get("value")
                .and_then(|v| v.as_f64().or_else(|| v.as_str()?.trim().parse().ok()))
                .filter(|x: &f64| x.is_finite())
                .ok_or("\"value\" must be a finite number")?;
            if !decision.on_scale(x) {
                return Err(format!(
                    "\"value\" {x} is off the scale: give a number{}",
                    scale_words(decision)
                ));
            }
            Answer::Score(x)
        }
        Kind::Vector => {
            let text = obj
                .get("answer")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or("\"answer\" must be a non-empty string")?;
            // The text is embedded next (see `OpenAiAgent::embed`); it is kept, first, in the
            // rationale, so that the record shows what the vector stands for.
            let mut ballot = Ballot::new(agent, Answer::Vector(Vec::new()));
            ballot.confidence = obj.get("confidence").and_then(confidence_of);
            let reason = obj.get("rationale").and_then(Value::as_str).unwrap_or("");
            ballot.rationale = Some(format!(
                "Answer: {}\n{}",
                clean_excerpt(text, 1000),
                clean_excerpt(reason, RATIONALE_MAX)
            ));
            return Ok(ballot);
        }
    };
    let mut ballot = Ballot::new(agent, answer);
    ballot.confidence = obj.get("confidence").and_then(confidence_of);
    ballot.rationale = obj.get("rationale").and_then(Value::as_str).map(|r| {
        let n = r.chars().count();
        if n > RATIONALE_MAX {
            let cut: String = r.chars().take(RATIONALE_MAX).collect();
            format!("{cut} … ({n} characters)")
        } else {
            r.to_owned()
        }
    });
    Ok(ballot)
}

impl Service<AgentRequest> for OpenAiAgent {
    type Response = AgentReply;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<AgentReply, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: AgentRequest) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            this.ask(&req.decision, req.case.as_deref(), req.round.as_deref())
                .await
        })
    }
}

/// async-openai's plain transport (no retries of its own) behind the safety rules: no
/// redirects, a size limit while reading, HTTP errors as typed causes (a 429 or 503 with
/// `Retry-After` as [`RetryAfter`](crate::agent::RetryAfter)).
#[derive(Clone)]
struct Transport {
    inner: ReqwestService,
    limit: u64,
}

fn boxed(e: impl std::error::Error + Send + Sync + 'static) -> ClientError {
    ClientError::Boxed(Box::new(e))
}

impl Service<HttpRequestFactory> for Transport {
    type Response = reqwest::Response;
    type Error = ClientError;
    type Future = Pin<Box<dyn Future<Output = Result<reqwest::Response, ClientError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        let sent = self.inner.call(request);
        let limit = self.limit;
        Box::pin(async move {
            let mut response = match sent.await {
                Ok(r) => r,
                Err(ClientError::Reqwest(e)) => return Err(boxed(cause_of(&e))),
                Err(e) => return Err(e),
            };
            let status = response.status();
            if status.is_redirection() {
                let to = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .unwrap_or("?")
                    .to_owned();
                return Err(boxed(Cause {
                    status: Some(status.as_u16()),
                    ..Cause::new(
                        CauseKind::Redirect,
                        format!(
                            "the endpoint redirects to {to}; redirects are not followed (set base_url to the final address)"
                        ),
                    )
                }));
            }
            let headers = response.headers().clone();
            let path = response.url().path().to_owned();
            let mut body: Vec<u8> = Vec::new();
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        if (body.len() + chunk.len()) as u64 > limit {
                            return Err(boxed(Cause::new(
                                CauseKind::OverSize,
                                format!(
                                    "the reply exceeded {limit} bytes (max_response_bytes); read no further"
                                ),
                            )));
                        }
                        body.extend_from_slice(&chunk);
                    }
                    Ok(None) => break,
                    Err(e) => return Err(boxed(cause_of(&e))),
                }
            }
            if !status.is_success() {
                let message = error_message(&body);
                if matches!(status.as_u16(), 429 | 503)
                    && let Some(after) = retry_after(&headers)
                {
                    return Err(boxed(crate::agent::RetryAfter {
                        after,
                        message: format!("HTTP {}: {message}", status.as_u16()),
                    }));
                }
                let hint = if status.as_u16() == 404 && !path.contains("/v1/") {
                    " (no such path: does base_url end with /v1?)"
                } else {
                    ""
                };
                return Err(boxed(Cause::http(
                    status.as_u16(),
                    format!("{message}{hint}"),
                )));
            }
            let mut rebuilt = http::Response::builder().status(status);
            for (k, v) in &headers {
                rebuilt = rebuilt.header(k, v);
            }
            rebuilt
                .body(body)
                .map(reqwest::Response::from)
                .map_err(|e| boxed(Cause::new(CauseKind::Other, e.to_string())))
        })
    }
}

/// The server's error message: `error.message` of an OpenAI-style error body, else the text.
fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| {
            v["error"]["message"]
                .as_str()
                .or_else(|| v["error"].as_str())
                .or_else(|| v["detail"].as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| text.into_owned());
    clean_excerpt(&message, 300)
}

/// A `Retry-After` header in seconds (HTTP dates are not worth a date parser here).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<std::time::Duration> {
    let secs: f64 = headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| std::time::Duration::from_secs_f64(secs.min(3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Decision {
        Decision::choice("d", "x", "Buy?", ["buy", "sell"])
    }

    #[test]
    fn answers_are_checked() {
        let ok = |text: &str| parse_ballot("a", &d(), text, StructuredOutput::JsonSchema);
        let b = ok(r#"{"rationale":"cheap","choice":"buy","confidence":0.7}"#).expect("ok");
        assert_eq!(b.confidence, Some(0.7));
        assert!(
            ok("```json\n{\"choice\":\"sell\",\"confidence\":0.5,\"rationale\":\"\"}\n```").is_ok()
        );
        // Case and spaces are forgiven; percentages are read as such; absurd confidences are
        // dropped, the answer kept.
        assert!(
            matches!(ok(r#"{"choice":" Buy "}"#).expect("ok").answer, Answer::Choice(ref c) if c == "buy")
        );
        assert_eq!(
            ok(r#"{"choice":"buy","confidence":70}"#)
                .expect("ok")
                .confidence,
            Some(0.7)
        );
        assert_eq!(
            ok(r#"{"choice":"buy","confidence":700}"#)
                .expect("ok")
                .confidence,
            None
        );
        assert_eq!(
            ok(r#"{"choice":"buy","confidence":-1}"#)
                .expect("ok")
                .confidence,
            None
        );
        for bad in [
            "",
            "nope",
            "[1]",
            r#"{"choice":"hold"}"#,
            r#"{"choice":3}"#,
            "I pick buy: {\"choice\":\"buy\"}",
        ] {
            assert!(ok(bad).is_err(), "{bad}");
        }
        // Prompt mode finds the object in prose.
        let p = parse_ballot(
            "a",
            &d(),
            "Sure! {\"rationale\": \"a {brace}\", \"choice\": \"sell\"} Hope it helps.",
            StructuredOutput::Prompt,
        )
        .expect("prompt");
        assert!(matches!(p.answer, Answer::Choice(ref c) if c == "sell"));
    }

    #[test]
    fn rankings_are_read_whole_or_partial() {
        let r = Decision::ranking("r", "x", "Rank", ["a", "b", "c"]);
        let b = parse_ballot(
            "x",
            &r,
            r#"{"ranking":["c","a","b"],"confidence":0.4}"#,
            StructuredOutput::JsonObject,
        )
        .expect("ranking");
        assert_eq!(
            b.answer,
            Answer::Ranking(vec!["c".into(), "a".into(), "b".into()])
        );
        let partial = parse_ballot(
            "x",
            &r,
            r#"{"ranking":["b"]}"#,
            StructuredOutput::JsonObject,
        )
        .expect("partial");
        assert_eq!(partial.answer, Answer::Ranking(vec!["b".into()]));
        assert!(
            parse_ballot(
                "x",
                &r,
                r#"{"ranking":["a","a"]}"#,
                StructuredOutput::JsonObject
            )
            .is_err()
        );
        assert!(
            parse_ballot(
                "x",
                &r,
                r#"{"ranking":["z"]}"#,
                StructuredOutput::JsonObject
            )
            .is_err()
        );
    }

    #[test]
    fn the_schema_is_strict_and_asks_for_reasons_first() {
        let s = ballot_schema(&d());
        let text = serde_json::to_string(&s).expect("json");
        let (r, c, k) = (
            text.find("\"rationale\"").expect("rationale"),
            text.find("\"choice\"").expect("choice"),
            text.find("\"confidence\"").expect("confidence"),
        );
        assert!(r < c && c < k, "{text}");
        let v = s.to_value();
        assert_eq!(v["additionalProperties"], false);
        assert_eq!(v["required"].as_array().map(Vec::len), Some(3));
        assert_eq!(v["properties"]["choice"]["enum"], json!(["buy", "sell"]));
    }

    #[test]
    fn refusals_of_the_format_are_told_from_other_errors() {
        let refusal = Cause::http(
            500,
            "Input should be 'text' or 'json_object' (response_format.type)",
        );
        assert!(format_refused(&refusal));
        assert!(!format_refused(&Cause::http(500, "boom")));
        assert!(!format_refused(&Cause::http(401, "bad key: json_schema")));
        assert!(!format_refused(&Cause::new(CauseKind::Connect, "refused")));
    }
}
