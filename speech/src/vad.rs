//! Voice-activity detection: finds where speech starts and ends in a stream
//! of audio, so that speaking a command needs no button.
//!
//! An energy detector with an adaptive noise floor, which is enough for a
//! close microphone: 30 ms frames; speech starts after 90 ms above the floor
//! plus `start_db`, and ends after `hangover_s` below the floor plus
//! `stop_db`. The pauses between words (up to a few hundred ms) stay inside
//! the utterance. Each utterance keeps 300 ms from before its start, so that
//! the first consonant is not cut.

use std::collections::VecDeque;

/// Detector settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    pub frame_s: f32,
    /// Speech starts this far above the noise floor (dB).
    pub start_db: f32,
    /// Speech continues while this far above the floor (dB).
    pub stop_db: f32,
    /// Frames in a row above `start_db` that start speech.
    pub start_frames: usize,
    /// Silence that ends an utterance.
    pub hangover_s: f32,
    /// Audio kept from before the start.
    pub preroll_s: f32,
    /// An utterance longer than this is cut (Whisper's window is 30 s).
    pub max_utterance_s: f32,
    /// The quietest floor assumed (dBFS): below it, everything is silence.
    pub min_floor_db: f32,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            frame_s: 0.03,
            start_db: 12.0,
            stop_db: 6.0,
            start_frames: 3,
            hangover_s: 0.7,
            preroll_s: 0.3,
            max_utterance_s: 28.0,
            min_floor_db: -70.0,
        }
    }
}

/// One detected utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    pub samples: Vec<f32>,
    /// Stream time of the first sample kept (pre-roll included), seconds.
    pub start_s: f64,
    /// Stream time where the speech ended (before the hangover), seconds.
    pub end_of_speech_s: f64,
}

/// The streaming detector.
#[derive(Debug, Clone)]
pub struct Vad {
    cfg: VadConfig,
    rate_hz: u32,
    frame: usize,
    pending: Vec<f32>,
    /// Frames so far.
    frames_seen: u64,
    floor_db: Option<f32>,
    above: usize,
    quiet_frames: usize,
    preroll: VecDeque<f32>,
    current: Option<Vec<f32>>,
    current_start_s: f64,
    last_voiced_s: f64,
}

fn level_db(x: &[f32]) -> f32 {
    20.0 * crate::audio::rms(x).max(1e-7).log10()
}

impl Vad {
    pub fn new(rate_hz: u32, cfg: VadConfig) -> Self {
        let frame = ((rate_hz as f32 * cfg.frame_s) as usize).max(1);
        Self {
            cfg,
            rate_hz,
            frame,
            pending: Vec::new(),
            frames_seen: 0,
            floor_db: None,
            above: 0,
            quiet_frames: 0,
            preroll: VecDeque::new(),
            current: None,
            current_start_s: 0.0,
            last_voiced_s: 0.0,
        }
    }

    /// Whether an utterance is under way.
    pub fn in_speech(&self) -> bool {
        self.current.is_some()
    }

    /// The current noise floor estimate (dBFS).
    pub fn floor_db(&self) -> Option<f32> {
        self.floor_db
    }

    fn now_s(&self) -> f64 {
        self.frames_seen as f64 * self.frame as f64 / f64::from(self.rate_hz)
    }

    /// Feeds audio; returns the utterances that ended in it.
    pub fn push(&mut self, samples: &[f32]) -> Vec<Utterance> {
        self.pending.extend_from_slice(samples);
        let mut done = Vec::new();
        let mut at = 0;
        while self.pending.len() - at >= self.frame {
            let f: Vec<f32> = self.pending[at..at + self.frame].to_vec();
            at += self.frame;
            if let Some(u) = self.step(&f) {
                done.push(u);
            }
        }
        self.pending.drain(..at);
        done
    }

    /// Ends the stream: an utterance under way is returned.
    pub fn finish(&mut self) -> Option<Utterance> {
        let samples = self.current.take()?;
        Some(Utterance {
            samples,
            start_s: self.current_start_s,
            end_of_speech_s: self.last_voiced_s,
        })
    }

    fn step(&mut self, f: &[f32]) -> Option<Utterance> {
        let db = level_db(f);
        let t_end = self.now_s() + self.frame as f64 / f64::from(self.rate_hz);
        self.frames_seen += 1;
        let floor = *self.floor_db.get_or_insert(db.max(self.cfg.min_floor_db));
        let cfg = self.cfg;
        if let Some(cur) = self.current.as_mut() {
            cur.extend_from_slice(f);
            if db > floor + cfg.stop_db {
                self.quiet_frames = 0;
                self.last_voiced_s = t_end;
            } else {
                self.quiet_frames += 1;
            }
            let quiet_s = self.quiet_frames as f32 * cfg.frame_s;
            let long = (cur.len() as f32 / self.rate_hz as f32) >= cfg.max_utterance_s;
            if quiet_s >= cfg.hangover_s || long {
                let samples = self.current.take().unwrap_or_default();
                self.quiet_frames = 0;
                self.above = 0;
                self.preroll.clear();
                return Some(Utterance {
                    samples,
                    start_s: self.current_start_s,
                    end_of_speech_s: self.last_voiced_s,
                });
            }
            return None;
        }
        // Not in speech: follow the floor (quickly down, slowly up), and
        // keep the pre-roll.
        let next_floor = if db < floor {
            0.7 * floor + 0.3 * db
        } else {
            0.98 * floor + 0.02 * db
        };
        self.floor_db = Some(next_floor.max(cfg.min_floor_db));
        self.preroll.extend(f.iter().copied());
        let keep = (cfg.preroll_s * self.rate_hz as f32) as usize + self.frame * cfg.start_frames;
        while self.preroll.len() > keep {
            self.preroll.pop_front();
        }
        if db > floor + cfg.start_db {
            self.above += 1;
        } else {
            self.above = 0;
        }
        if self.above >= cfg.start_frames {
            let samples: Vec<f32> = self.preroll.drain(..).collect();
            self.current_start_s = t_end - samples.len() as f64 / f64::from(self.rate_hz);
            self.last_voiced_s = t_end;
            self.current = Some(samples);
            // The floor stays where it was before the speech.
            self.floor_db = Some(floor);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Noise at `noise` RMS, with "words": 1 kHz bursts of 250 ms separated
    /// by 150 ms pauses, `words` of them starting at `at_s`.
    fn scene(
        rng: &mut rand_chacha::ChaCha8Rng,
        total_s: f32,
        noise: f32,
        talk: &[(f32, usize)],
    ) -> Vec<f32> {
        let rate = 16_000.0;
        let n = (total_s * rate) as usize;
        let mut x: Vec<f32> = (0..n)
            .map(|_| noise * rng.gen_range(-1.7f32..1.7))
            .collect();
        for &(at_s, words) in talk {
            for w in 0..words {
                let s0 = ((at_s + w as f32 * 0.4) * rate) as usize;
                let end = (s0 + 4000).min(n);
                for (i, v) in x.iter_mut().enumerate().take(end).skip(s0) {
                    *v += 0.2 * (std::f32::consts::TAU * 1000.0 * i as f32 / rate).sin();
                }
            }
        }
        x
    }

    #[test]
    fn two_sentences_are_two_utterances_with_their_ends() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        // Speech from 1.0 s (5 words, ends 2.85 s) and from 4.0 s (3 words, ends 5.05 s).
        let x = scene(&mut rng, 7.0, 0.003, &[(1.0, 5), (4.0, 3)]);
        let mut vad = Vad::new(16_000, VadConfig::default());
        let mut got = Vec::new();
        for chunk in x.chunks(1600) {
            got.extend(vad.push(chunk));
        }
        got.extend(vad.finish());
        assert_eq!(
            got.len(),
            2,
            "{:?}",
            got.iter()
                .map(|u| (u.start_s, u.end_of_speech_s))
                .collect::<Vec<_>>()
        );
        for (u, (start, end)) in got.iter().zip([(1.0, 2.85), (4.0, 5.05)]) {
            assert!(
                u.start_s <= start && u.start_s > start - 0.45,
                "start {} for {start}",
                u.start_s
            );
            assert!(
                (u.end_of_speech_s - end).abs() < 0.07,
                "end {} for {end}",
                u.end_of_speech_s
            );
            // It holds the whole sentence.
            let len_s = u.samples.len() as f64 / 16_000.0;
            assert!(u.start_s + len_s >= end, "cut short");
        }
    }

    #[test]
    fn noise_alone_is_not_speech() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let x = scene(&mut rng, 5.0, 0.02, &[]);
        let mut vad = Vad::new(16_000, VadConfig::default());
        let got: Vec<Utterance> = x.chunks(480).flat_map(|c| vad.push(c)).collect();
        assert!(got.is_empty() && !vad.in_speech());
        assert!(vad.finish().is_none());
    }

    #[test]
    fn a_monologue_is_cut_at_the_longest_utterance() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let x = scene(&mut rng, 12.0, 0.003, &[(0.5, 28)]);
        let cfg = VadConfig {
            max_utterance_s: 5.0,
            ..VadConfig::default()
        };
        let mut vad = Vad::new(16_000, cfg);
        let got: Vec<Utterance> = x.chunks(1600).flat_map(|c| vad.push(c)).collect();
        assert!(!got.is_empty());
        assert!(got.iter().all(|u| u.samples.len() <= 5 * 16_000 + 480));
    }
}
