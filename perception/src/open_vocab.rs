//! The optional open-vocabulary scorer, for a real robot whose things the
//! sim-trained classifier never saw: a CLIP-family model (candle-transformers
//! `clip`) scores each detected object's camera crop against category words
//! ("a photo of a mug"), and names the object's category by the best word
//! when it is sure enough.
//!
//! The model is loaded from a directory the user gives (nothing is
//! downloaded): `config.json` (Hugging Face's CLIP config: `text_config`,
//! `vision_config`, `projection_dim`), `model.safetensors` (Hugging Face's
//! tensor names) and `tokenizer.json`.

use std::path::Path;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::clip::text_model::{Activation, ClipTextConfig};
use candle_transformers::models::clip::vision_model::ClipVisionConfig;
use candle_transformers::models::clip::{ClipConfig, ClipModel};
use rosetta_common::robot::CameraDescription;
use rosetta_common::ObjectKind;
use serde::Deserialize;
use tokenizers::Tokenizer;

use crate::detect::{Detection, PerceptionError};

/// CLIP's image normalisation (per channel, after scaling to 0..1).
const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
/// A word names an object's category when its probability is at least this.
pub const MIN_PROBABILITY: f64 = 0.5;

#[derive(Debug, Deserialize)]
struct HfTextConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    projection_dim: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct HfVisionConfig {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    image_size: usize,
    patch_size: usize,
    #[serde(default = "three")]
    num_channels: usize,
    projection_dim: Option<usize>,
}

fn three() -> usize {
    3
}

/// The parts of Hugging Face's `config.json` for CLIP that the model needs.
#[derive(Debug, Deserialize)]
struct HfClipConfig {
    text_config: HfTextConfig,
    vision_config: HfVisionConfig,
    projection_dim: Option<usize>,
    #[serde(default = "logit_scale")]
    logit_scale_init_value: f32,
}

fn logit_scale() -> f32 {
    2.6592
}

impl HfClipConfig {
    fn to_candle(&self) -> ClipConfig {
        let (t, v) = (&self.text_config, &self.vision_config);
        let projection = self.projection_dim.unwrap_or(512);
        ClipConfig {
            text_config: ClipTextConfig {
                vocab_size: t.vocab_size,
                embed_dim: t.hidden_size,
                activation: Activation::QuickGelu,
                intermediate_size: t.intermediate_size,
                max_position_embeddings: t.max_position_embeddings,
                pad_with: None,
                num_hidden_layers: t.num_hidden_layers,
                num_attention_heads: t.num_attention_heads,
                projection_dim: t.projection_dim.unwrap_or(projection),
            },
            vision_config: ClipVisionConfig {
                embed_dim: v.hidden_size,
                activation: Activation::QuickGelu,
                intermediate_size: v.intermediate_size,
                num_hidden_layers: v.num_hidden_layers,
                num_attention_heads: v.num_attention_heads,
                projection_dim: v.projection_dim.unwrap_or(projection),
                num_channels: v.num_channels,
                image_size: v.image_size,
                patch_size: v.patch_size,
            },
            logit_scale_init_value: self.logit_scale_init_value,
            image_size: v.image_size,
        }
    }
}

/// A CLIP-family model and its tokenizer, ready to score crops against words.
pub struct OpenVocabScorer {
    model: ClipModel,
    tokenizer: Tokenizer,
    image_size: usize,
    max_tokens: usize,
    device: Device,
}

impl std::fmt::Debug for OpenVocabScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenVocabScorer")
            .field("image_size", &self.image_size)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

fn model_err(path: &Path, reason: impl ToString) -> PerceptionError {
    PerceptionError::Model {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

impl OpenVocabScorer {
    /// Loads `config.json`, `model.safetensors` and `tokenizer.json` from
    /// `dir`. A missing or malformed file is an error that names it.
    pub fn load(dir: &Path) -> Result<Self, PerceptionError> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|e| model_err(&config_path, e))?;
        let hf: HfClipConfig =
            serde_json::from_str(&text).map_err(|e| model_err(&config_path, e))?;
        let config = hf.to_candle();
        let weights = dir.join("model.safetensors");
        let bytes = std::fs::read(&weights).map_err(|e| model_err(&weights, e))?;
        let device = Device::Cpu;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &device)
            .map_err(|e| model_err(&weights, e))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let model = ClipModel::new(vb, &config).map_err(|e| model_err(&weights, e))?;
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| model_err(&tok_path, e))?;
        Ok(Self {
            model,
            tokenizer,
            image_size: config.image_size,
            max_tokens: config.text_config.max_position_embeddings,
            device,
        })
    }

    /// Token ids of each prompt, padded with each prompt's last token (CLIP's
    /// end-of-text token, whose position the text model pools) to one length.
    fn tokens(&self, prompts: &[String]) -> Result<Tensor, PerceptionError> {
        let infer = |e: String| PerceptionError::Inference(format!("open-vocabulary scorer: {e}"));
        let mut ids: Vec<Vec<u32>> = Vec::with_capacity(prompts.len());
        for p in prompts {
            let enc = self
                .tokenizer
                .encode(p.as_str(), true)
                .map_err(|e| infer(e.to_string()))?;
            let mut v = enc.get_ids().to_vec();
            v.truncate(self.max_tokens);
            if v.is_empty() {
                return Err(infer(format!("the prompt {p:?} has no tokens")));
            }
            ids.push(v);
        }
        let len = ids.iter().map(Vec::len).max().unwrap_or(1);
        let flat: Vec<u32> = ids
            .iter()
            .flat_map(|v| {
                let last = v.last().copied().unwrap_or(0);
                v.iter()
                    .copied()
                    .chain(std::iter::repeat(last))
                    .take(len)
                    .collect::<Vec<_>>()
            })
            .collect();
        Tensor::from_vec(flat, (ids.len(), len), &self.device).map_err(|e| infer(e.to_string()))
    }

    /// The model's input for an RGB crop of `w` x `h` pixels: resized
    /// (bilinear) to the model's square, normalised, channels first.
    fn pixels(&self, rgb: &[u8], w: usize, h: usize) -> Vec<f32> {
        let s = self.image_size;
        let mut out = vec![0f32; 3 * s * s];
        for y in 0..s {
            let fy = ((y as f32 + 0.5) * h as f32 / s as f32 - 0.5).clamp(0.0, (h - 1) as f32);
            let (y0, ty) = (fy.floor() as usize, fy.fract());
            let y1 = (y0 + 1).min(h - 1);
            for x in 0..s {
                let fx = ((x as f32 + 0.5) * w as f32 / s as f32 - 0.5).clamp(0.0, (w - 1) as f32);
                let (x0, tx) = (fx.floor() as usize, fx.fract());
                let x1 = (x0 + 1).min(w - 1);
                for c in 0..3 {
                    let at = |u: usize, v: usize| f32::from(rgb[(v * w + u) * 3 + c]);
                    let top = at(x0, y0) * (1.0 - tx) + at(x1, y0) * tx;
                    let bottom = at(x0, y1) * (1.0 - tx) + at(x1, y1) * tx;
                    let v = (top * (1.0 - ty) + bottom * ty) / 255.0;
                    out[c * s * s + y * s + x] = (v - MEAN[c]) / STD[c];
                }
            }
        }
        out
    }

    /// For each crop (RGB bytes, width, height), the probability of each
    /// word ("a photo of a <word>"), in the words' order.
    pub fn score(
        &self,
        crops: &[(Vec<u8>, usize, usize)],
        words: &[String],
    ) -> Result<Vec<Vec<f64>>, PerceptionError> {
        if crops.is_empty() || words.is_empty() {
            return Ok(vec![Vec::new(); crops.len()]);
        }
        let infer = |e: candle_core::Error| {
            PerceptionError::Inference(format!("open-vocabulary scorer: {e}"))
        };
        let prompts: Vec<String> = words.iter().map(|w| format!("a photo of a {w}")).collect();
        let ids = self.tokens(&prompts)?;
        let s = self.image_size;
        let mut pixels = Vec::with_capacity(crops.len() * 3 * s * s);
        for (rgb, w, h) in crops {
            if *w == 0 || *h == 0 || rgb.len() != w * h * 3 {
                return Err(PerceptionError::Inference(format!(
                    "open-vocabulary scorer: a crop of {w}x{h} pixels holds {} bytes",
                    rgb.len()
                )));
            }
            pixels.extend(self.pixels(rgb, *w, *h));
        }
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let images = Tensor::from_vec(pixels, (crops.len(), 3, s, s), &self.device)?;
            let (_, per_image) = self.model.forward(&images, &ids)?;
            candle_nn::ops::softmax(&per_image, D::Minus1)?.to_vec2::<f32>()
        };
        let probs = run().map_err(infer)?;
        Ok(probs
            .into_iter()
            .map(|p| p.into_iter().map(f64::from).collect())
            .collect())
    }

    /// Names each detection's category by the best of `words` for its crop
    /// of `rgb`, where that word is a category the stack knows and its
    /// probability is at least [`MIN_PROBABILITY`]; leaves the rest as they are.
    pub fn relabel(
        &self,
        rgb: &[u8],
        cam: &CameraDescription,
        words: &[String],
        detections: &mut [Detection],
    ) -> Result<(), PerceptionError> {
        let (fw, fh) = (cam.width_px as usize, cam.height_px as usize);
        let crops: Vec<(Vec<u8>, usize, usize)> = detections
            .iter()
            .map(|d| crop(rgb, fw, fh, d.bbox_px))
            .collect();
        let scores = self.score(&crops, words)?;
        for (d, p) in detections.iter_mut().zip(scores) {
            let best = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(k, p)| (k, *p));
            if let Some((k, p)) = best.filter(|(_, p)| *p >= MIN_PROBABILITY) {
                if let Some(kind) = ObjectKind::from_word(&words[k]) {
                    d.kind = kind;
                    d.confidence = p;
                }
            }
        }
        Ok(())
    }
}

/// The pixels of box `[x, y, w, h]` in a `fw` x `fh` RGB frame, widened by
/// a tenth each way (context helps CLIP), clipped to the frame.
fn crop(rgb: &[u8], fw: usize, fh: usize, bbox: [u32; 4]) -> (Vec<u8>, usize, usize) {
    let [x, y, w, h] = bbox.map(|v| v as usize);
    let (mx, my) = (w / 10 + 1, h / 10 + 1);
    let (x0, y0) = (x.saturating_sub(mx), y.saturating_sub(my));
    let (x1, y1) = ((x + w + mx).min(fw), (y + h + my).min(fh));
    let (cw, ch) = (x1.saturating_sub(x0).max(1), y1.saturating_sub(y0).max(1));
    let mut out = Vec::with_capacity(cw * ch * 3);
    for v in y0..y0 + ch {
        for u in x0..x0 + cw {
            let i = (v.min(fh - 1) * fw + u.min(fw - 1)) * 3;
            out.extend_from_slice(&rgb[i..i + 3]);
        }
    }
    (out, cw, ch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;
    use rosetta_common::robot::RobotDescription;
    use rosetta_common::Color;

    const WORDS: [&str; 9] = [
        "[UNK]", "a", "photo", "of", "cube", "mug", "ball", "banana", "<eot>",
    ];

    /// A tiny CLIP with random weights, as a model directory.
    fn tiny_model(dir: &Path) {
        let vocab: serde_json::Map<String, serde_json::Value> = WORDS
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), serde_json::json!(i)))
            .collect();
        let eot = WORDS.len() - 1;
        let tokenizer = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"Sequence": {"id": "A", "type_id": 0}},
                           {"SpecialToken": {"id": "<eot>", "type_id": 0}}],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<eot>": {"id": "<eot>", "ids": [eot], "tokens": ["<eot>"]}}
            },
            "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
        });
        std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
        let config = serde_json::json!({
            "projection_dim": 16,
            "text_config": {"vocab_size": WORDS.len(), "hidden_size": 32, "intermediate_size": 64,
                            "max_position_embeddings": 16, "num_hidden_layers": 2,
                            "num_attention_heads": 2},
            "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                              "num_attention_heads": 2, "image_size": 32, "patch_size": 8}
        });
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let hf: HfClipConfig = serde_json::from_value(config).unwrap();
        let vars = VarMap::new();
        ClipModel::new(
            VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu),
            &hf.to_candle(),
        )
        .unwrap();
        vars.save(dir.join("model.safetensors")).unwrap();
    }

    fn detection(bbox_px: [u32; 4]) -> Detection {
        Detection {
            color: Color::Red,
            kind: ObjectKind::Cube,
            bbox_px,
            pixels: 100,
            position_m: [1.0, 0.0, 0.4],
            extent_m: [0.05; 3],
            confidence: 1.0,
        }
    }

    #[test]
    fn scores_crops_against_words_with_a_model_from_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        tiny_model(dir.path());
        let scorer = OpenVocabScorer::load(dir.path()).unwrap();
        let crops = vec![
            (vec![200u8; 20 * 10 * 3], 20, 10),
            ((0..7 * 9 * 3).map(|i| (i * 7 % 256) as u8).collect(), 7, 9),
        ];
        let words: Vec<String> = ["cube", "mug", "ball"].map(String::from).to_vec();
        let scores = scorer.score(&crops, &words).unwrap();
        assert_eq!(scores.len(), 2);
        for p in &scores {
            assert_eq!(p.len(), 3);
            assert!(p.iter().all(|x| x.is_finite() && *x >= 0.0));
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{p:?}");
        }
        // The same inputs, the same scores.
        assert_eq!(scorer.score(&crops, &words).unwrap(), scores);
    }

    #[test]
    fn relabels_detections_by_a_sure_word_and_keeps_them_for_unknown_words() {
        let dir = tempfile::tempdir().unwrap();
        tiny_model(dir.path());
        let scorer = OpenVocabScorer::load(dir.path()).unwrap();
        let cam = RobotDescription::default().camera;
        let rgb = vec![90u8; (cam.width_px * cam.height_px * 3) as usize];
        // Boxes at the frame's corners: the crop is clipped, not out of bounds.
        let mut dets = vec![
            detection([10, 20, 30, 40]),
            detection([cam.width_px - 5, cam.height_px - 5, 5, 5]),
        ];
        // One word holds all the probability: each detection takes it.
        scorer
            .relabel(&rgb, &cam, &["mug".to_string()], &mut dets)
            .unwrap();
        assert!(dets.iter().all(|d| d.kind == ObjectKind::Mug), "{dets:?}");
        // A word that names no category the stack knows changes nothing.
        scorer
            .relabel(&rgb, &cam, &["banana".to_string()], &mut dets)
            .unwrap();
        assert!(dets.iter().all(|d| d.kind == ObjectKind::Mug), "{dets:?}");
    }

    #[test]
    fn a_missing_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        tiny_model(dir.path());
        std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
        let err = OpenVocabScorer::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("tokenizer.json"), "{err}");
        std::fs::write(dir.path().join("config.json"), "{\"text_config\": 3}").unwrap();
        let err = OpenVocabScorer::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
    }
}
