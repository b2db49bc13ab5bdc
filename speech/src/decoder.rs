//! Whisper's text decoder with a key/value cache for its self-attention.
//!
//! candle-transformers' decoder caches only the cross-attention, so every
//! token re-runs the whole sequence (the context prompt included): about
//! 70 ms a token here. This one runs the prompt once and then one token per
//! step. The weights are the same (`model.decoder.*`).

use candle_core::{Device, Module, Tensor, D};
use candle_nn::{
    embedding, layer_norm, linear, linear_no_bias, Embedding, LayerNorm, Linear, VarBuilder,
};

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
}

impl Attention {
    fn load(d: usize, heads: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            q: linear(d, d, vb.pp("q_proj"))?,
            k: linear_no_bias(d, d, vb.pp("k_proj"))?,
            v: linear(d, d, vb.pp("v_proj"))?,
            out: linear(d, d, vb.pp("out_proj"))?,
            heads,
        })
    }

    /// (batch, seq, d) to (batch, heads, seq, d / heads).
    fn split(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        x.reshape((b, n, self.heads, d / self.heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let dh = q.dim(D::Minus1)? as f64;
        let mut w = (q.matmul(&k.t()?)? / dh.sqrt())?;
        if let Some(m) = mask {
            w = w.broadcast_add(m)?;
        }
        let w = candle_nn::ops::softmax_last_dim(&w)?;
        let (b, _, n, _) = q.dims4()?;
        let y = w.matmul(v)?.transpose(1, 2)?.reshape((b, n, ()))?;
        self.out.forward(&y)
    }
}

struct Block {
    self_attn: Attention,
    self_ln: LayerNorm,
    cross_attn: Attention,
    cross_ln: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    mlp_ln: LayerNorm,
    /// Self-attention keys and values of the tokens so far.
    cache: Option<(Tensor, Tensor)>,
    /// Cross-attention keys and values of the current audio.
    audio: Option<(Tensor, Tensor)>,
}

/// The decoder, holding one utterance's state.
pub struct Decoder {
    embed: Embedding,
    positions: Tensor,
    blocks: Vec<Block>,
    ln: LayerNorm,
    /// The output projection: the token embedding transposed, contiguous.
    projection: Tensor,
    len: usize,
    device: Device,
}

impl Decoder {
    pub fn load(
        vb: VarBuilder,
        vocab: usize,
        d: usize,
        heads: usize,
        layers: usize,
        max_positions: usize,
    ) -> candle_core::Result<Self> {
        let embed = embedding(vocab, d, vb.pp("embed_tokens"))?;
        let projection = embed.embeddings().t()?.contiguous()?;
        let blocks = (0..layers)
            .map(|i| {
                let vb = vb.pp(format!("layers.{i}"));
                Ok(Block {
                    self_attn: Attention::load(d, heads, vb.pp("self_attn"))?,
                    self_ln: layer_norm(d, 1e-5, vb.pp("self_attn_layer_norm"))?,
                    cross_attn: Attention::load(d, heads, vb.pp("encoder_attn"))?,
                    cross_ln: layer_norm(d, 1e-5, vb.pp("encoder_attn_layer_norm"))?,
                    fc1: linear(d, 4 * d, vb.pp("fc1"))?,
                    fc2: linear(4 * d, d, vb.pp("fc2"))?,
                    mlp_ln: layer_norm(d, 1e-5, vb.pp("final_layer_norm"))?,
                    cache: None,
                    audio: None,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            embed,
            positions: vb.get((max_positions, d), "embed_positions.weight")?,
            blocks,
            ln: layer_norm(d, 1e-5, vb.pp("layer_norm"))?,
            projection,
            len: 0,
            device: vb.device().clone(),
        })
    }

    /// Starts an utterance: forgets the tokens, and computes every layer's
    /// keys and values over the encoder's output `(1, frames, d)`.
    pub fn reset(&mut self, audio: &Tensor) -> candle_core::Result<()> {
        self.len = 0;
        for b in &mut self.blocks {
            b.cache = None;
            let k = b.cross_attn.split(&b.cross_attn.k.forward(audio)?)?;
            let v = b.cross_attn.split(&b.cross_attn.v.forward(audio)?)?;
            b.audio = Some((k, v));
        }
        Ok(())
    }

    /// Positions already decoded.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Feeds `tokens` after those so far; returns the logits at each of them,
    /// `(tokens.len(), vocab)`.
    pub fn forward(&mut self, tokens: &[u32]) -> candle_core::Result<Tensor> {
        let n = tokens.len();
        let past = self.len;
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let mut x = self
            .embed
            .forward(&ids)?
            .broadcast_add(&self.positions.narrow(0, past, n)?)?;
        // Causal within the new tokens; every earlier token is visible.
        let mask = (n > 1)
            .then(|| {
                let m: Vec<f32> = (0..n)
                    .flat_map(|i| {
                        (0..past + n)
                            .map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 })
                    })
                    .collect();
                Tensor::from_vec(m, (n, past + n), &self.device)
            })
            .transpose()?;
        for b in &mut self.blocks {
            let h = b.self_ln.forward(&x)?;
            let a = &b.self_attn;
            let q = a.split(&a.q.forward(&h)?)?;
            let mut k = a.split(&a.k.forward(&h)?)?;
            let mut v = a.split(&a.v.forward(&h)?)?;
            if let Some((pk, pv)) = &b.cache {
                k = Tensor::cat(&[pk, &k], 2)?;
                v = Tensor::cat(&[pv, &v], 2)?;
            }
            x = (x + a.attend(&q, &k, &v, mask.as_ref())?)?;
            b.cache = Some((k, v));
            let h = b.cross_ln.forward(&x)?;
            let c = &b.cross_attn;
            let q = c.split(&c.q.forward(&h)?)?;
            let (ak, av) = b
                .audio
                .as_ref()
                .ok_or_else(|| candle_core::Error::Msg("decoder used before reset".into()))?;
            x = (&x + c.attend(&q, ak, av, None)?)?;
            let h = b.mlp_ln.forward(&x)?;
            x = (&x + b.fc2.forward(&b.fc1.forward(&h)?.gelu_erf()?)?)?;
        }
        self.len += n;
        self.ln.forward(&x)?.squeeze(0)?.matmul(&self.projection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, IndexOp};
    use candle_transformers::models::whisper::{model::Whisper, Config};

    /// The cached decoder gives candle-transformers' logits, token by token.
    #[test]
    fn the_cached_decoder_matches_candles_full_recompute() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let cfg = Config {
            num_mel_bins: 8,
            max_source_positions: 16,
            d_model: 32,
            encoder_attention_heads: 4,
            encoder_layers: 1,
            vocab_size: 50,
            max_target_positions: 24,
            decoder_attention_heads: 4,
            decoder_layers: 2,
            suppress_tokens: vec![],
        };
        let vars = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, &dev);
        let mut theirs = Whisper::load(&vb, cfg.clone())?;
        // The same variables, by name.
        let mut ours = Decoder::load(vb.pp("model.decoder"), 50, 32, 4, 2, 24)?;
        let audio = Tensor::randn(0f32, 1.0, (1, 10, 32), &dev)?;
        let tokens: Vec<u32> = vec![3, 17, 5, 42, 8, 8, 21];
        let ids = Tensor::new(tokens.as_slice(), &dev)?.unsqueeze(0)?;
        let full = theirs.decoder.forward(&ids, &audio, true)?;
        let want = theirs.decoder.final_linear(&full)?.i(0)?;
        ours.reset(&audio)?;
        // A three-token prompt at once, then one token a step.
        let mut got = vec![ours.forward(&tokens[..3])?];
        for t in &tokens[3..] {
            got.push(ours.forward(&[*t])?);
        }
        let got = Tensor::cat(&got, 0)?;
        assert_eq!(got.dims(), want.dims());
        let scale = want.abs()?.max_all()?.to_scalar::<f32>()?;
        let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        // candle's decoder uses the tanh approximation of GELU, Whisper's (and
        // ours) the exact one: a difference of a few parts in a thousand.
        assert!(
            diff <= 1e-2 * scale,
            "largest difference {diff} (logits up to {scale})"
        );
        assert_eq!(ours.len(), tokens.len());
        Ok(())
    }
}
