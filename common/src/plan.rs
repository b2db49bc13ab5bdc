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
    /// Which planner produced it (e.g. `rules-standin`).
    pub planner: String,
    /// Wall time the planner took, in seconds.
    pub planning_time_s: f64,
    /// 1 for the first plan of a command; more when the planner re-planned
    /// after the executor reported a failure.
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
    Plan { steps: Vec<Skill> },
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
}
