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

use rosetta_common::world::object_id;
use rosetta_common::{Color, ObjectKind, Skill, WorldModel};

pub const DONE: &str = "done";
pub const REFUSE: &str = "refuse";
/// The waits a plan may contain, in seconds.
pub const WAIT_CHOICES_S: [u32; 4] = [1, 2, 5, 10];

/// What a step line does to the decoding state.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Effect {
    None,
    Navigate(String),
    LookFor(String),
    Pick(String),
    Place(String, String),
}

#[derive(Debug, Clone)]
struct Line {
    text: String,
    effect: Effect,
    /// Objects the world model does not have yet: the plan must `look_for`
    /// each of them before any other step names it.
    requires: Vec<String>,
}

/// The language of valid plans for one world model.
///
/// Beyond naming only things that exist, the language fixes the shape of a
/// manipulation: `pick X` comes right after `navigate_to X` with empty hands,
/// and `place X C` right after `navigate_to C` while holding `X`. Objects that
/// could exist but are not in the world model yet (an unseen `yellow_bin`) may
/// be named only after a `look_for` step for them.
#[derive(Debug, Clone)]
pub struct PlanGrammar {
    /// Every step line, sorted by text (for prefix search).
    lines: Vec<Line>,
    max_steps: usize,
}

/// Where decoding stands: the text of the current line, the steps so far and
/// what they imply (what was looked for, where the robot is, what it holds).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DecodeState {
    current: String,
    steps: usize,
    finished: bool,
    introduced: Vec<String>,
    at: Option<String>,
    holding: Option<String>,
}

impl DecodeState {
    pub fn is_finished(&self) -> bool {
        self.finished
    }
    /// The text of the unfinished line.
    pub fn current_line(&self) -> &str {
        &self.current
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GrammarError {
    #[error("line {0:?} is not a valid step here")]
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

/// The object ids the model may name before they are seen (to look for
/// them): each primary colour of cube and bin, what its corpus speaks of.
/// Objects of other kinds and colours are named once perception has seen them.
pub fn nameable_objects() -> Vec<(String, ObjectKind)> {
    let mut v = Vec::new();
    for kind in [ObjectKind::Cube, ObjectKind::Bin] {
        for color in Color::PRIMARY {
            v.push((object_id(color, kind), kind));
        }
    }
    v
}

impl PlanGrammar {
    /// All steps over the objects and places of `world`, and over nameable
    /// objects it has not seen (behind a `look_for`).
    pub fn from_world(world: &WorldModel, max_steps: usize) -> Self {
        let mut objects: Vec<(String, ObjectKind, bool)> = world
            .objects
            .iter()
            .map(|o| (o.id.clone(), o.kind, true))
            .collect();
        for (id, kind) in nameable_objects() {
            if world.get(&id).is_none() {
                objects.push((id, kind, false));
            }
        }
        let unseen = |ids: &[&str]| -> Vec<String> {
            ids.iter()
                .filter(|id| objects.iter().any(|(o, _, seen)| o == *id && !seen))
                .map(|id| id.to_string())
                .collect()
        };
        let line = |text: String, effect: Effect, requires: Vec<String>| Line {
            text,
            effect,
            requires,
        };
        let mut lines = vec![line("stop".into(), Effect::None, vec![])];
        for s in WAIT_CHOICES_S {
            lines.push(line(format!("wait {s}"), Effect::None, vec![]));
        }
        for p in &world.places {
            lines.push(line(
                format!("navigate_to {}", p.id),
                Effect::Navigate(p.id.clone()),
                vec![],
            ));
        }
        for (id, kind, _) in &objects {
            lines.push(line(
                format!("navigate_to {id}"),
                Effect::Navigate(id.clone()),
                unseen(&[id]),
            ));
            lines.push(line(
                format!("look_for {id}"),
                Effect::LookFor(id.clone()),
                vec![],
            ));
            if kind.is_graspable() {
                lines.push(line(
                    format!("pick {id}"),
                    Effect::Pick(id.clone()),
                    unseen(&[id]),
                ));
                for (c, ckind, _) in &objects {
                    if ckind.is_container() {
                        lines.push(line(
                            format!("place {id} {c}"),
                            Effect::Place(id.clone(), c.clone()),
                            unseen(&[id, c]),
                        ));
                    }
                }
            }
        }
        lines.sort_by(|a, b| a.text.cmp(&b.text));
        lines.dedup_by(|a, b| a.text == b.text);
        Self {
            lines,
            max_steps: max_steps.max(1),
        }
    }

    /// The longest text of this language, in bytes: `max_steps` of the
    /// longest line, each with its newline, then the longer terminal word.
    /// Each token the decoder feeds adds at least one byte, so decoding ends
    /// within this many tokens whatever the model scores.
    pub fn max_text_bytes(&self) -> usize {
        let longest = self.lines.iter().map(|l| l.text.len()).max().unwrap_or(0);
        self.max_steps * (longest + 1) + DONE.len().max(REFUSE.len())
    }

    /// The text of every step line, whether or not it is allowed now.
    pub fn line_texts(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(|l| l.text.as_str())
    }

    fn allowed_now(&self, st: &DecodeState, l: &Line) -> bool {
        if st.steps >= self.max_steps || !l.requires.iter().all(|r| st.introduced.contains(r)) {
            return false;
        }
        match &l.effect {
            Effect::Pick(o) => st.holding.is_none() && st.at.as_ref() == Some(o),
            Effect::Place(o, c) => st.holding.as_ref() == Some(o) && st.at.as_ref() == Some(c),
            // Steps that would change nothing: looking again for what this plan
            // already looked for, or driving to where the robot already is. A
            // weak model otherwise loops on them until the step limit.
            Effect::LookFor(o) => !st.introduced.contains(o),
            Effect::Navigate(t) => st.at.as_ref() != Some(t),
            Effect::None => true,
        }
    }

    /// The allowed lines that start with `prefix`.
    fn candidates<'a>(
        &'a self,
        st: &'a DecodeState,
        prefix: &'a str,
    ) -> impl Iterator<Item = &'a Line> + 'a {
        let i = self.lines.partition_point(|l| l.text.as_str() < prefix);
        self.lines[i..]
            .iter()
            .take_while(move |l| l.text.starts_with(prefix))
            .filter(move |l| self.allowed_now(st, l))
    }

    fn terminals(st: &DecodeState) -> &'static [&'static str] {
        if st.steps == 0 {
            &[REFUSE]
        } else {
            &[DONE]
        }
    }

    fn apply(st: &mut DecodeState, effect: &Effect) {
        match effect {
            Effect::None => st.at = None,
            Effect::Navigate(t) => st.at = Some(t.clone()),
            Effect::LookFor(o) => {
                st.at = None;
                if !st.introduced.contains(o) {
                    st.introduced.push(o.clone());
                }
            }
            Effect::Pick(o) => st.holding = Some(o.clone()),
            Effect::Place(_, _) => st.holding = None,
        }
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
                let cur = std::mem::take(&mut st.current);
                let line = self.candidates(&st, &cur).find(|l| l.text == cur)?.clone();
                Self::apply(&mut st, &line.effect);
                st.steps += 1;
                continue;
            }
            st.current.push(c);
            let term = Self::terminals(&st);
            if term.contains(&st.current.as_str()) {
                // No step line starts with a terminal word: the plan ends here.
                st.finished = true;
                continue;
            }
            let ok = term.iter().any(|t| t.starts_with(st.current.as_str()))
                || self.candidates(&st, &st.current).next().is_some();
            if !ok {
                return None;
            }
        }
        Some(st)
    }

    /// Text that every valid continuation of `st` starts with: the decoder can
    /// feed it without asking the model (e.g. `igate_to` after `nav`, or the
    /// newline after a complete line that no other line extends).
    ///
    /// A space that would end the forced text is left out: byte-level BPE
    /// tokenizers (the model's) attach a space to the word after it
    /// (` red`, ` blue`), which is how the adapter saw every plan in training.
    /// Forcing the space alone would ask the model for a space-less `red`, a
    /// token it never learnt to choose there.
    pub fn forced(&self, st: &DecodeState) -> String {
        let mut text = self.shared_continuation(st);
        text.truncate(text.trim_end_matches(' ').len());
        text
    }

    fn shared_continuation(&self, st: &DecodeState) -> String {
        if st.finished {
            return String::new();
        }
        let cur = st.current.as_str();
        let mut conts: Vec<&str> = self.candidates(st, cur).map(|l| l.text.as_str()).collect();
        conts.extend(
            Self::terminals(st)
                .iter()
                .filter(|t| t.starts_with(cur))
                .copied(),
        );
        let Some(first) = conts.first() else {
            return String::new();
        };
        if conts.len() == 1 {
            let rest = &first[cur.len()..];
            return if Self::terminals(st).contains(first) {
                rest.to_string()
            } else {
                format!("{rest}\n")
            };
        }
        let mut n = first.len();
        for c in &conts[1..] {
            n = n.min(
                first
                    .bytes()
                    .zip(c.bytes())
                    .take_while(|(a, b)| a == b)
                    .count(),
            );
        }
        // Stop at a char boundary (ids are ASCII, but be safe).
        while !first.is_char_boundary(n) {
            n -= 1;
        }
        first[cur.len().min(n)..n].to_string()
    }

    /// Whether the end-of-sequence token may come now.
    pub fn can_end(&self, st: &DecodeState) -> bool {
        st.finished
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
        let mut st = DecodeState::default();
        let mut steps = Vec::new();
        for raw in text.lines() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            if line == REFUSE && steps.is_empty() {
                return Ok(Decoded::Refused);
            }
            if line == DONE && !steps.is_empty() {
                return Ok(Decoded::Plan(steps));
            }
            st = self
                .advance(&st, &format!("{line}\n"))
                .ok_or_else(|| GrammarError::BadLine(line.to_string()))?;
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
            Skill::LookAround => "look_around".to_string(),
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
            position_sigma_m: 0.0,
            confidence: 1.0,
            size_m: [0.0; 3],
        };
        WorldModel {
            stamp_s: 0.0,
            frame_id: "odom".into(),
            places: vec![rosetta_common::Place {
                id: "dock".into(),
                description: String::new(),
                pose: rosetta_common::Pose2D::default(),
            }],
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

    fn feed(g: &PlanGrammar, text: &str) -> Option<DecodeState> {
        g.advance(&DecodeState::default(), text)
    }

    #[test]
    fn unknown_things_and_wrong_kinds_are_not_in_the_language() {
        let g = PlanGrammar::from_world(&world(), 8);
        assert!(
            feed(&g, "navigate_to purple_cube").is_none(),
            "not nameable"
        );
        assert!(
            feed(&g, "navigate_to red_bin\npick red_bin").is_none(),
            "not graspable"
        );
        assert!(
            feed(&g, "navigate_to red_cube\npick red_cube\nnavigate_to green_cube\nplace red_cube green_cube").is_none(),
            "not a container"
        );
        assert!(feed(&g, "drive_into wall").is_none());
        assert!(
            feed(&g, "done").is_none(),
            "an empty plan is a refusal, not done"
        );
        assert!(feed(&g, "refuse").is_some_and(|s| g.can_end(&s)));
        assert!(g.parse("navigate_to red_cube\npick red_cube\n").is_err());
        assert!(
            g.parse("navigate_to dock\ndone").is_ok(),
            "places are targets"
        );
    }

    #[test]
    fn manipulation_has_a_fixed_shape() {
        let g = PlanGrammar::from_world(&world(), 8);
        assert!(feed(&g, "pick red_cube").is_none(), "drive there first");
        assert!(feed(&g, "navigate_to green_cube\npick red_cube").is_none());
        assert!(feed(&g, "navigate_to red_cube\npick red_cube\n").is_some());
        assert!(
            feed(
                &g,
                "navigate_to red_cube\npick red_cube\nnavigate_to green_cube\npick green_cube"
            )
            .is_none(),
            "one object in hand at a time"
        );
        assert!(
            feed(&g, "navigate_to blue_bin\nplace red_cube blue_bin").is_none(),
            "place only what is held"
        );
        assert!(
            feed(
                &g,
                "navigate_to red_cube\npick red_cube\nplace red_cube blue_bin"
            )
            .is_none(),
            "place only at the container"
        );
    }

    #[test]
    fn unseen_objects_need_a_look_for_first() {
        let g = PlanGrammar::from_world(&world(), 8);
        assert!(feed(&g, "navigate_to yellow_cube").is_none());
        assert!(feed(
            &g,
            "look_for yellow_cube\nnavigate_to yellow_cube\npick yellow_cube\n"
        )
        .is_some());
        let text = "look_for yellow_bin\nnavigate_to red_cube\npick red_cube\nnavigate_to yellow_bin\nplace red_cube yellow_bin\ndone";
        assert!(matches!(g.parse(text), Ok(Decoded::Plan(p)) if p.len() == 5));
    }

    #[test]
    fn steps_that_change_nothing_are_not_in_the_language() {
        let g = PlanGrammar::from_world(&world(), 8);
        assert!(feed(&g, "look_for yellow_cube\nlook_for yellow_cube\n").is_none());
        assert!(feed(&g, "navigate_to dock\nnavigate_to dock\n").is_none());
        // The same step again after something else is fine.
        assert!(feed(&g, "navigate_to dock\nwait 1\nnavigate_to dock\n").is_some());
        assert!(feed(&g, "look_for yellow_cube\nlook_for blue_cube\n").is_some());
    }

    #[test]
    fn forced_text_is_what_every_continuation_shares() {
        let g = PlanGrammar::from_world(&world(), 8);
        let st = feed(&g, "nav").unwrap();
        assert_eq!(
            g.forced(&st),
            "igate_to",
            "the space goes with the id's token"
        );
        let st = feed(&g, "navigate_to").unwrap();
        assert_eq!(g.forced(&st), "", "which id is the model's choice");
        assert!(g.advance(&st, " red").is_some());
        let st = feed(&g, "navigate_to red_cube\np").unwrap();
        // Only `pick red_cube` is possible here (nothing is held).
        assert_eq!(g.forced(&st), "ick red_cube\n");
        let st = feed(
            &g,
            "navigate_to red_cube\npick red_cube\nnavigate_to blue_bin\npl",
        )
        .unwrap();
        assert_eq!(g.forced(&st), "ace red_cube blue_bin\n");
        let st = feed(&g, "navigate_to dock\nd").unwrap();
        assert_eq!(g.forced(&st), "one");
        assert_eq!(g.forced(&DecodeState::default()), "", "a free choice");
        // Feeding the forced text always stays in the language.
        let st = feed(&g, "wa").unwrap();
        let f = g.forced(&st);
        assert_eq!(f, "it");
        assert!(g.advance(&st, &f).is_some());
    }

    /// What any plan of the language must satisfy, checked step by step.
    fn check_plan(w: &WorldModel, steps: &[Skill], seed: u64) {
        let nameable = nameable_objects();
        let mut looked: Vec<&str> = Vec::new();
        let mut at: Option<&str> = None;
        let mut holding: Option<&str> = None;
        let kind = |id: &str| nameable.iter().find(|(n, _)| n == id).map(|(_, k)| *k);
        let usable = |id: &str, looked: &[&str]| w.get(id).is_some() || looked.contains(&id);
        for s in steps {
            match s {
                Skill::Pick { object } => {
                    assert!(kind(object).is_some_and(|k| k.is_graspable()), "{seed}");
                    assert!(
                        usable(object, &looked) && at == Some(object.as_str()) && holding.is_none(),
                        "{seed}: {steps:?}"
                    );
                    holding = Some(object);
                }
                Skill::Place { object, target } => {
                    assert!(kind(target).is_some_and(|k| k.is_container()), "{seed}");
                    assert!(
                        usable(target, &looked) && at == Some(target.as_str()),
                        "{seed}"
                    );
                    assert_eq!(holding, Some(object.as_str()), "{seed}: {steps:?}");
                    holding = None;
                }
                Skill::NavigateTo { target } => {
                    assert!(
                        usable(target, &looked) || w.place(target).is_some(),
                        "{seed}: {steps:?}"
                    );
                    at = Some(target);
                }
                Skill::LookFor { object } => {
                    assert!(kind(object).is_some(), "{seed}");
                    looked.push(object);
                    at = None;
                }
                Skill::Wait { seconds } => {
                    assert!(*seconds <= rosetta_common::plan::MAX_WAIT_S);
                    at = None;
                }
                Skill::Stop => at = None,
                Skill::Say { .. } | Skill::LookAround => panic!("not in the grammar"),
            }
        }
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
            // The bound the decoder relies on: if it were short, some seed
            // would not finish.
            for _ in 0..g.max_text_bytes() {
                // The decoder feeds forced text in one go: do that half the time.
                let forced = g.forced(&st);
                if !forced.is_empty() && rng.gen_bool(0.5) {
                    st = g
                        .advance(&st, &forced)
                        .expect("forced text stays in the language");
                    text.push_str(&forced);
                    continue;
                }
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
                    check_plan(&w, &steps, seed);
                }
            }
        }
        // The test exercises plans, not only the refusal.
        assert!(plans > 100, "only {plans} of 300 decodings were plans");
    }
}
