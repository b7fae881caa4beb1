//! Recordings of real agents' answers, and agents that answer from them.
//!
//! `conclave record SUITE` asks a suite's OpenAI-compatible agents every item (`--samples N`
//! times each) and writes a **recording**: JSON lines, a [`Header`] first (what was recorded,
//! against which endpoints and models, when, by what command, and each agent's accuracy),
//! then one [`Recorded`] answer per line (the parsed ballot or the abstention with its cause,
//! the raw reply, latency and tokens).
//!
//! A `kind = "replay"` agent answers from a recording: for a decision whose id is an item id
//! of the recording, the answer of agent `of` (by default its own id) to that item, sample
//! number `seed mod samples` — deterministic, offline and fast, so real model panels run in
//! evals on simulated time, in CI, at many seeds. It is a simulated agent otherwise: its
//! honest answers come from the recording, and scenario attacks (always wrong, drift,
//! Sybil clones, …) are layered on top exactly as on scripted agents. Its competence, for the
//! oracle and the reports, is its recorded accuracy; its latency, the recorded one. A
//! decision the recording does not hold is declined, with that cause.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::ballot::{Abstention, Ballot, Cause, CauseKind};
use crate::decision::Decision;

/// The format version this code reads and writes.
pub const FORMAT: u32 = 1;

/// The largest recording read (bytes).
const MAX_BYTES: u64 = 256 << 20;

/// The first line of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// The format version.
    pub recording: u32,
    /// The suite whose items were asked.
    pub suite: String,
    /// When, RFC 3339.
    pub made_at: String,
    /// How: the command, the tool and its version.
    pub made_by: String,
    /// Where the answers come from and under what terms (endpoints, models, licences).
    pub provenance: String,
    /// Answers per agent and item.
    pub samples: u32,
    /// Items asked.
    pub items: usize,
    /// Each recorded agent: model, endpoint and the structured-output mode that worked.
    pub agents: BTreeMap<String, RecordedAgent>,
    /// Each agent's accuracy over its graded answers (malformed replies count as wrong,
    /// failed calls are not graded), over every sample.
    pub accuracy: BTreeMap<String, f64>,
}

/// One recorded agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedAgent {
    /// The model asked for.
    pub model: String,
    /// The endpoint.
    pub base_url: String,
    /// The structured-output mode its answers came in (when known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured_output: Option<String>,
    /// The system prompt it was asked under (when it had one of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// The sampling temperature of its first sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// The sampling temperature of its later samples, when it differed from the first's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub later_temperature: Option<f64>,
    /// The completion-token limit of each call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

/// One recorded answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recorded {
    /// The agent.
    pub agent: String,
    /// The item (the decision id).
    pub item: String,
    /// Which sample (0-based).
    pub sample: u32,
    /// The ballot (an abstention with its cause when the call failed).
    pub ballot: Ballot,
    /// How long the call took.
    pub latency_ms: u64,
    /// Prompt tokens.
    pub tokens_in: u32,
    /// Completion tokens.
    pub tokens_out: u32,
    /// The reply as the model wrote it (cut to 2,000 characters), when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

/// A recording, indexed by agent and item.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    /// Its header.
    pub header: Header,
    /// Every answer, in file order.
    pub answers: Vec<Recorded>,
    index: HashMap<(String, String), Vec<usize>>,
}

impl Recording {
    /// A recording of `answers` under `header`.
    pub fn new(header: Header, answers: Vec<Recorded>) -> Self {
        let mut index: HashMap<(String, String), Vec<usize>> = HashMap::new();
        for (i, a) in answers.iter().enumerate() {
            index
                .entry((a.agent.clone(), a.item.clone()))
                .or_default()
                .push(i);
        }
        for v in index.values_mut() {
            v.sort_by_key(|&i| answers[i].sample);
        }
        Self {
            header,
            answers,
            index,
        }
    }

    /// Reads a recording.
    ///
    /// # Errors
    /// An unreadable, oversized or malformed file, named with the line.
    pub fn read(path: &Path) -> Result<Self, String> {
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot read the recording {}: {e}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        if size > MAX_BYTES {
            return Err(format!(
                "{}: {size} bytes is more than a recording may hold ({MAX_BYTES})",
                path.display()
            ));
        }
        let mut lines = std::io::BufReader::new(file).lines();
        let first = lines
            .next()
            .ok_or_else(|| format!("{}: empty, not a recording", path.display()))?
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let header: Header = serde_json::from_str(&first)
            .map_err(|e| format!("{}:1: not a recording header: {e}", path.display()))?;
        if header.recording != FORMAT {
            return Err(format!(
                "{}:1: recording format {} (this conclave reads {FORMAT})",
                path.display(),
                header.recording
            ));
        }
        let mut answers = Vec::new();
        for (n, line) in lines.enumerate() {
            let line = line.map_err(|e| format!("{}:{}: {e}", path.display(), n + 2))?;
            if line.trim().is_empty() {
                continue;
            }
            let a: Recorded = serde_json::from_str(&line)
                .map_err(|e| format!("{}:{}: {e}", path.display(), n + 2))?;
            answers.push(a);
        }
        Ok(Self::new(header, answers))
    }

    /// Writes the recording (to a temporary file first, then renamed: a crash leaves the
    /// old file or the new one, never half of one).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let tmp = path.with_extension("jsonl.tmp");
        let fail = |e: std::io::Error| format!("cannot write {}: {e}", tmp.display());
        {
            let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(fail)?);
            let header = serde_json::to_string(&self.header).map_err(|e| e.to_string())?;
            writeln!(out, "{header}").map_err(fail)?;
            for a in &self.answers {
                let line = serde_json::to_string(a).map_err(|e| e.to_string())?;
                writeln!(out, "{line}").map_err(fail)?;
            }
            out.into_inner()
                .map_err(|e| fail(e.into_error()))?
                .sync_all()
                .map_err(fail)?;
        }
        std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// The recorded answers of `agent` to `item`, by sample.
    pub fn samples(&self, agent: &str, item: &str) -> Vec<&Recorded> {
        self.index
            .get(&(agent.to_owned(), item.to_owned()))
            .map(|v| v.iter().map(|&i| &self.answers[i]).collect())
            .unwrap_or_default()
    }

    /// The answer `agent` gives to `decision`: sample `seed mod samples` of its recorded
    /// answers to the item whose id is the decision's.
    pub fn answer(&self, agent: &str, decision: &Decision) -> Option<&Recorded> {
        let samples = self.samples(agent, &decision.id);
        if samples.is_empty() {
            return None;
        }
        Some(samples[(decision.seed % samples.len() as u64) as usize])
    }

    /// Median and 99th-percentile latency of an agent's answers, ms.
    pub fn latency(&self, agent: &str) -> (u64, u64) {
        let mut ms: Vec<u64> = self
            .answers
            .iter()
            .filter(|a| a.agent == agent)
            .map(|a| a.latency_ms)
            .collect();
        if ms.is_empty() {
            return (800, 3000);
        }
        ms.sort_unstable();
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        (at(0.5).max(1), at(0.99).max(1))
    }
}

/// The ballot a replay agent `id` gives for `decision` from `recording` (answers of `of`).
pub fn replay_ballot(
    recording: &Recording,
    of: &str,
    id: &str,
    decision: &Decision,
) -> (Ballot, u64) {
    match recording.answer(of, decision) {
        Some(r) => {
            let mut b = r.ballot.clone();
            b.agent = id.to_owned();
            (b, r.latency_ms)
        }
        None => (
            Ballot::abstain(id, Abstention::Declined).with_cause(Cause::new(
                CauseKind::Other,
                format!(
                    "the recording holds no answer of \"{of}\" to \"{}\"",
                    decision.id
                ),
            )),
            0,
        ),
    }
}

/// Recordings read so far, by path: one read per process, shared by every agent replaying it.
pub fn load(path: &Path) -> Result<Arc<Recording>, String> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Arc<Recording>>>> = OnceLock::new();
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Ok(c) = cache.lock()
        && let Some(r) = c.get(&key)
    {
        return Ok(r.clone());
    }
    let r = Arc::new(Recording::read(path)?);
    if let Ok(mut c) = cache.lock() {
        c.insert(key, r.clone());
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            recording: FORMAT,
            suite: "s".into(),
            made_at: "2026-12-04T00:00:00Z".into(),
            made_by: "test".into(),
            provenance: "test".into(),
            samples: 2,
            items: 1,
            agents: BTreeMap::new(),
            accuracy: BTreeMap::new(),
        }
    }

    fn rec(sample: u32, choice: &str) -> Recorded {
        Recorded {
            agent: "m".into(),
            item: "q1".into(),
            sample,
            ballot: Ballot::choice("m", choice),
            latency_ms: 100 + u64::from(sample),
            tokens_in: 10,
            tokens_out: 5,
            raw: None,
        }
    }

    #[test]
    fn a_recording_round_trips_and_answers_by_seed() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("r.jsonl");
        let r = Recording::new(header(), vec![rec(1, "b"), rec(0, "a")]);
        r.write(&path).expect("write");
        let back = Recording::read(&path).expect("read");
        assert_eq!(back, r);
        let d = |seed| Decision::choice("q1", "x", "?", ["a", "b"]).with_seed(seed);
        let (b0, l0) = replay_ballot(&back, "m", "replayer", &d(0));
        let (b1, _) = replay_ballot(&back, "m", "replayer", &d(1));
        assert_eq!((b0, l0), (Ballot::choice("replayer", "a"), 100));
        assert_eq!(b1, Ballot::choice("replayer", "b"));
        let (missing, _) = replay_ballot(
            &back,
            "m",
            "replayer",
            &Decision::choice("q9", "x", "?", ["a"]),
        );
        assert!(missing.is_abstention() && missing.cause.is_some());
    }

    #[test]
    fn bad_recordings_are_refused_with_the_line() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("r.jsonl");
        std::fs::write(&path, "").expect("write");
        assert!(Recording::read(&path).is_err());
        let h = serde_json::to_string(&header()).expect("json");
        std::fs::write(&path, format!("{h}\n{{\"agent\": 3}}\n")).expect("write");
        let e = Recording::read(&path).expect_err("bad line");
        assert!(e.contains(":2:"), "{e}");
    }
}
