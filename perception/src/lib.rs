//! Perception: named objects from RGB-D frames, and the object map.
//!
//! [`detect`] is pure (pixels, depth, intrinsics and pose in; detections in the
//! odom frame out) and [`tracker`] keeps the object map over time; [`node`] is
//! the ROS 2 shell.

pub mod detect;
pub mod node;
pub mod rec;
pub mod tracker;

pub use detect::{detect, Detection, PerceptionError};
pub use tracker::Tracker;
