//! Child node processes: started with prefixed logs, stopped with SIGINT, then SIGKILL.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rosetta_common::report::NodeExit;

pub struct NodeProcess {
    pub name: String,
    child: Child,
}

impl NodeProcess {
    /// Starts `rosetta <args>` as node `name`; its stderr is prefixed on ours and
    /// copied to `<log_dir>/<name>.log`.
    pub fn spawn(
        name: &str,
        args: &[String],
        envs: &[(String, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the rosetta executable")?;
        // Control is the one real-time loop: every other node runs at a lower
        // CPU priority, so that on a small machine it yields to control.
        let mut cmd = if name == "control" {
            Command::new(&exe)
        } else {
            let mut c = Command::new("nice");
            c.args(["-n", "10"]).arg(&exe);
            c
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.env("ROSETTA_EXIT_WITH_PARENT", "1");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start node {name}"))?;
        if let Some(err) = child.stderr.take() {
            let prefix = format!("[{name}] ");
            let mut file = std::fs::File::create(log_dir.join(format!("{name}.log"))).ok();
            let quiet = std::env::var("ROSETTA_QUIET_NODES").is_ok_and(|v| v == "1");
            let node = name.to_string();
            std::thread::spawn(move || {
                let mut warned = false;
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if let Some(f) = file.as_mut() {
                        if let Err(e) = writeln!(f, "{line}") {
                            // Once: a full disk would fail every line.
                            if !warned {
                                tracing::warn!(%node, error = %e, "cannot write the node's log file");
                                warned = true;
                            }
                        }
                    }
                    if !quiet {
                        eprintln!("{prefix}{line}");
                    }
                }
            });
        }
        Ok(Self {
            name: name.to_string(),
            child,
        })
    }

    /// `Some(status)` if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Name, pid and exit code, for the report.
    pub fn report(&mut self) -> NodeExit {
        NodeExit {
            name: self.name.clone(),
            pid: self.child.id(),
            exit_code: self.exited().and_then(|s| s.code()),
        }
    }

    fn interrupt(&mut self) {
        if self.exited().is_none() {
            // It may have exited since the check: nothing left to stop.
            if let Err(e) = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT) {
                tracing::debug!(node = %self.name, error = %e, "cannot interrupt the node");
            }
        }
    }
}

/// Stops every node: SIGINT, up to `grace` to exit cleanly, then SIGKILL. Reaps all.
pub fn stop_all(nodes: &mut [NodeProcess], grace: Duration) {
    for n in nodes.iter_mut() {
        n.interrupt();
    }
    let deadline = Instant::now() + grace;
    for n in nodes.iter_mut() {
        while n.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if n.exited().is_none() {
            tracing::warn!(node = %n.name, "did not stop in time; killing it");
            // Best effort on the way out: it may have exited meanwhile.
            if let Err(e) = n.child.kill() {
                tracing::debug!(node = %n.name, error = %e, "cannot kill the node");
            }
            if let Err(e) = n.child.wait() {
                tracing::debug!(node = %n.name, error = %e, "cannot reap the node");
            }
        }
    }
}
