//! `conclave record`: a suite's real agents asked every item, their answers kept as a
//! recording that `kind = "replay"` agents answer from.
//!
//! A long recording survives interruption: every answer is appended to a journal beside the
//! recording (`<out>.partial`, synced line by line) before the next question is asked, and a
//! second run of the same command asks only what the journal (and an existing recording of
//! the same suite) does not hold yet. Calls that failed for infrastructure reasons (refused
//! connection, timeout, HTTP error, open circuit) are journaled but asked again on the next
//! run; five of them in a row stop the run, since the endpoint is down. The recording itself
//! is written once every answer is in, and the journal removed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use serde::{Deserialize, Serialize};
use tower::{Service, ServiceExt};

use super::{CliError, print_text};
use conclave::agent::openai::OpenAiAgent;
use conclave::agent::replay::{FORMAT, Header, Recorded, RecordedAgent, Recording};
use conclave::agent::{AgentRequest, AgentService};
use conclave::ballot::{Abstention, AbstentionClass, Answer, Ballot, Cause, CauseKind};
use conclave::decision::Decision;
use conclave::eval::Suite;
use conclave::policy::{AgentKind, AgentSpec};

/// Arguments of `conclave record`.
#[derive(Debug, Args)]
pub(super) struct RecordArgs {
    /// The suite whose items are asked (its OpenAI-compatible agents answer).
    suite: PathBuf,
    /// Answers per agent and item (models sampled at a temperature above 0 differ).
    #[arg(long, default_value_t = 1)]
    samples: u32,
    /// The temperature of every sample after the first (default: the agent's own), so that
    /// a panel recorded at temperature 0 gets samples that differ between replay seeds.
    #[arg(long, value_name = "T")]
    later_temperature: Option<f64>,
    /// Only these agents (default: every OpenAI-compatible agent of the suite).
    #[arg(long = "agent")]
    agents: Vec<String>,
    /// Where the recording goes (default: recordings/<suite>.jsonl beside the suite).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only the items of these domains (default: every item of the suite).
    #[arg(long = "domain", value_name = "D")]
    domains: Vec<String>,
    /// Only the first N items (in the suite's order, after --domain).
    #[arg(long, value_name = "N")]
    first: Option<usize>,
    /// Stop after this many new answers (record in chunks; the next run resumes).
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Added to the recording's provenance: the server and its version, the model's licence.
    #[arg(long, default_value = "")]
    note: String,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
}

/// Infrastructure failures in a row that stop a run: the endpoint is down.
const MAX_FAILURES_IN_A_ROW: u32 = 5;

/// How often progress is printed when stderr is not a terminal.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// The journal's first line: what is being recorded, so that a resumed run asks the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalHeader {
    /// The journal format.
    journal: u32,
    /// The suite.
    suite: String,
    /// Each agent as it is asked: a resumed run with a changed model or prompt is refused.
    agents: BTreeMap<String, RecordedAgent>,
}

/// One agent to record: its file entry, the agent (for its negotiated mode) and its services
/// (the first sample's, and the later samples' when their temperature differs).
struct Recorder {
    spec: AgentSpec,
    agent: OpenAiAgent,
    first: AgentService,
    later: Option<AgentService>,
}

pub(super) fn run(a: &RecordArgs) -> Result<(), CliError> {
    if !(1..=100).contains(&a.samples) {
        return Err(CliError::input("--samples must be in 1..=100"));
    }
    if let Some(t) = a.later_temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(CliError::input("--later-temperature must be in 0..=2"));
    }
    let suite = Suite::load(&a.suite).map_err(CliError::input)?;
    for id in &a.agents {
        if !suite.catalog.agents.contains_key(id) {
            return Err(CliError::input(format!("the suite has no agent \"{id}\"")));
        }
    }
    let specs: Vec<AgentSpec> = suite
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
    let mut recorders = Vec::new();
    for spec in specs {
        let agent = OpenAiAgent::new(spec.clone()).map_err(CliError::input)?;
        let first =
            conclave::layer::stack(&spec, tower::util::BoxCloneSyncService::new(agent.clone()));
        let later = match a.later_temperature {
            Some(t) if a.samples > 1 && t != spec.temperature => {
                let mut hot = spec.clone();
                hot.temperature = t;
                let agent = OpenAiAgent::new(hot.clone()).map_err(CliError::input)?;
                Some(conclave::layer::stack(
                    &hot,
                    tower::util::BoxCloneSyncService::new(agent),
                ))
            }
            _ => None,
        };
        recorders.push(Recorder {
            spec,
            agent,
            first,
            later,
        });
    }
    let out = a.out.clone().unwrap_or_else(|| {
        a.suite
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("recordings")
            .join(format!("{}.jsonl", suite.name))
    });
    if let Some(dir) = out.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::failed(format!("cannot create {}: {e}", dir.display())))?;
    }
    let described: BTreeMap<String, RecordedAgent> = recorders
        .iter()
        .map(|r| (r.spec.id.clone(), describe(&r.spec, a, None)))
        .collect();

    // What is already recorded: a finished recording of this suite, then the journal.
    let mut done: BTreeMap<(String, String, u32), Recorded> = BTreeMap::new();
    let mut earlier_agents = BTreeMap::new();
    if out.exists() {
        let old = Recording::read(&out).map_err(CliError::failed)?;
        if old.header.suite != suite.name {
            return Err(CliError::input(format!(
                "{} is a recording of suite \"{}\", not \"{}\": choose another --out",
                out.display(),
                old.header.suite,
                suite.name
            )));
        }
        for (id, now) in &described {
            if let Some(then) = old.header.agents.get(id) {
                same_agent(id, then, now, &out)?;
            }
        }
        earlier_agents = old.header.agents.clone();
        for x in old.answers {
            done.insert((x.agent.clone(), x.item.clone(), x.sample), x);
        }
    }
    let journal_path = journal_path(&out);
    let journal_header = JournalHeader {
        journal: 1,
        suite: suite.name.clone(),
        agents: described,
    };
    let resumed = read_journal(&journal_path, &journal_header)?;
    let from_journal = resumed.len();
    for x in resumed {
        done.insert((x.agent.clone(), x.item.clone(), x.sample), x);
    }
    let mut journal = Journal::open(&journal_path, &journal_header)?;

    // What is left to ask: every sample of every item of every agent, less the answers
    // held (an infrastructure failure is asked again).
    let chosen: Vec<usize> = suite
        .items
        .iter()
        .enumerate()
        .filter(|(_, x)| a.domains.is_empty() || a.domains.contains(&x.domain))
        .map(|(i, _)| i)
        .take(a.first.unwrap_or(usize::MAX))
        .collect();
    if chosen.is_empty() {
        return Err(CliError::input(format!(
            "no item of {} is in the domains {:?}",
            a.suite.display(),
            a.domains
        )));
    }
    let mut todo: Vec<(u32, usize, usize)> = Vec::new();
    for sample in 0..a.samples {
        for &i in &chosen {
            let item = &suite.items[i];
            for (k, r) in recorders.iter().enumerate() {
                let key = (r.spec.id.clone(), item.id.clone(), sample);
                if done.get(&key).is_none_or(|x| failed_on_the_way(&x.ballot)) {
                    todo.push((sample, i, k));
                }
            }
        }
    }
    let total = todo.len() as u64;
    let asking = a.limit.map_or(total, |l| l.min(total));
    let mut progress = Progress::new(asking, a.quiet);
    if !a.quiet && !done.is_empty() {
        eprintln!(
            "record: {} answers held ({from_journal} in {}), {total} left to ask",
            done.len(),
            journal_path.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the runtime: {e}")))?;
    let mut in_a_row = 0u32;
    let mut stopped: Option<String> = None;
    runtime.block_on(async {
        let interrupt = tokio::signal::ctrl_c();
        tokio::pin!(interrupt);
        for &(sample, i, k) in todo.iter().take(asking as usize) {
            let item = &suite.items[i];
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
            let r = &mut recorders[k];
            let service = match (&mut r.later, sample) {
                (Some(later), 1..) => later,
                _ => &mut r.first,
            };
            let (ballot, tokens_in, tokens_out, raw, latency_ms) = tokio::select! {
                asked = ask_once(&r.spec, service, &decision) => asked,
                _ = &mut interrupt => {
                    stopped = Some("interrupted".to_owned());
                    break;
                }
            };
            let answer = Recorded {
                agent: r.spec.id.clone(),
                item: item.id.clone(),
                sample,
                ballot,
                latency_ms,
                tokens_in,
                tokens_out,
                raw,
            };
            if let Err(e) = journal.append(&answer) {
                stopped = Some(e);
                break;
            }
            in_a_row = if failed_on_the_way(&answer.ballot) {
                in_a_row + 1
            } else {
                0
            };
            if in_a_row >= MAX_FAILURES_IN_A_ROW {
                let why = answer
                    .ballot
                    .cause
                    .as_ref()
                    .map_or_else(|| "no cause given".to_owned(), Cause::describe);
                stopped = Some(format!(
                    "{MAX_FAILURES_IN_A_ROW} calls in a row failed on the way (last: {} on item \"{}\": {why}); is the endpoint up?",
                    answer.agent, answer.item
                ));
            }
            done.insert((answer.agent.clone(), answer.item.clone(), sample), answer);
            progress.tick();
            if stopped.is_some() {
                break;
            }
        }
    });
    progress.finish();
    let asked = progress.done;
    let left = todo
        .iter()
        .filter(|&&(sample, i, k)| {
            let key = (
                recorders[k].spec.id.clone(),
                suite.items[i].id.clone(),
                sample,
            );
            done.get(&key).is_none_or(|x| failed_on_the_way(&x.ballot))
        })
        .count();

    // The recording holds every answer in, in item, sample and agent order (calls that
    // failed on the way stay in the journal only, to be asked again).
    let order: HashMap<&str, usize> = suite
        .items
        .iter()
        .enumerate()
        .map(|(i, x)| (x.id.as_str(), i))
        .collect();
    let rank: HashMap<&str, usize> = recorders
        .iter()
        .enumerate()
        .map(|(k, r)| (r.spec.id.as_str(), k))
        .collect();
    let mut answers: Vec<Recorded> = done
        .into_values()
        .filter(|x| !failed_on_the_way(&x.ballot))
        .collect();
    answers.sort_by_key(|x| {
        (
            order.get(x.item.as_str()).copied().unwrap_or(usize::MAX),
            x.sample,
            rank.get(x.agent.as_str()).copied().unwrap_or(usize::MAX),
            x.agent.clone(),
            x.item.clone(),
        )
    });
    let mut text = String::new();
    if !answers.is_empty() {
        let accuracy = accuracy_of(&suite, &answers);
        let mut agents = earlier_agents;
        for r in &recorders {
            agents.insert(
                r.spec.id.clone(),
                describe(&r.spec, a, Some(r.agent.structured_output().as_str())),
            );
        }
        let samples = answers.iter().map(|x| x.sample + 1).max().unwrap_or(1);
        let header = header(a, &suite, &answers, agents, accuracy, samples, left);
        let recording = Recording::new(header, answers);
        recording.write(&out).map_err(CliError::failed)?;
        let failed = recording
            .answers
            .iter()
            .filter(|x| x.ballot.is_abstention())
            .count();
        text = format!(
            "{} answers ({} abstained) in {}\n",
            recording.answers.len(),
            failed,
            out.display()
        );
        for (agent, acc) in &recording.header.accuracy {
            text += &format!("  {agent}: accuracy {:.1}%\n", 100.0 * acc);
        }
    }
    let kept = format!(
        "{left} answers left to ask; the journal {} keeps what this run asked: run the same command again to resume",
        journal_path.display()
    );
    if let Some(why) = stopped {
        eprint!("{text}");
        return Err(CliError::failed(format!(
            "recording stopped: {why}. {kept}"
        )));
    }
    if left > 0 && asked == total {
        eprint!("{text}");
        return Err(CliError::failed(format!(
            "some calls failed on the way and are not recorded. {kept}"
        )));
    }
    if left > 0 {
        return print_text(&format!(
            "{text}stopped after {asked} answers (--limit); {kept}\n"
        ));
    }
    drop(journal);
    std::fs::remove_file(&journal_path).map_err(|e| {
        CliError::failed(format!(
            "the recording is complete, but {} could not be removed: {e}",
            journal_path.display()
        ))
    })?;
    print_text(&format!("recorded: {text}"))
}

/// The journal beside a recording.
fn journal_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

/// Whether a recorded call failed for infrastructure reasons (asked again on resume).
fn failed_on_the_way(b: &Ballot) -> bool {
    matches!(&b.answer, Answer::Abstain(x) if x.class() == AbstentionClass::Infrastructure)
}

/// An agent as recorded in a header.
fn describe(spec: &AgentSpec, a: &RecordArgs, mode: Option<&str>) -> RecordedAgent {
    RecordedAgent {
        model: spec.model.clone().unwrap_or_default(),
        base_url: spec.base_url.clone().unwrap_or_default(),
        structured_output: mode.map(str::to_owned),
        system_prompt: spec.system_prompt.clone(),
        temperature: Some(spec.temperature),
        later_temperature: a
            .later_temperature
            .filter(|&t| a.samples > 1 && t != spec.temperature),
        max_tokens: Some(spec.max_tokens),
    }
}

/// Refuses to mix answers of an agent whose model, prompt or sampling changed.
fn same_agent(
    id: &str,
    then: &RecordedAgent,
    now: &RecordedAgent,
    file: &Path,
) -> Result<(), CliError> {
    let differs = then.model != now.model
        || (then.system_prompt.is_some() && then.system_prompt != now.system_prompt)
        || (then.temperature.is_some() && then.temperature != now.temperature)
        || (then.max_tokens.is_some() && then.max_tokens != now.max_tokens);
    if differs {
        return Err(CliError::input(format!(
            "agent \"{id}\" is not asked as {} recorded it (model, system prompt, temperature or max_tokens changed): restore it, or record to another --out",
            file.display()
        )));
    }
    Ok(())
}

/// Reads the journal a stopped run left: its answers (a last line cut by a kill is dropped).
fn read_journal(path: &Path, expected: &JournalHeader) -> Result<Vec<Recorded>, CliError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(CliError::failed(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let mut lines = std::io::BufReader::new(file).lines();
    let Some(first) = lines.next() else {
        return Ok(Vec::new());
    };
    let first = first.map_err(|e| CliError::failed(format!("{}: {e}", path.display())))?;
    let Ok(header) = serde_json::from_str::<JournalHeader>(&first) else {
        // A kill before the header was whole: nothing was recorded yet.
        return Ok(Vec::new());
    };
    if header.suite != expected.suite {
        return Err(CliError::input(format!(
            "{} is the journal of suite \"{}\", not \"{}\": remove it or choose another --out",
            path.display(),
            header.suite,
            expected.suite
        )));
    }
    for (id, now) in &expected.agents {
        if let Some(then) = header.agents.get(id) {
            same_agent(id, then, now, path)?;
        }
    }
    let mut answers = Vec::new();
    let lines: Vec<String> = lines
        .collect::<Result<_, _>>()
        .map_err(|e| CliError::failed(format!("{}: {e}", path.display())))?;
    let last = lines.len();
    for (n, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Recorded>(line) {
            Ok(x) => answers.push(x),
            // Only the last line can be half written.
            Err(_) if n + 1 == last => {}
            Err(e) => {
                return Err(CliError::failed(format!(
                    "{}:{}: {e} (the journal is damaged; remove the line or the file)",
                    path.display(),
                    n + 2
                )));
            }
        }
    }
    Ok(answers)
}

/// The journal of a run: one synced line per answer.
struct Journal {
    file: std::fs::File,
    path: PathBuf,
}

impl Journal {
    /// Opens the journal for appending (a fresh one starts with its header; a line cut by a
    /// kill is removed, so the next answer starts a line of its own).
    fn open(path: &Path, header: &JournalHeader) -> Result<Self, CliError> {
        let fail =
            |e: std::io::Error| CliError::failed(format!("cannot write {}: {e}", path.display()));
        let fresh = std::fs::metadata(path).map_or(true, |m| m.len() == 0)
            || std::fs::read(path)
                .ok()
                .and_then(|b| {
                    let first = b.split(|&c| c == b'\n').next()?.to_vec();
                    serde_json::from_slice::<JournalHeader>(&first).ok()
                })
                .is_none();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(fail)?;
        if fresh {
            file.set_len(0).map_err(fail)?;
            let line =
                serde_json::to_string(header).map_err(|e| CliError::failed(e.to_string()))?;
            writeln!(file, "{line}").map_err(fail)?;
        } else {
            // A line cut by a kill is dropped: the answer it held is asked again.
            let bytes = std::fs::read(path).map_err(fail)?;
            if bytes.last().is_some_and(|&c| c != b'\n') {
                let whole = bytes.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
                file.set_len(whole as u64).map_err(fail)?;
            }
        }
        file.sync_data().map_err(fail)?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Appends one answer, durably.
    fn append(&mut self, x: &Recorded) -> Result<(), String> {
        let line = serde_json::to_string(x).map_err(|e| e.to_string())?;
        writeln!(self.file, "{line}")
            .and_then(|()| self.file.sync_data())
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}

/// Progress of a long recording: a bar on a terminal, a line every 30 s elsewhere, with the
/// rate and the time left.
struct Progress {
    total: u64,
    done: u64,
    started: Instant,
    printed: Instant,
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
}

impl Progress {
    fn new(total: u64, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} answers, {per_sec}, {eta} left",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        Self {
            total,
            done: 0,
            started: Instant::now(),
            printed: Instant::now(),
            bar,
            quiet,
        }
    }

    fn tick(&mut self) {
        self.done += 1;
        if let Some(b) = &self.bar {
            b.inc(1);
        } else if !self.quiet && self.printed.elapsed() >= PROGRESS_EVERY {
            self.printed = Instant::now();
            eprintln!("record: {}", self.line());
        }
    }

    /// `120/1600 answers (7.5%), 0.12 answers/s, about 3h 25m left`.
    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = self.done as f64 / secs;
        let left = if rate > 0.0 {
            let s = ((self.total - self.done) as f64 / rate).round() as u64;
            format!(", about {}h {:02}m left", s / 3600, (s % 3600) / 60)
        } else {
            String::new()
        };
        format!(
            "{}/{} answers ({:.1}%), {rate:.3} answers/s{left}",
            self.done,
            self.total,
            100.0 * self.done as f64 / self.total.max(1) as f64
        )
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if !self.quiet && self.done > 0 {
            let secs = self.started.elapsed().as_secs_f64();
            eprintln!(
                "record: asked {} of {} in {secs:.0} s ({:.3} answers/s)",
                self.done,
                self.total,
                self.done as f64 / secs.max(1e-3)
            );
        }
    }
}

/// One answer of a real agent, within its timeout: the ballot (or the abstention with its
/// cause), tokens in and out, the raw reply and the latency in ms.
async fn ask_once(
    spec: &AgentSpec,
    service: &mut AgentService,
    decision: &std::sync::Arc<Decision>,
) -> (Ballot, u32, u32, Option<String>, u64) {
    let started = Instant::now();
    let call = service.ready().await;
    let reply = match call {
        Ok(s) => {
            tokio::time::timeout(
                Duration::from_millis(spec.timeout_ms.max(1)),
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
    answers: &[Recorded],
    agents: BTreeMap<String, RecordedAgent>,
    accuracy: BTreeMap<String, f64>,
    samples: u32,
    left: usize,
) -> Header {
    let endpoints: Vec<String> = agents
        .iter()
        .map(|(id, r)| format!("{id}: {} at {}", r.model, r.base_url))
        .collect();
    let items: BTreeSet<&str> = answers.iter().map(|x| x.item.as_str()).collect();
    Header {
        recording: FORMAT,
        suite: suite.name.clone(),
        made_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        made_by: format!(
            "conclave {} record {} --samples {}{}",
            env!("CARGO_PKG_VERSION"),
            a.suite.display(),
            a.samples,
            a.later_temperature
                .map(|t| format!(" --later-temperature {t}"))
                .unwrap_or_default()
        ),
        provenance: format!(
            "Answers of {} to the {} items of suite \"{}\".{}",
            endpoints.join("; "),
            items.len(),
            suite.name,
            if a.note.is_empty() {
                String::new()
            } else {
                format!(" {}", a.note)
            }
        ) + &if left > 0 {
            format!(" Incomplete: {left} answers still to record.")
        } else {
            String::new()
        },
        samples,
        items: items.len(),
        agents,
        accuracy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(model: &str) -> JournalHeader {
        JournalHeader {
            journal: 1,
            suite: "s".into(),
            agents: BTreeMap::from([(
                "m".to_owned(),
                RecordedAgent {
                    model: model.into(),
                    base_url: "http://127.0.0.1:1/v1".into(),
                    structured_output: None,
                    system_prompt: Some("p".into()),
                    temperature: Some(0.0),
                    later_temperature: None,
                    max_tokens: Some(100),
                },
            )]),
        }
    }

    fn answer(item: &str) -> Recorded {
        Recorded {
            agent: "m".into(),
            item: item.into(),
            sample: 0,
            ballot: Ballot::choice("m", "A"),
            latency_ms: 5,
            tokens_in: 1,
            tokens_out: 1,
            raw: None,
        }
    }

    #[test]
    fn a_journal_cut_by_a_kill_resumes_with_its_whole_lines() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("r.jsonl.partial");
        let h = header("x");
        {
            let mut j = Journal::open(&path, &h).expect("open");
            j.append(&answer("q1")).expect("append");
            j.append(&answer("q2")).expect("append");
        }
        // A kill in the middle of the third line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        write!(f, "{{\"agent\":\"m\",\"ite").expect("write");
        drop(f);
        let back = read_journal(&path, &h).expect("read");
        assert_eq!(back, vec![answer("q1"), answer("q2")]);
        // Appending after the cut drops the cut line: the journal reads whole again.
        let mut j = Journal::open(&path, &h).expect("reopen");
        j.append(&answer("q3")).expect("append");
        let back = read_journal(&path, &h).expect("read");
        assert_eq!(back.len(), 3);
        // A damaged line that is not the last is an error naming the line.
        let text = std::fs::read_to_string(&path).expect("read");
        let damaged = text.replacen("{\"agent\":\"m\",\"item\":\"q2\"", "{\"agent", 1);
        std::fs::write(&path, damaged).expect("write");
        let e = read_journal(&path, &h).expect_err("damaged");
        assert!(e.to_string().contains(":3:"), "{e}");
        // A journal of another model is refused.
        std::fs::write(&path, text).expect("write");
        let e = read_journal(&path, &header("y")).expect_err("other model");
        assert!(e.to_string().contains("not asked as"), "{e}");
    }

    #[test]
    fn only_failures_on_the_way_are_asked_again() {
        let timeout = Ballot::abstain("m", Abstention::Timeout);
        let malformed = Ballot::abstain("m", Abstention::Malformed);
        let refused = Ballot::abstain("m", Abstention::Refused);
        assert!(failed_on_the_way(&timeout));
        assert!(failed_on_the_way(&Ballot::abstain("m", Abstention::Error)));
        assert!(!failed_on_the_way(&malformed));
        assert!(!failed_on_the_way(&refused));
        assert!(!failed_on_the_way(&Ballot::choice("m", "A")));
    }
}
