//! The command suite (`planner/suite/commands.toml`): commands with the plans
//! they should give, and the scoring that the benchmark reports.

use std::collections::BTreeMap;

use rosetta_common::world::{parse_object_id, parse_places, DEFAULT_PLACES_TOML};
use rosetta_common::{ObservedObject, Skill, WorldModel};
use serde::Deserialize;

use crate::grammar::{render, Decoded, PlanGrammar};

/// The committed suite.
pub const SUITE_TOML: &str = include_str!("../suite/commands.toml");
/// The held-out suite: commands written independently of the corpus
/// generator and of the readers, kept out of training and out of the rules.
pub const HELDOUT_TOML: &str = include_str!("../suite/heldout.toml");

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("the suite does not parse: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("the places do not parse: {0}")]
    Places(#[from] rosetta_common::world::PlacesError),
    #[error("case {0} ({1:?}) names the unknown world {2:?}")]
    UnknownWorld(usize, String, String),
    #[error("object id {0:?} is not <colour>_<kind>")]
    BadObject(String),
    #[error("case {0} ({1:?}): its expected plan is not valid in its world: {2}")]
    InvalidExpectation(usize, String, String),
}

#[derive(Debug, Clone, Deserialize)]
struct ObjectSpec {
    id: String,
    position_m: [f64; 3],
}

#[derive(Debug, Clone, Deserialize)]
struct WorldSpec {
    objects: Vec<ObjectSpec>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
enum ExpectSpec {
    Plan(Vec<String>),
    Refuse(String),
}

#[derive(Debug, Clone, Deserialize)]
struct CaseSpec {
    category: String,
    #[serde(default = "default_world")]
    world: String,
    command: String,
    expect: ExpectSpec,
}

fn default_world() -> String {
    "default".into()
}

#[derive(Debug, Clone, Deserialize)]
struct SuiteSpec {
    worlds: BTreeMap<String, WorldSpec>,
    #[serde(rename = "case")]
    cases: Vec<CaseSpec>,
}

/// What a case expects.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    Plan(Vec<Skill>),
    Refuse,
}

#[derive(Debug, Clone)]
pub struct Case {
    pub category: String,
    pub world: String,
    pub command: String,
    pub expected: Expected,
}

#[derive(Debug, Clone)]
pub struct Suite {
    pub worlds: BTreeMap<String, WorldModel>,
    pub cases: Vec<Case>,
}

impl Suite {
    /// Parses a suite and checks every expected plan against the grammar of its world.
    pub fn parse(text: &str) -> Result<Self, SuiteError> {
        let spec: SuiteSpec = toml::from_str(text)?;
        let places = parse_places(DEFAULT_PLACES_TOML)?;
        let mut worlds = BTreeMap::new();
        for (name, w) in spec.worlds {
            let mut objects = Vec::new();
            for o in w.objects {
                let (color, kind) =
                    parse_object_id(&o.id).ok_or_else(|| SuiteError::BadObject(o.id.clone()))?;
                objects.push(ObservedObject {
                    id: o.id,
                    kind,
                    color,
                    position_m: o.position_m,
                    last_seen_s: 0.0,
                    observations: 10,
                    position_sigma_m: 0.0,
                    confidence: 1.0,
                    size_m: [0.0; 3],
                });
            }
            worlds.insert(
                name,
                WorldModel {
                    stamp_s: 0.0,
                    frame_id: "map".into(),
                    objects,
                    places: places.clone(),
                },
            );
        }
        let mut cases = Vec::new();
        for (i, c) in spec.cases.into_iter().enumerate() {
            let world = worlds
                .get(&c.world)
                .ok_or_else(|| SuiteError::UnknownWorld(i, c.command.clone(), c.world.clone()))?;
            let expected = match c.expect {
                ExpectSpec::Refuse(s) if s == "refuse" => Expected::Refuse,
                ExpectSpec::Refuse(s) => {
                    return Err(SuiteError::InvalidExpectation(i, c.command, s))
                }
                ExpectSpec::Plan(lines) => {
                    let text = format!("{}\ndone", lines.join("\n"));
                    match PlanGrammar::from_world(world, 64).parse(&text) {
                        Ok(Decoded::Plan(steps)) => Expected::Plan(steps),
                        Ok(Decoded::Refused) => Expected::Refuse,
                        Err(e) => {
                            return Err(SuiteError::InvalidExpectation(i, c.command, e.to_string()))
                        }
                    }
                }
            };
            cases.push(Case {
                category: c.category,
                world: c.world,
                command: c.command,
                expected,
            });
        }
        Ok(Self { worlds, cases })
    }

    pub fn committed() -> Result<Self, SuiteError> {
        Self::parse(SUITE_TOML)
    }

    /// The held-out suite (`planner/suite/heldout.toml`).
    pub fn heldout() -> Result<Self, SuiteError> {
        Self::parse(HELDOUT_TOML)
    }
}

/// How one answer compares with the expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Score {
    pub exact: bool,
    /// Right up to the order of consecutive pick-and-place chains.
    pub equivalent: bool,
    pub refused: bool,
}

/// Splits a plan into chains that end with a `place`, and single other steps;
/// consecutive place-chains may run in any order.
fn canonical(plan: &[Skill]) -> Vec<Vec<String>> {
    let lines: Vec<String> = render(plan)
        .lines()
        .filter(|l| *l != crate::grammar::DONE)
        .map(str::to_string)
        .collect();
    // Segments: a chain ends at a `place`; a segment without one is one step.
    let mut segments: Vec<(bool, Vec<String>)> = Vec::new();
    let mut open: Vec<String> = Vec::new();
    for (line, step) in lines.into_iter().zip(plan) {
        open.push(line);
        if matches!(step, Skill::Place { .. }) {
            segments.push((true, std::mem::take(&mut open)));
        }
    }
    for l in open {
        segments.push((false, vec![l]));
    }
    // A chain's steps before its `place` may have been split off as single
    // steps only when the plan ended mid-chain; that case is compared exactly.
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut run: Vec<Vec<String>> = Vec::new();
    for (is_chain, seg) in segments {
        if is_chain {
            run.push(seg);
        } else {
            run.sort();
            out.append(&mut run);
            out.push(seg);
        }
    }
    run.sort();
    out.append(&mut run);
    out
}

/// Scores a planner's answer: `Ok(steps)` or a refusal.
pub fn score(expected: &Expected, got: Option<&[Skill]>) -> Score {
    match (expected, got) {
        (Expected::Refuse, None) => Score {
            exact: true,
            equivalent: true,
            refused: true,
        },
        (Expected::Refuse, Some(_)) => Score {
            exact: false,
            equivalent: false,
            refused: false,
        },
        (Expected::Plan(_), None) => Score {
            exact: false,
            equivalent: false,
            refused: true,
        },
        (Expected::Plan(want), Some(got)) => Score {
            exact: want.as_slice() == got,
            equivalent: canonical(want) == canonical(got),
            refused: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_suite_is_large_and_every_expectation_is_a_valid_plan() {
        let suite = Suite::committed().unwrap();
        assert!(suite.cases.len() >= 150, "{}", suite.cases.len());
        for cat in [
            "paraphrase",
            "multi",
            "relation",
            "sequence",
            "typo",
            "refuse",
        ] {
            assert!(
                suite.cases.iter().filter(|c| c.category == cat).count() >= 10,
                "too few {cat} cases"
            );
        }
    }

    #[test]
    fn the_heldout_suite_is_large_varied_and_valid() {
        let suite = Suite::heldout().unwrap();
        assert!(suite.cases.len() >= 200, "{}", suite.cases.len());
        let refuse = suite
            .cases
            .iter()
            .filter(|c| c.expected == Expected::Refuse)
            .count();
        assert!(refuse >= 30, "{refuse} must-refuse cases");
        let committed = Suite::committed().unwrap();
        for c in &suite.cases {
            assert!(
                !committed.cases.iter().any(|k| k.command == c.command),
                "{:?} is in both suites",
                c.command
            );
        }
    }

    #[test]
    fn a_broken_expectation_is_reported() {
        let text = r#"
[worlds.default]
objects = [{ id = "red_cube", position_m = [1.0, 0.0, 0.4] }]
[[case]]
category = "basic"
command = "put the red cube in the blue bin"
expect = ["navigate_to red_cube", "pick red_cube", "navigate_to blue_bin", "place red_cube blue_bin"]
"#;
        // blue_bin is not in that world and was not looked for.
        assert!(matches!(
            Suite::parse(text),
            Err(SuiteError::InvalidExpectation(0, _, _))
        ));
    }

    #[test]
    fn order_of_independent_chains_is_equivalent_but_not_exact() {
        let nav = |t: &str| Skill::NavigateTo { target: t.into() };
        let pick = |o: &str| Skill::Pick { object: o.into() };
        let place = |o: &str, b: &str| Skill::Place {
            object: o.into(),
            target: b.into(),
        };
        let a = vec![nav("r"), pick("r"), nav("b"), place("r", "b")];
        let b = vec![nav("g"), pick("g"), nav("b"), place("g", "b")];
        let want = Expected::Plan([a.clone(), b.clone(), vec![nav("dock")]].concat());
        let swapped = [b.clone(), a.clone(), vec![nav("dock")]].concat();
        let s = score(&want, Some(&swapped));
        assert!(!s.exact && s.equivalent);
        // Moving a step across a chain changes the meaning.
        let moved = [vec![nav("dock")], b, a].concat();
        assert!(!score(&want, Some(&moved)).equivalent);
        assert!(score(&Expected::Refuse, None).exact);
        assert!(!score(&want, None).equivalent);
    }
}
