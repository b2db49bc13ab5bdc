//! Fine-tunes the planner's language model with LoRA on a generated command
//! corpus, reproducibly (fixed seed), and writes the adapter plus its loss curve.
//!
//! ```text
//! cargo run --release -p rosetta-planner --bin plan-tune -- --out planner/adapters/smollm2-135m-plan.safetensors
//! ```

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use rosetta_planner::suite::Suite;
use rosetta_planner::tune::{corpus, model::LORA_TARGETS, train};

/// Fine-tune the planner model (LoRA) on a generated command corpus.
///
/// The corpus comes from random worlds and random intents written in many
/// phrasings (planner/src/tune/corpus.rs); the commands of the benchmark suite
/// are left out. The same arguments give the same adapter.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The base GGUF model (llama architecture).
    #[arg(long, env = "ROSETTA_LLM_GGUF")]
    model: PathBuf,
    /// Where to write the adapter (safetensors); the loss curve goes next to it as .csv.
    #[arg(long, default_value = "planner/adapters/smollm2-135m-plan.safetensors")]
    out: PathBuf,
    /// Corpus size.
    #[arg(long, default_value_t = 960)]
    samples: usize,
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Adapter rank.
    #[arg(long, default_value_t = 8)]
    rank: usize,
    /// Adapter scale numerator (the update is alpha / rank * B A).
    #[arg(long, default_value_t = 16.0)]
    alpha: f64,
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Which projections get adapters (comma-separated).
    #[arg(
        long,
        default_value = "attn_q,attn_k,attn_v,attn_output,ffn_up,ffn_down",
        value_delimiter = ','
    )]
    targets: Vec<String>,
    /// Train adapters on the top this-many transformer blocks only.
    #[arg(long, default_value_t = 8)]
    top_layers: usize,
    /// Loss weight of the answer tokens where the model has a choice (which
    /// skill, which object, refuse or not); the tokens the grammar forces weigh 1.
    #[arg(long, default_value_t = 10.0)]
    decision_weight: f32,
    /// Only time one training step and print the estimate for the whole run.
    #[arg(long)]
    dry_run: bool,
    /// Print the first N samples of the corpus (prompt world, command, answer) and exit.
    #[arg(long, value_name = "N")]
    show_samples: Option<usize>,
    /// Write the tokenised corpus (ids, where the answer starts, loss weights)
    /// as JSON lines and exit: the input of `planner/train/lora_gpu.py`, which
    /// trains the same adapter on a GPU.
    #[arg(long, value_name = "FILE")]
    export: Option<PathBuf>,
    /// Print the weighted answer loss of the first `--eval-first` samples,
    /// without and with this adapter, and exit (checks an adapter trained
    /// elsewhere against this crate's model).
    #[arg(long, value_name = "ADAPTER")]
    eval_loss: Option<PathBuf>,
    /// How many samples `--eval-loss` scores.
    #[arg(long, default_value_t = 8)]
    eval_first: usize,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let targets = lora_targets(&args.targets)?;
    let samples = corpus::generate(args.seed, args.samples, &suite_commands()?);
    if let Some(n) = args.show_samples {
        show_samples(&samples, n);
        return Ok(());
    }
    if let Some(path) = &args.export {
        let n = train::export_jsonl(&args.model, &samples, args.decision_weight, path)?;
        println!("{n} tokenised samples: {}", path.display());
        return Ok(());
    }
    if let Some(adapter) = &args.eval_loss {
        let (base, tuned) = train::eval_loss(
            &args.model,
            adapter,
            &samples,
            args.decision_weight,
            args.eval_first,
        )?;
        println!("base loss {base:.6}\nadapter loss {tuned:.6}");
        return Ok(());
    }
    let opts = train::TrainOptions {
        model: args.model.clone(),
        out: args.out.clone(),
        samples: args.samples,
        epochs: args.epochs,
        batch: args.batch,
        rank: args.rank,
        alpha: args.alpha,
        lr: args.lr,
        seed: args.seed,
        targets,
        top_layers: args.top_layers,
        decision_weight: args.decision_weight,
    };
    if args.dry_run {
        let s = train::time_one_step(&opts, &samples)?;
        let steps = args.samples.div_ceil(args.batch) * args.epochs;
        println!(
            "one step of batch {}: {s:.2} s; {steps} steps: about {:.0} min",
            args.batch,
            s * steps as f64 / 60.0
        );
        return Ok(());
    }
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let curve = train_with_progress(&opts, &samples)?;
    let csv = args.out.with_extension("csv");
    train::write_curve(&csv, &curve)?;
    println!(
        "adapter: {}\nloss curve: {}",
        args.out.display(),
        csv.display()
    );
    Ok(())
}

/// The `--targets` names as [`LORA_TARGETS`] entries.
fn lora_targets(names: &[String]) -> anyhow::Result<Vec<&'static str>> {
    names
        .iter()
        .map(|t| {
            LORA_TARGETS
                .iter()
                .copied()
                .find(|x| x == t)
                .with_context(|| format!("unknown target {t:?}; choose from {LORA_TARGETS:?}"))
        })
        .collect()
}

/// The commands of both suites, which stay out of training: the original
/// one, and the held-out one that measures what the planner learnt beyond
/// its generator.
fn suite_commands() -> anyhow::Result<Vec<String>> {
    Ok(Suite::committed()?
        .cases
        .into_iter()
        .chain(Suite::heldout()?.cases)
        .map(|c| c.command)
        .collect())
}

/// Prints how many samples refuse, and the first `n` (world, command, answer).
fn show_samples(samples: &[corpus::Sample], n: usize) {
    let refusals = samples.iter().filter(|s| s.plan.is_none()).count();
    println!(
        "{} samples, {refusals} refusals ({:.0}%)",
        samples.len(),
        100.0 * refusals as f64 / samples.len().max(1) as f64
    );
    for s in samples.iter().take(n) {
        println!(
            "--\n{}\nCommand: {}\n{}",
            rosetta_planner::prompt::world_lines(&s.world),
            s.command,
            s.answer()
        );
    }
}

/// Trains the adapter with progress bars (the frozen blocks' cache, then
/// the steps with the mean loss of the last 20) and returns the loss curve.
fn train_with_progress(
    opts: &train::TrainOptions,
    samples: &[corpus::Sample],
) -> anyhow::Result<Vec<f32>> {
    let bar = ProgressBar::new((opts.samples.div_ceil(opts.batch) * opts.epochs) as u64)
        .with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} loss {msg} [{elapsed} < {eta}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    let mut recent: Vec<f32> = Vec::new();
    let cache_bar = ProgressBar::new(opts.samples as u64).with_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} samples through the frozen blocks [{elapsed} < {eta}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let on_cache = |done: usize, _total: usize| {
        cache_bar.set_position(done as u64);
        if done as u64 == cache_bar.length().unwrap_or(0) {
            cache_bar.finish();
        }
    };
    let curve = train::train(opts, samples, on_cache, |r| {
        recent.push(r.loss);
        if recent.len() > 20 {
            recent.remove(0);
        }
        let mean = recent.iter().sum::<f32>() / recent.len() as f32;
        bar.set_message(format!("{mean:.4}"));
        bar.inc(1);
        if r.step % 10 == 0 || r.step == r.steps {
            tracing::info!(step = r.step, steps = r.steps, loss = mean, "training");
        }
    })?;
    bar.finish();
    Ok(curve)
}
