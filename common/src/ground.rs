//! Grounding: a referring expression ("the red cube", "the cube left of the
//! blue bin", "the biggest box", "the bin nearest to the dock") resolves to
//! one object of the object map, or to a clear "not found" or "ambiguous".
//!
//! Pure: the expression, the world model and a viewpoint in; the answer out.
//! Left, right, front and behind are as seen from the viewpoint (REP-103:
//! x forward, y left), which is where the robot stands, or the map's origin
//! to speak of the map as a person facing along +x would.

use serde::{Deserialize, Serialize};

use crate::world::{Color, ObjectKind, ObservedObject, WorldModel};
use crate::Pose2D;

/// What kind of thing the words name; `None` fields mean "any".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    pub color: Option<Color>,
    pub kind: Option<ObjectKind>,
}

/// Which of the described things the words pick out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selector {
    /// The only one there is ("the red cube").
    Only,
    /// The nearest one on that side of another object.
    LeftOf(Box<Expression>),
    RightOf(Box<Expression>),
    /// Nearer to the viewpoint than the other object, or farther.
    InFrontOf(Box<Expression>),
    Behind(Box<Expression>),
    /// The nearest one to another object, and clearly so ("next to",
    /// "beside", "near").
    NextTo(Box<Expression>),
    /// The nearest one to another object, however near the runner-up
    /// ("nearest to", "closest to"): a superlative.
    NearestTo(Box<Expression>),
    /// The one between two others, from left to right.
    Between(Box<Expression>, Box<Expression>),
    /// Counted from the left or the right (1 = the leftmost).
    FromLeft(usize),
    FromRight(usize),
    /// Nearest to or farthest from the viewpoint.
    Nearest,
    Farthest,
    /// By size (volume).
    Biggest,
    Smallest,
}

impl Selector {
    /// The other objects this selector is relative to ("the red bin" in
    /// "the cube next to the red bin"), outermost first.
    pub fn anchors(&self) -> Vec<&Expression> {
        match self {
            Selector::LeftOf(e)
            | Selector::RightOf(e)
            | Selector::InFrontOf(e)
            | Selector::Behind(e)
            | Selector::NextTo(e)
            | Selector::NearestTo(e) => vec![e],
            Selector::Between(a, b) => vec![a, b],
            Selector::Only
            | Selector::FromLeft(_)
            | Selector::FromRight(_)
            | Selector::Nearest
            | Selector::Farthest
            | Selector::Biggest
            | Selector::Smallest => vec![],
        }
    }
}

/// A referring expression: a description and a selector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expression {
    pub what: Description,
    pub selector: Selector,
}

/// What a referring expression resolves to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grounding {
    /// Exactly one object: its id.
    Found(String),
    /// Nothing fits; the reason says what is missing.
    NotFound(String),
    /// More than one fits equally well: the candidates' ids.
    Ambiguous {
        candidates: Vec<String>,
        why: String,
    },
}

/// Words that [`Expression::parse`] could not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {phrase:?} as an object: {why}")]
pub struct ParseError {
    pub phrase: String,
    pub why: String,
}

/// Two lateral or range offsets closer than this are a tie.
const TIE_M: f64 = 0.02;
/// Two volumes closer than this fraction of the larger are the same size
/// (5 % measurement error on each side of a box is 15 % of its volume).
const SIZE_TIE: f64 = 0.15;
/// A neighbour is "next to" only if the next nearest is this much farther.
const NEXT_TO_RATIO: f64 = 1.25;

fn color_word(w: &str) -> Option<Color> {
    Color::from_word(w)
}

/// `Some(None)`: a noun for any kind of object.
fn kind_word(w: &str) -> Option<Option<ObjectKind>> {
    match w {
        "object" | "objects" | "thing" | "things" | "one" | "ones" | "item" | "items" => Some(None),
        _ => ObjectKind::from_word(w).map(Some),
    }
}

fn ordinal(w: &str) -> Option<usize> {
    match w {
        "first" => Some(1),
        "second" => Some(2),
        "third" => Some(3),
        "fourth" => Some(4),
        _ => None,
    }
}

const FILLERS: &[&str] = &["the", "a", "an", "that", "this", "is", "which", "one's"];

impl Expression {
    /// Reads an English noun phrase. Examples:
    /// "the red cube", "a bin", "the cube left of the green one",
    /// "the block to the right of the blue block", "the cube between the red
    /// and the blue cube", "the second cube from the left", "the leftmost
    /// cube", "the biggest box", "the nearest bin", "the cube next to the
    /// yellow one", "the bin behind the table's red cube".
    pub fn parse(phrase: &str) -> Result<Self, ParseError> {
        let lower = phrase.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric() && c != '\'')
            .filter(|w| !w.is_empty() && !FILLERS.contains(w))
            .collect();
        parse_words(&words).map_err(|why| ParseError {
            phrase: phrase.to_string(),
            why,
        })
    }
}

/// A head: adjectives and a noun ("big red cube"), with superlatives.
fn parse_head(words: &[&str]) -> Result<(Description, Option<Selector>), String> {
    let mut d = Description::default();
    let mut sel = None;
    let mut noun = false;
    let set = |s: Selector, sel: &mut Option<Selector>| -> Result<(), String> {
        if sel.replace(s).is_some() {
            return Err("two superlatives".into());
        }
        Ok(())
    };
    for w in words {
        if let Some(c) = color_word(w) {
            if d.color.is_some_and(|x| x != c) {
                return Err(format!("two colours ({w})"));
            }
            d.color = Some(c);
        } else if let Some(k) = kind_word(w) {
            if let (Some(a), Some(b)) = (d.kind, k) {
                if a != b {
                    return Err(format!("two kinds of object ({w})"));
                }
            }
            d.kind = d.kind.or(k);
            noun = true;
        } else {
            match *w {
                // "the left bin" is the leftmost of the bins.
                "leftmost" | "left" => set(Selector::FromLeft(1), &mut sel)?,
                "rightmost" | "right" => set(Selector::FromRight(1), &mut sel)?,
                "nearest" | "closest" => set(Selector::Nearest, &mut sel)?,
                "farthest" | "furthest" => set(Selector::Farthest, &mut sel)?,
                "biggest" | "largest" => set(Selector::Biggest, &mut sel)?,
                "smallest" | "tiniest" => set(Selector::Smallest, &mut sel)?,
                other => return Err(format!("unknown word {other:?}")),
            }
        }
    }
    if !noun && d.color.is_none() {
        return Err("no object named".into());
    }
    Ok((d, sel))
}

fn parse_words(words: &[&str]) -> Result<Expression, String> {
    if words.is_empty() {
        return Err("no words".into());
    }
    let rest_expr = |from: usize| -> Result<Box<Expression>, String> {
        parse_words(words.get(from..).unwrap_or(&[])).map(Box::new)
    };
    // "the cube left of the red one": "one" (or no noun) means the head's kind.
    let with_kind = |mut e: Box<Expression>, anchor: &[&str], kind: Option<ObjectKind>| {
        let pronoun = anchor.contains(&"one") || !anchor.iter().any(|w| kind_word(w).is_some());
        if e.what.kind.is_none() && pronoun {
            e.what.kind = kind;
        }
        e
    };
    // "<ordinal> <head> from the left|right" and "<head> on the far left|right".
    if let Some(n) = words.first().and_then(|w| ordinal(w)) {
        if let [head @ .., "from", side] = &words[1..] {
            let (what, _) = parse_head(head)?;
            let selector = match *side {
                "left" => Selector::FromLeft(n),
                "right" => Selector::FromRight(n),
                other => return Err(format!("counted from {other:?}")),
            };
            return Ok(Expression { what, selector });
        }
    }
    // Find where a relation starts.
    for i in 0..words.len() {
        let tail = &words[i..];
        let head = &words[..i];
        let (selector, skip) = match tail {
            ["on", "far", "left", ..] | ["on", "left"] => (Some(Selector::FromLeft(1)), 0),
            ["on", "far", "right", ..] | ["on", "right"] => (Some(Selector::FromRight(1)), 0),
            ["to", "left", "of", ..] => (None, 3),
            ["left", "of", ..] => (None, 2),
            ["to", "right", "of", ..] => (None, 3),
            ["right", "of", ..] => (None, 2),
            ["in", "front", "of", ..] => (None, 3),
            ["behind", ..] => (None, 1),
            ["next", "to", ..] | ["closest", "to", ..] | ["nearest", "to", ..] => (None, 2),
            ["beside", ..] | ["near", ..] => (None, 1),
            ["between", ..] => (None, 1),
            _ => continue,
        };
        if head.is_empty() {
            return Err("a relation with nothing before it".into());
        }
        let (what, sup) = parse_head(head)?;
        if let Some(selector) = selector {
            if sup.is_some() {
                return Err("two superlatives".into());
            }
            return Ok(Expression { what, selector });
        }
        let anchor = || {
            rest_expr(i + skip)
                .map(|e| with_kind(e, words.get(i + skip..).unwrap_or(&[]), what.kind))
        };
        let selector = match tail[0] {
            "to" if tail[1] == "left" => Selector::LeftOf(anchor()?),
            "left" => Selector::LeftOf(anchor()?),
            "to" => Selector::RightOf(anchor()?),
            "right" => Selector::RightOf(anchor()?),
            "in" => Selector::InFrontOf(anchor()?),
            "behind" => Selector::Behind(anchor()?),
            "between" => {
                let inner = &words[i + 1..];
                let Some(and) = inner.iter().position(|w| *w == "and") else {
                    return Err("\"between\" needs two objects joined by \"and\"".into());
                };
                let (a, b) = (&inner[..and], &inner[and + 1..]);
                let b_expr = with_kind(Box::new(parse_words(b)?), b, what.kind);
                // "between the red and the blue cube": the first borrows the noun.
                let a_expr = with_kind(Box::new(parse_words(a)?), a, b_expr.what.kind);
                Selector::Between(a_expr, b_expr)
            }
            "closest" | "nearest" => Selector::NearestTo(anchor()?),
            _ => Selector::NextTo(anchor()?),
        };
        if sup.is_some() {
            return Err("a superlative and a relation at once".into());
        }
        return Ok(Expression { what, selector });
    }
    let (what, sup) = parse_head(words)?;
    Ok(Expression {
        what,
        selector: sup.unwrap_or(Selector::Only),
    })
}

impl Description {
    /// Whether the object fits the description.
    pub fn matches(&self, o: &ObservedObject) -> bool {
        self.color.is_none_or(|c| c == o.color) && self.kind.is_none_or(|k| k == o.kind)
    }

    /// The description as a noun phrase ("red cube", "bin", "object").
    pub fn noun(&self) -> String {
        match (self.color, self.kind) {
            (Some(c), Some(k)) => format!("{} {}", c.name(), k.name()),
            (Some(c), None) => format!("{} object", c.name()),
            (None, Some(k)) => k.name().to_string(),
            (None, None) => "object".to_string(),
        }
    }
}

/// An object's place as seen from the viewpoint: ahead (x) and to the left (y).
pub fn seen_from(viewer: &Pose2D, o: &ObservedObject) -> (f64, f64) {
    let (dx, dy) = (o.position_m[0] - viewer.x_m, o.position_m[1] - viewer.y_m);
    let (s, c) = viewer.yaw_rad.sin_cos();
    (c * dx + s * dy, -s * dx + c * dy)
}

fn distance(a: &ObservedObject, b: &ObservedObject) -> f64 {
    (0..3)
        .map(|k| (a.position_m[k] - b.position_m[k]).powi(2))
        .sum::<f64>()
        .sqrt()
}

fn volume(o: &ObservedObject) -> f64 {
    o.size_or_nominal_m().iter().product()
}

/// The candidate with the smallest key; ambiguous when the runner-up is
/// within `tie` of it.
fn best_by(
    mut scored: Vec<(f64, &ObservedObject)>,
    tie: impl Fn(f64, f64) -> bool,
    what: &str,
) -> Grounding {
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    match scored.as_slice() {
        [] => Grounding::NotFound(format!("no {what}")),
        [(_, one)] => Grounding::Found(one.id.clone()),
        [(a, first), (b, second), ..] if tie(*a, *b) => Grounding::Ambiguous {
            candidates: vec![first.id.clone(), second.id.clone()],
            why: format!("{} and {} fit \"{what}\" equally well", first.id, second.id),
        },
        [(_, first), ..] => Grounding::Found(first.id.clone()),
    }
}

/// Resolves `expr` in `world`, as seen from `viewer`.
pub fn ground(expr: &Expression, world: &WorldModel, viewer: &Pose2D) -> Grounding {
    let noun = expr.what.noun();
    let mut candidates: Vec<&ObservedObject> = world
        .objects
        .iter()
        .filter(|o| expr.what.matches(o))
        .collect();
    if candidates.is_empty() && expr.what.kind == Some(ObjectKind::Box) {
        // People call containers boxes too: "the blue box" where no box is
        // known but a blue bin is.
        let bin = Description {
            kind: Some(ObjectKind::Bin),
            ..expr.what
        };
        candidates = world.objects.iter().filter(|o| bin.matches(o)).collect();
    }
    if candidates.is_empty() {
        return Grounding::NotFound(format!("I know of no {noun}"));
    }
    let scene = Scene {
        world,
        viewer,
        noun,
        candidates,
    };
    let found = match &expr.selector {
        Selector::Only => Ok(scene.only()),
        Selector::LeftOf(e) => scene.anchor(e).map(|a| scene.beside(a, 1.0, "left")),
        Selector::RightOf(e) => scene.anchor(e).map(|a| scene.beside(a, -1.0, "right")),
        Selector::InFrontOf(e) => scene
            .anchor(e)
            .map(|a| scene.ahead_of(a, -1.0, "in front of")),
        Selector::Behind(e) => scene.anchor(e).map(|a| scene.ahead_of(a, 1.0, "behind")),
        Selector::NextTo(e) => scene.anchor(e).map(|a| scene.next_to(a, NEXT_TO_RATIO)),
        Selector::NearestTo(e) => scene.anchor(e).map(|a| scene.next_to(a, 1.0)),
        Selector::Between(e1, e2) => match (scene.anchor(e1), scene.anchor(e2)) {
            (Ok(a), Ok(b)) => Ok(scene.between(a, b)),
            (Err(g), _) | (_, Err(g)) => Err(g),
        },
        Selector::FromLeft(n) => Ok(scene.counted(*n, -1.0)),
        Selector::FromRight(n) => Ok(scene.counted(*n, 1.0)),
        Selector::Nearest => Ok(scene.by_range(1.0)),
        Selector::Farthest => Ok(scene.by_range(-1.0)),
        Selector::Biggest => Ok(scene.by_size(-1.0)),
        Selector::Smallest => Ok(scene.by_size(1.0)),
    };
    found.unwrap_or_else(|g| g)
}

/// The objects that fit an expression's description, and where they stand
/// as seen from the viewpoint: what each selector picks from.
struct Scene<'w> {
    world: &'w WorldModel,
    viewer: &'w Pose2D,
    /// The description as a noun phrase, for the reasons.
    noun: String,
    /// The objects that fit the description (never empty).
    candidates: Vec<&'w ObservedObject>,
}

impl<'w> Scene<'w> {
    /// An anchor resolves first; what is wrong with it is what is wrong.
    fn anchor(&self, e: &Expression) -> Result<&'w ObservedObject, Grounding> {
        match ground(e, self.world, self.viewer) {
            Grounding::Found(id) => self
                .world
                .get(&id)
                .ok_or_else(|| Grounding::NotFound(format!("{id} left the object map"))),
            other => Err(other),
        }
    }

    /// How far to the left of the viewpoint.
    fn lateral(&self, o: &ObservedObject) -> f64 {
        seen_from(self.viewer, o).1
    }

    /// How far ahead of the viewpoint.
    fn ahead(&self, o: &ObservedObject) -> f64 {
        seen_from(self.viewer, o).0
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < TIE_M
    }

    /// The candidates other than `a`.
    fn others(&self, a: &ObservedObject) -> Vec<&'w ObservedObject> {
        self.candidates
            .iter()
            .copied()
            .filter(|o| o.id != a.id)
            .collect()
    }

    /// The only candidate.
    fn only(&self) -> Grounding {
        match self.candidates.as_slice() {
            [one] => Grounding::Found(one.id.clone()),
            many => {
                // Named from left to right, so that a person can say which.
                let mut order = many.to_vec();
                order.sort_by(|a, b| self.lateral(b).total_cmp(&self.lateral(a)));
                let ids: Vec<String> = order.iter().map(|o| o.id.clone()).collect();
                let layout = match ids.as_slice() {
                    [l, r] => format!("{l} on the left and {r} on the right"),
                    _ => format!("from left to right: {}", ids.join(", ")),
                };
                Grounding::Ambiguous {
                    why: format!("there are {} of \"{}\", {layout}", many.len(), self.noun),
                    candidates: ids,
                }
            }
        }
    }

    /// The nearest candidate on one side of `a`: `sign` 1 the left, -1 the right.
    fn beside(&self, a: &ObservedObject, sign: f64, side: &str) -> Grounding {
        let scored = self
            .others(a)
            .into_iter()
            .map(|o| (sign * (self.lateral(o) - self.lateral(a)), o))
            .filter(|(gap, _)| *gap > TIE_M)
            .collect();
        best_by(
            scored,
            Self::close,
            &format!("{} {side} of {}", self.noun, a.id),
        )
    }

    /// The candidate nearest to `a` among those behind it (`sign` 1) or in
    /// front of it (-1).
    fn ahead_of(&self, a: &ObservedObject, sign: f64, side: &str) -> Grounding {
        let scored = self
            .others(a)
            .into_iter()
            .filter(|o| sign * (self.ahead(o) - self.ahead(a)) > TIE_M)
            .map(|o| (distance(o, a), o))
            .collect();
        best_by(
            scored,
            Self::close,
            &format!("{} {side} {}", self.noun, a.id),
        )
    }

    /// The candidate nearest to `a`; a tie when the runner-up is less than
    /// `ratio` times as far (or within [`TIE_M`]).
    fn next_to(&self, a: &ObservedObject, ratio: f64) -> Grounding {
        let scored = self
            .others(a)
            .into_iter()
            .map(|o| (distance(o, a), o))
            .collect();
        best_by(
            scored,
            |d0, d1| d1 < d0 * ratio || d1 - d0 < TIE_M,
            &format!("{} next to {}", self.noun, a.id),
        )
    }

    /// The one candidate between `a` and `b`, from left to right.
    fn between(&self, a: &ObservedObject, b: &ObservedObject) -> Grounding {
        let (lo, hi) = {
            let (la, lb) = (self.lateral(a), self.lateral(b));
            (la.min(lb), la.max(lb))
        };
        let mid = (lo + hi) / 2.0;
        let inside: Vec<(f64, &ObservedObject)> = self
            .candidates
            .iter()
            .copied()
            .filter(|o| o.id != a.id && o.id != b.id)
            .filter(|o| self.lateral(o) > lo + TIE_M && self.lateral(o) < hi - TIE_M)
            .map(|o| ((self.lateral(o) - mid).abs(), o))
            .collect();
        let what = format!("{} between {} and {}", self.noun, a.id, b.id);
        if inside.len() > 1 {
            return Grounding::Ambiguous {
                candidates: inside.iter().map(|(_, o)| o.id.clone()).collect(),
                why: format!("{} of \"{what}\"", inside.len()),
            };
        }
        best_by(inside, Self::close, &what)
    }

    /// The `n`th candidate counted from the left (`sign` -1) or the right (1).
    fn counted(&self, n: usize, sign: f64) -> Grounding {
        let mut order: Vec<(f64, &ObservedObject)> = self
            .candidates
            .iter()
            .map(|o| (sign * self.lateral(o), *o))
            .collect();
        order.sort_by(|a, b| a.0.total_cmp(&b.0));
        let k = n.saturating_sub(1);
        let Some((key, pick)) = order.get(k) else {
            return Grounding::NotFound(format!(
                "there are only {} of \"{}\", not {n}",
                order.len(),
                self.noun
            ));
        };
        let tied: Vec<String> = order
            .iter()
            .enumerate()
            .filter(|(j, (x, _))| *j != k && Self::close(*x, *key))
            .map(|(_, (_, o))| o.id.clone())
            .collect();
        if tied.is_empty() {
            Grounding::Found(pick.id.clone())
        } else {
            let mut all = vec![pick.id.clone()];
            all.extend(tied);
            Grounding::Ambiguous {
                candidates: all,
                why: "they stand in one line as seen from here".into(),
            }
        }
    }

    /// The nearest candidate to the viewpoint (`sign` 1) or the farthest (-1).
    fn by_range(&self, sign: f64) -> Grounding {
        let scored = self
            .candidates
            .iter()
            .map(|o| {
                let (x, y) = seen_from(self.viewer, o);
                (sign * x.hypot(y), *o)
            })
            .collect();
        best_by(scored, Self::close, &self.noun)
    }

    /// The smallest candidate (`sign` 1) or the biggest (-1).
    fn by_size(&self, sign: f64) -> Grounding {
        let scored = self
            .candidates
            .iter()
            .map(|o| (sign * volume(o), *o))
            .collect();
        // Measured sizes differ a little between twins: volumes within
        // SIZE_TIE of each other are as big as each other.
        best_by(
            scored,
            |a, b| (a - b).abs() <= SIZE_TIE * a.abs().max(b.abs()),
            &self.noun,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::object_id;

    fn obj(color: Color, kind: ObjectKind, x: f64, y: f64) -> ObservedObject {
        ObservedObject {
            id: object_id(color, kind),
            kind,
            color,
            position_m: [
                x,
                y,
                if kind == ObjectKind::Cube {
                    0.425
                } else {
                    0.125
                },
            ],
            last_seen_s: 0.0,
            observations: 1,
            position_sigma_m: 0.0,
            confidence: 1.0,
            size_m: [0.0; 3],
        }
    }

    /// Four cubes in a row across the table (left to right: blue, red,
    /// green, yellow, as seen from the origin facing +x) and two bins.
    fn world() -> WorldModel {
        use Color::*;
        use ObjectKind::*;
        WorldModel {
            stamp_s: 0.0,
            frame_id: "map".into(),
            objects: vec![
                obj(Blue, Cube, 1.6, 0.3),
                obj(Red, Cube, 1.45, 0.1),
                obj(Green, Cube, 1.65, -0.1),
                obj(Yellow, Cube, 1.6, -0.3),
                obj(Blue, Bin, 0.0, 1.6),
                obj(Red, Bin, 0.0, -1.6),
            ],
            places: Vec::new(),
        }
    }

    fn resolve(phrase: &str) -> Grounding {
        let e = Expression::parse(phrase).unwrap_or_else(|e| panic!("{e}"));
        ground(&e, &world(), &Pose2D::new(0.0, 0.0, 0.0))
    }

    fn found(phrase: &str) -> String {
        match resolve(phrase) {
            Grounding::Found(id) => id,
            other => panic!("{phrase:?}: {other:?}"),
        }
    }

    fn ambiguous(phrase: &str) -> Vec<String> {
        match resolve(phrase) {
            Grounding::Ambiguous { mut candidates, .. } => {
                candidates.sort();
                candidates
            }
            other => panic!("{phrase:?}: {other:?}"),
        }
    }

    fn not_found(phrase: &str) -> String {
        match resolve(phrase) {
            Grounding::NotFound(why) => why,
            other => panic!("{phrase:?}: {other:?}"),
        }
    }

    /// "nearest to" is a superlative: the nearest wins by any clear
    /// margin. "next to" asks for a neighbour, and a runner-up nearly as
    /// near makes it a question.
    #[test]
    fn nearest_to_picks_the_nearest_where_next_to_asks() {
        assert_eq!(found("the cube nearest to the red bin"), "yellow_cube");
        assert_eq!(found("the cube closest to the blue bin"), "blue_cube");
        assert_eq!(
            ambiguous("the cube next to the red bin"),
            vec!["green_cube", "yellow_cube"]
        );
    }

    #[test]
    fn plain_names_resolve_or_say_why_not() {
        assert_eq!(found("the red cube"), "red_cube");
        assert_eq!(found("The crimson BLOCK"), "red_cube");
        assert_eq!(found("the blue container"), "blue_bin");
        assert_eq!(ambiguous("the red thing"), ["red_bin", "red_cube"]);
        // No box is known: a box is what people call a bin too.
        assert_eq!(found("the blue box"), "blue_bin");
        assert_eq!(not_found("the pink mug"), "I know of no pink mug");
        assert_eq!(ambiguous("the cube").len(), 4);
        assert_eq!(not_found("the green bin"), "I know of no green bin");
        let err = Expression::parse("the mauve cube").unwrap_err().to_string();
        assert!(err.contains("mauve"), "{err}");
        assert!(Expression::parse("").is_err());
        assert!(Expression::parse("left of the red cube").is_err());
    }

    #[test]
    fn relations_pick_the_neighbour_on_that_side() {
        assert_eq!(found("the cube left of the red one"), "blue_cube");
        assert_eq!(found("the cube to the right of the red cube"), "green_cube");
        assert_eq!(
            found("the block to the left of the yellow block"),
            "green_cube"
        );
        assert!(not_found("the cube right of the yellow one").contains("right of yellow_cube"));
        assert_eq!(
            found("the cube between the red and the yellow cube"),
            "green_cube"
        );
        assert_eq!(
            ambiguous("the cube between the blue and the yellow cube"),
            ["green_cube", "red_cube"]
        );
        assert_eq!(found("the cube next to the blue one"), "red_cube");
        // The red cube's neighbours are about as near as each other.
        assert_eq!(
            ambiguous("the cube next to the red one"),
            ["blue_cube", "green_cube"]
        );
        assert_eq!(found("the cube in front of the green cube"), "yellow_cube");
        assert_eq!(found("the cube behind the red cube"), "blue_cube");
        // An anchor that does not resolve is the answer's reason.
        assert_eq!(
            not_found("the cube left of the green bin"),
            "I know of no green bin"
        );
        assert_eq!(ambiguous("the bin left of the cube").len(), 4);
    }

    #[test]
    fn order_and_superlatives() {
        assert_eq!(found("the leftmost cube"), "blue_cube");
        assert_eq!(found("the cube on the far right"), "yellow_cube");
        assert_eq!(found("the second cube from the left"), "red_cube");
        assert_eq!(found("the second block from the right"), "green_cube");
        assert!(not_found("the third bin from the left").contains("only 2"));
        // Both bins are as big as each other.
        assert_eq!(ambiguous("the biggest thing"), ["blue_bin", "red_bin"]);
        assert_eq!(found("the biggest red thing"), "red_bin");
        assert_eq!(found("the smallest blue object"), "blue_cube");
        // Twins measured a few millimetres apart are still the same size.
        let mut w = world();
        for o in &mut w.objects {
            o.size_m = match o.id.as_str() {
                "red_cube" => [0.052, 0.049, 0.051],
                "green_cube" => [0.048, 0.051, 0.05],
                "blue_cube" => [0.08, 0.05, 0.05],
                "yellow_cube" => [0.07, 0.07, 0.07],
                _ => o.size_or_nominal_m(),
            };
        }
        let small = Expression::parse("the smallest cube").expect("parses");
        match ground(&small, &w, &Pose2D::default()) {
            Grounding::Ambiguous { mut candidates, .. } => {
                candidates.sort();
                assert_eq!(candidates, ["green_cube", "red_cube"]);
            }
            other => panic!("{other:?}"),
        }
        let big = Expression::parse("the biggest cube").expect("parses");
        assert_eq!(
            ground(&big, &w, &Pose2D::default()),
            Grounding::Found("yellow_cube".into())
        );
        // From the origin, the bins are equally far; from nearer the blue one, not.
        assert_eq!(ambiguous("the nearest bin"), ["blue_bin", "red_bin"]);
        let e = Expression::parse("the nearest bin").expect("parses");
        assert_eq!(
            ground(&e, &world(), &Pose2D::new(0.0, 0.5, 0.0)),
            Grounding::Found("blue_bin".into())
        );
        assert_eq!(found("the farthest cube"), "green_cube");
    }

    #[test]
    fn left_and_right_are_the_viewers() {
        // From across the table, facing back (-x), left and right swap.
        let e = Expression::parse("the leftmost cube").expect("parses");
        let across = Pose2D::new(3.2, 0.0, std::f64::consts::PI);
        assert_eq!(
            ground(&e, &world(), &across),
            Grounding::Found("yellow_cube".into())
        );
        let e = Expression::parse("the cube left of the red one").expect("parses");
        assert_eq!(
            ground(&e, &world(), &across),
            Grounding::Found("green_cube".into())
        );
    }

    #[test]
    fn an_empty_map_finds_nothing() {
        let e = Expression::parse("the red cube").expect("parses");
        let empty = WorldModel {
            stamp_s: 0.0,
            frame_id: "map".into(),
            objects: Vec::new(),
            places: Vec::new(),
        };
        assert!(matches!(
            ground(&e, &empty, &Pose2D::default()),
            Grounding::NotFound(_)
        ));
    }
}
