//! The stack's coordinate frames (REP-105) and the one transform between the
//! fixed ones.
//!
//! - `map`: the site's fixed frame. Named places are given in it, and the
//!   sim's ground truth is reported in it.
//! - `odom`: where odometry started. Continuous, and drifts on a real robot.
//!   Perception publishes the object map and the occupancy grid in it, and
//!   control drives in it.
//! - `base_link`: the robot's base; the camera's optical frame hangs below it.
//!
//! [`MapFromOdom`] is the `map → odom` transform that a localiser publishes
//! (AMCL, a SLAM node). The stack's own localiser is the simplest one: the
//! robot's initial pose in the map, as a person sets it in RViz ("2D Pose
//! Estimate") or a launch file gives it, held fixed while odometry runs.

use serde::{Deserialize, Serialize};

use crate::world::Place;
use crate::Pose2D;

/// The pose of the odometry frame's origin in the map: `map_from_odom`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct MapFromOdom(pub Pose2D);

impl MapFromOdom {
    /// A pose given in `map`, expressed in `odom`.
    pub fn odom_from_map(&self, pose_in_map: &Pose2D) -> Pose2D {
        self.0.inverse().compose(pose_in_map)
    }

    /// A pose given in `odom`, expressed in `map`.
    pub fn map_from_odom(&self, pose_in_odom: &Pose2D) -> Pose2D {
        self.0.compose(pose_in_odom)
    }

    /// Places given in `map` (as a places file holds them), moved into `odom`
    /// to go out with the object map.
    pub fn places_in_odom(&self, places_in_map: &[Place]) -> Vec<Place> {
        places_in_map
            .iter()
            .map(|p| Place {
                pose: self.odom_from_map(&p.pose),
                ..p.clone()
            })
            .collect()
    }
}

/// Reads `X,Y,YAW` (metres, metres, radians), as `--initial-pose` takes it.
pub fn parse_pose(text: &str) -> Result<Pose2D, String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let [x, y, yaw] = parts.as_slice() else {
        return Err(format!(
            "{text:?} is not X,Y,YAW (metres, metres, radians), e.g. 1.5,-0.5,1.57"
        ));
    };
    let num = |s: &str| {
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("{s:?} in {text:?} is not a finite number"))
    };
    Ok(Pose2D::new(num(x)?, num(y)?, num(yaw)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_place_ahead_of_a_turned_start_is_ahead_in_odom() {
        // The robot starts at (1, 2) in the map, facing +y (yaw 90°).
        let t = MapFromOdom(Pose2D::new(1.0, 2.0, std::f64::consts::FRAC_PI_2));
        // A dock 1 m further along +y in the map, facing +y too...
        let dock_in_map = Pose2D::new(1.0, 3.0, std::f64::consts::FRAC_PI_2);
        let dock_in_odom = t.odom_from_map(&dock_in_map);
        // ...is 1 m straight ahead of where odometry started, facing ahead.
        assert!((dock_in_odom.x_m - 1.0).abs() < 1e-12, "{dock_in_odom:?}");
        assert!(dock_in_odom.y_m.abs() < 1e-12 && dock_in_odom.yaw_rad.abs() < 1e-12);
        let back = t.map_from_odom(&dock_in_odom);
        assert!((back.x_m - 1.0).abs() < 1e-12 && (back.y_m - 3.0).abs() < 1e-12);
        let places = [Place {
            id: "dock".into(),
            description: String::new(),
            pose: dock_in_map,
        }];
        assert_eq!(t.places_in_odom(&places)[0].pose, dock_in_odom);
        // At the map's origin the frames agree.
        assert_eq!(
            MapFromOdom::default().places_in_odom(&places)[0].pose,
            dock_in_map
        );
    }

    #[test]
    fn poses_parse_or_say_why_not() {
        assert_eq!(
            parse_pose("1.5, -0.5, 1.57"),
            Ok(Pose2D::new(1.5, -0.5, 1.57))
        );
        assert!(parse_pose("1,2").unwrap_err().contains("X,Y,YAW"));
        assert!(parse_pose("1,nan,0").unwrap_err().contains("finite"));
    }
}
