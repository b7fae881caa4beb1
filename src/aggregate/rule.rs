//! The voting rules by name, with their parameters, and how to parse them.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::TallyError;

/// A voting rule and its parameters.
///
/// Every rule states its assumptions, its breakdown point (how many arbitrary ballots it
/// tolerates before an adversary can move the result anywhere) and its tie-break.
/// Unless said otherwise, ties between options are broken in favour of the option listed
/// first in the decision's `options`; the full co-winner set is always reported.
/// Abstentions are excluded from every count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Rule {
    /// One agent, one vote: the option with the most first preferences wins; weights are
    /// ignored. Scores are head counts.
    ///
    /// Assumes agents of similar competence. Breakdown: an option backed by a strict
    /// majority cannot be beaten by fewer than `n/2` arbitrary ballots; a plurality (not
    /// majority) winner can be overturned by a single ballot.
    Plurality,
    /// Weighted plurality `D = argmax_d Σ_i w_i·[ballot_i = d]` with weights normalised to
    /// sum to 1 (for example WBFT weights `w = α·trust + (1−α)·quality`, see
    /// [`super::weights::wbft`]). Scores are weight shares. Agents missing from the
    /// weights weigh 1 before normalisation.
    ///
    /// Breakdown: arbitrary ballots holding less than half the weight cannot overturn an
    /// option with a weighted majority.
    WeightedPlurality,
    /// Weighted plurality with Nitzan–Paroush log-odds weights `ln((K−1)p/(1−p))`, the
    /// optimal weights for independent agents of known competence `p` over `K` options.
    /// `p` is the agent's value in `weights` (read as a competence in (0, 1)), else its
    /// ballot's confidence. `p` is clipped to `[clip, 1−clip]`; an agent no better than
    /// chance (`p ≤ 1/K`) gets weight 0; then weights are capped so that no agent holds
    /// more than `cap` of the total.
    ///
    /// Breakdown: as weighted plurality, on the capped weights; the cap bounds what one
    /// over-confident or mis-estimated agent can do alone.
    LogOdds {
        /// Largest share of the total weight any one agent may hold (0 < cap ≤ 1).
        cap: f64,
        /// Competences are clipped to `[clip, 1 − clip]` (0 < clip < 0.5).
        clip: f64,
    },
    /// Weighted plurality that only declares a winner whose weight share reaches
    /// `threshold`; otherwise `winners` is empty (no decision). Weights default to 1.
    ///
    /// Breakdown: a coalition holding more than `1 − threshold` of the weight can block
    /// every decision; to force a wrong one it needs `threshold` of the weight.
    Supermajority {
        /// Required weight share of the winner, in (0.5, 1].
        threshold: f64,
    },
    /// Borda count: with `m` options, a ranking gives `m−1, m−2, …, 0` points from first to
    /// last; in a partial ranking unlisted options get 0. Ballots count with their weight
    /// (default 1).
    ///
    /// Not Condorcet-consistent. Breakdown: a single ballot can change the winner when the
    /// top two are within `m−1` points (burying).
    Borda,
    /// Copeland: each pairwise win scores 1, a pairwise tie 0.5, a loss 0. Pairwise
    /// majorities are weighted (default weight 1).
    ///
    /// Condorcet-consistent. Ties are common with few ballots; the co-winner set shows them.
    Copeland,
    /// Schulze (beat-path): strongest paths over the pairwise margin graph; `x` wins if its
    /// strongest path to every `y` is at least as strong as `y`'s to `x`. The score is the
    /// number of options an option beats by strongest path.
    ///
    /// Condorcet-consistent, clone-independent, monotone.
    Schulze,
    /// Instant runoff: repeatedly eliminate the option with the fewest first preferences
    /// (weighted) among the remaining ones until one has a strict majority of the
    /// non-exhausted ballots. Ties for elimination are broken by lower Borda score among the
    /// remaining options, then by eliminating the option listed last in `options`; every
    /// such tie-break is reported. The score is an option's first-preference weight in its
    /// last round.
    ///
    /// Not monotone; not Condorcet-consistent.
    InstantRunoff,
    /// Minimax (Simpson–Kramer): the option whose largest pairwise defeat margin is
    /// smallest wins. The score is minus that largest defeat margin (higher is better).
    ///
    /// Condorcet-consistent.
    Minimax,
    /// Arithmetic mean; weights ignored. Breakdown point 0: one arbitrary ballot moves it
    /// anywhere.
    Mean,
    /// Weighted mean `Σ w_i x_i / Σ w_i`. Breakdown point 0.
    WeightedMean,
    /// Median (the mean of the two middle values for an even count); weights ignored.
    /// Breakdown: `⌊(n−1)/2⌋` arbitrary ballots.
    Median,
    /// Weighted median: the value where the cumulative weight of the sorted values reaches
    /// half the total (the mean of the two values when a prefix holds exactly half).
    /// Breakdown: arbitrary ballots holding less than half the weight.
    WeightedMedian,
    /// Trimmed mean: drop `⌊trim·n⌋` values from each end, average the rest (as
    /// `scipy.stats.trim_mean`). Weights ignored. Breakdown: `⌊trim·n⌋` arbitrary ballots.
    TrimmedMean {
        /// Fraction cut from each end, in `[0, 0.5)`.
        trim: f64,
    },
    /// Winsorized mean: replace the `⌊trim·n⌋` lowest values by the next one up and the
    /// `⌊trim·n⌋` highest by the next one down, then average (as
    /// `scipy.stats.mstats.winsorize`). Breakdown: `⌊trim·n⌋` arbitrary ballots.
    WinsorizedMean {
        /// Fraction winsorized at each end, in `[0, 0.5)`.
        trim: f64,
    },
    /// Geometric median `argmin_y Σ w_i ‖x_i − y‖` by weighted Weiszfeld iteration with the
    /// Vardi–Zhang correction (iterates that land on a ballot are handled, not divided by
    /// zero). For scalar ballots it is the weighted median, computed exactly.
    ///
    /// Breakdown: `⌊(n−1)/2⌋` arbitrary ballots (equal weights) — only if errors are
    /// independent; a correlated cluster is indistinguishable from consensus.
    GeometricMedian {
        /// Stop when an iteration moves the estimate by at most `tol·(1 + ‖y‖)`.
        tol: f64,
        /// Give up after this many iterations (the result reports `converged: false`).
        #[serde(rename = "max-iter")]
        max_iter: usize,
    },
    /// Krum (Blanchard et al. 2017): select the ballot whose summed squared distance to its
    /// `n−f−2` nearest other ballots is smallest. Weights ignored. Ties go to the ballot
    /// listed first.
    ///
    /// Selects an honest ballot when `n > 2f + 2` and at most `f` ballots are arbitrary.
    Krum {
        /// Number of arbitrary ballots to tolerate.
        f: usize,
    },
    /// Multi-Krum: average the `m` ballots with the lowest Krum scores (`m` defaults to
    /// `n − f`). Same tolerance as Krum with less variance.
    MultiKrum {
        /// Number of arbitrary ballots to tolerate.
        f: usize,
        /// Number of ballots averaged; `None` means `n − f`.
        m: Option<usize>,
    },
    /// Byzantine-tolerant down-weighting: each weight becomes `w_i·exp(−λ·outlierScore_i)`,
    /// renormalised, and the result is the weighted mean. `outlierScore_i = d_i / s`, where
    /// `d_i` is the distance of ballot `i` from the (weighted) geometric median of all
    /// ballots and `s` is the median of the `d_j`: a typical ballot scores about 1, a ballot
    /// ten typical distances away scores 10. If more than half the ballots coincide
    /// (`s = 0`), every other ballot gets weight 0.
    ///
    /// Breakdown: bounded influence rather than a hard breakdown point — an outlier at
    /// distance `d` keeps weight ∝ `exp(−λ d/s)`; ballots just inside the typical spread
    /// (threshold huggers) keep most of their weight.
    OutlierDownweight {
        /// Decay rate λ ≥ 0; 0 reduces to the weighted mean.
        lambda: f64,
    },
}

/// Which kind of ballots a rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// Choice rules (first preferences).
    Choice,
    /// Ranked rules (full or partial rankings).
    Ranked,
    /// Numeric rules (scores, and vectors coordinate by coordinate).
    Numeric,
    /// Robust rules on points (scores or vectors).
    Robust,
}

/// Every rule name, in the order of the documentation.
pub const RULE_NAMES: &[&str] = &[
    "plurality",
    "weighted-plurality",
    "log-odds",
    "supermajority",
    "borda",
    "copeland",
    "schulze",
    "instant-runoff",
    "minimax",
    "mean",
    "weighted-mean",
    "median",
    "weighted-median",
    "trimmed-mean",
    "winsorized-mean",
    "geometric-median",
    "krum",
    "multi-krum",
    "outlier-downweight",
];

impl Rule {
    /// Default tolerance of [`Rule::GeometricMedian`].
    pub const DEFAULT_TOL: f64 = 1e-10;
    /// Default iteration cap of [`Rule::GeometricMedian`].
    pub const DEFAULT_MAX_ITER: usize = 1000;

    /// The rule's kebab-case name, as `conclave tally --rule` takes it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Plurality => "plurality",
            Self::WeightedPlurality => "weighted-plurality",
            Self::LogOdds { .. } => "log-odds",
            Self::Supermajority { .. } => "supermajority",
            Self::Borda => "borda",
            Self::Copeland => "copeland",
            Self::Schulze => "schulze",
            Self::InstantRunoff => "instant-runoff",
            Self::Minimax => "minimax",
            Self::Mean => "mean",
            Self::WeightedMean => "weighted-mean",
            Self::Median => "median",
            Self::WeightedMedian => "weighted-median",
            Self::TrimmedMean { .. } => "trimmed-mean",
            Self::WinsorizedMean { .. } => "winsorized-mean",
            Self::GeometricMedian { .. } => "geometric-median",
            Self::Krum { .. } => "krum",
            Self::MultiKrum { .. } => "multi-krum",
            Self::OutlierDownweight { .. } => "outlier-downweight",
        }
    }

    pub(crate) fn family(&self) -> Family {
        match self {
            Self::Plurality
            | Self::WeightedPlurality
            | Self::LogOdds { .. }
            | Self::Supermajority { .. } => Family::Choice,
            Self::Borda | Self::Copeland | Self::Schulze | Self::InstantRunoff | Self::Minimax => {
                Family::Ranked
            }
            Self::Mean
            | Self::WeightedMean
            | Self::Median
            | Self::WeightedMedian
            | Self::TrimmedMean { .. }
            | Self::WinsorizedMean { .. } => Family::Numeric,
            Self::GeometricMedian { .. }
            | Self::Krum { .. }
            | Self::MultiKrum { .. }
            | Self::OutlierDownweight { .. } => Family::Robust,
        }
    }

    /// The parameter names the rule accepts.
    pub fn param_names(&self) -> &'static [&'static str] {
        match self {
            Self::LogOdds { .. } => &["cap", "clip"],
            Self::Supermajority { .. } => &["threshold"],
            Self::TrimmedMean { .. } | Self::WinsorizedMean { .. } => &["trim"],
            Self::GeometricMedian { .. } => &["tol", "max-iter"],
            Self::Krum { .. } => &["f"],
            Self::MultiKrum { .. } => &["f", "m"],
            Self::OutlierDownweight { .. } => &["lambda"],
            _ => &[],
        }
    }

    /// The rule called `name` with default parameters.
    ///
    /// # Errors
    /// [`TallyError::UnknownRule`] if no rule has that name.
    pub fn from_name(name: &str) -> Result<Self, TallyError> {
        Ok(match name {
            "plurality" => Self::Plurality,
            "weighted-plurality" => Self::WeightedPlurality,
            "log-odds" => Self::LogOdds {
                cap: 0.5,
                clip: 0.01,
            },
            "supermajority" => Self::Supermajority {
                threshold: 2.0 / 3.0,
            },
            "borda" => Self::Borda,
            "copeland" => Self::Copeland,
            "schulze" => Self::Schulze,
            "instant-runoff" => Self::InstantRunoff,
            "minimax" => Self::Minimax,
            "mean" => Self::Mean,
            "weighted-mean" => Self::WeightedMean,
            "median" => Self::Median,
            "weighted-median" => Self::WeightedMedian,
            "trimmed-mean" => Self::TrimmedMean { trim: 0.1 },
            "winsorized-mean" => Self::WinsorizedMean { trim: 0.1 },
            "geometric-median" => Self::GeometricMedian {
                tol: Self::DEFAULT_TOL,
                max_iter: Self::DEFAULT_MAX_ITER,
            },
            "krum" => Self::Krum { f: 0 },
            "multi-krum" => Self::MultiKrum { f: 0, m: None },
            "outlier-downweight" => Self::OutlierDownweight { lambda: 1.0 },
            _ => {
                return Err(TallyError::UnknownRule(name.to_owned()));
            }
        })
    }

    /// The rule called `name` with the given `KEY=VALUE` parameters over its defaults.
    ///
    /// ```
    /// use conclave::aggregate::Rule;
    /// let r = Rule::parse("trimmed-mean", &[("trim", "0.2")])?;
    /// assert_eq!(r, Rule::TrimmedMean { trim: 0.2 });
    /// # Ok::<(), conclave::aggregate::TallyError>(())
    /// ```
    ///
    /// # Errors
    /// An unknown rule or parameter, or a value out of the parameter's range.
    pub fn parse(name: &str, params: &[(&str, &str)]) -> Result<Self, TallyError> {
        let mut rule = Self::from_name(name)?;
        for &(key, value) in params {
            rule.set(key, value)?;
        }
        rule.validate()?;
        Ok(rule)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), TallyError> {
        let name = self.name();
        let bad = |reason: String| TallyError::BadParam {
            rule: name,
            param: key.to_owned(),
            reason,
        };
        let float = || -> Result<f64, TallyError> {
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(format!("\"{value}\" is not a finite number")))
        };
        let count = || -> Result<usize, TallyError> {
            value
                .parse::<usize>()
                .map_err(|_| bad(format!("\"{value}\" is not a whole number ≥ 0")))
        };
        match (self, key) {
            (Self::LogOdds { cap, .. }, "cap") => *cap = float()?,
            (Self::LogOdds { clip, .. }, "clip") => *clip = float()?,
            (Self::Supermajority { threshold }, "threshold") => *threshold = float()?,
            (Self::TrimmedMean { trim } | Self::WinsorizedMean { trim }, "trim") => {
                *trim = float()?;
            }
            (Self::GeometricMedian { tol, .. }, "tol") => *tol = float()?,
            (Self::GeometricMedian { max_iter, .. }, "max-iter") => *max_iter = count()?,
            (Self::Krum { f } | Self::MultiKrum { f, .. }, "f") => *f = count()?,
            (Self::MultiKrum { m, .. }, "m") => *m = Some(count()?),
            (Self::OutlierDownweight { lambda }, "lambda") => *lambda = float()?,
            (rule, _) => {
                return Err(TallyError::UnknownParam {
                    rule: name,
                    param: key.to_owned(),
                    accepted: rule.param_names().join(", "),
                });
            }
        }
        Ok(())
    }

    /// Checks that every parameter is in its range.
    ///
    /// # Errors
    /// [`TallyError::BadParam`] naming the parameter and its range.
    pub fn validate(&self) -> Result<(), TallyError> {
        let name = self.name();
        let bad = |param: &str, reason: &str| {
            Err(TallyError::BadParam {
                rule: name,
                param: param.to_owned(),
                reason: reason.to_owned(),
            })
        };
        match *self {
            Self::LogOdds { cap, clip } => {
                if !(cap > 0.0 && cap <= 1.0) {
                    return bad("cap", "must be in (0, 1]");
                }
                if !(clip > 0.0 && clip < 0.5) {
                    return bad("clip", "must be in (0, 0.5)");
                }
            }
            Self::Supermajority { threshold } if !(threshold > 0.5 && threshold <= 1.0) => {
                return bad("threshold", "must be in (0.5, 1]");
            }
            Self::TrimmedMean { trim } | Self::WinsorizedMean { trim }
                if !(0.0..0.5).contains(&trim) =>
            {
                return bad("trim", "must be in [0, 0.5)");
            }
            Self::GeometricMedian { tol, max_iter } => {
                if tol.is_nan() || tol <= 0.0 {
                    return bad("tol", "must be > 0");
                }
                if max_iter == 0 {
                    return bad("max-iter", "must be ≥ 1");
                }
            }
            Self::MultiKrum { m: Some(0), .. } => return bad("m", "must be ≥ 1"),
            Self::OutlierDownweight { lambda } if lambda < 0.0 => {
                return bad("lambda", "must be ≥ 0");
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether the rule can count ballots of a decision of this kind: option rules count
    /// choices and rankings, numeric and robust rules count scores and vectors.
    pub fn counts(&self, kind: super::Kind) -> bool {
        matches!(self.family(), Family::Choice | Family::Ranked)
            == matches!(kind, super::Kind::Choice | super::Kind::Ranking)
    }

    /// Whether the rule reads the `weights` of its input.
    pub fn uses_weights(&self) -> bool {
        matches!(
            self,
            Self::WeightedPlurality
                | Self::LogOdds { .. }
                | Self::Supermajority { .. }
                | Self::Borda
                | Self::Copeland
                | Self::Schulze
                | Self::InstantRunoff
                | Self::Minimax
                | Self::WeightedMean
                | Self::WeightedMedian
                | Self::GeometricMedian { .. }
                | Self::OutlierDownweight { .. }
        )
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_and_round_trips() {
        for name in RULE_NAMES {
            let rule = Rule::from_name(name).unwrap();
            assert_eq!(rule.name(), *name);
            rule.validate().unwrap();
        }
    }

    #[test]
    fn serialises_with_the_cli_names() {
        let r = Rule::parse("geometric-median", &[("max-iter", "50")]).unwrap();
        let json = serde_json::to_value(r).unwrap();
        assert_eq!(json["rule"], "geometric-median");
        assert_eq!(json["max-iter"], 50);
        let back: Rule = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn parameters_are_checked() {
        assert!(matches!(
            Rule::parse("trimmed-mean", &[("trim", "0.5")]),
            Err(TallyError::BadParam { .. })
        ));
        assert!(matches!(
            Rule::parse("borda", &[("trim", "0.1")]),
            Err(TallyError::UnknownParam { .. })
        ));
        assert!(matches!(
            Rule::parse("krum", &[("f", "-1")]),
            Err(TallyError::BadParam { .. })
        ));
        assert!(matches!(
            Rule::parse("nope", &[]),
            Err(TallyError::UnknownRule(_))
        ));
        assert_eq!(
            Rule::parse("multi-krum", &[("f", "2"), ("m", "3")]).unwrap(),
            Rule::MultiKrum { f: 2, m: Some(3) }
        );
    }
}
