//! `train-detector`: trains perception's learned detector on frames the sim
//! renders with exact per-pixel labels, and writes its weights.
//!
//! ```text
//! source .local/env.sh
//! cargo run -p rosetta-tests --bin train-detector
//! ```
//!
//! The run is reproducible: the same seed gives the same frames, the same
//! batches and the same weights. Each frame is a new random scene
//! (`rosetta_tests::scenes`, everything varied: objects moved, the room and
//! table repainted, distractors of other colours and shapes, occluders among
//! the cubes), seen from a random pose, under a random change of light, with
//! sensor noise. Training takes crops of these frames, most of them around an
//! object, and minimises a class-weighted cross-entropy per pixel with AdamW.
//! The loss curve goes to a CSV file beside the weights, and the weights'
//! per-class pixel IoU on held-out frames is printed at the end.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rosetta_common::robot::{CameraDescription, RobotDescription};
use rosetta_perception::learned::{class_of, input_planes, SegNet, CELL, CHANNELS, CLASSES, SCALE};
use rosetta_sim::render::{render_labelled, NO_OBJECT};
use rosetta_sim::scene::Scene;
use rosetta_sim::world::World;
use rosetta_tests::scenes::{random_pose, random_scene, relight, Variety};
use rosetta_tests::train::{bar, seeded_init};

/// Train the learned detector on sim-rendered, labelled frames.
#[derive(Debug, Parser)]
struct Args {
    /// Training frames to render (each a new random scene and pose).
    #[arg(long, default_value_t = 500)]
    frames: usize,
    /// Held-out frames (other seeds) for the IoU printed at the end.
    #[arg(long, default_value_t = 40)]
    held_out: usize,
    /// Optimiser steps.
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    /// Crops per step.
    #[arg(long, default_value_t = 12)]
    batch: usize,
    /// Side of a square crop, in output cells (4x4 camera pixels each); a
    /// multiple of 8.
    #[arg(long, default_value_t = 64)]
    crop: usize,
    /// Peak learning rate (cosine decay to a tenth).
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Where the weights go; the loss curve goes beside them (`.loss.csv`).
    #[arg(long, default_value = "perception/models/detector.safetensors")]
    out: PathBuf,
}

/// One rendered frame, as the network sees it, and its per-cell classes.
struct Sample {
    input: Vec<f32>,
    target: Vec<u8>,
    /// Cells that show an object: crops are centred on them.
    object_cells: Vec<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let frames = Frames::new(Scene::default_scene()?);
    let train = frames.render(args.frames, args.seed, "rendering training frames")?;
    let held_out = frames.render(
        args.held_out,
        args.seed + 1_000_003,
        "rendering held-out frames",
    )?;

    let device = Device::Cpu;
    let vars = VarMap::new();
    let net = SegNet::new(VarBuilder::from_varmap(&vars, DType::F32, &device))?;
    seeded_init(&vars, args.seed)?;
    let (csv_path, train_s) = train_net(&args, &net, &vars, &train, frames.cells(), &device)?;
    vars.save(&args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "trained {} steps in {:.0} s; weights {} ({} bytes), loss curve {}",
        args.steps,
        train_s,
        args.out.display(),
        std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0),
        csv_path.display()
    );
    print_held_out_iou(&net, &held_out, frames.input_size(), &device)
}

/// Renders labelled frames of random scenes: the camera, the network's
/// input size and its output cells.
struct Frames {
    base: Scene,
    robot: RobotDescription,
    cam: CameraDescription,
}

impl Frames {
    fn new(base: Scene) -> Self {
        let robot = RobotDescription::default();
        let cam = robot.camera.clone();
        Self { base, robot, cam }
    }

    /// The network's input, `(w, h)`.
    fn input_size(&self) -> (usize, usize) {
        (
            (self.cam.width_px / SCALE) as usize,
            (self.cam.height_px / SCALE) as usize,
        )
    }

    /// The network's output cells, `(w, h)`.
    fn cells(&self) -> (usize, usize) {
        (
            (self.cam.width_px / CELL) as usize,
            (self.cam.height_px / CELL) as usize,
        )
    }

    /// `n` frames from `seed`, each a new random scene seen from a random
    /// pose, relit, with sensor noise.
    fn render(&self, n: usize, seed: u64, label: &str) -> anyhow::Result<Vec<Sample>> {
        let bar = bar(n as u64, label);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let noise = Normal::new(0.0, 3.0)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let scene = random_scene(&self.base, Variety::FULL, &mut rng);
            let mut world = World::new(scene, self.robot.clone());
            world.pose = random_pose(&mut rng);
            let (frame, labels) = render_labelled(&world, &self.cam);
            let amount = rng.gen_range(0.0..0.6);
            let mut rgb = relight(&frame.rgb, amount, &mut rng);
            for v in &mut rgb {
                *v = (f64::from(*v) + noise.sample(&mut rng))
                    .round()
                    .clamp(0.0, 255.0) as u8;
            }
            let input = input_planes(&rgb, &frame.depth_m, self.cam.width_px, self.cam.height_px);
            let (target, object_cells) = self.targets(&world, &labels)?;
            out.push(Sample {
                input,
                target,
                object_cells,
            });
            bar.inc(1);
        }
        bar.finish();
        Ok(out)
    }

    /// Each output cell's class (from the label at its centre pixel), and
    /// the cells that show an object.
    fn targets(&self, world: &World, labels: &[u16]) -> anyhow::Result<(Vec<u8>, Vec<usize>)> {
        let (ow, oh) = self.cells();
        let mut target = vec![0u8; ow * oh];
        let mut object_cells = Vec::new();
        for y in 0..oh {
            for x in 0..ow {
                let s = CELL as usize;
                let l = labels[(y * s + s / 2) * self.cam.width_px as usize + x * s + s / 2];
                if l == NO_OBJECT {
                    continue;
                }
                let o = world
                    .objects
                    .get(usize::from(l))
                    .context("a label names no object")?;
                target[y * ow + x] = class_of(o.color, o.kind) as u8;
                object_cells.push(y * ow + x);
            }
        }
        Ok((target, object_cells))
    }
}

/// Trains `net` on crops of `train` with AdamW (warm-up, then cosine decay
/// to a tenth); writes the loss curve. Returns its path and the training's
/// wall seconds.
fn train_net(
    args: &Args,
    net: &SegNet,
    vars: &VarMap,
    train: &[Sample],
    (ow, oh): (usize, usize),
    device: &Device,
) -> anyhow::Result<(PathBuf, f64)> {
    let mut opt = AdamW::new(
        vars.all_vars(),
        ParamsAdamW {
            lr: args.lr,
            weight_decay: 1e-4,
            ..Default::default()
        },
    )?;
    // Most cells are background: weigh object cells up.
    let mut weights = vec![4.0f32; CLASSES];
    weights[0] = 1.0;
    let class_weights = Tensor::new(weights.as_slice(), device)?;

    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let csv_path = args.out.with_extension("loss.csv");
    let mut csv = std::fs::File::create(&csv_path)
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    writeln!(csv, "step,loss,lr")?;

    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0x5eed);
    let bar = bar(args.steps as u64, "training");
    let t0 = Instant::now();
    let c = args.crop.min(ow).min(oh) & !7;
    for step in 0..args.steps {
        let (x, y) = batch(train, args.batch, c, (ow, oh), &mut rng, device)?;
        let progress = step as f64 / args.steps.max(1) as f64;
        let warm = ((step + 1) as f64 / 30.0).min(1.0);
        let lr =
            args.lr * warm * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()));
        opt.set_learning_rate(lr);
        let logits = net.forward(&x)?;
        let loss = weighted_cross_entropy(&logits, &y, &class_weights)?;
        opt.backward_step(&loss)?;
        let l = loss.to_scalar::<f32>()?;
        if !l.is_finite() {
            anyhow::bail!("the loss became {l} at step {step}: lower --lr");
        }
        writeln!(csv, "{step},{l},{lr}")?;
        bar.set_message(format!("loss {l:.4}"));
        bar.inc(1);
    }
    bar.finish();
    Ok((csv_path, t0.elapsed().as_secs_f64()))
}

/// Per-class pixel IoU on frames the training never saw.
fn print_held_out_iou(
    net: &SegNet,
    held_out: &[Sample],
    (w, h): (usize, usize),
    device: &Device,
) -> anyhow::Result<()> {
    let mut inter = [0u64; CLASSES];
    let mut union = [0u64; CLASSES];
    for s in held_out {
        let x = Tensor::from_vec(s.input.clone(), (1, CHANNELS, h, w), device)?;
        let pred: Vec<u32> = net
            .forward(&x)?
            .argmax(1)?
            .flatten_all()?
            .to_vec1::<u32>()?;
        for (p, t) in pred.iter().zip(&s.target) {
            let (p, t) = (*p as usize, usize::from(*t));
            if p == t {
                inter[p] += 1;
                union[p] += 1;
            } else {
                union[p] += 1;
                union[t] += 1;
            }
        }
    }
    println!("held-out pixel IoU ({} frames):", held_out.len());
    for k in 0..CLASSES {
        let name = rosetta_perception::learned::class_info(k)
            .map_or("nothing".to_string(), |(c, o)| {
                format!("{}_{}", c.name(), o.name())
            });
        println!(
            "  {name:<12} {:.3} ({} cells)",
            inter[k] as f64 / union[k].max(1) as f64,
            union[k]
        );
    }
    Ok(())
}

/// `n` crops of `c` x `c` output cells: two in three centred on an object
/// cell, the rest anywhere. Returns inputs `(n, CHANNELS, 2c, 2c)` and classes
/// `(n, c, c)`; `(w, h)` is the output's size, the input's is twice that.
fn batch(
    samples: &[Sample],
    n: usize,
    c: usize,
    (w, h): (usize, usize),
    rng: &mut impl Rng,
    device: &Device,
) -> anyhow::Result<(Tensor, Tensor)> {
    let (iw, ic) = (2 * w, 2 * c);
    let plane = iw * 2 * h;
    let mut xs = Vec::with_capacity(n * CHANNELS * c * c);
    let mut ys = Vec::with_capacity(n * c * c);
    for _ in 0..n {
        let s = &samples[rng.gen_range(0..samples.len())];
        let (cx, cy) = if !s.object_cells.is_empty() && rng.gen_bool(2.0 / 3.0) {
            let cell = s.object_cells[rng.gen_range(0..s.object_cells.len())];
            (
                (cell % w + rng.gen_range(0..c / 2)).saturating_sub(c / 4),
                (cell / w + rng.gen_range(0..c / 2)).saturating_sub(c / 4),
            )
        } else {
            (rng.gen_range(0..w), rng.gen_range(0..h))
        };
        // Origins on multiples of 4 cells keep the network's coarsest grid
        // (16 camera pixels) aligned with whole frames.
        let x0 = cx.saturating_sub(c / 2).min(w - c) & !3;
        let y0 = cy.saturating_sub(c / 2).min(h - c) & !3;
        for ch in 0..CHANNELS {
            for y in 2 * y0..2 * y0 + ic {
                let row = ch * plane + y * iw;
                xs.extend_from_slice(&s.input[row + 2 * x0..row + 2 * x0 + ic]);
            }
        }
        for y in y0..y0 + c {
            ys.extend(
                s.target[y * w + x0..y * w + x0 + c]
                    .iter()
                    .map(|t| u32::from(*t)),
            );
        }
    }
    Ok((
        Tensor::from_vec(xs, (n, CHANNELS, ic, ic), device)?,
        Tensor::from_vec(ys, (n, c, c), device)?,
    ))
}

/// Mean over cells of `weight[class] * -log p(class)`, normalised by the weights.
fn weighted_cross_entropy(
    logits: &Tensor,
    target: &Tensor,
    class_weights: &Tensor,
) -> candle_core::Result<Tensor> {
    // (n, C, h, w) -> (n * h * w, C)
    let (n, k, h, w) = logits.dims4()?;
    let flat = logits.permute((0, 2, 3, 1))?.reshape((n * h * w, k))?;
    let logp = candle_nn::ops::log_softmax(&flat, D::Minus1)?;
    let t = target.flatten_all()?;
    let picked = logp.gather(&t.unsqueeze(1)?, 1)?.squeeze(1)?;
    let wt = class_weights.index_select(&t, 0)?;
    (picked * &wt)?.sum_all()?.neg()? / wt.sum_all()?.to_scalar::<f32>()? as f64
}
