//! Perception: named objects from RGB-D frames, and the object map.
//!
//! Two detectors behind one interface ([`Detector`]): the classical
//! [`detect`] (OpenCV colour segmentation) and the [`learned`] network. Both
//! are pure (pixels, depth, intrinsics and pose in; detections in the odom
//! frame out). [`tracker`] keeps the object map over time, [`ground`]
//! resolves referring expressions in it, and [`node`] is the ROS 2 shell.

pub mod classify;
pub mod detect;
pub mod detector;
pub mod learned;
pub mod node;
pub mod open_vocab;
pub mod rec;
pub mod segment;
pub mod tracker;

pub use detect::{detect, Detection, PerceptionError};
pub use detector::{Detector, DetectorKind};
pub use tracker::Tracker;

/// Grounding of referring expressions in the object map. It lives in
/// `rosetta-common` (pure, no OpenCV) so that the planner uses it too.
pub use rosetta_common::ground;
