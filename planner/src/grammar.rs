//! Constrained decoding for plans.
//!
//! A language model writes a plan as lines of a tiny language, one step per
//! line, ending with `done` (or a single `refuse`):
//!
//! ```text
//! navigate_to red_cube
//! pick red_cube
//! navigate_to blue_bin
//! place red_cube blue_bin
//! done
//! ```
//!
//! The set of valid lines is finite and built from the world model, so at
//! every decoding step the allowed tokens are exactly those whose text keeps
//! the output a prefix of a valid plan. The output therefore always parses and
//! never names a thing that does not exist, whatever the model's scores.
//! This module is pure: it sees token *texts*, not a tokenizer or a model.

use rosetta_common::{Skill, WorldModel};

pub const DONE: &str = "done";
pub const REFUSE: &str = "refuse";
/// The waits a plan may contain, in seconds.
pub const WAIT_CHOICES_S: [u32; 4] = [1, 2, 5, 10];

/// The language of valid plans for one world model.
#[derive(Debug, Clone)]
pub struct PlanGrammar {
    /// Every valid step line, sorted (for prefix search).
    lines: Vec<String>,
    max_steps: usize,
}

/// Where decoding stands: the text of the current line and how many steps are done.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DecodeState {
    current: String,
    steps: usize,
    finished: bool,
}

impl DecodeState {
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GrammarError {
    #[error("line {0:?} is not a valid step")]
    BadLine(String),
    #[error("the plan does not end with `done`")]
    Unterminated,
}

/// What a decoded text means.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Plan(Vec<Skill>),
    Refused,
}

impl PlanGrammar {
    /// All steps over the objects of `world`: navigate to and look for anything,
    /// pick graspable things, place graspable things into containers.
    pub fn from_world(world: &WorldModel, max_steps: usize) -> Self {
        let mut lines = vec!["stop".to_string()];
        for s in WAIT_CHOICES_S {
            lines.push(format!("wait {s}"));
        }
        for o in &world.objects {
            lines.push(format!("navigate_to {}", o.id));
            lines.push(format!("look_for {}", o.id));
            if o.kind.is_graspable() {
                lines.push(format!("pick {}", o.id));
                for c in world.objects.iter().filter(|c| c.kind.is_container()) {
                    lines.push(format!("place {} {}", o.id, c.id));
                }
            }
        }
        lines.sort();
        lines.dedup();
        Self {
            lines,
            max_steps: max_steps.max(1),
        }
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    fn is_line_prefix(&self, s: &str) -> bool {
        let i = self.lines.partition_point(|l| l.as_str() < s);
        self.lines.get(i).is_some_and(|l| l.starts_with(s))
    }

    fn is_line(&self, s: &str) -> bool {
        self.lines.binary_search_by(|l| l.as_str().cmp(s)).is_ok()
    }

    /// Terminals allowed at the start of the current line.
    fn terminal_prefix(&self, st: &DecodeState, s: &str) -> bool {
        DONE.starts_with(s) && st.steps > 0 || REFUSE.starts_with(s) && st.steps == 0
    }

    fn is_terminal(&self, st: &DecodeState, s: &str) -> bool {
        s == DONE && st.steps > 0 || s == REFUSE && st.steps == 0
    }

    /// Feeds `text`; `None` if it would leave the language.
    pub fn advance(&self, st: &DecodeState, text: &str) -> Option<DecodeState> {
        if text.is_empty() || st.finished {
            return None;
        }
        let mut st = st.clone();
        for c in text.chars() {
            if st.finished {
                return None;
            }
            if c == '\n' {
                if self.is_terminal(&st, &st.current) {
                    st.finished = true;
                } else if st.steps < self.max_steps && self.is_line(&st.current) {
                    st.steps += 1;
                    st.current.clear();
                } else {
                    return None;
                }
                continue;
            }
            st.current.push(c);
            let step_ok = st.steps < self.max_steps && self.is_line_prefix(&st.current);
            if !step_ok && !self.terminal_prefix(&st, &st.current) {
                return None;
            }
        }
        Some(st)
    }

    /// Whether the end-of-sequence token may come now.
    pub fn can_end(&self, st: &DecodeState) -> bool {
        st.finished || self.is_terminal(st, &st.current)
    }

    /// The allowed-token mask over a vocabulary of token texts.
    pub fn allowed(&self, st: &DecodeState, vocab: &[String]) -> Vec<bool> {
        vocab
            .iter()
            .map(|t| self.advance(st, t).is_some())
            .collect()
    }

    /// Parses a finished text of this language.
    pub fn parse(&self, text: &str) -> Result<Decoded, GrammarError> {
        let mut steps = Vec::new();
        for raw in text.lines() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            if line == REFUSE && steps.is_empty() {
                return Ok(Decoded::Refused);
            }
            if line == DONE {
                return Ok(Decoded::Plan(steps));
            }
            if !self.is_line(line) {
                return Err(GrammarError::BadLine(line.to_string()));
            }
            steps.push(parse_line(line).ok_or_else(|| GrammarError::BadLine(line.to_string()))?);
        }
        Err(GrammarError::Unterminated)
    }
}

fn parse_line(line: &str) -> Option<Skill> {
    let words: Vec<&str> = line.split(' ').collect();
    Some(match words.as_slice() {
        ["stop"] => Skill::Stop,
        ["wait", s] => Skill::Wait {
            seconds: s.parse::<u32>().ok()? as f64,
        },
        ["navigate_to", t] => Skill::NavigateTo {
            target: t.to_string(),
        },
        ["look_for", o] => Skill::LookFor {
            object: o.to_string(),
        },
        ["pick", o] => Skill::Pick {
            object: o.to_string(),
        },
        ["place", o, t] => Skill::Place {
            object: o.to_string(),
            target: t.to_string(),
        },
        _ => return None,
    })
}

/// Writes a plan in the grammar's language (for prompts and few-shot examples).
pub fn render(steps: &[Skill]) -> String {
    let mut s = String::new();
    for step in steps {
        let line = match step {
            Skill::Stop => "stop".to_string(),
            Skill::Wait { seconds } => format!("wait {}", seconds.round() as u32),
            Skill::NavigateTo { target } => format!("navigate_to {target}"),
            Skill::LookFor { object } => format!("look_for {object}"),
            Skill::Pick { object } => format!("pick {object}"),
            Skill::Place { object, target } => format!("place {object} {target}"),
            Skill::Say { text } => format!("say {text}"),
        };
        s.push_str(&line);
        s.push('\n');
    }
    s.push_str(DONE);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rosetta_common::{Color, ObjectKind, ObservedObject};

    fn world() -> WorldModel {
        let obj = |color: Color, kind: ObjectKind| ObservedObject {
            id: rosetta_common::world::object_id(color, kind),
            kind,
            color,
            position_m: [1.0, 0.0, 0.4],
            last_seen_s: 0.0,
            observations: 1,
        };
        WorldModel {
            stamp_s: 0.0,
            frame_id: "odom".into(),
            objects: vec![
                obj(Color::Red, ObjectKind::Cube),
                obj(Color::Green, ObjectKind::Cube),
                obj(Color::Red, ObjectKind::Bin),
                obj(Color::Blue, ObjectKind::Bin),
            ],
        }
    }

    /// A vocabulary like a BPE model's: single characters, word pieces with and
    /// without a leading space, newlines, and junk that is never allowed.
    fn vocab() -> Vec<String> {
        let mut v: Vec<String> = "abcdefghijklmnopqrstuvwxyz_0123456789 \n{}\".,:"
            .chars()
            .map(String::from)
            .collect();
        for piece in [
            "navigate",
            "_to",
            " red",
            "red",
            "_cube",
            "_bin",
            " blue",
            "green",
            " green",
            "pick",
            "place",
            "look",
            "_for",
            "done",
            "refuse",
            "\n\n",
            " the",
            "Hello",
            "wait",
            " 5",
            " 10",
            "stop",
            "ĠĠ",
            "red_cube",
            " red_cube",
            "yellow",
            "_elephant",
            "navigate_to",
            " purple",
        ] {
            v.push(piece.to_string());
        }
        v
    }

    #[test]
    fn a_handwritten_plan_is_in_the_language() {
        let g = PlanGrammar::from_world(&world(), 8);
        let text = "navigate_to red_cube\npick red_cube\nnavigate_to blue_bin\nplace red_cube blue_bin\ndone";
        let mut st = DecodeState::default();
        for c in text.chars() {
            st = g.advance(&st, &c.to_string()).expect("valid prefix");
        }
        assert!(g.can_end(&st));
        let Decoded::Plan(steps) = g.parse(text).unwrap() else {
            panic!("refused")
        };
        assert_eq!(steps.len(), 4);
        assert_eq!(render(&steps), text);
    }

    #[test]
    fn unknown_things_and_wrong_kinds_are_not_in_the_language() {
        let g = PlanGrammar::from_world(&world(), 8);
        let st = DecodeState::default();
        assert!(
            g.advance(&st, "pick yellow_cube").is_none(),
            "not in the world"
        );
        assert!(g.advance(&st, "pick red_bin").is_none(), "not graspable");
        assert!(
            g.advance(&st, "place red_cube green_cube").is_none(),
            "not a container"
        );
        assert!(g.advance(&st, "drive_into wall").is_none());
        assert!(
            g.advance(&st, "done").is_none(),
            "an empty plan is a refusal, not done"
        );
        assert!(g.advance(&st, "refuse").is_some());
        assert!(g.parse("pick red_cube\n").is_err());
    }

    #[test]
    fn greedy_decoding_under_any_scores_yields_a_valid_plan() {
        let w = world();
        let g = PlanGrammar::from_world(&w, 6);
        let vocab = vocab();
        let mut plans = 0;
        for seed in 0..300u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut st = DecodeState::default();
            let mut text = String::new();
            for _ in 0..400 {
                let mask = g.allowed(&st, &vocab);
                let eos_score = if g.can_end(&st) {
                    Some(rng.gen::<f32>())
                } else {
                    None
                };
                let best = mask
                    .iter()
                    .enumerate()
                    .filter(|(_, ok)| **ok)
                    .map(|(i, _)| (i, rng.gen::<f32>()))
                    .max_by(|a, b| a.1.total_cmp(&b.1));
                match (best, eos_score) {
                    (Some((i, s)), e) if e.is_none_or(|e| s > e) => {
                        text.push_str(&vocab[i]);
                        st = g.advance(&st, &vocab[i]).unwrap();
                    }
                    (_, Some(_)) => break,
                    (None, None) => panic!("seed {seed}: dead end after {text:?}"),
                    _ => unreachable!(),
                }
            }
            assert!(g.can_end(&st), "seed {seed}: did not finish: {text:?}");
            match g
                .parse(&text)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}: {text:?}"))
            {
                Decoded::Refused => {}
                Decoded::Plan(steps) => {
                    plans += 1;
                    assert!(!steps.is_empty() && steps.len() <= 6);
                    for s in steps {
                        match s {
                            Skill::Pick { object } => {
                                assert!(w.get(&object).unwrap().kind.is_graspable())
                            }
                            Skill::Place { object, target } => {
                                assert!(w.get(&object).unwrap().kind.is_graspable());
                                assert!(w.get(&target).unwrap().kind.is_container());
                            }
                            Skill::NavigateTo { target } => assert!(w.get(&target).is_some()),
                            Skill::LookFor { object } => assert!(w.get(&object).is_some()),
                            Skill::Wait { seconds } => {
                                assert!(seconds <= rosetta_common::plan::MAX_WAIT_S)
                            }
                            Skill::Stop => {}
                            Skill::Say { .. } => panic!("say is not in the grammar"),
                        }
                    }
                }
            }
        }
        // The test exercises plans, not only the refusal.
        assert!(plans > 100, "only {plans} of 300 decodings were plans");
    }
}
