//! Whisper's mel filterbank, computed from the standard (Slaney) formula, as
//! `librosa.filters.mel(sr, n_fft, n_mels)` does: no binary asset needed.

/// Hz to mel on the Slaney scale: linear below 1 kHz, logarithmic above.
fn hz_to_mel(hz: f64) -> f64 {
    let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if hz < min_log_hz {
        hz / f_sp
    } else {
        min_log_mel + (hz / min_log_hz).ln() / logstep
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if mel < min_log_mel {
        mel * f_sp
    } else {
        min_log_hz * (logstep * (mel - min_log_mel)).exp()
    }
}

/// The filterbank as `n_mels` rows of `n_fft / 2 + 1` weights, row-major,
/// area-normalised (Slaney), the layout `candle_transformers`' `pcm_to_mel` reads.
pub fn filters(sample_rate_hz: usize, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let n_freqs = n_fft / 2 + 1;
    let fft_hz: Vec<f64> = (0..n_freqs)
        .map(|k| k as f64 * sample_rate_hz as f64 / n_fft as f64)
        .collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sample_rate_hz as f64 / 2.0));
    let pts_hz: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut w = vec![0f32; n_mels * n_freqs];
    for m in 0..n_mels {
        let (left, centre, right) = (pts_hz[m], pts_hz[m + 1], pts_hz[m + 2]);
        let norm = 2.0 / (right - left);
        for (k, &f) in fft_hz.iter().enumerate() {
            let rising = (f - left) / (centre - left);
            let falling = (right - f) / (right - centre);
            w[m * n_freqs + k] = (rising.min(falling).max(0.0) * norm) as f32;
        }
    }
    w
}

/// Whisper's log-mel spectrogram of `frames` frames, as its reference
/// (`whisper.audio.log_mel_spectrogram`) computes it: a periodic Hann window
/// of `n_fft` samples centred on every `hop`-th sample (the signal reflected at
/// its start, zeros after its end), the one-sided power spectrum through the
/// filterbank, log10 clamped at 1e-10, floored 8 below the maximum, then
/// `(x + 4) / 4`. Returns `filters.len() / (n_fft / 2 + 1)` rows of `frames`.
pub fn log_mel(
    samples: &[f32],
    filters: &[f32],
    n_fft: usize,
    hop: usize,
    frames: usize,
) -> Vec<f32> {
    let n_freqs = n_fft / 2 + 1;
    let n_mels = filters.len() / n_freqs;
    let half = n_fft / 2;
    let hann: Vec<f32> = (0..n_fft)
        .map(|i| 0.5 - 0.5 * (std::f32::consts::TAU * i as f32 / n_fft as f32).cos())
        .collect();
    let at = |j: isize| -> f32 {
        let j = if j < 0 { -j } else { j };
        samples.get(j as usize).copied().unwrap_or(0.0)
    };
    let fft = realfft::RealFftPlanner::<f32>::new().plan_fft_forward(n_fft);
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut power = vec![0f32; n_freqs];
    let mut mel = vec![0f32; n_mels * frames];
    for t in 0..frames {
        let start = (t * hop) as isize - half as isize;
        for (k, v) in input.iter_mut().enumerate() {
            *v = hann[k] * at(start + k as isize);
        }
        // The lengths are the plan's own, so this cannot fail.
        if fft.process(&mut input, &mut spectrum).is_err() {
            continue;
        }
        for (p, c) in power.iter_mut().zip(&spectrum) {
            *p = c.norm_sqr();
        }
        for m in 0..n_mels {
            let row = &filters[m * n_freqs..(m + 1) * n_freqs];
            let e: f32 = row.iter().zip(&power).map(|(w, p)| w * p).sum();
            mel[m * frames + t] = e.max(1e-10).log10();
        }
    }
    let floor = mel.iter().copied().fold(f32::NEG_INFINITY, f32::max) - 8.0;
    for v in &mut mel {
        *v = (v.max(floor) + 4.0) / 4.0;
    }
    mel
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_lights_the_mel_band_of_its_frequency() {
        let rate = 16_000;
        let x: Vec<f32> = (0..rate)
            .map(|i| 0.3 * (std::f32::consts::TAU * 1000.0 * i as f32 / rate as f32).sin())
            .collect();
        let f = filters(rate, 400, 80);
        let mel = log_mel(&x, &f, 400, 160, 100);
        assert_eq!(mel.len(), 80 * 100);
        // In a middle frame the loudest band is the one whose filter peaks
        // nearest 1 kHz; after the audio ends the floor is reached.
        let frame = 50;
        let loudest = (0..80)
            .max_by(|&a, &b| mel[a * 100 + frame].total_cmp(&mel[b * 100 + frame]))
            .expect("bands");
        let peak = |m: usize| (0..201).max_by(|&a, &b| f[m * 201 + a].total_cmp(&f[m * 201 + b]));
        let peak_hz = peak(loudest).expect("bins") as f32 * 40.0;
        assert!(
            (peak_hz - 1000.0).abs() <= 80.0,
            "band {loudest} peaks at {peak_hz} Hz"
        );
        let top = mel.iter().copied().fold(f32::MIN, f32::max);
        assert!((top - mel[loudest * 100 + frame]).abs() < 0.1);
    }

    #[test]
    fn the_scale_is_linear_below_1_khz_and_inverts() {
        assert!((hz_to_mel(500.0) - 7.5).abs() < 1e-9);
        for hz in [0.0, 300.0, 1000.0, 2500.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-6, "{hz}");
        }
    }

    #[test]
    fn whispers_filterbank_has_the_published_shape() {
        let f = filters(16_000, 400, 80);
        assert_eq!(f.len(), 80 * 201);
        // Every filter is a non-empty triangle; none reaches the Nyquist bin
        // except the last one's tail, and the first covers the lowest bins.
        for m in 0..80 {
            let row = &f[m * 201..(m + 1) * 201];
            assert!(row.iter().any(|&x| x > 0.0), "filter {m} is empty");
            assert!(row.iter().all(|&x| x >= 0.0));
        }
        // librosa's value for the first filter's peak (bin 1): 0.02486.
        assert!((f[1] - 0.024_86).abs() < 2e-4, "{}", f[1]);
    }
}
