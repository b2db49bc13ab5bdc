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

/// An object: a container (open-topped, static) or a graspable thing, drawn
/// as its category's shape (box, sphere or upright cylinder) inscribed in
/// `size_m`. `color` is its name; `rgb`, if given, the exact paint (else the
/// name's prototype), so that a scene can hold a pale pink or a dark orange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SceneObject {
    pub id: String,
    pub kind: ObjectKind,
    pub color: Color,
    pub position_m: [f64; 3],
    pub size_m: [f64; 3],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rgb: Option<[u8; 3]>,
}

/// The default scene, compiled in so that the sim starts without files.
pub const DEFAULT_SCENE_TOML: &str = include_str!("../scenes/default.toml");
/// Household things of other categories and colours (`--scene household`).
pub const HOUSEHOLD_SCENE_TOML: &str = include_str!("../scenes/household.toml");

impl Scene {
    pub fn default_scene() -> Result<Self, SceneError> {
        Self::parse(DEFAULT_SCENE_TOML, "<built-in default>")
    }

    /// Loads a scene by path, `default` or `household` for a built-in one,
    /// or `random:SEED` for a generated one ([`Scene::random`]).
    pub fn load(path_or_name: &str) -> Result<Self, SceneError> {
        if path_or_name == "default" {
            return Self::default_scene();
        }
        if path_or_name == "household" {
            return Self::parse(HOUSEHOLD_SCENE_TOML, "<built-in household scene>");
        }
        if let Some(seed) = path_or_name.strip_prefix("random:") {
            let seed = seed.parse::<u64>().map_err(|e| SceneError::Invalid {
                scene: path_or_name.to_string(),
                problem: format!("a random scene is random:SEED, with SEED a whole number ({e})"),
            })?;
            return Ok(Self::random(seed));
        }
        if path_or_name == "random" {
            return Err(SceneError::Invalid {
                scene: path_or_name.to_string(),
                problem: "give the generator's seed: random:SEED (or --scene random --seed N)"
                    .into(),
            });
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
            if o.kind.is_container() && o.size_m[2] < 0.1 {
                // Perception takes a low, wide thing for a mat (as the dock).
                tracing::warn!(
                    id = %o.id,
                    height_m = o.size_m[2],
                    "a container lower than 0.1 m is not seen as a container by perception"
                );
            }
        }
        Ok(())
    }
}

/// How far in front of a table's near edge the generator puts objects: the
/// default scene's cubes stand 0.18 m in, where the arm reaches them from
/// the pose the planner drives to.
const RANDOM_OBJECT_INSET_M: f64 = 0.18;
/// What the generator puts on tables.
const RANDOM_THINGS: [ObjectKind; 5] = [
    ObjectKind::Cube,
    ObjectKind::Box,
    ObjectKind::Ball,
    ObjectKind::Cylinder,
    ObjectKind::Mug,
];
/// The least distance between neighbouring objects on a table (centres).
const RANDOM_OBJECT_SPACING_M: f64 = 0.16;
/// How far the centre of an extra table keeps from the walls, and from the
/// other things the base must pass (the main table's ends, the start, the
/// dock, bins), so that the base can drive around it.
const RANDOM_TABLE_WALL_M: f64 = 1.1;
const RANDOM_TABLE_CLEARANCE_M: f64 = 1.4;
/// Clearance that keeps a bin off the walls, the table, the dock, the robot's
/// start and the other bins, so that the base can drive around it.
const RANDOM_BIN_CLEARANCE_M: f64 = 0.9;

impl Scene {
    /// A scene generated from `seed` (the same seed, the same scene): the
    /// default room with a table at a random place in front of the robot's
    /// start and up to two smaller tables of other heights about the room,
    /// 3 to 6 things on the main table's near edge and 1 to 3 on the edge of
    /// each other table that faces the start (cubes, boxes, balls, cans and
    /// mugs of any of the eleven colour names, drawn from three or four
    /// colours per scene so that the same colour recurs on things of other
    /// kinds and duplicates happen), 1 to 3 bins of random colours on the
    /// floor where the base can reach them, the dock, and the robot's start
    /// jittered around the map origin. Every id is what perception would
    /// call the thing (`red_cube`, `red_cube_2`, `pink_mug`, ...). `rosetta
    /// scene generate --seed N` writes one as a scene file to look at or edit.
    pub fn random(seed: u64) -> Scene {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let base = Scene::default_scene().expect("the built-in scene parses (tested)");
        let mut scene = Scene {
            name: format!("random-{seed}"),
            description: format!(
                "Generated by Scene::random({seed}): a table with things on it, bins on the floor, a dock."
            ),
            room: base.room.clone(),
            robot_start: Pose2D {
                x_m: rng.gen_range(-0.4..0.2),
                y_m: rng.gen_range(-0.4..0.4),
                yaw_rad: rng.gen_range(-0.35..0.35),
            },
            furniture: base.furniture.clone(),
            objects: Vec::new(),
        };
        let table = scene
            .furniture
            .iter_mut()
            .find(|f| f.id == "table")
            .expect("the built-in scene has a table (tested)");
        table.center_m[0] = rng.gen_range(1.4..1.9);
        table.center_m[1] = rng.gen_range(-0.6..0.6);
        let table = table.clone();
        let dock = scene.furniture.iter().find(|f| f.id == "dock").cloned();

        let mut count = std::collections::HashMap::<(Color, ObjectKind), usize>::new();
        let mut next_id = |color: Color, kind: ObjectKind| {
            let n = count.entry((color, kind)).or_insert(0);
            *n += 1;
            rosetta_common::world::instance_id(color, kind, *n)
        };

        // Things along the near edge, left to right, spaced at random, in
        // colours from a small palette of the scene's own.
        let things = rng.gen_range(3..=6usize);
        let mut palette = Color::ALL.to_vec();
        for i in 0..palette.len() {
            let j = rng.gen_range(i..palette.len());
            palette.swap(i, j);
        }
        palette.truncate(rng.gen_range(3..=4usize));
        let half_free = table.size_m[1] / 2.0 - 0.1;
        let mut ys: Vec<f64> = Vec::new();
        for _ in 0..200 {
            if ys.len() == things {
                break;
            }
            let y = rng.gen_range(-half_free..half_free);
            if ys.iter().all(|o| (o - y).abs() >= RANDOM_OBJECT_SPACING_M) {
                ys.push(y);
            }
        }
        ys.sort_by(|a, b| b.total_cmp(a));
        let table_top = table.center_m[2] + table.size_m[2] / 2.0;
        for y in ys {
            let kind = RANDOM_THINGS[rng.gen_range(0..RANDOM_THINGS.len())];
            let color = palette[rng.gen_range(0..palette.len())];
            let size_m = kind.nominal_size_m();
            scene.objects.push(SceneObject {
                id: next_id(color, kind),
                kind,
                color,
                position_m: [
                    table.center_m[0] - table.size_m[0] / 2.0 + RANDOM_OBJECT_INSET_M,
                    table.center_m[1] + y,
                    table_top + size_m[2] / 2.0,
                ],
                size_m,
                rgb: None,
            });
        }

        // Millimetres and milliradians: what a scene file would say.
        let mm = |v: f64| (v * 1000.0).round() / 1000.0;
        // Bins on the floor, clear of everything the base must pass.
        let bins = rng.gen_range(1..=3usize);
        let half = [scene.room.size_m[0] / 2.0, scene.room.size_m[1] / 2.0];
        let mut taken: Vec<[f64; 2]> = vec![
            [scene.robot_start.x_m, scene.robot_start.y_m],
            [table.center_m[0], table.center_m[1] - table.size_m[1] / 2.0],
            [table.center_m[0], table.center_m[1]],
            [table.center_m[0], table.center_m[1] + table.size_m[1] / 2.0],
        ];
        if let Some(d) = &dock {
            taken.push([d.center_m[0], d.center_m[1]]);
        }
        // More surfaces: up to two small tables about the room, each with a
        // few things along the edge that faces the robot's start.
        let extra_tables = rng.gen_range(0..=2usize);
        for n in 0..extra_tables {
            let height = mm(rng.gen_range(0.35..0.45));
            let size_m = if rng.gen_bool(0.5) {
                [0.8, 0.5, height]
            } else {
                [0.5, 0.8, height]
            };
            let inner = [half[0] - RANDOM_TABLE_WALL_M, half[1] - RANDOM_TABLE_WALL_M];
            let spot = (0..500).find_map(|_| {
                let p = [
                    rng.gen_range(-inner[0]..inner[0]),
                    rng.gen_range(-inner[1]..inner[1]),
                ];
                let clear = taken.iter().all(|t| {
                    ((t[0] - p[0]).powi(2) + (t[1] - p[1]).powi(2)).sqrt()
                        >= RANDOM_TABLE_CLEARANCE_M
                });
                clear.then_some(p)
            });
            let Some(p) = spot else {
                break;
            };
            let long = if size_m[0] > size_m[1] { 0 } else { 1 };
            for f in [-0.5, 0.0, 0.5] {
                let mut q = p;
                q[long] += f * size_m[long];
                taken.push(q);
            }
            scene.furniture.push(Furniture {
                id: format!("table_{}", n + 2),
                center_m: [p[0], p[1], height / 2.0],
                size_m,
                rgb: table.rgb,
                obstacle: true,
                path: Vec::new(),
            });
            // The edge whose outward side faces the start.
            let to_start = [scene.robot_start.x_m - p[0], scene.robot_start.y_m - p[1]];
            let axis = if to_start[0].abs() / size_m[0] > to_start[1].abs() / size_m[1] {
                0
            } else {
                1
            };
            let side = to_start[axis].signum();
            let along = 1 - axis;
            let free = size_m[along] / 2.0 - 0.08;
            let mut offsets: Vec<f64> = Vec::new();
            let wanted = rng.gen_range(1..=3usize);
            for _ in 0..200 {
                if offsets.len() == wanted {
                    break;
                }
                let o = rng.gen_range(-free..free);
                if offsets
                    .iter()
                    .all(|x| (x - o).abs() >= RANDOM_OBJECT_SPACING_M)
                {
                    offsets.push(o);
                }
            }
            for o in offsets {
                let kind = RANDOM_THINGS[rng.gen_range(0..RANDOM_THINGS.len())];
                let color = palette[rng.gen_range(0..palette.len())];
                let size = kind.nominal_size_m();
                let mut pos = [0.0, 0.0, height + size[2] / 2.0];
                pos[axis] = p[axis] + side * (size_m[axis] / 2.0 - RANDOM_OBJECT_INSET_M);
                pos[along] = p[along] + o;
                scene.objects.push(SceneObject {
                    id: next_id(color, kind),
                    kind,
                    color,
                    position_m: pos,
                    size_m: size,
                    rgb: None,
                });
            }
        }
        let margin = RANDOM_BIN_CLEARANCE_M;
        for _ in 0..bins {
            let spot = (0..500).find_map(|_| {
                let p = [
                    rng.gen_range(-half[0] + margin..half[0] - margin),
                    rng.gen_range(-half[1] + margin..half[1] - margin),
                ];
                let clear = taken
                    .iter()
                    .all(|t| ((t[0] - p[0]).powi(2) + (t[1] - p[1]).powi(2)).sqrt() >= margin);
                clear.then_some(p)
            });
            let Some(p) = spot else {
                break;
            };
            taken.push(p);
            let color = Color::ALL[rng.gen_range(0..Color::ALL.len())];
            scene.objects.push(SceneObject {
                id: next_id(color, ObjectKind::Bin),
                kind: ObjectKind::Bin,
                color,
                position_m: [p[0], p[1], 0.125],
                size_m: [0.3, 0.3, 0.25],
                rgb: None,
            });
        }
        for x in [
            &mut scene.robot_start.x_m,
            &mut scene.robot_start.y_m,
            &mut scene.robot_start.yaw_rad,
        ] {
            *x = mm(*x);
        }
        for f in &mut scene.furniture {
            f.center_m = f.center_m.map(mm);
        }
        for o in &mut scene.objects {
            o.position_m = o.position_m.map(mm);
        }
        scene
    }

    /// The scene as a scene file (TOML).
    pub fn to_toml(&self) -> Result<String, SceneError> {
        toml::to_string(self).map_err(|e| SceneError::Invalid {
            scene: self.name.clone(),
            problem: format!("cannot be written as TOML: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator is deterministic, stays inside its bounds, and writes
    /// scenes that read back the same.
    #[test]
    fn random_scenes_are_reproducible_valid_and_reachable() {
        assert_eq!(Scene::random(7), Scene::random(7));
        assert_ne!(Scene::random(7), Scene::random(8));
        let mut saw_duplicate = false;
        let mut kinds_seen = std::collections::HashSet::new();
        let mut max_tables = 0;
        let mut colours_seen = std::collections::HashSet::new();
        for seed in 0..200 {
            let s = Scene::random(seed);
            s.validate().unwrap();
            let back = Scene::parse(&s.to_toml().unwrap(), "generated").unwrap();
            assert_eq!(back, s, "seed {seed}");
            let things: Vec<_> = s.objects.iter().filter(|o| o.kind.is_graspable()).collect();
            let bins: Vec<_> = s.objects.iter().filter(|o| o.kind.is_container()).collect();
            assert!(
                (3..=12).contains(&things.len()),
                "seed {seed}: {} things",
                things.len()
            );
            assert!(
                (1..=3).contains(&bins.len()),
                "seed {seed}: {} bins",
                bins.len()
            );
            let tables: Vec<_> = s
                .furniture
                .iter()
                .filter(|f| f.id.starts_with("table"))
                .collect();
            assert!((1..=3).contains(&tables.len()), "seed {seed}");
            max_tables = max_tables.max(tables.len());
            for c in &things {
                // Standing on a table's top, at one edge's reach.
                let on = tables.iter().find(|t| {
                    (0..2).all(|k| (c.position_m[k] - t.center_m[k]).abs() < t.size_m[k] / 2.0)
                });
                let t = on.unwrap_or_else(|| panic!("seed {seed}: {} on no table", c.id));
                let top = t.center_m[2] + t.size_m[2] / 2.0;
                assert!(
                    (c.position_m[2] - c.size_m[2] / 2.0 - top).abs() < 1e-3,
                    "seed {seed}"
                );
                // At the reach of one of its edges.
                let at_edge = (0..2).any(|k| {
                    let inset = t.size_m[k] / 2.0 - (c.position_m[k] - t.center_m[k]).abs();
                    (inset - RANDOM_OBJECT_INSET_M).abs() < 2e-3
                });
                assert!(
                    at_edge,
                    "seed {seed}: {} is not {RANDOM_OBJECT_INSET_M} m in from an edge",
                    c.id
                );
                kinds_seen.insert(c.kind);
                colours_seen.insert(c.color);
            }
            // The extra tables keep clear of the walls and of the bins.
            for t in &tables[1..] {
                for k in 0..2 {
                    assert!(
                        t.center_m[k].abs() <= s.room.size_m[k] / 2.0 - RANDOM_TABLE_WALL_M + 2e-3
                    );
                }
                for b in &bins {
                    let d =
                        (b.position_m[0] - t.center_m[0]).hypot(b.position_m[1] - t.center_m[1]);
                    assert!(d >= RANDOM_BIN_CLEARANCE_M - 3e-3, "seed {seed}");
                }
            }
            for (i, a) in things.iter().enumerate() {
                for b in &things[i + 1..] {
                    let d = (a.position_m[0] - b.position_m[0])
                        .hypot(a.position_m[1] - b.position_m[1]);
                    assert!(d >= RANDOM_OBJECT_SPACING_M - 2e-3, "seed {seed}");
                }
            }
            for b in &bins {
                for k in 0..2 {
                    assert!(
                        b.position_m[k].abs()
                            <= s.room.size_m[k] / 2.0 - RANDOM_BIN_CLEARANCE_M + 2e-3
                    );
                }
                let d = ((b.position_m[0] - s.robot_start.x_m).powi(2)
                    + (b.position_m[1] - s.robot_start.y_m).powi(2))
                .sqrt();
                assert!(
                    d >= RANDOM_BIN_CLEARANCE_M - 3e-3,
                    "seed {seed}: bin {d} m from the start"
                );
            }
            let mut kinds = std::collections::HashSet::new();
            saw_duplicate |= !s.objects.iter().all(|o| kinds.insert((o.color, o.kind)));
        }
        assert!(
            saw_duplicate,
            "no scene had two things of one colour and kind"
        );
        assert_eq!(kinds_seen.len(), RANDOM_THINGS.len(), "{kinds_seen:?}");
        assert_eq!(max_tables, 3);
        assert_eq!(colours_seen.len(), Color::ALL.len(), "{colours_seen:?}");
        assert!(matches!(Scene::load("random:12"), Ok(s) if s == Scene::random(12)));
        assert!(Scene::load("random:x").is_err());
        assert!(Scene::load("random").is_err());
    }

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
