//! Fine-tuning the planner's language model: a generated command corpus
//! ([`corpus`]), a trainable llama with low-rank adapters ([`model`]).

pub mod corpus;
pub mod model;
pub mod train;
