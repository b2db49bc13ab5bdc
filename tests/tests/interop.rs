//! Interop with a real client that no one here wrote the other side of: rclpy.

#![allow(clippy::unwrap_used)] // test helpers: a missing field is a test failure

use std::process::Command;

use rosetta_tests::{rosetta, Running};

#[test]
fn rclpy_drives_the_sim_and_reads_odom_and_camera() {
    let domain = 36;
    let _sim = Running(
        rosetta(domain)
            .args(["sim", "--rtf", "1"])
            .spawn()
            .expect("start the sim"),
    );
    let venv = std::env::var("ROSETTA_VENV").expect("ROSETTA_VENV: run through ./rosetta test");
    // rclpy must not see the Rust-only stub libraries.
    let py_libs = std::env::var("ROSETTA_PY_LD_LIBRARY_PATH").unwrap_or_default();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/interop_client.py");
    let out = Command::new(format!("{venv}/bin/python3"))
        .arg(script)
        .arg("90")
        .env("ROS_DOMAIN_ID", domain.to_string())
        .env("LD_LIBRARY_PATH", py_libs)
        .output()
        .expect("run the rclpy client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "rclpy client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("client prints JSON");
    assert!(
        seen["moved_m"].as_f64().unwrap_or(0.0) > 0.1,
        "the Twist did not move the robot: {seen}"
    );
    assert!(seen["odom_count"].as_u64().unwrap_or(0) > 5);
    assert_eq!(seen["image"]["width"], 640);
    assert_eq!(seen["image"]["height"], 480);
    assert_eq!(seen["image"]["encoding"], "rgb8");
    assert_eq!(seen["image"]["bytes"], 640 * 480 * 3);
}
