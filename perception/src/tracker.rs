//! The object map: detections associated over time by colour and kind.

use rosetta_common::world::object_id;
use rosetta_common::{ObservedObject, WorldModel};

use crate::detect::Detection;

/// Observations further than this from the tracked position replace it.
const JUMP_M: f64 = 0.25;
/// Weight of a new observation in the running estimate.
const ALPHA: f64 = 0.5;
/// The uncertainty (one sigma) of a position seen once.
const FIRST_SIGMA_M: f64 = 0.02;

#[derive(Debug, Default, Clone)]
pub struct Tracker {
    objects: Vec<ObservedObject>,
}

impl Tracker {
    pub fn update(&mut self, detections: &[Detection], stamp_s: f64) {
        // One detection per id per frame: the largest.
        let mut best: Vec<&Detection> = Vec::new();
        for d in detections {
            match best
                .iter_mut()
                .find(|b| b.color == d.color && b.kind == d.kind)
            {
                Some(b) if b.pixels < d.pixels => *b = d,
                Some(_) => {}
                None => best.push(d),
            }
        }
        for d in best {
            if !d.position_m.iter().all(|v| v.is_finite()) {
                continue;
            }
            let id = object_id(d.color, d.kind);
            match self.objects.iter_mut().find(|o| o.id == id) {
                Some(o) => {
                    let dist = (0..3)
                        .map(|k| (o.position_m[k] - d.position_m[k]).powi(2))
                        .sum::<f64>()
                        .sqrt();
                    if dist > JUMP_M {
                        // It moved (or the old estimate was wrong): start again,
                        // as unsure as the jump was long.
                        o.position_m = d.position_m;
                        o.position_sigma_m = dist;
                    } else {
                        for k in 0..3 {
                            o.position_m[k] += ALPHA * (d.position_m[k] - o.position_m[k]);
                        }
                        // A running variance of how far observations fall from
                        // the estimate, never below what one observation gives.
                        let var = (1.0 - ALPHA) * o.position_sigma_m.powi(2) + ALPHA * dist.powi(2);
                        o.position_sigma_m = var.sqrt().max(FIRST_SIGMA_M / 4.0);
                    }
                    o.confidence += ALPHA * (d.confidence.clamp(0.0, 1.0) - o.confidence);
                    o.last_seen_s = stamp_s;
                    o.observations += 1;
                }
                None => self.objects.push(ObservedObject {
                    id,
                    kind: d.kind,
                    color: d.color,
                    position_m: d.position_m,
                    last_seen_s: stamp_s,
                    observations: 1,
                    position_sigma_m: FIRST_SIGMA_M,
                    confidence: d.confidence.clamp(0.0, 1.0),
                }),
            }
        }
        self.objects.sort_by(|a, b| a.id.cmp(&b.id));
    }

    pub fn world_model(&self, stamp_s: f64, frame_id: &str) -> WorldModel {
        WorldModel {
            stamp_s,
            frame_id: frame_id.to_string(),
            objects: self.objects.clone(),
            places: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosetta_common::{Color, ObjectKind};

    fn det(color: Color, x: f64, pixels: u32) -> Detection {
        Detection {
            color,
            kind: ObjectKind::Cube,
            bbox_px: [0, 0, 1, 1],
            pixels,
            position_m: [x, 0.0, 0.4],
            extent_m: [0.05; 3],
            confidence: 1.0,
        }
    }

    #[test]
    fn associates_smooths_and_jumps() {
        let mut t = Tracker::default();
        t.update(&[det(Color::Red, 1.0, 50), det(Color::Red, 3.0, 10)], 0.0);
        let w = t.world_model(0.0, "odom");
        assert_eq!(w.objects.len(), 1);
        assert_eq!(w.objects[0].position_m[0], 1.0);
        t.update(&[det(Color::Red, 1.1, 50)], 1.0);
        assert!((t.world_model(1.0, "odom").objects[0].position_m[0] - 1.05).abs() < 1e-9);
        // Agreeing observations: the uncertainty shrinks below a first sight's.
        let sigma_1 = t.world_model(1.0, "odom").objects[0].position_sigma_m;
        t.update(&[det(Color::Red, 1.05, 50)], 1.5);
        let o = &t.world_model(1.5, "odom").objects[0];
        assert!(
            o.position_sigma_m < sigma_1,
            "{} !< {sigma_1}",
            o.position_sigma_m
        );
        t.update(&[det(Color::Red, 1.05, 50)], 1.6);
        t.update(&[det(Color::Red, 1.05, 50)], 1.7);
        let o = &t.world_model(1.7, "odom").objects[0];
        assert!(o.position_sigma_m < 0.03, "{}", o.position_sigma_m);
        assert!((o.confidence - 1.0).abs() < 1e-9);
        t.update(&[det(Color::Red, 2.0, 50)], 2.0);
        let o = &t.world_model(2.0, "odom").objects[0];
        assert_eq!(o.position_m[0], 2.0);
        assert_eq!(o.observations, 6);
        // A jump: as unsure as the jump was long.
        assert!(
            (o.position_sigma_m - 0.95).abs() < 1e-9,
            "{}",
            o.position_sigma_m
        );
        t.update(&[det(Color::Green, f64::NAN, 50)], 3.0);
        assert_eq!(t.world_model(3.0, "odom").objects.len(), 1);
    }
}
