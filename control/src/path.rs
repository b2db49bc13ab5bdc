//! Global path planning: a costmap inflated by the robot's footprint, A* over
//! it, and line-of-sight shortening. Pure: no ROS.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rosetta_common::grid::OccupancyGrid;

/// A cell the robot's centre must not enter.
pub const LETHAL: u8 = 255;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PathError {
    #[error("the start ({0:.2}, {1:.2}) is off the map")]
    StartOffMap(f64, f64),
    #[error("the goal ({0:.2}, {1:.2}) is off the map")]
    GoalOffMap(f64, f64),
    #[error("the goal ({0:.2}, {1:.2}) is too close to an obstacle")]
    GoalBlocked(f64, f64),
    #[error("no path: obstacles close every way to the goal")]
    NoPath,
}

/// Per-cell traversal cost: [`LETHAL`] where the robot's centre would put its
/// footprint into an obstacle, and a penalty that falls off with distance
/// within `clearance_m` beyond that, so that paths keep away from obstacles
/// when they can.
#[derive(Debug, Clone)]
pub struct Costmap {
    pub resolution_m: f64,
    pub width: usize,
    pub height: usize,
    pub origin_m: [f64; 2],
    cost: Vec<u8>,
}

impl Costmap {
    pub fn from_grid(grid: &OccupancyGrid, robot_radius_m: f64, clearance_m: f64) -> Self {
        let hi = [
            grid.origin_m[0] + grid.width as f64 * grid.resolution_m,
            grid.origin_m[1] + grid.height as f64 * grid.resolution_m,
        ];
        Self::from_grid_window(grid, robot_radius_m, clearance_m, grid.origin_m, hi)
    }

    /// The costmap of the part of `grid` between the corners `lo` and `hi`
    /// (clipped to the grid): path planning between two points needs only
    /// the area around them, and a smaller costmap costs less to build.
    pub fn from_grid_window(
        grid: &OccupancyGrid,
        robot_radius_m: f64,
        clearance_m: f64,
        lo: [f64; 2],
        hi: [f64; 2],
    ) -> Self {
        let res = grid.resolution_m;
        let to_cell = |v: f64, o: f64, n: usize| {
            (((v - o) / res).floor().max(0.0) as usize).min(n.saturating_sub(1))
        };
        let (x0, x1) = (
            to_cell(lo[0].min(hi[0]), grid.origin_m[0], grid.width),
            to_cell(lo[0].max(hi[0]), grid.origin_m[0], grid.width),
        );
        let (y0, y1) = (
            to_cell(lo[1].min(hi[1]), grid.origin_m[1], grid.height),
            to_cell(lo[1].max(hi[1]), grid.origin_m[1], grid.height),
        );
        let (w, h) = (x1 - x0 + 1, y1 - y0 + 1);
        let mut cost = vec![0u8; w * h];
        let reach_m = robot_radius_m + clearance_m.max(0.0);
        let r_cells = (reach_m / res).ceil() as i64;
        // Offsets of a disc, with the cost each offset gets.
        let mut stamp: Vec<(i64, i64, u8)> = Vec::new();
        for dy in -r_cells..=r_cells {
            for dx in -r_cells..=r_cells {
                // From this cell's centre to the nearest point of the occupied cell.
                let d = ((dx.abs() as f64 - 0.5)
                    .max(0.0)
                    .hypot((dy.abs() as f64 - 0.5).max(0.0)))
                    * res;
                let c = if d <= robot_radius_m {
                    LETHAL
                } else if d <= reach_m {
                    let f = 1.0 - (d - robot_radius_m) / (reach_m - robot_radius_m).max(1e-9);
                    (1.0 + 200.0 * f * f).min(254.0) as u8
                } else {
                    continue;
                };
                stamp.push((dx, dy, c));
            }
        }
        // Obstacles just outside the window still cost inside it.
        let r = r_cells as usize;
        for cy in y0.saturating_sub(r)..(y1 + r + 1).min(grid.height) {
            for cx in x0.saturating_sub(r)..(x1 + r + 1).min(grid.width) {
                if !grid.is_occupied((cx, cy)) {
                    continue;
                }
                for &(dx, dy, c) in &stamp {
                    let (x, y) = (cx as i64 + dx - x0 as i64, cy as i64 + dy - y0 as i64);
                    if x < 0 || y < 0 || x >= w as i64 || y >= h as i64 {
                        continue;
                    }
                    let i = y as usize * w + x as usize;
                    cost[i] = cost[i].max(c);
                }
            }
        }
        Self {
            resolution_m: res,
            width: w,
            height: h,
            origin_m: [
                grid.origin_m[0] + x0 as f64 * res,
                grid.origin_m[1] + y0 as f64 * res,
            ],
            cost,
        }
    }

    pub fn cell_of(&self, p: [f64; 2]) -> Option<(usize, usize)> {
        let cx = ((p[0] - self.origin_m[0]) / self.resolution_m).floor();
        let cy = ((p[1] - self.origin_m[1]) / self.resolution_m).floor();
        (cx >= 0.0 && cy >= 0.0 && (cx as usize) < self.width && (cy as usize) < self.height)
            .then_some((cx as usize, cy as usize))
    }

    pub fn center_of(&self, (cx, cy): (usize, usize)) -> [f64; 2] {
        [
            self.origin_m[0] + (cx as f64 + 0.5) * self.resolution_m,
            self.origin_m[1] + (cy as f64 + 0.5) * self.resolution_m,
        ]
    }

    pub fn cost(&self, (cx, cy): (usize, usize)) -> u8 {
        self.cost
            .get(cy * self.width + cx)
            .copied()
            .unwrap_or(LETHAL)
    }

    /// The cost at a point; off the map counts as lethal.
    pub fn cost_at(&self, p: [f64; 2]) -> u8 {
        self.cell_of(p).map_or(LETHAL, |c| self.cost(c))
    }

    /// Whether the robot's centre may be at `p`.
    pub fn is_free(&self, p: [f64; 2]) -> bool {
        self.cost_at(p) < LETHAL
    }

    /// Whether the straight segment from `a` to `b` stays below `max_cost`.
    pub fn segment_below(&self, a: [f64; 2], b: [f64; 2], max_cost: u8) -> bool {
        let len = (b[0] - a[0]).hypot(b[1] - a[1]);
        let n = (len / (self.resolution_m * 0.5)).ceil().max(1.0) as usize;
        (0..=n).all(|i| {
            let t = i as f64 / n as f64;
            self.cost_at([a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])]) <= max_cost
        })
    }

    /// The free cell nearest to `p` within `radius_m` (breadth first), if `p`'s own cell is lethal.
    pub fn nearest_free(&self, p: [f64; 2], radius_m: f64) -> Option<[f64; 2]> {
        let start = self.cell_of(p)?;
        if self.cost(start) < LETHAL {
            return Some(p);
        }
        let r = (radius_m / self.resolution_m).ceil() as i64;
        let mut best: Option<(f64, (usize, usize))> = None;
        for dy in -r..=r {
            for dx in -r..=r {
                let (x, y) = (start.0 as i64 + dx, start.1 as i64 + dy);
                if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
                    continue;
                }
                let c = (x as usize, y as usize);
                let d = (dx as f64).hypot(dy as f64);
                if d <= r as f64 && self.cost(c) < LETHAL && best.is_none_or(|(bd, _)| d < bd) {
                    best = Some((d, c));
                }
            }
        }
        best.map(|(_, c)| self.center_of(c))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Open {
    f: f64,
    g: f64,
    cell: usize,
}
impl Eq for Open {}
impl Ord for Open {
    fn cmp(&self, o: &Self) -> Ordering {
        // Min-heap on f, ties to the larger g (deeper first).
        o.f.total_cmp(&self.f).then(self.g.total_cmp(&o.g))
    }
}
impl PartialOrd for Open {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// A* from `start` to `goal` (8-connected, octile heuristic; each step costs
/// its length times 1 + cost/50), then shortened by line of sight. The path
/// starts at `start` and ends exactly at `goal`. A start inside an inflated
/// obstacle (the robot brushed one) first leaves it by the nearest free cell.
pub fn plan_path(
    cm: &Costmap,
    start: [f64; 2],
    goal: [f64; 2],
) -> Result<Vec<[f64; 2]>, PathError> {
    let s_cell = cm
        .cell_of(start)
        .ok_or(PathError::StartOffMap(start[0], start[1]))?;
    let g_cell = cm
        .cell_of(goal)
        .ok_or(PathError::GoalOffMap(goal[0], goal[1]))?;
    if cm.cost(g_cell) == LETHAL {
        return Err(PathError::GoalBlocked(goal[0], goal[1]));
    }
    let escape = if cm.cost(s_cell) == LETHAL {
        let free = cm.nearest_free(start, 0.6).ok_or(PathError::NoPath)?;
        cm.cell_of(free)
    } else {
        None
    };
    let from = escape.unwrap_or(s_cell);
    let w = cm.width;
    let idx = |(x, y): (usize, usize)| y * w + x;
    let n = cm.width * cm.height;
    let mut g_score = vec![f64::INFINITY; n];
    let mut parent = vec![usize::MAX; n];
    let mut heap = BinaryHeap::new();
    let h = |c: usize| {
        let (x, y) = ((c % w) as f64, (c / w) as f64);
        let (dx, dy) = ((x - g_cell.0 as f64).abs(), (y - g_cell.1 as f64).abs());
        dx.max(dy) + (std::f64::consts::SQRT_2 - 1.0) * dx.min(dy)
    };
    let s = idx(from);
    let t = idx(g_cell);
    g_score[s] = 0.0;
    heap.push(Open {
        f: h(s),
        g: 0.0,
        cell: s,
    });
    let mut found = false;
    while let Some(Open { g, cell, .. }) = heap.pop() {
        if cell == t {
            found = true;
            break;
        }
        if g > g_score[cell] {
            continue;
        }
        let (x, y) = ((cell % w) as i64, (cell / w) as i64);
        for (dx, dy) in [
            (1, 0),
            (-1, 0),
            (0, 1),
            (0, -1),
            (1, 1),
            (1, -1),
            (-1, 1),
            (-1, -1),
        ] {
            let (nx, ny) = (x + dx, y + dy);
            if nx < 0 || ny < 0 || nx >= cm.width as i64 || ny >= cm.height as i64 {
                continue;
            }
            let nc = (nx as usize, ny as usize);
            let c = cm.cost(nc);
            if c == LETHAL {
                continue;
            }
            let step = if dx != 0 && dy != 0 {
                std::f64::consts::SQRT_2
            } else {
                1.0
            };
            let ng = g + step * (1.0 + f64::from(c) / 50.0);
            let ni = idx(nc);
            if ng < g_score[ni] {
                g_score[ni] = ng;
                parent[ni] = cell;
                heap.push(Open {
                    f: ng + h(ni),
                    g: ng,
                    cell: ni,
                });
            }
        }
    }
    if !found {
        return Err(PathError::NoPath);
    }
    let mut cells = vec![t];
    while let Some(&last) = cells.last() {
        if last == s {
            break;
        }
        cells.push(parent[last]);
    }
    cells.reverse();
    let mut raw: Vec<[f64; 2]> = Vec::with_capacity(cells.len() + 2);
    raw.push(start);
    raw.extend(cells.iter().map(|&c| cm.center_of((c % w, c / w))));
    raw.push(goal);
    Ok(shorten(cm, &raw))
}

/// Drops waypoints that a straight segment can skip without passing through
/// costlier cells than the path already crosses there.
fn shorten(cm: &Costmap, raw: &[[f64; 2]]) -> Vec<[f64; 2]> {
    let mut out = vec![raw[0]];
    let mut i = 0;
    while i + 1 < raw.len() {
        let mut j = raw.len() - 1;
        while j > i + 1 {
            let worst = raw[i..=j]
                .iter()
                .map(|&p| cm.cost_at(p))
                .max()
                .unwrap_or(LETHAL);
            if cm.segment_below(raw[i], raw[j], worst.min(LETHAL - 1)) {
                break;
            }
            j -= 1;
        }
        out.push(raw[j]);
        i = j;
    }
    out
}

/// The length of a polyline.
pub fn path_length_m(path: &[[f64; 2]]) -> f64 {
    path.windows(2)
        .map(|w| (w[1][0] - w[0][0]).hypot(w[1][1] - w[0][1]))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room_with_wall(gap: bool) -> OccupancyGrid {
        // 6 x 6 m, walls around, and a wall across x = 0 from y = -3 to 2 (or to 3 without a gap).
        let mut g = OccupancyGrid::new([0.0, 0.0], [6.0, 6.0], 0.05);
        for cy in 0..g.height {
            for cx in 0..g.width {
                let p = g.center_of((cx, cy));
                let border = cx == 0 || cy == 0 || cx == g.width - 1 || cy == g.height - 1;
                let wall = p[0].abs() < 0.05 && (p[1] < 2.0 || !gap);
                if border || wall {
                    g.set_occupied((cx, cy));
                }
            }
        }
        g
    }

    #[test]
    fn the_path_goes_around_the_wall_and_keeps_the_footprint_clear() {
        let cm = Costmap::from_grid(&room_with_wall(true), 0.22, 0.25);
        let path = plan_path(&cm, [-2.0, -2.0], [2.0, -2.0]).unwrap();
        assert_eq!(path.first(), Some(&[-2.0, -2.0]));
        assert_eq!(path.last(), Some(&[2.0, -2.0]));
        // Through the gap above y = 2.
        assert!(path.iter().any(|p| p[1] > 2.0), "{path:?}");
        // No point of the path (sampled every 1 cm) lets the 0.22 m footprint touch the wall.
        for w in path.windows(2) {
            let n = (path_length_m(w) / 0.01).ceil() as usize;
            for i in 0..=n {
                let t = i as f64 / n.max(1) as f64;
                let p = [
                    w[0][0] + t * (w[1][0] - w[0][0]),
                    w[0][1] + t * (w[1][1] - w[0][1]),
                ];
                let to_wall = if p[1] < 2.0 {
                    p[0].abs() - 0.05
                } else {
                    (p[0].abs() - 0.05).max(0.0).hypot(p[1] - 2.0)
                };
                assert!(to_wall > 0.22, "{p:?} is {to_wall:.3} m from the wall");
            }
        }
        // Shortened: a handful of corners, not hundreds of cells.
        assert!(path.len() < 8, "{}", path.len());
        let straight = 4.0;
        assert!(path_length_m(&path) > straight + 4.0);
    }

    #[test]
    fn a_closed_wall_gives_no_path_and_blocked_goals_are_named() {
        let cm = Costmap::from_grid(&room_with_wall(false), 0.22, 0.25);
        assert_eq!(
            plan_path(&cm, [-2.0, 0.0], [2.0, 0.0]),
            Err(PathError::NoPath)
        );
        assert_eq!(
            plan_path(&cm, [-2.0, 0.0], [0.1, 0.0]),
            Err(PathError::GoalBlocked(0.1, 0.0))
        );
        assert!(matches!(
            plan_path(&cm, [-2.0, 0.0], [9.0, 0.0]),
            Err(PathError::GoalOffMap(..))
        ));
    }

    #[test]
    fn a_window_costs_the_same_as_the_whole_map_inside_it() {
        let g = room_with_wall(true);
        let full = Costmap::from_grid(&g, 0.22, 0.25);
        let win = Costmap::from_grid_window(&g, 0.22, 0.25, [-1.0, -2.5], [1.5, 2.5]);
        assert!(win.width < full.width && win.height < full.height);
        for y in 0..40 {
            for x in 0..40 {
                // Off the cell boundaries, where rounding could pick either cell.
                let p = [-0.976 + 0.06 * x as f64, -2.476 + 0.12 * y as f64];
                assert_eq!(win.cost_at(p), full.cost_at(p), "{p:?}");
            }
        }
        assert_eq!(
            win.cost_at([2.0, 0.0]),
            LETHAL,
            "outside the window is off the map"
        );
        // Both find the way through the gap (the window's is tighter: its
        // edge closes off the room above y = 2.5).
        for cm in [&win, &full] {
            let path = plan_path(cm, [-0.8, -2.0], [0.8, -2.0]).unwrap();
            assert_eq!(path.last(), Some(&[0.8, -2.0]));
            assert!(path.iter().any(|p| p[1] > 2.0), "{path:?}");
        }
    }

    #[test]
    fn an_empty_map_gives_the_straight_line_and_a_start_in_an_obstacle_escapes() {
        let g = OccupancyGrid::new([0.0, 0.0], [6.0, 6.0], 0.05);
        let cm = Costmap::from_grid(&g, 0.22, 0.25);
        let path = plan_path(&cm, [-1.0, -1.0], [1.5, 0.7]).unwrap();
        assert_eq!(path, vec![[-1.0, -1.0], [1.5, 0.7]]);

        let cm = Costmap::from_grid(&room_with_wall(true), 0.22, 0.25);
        let path = plan_path(&cm, [-0.2, -1.0], [-2.0, -1.0]).unwrap();
        assert!(path.len() >= 2);
        assert!(cm.is_free(path[1]), "{path:?}");
    }
}
