//! The planner: command text to a typed, validated action plan, grounded in
//! perception's world model.
//!
//! The language-model planner is the next step (issue 3); here
//! [`rules::RulesPlanner`] is an explicit **stand-in**: a small deterministic
//! parser that handles the walking skeleton's commands and refuses the rest.

pub mod command_action;
pub mod grammar;
pub mod llm;
pub mod lm;
pub mod node;
pub mod rules;
pub mod suite;
pub mod tune;
pub mod validate;

pub use rules::{PlanError, RulesPlanner};
