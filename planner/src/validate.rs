//! Preconditions of a plan against the world model and the robot, checked for
//! every planner's output before it is published: each thing a step names
//! exists (or was looked for first), is of the right kind, and is within the
//! arm's reach; the hand holds what it places.

use rosetta_common::robot::{RobotDescription, NOMINAL_REACH_M};
use rosetta_common::{ObjectKind, Skill, WorldModel};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Invalid {
    #[error(
        "step {0}: there is no {1} in the world model (and the plan does not look for it first)"
    )]
    Unknown(usize, String),
    #[error("step {0}: {1} cannot be picked up (only cubes can)")]
    NotGraspable(usize, String),
    #[error("step {0}: {1} is not a container")]
    NotAContainer(usize, String),
    #[error("step {0}: {1} is out of the arm's reach (its centre is {2:.2} m high)")]
    OutOfReach(usize, String, f64),
    #[error("step {0}: the robot does not hold {1}")]
    NotHeld(usize, String),
    #[error("step {0}: wait of {1} s is outside 0..{2} s")]
    BadWait(usize, f64, f64),
}

/// The kind of an object id, for objects not seen yet (`<colour>_<kind>`).
fn kind_of_id(id: &str) -> Option<ObjectKind> {
    rosetta_common::world::parse_object_id(id).map(|(_, k)| k)
}

/// Checks `steps` against `world` and the robot's arm.
pub fn validate(
    steps: &[Skill],
    world: &WorldModel,
    robot: &RobotDescription,
) -> Result<(), Invalid> {
    validate_holding(steps, world, robot, None)
}

/// [`validate`] for a robot whose hand holds `held` when the plan starts.
pub fn validate_holding(
    steps: &[Skill],
    world: &WorldModel,
    robot: &RobotDescription,
    held: Option<&str>,
) -> Result<(), Invalid> {
    let mut looked: Vec<&str> = Vec::new();
    let mut holding: Option<&str> = held;
    let reachable = |z: f64| robot.arm.solve_top_down(NOMINAL_REACH_M, z).is_ok();
    for (i, step) in steps.iter().enumerate() {
        let n = i + 1;
        let known = |id: &str, looked: &[&str]| {
            world.get(id).is_some() || world.place(id).is_some() || looked.contains(&id)
        };
        match step {
            Skill::LookFor { object } => {
                if kind_of_id(object).is_none() && world.get(object).is_none() {
                    return Err(Invalid::Unknown(n, object.clone()));
                }
                looked.push(object);
            }
            Skill::NavigateTo { target } => {
                if !known(target, &looked) {
                    return Err(Invalid::Unknown(n, target.clone()));
                }
            }
            Skill::Pick { object } => {
                if !known(object, &looked) {
                    return Err(Invalid::Unknown(n, object.clone()));
                }
                let kind = world
                    .get(object)
                    .map(|o| o.kind)
                    .or_else(|| kind_of_id(object));
                if !kind.is_some_and(|k| k.is_graspable()) {
                    return Err(Invalid::NotGraspable(n, object.clone()));
                }
                if let Some(o) = world.get(object) {
                    if !reachable(o.position_m[2]) {
                        return Err(Invalid::OutOfReach(n, object.clone(), o.position_m[2]));
                    }
                }
                holding = Some(object);
            }
            Skill::Place { object, target } => {
                if holding != Some(object.as_str()) {
                    return Err(Invalid::NotHeld(n, object.clone()));
                }
                if !known(target, &looked) {
                    return Err(Invalid::Unknown(n, target.clone()));
                }
                let kind = world
                    .get(target)
                    .map(|o| o.kind)
                    .or_else(|| kind_of_id(target));
                if !kind.is_some_and(|k| k.is_container()) {
                    return Err(Invalid::NotAContainer(n, target.clone()));
                }
                if let Some(b) = world.get(target) {
                    // Release a little above the bin's rim.
                    let rim = b.position_m[2] + b.size_or_nominal_m()[2] / 2.0 + 0.08;
                    if !reachable(rim) {
                        return Err(Invalid::OutOfReach(n, target.clone(), b.position_m[2]));
                    }
                }
                holding = None;
            }
            Skill::Wait { seconds } => {
                let max = rosetta_common::plan::MAX_WAIT_S;
                if !(0.0..=max).contains(seconds) {
                    return Err(Invalid::BadWait(n, *seconds, max));
                }
            }
            Skill::Say { .. } | Skill::Stop | Skill::LookAround => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosetta_common::{Color, ObservedObject};

    fn world(cube_z: f64) -> WorldModel {
        let o = |id: &str, kind, color, z| ObservedObject {
            id: id.into(),
            kind,
            color,
            position_m: [1.4, 0.0, z],
            last_seen_s: 0.0,
            observations: 3,
            position_sigma_m: 0.0,
            confidence: 1.0,
            size_m: [0.0; 3],
        };
        WorldModel {
            objects: vec![
                o("red_cube", ObjectKind::Cube, Color::Red, cube_z),
                o("blue_bin", ObjectKind::Bin, Color::Blue, 0.125),
            ],
            ..Default::default()
        }
    }

    fn put(o: &str, b: &str) -> Vec<Skill> {
        vec![
            Skill::NavigateTo { target: o.into() },
            Skill::Pick { object: o.into() },
            Skill::NavigateTo { target: b.into() },
            Skill::Place {
                object: o.into(),
                target: b.into(),
            },
        ]
    }

    #[test]
    fn a_put_on_the_table_is_valid() {
        let robot = RobotDescription::default();
        assert_eq!(
            validate(&put("red_cube", "blue_bin"), &world(0.425), &robot),
            Ok(())
        );
    }

    #[test]
    fn an_object_on_a_high_shelf_is_out_of_reach() {
        let robot = RobotDescription::default();
        let err = validate(&put("red_cube", "blue_bin"), &world(1.9), &robot).unwrap_err();
        assert!(matches!(err, Invalid::OutOfReach(2, _, _)), "{err}");
        assert!(err.to_string().contains("out of the arm's reach"));
    }

    #[test]
    fn unknown_wrong_kind_and_not_held_are_refused_with_reasons() {
        let robot = RobotDescription::default();
        let w = world(0.425);
        assert!(matches!(
            validate(&put("green_cube", "blue_bin"), &w, &robot),
            Err(Invalid::Unknown(1, _))
        ));
        let mut looked = vec![Skill::LookFor {
            object: "green_cube".into(),
        }];
        looked.extend(put("green_cube", "blue_bin"));
        assert_eq!(validate(&looked, &w, &robot), Ok(()), "looked for first");
        assert!(matches!(
            validate(&put("blue_bin", "blue_bin"), &w, &robot),
            Err(Invalid::NotGraspable(2, _))
        ));
        assert!(matches!(
            validate(&put("red_cube", "red_cube"), &w, &robot),
            Err(Invalid::NotAContainer(4, _))
        ));
        let place_only = vec![Skill::Place {
            object: "red_cube".into(),
            target: "blue_bin".into(),
        }];
        assert!(matches!(
            validate(&place_only, &w, &robot),
            Err(Invalid::NotHeld(1, _))
        ));
        assert!(matches!(
            validate(&[Skill::Wait { seconds: 3600.0 }], &w, &robot),
            Err(Invalid::BadWait(1, _, _))
        ));
    }
}
