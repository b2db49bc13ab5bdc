//! The planner as an r2r node: commands in, plans out, grounded in the latest world model.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rosetta_common::plan::{CommandMessage, PlanMessage, PlanOutcome};
use rosetta_common::rec::{self, log_text};
use rosetta_common::ros::{self, JsonPublisher, Spinner};
use rosetta_common::{topics, WorldModel};

use crate::rules::{self, RulesPlanner};

/// Turn command text into action plans.
#[derive(Debug, Clone, clap::Args)]
pub struct PlannerArgs {
    /// Which planner to run. `rules` is the deterministic stand-in of the walking
    /// skeleton. `llm` runs a GGUF chat model under constrained decoding; it is
    /// EXPERIMENTAL (plan accuracy is not benchmarked yet) and will become the default.
    #[arg(long, default_value = "rules", value_parser = ["rules", "llm"])]
    pub planner: String,
    /// The GGUF model for `--planner llm` (ChatML chat template).
    #[arg(long, env = "ROSETTA_LLM_GGUF")]
    pub model: Option<std::path::PathBuf>,
    /// Before publishing a plan, wait (up to 5 s) until this many nodes subscribe to it.
    #[arg(long, default_value_t = 1)]
    pub min_plan_subscribers: usize,
    /// How long to wait for a first world model from perception before planning without one.
    #[arg(long, default_value_t = 5.0)]
    pub world_wait_s: f64,
}

pub async fn run(args: PlannerArgs) -> anyhow::Result<()> {
    let mut node = ros::create_node("rosetta_planner")?;
    let mut commands = ros::json_subscription::<CommandMessage>(&mut node, topics::COMMAND)?;
    let mut worlds = ros::json_subscription::<WorldModel>(&mut node, topics::OBJECTS)?;
    let plans = JsonPublisher::<PlanMessage>::new(&mut node, topics::PLAN)?;
    let node = Arc::new(Mutex::new(node));
    let _spinner = Spinner::start(node.clone());
    let rec = rec::open_recording("planner");
    let planner = RulesPlanner;
    let llm = match args.planner.as_str() {
        "llm" => {
            let path = args.model.clone().ok_or_else(|| {
                anyhow::anyhow!("--planner llm needs --model FILE.gguf (or ROSETTA_LLM_GGUF)")
            })?;
            tracing::info!(path = %path.display(), "loading the language model");
            let loaded =
                tokio::task::spawn_blocking(move || crate::llm::LlmPlanner::load(&path)).await??;
            tracing::warn!("the language-model planner is experimental: its plan accuracy is not benchmarked yet");
            Some(Arc::new(loaded))
        }
        _ => None,
    };
    let planner_name = if llm.is_some() {
        "llm-constrained"
    } else {
        rules::NAME
    };

    let latest_world: Arc<Mutex<Option<WorldModel>>> = Arc::new(Mutex::new(None));
    let lw = latest_world.clone();
    tokio::spawn(async move {
        while let Some(w) = worlds.next().await {
            if let Ok(mut g) = lw.lock() {
                *g = Some(w);
            }
        }
    });

    tracing::info!(planner = planner_name, "planner ready");
    let work = async {
        while let Some(cmd) = commands.next().await {
            let current =
                |lw: &Arc<Mutex<Option<WorldModel>>>| lw.lock().ok().and_then(|g| g.clone());
            let has_world = || current(&latest_world).is_some();
            if ros::wait_until(
                "a world model",
                Duration::from_secs_f64(args.world_wait_s),
                has_world,
            )
            .await
            .is_err()
            {
                tracing::warn!("no world model from perception yet; planning against an empty one");
            }
            let world = current(&latest_world).unwrap_or_default();
            let t0 = Instant::now();
            let outcome = match &llm {
                Some(_) if cmd.text.trim().is_empty() => PlanOutcome::Rejected {
                    reason: rules::PlanError::Empty.to_string(),
                },
                Some(model) => {
                    let (model, text, w) = (model.clone(), cmd.text.clone(), world.clone());
                    match tokio::task::spawn_blocking(move || model.plan(&text, &w)).await {
                        Ok(Ok(out)) => {
                            let took_s = out.prefill_s + out.decode_s;
                            log_text(
                                &rec,
                                "planner",
                                "INFO",
                                &format!("model output ({took_s:.2} s): {:?}", out.raw),
                            );
                            match out.decoded {
                                crate::grammar::Decoded::Plan(steps) => PlanOutcome::Plan { steps },
                                crate::grammar::Decoded::Refused => PlanOutcome::Rejected {
                                    reason: "the language model found no safe plan over the known objects".into(),
                                },
                            }
                        }
                        Ok(Err(e)) => PlanOutcome::Rejected {
                            reason: format!("the language model failed: {e}"),
                        },
                        Err(e) => PlanOutcome::Rejected {
                            reason: format!("the language model crashed: {e}"),
                        },
                    }
                }
                None => match planner.plan(&cmd.text, &world) {
                    Ok(steps) => PlanOutcome::Plan { steps },
                    Err(e) => PlanOutcome::Rejected {
                        reason: e.to_string(),
                    },
                },
            };
            let msg = PlanMessage {
                command_id: cmd.command_id,
                command: cmd.text.clone(),
                outcome,
                planner: planner_name.to_string(),
                planning_time_s: t0.elapsed().as_secs_f64(),
            };
            rec::set_sim_time(&rec, world.stamp_s);
            log_plan(&rec, &msg);
            match &msg.outcome {
                PlanOutcome::Plan { steps } => tracing::info!(
                    command = %cmd.text,
                    plan = %steps.iter().map(|s| s.describe()).collect::<Vec<_>>().join(" -> "),
                    "planned"
                ),
                PlanOutcome::Rejected { reason } => {
                    tracing::warn!(command = %cmd.text, %reason, "refused")
                }
            }
            let enough = || plans.subscribers() >= args.min_plan_subscribers;
            if ros::wait_until("plan subscribers", Duration::from_secs(5), enough)
                .await
                .is_err()
            {
                tracing::warn!("publishing the plan with fewer subscribers than expected");
            }
            if let Err(e) = plans.publish(&msg) {
                tracing::error!(error = %e, "cannot publish the plan");
            }
        }
    };
    tokio::select! {
        _ = ros::shutdown_signal() => {}
        _ = work => {}
    }
    let _ = rec.flush_blocking();
    Ok(())
}

fn log_plan(rec: &rerun::RecordingStream, msg: &PlanMessage) {
    let body = match &msg.outcome {
        PlanOutcome::Plan { steps } => {
            let mut s = format!("## Plan for \"{}\"\n\n", msg.command);
            for (i, step) in steps.iter().enumerate() {
                s.push_str(&format!("{}. `{}`\n", i + 1, step.describe()));
            }
            s
        }
        PlanOutcome::Rejected { reason } => {
            format!("## Refused: \"{}\"\n\n{}\n", msg.command, reason)
        }
    };
    let _ = rec.log("plan/steps", &rerun::TextDocument::from_markdown(body));
    let raw = serde_json::to_string(&msg.outcome).unwrap_or_default();
    log_text(
        rec,
        "planner",
        "INFO",
        &format!("command {:?} -> {raw}", msg.command),
    );
}
