//! A policy in plain words, for `conclave policy explain`.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{AgentSpec, AuditLevel, Policy, Provisional, Stakes};
use crate::aggregate::Rule;

fn list(items: &[String]) -> String {
    match items.len() {
        0 => String::new(),
        1 => items[0].clone(),
        n => format!("{} and {}", items[..n - 1].join(", "), items[n - 1]),
    }
}

fn percent(x: f64) -> String {
    format!("{}%", (x * 100.0 * 10.0).round() / 10.0)
}

fn rule_words(rule: &Rule) -> String {
    match *rule {
        Rule::Plurality => "plurality (one agent, one vote)".into(),
        Rule::WeightedPlurality => "weighted plurality".into(),
        Rule::LogOdds { cap, .. } => format!(
            "log-odds weighted plurality (no agent above {} of the weight)",
            percent(cap)
        ),
        Rule::Supermajority { threshold } => {
            format!("a supermajority of {} of the weight", percent(threshold))
        }
        Rule::Borda => "the Borda count".into(),
        Rule::Copeland => "Copeland's pairwise method".into(),
        Rule::Schulze => "the Schulze method".into(),
        Rule::InstantRunoff => "instant runoff".into(),
        Rule::Minimax => "minimax (smallest worst pairwise defeat)".into(),
        Rule::Mean => "the mean".into(),
        Rule::WeightedMean => "the weighted mean".into(),
        Rule::Median => "the median".into(),
        Rule::WeightedMedian => "the weighted median".into(),
        Rule::TrimmedMean { trim } => {
            format!("the mean after trimming {} from each end", percent(trim))
        }
        Rule::WinsorizedMean { trim } => {
            format!("the mean after winsorizing {} at each end", percent(trim))
        }
        Rule::GeometricMedian { .. } => "the geometric median".into(),
        Rule::Krum { f } => format!("Krum (tolerating {f} arbitrary ballots)"),
        Rule::MultiKrum { f, .. } => format!("multi-Krum (tolerating {f} arbitrary ballots)"),
        Rule::OutlierDownweight { lambda } => {
            format!("the weighted mean after exponential outlier down-weighting (λ = {lambda})")
        }
    }
}

fn thousands(x: u64) -> String {
    let digits = x.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(x: u64) -> String {
    if x >= 1000 && x.is_multiple_of(1000) {
        format!("{} s", x / 1000)
    } else {
        format!("{x} ms")
    }
}

/// Who votes: the pool, its limits, admission and whether agents are simulated.
fn who(p: &Policy, agents: &BTreeMap<String, AgentSpec>) -> String {
    let mut who = if p.pool_max as usize == p.pool.len() {
        format!("Who votes: the {} agents {}.", p.pool.len(), list(&p.pool))
    } else {
        format!(
            "Who votes: up to {} of the {} agents {}.",
            p.pool_max,
            p.pool.len(),
            list(&p.pool)
        )
    };
    if let Some(n) = p.max_per_family {
        let _ = write!(
            who,
            " At most {n} agent{} of one model family {} part in a decision.",
            if n == 1 { "" } else { "s" },
            if n == 1 { "takes" } else { "take" }
        );
    }
    let _ = write!(
        who,
        " Agents are chosen by {} domain expertise and {} measured trust.",
        percent(p.selection.0),
        percent(p.selection.1)
    );
    if p.trust_floor > 0.0 {
        let _ = write!(
            who,
            " Agents whose trust is below {} after their warm-up are not asked.",
            p.trust_floor
        );
    }
    let _ = write!(
        who,
        " {}",
        match p.provisional {
            Provisional::Reduced =>
                "Agents still in their warm-up (their first 20 graded outcomes) vote with reduced weight: half at first, full at the end of it.",
            Provisional::Advisory => "Agents still in their warm-up are heard but carry no weight.",
            Provisional::Full => "Agents still in their warm-up vote with full weight.",
        }
    );
    let scripted = p
        .pool
        .iter()
        .filter(|id| agents.get(*id).is_some_and(|a| a.scripted.is_some()))
        .count();
    if scripted == p.pool.len() {
        who.push_str(" All of them are simulated (scripted) agents, so no API key is needed.");
    } else if scripted > 0 {
        let _ = write!(who, " {scripted} of them are simulated (scripted) agents.");
    }
    who
}

/// How the ballots are combined, weighted, and when a robust rule takes over.
fn how(p: &Policy) -> String {
    let mut how = format!("How: the ballots are combined by {}", rule_words(&p.rule));
    if matches!(p.rule, crate::aggregate::Rule::LogOdds { .. }) {
        how.push_str(
            ", each ballot counting ln((K−1)p/(1−p)) with its agent's measured trust as p",
        );
    } else if p.rule.uses_weights() {
        let _ = write!(
            how,
            ", each ballot weighted by {} measured trust and {} the quality of the answer (WBFT, α = {})",
            percent(p.alpha),
            percent(1.0 - p.alpha),
            p.alpha
        );
    }
    how.push('.');
    if let Some(r) = &p.robust {
        let why = match (r.byzantine_fraction > 0.25, r.stakes == Stakes::High) {
            (true, true) => format!(
                "the stakes are high and up to {} of the agents may be faulty",
                percent(r.byzantine_fraction)
            ),
            (true, false) => format!(
                "up to {} of the agents may be faulty",
                percent(r.byzantine_fraction)
            ),
            (false, true) => "the stakes are high".to_owned(),
            (false, false) => String::new(),
        };
        if r.active() {
            let _ = write!(
                how,
                " Because {why}, {} is used instead",
                rule_words(&r.rule)
            );
        } else {
            let _ = write!(
                how,
                " It would switch to {} if the stakes were high or more than 25% of the agents might be faulty",
                rule_words(&r.rule)
            );
        }
        if let Some(f) = r.tolerate {
            let _ = write!(
                how,
                "; it must tolerate {f} faulty agent{}",
                if f == 1 { "" } else { "s" }
            );
        }
        how.push('.');
    }
    how
}

/// What a decision needs, and when asking stops early.
fn quorum(p: &Policy) -> String {
    let mut quorum = format!("Quorum: at least {} ballots", p.quorum_ballots);
    if p.quorum_weight_share > 0.0 {
        let _ = write!(
            quorum,
            " holding {} of the pool's weight",
            percent(p.quorum_weight_share)
        );
    }
    if p.quorum_n_eff > 1.0 {
        let _ = write!(
            quorum,
            ", worth at least {} independent voters once correlated agents are discounted",
            p.quorum_n_eff
        );
    }
    quorum.push_str("; abstentions (timeouts, errors, malformed answers) never count.");
    match p.early_stop_risk {
        Some(r) => {
            let _ = write!(
                quorum,
                " No more agents are asked once the outcome is certain, accepting a {} risk that the full pool would have decided otherwise.",
                percent(r)
            );
        }
        None => quorum.push_str(" Every selected agent is asked (no early stopping)."),
    }
    quorum
}

/// When a decision goes to the arbiter, to a human, or is refused.
fn escalation(p: &Policy) -> String {
    let t = &p.thresholds;
    let mut esc = format!(
        "Escalation: a verdict is accepted when its confidence (the probability that it is right, from the ballots and the voters' measured competence) reaches {}; below that, more agents are asked while the pool and the budget allow.",
        t.accept
    );
    if let Some(d) = &p.deliberation {
        let _ = write!(
            esc,
            " When the independent vote's consensus is below {}, the agents deliberate: they see each other's answers and reasons (anonymised), must say where they disagree with the majority, and answer again, for at most {} rounds in all; a changed position costs up to {} of weight, and the last round's count is the verdict's, unless it moved to an answer the evidence does not favour (acquiescence: the independent vote stands).",
            d.tau, d.rounds, d.beta
        );
        if d.min_time_ms > 0 {
            let _ = write!(
                esc,
                " Rounds are held only with at least {} of the decision's time left; with less, the weak consensus goes on at once.",
                ms(d.min_time_ms)
            );
        }
    }
    match (&p.arbiter, p.human) {
        (Some(a), human) => {
            let _ = write!(
                esc,
                " If confidence stays below {}, the arbiter {a} reviews the case",
                t.arbitrate
            );
            if let Some(ms_) = p.budget.arbitration_ms {
                let _ = write!(esc, " within {}", ms(ms_));
            }
            esc.push('.');
            if human {
                let _ = write!(
                    esc,
                    " Below {}, or when arbitration runs out of time, a human decides.",
                    t.human
                );
            } else {
                let _ = write!(
                    esc,
                    " Below {} the decision is refused rather than guessed.",
                    t.human
                );
            }
        }
        (None, true) => {
            let _ = write!(
                esc,
                " If confidence stays below {}, a human decides (there is no arbiter).",
                t.arbitrate
            );
        }
        (None, false) => {
            let _ = write!(
                esc,
                " If confidence stays below {}, the decision is refused rather than guessed (there is no arbiter and no human review).",
                t.arbitrate
            );
        }
    }
    let _ = write!(
        esc,
        " While more than {:.0}% of the pool is quarantined, ejected or likely turned, the pool has lost its majority and every decision escalates.",
        100.0 * p.lost_majority
    );
    if let Some(limit) = p.verdict_alarm {
        let _ = write!(
            esc,
            " Decisions also escalate while graded verdicts in the domain have been wrong far more often than their confidence said (verdict monitor at or above {limit})."
        );
    }
    esc
}

pub(super) fn explain(p: &Policy, agents: &BTreeMap<String, AgentSpec>) -> String {
    let mut s = String::new();
    let kinds: Vec<String> = p.kinds.iter().map(|k| k.as_str().to_owned()).collect();
    let _ = writeln!(s, "Policy \"{}\" ({})", p.id, p.source.display());
    let _ = writeln!(s, "{}", p.description.trim());
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "It governs {} decisions in {} {}. Any other decision is refused: there is no default policy.",
        list(&kinds),
        if p.domains.len() == 1 {
            "the domain"
        } else {
            "the domains"
        },
        list(&p.domains)
    );

    // Who votes.
    let who = who(p, agents);
    let _ = writeln!(s, "{who}");

    // How.
    let how = how(p);
    let _ = writeln!(s, "{how}");

    // Quorum and early stop.
    let quorum = quorum(p);
    let _ = writeln!(s, "{quorum}");

    // Escalation.
    let esc = escalation(p);
    let _ = writeln!(s, "{esc}");

    // Cost.
    let b = &p.budget;
    let mut parts = Vec::new();
    if let Some(tk) = b.tokens {
        parts.push(format!("{} tokens", thousands(tk)));
    }
    if let Some(m) = b.money_usd {
        parts.push(format!("${m:.2}"));
    }
    if let Some(d) = b.decision_ms {
        parts.push(format!("{} for the decision stage", ms(d)));
    }
    let prompt = b.prompt_tokens.unwrap_or(1000);
    let worst: f64 = p
        .pool
        .iter()
        .filter_map(|id| agents.get(id))
        .map(|a| a.call_cost(prompt))
        .sum();
    let pool_cost = if worst > 0.0 {
        format!("asking the whole pool would cost ${worst:.4} at the listed prices")
    } else {
        "the agents list no prices, so calls are counted but cost nothing".to_owned()
    };
    if parts.is_empty() {
        let _ = writeln!(s, "Cost: no budget is set; {pool_cost}.");
    } else {
        let _ = writeln!(
            s,
            "Cost: at most {} per decision, checked before every call; {pool_cost}.",
            list(&parts)
        );
    }
    let _ = writeln!(
        s,
        "Audit: {}",
        match p.audit {
            AuditLevel::Full =>
                "every decision is recorded in full (ballots, rationales, weights, rule, trust version, verdict).",
            AuditLevel::Summary => "every decision is recorded without the agents' rationales.",
        }
    );
    s
}
