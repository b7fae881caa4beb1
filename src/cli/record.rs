//! `conclave record`: a suite's real agents asked every item, their answers kept as a
//! recording that `kind = "replay"` agents answer from.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use tower::{Service, ServiceExt};

use super::{CliError, print_text};
use conclave::agent::openai::OpenAiAgent;
use conclave::agent::replay::{FORMAT, Header, Recorded, RecordedAgent, Recording};
use conclave::agent::{AgentRequest, AgentService};
use conclave::ballot::{Abstention, Ballot, Cause, CauseKind};
use conclave::decision::Decision;
use conclave::eval::Suite;
use conclave::policy::AgentKind;

/// Arguments of `conclave record`.
#[derive(Debug, Args)]
pub(super) struct RecordArgs {
    /// The suite whose items are asked (its OpenAI-compatible agents answer).
    suite: PathBuf,
    /// Answers per agent and item (models sampled at a temperature above 0 differ).
    #[arg(long, default_value_t = 1)]
    samples: u32,
    /// Only these agents (default: every OpenAI-compatible agent of the suite).
    #[arg(long = "agent")]
    agents: Vec<String>,
    /// Where the recording goes (default: recordings/<suite>.jsonl beside the suite).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Added to the recording's provenance: the server and its version, the model's licence.
    #[arg(long, default_value = "")]
    note: String,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

pub(super) fn run(a: &RecordArgs) -> Result<(), CliError> {
    if !(1..=100).contains(&a.samples) {
        return Err(CliError::input("--samples must be in 1..=100"));
    }
    let suite = Suite::load(&a.suite).map_err(CliError::input)?;
    for id in &a.agents {
        if !suite.catalog.agents.contains_key(id) {
            return Err(CliError::input(format!("the suite has no agent \"{id}\"")));
        }
    }
    let specs: Vec<_> = suite
        .catalog
        .agents
        .values()
        .filter(|s| s.kind == AgentKind::Openai)
        .filter(|s| a.agents.is_empty() || a.agents.contains(&s.id))
        .cloned()
        .collect();
    if specs.is_empty() {
        return Err(CliError::input(format!(
            "{} has no OpenAI-compatible agent to record",
            a.suite.display()
        )));
    }
    let mut agents: Vec<(conclave::policy::AgentSpec, OpenAiAgent, AgentService)> = Vec::new();
    for spec in &specs {
        let agent = OpenAiAgent::new(spec.clone()).map_err(CliError::input)?;
        let service =
            conclave::layer::stack(spec, tower::util::BoxCloneSyncService::new(agent.clone()));
        agents.push((spec.clone(), agent, service));
    }
    let out = a.out.clone().unwrap_or_else(|| {
        a.suite
            .parent()
            .unwrap_or_else(|| std::path::Path::new("."))
            .join("recordings")
            .join(format!("{}.jsonl", suite.name))
    });
    if let Some(dir) = out.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::failed(format!("cannot create {}: {e}", dir.display())))?;
    }
    let total = suite.items.len() as u64 * u64::from(a.samples) * agents.len() as u64;
    let bar = (!a.quiet && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} answers ({eta} left)")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the runtime: {e}")))?;
    let mut answers: Vec<Recorded> = Vec::new();
    runtime.block_on(async {
        for item in &suite.items {
            // The truth stays here: a real agent is never shown it.
            let decision = std::sync::Arc::new(Decision {
                id: item.id.clone(),
                question: item.question.clone(),
                domain: item.domain.clone(),
                kind: item.kind,
                options: item.options.clone(),
                seed: 0,
                truth: None,
                idempotency_key: None,
                stakes: None,
                scale: item.scale,
            });
            for sample in 0..a.samples {
                for (spec, _, service) in &mut agents {
                    let (ballot, tokens_in, tokens_out, raw, latency_ms) =
                        ask_once(spec, service, &decision).await;
                    answers.push(Recorded {
                        agent: spec.id.clone(),
                        item: item.id.clone(),
                        sample,
                        ballot,
                        latency_ms,
                        tokens_in,
                        tokens_out,
                        raw,
                    });
                    if let Some(b) = &bar {
                        b.inc(1);
                    }
                }
            }
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let accuracy = accuracy_of(&suite, &answers);
    let header = header(a, &suite, &agents, accuracy);
    let recording = Recording::new(header, answers);
    recording.write(&out).map_err(CliError::failed)?;
    let failed = recording
        .answers
        .iter()
        .filter(|x| x.ballot.is_abstention())
        .count();
    let mut text = format!(
        "recorded {} answers ({} abstained) to {}\n",
        recording.answers.len(),
        failed,
        out.display()
    );
    for (agent, acc) in &recording.header.accuracy {
        text += &format!("  {agent}: accuracy {:.1}%\n", 100.0 * acc);
    }
    print_text(&text)
}

/// One answer of a real agent, within its timeout: the ballot (or the abstention with its
/// cause), tokens in and out, the raw reply and the latency in ms.
async fn ask_once(
    spec: &conclave::policy::AgentSpec,
    service: &mut AgentService,
    decision: &std::sync::Arc<Decision>,
) -> (Ballot, u32, u32, Option<String>, u64) {
    let started = std::time::Instant::now();
    let call = service.ready().await;
    let reply = match call {
        Ok(s) => {
            tokio::time::timeout(
                std::time::Duration::from_millis(spec.timeout_ms.max(1)),
                s.call(AgentRequest::new(decision.clone())),
            )
            .await
        }
        Err(e) => Ok(Err(e)),
    };
    let latency_ms = started.elapsed().as_millis() as u64;
    let (ballot, tokens_in, tokens_out, raw) = match reply {
        Ok(Ok(r)) => (r.ballot, r.tokens_in, r.tokens_out, r.raw),
        Ok(Err(e)) => {
            let cause = e
                .downcast_ref::<Cause>()
                .cloned()
                .unwrap_or_else(|| Cause::new(CauseKind::Other, e.to_string()));
            (
                Ballot::abstain(spec.id.clone(), cause.abstention()).with_cause(cause),
                0,
                0,
                None,
            )
        }
        Err(_) => (
            Ballot::abstain(spec.id.clone(), Abstention::Timeout).with_cause(Cause::new(
                CauseKind::Timeout,
                format!("no answer within {} ms", spec.timeout_ms),
            )),
            0,
            0,
            None,
        ),
    };
    (ballot, tokens_in, tokens_out, raw, latency_ms)
}

/// Accuracy over graded answers: failed calls are not graded, malformed replies are wrong.
fn accuracy_of(suite: &Suite, answers: &[Recorded]) -> BTreeMap<String, f64> {
    let truth: BTreeMap<&str, &conclave::eval::suite::Item> =
        suite.items.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut graded: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for x in answers {
        if let Some(item) = truth.get(x.item.as_str())
            && let Some(right) = item.truth.grade(&x.ballot.answer, suite.tolerance)
        {
            let e = graded.entry(x.agent.clone()).or_default();
            e.0 += u64::from(right);
            e.1 += 1;
        }
    }
    graded
        .iter()
        .map(|(a, (r, n))| (a.clone(), *r as f64 / (*n).max(1) as f64))
        .collect()
}

/// The recording's header: what was recorded, by which command, against which endpoints.
fn header(
    a: &RecordArgs,
    suite: &Suite,
    agents: &[(conclave::policy::AgentSpec, OpenAiAgent, AgentService)],
    accuracy: BTreeMap<String, f64>,
) -> Header {
    let recorded_agents: BTreeMap<String, RecordedAgent> = agents
        .iter()
        .map(|(spec, agent, _)| {
            (
                spec.id.clone(),
                RecordedAgent {
                    model: spec.model.clone().unwrap_or_default(),
                    base_url: spec.base_url.clone().unwrap_or_default(),
                    structured_output: Some(agent.structured_output().as_str().to_owned()),
                },
            )
        })
        .collect();
    let endpoints: Vec<String> = recorded_agents
        .iter()
        .map(|(id, r)| format!("{id}: {} at {}", r.model, r.base_url))
        .collect();
    Header {
        recording: FORMAT,
        suite: suite.name.clone(),
        made_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        made_by: format!(
            "conclave {} record {} --samples {}",
            env!("CARGO_PKG_VERSION"),
            a.suite.display(),
            a.samples
        ),
        provenance: format!(
            "Answers of {} to the {} items of suite \"{}\".{}",
            endpoints.join("; "),
            suite.items.len(),
            suite.name,
            if a.note.is_empty() {
                String::new()
            } else {
                format!(" {}", a.note)
            }
        ),
        samples: a.samples,
        items: suite.items.len(),
        agents: recorded_agents,
        accuracy,
    }
}
