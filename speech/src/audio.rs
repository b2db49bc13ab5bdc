//! Audio in: WAV files of any rate and channel count, to Whisper's 16 kHz mono.

use std::path::Path;

use rubato::{FftFixedIn, Resampler};

use crate::SpeechError;

/// Whisper's sample rate.
pub const RATE_HZ: u32 = 16_000;

/// Mono audio at [`RATE_HZ`], samples in [-1, 1].
#[derive(Debug, Clone)]
pub struct Audio {
    pub samples: Vec<f32>,
    /// The file's own rate, before resampling.
    pub source_rate_hz: u32,
}

impl Audio {
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(RATE_HZ)
    }

    /// Root mean square level.
    pub fn rms(&self) -> f32 {
        rms(&self.samples)
    }
}

pub fn rms(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|s| s * s).sum::<f32>() / x.len() as f32).sqrt()
}

/// Reads a WAV file (PCM 8/16/24/32-bit or float), mixes it to mono and
/// resamples it to 16 kHz. An unreadable, empty or non-finite file is an error
/// that names the file.
pub fn read_wav(path: &Path) -> Result<Audio, SpeechError> {
    let bad = |reason: String| SpeechError::Audio {
        path: path.to_path_buf(),
        reason,
    };
    let reader = hound::WavReader::open(path).map_err(|e| match e {
        hound::Error::IoError(io) => SpeechError::Io {
            path: path.to_path_buf(),
            source: io,
        },
        other => bad(format!("not a readable WAV file: {other}")),
    })?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|s| s as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(|e| bad(e.to_string()))?
        }
    };
    if interleaved.is_empty() {
        return Err(bad("the file holds no samples".into()));
    }
    if interleaved.iter().any(|s| !s.is_finite()) {
        return Err(bad("the file holds NaN or infinite samples".into()));
    }
    let mono: Vec<f32> = interleaved
        .chunks(channels)
        .map(|c| c.iter().sum::<f32>() / c.len() as f32)
        .collect();
    let samples = resample(&mono, spec.sample_rate, RATE_HZ).map_err(bad)?;
    Ok(Audio {
        samples,
        source_rate_hz: spec.sample_rate,
    })
}

/// Writes 16-bit mono PCM.
pub fn write_wav(path: &Path, samples: &[f32], rate_hz: u32) -> Result<(), SpeechError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate_hz,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let io = |e: hound::Error| SpeechError::Audio {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(io)?;
    for s in samples {
        w.write_sample((s.clamp(-1.0, 1.0) * f32::from(i16::MAX)) as i16)
            .map_err(io)?;
    }
    w.finalize().map_err(io)
}

/// Band-limited resampling (FFT-based, rubato), aligned so that the output
/// starts where the input does and has `len × to / from` samples.
pub fn resample(x: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>, String> {
    if from_hz == to_hz {
        return Ok(x.to_vec());
    }
    if from_hz == 0 {
        return Err("the file's sample rate is 0".into());
    }
    let mut r = FftFixedIn::<f32>::new(from_hz as usize, to_hz as usize, 1024, 2, 1)
        .map_err(|e| format!("cannot resample {from_hz} Hz to {to_hz} Hz: {e}"))?;
    let want = (x.len() as u64 * u64::from(to_hz) / u64::from(from_hz)) as usize;
    let delay = r.output_delay();
    let mut out = Vec::with_capacity(want + delay + 2048);
    let mut at = 0;
    while x.len() - at >= r.input_frames_next() {
        let n = r.input_frames_next();
        let y = r
            .process(&[&x[at..at + n]], None)
            .map_err(|e| e.to_string())?;
        out.extend_from_slice(&y[0]);
        at += n;
    }
    // The rest, then zeros until the delayed tail is out.
    let rest = &x[at..];
    let y = r
        .process_partial(Some(&[rest]), None)
        .map_err(|e| e.to_string())?;
    out.extend_from_slice(&y[0]);
    while out.len() < want + delay {
        let y = r
            .process_partial::<&[f32]>(None, None)
            .map_err(|e| e.to_string())?;
        if y[0].is_empty() {
            break;
        }
        out.extend_from_slice(&y[0]);
    }
    Ok(out.into_iter().skip(delay).take(want).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq_hz: f32, rate_hz: u32, seconds: f32) -> Vec<f32> {
        let n = (rate_hz as f32 * seconds) as usize;
        (0..n)
            .map(|i| 0.5 * (std::f32::consts::TAU * freq_hz * i as f32 / rate_hz as f32).sin())
            .collect()
    }

    #[test]
    fn resampling_keeps_length_phase_and_level() {
        let x = tone(440.0, 22_050, 1.0);
        let y = resample(&x, 22_050, RATE_HZ).expect("resample");
        assert_eq!(y.len(), 16_000);
        let want = tone(440.0, RATE_HZ, 1.0);
        // Away from the edges the resampled tone is the tone at 16 kHz.
        let err = y[800..15_000]
            .iter()
            .zip(&want[800..15_000])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 0.01, "largest error {err}");
    }

    #[test]
    fn wav_round_trips_and_stereo_mixes_to_mono() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t.wav");
        let x = tone(300.0, 48_000, 0.5);
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&p, spec).expect("create");
        for s in &x {
            let v = (s * f32::from(i16::MAX)) as i16;
            w.write_sample(v).expect("left");
            w.write_sample(v).expect("right");
        }
        w.finalize().expect("finalize");
        let a = read_wav(&p).expect("read");
        assert_eq!(a.source_rate_hz, 48_000);
        assert_eq!(a.samples.len(), 8_000);
        assert!((a.rms() - 0.5 / 2f32.sqrt()).abs() < 0.01, "{}", a.rms());
    }

    #[test]
    fn a_file_that_is_not_wav_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.wav");
        std::fs::write(&p, b"this is not audio").expect("write");
        let e = read_wav(&p).expect_err("not a WAV").to_string();
        assert!(e.contains("x.wav") && e.contains("WAV"), "{e}");
        let e = read_wav(&dir.path().join("missing.wav"))
            .expect_err("missing")
            .to_string();
        assert!(e.contains("missing.wav"), "{e}");
    }
}
