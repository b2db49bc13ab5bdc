//! The speech benchmark: espeak-ng speaks commands of the planner's suite in
//! three voices at two speeds, some with pink noise mixed in (sox); Whisper
//! transcribes them; the planner plans from the transcript and from the typed
//! text. Prints word error rate, plan accuracy from speech against text, the
//! latency from the end of speech to the plan, and the real-time factor.
//! Figures are printed, never asserted.
//!
//! ```text
//! speech-bench                       # 48 commands, clean and noisy, rules planner
//! speech-bench --planner llm         # plans with the language model
//! speech-bench --window full         # Whisper's full 30 s window
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use rosetta_common::{Skill, WorldModel};
use rosetta_planner::pipeline::{Pipeline, PlannerKind};
use rosetta_planner::suite::{score, Case, Suite};
use rosetta_speech::synth::{self, Voice, VOICES};
use rosetta_speech::whisper::Window;
use rosetta_speech::{audio, context_for, wer, SpeechError, Transcriber, Transcript};

/// Benchmark spoken commands: speech to text to plan.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// How many suite commands to speak (typos are left out: they cannot be spoken).
    #[arg(long, default_value_t = 48)]
    commands: usize,
    /// Every N-th command is also spoken with pink noise mixed in (0: none).
    #[arg(long, default_value_t = 3)]
    noisy_every: usize,
    /// Signal-to-noise ratio of the noisy copies, in dB.
    #[arg(long, default_value_t = 10.0)]
    snr_db: f32,
    /// The planner that reads the words, through the pipeline the planner
    /// node runs: `hybrid` (the default), `llm` or `rules`.
    #[arg(long, value_enum, default_value_t = PlannerKind::Hybrid)]
    planner: PlannerKind,
    #[command(flatten)]
    model: rosetta_planner::llm::ModelArgs,
    /// The converted Whisper model directory.
    #[arg(long, env = "ROSETTA_WHISPER_DIR")]
    whisper: PathBuf,
    /// How much audio the encoder sees.
    #[arg(long, value_enum, default_value_t)]
    window: Window,
    /// The decoder's context prompt [default: the robot's vocabulary and the
    /// things of the command's world] ("" for none).
    #[arg(long)]
    context: Option<String>,
    /// Keep the spoken WAV files here (default: a temporary folder).
    #[arg(long)]
    keep_audio: Option<PathBuf>,
    /// Print every command whose transcript or plan was wrong.
    #[arg(long)]
    show_errors: bool,
}

#[derive(Default)]
struct Tally {
    n: usize,
    word_errors: usize,
    words: usize,
    exact_sentences: usize,
    plan_right_text: usize,
    plan_right_speech: usize,
    /// End of speech to plan: transcription plus planning, seconds.
    latency_s: Vec<f64>,
    rtf: Vec<f64>,
    errors: Vec<String>,
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn pct(a: usize, b: usize) -> String {
    format!("{:.1}% ({a}/{b})", 100.0 * a as f64 / b.max(1) as f64)
}

impl Tally {
    fn print(&self, label: &str, show_errors: bool) {
        println!("\n{label}: {} recordings", self.n);
        println!(
            "  word error rate:              {:.2}% ({} errors / {} words); sentences exact: {}",
            100.0 * self.word_errors as f64 / self.words.max(1) as f64,
            self.word_errors,
            self.words,
            pct(self.exact_sentences, self.n)
        );
        println!(
            "  plan accuracy, text / speech: {} / {}",
            pct(self.plan_right_text, self.n),
            pct(self.plan_right_speech, self.n)
        );
        println!(
            "  end of speech to plan:        p50 {:.3} s, p95 {:.3} s, max {:.3} s",
            quantile(&self.latency_s, 0.5),
            quantile(&self.latency_s, 0.95),
            quantile(&self.latency_s, 1.0)
        );
        println!(
            "  real-time factor:             p50 {:.3}, p95 {:.3}",
            quantile(&self.rtf, 0.5),
            quantile(&self.rtf, 0.95)
        );
        if show_errors {
            for e in &self.errors {
                println!("    {e}");
            }
        }
    }
}

/// Suite commands that can be spoken, spread over the categories.
fn spoken_cases(suite: &Suite, n: usize) -> Vec<&Case> {
    let mut by_cat: std::collections::BTreeMap<&str, Vec<&Case>> = Default::default();
    for c in suite.cases.iter().filter(|c| c.category != "typo") {
        by_cat.entry(&c.category).or_default().push(c);
    }
    let mut out = Vec::new();
    let mut i = 0;
    while out.len() < n && by_cat.values().any(|v| i < v.len()) {
        for v in by_cat.values() {
            if let Some(c) = v.get(i) {
                if out.len() < n {
                    out.push(*c);
                }
            }
        }
        i += 1;
    }
    out
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let suite = Suite::committed().context("loading the command suite")?;
    let cases = spoken_cases(&suite, args.commands);
    let tmp = tempfile::tempdir()?;
    let dir = args
        .keep_audio
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;

    let llm = if args.planner.needs_model() {
        eprintln!("loading the language model");
        Some(std::sync::Arc::new(args.model.load()?))
    } else {
        None
    };
    let planner = Pipeline::new(args.planner, llm).map_err(anyhow::Error::msg)?;
    let mut t = Transcriber::load(&args.whisper)
        .with_context(|| format!("loading {}", args.whisper.display()))?;
    t.window = args.window;
    println!(
        "speech model {} (load {:.2} s), window {:?}, planner {}",
        args.whisper.display(),
        t.load_s,
        args.window,
        args.planner
    );

    let jobs = jobs(&cases, args.noisy_every, args.snr_db);
    let bar = ProgressBar::new(jobs.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed} < {eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut results = Results::default();
    for (k, job) in jobs.iter().enumerate() {
        bar.set_message(format!("{} {}", job.voice.name, job.voice.wpm));
        let world = suite
            .worlds
            .get(&job.case.world)
            .cloned()
            .unwrap_or_default();
        let wav = speak(
            job,
            &dir.join(format!("{k:03}-{}-{}.wav", job.voice.name, job.voice.wpm)),
        )?;
        let a = audio::read_wav(&wav)?;
        match &args.context {
            Some(c) => t.set_context(c)?,
            None => t.set_context(&context_for(&world))?,
        }
        let heard = t.transcribe(&a.samples);
        results.add(job, &heard, &planner, &world);
        bar.inc(1);
    }
    bar.finish_and_clear();
    results.print(&args);
    Ok(())
}

/// One recording to make: a command, the voice that speaks it, and the
/// signal-to-noise ratio of the pink noise mixed in, if any.
struct Job<'a> {
    case: &'a Case,
    voice: Voice,
    snr_db: Option<f32>,
}

/// Each command in one voice and speed (rotating through all six), clean;
/// every `noisy_every`-th also with noise, in the next voice.
fn jobs<'a>(cases: &[&'a Case], noisy_every: usize, snr_db: f32) -> Vec<Job<'a>> {
    let mut jobs = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let voice = VOICES[i % VOICES.len()];
        jobs.push(Job {
            case,
            voice,
            snr_db: None,
        });
        if noisy_every > 0 && i % noisy_every == 0 {
            jobs.push(Job {
                case,
                voice: VOICES[(i + 1) % VOICES.len()],
                snr_db: Some(snr_db),
            });
        }
    }
    jobs
}

/// Speaks the job's command into `wav`, with its noise mixed in; returns the
/// recording to transcribe.
fn speak(job: &Job<'_>, wav: &Path) -> anyhow::Result<PathBuf> {
    synth::speak(&job.case.command, job.voice, wav)?;
    Ok(match job.snr_db {
        Some(db) => {
            let noisy_wav = wav.with_extension("noisy.wav");
            synth::add_noise(wav, &noisy_wav, db)?;
            noisy_wav
        }
        None => wav.to_path_buf(),
    })
}

/// The tallies of clean and noisy recordings, and word errors per voice.
#[derive(Default)]
struct Results {
    clean: Tally,
    noisy: Tally,
    /// Word errors and words, clean speech, by voice and speed.
    by_voice: BTreeMap<String, (usize, usize)>,
}

impl Results {
    /// Plans from what was heard and from the typed text, and scores both.
    fn add(
        &mut self,
        job: &Job<'_>,
        heard: &Result<Transcript, SpeechError>,
        planner: &Pipeline,
        world: &WorldModel,
    ) {
        let case = job.case;
        let t0 = Instant::now();
        let (text, speech_plan) = match heard {
            Ok(h) => (
                h.text.clone(),
                planner.plan(&h.text, world).steps().map(<[Skill]>::to_vec),
            ),
            Err(e) => (format!("<{e}>"), None),
        };
        let plan_s = t0.elapsed().as_secs_f64();
        let text_plan = planner
            .plan(&case.command, world)
            .steps()
            .map(<[Skill]>::to_vec);
        let tally = if job.snr_db.is_some() {
            &mut self.noisy
        } else {
            &mut self.clean
        };
        tally.n += 1;
        let (e, n) = wer::word_errors(&case.command, &text);
        tally.word_errors += e;
        tally.words += n;
        tally.exact_sentences += usize::from(e == 0);
        let right_text = score(&case.expected, text_plan.as_deref()).equivalent;
        let right_speech = score(&case.expected, speech_plan.as_deref()).equivalent;
        tally.plan_right_text += usize::from(right_text);
        tally.plan_right_speech += usize::from(right_speech);
        if let Ok(h) = heard {
            tally.latency_s.push(h.total_s() + plan_s);
            tally.rtf.push(h.real_time_factor());
        }
        if e > 0 || right_text != right_speech {
            tally.errors.push(format!(
                "[{} {}{}] {:?} -> {:?}{}",
                job.voice.name,
                job.voice.wpm,
                job.snr_db
                    .map_or(String::new(), |d| format!(", {d} dB SNR")),
                case.command,
                text,
                if right_text != right_speech {
                    " (plan differs)"
                } else {
                    ""
                }
            ));
        }
        if job.snr_db.is_none() {
            let v = self
                .by_voice
                .entry(format!("{} at {} wpm", job.voice.name, job.voice.wpm))
                .or_default();
            v.0 += e;
            v.1 += n;
        }
    }

    fn print(&self, args: &Args) {
        self.clean.print("clean speech", args.show_errors);
        if self.noisy.n > 0 {
            self.noisy.print(
                &format!("with pink noise at {} dB SNR", args.snr_db),
                args.show_errors,
            );
        }
        println!("\nword error rate by voice (clean):");
        for (v, (e, n)) in &self.by_voice {
            println!(
                "  {v:<24} {:.1}% ({e}/{n})",
                100.0 * *e as f64 / (*n).max(1) as f64
            );
        }
    }
}
