//! The action plan schema: a closed set of skills whose arguments name
//! entities of the world model by id.

use serde::{Deserialize, Serialize};

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "skill", rename_all = "snake_case", deny_unknown_fields)]
pub enum Skill {
    /// Drive to where the named object can be manipulated.
    NavigateTo { target: String },
    /// Grasp the named object and lift it.
    Pick { object: String },
    /// Put the held object into / onto the target.
    Place { object: String, target: String },
    /// Turn in place until perception reports the object.
    LookFor { object: String },
    /// Turn in place once, all the way round, to see what is around.
    LookAround,
    /// Tell the operator something.
    Say { text: String },
    /// Wait, bounded by [`MAX_WAIT_S`].
    Wait {
        #[schemars(range(min = 0.0, max = 60.0))]
        seconds: f64,
    },
    /// Stop all motion.
    Stop,
}

/// The longest `wait` a plan may ask for.
pub const MAX_WAIT_S: f64 = 60.0;
/// The most steps one plan may have (15 objects put away one by one, with
/// room to spare).
pub const MAX_PLAN_STEPS: usize = 256;
/// The longest name (of an object or a place) a step may carry.
pub const MAX_NAME_CHARS: usize = 64;
/// The longest text a `say` step may carry.
pub const MAX_SAY_CHARS: usize = 500;

/// Why a skill or a plan is not one the robot may run, whatever the world.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanProblem {
    #[error("a plan has at most {MAX_PLAN_STEPS} steps, this one {0}")]
    TooLong(usize),
    #[error("step {0}: wait of {1} s is outside 0..{MAX_WAIT_S} s")]
    BadWait(usize, f64),
    #[error("step {0}: {1:?} is not a name (1 to {MAX_NAME_CHARS} characters, no control characters, no spaces at its ends)")]
    BadName(usize, String),
    #[error("step {0}: what to say is longer than {MAX_SAY_CHARS} characters")]
    SayTooLong(usize),
}

/// Steps that passed the checks that need no world: every wait within
/// `0..=MAX_WAIT_S`, every name a name, every text bounded, not too many
/// steps. Only [`ValidPlan::new`] makes one, and a plan read from JSON is
/// checked as it is read, so the executive and control run nothing else.
/// (Whether the things named exist and can be reached is the planner's
/// check against the world model, before it publishes.)
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "Vec<Skill>", into = "Vec<Skill>")]
pub struct ValidPlan(Vec<Skill>);

impl ValidPlan {
    pub fn new(steps: Vec<Skill>) -> Result<Self, PlanProblem> {
        if steps.len() > MAX_PLAN_STEPS {
            return Err(PlanProblem::TooLong(steps.len()));
        }
        for (i, step) in steps.iter().enumerate() {
            check_skill(i + 1, step)?;
        }
        Ok(Self(steps))
    }

    /// The plan that stops the robot.
    pub fn stop() -> Self {
        Self(vec![Skill::Stop])
    }

    /// The plan that turns once to see what is around (a survey).
    pub fn look_around() -> Self {
        Self(vec![Skill::LookAround])
    }

    /// A plan of the one skill (a skill goal sent on its own).
    pub fn single(skill: Skill) -> Result<Self, PlanProblem> {
        Self::new(vec![skill])
    }

    pub fn steps(&self) -> &[Skill] {
        &self.0
    }

    pub fn into_steps(self) -> Vec<Skill> {
        self.0
    }
}

impl std::ops::Deref for ValidPlan {
    type Target = [Skill];

    fn deref(&self) -> &[Skill] {
        &self.0
    }
}

impl TryFrom<Vec<Skill>> for ValidPlan {
    type Error = PlanProblem;

    fn try_from(steps: Vec<Skill>) -> Result<Self, PlanProblem> {
        Self::new(steps)
    }
}

impl From<ValidPlan> for Vec<Skill> {
    fn from(p: ValidPlan) -> Self {
        p.0
    }
}

/// On the wire a valid plan is a list of skills.
impl schemars::JsonSchema for ValidPlan {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        <Vec<Skill>>::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        <Vec<Skill>>::schema_id()
    }

    fn inline_schema() -> bool {
        <Vec<Skill>>::inline_schema()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <Vec<Skill>>::json_schema(generator)
    }
}

/// The world-free checks of step `n`.
fn check_skill(n: usize, skill: &Skill) -> Result<(), PlanProblem> {
    let name = |s: &String| {
        let ok = !s.is_empty()
            && s.chars().count() <= MAX_NAME_CHARS
            && s.trim() == s
            && !s.chars().any(char::is_control);
        if ok {
            Ok(())
        } else {
            Err(PlanProblem::BadName(n, s.clone()))
        }
    };
    match skill {
        Skill::NavigateTo { target } => name(target),
        Skill::Pick { object } | Skill::LookFor { object } => name(object),
        Skill::Place { object, target } => name(object).and(name(target)),
        Skill::Say { text } if text.chars().count() > MAX_SAY_CHARS => {
            Err(PlanProblem::SayTooLong(n))
        }
        Skill::Wait { seconds } if !(0.0..=MAX_WAIT_S).contains(seconds) => {
            Err(PlanProblem::BadWait(n, *seconds))
        }
        Skill::Say { .. } | Skill::Wait { .. } | Skill::LookAround | Skill::Stop => Ok(()),
    }
}

impl Skill {
    pub fn name(&self) -> &'static str {
        match self {
            Skill::NavigateTo { .. } => "navigate_to",
            Skill::Pick { .. } => "pick",
            Skill::Place { .. } => "place",
            Skill::LookFor { .. } => "look_for",
            Skill::LookAround => "look_around",
            Skill::Say { .. } => "say",
            Skill::Wait { .. } => "wait",
            Skill::Stop => "stop",
        }
    }

    /// A short human-readable form, e.g. `pick(red_cube)`.
    pub fn describe(&self) -> String {
        match self {
            Skill::NavigateTo { target } => format!("navigate_to({target})"),
            Skill::Pick { object } => format!("pick({object})"),
            Skill::Place { object, target } => format!("place({object}, {target})"),
            Skill::LookFor { object } => format!("look_for({object})"),
            Skill::LookAround => "look_around".to_string(),
            Skill::Say { text } => format!("say({text:?})"),
            Skill::Wait { seconds } => format!("wait({seconds} s)"),
            Skill::Stop => "stop".to_string(),
        }
    }
}

/// What the operator (or a program) asks for, on [`crate::topics::COMMAND`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CommandMessage {
    pub command_id: u64,
    pub text: String,
}

/// The planner's answer to a command, on [`crate::topics::PLAN`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlanMessage {
    pub command_id: u64,
    pub command: String,
    pub outcome: PlanOutcome,
    /// Which planner produced it (`llm` or `rules`).
    pub planner: String,
    /// Wall time the planner took, in seconds.
    pub planning_time_s: f64,
    /// 1 for the first plan of a command; more when the planner re-planned
    /// after the executive reported a failure.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// How many attempts the planner makes at most for this command.
    #[serde(default = "first_attempt")]
    pub max_attempts: u32,
    /// Why this plan replaces an earlier one (the failure it answers).
    #[serde(default)]
    pub replan_reason: Option<String>,
    /// What the command asked for, as conditions on the world that must hold
    /// once the plan has run (checked by the executive after the last step).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub goals: Vec<crate::goal::Goal>,
    /// A survey: the plan only looks around, because the command speaks of
    /// things of a kind the robot has not seen yet ("the left bin" just
    /// after start); once it has succeeded, the command is planned again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub survey: bool,
}

fn first_attempt() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlanOutcome {
    Plan { steps: ValidPlan },
    Rejected { reason: String },
}

/// The JSON Schema of a [`PlanMessage`] (which contains the skills), as
/// committed in `common/schema/plan.schema.json`.
pub fn plan_json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(PlanMessage)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_schema_is_current() {
        let committed: serde_json::Value =
            serde_json::from_str(include_str!("../schema/plan.schema.json")).unwrap();
        assert_eq!(
            committed,
            plan_json_schema(),
            "regenerate with: ./rosetta schema > common/schema/plan.schema.json"
        );
    }

    #[test]
    fn skill_json_is_tagged_and_closed() {
        let s = Skill::Place {
            object: "red_cube".into(),
            target: "blue_bin".into(),
        };
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(
            j,
            r#"{"skill":"place","object":"red_cube","target":"blue_bin"}"#
        );
        assert_eq!(serde_json::from_str::<Skill>(&j).unwrap(), s);
        assert!(serde_json::from_str::<Skill>(r#"{"skill":"fly","to":"moon"}"#).is_err());
        assert!(
            serde_json::from_str::<Skill>(r#"{"skill":"pick","object":"a","speed":9}"#).is_err()
        );
    }

    #[test]
    fn a_valid_plan_is_checked_when_made_and_when_read() {
        let wait = |seconds| Skill::Wait { seconds };
        let pick = |object: &str| Skill::Pick {
            object: object.into(),
        };
        assert!(ValidPlan::new(vec![pick("red_cube"), wait(MAX_WAIT_S)]).is_ok());
        for (bad, why) in [
            (wait(-1.0), PlanProblem::BadWait(1, -1.0)),
            (
                wait(MAX_WAIT_S + 1.0),
                PlanProblem::BadWait(1, MAX_WAIT_S + 1.0),
            ),
            (pick(""), PlanProblem::BadName(1, String::new())),
            (pick(" cube"), PlanProblem::BadName(1, " cube".into())),
            (pick("a\u{7}b"), PlanProblem::BadName(1, "a\u{7}b".into())),
        ] {
            assert_eq!(ValidPlan::new(vec![bad]), Err(why));
        }
        assert!(matches!(
            ValidPlan::new(vec![wait(f64::NAN)]),
            Err(PlanProblem::BadWait(1, _))
        ));
        let chatty = Skill::Say {
            text: "a".repeat(MAX_SAY_CHARS + 1),
        };
        assert_eq!(
            ValidPlan::new(vec![Skill::Stop, chatty]),
            Err(PlanProblem::SayTooLong(2))
        );
        assert_eq!(
            ValidPlan::new(vec![Skill::Stop; MAX_PLAN_STEPS + 1]),
            Err(PlanProblem::TooLong(MAX_PLAN_STEPS + 1))
        );
        // JSON: the same list of skills on the wire, checked on the way in.
        let ok: ValidPlan = serde_json::from_str(r#"[{"skill":"wait","seconds":2.0}]"#).unwrap();
        assert_eq!(ok.steps(), &[wait(2.0)]);
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"[{"skill":"wait","seconds":2.0}]"#
        );
        let err = serde_json::from_str::<ValidPlan>(r#"[{"skill":"wait","seconds":3600}]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside 0..60 s"), "{err}");
    }
}
