//! The world model: what perception believes is where. The planner grounds
//! words against it and the executor reads target positions from it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Color {
    Red,
    Green,
    Blue,
    Yellow,
}

impl Color {
    pub const ALL: [Color; 4] = [Color::Red, Color::Green, Color::Blue, Color::Yellow];
    pub fn name(self) -> &'static str {
        match self {
            Color::Red => "red",
            Color::Green => "green",
            Color::Blue => "blue",
            Color::Yellow => "yellow",
        }
    }
    /// The nominal sRGB colour the sim paints objects of this colour with.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Color::Red => [200, 30, 30],
            Color::Green => [30, 170, 50],
            Color::Blue => [30, 60, 200],
            Color::Yellow => [220, 200, 30],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Cube,
    Bin,
}

impl ObjectKind {
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Cube => "cube",
            ObjectKind::Bin => "bin",
        }
    }
    /// Whether things can be placed into it.
    pub fn is_container(self) -> bool {
        matches!(self, ObjectKind::Bin)
    }
    /// Nominal size (x, y, z) of objects of this kind in the default world, used
    /// to place an object's centre below its observed top surface.
    pub fn nominal_size_m(self) -> [f64; 3] {
        match self {
            ObjectKind::Cube => [0.05, 0.05, 0.05],
            ObjectKind::Bin => [0.3, 0.3, 0.25],
        }
    }
    /// Whether the arm can pick it up.
    pub fn is_graspable(self) -> bool {
        matches!(self, ObjectKind::Cube)
    }
}

/// The id perception gives an object of a kind and colour (unique per pair in this skeleton).
pub fn object_id(color: Color, kind: ObjectKind) -> String {
    format!("{}_{}", color.name(), kind.name())
}

/// One object in perception's map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedObject {
    pub id: String,
    pub kind: ObjectKind,
    pub color: Color,
    /// Centre of the object in [`WorldModel::frame_id`].
    pub position_m: [f64; 3],
    /// Sim time of the last observation.
    pub last_seen_s: f64,
    /// Number of frames it was seen in.
    pub observations: u32,
}

/// Perception's object map, published on [`crate::topics::OBJECTS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct WorldModel {
    pub stamp_s: f64,
    pub frame_id: String,
    pub objects: Vec<ObservedObject>,
}

impl WorldModel {
    pub fn get(&self, id: &str) -> Option<&ObservedObject> {
        self.objects.iter().find(|o| o.id == id)
    }
}
