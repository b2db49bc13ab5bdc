//! The detectors behind one interface: the class-agnostic geometric one
//! ([`crate::segment`], its categories from the learned classifier
//! [`crate::classify`] or from rules), the classical OpenCV pipeline
//! ([`crate::detect`]) and the learned segmentation network ([`crate::learned`]).

use std::path::Path;

use nalgebra::Isometry3;
use rosetta_common::robot::CameraDescription;

use crate::classify::CategoryClassifier;
use crate::detect::{detect, Detection, PerceptionError};
use crate::learned::LearnedDetector;
use crate::segment::detect_objects;

/// The learned detector's weights, as `train-detector` wrote them (committed,
/// about 45 kB), built into the binary so that it runs from anywhere.
pub const BUILT_IN_WEIGHTS: &[u8] = include_bytes!("../models/detector.safetensors");
/// The category classifier's weights, as `train-classifier` wrote them
/// (committed, about 68 kB), built into the binary.
pub const BUILT_IN_CLASSIFIER: &[u8] = include_bytes!("../models/classifier.safetensors");

/// Which detector perception runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DetectorKind {
    /// Class-agnostic: whatever stands out of the support surfaces in depth,
    /// named by colour (any of the eleven basic terms) and shape, its
    /// category from the learned classifier (trained on rendered crops).
    Geometric,
    /// The same objects, their category from rules of shape, size and
    /// openness instead of the classifier.
    GeometricRules,
    /// HSV colour segmentation, connected components and depth (OpenCV).
    Classical,
    /// A small convolutional network (candle), trained on rendered frames.
    Learned,
}

/// A detector, ready to run.
#[derive(Debug)]
pub enum Detector {
    /// With the category classifier, or (`None`) the rules.
    Geometric(Option<Box<CategoryClassifier>>),
    Classical,
    Learned(Box<LearnedDetector>),
}

impl Detector {
    /// The detector of this kind. The geometric one loads its classifier's
    /// `weights`, the learned one its network's; each has built-in ones.
    pub fn new(kind: DetectorKind, weights: Option<&Path>) -> Result<Self, PerceptionError> {
        Ok(match kind {
            DetectorKind::Geometric => Detector::Geometric(Some(Box::new(match weights {
                Some(path) => CategoryClassifier::load(path)?,
                None => CategoryClassifier::from_bytes(
                    BUILT_IN_CLASSIFIER,
                    "<built-in classifier weights>",
                )?,
            }))),
            DetectorKind::GeometricRules => Detector::Geometric(None),
            DetectorKind::Classical => Detector::Classical,
            DetectorKind::Learned => Detector::Learned(Box::new(match weights {
                Some(path) => LearnedDetector::load(path)?,
                None => LearnedDetector::from_bytes(BUILT_IN_WEIGHTS, "<built-in weights>")?,
            })),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Detector::Geometric(Some(_)) => "geometric",
            Detector::Geometric(None) => "geometric-rules",
            Detector::Classical => "classical",
            Detector::Learned(_) => "learned",
        }
    }

    /// Objects in an RGB-D frame, placed in the frame of `odom_from_optical`.
    pub fn detect(
        &self,
        rgb: &[u8],
        depth_m: &[f32],
        cam: &CameraDescription,
        odom_from_optical: &Isometry3<f64>,
    ) -> Result<Vec<Detection>, PerceptionError> {
        match self {
            Detector::Geometric(classifier) => {
                detect_objects(rgb, depth_m, cam, odom_from_optical, classifier.as_deref())
            }
            Detector::Classical => detect(rgb, depth_m, cam, odom_from_optical),
            Detector::Learned(net) => net.detect(rgb, depth_m, cam, odom_from_optical),
        }
    }
}
