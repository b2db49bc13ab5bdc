//! The planning pipeline: words and the world model in; a validated plan with
//! its goal conditions, or a refusal with its reason, out. The planner node
//! and the benchmarks (`plan-bench`, `speech-bench`) run this one type, so
//! that what is measured is what runs.
//!
//! Three planners behind it ([`PlannerKind`]):
//! - `rules`: the reader and the grounder (`reader`, `compile`), no model;
//! - `llm`: the language model alone, under the plan grammar;
//! - `hybrid` (the default): the reader and grounder first; words they
//!   cannot read go to the language model, whose plan is validated like
//!   any other. Unsafe words, unknown objects and ambiguity are refused by
//!   the reader and never reach the model.

use std::sync::Arc;

use rosetta_common::goal::Goal;
use rosetta_common::plan::PlanOutcome;
use rosetta_common::robot::RobotDescription;
use rosetta_common::{ObjectKind, Skill, ValidPlan, WorldModel};

use crate::compile::{PlanError, Referent};
use crate::grammar::Decoded;
use crate::llm::{LlmOutput, LlmPlanner};
use crate::rules::{self, RulesPlanner};

/// Which planner the pipeline runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PlannerKind {
    /// The reader and grounder, then the language model for words they cannot read.
    #[default]
    Hybrid,
    /// The language model alone (constrained decoding over the world's ids).
    Llm,
    /// The reader and grounder alone: deterministic, no model.
    Rules,
}

impl PlannerKind {
    pub fn needs_model(self) -> bool {
        !matches!(self, PlannerKind::Rules)
    }
    pub fn name(self) -> &'static str {
        match self {
            PlannerKind::Hybrid => "hybrid",
            PlannerKind::Llm => "llm",
            PlannerKind::Rules => rules::NAME,
        }
    }
}

impl std::fmt::Display for PlannerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What one planning call gives.
#[derive(Debug, Clone)]
pub struct Planned {
    pub outcome: PlanOutcome,
    pub goals: Vec<Goal>,
    /// Which stage made the answer (`rules`, `llm`).
    pub by: &'static str,
    /// The model's run, when it ran.
    pub model: Option<LlmOutput>,
    /// The plan only looks around (see [`rosetta_common::PlanMessage::survey`]).
    pub survey: bool,
    /// What the command's referring expressions resolved to (a plan), for
    /// the episode to show at grounding.
    pub referents: Vec<Referent>,
    /// A refusal because words fit several things: those words and every
    /// candidate.
    pub ambiguous: Option<Referent>,
}

impl Planned {
    /// The plan's steps, or `None` for a refusal.
    pub fn steps(&self) -> Option<&[Skill]> {
        match &self.outcome {
            PlanOutcome::Plan { steps } => Some(steps),
            PlanOutcome::Rejected { .. } => None,
        }
    }
    /// A plan of `steps`, or, if they fail the checks that need no world,
    /// a refusal that says why.
    fn plan(
        steps: Vec<Skill>,
        goals: Vec<Goal>,
        by: &'static str,
        model: Option<LlmOutput>,
    ) -> Self {
        match ValidPlan::new(steps) {
            Ok(steps) => Self {
                outcome: PlanOutcome::Plan { steps },
                goals,
                by,
                model,
                survey: false,
                referents: vec![],
                ambiguous: None,
            },
            Err(e) => Self::refused(format!("the plan is not safe to run: {e}"), by, model),
        }
    }

    fn refused(reason: String, by: &'static str, model: Option<LlmOutput>) -> Self {
        Self {
            outcome: PlanOutcome::Rejected { reason },
            goals: vec![],
            by,
            model,
            survey: false,
            referents: vec![],
            ambiguous: None,
        }
    }
}

/// The planning pipeline.
pub struct Pipeline {
    kind: PlannerKind,
    rules: RulesPlanner,
    llm: Option<Arc<LlmPlanner>>,
    robot: RobotDescription,
}

impl Pipeline {
    /// A pipeline; `llm` is required for the kinds that need a model.
    pub fn new(kind: PlannerKind, llm: Option<Arc<LlmPlanner>>) -> Result<Self, String> {
        if kind.needs_model() && llm.is_none() {
            return Err(format!("the {kind} planner needs a language model"));
        }
        Ok(Self {
            kind,
            rules: RulesPlanner,
            llm,
            robot: RobotDescription::default(),
        })
    }

    pub fn kind(&self) -> PlannerKind {
        self.kind
    }

    pub fn model(&self) -> Option<&Arc<LlmPlanner>> {
        self.llm.as_ref()
    }

    /// Plans `text` against `world` (blocking: seconds with a model on a CPU).
    pub fn plan(&self, text: &str, world: &WorldModel) -> Planned {
        self.plan_holding(text, world, None)
    }

    /// [`Self::plan`] for a robot that holds `held` (a re-plan after a
    /// failure mid-carry). The reader plans from there; the model, whose
    /// plan language starts with empty hands, is not asked.
    pub fn plan_holding(&self, text: &str, world: &WorldModel, held: Option<&str>) -> Planned {
        self.plan_attempt(text, world, held, true)
    }

    /// [`Self::plan_holding`]; with `may_survey`, a command about a kind of
    /// thing not seen yet becomes a look around (a survey plan), after which
    /// the node plans it again; without, it is refused with the reason.
    pub fn plan_attempt(
        &self,
        text: &str,
        world: &WorldModel,
        held: Option<&str>,
        may_survey: bool,
    ) -> Planned {
        let planned = match (self.kind, &self.llm, held) {
            (PlannerKind::Rules, _, _) | (_, None, _) | (PlannerKind::Hybrid, _, Some(_)) => {
                match self.rules.read_holding(text, world, held) {
                    Err(e) if may_survey && wants_survey(&e) => Self::survey(),
                    Ok(r) if may_survey && needs_all_seen(&r, world) => Self::survey(),
                    other => Self::from_rules(other),
                }
            }
            (PlannerKind::Llm, Some(m), _) => self.by_model(m, text, world, None),
            (PlannerKind::Hybrid, Some(m), None) => match self.rules.read(text, world) {
                Err(e) if rules::is_reading_error(&e) => self.by_model(m, text, world, Some(e)),
                Err(e) if may_survey && wants_survey(&e) => Self::survey(),
                Ok(r) if may_survey && needs_all_seen(&r, world) => Self::survey(),
                other => Self::from_rules(other),
            },
        };
        self.validated(planned, world, held)
    }

    fn survey() -> Planned {
        Planned {
            outcome: PlanOutcome::Plan {
                steps: ValidPlan::look_around(),
            },
            goals: vec![],
            by: rules::NAME,
            model: None,
            survey: true,
            referents: vec![],
            ambiguous: None,
        }
    }

    fn from_rules(r: Result<rules::Reading, PlanError>) -> Planned {
        match r {
            Ok(reading) => Planned {
                referents: reading.referents,
                ..Planned::plan(reading.steps, reading.goals, rules::NAME, None)
            },
            Err(e) => Planned {
                ambiguous: match &e {
                    PlanError::Ambiguous {
                        phrase, candidates, ..
                    } => Some(Referent {
                        words: phrase.clone(),
                        ids: candidates.clone(),
                    }),
                    _ => None,
                },
                ..Planned::refused(e.to_string(), rules::NAME, None)
            },
        }
    }

    fn by_model(
        &self,
        model: &LlmPlanner,
        text: &str,
        world: &WorldModel,
        reader_error: Option<PlanError>,
    ) -> Planned {
        if text.trim().is_empty() {
            return Planned::refused(
                crate::reader::ReadError::Empty.to_string(),
                rules::NAME,
                None,
            );
        }
        match model.plan(text, world) {
            Ok(out) => match &out.decoded {
                Decoded::Plan(steps)
                    if reader_error.is_some()
                        && (!named_by(steps, text)
                            || !answers_unknown(steps, reader_error.as_ref())) =>
                {
                    // In the hybrid, the model reads what the reader could
                    // not; a plan about things the words never name, or one
                    // that leaves out the thing the reader did not know
                    // ("move the sofa to the dock" is no drive to the dock),
                    // is a guess, and a guess is refused.
                    let why = reader_error.map(|e| e.to_string()).unwrap_or_default();
                    Planned::refused(why, "llm", Some(out))
                }
                Decoded::Plan(steps) => {
                    let goals = goals_of(steps);
                    let referents = referents_of(steps, world);
                    Planned {
                        referents,
                        ..Planned::plan(steps.clone(), goals, "llm", Some(out))
                    }
                }
                Decoded::Refused => {
                    // The model only says "refuse"; the reader can often say why.
                    let reason = reader_error
                        .or_else(|| self.rules.read(text, world).err())
                        .map_or_else(
                            || {
                                "the language model found no safe plan over the known objects and places"
                                    .to_string()
                            },
                            |e| e.to_string(),
                        );
                    Planned::refused(reason, "llm", Some(out))
                }
            },
            Err(e) => Planned::refused(format!("the language model failed: {e}"), "llm", None),
        }
    }

    /// A plan that fails its preconditions (`validate`) is refused with the
    /// reason, whichever stage made it.
    fn validated(&self, mut p: Planned, world: &WorldModel, held: Option<&str>) -> Planned {
        if let PlanOutcome::Plan { steps } = &p.outcome {
            if let Err(e) = crate::validate::validate_holding(steps, world, &self.robot, held) {
                p.outcome = PlanOutcome::Rejected {
                    reason: format!("the plan is not safe to run: {e}"),
                };
                p.goals.clear();
            }
        }
        p
    }
}

/// Whether a refusal is about what the robot has not looked at yet (a kind
/// of thing not seen, or a named thing not among those seen), which one look
/// around may answer.
fn wants_survey(e: &PlanError) -> bool {
    matches!(e, PlanError::Unexplored { .. } | PlanError::NotSeen { .. })
}

/// Whether a reading depends on what the robot has not seen yet: its plan
/// looks for something not seen, or a phrase picks among the things there
/// are ("the cube on the left", "all the balls", "the other bin"). The
/// robot then looks around once and plans again, rather than take the
/// first such thing a turn shows or the leftmost of those in view: "the
/// white bin" with two white bins behind it is a question (which one?).
fn needs_all_seen(r: &crate::compile::Reading, world: &WorldModel) -> bool {
    r.compares
        || r.steps
            .iter()
            .any(|s| matches!(s, Skill::LookFor { object } if world.get(object).is_none()))
}

/// What a plan that came without its referring expressions (the model's)
/// acts on: each object once, in order, under what the world model
/// believes it is ("red cube").
pub fn referents_of(steps: &[Skill], world: &WorldModel) -> Vec<Referent> {
    let mut out: Vec<Referent> = Vec::new();
    for s in steps {
        let ids: &[&String] = match s {
            Skill::Pick { object } | Skill::LookFor { object } => &[object],
            Skill::Place { object, target } => &[object, target],
            _ => &[],
        };
        for &id in ids {
            if out.iter().any(|r| r.ids.contains(id)) {
                continue;
            }
            if let Some(o) = world.get(id) {
                out.push(Referent {
                    words: format!("{} {}", o.color.name(), o.kind.name()),
                    ids: vec![id.clone()],
                });
            }
        }
    }
    out
}

/// Whether every thing a plan acts on is named by the command's words: its
/// colour for an object (`red_cube`: "red", "crimson", ...), its name for a
/// place ("dock", "table", "start").
pub fn named_by(steps: &[Skill], text: &str) -> bool {
    let words = crate::reader::normalise(text);
    let said = |w: &str| words.iter().any(|x| x == w);
    // A kind is said in the singular or the plural ("cube", "boxes").
    let kind_said = |k: ObjectKind| words.iter().any(|x| ObjectKind::from_word(x) == Some(k));
    let named = |id: &str| match rosetta_common::world::parse_object_id(id) {
        Some((color, kind)) => said(color.name()) && kind_said(kind),
        None => said(id),
    };
    steps.iter().all(|s| match s {
        Skill::NavigateTo { target } => named(target),
        Skill::Pick { object } | Skill::LookFor { object } => named(object),
        Skill::Place { object, target } => named(object) && named(target),
        Skill::Say { .. } | Skill::Wait { .. } | Skill::Stop | Skill::LookAround => true,
    })
}

/// Where the reader could not resolve a phrase, whether the plan acts on
/// something that phrase speaks of (its colour or kind is among the
/// phrase's words): the model then read the phrase, rather than dropping it.
fn answers_unknown(steps: &[Skill], reader_error: Option<&PlanError>) -> bool {
    let Some(PlanError::Read(crate::reader::ReadError::UnknownObject(phrase))) = reader_error
    else {
        return true;
    };
    let words = crate::reader::normalise(phrase);
    let in_phrase = |w: &str| {
        words
            .iter()
            .any(|x| x == w || x.strip_suffix('s') == Some(w))
    };
    steps.iter().any(|s| {
        let ids: &[&String] = match s {
            Skill::Pick { object } | Skill::LookFor { object } => &[object],
            Skill::Place { object, target } => &[object, target],
            _ => &[],
        };
        ids.iter().any(|id| {
            rosetta_common::world::parse_object_id(id)
                .is_some_and(|(c, k)| in_phrase(c.name()) || in_phrase(k.name()))
        })
    })
}

/// The goal conditions a plan's own steps imply, for a plan written without
/// the reader (the model's): where each placed object ends, what is held at
/// the end, and where the robot ends when the last step is a drive.
pub fn goals_of(steps: &[Skill]) -> Vec<Goal> {
    let mut goals: Vec<Goal> = Vec::new();
    let mut holding: Option<String> = None;
    for s in steps {
        match s {
            Skill::Pick { object } => {
                goals.retain(|g| !matches!(g, Goal::InContainer { object: o, .. } if o == object));
                holding = Some(object.clone());
            }
            Skill::Place { object, target } => {
                goals.push(Goal::InContainer {
                    object: object.clone(),
                    container: target.clone(),
                });
                holding = None;
            }
            _ => {}
        }
    }
    if let Some(h) = holding {
        goals.push(Goal::Holding { object: h });
    }
    if let Some(Skill::NavigateTo { target }) = steps.last() {
        goals.push(Goal::At {
            target: target.clone(),
        });
    }
    goals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plans_own_steps_give_its_goals() {
        let nav = |t: &str| Skill::NavigateTo { target: t.into() };
        let steps = vec![
            nav("red_cube"),
            Skill::Pick {
                object: "red_cube".into(),
            },
            nav("blue_bin"),
            Skill::Place {
                object: "red_cube".into(),
                target: "blue_bin".into(),
            },
            nav("green_cube"),
            Skill::Pick {
                object: "green_cube".into(),
            },
            nav("dock"),
        ];
        assert_eq!(
            goals_of(&steps),
            vec![
                Goal::InContainer {
                    object: "red_cube".into(),
                    container: "blue_bin".into()
                },
                Goal::Holding {
                    object: "green_cube".into()
                },
                Goal::At {
                    target: "dock".into()
                },
            ]
        );
    }

    /// The model's plan for a phrase the reader could not resolve must act
    /// on what the phrase speaks of, not drop it.
    #[test]
    fn a_plan_for_an_unresolved_phrase_must_act_on_it() {
        use crate::reader::ReadError;
        let unknown = |p: &str| PlanError::Read(ReadError::UnknownObject(p.into()));
        let to_dock = vec![Skill::NavigateTo {
            target: "dock".into(),
        }];
        assert!(!answers_unknown(&to_dock, Some(&unknown("the sofa"))));
        let put = vec![
            Skill::NavigateTo {
                target: "red_cube".into(),
            },
            Skill::Pick {
                object: "red_cube".into(),
            },
            Skill::NavigateTo {
                target: "blue_bin".into(),
            },
            Skill::Place {
                object: "red_cube".into(),
                target: "blue_bin".into(),
            },
        ];
        assert!(answers_unknown(
            &put,
            Some(&unknown("the red cuban the blue bin"))
        ));
        assert!(!answers_unknown(&put, Some(&unknown("the green sofa"))));
        // Other refusals put no such condition.
        assert!(answers_unknown(&to_dock, None));
    }

    #[test]
    fn a_plan_is_named_by_the_words_only_when_they_name_each_thing_it_touches() {
        let steps = vec![
            Skill::NavigateTo {
                target: "blue_cube".into(),
            },
            Skill::Pick {
                object: "blue_cube".into(),
            },
            Skill::NavigateTo {
                target: "table".into(),
            },
        ];
        assert!(named_by(
            &steps,
            "fetch me the navy brick and roll over to the table"
        ));
        assert!(!named_by(&steps, "knock all the cubes off the table"));
        // The colour alone is not the thing: a blue ball is no blue cube.
        assert!(!named_by(
            &steps,
            "fetch me the blue ball and roll over to the table"
        ));
        assert!(named_by(&steps, "the blue cubes, then the table"));
        assert!(!named_by(&steps[2..], "open the front door"));
    }

    /// An object as perception reports it, seen well.
    fn o(
        id: &str,
        kind: rosetta_common::ObjectKind,
        color: rosetta_common::Color,
        position_m: [f64; 3],
    ) -> rosetta_common::ObservedObject {
        rosetta_common::ObservedObject {
            id: id.into(),
            kind,
            color,
            position_m,
            last_seen_s: 1.0,
            observations: 3,
            position_sigma_m: 0.0,
            confidence: 1.0,
            size_m: [0.0; 3],
        }
    }

    #[test]
    fn a_command_about_a_kind_not_seen_yet_is_a_look_around_then_a_plan() {
        use rosetta_common::{Color, ObjectKind};
        let cubes = vec![o(
            "red_cube",
            ObjectKind::Cube,
            Color::Red,
            [1.4, -0.3, 0.425],
        )];
        let mut world = WorldModel {
            objects: cubes,
            ..Default::default()
        };
        let p = Pipeline::new(PlannerKind::Rules, None).unwrap();
        let first = p.plan_attempt("put the red cube in the left bin", &world, None, true);
        assert!(first.survey);
        assert_eq!(first.steps(), Some(&[Skill::LookAround][..]));
        // The same words with no look around left: refused, with the reason.
        let again = p.plan_attempt("put the red cube in the left bin", &world, None, false);
        assert!(again.steps().is_none());
        // After the look around, the bins are known: a real plan.
        world.objects.push(o(
            "blue_bin",
            ObjectKind::Bin,
            Color::Blue,
            [0.0, 1.6, 0.125],
        ));
        world.objects.push(o(
            "red_bin",
            ObjectKind::Bin,
            Color::Red,
            [0.0, -1.6, 0.125],
        ));
        let planned = p.plan_attempt("put the red cube in the left bin", &world, None, false);
        assert!(!planned.survey);
        assert_eq!(
            planned.goals,
            vec![Goal::InContainer {
                object: "red_cube".into(),
                container: "blue_bin".into()
            }]
        );
    }

    /// A named thing not among those of its kind seen so far may stand
    /// where the camera has not looked: one look around, then a plan, or a
    /// refusal that names what is known.
    #[test]
    fn a_named_thing_not_seen_among_others_of_its_kind_is_looked_for_once() {
        use rosetta_common::{Color, ObjectKind};
        let mut world = WorldModel {
            objects: vec![
                o("red_cube", ObjectKind::Cube, Color::Red, [1.4, -0.3, 0.425]),
                o(
                    "green_bin",
                    ObjectKind::Bin,
                    Color::Green,
                    [0.0, 1.6, 0.125],
                ),
            ],
            ..Default::default()
        };
        let p = Pipeline::new(PlannerKind::Rules, None).unwrap();
        let cmd = "put the red cube in the red bin";
        let first = p.plan_attempt(cmd, &world, None, true);
        assert!(first.survey);
        assert_eq!(first.steps(), Some(&[Skill::LookAround][..]));
        let again = p.plan_attempt(cmd, &world, None, false);
        match &again.outcome {
            PlanOutcome::Rejected { reason } => {
                assert!(
                    reason.contains("red bin") && reason.contains("green_bin"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        world.objects.push(o(
            "red_bin",
            ObjectKind::Bin,
            Color::Red,
            [0.0, -1.6, 0.125],
        ));
        let planned = p.plan_attempt(cmd, &world, None, false);
        assert_eq!(
            planned.goals,
            vec![Goal::InContainer {
                object: "red_cube".into(),
                container: "red_bin".into()
            }]
        );
    }

    /// A landmark out of view ("the cube nearest to the red bin" at the
    /// start, when the camera sees only the table) is looked for once, as
    /// a named object is; then the relation picks the cube by where that
    /// landmark stands.
    #[test]
    fn a_relation_to_a_landmark_not_seen_yet_is_a_look_around_then_a_plan() {
        use rosetta_common::{Color, ObjectKind};
        let mut world = WorldModel {
            objects: vec![
                o(
                    "red_cube",
                    ObjectKind::Cube,
                    Color::Red,
                    [1.4, -0.36, 0.425],
                ),
                o(
                    "blue_cube",
                    ObjectKind::Cube,
                    Color::Blue,
                    [1.4, 0.36, 0.425],
                ),
            ],
            ..Default::default()
        };
        let p = Pipeline::new(PlannerKind::Rules, None).unwrap();
        let cmd = "put the cube nearest to the blue bin in the red bin";
        let first = p.plan_attempt(cmd, &world, None, true);
        assert!(first.survey, "{:?}", first.outcome);
        assert_eq!(first.steps(), Some(&[Skill::LookAround][..]));
        let again = p.plan_attempt(cmd, &world, None, false);
        match &again.outcome {
            PlanOutcome::Rejected { reason } => assert!(reason.contains("blue bin"), "{reason}"),
            other => panic!("{other:?}"),
        }
        world.objects.push(o(
            "blue_bin",
            ObjectKind::Bin,
            Color::Blue,
            [0.0, 1.6, 0.125],
        ));
        world.objects.push(o(
            "red_bin",
            ObjectKind::Bin,
            Color::Red,
            [0.0, -1.6, 0.125],
        ));
        let planned = p.plan_attempt(cmd, &world, None, false);
        assert_eq!(
            planned.goals,
            vec![Goal::InContainer {
                object: "blue_cube".into(),
                container: "red_bin".into()
            }]
        );
    }

    /// "the mugs" while no mug is in view yet: a look around, then all of
    /// them, or a refusal that says none was seen.
    #[test]
    fn a_plural_of_a_kind_not_seen_yet_is_a_look_around_then_a_plan() {
        use rosetta_common::{Color, ObjectKind};
        let mut world = WorldModel {
            objects: vec![o(
                "yellow_bin",
                ObjectKind::Bin,
                Color::Yellow,
                [0.2, 0.6, 0.125],
            )],
            ..Default::default()
        };
        let p = Pipeline::new(PlannerKind::Rules, None).unwrap();
        let cmd = "put the mugs in the yellow bin";
        let first = p.plan_attempt(cmd, &world, None, true);
        assert!(first.survey, "{:?}", first.outcome);
        let again = p.plan_attempt(cmd, &world, None, false);
        match &again.outcome {
            PlanOutcome::Rejected { reason } => {
                assert!(reason.contains("not seen any mug"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        world.objects.push(o(
            "white_mug",
            ObjectKind::Mug,
            Color::White,
            [1.6, 0.9, 0.44],
        ));
        world.objects.push(o(
            "grey_mug",
            ObjectKind::Mug,
            Color::Grey,
            [1.6, 0.4, 0.44],
        ));
        let planned = p.plan_attempt(cmd, &world, None, false);
        assert_eq!(planned.goals.len(), 2, "{:?}", planned.outcome);
    }

    /// Things of other categories and colours than the cube world's, said
    /// with the words people use for them.
    #[test]
    fn household_things_are_read_by_category_synonym_and_colour() {
        use rosetta_common::{Color, ObjectKind};
        let world = WorldModel {
            objects: vec![
                o(
                    "green_ball",
                    ObjectKind::Ball,
                    Color::Green,
                    [1.42, -0.42, 0.43],
                ),
                o(
                    "grey_box",
                    ObjectKind::Box,
                    Color::Grey,
                    [1.42, -0.22, 0.425],
                ),
                o("pink_mug", ObjectKind::Mug, Color::Pink, [1.42, 0.0, 0.44]),
                o(
                    "orange_cylinder",
                    ObjectKind::Cylinder,
                    Color::Orange,
                    [1.42, 0.2, 0.45],
                ),
                o("red_cube", ObjectKind::Cube, Color::Red, [1.42, 0.4, 0.425]),
                o(
                    "white_bin",
                    ObjectKind::Bin,
                    Color::White,
                    [0.0, -1.6, 0.125],
                ),
                o(
                    "purple_bin",
                    ObjectKind::Bin,
                    Color::Purple,
                    [0.0, 1.6, 0.125],
                ),
            ],
            ..Default::default()
        };
        let p = Pipeline::new(PlannerKind::Rules, None).unwrap();
        let put = |object: &str, container: &str| {
            vec![Goal::InContainer {
                object: object.into(),
                container: container.into(),
            }]
        };
        for (cmd, object, container) in [
            (
                "put the sphere in the purple bin",
                "green_ball",
                "purple_bin",
            ),
            (
                "drop the pink cup into the white basket",
                "pink_mug",
                "white_bin",
            ),
            (
                "could you put the orange can in the violet container",
                "orange_cylinder",
                "purple_bin",
            ),
            (
                "put the gray carton in the white bin",
                "grey_box",
                "white_bin",
            ),
            ("put the red one in the white bin", "red_cube", "white_bin"),
            (
                "put the green ball in the bin on the left",
                "green_ball",
                "purple_bin",
            ),
        ] {
            let planned = p.plan_attempt(cmd, &world, None, false);
            assert_eq!(
                planned.goals,
                put(object, container),
                "{cmd:?}: {:?}",
                planned.outcome
            );
        }
        // Words that name no kind speak of what fits the role.
        let planned = p.plan_attempt("put the green one in the white one", &world, None, false);
        assert_eq!(
            planned.goals,
            put("green_ball", "white_bin"),
            "{:?}",
            planned.outcome
        );
        // "everything" is every thing there is to pick up.
        let planned = p.plan_attempt("put everything in the purple bin", &world, None, false);
        assert_eq!(planned.goals.len(), 5, "{:?}", planned.outcome);
        // Which thing a comparison picks, or whether a named thing is the only
        // one, depends on what the robot has not seen yet: it looks around
        // once first. A plainly named thing in view needs no look.
        for cmd in [
            "put the leftmost thing in the white bin",
            "put all the balls in the white bin",
            "put the green ball in the yellow bin",
        ] {
            assert!(p.plan_attempt(cmd, &world, None, true).survey, "{cmd:?}");
        }
        assert!(
            !p.plan_attempt("put the green ball in the white bin", &world, None, true)
                .survey
        );
        // Unknown colours and things that are not containers are refused.
        for cmd in [
            "put the cyan ball in the white bin",
            "put the green ball in the grey box",
            "put the yellow mug in the white bin",
        ] {
            let planned = p.plan_attempt(cmd, &world, None, false);
            assert!(
                matches!(planned.outcome, PlanOutcome::Rejected { .. }),
                "{cmd:?}: {:?}",
                planned.outcome
            );
        }
    }

    #[test]
    fn the_model_kinds_need_a_model() {
        assert!(Pipeline::new(PlannerKind::Hybrid, None).is_err());
        assert!(Pipeline::new(PlannerKind::Llm, None).is_err());
        assert!(Pipeline::new(PlannerKind::Rules, None).is_ok());
    }
}
