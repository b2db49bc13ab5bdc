//! Classical detector: HSV colour segmentation (OpenCV), connected components,
//! then back-projection of each component's depth pixels into the odom frame.

use nalgebra::{Isometry3, Point3};
use opencv::core::{self, Mat, Scalar};
use opencv::imgproc;
use opencv::prelude::*;
use rosetta_common::robot::CameraDescription;
use rosetta_common::{Color, ObjectKind};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum PerceptionError {
    #[error("image is {got} bytes but {width}x{height} rgb8 needs {want}")]
    ImageSize {
        width: u32,
        height: u32,
        got: usize,
        want: usize,
    },
    #[error("depth has {got} values but the image has {want} pixels")]
    DepthSize { got: usize, want: usize },
    #[error("unsupported encoding {0:?} (expected rgb8 / 32FC1)")]
    Encoding(String),
    #[error("OpenCV: {0}")]
    OpenCv(#[from] opencv::Error),
    #[error("detector weights {path}: {reason}")]
    Model { path: String, reason: String },
    #[error("detector network: {0}")]
    Inference(String),
}

/// The bytes of a model file; an error names the file.
pub fn read_model(path: &std::path::Path) -> Result<Vec<u8>, PerceptionError> {
    std::fs::read(path).map_err(|e| PerceptionError::Model {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// A network built by `build` from the bytes of a safetensors file, on the
/// CPU; a corrupt or mis-shaped file is an error that names `origin`.
pub fn load_net<T>(
    bytes: &[u8],
    origin: &str,
    build: impl FnOnce(candle_nn::VarBuilder) -> candle_core::Result<T>,
) -> Result<(T, candle_core::Device), PerceptionError> {
    let model_err = |e: candle_core::Error| PerceptionError::Model {
        path: origin.to_string(),
        reason: e.to_string(),
    };
    let device = candle_core::Device::Cpu;
    let tensors = candle_core::safetensors::load_buffer(bytes, &device).map_err(model_err)?;
    let vb = candle_nn::VarBuilder::from_tensors(tensors, candle_core::DType::F32, &device);
    let net = build(vb).map_err(model_err)?;
    Ok((net, device))
}

/// One object seen in one frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub color: Color,
    pub kind: ObjectKind,
    /// Box in pixels: x, y, width, height.
    pub bbox_px: [u32; 4],
    pub pixels: u32,
    /// Estimated centre in the frame of `odom_from_optical`.
    pub position_m: [f64; 3],
    /// Observed extent (robust) in x, y, z.
    pub extent_m: [f64; 3],
    /// Fraction of the component's pixels with valid depth.
    pub confidence: f64,
}

/// Hue ranges (OpenCV: 0..180) of each colour.
fn hue_ranges(c: Color) -> &'static [(f64, f64)] {
    match c {
        Color::Red => &[(0.0, 8.0), (172.0, 180.0)],
        Color::Yellow => &[(20.0, 35.0)],
        Color::Green => &[(45.0, 85.0)],
        Color::Blue => &[(100.0, 130.0)],
        // Not segmented by hue: the geometric detector names every colour.
        _ => &[],
    }
}

const MIN_SATURATION: f64 = 120.0;
const MIN_VALUE: f64 = 50.0;
const MIN_PIXELS: i32 = 25;
/// A component wider than this (in metres, horizontally) is a bin, not a cube.
pub(crate) const BIN_MIN_EXTENT_M: f64 = 0.15;

fn percentile(v: &mut [f64], q: f64) -> f64 {
    let k = ((v.len() as f64 - 1.0) * q).round() as usize;
    let (_, x, _) = v.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
    *x
}

/// Checks that the image and depth fit the camera: `(width, height)`.
pub(crate) fn check_sizes(
    rgb: &[u8],
    depth_m: &[f32],
    cam: &CameraDescription,
) -> Result<(u32, u32), PerceptionError> {
    let (w, h) = (cam.width_px, cam.height_px);
    let n = (w * h) as usize;
    if rgb.len() != n * 3 {
        return Err(PerceptionError::ImageSize {
            width: w,
            height: h,
            got: rgb.len(),
            want: n * 3,
        });
    }
    if depth_m.len() != n {
        return Err(PerceptionError::DepthSize {
            got: depth_m.len(),
            want: n,
        });
    }
    Ok((w, h))
}

/// A vertical gap this wide without a point of the region separates two
/// things of one colour stacked in view (a carried cube over a bin).
const HEIGHT_GAP_M: f64 = 0.06;

/// Where one object's pixels lie in space: robust bounds (3rd to 97th
/// percentile) of their back-projected depth, in the frame of `odom_from_optical`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Extent {
    lo: [f64; 3],
    hi: [f64; 3],
    /// Pixels with usable depth.
    valid: usize,
}

impl Extent {
    /// Back-projects the pixels `(u, v)` that have finite depth beyond 5 cm
    /// (and, with `gate`, depth within `gate.1` of `gate.0`); `None` below `min_valid`.
    pub(crate) fn measure(
        pixels: impl Iterator<Item = (u32, u32)>,
        depth_m: &[f32],
        cam: &CameraDescription,
        odom_from_optical: &Isometry3<f64>,
        gate: Option<(f32, f32)>,
        min_valid: usize,
    ) -> Option<Self> {
        let w = cam.width_px;
        let mut points: Vec<[f64; 3]> = Vec::new();
        for (u, v) in pixels {
            let Some(&d) = depth_m.get((v * w + u) as usize) else {
                continue;
            };
            if !d.is_finite() || d <= 0.05 {
                continue;
            }
            if gate.is_some_and(|(c, half)| (d - c).abs() > half) {
                continue;
            }
            let p = odom_from_optical * cam.back_project(f64::from(u), f64::from(v), f64::from(d));
            points.push([p.x, p.y, p.z]);
        }
        // Pixels of one colour may belong to two things one above the other
        // (a red cube carried over the red bin): keep the height band with
        // the most points, bands being split where no point lies for
        // `HEIGHT_GAP_M`.
        points.sort_by(|a, b| a[2].total_cmp(&b[2]));
        let mut best = (0, 0);
        let mut start = 0;
        for i in 1..=points.len() {
            if i == points.len() || points[i][2] - points[i - 1][2] > HEIGHT_GAP_M {
                if i - start > best.1 - best.0 {
                    best = (start, i);
                }
                start = i;
            }
        }
        let band = &points[best.0..best.1];
        let (mut xs, mut ys, mut zs): (Vec<f64>, Vec<f64>, Vec<f64>) = (
            band.iter().map(|p| p[0]).collect(),
            band.iter().map(|p| p[1]).collect(),
            band.iter().map(|p| p[2]).collect(),
        );
        if xs.len() < min_valid.max(1) {
            return None;
        }
        let valid = xs.len();
        let bounds = |v: &mut Vec<f64>| (percentile(v, 0.03), percentile(v, 0.97));
        let (x, y, z) = (bounds(&mut xs), bounds(&mut ys), bounds(&mut zs));
        Some(Self {
            lo: [x.0, y.0, z.0],
            hi: [x.1, y.1, z.1],
            valid,
        })
    }

    /// The larger horizontal side, in metres.
    pub(crate) fn horizontal_m(&self) -> f64 {
        (self.hi[0] - self.lo[0]).max(self.hi[1] - self.lo[1])
    }

    /// A detection of an object of this kind: centred on the seen extent,
    /// its centre one nominal half-height below the highest point seen.
    pub(crate) fn detection(
        &self,
        color: Color,
        kind: ObjectKind,
        bbox_px: [u32; 4],
        pixels: u32,
        confidence: f64,
    ) -> Detection {
        let height = kind.nominal_size_m()[2];
        let centre = Point3::new(
            (self.lo[0] + self.hi[0]) / 2.0,
            (self.lo[1] + self.hi[1]) / 2.0,
            self.hi[2] - height / 2.0,
        );
        Detection {
            color,
            kind,
            bbox_px,
            pixels,
            position_m: [centre.x, centre.y, centre.z],
            extent_m: std::array::from_fn(|k| self.hi[k] - self.lo[k]),
            confidence,
        }
    }
}

/// Finds coloured cubes and bins in an RGB-D frame.
///
/// `odom_from_optical` places the camera; positions come out in that parent frame.
/// Components cut by the image border are skipped: their extent is unreliable.
pub fn detect(
    rgb: &[u8],
    depth_m: &[f32],
    cam: &CameraDescription,
    odom_from_optical: &Isometry3<f64>,
) -> Result<Vec<Detection>, PerceptionError> {
    let (w, h) = check_sizes(rgb, depth_m, cam)?;
    let flat = Mat::from_slice(rgb)?;
    let img = flat.reshape(3, h as i32)?;
    let mut hsv = Mat::default();
    imgproc::cvt_color_def(&img, &mut hsv, imgproc::COLOR_RGB2HSV)?;
    let kernel = imgproc::get_structuring_element_def(imgproc::MORPH_RECT, core::Size::new(3, 3))?;

    let mut out = Vec::new();
    for color in Color::PRIMARY {
        let mut mask = Mat::default();
        for (i, (lo, hi)) in hue_ranges(color).iter().enumerate() {
            let mut m = Mat::default();
            core::in_range(
                &hsv,
                &Scalar::new(*lo, MIN_SATURATION, MIN_VALUE, 0.0),
                &Scalar::new(*hi, 255.0, 255.0, 0.0),
                &mut m,
            )?;
            if i == 0 {
                mask = m;
            } else {
                let mut merged = Mat::default();
                core::bitwise_or_def(&mask, &m, &mut merged)?;
                mask = merged;
            }
        }
        let mut opened = Mat::default();
        imgproc::morphology_ex_def(&mask, &mut opened, imgproc::MORPH_OPEN, &kernel)?;
        for c in components(&opened, MIN_PIXELS as u32)? {
            let [left, top, bw, bh] = c.bbox;
            if left == 0 || top == 0 || left + bw >= w || top + bh >= h {
                continue;
            }
            let pixels = c.pixels();
            let Some(extent) = Extent::measure(
                pixels,
                depth_m,
                cam,
                odom_from_optical,
                None,
                MIN_PIXELS as usize,
            ) else {
                continue;
            };
            let confidence = extent.valid as f64 / f64::from(c.area);
            let kind = if extent.horizontal_m() > BIN_MIN_EXTENT_M {
                ObjectKind::Bin
            } else {
                ObjectKind::Cube
            };
            out.push(extent.detection(color, kind, c.bbox, c.area, confidence));
        }
    }
    Ok(out)
}

/// One connected region of a binary mask.
pub(crate) struct Component {
    /// x, y, width, height in the mask's pixels.
    pub bbox: [u32; 4],
    pub area: u32,
    /// The region's label in `labels`.
    label: i32,
    labels: std::rc::Rc<(Vec<i32>, u32)>,
}

impl Component {
    /// The region's pixels, row by row.
    pub fn pixels(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let [x, y, bw, bh] = self.bbox;
        let (labels, w) = (&self.labels.0, self.labels.1);
        (y..y + bh)
            .flat_map(move |v| (x..x + bw).map(move |u| (u, v)))
            .filter(move |(u, v)| labels[(v * w + u) as usize] == self.label)
    }
}

/// The 8-connected regions of `mask` (8-bit, non-zero = set) of at least `min_area` pixels.
pub(crate) fn components(
    mask: &(impl core::ToInputArray + MatTraitConst),
    min_area: u32,
) -> Result<Vec<Component>, PerceptionError> {
    let mut labels = Mat::default();
    let mut stats = Mat::default();
    let mut centroids = Mat::default();
    let count = imgproc::connected_components_with_stats(
        mask,
        &mut labels,
        &mut stats,
        &mut centroids,
        8,
        core::CV_32S,
    )?;
    let shared = std::rc::Rc::new((labels.data_typed::<i32>()?.to_vec(), mask.cols() as u32));
    let mut out = Vec::new();
    for l in 1..count {
        let stat =
            |k| -> Result<u32, PerceptionError> { Ok((*stats.at_2d::<i32>(l, k)?).max(0) as u32) };
        let area = stat(imgproc::CC_STAT_AREA)?;
        if area < min_area {
            continue;
        }
        out.push(Component {
            bbox: [
                stat(imgproc::CC_STAT_LEFT)?,
                stat(imgproc::CC_STAT_TOP)?,
                stat(imgproc::CC_STAT_WIDTH)?,
                stat(imgproc::CC_STAT_HEIGHT)?,
            ],
            area,
            label: l,
            labels: shared.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosetta_common::robot::RobotDescription;
    use rosetta_common::Pose2D;
    use rosetta_sim::render::render_camera;
    use rosetta_sim::{Scene, World};

    fn detect_from(pose: Pose2D) -> (World, Vec<Detection>) {
        let mut w = World::new(Scene::default_scene().unwrap(), RobotDescription::default());
        w.pose = pose;
        let cam = w.robot.camera.clone();
        let f = render_camera(&w, &cam);
        let map_from_optical = w.pose.to_isometry() * cam.base_from_optical();
        let d = detect(&f.rgb, &f.depth_m, &cam, &map_from_optical).unwrap();
        (w, d)
    }

    #[test]
    fn finds_every_cube_on_the_table_within_2_cm() {
        let (w, dets) = detect_from(Pose2D::new(0.2, 0.0, 0.0));
        for o in w.objects.iter().filter(|o| o.kind == ObjectKind::Cube) {
            let d = dets
                .iter()
                .find(|d| d.color == o.color && d.kind == ObjectKind::Cube)
                .unwrap_or_else(|| panic!("{} not detected in {dets:?}", o.id));
            let err = ((d.position_m[0] - o.position_m[0]).powi(2)
                + (d.position_m[1] - o.position_m[1]).powi(2)
                + (d.position_m[2] - o.position_m[2]).powi(2))
            .sqrt();
            assert!(err < 0.02, "{}: error {err:.3} m", o.id);
        }
        // Nothing else is a cube.
        assert_eq!(
            dets.iter().filter(|d| d.kind == ObjectKind::Cube).count(),
            4
        );
    }

    #[test]
    fn finds_a_bin_as_a_bin() {
        // Face the blue bin from 1 m.
        let (w, dets) = detect_from(Pose2D::new(0.0, 0.6, std::f64::consts::FRAC_PI_2));
        let bin = w.objects.iter().find(|o| o.id == "blue_bin").unwrap();
        let d = dets
            .iter()
            .find(|d| d.color == Color::Blue && d.kind == ObjectKind::Bin)
            .unwrap_or_else(|| panic!("blue bin not detected in {dets:?}"));
        let err = ((d.position_m[0] - bin.position_m[0]).powi(2)
            + (d.position_m[1] - bin.position_m[1]).powi(2))
        .sqrt();
        assert!(err < 0.05, "bin centre error {err:.3} m");
    }

    /// A red cube carried over the red bin shows as one red region with the
    /// bin: the bin must still be measured at its own height, not lifted to
    /// the cube's (the place step then reached for a rim 0.55 m too high).
    #[test]
    fn a_cube_held_over_a_bin_of_its_colour_does_not_lift_the_bin() {
        let mut w = World::new(Scene::default_scene().unwrap(), RobotDescription::default());
        // Face the red bin from 0.9 m with the red cube hanging over it.
        w.pose = Pose2D::new(0.0, -0.7, -std::f64::consts::FRAC_PI_2);
        let bin = w
            .objects
            .iter()
            .find(|o| o.id == "red_bin")
            .unwrap()
            .position_m;
        let cube = w.objects.iter_mut().find(|o| o.id == "red_cube").unwrap();
        cube.position_m = [bin[0], bin[1] + 0.1, 0.45];
        let cam = w.robot.camera.clone();
        let f = render_camera(&w, &cam);
        let optical = w.pose.to_isometry() * cam.base_from_optical();
        // Every red pixel as one region, as colour segmentation sees them.
        let red: Vec<(u32, u32)> = (0..cam.height_px)
            .flat_map(|v| (0..cam.width_px).map(move |u| (u, v)))
            .filter(|(u, v)| {
                let i = ((v * cam.width_px + u) * 3) as usize;
                let px = &f.rgb[i..i + 3];
                px[0] > 120 && px[1] < 90 && px[2] < 90
            })
            .collect();
        let e = Extent::measure(red.into_iter(), &f.depth_m, &cam, &optical, None, 50).unwrap();
        let d = e.detection(Color::Red, ObjectKind::Bin, [0, 0, 1, 1], 1, 1.0);
        assert!(
            (d.position_m[2] - bin[2]).abs() < 0.05,
            "the bin's centre is estimated {:.2} m high, truly {:.2} m",
            d.position_m[2],
            bin[2]
        );
    }

    #[test]
    fn wrong_sizes_are_errors_not_panics() {
        let cam = RobotDescription::default().camera;
        let iso = Isometry3::identity();
        assert!(matches!(
            detect(&[0u8; 10], &[0.0; 10], &cam, &iso),
            Err(PerceptionError::ImageSize { .. })
        ));
        let rgb = vec![0u8; 640 * 480 * 3];
        assert!(matches!(
            detect(&rgb, &[0.0; 10], &cam, &iso),
            Err(PerceptionError::DepthSize { .. })
        ));
        // All-NaN depth: no detections, no panic.
        let mut rgb = vec![0u8; 640 * 480 * 3];
        for px in rgb.chunks_mut(3).skip(1000).take(5000) {
            px.copy_from_slice(&[200, 30, 30]);
        }
        let depth = vec![f32::NAN; 640 * 480];
        assert!(detect(&rgb, &depth, &cam, &iso).unwrap().is_empty());
    }
}
