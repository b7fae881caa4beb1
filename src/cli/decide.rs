//! `conclave decide`: one governed decision from the command line.

use std::path::Path;
use std::sync::Arc;

use clap::Args;

use super::{CliError, ballot_text, print_json, print_text, table};
use conclave::aggregate::Kind;
use conclave::audit::{AuditLog, SledAuditLog};
use conclave::decision::{Decision, Outcome, Truth};
use conclave::governor::Governor;
use conclave::store::Store;
use conclave::trust::TrustParams;
use conclave::trust::store::{SledTrustStore, TrustSnapshot, TrustStore};

/// Arguments of `conclave decide`.
#[derive(Debug, Args)]
pub(super) struct DecideArgs {
    /// The policy that governs the decision.
    #[arg(long)]
    policy: String,
    /// The question.
    question: String,
    /// The options, comma separated (a choice decision).
    #[arg(long, value_delimiter = ',', conflicts_with = "numeric")]
    options: Vec<String>,
    /// A numeric decision (a score).
    #[arg(long, conflicts_with = "text")]
    numeric: bool,
    /// The scale of a numeric answer, `LOW,HIGH` (e.g. `--scale=-1,1`; with --numeric): agents
    /// are asked for a number on it, and one outside it is a malformed answer.
    #[arg(long, value_parser = parse_scale, allow_hyphen_values = true)]
    scale: Option<(f64, f64)>,
    /// A free-text decision: agents answer in words, embedded into vectors (agents need an
    /// `embedding_model`), and the policy's rule combines the vectors.
    #[arg(long, conflicts_with = "options")]
    text: bool,
    /// A ranking decision: agents rank every option (with --options).
    #[arg(long, conflicts_with_all = ["numeric", "text"])]
    rank: bool,
    /// The domain (default: the policy's first domain).
    #[arg(long)]
    domain: Option<String>,
    /// Seed of the decision's randomness (simulated agents, ties).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The decision's id (unique in the store; 1-128 letters, digits and . _ : -, not all
    /// digits). Default: `cli-` and the time in nanoseconds.
    #[arg(long)]
    id: Option<String>,
    /// The right answer, for simulated agents only (an option, or a number).
    #[arg(long)]
    truth: Option<String>,
    #[command(flatten)]
    dirs: super::config::Dirs,
    /// Print the full verdict as JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(a: &DecideArgs, store_dir: &Path) -> Result<(), CliError> {
    let catalog = a.dirs.load()?;
    let policy = catalog.policy(&a.policy).ok_or_else(|| {
        let ids: Vec<&str> = catalog.policies.iter().map(|p| p.id()).collect();
        CliError::input(format!(
            "unknown policy \"{}\" (policies: {})",
            a.policy,
            ids.join(", ")
        ))
    })?;
    let decision = decision_of(a, policy)?;
    if let Some(id) = &a.id {
        conclave::decision::check_client_id(id).map_err(CliError::input)?;
    }
    let services = conclave::agent::build_for(policy, &catalog).map_err(CliError::input)?;
    let store = Store::open(store_dir).map_err(CliError::input)?;
    let trust_store =
        SledTrustStore::new(&store, TrustParams::default()).map_err(CliError::input)?;
    let trust: TrustSnapshot = trust_store.snapshot().map_err(CliError::input)?;
    // What the error ledger knows about this domain: cluster caps and the n_eff quorum.
    let ledger = trust_store
        .ledger(&decision.domain)
        .map_err(CliError::input)?
        .independence(&conclave::trust::ledger::LedgerParams::default());
    let sled_log = Arc::new(SledAuditLog::new(&store).map_err(CliError::input)?);
    let log: Arc<dyn AuditLog + Send + Sync> = sled_log.clone();
    // The Director's standing orders, kept beside the audit log: reweights, suspensions,
    // and the ratchet's count (a hand-over that trips it is recorded there).
    let director = conclave::Director::kept_in(sled_log).map_err(CliError::input)?;
    let governor = Governor::new(policy.clone(), services, trust)
        .with_independence([(decision.domain.clone(), ledger)].into())
        .with_audit(log.clone())
        .with_director(director.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the runtime: {e}")))?;
    let domain = decision.domain.clone();
    let before = director.current().suspension(&domain).is_some();
    let verdict = runtime
        .block_on(governor.decide(decision))
        .map_err(CliError::input)?;
    if !before && let Some(s) = director.current().suspension(&domain) {
        let said = format!(
            "autonomy in domain \"{domain}\" is now suspended: {}",
            s.reason
        );
        eprintln!("warning: {}", conclave::ballot::printable(&said, 2000));
    }
    if a.json {
        return print_json(&verdict);
    }
    let mut t = table(&["agent", "ballot", "weight", "latency ms", "wave"]);
    for c in &verdict.ballots {
        let answer = ballot_text(&c.ballot);
        t.add_row(vec![
            c.ballot.agent.clone(),
            answer,
            conclave::ballot::fixed(c.weight, 3),
            c.latency_ms.to_string(),
            c.wave.to_string(),
        ]);
    }
    let result = verdict
        .winner()
        .map(str::to_owned)
        .or_else(|| verdict.value().map(super::num))
        .or_else(|| {
            verdict
                .tally
                .as_ref()
                .and_then(|t| t.vector.as_ref())
                .map(|v| {
                    format!(
                        "a vector of {} values (the answers nearest it are the verdict's)",
                        v.len()
                    )
                })
        });
    let tallied = result.as_deref().map_or_else(String::new, |r| {
        format!(
            "; the vote alone said {r} (confidence {:.2})",
            verdict.confidence
        )
    });
    let outcome = match &verdict.outcome {
        Outcome::Decided { weak } => format!(
            "decided: {} (confidence {:.2}{})",
            result.as_deref().unwrap_or("—"),
            verdict.confidence,
            if *weak {
                ", below the acceptance threshold: a weak decision"
            } else {
                ""
            }
        ),
        Outcome::Arbitrated { arbiter, ruling } => {
            format!("arbitrated by {arbiter}: {}{tallied}", super::tidy(ruling))
        }
        Outcome::Human { reason } => format!("escalated to a human: {reason}{tallied}"),
        Outcome::Refused { reason } => format!("refused: {reason}{tallied}"),
        other => format!("{}{tallied}", other.as_str()),
    };
    let seq = log.records().map(|r| r.len()).unwrap_or(0);
    let left_out = super::left_out_text(&verdict.left_out);
    print_text(&format!(
        "{t}\n{left_out}{outcome}\nconsensus {:.2} · rule {} · policy {} · {} in {} (stop: {}) · ${:.4} · trust version {} · audit record {seq}\n",
        verdict.consensus,
        verdict.tally.as_ref().map_or("—", |t| t.rule),
        verdict.policy,
        super::count(verdict.calls as u64, "call"),
        super::count(u64::from(verdict.waves), "wave"),
        serde_json::to_value(verdict.stop)
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .unwrap_or_default(),
        verdict.cost_usd,
        verdict.trust_version,
    ))
}

fn conclave_now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// `LOW,HIGH`, two finite numbers, the low one first.
fn parse_scale(s: &str) -> Result<(f64, f64), String> {
    let bad = || format!("\"{s}\": give the scale as LOW,HIGH, e.g. -1,1");
    let (lo, hi) = s.split_once(',').ok_or_else(bad)?;
    let (lo, hi): (f64, f64) = (
        lo.trim().parse().map_err(|_| bad())?,
        hi.trim().parse().map_err(|_| bad())?,
    );
    conclave::decision::check_scale_bounds([lo, hi]).map_err(|e| format!("\"{s}\": {e}"))?;
    Ok((lo, hi))
}

/// The decision the arguments describe (its domain by default the policy's first).
fn decision_of(a: &DecideArgs, policy: &conclave::Policy) -> Result<Decision, CliError> {
    let kind = if a.numeric {
        Kind::Score
    } else if a.text {
        Kind::Vector
    } else if a.options.is_empty() {
        return Err(CliError::input(
            "give the options (--options a,b,c), or --numeric, or --text",
        ));
    } else if a.rank {
        Kind::Ranking
    } else {
        Kind::Choice
    };
    let domain = a
        .domain
        .clone()
        .or_else(|| policy.domains().first().cloned())
        .unwrap_or_default();
    let mut decision = Decision {
        id: a
            .id
            .clone()
            .unwrap_or_else(|| format!("cli-{}", conclave_now_nanos())),
        question: a.question.clone(),
        domain,
        kind,
        options: a
            .options
            .iter()
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect(),
        seed: a.seed,
        truth: None,
        idempotency_key: None,
        stakes: None,
        scale: a.scale.map(|(lo, hi)| [lo, hi]),
    };
    if let Some(t) = &a.truth {
        decision.truth = Some(match kind {
            Kind::Score => Truth::Value(
                t.parse()
                    .map_err(|_| CliError::input(format!("--truth {t}: not a number")))?,
            ),
            _ => Truth::Option(t.clone()),
        });
    }
    Ok(decision)
}
