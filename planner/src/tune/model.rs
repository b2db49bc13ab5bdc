//! A llama-family transformer written with candle ops so that gradients flow
//! through it: the base weights stay frozen (plain tensors) and low-rank
//! adapters (LoRA, [`Lora`]) on the attention and MLP projections are trained.
//!
//! It reads the same GGUF as the inference path (`quantized_llama`) and must
//! give the same logits; a test checks that.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Module, Tensor, Var, D};
use candle_nn::ops::softmax_last_dim;

use crate::adapter::adapter_scale;

/// The projections an adapter can sit on, by GGUF tensor name suffix.
pub const LORA_TARGETS: [&str; 7] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hyper {
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub rms_eps: f64,
    pub rope_base: f32,
}

struct Layer {
    attn_norm: Tensor,
    ffn_norm: Tensor,
    /// Transposed weights `[in, out]`, by target name.
    w: HashMap<&'static str, Tensor>,
}

/// The frozen base model, in f32.
pub struct FrozenLlama {
    pub hyper: Hyper,
    embed: Tensor,
    layers: Vec<Layer>,
    out_norm: Tensor,
    /// `[hidden, vocab]`.
    output_t: Tensor,
    cos: Tensor,
    sin: Tensor,
}

/// Low-rank adapters: for a target with weight `W [out, in]`, the trained
/// update is `scale * B A` with `A [rank, in]` and `B [out, rank]`.
pub struct Lora {
    pub rank: usize,
    pub scale: f64,
    /// Keyed `blk.<n>.<target>`: `(A^T [in, rank], B^T [rank, out])`.
    pub pairs: HashMap<String, (Var, Var)>,
}

fn md_u32(ct: &gguf_file::Content, k: &str) -> candle_core::Result<usize> {
    ct.metadata
        .get(k)
        .ok_or_else(|| candle_core::Error::Msg(format!("no {k} in the GGUF metadata")))?
        .to_u32()
        .map(|v| v as usize)
}

impl FrozenLlama {
    pub fn from_gguf(path: &Path, device: &Device) -> candle_core::Result<Self> {
        let mut file = std::fs::File::open(path)?;
        let ct = gguf_file::Content::read(&mut file)?;
        let arch = ct
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_default();
        if arch != "llama" {
            candle_core::bail!("fine-tuning supports llama-architecture GGUFs, not {arch:?}");
        }
        let n_head = md_u32(&ct, "llama.attention.head_count")?;
        let hidden = md_u32(&ct, "llama.embedding_length")?;
        let hyper = Hyper {
            n_layer: md_u32(&ct, "llama.block_count")?,
            n_head,
            n_kv_head: md_u32(&ct, "llama.attention.head_count_kv")?,
            head_dim: hidden / n_head,
            rms_eps: ct
                .metadata
                .get("llama.attention.layer_norm_rms_epsilon")
                .and_then(|v| v.to_f32().ok())
                .unwrap_or(1e-5) as f64,
            rope_base: ct
                .metadata
                .get("llama.rope.freq_base")
                .and_then(|v| v.to_f32().ok())
                .unwrap_or(10_000.0),
        };
        let mut get = |name: &str| -> candle_core::Result<Tensor> {
            ct.tensor(&mut file, name, device)?.dequantize(device)
        };
        let embed = get("token_embd.weight")?;
        let out_norm = get("output_norm.weight")?;
        let output_t = if ct.tensor_infos.contains_key("output.weight") {
            get("output.weight")?
        } else {
            embed.clone()
        }
        .t()?
        .contiguous()?;
        let mut layers = Vec::with_capacity(hyper.n_layer);
        for i in 0..hyper.n_layer {
            let mut w = HashMap::new();
            for t in LORA_TARGETS {
                w.insert(t, get(&format!("blk.{i}.{t}.weight"))?.t()?.contiguous()?);
            }
            layers.push(Layer {
                attn_norm: get(&format!("blk.{i}.attn_norm.weight"))?,
                ffn_norm: get(&format!("blk.{i}.ffn_norm.weight"))?,
                w,
            });
        }
        let (cos, sin) = rope_tables(hyper.head_dim, hyper.rope_base, 4096, device)?;
        Ok(Self {
            hyper,
            embed,
            layers,
            out_norm,
            output_t,
            cos,
            sin,
        })
    }

    fn proj(
        &self,
        x: &Tensor,
        layer: usize,
        target: &'static str,
        lora: Option<&Lora>,
    ) -> candle_core::Result<Tensor> {
        let w = self.layers[layer]
            .w
            .get(target)
            .ok_or_else(|| candle_core::Error::Msg(format!("no weight {target}")))?;
        // One 2-D product over all rows of the batch: far faster than a batched one.
        let dims = x.dims().to_vec();
        let rows = x.elem_count() / dims.last().copied().unwrap_or(1);
        let x2 = x.reshape((rows, ()))?;
        let mut y = x2.matmul(w)?;
        if let Some((l, (a_t, b_t))) = lora.and_then(|l| {
            l.pairs
                .get(&format!("blk.{layer}.{target}"))
                .map(|p| (l, p))
        }) {
            let d = x2.matmul(a_t.as_tensor())?.matmul(b_t.as_tensor())?;
            y = (y + (d * l.scale)?)?;
        }
        let mut out_dims = dims;
        if let Some(last) = out_dims.last_mut() {
            *last = w.dim(1)?;
        }
        y.reshape(out_dims)
    }

    /// Logits `[batch, seq, vocab]` for token ids `[batch, seq]` (no cache: training).
    pub fn forward(&self, ids: &Tensor, lora: Option<&Lora>) -> candle_core::Result<Tensor> {
        let x = self.embed_ids(ids)?;
        let x = self.layers_range(x, 0..self.hyper.n_layer, lora)?;
        self.head(&x)
    }

    /// Token embeddings `[batch, seq, hidden]`.
    pub fn embed_ids(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t) = ids.dims2()?;
        self.embed
            .embedding(&ids.flatten_all()?)?
            .reshape((b, t, ()))
    }

    /// Final norm and output projection of hidden states `[.., hidden]`.
    pub fn head(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = candle_nn::ops::rms_norm_slow(x, &self.out_norm, self.hyper.rms_eps as f32)?;
        let dims = x.dims().to_vec();
        let rows = x.elem_count() / dims.last().copied().unwrap_or(1);
        let y = x.reshape((rows, ()))?.matmul(&self.output_t)?;
        let mut out_dims = dims;
        if let Some(last) = out_dims.last_mut() {
            *last = self.output_t.dim(1)?;
        }
        y.reshape(out_dims)
    }

    /// Runs the blocks in `range` over hidden states `[batch, seq, hidden]`.
    pub fn layers_range(
        &self,
        mut x: Tensor,
        range: std::ops::Range<usize>,
        lora: Option<&Lora>,
    ) -> candle_core::Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let h = &self.hyper;
        let mask = causal_mask(t, x.device())?;
        let cos = self.cos.narrow(0, 0, t)?;
        let sin = self.sin.narrow(0, 0, t)?;
        for i in range {
            let Some(layer) = self.layers.get(i) else {
                break;
            };
            let res = x.clone();
            let xn = candle_nn::ops::rms_norm_slow(&x, &layer.attn_norm, h.rms_eps as f32)?;
            let q = self.proj(&xn, i, "attn_q", lora)?;
            let k = self.proj(&xn, i, "attn_k", lora)?;
            let v = self.proj(&xn, i, "attn_v", lora)?;
            let q = q
                .reshape((b, t, h.n_head, h.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let k = k
                .reshape((b, t, h.n_kv_head, h.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let v = v
                .reshape((b, t, h.n_kv_head, h.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            // GGUF stores llama q/k for the interleaved rotary embedding. The
            // `_slow` ops (rope, rms norm) are the ones with gradients.
            let q = candle_nn::rotary_emb::rope_i_slow(&q, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_i_slow(&k, &cos, &sin)?;
            let rep = h.n_head / h.n_kv_head;
            let k = repeat_kv(&k, rep)?;
            let v = repeat_kv(&v, rep)?;
            let att = (q.matmul(&k.t()?)? / (h.head_dim as f64).sqrt())?;
            let att = att.broadcast_add(&mask)?;
            let att = softmax_last_dim(&att)?;
            let y = att.matmul(&v.contiguous()?)?;
            let y = y.transpose(1, 2)?.reshape((b, t, h.n_head * h.head_dim))?;
            x = (res + self.proj(&y, i, "attn_output", lora)?)?;
            let res = x.clone();
            let xn = candle_nn::ops::rms_norm_slow(&x, &layer.ffn_norm, h.rms_eps as f32)?;
            let gate =
                candle_nn::Activation::Silu.forward(&self.proj(&xn, i, "ffn_gate", lora)?)?;
            let up = self.proj(&xn, i, "ffn_up", lora)?;
            x = (res + self.proj(&(gate * up)?, i, "ffn_down", lora)?)?;
        }
        Ok(x)
    }

    /// The shapes `(in, out)` of a target's weight.
    fn target_dims(&self, target: &'static str) -> candle_core::Result<(usize, usize)> {
        let w = self.layers[0]
            .w
            .get(target)
            .ok_or_else(|| candle_core::Error::Msg(format!("no weight {target}")))?;
        w.dims2()
    }
}

impl Lora {
    /// Fresh adapters on `targets` of every layer: `A` random (from `seed`:
    /// candle's own CPU generator cannot be seeded), `B` zero, so the adapted
    /// model starts out exactly as the base model.
    pub fn new(
        base: &FrozenLlama,
        layers: std::ops::Range<usize>,
        targets: &[&'static str],
        rank: usize,
        alpha: f64,
        seed: u64,
        device: &Device,
    ) -> candle_core::Result<Self> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut pairs = HashMap::new();
        for i in layers {
            for t in targets {
                let (din, dout) = base.target_dims(t)?;
                let std = (1.0 / din as f64).sqrt();
                // Box-Muller: normal samples from uniform ones.
                let values: Vec<f32> = (0..din * rank)
                    .map(|_| {
                        let (u1, u2): (f64, f64) = (rng.gen::<f64>().max(1e-12), rng.gen());
                        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * std) as f32
                    })
                    .collect();
                let a = Var::from_tensor(&Tensor::from_vec(values, (din, rank), device)?)?;
                let b = Var::zeros((rank, dout), DType::F32, device)?;
                pairs.insert(format!("blk.{i}.{t}"), (a, b));
            }
        }
        Ok(Self {
            rank,
            scale: alpha / rank as f64,
            pairs,
        })
    }

    pub fn vars(&self) -> Vec<Var> {
        let mut keys: Vec<&String> = self.pairs.keys().collect();
        keys.sort();
        keys.iter()
            .filter_map(|k| self.pairs.get(*k))
            .flat_map(|(a, b)| [a.clone(), b.clone()])
            .collect()
    }

    /// Reads an adapter written by [`Lora::save`] (or by the GPU trainer
    /// `planner/train/lora_gpu.py`, which stores the factors in f16).
    pub fn load(path: &Path, device: &Device) -> candle_core::Result<Self> {
        let map = candle_core::safetensors::load(path, device)?;
        let scale = adapter_scale(&map)?;
        let mut pairs = HashMap::new();
        let mut rank = 0;
        for (name, a_t) in &map {
            let Some(key) = name.strip_suffix(".lora_a") else {
                continue;
            };
            let b_t = map.get(&format!("{key}.lora_b")).ok_or_else(|| {
                candle_core::Error::Msg(format!("adapter has {name} but no lora_b"))
            })?;
            rank = a_t.dim(1)?;
            let a = Var::from_tensor(&a_t.to_dtype(DType::F32)?)?;
            let b = Var::from_tensor(&b_t.to_dtype(DType::F32)?)?;
            pairs.insert(key.to_string(), (a, b));
        }
        Ok(Self { rank, scale, pairs })
    }

    /// Saves as safetensors: `<key>.lora_a` (`A^T`), `<key>.lora_b` (`B^T`), `lora.scale`.
    pub fn save(&self, path: &Path) -> candle_core::Result<()> {
        let mut map: HashMap<String, Tensor> = HashMap::new();
        for (k, (a, b)) in &self.pairs {
            map.insert(format!("{k}.lora_a"), a.as_tensor().clone());
            map.insert(format!("{k}.lora_b"), b.as_tensor().clone());
        }
        map.insert(
            "lora.scale".into(),
            Tensor::new(&[self.scale as f32], &Device::Cpu)?,
        );
        candle_core::safetensors::save(&map, path)
    }
}

fn repeat_kv(x: &Tensor, n: usize) -> candle_core::Result<Tensor> {
    if n == 1 {
        return Ok(x.clone());
    }
    let (b, h, t, d) = x.dims4()?;
    x.unsqueeze(2)?
        .broadcast_as((b, h, n, t, d))?
        .reshape((b, h * n, t, d))
}

fn causal_mask(t: usize, device: &Device) -> candle_core::Result<Tensor> {
    let m: Vec<f32> = (0..t)
        .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_slice(&m, (t, t), device)
}

fn rope_tables(
    head_dim: usize,
    base: f32,
    max_len: usize,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let inv: Vec<f32> = (0..head_dim)
        .step_by(2)
        .map(|i| 1f32 / base.powf(i as f32 / head_dim as f32))
        .collect();
    let n = inv.len();
    let inv = Tensor::from_vec(inv, (1, n), device)?;
    let pos = Tensor::arange(0u32, max_len as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((max_len, 1))?;
    let f = pos.matmul(&inv)?;
    Ok((f.cos()?, f.sin()?))
}

/// Mean cross-entropy of `logits [b, t, v]` against `targets [b, t]` where
/// `mask [b, t]` is 1 (a flat `[n, v]` / `[n]` / `[n]` works too).
pub fn masked_loss(
    logits: &Tensor,
    targets: &Tensor,
    mask: &Tensor,
) -> candle_core::Result<Tensor> {
    let v = logits.dim(D::Minus1)?;
    let n = logits.elem_count() / v;
    let logp = candle_nn::ops::log_softmax(&logits.reshape((n, v))?, D::Minus1)?;
    let picked = logp.gather(&targets.reshape((n, 1))?, 1)?.reshape((n,))?;
    let mask = mask.reshape((n,))?;
    let n = mask.sum_all()?;
    (picked * &mask)?.sum_all()?.neg()?.broadcast_div(&n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::adapter_deltas;

    fn model_path() -> std::path::PathBuf {
        std::env::var_os("ROSETTA_LLM_GGUF")
            .map(Into::into)
            .expect("ROSETTA_LLM_GGUF is set by the set-up (run tests through ./rosetta test)")
    }

    /// A short prompt's token ids.
    const IDS: [u32; 9] = [1, 9690, 198, 2683, 359, 253, 5356, 30, 2];

    fn input() -> Tensor {
        Tensor::new(&IDS, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap()
    }

    /// The last position's logits of the trainable model.
    fn last_logits(model: &FrozenLlama, lora: Option<&Lora>) -> Vec<f32> {
        let t = model.forward(&input(), lora).unwrap();
        t.i((0, IDS.len() - 1)).unwrap().to_vec1::<f32>().unwrap()
    }

    /// The inference path's logits: the GGUF in f32 with `deltas` merged, run
    /// by candle's own llama.
    fn inference_logits(path: &Path, deltas: &HashMap<String, Tensor>) -> Vec<f32> {
        let mut f = std::fs::File::open(path).unwrap();
        let ct = gguf_file::Content::read(&mut f).unwrap();
        let (ct, mut bytes) = crate::llm::requantized(
            ct,
            &mut f,
            path,
            candle_core::quantized::GgmlDType::F32,
            deltas,
        )
        .unwrap();
        let mut m = candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
            ct,
            &mut bytes,
            &Device::Cpu,
        )
        .unwrap();
        m.forward(&input(), 0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    }

    /// The trainable model computes what candle's own llama computes.
    #[test]
    fn trainable_model_matches_the_inference_model() {
        let path = model_path();
        let ours = FrozenLlama::from_gguf(&path, &Device::Cpu).unwrap();
        let a = last_logits(&ours, None);
        let b = inference_logits(&path, &HashMap::new());
        let argmax = |v: &[f32]| {
            v.iter()
                .enumerate()
                .max_by(|x, y| x.1.total_cmp(y.1))
                .map(|(i, _)| i)
        };
        assert_eq!(argmax(&a), argmax(&b));
        let d = max_diff(&a, &b);
        assert!(d < 1e-2, "logits differ by up to {d}");
    }

    /// A zero-initialised adapter changes nothing; one training step changes it.
    #[test]
    fn adapters_start_neutral_and_learn() {
        let dev = Device::Cpu;
        let base = FrozenLlama::from_gguf(&model_path(), &dev).unwrap();
        let lora = Lora::new(&base, 0..30, &["attn_q", "ffn_down"], 4, 8.0, 1, &dev).unwrap();
        let ids = Tensor::new(&[[1u32, 9690, 198, 2683, 359]], &dev).unwrap();
        let plain = base.forward(&ids, None).unwrap();
        let adapted = base.forward(&ids, Some(&lora)).unwrap();
        let d = (plain - &adapted)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-4, "{d}");
        let tgt = Tensor::new(&[[9690u32, 198, 2683, 359, 253]], &dev).unwrap();
        let mask = Tensor::new(&[[0f32, 0.0, 1.0, 1.0, 1.0]], &dev).unwrap();
        let mut opt = candle_nn::AdamW::new_lr(lora.vars(), 1e-2).unwrap();
        let l0 = masked_loss(&adapted, &tgt, &mask).unwrap();
        candle_nn::Optimizer::backward_step(&mut opt, &l0).unwrap();
        let l1 = masked_loss(&base.forward(&ids, Some(&lora)).unwrap(), &tgt, &mask).unwrap();
        let (l0, l1) = (
            l0.to_scalar::<f32>().unwrap(),
            l1.to_scalar::<f32>().unwrap(),
        );
        assert!(l1 < l0, "one step should lower the loss: {l0} -> {l1}");
    }

    /// An adapter merged into the weights at load (the inference path)
    /// computes what the adapter computes beside them in training.
    #[test]
    fn a_merged_adapter_gives_the_trained_logits() {
        let path = model_path();
        let dev = Device::Cpu;
        let base = FrozenLlama::from_gguf(&path, &dev).unwrap();
        let lora = Lora::new(&base, 26..30, &LORA_TARGETS, 4, 8.0, 2, &dev).unwrap();
        for (_, b) in lora.pairs.values() {
            b.set(&Tensor::randn(0f32, 0.05, b.dims(), &dev).unwrap())
                .unwrap();
        }
        let file =
            std::env::temp_dir().join(format!("rosetta-merge-{}.safetensors", std::process::id()));
        lora.save(&file).unwrap();
        let deltas = adapter_deltas(&file).unwrap();
        let _ = std::fs::remove_file(&file);
        let plain = last_logits(&base, None);
        let trained = last_logits(&base, Some(&lora));
        let merged = inference_logits(&path, &deltas);
        assert!(
            max_diff(&plain, &trained) > 0.1,
            "the adapter should change the logits"
        );
        let d = max_diff(&trained, &merged);
        assert!(
            d < 1e-2,
            "merged logits differ from the trained ones by {d}"
        );
    }

    use candle_core::IndexOp;
}
