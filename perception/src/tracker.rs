//! The object map: detections associated over time with object instances.
//!
//! Several objects may share a colour and a kind (two red cubes). Each
//! detection goes to the nearest instance of its colour and kind within
//! [`JUMP_M`]; one instance and one detection left over are the same object
//! moved (carried, or its estimate was off); any other detection left over
//! is a new instance, unless it lies within [`FRAGMENT_M`] of one already
//! matched in this frame (a second piece of one object's colour region).

use nalgebra::{Isometry3, Point3};
use rosetta_common::robot::CameraDescription;
use rosetta_common::world::instance_id;
use rosetta_common::{Color, ObjectKind, ObservedObject, WorldModel};

use crate::detect::Detection;

/// Observations further than this from the tracked position are not it,
/// unless nothing else of its colour and kind is left to explain them.
const JUMP_M: f64 = 0.25;
/// A detection this close to an instance already matched in the frame is a
/// piece of that object, not a new one.
const FRAGMENT_M: f64 = 0.12;
/// Two objects' centres are never this close: a detection this near an
/// instance of another colour or kind is that instance misread.
const SAME_PLACE_M: f64 = 0.04;
/// The farthest the one instance of a colour and kind left unmatched may
/// have moved (carried by the arm, dropped into a bin) to explain a
/// detection; one farther is another thing of that colour and kind, on
/// another table (or the instance was a misreading).
const MOVE_M: f64 = 1.2;
/// Weight of a new observation in the running estimate.
const ALPHA: f64 = 0.5;
/// Weight of a new observation in the running size: sizes change slowly
/// (only as views change), so a stray measurement counts for little.
const SIZE_ALPHA: f64 = 0.2;
/// The uncertainty (one sigma) of a position seen once.
const FIRST_SIGMA_M: f64 = 0.02;

/// Sightings before an instance goes into the object map: one frame's
/// stray region is not an object.
const CONFIRM_SIGHTINGS: u32 = 2;
/// Frames in a row that show the place of an instance, unoccluded and
/// without it, before it is forgotten (it was taken away, or was a ghost).
const MISSES_TO_FORGET: u32 = 3;
/// Keep this many pixels from the image border when judging what a frame
/// shows: near the border, an object's support is often cut off, and the
/// detector may miss what stands on it; such a frame says nothing.
const VIEW_MARGIN_PX: f64 = 60.0;
/// Never forget what is this close to the camera (horizontally): what the
/// robot carries leaves its last seen place as the arm moves it.
const NEAR_CAMERA_M: f64 = 1.0;

/// One tracked instance.
#[derive(Debug, Clone)]
struct Track {
    object: ObservedObject,
    /// Frames in a row that showed its place without it.
    misses: u32,
}

/// What one frame showed: enough to tell "not there" from "not in view".
pub struct View<'a> {
    pub camera: &'a CameraDescription,
    /// Camera pose at the frame's stamp, in the frame the tracker works in.
    pub odom_from_optical: &'a Isometry3<f64>,
    /// The frame's depth image, row-major, metres along the optical axis.
    pub depth_m: &'a [f32],
}

impl View<'_> {
    /// Whether the frame shows the place of `o` whole and unoccluded, away
    /// from the robot ([`NEAR_CAMERA_M`]): every
    /// corner of its nominal box falls inside the image (the detector skips
    /// regions cut by the border), within range, and the depth at its centre
    /// is not nearer than its front (nothing stands in front of it).
    fn shows(&self, o: &ObservedObject) -> bool {
        let c = self.camera;
        let camera_m = self.odom_from_optical.translation.vector;
        if (o.position_m[0] - camera_m.x).hypot(o.position_m[1] - camera_m.y) < NEAR_CAMERA_M {
            return false;
        }
        let size = o.size_or_nominal_m();
        let to_optical = |dx: f64, dy: f64, dz: f64| {
            let p = Point3::new(
                o.position_m[0] + dx,
                o.position_m[1] + dy,
                o.position_m[2] + dz,
            );
            self.odom_from_optical.inverse_transform_point(&p)
        };
        let inside = |p: &Point3<f64>| {
            c.project(p).is_some_and(|[u, v]| {
                u >= VIEW_MARGIN_PX
                    && v >= VIEW_MARGIN_PX
                    && u < f64::from(c.width_px) - VIEW_MARGIN_PX
                    && v < f64::from(c.height_px) - VIEW_MARGIN_PX
            })
        };
        let corners_inside = (0..8).all(|k| {
            let half = |axis: usize| {
                let sign = if k & (1 << axis) == 0 { -1.0 } else { 1.0 };
                sign * size[axis] / 2.0
            };
            inside(&to_optical(half(0), half(1), half(2)))
        });
        let centre = to_optical(0.0, 0.0, 0.0);
        if !corners_inside || centre.z > 0.8 * c.max_range_m {
            return false;
        }
        let Some([u, v]) = c.project(&centre) else {
            return false;
        };
        let index = (v as usize) * (c.width_px as usize) + (u as usize);
        let Some(depth) = self.depth_m.get(index).map(|d| f64::from(*d)) else {
            return false;
        };
        let front_m = size.iter().copied().fold(0.0, f64::max) / 2.0 + 0.05;
        depth.is_finite() && depth > centre.z - front_m
    }
}

#[derive(Debug, Default, Clone)]
pub struct Tracker {
    /// In the order first seen.
    tracks: Vec<Track>,
}

fn distance_m(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    (0..3).map(|k| (a[k] - b[k]).powi(2)).sum::<f64>().sqrt()
}

impl Tracker {
    /// Associates one frame's detections. With `view`, instances whose place
    /// the frame shows without them are forgotten after a few such frames.
    pub fn update(&mut self, detections: &[Detection], stamp_s: f64, view: Option<&View>) {
        let mut dets: Vec<&Detection> = detections
            .iter()
            .filter(|d| d.position_m.iter().all(|v| v.is_finite()))
            .collect();
        // The biggest regions first: a fragment never wins over its object.
        dets.sort_by_key(|d| std::cmp::Reverse(d.pixels));
        let mut matched = vec![false; self.tracks.len()];
        let mut left_over: Vec<&Detection> = Vec::new();
        for d in dets {
            let nearest = self
                .tracks
                .iter()
                .enumerate()
                .filter(|(i, t)| !matched[*i] && same_kind(&t.object, d))
                .map(|(i, t)| (i, distance_m(&t.object.position_m, &d.position_m)))
                .min_by(|a, b| a.1.total_cmp(&b.1));
            match nearest {
                Some((i, dist)) if dist <= JUMP_M => {
                    matched[i] = true;
                    observe(&mut self.tracks[i], d, dist, stamp_s);
                }
                _ => left_over.push(d),
            }
        }
        for d in left_over {
            self.place_left_over(d, &mut matched, stamp_s);
        }
        if let Some(view) = view {
            for (t, seen) in self.tracks.iter_mut().zip(&matched) {
                if !seen && view.shows(&t.object) {
                    t.misses += 1;
                }
            }
            self.tracks.retain(|t| {
                let keep = t.misses < MISSES_TO_FORGET;
                if !keep {
                    tracing::info!(
                        id = %t.object.id,
                        at = ?t.object.position_m,
                        "forgotten: {MISSES_TO_FORGET} frames in a row showed its place without it"
                    );
                }
                keep
            });
        }
    }

    /// A detection no instance took within [`JUMP_M`]: a piece of one matched
    /// in this frame, the one instance of its colour and kind left (moved),
    /// or a new instance.
    fn place_left_over(&mut self, d: &Detection, matched: &mut Vec<bool>, stamp_s: f64) {
        let fragment = self.tracks.iter().zip(matched.iter()).any(|(t, m)| {
            *m && same_kind(&t.object, d)
                && distance_m(&t.object.position_m, &d.position_m) < FRAGMENT_M
        });
        if fragment {
            return;
        }
        let unmatched: Vec<usize> = (0..self.tracks.len())
            .filter(|i| !matched[*i] && same_kind(&self.tracks[*i].object, d))
            .collect();
        let moved = match unmatched.as_slice() {
            [i] => {
                let dist = distance_m(&self.tracks[*i].object.position_m, &d.position_m);
                (dist <= MOVE_M).then_some((*i, dist))
            }
            _ => None,
        };
        if let Some((i, dist)) = moved {
            matched[i] = true;
            observe(&mut self.tracks[i], d, dist, stamp_s);
            return;
        }
        // Where an instance already stands, a detection of another colour
        // or kind is that instance seen wrongly in this frame (half hidden
        // by the gripper, cut by the image border), not a second object.
        if self
            .tracks
            .iter()
            .any(|t| distance_m(&t.object.position_m, &d.position_m) < SAME_PLACE_M)
        {
            return;
        }
        let id = self.free_id(d.color, d.kind);
        self.tracks.push(Track {
            object: ObservedObject {
                id,
                kind: d.kind,
                color: d.color,
                position_m: d.position_m,
                last_seen_s: stamp_s,
                observations: 1,
                position_sigma_m: FIRST_SIGMA_M,
                confidence: d.confidence.clamp(0.0, 1.0),
                size_m: d.extent_m,
            },
            misses: 0,
        });
        matched.push(true);
    }

    /// The lowest instance number of this colour and kind not in use.
    fn free_id(&self, color: Color, kind: ObjectKind) -> String {
        (1..)
            .map(|n| instance_id(color, kind, n))
            .find(|id| self.tracks.iter().all(|t| t.object.id != *id))
            .unwrap_or_default()
    }

    /// The confirmed instances, in the order first seen.
    pub fn world_model(&self, stamp_s: f64, frame_id: &str) -> WorldModel {
        WorldModel {
            stamp_s,
            frame_id: frame_id.to_string(),
            objects: self
                .tracks
                .iter()
                .filter(|t| t.object.observations >= CONFIRM_SIGHTINGS)
                .map(|t| t.object.clone())
                .collect(),
            places: Vec::new(),
        }
    }
}

fn same_kind(o: &ObservedObject, d: &Detection) -> bool {
    o.color == d.color && o.kind == d.kind
}

/// One more sighting `dist` metres from the estimate.
fn observe(t: &mut Track, d: &Detection, dist: f64, stamp_s: f64) {
    t.misses = 0;
    let o = &mut t.object;
    if dist > JUMP_M {
        // It moved (or the old estimate was wrong): start again, as unsure as
        // the jump was long.
        o.position_m = d.position_m;
        o.position_sigma_m = dist;
    } else {
        for k in 0..3 {
            o.position_m[k] += ALPHA * (d.position_m[k] - o.position_m[k]);
        }
        // A running variance of how far observations fall from the estimate,
        // never below what one observation gives.
        let var = (1.0 - ALPHA) * o.position_sigma_m.powi(2) + ALPHA * dist.powi(2);
        o.position_sigma_m = var.sqrt().max(FIRST_SIGMA_M / 4.0);
    }
    o.confidence += ALPHA * (d.confidence.clamp(0.0, 1.0) - o.confidence);
    if d.extent_m.iter().all(|s| s.is_finite() && *s > 0.0) {
        for k in 0..3 {
            o.size_m[k] += SIZE_ALPHA * (d.extent_m[k] - o.size_m[k]);
        }
    }
    o.last_seen_s = stamp_s;
    o.observations += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosetta_common::robot::RobotDescription;

    fn det(color: Color, x: f64, pixels: u32) -> Detection {
        det_at(color, [x, 0.0, 0.4], pixels)
    }

    fn det_at(color: Color, position_m: [f64; 3], pixels: u32) -> Detection {
        Detection {
            color,
            kind: ObjectKind::Cube,
            bbox_px: [0, 0, 1, 1],
            pixels,
            position_m,
            extent_m: [0.05; 3],
            confidence: 1.0,
        }
    }

    fn ids(t: &Tracker) -> Vec<String> {
        t.world_model(0.0, "odom")
            .objects
            .into_iter()
            .map(|o| o.id)
            .collect()
    }

    #[test]
    fn a_misread_instance_is_not_a_second_object_and_sizes_are_measured() {
        let mut t = Tracker::default();
        t.update(&[det(Color::Red, 1.0, 50)], 0.0, None);
        t.update(&[det(Color::Red, 1.0, 50)], 0.5, None);
        // One frame calls it a red box, the next an orange cube: still one.
        let mut as_box = det_at(Color::Red, [1.01, 0.0, 0.4], 40);
        as_box.kind = ObjectKind::Box;
        as_box.extent_m = [0.05, 0.09, 0.05];
        t.update(&[as_box.clone()], 1.0, None);
        t.update(&[as_box], 1.5, None);
        t.update(&[det(Color::Orange, 1.0, 50)], 2.0, None);
        t.update(&[det(Color::Orange, 1.0, 50)], 2.5, None);
        assert_eq!(ids(&t), ["red_cube"]);
        // Its measured size, in the object map.
        let size = t.world_model(2.5, "odom").objects[0].size_m;
        assert!(size.iter().all(|s| (s - 0.05).abs() < 1e-9), "{size:?}");
        // A different thing 10 cm away is a second object.
        let mut ball = det_at(Color::Red, [1.0, 0.1, 0.4], 50);
        ball.kind = ObjectKind::Ball;
        t.update(&[det(Color::Red, 1.0, 50), ball.clone()], 3.0, None);
        t.update(&[det(Color::Red, 1.0, 50), ball], 3.5, None);
        assert_eq!(ids(&t), ["red_cube", "red_ball"]);
    }

    #[test]
    fn associates_smooths_and_jumps() {
        let mut t = Tracker::default();
        t.update(&[det(Color::Red, 1.0, 50)], 0.0, None);
        // Seen once: not yet in the map.
        assert!(t.world_model(0.0, "odom").objects.is_empty());
        t.update(&[det(Color::Red, 1.0, 50)], 0.5, None);
        let w = t.world_model(0.5, "odom");
        assert_eq!(w.objects.len(), 1);
        assert_eq!(w.objects[0].position_m[0], 1.0);
        t.update(&[det(Color::Red, 1.1, 50)], 1.0, None);
        assert!((t.world_model(1.0, "odom").objects[0].position_m[0] - 1.05).abs() < 1e-9);
        // Agreeing observations: the uncertainty shrinks below a first sight's.
        let sigma_1 = t.world_model(1.0, "odom").objects[0].position_sigma_m;
        t.update(&[det(Color::Red, 1.05, 50)], 1.5, None);
        let o = &t.world_model(1.5, "odom").objects[0];
        assert!(
            o.position_sigma_m < sigma_1,
            "{} !< {sigma_1}",
            o.position_sigma_m
        );
        t.update(&[det(Color::Red, 1.05, 50)], 1.6, None);
        t.update(&[det(Color::Red, 1.05, 50)], 1.7, None);
        let o = &t.world_model(1.7, "odom").objects[0];
        assert!(o.position_sigma_m < 0.03, "{}", o.position_sigma_m);
        assert!((o.confidence - 1.0).abs() < 1e-9);
        // The only red cube, seen far away: it was moved.
        t.update(&[det(Color::Red, 2.0, 50)], 2.0, None);
        let o = &t.world_model(2.0, "odom").objects[0];
        assert_eq!(o.position_m[0], 2.0);
        assert_eq!(o.observations, 7);
        // A jump: as unsure as the jump was long.
        assert!(
            (o.position_sigma_m - 0.95).abs() < 1e-9,
            "{}",
            o.position_sigma_m
        );
        t.update(&[det(Color::Green, f64::NAN, 50)], 3.0, None);
        assert_eq!(t.world_model(3.0, "odom").objects.len(), 1);
    }

    #[test]
    fn two_objects_of_one_colour_and_kind_are_two_instances_with_stable_ids() {
        let mut t = Tracker::default();
        let (left, right) = ([1.4, 0.3, 0.42], [1.4, -0.3, 0.42]);
        t.update(
            &[det_at(Color::Red, left, 60), det_at(Color::Red, right, 40)],
            0.0,
            None,
        );
        // The next frames list them the other way round, and one is a bit off.
        for k in 1..4 {
            let nudged = [right[0], right[1] + 0.01 * f64::from(k), right[2]];
            t.update(
                &[det_at(Color::Red, nudged, 70), det_at(Color::Red, left, 30)],
                f64::from(k),
                None,
            );
        }
        let w = t.world_model(4.0, "odom");
        assert_eq!(ids(&t), ["red_cube", "red_cube_2"]);
        assert!((w.objects[0].position_m[1] - 0.3).abs() < 1e-9, "{w:?}");
        assert!(w.objects[1].position_m[1] < -0.2, "{w:?}");
        // A piece of one of them in the same frame is not a third one.
        let piece = [left[0], left[1] + 0.05, left[2]];
        t.update(
            &[
                det_at(Color::Red, left, 60),
                det_at(Color::Red, right, 60),
                det_at(Color::Red, piece, 10),
            ],
            5.0,
            None,
        );
        t.update(&[det_at(Color::Red, piece, 10)], 5.5, None);
        assert_eq!(ids(&t), ["red_cube", "red_cube_2"]);
    }

    /// The robot's camera at the start pose, facing the table.
    fn looking_ahead() -> (CameraDescription, Isometry3<f64>) {
        let camera = RobotDescription::default().camera;
        let odom_from_optical = camera.base_from_optical();
        (camera, odom_from_optical)
    }

    #[test]
    fn an_object_whose_place_is_seen_empty_is_forgotten_but_not_one_hidden() {
        let (camera, odom_from_optical) = looking_ahead();
        let n = (camera.width_px * camera.height_px) as usize;
        let cube = [1.42, 0.0, 0.425];
        let mut t = Tracker::default();
        for k in 0..2 {
            t.update(&[det_at(Color::Blue, cube, 50)], f64::from(k), None);
        }
        assert_eq!(ids(&t), ["blue_cube"]);
        // Something stands in front of it: hidden, not gone.
        let near = vec![0.5_f32; n];
        let hidden = View {
            camera: &camera,
            odom_from_optical: &odom_from_optical,
            depth_m: &near,
        };
        for k in 0..5 {
            t.update(&[], 2.0 + f64::from(k), Some(&hidden));
        }
        assert_eq!(ids(&t), ["blue_cube"]);
        // The wall behind shows where it stood: it is gone.
        let far = vec![3.0_f32; n];
        let empty = View {
            camera: &camera,
            odom_from_optical: &odom_from_optical,
            depth_m: &far,
        };
        for k in 0..MISSES_TO_FORGET {
            assert_eq!(ids(&t), ["blue_cube"], "after {k} empty views");
            t.update(&[], 10.0 + f64::from(k), Some(&empty));
        }
        assert!(ids(&t).is_empty());
        // Its id is free again for the next blue cube.
        for k in 0..2 {
            t.update(
                &[det_at(Color::Blue, [1.42, 0.3, 0.425], 50)],
                20.0 + f64::from(k),
                None,
            );
        }
        assert_eq!(ids(&t), ["blue_cube"]);
    }

    #[test]
    fn what_the_robot_carries_or_sees_only_in_part_is_never_forgotten() {
        let (camera, odom_from_optical) = looking_ahead();
        let far = vec![3.0_f32; (camera.width_px * camera.height_px) as usize];
        let empty = View {
            camera: &camera,
            odom_from_optical: &odom_from_optical,
            depth_m: &far,
        };
        let mut t = Tracker::default();
        // A cube at the gripper, 0.6 m ahead of the camera, and a bin beside
        // the table whose box the image cuts (its centre is in view).
        let mut bin = det_at(Color::Red, [1.8, -1.05, 0.125], 900);
        let centre = odom_from_optical.inverse_transform_point(&Point3::new(1.8, -1.05, 0.125));
        let u = camera.project(&centre).expect("in front")[0];
        assert!(u < f64::from(camera.width_px) - VIEW_MARGIN_PX, "{u}");
        bin.kind = ObjectKind::Bin;
        bin.extent_m = [0.3, 0.3, 0.25];
        for k in 0..2 {
            t.update(
                &[det_at(Color::Green, [0.7, 0.0, 0.7], 80), bin.clone()],
                f64::from(k),
                None,
            );
        }
        for k in 0..2 * MISSES_TO_FORGET {
            t.update(&[], 5.0 + f64::from(k), Some(&empty));
        }
        assert_eq!(ids(&t), ["red_bin", "green_cube"]);
    }
}
