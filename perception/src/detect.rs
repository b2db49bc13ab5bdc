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
    }
}

const MIN_SATURATION: f64 = 120.0;
const MIN_VALUE: f64 = 50.0;
const MIN_PIXELS: i32 = 25;
/// A component wider than this (in metres, horizontally) is a bin, not a cube.
const BIN_MIN_EXTENT_M: f64 = 0.15;

fn percentile(v: &mut [f64], q: f64) -> f64 {
    let k = ((v.len() as f64 - 1.0) * q).round() as usize;
    let (_, x, _) = v.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
    *x
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
    let flat = Mat::from_slice(rgb)?;
    let img = flat.reshape(3, h as i32)?;
    let mut hsv = Mat::default();
    imgproc::cvt_color_def(&img, &mut hsv, imgproc::COLOR_RGB2HSV)?;
    let kernel = imgproc::get_structuring_element_def(imgproc::MORPH_RECT, core::Size::new(3, 3))?;

    let mut out = Vec::new();
    for color in Color::ALL {
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
        let mut labels = Mat::default();
        let mut stats = Mat::default();
        let mut centroids = Mat::default();
        let count = imgproc::connected_components_with_stats(
            &opened,
            &mut labels,
            &mut stats,
            &mut centroids,
            8,
            core::CV_32S,
        )?;
        let label_data = labels.data_typed::<i32>()?;
        for l in 1..count {
            let left = *stats.at_2d::<i32>(l, imgproc::CC_STAT_LEFT)?;
            let top = *stats.at_2d::<i32>(l, imgproc::CC_STAT_TOP)?;
            let bw = *stats.at_2d::<i32>(l, imgproc::CC_STAT_WIDTH)?;
            let bh = *stats.at_2d::<i32>(l, imgproc::CC_STAT_HEIGHT)?;
            let area = *stats.at_2d::<i32>(l, imgproc::CC_STAT_AREA)?;
            if area < MIN_PIXELS {
                continue;
            }
            if left <= 0 || top <= 0 || left + bw >= w as i32 || top + bh >= h as i32 {
                continue;
            }
            let (mut xs, mut ys, mut zs) = (Vec::new(), Vec::new(), Vec::new());
            for v in top..top + bh {
                for u in left..left + bw {
                    let i = (v as u32 * w + u as u32) as usize;
                    if label_data[i] != l {
                        continue;
                    }
                    let d = depth_m[i];
                    if !d.is_finite() || d <= 0.05 {
                        continue;
                    }
                    let p = odom_from_optical * cam.back_project(u as f64, v as f64, d as f64);
                    xs.push(p.x);
                    ys.push(p.y);
                    zs.push(p.z);
                }
            }
            if xs.len() < (MIN_PIXELS as usize) {
                continue;
            }
            let confidence = xs.len() as f64 / area as f64;
            let (x0, x1) = (percentile(&mut xs, 0.03), percentile(&mut xs, 0.97));
            let (y0, y1) = (percentile(&mut ys, 0.03), percentile(&mut ys, 0.97));
            let (z0, z1) = (percentile(&mut zs, 0.03), percentile(&mut zs, 0.97));
            let horizontal = (x1 - x0).max(y1 - y0);
            let kind = if horizontal > BIN_MIN_EXTENT_M {
                ObjectKind::Bin
            } else {
                ObjectKind::Cube
            };
            let height = kind.nominal_size_m()[2];
            let centre = Point3::new((x0 + x1) / 2.0, (y0 + y1) / 2.0, z1 - height / 2.0);
            out.push(Detection {
                color,
                kind,
                bbox_px: [left as u32, top as u32, bw as u32, bh as u32],
                pixels: area as u32,
                position_m: [centre.x, centre.y, centre.z],
                extent_m: [x1 - x0, y1 - y0, z1 - z0],
                confidence,
            });
        }
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
