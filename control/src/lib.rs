//! Control: carries out a plan step by step.
//!
//! [`nav`] (go-to-pose), [`path`] (A* on the costmap), [`safety`] (limits on
//! every command), [`plan_run`] (a plan's step bookkeeping) and [`skill_runner`]
//! (the per-skill state machines) are pure: state plus goal in, command out.
//! Two ROS 2 shells use them: [`node`], control itself, which serves each
//! skill as a goal of the `/rosetta/skill` action, and [`executive`], which
//! sends a plan's steps to it one by one.

pub mod clock;
pub mod executive;
pub mod nav;
pub mod node;
pub mod path;
pub mod plan_run;
pub mod rec;
pub mod safety;
pub mod skill_goal;
pub mod skill_runner;

pub use skill_runner::{Inputs, Outputs, SkillRunner};
