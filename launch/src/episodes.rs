//! `rosetta episodes`: the recorded runs, with their outcome, and opening one
//! in the rerun viewer.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rosetta_common::status::{StepState, StepStatus};
use rosetta_common::Skill;

/// List recorded episodes, or open one in the rerun viewer.
///
/// Every `rosetta demo` and `rosetta up` run leaves a folder in the episodes
/// folder: `episode.rrd` (the rerun recording of every node), `report.json`
/// (demo runs: command, outcome, plan, steps, timings) and `logs/`.
///
///   rosetta episodes                 # newest last: id, outcome, times, planner, command
///   rosetta episodes open latest     # the newest one in the rerun viewer
///   rosetta episodes open 1795918220 # by id, or a unique prefix of one
///   rosetta episodes open 17959 latest  # two episodes in one viewer, to compare
///   rosetta episodes shot latest     # a headless screenshot of its layout
///   rosetta episodes shot latest --at start,grasp,end   # three moments of it
#[derive(Debug, Clone, clap::Args)]
pub struct EpisodesArgs {
    /// Folder of recorded episodes.
    #[arg(long, default_value = "episodes")]
    pub episodes: PathBuf,
    #[command(subcommand)]
    pub action: Option<EpisodesAction>,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum EpisodesAction {
    /// List the episodes (the default).
    List,
    /// Open episodes' recordings in the rerun viewer: one, or several in
    /// one viewer to compare (each is listed by its command and outcome in
    /// the viewer's recordings panel; click one to show it).
    Open {
        /// Episode ids, unique prefixes of them, or `latest`.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Print the viewer command instead of running it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Render screenshots of an episode in the viewer's default layout,
    /// headless (Mesa's software Vulkan, which the set-up installs).
    ///
    /// Each moment is rendered from the recording cut at that sim time
    /// (`rerun rrd split`), so the view shows the episode as it stood then.
    Shot {
        /// An episode id, a unique prefix of one, or `latest`.
        id: String,
        /// Which moments, comma-separated: `start` (the first step has begun),
        /// `grasp` (just after the first pick ends), `end` (the whole
        /// episode), or a sim time in seconds (`12.5`).
        #[arg(long, value_delimiter = ',', default_value = "end")]
        at: Vec<String>,
        /// The PNG to write, for one moment (or a folder to write
        /// `shot-<moment>.png` into; default: `screenshot.png` in
        /// the episode's folder). With several moments, the folder that gets
        /// `shot-<moment>.png` for each (default: the episode's folder).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The viewer's window size, WIDTHxHEIGHT.
        #[arg(long, default_value = "1280x720")]
        size: String,
        /// Seconds the viewer gets to load the recording and apply its
        /// layout before each screenshot (its start-up notices fade too).
        #[arg(long, default_value_t = 6.0)]
        settle_s: f64,
    },
}

/// One row of the list.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeRow {
    pub id: String,
    pub dir: PathBuf,
    /// The outcome, `(no report)` for `rosetta up` runs, or why the report
    /// cannot be read.
    pub outcome: String,
    pub command: String,
    pub wall_s: Option<f64>,
    pub sim_s: Option<f64>,
    /// Which planner made the plan (`hybrid:rules`, `llm:llm`, ...).
    pub planner: Option<String>,
    pub attempts: Option<u64>,
    pub has_recording: bool,
}

/// Reads every episode folder below `root`, oldest first. A missing or
/// corrupt report is shown as such; it never stops the listing.
pub fn scan(root: &Path) -> anyhow::Result<Vec<EpisodeRow>> {
    let entries = std::fs::read_dir(root)
        .with_context(|| format!("cannot read the episodes folder {}", root.display()))?;
    let mut rows: Vec<EpisodeRow> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .map(|dir| row(&dir))
        .collect();
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(rows)
}

fn row(dir: &Path) -> EpisodeRow {
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let has_recording = dir.join("episode.rrd").is_file();
    let report = dir.join("report.json");
    let mut row = EpisodeRow {
        id,
        dir: dir.to_path_buf(),
        outcome: String::new(),
        command: String::new(),
        wall_s: None,
        sim_s: None,
        planner: None,
        attempts: None,
        has_recording,
    };
    match std::fs::read_to_string(&report) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => row.outcome = "(no report)".into(),
        Err(e) => row.outcome = format!("(unreadable report: {e})"),
        Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
            Err(e) => row.outcome = format!("(corrupt report: {e})"),
            Ok(v) => {
                row.outcome = v["outcome"].as_str().unwrap_or("(no outcome)").to_string();
                row.command = v["command"].as_str().unwrap_or_default().to_string();
                row.wall_s = v["wall_time_s"].as_f64();
                row.sim_s = v["sim_time_s"].as_f64();
                row.planner = v["planner"].as_str().map(str::to_string);
                row.attempts = v["attempts"].as_u64();
            }
        },
    }
    row
}

/// The episode's merged recording, or why there is none.
fn recording_of(r: &EpisodeRow) -> anyhow::Result<PathBuf> {
    let rrd = r.dir.join("episode.rrd");
    if !rrd.is_file() {
        anyhow::bail!(
            "episode {} has no recording ({} is missing); its node parts may still be in {}",
            r.id,
            rrd.display(),
            r.dir.join("parts").display()
        );
    }
    Ok(rrd)
}

/// The steps of the episode's report, if it has one (`rosetta up` runs
/// have none).
fn read_steps(r: &EpisodeRow) -> anyhow::Result<Option<Vec<StepStatus>>> {
    #[derive(serde::Deserialize)]
    struct Steps {
        steps: Vec<StepStatus>,
    }
    let path = r.dir.join("report.json");
    match std::fs::read_to_string(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        Ok(text) => serde_json::from_str::<Steps>(&text)
            .map(|s| Some(s.steps))
            .with_context(|| format!("{} is not a demo report", path.display())),
    }
}

/// Seconds after a step's moment at which a shot shows it done (the lane
/// changed, the arm lifted): the cut keeps only data before its time.
const SHOT_SETTLE_S: f64 = 0.5;

/// The sim time at which to cut the recording for `moment`, or `None` for
/// the whole episode (`end`).
fn moment_s(steps: Option<&[StepStatus]>, moment: &str) -> anyhow::Result<Option<f64>> {
    if moment == "end" {
        return Ok(None);
    }
    if let Ok(t) = moment.parse::<f64>() {
        anyhow::ensure!(
            t.is_finite() && t > 0.0,
            "a moment in seconds must be a positive sim time, not {moment}"
        );
        return Ok(Some(t));
    }
    let steps = steps.with_context(|| {
        format!("the moment {moment:?} needs the episode's report.json (a demo run); give a sim time in seconds instead")
    })?;
    let t = match moment {
        "start" => steps.first().and_then(|s| s.started_s),
        "grasp" => steps
            .iter()
            .find(|s| matches!(s.skill, Skill::Pick { .. }) && s.state == StepState::Succeeded)
            .and_then(|s| s.finished_s),
        other => anyhow::bail!(
            "unknown moment {other:?}: use start, grasp, end or a sim time in seconds"
        ),
    };
    let t = t.with_context(|| {
        format!("the episode has no {moment:?} moment (no step started, or no pick succeeded)")
    })?;
    Ok(Some(t + SHOT_SETTLE_S))
}

/// Runs `rerun rrd <args>`; `what` says what failed ("compact x.rrd").
fn rerun_rrd(args: &[&std::ffi::OsStr], what: &str) -> anyhow::Result<()> {
    let run = std::process::Command::new("rerun")
        .arg("rrd")
        .args(args)
        .output()
        .context(
            "cannot start `rerun rrd` (`rerun` from the set-up's venv: source .local/env.sh)",
        )?;
    anyhow::ensure!(
        run.status.success(),
        "rerun could not {what}: {}",
        String::from_utf8_lossy(&run.stderr).trim()
    );
    Ok(())
}

/// `rrd` with its chunks compacted, written to `out`.
fn compacted(rrd: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    rerun_rrd(
        &[
            "optimize".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
            rrd.as_os_str(),
        ],
        &format!("compact {}", rrd.display()),
    )?;
    Ok(out.to_path_buf())
}

/// The part of `rrd` before sim time `t_s`, written into `dir`.
fn cut_at(rrd: &Path, t_s: f64, dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // A duration timeline's cut is given in whole nanoseconds.
    let t_ns = format!("{}", (t_s * 1e9).round() as i64);
    rerun_rrd(
        &[
            "split".as_ref(),
            "--timeline".as_ref(),
            rosetta_common::rec::TIMELINE_SIM.as_ref(),
            "--time".as_ref(),
            t_ns.as_ref(),
            "--output-dir".as_ref(),
            dir.as_os_str(),
            rrd.as_os_str(),
        ],
        &format!("cut {} at {t_s} s", rrd.display()),
    )?;
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rrd"))
        .collect();
    parts.sort();
    parts
        .into_iter()
        .next()
        .with_context(|| format!("rerun wrote no part of {} before {t_s} s", rrd.display()))
}

/// `rrd` rewritten to `out` with its layout (blueprint store) before its
/// data (`rerun rrd merge` writes blueprints first).
fn layout_first(rrd: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    rerun_rrd(
        &[
            "merge".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
            rrd.as_os_str(),
        ],
        &format!("rewrite {} into {}", rrd.display(), out.display()),
    )?;
    Ok(out.to_path_buf())
}

/// Asks the viewer listening at `URL` (argv[1]) for a screenshot into
/// `PATH` (argv[2]), through rerun's viewer-control service (the Python
/// SDK of the set-up's venv is its client).
const SCREENSHOT_CLIENT: &str = "import sys
from rerun.experimental import ViewerClient
ViewerClient.connect(sys.argv[1]).save_screenshot(sys.argv[2])
";

/// Renders the recording `rrd` in the viewer into `png`: a headless viewer
/// opens it and, once it has loaded and its start-up notices have faded
/// (`settle_s`), is asked for the screenshot. (The viewer's own
/// `--screenshot-to` fires ten frames after start, before a recording has
/// loaded or its layout is applied.)
fn screenshot(rrd: &Path, png: &Path, size: &str, settle_s: f64) -> anyhow::Result<()> {
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .context("no free local port for the viewer")?
        .port();
    use std::os::unix::process::CommandExt;
    let mut viewer = ViewerProcess(
        std::process::Command::new("rerun")
            // Its own process group: `rerun` is the SDK's Python launcher,
            // and the viewer binary it starts must be stopped with it.
            .process_group(0)
            .env("RERUN_ANALYTICS", "0")
            .env("WGPU_BACKEND", "vulkan")
            .args(["--headless", "--hide-welcome-screen", "--window-size", size])
            .arg("--port")
            .arg(port.to_string())
            .arg(rrd)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context(
                "cannot start the rerun viewer (`rerun` from the set-up's venv: source .local/env.sh)",
            )?,
    );
    let vulkan = "it needs Vulkan (Debian mesa-vulkan-drivers, which scripts/setup.sh installs)";
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = viewer.0.try_wait()? {
            anyhow::bail!("the viewer stopped ({status}) before it rendered; {vulkan}");
        }
        anyhow::ensure!(
            std::time::Instant::now() < until,
            "the viewer did not start listening within 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs_f64(settle_s.max(0.0)));
    let _ = std::fs::remove_file(png);
    let png_abs = std::path::absolute(png).unwrap_or_else(|_| png.to_path_buf());
    let asked = std::process::Command::new("python3")
        .args(["-c", SCREENSHOT_CLIENT])
        .arg(format!("rerun+http://127.0.0.1:{port}/proxy"))
        .arg(&png_abs)
        .output()
        .context("cannot run python3 (the set-up's venv: source .local/env.sh)")?;
    anyhow::ensure!(
        asked.status.success(),
        "the viewer was not asked for a screenshot: {}",
        String::from_utf8_lossy(&asked.stderr).trim()
    );
    // The viewer writes the file on its next frame.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if png_abs.metadata().is_ok_and(|m| m.len() > 0) {
            // Complete once a PNG's closing chunk is in.
            let bytes = std::fs::read(&png_abs)?;
            if bytes.ends_with(&[0xAE, 0x42, 0x60, 0x82]) {
                return Ok(());
            }
        }
        anyhow::ensure!(
            std::time::Instant::now() < until,
            "the viewer did not write {} within 30 s; {vulkan}",
            png.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A viewer process, in its own process group, that is stopped with every
/// process of its group when it goes out of scope, on every path.
struct ViewerProcess(std::process::Child);

impl Drop for ViewerProcess {
    fn drop(&mut self) {
        // The group's id is the launcher's pid (`process_group(0)`).
        let group = format!("-{}", self.0.id());
        let stopped = std::process::Command::new("kill")
            .args(["-TERM", "--", &group])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// The episode `id` names: `latest`, an exact id, or a unique prefix.
pub fn find<'a>(rows: &'a [EpisodeRow], id: &str) -> anyhow::Result<&'a EpisodeRow> {
    if id == "latest" {
        return rows.last().context("there are no episodes yet");
    }
    if let Some(r) = rows.iter().find(|r| r.id == id) {
        return Ok(r);
    }
    let matches: Vec<_> = rows.iter().filter(|r| r.id.starts_with(id)).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => anyhow::bail!("no episode {id:?}; `rosetta episodes` lists them"),
        many => anyhow::bail!(
            "{id:?} could be any of {}; give more of the id",
            many.iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub fn run(args: &EpisodesArgs) -> anyhow::Result<u8> {
    let rows = scan(&args.episodes)?;
    match &args.action {
        None | Some(EpisodesAction::List) => {
            if rows.is_empty() {
                eprintln!(
                    "no episodes in {} yet: run `rosetta demo \"...\"`",
                    args.episodes.display()
                );
            }
            println!(
                "{:<20} {:<12} {:>7} {:>7} {:>5}  {:<14} command",
                "id", "outcome", "wall s", "sim s", "plans", "planner"
            );
            let num = |v: Option<f64>| v.map_or("-".to_string(), |w| format!("{w:.1}"));
            for r in &rows {
                let rec = if r.has_recording { "" } else { " (no .rrd)" };
                println!(
                    "{:<20} {:<12} {:>7} {:>7} {:>5}  {:<14} {}{rec}",
                    r.id,
                    r.outcome,
                    num(r.wall_s),
                    num(r.sim_s),
                    r.attempts.map_or("-".to_string(), |a| a.to_string()),
                    r.planner.as_deref().unwrap_or("-"),
                    r.command
                );
            }
            Ok(0)
        }
        Some(EpisodesAction::Shot {
            id,
            at,
            out,
            size,
            settle_s,
        }) => {
            let r = find(&rows, id)?;
            let rrd = recording_of(r)?;
            let steps = read_steps(r)?;
            let cuts = at
                .iter()
                .map(|m| Ok((m.as_str(), moment_s(steps.as_deref(), m)?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let scratch = tempfile::tempdir().context("cannot make a scratch folder")?;
            // Older episodes hold many small chunks, which the viewer is
            // still loading when the headless screenshot is taken: compact
            // them first (a no-op for episodes `demo` already compacted).
            let compact = compacted(&rrd, &scratch.path().join("episode.rrd"))?;
            for (moment, cut_s) in cuts {
                let png = match (out, at.len()) {
                    // A folder given for one moment gets its picture inside.
                    (Some(o), 1) if !o.is_dir() => o.clone(),
                    (None, 1) if moment == "end" => r.dir.join("screenshot.png"),
                    (o, _) => o
                        .clone()
                        .unwrap_or_else(|| r.dir.clone())
                        .join(format!("shot-{moment}.png")),
                };
                match cut_s {
                    None => screenshot(&compact, &png, size, *settle_s)?,
                    Some(t) => {
                        let dir = scratch.path().join(moment);
                        let part = cut_at(&compact, t, &dir)?;
                        // The cut keeps the episode's layout but writes it
                        // after the data, where the viewer does not apply
                        // it; merging puts it first again, as in the episode.
                        let shot = layout_first(&part, &dir.join("shot.rrd"))?;
                        screenshot(&shot, &png, size, *settle_s)?;
                    }
                }
                match cut_s {
                    Some(t) => println!("{} ({moment}, sim time {t:.1} s)", png.display()),
                    None => println!("{} ({moment})", png.display()),
                }
            }
            Ok(0)
        }
        Some(EpisodesAction::Open { ids, dry_run }) => {
            let rrds = ids
                .iter()
                .map(|id| recording_of(find(&rows, id)?))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if *dry_run {
                let paths: Vec<String> = rrds.iter().map(|p| p.display().to_string()).collect();
                println!("rerun {}", paths.join(" "));
                return Ok(0);
            }
            let status = std::process::Command::new("rerun")
                .args(&rrds)
                .status()
                .context("cannot start the rerun viewer (`rerun` from the set-up's venv: source .local/env.sh)")?;
            Ok(if status.success() { 0 } else { 1 })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn episode(root: &Path, id: &str, report: Option<&str>, rrd: bool) {
        let dir = root.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(r) = report {
            std::fs::write(dir.join("report.json"), r).unwrap();
        }
        if rrd {
            std::fs::write(dir.join("episode.rrd"), b"RRF2").unwrap();
        }
    }

    #[test]
    fn episodes_are_listed_with_outcomes_and_bad_reports_are_said_so() {
        let root = tempfile::tempdir().unwrap();
        episode(
            root.path(),
            "1700000001-11",
            Some(
                r#"{"command": "put the red cube in the blue bin", "outcome": "succeeded", "wall_time_s": 15.4, "sim_time_s": 21.0, "planner": "hybrid:rules", "attempts": 2}"#,
            ),
            true,
        );
        episode(root.path(), "1700000002-12", Some("{ truncated"), true);
        episode(root.path(), "1700000003-13", None, false);
        let rows = scan(root.path()).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].outcome, "succeeded");
        assert_eq!(rows[0].wall_s, Some(15.4));
        assert_eq!(rows[0].sim_s, Some(21.0));
        assert_eq!(rows[0].planner.as_deref(), Some("hybrid:rules"));
        assert_eq!(rows[0].attempts, Some(2));
        assert_eq!(rows[1].planner, None);
        assert!(
            rows[1].outcome.starts_with("(corrupt report"),
            "{:?}",
            rows[1]
        );
        assert_eq!(rows[2].outcome, "(no report)");
        assert!(!rows[2].has_recording);

        assert_eq!(find(&rows, "latest").unwrap().id, "1700000003-13");
        assert_eq!(find(&rows, "1700000002").unwrap().id, "1700000002-12");
        let e = find(&rows, "17000000").unwrap_err().to_string();
        assert!(e.contains("could be any of"), "{e}");
        assert!(find(&rows, "99").is_err());
        assert!(scan(&root.path().join("missing")).is_err());
    }

    #[test]
    fn shot_moments_come_from_the_steps_times() {
        let steps: Vec<StepStatus> = serde_json::from_str(
            r#"[
                  {"index": 0, "skill": {"skill": "navigate_to", "target": "red_cube"},
                   "state": "succeeded", "started_s": 2.0, "finished_s": 6.0},
                  {"index": 1, "skill": {"skill": "pick", "object": "red_cube"},
                   "state": "succeeded", "started_s": 6.0, "finished_s": 9.5}
               ]"#,
        )
        .unwrap();
        let r = Some(steps.as_slice());
        assert_eq!(moment_s(r, "end").unwrap(), None);
        assert_eq!(moment_s(r, "start").unwrap(), Some(2.0 + SHOT_SETTLE_S));
        assert_eq!(moment_s(r, "grasp").unwrap(), Some(9.5 + SHOT_SETTLE_S));
        assert_eq!(moment_s(r, "7.25").unwrap(), Some(7.25));
        assert_eq!(moment_s(None, "3").unwrap(), Some(3.0));
        for bad in ["-1", "NaN", "lift"] {
            assert!(moment_s(r, bad).is_err(), "{bad}");
        }
        let e = moment_s(None, "grasp").unwrap_err().to_string();
        assert!(e.contains("report.json"), "{e}");
        let e = moment_s(Some(&steps[..1]), "grasp")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no pick succeeded"), "{e}");
    }
}
