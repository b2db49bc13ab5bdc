//! Raw sensor recordings: what the robot's sensors published (camera,
//! depth, camera info, scan, odometry, joints), byte for byte, in an MCAP
//! file with the ROS 2 profile (CDR messages, `ros2msg` schemas with the
//! full message definitions, as rosbag2's MCAP storage writes them), so that
//! standard tools read it (`ros2 bag`, Foxglove, the `mcap` CLI), and so that
//! perception and the planner can be run again on it offline
//! (`rosetta replay`).
//!
//! This module is the file format, free of ROS; `record` and `replay` below
//! are the thin ROS 2 shells.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rosetta_common::ros::{self, Spinner};
use rosetta_common::topics;

/// The topics a sensor recording holds, with their types.
pub const SENSOR_TOPICS: &[(&str, &str)] = &[
    (topics::IMAGE, "sensor_msgs/msg/Image"),
    (topics::DEPTH, "sensor_msgs/msg/Image"),
    (topics::CAMERA_INFO, "sensor_msgs/msg/CameraInfo"),
    (topics::SCAN, "sensor_msgs/msg/LaserScan"),
    (topics::ODOM, "nav_msgs/msg/Odometry"),
    (topics::JOINT_STATES, "sensor_msgs/msg/JointState"),
];

#[derive(Debug, thiserror::Error)]
pub enum SensorsError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a readable MCAP recording: {reason}")]
    Mcap { path: String, reason: String },
    #[error("{path}: holds no messages")]
    Empty { path: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SensorsError + '_ {
    move |source| SensorsError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn mcap_err(path: &Path) -> impl Fn(mcap::McapError) -> SensorsError + '_ {
    move |e| SensorsError::Mcap {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

const PRIMITIVES: &[&str] = &[
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
    "uint32", "int64", "uint64", "string", "wstring",
];

/// The types a `.msg` definition uses, as `pkg/Type`, in order.
fn used_types(pkg: &str, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(ty) = line.split_whitespace().next() else {
            continue;
        };
        // Arrays (`T[]`, `T[3]`, `T[<=3]`) and bounded strings (`string<=5`).
        let base = ty.split(['[', '<']).next().unwrap_or(ty);
        if base.is_empty() || PRIMITIVES.contains(&base) {
            continue;
        }
        let full = match base {
            "Header" => "std_msgs/Header".to_string(),
            b if b.contains('/') => b.to_string(),
            b => format!("{pkg}/{b}"),
        };
        if !out.contains(&full) {
            out.push(full);
        }
    }
    out
}

/// The full `ros2msg` definition of `ty` (`pkg/msg/Type`) as rosbag2 writes
/// it: the type's own `.msg` text, then each type it uses (depth first, each
/// once) after a line of `=` and `MSG: pkg/Type`. The `.msg` files are found
/// under `share/<pkg>/msg/` of the `prefixes` (AMENT_PREFIX_PATH). `None`
/// when one of them is missing.
pub fn message_definition(prefixes: &[PathBuf], ty: &str) -> Option<String> {
    let read = |pkg: &str, name: &str| {
        prefixes.iter().find_map(|p| {
            std::fs::read_to_string(
                p.join("share")
                    .join(pkg)
                    .join("msg")
                    .join(format!("{name}.msg")),
            )
            .ok()
        })
    };
    let mut parts = ty.split('/');
    let (pkg, name) = match (parts.next(), parts.next(), parts.next()) {
        (Some(p), Some("msg"), Some(n)) => (p, n),
        (Some(p), Some(n), None) => (p, n),
        _ => return None,
    };
    let top = read(pkg, name)?;
    let mut out = top.trim_end().to_string();
    let mut seen: Vec<String> = Vec::new();
    let mut stack: Vec<String> = used_types(pkg, &top).into_iter().rev().collect();
    while let Some(dep) = stack.pop() {
        if seen.contains(&dep) {
            continue;
        }
        let (dpkg, dname) = dep.split_once('/')?;
        let text = read(dpkg, dname)?;
        out.push_str(&format!(
            "\n{}\nMSG: {dep}\n{}",
            "=".repeat(80),
            text.trim_end()
        ));
        for d in used_types(dpkg, &text).into_iter().rev() {
            stack.push(d);
        }
        seen.push(dep);
    }
    Some(out)
}

/// The ament prefixes of this environment (AMENT_PREFIX_PATH).
pub fn ament_prefixes() -> Vec<PathBuf> {
    std::env::var("AMENT_PREFIX_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// Writes sensor messages (serialized CDR) into an MCAP file.
pub struct SensorWriter<W: Write + Seek> {
    writer: mcap::Writer<W>,
    channels: HashMap<String, u16>,
    sequence: u32,
    pub messages: u64,
}

impl SensorWriter<BufWriter<std::fs::File>> {
    /// A new recording at `path` (zstd-compressed chunks).
    pub fn create(path: &Path) -> Result<Self, SensorsError> {
        let file = std::fs::File::create(path).map_err(io(path))?;
        let writer = mcap::WriteOptions::new()
            .profile("ros2")
            .compression(Some(mcap::Compression::Zstd))
            .create(BufWriter::new(file))
            .map_err(mcap_err(path))?;
        Ok(Self {
            writer,
            channels: HashMap::new(),
            sequence: 0,
            messages: 0,
        })
    }
}

impl<W: Write + Seek> SensorWriter<W> {
    /// Adds a topic of type `ty` with its full message definition (empty
    /// when the `.msg` files are not found: the messages are still readable
    /// by tools that know the type).
    pub fn add_topic(&mut self, topic: &str, ty: &str, definition: &str) -> mcap::McapResult<()> {
        let schema = self
            .writer
            .add_schema(ty, "ros2msg", definition.as_bytes())?;
        let channel = self
            .writer
            .add_channel(schema, topic, "cdr", &BTreeMap::new())?;
        self.channels.insert(topic.to_string(), channel);
        Ok(())
    }

    /// Writes one message received at `log_time_ns` (wall clock, ns).
    pub fn write(&mut self, topic: &str, log_time_ns: u64, data: &[u8]) -> mcap::McapResult<()> {
        let Some(&channel_id) = self.channels.get(topic) else {
            return Err(mcap::McapError::UnknownChannel(self.sequence, 0));
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.writer.write_to_known_channel(
            &mcap::records::MessageHeader {
                channel_id,
                sequence: self.sequence,
                log_time: log_time_ns,
                publish_time: log_time_ns,
            },
            data,
        )?;
        self.messages += 1;
        Ok(())
    }

    /// Writes the summary and index; the file is complete after this.
    pub fn finish(mut self) -> mcap::McapResult<()> {
        self.writer.finish()?;
        Ok(())
    }
}

/// One recorded message.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub topic: String,
    /// The message's type (`pkg/msg/Type`), from its schema.
    pub ty: String,
    pub log_time_ns: u64,
    pub data: Vec<u8>,
}

/// Every message of a recording, in the order they were logged. A
/// truncated or corrupt file is a clear error, and the file is left as it is.
pub fn read_all(path: &Path) -> Result<Vec<Recorded>, SensorsError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let stream = mcap::MessageStream::new(&bytes).map_err(mcap_err(path))?;
    let mut out = Vec::new();
    for m in stream {
        let m = m.map_err(mcap_err(path))?;
        out.push(Recorded {
            topic: m.channel.topic.clone(),
            ty: m
                .channel
                .schema
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default(),
            log_time_ns: m.log_time,
            data: m.data.into_owned(),
        });
    }
    if out.is_empty() {
        return Err(SensorsError::Empty {
            path: path.display().to_string(),
        });
    }
    out.sort_by_key(|r| r.log_time_ns);
    Ok(out)
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Record the robot's raw sensor topics into an MCAP file until Ctrl-C.
#[derive(Debug, Clone, clap::Args)]
pub struct RecordArgs {
    /// The MCAP file to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// The recorder node: subscribes to [`SENSOR_TOPICS`] raw (the bytes as they
/// came over DDS) and writes them as they arrive.
pub async fn record(args: RecordArgs) -> anyhow::Result<()> {
    let mut node = ros::create_node("rosetta_recorder")?;
    let mut writer = SensorWriter::create(&args.out)?;
    let prefixes = ament_prefixes();
    let mut streams = Vec::new();
    for (topic, ty) in SENSOR_TOPICS {
        let definition = message_definition(&prefixes, ty).unwrap_or_else(|| {
            tracing::warn!(%ty, "no .msg definition found: the schema is left empty");
            String::new()
        });
        writer.add_topic(topic, ty, &definition)?;
        let name = topic.to_string();
        streams.push(
            node.subscribe_raw(topic, ty, ros::sensor_qos())?
                .map(move |data| (name.clone(), data))
                .boxed(),
        );
    }
    let node = Arc::new(Mutex::new(node));
    let _spinner = Spinner::start(node);
    let mut messages = futures::stream::select_all(streams);
    tracing::info!(out = %args.out.display(), "recording the sensors");
    let started = Instant::now();
    let work = async {
        while let Some((topic, data)) = messages.next().await {
            if let Err(e) = writer.write(&topic, now_ns(), &data) {
                tracing::error!(error = %e, "cannot write to the recording; it stops here");
                break;
            }
        }
    };
    tokio::select! {
        _ = ros::shutdown_signal() => {}
        _ = work => {}
    }
    let count = writer.messages;
    writer.finish()?;
    tracing::info!(
        messages = count,
        seconds = started.elapsed().as_secs_f64(),
        "sensor recording complete"
    );
    Ok(())
}

/// Publish a sensor recording again, with its timing, so that perception and
/// the planner run on it offline, without the sim or a robot.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// The MCAP file (`sensors.mcap` in an episode folder recorded with
    /// `--record-sensors`).
    pub file: PathBuf,
    /// Playback speed (1 = as recorded).
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Wait until this many nodes subscribe to the camera before starting (up to 30 s).
    #[arg(long, default_value_t = 1)]
    pub wait_for_subscribers: usize,
}

pub async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rate.is_finite() && args.rate > 0.0,
        "--rate must be > 0, got {}",
        args.rate
    );
    let recorded = read_all(&args.file)?;
    let mut node = ros::create_node("rosetta_replay")?;
    let mut publishers = HashMap::new();
    for r in &recorded {
        if !publishers.contains_key(&r.topic) {
            let p = node.create_publisher_untyped(&r.topic, &r.ty, ros::sensor_qos())?;
            publishers.insert(r.topic.clone(), p);
        }
    }
    let camera = publishers.get(topics::IMAGE).cloned();
    let node = Arc::new(Mutex::new(node));
    let _spinner = Spinner::start(node);
    if let Some(cam) = camera {
        let enough = || {
            cam.get_inter_process_subscription_count()
                .is_ok_and(|n| n >= args.wait_for_subscribers)
        };
        if ros::wait_until("camera subscribers", Duration::from_secs(30), enough)
            .await
            .is_err()
        {
            tracing::warn!("replaying with fewer camera subscribers than asked for");
        }
    }
    let first = recorded.first().map_or(0, |r| r.log_time_ns);
    let span_s = recorded.last().map_or(0, |r| r.log_time_ns - first) as f64 * 1e-9;
    tracing::info!(
        messages = recorded.len(),
        span_s,
        rate = args.rate,
        "replaying the sensors"
    );
    let start = tokio::time::Instant::now();
    let work = async {
        for r in &recorded {
            let due = Duration::from_secs_f64((r.log_time_ns - first) as f64 * 1e-9 / args.rate);
            tokio::time::sleep_until(start + due).await;
            if let Some(p) = publishers.get(&r.topic) {
                if let Err(e) = p.publish_raw(&r.data) {
                    tracing::warn!(topic = %r.topic, error = %e, "cannot publish");
                }
            }
        }
    };
    tokio::select! {
        _ = ros::shutdown_signal() => {}
        _ = work => tracing::info!("replay complete"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_reads_back_in_order_with_its_types() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.mcap");
        let mut w = SensorWriter::create(&path).unwrap();
        w.add_topic("scan", "sensor_msgs/msg/LaserScan", "float32 x")
            .unwrap();
        w.add_topic("odom", "nav_msgs/msg/Odometry", "").unwrap();
        w.write("odom", 20, &[1, 2, 3]).unwrap();
        w.write("scan", 10, &[4, 5]).unwrap();
        assert!(w.write("nowhere", 30, &[6]).is_err());
        w.finish().unwrap();
        let r = read_all(&path).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            (
                r[0].topic.as_str(),
                r[0].ty.as_str(),
                r[0].log_time_ns,
                r[0].data.as_slice()
            ),
            ("scan", "sensor_msgs/msg/LaserScan", 10, &[4u8, 5][..])
        );
        assert_eq!(r[1].topic, "odom");
    }

    #[test]
    fn a_truncated_or_empty_recording_is_a_clear_error_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.mcap");
        let mut w = SensorWriter::create(&path).unwrap();
        w.add_topic("scan", "sensor_msgs/msg/LaserScan", "")
            .unwrap();
        for t in 0..100 {
            w.write("scan", t, &[7; 64]).unwrap();
        }
        w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let cut = dir.path().join("cut.mcap");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let e = read_all(&cut).unwrap_err().to_string();
        assert!(
            e.contains("cut.mcap") && e.contains("not a readable MCAP"),
            "{e}"
        );
        assert_eq!(std::fs::read(&cut).unwrap().len(), bytes.len() / 2);

        let empty = dir.path().join("empty.mcap");
        SensorWriter::create(&empty).unwrap().finish().unwrap();
        assert!(read_all(&empty)
            .unwrap_err()
            .to_string()
            .contains("no messages"));
    }

    #[test]
    fn message_definitions_carry_every_type_they_use() {
        let prefixes = ament_prefixes();
        let Some(def) = message_definition(&prefixes, "sensor_msgs/msg/Image") else {
            // Without the ROS environment (`source .local/env.sh`) there is nothing to read.
            assert!(
                prefixes.is_empty(),
                "sensor_msgs/Image.msg not found under {prefixes:?}"
            );
            return;
        };
        assert!(def.contains("uint32 height"), "{def}");
        assert!(def.contains("MSG: std_msgs/Header"), "{def}");
        assert!(def.contains("MSG: builtin_interfaces/Time"), "{def}");
        assert_eq!(def.matches("MSG: std_msgs/Header").count(), 1);
        let odom = message_definition(&prefixes, "nav_msgs/msg/Odometry").unwrap();
        for t in [
            "geometry_msgs/PoseWithCovariance",
            "geometry_msgs/Pose",
            "geometry_msgs/Point",
            "geometry_msgs/Quaternion",
            "geometry_msgs/TwistWithCovariance",
            "geometry_msgs/Vector3",
        ] {
            assert!(
                odom.contains(&format!("MSG: {t}\n")),
                "{t} missing:\n{odom}"
            );
        }
    }
}
