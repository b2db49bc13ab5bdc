//! The learned detector: a small fully convolutional network (candle) that
//! labels every pixel of a half-resolution RGB-D frame with a class (nothing,
//! or one colour and kind of object), trained on frames the sim renders with
//! exact labels (`train-detector` in the tests crate).
//!
//! Regions of one colour become detections, their kind is the class with the
//! most probability over the region, and their place in space comes from the
//! region's depth, as in the classical detector.

use std::path::Path;

use candle_core::{Device, Module, Tensor};
use candle_nn::{conv2d, Conv2d, Conv2dConfig, VarBuilder};
use nalgebra::Isometry3;
use opencv::core::{Mat, CV_8UC1};
use opencv::prelude::*;
use rosetta_common::robot::CameraDescription;
use rosetta_common::{Color, ObjectKind};

use crate::detect::{
    check_sizes, components, load_net, read_model, Detection, Extent, PerceptionError,
    BIN_MIN_EXTENT_M,
};

/// Output classes: 0 is "no object", then each colour's cube and bin.
pub const CLASSES: usize = 1 + 2 * Color::PRIMARY.len();
/// Input channels: red, green, blue (0..1) and inverse depth `1 / (1 + d)`.
pub const CHANNELS: usize = 4;
/// The network sees the frame at 1/`SCALE` of its resolution...
pub const SCALE: u32 = 2;
/// ...and labels cells of `CELL` x `CELL` camera pixels.
pub const CELL: u32 = 2 * SCALE;

/// The class of an object of this colour and kind.
pub fn class_of(color: Color, kind: ObjectKind) -> usize {
    let c = Color::PRIMARY.iter().position(|c| *c == color).unwrap_or(0);
    1 + 2 * c + usize::from(kind == ObjectKind::Bin)
}

/// The colour and kind of a class; `None` for class 0.
pub fn class_info(class: usize) -> Option<(Color, ObjectKind)> {
    let k = class.checked_sub(1)?;
    let color = *Color::PRIMARY.get(k / 2)?;
    let kind = if k % 2 == 0 {
        ObjectKind::Cube
    } else {
        ObjectKind::Bin
    };
    Some((color, kind))
}

/// The network: a strided stem (1/2 of the input), two strided convolutions
/// down to 1/8, a body of dilated residual convolutions there (a receptive
/// field of about 270 input pixels), and a head that joins the body,
/// upsampled, to the stem's features. Its classes come out at 1/2 of the
/// input's resolution. Small on purpose: it runs on a CPU core, per frame.
#[derive(Debug)]
pub struct SegNet {
    stem: Conv2d,
    down: [Conv2d; 2],
    body: [Conv2d; 3],
    head: Conv2d,
}

const STEM: usize = 8;
const BODY: usize = 16;

impl SegNet {
    pub fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let cfg = |padding, stride, dilation| Conv2dConfig {
            padding,
            stride,
            dilation,
            ..Default::default()
        };
        Ok(Self {
            stem: conv2d(CHANNELS, STEM, 3, cfg(1, 2, 1), vb.pp("stem"))?,
            down: [
                conv2d(STEM, BODY, 3, cfg(1, 2, 1), vb.pp("down0"))?,
                conv2d(BODY, BODY, 3, cfg(1, 2, 1), vb.pp("down1"))?,
            ],
            body: [
                conv2d(BODY, BODY, 3, cfg(1, 1, 1), vb.pp("body0"))?,
                conv2d(BODY, BODY, 3, cfg(2, 1, 2), vb.pp("body1"))?,
                conv2d(BODY, BODY, 3, cfg(4, 1, 4), vb.pp("body2"))?,
            ],
            head: conv2d(STEM + BODY, CLASSES, 1, cfg(0, 1, 1), vb.pp("head"))?,
        })
    }

    /// Logits `(batch, CLASSES, h / 2, w / 2)` for inputs `(batch, CHANNELS, h, w)`;
    /// h and w multiples of 16.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let stem = self.stem.forward(x)?.relu()?;
        let (_, _, h, w) = stem.dims4()?;
        let mut y = stem.clone();
        for conv in &self.down {
            y = conv.forward(&y)?.relu()?;
        }
        for conv in &self.body {
            // Residual: each dilated layer adds context to what is there.
            y = (conv.forward(&y)?.relu()? + y)?;
        }
        let up = y.upsample_nearest2d(h, w)?;
        self.head.forward(&Tensor::cat(&[&stem, &up], 1)?)
    }
}

/// The network's input for a frame: `(CHANNELS, h / SCALE, w / SCALE)` values,
/// channel by channel. Colour is averaged over each SCALE x SCALE block; depth
/// is the block's first finite value, as `1 / (1 + d)` (0 where none).
pub fn input_planes(rgb: &[u8], depth_m: &[f32], w: u32, h: u32) -> Vec<f32> {
    let (ow, oh) = ((w / SCALE) as usize, (h / SCALE) as usize);
    let plane = ow * oh;
    let mut out = vec![0f32; CHANNELS * plane];
    let s = SCALE as usize;
    let norm = 1.0 / (255.0 * (s * s) as f32);
    for y in 0..oh {
        for x in 0..ow {
            let mut sum = [0u32; 3];
            let mut inv_depth = 0.0;
            for dy in 0..s {
                for dx in 0..s {
                    let i = (y * s + dy) * w as usize + x * s + dx;
                    for (k, acc) in sum.iter_mut().enumerate() {
                        *acc += u32::from(rgb[i * 3 + k]);
                    }
                    let d = depth_m[i];
                    if inv_depth == 0.0 && d.is_finite() && d > 0.0 {
                        inv_depth = 1.0 / (1.0 + d);
                    }
                }
            }
            let o = y * ow + x;
            for (k, acc) in sum.iter().enumerate() {
                out[k * plane + o] = *acc as f32 * norm;
            }
            out[3 * plane + o] = inv_depth;
        }
    }
    out
}

/// A region needs this many cells (at the network's resolution) to count.
const MIN_CELLS: u32 = 3;
/// A cell belongs to an object when that object's classes hold this much probability.
const MIN_PROBABILITY: f32 = 0.5;
/// A region counts when its cells hold this much probability on average.
/// Chosen on `perception-bench` (150 frames, seed 4) for the committed
/// weights: at 0.55, precision 0.948 and recall 0.943; at 0.6, 0.963 and
/// 0.917; at 0.65, 0.980 and 0.888.
const MIN_CONFIDENCE: f64 = 0.6;

/// The learned detector, loaded from its safetensors weights.
#[derive(Debug)]
pub struct LearnedDetector {
    net: SegNet,
    device: Device,
}

impl LearnedDetector {
    /// Loads weights written by `train-detector`. A missing, corrupt or
    /// mis-shaped file is an error that names the file.
    pub fn load(path: &Path) -> Result<Self, PerceptionError> {
        Self::from_bytes(&read_model(path)?, &path.display().to_string())
    }

    /// Loads weights from the bytes of a safetensors file; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, PerceptionError> {
        let (net, device) = load_net(bytes, origin, SegNet::new)?;
        Ok(Self { net, device })
    }

    /// Per-cell class probabilities `(CLASSES, rows, columns)`, flattened,
    /// with the grid's `(columns, rows)`: about `(w / CELL, h / CELL)`.
    pub fn probabilities(
        &self,
        rgb: &[u8],
        depth_m: &[f32],
        cam: &CameraDescription,
    ) -> Result<(Vec<f32>, (u32, u32)), PerceptionError> {
        let (w, h) = check_sizes(rgb, depth_m, cam)?;
        let (ow, oh) = ((w / SCALE) as usize, (h / SCALE) as usize);
        let run = || -> candle_core::Result<(Vec<f32>, (u32, u32))> {
            let x = Tensor::from_vec(
                input_planes(rgb, depth_m, w, h),
                (1, CHANNELS, oh, ow),
                &self.device,
            )?;
            let logits = self.net.forward(&x)?;
            let (_, _, rows, cols) = logits.dims4()?;
            let probs = candle_nn::ops::softmax(&logits, 1)?
                .squeeze(0)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            Ok((probs, (cols as u32, rows as u32)))
        };
        run().map_err(|e| PerceptionError::Inference(e.to_string()))
    }

    /// Finds cubes and bins, as [`crate::detect::detect`] does, with the network.
    pub fn detect(
        &self,
        rgb: &[u8],
        depth_m: &[f32],
        cam: &CameraDescription,
        odom_from_optical: &Isometry3<f64>,
    ) -> Result<Vec<Detection>, PerceptionError> {
        let (probs, (ow, oh)) = self.probabilities(rgb, depth_m, cam)?;
        let plane = (ow * oh) as usize;
        let p = |class: usize, cell: usize| probs[class * plane + cell];
        let mut out = Vec::new();
        for color in Color::PRIMARY {
            let (cube, bin) = (
                class_of(color, ObjectKind::Cube),
                class_of(color, ObjectKind::Bin),
            );
            let mask: Vec<u8> = (0..plane)
                .map(|i| {
                    if p(cube, i) + p(bin, i) >= MIN_PROBABILITY {
                        255
                    } else {
                        0
                    }
                })
                .collect();
            let mat = Mat::new_rows_cols_with_data(oh as i32, ow as i32, &mask)?;
            debug_assert_eq!(mat.typ(), CV_8UC1);
            for c in components(&mat, MIN_CELLS)? {
                let [x, y, bw, bh] = c.bbox;
                if x == 0 || y == 0 || x + bw >= ow || y + bh >= oh {
                    continue;
                }
                let (mut p_cube, mut p_bin) = (0.0f32, 0.0f32);
                let mut depths = Vec::new();
                for (u, v) in c.pixels() {
                    let i = (v * ow + u) as usize;
                    p_cube += p(cube, i);
                    p_bin += p(bin, i);
                    let centre = (v * CELL + CELL / 2) * cam.width_px + u * CELL + CELL / 2;
                    let d = depth_m.get(centre as usize).copied().unwrap_or(f32::NAN);
                    if d.is_finite() && d > 0.05 {
                        depths.push(d);
                    }
                }
                let kind = if p_bin > p_cube {
                    ObjectKind::Bin
                } else {
                    ObjectKind::Cube
                };
                // Cells on the object's outline also cover what lies behind
                // it: keep depths within the object's size of the median.
                if depths.is_empty() {
                    continue;
                }
                let mid = depths.len() / 2;
                let (_, median, _) = depths.select_nth_unstable_by(mid, f32::total_cmp);
                let reach = kind.nominal_size_m().iter().fold(0.0f64, |a, b| a.max(*b)) as f32;
                let full_res = c.pixels().flat_map(|(u, v)| {
                    (0..CELL)
                        .flat_map(move |dy| (0..CELL).map(move |dx| (u * CELL + dx, v * CELL + dy)))
                });
                let Some(extent) = Extent::measure(
                    full_res,
                    depth_m,
                    cam,
                    odom_from_optical,
                    Some((*median, reach)),
                    MIN_CELLS as usize,
                ) else {
                    continue;
                };
                // The network names the kind; the depth must agree on the
                // size: a bin's region spans more than a cube could.
                if (kind == ObjectKind::Bin) != (extent.horizontal_m() > BIN_MIN_EXTENT_M) {
                    tracing::debug!(
                        ?color,
                        ?kind,
                        size_m = extent.horizontal_m(),
                        "a region whose size does not fit its class is left out"
                    );
                    continue;
                }
                let confidence = f64::from((p_cube + p_bin) / c.area as f32);
                if confidence < MIN_CONFIDENCE {
                    continue;
                }
                out.push(extent.detection(
                    color,
                    kind,
                    [x * CELL, y * CELL, bw * CELL, bh * CELL],
                    c.area * CELL * CELL,
                    confidence,
                ));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    #[test]
    fn classes_round_trip() {
        for color in Color::PRIMARY {
            for kind in [ObjectKind::Cube, ObjectKind::Bin] {
                assert_eq!(class_info(class_of(color, kind)), Some((color, kind)));
            }
        }
        assert_eq!(class_info(0), None);
        assert_eq!(class_info(CLASSES), None);
        let all: std::collections::BTreeSet<usize> = Color::PRIMARY
            .iter()
            .flat_map(|c| {
                [
                    class_of(*c, ObjectKind::Cube),
                    class_of(*c, ObjectKind::Bin),
                ]
            })
            .collect();
        assert_eq!(all, (1..CLASSES).collect());
    }

    #[test]
    fn input_planes_average_colour_and_keep_depth() {
        let (w, h) = (4u32, 2u32);
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        // The left 2x2 block: two white pixels, two black ones.
        for i in [0usize, 1] {
            rgb[i * 3..i * 3 + 3].copy_from_slice(&[255, 255, 255]);
        }
        let mut depth = vec![f32::INFINITY; (w * h) as usize];
        depth[1] = 1.0;
        depth[2] = f32::NAN;
        let x = input_planes(&rgb, &depth, w, h);
        assert_eq!(x.len(), CHANNELS * 2);
        assert!((x[0] - 0.5).abs() < 1e-6, "red of block 0: {}", x[0]);
        assert_eq!(x[1], 0.0);
        assert!((x[3 * 2] - 0.5).abs() < 1e-6, "inverse depth: {}", x[6]);
        assert_eq!(x[3 * 2 + 1], 0.0, "no finite depth: 0");
    }

    #[test]
    fn the_network_labels_cells_of_four_pixels() {
        let vars = candle_nn::VarMap::new();
        let net =
            SegNet::new(VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu)).expect("net");
        let x = Tensor::zeros((2, CHANNELS, 240, 320), DType::F32, &Device::Cpu).expect("x");
        let y = net.forward(&x).expect("forward");
        assert_eq!(
            y.dims4().expect("dims"),
            (2, CLASSES, 240 / 2, 320 / 2),
            "{CELL} camera pixels per cell"
        );
    }

    /// A camera of another size (not a multiple of the network's strides)
    /// runs, and a frame with nothing in it gives nothing; a frame of the
    /// wrong size is an error, not a panic.
    #[test]
    fn other_camera_sizes_run_and_wrong_sizes_are_errors() {
        let det = LearnedDetector::from_bytes(crate::detector::BUILT_IN_WEIGHTS, "built-in")
            .expect("built-in weights");
        let mut cam = rosetta_common::robot::RobotDescription::default().camera;
        cam.width_px = 330;
        cam.height_px = 250;
        let n = (cam.width_px * cam.height_px) as usize;
        let rgb = vec![128u8; n * 3];
        let depth = vec![f32::INFINITY; n];
        let iso = Isometry3::identity();
        let dets = det.detect(&rgb, &depth, &cam, &iso).expect("runs");
        assert!(dets.is_empty(), "{dets:?}");
        assert!(matches!(
            det.detect(&rgb[..10], &depth, &cam, &iso),
            Err(PerceptionError::ImageSize { .. })
        ));
    }

    #[test]
    fn missing_and_corrupt_weights_are_named_errors() {
        let dir = std::env::temp_dir().join(format!("rosetta-learned-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let missing = dir.join("nope.safetensors");
        let err = LearnedDetector::load(&missing).unwrap_err().to_string();
        assert!(err.contains("nope.safetensors"), "{err}");
        let corrupt = dir.join("corrupt.safetensors");
        std::fs::write(&corrupt, b"not a model").ok();
        let err = LearnedDetector::load(&corrupt).unwrap_err().to_string();
        assert!(err.contains("corrupt.safetensors"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
