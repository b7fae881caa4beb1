//! `conclave policy …`: check, explain, route and describe governance files.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};

use super::config::Dirs;
use super::{CliError, print_json, print_text};
use conclave::aggregate::Kind;
use conclave::policy::{Catalog, PolicyDiagnostic, SourceFile, read_dir_toml};

/// `conclave policy` subcommands.
#[derive(Debug, Subcommand)]
pub(super) enum PolicyCommand {
    /// Check policy and agent files; exit 1 with a diagnostic per problem.
    Check(CheckArgs),
    /// Say in plain words what a policy does.
    Explain(ExplainArgs),
    /// Print the JSON Schema of policy, agent or evaluation-suite files.
    Schema(SchemaArgs),
    /// Which policy would govern a decision of this domain and kind.
    Which(WhichArgs),
}

#[derive(Debug, Args)]
pub(super) struct CheckArgs {
    /// Files to check (default: every .toml in the policies and agents folders). Agent
    /// files are recognised by their [[agent]] tables.
    files: Vec<PathBuf>,
    #[command(flatten)]
    dirs: Dirs,
    /// Print the diagnostics as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct ExplainArgs {
    /// The policy id.
    id: String,
    #[command(flatten)]
    dirs: Dirs,
    /// Print JSON (the policy as validated, and the explanation).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SchemaKind {
    Policy,
    Agents,
    /// Evaluation suites (evals/*.toml).
    Suite,
}

#[derive(Debug, Args)]
pub(super) struct SchemaArgs {
    /// Which file kind.
    #[arg(long, value_enum, default_value = "policy")]
    kind: SchemaKind,
}

#[derive(Debug, Args)]
pub(super) struct WhichArgs {
    /// The decision's domain.
    #[arg(long)]
    domain: String,
    /// The decision's kind.
    #[arg(long, value_parser = ["choice", "ranking", "score", "vector"])]
    kind: String,
    #[command(flatten)]
    dirs: Dirs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn load(dirs: &Dirs) -> Result<Catalog, CliError> {
    let (agents, policies) = dirs.resolve()?;
    Catalog::load_dirs(&agents, &policies).map_err(|d| report(&d, false))
}

/// Renders diagnostics on stderr and returns the exit-1 error.
fn report(diags: &[PolicyDiagnostic], json: bool) -> CliError {
    if json {
        let _ = print_json(&diags);
    } else {
        for d in diags {
            eprintln!("{}", d.render());
        }
    }
    CliError::failed(format!(
        "{} problem{} found",
        diags.len(),
        if diags.len() == 1 { "" } else { "s" }
    ))
}

pub(super) fn run(cmd: PolicyCommand) -> Result<(), CliError> {
    match cmd {
        PolicyCommand::Check(a) => check(&a),
        PolicyCommand::Explain(a) => {
            let catalog = load(&a.dirs)?;
            let policy = catalog.policy(&a.id).ok_or_else(|| {
                let ids: Vec<&str> = catalog.policies.iter().map(|p| p.id()).collect();
                CliError::input(format!(
                    "unknown policy \"{}\" (policies: {})",
                    a.id,
                    ids.join(", ")
                ))
            })?;
            let text = policy.explain(&catalog.agents);
            if a.json {
                print_json(&serde_json::json!({"policy": policy, "explanation": text}))
            } else {
                print_text(&text)
            }
        }
        PolicyCommand::Schema(a) => print_text(&match a.kind {
            SchemaKind::Policy => conclave::policy::schema_json(true),
            SchemaKind::Agents => conclave::policy::schema_json(false),
            SchemaKind::Suite => conclave::eval::suite::schema_json(),
        }),
        PolicyCommand::Which(a) => {
            let catalog = load(&a.dirs)?;
            let kind: Kind =
                serde_json::from_value(serde_json::json!(a.kind)).map_err(CliError::input)?;
            match catalog.route(&a.domain, kind) {
                Ok(p) => {
                    if a.json {
                        print_json(
                            &serde_json::json!({"policy": p.id(), "source": p.source(), "hash": p.hash()}),
                        )
                    } else {
                        print_text(&format!("{} ({})\n", p.id(), p.source().display()))
                    }
                }
                Err(refused) => {
                    if a.json {
                        let _ = print_json(
                            &serde_json::json!({"policy": null, "refused": refused.to_string()}),
                        );
                    }
                    Err(CliError::failed(refused))
                }
            }
        }
    }
}

fn check(a: &CheckArgs) -> Result<(), CliError> {
    let (agents, policies) = a.dirs.resolve()?;
    let (mut agent_files, mut diags) = read_dir_toml(&agents);
    // One folder may hold both kinds: agent files are told apart by their [[agent]] tables.
    agent_files.retain(SourceFile::is_agent_file);
    let mut policy_files = Vec::new();
    if a.files.is_empty() {
        let (p, d) = read_dir_toml(&policies);
        policy_files = p.into_iter().filter(|f| !f.is_agent_file()).collect();
        diags.extend(d);
    } else {
        for path in &a.files {
            match SourceFile::read(path) {
                Ok(f) if SourceFile::is_agent_file(&f) => {
                    if !agent_files.iter().any(|g| same(&g.path, &f.path)) {
                        agent_files.push(f);
                    }
                }
                Ok(f) => policy_files.push(f),
                Err(d) => diags.push(*d),
            }
        }
    }
    if let Err(d) = Catalog::load(&agent_files, &policy_files) {
        diags.extend(d);
    }
    if !diags.is_empty() {
        return Err(report(&diags, a.json));
    }
    if agent_files.is_empty() && policy_files.is_empty() {
        return Err(CliError::failed(format!(
            "nothing to check: no .toml files in {} or {}",
            agents.display(),
            policies.display()
        )));
    }
    if a.json {
        print_json(
            &serde_json::json!({"problems": [], "agents": agent_files.len(), "policies": policy_files.len()}),
        )
    } else {
        print_text(&format!(
            "{} agent file{} and {} polic{} checked: no problems\n",
            agent_files.len(),
            if agent_files.len() == 1 { "" } else { "s" },
            policy_files.len(),
            if policy_files.len() == 1 { "y" } else { "ies" }
        ))
    }
}

fn same(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}
