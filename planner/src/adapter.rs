//! Fine-tuned adapters at run time: a LoRA adapter file (safetensors from
//! `plan-tune` or `planner/train/lora_gpu.py`) read as the weight updates
//! that the model loader merges into the base model's weights.
//!
//! The file holds, per adapted projection, `<key>.lora_a` (`A^T [in, rank]`)
//! and `<key>.lora_b` (`B^T [rank, out]`), and `lora.scale` (`alpha / rank`).
//! Training writes it (`plan-tune`, the `tune` module); this module only
//! reads it, and the training code reads the scale through it too.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

/// The weight updates of a saved adapter, `scale * B A` as `[out, in]`, keyed
/// by GGUF tensor name (`blk.3.attn_q.weight`): what the inference path adds
/// to the dequantised base weights.
pub fn adapter_deltas(path: &Path) -> candle_core::Result<HashMap<String, Tensor>> {
    let map = candle_core::safetensors::load(path, &Device::Cpu)?;
    let scale = adapter_scale(&map)?;
    let mut out = HashMap::new();
    for (name, a_t) in &map {
        let Some(key) = name.strip_suffix(".lora_a") else {
            continue;
        };
        let b_t = map
            .get(&format!("{key}.lora_b"))
            .ok_or_else(|| candle_core::Error::Msg(format!("adapter has {name} but no lora_b")))?;
        // (A^T B^T)^T = B A: [out, in]. The factors may be stored in f16.
        let delta = (a_t
            .to_dtype(DType::F32)?
            .matmul(&b_t.to_dtype(DType::F32)?)?
            .t()?
            .contiguous()?
            * scale)?;
        if delta
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()?
            .is_nan()
        {
            candle_core::bail!("adapter tensor {key} holds NaN");
        }
        out.insert(format!("{key}.weight"), delta);
    }
    Ok(out)
}

/// The `lora.scale` of a saved adapter (`alpha / rank`).
pub(crate) fn adapter_scale(map: &HashMap<String, Tensor>) -> candle_core::Result<f64> {
    let scale = map
        .get("lora.scale")
        .ok_or_else(|| candle_core::Error::Msg("not a rosetta adapter: no lora.scale".into()))?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?
        .first()
        .copied()
        .unwrap_or(1.0) as f64;
    if !scale.is_finite() {
        candle_core::bail!("adapter scale is {scale}");
    }
    Ok(scale)
}

/// The adapter to use: `None` (with a warning) when the file is missing, so
/// that a checkout without a trained adapter still plans with the base model.
pub fn existing_adapter(path: Option<std::path::PathBuf>) -> Option<std::path::PathBuf> {
    match path {
        Some(p) if !p.exists() => {
            tracing::warn!(
                path = %p.display(),
                "no adapter there: running the base model with a few-shot prompt (train one with plan-tune)"
            );
            None
        }
        other => other,
    }
}
