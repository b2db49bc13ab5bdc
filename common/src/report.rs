//! The demo's JSON report (`rosetta demo --report FILE`, and `report.json` in
//! every episode folder): one typed contract between the launcher that writes
//! it and the tests and benches that read it.
//!
//! Plain serde, no ROS: readers parse it with
//! `serde_json::from_str::<DemoReport>`, so a renamed or retyped field fails
//! to parse instead of reading as null. Unknown fields are accepted, so that
//! a newer report still reads.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::goal::{Goal, GoalCheck};
use crate::status::{GroundTruth, GroundTruthObject, LoopSummary, StepStatus};
use crate::{Pose2D, Skill};

/// How a demo run ended. On the wire it is the snake_case word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DemoOutcome {
    /// The stack carried the command out (exit code 0).
    Succeeded,
    /// The task, or a re-plan, failed.
    Failed,
    /// The planner refused the command (exit code 2).
    Refused,
    /// The task was stopped before its end.
    Stopped,
    /// A wait ran out of time (connecting, planning, finishing).
    Timeout,
    /// Ctrl-C or SIGTERM (exit code 130).
    Interrupted,
    /// The launcher itself failed (a node exited, a publisher failed).
    Error,
}

impl DemoOutcome {
    /// The word the report holds.
    pub fn as_str(self) -> &'static str {
        match self {
            DemoOutcome::Succeeded => "succeeded",
            DemoOutcome::Failed => "failed",
            DemoOutcome::Refused => "refused",
            DemoOutcome::Stopped => "stopped",
            DemoOutcome::Timeout => "timeout",
            DemoOutcome::Interrupted => "interrupted",
            DemoOutcome::Error => "error",
        }
    }
}

impl fmt::Display for DemoOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many camera frames the stack was sent, and how often (per second of
/// sim time, from the frames' stamps).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CameraSummary {
    pub frames: u64,
    pub rate_hz: f64,
}

/// The demo's JSON report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoReport {
    pub command: String,
    pub outcome: DemoOutcome,
    pub message: String,
    pub planner: Option<String>,
    /// The last plan carried out (after any re-plans).
    pub plan: Option<Vec<Skill>>,
    /// What the command asked for (the last plan's goal conditions).
    pub goals: Vec<Goal>,
    /// The goal conditions as the executive checked them after the last
    /// step: which hold, which do not, and why.
    pub goal_checks: Vec<GoalCheck>,
    /// How many plans the planner made for the command (1 + re-plans).
    pub attempts: u32,
    /// Why each re-plan happened (the failures it answered).
    pub replans: Vec<String>,
    pub steps: Vec<StepStatus>,
    /// The stack's belief of the final robot pose, in `odom`.
    pub robot_final_pose: Option<Pose2D>,
    pub wall_time_s: f64,
    pub sim_time_s: f64,
    pub real_time_factor: Option<f64>,
    pub scene: String,
    pub seed: u64,
    /// The source it ran from (`git describe`), to reproduce it.
    pub git_revision: Option<String>,
    pub rrd_path: Option<PathBuf>,
    pub episode_dir: PathBuf,
    /// The sim's ground truth at the end (map frame); never read by the stack.
    pub ground_truth: Option<GroundTruth>,
    /// Every node process the launcher started, and how it ended.
    pub nodes: Vec<NodeExit>,
    /// The control loop's rate and jitter, from control's last status.
    pub control_loop: Option<LoopSummary>,
    /// The camera's frames as the launcher heard them (`camera_info`).
    #[serde(default)]
    pub camera: Option<CameraSummary>,
    /// Parts of the recording that were truncated or corrupt (a node that
    /// crashed mid-write), each with the reason.
    pub recording_problems: Vec<String>,
    /// The raw sensor recording (MCAP), with `--record-sensors`.
    pub sensors_path: Option<PathBuf>,
    /// With `--audio`: what Whisper heard (the command above), with timings.
    pub speech: Option<HeardCommand>,
}

impl DemoReport {
    /// The ground-truth object with this id, if the report has a ground
    /// truth that holds it.
    pub fn truth_object(&self, id: &str) -> Option<&GroundTruthObject> {
        self.ground_truth
            .as_ref()
            .and_then(|t| t.objects.iter().find(|o| o.id == id))
    }
}

/// The report as pretty JSON, as it is written (for test failure messages).
impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_string_pretty(self) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "{self:?}"),
        }
    }
}

/// One node process the launcher started, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeExit {
    pub name: String,
    pub pid: u32,
    /// The exit code, or null when it ended by a signal.
    pub exit_code: Option<i32>,
}

/// A spoken command as the demo heard it: the recording, Whisper's
/// transcript with its timings, and the model's load time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeardCommand {
    pub audio: PathBuf,
    /// The words heard: the report's command.
    pub text: String,
    pub tokens: usize,
    /// Length of the speech, seconds.
    pub audio_s: f64,
    /// Spectrogram, encoder and decoder time.
    pub mel_s: f64,
    pub encode_s: f64,
    pub decode_s: f64,
    /// Whisper's probability that the audio holds no speech.
    pub no_speech_p: f32,
    /// How long the speech model took to load.
    pub load_s: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> DemoReport {
        DemoReport {
            command: "put the red cube in the blue bin".into(),
            outcome: DemoOutcome::Succeeded,
            message: String::new(),
            planner: Some("hybrid".into()),
            plan: Some(vec![Skill::Pick {
                object: "red_cube".into(),
            }]),
            goals: vec![],
            goal_checks: vec![],
            attempts: 1,
            replans: vec![],
            steps: vec![],
            robot_final_pose: Some(Pose2D::default()),
            wall_time_s: 1.5,
            sim_time_s: 3.0,
            real_time_factor: Some(2.0),
            scene: "default".into(),
            seed: 7,
            git_revision: None,
            rrd_path: None,
            episode_dir: PathBuf::from("episodes/1"),
            ground_truth: None,
            nodes: vec![NodeExit {
                name: "sim".into(),
                pid: 42,
                exit_code: Some(0),
            }],
            control_loop: None,
            camera: Some(CameraSummary {
                frames: 120,
                rate_hz: 10.0,
            }),
            recording_problems: vec![],
            sensors_path: None,
            speech: Some(HeardCommand {
                audio: PathBuf::from("command.wav"),
                text: "put the red cube in the blue bin".into(),
                tokens: 9,
                audio_s: 2.0,
                mel_s: 0.1,
                encode_s: 0.2,
                decode_s: 0.3,
                no_speech_p: 0.01,
                load_s: 0.5,
            }),
        }
    }

    #[test]
    fn outcomes_are_their_snake_case_words() {
        use DemoOutcome::*;
        for o in [
            Succeeded,
            Failed,
            Refused,
            Stopped,
            Timeout,
            Interrupted,
            Error,
        ] {
            let json = serde_json::to_string(&o).expect("serialises");
            assert_eq!(json, format!("\"{}\"", o.as_str()));
            let back: DemoOutcome = serde_json::from_str(&json).expect("parses");
            assert_eq!(back, o);
        }
    }

    #[test]
    fn the_report_round_trips_and_keeps_its_field_names() {
        let r = report();
        let text = serde_json::to_string_pretty(&r).expect("serialises");
        let back: DemoReport = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, r);
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["outcome"], "succeeded");
        assert_eq!(v["speech"]["text"], "put the red cube in the blue bin");
        assert_eq!(v["speech"]["load_s"], 0.5);
        assert_eq!(v["nodes"][0]["exit_code"], 0);
        // A field the report does not know is accepted.
        let mut v = v;
        v["added_later"] = serde_json::json!(1);
        assert!(serde_json::from_value::<DemoReport>(v).is_ok());
    }

    #[test]
    fn a_renamed_field_does_not_parse() {
        let text = serde_json::to_string(&report()).expect("serialises");
        let renamed = text.replace("\"outcome\"", "\"result\"");
        assert!(serde_json::from_str::<DemoReport>(&renamed).is_err());
    }
}
