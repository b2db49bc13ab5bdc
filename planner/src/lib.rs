//! The planner: command text to a typed, validated action plan, grounded in
//! perception's world model.
//!
//! [`llm::LlmPlanner`] runs a chat model under the plan grammar
//! ([`grammar`]), with fixed worked examples or a fine-tuned adapter
//! ([`tune`]), with `--planner llm`. [`rules::RulesPlanner`], a small
//! deterministic parser, stays the default until the model reaches its
//! accuracy target on the command suite (issue 3).

pub mod command_action;
pub mod compile;
pub mod grammar;
pub mod llm;
pub mod lm;
pub mod node;
pub mod pipeline;
pub mod reader;
pub mod rules;
pub mod suite;
pub mod tune;
pub mod validate;

pub use rules::{PlanError, RulesPlanner};
