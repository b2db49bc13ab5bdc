//! Goal conditions: what a command asked for, as facts about the world that
//! can be checked after its plan ran ("the red cube is in the blue bin", "the
//! robot is at the dock"). A plan carries them; the executive checks them
//! against the world model as perception sees it once the last step has
//! succeeded, so that "succeeded" means the goal holds, not only that every
//! step returned.
//!
//! Pure: a goal, the world model, the robot's pose and what the plan's own
//! steps established in; whether it holds, and why not, out.

use serde::{Deserialize, Serialize};

use crate::world::{ObservedObject, WorldModel};
use crate::Pose2D;

/// One condition of a command's goal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "goal", rename_all = "snake_case", deny_unknown_fields)]
pub enum Goal {
    /// The object lies in the container.
    InContainer { object: String, container: String },
    /// The robot holds the object.
    Holding { object: String },
    /// The robot stands at a named place, or by an object.
    At { target: String },
}

impl Goal {
    /// A short sentence: "red_cube in blue_bin".
    pub fn describe(&self) -> String {
        match self {
            Goal::InContainer { object, container } => format!("{object} in {container}"),
            Goal::Holding { object } => format!("holding {object}"),
            Goal::At { target } => format!("at {target}"),
        }
    }

    /// Whether the world model alone shows this goal holding (no step
    /// history): the planner uses it to leave out work that is already done.
    pub fn holds_in(&self, world: &WorldModel, robot: Option<&Pose2D>) -> bool {
        check(self, world, robot, &Evidence::default()).holds
    }
}

/// How far from a place's pose the robot may stand and be "at" it.
pub const AT_PLACE_TOLERANCE_M: f64 = 0.30;
/// How far from an object the robot's base may stand and be "at" it.
pub const AT_OBJECT_TOLERANCE_M: f64 = 0.90;
/// A held object is carried by the arm: within this of the base's centre.
pub const HELD_WITHIN_M: f64 = 0.75;
/// Margin beyond a container's half width within which an object still counts as in it.
const IN_CONTAINER_MARGIN_M: f64 = 0.03;

/// What the plan's own steps established, for objects that perception has
/// not seen since (a cube dropped into a bin may be hidden by its walls).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// (object, container, sim time the `place` step succeeded).
    pub placed: Vec<(String, String, f64)>,
}

/// The verdict on one goal condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GoalCheck {
    pub goal: Goal,
    pub holds: bool,
    /// Why it holds or not, in words.
    pub why: String,
}

fn horizontal_distance(a: [f64; 3], b: [f64; 2]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

fn inside(o: &ObservedObject, c: &ObservedObject) -> bool {
    let half = c.size_or_nominal_m();
    let top = c.position_m[2] + half[2] / 2.0;
    (o.position_m[0] - c.position_m[0]).abs() <= half[0] / 2.0 + IN_CONTAINER_MARGIN_M
        && (o.position_m[1] - c.position_m[1]).abs() <= half[1] / 2.0 + IN_CONTAINER_MARGIN_M
        && o.position_m[2] <= top
}

/// Checks one goal against the world model (in its frame), the robot's pose
/// in the same frame (if known), and what the plan's steps established.
pub fn check(
    goal: &Goal,
    world: &WorldModel,
    robot: Option<&Pose2D>,
    evidence: &Evidence,
) -> GoalCheck {
    let verdict = |holds: bool, why: String| GoalCheck {
        goal: goal.clone(),
        holds,
        why,
    };
    match goal {
        Goal::InContainer { object, container } => {
            let Some(c) = world.get(container) else {
                return verdict(false, format!("{container} is not in the world model"));
            };
            let placed_at = evidence
                .placed
                .iter()
                .rev()
                .find(|(o, b, _)| o == object && b == container)
                .map(|(_, _, t)| *t);
            match world.get(object) {
                Some(o) if inside(o, c) => {
                    verdict(true, format!("{object} is seen in {container}"))
                }
                Some(o) if placed_at.is_some_and(|t| o.last_seen_s <= t) => verdict(
                    true,
                    format!(
                        "{object} was placed in {container} and has not been seen elsewhere since"
                    ),
                ),
                Some(o) => verdict(
                    false,
                    format!(
                        "{object} is at ({:.2}, {:.2}, {:.2}) m, not in {container}",
                        o.position_m[0], o.position_m[1], o.position_m[2]
                    ),
                ),
                None if placed_at.is_some() => verdict(
                    true,
                    format!("{object} was placed in {container} (not in view since)"),
                ),
                None => verdict(false, format!("{object} is not in the world model")),
            }
        }
        Goal::Holding { object } => match (world.get(object), robot) {
            (Some(o), Some(r)) => {
                let d = horizontal_distance(o.position_m, [r.x_m, r.y_m]);
                if d <= HELD_WITHIN_M {
                    verdict(
                        true,
                        format!("{object} is with the robot ({d:.2} m from its base)"),
                    )
                } else {
                    verdict(
                        false,
                        format!("{object} is {d:.2} m from the robot, not held"),
                    )
                }
            }
            (None, _) => verdict(false, format!("{object} is not in the world model")),
            (Some(_), None) => verdict(false, "the robot's pose is unknown".into()),
        },
        Goal::At { target } => {
            let Some(r) = robot else {
                return verdict(false, "the robot's pose is unknown".into());
            };
            let (point, tolerance) = if let Some(p) = world.place(target) {
                ([p.pose.x_m, p.pose.y_m, 0.0], AT_PLACE_TOLERANCE_M)
            } else if let Some(o) = world.get(target) {
                (o.position_m, AT_OBJECT_TOLERANCE_M)
            } else {
                return verdict(false, format!("{target} is not in the world model"));
            };
            let d = horizontal_distance(point, [r.x_m, r.y_m]);
            if d <= tolerance {
                verdict(true, format!("the robot is {d:.2} m from {target}"))
            } else {
                verdict(
                    false,
                    format!("the robot is {d:.2} m from {target} (more than {tolerance:.2} m)"),
                )
            }
        }
    }
}

/// Checks every goal; the failures' reasons joined, if any failed.
pub fn check_all(
    goals: &[Goal],
    world: &WorldModel,
    robot: Option<&Pose2D>,
    evidence: &Evidence,
) -> (Vec<GoalCheck>, Option<String>) {
    let checks: Vec<GoalCheck> = goals
        .iter()
        .map(|g| check(g, world, robot, evidence))
        .collect();
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.holds)
        .map(|c| c.why.clone())
        .collect();
    let why =
        (!failed.is_empty()).then(|| format!("the goal does not hold: {}", failed.join("; ")));
    (checks, why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::{Color, ObjectKind, Place};

    fn obj(id: &str, kind: ObjectKind, p: [f64; 3], seen: f64) -> ObservedObject {
        ObservedObject {
            id: id.into(),
            kind,
            color: Color::Red,
            position_m: p,
            last_seen_s: seen,
            observations: 5,
            position_sigma_m: 0.0,
            confidence: 1.0,
            size_m: [0.0; 3],
        }
    }

    fn world(cube: [f64; 3], seen: f64) -> WorldModel {
        WorldModel {
            stamp_s: 10.0,
            frame_id: "odom".into(),
            objects: vec![
                obj("red_cube", ObjectKind::Cube, cube, seen),
                obj("blue_bin", ObjectKind::Bin, [0.0, 1.6, 0.125], 9.0),
            ],
            places: vec![Place {
                id: "dock".into(),
                description: String::new(),
                pose: Pose2D::new(-2.6, 0.0, 3.1),
            }],
        }
    }

    fn in_bin() -> Goal {
        Goal::InContainer {
            object: "red_cube".into(),
            container: "blue_bin".into(),
        }
    }

    #[test]
    fn an_object_seen_inside_the_container_holds_and_one_on_the_table_does_not() {
        let none = Evidence::default();
        let c = check(&in_bin(), &world([0.05, 1.58, 0.05], 9.5), None, &none);
        assert!(c.holds, "{}", c.why);
        let c = check(&in_bin(), &world([1.42, -0.36, 0.425], 9.5), None, &none);
        assert!(!c.holds);
        assert!(c.why.contains("not in blue_bin"), "{}", c.why);
    }

    #[test]
    fn a_placed_object_not_seen_since_holds_but_one_seen_elsewhere_after_does_not() {
        let placed = Evidence {
            placed: vec![("red_cube".into(), "blue_bin".into(), 8.0)],
        };
        // Last seen before the place (in the gripper): the place step stands.
        let c = check(&in_bin(), &world([0.3, 1.2, 0.6], 7.5), None, &placed);
        assert!(c.holds, "{}", c.why);
        // Seen on the floor after the place: it fell out.
        let c = check(&in_bin(), &world([0.6, 1.0, 0.025], 9.0), None, &placed);
        assert!(!c.holds, "{}", c.why);
    }

    #[test]
    fn at_a_place_and_holding_depend_on_the_robots_pose() {
        let w = world([-2.4, 0.1, 0.3], 9.0);
        let at = Goal::At {
            target: "dock".into(),
        };
        assert!(
            check(
                &at,
                &w,
                Some(&Pose2D::new(-2.55, 0.05, 3.0)),
                &Evidence::default()
            )
            .holds
        );
        let far = check(
            &at,
            &w,
            Some(&Pose2D::new(0.9, 0.0, 0.0)),
            &Evidence::default(),
        );
        assert!(!far.holds && far.why.contains("3.50 m"), "{}", far.why);
        assert!(!check(&at, &w, None, &Evidence::default()).holds);
        let held = Goal::Holding {
            object: "red_cube".into(),
        };
        assert!(held.holds_in(&w, Some(&Pose2D::new(-2.6, 0.0, 0.0))));
        assert!(!held.holds_in(&w, Some(&Pose2D::new(0.0, 0.0, 0.0))));
    }

    #[test]
    fn check_all_names_every_failed_condition() {
        let w = world([1.42, -0.36, 0.425], 9.0);
        let goals = [
            in_bin(),
            Goal::At {
                target: "dock".into(),
            },
        ];
        let (checks, why) = check_all(&goals, &w, Some(&Pose2D::default()), &Evidence::default());
        assert_eq!(checks.len(), 2);
        let why = why.expect("both fail");
        assert!(why.contains("red_cube") && why.contains("dock"), "{why}");
        let (_, none) = check_all(&[], &w, None, &Evidence::default());
        assert!(none.is_none());
    }
}
