//! What perception logs to rerun, free of ROS: the camera (pinhole, RGB as
//! JPEG, depth in millimetres), the detections as 2-D boxes on the image, the
//! object map as 3-D boxes, and the occupancy grid. The node calls these; so
//! does the logging benchmark (`rec-bench`), which measures their cost.

use nalgebra::Isometry3;
use opencv::core::Vector;
use opencv::prelude::*;
use rosetta_common::grid::{Cell, OccupancyGrid};
use rosetta_common::rec;
use rosetta_common::robot::CameraDescription;
use rosetta_common::{Pose2D, Shape, WorldModel};

use crate::detect::Detection;

/// Logs to the recording. A failure is warned about and the node goes on:
/// the recording is a record of the run, not part of perception's work.
fn log(
    rec: &rerun::RecordingStream,
    entity: impl Into<rerun::EntityPath>,
    what: &impl rerun::AsComponents,
) {
    let entity = entity.into();
    if let Err(e) = rec.log(entity.clone(), what) {
        tracing::warn!(%entity, error = %e, "cannot log to the recording");
    }
}

/// [`log`] for data that holds for the whole recording.
fn log_static(
    rec: &rerun::RecordingStream,
    entity: impl Into<rerun::EntityPath>,
    what: &impl rerun::AsComponents,
) {
    let entity = entity.into();
    if let Err(e) = rec.log_static(entity.clone(), what) {
        tracing::warn!(%entity, error = %e, "cannot log to the recording");
    }
}

/// One camera frame as it came in: RGB8 pixels and depth in metres, row-major.
#[derive(Debug, Clone, Copy)]
pub struct CameraFrame<'a> {
    pub width_px: u32,
    pub height_px: u32,
    pub rgb: &'a [u8],
    pub depth_m: &'a [f32],
}

/// The camera's mount (a static transform under the robot) and its pinhole
/// model, so that the viewer projects the image and depth into the 3-D scene.
pub fn log_static_camera(
    rec: &rerun::RecordingStream,
    cam: &CameraDescription,
    base_from_optical: &Isometry3<f64>,
) {
    let t = base_from_optical.translation.vector;
    let q = base_from_optical.rotation;
    log_static(
        rec,
        "world/robot/base_link/camera",
        &rerun::Transform3D::from_translation_rotation(
            [t.x as f32, t.y as f32, t.z as f32],
            rerun::Quaternion::from_xyzw([q.i as f32, q.j as f32, q.k as f32, q.w as f32]),
        ),
    );
    log_static(
        rec,
        "world/robot/base_link/camera",
        &rerun::Pinhole::from_focal_length_and_resolution(
            [cam.fx_px as f32, cam.fy_px as f32],
            [cam.width_px as f32, cam.height_px as f32],
        )
        .with_principal_point([cam.cx_px as f32, cam.cy_px as f32]),
    );
}

/// One processed frame: the robot's pose at its stamp, the image, the depth,
/// the detections on the image and the object map in the scene.
pub fn log_frame(
    rec: &rerun::RecordingStream,
    stamp: f64,
    pose: &Pose2D,
    frame: &CameraFrame<'_>,
    dets: &[Detection],
    world: &WorldModel,
    shown: &mut Vec<String>,
) {
    if !rec.is_enabled() {
        return;
    }
    rec::set_sim_time(rec, stamp);
    rec::log_robot_pose(rec, pose);
    // JPEG keeps the camera at tens of kB per frame instead of 900 kB.
    if let Some(jpeg) = encode_jpeg(frame) {
        log(
            rec,
            "world/robot/base_link/camera/image",
            &rerun::EncodedImage::from_file_contents(jpeg).with_media_type(rerun::MediaType::JPEG),
        );
    }
    if frame.depth_m.len() == (frame.width_px * frame.height_px) as usize {
        log(
            rec,
            "world/robot/base_link/camera/depth",
            &rerun::DepthImage::from_gray16(
                depth_mm_bytes(frame.depth_m),
                [frame.width_px, frame.height_px],
            )
            .with_meter(1000.0),
        );
    }
    let mins: Vec<[f32; 2]> = dets
        .iter()
        .map(|d| [d.bbox_px[0] as f32, d.bbox_px[1] as f32])
        .collect();
    let sizes: Vec<[f32; 2]> = dets
        .iter()
        .map(|d| [d.bbox_px[2] as f32, d.bbox_px[3] as f32])
        .collect();
    let labels: Vec<String> = dets
        .iter()
        .map(|d| {
            format!(
                "{} {} ({:.0}%)",
                d.color.name(),
                d.kind.name(),
                d.confidence * 100.0
            )
        })
        .collect();
    let colors: Vec<rerun::Color> = dets.iter().map(|d| rgb(d.color.rgb())).collect();
    log(
        rec,
        "world/robot/base_link/camera/image/detections",
        &rerun::Boxes2D::from_mins_and_sizes(mins, sizes)
            .with_labels(labels)
            .with_colors(colors),
    );
    log_objects(rec, world, shown);
}

/// How far above an object's top its label floats, by its rank along the
/// table (alternating), so that the labels of neighbours seen from the
/// default eye do not print over each other; a thin line ties each label
/// to its object.
const LABEL_HEIGHTS_M: [f64; 3] = [0.06, 0.16, 0.26];

/// The object map as perception believes it: each object a 3-D shape of its
/// kind and size (a cube solid, a bin open-topped: floor and four walls),
/// in its colour, under `world/objects/<id>`, and a label with what it is
/// believed to be (colour, category, confidence) on a pin above it.
/// `shown` holds the ids drawn last time; an object that left the map (the
/// tracker forgot it) is cleared from the scene.
pub fn log_objects(rec: &rerun::RecordingStream, world: &WorldModel, shown: &mut Vec<String>) {
    for gone in shown
        .iter()
        .filter(|id| !world.objects.iter().any(|o| &o.id == *id))
    {
        log(
            rec,
            format!("world/objects/{gone}"),
            &rerun::Clear::recursive(),
        );
    }
    shown.clear();
    shown.extend(world.objects.iter().map(|o| o.id.clone()));
    // Rank along y (left to right as the table faces the robot's start):
    // neighbours get different label heights.
    let mut order: Vec<usize> = (0..world.objects.len()).collect();
    order.sort_by(|&a, &b| {
        let (pa, pb) = (&world.objects[a].position_m, &world.objects[b].position_m);
        pa[1].total_cmp(&pb[1]).then(pa[0].total_cmp(&pb[0]))
    });
    for (rank, &i) in order.iter().enumerate() {
        let o = &world.objects[i];
        let size = o.size_or_nominal_m();
        let c = o.position_m;
        let color = rgb(o.color.rgb());
        let entity = format!("world/objects/{}", o.id);
        let centre = [c[0] as f32, c[1] as f32, c[2] as f32];
        let half = size.map(|s| s as f32 / 2.0);
        if o.kind.is_container() {
            let (centers, sizes): (Vec<_>, Vec<_>) =
                open_box_parts(c, size, BIN_WALL_M).into_iter().unzip();
            let shape = rerun::Boxes3D::from_centers_and_sizes(centers, sizes)
                .with_fill_mode(rerun::FillMode::Solid);
            log(rec, entity.as_str(), &shape.with_colors([color]));
        } else {
            match o.kind.shape() {
                Shape::Box => {
                    let shape = rerun::Boxes3D::from_centers_and_half_sizes([centre], [half])
                        .with_fill_mode(rerun::FillMode::Solid);
                    log(rec, entity.as_str(), &shape.with_colors([color]));
                }
                Shape::Sphere => {
                    let r = half[0].min(half[1]).min(half[2]);
                    let shape = rerun::Ellipsoids3D::from_centers_and_radii([centre], [r])
                        .with_fill_mode(rerun::FillMode::Solid);
                    log(rec, entity.as_str(), &shape.with_colors([color]));
                }
                Shape::Cylinder => {
                    let shape = rerun::Cylinders3D::from_lengths_and_radii(
                        [2.0 * half[2]],
                        [half[0].min(half[1])],
                    )
                    .with_centers([centre])
                    .with_fill_mode(rerun::FillMode::Solid);
                    log(rec, entity.as_str(), &shape.with_colors([color]));
                }
            }
        }
        let top = c[2] + size[2] / 2.0;
        let label_z = top + LABEL_HEIGHTS_M[rank % LABEL_HEIGHTS_M.len()];
        let pin = [
            [c[0] as f32, c[1] as f32, top as f32],
            [c[0] as f32, c[1] as f32, label_z as f32],
        ];
        // Short, so that neighbours' labels fit; the id is the entity's name.
        let text = format!(
            "{} {} {:.0}%",
            o.color.name(),
            o.kind.name(),
            o.confidence * 100.0
        );
        log(
            rec,
            format!("{entity}/label"),
            &rerun::Points3D::new([pin[1]])
                .with_radii([0.008])
                .with_colors([color])
                .with_labels([text]),
        );
        log(
            rec,
            format!("{entity}/pin"),
            &rerun::LineStrips3D::new([pin])
                .with_colors([rerun::Color::from_rgb(200, 200, 200)])
                .with_radii([0.002]),
        );
    }
}

/// Wall thickness a bin is drawn with.
const BIN_WALL_M: f64 = 0.02;

/// An open-topped box as five thin boxes (centre, size): the floor and the
/// four walls.
pub fn open_box_parts(
    center_m: [f64; 3],
    size_m: [f64; 3],
    wall_m: f64,
) -> Vec<([f32; 3], [f32; 3])> {
    let [cx, cy, cz] = center_m;
    let [sx, sy, sz] = size_m;
    let w = wall_m.min(sx / 2.0).min(sy / 2.0).min(sz);
    let f = |v: [f64; 3]| v.map(|x| x as f32);
    vec![
        (f([cx, cy, cz - sz / 2.0 + w / 2.0]), f([sx, sy, w])),
        (f([cx - sx / 2.0 + w / 2.0, cy, cz]), f([w, sy, sz])),
        (f([cx + sx / 2.0 - w / 2.0, cy, cz]), f([w, sy, sz])),
        (f([cx, cy - sy / 2.0 + w / 2.0, cz]), f([sx, w, sz])),
        (f([cx, cy + sy / 2.0 - w / 2.0, cz]), f([sx, w, sz])),
    ]
}

/// A frame that the logger owns: what [`FrameLogger`] takes off the
/// perception thread.
#[derive(Debug, Clone)]
pub struct FrameLog {
    pub stamp_s: f64,
    pub pose: Pose2D,
    pub width_px: u32,
    pub height_px: u32,
    pub rgb: Vec<u8>,
    pub depth_m: Vec<f32>,
    pub detections: Vec<Detection>,
    pub world: WorldModel,
}

/// How many frames may wait for the logger before new ones are left out of
/// the recording (about 8 MB at 640x480).
pub const LOG_QUEUE_FRAMES: usize = 4;

/// Logs camera frames on a thread of its own, so that the JPEG and depth
/// encoding and rerun's serialisation never hold up detection. A frame that
/// finds [`LOG_QUEUE_FRAMES`] frames waiting is left out of the recording
/// (never out of perception) and counted.
pub struct FrameLogger {
    tx: Option<std::sync::mpsc::SyncSender<FrameLog>>,
    worker: Option<std::thread::JoinHandle<()>>,
    dropped: u64,
}

impl FrameLogger {
    /// A logger into `rec`; with rerun off, no thread and nothing to do.
    pub fn start(rec: rerun::RecordingStream) -> Self {
        if !rec.is_enabled() {
            return Self {
                tx: None,
                worker: None,
                dropped: 0,
            };
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<FrameLog>(LOG_QUEUE_FRAMES);
        let worker = std::thread::Builder::new()
            .name("frame-logger".into())
            .spawn(move || {
                let mut shown = Vec::new();
                for f in rx {
                    let frame = CameraFrame {
                        width_px: f.width_px,
                        height_px: f.height_px,
                        rgb: &f.rgb,
                        depth_m: &f.depth_m,
                    };
                    log_frame(
                        &rec,
                        f.stamp_s,
                        &f.pose,
                        &frame,
                        &f.detections,
                        &f.world,
                        &mut shown,
                    );
                }
            });
        match worker {
            Ok(w) => Self {
                tx: Some(tx),
                worker: Some(w),
                dropped: 0,
            },
            Err(e) => {
                tracing::warn!(error = %e, "no thread for the frame logger: camera frames are not recorded");
                Self {
                    tx: None,
                    worker: None,
                    dropped: 0,
                }
            }
        }
    }

    /// Hands a frame to the logger; `false` when it was left out (queue full).
    pub fn log(&mut self, frame: FrameLog) -> bool {
        let Some(tx) = &self.tx else { return true };
        match tx.try_send(frame) {
            Ok(()) => true,
            Err(_) => {
                self.dropped += 1;
                if self.dropped == 1 || self.dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped = self.dropped,
                        "the recording falls behind the camera: frames left out of it"
                    );
                }
                false
            }
        }
    }

    /// Frames left out of the recording so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Logs what is queued, then stops the thread.
    pub fn finish(mut self) {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            if w.join().is_err() {
                tracing::warn!("the frame logger panicked: the recording may lack frames");
            }
        }
    }
}

/// Depth as little-endian u16 millimetres (rerun's 16-bit depth, meter =
/// 1000); no return (NaN, infinite, beyond 65 m) is 0, which rerun leaves out.
pub fn depth_mm_bytes(depth_m: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(depth_m.len() * 2);
    for d in depth_m {
        let mm = if d.is_finite() && *d > 0.0 && *d < 65.535 {
            (d * 1000.0).round() as u16
        } else {
            0
        };
        out.extend_from_slice(&mm.to_le_bytes());
    }
    out
}

fn rgb(c: [u8; 3]) -> rerun::Color {
    rerun::Color::from_rgb(c[0], c[1], c[2])
}

/// The frame's RGB as JPEG (quality 80); `None` when the buffer does not
/// match its size or OpenCV fails.
pub fn encode_jpeg(frame: &CameraFrame<'_>) -> Option<Vec<u8>> {
    if frame.rgb.len() != (frame.width_px * frame.height_px * 3) as usize {
        return None;
    }
    let flat = Mat::from_slice(frame.rgb).ok()?;
    let rgb = flat.reshape(3, frame.height_px as i32).ok()?;
    let mut bgr = Mat::default();
    opencv::imgproc::cvt_color_def(&rgb, &mut bgr, opencv::imgproc::COLOR_RGB2BGR).ok()?;
    let mut buf = Vector::<u8>::new();
    let params = Vector::<i32>::from_slice(&[opencv::imgcodecs::IMWRITE_JPEG_QUALITY, 80]);
    opencv::imgcodecs::imencode(".jpg", &bgr, &mut buf, &params).ok()?;
    Some(buf.to_vec())
}

/// The occupancy grid as a map on the floor, under `world/map`: free,
/// occupied and unknown cells in RViz's map colours (ROS cell values), over
/// the part of the grid the scans have seen (and a margin), so that the
/// scene opens on the room rather than on the whole grid.
pub fn log_map(rec: &rerun::RecordingStream, grid: &OccupancyGrid, stamp_s: f64) {
    if !rec.is_enabled() {
        return;
    }
    let Some(window) = MapWindow::seen(grid, 4) else {
        return;
    };
    let format = rerun::components::ImageFormat::from_color_model(
        [window.width as u32, window.height as u32],
        rerun::ColorModel::L,
        rerun::ChannelDatatype::U8,
    );
    let corner = grid.center_of((window.x0, window.y0));
    let half = grid.resolution_m / 2.0;
    rec::set_sim_time(rec, stamp_s);
    log(
        rec,
        "world/map",
        &rerun::GridMap::new(
            window.rows_top_first(grid),
            format,
            grid.resolution_m as f32,
        )
        // The window's lower-left corner, a little under the floor so
        // that paths and objects on it stay visible.
        .with_translation([(corner[0] - half) as f32, (corner[1] - half) as f32, -0.005])
        .with_colormap(rerun::components::Colormap::RvizMap),
    );
}

/// The cells of a grid that are drawn: the bounding box of the cells seen
/// (free or occupied), widened by a margin, within the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapWindow {
    pub x0: usize,
    pub y0: usize,
    pub width: usize,
    pub height: usize,
}

impl MapWindow {
    /// `None` while no cell has been seen.
    pub fn seen(grid: &OccupancyGrid, margin_cells: usize) -> Option<Self> {
        let mut lo = (usize::MAX, usize::MAX);
        let mut hi = (0, 0);
        for cy in 0..grid.height {
            for cx in 0..grid.width {
                if grid.cell((cx, cy)) != Cell::Unknown {
                    lo = (lo.0.min(cx), lo.1.min(cy));
                    hi = (hi.0.max(cx), hi.1.max(cy));
                }
            }
        }
        if lo.0 > hi.0 {
            return None;
        }
        let x0 = lo.0.saturating_sub(margin_cells);
        let y0 = lo.1.saturating_sub(margin_cells);
        let x1 = (hi.0 + margin_cells).min(grid.width - 1);
        let y1 = (hi.1 + margin_cells).min(grid.height - 1);
        Some(Self {
            x0,
            y0,
            width: x1 - x0 + 1,
            height: y1 - y0 + 1,
        })
    }

    /// The window's ROS cell values (0 free, 100 occupied, -1 unknown as
    /// 255), top row first: ROS stores row 0 at the origin (the bottom),
    /// while a GridMap's buffer, like an image, starts at the top.
    pub fn rows_top_first(&self, grid: &OccupancyGrid) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.width * self.height);
        for cy in (self.y0..self.y0 + self.height).rev() {
            for cx in self.x0..self.x0 + self.width {
                out.push(match grid.cell((cx, cy)) {
                    Cell::Unknown => 255,
                    Cell::Free => 0,
                    Cell::Occupied => 100,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_goes_to_millimetres_and_no_return_to_zero() {
        let bytes = depth_mm_bytes(&[1.2345, f32::NAN, f32::INFINITY, -1.0, 70.0, 0.0005]);
        let mm: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(mm, vec![1235, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn the_map_window_covers_what_was_seen_top_row_first() {
        // 6 x 4 cells of 1 m; nothing seen yet: nothing to draw.
        let mut grid = OccupancyGrid::new([3.0, 2.0], [6.0, 4.0], 1.0);
        assert_eq!(MapWindow::seen(&grid, 1), None);
        // Two cells seen: (2, 1) and (3, 1), on one row.
        grid.set_occupied((2, 1));
        grid.set_occupied((3, 1));
        let w = MapWindow::seen(&grid, 1).unwrap();
        assert_eq!(
            w,
            MapWindow {
                x0: 1,
                y0: 0,
                width: 4,
                height: 3
            }
        );
        let data = w.rows_top_first(&grid);
        // Rows y = 2, 1, 0: the occupied row is the middle one.
        assert_eq!(data.len(), 12);
        assert_eq!(&data[4..8], &[255, 100, 100, 255], "{data:?}");
        assert!(data[..4].iter().chain(&data[8..]).all(|&v| v == 255));
        // A margin never leaves the grid.
        let all = MapWindow::seen(&grid, 10).unwrap();
        assert_eq!((all.x0, all.y0, all.width, all.height), (0, 0, 6, 4));
    }

    #[test]
    fn a_wrong_size_frame_gives_no_jpeg() {
        let rgb = vec![0u8; 10];
        let frame = CameraFrame {
            width_px: 4,
            height_px: 4,
            rgb: &rgb,
            depth_m: &[],
        };
        assert!(encode_jpeg(&frame).is_none());
        let rgb = vec![128u8; 4 * 4 * 3];
        let frame = CameraFrame { rgb: &rgb, ..frame };
        let jpeg = encode_jpeg(&frame).unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG starts with SOI");
    }
}
