//! `conclave agents`: the agent pool as the endpoints see it.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{CliError, print_json, print_text, table};
use conclave::agent::openai::{OpenAiAgent, Probe};
use conclave::policy::{AgentKind, Catalog, read_dir_toml};

/// `conclave agents` subcommands.
#[derive(Debug, Subcommand)]
pub(super) enum AgentsCommand {
    /// Probe each OpenAI-compatible agent: is its endpoint reachable, does it serve the model
    /// (per /models), which structured-output mode works, how long a short answer takes, and
    /// what to fix. Exit 1 when any agent has a problem.
    Check(CheckArgs),
}

/// Arguments of `conclave agents check`.
#[derive(Debug, Args)]
pub(super) struct CheckArgs {
    /// The agents to probe (default: every OpenAI-compatible agent).
    agents: Vec<String>,
    /// The agent definitions: a folder of .toml files, or one file (default: from
    /// conclave.toml, else ./agents).
    #[arg(long = "agents", env = "CONCLAVE_AGENTS", value_name = "PATH")]
    dir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(cmd: AgentsCommand) -> Result<(), CliError> {
    match cmd {
        AgentsCommand::Check(a) => check(&a),
    }
}

fn check(a: &CheckArgs) -> Result<(), CliError> {
    let located = super::config::Project::find()?.agents(a.dir.as_deref());
    let dir = located.existing("agents")?.to_path_buf();
    let (mut files, diags) = read_dir_toml(&dir);
    if let Some(d) = diags.first() {
        return Err(CliError::input(d.one_line()));
    }
    files.retain(conclave::policy::SourceFile::is_agent_file);
    let catalog = Catalog::load(&files, &[]).map_err(|d| {
        CliError::input(d.first().map_or_else(
            || "the agent files have problems".to_owned(),
            |x| x.one_line(),
        ))
    })?;
    for id in &a.agents {
        if !catalog.agents.contains_key(id) {
            return Err(CliError::input(format!(
                "no agent \"{id}\" in {} (agents: {})",
                dir.display(),
                catalog
                    .agents
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let chosen: Vec<_> = catalog
        .agents
        .values()
        .filter(|s| a.agents.is_empty() || a.agents.contains(&s.id))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the runtime: {e}")))?;
    let mut probes: Vec<Probe> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for spec in chosen {
        match spec.kind {
            AgentKind::Openai => {}
            _ => {
                skipped.push(spec.id.clone());
                continue;
            }
        }
        let probe = match OpenAiAgent::new(spec.clone()) {
            Ok(agent) => runtime.block_on(agent.probe()),
            Err(e) => Probe {
                agent: spec.id.clone(),
                base_url: spec.base_url.clone().unwrap_or_default(),
                model: spec.model.clone().unwrap_or_default(),
                reachable: false,
                served: None,
                models: Vec::new(),
                structured_output: None,
                latency_ms: None,
                problems: vec![e.to_string()],
            },
        };
        probes.push(probe);
    }
    let failing = probes.iter().filter(|p| !p.problems.is_empty()).count();
    if a.json {
        print_json(&serde_json::json!({"agents": probes, "simulated": skipped}))?;
    } else {
        let mut t = table(&[
            "agent",
            "endpoint",
            "model",
            "structured output",
            "latency",
            "to fix",
        ]);
        for p in &probes {
            t.add_row(vec![
                p.agent.clone(),
                p.base_url.clone(),
                match p.served {
                    Some(true) => format!("{} (served)", p.model),
                    Some(false) => format!("{} (not listed)", p.model),
                    None => p.model.clone(),
                },
                p.structured_output
                    .map_or_else(|| "—".to_owned(), |m| m.as_str().to_owned()),
                p.latency_ms
                    .map_or_else(|| "—".to_owned(), |ms| format!("{ms} ms")),
                if p.problems.is_empty() {
                    "nothing".to_owned()
                } else {
                    p.problems.join("; ")
                },
            ]);
        }
        let mut text = format!("{t}\n");
        if !skipped.is_empty() {
            text += &format!("simulated, nothing to probe: {}\n", skipped.join(", "));
        }
        text += &format!(
            "{} of {} endpoints work as configured\n",
            probes.len() - failing,
            probes.len()
        );
        print_text(&text)?;
    }
    if failing > 0 {
        return Err(CliError::failed(format!(
            "{failing} agent{} need{} attention",
            if failing == 1 { "" } else { "s" },
            if failing == 1 { "s" } else { "" }
        )));
    }
    Ok(())
}
