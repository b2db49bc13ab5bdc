//! The planner: command text to a typed, validated action plan, grounded in
//! perception's world model.
//!
//! The default planner is the hybrid ([`pipeline`]): the reader ([`reader`])
//! and the grounder ([`compile`]) plan what they can read, and the language
//! model ([`llm::LlmPlanner`]: a chat model from [`chat_model`], decoding
//! under the plan grammar [`grammar`], prompted by [`prompt`], with a
//! fine-tuned [`adapter`] merged in) plans the words they cannot read.
//! [`rules::RulesPlanner`], the reader and grounder alone, is the no-model
//! fallback (`--planner rules`); `--planner llm` runs the model alone.
//! Training the adapter ([`tune`], `plan-tune`) is not part of the runtime:
//! nothing outside it imports from it.

pub mod adapter;
pub mod chat_model;
pub mod command_action;
pub mod compile;
pub mod grammar;
pub mod llm;
pub mod node;
pub mod pipeline;
pub mod prompt;
pub mod reader;
pub mod rules;
pub mod suite;
pub mod tune;
pub mod validate;

pub use rules::{PlanError, RulesPlanner};
