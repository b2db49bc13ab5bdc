//! The Gazebo launch, where Gazebo itself cannot run: the launch file is
//! valid Python, the files it names exist, and every stack node it starts is
//! a `rosetta` subcommand. (The bridge, world and URDF contracts are tested
//! in `rosetta_sim::gazebo` and in `interop`.)

#![allow(clippy::unwrap_used)] // test helpers: a missing field is a test failure

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

const LAUNCH: &str = "launch/gazebo/rosetta_gazebo.launch.py";

#[test]
fn the_gazebo_launch_file_compiles_and_names_what_exists() {
    let python = std::env::var("ROSETTA_VENV")
        .map(|v| format!("{v}/bin/python3"))
        .unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args(["-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())"])
        .arg(repo().join(LAUNCH))
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(repo().join(LAUNCH)).unwrap();
    for file in [
        "launch/robot/rosetta.urdf",
        "launch/gazebo/bridge.yaml",
        "launch/gazebo/worlds/default.sdf",
    ] {
        assert!(repo().join(file).is_file(), "{file} is missing");
        let name = Path::new(file).file_name().unwrap().to_str().unwrap();
        assert!(text.contains(name), "the launch file does not use {name}");
    }
    // STACK = ("perception", ...): each one is a node the rosetta binary runs.
    let stack = text
        .lines()
        .find(|l| l.starts_with("STACK = ("))
        .expect("a STACK tuple");
    let nodes: Vec<&str> = stack.split('"').skip(1).step_by(2).collect();
    assert_eq!(nodes, ["perception", "planner", "executive", "control"]);
    for node in nodes {
        let out = rosetta_tests::rosetta(0)
            .args([node, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "rosetta {node} --help failed");
    }
}
