//! The closed-loop planner benchmark: commands of a suite, each through the
//! whole stack on the embedded sim (`rosetta demo`, every node its own
//! process, over real ROS 2), judged on the sim's ground truth against what
//! the command's expected plan would leave behind: each placed cube in its
//! bin, a picked one held, the robot at the place it was sent to, nothing
//! else moved, no collision; a command that must be refused is refused with
//! nothing moved. Prints task success, "succeeded" reports whose goal does
//! not hold, refusals, and per category. Figures are printed, never asserted.
//!
//! With `--random-scenes N`, it runs N generated scenes instead
//! (`--scene random --seed S`, seeds from `--first-seed`), each with a
//! command written from the scene: "put the <thing> in the <container>",
//! where the thing is described by colour and a word for its category, and
//! by its side where another of its colour and kind stands beside it; when
//! the description fits two things (on purpose, in some scenes), the right
//! answer is a refusal that moves nothing.
//!
//! ```text
//! source .local/env.sh
//! ./target/debug/closed-loop-bench --suite heldout --limit 40
//! ./target/debug/closed-loop-bench --random-scenes 50 --each
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use rosetta_common::goal::Goal;
use rosetta_common::report::{DemoOutcome, DemoReport};
use rosetta_common::status::GroundTruth;
use rosetta_common::world::{parse_places, DEFAULT_PLACES_TOML};
use rosetta_planner::pipeline::goals_of;
use rosetta_planner::suite::{Case, Expected, Suite};

/// Run suite commands through the whole stack and judge them on ground truth.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Which suite: `heldout` (written apart from the reader and the corpus) or `commands`.
    #[arg(long, default_value = "heldout", value_parser = ["heldout", "commands"])]
    suite: String,
    /// How many commands to run (spread evenly over the suite's default-world cases).
    #[arg(long, default_value_t = 40)]
    limit: usize,
    /// Only this category.
    #[arg(long)]
    category: Option<String>,
    /// The planner the stack runs (`hybrid`, `rules`, `llm`).
    #[arg(long, default_value = "hybrid")]
    planner: String,
    /// The ROS 2 domain the runs use.
    #[arg(long, default_value_t = 120)]
    domain_id: u32,
    /// Give up on one command after this many wall seconds.
    #[arg(long, default_value_t = 300.0)]
    timeout_s: f64,
    /// Print each case as it ends.
    #[arg(long)]
    each: bool,
    /// Keep the episodes here (default: a temporary folder).
    #[arg(long)]
    episodes: Option<PathBuf>,
    /// Run this many generated scenes (`--scene random --seed S`) with a
    /// command written from each, instead of suite commands.
    #[arg(long)]
    random_scenes: Option<u64>,
    /// The first generated scene's seed; the next ones follow.
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
}

/// Where a tolerance on "at a place" and "unmoved" applies (metres).
const AT_PLACE_M: f64 = 0.35;
const AT_OBJECT_M: f64 = 0.9;
const UNMOVED_M: f64 = 0.02;

/// Whether the ground truth shows what the expected plan would leave behind.
fn judge(case: &Case, report: &DemoReport, start: &GroundTruth) -> Result<(), String> {
    let Some(truth) = &report.ground_truth else {
        return Err("no ground truth in the report".into());
    };
    if truth.collisions > 0 {
        return Err(format!("{} collision steps", truth.collisions));
    }
    let obj = |id: &str| truth.objects.iter().find(|o| o.id == id);
    let moved = |id: &str| {
        let (Some(a), Some(b)) = (obj(id), start.objects.iter().find(|o| o.id == id)) else {
            return true;
        };
        (0..3).any(|k| (a.position_m[k] - b.position_m[k]).abs() > UNMOVED_M)
    };
    let steps = match &case.expected {
        Expected::Refuse => {
            if report.outcome != DemoOutcome::Refused {
                return Err(format!(
                    "not refused: {} ({})",
                    report.outcome, report.message
                ));
            }
            let p = truth.robot_pose;
            if p.x_m.hypot(p.y_m) > UNMOVED_M {
                return Err("refused, but the robot moved".into());
            }
            return match truth.objects.iter().find(|o| moved(&o.id)) {
                Some(o) => Err(format!("refused, but {} moved", o.id)),
                None => Ok(()),
            };
        }
        Expected::Plan(steps) => steps,
    };
    let goals = goals_of(steps);
    let places = parse_places(DEFAULT_PLACES_TOML).unwrap_or_default();
    let mut touched: Vec<&str> = Vec::new();
    for g in &goals {
        match g {
            Goal::InContainer { object, container } => {
                touched.push(object);
                let o = obj(object).ok_or_else(|| format!("no {object} in the truth"))?;
                if o.in_container.as_deref() != Some(container.as_str()) {
                    return Err(format!(
                        "{object} is not in {container} (at {:.2?}, in {:?})",
                        o.position_m, o.in_container
                    ));
                }
            }
            Goal::Holding { object } => {
                touched.push(object);
                if !obj(object).is_some_and(|o| o.held) {
                    return Err(format!("{object} is not held"));
                }
            }
            Goal::At { target } => {
                let p = truth.robot_pose;
                let (point, tol) = match places.iter().find(|pl| &pl.id == target) {
                    Some(pl) => ([pl.pose.x_m, pl.pose.y_m], AT_PLACE_M),
                    None => match obj(target) {
                        Some(o) => ([o.position_m[0], o.position_m[1]], AT_OBJECT_M),
                        None => return Err(format!("no {target} to be at")),
                    },
                };
                let d = (p.x_m - point[0]).hypot(p.y_m - point[1]);
                if d > tol {
                    return Err(format!("the robot is {d:.2} m from {target}"));
                }
            }
        }
    }
    // Picked cubes may end elsewhere in a sequence; the rest stay put.
    for s in steps {
        if let rosetta_common::Skill::Pick { object } = s {
            touched.push(object);
        }
    }
    if let Some(o) = truth
        .objects
        .iter()
        .find(|o| !touched.contains(&o.id.as_str()) && moved(&o.id))
    {
        return Err(format!("{} moved, though the command did not ask", o.id));
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(n) = args.random_scenes {
        return random_scenes(&args, n);
    }
    let suite = match args.suite.as_str() {
        "commands" => Suite::committed(),
        _ => Suite::heldout(),
    }
    .context("loading the suite")?;
    // The demo runs the default scene: cases of the default world, and of
    // the world just after start (the bins not seen yet), which is the same scene.
    let pool: Vec<&Case> = suite
        .cases
        .iter()
        .filter(|c| c.world == "default" || c.world == "cubes_only")
        .filter(|c| args.category.as_ref().is_none_or(|k| &c.category == k))
        .collect();
    let n = args.limit.min(pool.len()).max(1);
    let cases: Vec<&Case> = (0..n).map(|i| pool[i * pool.len() / n]).collect();
    let scene = rosetta_sim::Scene::default_scene().context("the default scene")?;
    let robot = rosetta_common::robot::RobotDescription::default();
    let start = rosetta_sim::World::new(scene, robot).ground_truth();
    let tmp = tempfile::tempdir()?;
    let episodes = args
        .episodes
        .clone()
        .unwrap_or_else(|| tmp.path().join("episodes"));
    println!(
        "closed loop: {} commands of the {} suite through `rosetta demo --planner {}`",
        cases.len(),
        args.suite,
        args.planner
    );
    let rosetta = rosetta_bin()?;
    let mut summary = Summary::default();
    for (i, case) in cases.iter().enumerate() {
        let report_path = tmp.path().join(format!("report-{i}.json"));
        let (report, wall_s) = demo(&args, &rosetta, &case.command, &[], &report_path, &episodes)?;
        summary.wall.push(wall_s);
        let verdict = report
            .as_ref()
            .map_err(String::clone)
            .and_then(|r| judge(case, r, &start));
        let claimed = report
            .as_ref()
            .is_ok_and(|r| r.outcome == DemoOutcome::Succeeded);
        summary.add(case, claimed, &verdict);
        if args.each {
            println!(
                "{} {:5.1} s [{}] {:?}{}",
                if verdict.is_ok() { "ok  " } else { "FAIL" },
                summary.wall.last().copied().unwrap_or_default(),
                case.category,
                case.command,
                verdict
                    .as_ref()
                    .err()
                    .map_or(String::new(), |w| format!(": {w}"))
            );
        }
    }
    summary.print(cases.len());
    Ok(())
}

/// One `rosetta demo` of `command` (with `extra` arguments): its report, or
/// why there is none, and the wall seconds it took.
fn demo(
    args: &Args,
    rosetta: &Path,
    command: &str,
    extra: &[&str],
    report_path: &Path,
    episodes: &Path,
) -> anyhow::Result<(Result<DemoReport, String>, f64)> {
    let t0 = Instant::now();
    let out = std::process::Command::new(rosetta)
        .env("ROS_DOMAIN_ID", args.domain_id.to_string())
        .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        .env("ROSETTA_QUIET_NODES", "1")
        .args(["demo", command, "--planner", &args.planner])
        .args(extra)
        .args(["--timeout-s", &args.timeout_s.to_string()])
        .arg("--report")
        .arg(report_path)
        .arg("--episodes")
        .arg(episodes)
        .stdin(std::process::Stdio::null())
        .output()
        .context("running rosetta demo")?;
    Ok((read_report(report_path, &out), t0.elapsed().as_secs_f64()))
}

/// The `rosetta` binary beside this one (target/debug), unless ROSETTA_BIN says otherwise.
fn rosetta_bin() -> anyhow::Result<PathBuf> {
    Ok(match std::env::var_os("ROSETTA_BIN") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()?.with_file_name("rosetta"),
    })
}

/// The demo's report, read through its type; why there is none otherwise.
fn read_report(path: &Path, out: &std::process::Output) -> Result<DemoReport, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Err(format!(
            "no report (exit {:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        ));
    };
    serde_json::from_str(&text).map_err(|e| format!("the report does not parse: {e}"))
}

/// The tallies over the cases run.
#[derive(Default)]
struct Summary {
    ok: usize,
    false_success: usize,
    must_refuse: usize,
    refused_right: usize,
    /// Right and run, per category.
    per_cat: BTreeMap<String, (usize, usize)>,
    failures: Vec<String>,
    /// Wall seconds per command.
    wall: Vec<f64>,
}

impl Summary {
    /// One case's verdict; `claimed`: its report said "succeeded".
    fn add(&mut self, case: &Case, claimed: bool, verdict: &Result<(), String>) {
        let e = self.per_cat.entry(case.category.clone()).or_default();
        e.1 += 1;
        if case.expected == Expected::Refuse {
            self.must_refuse += 1;
        }
        match verdict {
            Ok(()) => {
                self.ok += 1;
                e.0 += 1;
                self.refused_right += usize::from(case.expected == Expected::Refuse);
            }
            Err(why) => {
                self.false_success += usize::from(claimed && case.expected != Expected::Refuse);
                self.failures
                    .push(format!("[{}] {:?}: {why}", case.category, case.command));
            }
        }
    }

    fn print(mut self, cases: usize) {
        let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
        println!(
            "\ntask success on ground truth: {:.1}% ({}/{cases})",
            pct(self.ok, cases),
            self.ok
        );
        println!(
            "\"succeeded\" reports whose goal does not hold: {}",
            self.false_success
        );
        println!(
            "must-refuse commands refused with nothing moved: {}/{}",
            self.refused_right, self.must_refuse
        );
        self.wall.sort_by(f64::total_cmp);
        if let Some(m) = self.wall.get(self.wall.len() / 2) {
            println!("wall time per command, p50: {m:.1} s");
        }
        for (cat, (a, b)) in &self.per_cat {
            println!("  {cat:<12} {a}/{b}");
        }
        for f in &self.failures {
            println!("  {f}");
        }
    }
}

/// What a generated scene's command must come to.
enum Expect {
    /// This thing in this container, nothing else moved.
    Put { thing: String, container: String },
    /// Refused (the description fits several things), nothing moved.
    Refuse,
}

/// Words a person might use for a category.
fn kind_words(kind: rosetta_common::ObjectKind) -> &'static [&'static str] {
    use rosetta_common::ObjectKind::*;
    match kind {
        Cube => &["cube", "block"],
        Box => &["box", "box"],
        Ball => &["ball", "sphere"],
        Cylinder => &["can", "cylinder"],
        Mug => &["mug", "cup"],
        Bin => &["bin", "basket", "container"],
    }
}

/// A command written from a generated scene, and what it must come to.
fn scene_command(scene: &rosetta_sim::Scene, seed: u64) -> (String, Expect) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let things: Vec<_> = scene
        .objects
        .iter()
        .filter(|o| o.kind.is_graspable())
        .collect();
    let bins: Vec<_> = scene
        .objects
        .iter()
        .filter(|o| o.kind.is_container())
        .collect();
    let thing = things[rng.gen_range(0..things.len())];
    let twins: Vec<_> = things
        .iter()
        .filter(|o| o.color == thing.color && o.kind == thing.kind)
        .collect();
    let words = kind_words(thing.kind);
    let mut what = format!(
        "the {} {}",
        thing.color.name(),
        words[rng.gen_range(0..words.len())]
    );
    let mut refuse = false;
    if twins.len() > 1 {
        if rng.gen_bool(0.3) {
            refuse = true; // "the red cube" with two: which one?
        } else {
            // Left and right as the robot sees them from where it starts
            // (its left: +y of its own frame), as the planner grounds them.
            let s = &scene.robot_start;
            let (sin, cos) = s.yaw_rad.sin_cos();
            let lateral = |o: &rosetta_sim::scene::SceneObject| {
                -sin * (o.position_m[0] - s.x_m) + cos * (o.position_m[1] - s.y_m)
            };
            let leftmost = twins.iter().all(|o| lateral(o) <= lateral(thing));
            let rightmost = twins.iter().all(|o| lateral(o) >= lateral(thing));
            if leftmost {
                what.push_str(" on the left");
            } else if rightmost {
                what.push_str(" on the right");
            } else {
                refuse = true;
            }
        }
    }
    let unique_bins: Vec<_> = bins
        .iter()
        .filter(|b| bins.iter().filter(|x| x.color == b.color).count() == 1)
        .collect();
    let (container, cwords) = match unique_bins.as_slice() {
        [] => (bins[0], format!("the {} bin", bins[0].color.name())),
        some => {
            let b = some[rng.gen_range(0..some.len())];
            let w = kind_words(b.kind);
            (
                *b,
                format!("the {} {}", b.color.name(), w[rng.gen_range(0..w.len())]),
            )
        }
    };
    refuse |= unique_bins.is_empty();
    let command = format!("put {what} in {cwords}");
    let expect = if refuse {
        Expect::Refuse
    } else {
        Expect::Put {
            thing: thing.id.clone(),
            container: container.id.clone(),
        }
    };
    (command, expect)
}

/// Whether the ground truth shows what a generated scene's command asked.
fn judge_scene(expect: &Expect, report: &DemoReport, start: &GroundTruth) -> Result<(), String> {
    let Some(truth) = &report.ground_truth else {
        return Err("no ground truth in the report".into());
    };
    if truth.collisions > 0 {
        return Err(format!("{} collision steps", truth.collisions));
    }
    let moved = |id: &str| {
        let a = truth.objects.iter().find(|o| o.id == id);
        let b = start.objects.iter().find(|o| o.id == id);
        match (a, b) {
            (Some(a), Some(b)) => {
                (0..3).any(|k| (a.position_m[k] - b.position_m[k]).abs() > UNMOVED_M)
            }
            _ => true,
        }
    };
    let touched = match expect {
        Expect::Refuse => {
            if report.outcome != DemoOutcome::Refused {
                return Err(format!(
                    "not refused: {} ({})",
                    report.outcome, report.message
                ));
            }
            None
        }
        Expect::Put { thing, container } => {
            let o = truth
                .objects
                .iter()
                .find(|o| &o.id == thing)
                .ok_or_else(|| format!("no {thing} in the truth"))?;
            if o.in_container.as_deref() != Some(container.as_str()) {
                return Err(format!(
                    "{thing} is not in {container} (at {:.2?}, in {:?}; outcome {}: {})",
                    o.position_m, o.in_container, report.outcome, report.message
                ));
            }
            Some(thing.as_str())
        }
    };
    match truth
        .objects
        .iter()
        .find(|o| Some(o.id.as_str()) != touched && moved(&o.id))
    {
        Some(o) => Err(format!("{} moved, though the command did not ask", o.id)),
        None => Ok(()),
    }
}

/// `--random-scenes N`: generated scenes, a command written from each.
fn random_scenes(args: &Args, n: u64) -> anyhow::Result<()> {
    let rosetta = rosetta_bin()?;
    let tmp = tempfile::tempdir()?;
    let episodes = args
        .episodes
        .clone()
        .unwrap_or_else(|| tmp.path().join("episodes"));
    println!(
        "closed loop: {n} generated scenes (seeds {}..{}) through `rosetta demo --planner {}`",
        args.first_seed,
        args.first_seed + n,
        args.planner
    );
    let robot = rosetta_common::robot::RobotDescription::default();
    let (mut ok, mut refusals, mut refused_right, mut false_success) = (0, 0, 0, 0);
    let mut per_kind: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut wall = Vec::new();
    for seed in args.first_seed..args.first_seed + n {
        let scene = rosetta_sim::Scene::random(seed);
        let (command, expect) = scene_command(&scene, seed);
        let start = rosetta_sim::World::new(scene.clone(), robot.clone()).ground_truth();
        let report_path = tmp.path().join(format!("report-{seed}.json"));
        let seed_arg = seed.to_string();
        let scene_args = ["--scene", "random", "--seed", seed_arg.as_str()];
        let (report, wall_s) = demo(
            args,
            &rosetta,
            &command,
            &scene_args,
            &report_path,
            &episodes,
        )?;
        wall.push(wall_s);
        let verdict = report
            .as_ref()
            .map_err(String::clone)
            .and_then(|r| judge_scene(&expect, r, &start));
        let claimed = report
            .as_ref()
            .is_ok_and(|r| r.outcome == DemoOutcome::Succeeded);
        let kind = match &expect {
            Expect::Refuse => {
                refusals += 1;
                "(must refuse)".to_string()
            }
            Expect::Put { thing, .. } => scene
                .objects
                .iter()
                .find(|o| &o.id == thing)
                .map_or("?", |o| o.kind.name())
                .to_string(),
        };
        let e = per_kind.entry(kind).or_default();
        e.1 += 1;
        match &verdict {
            Ok(()) => {
                ok += 1;
                e.0 += 1;
                refused_right += usize::from(matches!(expect, Expect::Refuse));
            }
            Err(why) => {
                false_success += usize::from(claimed && !matches!(expect, Expect::Refuse));
                failures.push(format!("seed {seed} {command:?}: {why}"));
            }
        }
        if args.each {
            println!(
                "{} seed {seed:3} {:5.1} s {command:?}{}",
                if verdict.is_ok() { "ok  " } else { "FAIL" },
                wall.last().copied().unwrap_or_default(),
                verdict
                    .as_ref()
                    .err()
                    .map_or(String::new(), |w| format!(": {w}"))
            );
        }
    }
    let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
    let total = n as usize;
    println!(
        "\ntask success on ground truth: {:.1}% ({ok}/{total})",
        pct(ok, total)
    );
    println!("\"succeeded\" reports whose goal does not hold: {false_success}");
    println!("ambiguous commands refused with nothing moved: {refused_right}/{refusals}");
    wall.sort_by(f64::total_cmp);
    if let Some(m) = wall.get(wall.len() / 2) {
        println!("wall time per scene, p50: {m:.1} s");
    }
    for (k, (a, b)) in &per_kind {
        println!("  {k:<14} {a}/{b}");
    }
    for f in &failures {
        println!("  {f}");
    }
    Ok(())
}
