//! Control: carries out a plan step by step.
//!
//! [`nav`] (go-to-pose), [`safety`] (limits on every command) and
//! [`executor`] (the per-skill state machines) are pure: state plus goal in,
//! command out. [`node`] is the ROS 2 shell.

pub mod clock;
pub mod executor;
pub mod nav;
pub mod node;
pub mod path;
pub mod safety;

pub use executor::{Executor, Inputs, Outputs};
