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
use crate::prompt::{tuned_prompt, world_lines};

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
    /// The loss weight of answer tokens where the model has a choice (see
    /// [`answer_weights`]); 1 weighs every answer token alike.
    pub decision_weight: f32,
}

/// One tokenised example: ids, from which position the answer starts, and
/// each answer token's weight in the loss.
struct Encoded {
    ids: Vec<u32>,
    answer_from: usize,
    weights: Vec<f32>,
}

/// The answer tokens where the decoder asks the model (the grammar leaves
/// more than one continuation: which skill, which object, refuse or not)
/// weigh `decision_weight`; the rest, which the grammar forces or the model
/// copies from its own earlier lines, weigh 1. Without this the loss is
/// mostly format, and a model can reach a low loss without ever reading the
/// command.
fn answer_weights(tok: &Tokenizer, s: &Sample, answer: &[u32], decision_weight: f32) -> Vec<f32> {
    let grammar = crate::grammar::PlanGrammar::from_world(&s.world, 64);
    let mut st = crate::grammar::DecodeState::default();
    let mut in_step = true;
    answer
        .iter()
        .map(|id| {
            if !in_step {
                return 1.0;
            }
            let decision = grammar.forced(&st).is_empty();
            let text = tok.decode(&[*id], false).unwrap_or_default();
            match grammar.advance(&st, &text) {
                Some(next) => st = next,
                None => in_step = false,
            }
            if decision {
                decision_weight
            } else {
                1.0
            }
        })
        .collect()
}

fn encode(tok: &Tokenizer, s: &Sample, decision_weight: f32) -> anyhow::Result<Encoded> {
    let prompt = tuned_prompt(&world_lines(&s.world), &s.command);
    let enc = |t: &str| -> anyhow::Result<Vec<u32>> {
        Ok(tok
            .encode(t, false)
            .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?
            .get_ids()
            .to_vec())
    };
    let mut ids = enc(&prompt)?;
    let answer_from = ids.len();
    let answer = enc(&s.answer())?;
    let weights = answer_weights(tok, s, &answer, decision_weight);
    ids.extend(answer);
    Ok(Encoded {
        ids,
        answer_from,
        weights,
    })
}

/// Writes the tokenised corpus as JSON lines (`ids`, `answer_from`,
/// `weights`: exactly what [`train`] trains on), for a trainer outside this
/// process (`planner/train/lora_gpu.py`, on a GPU). Returns the line count.
pub fn export_jsonl(
    model: &Path,
    samples: &[Sample],
    decision_weight: f32,
    out: &Path,
) -> anyhow::Result<usize> {
    use std::io::Write;
    let mut file = std::fs::File::open(model)?;
    let ct = candle_core::quantized::gguf_file::Content::read(&mut file)?;
    let (tok, eos) = crate::llm::tokenizer_from_gguf(&ct, model)?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(out)?);
    for s in samples {
        let e = encode(&tok, s, decision_weight)?;
        let line = serde_json::json!({
            "ids": e.ids,
            "answer_from": e.answer_from,
            "weights": e.weights,
            "pad": eos,
        });
        writeln!(w, "{line}")?;
    }
    w.flush()?;
    Ok(samples.len())
}

/// The weighted loss of each of the first `first` samples on their own
/// (batch 1, no padding): `sum(w * nll) / sum(w)` over the answer tokens,
/// averaged over the samples; for the base model and with `adapter`. The same
/// figure `planner/train/lora_gpu.py --eval-loss` prints, so that the two
/// trainers can be checked against each other.
pub fn eval_loss(
    model: &Path,
    adapter: &Path,
    samples: &[Sample],
    decision_weight: f32,
    first: usize,
) -> anyhow::Result<(f32, f32)> {
    let dev = Device::Cpu;
    let mut file = std::fs::File::open(model)?;
    let ct = candle_core::quantized::gguf_file::Content::read(&mut file)?;
    let (tok, eos) = crate::llm::tokenizer_from_gguf(&ct, model)?;
    let base = FrozenLlama::from_gguf(model, &dev)?;
    let lora = Lora::load(adapter, &dev)?;
    let (mut sum_base, mut sum_lora, mut n) = (0f32, 0f32, 0usize);
    for s in samples.iter().take(first) {
        let e = encode(&tok, s, decision_weight)?;
        let (inp, tgt, mask) = batch(&[&e], eos, &dev)?;
        sum_base += masked_loss(&base.forward(&inp, None)?, &tgt, &mask)?.to_scalar::<f32>()?;
        sum_lora +=
            masked_loss(&base.forward(&inp, Some(&lora))?, &tgt, &mask)?.to_scalar::<f32>()?;
        n += 1;
    }
    let n = n.max(1) as f32;
    Ok((sum_base / n, sum_lora / n))
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
                e.weights.get(i + 1 - e.answer_from).copied().unwrap_or(1.0)
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
    mut on_cache: impl FnMut(usize, usize),
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
        opts.seed,
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
        .map(|s| encode(&tok, s, opts.decision_weight))
        .collect::<Result<_, _>>()?;
    // The frozen blocks never change: run them once per sample, not once per
    // epoch. Each step then costs only the adapted blocks and the head.
    let cached = frozen_states(&base, &encoded, first, eos, &dev, &mut on_cache)?;
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
            let (_, tgt, mask) = batch(&items, eos, &dev)?;
            let x = padded(chunk.iter().map(|i| &cached[*i]), mask.dim(1)?)?;
            // Cosine decay to a tenth, after a short warm-up.
            let progress = step as f64 / steps.max(1) as f64;
            let warm = ((step + 1) as f64 / 20.0).min(1.0);
            let lr = opts.lr
                * warm
                * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()));
            opt.set_learning_rate(lr);
            // The adapted blocks over the cached states, and the output head
            // only where the answer is (the vocabulary is large).
            let tt = Instant::now();
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
            let weights = mask.flatten_all()?.index_select(&rows, 0)?;
            let logits = base.head(&x)?;
            let loss = masked_loss(&logits, &tgt, &weights)?;
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

/// The hidden states after the frozen blocks `0..first` for each sample's
/// inputs (all its ids but the last), as `[len - 1, hidden]`. Runs in
/// batches of similar length; reports `(done, total)` samples.
fn frozen_states(
    base: &FrozenLlama,
    encoded: &[Encoded],
    first: usize,
    pad: u32,
    dev: &Device,
    on_cache: &mut impl FnMut(usize, usize),
) -> anyhow::Result<Vec<Tensor>> {
    const CHUNK: usize = 16;
    let mut by_len: Vec<usize> = (0..encoded.len()).collect();
    by_len.sort_by_key(|i| encoded[*i].ids.len());
    let mut out: Vec<Option<Tensor>> = vec![None; encoded.len()];
    let mut done = 0;
    for chunk in by_len.chunks(CHUNK) {
        let items: Vec<&Encoded> = chunk.iter().map(|i| &encoded[*i]).collect();
        let (inp, _, _) = batch(&items, pad, dev)?;
        let x = base.layers_range(base.embed_ids(&inp)?, 0..first, None)?;
        for (row, i) in chunk.iter().enumerate() {
            let len = encoded[*i].ids.len() - 1;
            out[*i] = Some(x.get(row)?.narrow(0, 0, len)?.contiguous()?);
        }
        done += chunk.len();
        on_cache(done, encoded.len());
    }
    Ok(out.into_iter().flatten().collect())
}

/// Cached states `[len_i, hidden]`, right-padded with zeros to `[b, t, hidden]`
/// (causal attention keeps the padding out of the real positions).
fn padded<'a>(states: impl Iterator<Item = &'a Tensor>, t: usize) -> candle_core::Result<Tensor> {
    let rows = states
        .map(|s| {
            let (len, hd) = s.dims2()?;
            if len >= t {
                s.narrow(0, 0, t)
            } else {
                Tensor::cat(
                    &[s, &Tensor::zeros((t - len, hd), s.dtype(), s.device())?],
                    0,
                )
            }
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Tensor::stack(&rows, 0)
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
    train(
        &o,
        &few,
        |_, _| {},
        |r| {
            if r.step == 1 {
                first = Some(t0.elapsed().as_secs_f64());
            }
        },
    )?;
    let _ = std::fs::remove_file(&o.out);
    Ok((t0.elapsed().as_secs_f64() - first.unwrap_or(0.0)).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::IndexOp;

    /// The first token of an answer (refuse or which skill) and the objects
    /// are the model's choices; `igate_to ` after `nav` is not.
    #[test]
    fn the_models_choices_weigh_more_than_what_the_grammar_forces() {
        let path: PathBuf = std::env::var_os("ROSETTA_LLM_GGUF")
            .expect("ROSETTA_LLM_GGUF is set by the set-up (run tests through ./rosetta test)")
            .into();
        let mut f = std::fs::File::open(&path).unwrap();
        let ct = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
        let (tok, _) = crate::llm::tokenizer_from_gguf(&ct, &path).unwrap();
        let samples = super::super::corpus::generate(3, 40, &[]);
        let s = samples
            .iter()
            .find(|s| s.answer().starts_with("navigate_to") && s.answer().contains("place"))
            .unwrap();
        let ids = tok
            .encode(s.answer().as_str(), false)
            .unwrap()
            .get_ids()
            .to_vec();
        let w = answer_weights(&tok, s, &ids, 10.0);
        assert_eq!(w.len(), ids.len());
        let texts: Vec<String> = ids
            .iter()
            .map(|i| tok.decode(&[*i], false).unwrap())
            .collect();
        assert_eq!(w[0], 10.0, "{texts:?}");
        let choices = w.iter().filter(|x| **x > 1.0).count();
        assert!(
            choices >= 3 && choices < ids.len() / 2,
            "{choices} of {texts:?}"
        );
        // The token after `nav` is forced.
        assert_eq!(w[1], 1.0, "{texts:?}");
    }

    /// The cached frozen states, padded into a batch, are each sample's own
    /// states: the same as running the frozen blocks on that sample alone.
    #[test]
    fn cached_states_belong_to_their_samples() {
        let path: PathBuf = std::env::var_os("ROSETTA_LLM_GGUF")
            .expect("ROSETTA_LLM_GGUF is set by the set-up (run tests through ./rosetta test)")
            .into();
        let dev = Device::Cpu;
        let base = FrozenLlama::from_gguf(&path, &dev).unwrap();
        let mut f = std::fs::File::open(&path).unwrap();
        let ct = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
        let (tok, eos) = crate::llm::tokenizer_from_gguf(&ct, &path).unwrap();
        let samples = super::super::corpus::generate(3, 5, &[]);
        let encoded: Vec<Encoded> = samples
            .iter()
            .map(|s| encode(&tok, s, 1.0).unwrap())
            .collect();
        let first = 2;
        let cached = frozen_states(&base, &encoded, first, eos, &dev, &mut |_, _| {}).unwrap();
        let order = [3usize, 0, 4];
        let t = order
            .iter()
            .map(|i| encoded[*i].ids.len() - 1)
            .max()
            .unwrap();
        let batch = padded(order.iter().map(|i| &cached[*i]), t).unwrap();
        for (row, i) in order.iter().enumerate() {
            let e = &encoded[*i];
            let ids = Tensor::new(&e.ids[..e.ids.len() - 1], &dev)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let alone = base
                .layers_range(base.embed_ids(&ids).unwrap(), 0..first, None)
                .unwrap();
            let len = e.ids.len() - 1;
            let got = batch.i((row, 0..len)).unwrap();
            let d = (got - alone.i(0).unwrap())
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(d < 1e-3, "sample {i}: states differ by {d}");
        }
    }
}
