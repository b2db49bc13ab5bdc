//! Speech to text with Whisper (`candle_transformers::models::whisper`):
//! log-mel spectrogram, encoder, then greedy decoding without timestamps.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, IndexOp, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::whisper::{
    self as w,
    model::{AudioEncoder, Whisper},
};

use crate::decoder::Decoder;
use tokenizers::Tokenizer;

use crate::ct2::{WhisperSizes, CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE};
use crate::SpeechError;

/// Longest transcript, in tokens: a spoken command is a sentence or two.
const MAX_TOKENS: usize = 96;
/// Below this RMS level (about -60 dBFS) a recording counts as silent.
pub const SILENCE_RMS: f32 = 1e-3;
/// Whisper's no-speech probability above which an empty transcript means
/// "nothing was said", as in the reference implementation.
const NO_SPEECH_P: f32 = 0.6;

/// Silence after the audio in a [`Window::Fit`] window, in mel frames.
const FIT_SILENCE_FRAMES: usize = 500;

/// How much audio the encoder sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
pub enum Window {
    /// The audio plus five seconds of silence, in steps of two seconds: the
    /// encoder's cost grows with its input, and a spoken command is short.
    /// With less silence after the speech (one to three seconds) tiny.en
    /// sometimes repeats the sentence instead of ending it.
    #[default]
    Fit,
    /// Whisper's full 30 s window, as it was trained (about 4x the encoder time).
    Full,
}

impl Window {
    /// Mel frames (100 per second) for `samples` of 16 kHz audio.
    pub fn frames(self, samples: usize) -> usize {
        match self {
            Self::Full => w::N_FRAMES,
            Self::Fit => {
                let speech = samples.div_ceil(w::HOP_LENGTH) + FIT_SILENCE_FRAMES;
                speech
                    .div_ceil(200)
                    .saturating_mul(200)
                    .clamp(400, w::N_FRAMES)
            }
        }
    }
}

/// The length of the phrase that `tokens` ends with twice in a row, if one of
/// at least `min` tokens does.
fn repeated_tail(tokens: &[u32], min: usize) -> Option<usize> {
    (min..=tokens.len() / 2).find(|&n| {
        let k = tokens.len();
        tokens[k - n..] == tokens[k - 2 * n..k - n]
    })
}

/// One transcription, with its timings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Transcript {
    pub text: String,
    pub tokens: usize,
    pub audio_s: f64,
    /// Spectrogram, encoder and decoder time.
    pub mel_s: f64,
    pub encode_s: f64,
    pub decode_s: f64,
    /// Whisper's probability that the audio holds no speech.
    pub no_speech_p: f32,
}

impl Transcript {
    pub fn total_s(&self) -> f64 {
        self.mel_s + self.encode_s + self.decode_s
    }
    /// Processing time over audio time (below 1: faster than real time).
    pub fn real_time_factor(&self) -> f64 {
        self.total_s() / self.audio_s.max(1e-9)
    }
}

/// A loaded Whisper model.
pub struct Transcriber {
    /// candle-transformers' encoder.
    encoder: AudioEncoder,
    /// Our decoder with a self-attention cache (see [`crate::decoder`]).
    decoder: Decoder,
    config: w::Config,
    tokenizer: Tokenizer,
    filters: Vec<f32>,
    /// The task's tokens: start of transcript (and language and task for a
    /// multilingual model), no timestamps.
    prompt: Vec<u32>,
    /// Earlier "context" text as Whisper's `<|startofprev|>` prompt: words the
    /// speaker is likely to say, which steer the decoder to them.
    context: Vec<u32>,
    start_of_prev: Option<u32>,
    eot: u32,
    no_speech: Option<u32>,
    /// Tokens never to emit (special, timestamps, the model's suppress list).
    suppress: Vec<u32>,
    begin_suppress: Vec<u32>,
    device: Device,
    pub window: Window,
    pub load_s: f64,
    pub dir: PathBuf,
}

impl Transcriber {
    /// Loads a converted model directory (see [`crate::ct2::convert_whisper`]).
    pub fn load(dir: &Path) -> Result<Self, SpeechError> {
        let t0 = Instant::now();
        let bad = |file: &str, reason: String| SpeechError::Model {
            path: dir.join(file),
            reason,
        };
        let cfg_bytes = std::fs::read(dir.join(CONFIG_FILE)).map_err(|e| SpeechError::Io {
            path: dir.join(CONFIG_FILE),
            source: e,
        })?;
        let sizes: WhisperSizes = serde_json::from_slice(&cfg_bytes)
            .map_err(|e| bad(CONFIG_FILE, format!("not a Whisper config: {e}")))?;
        let config = w::Config {
            num_mel_bins: sizes.num_mel_bins,
            max_source_positions: sizes.max_source_positions,
            d_model: sizes.d_model,
            encoder_attention_heads: sizes.encoder_attention_heads,
            encoder_layers: sizes.encoder_layers,
            vocab_size: sizes.vocab_size,
            max_target_positions: sizes.max_target_positions,
            decoder_attention_heads: sizes.decoder_attention_heads,
            decoder_layers: sizes.decoder_layers,
            suppress_tokens: sizes.suppress_tokens.clone(),
        };
        let tokenizer = Tokenizer::from_file(dir.join(TOKENIZER_FILE))
            .map_err(|e| bad(TOKENIZER_FILE, e.to_string()))?;
        let device = Device::Cpu;
        let weights = dir.join(WEIGHTS_FILE);
        // Check the file's header before mapping it, so that a truncated or
        // corrupt file is an error here and not a fault later.
        let st = std::fs::read(&weights).map_err(|e| SpeechError::Io {
            path: weights.clone(),
            source: e,
        })?;
        let vb = VarBuilder::from_buffered_safetensors(st, DType::F32, &device)
            .map_err(|e| bad(WEIGHTS_FILE, e.to_string()))?;
        // candle's own decoder recomputes every token at each step; only its
        // encoder is kept.
        let Whisper { encoder, .. } =
            Whisper::load(&vb, config.clone()).map_err(|e| bad(WEIGHTS_FILE, e.to_string()))?;
        let decoder = Decoder::load(
            vb.pp("model.decoder"),
            sizes.vocab_size,
            sizes.d_model,
            sizes.decoder_attention_heads,
            sizes.decoder_layers,
            sizes.max_target_positions,
        )
        .map_err(|e| bad(WEIGHTS_FILE, e.to_string()))?;
        let id = |t: &str| {
            tokenizer
                .token_to_id(t)
                .ok_or_else(|| bad(TOKENIZER_FILE, format!("no {t} token")))
        };
        let sot = id(w::SOT_TOKEN)?;
        let eot = id(w::EOT_TOKEN)?;
        let no_ts = id(w::NO_TIMESTAMPS_TOKEN)?;
        // English-only models take no language or task tokens.
        let multilingual = sizes.vocab_size >= 51_865;
        let prompt = if multilingual {
            vec![sot, id("<|en|>")?, id(w::TRANSCRIBE_TOKEN)?, no_ts]
        } else {
            vec![sot, no_ts]
        };
        let no_speech = w::NO_SPEECH_TOKENS
            .iter()
            .find_map(|t| tokenizer.token_to_id(t));
        // Every special token (they all sit from <|startoftranscript|> up,
        // timestamps included) except the end of text.
        let mut suppress: Vec<u32> = (sot.min(eot + 1)..sizes.vocab_size as u32)
            .filter(|&t| t != eot)
            .collect();
        suppress.extend(sizes.suppress_tokens.iter().copied());
        let start_of_prev = tokenizer.token_to_id("<|startofprev|>");
        let me = Self {
            encoder,
            decoder,
            config,
            tokenizer,
            filters: crate::mel::filters(w::SAMPLE_RATE, w::N_FFT, sizes.num_mel_bins),
            window: Window::default(),
            prompt,
            context: Vec::new(),
            start_of_prev,
            eot,
            no_speech,
            suppress,
            begin_suppress: sizes.begin_suppress_tokens.clone(),
            device,
            load_s: t0.elapsed().as_secs_f64(),
            dir: dir.to_path_buf(),
        };
        tracing::info!(dir = %dir.display(), load_s = me.load_s, "speech model loaded");
        Ok(me)
    }

    /// Sets the context prompt: text in the style and vocabulary of what will
    /// be said (for the robot, its skills and the things it knows), given to
    /// Whisper as the transcript before this one. Empty clears it. At most
    /// half of the decoder's context is used, the end of the text kept.
    pub fn set_context(&mut self, text: &str) -> Result<(), SpeechError> {
        let Some(sop) = self.start_of_prev.filter(|_| !text.trim().is_empty()) else {
            self.context.clear();
            return Ok(());
        };
        let ids = self
            .tokenizer
            .encode(format!(" {}", text.trim()), false)
            .map_err(|e| SpeechError::Model {
                path: self.dir.join(TOKENIZER_FILE),
                reason: e.to_string(),
            })?
            .get_ids()
            .to_vec();
        let keep = (self.config.max_target_positions / 2).saturating_sub(1);
        self.context = std::iter::once(sop)
            .chain(ids[ids.len().saturating_sub(keep)..].iter().copied())
            .collect();
        Ok(())
    }

    /// Transcribes 16 kHz mono audio (at most 30 s: one Whisper window).
    /// Silence, or audio in which the model hears no speech, is an error.
    pub fn transcribe(&mut self, samples: &[f32]) -> Result<Transcript, SpeechError> {
        let audio_s = samples.len() as f64 / w::SAMPLE_RATE as f64;
        if crate::audio::rms(samples) < SILENCE_RMS {
            return Err(SpeechError::NoSpeech(format!(
                "the audio ({audio_s:.1} s) is silent"
            )));
        }
        if samples.len() > w::N_SAMPLES {
            return Err(SpeechError::NoSpeech(format!(
                "the audio is {audio_s:.1} s long; a command must fit in 30 s"
            )));
        }
        let t0 = Instant::now();
        let n_mels = self.config.num_mel_bins;
        let frames = self.window.frames(samples.len());
        let mel = crate::mel::log_mel(samples, &self.filters, w::N_FFT, w::HOP_LENGTH, frames);
        let mel = Tensor::from_vec(mel, (1, n_mels, frames), &self.device)?;
        let mel_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let features = self.encoder.forward(&mel, true)?;
        let encode_s = t1.elapsed().as_secs_f64();
        let t2 = Instant::now();
        let prompt: Vec<u32> = self.context.iter().chain(&self.prompt).copied().collect();
        let sot_at = self.context.len();
        let mut no_speech_p = 0.0;
        let mut text_tokens = Vec::new();
        self.decoder.reset(&features)?;
        let mut ys = self.decoder.forward(&prompt)?;
        // The no-speech token's probability right after the start of
        // transcript, as in Whisper's reference decoder.
        if let Some(ns) = self.no_speech {
            let p = candle_nn::ops::softmax(&ys.i(sot_at)?, D::Minus1)?;
            no_speech_p = p.i(ns as usize)?.to_scalar::<f32>()?;
        }
        // Nobody says more than about six tokens a second: a bound on the
        // transcript that also stops a decoder caught in a loop.
        let by_duration = (audio_s * 6.0) as usize + 8;
        let limit = MAX_TOKENS.min(by_duration).min(
            self.config
                .max_target_positions
                .saturating_sub(prompt.len()),
        );
        for i in 0..limit {
            let logits = ys.i(ys.dim(0)? - 1)?;
            let mut logits: Vec<f32> = logits.to_vec1()?;
            for &t in &self.suppress {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
            if i == 0 {
                for &t in &self.begin_suppress {
                    if let Some(l) = logits.get_mut(t as usize) {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
            let next = logits
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(self.eot, |(id, _)| id as u32);
            if next == self.eot {
                break;
            }
            text_tokens.push(next);
            // Whisper's known failure: repeating the sentence until the
            // limit. A phrase of four or more tokens said twice in a row ends
            // the transcript at its first copy.
            if let Some(n) = repeated_tail(&text_tokens, 4) {
                text_tokens.truncate(text_tokens.len() - n);
                break;
            }
            ys = self.decoder.forward(&[next])?;
        }
        let text = self
            .tokenizer
            .decode(&text_tokens, true)
            .map_err(|e| SpeechError::Model {
                path: self.dir.join(TOKENIZER_FILE),
                reason: e.to_string(),
            })?
            .trim()
            .to_string();
        let decode_s = t2.elapsed().as_secs_f64();
        if text.is_empty() || (no_speech_p > NO_SPEECH_P && text_tokens.len() < 3) {
            return Err(SpeechError::NoSpeech(format!(
                "no speech heard in {audio_s:.1} s of audio (no-speech probability {no_speech_p:.2})"
            )));
        }
        Ok(Transcript {
            text,
            tokens: text_tokens.len(),
            audio_s,
            mel_s,
            encode_s,
            decode_s,
            no_speech_p,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phrase_said_twice_in_a_row_is_found_once() {
        // "pick up the block. pick up the block."
        let t = [1, 2, 3, 4, 9, 1, 2, 3, 4, 9];
        assert_eq!(repeated_tail(&t, 4), Some(5));
        assert_eq!(repeated_tail(&t[..9], 4), None);
        // Short repeats ("the the") are left alone.
        assert_eq!(repeated_tail(&[5, 6, 7, 7], 4), None);
    }
}
