//! Whisper on spoken commands: espeak-ng speaks, the converted tiny.en model
//! (from the set-up) transcribes, and the rules planner must read the same
//! plan from the transcript as from the text.

use std::path::PathBuf;

use rosetta_planner::RulesPlanner;
use rosetta_speech::synth::{self, VOICES};
use rosetta_speech::{audio, context_for, wer, SpeechError, Transcriber, ROBOT_CONTEXT};

fn model_dir() -> PathBuf {
    std::env::var_os("ROSETTA_WHISPER_DIR")
        .map(PathBuf::from)
        .expect("ROSETTA_WHISPER_DIR is set by the set-up (run tests through ./rosetta test)")
}

fn transcriber() -> Transcriber {
    let mut t = Transcriber::load(&model_dir()).expect("the converted speech model loads");
    t.set_context(ROBOT_CONTEXT).expect("context");
    t
}

#[test]
fn spoken_commands_give_the_same_plans_as_typed_ones() {
    let suite = rosetta_planner::suite::Suite::committed().expect("suite");
    let world = suite.worlds["default"].clone();
    let commands = [
        "put the green cube in the red bin",
        "pick up the yellow block",
        "go to the dock",
        "place the blue cube into the blue bin",
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = transcriber();
    t.set_context(&context_for(&world)).expect("context");
    let (mut errors, mut words) = (0, 0);
    for (i, text) in commands.iter().enumerate() {
        for voice in [VOICES[i % 3], VOICES[3 + (i + 1) % 3]] {
            let wav = dir
                .path()
                .join(format!("{i}-{}-{}.wav", voice.name, voice.wpm));
            synth::speak(text, voice, &wav).expect("espeak-ng");
            let a = audio::read_wav(&wav).expect("read");
            let heard = t.transcribe(&a.samples).expect("transcribe");
            let (e, n) = wer::word_errors(text, &heard.text);
            errors += e;
            words += n;
            let want = RulesPlanner
                .plan(text, &world)
                .expect("the typed command plans");
            let got = RulesPlanner.plan(&heard.text, &world);
            assert_eq!(
                got.as_ref().ok(),
                Some(&want),
                "{voice:?} said {text:?}, Whisper heard {:?}",
                heard.text
            );
        }
    }
    let rate = errors as f64 / words as f64;
    assert!(rate <= 0.1, "word error rate {rate:.3} over {words} words");
}

#[test]
fn silence_and_empty_files_are_no_speech_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let silent = dir.path().join("silent.wav");
    audio::write_wav(&silent, &vec![0.0; 32_000], 16_000).expect("write");
    let a = audio::read_wav(&silent).expect("read");
    let mut t = transcriber();
    match t.transcribe(&a.samples) {
        Err(SpeechError::NoSpeech(why)) => assert!(why.contains("silent"), "{why}"),
        other => panic!("silence gave {other:?}"),
    }
    let empty = dir.path().join("empty.wav");
    audio::write_wav(&empty, &[], 16_000).expect("write");
    let e = audio::read_wav(&empty).expect_err("no samples").to_string();
    assert!(e.contains("no samples"), "{e}");
}

#[test]
fn a_corrupt_speech_model_is_a_clear_error() {
    let src = model_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).expect("copy");
    }
    let weights = std::fs::read(src.join("model.safetensors")).expect("weights");
    std::fs::write(
        dir.path().join("model.safetensors"),
        &weights[..weights.len() / 3],
    )
    .expect("write");
    let e = Transcriber::load(dir.path())
        .err()
        .expect("truncated weights fail")
        .to_string();
    assert!(e.contains("model.safetensors"), "{e}");
}

/// Speaking without a button: two commands with a pause between them, fed as
/// a microphone would deliver them, are heard as two utterances, each
/// transcribed on its own.
#[test]
fn two_commands_with_a_pause_are_heard_as_two() {
    use rosetta_speech::vad::{Vad, VadConfig};
    let dir = tempfile::tempdir().expect("tempdir");
    let said = ["pick up the green block", "then go to the dock"];
    let silence = vec![0.0f32; 24_000];
    let mut stream = silence.clone();
    for (i, text) in said.iter().enumerate() {
        let wav = dir.path().join(format!("{i}.wav"));
        synth::speak(text, VOICES[i], &wav).expect("espeak-ng");
        stream.extend(audio::read_wav(&wav).expect("read").samples);
        stream.extend(&silence);
    }
    let mut vad = Vad::new(audio::RATE_HZ, VadConfig::default());
    let mut heard = Vec::new();
    for chunk in stream.chunks(1_600) {
        heard.extend(vad.push(chunk));
    }
    heard.extend(vad.finish());
    assert_eq!(heard.len(), 2);
    let mut t = transcriber();
    for (u, text) in heard.iter().zip(said) {
        let got = t.transcribe(&u.samples).expect("transcribe").text;
        assert_eq!(
            wer::word_errors(text, &got).0,
            0,
            "{text:?} heard as {got:?}"
        );
    }
    // The first ends before the second starts, with the pause between.
    assert!(heard[1].start_s - heard[0].end_of_speech_s > 1.0);
}

/// Whisper base, the larger option (multilingual; split in two packages and
/// joined by the converter at set-up), hears commands as tiny.en does.
#[test]
fn whisper_base_joined_from_its_parts_hears_commands() {
    let dir = std::env::var_os("ROSETTA_WHISPER_BASE_DIR")
        .map(PathBuf::from)
        .expect("ROSETTA_WHISPER_BASE_DIR is set by the set-up (run tests through ./rosetta test)");
    let mut t = Transcriber::load(&dir).expect("the converted Whisper base loads");
    let suite = rosetta_planner::suite::Suite::committed().expect("suite");
    let world = suite.worlds["default"].clone();
    t.set_context(&context_for(&world)).expect("context");
    let tmp = tempfile::tempdir().expect("tempdir");
    for (i, text) in ["go to the dock", "pick up the yellow block"]
        .iter()
        .enumerate()
    {
        let wav = tmp.path().join(format!("{i}.wav"));
        synth::speak(text, VOICES[i], &wav).expect("espeak-ng");
        let a = audio::read_wav(&wav).expect("read");
        let heard = t.transcribe(&a.samples).expect("transcribe");
        let want = RulesPlanner
            .plan(text, &world)
            .expect("the typed command plans");
        assert_eq!(
            RulesPlanner.plan(&heard.text, &world).ok(),
            Some(want),
            "{text:?} heard as {:?}",
            heard.text
        );
    }
}
