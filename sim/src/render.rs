//! Software sensors: a ray-cast RGB-D camera and a 2-D lidar.
//!
//! The camera renders real pixels and depth from the world's boxes, so that
//! perception has to see; it never gets ground truth.

use nalgebra::{Point3, Vector3};
use rand::Rng;
use rand_distr::{Distribution, Normal};
use rosetta_common::robot::{CameraDescription, LidarDescription};

use crate::geometry::Aabb;
use crate::world::{VisualBox, World};

/// An RGB8 image and a depth image (optical-axis depth in metres, +inf where nothing is hit).
#[derive(Debug, Clone)]
pub struct RgbdFrame {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
    pub depth_m: Vec<f32>,
}

const SKY_RGB: [u8; 3] = [200, 208, 216];
const LIGHT_DIR: [f64; 3] = [0.32, 0.24, 0.92];

fn shade(rgb: [u8; 3], normal: [f64; 3]) -> [u8; 3] {
    let lambert =
        (normal[0] * LIGHT_DIR[0] + normal[1] * LIGHT_DIR[1] + normal[2] * LIGHT_DIR[2]).max(0.0);
    let k = 0.6 + 0.4 * lambert;
    rgb.map(|c| (c as f64 * k).round().clamp(0.0, 255.0) as u8)
}

/// Renders the camera view from the robot's current pose.
pub fn render_camera(world: &World, cam: &CameraDescription) -> RgbdFrame {
    render(world, cam, None)
}

/// No object at this pixel (floor, walls, furniture, sky), in [`render_labelled`]'s labels.
pub const NO_OBJECT: u16 = u16::MAX;

/// Renders the camera view and, per pixel, which of `world.objects` it shows
/// (its index, or [`NO_OBJECT`]): exact labels for training and scoring detectors.
pub fn render_labelled(world: &World, cam: &CameraDescription) -> (RgbdFrame, Vec<u16>) {
    let mut labels = vec![NO_OBJECT; (cam.width_px * cam.height_px) as usize];
    let frame = render(world, cam, Some(&mut labels));
    (frame, labels)
}

fn render(world: &World, cam: &CameraDescription, mut labels: Option<&mut [u16]>) -> RgbdFrame {
    let (w, h) = (cam.width_px as usize, cam.height_px as usize);
    let map_from_optical = world.pose.to_isometry() * cam.base_from_optical();
    let origin = map_from_optical.translation.vector;
    let o = [origin.x, origin.y, origin.z];
    let rot = map_from_optical.rotation.to_rotation_matrix();

    // Per-pixel ray directions in map, scaled so that t is the optical depth.
    let mut dirs = Vec::with_capacity(w * h);
    for v in 0..h {
        for u in 0..w {
            let d_opt = Vector3::new(
                (u as f64 - cam.cx_px) / cam.fx_px,
                (v as f64 - cam.cy_px) / cam.fy_px,
                1.0,
            );
            let d = rot * d_opt;
            dirs.push([d.x, d.y, d.z]);
        }
    }

    let mut depth = vec![f32::INFINITY; w * h];
    let mut rgb = vec![0u8; w * h * 3];
    // The floor (z = 0), with a faint 0.5 m checker so that motion is visible.
    let floor = world.scene.room.floor_rgb;
    for (i, d) in dirs.iter().enumerate() {
        let px = &mut rgb[i * 3..i * 3 + 3];
        if d[2] < -1e-9 {
            let t = -o[2] / d[2];
            if (t as f32) < depth[i] && t < cam.max_range_m {
                depth[i] = t as f32;
                let x = o[0] + t * d[0];
                let y = o[1] + t * d[1];
                let check = ((x / 0.5).floor() as i64 + (y / 0.5).floor() as i64).rem_euclid(2);
                let c = if check == 0 {
                    floor
                } else {
                    floor.map(|c| c.saturating_add(12))
                };
                px.copy_from_slice(&shade(c, [0.0, 0.0, 1.0]));
                continue;
            }
        }
        px.copy_from_slice(&SKY_RGB);
    }

    let optical_from_map = map_from_optical.inverse();
    for b in world.visual_boxes() {
        let Some((u0, u1, v0, v1)) = screen_rect(&b.aabb, &optical_from_map, cam) else {
            continue;
        };
        for v in v0..v1 {
            for u in u0..u1 {
                let i = v * w + u;
                if let Some((t, n)) = b.aabb.shape_hit(b.shape, o, dirs[i]) {
                    if (t as f32) < depth[i] && t < cam.max_range_m {
                        depth[i] = t as f32;
                        rgb[i * 3..i * 3 + 3].copy_from_slice(&shade(b.rgb, n));
                        if let Some(l) = labels.as_deref_mut() {
                            l[i] = b.object.map_or(NO_OBJECT, |k| k as u16);
                        }
                    }
                }
            }
        }
    }
    RgbdFrame {
        width: cam.width_px,
        height: cam.height_px,
        rgb,
        depth_m: depth,
    }
}

/// The pixel rectangle [u0, u1) x [v0, v1) that a box can cover; `None` if off screen.
fn screen_rect(
    b: &Aabb,
    optical_from_map: &nalgebra::Isometry3<f64>,
    cam: &CameraDescription,
) -> Option<(usize, usize, usize, usize)> {
    let (w, h) = (cam.width_px as f64, cam.height_px as f64);
    let mut lo = [f64::INFINITY; 2];
    let mut hi = [f64::NEG_INFINITY; 2];
    let mut all_behind = true;
    for c in b.corners() {
        let p = optical_from_map * Point3::new(c[0], c[1], c[2]);
        if p.z > 1e-3 {
            all_behind = false;
        }
        match cam.project(&p) {
            Some(uv) if p.z > 0.05 => {
                for k in 0..2 {
                    lo[k] = lo[k].min(uv[k]);
                    hi[k] = hi[k].max(uv[k]);
                }
            }
            // A corner behind (or at) the camera: the box may cover anything.
            _ => {
                lo = [0.0, 0.0];
                hi = [w, h];
            }
        }
    }
    if all_behind {
        return None;
    }
    let u0 = (lo[0].floor() - 1.0).clamp(0.0, w) as usize;
    let u1 = (hi[0].ceil() + 2.0).clamp(0.0, w) as usize;
    let v0 = (lo[1].floor() - 1.0).clamp(0.0, h) as usize;
    let v1 = (hi[1].ceil() + 2.0).clamp(0.0, h) as usize;
    (u0 < u1 && v0 < v1).then_some((u0, u1, v0, v1))
}

/// A planar scan, counter-clockwise from -pi, like sensor_msgs/LaserScan.
#[derive(Debug, Clone)]
pub struct Scan {
    pub angle_min_rad: f64,
    pub angle_increment_rad: f64,
    pub ranges_m: Vec<f32>,
}

impl Scan {
    /// The scan as the occupancy grid reads it, with `lidar`'s range limits.
    pub fn view<'a>(
        &'a self,
        lidar: &rosetta_common::robot::LidarDescription,
    ) -> rosetta_common::grid::ScanView<'a> {
        rosetta_common::grid::ScanView {
            angle_min_rad: self.angle_min_rad,
            angle_increment_rad: self.angle_increment_rad,
            range_min_m: lidar.range_min_m,
            range_max_m: lidar.range_max_m,
            ranges_m: &self.ranges_m,
        }
    }
}

/// Casts the lidar's rays in its scan plane against every box that crosses that height.
pub fn render_scan(
    world: &World,
    lidar: &LidarDescription,
    noise_std_m: f64,
    rng: &mut impl Rng,
) -> Scan {
    let origin_xy = world
        .pose
        .transform_point([lidar.position_m[0], lidar.position_m[1]]);
    let z = lidar.position_m[2];
    let boxes: Vec<VisualBox> = world
        .visual_boxes()
        .into_iter()
        .filter(|b| b.aabb.min[2] <= z && b.aabb.max[2] >= z)
        .collect();
    let n = lidar.samples.max(1);
    let inc = std::f64::consts::TAU / n as f64;
    let angle_min = -std::f64::consts::PI;
    let normal = (noise_std_m > 0.0)
        .then(|| Normal::new(0.0, noise_std_m).ok())
        .flatten();
    let mut ranges = Vec::with_capacity(n);
    for k in 0..n {
        let a = world.pose.yaw_rad + angle_min + k as f64 * inc;
        let d = [a.cos(), a.sin(), 0.0];
        let inv = d.map(|c: f64| 1.0 / c);
        let o = [origin_xy[0], origin_xy[1], z];
        let mut best = f64::INFINITY;
        for b in &boxes {
            if let Some((t, _, _)) = b.aabb.ray_hit(o, inv) {
                best = best.min(t);
            }
        }
        let r = if best.is_finite() && best <= lidar.range_max_m {
            let noisy = best + normal.map(|n| n.sample(rng)).unwrap_or(0.0);
            noisy.max(lidar.range_min_m) as f32
        } else {
            f32::INFINITY
        };
        ranges.push(r);
    }
    Scan {
        angle_min_rad: angle_min,
        angle_increment_rad: inc,
        ranges_m: ranges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::Scene;
    use rosetta_common::robot::RobotDescription;
    use rosetta_common::Pose2D;

    fn world() -> World {
        World::new(Scene::default_scene().unwrap(), RobotDescription::default())
    }

    #[test]
    fn camera_sees_the_red_cube_where_it_is() {
        let mut w = world();
        w.pose = Pose2D::new(0.6, -0.36, 0.0);
        let cam = w.robot.camera.clone();
        let f = render_camera(&w, &cam);
        assert_eq!(f.rgb.len(), 640 * 480 * 3);
        // Project the red cube's top centre and check the pixel is red and the depth right.
        let cube = w
            .objects
            .iter()
            .find(|o| o.id == "red_cube")
            .unwrap()
            .position_m;
        let top = Point3::new(cube[0], cube[1], cube[2] + 0.025);
        let optical_from_map = (w.pose.to_isometry() * cam.base_from_optical()).inverse();
        let p = optical_from_map * top;
        let uv = cam.project(&p).unwrap();
        let (u, v) = (uv[0].round() as usize, uv[1].round() as usize + 2);
        let i = v * 640 + u;
        let px = &f.rgb[i * 3..i * 3 + 3];
        assert!(
            px[0] > 150 && px[1] < 60 && px[2] < 60,
            "pixel {px:?} is not red"
        );
        assert!(
            (f.depth_m[i] as f64 - p.z).abs() < 0.03,
            "depth {} vs {}",
            f.depth_m[i],
            p.z
        );
    }

    #[test]
    fn lidar_sees_the_wall_ahead() {
        let w = world();
        let lidar = w.robot.lidar.clone();
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
        let s = render_scan(&w, &lidar, 0.0, &mut rng);
        let ahead = s.ranges_m[s.ranges_m.len() / 2] as f64;
        // Straight ahead is the table at x = 1.3 (the lidar sits 0.10 m ahead of the centre).
        assert!((ahead - 1.2).abs() < 1e-6, "ahead = {ahead}");
        let behind = s.ranges_m[0] as f64;
        assert!((behind - 3.1).abs() < 1e-6, "behind = {behind}");
    }
}
