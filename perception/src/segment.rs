//! Class-agnostic detector: objects are what stands out of the support
//! surfaces that depth shows, whatever their colour or kind.
//!
//! 1. Every pixel with depth is placed in the odom frame, with a normal from
//!    its neighbours.
//! 2. Support surfaces are the heights where large horizontal areas lie (the
//!    floor, a table top), found from a histogram of horizontal pixels
//!    weighted by the area each pixel covers.
//! 3. What is neither support nor below the support it stands over is an
//!    object pixel; neighbouring object pixels close in space and over the
//!    same support form one object.
//! 4. Each object is measured: its footprint (the smallest rectangle over
//!    its points), its height above its support, its colour (the lit pixels'
//!    median, named in CIELAB by [`Color::from_rgb`]) and its shape class
//!    (boxes show flat faces in at most two directions; cylinders show a flat
//!    top and an upright side; spheres neither). Category follows from shape,
//!    size and openness: wide and tall is a container, equal sides a cube.

use nalgebra::{Isometry3, Vector3};
use rosetta_common::robot::CameraDescription;
use rosetta_common::{Color, ObjectKind, Shape};

use crate::classify::{CategoryClassifier, CategoryFeatures, CROP, CROP_CHANNELS};
use crate::detect::{check_sizes, Detection, PerceptionError};

/// Depth beyond this is not used: objects further away are too few pixels.
const MAX_RANGE_M: f64 = 4.0;
/// A normal this close to vertical makes its pixel horizontal.
const HORIZONTAL_NZ: f64 = 0.95;
/// A horizontal area at least this large (square metres) is a support surface.
const MIN_SUPPORT_AREA_M2: f64 = 0.05;
/// Histogram bin of support heights.
const SUPPORT_BIN_M: f64 = 0.01;
/// Points this close above their support belong to it (the support's own
/// noise, an object's bottom edge).
const ABOVE_SUPPORT_M: f64 = 0.008;
/// Neighbouring pixels this close in space (plus [`LINK_PER_M`] per metre of
/// depth) are one object.
const LINK_M: f64 = 0.012;
const LINK_PER_M: f64 = 0.01;
/// The most a pixel's footprint widens the link reach (grazing surfaces).
const MAX_FOOTPRINT_M: f64 = 0.04;
/// Thinner than this across (horizontally) is a sliver of a surface seen
/// edge-on, not an object.
const MIN_OBJECT_M: f64 = 0.012;
/// Fewer pixels than this are noise.
const MIN_PIXELS: usize = 25;
/// Larger than this horizontally or vertically is structure (walls, the
/// sides of furniture), not an object.
const MAX_OBJECT_M: f64 = 0.45;
/// Wider than this and at least [`MIN_CONTAINER_HEIGHT_M`] high is a container.
const MIN_CONTAINER_WIDTH_M: f64 = 0.15;
const MIN_CONTAINER_HEIGHT_M: f64 = 0.1;
/// A box whose sides differ by less than this ratio is a cube.
const CUBE_RATIO: f64 = 1.3;
/// A cylinder at least this wide and no taller than [`MUG_ASPECT`] times its
/// width is a mug.
const MUG_MIN_DIAMETER_M: f64 = 0.062;
const MUG_ASPECT: f64 = 1.3;

/// Per-pixel geometry of one frame.
struct Cloud {
    w: usize,
    h: usize,
    /// In odom; `None` without usable depth.
    points: Vec<Option<[f64; 3]>>,
    /// Outward unit normal in odom (towards the camera); `None` where the
    /// neighbourhood is not one surface.
    normals: Vec<Option<[f64; 3]>>,
    /// Area of surface each pixel covers, square metres.
    area_m2: Vec<f64>,
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn norm(a: [f64; 3]) -> f64 {
    (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt()
}

impl Cloud {
    fn new(depth_m: &[f32], cam: &CameraDescription, odom_from_optical: &Isometry3<f64>) -> Self {
        let (w, h) = (cam.width_px as usize, cam.height_px as usize);
        let mut points = vec![None; w * h];
        for v in 0..h {
            for u in 0..w {
                let d = f64::from(depth_m[v * w + u]);
                if !d.is_finite() || d <= 0.05 || d > MAX_RANGE_M {
                    continue;
                }
                let p = odom_from_optical * cam.back_project(u as f64, v as f64, d);
                points[v * w + u] = Some([p.x, p.y, p.z]);
            }
        }
        let eye = odom_from_optical.translation.vector;
        let eye = [eye.x, eye.y, eye.z];
        let mut normals = vec![None; w * h];
        let mut area_m2 = vec![0.0; w * h];
        for v in 1..h.saturating_sub(1) {
            for u in 1..w.saturating_sub(1) {
                let i = v * w + u;
                let Some(p) = points[i] else { continue };
                let d = f64::from(depth_m[i]);
                // One surface: neighbours within 3 % of the depth each way.
                let near =
                    |j: usize| points[j].filter(|_| (f64::from(depth_m[j]) - d).abs() < 0.03 * d);
                let (Some(l), Some(r), Some(t), Some(b)) =
                    (near(i - 1), near(i + 1), near(i - w), near(i + w))
                else {
                    continue;
                };
                let du = Vector3::from(sub(r, l));
                let dv = Vector3::from(sub(b, t));
                let Some(mut n) = du.cross(&dv).try_normalize(1e-12) else {
                    continue;
                };
                let view = Vector3::from(sub(p, eye));
                if n.dot(&view) > 0.0 {
                    n = -n;
                }
                let cos = (n.dot(&view) / view.norm()).abs().max(0.1);
                normals[i] = Some([n.x, n.y, n.z]);
                area_m2[i] = (d / cam.fx_px) * (d / cam.fy_px) / cos;
            }
        }
        Cloud {
            w,
            h,
            points,
            normals,
            area_m2,
        }
    }

    fn horizontal(&self, i: usize) -> bool {
        self.normals[i].is_some_and(|n| n[2] > HORIZONTAL_NZ)
    }

    /// Heights of the support surfaces, lowest first; the floor (z = 0) always.
    fn supports(&self) -> Vec<f64> {
        let bins = (2.0 / SUPPORT_BIN_M) as usize;
        let mut hist = vec![(0.0, 0.0); bins]; // (area, area * z)
        for i in 0..self.points.len() {
            let Some(p) = self.points[i] else { continue };
            if !self.horizontal(i) || p[2] < -0.5 {
                continue;
            }
            let k = ((p[2] + SUPPORT_BIN_M / 2.0) / SUPPORT_BIN_M).floor();
            if k >= 0.0 && (k as usize) < bins {
                let e = &mut hist[k as usize];
                e.0 += self.area_m2[i];
                e.1 += self.area_m2[i] * p[2];
            }
        }
        let mut out = vec![0.0];
        let mut k = 1;
        while k < bins {
            // A peak with its neighbours: one surface spread over two bins.
            let lo = k.saturating_sub(1);
            let hi = (k + 1).min(bins - 1);
            let is_peak = hist[k].0 >= hist[lo].0 && hist[k].0 >= hist[hi].0;
            let area: f64 = hist[lo..=hi].iter().map(|e| e.0).sum();
            if is_peak && area >= MIN_SUPPORT_AREA_M2 {
                let z = hist[lo..=hi].iter().map(|e| e.1).sum::<f64>() / area;
                if z > 0.03 {
                    out.push(z);
                }
                k += 2;
            } else {
                k += 1;
            }
        }
        out
    }
}

/// Which support a point at height `z` stands over: the highest not above it.
fn level(supports: &[f64], z: f64) -> usize {
    supports
        .iter()
        .rposition(|s| *s <= z + ABOVE_SUPPORT_M)
        .unwrap_or(0)
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    let k = ((v.len() as f64 - 1.0) * q).round() as usize;
    let (_, x, _) = v.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
    *x
}

/// One object the detector found: its detection (category by the rules of
/// shape, size and openness) and what the learned classifier sees of it.
#[derive(Debug, Clone)]
pub struct Segment {
    pub detection: Detection,
    pub features: CategoryFeatures,
}

/// Finds objects of any kind and colour standing on the floor or on
/// furniture, placed in the frame of `odom_from_optical` (whose z is up and
/// whose z = 0 is the floor). Regions cut by the image border are skipped.
/// Each object's category comes from `classifier` where there is one, and
/// from the rules of shape, size and openness otherwise.
pub fn detect_objects(
    rgb: &[u8],
    depth_m: &[f32],
    cam: &CameraDescription,
    odom_from_optical: &Isometry3<f64>,
    classifier: Option<&CategoryClassifier>,
) -> Result<Vec<Detection>, PerceptionError> {
    let segments = segment_objects(rgb, depth_m, cam, odom_from_optical)?;
    let Some(classifier) = classifier else {
        return Ok(segments.into_iter().map(|s| s.detection).collect());
    };
    let features: Vec<&CategoryFeatures> = segments.iter().map(|s| &s.features).collect();
    let categories = classifier.classify(&features)?;
    Ok(segments
        .into_iter()
        .zip(categories)
        .map(|(s, (kind, p))| Detection {
            kind,
            confidence: p,
            ..s.detection
        })
        .collect())
}

/// The objects of [`detect_objects`], each with its classifier features.
pub fn segment_objects(
    rgb: &[u8],
    depth_m: &[f32],
    cam: &CameraDescription,
    odom_from_optical: &Isometry3<f64>,
) -> Result<Vec<Segment>, PerceptionError> {
    check_sizes(rgb, depth_m, cam)?;
    let cloud = Cloud::new(depth_m, cam, odom_from_optical);
    let supports = cloud.supports();
    let (w, h) = (cloud.w, cloud.h);
    // Object pixels and the support each stands over.
    let mut lvl: Vec<Option<usize>> = vec![None; w * h];
    for (i, p) in cloud.points.iter().enumerate() {
        let Some(p) = p else { continue };
        let k = level(&supports, p[2]);
        let on_support = p[2] < supports[k] + ABOVE_SUPPORT_M
            || (cloud.horizontal(i) && (p[2] - supports[k]).abs() < 1.5 * SUPPORT_BIN_M);
        if !on_support {
            lvl[i] = Some(k);
        }
    }
    // Connected regions (4-neighbours) of object pixels, close in space.
    let mut region = vec![u32::MAX; w * h];
    let mut regions: Vec<Vec<usize>> = Vec::new();
    let mut stack = Vec::new();
    for seed in 0..w * h {
        if lvl[seed].is_none() || region[seed] != u32::MAX {
            continue;
        }
        let id = regions.len() as u32;
        let mut members = Vec::new();
        region[seed] = id;
        stack.push(seed);
        while let Some(i) = stack.pop() {
            members.push(i);
            let (u, v) = (i % w, i / w);
            let Some(p) = cloud.points[i] else { continue };
            // Along a surface seen at a grazing angle neighbouring pixels lie
            // far apart: reach over a few of this pixel's footprints there.
            let footprint_m = cloud.area_m2[i].sqrt().min(MAX_FOOTPRINT_M);
            let reach = (LINK_M + LINK_PER_M * f64::from(depth_m[i])).max(2.5 * footprint_m);
            let mut visit = |j: usize| {
                if region[j] == u32::MAX && lvl[j] == lvl[i] {
                    if let Some(q) = cloud.points[j] {
                        if norm(sub(p, q)) < reach {
                            region[j] = id;
                            stack.push(j);
                        }
                    }
                }
            };
            if u > 0 {
                visit(i - 1);
            }
            if u + 1 < w {
                visit(i + 1);
            }
            if v > 0 {
                visit(i - w);
            }
            if v + 1 < h {
                visit(i + w);
            }
        }
        regions.push(members);
    }
    let eye = odom_from_optical.translation.vector;
    let mut out = Vec::new();
    for (id, members) in regions.iter().enumerate() {
        if members.len() < MIN_PIXELS {
            continue;
        }
        let support_z = supports[lvl[members[0]].unwrap_or(0)];
        let this = Region {
            members,
            id: id as u32,
            of_pixel: &region,
        };
        if let Some(d) = measure(&this, &cloud, rgb, support_z, [eye.x, eye.y]) {
            out.push(d);
        }
    }
    Ok(out)
}

/// One connected region of object pixels.
struct Region<'a> {
    members: &'a [usize],
    id: u32,
    /// Every pixel's region id (`u32::MAX`: none).
    of_pixel: &'a [u32],
}

/// One region as a segment, or `None` if it is structure, cut by the
/// image border, or flat.
fn measure(
    region: &Region,
    cloud: &Cloud,
    rgb: &[u8],
    support_z: f64,
    eye_xy: [f64; 2],
) -> Option<Segment> {
    let (w, h) = (cloud.w, cloud.h);
    let members = region.members;
    let (mut u0, mut v0, mut u1, mut v1) = (usize::MAX, usize::MAX, 0, 0);
    for &i in members {
        let (u, v) = (i % w, i / w);
        u0 = u0.min(u);
        u1 = u1.max(u);
        v0 = v0.min(v);
        v1 = v1.max(v);
    }
    if u0 == 0 || v0 == 0 || u1 + 1 >= w || v1 + 1 >= h {
        return None;
    }
    let pts: Vec<[f64; 3]> = members.iter().filter_map(|&i| cloud.points[i]).collect();
    let mut zs: Vec<f64> = pts.iter().map(|p| p[2]).collect();
    let top = percentile(&mut zs, 0.98);
    let low = percentile(&mut zs, 0.02);
    // Standing on its support, or held above it.
    let bottom = if low - support_z < 0.03 {
        support_z
    } else {
        low
    };
    let height = top - bottom;
    // The footprint: the rectangle of least area over the points' x, y
    // (from at most 600 of them).
    let stride = pts.len().div_ceil(600).max(1);
    let sample: Vec<[f64; 3]> = pts.iter().step_by(stride).copied().collect();
    let (mut best_area, mut best) = (f64::INFINITY, (0.0, [0.0; 2], [0.0; 2]));
    let mut a = Vec::with_capacity(sample.len());
    let mut b = Vec::with_capacity(sample.len());
    for step in 0..30 {
        let th = f64::from(step) * std::f64::consts::FRAC_PI_2 / 30.0;
        let (s, c) = th.sin_cos();
        a.clear();
        b.clear();
        for p in &sample {
            a.push(c * p[0] + s * p[1]);
            b.push(-s * p[0] + c * p[1]);
        }
        let ra = [percentile(&mut a, 0.02), percentile(&mut a, 0.98)];
        let rb = [percentile(&mut b, 0.02), percentile(&mut b, 0.98)];
        let area = (ra[1] - ra[0]) * (rb[1] - rb[0]);
        if area < best_area {
            best_area = area;
            best = (th, ra, rb);
        }
    }
    let (th, ra, rb) = best;
    let sides = [ra[1] - ra[0], rb[1] - rb[0]];
    let widest = sides[0].max(sides[1]);
    let thinnest = sides[0].min(sides[1]);
    if widest > MAX_OBJECT_M || thinnest < MIN_OBJECT_M || !(0.015..=MAX_OBJECT_M).contains(&height)
    {
        return None;
    }
    let container = widest >= MIN_CONTAINER_WIDTH_M;
    if container && height < MIN_CONTAINER_HEIGHT_M {
        return None; // flat: a mat, the dock
    }
    let shape = if container {
        Shape::Box
    } else {
        shape_of(members, cloud)
    };
    let (s, c) = th.sin_cos();
    let (ca, cb) = ((ra[0] + ra[1]) / 2.0, (rb[0] + rb[1]) / 2.0);
    let mut centre = [c * ca - s * cb, s * ca + c * cb];
    let mut size = [sides[0], sides[1], height];
    if shape != Shape::Box {
        // Round: only the near half is seen. The silhouette's width across
        // the line of sight is the diameter; the centre is one radius
        // behind the nearest point.
        let (dx, dy) = (centre[0] - eye_xy[0], centre[1] - eye_xy[1]);
        let r = dx.hypot(dy).max(1e-6);
        let (fx, fy) = (dx / r, dy / r);
        let mut along: Vec<f64> = pts
            .iter()
            .map(|p| (p[0] - eye_xy[0]) * fx + (p[1] - eye_xy[1]) * fy)
            .collect();
        let mut across: Vec<f64> = pts
            .iter()
            .map(|p| -(p[0] - eye_xy[0]) * fy + (p[1] - eye_xy[1]) * fx)
            .collect();
        let near = percentile(&mut along, 0.02);
        let (l, rgt) = (percentile(&mut across, 0.02), percentile(&mut across, 0.98));
        let diameter = rgt - l;
        let mid = (l + rgt) / 2.0;
        let dist = near + diameter / 2.0;
        centre = [
            eye_xy[0] + fx * dist - fy * mid,
            eye_xy[1] + fy * dist + fx * mid,
        ];
        size = [diameter, diameter, height];
        if shape == Shape::Sphere {
            size[2] = diameter.max(height);
        }
    }
    let kind = if container {
        ObjectKind::Bin
    } else {
        match shape {
            Shape::Sphere => ObjectKind::Ball,
            Shape::Cylinder => {
                if size[0] >= MUG_MIN_DIAMETER_M && size[2] <= MUG_ASPECT * size[0] {
                    ObjectKind::Mug
                } else {
                    ObjectKind::Cylinder
                }
            }
            Shape::Box => {
                let big = size.iter().copied().fold(0.0, f64::max);
                let small = size.iter().copied().fold(f64::INFINITY, f64::min);
                if big <= CUBE_RATIO * small {
                    ObjectKind::Cube
                } else {
                    ObjectKind::Box
                }
            }
        }
    };
    let color = Color::from_rgb(lit_colour(members, rgb));
    let z = bottom + height / 2.0;
    let features = CategoryFeatures {
        crop: crop(region, cloud, [u0, v0, u1, v1], bottom, height, eye_xy),
        scalars: CategoryFeatures::scalars_of([size[0], size[1]], size[2], shape),
    };
    let detection = Detection {
        color,
        kind,
        bbox_px: [
            u0 as u32,
            v0 as u32,
            (u1 - u0 + 1) as u32,
            (v1 - v0 + 1) as u32,
        ],
        pixels: members.len() as u32,
        position_m: [centre[0], centre[1], z],
        extent_m: size,
        confidence: 1.0,
    };
    Some(Segment {
        detection,
        features,
    })
}

/// The classifier's crop of a region ([`CategoryFeatures::crop`]): the
/// square around its bounding box `[u0, v0, u1, v1]` (a tenth wider each
/// way), sampled at [`CROP`] x [`CROP`] cells.
fn crop(
    region: &Region,
    cloud: &Cloud,
    bbox: [usize; 4],
    bottom_m: f64,
    height_m: f64,
    eye_xy: [f64; 2],
) -> Vec<f32> {
    let [u0, v0, u1, v1] = bbox;
    let side = (u1 - u0 + 1).max(v1 - v0 + 1) as f64 * 1.2;
    let (cu, cv) = ((u0 + u1) as f64 / 2.0, (v0 + v1) as f64 / 2.0);
    // Horizontal directions: towards the camera, and across the view.
    let (mut tx, mut ty) = (0.0, 0.0);
    for &i in region.members {
        if let Some(p) = cloud.points[i] {
            tx += eye_xy[0] - p[0];
            ty += eye_xy[1] - p[1];
        }
    }
    let r = tx.hypot(ty).max(1e-9);
    let (tx, ty) = (tx / r, ty / r);
    let plane = CROP * CROP;
    let mut out = vec![0f32; CROP_CHANNELS * plane];
    for row in 0..CROP {
        for col in 0..CROP {
            let u = cu + (col as f64 + 0.5) / CROP as f64 * side - side / 2.0;
            let v = cv + (row as f64 + 0.5) / CROP as f64 * side - side / 2.0;
            if u < 0.0 || v < 0.0 || u >= cloud.w as f64 || v >= cloud.h as f64 {
                continue;
            }
            let i = v as usize * cloud.w + u as usize;
            if region.of_pixel[i] != region.id {
                continue;
            }
            let o = row * CROP + col;
            out[o] = 1.0;
            if let Some(n) = cloud.normals[i] {
                out[plane + o] = n[2] as f32;
                out[2 * plane + o] = (n[0] * tx + n[1] * ty) as f32;
                out[3 * plane + o] = (-n[0] * ty + n[1] * tx) as f32;
            }
            if let Some(p) = cloud.points[i] {
                out[4 * plane + o] =
                    ((p[2] - bottom_m) / height_m.max(0.01)).clamp(0.0, 1.2) as f32;
            }
        }
    }
    out
}

/// The colour of the region's better-lit half: the median of each channel
/// over the pixels brighter than the region's median brightness.
fn lit_colour(members: &[usize], rgb: &[u8]) -> [u8; 3] {
    let px = |i: usize| [rgb[i * 3], rgb[i * 3 + 1], rgb[i * 3 + 2]];
    let mut v: Vec<u8> = members
        .iter()
        .map(|&i| *px(i).iter().max().unwrap_or(&0))
        .collect();
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable(mid);
    let m = *m;
    let lit: Vec<[u8; 3]> = members
        .iter()
        .map(|&i| px(i))
        .filter(|p| p.iter().max().is_some_and(|x| *x >= m))
        .collect();
    std::array::from_fn(|k| {
        let mut c: Vec<u8> = lit.iter().map(|p| p[k]).collect();
        let mid = c.len() / 2;
        let (_, x, _) = c.select_nth_unstable(mid);
        *x
    })
}

/// The shape class from the region's normals: a box's side faces point in
/// at most two directions; a cylinder's side normals are level and its top
/// flat; a sphere's normals are neither.
fn shape_of(members: &[usize], cloud: &Cloud) -> Shape {
    let normals: Vec<[f64; 3]> = members.iter().filter_map(|&i| cloud.normals[i]).collect();
    if normals.len() < 10 {
        return Shape::Box;
    }
    let n = normals.len() as f64;
    let up = normals.iter().filter(|v| v[2] > HORIZONTAL_NZ).count() as f64;
    let side: Vec<f64> = normals
        .iter()
        .filter(|v| v[2].abs() < 0.25)
        .map(|v| v[1].atan2(v[0]))
        .collect();
    let level = side.len() as f64;
    // Side normals' directions in 10-degree bins; the share of the two
    // fullest (each with its neighbours) says flat faces.
    if side.len() >= 10 {
        let mut hist = [0usize; 36];
        for a in &side {
            let k = (((a + std::f64::consts::PI) / (2.0 * std::f64::consts::PI)) * 36.0) as usize;
            hist[k.min(35)] += 1;
        }
        let around = |k: usize| hist[(k + 35) % 36] + hist[k] + hist[(k + 1) % 36];
        let first = (0..36).max_by_key(|&k| around(k)).unwrap_or(0);
        let mut rest = hist;
        for d in [35, 0, 1] {
            rest[(first + d) % 36] = 0;
        }
        let around_rest = |k: usize| rest[(k + 35) % 36] + rest[k] + rest[(k + 1) % 36];
        let second = (0..36).max_by_key(|&k| around_rest(k)).unwrap_or(0);
        let flat = around(first) + around_rest(second);
        if flat as f64 >= 0.85 * level {
            return Shape::Box;
        }
    } else if up / n > 0.6 {
        // Seen from above: only a flat top.
        return Shape::Box;
    }
    if (up + level) / n >= 0.7 {
        Shape::Cylinder
    } else {
        Shape::Sphere
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosetta_common::robot::RobotDescription;
    use rosetta_common::Pose2D;
    use rosetta_sim::render::render_camera;
    use rosetta_sim::{Scene, World};

    fn detect_in(world: &World) -> Vec<Detection> {
        let cam = world.robot.camera.clone();
        let f = render_camera(world, &cam);
        let map_from_optical = world.pose.to_isometry() * cam.base_from_optical();
        detect_objects(&f.rgb, &f.depth_m, &cam, &map_from_optical, None).unwrap()
    }

    fn error_m(a: [f64; 3], b: [f64; 3]) -> f64 {
        norm(sub(a, b))
    }

    #[test]
    fn finds_the_default_cubes_and_nothing_else_on_the_table() {
        let mut w = World::new(Scene::default_scene().unwrap(), RobotDescription::default());
        w.pose = Pose2D::new(0.2, 0.0, 0.0);
        let dets = detect_in(&w);
        for o in w.objects.iter().filter(|o| o.kind == ObjectKind::Cube) {
            let d = dets
                .iter()
                .find(|d| d.color == o.color && d.kind == ObjectKind::Cube)
                .unwrap_or_else(|| panic!("{} not found in {dets:#?}", o.id));
            let err = error_m(d.position_m, o.position_m);
            assert!(err < 0.01, "{}: {err:.3} m off", o.id);
        }
        assert_eq!(dets.len(), 4, "{dets:#?}");
    }

    #[test]
    fn finds_a_bin_as_a_container_of_its_colour() {
        let mut w = World::new(Scene::default_scene().unwrap(), RobotDescription::default());
        w.pose = Pose2D::new(0.0, 0.6, std::f64::consts::FRAC_PI_2);
        let dets = detect_in(&w);
        let bin = w.objects.iter().find(|o| o.id == "blue_bin").unwrap();
        let d = dets
            .iter()
            .find(|d| d.kind == ObjectKind::Bin)
            .unwrap_or_else(|| panic!("no bin in {dets:#?}"));
        assert_eq!(d.color, Color::Blue);
        let err = (d.position_m[0] - bin.position_m[0]).hypot(d.position_m[1] - bin.position_m[1]);
        assert!(err < 0.03, "bin centre {err:.3} m off");
    }

    /// Things of every shape and of colours the old detector could not see
    /// (grey on a grey floor's room, white, black), each named by category,
    /// colour and place.
    #[test]
    fn names_the_category_and_colour_of_things_it_was_never_told_about() {
        let mut scene = Scene::default_scene().unwrap();
        let things = [
            (ObjectKind::Ball, Color::Green, [0.055; 3]),
            (ObjectKind::Box, Color::Grey, [0.05, 0.08, 0.05]),
            (ObjectKind::Mug, Color::Pink, [0.07, 0.07, 0.075]),
            (ObjectKind::Cylinder, Color::Orange, [0.05, 0.05, 0.1]),
            (ObjectKind::Cube, Color::White, [0.05; 3]),
            (ObjectKind::Ball, Color::Black, [0.06; 3]),
            (ObjectKind::Box, Color::Purple, [0.08, 0.05, 0.04]),
        ];
        scene.objects.retain(|o| o.kind == ObjectKind::Bin);
        let n = things.len() as f64;
        for (k, (kind, color, size)) in things.iter().enumerate() {
            let y = 0.5 - k as f64 / (n - 1.0);
            scene.objects.push(rosetta_sim::scene::SceneObject {
                id: format!("thing_{k}"),
                kind: *kind,
                color: *color,
                position_m: [1.45, y, 0.4 + size[2] / 2.0],
                size_m: *size,
                rgb: None,
            });
        }
        let mut w = World::new(scene, RobotDescription::default());
        w.pose = Pose2D::new(0.0, 0.0, 0.0);
        let dets = detect_in(&w);
        for o in w.objects.iter().filter(|o| !o.kind.is_container()) {
            let d = dets
                .iter()
                .min_by(|a, b| {
                    error_m(a.position_m, o.position_m)
                        .total_cmp(&error_m(b.position_m, o.position_m))
                })
                .unwrap_or_else(|| panic!("nothing found: {dets:#?}"));
            let err = error_m(d.position_m, o.position_m);
            assert!(
                err < 0.015,
                "{} {:?}: {err:.3} m off in {d:#?}",
                o.color.name(),
                o.kind
            );
            assert_eq!((d.color, d.kind), (o.color, o.kind), "{d:#?}");
        }
        assert_eq!(dets.len(), things.len(), "{dets:#?}");
    }
}
