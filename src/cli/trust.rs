//! `conclave trust …`: the trust store and reliability estimation.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use sha2::{Digest, Sha256};

use super::{CliError, date, print_json, print_text, read_input, source_name, table};
use conclave::store::Store;
use conclave::trust::estimate::{Annotations, Method, estimate};
use conclave::trust::store::{Change, SledTrustStore, TrustBatch, TrustSnapshot, TrustStore};
use conclave::trust::{TrustParams, TrustState};

/// `conclave trust` subcommands.
#[derive(Debug, Subcommand)]
pub(super) enum TrustCommand {
    /// A table of every agent's trust: agent, domain, trust, interval, n, status.
    Show(ShowArgs),
    /// Every change to one agent's trust, with its provenance.
    History(HistoryArgs),
    /// Every batch applied to the store (eval runs, outcome back-fills, imports).
    Batches(JsonArgs),
    /// Which agents fail together in a domain: error correlation, effective number of
    /// independent agents, clusters (whose combined weight is capped); the verdict monitor
    /// and the agreement chance of wrong numeric answers.
    Ledger(LedgerArgs),
    /// Print the whole trust state as JSON (for `trust import`).
    Export,
    /// Set trust from a JSON export, as one batch.
    Import(ImportArgs),
    /// Forget all trust, history and ledgers (needs --yes).
    Reset(ResetArgs),
    /// Undo one batch (an eval run id, decision:ID, import:…), as a new batch.
    Rollback(RollbackArgs),
    /// Re-admit an ejected or quarantined agent: it starts again as provisional.
    Admit(AdmitArgs),
    /// Estimate each worker's reliability and each task's label from task,worker,label CSV.
    Estimate(EstimateArgs),
}

#[derive(Debug, Args)]
pub(super) struct JsonArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct ShowArgs {
    /// Only this domain.
    #[arg(long)]
    domain: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct LedgerArgs {
    /// The domain.
    #[arg(long, default_value = "default")]
    domain: String,
    /// Print JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct HistoryArgs {
    /// The agent.
    agent: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct ImportArgs {
    /// A file written by `conclave trust export`, or - for standard input.
    file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct ResetArgs {
    /// Confirm: everything the store learned is forgotten.
    #[arg(long)]
    yes: bool,
}

#[derive(Debug, Args)]
pub(super) struct RollbackArgs {
    /// The provenance of the batch to undo (see `conclave trust batches`).
    run: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct AdmitArgs {
    /// The agent.
    agent: String,
    /// Only this domain and the agent's record across domains (default: every domain of
    /// the agent).
    #[arg(long)]
    domain: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `conclave trust estimate`.
#[derive(Debug, Args)]
pub(super) struct EstimateArgs {
    /// dawid-skene (full confusion matrices), one-coin, or majority.
    #[arg(long, default_value = "dawid-skene")]
    method: String,
    /// Write the estimated skills into the trust store as one batch (workers are agents).
    #[arg(long)]
    apply: bool,
    /// The domain the estimate applies to (with --apply).
    #[arg(long, default_value = "default")]
    domain: String,
    /// Print JSON (the only output format; accepted for uniformity).
    #[arg(long)]
    json: bool,
    /// CSV with header task,worker,label, or - for standard input.
    file: PathBuf,
}

fn open(dir: &Path) -> Result<(Store, SledTrustStore), CliError> {
    let store = Store::open(dir).map_err(CliError::input)?;
    let trust = SledTrustStore::new(&store, TrustParams::default()).map_err(CliError::input)?;
    Ok((store, trust))
}

/// The store for a read-only command, or `None` if there is none yet (nothing is created).
fn open_read(dir: &Path) -> Result<Option<SledTrustStore>, CliError> {
    match Store::open_existing(dir).map_err(CliError::input)? {
        None => Ok(None),
        Some(store) => SledTrustStore::new(&store, TrustParams::default())
            .map(Some)
            .map_err(CliError::input),
    }
}

fn short_hash(bytes: &[u8]) -> String {
    conclave::audit::hex(&Sha256::digest(bytes)[..6])
}

pub(super) fn run(cmd: TrustCommand, dir: &Path) -> Result<(), CliError> {
    match cmd {
        TrustCommand::Show(a) => show(dir, a.domain.as_deref(), a.json),
        TrustCommand::History(a) => history(dir, &a.agent, a.json),
        TrustCommand::Batches(a) => batches(dir, a.json),
        TrustCommand::Ledger(a) => ledger(dir, &a.domain, a.json),
        TrustCommand::Export => {
            let snapshot = match open_read(dir)? {
                Some(t) => t.snapshot().map_err(CliError::input)?,
                None => TrustSnapshot {
                    version: 0,
                    params: TrustParams::default(),
                    states: Default::default(),
                },
            };
            print_json(&snapshot)
        }
        TrustCommand::Import(a) => import(dir, &a.file, a.json),
        TrustCommand::Reset(a) => {
            if !a.yes {
                return Err(CliError::input(format!(
                    "trust reset forgets every trust record, the history and the ledgers in {}; add --yes to confirm",
                    dir.display()
                )));
            }
            let (_, trust) = open(dir)?;
            trust.reset().map_err(CliError::input)?;
            print_text(&format!("trust reset in {}\n", dir.display()))
        }
        TrustCommand::Rollback(a) => {
            let (_, trust) = open(dir)?;
            // An eval run may be named by its run id alone (its batch is `eval:RUN`).
            let batches = trust.batches().map_err(CliError::input)?;
            let known = |p: &str| batches.iter().any(|x| x.provenance == p);
            let name = if !known(&a.run) && known(&format!("eval:{}", a.run)) {
                format!("eval:{}", a.run)
            } else {
                a.run.clone()
            };
            let applied = trust.rollback(&name).map_err(CliError::input)?;
            if a.json {
                print_json(&applied)
            } else {
                print_text(&format!(
                    "rolled back {name}: {} trust records restored (store version {})\n",
                    applied.changed, applied.version
                ))
            }
        }
        TrustCommand::Admit(a) => {
            let (_, trust) = open(dir)?;
            let provenance = format!(
                "admit:{}:{}",
                a.agent,
                trust.snapshot().map_err(CliError::input)?.version + 1
            );
            let batch = TrustBatch {
                provenance,
                changes: vec![Change::Readmit {
                    agent: a.agent.clone(),
                    domain: a.domain.clone(),
                }],
            };
            let applied = trust.apply(&batch).map_err(CliError::input)?;
            if a.json {
                print_json(&applied)
            } else {
                print_text(&format!(
                    "re-admitted {} as provisional ({} records)\n",
                    a.agent, applied.changed
                ))
            }
        }
        TrustCommand::Estimate(a) => run_estimate(&a, dir),
    }
}

fn show(dir: &Path, domain: Option<&str>, json: bool) -> Result<(), CliError> {
    let snapshot = match open_read(dir)? {
        Some(t) => t.snapshot().map_err(CliError::input)?,
        None => TrustSnapshot {
            version: 0,
            params: TrustParams::default(),
            states: Default::default(),
        },
    };
    let rows = snapshot.rows(domain);
    if let Some(d) = domain
        && rows.is_empty()
        && !snapshot.states.is_empty()
    {
        let mut known: Vec<&str> = snapshot.states.keys().map(|(_, d)| d.as_str()).collect();
        known.sort_unstable();
        known.dedup();
        return Err(CliError::input(format!(
            "no trust records in domain \"{d}\" (domains: {})",
            known.join(", ")
        )));
    }
    if json {
        return print_json(&serde_json::json!({"version": snapshot.version, "agents": rows}));
    }
    if rows.is_empty() {
        return print_text(&format!(
            "no trust records in {} (version {})\n",
            dir.display(),
            snapshot.version
        ));
    }
    let level = (snapshot.params.credible_level * 100.0).round();
    let mut t = table(&[
        "agent",
        "domain",
        "trust",
        &format!("{level}% interval"),
        "n",
        "status",
    ]);
    for r in &rows {
        t.add_row(vec![
            r.agent.clone(),
            r.domain.clone(),
            format!("{:.3}", r.trust),
            format!("[{:.3}, {:.3}]", r.lower, r.upper),
            r.n.to_string(),
            r.status.as_str().to_owned(),
        ]);
    }
    print_text(&format!("{t}\nstore version {}\n", snapshot.version))
}

fn history(dir: &Path, agent: &str, json: bool) -> Result<(), CliError> {
    let Some(trust) = open_read(dir)? else {
        return Err(CliError::input(format!(
            "unknown agent \"{agent}\": there is no trust store in {}",
            dir.display()
        )));
    };
    let entries = trust.history(agent).map_err(CliError::input)?;
    if json {
        return print_json(&entries);
    }
    let mut t = table(&[
        "seq",
        "version",
        "provenance",
        "domain",
        "trust before",
        "trust after",
        "n",
        "when",
    ]);
    let fmt = |s: &Option<TrustState>| {
        s.as_ref()
            .map_or_else(|| "—".to_owned(), |s| format!("{:.3}", s.trust()))
    };
    for e in &entries {
        t.add_row(vec![
            e.seq.to_string(),
            e.version.to_string(),
            e.provenance.clone(),
            e.domain.clone(),
            fmt(&e.before),
            fmt(&e.after),
            e.after.as_ref().map_or(0, |s| s.n).to_string(),
            date(e.at),
        ]);
    }
    print_text(&format!("{t}\n"))
}

fn ledger(dir: &Path, domain: &str, json: bool) -> Result<(), CliError> {
    let ledger = match open_read(dir)? {
        Some(t) => t.ledger(domain).map_err(CliError::input)?,
        None => Default::default(),
    };
    let ind = ledger.independence(&conclave::trust::ledger::LedgerParams::default());
    if json {
        return print_json(
            &serde_json::json!({"domain": domain, "items": ledger.len(), "independence": ind}),
        );
    }
    if ledger.is_empty() {
        return print_text(&format!("no graded items in domain \"{domain}\"\n"));
    }
    let mut text = format!(
        "domain \"{domain}\": {} graded items, {} agents; effective independent agents {:.2} (mean correlation) / {:.2} (participation ratio)\n",
        ledger.len(),
        ind.agents.len(),
        ind.n_eff_mean,
        ind.n_eff_participation
    );
    if ind.clusters.is_empty() {
        text += "no clusters: no two agents' errors coincide enough to be treated as one voice\n";
    }
    for c in &ind.clusters {
        text += &format!(
            "cluster (combined weight capped at its strongest member): {}\n",
            c.join(", ")
        );
    }
    let pool = &ind.pool;
    if pool.verdicts > 0 {
        text += &format!(
            "verdict monitor: {:.2} after {} graded verdicts (0: verdicts as right as their confidence said; a policy's escalation.verdict_alarm acts on it)\n",
            pool.alarm, pool.verdicts
        );
    }
    if pool.agreement != conclave::trust::ledger::PoolRecord::default().agreement {
        text += &format!(
            "wrong numeric answers agree within tolerance with chance {:.2} (numeric confidence reads it)\n",
            pool.agreement_chance()
        );
    }
    if pool.overturns != conclave::trust::ledger::PoolRecord::default().overturns {
        text += &format!(
            "deliberation overturned the independent vote rightly with chance {:.2}; a move off the independent vote counts as a likelihood ratio of {:.2} for its answer (the acquiescence detector reads it)\n",
            pool.overturn_reliability(),
            pool.overturn_ratio()
        );
    }
    print_text(&text)
}

fn batches(dir: &Path, json: bool) -> Result<(), CliError> {
    let list = match open_read(dir)? {
        Some(t) => t.batches().map_err(CliError::input)?,
        None => Vec::new(),
    };
    if json {
        return print_json(&list);
    }
    let mut t = table(&[
        "provenance",
        "version",
        "records changed",
        "rolled back by",
        "when",
    ]);
    for b in &list {
        t.add_row(vec![
            b.provenance.clone(),
            b.version.to_string(),
            b.changed.to_string(),
            b.rolled_back_by.clone().unwrap_or_default(),
            date(b.at),
        ]);
    }
    print_text(&format!("{t}\n"))
}

fn import(dir: &Path, file: &Path, json: bool) -> Result<(), CliError> {
    let bytes = read_input(file)?;
    let name = source_name(file);
    // The states are imported; the parameters they were learned with are the store's own
    // (an export from another version may name parameters this one does not have).
    let mut value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        CliError::input(format!(
            "{name}: not JSON: {e} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "params".to_owned(),
            serde_json::to_value(TrustParams::default()).unwrap_or_default(),
        );
    }
    let snapshot: TrustSnapshot = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        CliError::input(format!("{name}: {path}: {}", e.into_inner()))
    })?;
    for ((agent, domain), s) in &snapshot.states {
        let problem = if agent.is_empty() || domain.is_empty() {
            Err("an agent and a domain are needed".to_owned())
        } else {
            s.check()
        };
        if let Err(why) = problem {
            return Err(CliError::input(format!(
                "{name}: the record of agent \"{agent}\" in domain \"{domain}\" is not a valid trust state: {why}"
            )));
        }
    }
    let (_, trust) = open(dir)?;
    let batch = TrustBatch {
        provenance: format!("import:{}", short_hash(&bytes)),
        changes: snapshot
            .states
            .into_iter()
            .map(|((agent, domain), state)| Change::Set {
                agent,
                domain,
                state,
            })
            .collect(),
    };
    let applied = trust.apply(&batch).map_err(CliError::input)?;
    if json {
        print_json(
            &serde_json::json!({"provenance": batch.provenance, "version": applied.version, "changed": applied.changed}),
        )
    } else {
        print_text(&format!(
            "imported {} trust records as batch {} (store version {})\n",
            applied.changed, batch.provenance, applied.version
        ))
    }
}

fn run_estimate(args: &EstimateArgs, dir: &Path) -> Result<(), CliError> {
    let method = Method::from_name(&args.method).ok_or_else(|| {
        CliError::input(format!(
            "unknown method \"{}\"; methods are: dawid-skene, one-coin, majority",
            args.method
        ))
    })?;
    let bytes = read_input(&args.file)?;
    let name = source_name(&args.file);
    let data = Annotations::from_csv(bytes.as_slice())
        .map_err(|e| CliError::input(format!("{name}: {e}")))?;
    let est = estimate(&data, method);
    if !args.apply {
        return print_json(&est);
    }
    // A worker with skill p over n annotations becomes Beta(α₀ + p·n, β₀ + (1−p)·n).
    let params = TrustParams::default();
    let changes = data
        .worker_counts()
        .into_iter()
        .zip(&est.skills)
        .map(|((worker, n), (_, skill))| {
            let mut state = TrustState::new(&params);
            let p = skill.clamp(0.0, 1.0);
            state.alpha += p * n as f64;
            state.beta += (1.0 - p) * n as f64;
            state.n = n;
            state.errors = ((1.0 - p) * n as f64).round() as u64;
            Change::Set {
                agent: worker.to_owned(),
                domain: args.domain.clone(),
                state,
            }
        })
        .collect();
    let provenance = format!("estimate:{}:{}", args.method, short_hash(&bytes));
    let (_, trust) = open(dir)?;
    let applied = trust
        .apply(&TrustBatch {
            provenance: provenance.clone(),
            changes,
        })
        .map_err(CliError::input)?;
    print_json(&serde_json::json!({
        "labels": est.labels.iter().map(|(t, l)| ((*t).to_owned(), serde_json::json!(l))).collect::<serde_json::Map<String, serde_json::Value>>(),
        "skills": est.skills.iter().map(|(w, s)| (w.to_string(), serde_json::json!(s))).collect::<serde_json::Map<String, serde_json::Value>>(),
        "iterations": est.iterations,
        "applied": {"provenance": provenance, "domain": args.domain, "version": applied.version, "changed": applied.changed},
    }))
}
