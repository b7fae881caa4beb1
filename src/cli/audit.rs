//! `conclave audit …`: list, show, verify, replay and grade recorded decisions.

use std::path::Path;

use clap::{Args, Subcommand};

use super::{CliError, Place, ballot_text, date, print_json, print_text, table};
use conclave::audit::{AuditLog, AuditRecord, Entry, SledAuditLog, hex, replay};
use conclave::store::Store;
use conclave::trust::TrustParams;
use conclave::trust::store::SledTrustStore;

/// `conclave audit` subcommands.
#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
    /// One line per record: sequence, kind, decision, rule, result, time.
    List(Json),
    /// One record in full.
    Show(IdArgs),
    /// Walk the hash chain; exit 1 naming the first broken record.
    Verify(Json),
    /// Recompute a decision's verdict from its record; exit 1 unless it matches bit for bit.
    /// With --items, the records of an eval run's items.jsonl (one line, or every line).
    Replay(ReplayArgs),
    /// Grade a past decision against the right answer and update the trust of its voters.
    Outcome(OutcomeArgs),
}

#[derive(Debug, Args)]
pub(super) struct Json {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct IdArgs {
    /// A sequence number or a decision id.
    id: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct ReplayArgs {
    /// A sequence number or a decision id; with --items, a line number (default: every line).
    #[arg(required_unless_present = "items")]
    id: Option<String>,
    /// An eval run's items.jsonl instead of the store's audit log.
    #[arg(long)]
    items: Option<std::path::PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct OutcomeArgs {
    /// A sequence number or a decision id.
    id: String,
    /// The right answer: an option, or a number for numeric decisions.
    #[arg(long)]
    correct: String,
    /// Numeric decisions: a ballot within this distance of the answer counts as right.
    #[arg(long, default_value_t = 0.1)]
    tolerance: f64,
    /// Who says so (ground-truth, human:NAME, …).
    #[arg(long, default_value = "ground-truth")]
    source: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// What replaying an items.jsonl found.
#[derive(Debug, serde::Serialize)]
struct ItemsReplay {
    /// Records replayed.
    records: u64,
    /// That matched bit for bit.
    matched: u64,
    /// Lines (1-based) whose verdict differs, with both verdicts.
    differ: Vec<conclave::audit::Replay>,
}

/// Replays line `line` of an eval run's items.jsonl, or every line (streamed: memory does not
/// grow with the file).
fn replay_items(path: &Path, line: Option<&str>, json: bool) -> Result<(), CliError> {
    use std::io::BufRead as _;
    let want: Option<u64> = match line {
        None => None,
        Some(l) => Some(l.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
            CliError::input(format!(
                "\"{l}\" is not a line number of {}",
                path.display()
            ))
        })?),
    };
    let file = std::fs::File::open(path)
        .map_err(|e| CliError::input(format!("cannot read {}: {e}", path.display())))?;
    let mut out = ItemsReplay {
        records: 0,
        matched: 0,
        differ: Vec::new(),
    };
    for (k, text) in std::io::BufReader::new(file).lines().enumerate() {
        let n = k as u64 + 1;
        if want.is_some_and(|w| w != n) {
            continue;
        }
        let text = text
            .map_err(|e| CliError::input(format!("{}:{n}: cannot be read: {e}", path.display())))?;
        if text.trim().is_empty() {
            continue;
        }
        #[derive(serde::Deserialize)]
        struct Line {
            record: conclave::audit::DecisionRecord,
        }
        let parsed: Line = serde_json::from_str(&text).map_err(|e| {
            CliError::input(format!(
                "{}:{n}: not an eval decision with its record: {e}",
                path.display()
            ))
        })?;
        let r = conclave::audit::replay_decision(n, &parsed.record).map_err(CliError::input)?;
        out.records += 1;
        if r.matches {
            out.matched += 1;
        } else if out.differ.len() < 20 {
            out.differ.push(r);
        }
        if want.is_some() {
            break;
        }
    }
    if let Some(w) = want
        && out.records == 0
    {
        return Err(CliError::input(format!(
            "{} has no line {w}",
            path.display()
        )));
    }
    if json {
        print_json(&out)?;
    } else {
        let mut text = format!(
            "{}: {} of {} decision records replay bit for bit\n",
            path.display(),
            out.matched,
            out.records
        );
        for r in &out.differ {
            text.push_str(&format!(
                "  line {}: recorded {}, recomputed {}\n",
                r.seq, r.recorded, r.recomputed
            ));
        }
        print_text(&text)?;
    }
    if out.matched == out.records {
        Ok(())
    } else {
        Err(CliError::failed(format!(
            "{} of {} records differ",
            out.records - out.matched,
            out.records
        )))
    }
}

type Log = Box<dyn AuditLog + Send + Sync>;

/// The audit log at `place`, if there is one (a store directory that does not exist has
/// none; a database always has one).
fn open_read(place: &Place) -> Result<Option<Log>, CliError> {
    match place {
        Place::Database(url) => {
            let db = Place::connect(url, 1)?;
            Ok(Some(Box::new(conclave::audit::PgAuditLog::new(&db))))
        }
        Place::Store(dir) => match Store::open_existing(dir).map_err(CliError::input)? {
            None => Ok(None),
            Some(store) => Ok(Some(Box::new(
                SledAuditLog::new(&store).map_err(CliError::input)?,
            ))),
        },
    }
}

fn require(place: &Place, id: &str) -> Result<Log, CliError> {
    open_read(place)?.ok_or_else(|| {
        CliError::input(format!(
            "no audit record \"{id}\": there is no store in {}",
            place.describe()
        ))
    })
}

pub(super) fn run(cmd: AuditCommand, dir: &Place) -> Result<(), CliError> {
    match cmd {
        AuditCommand::List(a) => list(dir, a.json),
        AuditCommand::Show(a) => {
            let log = require(dir, &a.id)?;
            let record = log.find(&a.id).map_err(CliError::input)?;
            if a.json {
                return print_json(&record);
            }
            // A decision is shown with what came of it later: overrides and graded outcomes.
            let mut text = describe(&record);
            if matches!(record.entry, Entry::Decision(_)) {
                for later in log.records().map_err(CliError::input)? {
                    let about = match &later.entry {
                        Entry::Outcome(o) => o.decision,
                        Entry::Override(o) => o.decision,
                        _ => continue,
                    };
                    if about == record.seq {
                        text += "later:\n";
                        text += &describe(&later);
                    }
                }
            }
            print_text(&text)
        }
        AuditCommand::Verify(a) => {
            let v = match open_read(dir)? {
                Some(log) => log.verify().map_err(CliError::input)?,
                None => conclave::audit::Verification {
                    records: 0,
                    first_broken: None,
                },
            };
            if a.json {
                print_json(&v)?;
            }
            match &v.first_broken {
                None => {
                    if !a.json {
                        print_text(&format!(
                            "audit chain intact: {} records verified\n",
                            v.records
                        ))?;
                    }
                    Ok(())
                }
                Some(b) => Err(CliError::failed(format!(
                    "audit chain broken at record {}: {}",
                    b.seq, b.reason
                ))),
            }
        }
        AuditCommand::Replay(a) => match &a.items {
            Some(path) => replay_items(path, a.id.as_deref(), a.json),
            None => {
                let id = a.id.as_deref().unwrap_or_default();
                let record = require(dir, id)?.find(id).map_err(CliError::input)?;
                let r = replay(&record).map_err(CliError::input)?;
                if a.json {
                    print_json(&r)?;
                } else if r.matches {
                    print_text(&format!(
                        "record {}: the recomputed verdict matches the recorded one bit for bit\n",
                        r.seq
                    ))?;
                }
                if r.matches {
                    Ok(())
                } else {
                    Err(CliError::failed(format!(
                        "record {}: the recomputed verdict differs from the recorded one (recorded {}, recomputed {})",
                        r.seq, r.recorded, r.recomputed
                    )))
                }
            }
        },
        AuditCommand::Outcome(a) => outcome(dir, &a),
    }
}

fn summary(record: &AuditRecord) -> (String, String, String, String) {
    match &record.entry {
        Entry::Decision(d) => {
            let result = d
                .verdict
                .get("winner")
                .and_then(|w| w.as_str().map(str::to_owned))
                .or_else(|| d.verdict.get("value").map(ToString::to_string))
                .unwrap_or_else(|| "no decision".to_owned());
            (
                "decision".to_owned(),
                d.id.clone(),
                d.rule.name().to_owned(),
                result,
            )
        }
        Entry::Outcome(o) => (
            "outcome".to_owned(),
            format!("of record {}", o.decision),
            o.source.clone(),
            format!("correct: {}", o.correct),
        ),
        Entry::Override(o) => (
            "override".to_owned(),
            format!("of record {}", o.decision),
            format!("human:{}", o.by),
            format!("answer: {}", o.answer),
        ),
        Entry::Directive(d) => (
            "directive".to_owned(),
            d.domain.clone(),
            d.by.clone(),
            format!(
                "{}{}: {}",
                d.action,
                d.agent
                    .as_deref()
                    .map_or_else(String::new, |a| format!(" {a}")),
                d.detail
            ),
        ),
        _ => (
            "other".to_owned(),
            String::new(),
            String::new(),
            String::new(),
        ),
    }
}

fn at(record: &AuditRecord) -> u64 {
    match &record.entry {
        Entry::Decision(d) => d.at,
        Entry::Outcome(o) => o.at,
        Entry::Override(o) => o.at,
        Entry::Directive(d) => d.at,
        _ => 0,
    }
}

fn list(dir: &Place, json: bool) -> Result<(), CliError> {
    let records = match open_read(dir)? {
        Some(log) => log.records().map_err(CliError::input)?,
        None => Vec::new(),
    };
    if json {
        return print_json(&records);
    }
    if records.is_empty() {
        return print_text(&format!("no audit records in {}\n", dir.describe()));
    }
    let mut t = table(&["seq", "kind", "decision", "rule / source", "result", "when"]);
    for r in &records {
        let (kind, id, rule, result) = summary(r);
        t.add_row(vec![r.seq.to_string(), kind, id, rule, result, date(at(r))]);
    }
    print_text(&format!("{t}\n"))
}

pub(super) fn describe(record: &AuditRecord) -> String {
    let mut out = format!(
        "record {}  hash {}\n  previous {}\n",
        record.seq,
        hex(&record.hash),
        hex(&record.prev)
    );
    match &record.entry {
        Entry::Decision(d) => {
            out += &format!(
                "decision {} ({}) at {}\n  question: {}\n  rule: {}   trust version: {}   seed: {}\n",
                d.id,
                d.domain,
                date(d.at),
                d.question,
                serde_json::to_string(&d.rule).unwrap_or_default(),
                d.trust_version,
                d.seed
            );
            if let Some(p) = &d.policy {
                out += &format!("  policy: {} ({})\n", p.id, p.hash);
            }
            let mut t = table(&["agent", "ballot", "weight"]);
            for b in &d.input.ballots {
                let answer = ballot_text(b);
                let w = d
                    .input
                    .weights
                    .get(&b.agent)
                    .map_or_else(|| "1".to_owned(), |w| super::num(*w));
                t.add_row(vec![b.agent.clone(), answer, w]);
            }
            out += &format!(
                "{t}\n{}verdict: {}\n",
                super::left_out_text(&d.left_out),
                super::verdict_text(&d.verdict)
            );
            if let Some(c) = d.confidence {
                out += &format!("confidence: {}\n", conclave::ballot::fixed(c, 3));
            }
            if let Some(o) = &d.outcome {
                out += &format!(
                    "outcome: {}\n",
                    match o {
                        conclave::Outcome::Decided { weak: true } => "decided (weak)".to_owned(),
                        conclave::Outcome::Decided { .. } => "decided".to_owned(),
                        conclave::Outcome::Arbitrated { arbiter, ruling } =>
                            format!("arbitrated by {arbiter}: {}", super::tidy(ruling)),
                        conclave::Outcome::Human { reason } => format!("to a human: {reason}"),
                        conclave::Outcome::Refused { reason } => format!("refused: {reason}"),
                        other => other.as_str().to_owned(),
                    }
                );
            }
            if let Some(r) = &d.ruling {
                out += &format!(
                    "arbiter's ruling: {}{}\n",
                    ballot_text(r),
                    r.rationale
                        .as_deref()
                        .map_or_else(String::new, |x| format!(" — \"{x}\""))
                );
            }
            for r in &d.rounds {
                let positions: Vec<String> = r
                    .ballots
                    .iter()
                    .map(|b| {
                        let w = r
                            .weights
                            .iter()
                            .find(|(a, _)| *a == b.agent)
                            .map_or(0.0, |(_, w)| *w);
                        format!(
                            "{} {} (w {})",
                            b.agent,
                            ballot_text(b),
                            conclave::ballot::fixed(w, 2)
                        )
                    })
                    .collect();
                out += &format!(
                    "round {}: consensus {}, confidence {}: {}\n",
                    r.round,
                    conclave::ballot::fixed(r.consensus, 3),
                    conclave::ballot::fixed(r.confidence, 3),
                    positions.join("; ")
                );
                if let Some(flag) = &r.acquiescence {
                    out += &format!("  flagged: {flag}\n");
                }
            }
            if let Some(c) = &d.course {
                out += &format!(
                    "course: stopped ({}); consensus {}; {} in {}; {} tokens; ${}\n",
                    serde_json::to_value(c.stop)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    conclave::ballot::fixed(c.consensus, 3),
                    super::count(c.calls as u64, "call"),
                    super::count(u64::from(c.waves), "wave"),
                    c.tokens,
                    conclave::ballot::fixed(c.cost_usd, 4)
                );
            }
        }
        Entry::Outcome(o) => {
            out += &format!(
                "outcome of record {} at {}: correct answer {} (source {})\n",
                o.decision,
                date(o.at),
                o.correct,
                o.source
            );
            for (agent, right) in &o.graded {
                out += &format!("  {agent}: {}\n", if *right { "right" } else { "wrong" });
            }
        }
        Entry::Override(o) => {
            out += &format!(
                "override of record {} at {}: answer {} by {} (reviewed at trust version {}){}\n",
                o.decision,
                date(o.at),
                o.answer,
                o.by,
                o.trust_version,
                if o.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", o.reason)
                }
            );
        }
        Entry::Directive(d) => {
            out += &format!(
                "directive at {}: {} {}{} by {}: {}\n",
                date(d.at),
                d.action,
                d.domain,
                d.agent
                    .as_deref()
                    .map_or_else(String::new, |a| format!(" {a}")),
                d.by,
                d.detail
            );
        }
        _ => {}
    }
    out
}

fn outcome(place: &Place, a: &OutcomeArgs) -> Result<(), CliError> {
    if !(a.tolerance.is_finite() && a.tolerance >= 0.0) {
        return Err(CliError::input("--tolerance must be a finite number ≥ 0"));
    }
    let (log, trust): (Log, Box<dyn conclave::TrustStore>) = match place {
        Place::Database(url) => {
            let db = Place::connect(url, 1)?;
            (
                Box::new(conclave::audit::PgAuditLog::new(&db)),
                Box::new(
                    conclave::trust::store::PgTrustStore::new(&db, TrustParams::default())
                        .map_err(CliError::input)?,
                ),
            )
        }
        Place::Store(dir) => {
            let Some(store) = Store::open_existing(dir).map_err(CliError::input)? else {
                return Err(CliError::input(format!(
                    "no audit record \"{}\": there is no store in {}",
                    a.id,
                    dir.display()
                )));
            };
            (
                Box::new(SledAuditLog::new(&store).map_err(CliError::input)?),
                Box::new(
                    SledTrustStore::new(&store, TrustParams::default()).map_err(CliError::input)?,
                ),
            )
        }
    };
    let receipt =
        conclave::audit::record_outcome(&*log, &*trust, &a.id, &a.correct, &a.source, a.tolerance)
            .map_err(CliError::input)?;
    let (record, appended, graded, provenance, applied) = (
        &receipt.decision,
        &receipt.outcome,
        &receipt.graded,
        &receipt.provenance,
        &receipt.applied,
    );
    if a.json {
        return print_json(&serde_json::json!({
            "decision": record.seq, "outcome_record": appended.seq, "provenance": provenance,
            "graded": graded.iter().map(|(ag, r)| serde_json::json!({"agent": ag, "right": r})).collect::<Vec<_>>(),
            "trust_version": applied.version,
        }));
    }
    let right = graded.iter().filter(|(_, r)| *r).count();
    print_text(&format!(
        "graded record {}: {right} of {} voters right; outcome appended as record {}; trust updated (version {})\n",
        record.seq,
        graded.len(),
        appended.seq,
        applied.version
    ))
}
