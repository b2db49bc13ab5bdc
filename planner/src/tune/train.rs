//! LoRA fine-tuning of the planner's model on the generated corpus.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tokenizers::Tokenizer;

use super::corpus::Sample;
use super::model::{masked_loss, FrozenLlama, Lora};

/// The short system prompt of the fine-tuned planner (no worked examples:
/// the adapter has learnt the format).
pub const TUNED_SYSTEM_PROMPT: &str =
    "You turn a command into robot steps over the listed objects and places, or refuse.";

/// The prompt the fine-tuned model sees before its answer.
pub fn tuned_prompt(world_lines: &str, command: &str) -> String {
    format!(
        "<|im_start|>system\n{TUNED_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{world_lines}\nCommand: {command}<|im_end|>\n<|im_start|>assistant\n"
    )
}

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub model: PathBuf,
    pub out: PathBuf,
    pub samples: usize,
    pub epochs: usize,
    pub batch: usize,
    pub rank: usize,
    pub alpha: f64,
    pub lr: f64,
    pub seed: u64,
    pub targets: Vec<&'static str>,
    /// Adapters go on the top this-many blocks; the blocks below run once per
    /// batch without gradients, which makes a step several times cheaper.
    pub top_layers: usize,
}

/// One tokenised example: ids, and from which position the answer starts.
struct Encoded {
    ids: Vec<u32>,
    answer_from: usize,
}

fn encode(tok: &Tokenizer, s: &Sample) -> anyhow::Result<Encoded> {
    let prompt = tuned_prompt(&crate::llm::world_lines(&s.world), &s.command);
    let enc = |t: &str| -> anyhow::Result<Vec<u32>> {
        Ok(tok
            .encode(t, false)
            .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?
            .get_ids()
            .to_vec())
    };
    let mut ids = enc(&prompt)?;
    let answer_from = ids.len();
    ids.extend(enc(&s.answer())?);
    Ok(Encoded { ids, answer_from })
}

/// A right-padded batch: inputs, targets and the loss mask.
fn batch(
    items: &[&Encoded],
    pad: u32,
    dev: &Device,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let t = items.iter().map(|e| e.ids.len() - 1).max().unwrap_or(1);
    let (mut inp, mut tgt, mut mask) = (Vec::new(), Vec::new(), Vec::new());
    for e in items {
        for i in 0..t {
            let real = i + 1 < e.ids.len();
            inp.push(if real { e.ids[i] } else { pad });
            tgt.push(if real { e.ids[i + 1] } else { pad });
            mask.push(if real && i + 1 >= e.answer_from {
                1f32
            } else {
                0.0
            });
        }
    }
    let b = items.len();
    Ok((
        Tensor::from_vec(inp, (b, t), dev)?,
        Tensor::from_vec(tgt, (b, t), dev)?,
        Tensor::from_vec(mask, (b, t), dev)?,
    ))
}

/// What training reports after each step.
pub struct StepReport {
    pub step: usize,
    pub steps: usize,
    pub loss: f32,
}

/// Trains an adapter and saves it to `opts.out`; returns the loss curve.
pub fn train(
    opts: &TrainOptions,
    samples: &[Sample],
    mut on_step: impl FnMut(&StepReport),
) -> anyhow::Result<Vec<f32>> {
    let dev = Device::Cpu;
    let mut file = std::fs::File::open(&opts.model)?;
    let ct = candle_core::quantized::gguf_file::Content::read(&mut file)?;
    let (tok, eos) = crate::llm::tokenizer_from_gguf(&ct, &opts.model)?;
    let base = FrozenLlama::from_gguf(&opts.model, &dev)?;
    let n_layer = base.hyper.n_layer;
    let first = n_layer - opts.top_layers.clamp(1, n_layer);
    let lora = Lora::new(
        &base,
        first..n_layer,
        &opts.targets,
        opts.rank,
        opts.alpha,
        &dev,
    )?;
    let mut opt = AdamW::new(
        lora.vars(),
        ParamsAdamW {
            lr: opts.lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let encoded: Vec<Encoded> = samples
        .iter()
        .map(|s| encode(&tok, s))
        .collect::<Result<_, _>>()?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
    let steps_per_epoch = encoded.len().div_ceil(opts.batch.max(1));
    let steps = steps_per_epoch * opts.epochs;
    let mut curve = Vec::with_capacity(steps);
    let mut step = 0;
    for _ in 0..opts.epochs {
        // Batches of similar length waste less on padding.
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.shuffle(&mut rng);
        let mut chunks: Vec<Vec<usize>> = order
            .chunks(opts.batch.max(1) * 8)
            .map(|c| {
                let mut c = c.to_vec();
                c.sort_by_key(|i| encoded[*i].ids.len());
                c
            })
            .flat_map(|c| {
                c.chunks(opts.batch.max(1))
                    .map(<[usize]>::to_vec)
                    .collect::<Vec<_>>()
            })
            .collect();
        chunks.shuffle(&mut rng);
        for chunk in chunks {
            let items: Vec<&Encoded> = chunk.iter().map(|i| &encoded[*i]).collect();
            let (inp, tgt, mask) = batch(&items, eos, &dev)?;
            // Cosine decay to a tenth, after a short warm-up.
            let progress = step as f64 / steps.max(1) as f64;
            let warm = ((step + 1) as f64 / 20.0).min(1.0);
            let lr = opts.lr
                * warm
                * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()));
            opt.set_learning_rate(lr);
            // Frozen blocks: no adapter, no graph. Then the adapted blocks, and the
            // output head only where the answer is (the vocabulary is large).
            let tt = Instant::now();
            let x = base
                .layers_range(base.embed_ids(&inp)?, 0..first, None)?
                .detach();
            tracing::debug!(
                frozen_s = tt.elapsed().as_secs_f64(),
                tokens = inp.elem_count(),
                "frozen blocks"
            );
            let x = base.layers_range(x, first..n_layer, Some(&lora))?;
            let (b, t, hd) = x.dims3()?;
            let rows: Vec<u32> = mask
                .flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .enumerate()
                .filter(|(_, m)| **m > 0.0)
                .map(|(i, _)| i as u32)
                .collect();
            let rows = Tensor::new(rows.as_slice(), &dev)?;
            let x = x.reshape((b * t, hd))?.index_select(&rows, 0)?;
            let tgt = tgt.flatten_all()?.index_select(&rows, 0)?;
            let logits = base.head(&x)?;
            let ones = Tensor::ones(tgt.dims1()?, DType::F32, &dev)?;
            let loss = masked_loss(&logits, &tgt, &ones)?;
            tracing::debug!(forward_s = tt.elapsed().as_secs_f64(), "forward");
            opt.backward_step(&loss)?;
            tracing::debug!(step_s = tt.elapsed().as_secs_f64(), "step");
            let l = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
            if !l.is_finite() {
                anyhow::bail!("the loss became {l} at step {step}: lower --lr");
            }
            curve.push(l);
            step += 1;
            on_step(&StepReport {
                step,
                steps,
                loss: l,
            });
        }
    }
    lora.save(&opts.out)?;
    Ok(curve)
}

/// Writes the loss curve as CSV (`step,loss`).
pub fn write_curve(path: &Path, curve: &[f32]) -> std::io::Result<()> {
    let mut s = String::from("step,loss\n");
    for (i, l) in curve.iter().enumerate() {
        s.push_str(&format!("{},{l}\n", i + 1));
    }
    std::fs::write(path, s)
}

/// Times one training step on a typical batch (for planning a run).
pub fn time_one_step(opts: &TrainOptions, samples: &[Sample]) -> anyhow::Result<f64> {
    let mut o = opts.clone();
    o.epochs = 1;
    o.out = std::env::temp_dir().join(format!(
        "rosetta-lora-probe-{}.safetensors",
        std::process::id()
    ));
    let few: Vec<Sample> = samples.iter().take(o.batch.max(1) * 2).cloned().collect();
    let t0 = Instant::now();
    let mut first = None;
    train(&o, &few, |r| {
        if r.step == 1 {
            first = Some(t0.elapsed().as_secs_f64());
        }
    })?;
    let _ = std::fs::remove_file(&o.out);
    Ok((t0.elapsed().as_secs_f64() - first.unwrap_or(0.0)).max(0.0))
}
