//! The world model: what perception believes is where. The planner grounds
//! words against it and control reads target positions from it.

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

/// The id perception gives the first object of a kind and colour it sees
/// (`red_cube`); a planner names an object not seen yet by it too.
pub fn object_id(color: Color, kind: ObjectKind) -> String {
    format!("{}_{}", color.name(), kind.name())
}

/// The id perception gives the `n`-th object of a kind and colour, counted
/// from 1 in the order first seen: `red_cube`, then `red_cube_2`, .... Ids
/// are descriptive for people and for the model's prompt, and stable while
/// the object is tracked; an object's colour and kind are its fields, never
/// read back from its id.
pub fn instance_id(color: Color, kind: ObjectKind, n: usize) -> String {
    match n {
        0 | 1 => object_id(color, kind),
        n => format!("{}_{n}", object_id(color, kind)),
    }
}

/// The colour and kind an object id names (`red_cube`), if it is `<colour>_<kind>`.
pub fn parse_object_id(id: &str) -> Option<(Color, ObjectKind)> {
    let (c, k) = id.split_once('_')?;
    let color = Color::ALL.into_iter().find(|x| x.name() == c)?;
    let kind = [ObjectKind::Cube, ObjectKind::Bin]
        .into_iter()
        .find(|x| x.name() == k)?;
    Some((color, kind))
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
    /// How far the observations scatter about `position_m` (one sigma, metres):
    /// the position's uncertainty.
    #[serde(default)]
    pub position_sigma_m: f64,
    /// The detector's confidence in it, averaged over recent frames (0..1).
    #[serde(default)]
    pub confidence: f64,
}

/// A named place of the site map: the pose the robot drives to when told to
/// go there (the dock, the front of the table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Place {
    pub id: String,
    /// What a person calls it, for prompts and messages.
    #[serde(default)]
    pub description: String,
    /// In the map frame as a places file gives it; in [`WorldModel::frame_id`]
    /// (odom) in the object map, moved there by perception
    /// ([`crate::frames::MapFromOdom::places_in_odom`]).
    pub pose: crate::Pose2D,
}

/// The places file (`config/places/*.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PlacesFile {
    pub places: Vec<Place>,
}

/// The default site's places, as committed in `config/places/default.toml`.
pub const DEFAULT_PLACES_TOML: &str = include_str!("../../config/places/default.toml");

#[derive(Debug, thiserror::Error)]
pub enum PlacesError {
    #[error("the places file does not parse: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("place {0:?} has a non-finite pose")]
    NotFinite(String),
    #[error("place id {0:?} is not a lower-case identifier (a-z, 0-9, _)")]
    BadId(String),
    #[error("place id {0:?} is used twice, or also names an object kind")]
    Duplicate(String),
}

/// Parses and checks a places file.
pub fn parse_places(text: &str) -> Result<Vec<Place>, PlacesError> {
    let file: PlacesFile = toml::from_str(text)?;
    let mut seen: Vec<&str> = Vec::new();
    for p in &file.places {
        if !p.pose.is_finite() {
            return Err(PlacesError::NotFinite(p.id.clone()));
        }
        let ok = !p.id.is_empty()
            && p.id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(PlacesError::BadId(p.id.clone()));
        }
        let clashes = Color::ALL.iter().any(|c| {
            [ObjectKind::Cube, ObjectKind::Bin]
                .iter()
                .any(|k| object_id(*c, *k) == p.id)
        });
        if seen.contains(&p.id.as_str()) || clashes {
            return Err(PlacesError::Duplicate(p.id.clone()));
        }
        seen.push(&p.id);
    }
    Ok(file.places)
}

/// Perception's object map, published on [`crate::topics::OBJECTS`], with the
/// site's named places.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct WorldModel {
    pub stamp_s: f64,
    pub frame_id: String,
    pub objects: Vec<ObservedObject>,
    #[serde(default)]
    pub places: Vec<Place>,
}

impl WorldModel {
    pub fn get(&self, id: &str) -> Option<&ObservedObject> {
        self.objects.iter().find(|o| o.id == id)
    }
    pub fn place(&self, id: &str) -> Option<&Place> {
        self.places.iter().find(|p| p.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_places_parse() {
        let places = parse_places(DEFAULT_PLACES_TOML).unwrap();
        assert!(places.iter().any(|p| p.id == "dock"));
    }

    #[test]
    fn bad_places_are_clear_errors() {
        let nan = "[[places]]\nid = \"dock\"\npose = { x_m = nan, y_m = 0.0, yaw_rad = 0.0 }\n";
        assert!(matches!(parse_places(nan), Err(PlacesError::NotFinite(_))));
        let bad = "[[places]]\nid = \"Dock 1\"\npose = { x_m = 0.0, y_m = 0.0, yaw_rad = 0.0 }\n";
        assert!(matches!(parse_places(bad), Err(PlacesError::BadId(_))));
        let clash =
            "[[places]]\nid = \"red_cube\"\npose = { x_m = 0.0, y_m = 0.0, yaw_rad = 0.0 }\n";
        assert!(matches!(
            parse_places(clash),
            Err(PlacesError::Duplicate(_))
        ));
        assert!(matches!(
            parse_places("places = 3"),
            Err(PlacesError::Parse(_))
        ));
    }
}
