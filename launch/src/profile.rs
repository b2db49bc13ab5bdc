//! Robot profiles: what a real robot's ROS 2 interface calls the stack's
//! topics, and the limits to run it under. `rosetta up --robot-profile FILE`
//! runs the stack on the robot (no embedded sim) with them.

use std::collections::BTreeMap;
use std::path::Path;

use rosetta_common::topics;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read the robot profile {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the robot profile {path} is not valid: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("robot profile {name}: {problem}")]
    Invalid { name: String, problem: String },
}

/// A robot profile (TOML); see `config/robots/example.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobotProfile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The namespace every node runs in (empty: none).
    #[serde(default)]
    pub namespace: String,
    /// The stack's name (as in ARCHITECTURE.md, without the leading `/`) →
    /// the robot's. Only the names that differ.
    #[serde(default)]
    pub remap: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: Limits,
}

/// Limits that can only tighten the URDF's.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_linear_speed_m_s: Option<f64>,
    pub max_angular_speed_rad_s: Option<f64>,
    /// MIN_X, MIN_Y, MAX_X, MAX_Y in `odom`, metres.
    pub geofence_m: Option<[f64; 4]>,
}

impl RobotProfile {
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: shown.clone(),
            source,
        })?;
        let p: Self = toml::from_str(&text).map_err(|source| ProfileError::Parse {
            path: shown,
            source,
        })?;
        p.validate()?;
        Ok(p)
    }

    fn validate(&self) -> Result<(), ProfileError> {
        let bad = |problem: String| ProfileError::Invalid {
            name: self.name.clone(),
            problem,
        };
        for (from, to) in &self.remap {
            if !topics::ALL.contains(&from.as_str()) {
                return Err(bad(format!(
                    "remap of {from:?}: the stack has no such topic (it has: {})",
                    topics::ALL.join(", ")
                )));
            }
            let valid = !to.is_empty()
                && to
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '/' || c == '~');
            if !valid {
                return Err(bad(format!("remap of {from:?} to {to:?}: not a ROS name")));
            }
        }
        rosetta_common::ros::normalize_namespace(&self.namespace)
            .map_err(|e| bad(e.to_string()))?;
        let l = &self.limits;
        for (v, what) in [
            (l.max_linear_speed_m_s, "max_linear_speed_m_s"),
            (l.max_angular_speed_rad_s, "max_angular_speed_rad_s"),
        ] {
            if let Some(v) = v.filter(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(bad(format!("{what} must be a positive number, got {v}")));
            }
        }
        if let Some([x0, y0, x1, y1]) = l.geofence_m {
            if !([x0, y0, x1, y1].iter().all(|v| v.is_finite()) && x0 < x1 && y0 < y1) {
                return Err(bad(format!(
                    "geofence_m must be [MIN_X, MIN_Y, MAX_X, MAX_Y] with min < max, got {:?}",
                    [x0, y0, x1, y1]
                )));
            }
        }
        Ok(())
    }

    /// The ROS arguments that apply the remaps (`--ros-args -r a:=b ...`).
    pub fn ros_args(&self) -> Vec<String> {
        if self.remap.is_empty() {
            return Vec::new();
        }
        let mut v = vec!["--ros-args".to_string()];
        for (from, to) in &self.remap {
            v.push("-r".into());
            v.push(format!("{from}:={to}"));
        }
        v
    }

    /// Control's options for the limits.
    pub fn control_args(&self) -> Vec<String> {
        let l = &self.limits;
        let mut v = Vec::new();
        if let Some(s) = l.max_linear_speed_m_s {
            v.extend(["--max-linear-speed-m-s".to_string(), s.to_string()]);
        }
        if let Some(s) = l.max_angular_speed_rad_s {
            v.extend(["--max-angular-speed-rad-s".to_string(), s.to_string()]);
        }
        if let Some(g) = l.geofence_m {
            v.push("--geofence-m".into());
            v.push(
                g.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> RobotProfile {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/robots/example.toml");
        RobotProfile::load(&path).unwrap()
    }

    #[test]
    fn the_example_profile_loads_and_becomes_arguments() {
        let p = example();
        let ros = p.ros_args();
        assert_eq!(ros[0], "--ros-args");
        assert!(
            ros.contains(&"cmd_vel:=/base/cmd_vel".to_string()),
            "{ros:?}"
        );
        let c = p.control_args();
        assert!(c.windows(2).any(|w| w[0] == "--max-linear-speed-m-s"));
        assert!(c.contains(&"--geofence-m".to_string()));
    }

    #[test]
    fn typos_and_unsafe_limits_are_refused_with_the_reason() {
        let mut p = example();
        p.remap.insert("cmd_vell".into(), "/x".into());
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("no such topic"), "{e}");

        let mut p = example();
        p.limits.max_linear_speed_m_s = Some(f64::NAN);
        assert!(p.validate().is_err());
        let mut p = example();
        p.limits.geofence_m = Some([1.0, 0.0, -1.0, 2.0]);
        assert!(p.validate().is_err());
        let mut p = example();
        p.remap.insert("odom".into(), "has space".into());
        assert!(p.validate().is_err());
    }
}
