//! The learned category classifier: a small convolutional network (candle)
//! that names the category of one object the geometric detector
//! ([`crate::segment`]) found, from a crop of its region and its measured
//! size. Trained on crops of objects in generated scenes that the sim
//! renders, of random sizes and proportions, with their true category as
//! the label (`train-classifier` in the tests crate).
//!
//! The crop is geometry only, not colour (in a generated scene colour says
//! nothing about category, and on a real robot it should not either):
//! [`CROP_CHANNELS`] planes of [`CROP`] x [`CROP`] cells over the region's
//! bounding square: the region's mask, its normals (up, towards the camera,
//! across the view) and each pixel's height within the object. Beside the
//! crop go [`SCALARS`] numbers: the footprint's sides and the height in
//! decimetres, and the shape class from the normals, one-hot.

use std::path::Path;

use candle_core::{Device, Module, Tensor, D};
use candle_nn::{conv2d, linear, Conv2d, Conv2dConfig, Linear, VarBuilder};
use rosetta_common::{ObjectKind, Shape};

use crate::detect::{load_net, read_model, PerceptionError};

/// Side of the square crop, in cells.
pub const CROP: usize = 24;
/// Planes of the crop: mask, normal up, normal towards the camera, normal
/// across the view, height within the object (0 at its bottom, 1 at its top).
pub const CROP_CHANNELS: usize = 5;
/// Widest side, thinnest side and height (decimetres), then the shape class
/// one-hot (box, cylinder, sphere).
pub const SCALARS: usize = 6;
/// The categories, in the order of the network's outputs.
pub const CATEGORIES: [ObjectKind; 6] = ObjectKind::ALL;

/// What the classifier sees of one object.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryFeatures {
    /// `CROP_CHANNELS x CROP x CROP`, plane by plane, row by row.
    pub crop: Vec<f32>,
    pub scalars: [f32; SCALARS],
}

impl CategoryFeatures {
    /// The scalar features of a footprint `sides_m`, a height and a shape class.
    pub fn scalars_of(sides_m: [f64; 2], height_m: f64, shape: Shape) -> [f32; SCALARS] {
        let (wide, thin) = (sides_m[0].max(sides_m[1]), sides_m[0].min(sides_m[1]));
        let mut s = [
            (wide * 10.0) as f32,
            (thin * 10.0) as f32,
            (height_m * 10.0) as f32,
            0.0,
            0.0,
            0.0,
        ];
        s[3 + match shape {
            Shape::Box => 0,
            Shape::Cylinder => 1,
            Shape::Sphere => 2,
        }] = 1.0;
        s
    }
}

/// The network: three 3x3 convolutions (each but the last followed by a 2x2
/// max pool) and a global average over the crop, joined to the scalars by
/// two linear layers. About 17 k weights: it runs per object, per frame, on
/// a CPU core.
#[derive(Debug)]
pub struct CategoryNet {
    convs: [Conv2d; 3],
    hidden: Linear,
    out: Linear,
}

const C1: usize = 16;
const C2: usize = 32;
const HIDDEN: usize = 48;

impl CategoryNet {
    pub fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let cfg = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        Ok(Self {
            convs: [
                conv2d(CROP_CHANNELS, C1, 3, cfg, vb.pp("conv0"))?,
                conv2d(C1, C2, 3, cfg, vb.pp("conv1"))?,
                conv2d(C2, C2, 3, cfg, vb.pp("conv2"))?,
            ],
            hidden: linear(C2 + SCALARS, HIDDEN, vb.pp("hidden"))?,
            out: linear(HIDDEN, CATEGORIES.len(), vb.pp("out"))?,
        })
    }

    /// Logits `(batch, CATEGORIES)` for crops `(batch, CROP_CHANNELS, CROP,
    /// CROP)` and scalars `(batch, SCALARS)`.
    pub fn forward(&self, crops: &Tensor, scalars: &Tensor) -> candle_core::Result<Tensor> {
        let mut y = self.convs[0].forward(crops)?.relu()?.max_pool2d(2)?;
        y = self.convs[1].forward(&y)?.relu()?.max_pool2d(2)?;
        y = self.convs[2].forward(&y)?.relu()?;
        let pooled = y.mean(D::Minus1)?.mean(D::Minus1)?;
        let joined = Tensor::cat(&[&pooled, scalars], 1)?;
        self.out.forward(&self.hidden.forward(&joined)?.relu()?)
    }
}

/// The inputs of a batch of objects, as tensors on `device`.
pub fn batch(
    features: &[&CategoryFeatures],
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let n = features.len();
    let crops: Vec<f32> = features
        .iter()
        .flat_map(|f| f.crop.iter().copied())
        .collect();
    let scalars: Vec<f32> = features.iter().flat_map(|f| f.scalars).collect();
    Ok((
        Tensor::from_vec(crops, (n, CROP_CHANNELS, CROP, CROP), device)?,
        Tensor::from_vec(scalars, (n, SCALARS), device)?,
    ))
}

/// The classifier, loaded from its safetensors weights.
#[derive(Debug)]
pub struct CategoryClassifier {
    net: CategoryNet,
    device: Device,
}

impl CategoryClassifier {
    /// Loads weights written by `train-classifier`. A missing, corrupt or
    /// mis-shaped file is an error that names the file.
    pub fn load(path: &Path) -> Result<Self, PerceptionError> {
        Self::from_bytes(&read_model(path)?, &path.display().to_string())
    }

    /// Loads weights from the bytes of a safetensors file; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, PerceptionError> {
        let (net, device) = load_net(bytes, origin, CategoryNet::new)?;
        Ok(Self { net, device })
    }

    /// Each object's category and its probability, in order.
    pub fn classify(
        &self,
        features: &[&CategoryFeatures],
    ) -> Result<Vec<(ObjectKind, f64)>, PerceptionError> {
        if features.is_empty() {
            return Ok(Vec::new());
        }
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let (crops, scalars) = batch(features, &self.device)?;
            let logits = self.net.forward(&crops, &scalars)?;
            candle_nn::ops::softmax(&logits, D::Minus1)?.to_vec2::<f32>()
        };
        let probs = run().map_err(|e| PerceptionError::Inference(e.to_string()))?;
        Ok(probs
            .iter()
            .map(|p| {
                let (k, best) =
                    p.iter()
                        .enumerate()
                        .fold(
                            (0, f32::NEG_INFINITY),
                            |acc, (k, &v)| {
                                if v > acc.1 {
                                    (k, v)
                                } else {
                                    acc
                                }
                            },
                        );
                (CATEGORIES[k], f64::from(best))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;
    use candle_nn::VarMap;

    fn features(seed: f32) -> CategoryFeatures {
        CategoryFeatures {
            crop: (0..CROP_CHANNELS * CROP * CROP)
                .map(|i| ((i as f32 * 0.37 + seed).sin() + 1.0) / 2.0)
                .collect(),
            scalars: CategoryFeatures::scalars_of([0.05, 0.05], 0.05, Shape::Box),
        }
    }

    #[test]
    fn weights_round_trip_through_safetensors_and_give_one_category_each() {
        let vars = VarMap::new();
        let net = CategoryNet::new(VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu));
        assert!(net.is_ok());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        vars.save(&path).unwrap();
        let c = CategoryClassifier::load(&path).unwrap();
        let (a, b) = (features(0.0), features(1.0));
        let out = c.classify(&[&a, &b]).unwrap();
        assert_eq!(out.len(), 2);
        for (_, p) in out {
            assert!((0.0..=1.0).contains(&p));
        }
    }

    #[test]
    fn a_corrupt_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.safetensors");
        std::fs::write(&path, b"not a model").unwrap();
        let err = CategoryClassifier::load(&path).unwrap_err().to_string();
        assert!(err.contains("broken.safetensors"), "{err}");
    }

    #[test]
    fn scalars_put_the_wider_side_first_and_mark_the_shape() {
        let s = CategoryFeatures::scalars_of([0.05, 0.08], 0.04, Shape::Cylinder);
        assert_eq!(&s[..3], &[0.8, 0.5, 0.4]);
        assert_eq!(&s[3..], &[0.0, 1.0, 0.0]);
    }
}
