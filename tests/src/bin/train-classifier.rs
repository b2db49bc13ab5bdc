//! `train-classifier`: trains perception's category classifier
//! (`rosetta_perception::classify`) on the objects that the geometric
//! detector finds in frames the sim renders, and writes its weights.
//!
//! ```text
//! source .local/env.sh
//! cargo run -p rosetta-tests --bin train-classifier
//! ```
//!
//! The run is reproducible: the same seed gives the same frames, the same
//! batches and the same weights. Each frame is a generated scene
//! (`Scene::random`: things of five categories on tables, bins on the
//! floor) whose things are given random sizes and proportions
//! (`rosetta_tests::scenes::vary_sizes`), seen from a random pose facing the
//! table. The geometric detector segments each frame as it does at run time;
//! each segment is labelled with the category of the true object nearest its
//! centre (within 5 cm; segments with none are left out). Training minimises
//! the cross-entropy with AdamW over shuffled mini-batches. The loss curve
//! goes to a CSV file beside the weights; at the end the classifier's and the
//! rules' accuracy on held-out frames (other seeds) are printed, per category.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use clap::Parser;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rosetta_common::robot::RobotDescription;
use rosetta_common::ObjectKind;
use rosetta_perception::classify::{batch, CategoryFeatures, CategoryNet, CATEGORIES};
use rosetta_perception::segment::segment_objects;
use rosetta_tests::scenes::varied_view;
use rosetta_tests::train::{bar, seeded_init};

/// Train the category classifier on objects segmented in sim-rendered frames.
#[derive(Debug, Parser)]
struct Args {
    /// Training frames to render (each a new generated scene and pose).
    #[arg(long, default_value_t = 2000)]
    frames: usize,
    /// Held-out frames (other seeds) for the accuracy printed at the end.
    #[arg(long, default_value_t = 200)]
    held_out: usize,
    /// Passes over the training objects.
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Objects per optimiser step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Peak learning rate (cosine decay to a tenth).
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    #[arg(long, default_value_t = 11)]
    seed: u64,
    /// Where the weights go; the loss curve goes beside them (`.loss.csv`).
    #[arg(long, default_value = "perception/models/classifier.safetensors")]
    out: PathBuf,
}

/// One segmented object: what the classifier sees, its true category, and
/// the category the rules gave it.
struct Example {
    features: CategoryFeatures,
    truth: ObjectKind,
    rules: ObjectKind,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let train = examples(args.frames, args.seed, "rendering training frames")?;
    let held_out = examples(
        args.held_out,
        args.seed + 1_000_003,
        "rendering held-out frames",
    )?;
    println!(
        "{} training objects from {} frames, {} held-out objects from {} frames",
        train.len(),
        args.frames,
        held_out.len(),
        args.held_out
    );
    let device = Device::Cpu;
    let vars = VarMap::new();
    let net = CategoryNet::new(VarBuilder::from_varmap(&vars, DType::F32, &device))?;
    seeded_init(&vars, args.seed)?;
    let t0 = Instant::now();
    let csv_path = train_net(&args, &net, &vars, &train, &device)?;
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    vars.save(&args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "trained {} epochs in {:.0} s; weights {} ({} bytes), loss curve {}",
        args.epochs,
        t0.elapsed().as_secs_f64(),
        args.out.display(),
        std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0),
        csv_path.display()
    );
    print_accuracy(&net, &held_out, &device)
}

/// The labelled objects of `frames` generated views.
fn examples(frames: usize, seed: u64, label: &str) -> anyhow::Result<Vec<Example>> {
    let robot = RobotDescription::default();
    let cam = robot.camera.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    let bar = bar(frames as u64, label);
    for _ in 0..frames {
        let (world, frame, map_from_optical) = varied_view(&robot, &mut rng);
        for s in segment_objects(&frame.rgb, &frame.depth_m, &cam, &map_from_optical)? {
            let p = s.detection.position_m;
            let nearest = world
                .objects
                .iter()
                .map(|o| {
                    let q = o.position_m;
                    let d = ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2) + (p[2] - q[2]).powi(2))
                        .sqrt();
                    (d, o.kind)
                })
                .min_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((d, truth)) = nearest {
                if d < 0.05 {
                    out.push(Example {
                        rules: s.detection.kind,
                        features: s.features,
                        truth,
                    });
                }
            }
        }
        bar.inc(1);
    }
    bar.finish();
    Ok(out)
}

fn targets(examples: &[&Example], device: &Device) -> candle_core::Result<Tensor> {
    let t: Vec<u32> = examples
        .iter()
        .map(|e| CATEGORIES.iter().position(|k| *k == e.truth).unwrap_or(0) as u32)
        .collect();
    Tensor::from_vec(t, examples.len(), device)
}

/// Trains `net` with AdamW (warm-up, then cosine decay to a tenth) over
/// shuffled mini-batches; writes the loss curve and returns its path.
fn train_net(
    args: &Args,
    net: &CategoryNet,
    vars: &VarMap,
    train: &[Example],
    device: &Device,
) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(!train.is_empty(), "no training objects: render more frames");
    let mut opt = AdamW::new(
        vars.all_vars(),
        ParamsAdamW {
            lr: args.lr,
            weight_decay: 1e-4,
            ..Default::default()
        },
    )?;
    let csv_path = args.out.with_extension("loss.csv");
    if let Some(dir) = csv_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut csv = std::fs::File::create(&csv_path)
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    writeln!(csv, "step,loss,lr")?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0x5eed);
    let per_epoch = train.len().div_ceil(args.batch.max(1));
    let steps = args.epochs * per_epoch;
    let bar = bar(steps as u64, "training");
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut step = 0;
    for _ in 0..args.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(args.batch.max(1)) {
            let picked: Vec<&Example> = chunk.iter().map(|&i| &train[i]).collect();
            let feats: Vec<&CategoryFeatures> = picked.iter().map(|e| &e.features).collect();
            let (crops, scalars) = batch(&feats, device)?;
            let progress = step as f64 / steps.max(1) as f64;
            let warm = ((step + 1) as f64 / 30.0).min(1.0);
            let lr = args.lr
                * warm
                * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()));
            opt.set_learning_rate(lr);
            let logits = net.forward(&crops, &scalars)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &targets(&picked, device)?)?;
            opt.backward_step(&loss)?;
            let l = loss.to_scalar::<f32>()?;
            if !l.is_finite() {
                anyhow::bail!("the loss became {l} at step {step}: lower --lr");
            }
            writeln!(csv, "{step},{l},{lr}")?;
            bar.set_message(format!("loss {l:.4}"));
            bar.inc(1);
            step += 1;
        }
    }
    bar.finish();
    Ok(csv_path)
}

/// The classifier's and the rules' accuracy on held-out objects, overall
/// and per true category.
fn print_accuracy(net: &CategoryNet, held_out: &[Example], device: &Device) -> anyhow::Result<()> {
    let mut predicted = Vec::with_capacity(held_out.len());
    for chunk in held_out.chunks(256) {
        let feats: Vec<&CategoryFeatures> = chunk.iter().map(|e| &e.features).collect();
        let (crops, scalars) = batch(&feats, device)?;
        let best: Vec<u32> = net
            .forward(&crops, &scalars)?
            .argmax(D::Minus1)?
            .to_vec1()?;
        predicted.extend(best.into_iter().map(|k| CATEGORIES[k as usize]));
    }
    let n = held_out.len().max(1) as f64;
    let learned = held_out
        .iter()
        .zip(&predicted)
        .filter(|(e, p)| e.truth == **p)
        .count();
    let rules = held_out.iter().filter(|e| e.truth == e.rules).count();
    println!(
        "held-out category accuracy ({} objects): classifier {:.1}%, rules {:.1}%",
        held_out.len(),
        100.0 * learned as f64 / n,
        100.0 * rules as f64 / n
    );
    for kind in CATEGORIES {
        let of: Vec<(&Example, &ObjectKind)> = held_out
            .iter()
            .zip(&predicted)
            .filter(|(e, _)| e.truth == kind)
            .collect();
        if of.is_empty() {
            continue;
        }
        let right = of.iter().filter(|(e, p)| e.truth == **p).count();
        let by_rules = of.iter().filter(|(e, _)| e.truth == e.rules).count();
        let mut wrong: Vec<String> = Vec::new();
        for other in CATEGORIES.iter().filter(|k| **k != kind) {
            let c = of.iter().filter(|(_, p)| **p == *other).count();
            if c > 0 {
                wrong.push(format!("{} as {}", c, other.name()));
            }
        }
        println!(
            "  {:<9} {:>4} objects: classifier {:5.1}%, rules {:5.1}%{}",
            kind.name(),
            of.len(),
            100.0 * right as f64 / of.len() as f64,
            100.0 * by_rules as f64 / of.len() as f64,
            if wrong.is_empty() {
                String::new()
            } else {
                format!(" (classifier: {})", wrong.join(", "))
            }
        );
    }
    Ok(())
}
