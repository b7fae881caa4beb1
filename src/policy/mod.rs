//! Governance as checked data: agent definitions (`agents/*.toml`) and policies
//! (`policies/*.toml`), loaded in two phases — raw serde structures with spans, then
//! validated types — with diagnostics that point at the offending text.
//!
//! Routing denies by default: a decision no policy covers is refused.
//!
//! ```
//! use conclave::aggregate::Kind;
//! use conclave::policy::{Catalog, SourceFile};
//!
//! let agents = SourceFile::new("agents/a.toml", r#"
//! [[agent]]
//! id = "econ"
//! kind = "scripted"
//! scripted = { competence = { default = 0.8 } }
//! "#);
//! let policy = SourceFile::new("policies/p.toml", r#"
//! id = "p"
//! description = "One agent decides."
//! applies = { domains = ["finance"], kinds = ["choice"] }
//! pool = { agents = ["econ"] }
//! rule = { name = "plurality" }
//! quorum = { ballots = 1 }
//! "#);
//! let catalog = Catalog::load(&[agents], &[policy]).map_err(|d| format!("{} problems", d.len()))?;
//! assert_eq!(catalog.route("finance", Kind::Choice)?.id(), "p");
//! assert!(catalog.route("medicine", Kind::Choice).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod build;
mod explain;
pub mod raw;

pub use build::{PolicyBuilder, PolicyError, Problem, Section};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::aggregate::{Kind, Rule};
pub use raw::{
    AgentKind, AuditLevel, Behaviour, Budget, Confidence, Deliberation, Latency, Price,
    Provisional, Stakes, Stance, StructuredOutput, Thresholds, TotalBudget,
};

/// The largest reply an OpenAI-compatible agent reads by default (1 MiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1 << 20;

/// The JSON Schema of policy files (`policy = true`) or agent files, pretty-printed with a
/// trailing newline: what `conclave policy schema` prints and `policies/schema.json` /
/// `agents/schema.json` hold.
pub fn schema_json(policy: bool) -> String {
    let schema = if policy {
        schemars::schema_for!(raw::RawPolicy)
    } else {
        schemars::schema_for!(raw::AgentsFile)
    };
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}

/// A file's name and text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Where it came from.
    pub path: PathBuf,
    /// Its contents.
    pub text: Arc<str>,
}

impl SourceFile {
    /// Whether the file defines agents (it has `[[agent]]` tables) rather than a policy.
    pub fn is_agent_file(&self) -> bool {
        self.text
            .lines()
            .any(|l| l.trim_start().starts_with("[[agent]]"))
    }

    /// A source from a path and its text.
    pub fn new(path: impl Into<PathBuf>, text: impl Into<Arc<str>>) -> Self {
        Self {
            path: path.into(),
            text: text.into(),
        }
    }

    /// Reads a file.
    ///
    /// # Errors
    /// A diagnostic naming the file if it cannot be read as UTF-8 text.
    pub fn read(path: &Path) -> Result<Self, Box<PolicyDiagnostic>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self::new(path, text)),
            Err(e) => Err(Box::new(PolicyDiagnostic::new(
                "io",
                &Self::new(path, ""),
                None,
                format!("cannot read {}: {e}", path.display()),
            ))),
        }
    }
}

/// One problem in a policy or agent file, with the span of the offending text.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyDiagnostic {
    /// A stable code, e.g. `policy::unknown-agent`.
    pub code: String,
    /// What is wrong.
    pub message: String,
    /// The file.
    pub path: PathBuf,
    /// 1-based line of the offending text (0 if none).
    pub line: usize,
    /// 1-based column (in characters) of the offending text (0 if none).
    pub column: usize,
    /// What to do about it.
    pub help: Option<String>,
    #[serde(skip)]
    span: Option<Range<usize>>,
    #[serde(skip)]
    label: String,
    #[serde(skip)]
    source: Source,
}

/// The file's text, named for miette's renderer when that feature is on.
#[cfg(feature = "miette")]
type Source = miette::NamedSource<Arc<str>>;
#[cfg(not(feature = "miette"))]
type Source = Arc<str>;

impl PolicyDiagnostic {
    fn new(
        code: &str,
        file: &SourceFile,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Self {
        let message = crate::ballot::printable(&message.into(), 500);
        let (line, column) = span
            .as_ref()
            .map_or((0, 0), |s| line_col(&file.text, s.start));
        Self {
            code: code.to_owned(),
            label: message.clone(),
            message,
            path: file.path.clone(),
            line,
            column,
            help: None,
            span,
            #[cfg(feature = "miette")]
            source: miette::NamedSource::new(file.path.display().to_string(), file.text.clone()),
            #[cfg(not(feature = "miette"))]
            source: file.text.clone(),
        }
    }

    fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Keeps the position but never shows the offending text (it may hold a secret).
    fn redacted(mut self) -> Self {
        self.span = None;
        self.message = format!(
            "{} (at {}:{}:{})",
            self.message,
            self.path.display(),
            self.line,
            self.column
        );
        self
    }

    fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// The diagnostic rendered as text with the offending line underlined, no colours.
    pub fn render(&self) -> String {
        // The source is drawn only for lines a terminal can show (the renderer also fails on
        // columns past 65,535): an overlong line gets the one-line form.
        #[cfg(feature = "miette")]
        let text: &str = self.source.inner();
        #[cfg(not(feature = "miette"))]
        let text: &str = &self.source;
        let longest = text.lines().map(str::len).max().unwrap_or(0);
        if longest > MAX_DRAWN_LINE {
            let mut out = format!("{}: {}", self.code, self.one_line());
            if let Some(h) = &self.help {
                out += &format!("\n  help: {h}");
            }
            return out
                + &format!("\n  (the source is not shown: it has a line of {longest} bytes)");
        }
        self.drawn()
    }

    /// The source drawn with the span underlined (miette's graphical handler, feature `cli`).
    #[cfg(feature = "cli")]
    fn drawn(&self) -> String {
        let mut out = String::new();
        let handler =
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
                .with_width(100);
        if handler.render_report(&mut out, self).is_err() {
            out = self.one_line();
        }
        out
    }

    /// Without the graphical handler (lean builds): the one-line form and the help.
    #[cfg(not(feature = "cli"))]
    fn drawn(&self) -> String {
        let mut out = self.one_line();
        if let Some(h) = &self.help {
            out += &format!("\n  help: {h}");
        }
        out
    }
}

/// The longest source line a diagnostic draws.
const MAX_DRAWN_LINE: usize = 2000;

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl PolicyDiagnostic {
    /// `path:line:column: message` on one line.
    pub fn one_line(&self) -> String {
        if self.line > 0 {
            format!(
                "{}:{}:{}: {}",
                self.path.display(),
                self.line,
                self.column,
                self.message
            )
        } else {
            format!("{}: {}", self.path.display(), self.message)
        }
    }
}

impl fmt::Display for PolicyDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PolicyDiagnostic {}

#[cfg(feature = "miette")]
impl miette::Diagnostic for PolicyDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(&self.code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.span
            .as_ref()
            .map(|_| &self.source as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let span = self.span.clone()?;
        Some(Box::new(std::iter::once(
            miette::LabeledSpan::new_with_span(
                Some(self.label.clone()),
                span.start..span.end.max(span.start),
            ),
        )))
    }
}

/// A validated agent definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentSpec {
    /// Unique id.
    pub id: String,
    /// How it is reached.
    #[serde(skip)]
    pub kind: AgentKind,
    /// Model name (openai agents).
    pub model: Option<String>,
    /// Base URL including `/v1` (openai agents).
    pub base_url: Option<String>,
    /// Name of the environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// System prompt.
    pub system_prompt: Option<String>,
    /// Sampling temperature.
    pub temperature: f64,
    /// Domains it knows.
    pub domains: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Model family.
    pub family: Option<String>,
    /// Dollars per 1,000 prompt tokens.
    pub price_in_per_1k: f64,
    /// Dollars per 1,000 completion tokens.
    pub price_out_per_1k: f64,
    /// Largest answer, tokens.
    pub max_tokens: u32,
    /// Per-call timeout, ms.
    pub timeout_ms: u64,
    /// Calls in flight at once.
    pub max_concurrency: u32,
    /// Calls started per minute at most.
    pub rate_per_minute: Option<u32>,
    /// Replay agents: the recording and whose answers in it.
    pub replay: Option<ReplaySpec>,
    /// How the ballot's structure is asked of the endpoint (openai agents).
    pub structured_output: StructuredOutput,
    /// The largest reply read from the endpoint, in bytes.
    pub max_response_bytes: u64,
    /// An embeddings model on the same endpoint, for free-text (vector) decisions.
    pub embedding_model: Option<String>,
    /// Simulation settings (scripted agents).
    #[serde(skip)]
    pub scripted: Option<ScriptedSpec>,
    /// The file that defines it.
    pub source: PathBuf,
}

/// Where a replay agent's answers come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplaySpec {
    /// The recording (resolved against the agent file's folder).
    pub recording: PathBuf,
    /// Whose answers in it.
    pub of: String,
}

/// A validated simulated agent.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptedSpec {
    /// Competence per domain (`default` for the rest).
    pub competence: BTreeMap<String, f64>,
    /// Confidence model.
    pub confidence: Confidence,
    /// Latency.
    pub latency: Latency,
    /// Behaviour.
    pub behaviour: Behaviour,
    /// How it moves in deliberation rounds.
    pub stance: Stance,
}

impl ScriptedSpec {
    /// The competence in `domain` (else `default`, else 0.5).
    pub fn competence_in(&self, domain: &str) -> f64 {
        self.competence
            .get(domain)
            .or_else(|| self.competence.get("default"))
            .copied()
            .unwrap_or(0.5)
    }
}

impl AgentSpec {
    /// What `tokens_in` prompt and `tokens_out` completion tokens cost at this agent's prices.
    pub fn cost(&self, tokens_in: u32, tokens_out: u32) -> f64 {
        (f64::from(tokens_in) * self.price_in_per_1k
            + f64::from(tokens_out) * self.price_out_per_1k)
            / 1000.0
    }

    /// Projected cost of one call with `prompt_tokens` of prompt and a full answer.
    pub fn call_cost(&self, prompt_tokens: u32) -> f64 {
        self.cost(prompt_tokens, self.max_tokens)
    }
}

/// When the robust rule takes over.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RobustSwitch {
    /// The robust rule.
    pub rule: Rule,
    /// Expected Byzantine fraction.
    pub byzantine_fraction: f64,
    /// Faulty agents to tolerate.
    pub tolerate: Option<u32>,
    /// Stakes.
    #[serde(skip)]
    pub stakes: Stakes,
}

impl RobustSwitch {
    /// Whether the robust rule replaces the weighted vote: a Byzantine fraction above 25 %
    /// **or** high stakes (digest A.6, current text).
    pub fn active(&self) -> bool {
        self.byzantine_fraction > 0.25 || self.stakes == Stakes::High
    }
}

/// A validated policy: only this travels on to the Governor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    /// Unique id.
    pub(crate) id: String,
    /// What it is for.
    pub(crate) description: String,
    /// Domains it governs.
    pub(crate) domains: Vec<String>,
    /// Decision kinds it governs.
    pub(crate) kinds: Vec<Kind>,
    /// The agents that may vote (resolved from ids and tags), in file order.
    pub(crate) pool: Vec<String>,
    /// Fewest agents.
    pub(crate) pool_min: u32,
    /// Most agents asked per decision.
    pub(crate) pool_max: u32,
    /// At most this many agents per model family.
    pub(crate) max_per_family: Option<u32>,
    /// Selection weights (expertise, trust), summing to 1.
    pub(crate) selection: (f64, f64),
    /// The default rule.
    pub(crate) rule: Rule,
    /// WBFT α.
    pub(crate) alpha: f64,
    /// When a robust rule takes over.
    pub(crate) robust: Option<RobustSwitch>,
    /// Ballots required.
    pub(crate) quorum_ballots: u32,
    /// Share of the pool's weight required.
    pub(crate) quorum_weight_share: f64,
    /// Effective independent voters required.
    pub(crate) quorum_n_eff: f64,
    /// Early stopping risk δ, if enabled.
    pub(crate) early_stop_risk: Option<f64>,
    /// Thresholds.
    #[serde(skip)]
    pub(crate) thresholds: Thresholds,
    /// Budget.
    #[serde(skip)]
    pub(crate) budget: Budget,
    /// Trust floor for admission.
    pub(crate) trust_floor: f64,
    /// How provisional agents count.
    #[serde(skip)]
    pub(crate) provisional: Provisional,
    /// Agents still being measured (provisional, or under test) are asked on every decision
    /// and waited for.
    pub(crate) measure_provisional: bool,
    /// The arbiter agent.
    pub(crate) arbiter: Option<String>,
    /// Whether weak decisions go to a human (else they are refused).
    pub(crate) human: bool,
    /// Decisions escalate while more than this share of the pool is quarantined or ejected
    /// (or below the trust floor).
    pub(crate) lost_majority: f64,
    /// Decisions escalate while the domain's verdict monitor is at or above this limit.
    pub(crate) verdict_alarm: Option<f64>,
    /// Deliberation rounds, if the policy deliberates.
    #[serde(skip)]
    pub(crate) deliberation: Option<Deliberation>,
    pub(crate) limits: crate::decision::Limits,
    /// Audit level.
    #[serde(skip)]
    pub(crate) audit: AuditLevel,
    /// The file.
    pub(crate) source: PathBuf,
    /// SHA-256 of the file, hex (recorded with every decision).
    pub(crate) hash: String,
}

impl Policy {
    /// Deliberation rounds, if the policy deliberates.
    pub fn deliberation(&self) -> Option<Deliberation> {
        self.deliberation
    }

    /// SHA-256 of the file, hex (recorded with every decision).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Unique id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What it is for.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Domains it governs.
    pub fn domains(&self) -> &[String] {
        &self.domains
    }

    /// Decision kinds it governs.
    pub fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

    /// The agents that may vote (resolved from ids and tags), in file order.
    pub fn pool(&self) -> &[String] {
        &self.pool
    }

    /// Fewest agents.
    pub fn pool_min(&self) -> u32 {
        self.pool_min
    }

    /// Most agents asked per decision.
    pub fn pool_max(&self) -> u32 {
        self.pool_max
    }

    /// At most this many agents per model family.
    pub fn max_per_family(&self) -> Option<u32> {
        self.max_per_family
    }

    /// Selection weights (expertise, trust), summing to 1.
    pub fn selection(&self) -> (f64, f64) {
        self.selection
    }

    /// The default rule.
    pub fn rule(&self) -> Rule {
        self.rule
    }

    /// WBFT α.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// When a robust rule takes over.
    pub fn robust(&self) -> Option<&RobustSwitch> {
        self.robust.as_ref()
    }

    /// Ballots required.
    pub fn quorum_ballots(&self) -> u32 {
        self.quorum_ballots
    }

    /// Share of the pool's weight required.
    pub fn quorum_weight_share(&self) -> f64 {
        self.quorum_weight_share
    }

    /// Effective independent voters required.
    pub fn quorum_n_eff(&self) -> f64 {
        self.quorum_n_eff
    }

    /// Early stopping risk δ, if enabled.
    pub fn early_stop_risk(&self) -> Option<f64> {
        self.early_stop_risk
    }

    /// Thresholds.
    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// Budget.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// Trust floor for admission.
    pub fn trust_floor(&self) -> f64 {
        self.trust_floor
    }

    /// How provisional agents count.
    pub fn provisional(&self) -> Provisional {
        self.provisional
    }

    /// Agents still being measured (provisional, or under test) are asked on every decision
    /// and waited for.
    pub fn measure_provisional(&self) -> bool {
        self.measure_provisional
    }

    /// The largest decision this policy takes.
    pub fn limits(&self) -> crate::decision::Limits {
        self.limits
    }

    /// The arbiter agent.
    pub fn arbiter(&self) -> Option<&str> {
        self.arbiter.as_deref()
    }

    /// Whether weak decisions go to a human (else they are refused).
    pub fn human(&self) -> bool {
        self.human
    }

    /// Decisions escalate while more than this share of the pool is quarantined or ejected
    /// (or below the trust floor).
    pub fn lost_majority(&self) -> f64 {
        self.lost_majority
    }

    /// Decisions escalate while the domain's verdict monitor is at or above this limit.
    pub fn verdict_alarm(&self) -> Option<f64> {
        self.verdict_alarm
    }

    /// Audit level.
    pub fn audit(&self) -> AuditLevel {
        self.audit
    }

    /// The file.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Whether the policy governs decisions of this domain and kind.
    pub fn covers(&self, domain: &str, kind: Kind) -> bool {
        self.domains.iter().any(|d| d == domain) && self.kinds.contains(&kind)
    }

    /// The policy in plain words: who votes, how, when it escalates, what it costs at most.
    pub fn explain(&self, agents: &BTreeMap<String, AgentSpec>) -> String {
        explain::explain(self, agents)
    }
}

/// A decision no policy covers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refused: no policy governs {kind} decisions in domain \"{domain}\" (conclave denies by default)"
)]
pub struct Refused {
    /// The domain asked for.
    pub domain: String,
    /// The kind asked for.
    pub kind: String,
}

/// Every agent and policy, validated together.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Agents by id.
    pub agents: BTreeMap<String, AgentSpec>,
    /// Policies, in load order.
    pub policies: Vec<Policy>,
}

impl Catalog {
    /// Loads and checks agent and policy files together (policies name agents).
    ///
    /// # Errors
    /// Every diagnostic found, in file order; nothing is returned unless all files pass.
    pub fn load(
        agent_files: &[SourceFile],
        policy_files: &[SourceFile],
    ) -> Result<Self, Vec<PolicyDiagnostic>> {
        let mut diags = Vec::new();
        let mut agents = BTreeMap::new();
        let mut agent_sites: BTreeMap<String, (PathBuf, usize)> = BTreeMap::new();
        for file in agent_files {
            load_agents(file, &mut agents, &mut agent_sites, &mut diags);
        }
        let mut policies: Vec<Policy> = Vec::new();
        let mut claims: BTreeMap<(String, String), (String, PathBuf)> = BTreeMap::new();
        let mut ids: BTreeMap<String, PathBuf> = BTreeMap::new();
        for file in policy_files {
            if let Some((p, spans)) = load_policy(file, &agents, &mut diags) {
                check_claims(file, &p, spans, &mut claims, &mut ids, &mut diags);
                policies.push(p);
            }
        }
        if diags.is_empty() {
            Ok(Self { agents, policies })
        } else {
            Err(diags)
        }
    }

    /// Loads every `*.toml` of the two folders (`schema.json` and other files are ignored).
    /// The two may be one folder: agent files are told apart by their `[[agent]]` tables.
    ///
    /// # Errors
    /// As [`Catalog::load`], plus unreadable files.
    pub fn load_dirs(
        agents_dir: &Path,
        policies_dir: &Path,
    ) -> Result<Self, Vec<PolicyDiagnostic>> {
        let (mut agents, mut diags) = read_dir_toml(agents_dir);
        let (mut policies, more) = read_dir_toml(policies_dir);
        diags.extend(more);
        let same = match (agents_dir.canonicalize(), policies_dir.canonicalize()) {
            (Ok(a), Ok(p)) => a == p,
            _ => agents_dir == policies_dir,
        };
        if same {
            agents.retain(SourceFile::is_agent_file);
            policies.retain(|f| !f.is_agent_file());
        }
        match Self::load(&agents, &policies) {
            Ok(c) if diags.is_empty() => Ok(c),
            Ok(_) => Err(diags),
            Err(d) => {
                diags.extend(d);
                Err(diags)
            }
        }
    }

    /// The policy that governs decisions of `kind` in `domain`.
    ///
    /// # Errors
    /// [`Refused`] when none does: there is no default policy.
    pub fn route(&self, domain: &str, kind: Kind) -> Result<&Policy, Refused> {
        self.policies
            .iter()
            .find(|p| p.covers(domain, kind))
            .ok_or_else(|| Refused {
                domain: domain.to_owned(),
                kind: kind.as_str().to_owned(),
            })
    }

    /// The policy with this id.
    pub fn policy(&self, id: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.id == id)
    }
}

/// The `*.toml` files of a folder, sorted (a path to one file: that file); a missing folder
/// has none.
pub fn read_dir_toml(dir: &Path) -> (Vec<SourceFile>, Vec<PolicyDiagnostic>) {
    let mut files = Vec::new();
    let mut diags = Vec::new();
    if dir.is_file() {
        match SourceFile::read(dir) {
            Ok(f) => files.push(f),
            Err(d) => diags.push(*d),
        }
        return (files, diags);
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            let missing = e.kind() == std::io::ErrorKind::NotFound;
            let file = SourceFile {
                path: dir.to_path_buf(),
                text: Arc::from(""),
            };
            let message = if missing {
                format!("{} does not exist", dir.display())
            } else {
                format!("{} cannot be read: {e}", dir.display())
            };
            diags.push(
                PolicyDiagnostic::new("policy::missing", &file, None, message)
                    .with_help("give a folder of .toml files or one file (--agents, --policies, or conclave.toml)"),
            );
            return (files, diags);
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    for p in paths {
        match SourceFile::read(&p) {
            Ok(f) => files.push(f),
            Err(d) => diags.push(*d),
        }
    }
    (files, diags)
}

fn toml_error(file: &SourceFile, e: &toml::de::Error, what: &str) -> PolicyDiagnostic {
    let message = e.message().trim().to_owned();
    let help = if message.starts_with("unknown field") {
        Some(format!(
            "see the {what} schema (`conclave policy schema`) for the fields this table takes"
        ))
    } else if message.starts_with("missing field") {
        Some(format!("every {what} needs this field"))
    } else {
        None
    };
    let d = PolicyDiagnostic::new("policy::syntax", file, e.span(), message);
    match help {
        Some(h) => d.with_help(h),
        None => d,
    }
}

fn load_agents(
    file: &SourceFile,
    agents: &mut BTreeMap<String, AgentSpec>,
    sites: &mut BTreeMap<String, (PathBuf, usize)>,
    diags: &mut Vec<PolicyDiagnostic>,
) {
    let raw: raw::AgentsFile = match toml::from_str(&file.text) {
        Ok(r) => r,
        Err(e) => {
            diags.push(toml_error(file, &e, "agent file"));
            return;
        }
    };
    for a in raw.agents {
        if let Some(spec) = load_agent(file, a, sites, diags) {
            agents.insert(spec.id.clone(), spec);
        }
    }
}

/// One agent definition checked; `None` with its diagnostics pushed.
fn load_agent(
    file: &SourceFile,
    a: raw::RawAgent,
    sites: &mut BTreeMap<String, (PathBuf, usize)>,
    diags: &mut Vec<PolicyDiagnostic>,
) -> Option<AgentSpec> {
    let id = a.id.get_ref().trim().to_owned();
    let d = |span: Range<usize>, msg: String| {
        PolicyDiagnostic::new("agent::invalid", file, Some(span), msg)
    };
    if id.is_empty() {
        diags.push(d(a.id.span(), "agent id is empty".into()));
        return None;
    }
    if let Some((path, line)) = sites.get(&id) {
        diags.push(
            d(a.id.span(), format!("agent \"{id}\" is defined twice")).with_help(format!(
                "first defined in {} at line {line}",
                path.display()
            )),
        );
        return None;
    }
    let before = diags.len();
    if let Some(t) = &a.temperature
        && !(0.0..=2.0).contains(t.get_ref())
    {
        diags.push(d(
            t.span(),
            format!("temperature {} is outside 0–2", t.get_ref()),
        ));
    }
    if let Some(env) = &a.api_key_env {
        let name = env.get_ref();
        if name.starts_with("sk-")
            || name.len() > 64
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            diags.push(
                PolicyDiagnostic::new("agent::api-key", file, Some(env.span()), "api_key_env must name an environment variable, not hold a key")
                    .with_help("write the variable's name, e.g. api_key_env = \"OPENAI_API_KEY\", and keep the key in the environment (the value is not shown here, in case it is a key)")
                    .redacted(),
            );
        }
    }
    let scripted = simulation_of(file, &a, &id, diags);
    if a.rate_per_minute == Some(0) {
        diags.push(d(
            a.id.span(),
            format!(
                "agent \"{id}\": rate_per_minute must be at least 1 (leave it out for no limit)"
            ),
        ));
    }
    if a.max_response_bytes.is_some_and(|b| b < 1024) {
        diags.push(d(
            a.id.span(),
            format!("agent \"{id}\": max_response_bytes must be at least 1024"),
        ));
    }
    if let Some(p) = a.price
        && !(p.input_per_1k >= 0.0 && p.output_per_1k >= 0.0)
    {
        diags.push(d(
            a.id.span(),
            format!("agent \"{id}\": prices must be ≥ 0"),
        ));
    }
    if diags.len() > before {
        return None;
    }
    let (line, _) = line_col(&file.text, a.id.span().start);
    sites.insert(id.clone(), (file.path.clone(), line));
    let replay = a.recording.as_ref().map(|r| ReplaySpec {
        recording: file
            .path
            .parent()
            .map_or_else(|| PathBuf::from(r), |dir| dir.join(r)),
        of: a.of.clone().unwrap_or_else(|| id.clone()),
    });
    // A replay agent's recording must hold it; its recorded accuracy and latency are the
    // agent's competence and latency.
    let mut scripted = scripted;
    if let (Some(r), Some(s)) = (&replay, scripted.as_mut())
        && let Err(e) = replay_measures(r, &id, s)
    {
        diags.push(d(a.id.span(), e));
        return None;
    }
    Some(AgentSpec {
        id,
        kind: a.kind,
        model: a.model,
        base_url: a.base_url.map(Spanned::into_inner),
        api_key_env: a.api_key_env.map(Spanned::into_inner),
        system_prompt: a.system_prompt,
        temperature: a.temperature.map_or(0.0, Spanned::into_inner),
        domains: a.domains,
        tags: a.tags,
        family: a.family,
        price_in_per_1k: a.price.map_or(0.0, |p| p.input_per_1k),
        price_out_per_1k: a.price.map_or(0.0, |p| p.output_per_1k),
        max_tokens: a.max_tokens.unwrap_or(512),
        timeout_ms: a.timeout_ms.unwrap_or(30_000),
        max_concurrency: a.max_concurrency.unwrap_or(4),
        rate_per_minute: a.rate_per_minute,
        replay,
        structured_output: a.structured_output.unwrap_or_default(),
        max_response_bytes: a.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
        embedding_model: a.embedding_model,
        scripted,
        source: file.path.clone(),
    })
}

/// An agent's simulation settings: a scripted agent's own, a replay agent's placeholder
/// (filled from its recording); none for an endpoint agent. Problems are diagnosed.
fn simulation_of(
    file: &SourceFile,
    a: &raw::RawAgent,
    id: &str,
    diags: &mut Vec<PolicyDiagnostic>,
) -> Option<ScriptedSpec> {
    let d = |span: Range<usize>, msg: String| {
        PolicyDiagnostic::new("agent::invalid", file, Some(span), msg)
    };
    match (a.kind, &a.scripted) {
        (AgentKind::Scripted, None) => {
            diags.push(d(a.id.span(), format!("scripted agent \"{id}\" needs a [agent.scripted] table")).with_help(
                "give at least its competence, e.g. scripted = { competence = { default = 0.8 } }",
            ));
            None
        }
        (AgentKind::Openai, Some(s)) => {
            diags.push(d(
                s.span(),
                "an openai agent takes no [agent.scripted] table".into(),
            ));
            None
        }
        (AgentKind::Openai, None) => {
            if a.model.is_none() {
                diags.push(d(
                    a.id.span(),
                    format!("openai agent \"{id}\" needs a model"),
                ));
            }
            // A server of one's own (llama.cpp, Ollama, vLLM) may need no key; OpenAI's does.
            if a.api_key_env.is_none() && a.base_url.is_none() {
                diags.push(d(a.id.span(), format!("openai agent \"{id}\" needs api_key_env")).with_help(
                    "name the environment variable that holds its key, e.g. api_key_env = \"OPENAI_API_KEY\" (an agent with its own base_url may go without one)",
                ));
            }
            if let Some(url) = &a.base_url
                && !(url.get_ref().starts_with("http://") || url.get_ref().starts_with("https://"))
            {
                diags.push(d(
                    url.span(),
                    "base_url must start with http:// or https://".into(),
                ));
            }
            None
        }
        (AgentKind::External, scripted) => {
            if let Some(s) = scripted {
                diags.push(d(
                    s.span(),
                    "an external agent takes no [agent.scripted] table: the application gives its service".into(),
                ));
            }
            if a.model.is_some() || a.base_url.is_some() || a.api_key_env.is_some() {
                diags.push(d(a.id.span(), format!("external agent \"{id}\" takes no model, base_url or api_key_env: its service is the application's own code")).with_help(
                    "give it with GovernorBuilder::agent(spec, service), or make it kind = \"openai\"",
                ));
            }
            None
        }
        (AgentKind::Replay, scripted) => {
            if let Some(s) = scripted {
                diags.push(d(
                    s.span(),
                    "a replay agent takes no [agent.scripted] table: its answers, accuracy and latency come from the recording".into(),
                ));
            }
            if a.recording.is_none() {
                diags.push(d(a.id.span(), format!("replay agent \"{id}\" needs a recording")).with_help(
                    "name the file `conclave record` wrote, relative to this agent file, e.g. recording = \"../evals/recordings/local.jsonl\"",
                ));
            }
            // Competence and latency are the recording's (read below).
            Some(ScriptedSpec {
                competence: [("default".to_owned(), 0.5)].into(),
                confidence: Confidence::Calibrated,
                latency: Latency::default(),
                behaviour: Behaviour::Honest,
                stance: crate::policy::Stance::default(),
            })
        }
        (AgentKind::Scripted, Some(s)) => {
            let s = s.get_ref();
            let mut competence = BTreeMap::new();
            for (domain, p) in &s.competence {
                if !(0.0..=1.0).contains(p.get_ref()) {
                    diags.push(d(
                        p.span(),
                        format!("competence {} in {domain} is outside 0–1", p.get_ref()),
                    ));
                }
                competence.insert(domain.clone(), *p.get_ref());
            }
            if s.latency.p99_ms < s.latency.median_ms {
                diags.push(d(
                    a.id.span(),
                    format!("agent \"{id}\": latency p99_ms is below median_ms"),
                ));
            }
            Some(ScriptedSpec {
                competence,
                confidence: s.confidence.clone(),
                latency: s.latency,
                behaviour: s.behaviour.clone(),
                stance: s.stance,
            })
        }
    }
}

/// A replay agent's competence and latency, from its recording; why it cannot be replayed.
fn replay_measures(r: &ReplaySpec, id: &str, s: &mut ScriptedSpec) -> Result<(), String> {
    match crate::recording::load(&r.recording) {
        Err(e) => Err(format!("agent \"{id}\": {e}")),
        Ok(rec) if !rec.answers.iter().any(|x| x.agent == r.of) => Err(format!(
            "agent \"{id}\": the recording {} holds no answers of \"{}\" (it holds: {})",
            r.recording.display(),
            r.of,
            rec.header
                .agents
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Ok(rec) => {
            let (median_ms, p99_ms) = rec.latency(&r.of);
            let accuracy = rec.header.accuracy.get(&r.of).copied().unwrap_or(0.5);
            s.competence = [("default".to_owned(), accuracy)].into();
            s.latency = Latency { median_ms, p99_ms };
            Ok(())
        }
    }
}

fn param_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// Where a policy's id and `applies` table are, for the checks across files.
struct ClaimSpans {
    id: Range<usize>,
    applies: Range<usize>,
}

fn load_policy(
    file: &SourceFile,
    agents: &BTreeMap<String, AgentSpec>,
    diags: &mut Vec<PolicyDiagnostic>,
) -> Option<(Policy, ClaimSpans)> {
    let raw: raw::RawPolicy = match toml::from_str(&file.text) {
        Ok(r) => r,
        Err(e) => {
            diags.push(toml_error(file, &e, "policy"));
            return None;
        }
    };
    let before = diags.len();
    let (draft, rule_ok) = draft_of(file, &raw, diags);
    let resolved = diags.len() == before;
    let hash = crate::audit::hex(&Sha256::digest(file.text.as_bytes()));
    match draft.validate(agents, file.path.clone(), hash) {
        Ok(policy) if resolved => Some((
            policy,
            ClaimSpans {
                id: raw.id.span(),
                applies: raw.applies.span(),
            },
        )),
        Ok(_) => None,
        Err(problems) => {
            for p in problems {
                // A rule that did not parse was replaced to check the rest; a pool whose ids
                // were all unknown is not reported empty as well.
                let skip = (!rule_ok && p.section == build::Section::Rule)
                    || (!resolved && p.code == "policy::empty-pool");
                if !skip {
                    diags.push(diagnostic_of(file, &raw, p));
                }
            }
            None
        }
    }
}

/// The file's settings as a [`build::Draft`]; names that do not resolve (rules) are
/// diagnosed here, with their spans. Also whether the rule parsed.
fn draft_of(
    file: &SourceFile,
    raw: &raw::RawPolicy,
    diags: &mut Vec<PolicyDiagnostic>,
) -> (build::Draft, bool) {
    let d = |code: &str, span: Range<usize>, msg: String| {
        PolicyDiagnostic::new(code, file, Some(span), msg)
    };
    let mut draft = build::Draft::new(raw.id.get_ref().clone());
    draft.policy.description.clone_from(&raw.description);
    let applies = raw.applies.get_ref();
    draft.policy.domains.clone_from(&applies.domains);
    draft.policy.kinds.clone_from(&applies.kinds);
    let pool = raw.pool.get_ref();
    draft.pool_ids = pool.agents.iter().map(|a| a.get_ref().clone()).collect();
    draft.pool_tags.clone_from(&pool.tags);
    draft.policy.pool_min = pool.min;
    draft.pool_max = pool.max;
    draft.policy.max_per_family = pool.max_per_family;
    if let Some(s) = &raw.selection {
        draft.policy.selection = (s.get_ref().expertise, s.get_ref().trust);
    }
    let rule_raw = raw.rule.get_ref();
    let params: Vec<(String, String)> = rule_raw
        .params
        .as_ref()
        .map(|p| {
            p.get_ref()
                .iter()
                .map(|(k, v)| (k.clone(), param_text(v)))
                .collect()
        })
        .unwrap_or_default();
    let params_ref: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let rule_ok = match Rule::parse(rule_raw.name.get_ref(), &params_ref) {
        Ok(r) => {
            draft.policy.rule = r;
            true
        }
        Err(e) => {
            let span = match e {
                crate::aggregate::TallyError::UnknownRule(_) => rule_raw.name.span(),
                _ => rule_raw
                    .params
                    .as_ref()
                    .map_or_else(|| rule_raw.name.span(), Spanned::span),
            };
            diags.push(d("policy::rule", span, e.to_string()));
            false
        }
    };
    if let Some(a) = &rule_raw.alpha {
        draft.policy.alpha = *a.get_ref();
    }
    if let Some(p) = &raw.protocol {
        let v = p.get_ref();
        match Rule::from_name(v.robust_rule.get_ref()) {
            Err(e) => diags.push(d("policy::rule", v.robust_rule.span(), e.to_string())),
            Ok(rule) => {
                draft.policy.robust = Some(RobustSwitch {
                    rule,
                    byzantine_fraction: v.byzantine_fraction,
                    tolerate: v.tolerate.as_ref().map(|t| *t.get_ref()),
                    stakes: v.stakes,
                });
            }
        }
    }
    let q = raw.quorum.get_ref();
    draft.policy.quorum_ballots = *q.ballots.get_ref();
    draft.policy.quorum_weight_share = q.weight_share.unwrap_or(0.0);
    draft.policy.quorum_n_eff = q.n_eff.unwrap_or(1.0);
    if let Some(t) = &raw.thresholds {
        draft.policy.thresholds = *t.get_ref();
    }
    if let Some(b) = &raw.budget {
        draft.policy.budget = *b.get_ref();
    }
    if let Some(e) = &raw.escalation {
        let v = e.get_ref();
        draft.policy.arbiter = v.arbiter.as_ref().map(|a| a.get_ref().clone());
        draft.policy.human = v.human;
        draft.policy.lost_majority = v.lost_majority;
        draft.policy.verdict_alarm = v.verdict_alarm;
    }
    draft.policy.early_stop_risk = match raw.early_stop {
        Some(e) if e.enabled => Some(e.risk),
        Some(_) => None,
        None => Some(0.01),
    };
    if let Some(a) = raw.admission {
        draft.policy.trust_floor = a.trust_floor;
        draft.policy.provisional = a.provisional;
        draft.policy.measure_provisional = a.measure_provisional;
    }
    draft.policy.deliberation = raw.deliberation.as_ref().map(|d| *d.get_ref());
    draft.policy.limits = raw.limits.unwrap_or_default();
    draft.policy.audit = raw.audit.unwrap_or_default();
    (draft, rule_ok)
}

/// A validation problem as a diagnostic pointing at its section of the file.
fn diagnostic_of(file: &SourceFile, raw: &raw::RawPolicy, p: build::Problem) -> PolicyDiagnostic {
    use build::Section as S;
    let rule = raw.rule.get_ref();
    // A section the file leaves out is pointed at by the policy's id.
    let or_id = |span: Option<Range<usize>>| span.unwrap_or_else(|| raw.id.span());
    let span = match p.section {
        S::Applies => raw.applies.span(),
        S::Pool => raw.pool.span(),
        S::PoolAgent(i) => raw
            .pool
            .get_ref()
            .agents
            .get(i)
            .map_or_else(|| raw.pool.span(), Spanned::span),
        S::Selection => or_id(raw.selection.as_ref().map(Spanned::span)),
        S::Rule => rule.name.span(),
        S::Alpha => rule
            .alpha
            .as_ref()
            .map_or_else(|| rule.name.span(), Spanned::span),
        S::Protocol => or_id(raw.protocol.as_ref().map(Spanned::span)),
        S::Tolerate => or_id(
            raw.protocol
                .as_ref()
                .and_then(|p| p.get_ref().tolerate.as_ref().map(Spanned::span)),
        ),
        S::Quorum => raw.quorum.span(),
        S::QuorumBallots => raw.quorum.get_ref().ballots.span(),
        S::Thresholds => or_id(raw.thresholds.as_ref().map(Spanned::span)),
        S::Budget => or_id(raw.budget.as_ref().map(Spanned::span)),
        S::Escalation => or_id(raw.escalation.as_ref().map(Spanned::span)),
        S::Arbiter => or_id(
            raw.escalation
                .as_ref()
                .and_then(|e| e.get_ref().arbiter.as_ref().map(Spanned::span)),
        ),
        S::Deliberation => or_id(raw.deliberation.as_ref().map(Spanned::span)),
        S::EarlyStop | S::Admission => raw.id.span(),
    };
    let mut diag = PolicyDiagnostic::new(p.code, file, Some(span), p.message);
    if let Some(l) = p.label {
        diag = diag.with_label(l);
    }
    if let Some(h) = p.help {
        diag = diag.with_help(h);
    }
    diag
}

/// Voters a robust rule needs to tolerate `f` arbitrary ballots, if it has a breakdown point.
fn pool_needed(rule: &Rule, f: u32) -> Option<u32> {
    match rule {
        // ⌊(n−1)/2⌋ ≥ f ⇔ n ≥ 2f + 1.
        Rule::Median
        | Rule::WeightedMedian
        | Rule::GeometricMedian { .. }
        | Rule::Plurality
        | Rule::WeightedPlurality => Some(2 * f + 1),
        // Krum's guarantee needs n > 2f + 2.
        Rule::Krum { .. } | Rule::MultiKrum { .. } => Some(2 * f + 3),
        // ⌊trim·n⌋ ≥ f (and trim < 0.5).
        Rule::TrimmedMean { trim } | Rule::WinsorizedMean { trim } => {
            if *trim <= 0.0 {
                return Some(u32::MAX);
            }
            let mut n = 1u32;
            while ((trim * f64::from(n)) as u32) < f && n < 100_000 {
                n += 1;
            }
            Some(n)
        }
        Rule::Mean | Rule::WeightedMean => (f > 0).then_some(u32::MAX),
        _ => None,
    }
}

fn check_claims(
    file: &SourceFile,
    p: &Policy,
    spans: ClaimSpans,
    claims: &mut BTreeMap<(String, String), (String, PathBuf)>,
    ids: &mut BTreeMap<String, PathBuf>,
    diags: &mut Vec<PolicyDiagnostic>,
) {
    let (id_span, applies_span) = (Some(spans.id), Some(spans.applies));
    if let Some(prev) = ids.insert(p.id.clone(), file.path.clone()) {
        diags.push(
            PolicyDiagnostic::new(
                "policy::duplicate-id",
                file,
                id_span,
                format!("policy id \"{}\" is used twice", p.id),
            )
            .with_help(format!("also the id of {}", prev.display())),
        );
    }
    let mut clashes = BTreeSet::new();
    for d in &p.domains {
        for k in &p.kinds {
            let key = (d.clone(), k.as_str().to_owned());
            match claims.get(&key) {
                Some((other, path)) if other != &p.id => {
                    clashes.insert((d.clone(), k.as_str(), other.clone(), path.clone()));
                }
                _ => {
                    claims.insert(key, (p.id.clone(), file.path.clone()));
                }
            }
        }
    }
    if let Some((domain, kind, other, path)) = clashes.into_iter().next() {
        diags.push(
            PolicyDiagnostic::new(
                "policy::overlap",
                file,
                applies_span,
                format!("policies \"{}\" and \"{other}\" both claim {kind} decisions in domain \"{domain}\"", p.id),
            )
            .with_help(format!("each decision must have exactly one policy; narrow this one or {}", path.display())),
        );
    }
}
