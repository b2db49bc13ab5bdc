//! Scenes are data files (TOML), not code. See `sim/scenes/default.toml`.

use std::path::Path;

use rosetta_common::{Color, ObjectKind, Pose2D};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum SceneError {
    #[error("cannot read scene file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("scene file {path} is not a valid scene: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("scene {scene}: {problem}")]
    Invalid { scene: String, problem: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scene {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub room: Room,
    pub robot_start: Pose2D,
    #[serde(default)]
    pub furniture: Vec<Furniture>,
    #[serde(default)]
    pub objects: Vec<SceneObject>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Room {
    /// Inner size of the room, centred on the map origin.
    pub size_m: [f64; 2],
    pub wall_height_m: f64,
    pub wall_thickness_m: f64,
    pub wall_rgb: [u8; 3],
    pub floor_rgb: [u8; 3],
}

/// A box: a table, a dock; or, with a `path`, something that moves (a
/// person, a cart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Furniture {
    pub id: String,
    pub center_m: [f64; 3],
    pub size_m: [f64; 3],
    pub rgb: [u8; 3],
    /// Whether the base collides with it (a dock on the floor does not).
    pub obstacle: bool,
    /// Where its centre is on the floor at given sim times: it stands at
    /// `center_m` until the first waypoint's time, moves in straight lines
    /// between waypoints, and stays at the last one. Empty: it never moves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<Waypoint>,
}

/// Where a moving box's centre is at a sim time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waypoint {
    pub t_s: f64,
    pub center_xy_m: [f64; 2],
}

impl Furniture {
    /// Whether it has a path to follow.
    pub fn moves(&self) -> bool {
        !self.path.is_empty()
    }

    /// Its centre at sim time `t_s`.
    pub fn center_at(&self, t_s: f64) -> [f64; 3] {
        let z = self.center_m[2];
        let mut from = (0.0, [self.center_m[0], self.center_m[1]]);
        for w in &self.path {
            if t_s < w.t_s {
                let span = w.t_s - from.0;
                let k = if span > 0.0 {
                    ((t_s - from.0) / span).clamp(0.0, 1.0)
                } else {
                    1.0
                };
                let lerp = |i: usize| from.1[i] + k * (w.center_xy_m[i] - from.1[i]);
                return [lerp(0), lerp(1), z];
            }
            from = (w.t_s, w.center_xy_m);
        }
        [from.1[0], from.1[1], z]
    }
}

/// A cube (graspable) or a bin (open-topped container, static).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SceneObject {
    pub id: String,
    pub kind: ObjectKind,
    pub color: Color,
    pub position_m: [f64; 3],
    pub size_m: [f64; 3],
}

/// The default scene, compiled in so that the sim starts without files.
pub const DEFAULT_SCENE_TOML: &str = include_str!("../scenes/default.toml");

impl Scene {
    pub fn default_scene() -> Result<Self, SceneError> {
        Self::parse(DEFAULT_SCENE_TOML, "<built-in default>")
    }

    /// Loads a scene by path, or `default` for the built-in one.
    pub fn load(path_or_name: &str) -> Result<Self, SceneError> {
        if path_or_name == "default" {
            return Self::default_scene();
        }
        let path = Path::new(path_or_name);
        let text = std::fs::read_to_string(path).map_err(|source| SceneError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, SceneError> {
        let scene: Scene = toml::from_str(text).map_err(|source| SceneError::Parse {
            path: origin.to_string(),
            source,
        })?;
        scene.validate()?;
        Ok(scene)
    }

    fn validate(&self) -> Result<(), SceneError> {
        let bad = |problem: String| SceneError::Invalid {
            scene: self.name.clone(),
            problem,
        };
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        if !finite(&self.room.size_m) || self.room.size_m.iter().any(|s| *s <= 1.0) {
            return Err(bad("room size must be finite and above 1 m".into()));
        }
        if !self.robot_start.is_finite() {
            return Err(bad("robot start pose is not finite".into()));
        }
        let mut ids = std::collections::HashSet::new();
        for f in &self.furniture {
            if !finite(&f.center_m) || !finite(&f.size_m) || f.size_m.iter().any(|s| *s <= 0.0) {
                return Err(bad(format!("furniture {} has a bad pose or size", f.id)));
            }
            if !ids.insert(f.id.clone()) {
                return Err(bad(format!("duplicate id {}", f.id)));
            }
            let mut last_t = 0.0;
            for w in &f.path {
                if !w.t_s.is_finite() || !finite(&w.center_xy_m) || w.t_s < last_t {
                    return Err(bad(format!(
                        "furniture {}: waypoints need finite positions and times that do not go back (t = {} after {last_t})",
                        f.id, w.t_s
                    )));
                }
                last_t = w.t_s;
            }
        }
        for o in &self.objects {
            if !finite(&o.position_m) || !finite(&o.size_m) || o.size_m.iter().any(|s| *s <= 0.0) {
                return Err(bad(format!("object {} has a bad pose or size", o.id)));
            }
            if !ids.insert(o.id.clone()) {
                return Err(bad(format!("duplicate id {}", o.id)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moving_box_stands_then_follows_its_waypoints_then_stays() {
        let f = Furniture {
            id: "cart".into(),
            center_m: [0.0, 0.0, 0.3],
            size_m: [0.4, 0.4, 0.6],
            rgb: [1, 2, 3],
            obstacle: true,
            path: vec![
                Waypoint {
                    t_s: 2.0,
                    center_xy_m: [2.0, 0.0],
                },
                Waypoint {
                    t_s: 4.0,
                    center_xy_m: [2.0, 2.0],
                },
            ],
        };
        assert_eq!(f.center_at(0.0), [0.0, 0.0, 0.3]);
        assert_eq!(f.center_at(1.0), [1.0, 0.0, 0.3]);
        assert_eq!(f.center_at(3.0), [2.0, 1.0, 0.3]);
        assert_eq!(f.center_at(9.0), [2.0, 2.0, 0.3]);
        let mut bad = Scene::default_scene().unwrap();
        let mut back = f.clone();
        back.path[1].t_s = 1.0;
        bad.furniture.push(back);
        assert!(bad.validate().is_err());
    }

    #[test]
    fn default_scene_parses_with_the_required_contents() {
        let s = Scene::default_scene().unwrap();
        let cubes: Vec<_> = s
            .objects
            .iter()
            .filter(|o| o.kind == ObjectKind::Cube)
            .collect();
        let bins: Vec<_> = s
            .objects
            .iter()
            .filter(|o| o.kind == ObjectKind::Bin)
            .collect();
        assert_eq!(cubes.len(), 4);
        assert_eq!(bins.len(), 2);
        assert!(s.furniture.iter().any(|f| f.id == "table"));
        assert!(s.furniture.iter().any(|f| f.id == "dock"));
        assert!((s.room.size_m[0] - 6.0).abs() < 1e-9);
    }

    #[test]
    fn bad_scenes_are_reported() {
        assert!(matches!(
            Scene::parse("name = 3", "x"),
            Err(SceneError::Parse { .. })
        ));
        let text = DEFAULT_SCENE_TOML.replace("x_m = 0.0", "x_m = nan");
        assert!(matches!(
            Scene::parse(&text, "x"),
            Err(SceneError::Invalid { .. })
        ));
        assert!(matches!(
            Scene::load("/nonexistent.toml"),
            Err(SceneError::Read { .. })
        ));
    }
}
