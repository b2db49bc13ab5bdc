//! The world model: what perception believes is where. The planner grounds
//! words against it and control reads target positions from it.

use serde::{Deserialize, Serialize};

/// A colour name from the basic colour terms (Berlin and Kay's eleven). An
/// object's colour is measured as RGB and named with [`Color::from_rgb`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Color {
    Red,
    Green,
    Blue,
    Yellow,
    Orange,
    Purple,
    Pink,
    Brown,
    Black,
    White,
    #[serde(alias = "gray")]
    Grey,
}

impl Color {
    /// Every colour name, the first four being [`Color::PRIMARY`].
    pub const ALL: [Color; 11] = [
        Color::Red,
        Color::Green,
        Color::Blue,
        Color::Yellow,
        Color::Orange,
        Color::Purple,
        Color::Pink,
        Color::Brown,
        Color::Black,
        Color::White,
        Color::Grey,
    ];
    /// The four colours of the original cube world: the learned detector's
    /// classes and the planner corpus's colours are these.
    pub const PRIMARY: [Color; 4] = [Color::Red, Color::Green, Color::Blue, Color::Yellow];

    pub fn name(self) -> &'static str {
        match self {
            Color::Red => "red",
            Color::Green => "green",
            Color::Blue => "blue",
            Color::Yellow => "yellow",
            Color::Orange => "orange",
            Color::Purple => "purple",
            Color::Pink => "pink",
            Color::Brown => "brown",
            Color::Black => "black",
            Color::White => "white",
            Color::Grey => "grey",
        }
    }

    /// The colour a word names: the term itself, its other spelling ("gray")
    /// and a few common near-synonyms ("crimson", "violet").
    pub fn from_word(w: &str) -> Option<Color> {
        Some(match w {
            "red" | "crimson" | "scarlet" => Color::Red,
            "green" | "lime" => Color::Green,
            "blue" | "navy" => Color::Blue,
            "yellow" | "golden" => Color::Yellow,
            "orange" => Color::Orange,
            "purple" | "violet" | "magenta" => Color::Purple,
            "pink" => Color::Pink,
            "brown" => Color::Brown,
            "black" => Color::Black,
            "white" => Color::White,
            "grey" | "gray" | "silver" => Color::Grey,
            _ => return None,
        })
    }

    /// The nominal sRGB colour the sim paints objects of this colour with,
    /// and the prototype [`Color::from_rgb`] names colours by.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Color::Red => [200, 30, 30],
            Color::Green => [30, 170, 50],
            Color::Blue => [30, 60, 200],
            Color::Yellow => [220, 200, 30],
            Color::Orange => [235, 120, 20],
            Color::Purple => [120, 40, 160],
            Color::Pink => [240, 130, 180],
            Color::Brown => [115, 70, 35],
            Color::Black => [25, 25, 28],
            Color::White => [240, 240, 235],
            Color::Grey => [128, 128, 128],
        }
    }

    /// The name of a measured colour: the nearest prototype in CIELAB, each
    /// prototype taken under light from half to 1.1 times the nominal (so a
    /// shaded face of a blue box is still blue, not purple).
    pub fn from_rgb(rgb: [u8; 3]) -> Color {
        let lab = srgb_to_lab(rgb);
        let mut best = (f64::INFINITY, Color::Grey);
        for c in Color::ALL {
            for step in 0..=12 {
                let k = 0.5 + 0.05 * f64::from(step);
                let lit = c
                    .rgb()
                    .map(|v| (f64::from(v) * k).round().clamp(0.0, 255.0) as u8);
                let p = srgb_to_lab(lit);
                let d = (lab[0] - p[0]).powi(2) + (lab[1] - p[1]).powi(2) + (lab[2] - p[2]).powi(2);
                if d < best.0 {
                    best = (d, c);
                }
            }
        }
        best.1
    }
}

/// sRGB (8 bit) to CIELAB under D65.
pub fn srgb_to_lab(rgb: [u8; 3]) -> [f64; 3] {
    let lin = rgb.map(|c| {
        let c = f64::from(c) / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    });
    let x = (0.4124 * lin[0] + 0.3576 * lin[1] + 0.1805 * lin[2]) / 0.95047;
    let y = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
    let z = (0.0193 * lin[0] + 0.1192 * lin[1] + 0.9505 * lin[2]) / 1.08883;
    let f = |t: f64| {
        if t > 0.008856 {
            t.cbrt()
        } else {
            7.787 * t + 16.0 / 116.0
        }
    };
    let (fx, fy, fz) = (f(x), f(y), f(z));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// The shape class of an object: what the sim draws and perception measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    Box,
    Cylinder,
    Sphere,
}

/// An object's category: what a person calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// A graspable block with equal sides.
    #[serde(alias = "block", alias = "brick")]
    Cube,
    /// An open-topped container: a bin, basket, tray or bowl.
    #[serde(
        alias = "basket",
        alias = "bucket",
        alias = "container",
        alias = "crate",
        alias = "tub",
        alias = "tray",
        alias = "bowl"
    )]
    Bin,
    /// A graspable block with unequal sides.
    #[serde(alias = "carton")]
    Box,
    /// A graspable sphere.
    #[serde(alias = "sphere")]
    Ball,
    /// A graspable upright cylinder, slimmer than a mug (a can, a bottle).
    #[serde(alias = "can", alias = "bottle", alias = "tin")]
    Cylinder,
    /// A graspable short, wide cylinder.
    #[serde(alias = "cup")]
    Mug,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 6] = [
        ObjectKind::Cube,
        ObjectKind::Bin,
        ObjectKind::Box,
        ObjectKind::Ball,
        ObjectKind::Cylinder,
        ObjectKind::Mug,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Cube => "cube",
            ObjectKind::Bin => "bin",
            ObjectKind::Box => "box",
            ObjectKind::Ball => "ball",
            ObjectKind::Cylinder => "cylinder",
            ObjectKind::Mug => "mug",
        }
    }

    /// The plural a person says ("boxes").
    pub fn plural(self) -> &'static str {
        match self {
            ObjectKind::Cube => "cubes",
            ObjectKind::Bin => "bins",
            ObjectKind::Box => "boxes",
            ObjectKind::Ball => "balls",
            ObjectKind::Cylinder => "cylinders",
            ObjectKind::Mug => "mugs",
        }
    }

    /// The category a noun names, singular or plural, with common synonyms
    /// ("block", "sphere", "can", "cup", "basket").
    pub fn from_word(w: &str) -> Option<ObjectKind> {
        Some(match w {
            "cube" | "cubes" | "block" | "blocks" | "brick" | "bricks" => ObjectKind::Cube,
            "bin" | "bins" | "container" | "containers" | "basket" | "baskets" | "bucket"
            | "buckets" | "tub" | "tubs" | "receptacle" | "receptacles" | "crate" | "crates"
            | "tray" | "trays" | "bowl" | "bowls" => ObjectKind::Bin,
            "box" | "boxes" | "carton" | "cartons" => ObjectKind::Box,
            "ball" | "balls" | "sphere" | "spheres" | "orb" => ObjectKind::Ball,
            "cylinder" | "cylinders" | "can" | "cans" | "tin" | "tins" | "bottle" | "bottles"
            | "tube" => ObjectKind::Cylinder,
            "mug" | "mugs" | "cup" | "cups" => ObjectKind::Mug,
            _ => return None,
        })
    }

    /// Its shape class.
    pub fn shape(self) -> Shape {
        match self {
            ObjectKind::Cube | ObjectKind::Bin | ObjectKind::Box => Shape::Box,
            ObjectKind::Ball => Shape::Sphere,
            ObjectKind::Cylinder | ObjectKind::Mug => Shape::Cylinder,
        }
    }

    /// Whether things can be placed into it.
    pub fn is_container(self) -> bool {
        matches!(self, ObjectKind::Bin)
    }

    /// Nominal size (x, y, z) of objects of this kind, used to place an
    /// object's centre below its observed top surface.
    pub fn nominal_size_m(self) -> [f64; 3] {
        match self {
            ObjectKind::Cube => [0.05, 0.05, 0.05],
            ObjectKind::Bin => [0.3, 0.3, 0.25],
            ObjectKind::Box => [0.08, 0.05, 0.05],
            ObjectKind::Ball => [0.055, 0.055, 0.055],
            ObjectKind::Cylinder => [0.05, 0.05, 0.09],
            ObjectKind::Mug => [0.07, 0.07, 0.075],
        }
    }

    /// Whether the arm can pick it up.
    pub fn is_graspable(self) -> bool {
        !self.is_container()
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
    let kind = ObjectKind::ALL.into_iter().find(|x| x.name() == k)?;
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
    /// Its measured size (x, y, z), metres, averaged over recent frames;
    /// zeros where it was not measured ([`ObservedObject::size_or_nominal_m`]).
    #[serde(default)]
    pub size_m: [f64; 3],
}

impl ObservedObject {
    /// The measured size, or its kind's nominal size where none was measured.
    pub fn size_or_nominal_m(&self) -> [f64; 3] {
        if self.size_m.iter().all(|s| s.is_finite() && *s > 0.0) {
            self.size_m
        } else {
            self.kind.nominal_size_m()
        }
    }
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
        let clashes = parse_object_id(&p.id).is_some();
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
    fn measured_colours_are_named_by_the_nearest_basic_term() {
        for c in Color::ALL {
            assert_eq!(Color::from_rgb(c.rgb()), c, "{c:?}'s own prototype");
            // Shaded as the sim's side faces are (60 % to 100 % light).
            for k in [0.65, 0.8, 0.97] {
                let shaded = c.rgb().map(|v| (f64::from(v) * k).round() as u8);
                let got = Color::from_rgb(shaded);
                assert_eq!(got, c, "{c:?} at {k} light");
            }
        }
        assert_eq!(Color::from_rgb([120, 120, 125]), Color::Grey);
        assert_eq!(Color::from_rgb([250, 160, 60]), Color::Orange);
        assert_eq!(Color::from_word("gray"), Some(Color::Grey));
    }

    #[test]
    fn scene_files_may_use_common_synonyms() {
        #[derive(Deserialize)]
        struct T {
            kind: ObjectKind,
            color: Color,
        }
        let t: T = toml::from_str("kind = \"can\"\ncolor = \"gray\"").unwrap();
        assert_eq!((t.kind, t.color), (ObjectKind::Cylinder, Color::Grey));
        let t: T = toml::from_str("kind = \"basket\"\ncolor = \"pink\"").unwrap();
        assert_eq!(t.kind, ObjectKind::Bin);
        assert!(toml::from_str::<T>("kind = \"sofa\"\ncolor = \"red\"").is_err());
    }

    #[test]
    fn categories_read_their_words_and_know_their_shape() {
        for k in ObjectKind::ALL {
            assert_eq!(ObjectKind::from_word(k.name()), Some(k));
            assert_eq!(ObjectKind::from_word(k.plural()), Some(k));
            assert_eq!(
                parse_object_id(&object_id(Color::Pink, k)),
                Some((Color::Pink, k))
            );
        }
        assert_eq!(ObjectKind::from_word("cup"), Some(ObjectKind::Mug));
        assert_eq!(ObjectKind::Ball.shape(), Shape::Sphere);
        assert!(ObjectKind::Mug.is_graspable() && !ObjectKind::Bin.is_graspable());
    }

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
