//! The live microphone (cpal: ALSA on Linux), as a stream of mono chunks.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{SampleFormat, SizedSample};

use crate::SpeechError;

/// An open microphone. Dropping it stops the recording.
pub struct Microphone {
    _stream: cpal::Stream,
    rx: Receiver<Vec<f32>>,
    pub rate_hz: u32,
    pub name: String,
}

fn no_mic(reason: impl std::fmt::Display) -> SpeechError {
    SpeechError::NoMicrophone(format!(
        "{reason}; record the command to a WAV file and pass --audio FILE instead"
    ))
}

fn build<T: SizedSample + Send + 'static>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    tx: std::sync::mpsc::Sender<Vec<f32>>,
    to_f32: fn(T) -> f32,
) -> Result<cpal::Stream, cpal::BuildStreamError> {
    let channels = usize::from(config.channels.max(1));
    device.build_input_stream(
        config,
        move |data: &[T], _: &cpal::InputCallbackInfo| {
            let mono: Vec<f32> = data
                .chunks(channels)
                .map(|c| c.iter().map(|s| to_f32(*s)).sum::<f32>() / c.len() as f32)
                .collect();
            if let Err(e) = tx.send(mono) {
                // The receiver is gone only when the microphone is being closed.
                tracing::debug!(error = %e, "microphone closed; audio chunk dropped");
            }
        },
        |e| tracing::warn!(error = %e, "microphone stream error"),
        None,
    )
}

impl Microphone {
    /// Opens the system's default input device.
    pub fn open_default() -> Result<Self, SpeechError> {
        let host = cpal::default_host();
        let device = host
            .default_input_device()
            .ok_or_else(|| no_mic("no microphone found (no default audio input device)"))?;
        let name = device.name().unwrap_or_else(|_| "default".into());
        let supported = device
            .default_input_config()
            .map_err(|e| no_mic(format!("the microphone {name:?} cannot record: {e}")))?;
        let config: cpal::StreamConfig = supported.config();
        let (tx, rx) = std::sync::mpsc::channel();
        let stream = match supported.sample_format() {
            SampleFormat::F32 => build::<f32>(&device, &config, tx, |s| s),
            SampleFormat::I16 => build::<i16>(&device, &config, tx, |s| f32::from(s) / 32_768.0),
            SampleFormat::U16 => build::<u16>(&device, &config, tx, |s| {
                (f32::from(s) - 32_768.0) / 32_768.0
            }),
            SampleFormat::I32 => build::<i32>(&device, &config, tx, |s| s as f32 / 2_147_483_648.0),
            other => {
                return Err(no_mic(format!(
                    "the microphone's sample format {other} is not supported"
                )))
            }
        }
        .map_err(|e| no_mic(format!("the microphone {name:?} cannot be opened: {e}")))?;
        stream
            .play()
            .map_err(|e| no_mic(format!("the microphone {name:?} does not start: {e}")))?;
        Ok(Self {
            _stream: stream,
            rx,
            rate_hz: config.sample_rate.0,
            name,
        })
    }

    /// The next chunk of audio, or `None` after `timeout` without any (a
    /// microphone that stopped delivering).
    pub fn next_chunk(&self, timeout: Duration) -> Result<Option<Vec<f32>>, SpeechError> {
        match self.rx.recv_timeout(timeout) {
            Ok(c) => Ok(Some(c)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(no_mic("the microphone stream ended")),
        }
    }
}
