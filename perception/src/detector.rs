//! The two detectors behind one interface: the classical OpenCV pipeline
//! ([`crate::detect`]) and the learned network ([`crate::learned`]).

use std::path::Path;

use nalgebra::Isometry3;
use rosetta_common::robot::CameraDescription;

use crate::detect::{detect, Detection, PerceptionError};
use crate::learned::LearnedDetector;

/// The learned detector's weights, as `train-detector` wrote them (committed,
/// about 45 kB), built into the binary so that it runs from anywhere.
pub const BUILT_IN_WEIGHTS: &[u8] = include_bytes!("../models/detector.safetensors");

/// Which detector perception runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DetectorKind {
    /// HSV colour segmentation, connected components and depth (OpenCV).
    Classical,
    /// A small convolutional network (candle), trained on rendered frames.
    Learned,
}

/// A detector, ready to run.
#[derive(Debug)]
pub enum Detector {
    Classical,
    Learned(Box<LearnedDetector>),
}

impl Detector {
    /// The detector of this kind; the learned one loads `weights`, or the built-in ones.
    pub fn new(kind: DetectorKind, weights: Option<&Path>) -> Result<Self, PerceptionError> {
        Ok(match kind {
            DetectorKind::Classical => Detector::Classical,
            DetectorKind::Learned => Detector::Learned(Box::new(match weights {
                Some(path) => LearnedDetector::load(path)?,
                None => LearnedDetector::from_bytes(BUILT_IN_WEIGHTS, "<built-in weights>")?,
            })),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Detector::Classical => "classical",
            Detector::Learned(_) => "learned",
        }
    }

    /// Cubes and bins in an RGB-D frame, placed in the frame of `odom_from_optical`.
    pub fn detect(
        &self,
        rgb: &[u8],
        depth_m: &[f32],
        cam: &CameraDescription,
        odom_from_optical: &Isometry3<f64>,
    ) -> Result<Vec<Detection>, PerceptionError> {
        match self {
            Detector::Classical => detect(rgb, depth_m, cam, odom_from_optical),
            Detector::Learned(net) => net.detect(rgb, depth_m, cam, odom_from_optical),
        }
    }
}
