//! Perception as an r2r node: camera, depth, camera info and odometry in;
//! the object map out. Logs the image, detections and objects to rerun.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures::stream::BoxStream;
use futures::StreamExt;
use nalgebra::Isometry3;
use r2r::sensor_msgs::msg::{CameraInfo, Image};
use rosetta_common::frames::MapFromOdom;
use rosetta_common::grid::OccupancyGrid;
use rosetta_common::rec::{self, log_text};
use rosetta_common::robot::{CameraDescription, RobotDescription};
use rosetta_common::ros::{self, stamp_to_secs, JsonPublisher, Spinner};
use rosetta_common::world::Place;
use rosetta_common::{topics, ObjectKind, Pose2D, WorldModel};

use crate::detect::{Detection, PerceptionError};
use crate::detector::{Detector, DetectorKind};
use crate::open_vocab::OpenVocabScorer;
use crate::rec::{log_map, log_static_camera, FrameLog, FrameLogger};
use crate::tracker::Tracker;

/// Detect objects in the camera stream and publish the object map.
#[derive(Debug, Clone, clap::Args)]
pub struct PerceptionArgs {
    /// Frames older than this (against the newest odometry) are skipped as stale.
    #[arg(long, default_value_t = 1.0)]
    pub max_frame_age_s: f64,
    /// The site's named places (TOML, map frame), published with the object map.
    /// Default: the embedded `config/places/default.toml` of the default scene.
    #[arg(long)]
    pub places: Option<std::path::PathBuf>,
    /// The robot's pose in the map when odometry starts, X,Y,YAW (metres,
    /// metres, radians): the `map → odom` transform, as AMCL's initial pose
    /// or RViz's "2D Pose Estimate" give it. Places (map frame) go out in
    /// odom through it, and it is published latched on `tf_static`.
    /// `rosetta demo` and `rosetta up` pass the scene's start pose.
    #[arg(long, value_parser = rosetta_common::frames::parse_pose, default_value = "0,0,0")]
    pub initial_pose: Pose2D,
    /// Side of the square occupancy grid built from /scan and published on
    /// /map (odom frame, 0.05 m cells), centred on where odometry starts.
    #[arg(long, default_value_t = 20.0)]
    pub map_size_m: f64,
    /// Which detector finds the objects: `geometric` (class-agnostic, from
    /// depth: anything standing on the floor or a table, any colour; its
    /// category from the classifier that `train-classifier` trains),
    /// `geometric-rules` (the same, its category from rules of shape and
    /// size), `classical` (OpenCV colour segmentation of the four primary
    /// colours) or `learned` (the network that `train-detector` trains).
    #[arg(long, value_enum, default_value_t = DetectorKind::Geometric)]
    pub detector: DetectorKind,
    /// Weights (safetensors) of the geometric detector's category
    /// classifier, or of the learned detector's network. Default: the ones
    /// built into the binary (perception/models/classifier.safetensors,
    /// perception/models/detector.safetensors).
    #[arg(long)]
    pub detector_weights: Option<std::path::PathBuf>,
    /// A CLIP-family model for a real robot's things (a directory with
    /// Hugging Face's `config.json`, `model.safetensors` and
    /// `tokenizer.json`; nothing is downloaded): each object's camera crop
    /// is scored against `--open-vocab-words`, and a word that holds at
    /// least half the probability and names a known category names it.
    #[arg(long)]
    pub open_vocab_model: Option<std::path::PathBuf>,
    /// The words the open-vocabulary model scores crops against,
    /// comma-separated. Default: every category the stack knows.
    #[arg(long, value_delimiter = ',')]
    pub open_vocab_words: Vec<String>,
}

enum Input {
    Image(Image),
    Depth(Image),
    Info(CameraInfo),
    /// Stamp, pose, and the odometry's frame (the frame the stack's map and
    /// objects are published in: the robot's, whatever it calls it).
    Odom(f64, Pose2D, String),
    Scan(r2r::sensor_msgs::msg::LaserScan),
}

/// How often (sim seconds) the occupancy grid goes out on /map and to rerun.
const MAP_PERIOD_S: f64 = 1.0;

pub async fn run(args: PerceptionArgs) -> anyhow::Result<()> {
    let map_from_odom = MapFromOdom(args.initial_pose);
    let places = map_from_odom.places_in_odom(&load_places(args.places.as_deref())?);
    let detector = Detector::new(args.detector, args.detector_weights.as_deref())?;
    tracing::info!("detector ready: {}", detector.name());
    let open_vocab = match &args.open_vocab_model {
        Some(dir) => {
            let scorer = OpenVocabScorer::load(dir)?;
            let words = if args.open_vocab_words.is_empty() {
                ObjectKind::ALL
                    .iter()
                    .map(|k| k.name().to_string())
                    .collect()
            } else {
                args.open_vocab_words.clone()
            };
            tracing::info!(
                "open-vocabulary scorer ready: {}, words {}",
                dir.display(),
                words.join(", ")
            );
            Some((scorer, words))
        }
        None => None,
    };
    let mut node = ros::create_node("rosetta_perception")?;
    let mut inputs = subscribe_inputs(&mut node)?;
    let objects = JsonPublisher::<WorldModel>::new(&mut node, topics::OBJECTS)?;
    // The map is latched: a node that starts later gets the latest one.
    let map_pub = node.create_publisher::<r2r::nav_msgs::msg::OccupancyGrid>(
        topics::MAP,
        r2r::QosProfile::default()
            .reliable()
            .transient_local()
            .keep_last(1),
    )?;
    publish_map_from_odom(&mut node, &map_from_odom)?;
    let node = Arc::new(Mutex::new(node));
    let _spinner = Spinner::start(node.clone());
    let rec = rec::open_recording("perception");

    let robot = RobotDescription::default();
    let base_from_optical = robot.camera.base_from_optical();
    log_static_camera(&rec, &robot.camera, &base_from_optical);
    let mut perception = Perception {
        max_frame_age_s: args.max_frame_age_s,
        places,
        detector,
        open_vocab,
        objects,
        map_pub,
        grid: OccupancyGrid::new([0.0, 0.0], [args.map_size_m, args.map_size_m], 0.05),
        last_map_s: f64::NEG_INFINITY,
        odom_history: VecDeque::new(),
        odom_frame: topics::FRAME_ODOM.to_string(),
        camera: None,
        last_image: None,
        last_depth: None,
        tracker: Tracker::default(),
        frame_logger: FrameLogger::start(rec.clone()),
        rec,
        robot,
        base_from_optical,
    };
    tracing::info!("perception ready");

    let work = async {
        while let Some(input) = inputs.next().await {
            perception.handle(input);
        }
    };
    tokio::select! {
        _ = ros::shutdown_signal() => {}
        _ = work => {}
    }
    perception.finish();
    Ok(())
}

/// Publishes `map → odom` once, latched, for every node that starts later.
fn publish_map_from_odom(node: &mut r2r::Node, map_from_odom: &MapFromOdom) -> anyhow::Result<()> {
    let publisher = node.create_publisher::<r2r::tf2_msgs::msg::TFMessage>(
        topics::TF_STATIC,
        r2r::QosProfile::default()
            .reliable()
            .transient_local()
            .keep_last(1),
    )?;
    let msg = ros::planar_transform(
        r2r::builtin_interfaces::msg::Time::default(),
        topics::FRAME_MAP,
        topics::FRAME_ODOM,
        &map_from_odom.0,
    );
    publisher.publish(&msg)?;
    tracing::info!(map_from_odom = ?map_from_odom.0, "published map → odom on tf_static");
    // The node owns the publisher (r2r keeps it until the node goes), so the
    // latched message stays there for late subscribers after this handle drops.
    Ok(())
}

/// The site's named places: from `path`, or the default scene's.
fn load_places(path: Option<&std::path::Path>) -> anyhow::Result<Vec<Place>> {
    Ok(match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("cannot read the places file {}: {e}", path.display())
            })?;
            rosetta_common::world::parse_places(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => rosetta_common::world::parse_places(rosetta_common::world::DEFAULT_PLACES_TOML)?,
    })
}

/// Every sensor topic perception reads, as one stream of [`Input`]s.
fn subscribe_inputs(
    node: &mut r2r::Node,
) -> anyhow::Result<futures::stream::SelectAll<BoxStream<'static, Input>>> {
    let qos = ros::sensor_qos();
    let images = node
        .subscribe::<Image>(topics::IMAGE, qos.clone())?
        .map(Input::Image);
    let depths = node
        .subscribe::<Image>(topics::DEPTH, qos.clone())?
        .map(Input::Depth);
    let infos = node
        .subscribe::<CameraInfo>(topics::CAMERA_INFO, qos.clone())?
        .map(Input::Info);
    let odoms = node
        .subscribe::<r2r::nav_msgs::msg::Odometry>(topics::ODOM, qos.clone())?
        .map(|m| {
            Input::Odom(
                stamp_to_secs(&m.header.stamp),
                ros::odom_pose(&m),
                m.header.frame_id,
            )
        });
    let scans = node
        .subscribe::<r2r::sensor_msgs::msg::LaserScan>(topics::SCAN, qos.clone())?
        .map(Input::Scan);
    Ok(futures::stream::select_all(vec![
        images.boxed(),
        depths.boxed(),
        infos.boxed(),
        odoms.boxed(),
        scans.boxed(),
    ]))
}

/// Perception's state between inputs: the odometry history, the latest
/// camera pair, the tracker and the occupancy grid, and where they go.
struct Perception {
    max_frame_age_s: f64,
    places: Vec<Place>,
    detector: Detector,
    /// The optional open-vocabulary scorer and its words.
    open_vocab: Option<(OpenVocabScorer, Vec<String>)>,
    objects: JsonPublisher<WorldModel>,
    map_pub: r2r::Publisher<r2r::nav_msgs::msg::OccupancyGrid>,
    grid: OccupancyGrid,
    last_map_s: f64,
    odom_history: VecDeque<(f64, Pose2D)>,
    /// The frame the map and objects are published in: the odometry's.
    odom_frame: String,
    camera: Option<CameraDescription>,
    last_image: Option<Image>,
    last_depth: Option<Image>,
    tracker: Tracker,
    frame_logger: FrameLogger,
    rec: rerun::RecordingStream,
    robot: RobotDescription,
    base_from_optical: Isometry3<f64>,
}

impl Perception {
    fn handle(&mut self, input: Input) {
        match input {
            Input::Odom(t, p, frame) => self.on_odom(t, p, frame),
            Input::Info(info) => self.camera = camera_from_info(&info, &self.robot.camera),
            Input::Scan(scan) => self.on_scan(&scan),
            Input::Image(i) => {
                self.last_image = Some(i);
                self.on_frame();
            }
            Input::Depth(d) => {
                self.last_depth = Some(d);
                self.on_frame();
            }
        }
    }

    fn on_odom(&mut self, t: f64, p: Pose2D, frame: String) {
        if !p.is_finite() || !t.is_finite() {
            tracing::warn!("odometry with NaN skipped");
            return;
        }
        if !frame.is_empty() && frame != self.odom_frame {
            tracing::info!(%frame, "publishing the map and objects in the odometry's frame");
            self.odom_frame = frame;
        }
        self.odom_history.push_back((t, p));
        while self.odom_history.len() > 200 {
            self.odom_history.pop_front();
        }
    }

    /// Integrates a scan into the grid; publishes and logs the grid every
    /// [`MAP_PERIOD_S`].
    fn on_scan(&mut self, scan: &r2r::sensor_msgs::msg::LaserScan) {
        let stamp = stamp_to_secs(&scan.header.stamp);
        let Some(pose) = pose_at(&self.odom_history, stamp) else {
            tracing::debug!(stamp, "no odometry near the scan's stamp; scan skipped");
            return;
        };
        let sensor = self.robot.lidar.sensor_pose(&pose);
        self.grid.integrate_scan(&sensor, &ros::scan_view(scan));
        if stamp - self.last_map_s >= MAP_PERIOD_S {
            self.last_map_s = stamp;
            if let Err(e) = self.map_pub.publish(&occupancy_msg(
                &self.grid,
                &self.odom_frame,
                &scan.header.stamp,
            )) {
                tracing::warn!(error = %e, "cannot publish the map");
            }
            log_map(&self.rec, &self.grid, stamp);
        }
    }

    /// Once an image and a depth frame of the same stamp are in: detects,
    /// tracks, publishes the object map and logs the frame.
    fn on_frame(&mut self) {
        let (Some(img), Some(dep)) = (&self.last_image, &self.last_depth) else {
            return;
        };
        if img.header.stamp != dep.header.stamp {
            return;
        }
        let (img, dep) = (self.last_image.take(), self.last_depth.take());
        let (Some(img), Some(dep)) = (img, dep) else {
            return;
        };
        let Some(cam) = self.camera.clone() else {
            tracing::debug!("no camera_info yet; frame skipped");
            return;
        };
        let stamp = stamp_to_secs(&img.header.stamp);
        let newest = self
            .odom_history
            .back()
            .map(|(t, _)| *t)
            .unwrap_or(f64::NEG_INFINITY);
        if newest - stamp > self.max_frame_age_s {
            tracing::warn!(age_s = newest - stamp, "stale camera frame skipped");
            return;
        }
        let Some(pose) = pose_at(&self.odom_history, stamp) else {
            tracing::debug!(stamp, "no odometry near the frame's stamp; frame skipped");
            return;
        };
        let odom_from_optical = pose.to_isometry() * self.base_from_optical;
        // Detection is CPU-bound (about 10 ms a frame): keep it off the async workers.
        let detected = tokio::task::block_in_place(|| {
            process(
                &self.detector,
                self.open_vocab.as_ref(),
                &img,
                &dep,
                &cam,
                &odom_from_optical,
            )
        });
        match detected {
            Ok((depth_m, dets)) => {
                let view = crate::tracker::View {
                    camera: &cam,
                    odom_from_optical: &odom_from_optical,
                    depth_m: &depth_m,
                };
                // While the base turns fast, the frame's pose is least sure
                // (a few degrees off puts a thing's place on the wall
                // behind it): such a frame adds what it sees, but is no
                // evidence that something is gone.
                let steady = yaw_rate_at(&self.odom_history, stamp)
                    .is_some_and(|w| w.abs() < MAX_FORGET_YAW_RATE_RAD_S);
                self.tracker.update(&dets, stamp, steady.then_some(&view));
                let mut world = self.tracker.world_model(stamp, &self.odom_frame);
                world.places.clone_from(&self.places);
                if let Err(e) = self.objects.publish(&world) {
                    tracing::warn!(error = %e, "cannot publish the object map");
                }
                self.frame_logger.log(FrameLog {
                    stamp_s: stamp,
                    pose,
                    width_px: img.width,
                    height_px: img.height,
                    rgb: img.data,
                    depth_m,
                    detections: dets,
                    world,
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "frame skipped");
                log_text(
                    &self.rec,
                    "perception",
                    "WARN",
                    &format!("frame skipped: {e}"),
                );
            }
        }
    }

    /// Ends the recording: the frames still queued, then a flush.
    fn finish(self) {
        if self.frame_logger.dropped() > 0 {
            tracing::warn!(
                dropped = self.frame_logger.dropped(),
                "camera frames left out of the recording"
            );
        }
        self.frame_logger.finish();
        if let Err(e) = self.rec.flush_blocking() {
            tracing::warn!(error = %e, "the recording may be incomplete");
        }
    }
}

/// The odometry pose nearest to `stamp`, if one is within 60 ms.
/// Frames taken while the base turns faster than this do not make the
/// tracker forget anything.
const MAX_FORGET_YAW_RATE_RAD_S: f64 = 0.3;

/// The base's yaw rate at `stamp`, from the odometry samples around it.
fn yaw_rate_at(history: &VecDeque<(f64, Pose2D)>, stamp: f64) -> Option<f64> {
    let before = history.iter().rev().find(|(t, _)| *t <= stamp)?;
    let after = history
        .iter()
        .find(|(t, _)| *t > stamp)
        .or_else(|| history.iter().rev().find(|(t, _)| *t < before.0))?;
    let dt = after.0 - before.0;
    (dt.abs() > 1e-6)
        .then(|| rosetta_common::wrap_angle_rad(after.1.yaw_rad - before.1.yaw_rad) / dt)
}

fn pose_at(history: &VecDeque<(f64, Pose2D)>, stamp: f64) -> Option<Pose2D> {
    history
        .iter()
        .min_by(|a, b| (a.0 - stamp).abs().total_cmp(&(b.0 - stamp).abs()))
        .filter(|(t, _)| (t - stamp).abs() < 0.06)
        .map(|(_, p)| *p)
}

/// Intrinsics from camera_info; the mounting comes from the robot description.
fn camera_from_info(info: &CameraInfo, mount: &CameraDescription) -> Option<CameraDescription> {
    let k = &info.k;
    if k.len() != 9 || !k.iter().all(|v| v.is_finite()) || k[0] <= 0.0 || k[4] <= 0.0 {
        tracing::warn!("camera_info with an invalid K ignored");
        return None;
    }
    Some(CameraDescription {
        width_px: info.width,
        height_px: info.height,
        fx_px: k[0],
        fy_px: k[4],
        cx_px: k[2],
        cy_px: k[5],
        ..mount.clone()
    })
}

/// Checks a frame pair and runs the detector on it; returns the depth (metres)
/// with the detections, for the recording.
fn process(
    detector: &Detector,
    open_vocab: Option<&(OpenVocabScorer, Vec<String>)>,
    img: &Image,
    dep: &Image,
    cam: &CameraDescription,
    odom_from_optical: &Isometry3<f64>,
) -> Result<(Vec<f32>, Vec<Detection>), PerceptionError> {
    if img.encoding != "rgb8" {
        return Err(PerceptionError::Encoding(img.encoding.clone()));
    }
    if dep.encoding != "32FC1" || dep.is_bigendian != 0 {
        return Err(PerceptionError::Encoding(dep.encoding.clone()));
    }
    if img.width != cam.width_px || img.height != cam.height_px || img.step != img.width * 3 {
        return Err(PerceptionError::ImageSize {
            width: img.width,
            height: img.height,
            got: img.data.len(),
            want: (cam.width_px * cam.height_px * 3) as usize,
        });
    }
    let depth: Vec<f32> = dep
        .data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let mut dets = detector.detect(&img.data, &depth, cam, odom_from_optical)?;
    if let Some((scorer, words)) = open_vocab {
        scorer.relabel(&img.data, cam, words, &mut dets)?;
    }
    Ok((depth, dets))
}

/// The grid as `nav_msgs/OccupancyGrid` in the odometry's frame.
fn occupancy_msg(
    grid: &OccupancyGrid,
    frame_id: &str,
    stamp: &r2r::builtin_interfaces::msg::Time,
) -> r2r::nav_msgs::msg::OccupancyGrid {
    use r2r::geometry_msgs::msg::{Point, Pose, Quaternion};
    r2r::nav_msgs::msg::OccupancyGrid {
        header: r2r::std_msgs::msg::Header {
            stamp: stamp.clone(),
            frame_id: frame_id.to_string(),
        },
        info: r2r::nav_msgs::msg::MapMetaData {
            map_load_time: stamp.clone(),
            resolution: grid.resolution_m as f32,
            width: grid.width as u32,
            height: grid.height as u32,
            origin: Pose {
                position: Point {
                    x: grid.origin_m[0],
                    y: grid.origin_m[1],
                    z: 0.0,
                },
                orientation: Quaternion {
                    x: 0.0,
                    y: 0.0,
                    z: 0.0,
                    w: 1.0,
                },
            },
        },
        data: grid.to_ros_data(),
    }
}
