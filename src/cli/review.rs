//! `conclave review …`: the Cognitive Director's desk. The queue of decisions handed over to a
//! human, an answer that overrides the collective one (recorded and graded), reweights that
//! expire, suspending and resuming a domain's autonomy (and the ratchet that suspends it by
//! itself). A command given with `--seen-version` is refused when trust has changed since.

use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::{CliError, Place, print_json, print_text, table};
use conclave::Outcome;
use conclave::audit::{AuditLog, Entry, PgAuditLog, SledAuditLog};
use conclave::governor::{Order, OrderBook};
use conclave::store::Store;
use conclave::trust::TrustParams;
use conclave::trust::store::{PgTrustStore, SledTrustStore, TrustStore};

/// `conclave review` subcommands.
#[derive(Debug, Subcommand)]
pub(super) enum ReviewCommand {
    /// Decisions waiting for a human, suspended domains and active reweights.
    List(ListArgs),
    /// One escalated decision in full, with the trust version to review it against.
    Show(ShowArgs),
    /// Answer a decision in place of the pool: recorded in the chain, then graded.
    Decide(DecideArgs),
    /// Multiply an agent's weight in a domain for a while.
    Reweight(ReweightArgs),
    /// Suspend a domain's autonomy: its decisions go to a human until resumed.
    Suspend(SuspendArgs),
    /// Re-authorise a suspended domain (also after the ratchet).
    Resume(ResumeArgs),
}

#[derive(Debug, Args)]
pub(super) struct ListArgs {
    /// JSON instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct ShowArgs {
    /// The decision: its id or its record's sequence number.
    id: String,
}

/// Who acts, and the trust version they reviewed (the causal barrier).
#[derive(Debug, Args)]
pub(super) struct Actor {
    /// Who gives the order (recorded).
    #[arg(long)]
    by: String,
    /// The trust version the order was prepared against (`review show` prints it): the order is
    /// refused if trust has changed since.
    #[arg(long)]
    seen_version: Option<u64>,
}

#[derive(Debug, Args)]
pub(super) struct DecideArgs {
    /// The decision: its id or its record's sequence number.
    id: String,
    /// The answer (an option, or a number).
    #[arg(long)]
    answer: String,
    /// Why (recorded).
    #[arg(long, default_value = "")]
    reason: String,
    /// For numeric decisions: answers within this distance of the given one count as right
    /// when the voters are graded.
    #[arg(long, default_value_t = 0.0)]
    tolerance: f64,
    #[command(flatten)]
    actor: Actor,
}

#[derive(Debug, Args)]
pub(super) struct ReweightArgs {
    /// The agent.
    agent: String,
    /// The domain.
    #[arg(long)]
    domain: String,
    /// The factor, in [0, 10] (0 silences the agent).
    #[arg(long)]
    factor: f64,
    /// For how long, e.g. `2h`, `3days`.
    #[arg(long = "for", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[command(flatten)]
    actor: Actor,
}

#[derive(Debug, Args)]
pub(super) struct SuspendArgs {
    /// The domain.
    #[arg(long)]
    domain: String,
    /// Why (recorded).
    #[arg(long, default_value = "suspended by the Director")]
    reason: String,
    #[command(flatten)]
    actor: Actor,
}

#[derive(Debug, Args)]
pub(super) struct ResumeArgs {
    /// The domain.
    #[arg(long)]
    domain: String,
    #[command(flatten)]
    actor: Actor,
}

/// The desk's stores: the audit log (which keeps the orders too) and trust.
struct Desk {
    log: Arc<dyn AuditLog + Send + Sync>,
    book: Arc<dyn OrderBook>,
    trust: Arc<dyn TrustStore + Send + Sync>,
}

impl Desk {
    fn open(place: &Place, reading: bool) -> Result<Self, CliError> {
        match place {
            Place::Store(dir) => {
                // Reading the desk never creates a store; an order does.
                let store = if reading {
                    Store::open_existing(dir)
                        .map_err(CliError::input)?
                        .ok_or_else(|| {
                            CliError::input(format!(
                                "there is no store in {}: nothing was decided there yet",
                                dir.display()
                            ))
                        })?
                } else {
                    Store::open(dir).map_err(CliError::input)?
                };
                let log = Arc::new(SledAuditLog::new(&store).map_err(CliError::input)?);
                let trust =
                    SledTrustStore::new(&store, TrustParams::default()).map_err(CliError::input)?;
                Ok(Self {
                    log: log.clone(),
                    book: log,
                    trust: Arc::new(trust),
                })
            }
            Place::Database(url) => {
                let db = Place::connect(url, 2)?;
                let log = Arc::new(PgAuditLog::new(&db));
                let trust =
                    PgTrustStore::new(&db, TrustParams::default()).map_err(CliError::input)?;
                Ok(Self {
                    log: log.clone(),
                    book: log,
                    trust: Arc::new(trust),
                })
            }
        }
    }
}

pub(super) fn run(cmd: ReviewCommand, place: &Place) -> Result<(), CliError> {
    let reading = matches!(cmd, ReviewCommand::List(_) | ReviewCommand::Show(_));
    let desk = Desk::open(place, reading)?;
    let (log, trust) = (&*desk.log, &*desk.trust);
    match cmd {
        ReviewCommand::List(a) => list(&desk, a.json),
        ReviewCommand::Show(a) => {
            let record = log.find(&a.id).map_err(CliError::input)?;
            let version = trust.snapshot().map_err(CliError::input)?.version;
            print_text(&format!(
                "{}trust version now: {version} (give --seen-version {version} with an order prepared from this)\n",
                super::audit::describe(&record)
            ))
        }
        ReviewCommand::Decide(a) => {
            barrier(trust, &a.actor)?;
            // Checked before anything is written; the override and the outcome it implies are
            // recorded together, then trust learns.
            let done = conclave::audit::record_override(
                log,
                trust,
                &a.id,
                &a.answer,
                &a.actor.by,
                &a.reason,
                a.tolerance,
            )
            .map_err(CliError::input)?;
            let graded = &done.outcome;
            let right = graded.graded.iter().filter(|(_, r)| *r).count();
            print_text(&format!(
                "record {}: answered \"{}\" by {} (override record {}); {right} of {} voters right; trust updated (version {})\n",
                graded.decision.seq,
                a.answer,
                a.actor.by,
                done.over.seq,
                graded.graded.len(),
                graded.applied.version
            ))
        }
        ReviewCommand::Reweight(a) => {
            barrier(trust, &a.actor)?;
            let detail = format!(
                "weight x{} for {}",
                a.factor,
                humantime::format_duration(a.duration)
            );
            order(
                &desk,
                Order::Reweight {
                    agent: a.agent.clone(),
                    domain: a.domain.clone(),
                    factor: a.factor,
                    seconds: a.duration.as_secs(),
                },
                &a.actor.by,
                &detail,
            )
        }
        ReviewCommand::Suspend(a) => {
            barrier(trust, &a.actor)?;
            order(
                &desk,
                Order::Suspend {
                    domain: a.domain.clone(),
                    reason: a.reason.clone(),
                },
                &a.actor.by,
                &a.reason,
            )
        }
        ReviewCommand::Resume(a) => {
            barrier(trust, &a.actor)?;
            order(
                &desk,
                Order::Resume {
                    domain: a.domain.clone(),
                },
                &a.actor.by,
                "re-authorised",
            )
        }
    }
}

/// Gives the order: it is in effect exactly when its record is in the chain (one step).
fn order(desk: &Desk, order: Order, by: &str, detail: &str) -> Result<(), CliError> {
    let action = match &order {
        Order::Suspend { .. } => "suspend",
        Order::Resume { .. } => "resume",
        Order::Reweight { .. } => "reweight",
    };
    let (domain, agent) = match &order {
        Order::Reweight { agent, domain, .. } => (domain.clone(), Some(agent.clone())),
        other => (other.domain().to_owned(), None),
    };
    let change = order
        .change(by, conclave::audit::now())
        .map_err(CliError::input)?;
    let (after, record) = desk.book.change(change).map_err(CliError::input)?;
    let (seq, detail) = match &record {
        Some(r) => match &r.entry {
            Entry::Directive(d) if action != "reweight" => (r.seq.to_string(), d.detail.clone()),
            _ => (r.seq.to_string(), detail.to_owned()),
        },
        None => ("none".to_owned(), detail.to_owned()),
    };
    print_text(&format!(
        "{action} {domain}{}: {detail} (record {seq}; orders version {})\n",
        agent.map_or_else(String::new, |a| format!(" {a}")),
        after.version
    ))
}

/// The causal barrier: an order prepared against an older trust version is refused, naming
/// what changed since.
fn barrier(trust: &dyn TrustStore, actor: &Actor) -> Result<(), CliError> {
    let Some(seen) = actor.seen_version else {
        return Ok(());
    };
    let now = trust.snapshot().map_err(CliError::input)?.version;
    if now == seen {
        return Ok(());
    }
    let since: Vec<String> = trust
        .batches()
        .map_err(CliError::input)?
        .into_iter()
        .filter(|b| b.version > seen)
        .map(|b| {
            format!(
                "{} (version {}, {} states)",
                b.provenance, b.version, b.changed
            )
        })
        .collect();
    Err(CliError::input(format!(
        "refused: trust changed since version {seen} (now {now}): {}; review again",
        if since.is_empty() {
            "the store is older than that version".to_owned()
        } else {
            since.join(", ")
        }
    )))
}

fn list(desk: &Desk, json: bool) -> Result<(), CliError> {
    let records = desk.log.records().map_err(CliError::input)?;
    let answered: std::collections::BTreeSet<u64> = records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Override(o) => Some(o.decision),
            Entry::Outcome(o) => Some(o.decision),
            _ => None,
        })
        .collect();
    let waiting: Vec<(u64, String, String, String)> = records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Decision(d) if !answered.contains(&r.seq) => match &d.outcome {
                Some(Outcome::Human { reason }) => {
                    Some((r.seq, d.id.clone(), d.domain.clone(), reason.clone()))
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    let orders = desk.book.orders().map_err(CliError::input)?;
    let now = conclave::audit::now();
    if json {
        return print_json(&serde_json::json!({
            "waiting": waiting.iter().map(|(seq, id, domain, reason)| serde_json::json!({
                "seq": seq, "decision": id, "domain": domain, "reason": reason
            })).collect::<Vec<_>>(),
            "suspended": orders.suspended,
            "reweights": orders.reweights.iter().filter(|r| r.until > now).collect::<Vec<_>>(),
            "version": orders.version,
        }));
    }
    let mut out = String::new();
    if waiting.is_empty() {
        out += "no decision is waiting for a human\n";
    } else {
        let mut t = table(&["record", "decision", "domain", "why"]);
        for (seq, id, domain, reason) in &waiting {
            t.add_row(vec![
                seq.to_string(),
                id.clone(),
                domain.clone(),
                reason.clone(),
            ]);
        }
        out += &format!("{t}\n");
    }
    for (domain, s) in &orders.suspended {
        out += &format!("suspended: {domain}, by {}: {}\n", s.by, s.reason);
    }
    for r in orders.reweights.iter().filter(|r| r.until > now) {
        out += &format!(
            "reweight: {} in {} x{} until {} (by {})\n",
            r.agent,
            r.domain,
            r.factor,
            super::date(r.until),
            r.by
        );
    }
    print_text(&out)
}
