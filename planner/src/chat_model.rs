//! The language models the planner runs: llama-, qwen2- and phi-3-family chat
//! models, from a GGUF file or from safetensors with a `config.json`, each with
//! its own tokenizer and chat template.
//!
//! [`Backend`] hides the family behind one step, `forward(tokens, position)`,
//! and keeps the model's KV cache. [`ChatTemplate`] renders the model's Jinja
//! chat template, so the prompt is what the model was trained on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::{gguf_file, GgmlDType};
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::{
    llama, phi3, quantized_llama, quantized_phi3, quantized_qwen2, qwen2,
};
use tokenizers::{DecoderWrapper, Tokenizer};

use crate::llm::{requantized, tokenizer_from_gguf, LlmError, WeightFormat};

/// A model of one supported family, with its KV cache.
pub(crate) enum Backend {
    QLlama(quantized_llama::ModelWeights),
    QPhi3(quantized_phi3::ModelWeights),
    /// candle's quantised qwen2 cannot be cloned: its fixed prompt is
    /// prefilled again for every command.
    QQwen2(Box<quantized_qwen2::ModelWeights>),
    Llama(Box<llama::Llama>, llama::Cache),
    Qwen2(Box<qwen2::ModelForCausalLM>),
    Phi3(Box<phi3::Model>),
}

impl Backend {
    /// Feeds `ids` at `pos` and returns the next token's scores.
    pub fn forward(
        &mut self,
        ids: &[u32],
        pos: usize,
        dev: &Device,
    ) -> candle_core::Result<Vec<f32>> {
        let x = Tensor::new(ids, dev)?.unsqueeze(0)?;
        let logits = match self {
            Self::QLlama(m) => m.forward(&x, pos)?,
            Self::QPhi3(m) => m.forward(&x, pos)?,
            Self::QQwen2(m) => m.forward(&x, pos)?,
            Self::Llama(m, cache) => m.forward(&x, pos, cache)?,
            Self::Qwen2(m) => m.forward(&x, pos)?,
            Self::Phi3(m) => m.forward(&x, pos)?,
        };
        logits.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()
    }

    /// A copy that shares the weights and continues from the same KV cache;
    /// `None` for a model that cannot be copied.
    pub fn fork(&self) -> Option<Self> {
        Some(match self {
            Self::QLlama(m) => Self::QLlama(m.clone()),
            Self::QPhi3(m) => Self::QPhi3(m.clone()),
            Self::QQwen2(_) => return None,
            Self::Llama(m, c) => Self::Llama(m.clone(), c.clone()),
            Self::Qwen2(m) => Self::Qwen2(m.clone()),
            Self::Phi3(m) => Self::Phi3(m.clone()),
        })
    }

    /// Forgets the KV cache (for a model that cannot be forked).
    pub fn clear(&mut self) {
        match self {
            Self::QQwen2(m) => m.clear_kv_cache(),
            Self::Qwen2(m) => m.clear_kv_cache(),
            Self::Phi3(m) => m.clear_kv_cache(),
            // The others are only ever forked, never reused.
            Self::QLlama(_) | Self::QPhi3(_) | Self::Llama(..) => {}
        }
    }

    pub fn family(&self) -> &'static str {
        match self {
            Self::QLlama(_) | Self::Llama(..) => "llama",
            Self::QPhi3(_) | Self::Phi3(_) => "phi3",
            Self::QQwen2(_) | Self::Qwen2(_) => "qwen2",
        }
    }
}

/// A model's chat template (Jinja, as Hugging Face and GGUF files carry it).
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos: String,
    eos: String,
}

/// Marks where the command goes when the prompt is split into its fixed part
/// and the part after the command.
const SLOT: &str = "\u{1}ROSETTA_SLOT\u{1}";

impl ChatTemplate {
    pub fn new(source: String, bos: String, eos: String) -> Self {
        Self { source, bos, eos }
    }

    /// Renders `messages` (role, content) as the model expects them.
    pub fn render(
        &self,
        messages: &[(&str, &str)],
        add_generation_prompt: bool,
    ) -> Result<String, LlmError> {
        let mut env = minijinja::Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        let bad = |e: minijinja::Error| LlmError::Template(e.to_string());
        env.add_template("chat", &self.source).map_err(bad)?;
        let msgs: Vec<HashMap<&str, String>> = messages
            .iter()
            .map(|(role, content)| {
                HashMap::from([("role", role.to_string()), ("content", content.to_string())])
            })
            .collect();
        env.get_template("chat")
            .map_err(bad)?
            .render(minijinja::context! {
                messages => msgs,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos.clone(),
                eos_token => self.eos.clone(),
            })
            .map_err(bad)
    }

    /// The prompt for `system`, worked `examples` (user, assistant) and a last
    /// user turn, split around that turn's content: the fixed part before it
    /// (cached once) and the part after it, up to the assistant's answer.
    /// A template that refuses a system message gets it in the first user turn.
    pub fn split(
        &self,
        system: &str,
        examples: &[(String, String)],
    ) -> Result<(String, String), LlmError> {
        let with_system = |merge: bool| {
            let mut m: Vec<(&str, String)> = Vec::new();
            if !merge {
                m.push(("system", system.to_string()));
            }
            for (u, a) in examples {
                m.push(("user", u.clone()));
                m.push(("assistant", a.clone()));
            }
            m.push(("user", SLOT.to_string()));
            if merge {
                if let Some(first) = m.iter_mut().find(|(r, _)| *r == "user") {
                    first.1 = format!("{system}\n\n{}", first.1);
                }
            }
            m
        };
        let render = |m: &[(&str, String)]| {
            let refs: Vec<(&str, &str)> = m.iter().map(|(r, c)| (*r, c.as_str())).collect();
            self.render(&refs, true)
        };
        let text = render(&with_system(false)).or_else(|_| render(&with_system(true)))?;
        let (before, after) = text
            .split_once(SLOT)
            .ok_or_else(|| LlmError::Template("the template drops the user's message".into()))?;
        Ok((before.to_string(), after.to_string()))
    }
}

/// Everything [`crate::llm::LlmPlanner`] needs from a model file.
pub(crate) struct Loaded {
    pub backend: Backend,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    /// Each token's text, as it continues a line of output.
    pub vocab: Vec<String>,
    /// Tokens that end the model's turn (never chosen under the grammar).
    pub stop_ids: Vec<u32>,
}

/// Where to find a model: the weights (a GGUF file, a safetensors file, or a
/// directory of safetensors with `config.json`), and optionally a
/// `tokenizer.json` and a chat template that replace the model's own.
#[derive(Debug, Clone, Default)]
pub struct ModelSource {
    pub weights: PathBuf,
    pub tokenizer: Option<PathBuf>,
    pub chat_template: Option<PathBuf>,
}

impl ModelSource {
    pub fn gguf(path: &Path) -> Self {
        Self {
            weights: path.to_path_buf(),
            ..Self::default()
        }
    }
}

fn bad(path: &Path, reason: impl ToString) -> LlmError {
    LlmError::BadModel {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn is_gguf(path: &Path) -> Result<bool, LlmError> {
    use std::io::Read;
    if path.is_dir() {
        return Ok(false);
    }
    let mut f = std::fs::File::open(path).map_err(|source| LlmError::Open {
        path: path.display().to_string(),
        source,
    })?;
    let mut magic = [0u8; 4];
    Ok(f.read_exact(&mut magic).is_ok() && &magic == b"GGUF")
}

/// Loads any supported model. `deltas` (a merged adapter) apply to GGUF
/// weights that are requantised at load.
pub(crate) fn load(
    src: &ModelSource,
    format: WeightFormat,
    deltas: &HashMap<String, Tensor>,
    device: &Device,
) -> Result<Loaded, LlmError> {
    if is_gguf(&src.weights)? {
        load_gguf(src, format, deltas, device)
    } else {
        if !deltas.is_empty() {
            return Err(LlmError::Adapter(
                "adapters merge into GGUF weights only".into(),
            ));
        }
        load_safetensors(src, device)
    }
}

fn load_gguf(
    src: &ModelSource,
    format: WeightFormat,
    deltas: &HashMap<String, Tensor>,
    device: &Device,
) -> Result<Loaded, LlmError> {
    let path = src.weights.as_path();
    let mut file = std::fs::File::open(path).map_err(|source| LlmError::Open {
        path: path.display().to_string(),
        source,
    })?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| bad(path, e))?;
    let md_str = |k: &str| {
        content
            .metadata
            .get(k)
            .and_then(|v| v.to_string().ok().cloned())
    };
    let arch = md_str("general.architecture").unwrap_or_default();
    let token_text = |key: &str| -> String {
        let id = content.metadata.get(key).and_then(|v| v.to_u32().ok());
        let tokens = content
            .metadata
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.to_vec().ok());
        match (id, tokens) {
            (Some(id), Some(t)) => t
                .get(id as usize)
                .and_then(|v| v.to_string().ok().cloned())
                .unwrap_or_default(),
            _ => String::new(),
        }
    };
    let (bos, eos) = (
        token_text("tokenizer.ggml.bos_token_id"),
        token_text("tokenizer.ggml.eos_token_id"),
    );
    let template = match &src.chat_template {
        Some(p) => read_text(p)?,
        None => md_str("tokenizer.chat_template").ok_or_else(|| {
            bad(
                path,
                "no chat template in the file: give one with --chat-template",
            )
        })?,
    };
    let (tokenizer, eos_id) = match &src.tokenizer {
        Some(p) => {
            let tok = Tokenizer::from_file(p).map_err(|e| bad(p, e))?;
            let id = tok.token_to_id(&eos);
            (tok, id)
        }
        None => {
            let (tok, id) = tokenizer_from_gguf(&content, path)?;
            (tok, Some(id))
        }
    };
    let dtype = match format {
        WeightFormat::F32 => Some(GgmlDType::F32),
        WeightFormat::Q8 => Some(GgmlDType::Q8_0),
        WeightFormat::AsStored => None,
    };
    if dtype.is_none() && !deltas.is_empty() {
        return Err(LlmError::Adapter(
            "an adapter is merged into requantised weights: use q8 or f32 weights".into(),
        ));
    }
    let backend = match dtype {
        Some(dt) => {
            let (content, mut bytes) = requantized(content, &mut file, path, dt, deltas)?;
            gguf_backend(&arch, content, &mut bytes, device, path)?
        }
        None => gguf_backend(&arch, content, &mut file, device, path)?,
    };
    finish(
        backend,
        tokenizer,
        ChatTemplate::new(template, bos, eos),
        eos_id,
    )
}

fn gguf_backend<R: std::io::Read + std::io::Seek>(
    arch: &str,
    content: gguf_file::Content,
    reader: &mut R,
    device: &Device,
    path: &Path,
) -> Result<Backend, LlmError> {
    let e = |e| bad(path, e);
    Ok(match arch {
        "llama" => Backend::QLlama(
            quantized_llama::ModelWeights::from_gguf(content, reader, device).map_err(e)?,
        ),
        "qwen2" => Backend::QQwen2(Box::new(
            quantized_qwen2::ModelWeights::from_gguf(content, reader, device).map_err(e)?,
        )),
        "phi3" => Backend::QPhi3(
            quantized_phi3::ModelWeights::from_gguf(false, content, reader, device).map_err(e)?,
        ),
        other => {
            return Err(bad(
                path,
                format!("architecture {other:?} is not supported (llama, qwen2 or phi3)"),
            ))
        }
    })
}

fn read_text(p: &Path) -> Result<String, LlmError> {
    std::fs::read_to_string(p).map_err(|source| LlmError::Open {
        path: p.display().to_string(),
        source,
    })
}

fn read_json(p: &Path) -> Result<serde_json::Value, LlmError> {
    serde_json::from_str(&read_text(p)?).map_err(|e| bad(p, e))
}

/// A special token as `tokenizer_config.json` writes it: a string or `{content}`.
fn special(cfg: &serde_json::Value, key: &str) -> String {
    match &cfg[key] {
        serde_json::Value::String(s) => s.clone(),
        v => v["content"].as_str().unwrap_or_default().to_string(),
    }
}

fn load_safetensors(src: &ModelSource, device: &Device) -> Result<Loaded, LlmError> {
    let w = src.weights.as_path();
    let dir = if w.is_dir() {
        w.to_path_buf()
    } else {
        w.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let files = safetensors_files(w)?;
    let config_path = dir.join("config.json");
    let config_text = read_text(&config_path)?;
    let config: serde_json::Value =
        serde_json::from_str(&config_text).map_err(|e| bad(&config_path, e))?;
    let tok_path = src
        .tokenizer
        .clone()
        .unwrap_or_else(|| dir.join("tokenizer.json"));
    let tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| bad(&tok_path, e))?;
    let tok_cfg_path = tok_path.with_file_name("tokenizer_config.json");
    let tok_cfg = if tok_cfg_path.exists() {
        read_json(&tok_cfg_path)?
    } else {
        serde_json::Value::Null
    };
    let template = match &src.chat_template {
        Some(p) => read_text(p)?,
        None => tokenizer_config_template(&tok_cfg),
    };
    if template.is_empty() {
        return Err(bad(
            &tok_cfg_path,
            "no chat_template for the model: give one with --chat-template",
        ));
    }
    let (bos, eos) = (
        special(&tok_cfg, "bos_token"),
        special(&tok_cfg, "eos_token"),
    );
    let eos_id = tokenizer.token_to_id(&eos);
    let model_type = config["model_type"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Safetensors models run in f32 on the CPU (candle's CPU kernels have no
    // fast bf16 path); a GPU keeps them in bf16.
    let dtype = if device.is_cpu() {
        DType::F32
    } else {
        DType::BF16
    };
    let mut tensors = HashMap::new();
    for f in &files {
        tensors.extend(candle_core::safetensors::load(f, device).map_err(|err| bad(f, err))?);
    }
    let vb = candle_nn::VarBuilder::from_tensors(tensors, dtype, device);
    let backend = safetensors_backend(
        &model_type,
        &config_text,
        &config_path,
        vb,
        dtype,
        device,
        w,
    )?;
    finish(
        backend,
        tokenizer,
        ChatTemplate::new(template, bos, eos),
        eos_id,
    )
}

/// The safetensors files of a model: the file itself, or every
/// `.safetensors` file in the directory, in name order.
fn safetensors_files(w: &Path) -> Result<Vec<PathBuf>, LlmError> {
    let files: Vec<PathBuf> = if w.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(w)
            .map_err(|source| LlmError::Open {
                path: w.display().to_string(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        v.sort();
        v
    } else {
        vec![w.to_path_buf()]
    };
    if files.is_empty() {
        return Err(bad(w, "no .safetensors files there"));
    }
    Ok(files)
}

/// The chat template of a `tokenizer_config.json`: its `chat_template`, or
/// the one named `default` of several; empty when it has none.
fn tokenizer_config_template(tok_cfg: &serde_json::Value) -> String {
    match &tok_cfg["chat_template"] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(named) => named
            .iter()
            .find(|t| t["name"] == "default")
            .and_then(|t| t["template"].as_str())
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    }
}

/// The model of a `config.json`'s `model_type` (llama, qwen2 or phi3), on
/// the weights in `vb`; `weights` names the model in errors.
fn safetensors_backend(
    model_type: &str,
    config_text: &str,
    config_path: &Path,
    vb: candle_nn::VarBuilder,
    dtype: DType,
    device: &Device,
    weights: &Path,
) -> Result<Backend, LlmError> {
    let e = |e: candle_core::Error| bad(weights, e);
    let cfg_err = |err: serde_json::Error| bad(config_path, err);
    Ok(match model_type {
        "llama" | "mistral" => {
            let c: llama::LlamaConfig = serde_json::from_str(config_text).map_err(cfg_err)?;
            let c = c.into_config(false);
            let cache = llama::Cache::new(true, dtype, &c, device).map_err(e)?;
            Backend::Llama(Box::new(llama::Llama::load(vb, &c).map_err(e)?), cache)
        }
        "qwen2" => {
            let c: qwen2::Config = serde_json::from_str(config_text).map_err(cfg_err)?;
            Backend::Qwen2(Box::new(qwen2::ModelForCausalLM::new(&c, vb).map_err(e)?))
        }
        "phi3" => {
            let c: phi3::Config = serde_json::from_str(config_text).map_err(cfg_err)?;
            Backend::Phi3(Box::new(phi3::Model::new(&c, vb).map_err(e)?))
        }
        other => {
            return Err(bad(
                config_path,
                format!("model_type {other:?} is not supported (llama, qwen2 or phi3)"),
            ))
        }
    })
}

fn finish(
    backend: Backend,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    eos: Option<u32>,
) -> Result<Loaded, LlmError> {
    let vocab = token_texts(&tokenizer);
    let mut stop_ids: Vec<u32> = eos.into_iter().collect();
    for t in [
        "<|im_end|>",
        "<|end|>",
        "<|eot_id|>",
        "<|endoftext|>",
        "</s>",
    ] {
        if let Some(id) = tokenizer.token_to_id(t) {
            if !stop_ids.contains(&id) {
                stop_ids.push(id);
            }
        }
    }
    Ok(Loaded {
        backend,
        tokenizer,
        template,
        vocab,
        stop_ids,
    })
}

/// Each token's text as it continues a line. Byte-level tokenizers (GPT-2,
/// Llama 3, Qwen2, SmolLM2) decode a single token faithfully; SentencePiece
/// ones (Llama 2, Phi-3) drop a leading space on their own, so their pieces
/// are read directly: `▁` is a space and `<0x0A>` a byte.
pub(crate) fn token_texts(tok: &Tokenizer) -> Vec<String> {
    let n = tok.get_vocab_size(true) as u32;
    let byte_level = matches!(tok.get_decoder(), Some(DecoderWrapper::ByteLevel(_)));
    (0..n)
        .map(|id| {
            if byte_level {
                return tok.decode(&[id], false).unwrap_or_default();
            }
            let piece = tok.id_to_token(id).unwrap_or_default();
            if let Some(hex) = piece.strip_prefix("<0x").and_then(|h| h.strip_suffix('>')) {
                return u8::from_str_radix(hex, 16)
                    .ok()
                    .filter(u8::is_ascii)
                    .map(|b| char::from(b).to_string())
                    .unwrap_or_default();
            }
            piece.replace('\u{2581}', " ")
        })
        .collect()
}
