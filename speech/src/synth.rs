//! Spoken test commands: espeak-ng speaks text into WAV files in several
//! voices and speeds, and sox mixes noise in at a chosen signal-to-noise
//! ratio. Used by the tests and by `speech-bench`; both tools come from Debian
//! (the set-up installs them).

use std::path::Path;
use std::process::Command;

use crate::SpeechError;

/// One way of speaking: an espeak-ng voice and a rate in words per minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Voice {
    pub name: &'static str,
    pub wpm: u32,
}

/// Three voices (American male, British received pronunciation, American
/// female variant) at two speeds.
pub const VOICES: [Voice; 6] = [
    Voice {
        name: "en-us",
        wpm: 150,
    },
    Voice {
        name: "en-gb-x-rp",
        wpm: 150,
    },
    Voice {
        name: "en-us+f3",
        wpm: 150,
    },
    Voice {
        name: "en-us",
        wpm: 185,
    },
    Voice {
        name: "en-gb-x-rp",
        wpm: 185,
    },
    Voice {
        name: "en-us+f3",
        wpm: 185,
    },
];

fn run(cmd: &mut Command, what: &str) -> Result<(), SpeechError> {
    let out = cmd.output().map_err(|e| SpeechError::Tool {
        tool: what.to_string(),
        reason: format!("{e} (the set-up installs it: ./rosetta setup)"),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(SpeechError::Tool {
            tool: what.to_string(),
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Speaks `text` into the WAV file `out` (espeak-ng's 22.05 kHz mono).
pub fn speak(text: &str, voice: Voice, out: &Path) -> Result<(), SpeechError> {
    run(
        Command::new("espeak-ng")
            .args(["-v", voice.name, "-s", &voice.wpm.to_string(), "-w"])
            .arg(out)
            .arg("--")
            .arg(text),
        "espeak-ng",
    )
}

/// Mixes pink noise into `input` at `snr_db` (speech RMS over noise RMS,
/// over the whole file) with sox, into `out`. sox runs in its repeatable mode
/// (`-R`), so the same input gives the same noisy file.
pub fn add_noise(input: &Path, out: &Path, snr_db: f32) -> Result<(), SpeechError> {
    let speech = crate::audio::read_wav(input)?;
    let rate = speech.source_rate_hz;
    let noise = out.with_extension("noise.wav");
    run(
        Command::new("sox")
            .args(["-R", "-n", "-r"])
            .arg(rate.to_string())
            .args(["-c", "1", "-b", "16"])
            .arg(&noise)
            .arg("synth")
            .arg(format!("{:.3}", speech.duration_s()))
            .args(["pinknoise", "vol", "0.5"]),
        "sox",
    )?;
    let noise_rms = crate::audio::read_wav(&noise)?.rms();
    let gain = speech.rms() / 10f32.powf(snr_db / 20.0) / noise_rms.max(1e-9);
    let mixed = run(
        Command::new("sox")
            .args(["-R", "-m", "-v", "1"])
            .arg(input)
            .arg("-v")
            .arg(format!("{gain:.5}"))
            .arg(&noise)
            .arg(out),
        "sox",
    );
    if let Err(e) = std::fs::remove_file(&noise) {
        // Best effort: a leftover noise file in a scratch folder is harmless.
        tracing::debug!(error = %e, "cannot remove {}", noise.display());
    }
    mixed
}
