//! Other models than the default: a llama-, a qwen2- and a phi-3-family chat
//! model, each built by the test itself (random weights, a byte-level
//! tokenizer, the family's chat template), load from safetensors and plan
//! under the grammar. Their plans are arbitrary, but always valid.

#![allow(clippy::unwrap_used)] // test helpers: a failure to build the tiny model is a test failure

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::{llama, phi3, qwen2};
use rosetta_planner::chat_model::{ChatTemplate, ModelSource};
use rosetta_planner::grammar::Decoded;
use rosetta_planner::llm::{LlmPlanner, WeightFormat};
use serde_json::json;

const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
const PHI3: &str = "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";
const LLAMA3: &str = "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
/// Like Mistral's: no system role, and it says so.
const NO_SYSTEM: &str = "{% for message in messages %}{% if message['role'] == 'system' %}{{ raise_exception('no system role') }}{% elif message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}";

const SPECIALS: [&str; 10] = [
    "<|im_start|>",
    "<|im_end|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
];
const VOCAB: usize = 256 + SPECIALS.len();

/// A byte-level BPE tokenizer over single bytes (no merges) and the chat
/// control tokens, saved as `tokenizer.json` with its `tokenizer_config.json`.
fn write_tokenizer(dir: &Path, template: &str, bos: &str, eos: &str) {
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort();
    let vocab: tokenizers::models::bpe::Vocab = alphabet
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, vec![])
        .build()
        .unwrap();
    let mut tok = tokenizers::Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(ByteLevel::default()));
    let specials: Vec<tokenizers::AddedToken> = SPECIALS
        .iter()
        .map(|s| tokenizers::AddedToken::from(s.to_string(), true))
        .collect();
    tok.add_special_tokens(specials).unwrap();
    assert_eq!(tok.get_vocab_size(true), VOCAB);
    tok.save(dir.join("tokenizer.json"), false).unwrap();
    let cfg =
        json!({ "chat_template": template, "bos_token": bos, "eos_token": { "content": eos } });
    std::fs::write(dir.join("tokenizer_config.json"), cfg.to_string()).unwrap();
}

/// Random weights for a model built by `build`, saved as `model.safetensors`.
fn write_weights(dir: &Path, config: &serde_json::Value, build: impl FnOnce(VarBuilder)) {
    let varmap = VarMap::new();
    build(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu));
    varmap.save(dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

fn common_config(model_type: &str) -> serde_json::Value {
    json!({
        "model_type": model_type,
        "vocab_size": VOCAB,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": false,
        "hidden_act": "silu",
        "bos_token_id": 0,
        "eos_token_id": 1,
        "sliding_window": 4096,
        "max_window_layers": 2,
        "use_sliding_window": false
    })
}

fn world() -> rosetta_common::WorldModel {
    let suite = rosetta_planner::suite::Suite::committed().unwrap();
    suite.worlds["default"].clone()
}

/// Loads the model in `dir` and plans a command with it.
fn plans_validly(dir: &Path, family: &str) {
    let src = ModelSource {
        weights: dir.join("model.safetensors"),
        ..ModelSource::default()
    };
    let planner = LlmPlanner::load_source(&src, WeightFormat::F32, None, Device::Cpu)
        .unwrap_or_else(|e| panic!("{family}: {e}"));
    assert_eq!(planner.family, family);
    let out = planner
        .plan("put the red cube in the blue bin", &world())
        .unwrap_or_else(|e| panic!("{family}: {e}"));
    eprintln!("{family}: {:?}", out.raw);
    // Random weights choose anything, but only inside the plan language.
    match out.decoded {
        Decoded::Refused => assert_eq!(out.raw, "refuse"),
        Decoded::Plan(steps) => assert!(!steps.is_empty(), "{}", out.raw),
    }
    assert!(out.generated_tokens > 0);
    // The same world again: its lines come from the KV cache, and the plan
    // is the same. Another world, then the first again: each is primed anew.
    let again = planner
        .plan("put the red cube in the blue bin", &world())
        .unwrap_or_else(|e| panic!("{family}: {e}"));
    assert_eq!(
        again.raw, out.raw,
        "{family}: the cached world changed the plan"
    );
    assert!(
        again.prefilled_tokens < out.prefilled_tokens,
        "{family}: the world's lines were prefilled again ({} then {} tokens)",
        out.prefilled_tokens,
        again.prefilled_tokens
    );
    let mut other = world();
    other.objects.retain(|o| o.id != "blue_cube");
    planner
        .plan("put the red cube in the blue bin", &other)
        .unwrap_or_else(|e| panic!("{family}: {e}"));
    let back = planner
        .plan("put the red cube in the blue bin", &world())
        .unwrap_or_else(|e| panic!("{family}: {e}"));
    assert_eq!(
        back.raw, out.raw,
        "{family}: a world change left a stale cache"
    );
    assert_eq!(back.prefilled_tokens, out.prefilled_tokens);
}

#[test]
fn a_qwen2_model_from_safetensors_plans_with_its_chatml_template() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common_config("qwen2");
    let c: qwen2::Config = serde_json::from_value(cfg.clone()).unwrap();
    write_weights(dir.path(), &cfg, |vb| {
        qwen2::ModelForCausalLM::new(&c, vb).unwrap();
    });
    write_tokenizer(dir.path(), CHATML, "<|im_start|>", "<|im_end|>");
    plans_validly(dir.path(), "qwen2");
}

#[test]
fn a_phi3_model_from_safetensors_plans_with_its_template() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common_config("phi3");
    let c: phi3::Config = serde_json::from_value(cfg.clone()).unwrap();
    write_weights(dir.path(), &cfg, |vb| {
        phi3::Model::new(&c, vb).unwrap();
    });
    write_tokenizer(dir.path(), PHI3, "<|user|>", "<|end|>");
    plans_validly(dir.path(), "phi3");
}

#[test]
fn a_llama_model_from_safetensors_plans_with_a_llama3_template() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common_config("llama");
    let c: llama::LlamaConfig = serde_json::from_value(cfg.clone()).unwrap();
    let c = c.into_config(false);
    write_weights(dir.path(), &cfg, |vb| {
        llama::Llama::load(vb, &c).unwrap();
    });
    write_tokenizer(dir.path(), LLAMA3, "<|begin_of_text|>", "<|eot_id|>");
    plans_validly(dir.path(), "llama");
}

/// A tiny qwen2 GGUF, written by the test: candle's quantised qwen2 cannot be
/// forked, so the planner primes it again for every command; two plans of
/// the same command must then be the same.
#[test]
fn a_qwen2_gguf_with_its_own_vocabulary_and_template_plans_the_same_twice() {
    use candle_core::quantized::{gguf_file::Value, GgmlDType, QTensor};
    use candle_core::Tensor;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-qwen2.gguf");
    let mut alphabet: Vec<char> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
        .into_iter()
        .collect();
    alphabet.sort();
    let mut tokens: Vec<String> = alphabet.iter().map(char::to_string).collect();
    tokens.push("re".into());
    tokens.extend(["<|im_start|>", "<|im_end|>"].map(String::from));
    let n = tokens.len();
    let types: Vec<Value> = (0..n)
        .map(|i| Value::I32(if i + 2 >= n { 3 } else { 1 }))
        .collect();
    let (hidden, kv, ffn) = (32usize, 16usize, 64usize);
    let md: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("qwen2".into())),
        ("qwen2.attention.head_count", Value::U32(4)),
        ("qwen2.attention.head_count_kv", Value::U32(2)),
        ("qwen2.embedding_length", Value::U32(hidden as u32)),
        ("qwen2.context_length", Value::U32(4096)),
        ("qwen2.block_count", Value::U32(2)),
        ("qwen2.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        (
            "tokenizer.ggml.tokens",
            Value::Array(tokens.iter().cloned().map(Value::String).collect()),
        ),
        (
            "tokenizer.ggml.merges",
            Value::Array(vec![Value::String("r e".into())]),
        ),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        ("tokenizer.ggml.bos_token_id", Value::U32(n as u32 - 2)),
        ("tokenizer.ggml.eos_token_id", Value::U32(n as u32 - 1)),
        ("tokenizer.chat_template", Value::String(CHATML.into())),
    ];
    let dev = Device::Cpu;
    let q = |dims: &[usize]| {
        let t = Tensor::randn(0f32, 0.2, dims, &dev).unwrap();
        QTensor::quantize(&t, GgmlDType::F32).unwrap()
    };
    let mut tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), q(&[n, hidden])),
        ("output_norm.weight".into(), q(&[hidden])),
        ("output.weight".into(), q(&[n, hidden])),
    ];
    for i in 0..2 {
        for (name, dims) in [
            ("attn_q.weight", vec![hidden, hidden]),
            ("attn_k.weight", vec![kv, hidden]),
            ("attn_v.weight", vec![kv, hidden]),
            ("attn_q.bias", vec![hidden]),
            ("attn_k.bias", vec![kv]),
            ("attn_v.bias", vec![kv]),
            ("attn_output.weight", vec![hidden, hidden]),
            ("ffn_gate.weight", vec![ffn, hidden]),
            ("ffn_up.weight", vec![ffn, hidden]),
            ("ffn_down.weight", vec![hidden, ffn]),
            ("attn_norm.weight", vec![hidden]),
            ("ffn_norm.weight", vec![hidden]),
        ] {
            tensors.push((format!("blk.{i}.{name}"), q(&dims)));
        }
    }
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(&path).unwrap();
    candle_core::quantized::gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
    drop(f);

    let planner = LlmPlanner::load_source(&ModelSource::gguf(&path), WeightFormat::Q8, None, dev)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(planner.family, "qwen2");
    assert!(planner.fixed_prompt().starts_with("<|im_start|>system\n"));
    let plan = |c: &str| {
        planner
            .plan(c, &world())
            .unwrap_or_else(|e| panic!("{e}"))
            .raw
    };
    let first = plan("put the red cube in the blue bin");
    let _ = plan("go to the dock");
    assert_eq!(plan("put the red cube in the blue bin"), first);
}

#[test]
fn templates_split_around_the_command() {
    let ex = vec![(
        "go to the dock".to_string(),
        "navigate_to dock\ndone".to_string(),
    )];
    let t = ChatTemplate::new(PHI3.into(), "<s>".into(), "<|end|>".into());
    let (before, after) = t.split("Plan.", &ex).unwrap();
    assert_eq!(
        before,
        "<|system|>\nPlan.<|end|>\n<|user|>\ngo to the dock<|end|>\n<|assistant|>\nnavigate_to dock\ndone<|end|>\n<|user|>\n"
    );
    assert_eq!(after, "<|end|>\n<|assistant|>\n");
    let t = ChatTemplate::new(
        LLAMA3.into(),
        "<|begin_of_text|>".into(),
        "<|eot_id|>".into(),
    );
    let (before, after) = t.split("Plan.", &[]).unwrap();
    assert_eq!(
        before,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nPlan.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
    );
    assert_eq!(
        after,
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    // A template without a system role gets the instructions in the first user turn.
    let t = ChatTemplate::new(NO_SYSTEM.into(), "<s>".into(), "</s>".into());
    let (before, after) = t.split("Plan.", &ex).unwrap();
    assert_eq!(
        before,
        "[INST] Plan.\n\ngo to the dock [/INST]navigate_to dock\ndone</s>[INST] "
    );
    assert_eq!(after, " [/INST]");
}

#[test]
fn a_model_without_config_or_template_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"not really").unwrap();
    let src = ModelSource {
        weights: dir.path().join("model.safetensors"),
        ..ModelSource::default()
    };
    let err = LlmPlanner::load_source(&src, WeightFormat::F32, None, Device::Cpu)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("config.json"), "{err}");
}
