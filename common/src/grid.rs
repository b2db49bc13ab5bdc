//! A 2-D occupancy grid built from laser scans (log-odds per cell), in the
//! frame the robot's pose is given in (`odom` for this stack). Pure: no ROS.
//!
//! Cells are row-major, row 0 at the lowest y, as in `nav_msgs/OccupancyGrid`.

use crate::Pose2D;

/// Log-odds added to a cell a beam ends in, and to a cell a beam passes through.
const HIT_LOG_ODDS: f32 = 0.9;
const MISS_LOG_ODDS: f32 = -0.4;
const MIN_LOG_ODDS: f32 = -2.0;
const MAX_LOG_ODDS: f32 = 3.5;
/// A cell is occupied above this log-odds (p > 0.65), free below its negative.
const OCCUPIED_LOG_ODDS: f32 = 0.6;

/// One laser scan, as `sensor_msgs/LaserScan` carries it.
#[derive(Debug, Clone, Copy)]
pub struct ScanView<'a> {
    pub angle_min_rad: f64,
    pub angle_increment_rad: f64,
    pub range_min_m: f64,
    pub range_max_m: f64,
    pub ranges_m: &'a [f32],
}

impl ScanView<'_> {
    /// The end points of the beams that hit something, in the frame of `sensor_pose`.
    pub fn hit_points(&self, sensor_pose: &Pose2D) -> Vec<[f64; 2]> {
        let mut out = Vec::with_capacity(self.ranges_m.len());
        for (i, &r) in self.ranges_m.iter().enumerate() {
            let r = f64::from(r);
            if !r.is_finite() || r < self.range_min_m || r >= self.range_max_m {
                continue;
            }
            let a = sensor_pose.yaw_rad + self.angle_min_rad + self.angle_increment_rad * i as f64;
            out.push([sensor_pose.x_m + r * a.cos(), sensor_pose.y_m + r * a.sin()]);
        }
        out
    }
}

/// Cell state, for planners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    Unknown,
    Free,
    Occupied,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OccupancyGrid {
    pub resolution_m: f64,
    pub width: usize,
    pub height: usize,
    /// The corner of cell (0, 0), in the grid's frame.
    pub origin_m: [f64; 2],
    log_odds: Vec<f32>,
    observed: Vec<bool>,
}

impl OccupancyGrid {
    /// An unknown grid of `size_m` centred on `center_m`.
    pub fn new(center_m: [f64; 2], size_m: [f64; 2], resolution_m: f64) -> Self {
        let resolution_m = if resolution_m.is_finite() && resolution_m > 0.0 {
            resolution_m
        } else {
            0.05
        };
        let width = (size_m[0] / resolution_m).ceil().max(1.0) as usize;
        let height = (size_m[1] / resolution_m).ceil().max(1.0) as usize;
        Self {
            resolution_m,
            width,
            height,
            origin_m: [
                center_m[0] - width as f64 * resolution_m / 2.0,
                center_m[1] - height as f64 * resolution_m / 2.0,
            ],
            log_odds: vec![0.0; width * height],
            observed: vec![false; width * height],
        }
    }

    /// The cell containing a point, if it lies on the grid.
    pub fn cell_of(&self, p: [f64; 2]) -> Option<(usize, usize)> {
        let cx = ((p[0] - self.origin_m[0]) / self.resolution_m).floor();
        let cy = ((p[1] - self.origin_m[1]) / self.resolution_m).floor();
        (cx >= 0.0 && cy >= 0.0 && (cx as usize) < self.width && (cy as usize) < self.height)
            .then_some((cx as usize, cy as usize))
    }

    /// The centre of a cell.
    pub fn center_of(&self, (cx, cy): (usize, usize)) -> [f64; 2] {
        [
            self.origin_m[0] + (cx as f64 + 0.5) * self.resolution_m,
            self.origin_m[1] + (cy as f64 + 0.5) * self.resolution_m,
        ]
    }

    pub fn cell(&self, (cx, cy): (usize, usize)) -> Cell {
        let i = cy * self.width + cx;
        match (self.observed.get(i), self.log_odds.get(i)) {
            (Some(true), Some(&l)) if l > OCCUPIED_LOG_ODDS => Cell::Occupied,
            (Some(true), Some(&l)) if l < -OCCUPIED_LOG_ODDS => Cell::Free,
            _ => Cell::Unknown,
        }
    }

    pub fn is_occupied(&self, c: (usize, usize)) -> bool {
        self.cell(c) == Cell::Occupied
    }

    /// Marks a cell as occupied for certain (a known obstacle, a test's wall).
    pub fn set_occupied(&mut self, (cx, cy): (usize, usize)) {
        let i = cy * self.width + cx;
        if i < self.log_odds.len() {
            self.log_odds[i] = MAX_LOG_ODDS;
            self.observed[i] = true;
        }
    }

    /// Integrates one scan taken from `sensor_pose`: cells along each beam
    /// become freer, the cell it ends in more occupied. Beams without a
    /// return (max range, inf, NaN) clear up to the maximum range.
    pub fn integrate_scan(&mut self, sensor_pose: &Pose2D, scan: &ScanView<'_>) {
        if !sensor_pose.is_finite() {
            return;
        }
        let Some(start) = self.cell_of([sensor_pose.x_m, sensor_pose.y_m]) else {
            return;
        };
        for (i, &r) in scan.ranges_m.iter().enumerate() {
            let r = f64::from(r);
            if r.is_nan() || r < scan.range_min_m {
                continue;
            }
            let hit = r.is_finite() && r < scan.range_max_m;
            let length = if hit { r } else { scan.range_max_m };
            let a = sensor_pose.yaw_rad + scan.angle_min_rad + scan.angle_increment_rad * i as f64;
            let end = [
                sensor_pose.x_m + length * a.cos(),
                sensor_pose.y_m + length * a.sin(),
            ];
            let end_cell = self.cell_of(end);
            self.trace(start, end, |g, c| {
                if Some(c) != end_cell || !hit {
                    g.add(c, MISS_LOG_ODDS);
                }
            });
            if let (true, Some(c)) = (hit, end_cell) {
                self.add(c, HIT_LOG_ODDS);
            }
        }
    }

    fn add(&mut self, (cx, cy): (usize, usize), delta: f32) {
        let i = cy * self.width + cx;
        if let Some(l) = self.log_odds.get_mut(i) {
            *l = (*l + delta).clamp(MIN_LOG_ODDS, MAX_LOG_ODDS);
            self.observed[i] = true;
        }
    }

    /// Visits the cells on the segment from `start` to `end` (Bresenham),
    /// stopping at the grid's edge.
    fn trace(
        &mut self,
        start: (usize, usize),
        end: [f64; 2],
        mut visit: impl FnMut(&mut Self, (usize, usize)),
    ) {
        let ex = ((end[0] - self.origin_m[0]) / self.resolution_m).floor() as i64;
        let ey = ((end[1] - self.origin_m[1]) / self.resolution_m).floor() as i64;
        let (mut x, mut y) = (start.0 as i64, start.1 as i64);
        let dx = (ex - x).abs();
        let dy = -(ey - y).abs();
        let sx = if x < ex { 1 } else { -1 };
        let sy = if y < ey { 1 } else { -1 };
        let mut err = dx + dy;
        loop {
            if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
                return;
            }
            visit(self, (x as usize, y as usize));
            if x == ex && y == ey {
                return;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// The grid as `nav_msgs/OccupancyGrid` data: -1 unknown, 0 free, 100 occupied.
    pub fn to_ros_data(&self) -> Vec<i8> {
        (0..self.height)
            .flat_map(|cy| (0..self.width).map(move |cx| (cx, cy)))
            .map(|c| match self.cell(c) {
                Cell::Unknown => -1,
                Cell::Free => 0,
                Cell::Occupied => 100,
            })
            .collect()
    }

    /// How well this (estimated) grid's obstacles match a true map: the
    /// intersection over union of occupied cells, over what a scan can see.
    ///
    /// An occupied cell here agrees when `truth` has an occupied cell within
    /// `tolerance_cells` (Chebyshev distance), and is a false positive
    /// otherwise. A true surface cell (occupied, next to a cell this grid has
    /// observed free) is missed when no occupied cell here lies within the
    /// tolerance. Obstacle interiors, and cells never observed, are not
    /// judged: a scan cannot see them. `None` when the grids differ in size
    /// or there is nothing to judge.
    pub fn observed_iou(&self, truth: &OccupancyGrid, tolerance_cells: usize) -> Option<f64> {
        if self.width != truth.width || self.height != truth.height {
            return None;
        }
        let t = tolerance_cells as isize;
        let near = |g: &OccupancyGrid, (cx, cy): (usize, usize)| {
            (-t..=t).any(|dy| {
                (-t..=t).any(|dx| {
                    let (x, y) = (cx as isize + dx, cy as isize + dy);
                    x >= 0
                        && y >= 0
                        && (x as usize) < g.width
                        && (y as usize) < g.height
                        && g.is_occupied((x as usize, y as usize))
                })
            })
        };
        let free_neighbour = |(cx, cy): (usize, usize)| {
            [(-1isize, 0isize), (1, 0), (0, -1), (0, 1)]
                .iter()
                .any(|(dx, dy)| {
                    let (x, y) = (cx as isize + dx, cy as isize + dy);
                    x >= 0
                        && y >= 0
                        && (x as usize) < self.width
                        && (y as usize) < self.height
                        && self.cell((x as usize, y as usize)) == Cell::Free
                })
        };
        let (mut tp, mut fp, mut missed) = (0usize, 0usize, 0usize);
        for cy in 0..self.height {
            for cx in 0..self.width {
                let c = (cx, cy);
                if self.is_occupied(c) {
                    if near(truth, c) {
                        tp += 1;
                    } else {
                        fp += 1;
                    }
                } else if truth.is_occupied(c) && free_neighbour(c) && !near(self, c) {
                    missed += 1;
                }
            }
        }
        let all = tp + fp + missed;
        (all > 0).then(|| tp as f64 / all as f64)
    }

    /// Fraction of cells that agree on being occupied, over all cells that
    /// either grid calls occupied (intersection over union).
    pub fn occupied_iou(&self, other: &OccupancyGrid) -> Option<f64> {
        if self.width != other.width || self.height != other.height {
            return None;
        }
        let (mut inter, mut union) = (0usize, 0usize);
        for cy in 0..self.height {
            for cx in 0..self.width {
                let (a, b) = (self.is_occupied((cx, cy)), other.is_occupied((cx, cy)));
                inter += usize::from(a && b);
                union += usize::from(a || b);
            }
        }
        (union > 0).then(|| inter as f64 / union as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observed_iou_judges_surfaces_within_the_tolerance() {
        let mut truth = OccupancyGrid::new([0.0, 0.0], [2.0, 2.0], 0.05);
        // A wall along x = 0.5 (cells 30..32), and free space seen before it.
        let wall = |g: &mut OccupancyGrid, x0: usize| {
            for cy in 0..g.height {
                for cx in x0..x0 + 3 {
                    g.set_occupied((cx, cy));
                }
            }
        };
        wall(&mut truth, 30);
        let mut seen = OccupancyGrid::new([0.0, 0.0], [2.0, 2.0], 0.05);
        for cy in 0..seen.height {
            for cx in 0..30 {
                let i = cy * seen.width + cx;
                seen.log_odds[i] = -MAX_LOG_ODDS;
                seen.observed[i] = true;
            }
            seen.set_occupied((30, cy));
        }
        assert_eq!(
            seen.observed_iou(&truth, 0),
            Some(1.0),
            "the surface seen exactly"
        );
        // The surface seen one cell short of the wall: wrong without tolerance, right with one cell.
        let mut short = seen.clone();
        for cy in 0..short.height {
            let i = cy * short.width + 30;
            short.log_odds[i] = 0.0;
            short.observed[i] = false;
            short.set_occupied((29, cy));
        }
        assert_eq!(short.observed_iou(&truth, 0), Some(0.0));
        assert_eq!(short.observed_iou(&truth, 1), Some(1.0));
        // A phantom obstacle in the open is a false positive; a surface never seen is not judged.
        let mut phantom = seen.clone();
        phantom.set_occupied((5, 5));
        let iou = phantom.observed_iou(&truth, 1).unwrap();
        assert!((iou - 40.0 / 41.0).abs() < 1e-9, "{iou}");
        let other = OccupancyGrid::new([0.0, 0.0], [1.0, 1.0], 0.05);
        assert_eq!(seen.observed_iou(&other, 1), None);
    }

    #[test]
    fn cells_and_centres_round_trip() {
        let g = OccupancyGrid::new([0.0, 0.0], [4.0, 2.0], 0.05);
        assert_eq!((g.width, g.height), (80, 40));
        assert_eq!(g.origin_m, [-2.0, -1.0]);
        let c = g.cell_of([0.01, -0.99]).unwrap();
        assert_eq!(c, (40, 0));
        let p = g.center_of(c);
        assert!((p[0] - 0.025).abs() < 1e-12 && (p[1] + 0.975).abs() < 1e-12);
        assert!(g.cell_of([2.01, 0.0]).is_none());
        assert!(g.cell_of([0.0, -1.01]).is_none());
    }

    /// A wall 2 m ahead of the sensor: the beam's end is occupied, the way
    /// to it is free, and what lies behind stays unknown.
    #[test]
    fn a_scan_marks_the_wall_and_clears_the_way() {
        let mut g = OccupancyGrid::new([0.0, 0.0], [6.0, 6.0], 0.05);
        let n = 90;
        // Beams from -0.3 to 0.3 rad, all hitting the plane x = 2.
        let inc = 0.6 / (n - 1) as f64;
        let ranges: Vec<f32> = (0..n)
            .map(|i| (2.0 / (-0.3 + inc * i as f64).cos()) as f32)
            .collect();
        let scan = ScanView {
            angle_min_rad: -0.3,
            angle_increment_rad: inc,
            range_min_m: 0.1,
            range_max_m: 8.0,
            ranges_m: &ranges,
        };
        for _ in 0..3 {
            g.integrate_scan(&Pose2D::default(), &scan);
        }
        let wall = g.cell_of([2.01, 0.0]).unwrap();
        assert_eq!(g.cell(wall), Cell::Occupied);
        assert_eq!(g.cell(g.cell_of([1.0, 0.0]).unwrap()), Cell::Free);
        assert_eq!(g.cell(g.cell_of([2.5, 0.0]).unwrap()), Cell::Unknown);
        assert_eq!(g.cell(g.cell_of([0.0, 2.0]).unwrap()), Cell::Unknown);
        let data = g.to_ros_data();
        assert_eq!(data.len(), g.width * g.height);
        assert_eq!(data[wall.1 * g.width + wall.0], 100);
        // The hits, back in the sensor's frame, lie on x = 2.
        for p in scan.hit_points(&Pose2D::default()) {
            assert!((p[0] - 2.0).abs() < 1e-5, "{p:?}");
        }
    }

    #[test]
    fn an_obstacle_that_leaves_is_cleared_and_nan_is_ignored() {
        let mut g = OccupancyGrid::new([0.0, 0.0], [6.0, 6.0], 0.05);
        let at = |r: &'static [f32]| ScanView {
            angle_min_rad: 0.0,
            angle_increment_rad: 0.0,
            range_min_m: 0.1,
            range_max_m: 8.0,
            ranges_m: r,
        };
        for _ in 0..4 {
            g.integrate_scan(&Pose2D::default(), &at(&[1.0]));
        }
        let c = g.cell_of([1.01, 0.0]).unwrap();
        assert!(g.is_occupied(c));
        for _ in 0..12 {
            g.integrate_scan(&Pose2D::default(), &at(&[f32::INFINITY]));
        }
        assert_eq!(g.cell(c), Cell::Free);
        let before = g.clone();
        g.integrate_scan(&Pose2D::default(), &at(&[f32::NAN]));
        g.integrate_scan(&Pose2D::new(f64::NAN, 0.0, 0.0), &at(&[1.0]));
        assert_eq!(g, before);
    }
}
