//! The planner benchmark: runs the command suite (`planner/suite/commands.toml`)
//! through each planner and prints plan accuracy, refusal precision and, for
//! the language model, load time, time to first token, tokens per second and
//! plan latency. Figures are printed, never asserted.
//!
//! ```text
//! cargo run --release -p rosetta-planner --bin plan-bench -- --planner rules,hybrid
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use rosetta_common::Skill;
use rosetta_planner::grammar::render;
use rosetta_planner::llm::{LlmOutput, LlmPlanner, ModelArgs};
use rosetta_planner::pipeline::{Pipeline, PlannerKind};
use rosetta_planner::suite::{score, Case, Expected, Score, Suite};

/// Benchmark the planners on the command suite.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Which planners to run, through the pipeline the planner node runs
    /// (model or reader, grounding, validation): any of `hybrid` (the
    /// default planner), `llm` (the model alone), `rules` (no model).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [PlannerKind::Rules, PlannerKind::Hybrid, PlannerKind::Llm])]
    planner: Vec<PlannerKind>,
    /// Which suite: the original one (`commands`), the held-out one
    /// (`heldout`, written apart from the corpus and the rules), or `both`
    /// (each reported on its own).
    #[arg(long, default_value = "both", value_parser = ["commands", "heldout", "both"])]
    suite: String,
    #[command(flatten)]
    model: ModelArgs,
    /// Run only the first N cases (0: all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Run only cases of this category (basic, paraphrase, multi, relation, ...).
    #[arg(long)]
    category: Option<String>,
    /// Print every case the planner got wrong.
    #[arg(long)]
    show_failures: bool,
    /// Print each case's outcome as it finishes.
    #[arg(long)]
    each: bool,
    /// After the suite, time this many greedy tokens without the grammar, here
    /// and with llama.cpp (llama-cpp-python, where installed) on the same file
    /// (0: skip).
    #[arg(long, default_value_t = 64)]
    speed_tokens: usize,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Default, serde::Serialize)]
struct Report {
    planner: String,
    cases: usize,
    exact: usize,
    equivalent: usize,
    refused: usize,
    refused_correctly: usize,
    should_refuse: usize,
    per_category: std::collections::BTreeMap<String, (usize, usize)>,
    load_s: Option<f64>,
    latency_s: Vec<f64>,
    latency_4_step_s: Vec<f64>,
    first_token_s: Vec<f64>,
    tokens: usize,
    chosen_tokens: usize,
    forward_passes: usize,
    decode_s: f64,
    prefill_tokens: usize,
    prefill_s: f64,
    /// Commands whose world lines were already in the KV cache.
    world_cached: usize,
    /// Commands the language model planned (all for `llm`, the ones the
    /// reader could not read for `hybrid`).
    model_calls: usize,
    failures: Vec<String>,
}

fn pct(a: usize, b: usize) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("{:.1}% ({a}/{b})", 100.0 * a as f64 / b as f64)
    }
}

fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((s.len() - 1) as f64 * q).round() as usize;
    s.get(i).copied()
}

fn fmt_s(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.3} s"))
}

impl Report {
    /// One model run's tokens and timings; `fixed_prompt_tokens` tells
    /// whether the world's lines came from the KV cache.
    fn add_model_run(&mut self, m: &LlmOutput, fixed_prompt_tokens: Option<usize>) {
        self.first_token_s.push(m.first_token_s);
        self.tokens += m.generated_tokens + m.forced_tokens;
        self.chosen_tokens += m.generated_tokens;
        self.forward_passes += m.forward_passes;
        self.decode_s += m.decode_s;
        self.prefill_tokens += m.prefilled_tokens;
        self.prefill_s += m.prefill_s;
        if let Some(fixed) = fixed_prompt_tokens {
            self.world_cached +=
                usize::from(m.prefilled_tokens < m.prompt_tokens.saturating_sub(fixed));
        }
        self.model_calls += 1;
    }

    fn add(&mut self, case: &Case, got: Option<&[Skill]>, why: &str) {
        let s: Score = score(&case.expected, got);
        self.cases += 1;
        self.exact += s.exact as usize;
        self.equivalent += s.equivalent as usize;
        let e = self.per_category.entry(case.category.clone()).or_default();
        e.0 += s.equivalent as usize;
        e.1 += 1;
        if s.refused {
            self.refused += 1;
            self.refused_correctly += (case.expected == Expected::Refuse) as usize;
        }
        self.should_refuse += (case.expected == Expected::Refuse) as usize;
        if !s.equivalent {
            let want = match &case.expected {
                Expected::Refuse => "refuse".to_string(),
                Expected::Plan(p) => render(p).replace('\n', "; "),
            };
            let gotten = got.map_or(format!("refuse ({why})"), |p| render(p).replace('\n', "; "));
            self.failures.push(format!(
                "[{}] {:?}\n    want: {want}\n    got:  {gotten}",
                case.category, case.command
            ));
        }
    }

    fn print(&self, show_failures: bool) {
        println!("\n== planner: {} ==", self.planner);
        println!(
            "plan accuracy, exact:              {}",
            pct(self.exact, self.cases)
        );
        println!(
            "plan accuracy, up to order:        {}",
            pct(self.equivalent, self.cases)
        );
        println!(
            "refusal precision:                 {}",
            pct(self.refused_correctly, self.refused)
        );
        println!(
            "refusal recall:                    {}",
            pct(self.refused_correctly, self.should_refuse)
        );
        for (cat, (ok, n)) in &self.per_category {
            println!("  {cat:<12} {}", pct(*ok, *n));
        }
        if let Some(l) = self.load_s {
            println!("model load (incl. fixed-prompt prefill): {l:.2} s");
            println!(
                "commands the model planned:        {} of {}",
                self.model_calls, self.cases
            );
        }
        println!(
            "plan latency p50 / p95:            {} / {}",
            fmt_s(quantile(&self.latency_s, 0.5)),
            fmt_s(quantile(&self.latency_s, 0.95))
        );
        if !self.latency_4_step_s.is_empty() {
            println!(
                "plan latency, 4-step plans, p50:   {} (n = {})",
                fmt_s(quantile(&self.latency_4_step_s, 0.5)),
                self.latency_4_step_s.len()
            );
        }
        if !self.first_token_s.is_empty() {
            println!(
                "time to first token p50:           {}",
                fmt_s(quantile(&self.first_token_s, 0.5))
            );
            println!(
                "command prefill:                   {:.0} tok/s; the world's lines came from the cache for {} of {} commands",
                self.prefill_tokens as f64 / self.prefill_s.max(1e-9),
                self.world_cached,
                self.first_token_s.len()
            );
            println!(
                "decode:                            {:.1} tok/s ({} tokens, {} chosen by the model, {} forward passes)",
                self.tokens as f64 / self.decode_s.max(1e-9),
                self.tokens,
                self.chosen_tokens,
                self.forward_passes
            );
        }
        if show_failures {
            for f in &self.failures {
                println!("  {f}");
            }
        }
    }
}

/// Raw speed on one prompt without the grammar: candle here, and llama.cpp
/// (llama-cpp-python, where installed) on the same GGUF file.
fn speed_side_by_side(
    llm: &LlmPlanner,
    model: &std::path::Path,
    world: &rosetta_common::WorldModel,
    n: usize,
) -> anyhow::Result<()> {
    let turn = llm.turn("put the red cube in the blue bin", world);
    let (prefill, decode) = llm.speed_probe(&turn, n)?;
    println!("speed, one command after the cached prompt, {n} greedy tokens without the grammar:");
    println!("  candle (this planner):   prefill {prefill:.0} tok/s, decode {decode:.1} tok/s");
    let tmp = std::env::temp_dir();
    let pid = std::process::id();
    let prefix_file = tmp.join(format!("rosetta-speed-prefix-{pid}.txt"));
    let turn_file = tmp.join(format!("rosetta-speed-turn-{pid}.txt"));
    std::fs::write(&prefix_file, llm.fixed_prompt())?;
    std::fs::write(&turn_file, &turn)?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/llama_cpp_speed.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(model)
        .arg(&prefix_file)
        .arg(&turn_file)
        .arg(n.to_string())
        .arg(threads.to_string())
        .output();
    let _ = std::fs::remove_file(&prefix_file);
    let _ = std::fs::remove_file(&turn_file);
    let figures: serde_json::Value = match out {
        Ok(o) if o.status.success() => serde_json::from_slice(&o.stdout).unwrap_or_default(),
        Ok(o) => {
            serde_json::json!({ "error": String::from_utf8_lossy(&o.stderr).trim().to_string() })
        }
        Err(e) => serde_json::json!({ "error": format!("cannot run python3: {e}") }),
    };
    match figures["error"].as_str() {
        Some(e) => println!("  llama.cpp: not measured: {e}"),
        None => println!(
            "  llama.cpp {} ({threads} threads): prefill {:.0} tok/s, decode {:.1} tok/s",
            figures["version"].as_str().unwrap_or("?"),
            figures["prefill_tok_s"].as_f64().unwrap_or(f64::NAN),
            figures["decode_tok_s"].as_f64().unwrap_or(f64::NAN),
        ),
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let suites = load_suites(&args.suite)?;
    let llm = if args.planner.iter().any(|k| k.needs_model()) {
        Some(std::sync::Arc::new(load_model(&args.model)?))
    } else {
        None
    };
    let mut reports = Vec::new();
    for (suite_name, suite) in &suites {
        let mut cases: Vec<&Case> = suite
            .cases
            .iter()
            .filter(|c| args.category.as_ref().is_none_or(|k| &c.category == k))
            .collect();
        if args.limit > 0 {
            cases.truncate(args.limit);
        }
        println!("\n##### suite {suite_name}: {} cases", cases.len());
        for kind in &args.planner {
            let pipeline = Pipeline::new(*kind, llm.clone()).map_err(anyhow::Error::msg)?;
            let r = bench(
                &pipeline,
                &format!("{kind} on {suite_name}"),
                suite,
                &cases,
                args.each,
            );
            r.print(args.show_failures);
            reports.push(r);
        }
    }
    if args.speed_tokens > 0 {
        if let (Some(l), Ok(src)) = (&llm, args.model.source()) {
            let world = suites
                .first()
                .and_then(|(_, s)| s.worlds.get("default").cloned())
                .unwrap_or_default();
            speed_side_by_side(l, &src.weights, &world, args.speed_tokens)?;
        }
    }
    if let Some(path) = &args.json {
        write_json(path, &reports)?;
    }
    Ok(())
}

/// The suites `--suite` names: `commands`, `heldout` or `both`.
fn load_suites(which: &str) -> anyhow::Result<Vec<(&'static str, Suite)>> {
    let mut suites = Vec::new();
    if which != "heldout" {
        suites.push((
            "commands",
            Suite::committed().context("loading the command suite")?,
        ));
    }
    if which != "commands" {
        suites.push((
            "heldout",
            Suite::heldout().context("loading the held-out suite")?,
        ));
    }
    Ok(suites)
}

/// Loads the language model, with a spinner, and says what was loaded.
fn load_model(model: &ModelArgs) -> anyhow::Result<LlmPlanner> {
    let path = model.source()?.weights;
    let spinner = ProgressBar::new_spinner().with_message(format!("loading {}", path.display()));
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let llm = model.load()?;
    spinner.finish_and_clear();
    println!(
        "model: {} ({} family, {:?}, adapter {}), on {:?}, loaded in {:.2} s",
        path.display(),
        llm.family,
        model.llm_weights,
        model
            .adapter()
            .as_ref()
            .map_or("none".into(), |a| a.display().to_string()),
        llm.device(),
        llm.load_s
    );
    Ok(llm)
}

/// Runs `cases` of `suite` through one pipeline; with `each`, prints each
/// case's outcome as it finishes.
fn bench(pipeline: &Pipeline, name: &str, suite: &Suite, cases: &[&Case], each: bool) -> Report {
    let llm = pipeline.model();
    let mut r = Report {
        planner: name.to_string(),
        load_s: llm
            .filter(|_| pipeline.kind().needs_model())
            .map(|l| l.load_s),
        ..Default::default()
    };
    let world = |name: &str| suite.worlds.get(name).cloned().unwrap_or_default();
    let bar = ProgressBar::new(cases.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed} < {eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for case in cases {
        bar.set_message(case.category.clone());
        let t0 = Instant::now();
        let mut out = pipeline.plan(&case.command, &world(&case.world));
        if out.survey {
            // The node looks around and plans again; the suite's world is
            // all there is to see, so the second plan is the outcome.
            out = pipeline.plan_attempt(&case.command, &world(&case.world), None, false);
        }
        let total = t0.elapsed().as_secs_f64();
        r.latency_s.push(total);
        if let Some(m) = &out.model {
            r.add_model_run(m, llm.map(|l| l.fixed_prompt_tokens()));
        }
        let why = match &out.outcome {
            rosetta_common::PlanOutcome::Rejected { reason } => reason.clone(),
            _ => String::new(),
        };
        if out.steps().is_some_and(|s| s.len() == 4) {
            r.latency_4_step_s.push(total);
        }
        r.add(case, out.steps(), &why);
        if each {
            let ok = score(&case.expected, out.steps());
            let got = out
                .steps()
                .map_or(format!("refuse ({why})"), |s| render(s).replace('\n', "; "));
            bar.println(format!(
                "{} {:.2} s [{}] {:?} -> {got} (by {})",
                if ok.equivalent { "ok  " } else { "FAIL" },
                total,
                case.category,
                case.command,
                out.by
            ));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    r
}

/// Writes the reports' figures as JSON.
fn write_json(path: &std::path::Path, reports: &[Report]) -> anyhow::Result<()> {
    let figures: Vec<_> = reports
        .iter()
        .map(|r| {
            serde_json::json!({
                "planner": r.planner,
                "cases": r.cases,
                "accuracy_exact": r.exact as f64 / r.cases.max(1) as f64,
                "accuracy_equivalent": r.equivalent as f64 / r.cases.max(1) as f64,
                "refusal_precision": r.refused_correctly as f64 / r.refused.max(1) as f64,
                "refusal_recall": r.refused_correctly as f64 / r.should_refuse.max(1) as f64,
                "load_s": r.load_s,
                "latency_p50_s": quantile(&r.latency_s, 0.5),
                "latency_p95_s": quantile(&r.latency_s, 0.95),
                "latency_4_step_p50_s": quantile(&r.latency_4_step_s, 0.5),
                "first_token_p50_s": quantile(&r.first_token_s, 0.5),
                "decode_tok_s": r.tokens as f64 / r.decode_s.max(1e-9),
                "per_category": r.per_category,
            })
        })
        .collect();
    std::fs::write(path, serde_json::to_string_pretty(&figures)?)
        .with_context(|| format!("writing {}", path.display()))
}
