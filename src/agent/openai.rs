//! An agent behind any OpenAI-compatible chat-completions endpoint (async-openai).
//!
//! The request carries a strict JSON Schema for the ballot (every property required, no
//! others allowed, so strict structured-output servers accept it); the reply is parsed and
//! validated locally, with one repair attempt that tells the model what was wrong. What still
//! fails is an abstention with the reason `malformed`, never a vote. Responses are read as
//! plain JSON (async-openai's "bring your own types"), so servers that return unusual finish
//! reasons or omit fields still work. async-openai's own retries are switched off: the
//! Governor's stack owns retrying. The API key is read from the environment variable the
//! agent definition names, and never logged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError as ClientError;
use async_openai::middleware::{HttpRequestFactory, ReqwestService};
use serde_json::{Value, json};
use tower::{BoxError, Service};

use super::{AgentReply, AgentRequest};
use crate::aggregate::Kind;
use crate::ballot::{Abstention, Answer, Ballot};
use crate::decision::Decision;
use crate::policy::AgentSpec;

/// Why an OpenAI-compatible agent cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenAiError {
    /// The definition names no API-key variable, or no model.
    #[error("agent \"{0}\" needs a model and api_key_env")]
    Incomplete(String),
    /// The named environment variable is not set.
    #[error("agent \"{agent}\": the environment variable {var} (its API key) is not set")]
    MissingKey {
        /// The agent.
        agent: String,
        /// The variable's name.
        var: String,
    },
}

/// An OpenAI-compatible agent as a Tower service.
#[derive(Clone)]
pub struct OpenAiAgent {
    spec: Arc<AgentSpec>,
    client: Client<OpenAIConfig>,
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
        let (Some(_), Some(var)) = (&spec.model, &spec.api_key_env) else {
            return Err(OpenAiError::Incomplete(spec.id));
        };
        let key = std::env::var(var).map_err(|_| OpenAiError::MissingKey {
            agent: spec.id.clone(),
            var: var.clone(),
        })?;
        Self::with_key(spec, key)
    }

    /// The agent with a key the application supplies (from its own secret store).
    ///
    /// # Errors
    /// A definition without a model.
    pub fn with_key(spec: AgentSpec, key: impl Into<String>) -> Result<Self, OpenAiError> {
        if spec.model.is_none() {
            return Err(OpenAiError::Incomplete(spec.id));
        }
        let base = spec
            .base_url
            .clone()
            .unwrap_or_else(|| "https://api.openai.com/v1".to_owned());
        let config = OpenAIConfig::new()
            .with_api_base(base.trim_end_matches('/'))
            .with_api_key(key.into());
        // The plain transport, without async-openai's retry layer: one retry owner.
        let client = Client::with_config(config).with_http_service(Transport {
            inner: ReqwestService::default(),
        });
        Ok(Self {
            spec: Arc::new(spec),
            client,
        })
    }

    /// One chat completion; a refusal that came with a `Retry-After` hint becomes a
    /// [`RetryAfter`](crate::layer::retry::RetryAfter) error, which the retry layer honours.
    async fn complete(&self, body: Value) -> Result<Value, BoxError> {
        let (result, hint) = RETRY_AFTER
            .scope(std::cell::Cell::new(None), async {
                let r = self.client.chat().create_byot(body).await;
                (r, RETRY_AFTER.with(std::cell::Cell::get))
            })
            .await;
        result.map_err(|e| -> BoxError {
            match hint {
                Some(after) => Box::new(crate::layer::retry::RetryAfter {
                    after,
                    message: e.to_string(),
                }),
                None => e.to_string().into(),
            }
        })
    }

    async fn ask(&self, decision: &Decision) -> Result<AgentReply, BoxError> {
        let schema = ballot_schema(decision);
        let mut messages = vec![
            json!({"role": "system", "content": self.spec.system_prompt.clone().unwrap_or_else(|| "You are one voter in a panel. Answer independently.".to_owned())}),
            json!({"role": "user", "content": prompt(decision)}),
        ];
        let (mut tokens_in, mut tokens_out) = (0u32, 0u32);
        for attempt in 0..2 {
            let body = json!({
                "model": self.spec.model,
                "messages": messages,
                "temperature": self.spec.temperature,
                "max_tokens": self.spec.max_tokens,
                "response_format": {"type": "json_schema", "json_schema": {"name": "ballot", "strict": true, "schema": schema}},
            });
            let started = std::time::Instant::now();
            let response: Value = self.complete(body).await?;
            tokens_in += response["usage"]["prompt_tokens"].as_u64().unwrap_or(0) as u32;
            tokens_out += response["usage"]["completion_tokens"].as_u64().unwrap_or(0) as u32;
            let content = response["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or("");
            tracing::debug!(agent = %self.spec.id, model = ?self.spec.model, attempt, latency_ms = started.elapsed().as_millis() as u64, tokens_in, tokens_out, "chat completion");
            match parse_ballot(&self.spec.id, decision, content) {
                Ok(ballot) => {
                    return Ok(AgentReply::priced(
                        &self.spec, ballot, tokens_in, tokens_out,
                    ));
                }
                Err(problem) if attempt == 0 => {
                    messages.push(json!({"role": "assistant", "content": content}));
                    messages.push(json!({"role": "user", "content": format!(
                        "That answer cannot be counted: {problem}. Reply again with only a JSON object that matches the schema."
                    )}));
                }
                Err(_) => {}
            }
        }
        Ok(AgentReply::priced(
            &self.spec,
            Ballot::abstain(self.spec.id.clone(), Abstention::Malformed),
            tokens_in,
            tokens_out,
        ))
    }
}

fn prompt(decision: &Decision) -> String {
    match decision.kind {
        Kind::Choice | Kind::Ranking => format!(
            "{}\nChoose exactly one of: {}.\nGive your choice, your confidence in [0, 1] that it is right, and a short rationale.",
            decision.question,
            decision.options.join(", ")
        ),
        Kind::Score => format!(
            "{}\nAnswer with a number, your confidence in [0, 1], and a short rationale.",
            decision.question
        ),
        Kind::Vector => decision.question.clone(),
    }
}

/// The JSON Schema of the answer, in the strict form structured-output servers accept:
/// every property required, no other property allowed.
pub fn ballot_schema(decision: &Decision) -> Value {
    let answer = match decision.kind {
        Kind::Choice | Kind::Ranking => (
            "choice",
            json!({"type": "string", "enum": decision.options}),
        ),
        _ => ("value", json!({"type": "number"})),
    };
    json!({
        "type": "object",
        "properties": {
            answer.0: answer.1,
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "rationale": {"type": "string"},
        },
        "required": [answer.0, "confidence", "rationale"],
        "additionalProperties": false,
    })
}

/// Reads and checks a model's answer; the error says what is wrong, for the repair prompt.
fn parse_ballot(agent: &str, decision: &Decision, content: &str) -> Result<Ballot, String> {
    let text = content
        .trim()
        .trim_start_matches("```json")
        .trim_start_matches("```")
        .trim_end_matches("```")
        .trim();
    if text.is_empty() {
        return Err("the answer was empty".to_owned());
    }
    let v: Value = serde_json::from_str(text).map_err(|e| format!("it is not valid JSON ({e})"))?;
    let obj = v.as_object().ok_or("it is not a JSON object")?;
    let confidence = match obj.get("confidence") {
        None | Some(Value::Null) => None,
        Some(c) => Some(
            c.as_f64()
                .filter(|c| (0.0..=1.0).contains(c))
                .ok_or("confidence must be a number in [0, 1]")?,
        ),
    };
    let answer = match decision.kind {
        Kind::Choice | Kind::Ranking => {
            let c = obj
                .get("choice")
                .and_then(Value::as_str)
                .ok_or("\"choice\" must be a string")?;
            if !decision.options.iter().any(|o| o == c) {
                return Err(format!(
                    "\"{c}\" is not one of the options {}",
                    decision.options.join(", ")
                ));
            }
            Answer::Choice(c.to_owned())
        }
        Kind::Score => {
            let x = obj
                .get("value")
                .and_then(Value::as_f64)
                .filter(|x| x.is_finite())
                .ok_or("\"value\" must be a finite number")?;
            Answer::Score(x)
        }
        Kind::Vector => return Err("vector answers are not asked of chat agents".to_owned()),
    };
    let mut ballot = Ballot::new(agent, answer);
    ballot.confidence = confidence;
    ballot.rationale = obj
        .get("rationale")
        .and_then(Value::as_str)
        .map(str::to_owned);
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
        Box::pin(async move { this.ask(&req.decision).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Decision {
        Decision::choice("d", "x", "Buy?", ["buy", "sell"])
    }

    #[test]
    fn answers_are_checked() {
        assert!(
            parse_ballot(
                "a",
                &d(),
                r#"{"choice":"buy","confidence":0.7,"rationale":"cheap"}"#
            )
            .is_ok()
        );
        assert!(
            parse_ballot(
                "a",
                &d(),
                "```json\n{\"choice\":\"sell\",\"confidence\":0.5,\"rationale\":\"\"}\n```"
            )
            .is_ok()
        );
        for bad in [
            "",
            "nope",
            "[1]",
            r#"{"choice":"hold"}"#,
            r#"{"choice":3}"#,
            r#"{"choice":"buy","confidence":7}"#,
        ] {
            assert!(parse_ballot("a", &d(), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_schema_is_strict() {
        let s = ballot_schema(&d());
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["required"].as_array().map(Vec::len), Some(3));
        assert_eq!(s["properties"]["choice"]["enum"], json!(["buy", "sell"]));
    }
}

tokio::task_local! {
    /// The `Retry-After` of the last refused request of the current call.
    static RETRY_AFTER: std::cell::Cell<Option<std::time::Duration>>;
}

/// async-openai's plain transport (no retries of its own), noting the `Retry-After` of a
/// 429 or 503 for [`OpenAiAgent::complete`].
#[derive(Clone)]
struct Transport {
    inner: ReqwestService,
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
        Box::pin(async move {
            let response = sent.await?;
            if matches!(response.status().as_u16(), 429 | 503)
                && let Some(after) = retry_after(response.headers())
            {
                // Outside a call's scope there is nobody to tell: ignore.
                let _ = RETRY_AFTER.try_with(|c| c.set(Some(after)));
            }
            Ok(response)
        })
    }
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
