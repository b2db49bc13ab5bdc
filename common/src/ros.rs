//! Thin ROS 2 plumbing shared by every node shell: node creation and spinning,
//! JSON-over-`std_msgs/String` topics, time stamps, waiting on discovery
//! conditions, and shutdown on signals or when the launcher goes away.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use r2r::builtin_interfaces::msg::Time;
use r2r::QosProfile;
use serde::{de::DeserializeOwned, Serialize};

pub use r2r;

#[derive(Debug, thiserror::Error)]
pub enum RosError {
    #[error("ROS 2: {0}")]
    R2r(#[from] r2r::Error),
    #[error("encoding a message as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("timed out after {waited_s:.1} s waiting for {what}")]
    Timeout { what: String, waited_s: f64 },
    #[error("the ROS node lock was poisoned by a panic in another thread")]
    Poisoned,
    #[error("{0:?} is not a ROS namespace: use tokens of letters, digits and _ separated by /, none starting with a digit (e.g. robot1 or fleet/robot1)")]
    Namespace(String),
}

pub type SharedNode = Arc<Mutex<r2r::Node>>;

/// Logs to stderr through `tracing`, filtered by `RUST_LOG` (default `info`),
/// with colours only on a terminal: a node started by the launcher writes
/// into a pipe that ends in a log file, which must carry no escape codes.
pub fn init_tracing() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
    if installed.is_err() {
        // A subscriber is already installed (a test harness, a second call):
        // its settings stand.
        tracing::debug!("tracing was already set up");
    }
}

/// A `sensor_msgs/LaserScan` as the grid's view of a scan (no copy).
pub fn scan_view(scan: &r2r::sensor_msgs::msg::LaserScan) -> crate::grid::ScanView<'_> {
    crate::grid::ScanView {
        angle_min_rad: f64::from(scan.angle_min),
        angle_increment_rad: f64::from(scan.angle_increment),
        range_min_m: f64::from(scan.range_min),
        range_max_m: f64::from(scan.range_max),
        ranges_m: &scan.ranges,
    }
}

/// The environment variable that puts every node of a stack in one namespace.
pub const NAMESPACE_ENV: &str = "ROSETTA_NAMESPACE";

/// Creates a node in a fresh context, in the namespace `ROSETTA_NAMESPACE`
/// names (none when it is unset or empty).
pub fn create_node(name: &str) -> Result<r2r::Node, RosError> {
    let ns = std::env::var(NAMESPACE_ENV).unwrap_or_default();
    create_node_in(name, &ns)
}

/// Creates a node in a fresh context, in namespace `ns` (`robot1` or
/// `/robot1`; empty: none). Relative topic and action names resolve in it.
pub fn create_node_in(name: &str, ns: &str) -> Result<r2r::Node, RosError> {
    let ns = normalize_namespace(ns)?;
    let ctx = r2r::Context::create()?;
    Ok(r2r::Node::create(ctx, name, &ns)?)
}

/// `robot1` → `/robot1`; empty → empty. A ROS namespace has tokens of
/// letters, digits and `_`, separated by `/`, none starting with a digit.
pub fn normalize_namespace(ns: &str) -> Result<String, RosError> {
    let trimmed = ns.trim().trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    let ok = trimmed.split('/').all(|t| {
        !t.is_empty()
            && !t.starts_with(|c: char| c.is_ascii_digit())
            && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    });
    if ok {
        Ok(format!("/{trimmed}"))
    } else {
        Err(RosError::Namespace(ns.to_string()))
    }
}

/// Spins a node on its own thread until dropped.
pub struct Spinner {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spinner {
    pub fn start(node: SharedNode) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ros-spin".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match node.lock() {
                        Ok(mut n) => n.spin_once(Duration::from_millis(2)),
                        Err(_) => break,
                    }
                    // Let other threads take the lock between spins.
                    std::thread::yield_now();
                }
            })
            .ok();
        Self { stop, thread }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the ROS 2 spin thread panicked");
            }
        }
    }
}

/// Reliable, keep-last-10: the default for commands, plans and status.
pub fn reliable_qos() -> QosProfile {
    QosProfile::default().reliable().keep_last(10)
}

/// Sensor streams: reliable (see shared notes: best effort dropped frames), shallow queue.
pub fn sensor_qos() -> QosProfile {
    QosProfile::default().reliable().keep_last(5)
}

/// A non-negative duration in seconds as `builtin_interfaces/Duration`.
pub fn secs_to_duration(s: f64) -> r2r::builtin_interfaces::msg::Duration {
    let t = secs_to_stamp(s);
    r2r::builtin_interfaces::msg::Duration {
        sec: t.sec,
        nanosec: t.nanosec,
    }
}

pub fn secs_to_stamp(s: f64) -> Time {
    let s = if s.is_finite() && s > 0.0 { s } else { 0.0 };
    let sec = s.floor();
    Time {
        sec: sec as i32,
        nanosec: ((s - sec) * 1e9).round().min(999_999_999.0) as u32,
    }
}

pub fn stamp_to_secs(t: &Time) -> f64 {
    t.sec as f64 + t.nanosec as f64 * 1e-9
}

/// The planar pose (x, y, yaw) in an odometry message.
pub fn odom_pose(m: &r2r::nav_msgs::msg::Odometry) -> crate::Pose2D {
    let q = &m.pose.pose.orientation;
    let yaw = (2.0 * (q.w * q.z + q.x * q.y)).atan2(1.0 - 2.0 * (q.y * q.y + q.z * q.z));
    crate::Pose2D::new(m.pose.pose.position.x, m.pose.pose.position.y, yaw)
}

/// A planar transform `parent_from_child` as a tf2 message of one transform.
pub fn planar_transform(
    stamp: r2r::builtin_interfaces::msg::Time,
    parent: &str,
    child: &str,
    parent_from_child: &crate::Pose2D,
) -> r2r::tf2_msgs::msg::TFMessage {
    let half = parent_from_child.yaw_rad / 2.0;
    let transform = r2r::geometry_msgs::msg::TransformStamped {
        header: r2r::std_msgs::msg::Header {
            stamp,
            frame_id: parent.to_string(),
        },
        child_frame_id: child.to_string(),
        transform: r2r::geometry_msgs::msg::Transform {
            translation: r2r::geometry_msgs::msg::Vector3 {
                x: parent_from_child.x_m,
                y: parent_from_child.y_m,
                z: 0.0,
            },
            rotation: r2r::geometry_msgs::msg::Quaternion {
                x: 0.0,
                y: 0.0,
                z: half.sin(),
                w: half.cos(),
            },
        },
    };
    r2r::tf2_msgs::msg::TFMessage {
        transforms: vec![transform],
    }
}

/// What became of one publish on a stream that goes on (sensors, the
/// clock): a failure is logged with its topic, and the next message is
/// tried as usual.
pub fn traced_publish(topic: &str, result: r2r::Result<()>) {
    if let Err(e) = result {
        tracing::warn!(topic, error = %e, "cannot publish");
    }
}

/// Publishes serde values as JSON in `std_msgs/String`.
pub struct JsonPublisher<T> {
    inner: r2r::Publisher<r2r::std_msgs::msg::String>,
    _marker: PhantomData<fn(&T)>,
}

impl<T: Serialize> JsonPublisher<T> {
    pub fn new(node: &mut r2r::Node, topic: &str) -> Result<Self, RosError> {
        Ok(Self {
            inner: node.create_publisher(topic, reliable_qos())?,
            _marker: PhantomData,
        })
    }
    pub fn publish(&self, value: &T) -> Result<(), RosError> {
        let data = serde_json::to_string(value)?;
        self.inner.publish(&r2r::std_msgs::msg::String { data })?;
        Ok(())
    }
    pub fn subscribers(&self) -> usize {
        self.inner
            .get_inter_process_subscription_count()
            .unwrap_or(0)
    }
}

/// Subscribes to a JSON topic; messages that do not parse are logged and skipped.
pub fn json_subscription<T: DeserializeOwned + 'static>(
    node: &mut r2r::Node,
    topic: &str,
) -> Result<impl Stream<Item = T> + Unpin, RosError> {
    let topic_name = topic.to_string();
    let s = node.subscribe::<r2r::std_msgs::msg::String>(topic, reliable_qos())?;
    Ok(s.filter_map(move |m| {
        let parsed = match serde_json::from_str::<T>(&m.data) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(topic = %topic_name, error = %e, "skipping a malformed JSON message");
                None
            }
        };
        futures::future::ready(parsed)
    }))
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes. This waits on
/// a condition (a discovery count, a received message), never a fixed time.
pub async fn wait_until(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
) -> Result<(), RosError> {
    let start = Instant::now();
    loop {
        if cond() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(RosError::Timeout {
                what: what.to_string(),
                waited_s: start.elapsed().as_secs_f64(),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Resolves on SIGINT or SIGTERM, or when the process that started this one
/// exits (when `ROSETTA_EXIT_WITH_PARENT=1`), so that no node outlives the launcher.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let watch_parent = std::env::var("ROSETTA_EXIT_WITH_PARENT").is_ok_and(|v| v == "1");
    let parent = std::os::unix::process::parent_id();
    let parent_gone = async move {
        if !watch_parent {
            return futures::future::pending::<()>().await;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if std::os::unix::process::parent_id() != parent {
                tracing::warn!("the launcher is gone; shutting down");
                return;
            }
        }
    };
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = parent_gone => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odom_yaw_comes_from_the_quaternion() {
        let mut m = r2r::nav_msgs::msg::Odometry::default();
        let yaw: f64 = -2.5;
        m.pose.pose.orientation.z = (yaw / 2.0).sin();
        m.pose.pose.orientation.w = (yaw / 2.0).cos();
        m.pose.pose.position.x = 1.5;
        let p = odom_pose(&m);
        assert!((p.yaw_rad - yaw).abs() < 1e-12 && p.x_m == 1.5);
    }

    #[test]
    fn namespaces_are_normalised_or_refused_with_the_rule() {
        assert_eq!(normalize_namespace("").unwrap(), "");
        assert_eq!(normalize_namespace("/").unwrap(), "");
        assert_eq!(normalize_namespace("robot1").unwrap(), "/robot1");
        assert_eq!(
            normalize_namespace("/fleet/robot_2/").unwrap(),
            "/fleet/robot_2"
        );
        for bad in ["1robot", "robot-1", "a//b", "robot 1"] {
            let e = normalize_namespace(bad).unwrap_err().to_string();
            assert!(e.contains("not a ROS namespace"), "{bad}: {e}");
        }
    }

    #[test]
    fn stamps_round_trip() {
        for s in [0.0, 0.5, 12.345678901, 1000.999999999] {
            assert!((stamp_to_secs(&secs_to_stamp(s)) - s).abs() < 2e-9);
        }
        assert_eq!(stamp_to_secs(&secs_to_stamp(f64::NAN)), 0.0);
    }
}
