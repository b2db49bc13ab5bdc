//! `rosetta episodes`: the recorded runs, with their outcome, and opening one
//! in the rerun viewer.

use std::path::{Path, PathBuf};

use anyhow::Context;

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
    /// Render a screenshot of an episode in the viewer, headless (Mesa's
    /// software Vulkan, which the set-up installs), to look at its layout.
    Shot {
        /// An episode id, a unique prefix of one, or `latest`.
        id: String,
        /// The PNG to write (default: `screenshot.png` in the episode's folder).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The viewer's window size, WIDTHxHEIGHT.
        #[arg(long, default_value = "1280x720")]
        size: String,
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
        Some(EpisodesAction::Shot { id, out, size }) => {
            let r = find(&rows, id)?;
            let rrd = recording_of(r)?;
            let out = out.clone().unwrap_or_else(|| r.dir.join("screenshot.png"));
            let status = std::process::Command::new("rerun")
                .env("RERUN_ANALYTICS", "0")
                .env("WGPU_BACKEND", "vulkan")
                .args(["--headless", "--window-size", size, "--screenshot-to"])
                .arg(&out)
                .arg(&rrd)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .context("cannot start the rerun viewer (`rerun` from the set-up's venv: source .local/env.sh)")?;
            if !status.success() || !out.is_file() {
                anyhow::bail!(
                    "the viewer did not render {} ({status}); it needs Vulkan (Debian mesa-vulkan-drivers, which scripts/setup.sh installs)",
                    out.display()
                );
            }
            println!("{}", out.display());
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
}
