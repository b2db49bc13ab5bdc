//! Helpers for the end-to-end tests: find the built `rosetta` binary, run it on
//! an isolated ROS 2 domain, and stop what was started.

pub mod closed_loop;
pub mod scenes;
pub mod train;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rosetta_common::report::DemoReport;
use rosetta_common::status::{GroundTruth, GroundTruthObject};

/// The `rosetta` binary built next to the test executable (`./rosetta test` builds it first).
pub fn rosetta_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ROSETTA_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("rosetta");
    assert!(
        bin.exists(),
        "{} is missing: run `./rosetta test` (it builds the workspace before testing)",
        bin.display()
    );
    bin
}

/// A `rosetta` command on its own ROS 2 domain, so that tests running side by side never hear each other.
pub fn rosetta(domain_id: u32) -> Command {
    let mut c = Command::new(rosetta_bin());
    c.env("ROS_DOMAIN_ID", domain_id.to_string())
        .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        .env("ROSETTA_QUIET_NODES", "1")
        .stdin(Stdio::null());
    c
}

/// One `rosetta` subcommand (a node) running on `domain`, stopped when dropped.
pub fn start(domain_id: u32, args: &[&str]) -> Running {
    Running(
        rosetta(domain_id)
            .args(args)
            .spawn()
            .unwrap_or_else(|e| panic!("start {args:?}: {e}")),
    )
}

/// Runs `rosetta demo <command>` and returns its output and parsed report.
pub fn run_demo(domain_id: u32, command: &str) -> (Output, DemoReport, tempfile::TempDir) {
    run_demo_with(domain_id, command, &[])
}

/// [`run_demo`] with extra `rosetta demo` options.
pub fn run_demo_with(
    domain_id: u32,
    command: &str,
    extra: &[&str],
) -> (Output, DemoReport, tempfile::TempDir) {
    let mut args = vec![command];
    args.extend_from_slice(extra);
    run_demo_args(domain_id, &args)
}

/// `rosetta demo` with these arguments (the command, or `--audio FILE`, and
/// options), its report and episodes in a temporary folder.
pub fn run_demo_args(domain_id: u32, args: &[&str]) -> (Output, DemoReport, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("report.json");
    let out = rosetta(domain_id)
        .args(["demo", "--timeout-s", "400"])
        .args(args)
        .arg("--report")
        .arg(&report)
        .arg("--episodes")
        .arg(dir.path().join("episodes"))
        .output()
        .expect("run rosetta demo");
    let text = std::fs::read_to_string(&report).unwrap_or_else(|e| {
        panic!(
            "no report ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, parse_report(&text), dir)
}

/// Writes `scene` as a scene file in `dir`, for `rosetta demo --scene`.
pub fn write_scene(scene: &rosetta_sim::Scene, dir: &std::path::Path) -> PathBuf {
    let path = dir.join(format!("{}.toml", scene.name));
    let text = toml::to_string(scene).expect("a scene serialises");
    std::fs::write(&path, text).expect("write the scene file");
    path
}

/// A demo report, read through its type: a field renamed or retyped on
/// either side fails here, with the text.
pub fn parse_report(text: &str) -> DemoReport {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not a demo report ({e}):\n{text}"))
}

/// The last `lines` lines of every node log (`*/logs/*.log`) under an
/// episodes folder, each under its file's name: what a failed test prints.
pub fn log_tails(episodes: &std::path::Path, lines: usize) -> String {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(episodes)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|run| {
            std::fs::read_dir(run.path().join("logs"))
                .into_iter()
                .flatten()
        })
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let mut out = String::new();
    for path in logs {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        out.push_str(&format!(
            "----- {} (last {} of {} lines) -----\n",
            path.display(),
            tail.len(),
            all.len()
        ));
        for l in tail {
            out.push_str(l);
            out.push('\n');
        }
    }
    if out.is_empty() {
        out = format!("(no node logs under {})", episodes.display());
    }
    out
}

/// Runs one of `tests/python/*.py` (an rclpy program) on `domain`; its stdout is JSON.
pub fn python(domain: u32, script: &str, args: &[&str]) -> serde_json::Value {
    let venv = std::env::var("ROSETTA_VENV").expect("ROSETTA_VENV: run through ./rosetta test");
    // rclpy must not see the Rust-only stub libraries.
    let py_libs = std::env::var("ROSETTA_PY_LD_LIBRARY_PATH").unwrap_or_default();
    let path = format!("{}/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(format!("{venv}/bin/python3"))
        .arg(path)
        .args(args)
        .env("ROS_DOMAIN_ID", domain.to_string())
        .env("LD_LIBRARY_PATH", py_libs)
        .output()
        .expect("run the rclpy program");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "{script} failed: {seen:#}");
    seen
}

/// The sim's ground truth at the end of a demo.
pub fn truth(report: &DemoReport) -> &GroundTruth {
    report
        .ground_truth
        .as_ref()
        .unwrap_or_else(|| panic!("no ground truth in the report: {report}"))
}

/// The ground-truth object with this id in a report.
pub fn truth_object<'a>(report: &'a DemoReport, id: &str) -> &'a GroundTruthObject {
    report
        .truth_object(id)
        .unwrap_or_else(|| panic!("{id} not in the report's ground truth: {report}"))
}

/// The object with this id in a ground truth (the sim's `/sim/ground_truth`).
pub fn object_in<'a>(truth: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    truth["objects"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["id"] == id))
        .unwrap_or_else(|| panic!("{id} not in ground truth: {truth:#}"))
}

/// A child process that is interrupted (then killed) when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        // Best effort: it may have exited already.
        if let Err(e) = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGINT) {
            tracing::debug!(error = %e, "cannot interrupt the child");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // It did not stop on SIGINT: kill it, best effort, and reap it.
        if let Err(e) = self.0.kill() {
            tracing::debug!(error = %e, "cannot kill the child");
        }
        if let Err(e) = self.0.wait() {
            tracing::debug!(error = %e, "cannot reap the child");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_tails_keeps_the_last_lines_of_each_node_log() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("1-2/logs");
        std::fs::create_dir_all(&logs).unwrap();
        let text: String = (1..=50).map(|i| format!("line {i}\n")).collect();
        std::fs::write(logs.join("control.log"), text).unwrap();
        std::fs::write(logs.join("notes.txt"), "not a log").unwrap();
        let tails = super::log_tails(dir.path(), 3);
        assert!(
            tails.contains("control.log (last 3 of 50 lines)"),
            "{tails}"
        );
        assert!(tails.contains("line 48\nline 49\nline 50\n"), "{tails}");
        assert!(!tails.contains("line 47\n") && !tails.contains("not a log"));
        let empty = tempfile::tempdir().unwrap();
        assert!(super::log_tails(empty.path(), 3).starts_with("(no node logs"));
    }
}
