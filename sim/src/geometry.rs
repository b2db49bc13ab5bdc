//! Axis-aligned boxes and ray tests: the whole sim world is made of them.

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aabb {
    pub min: [f64; 3],
    pub max: [f64; 3],
}

impl Aabb {
    pub fn from_center_size(c: [f64; 3], s: [f64; 3]) -> Self {
        Self {
            min: [c[0] - s[0] / 2.0, c[1] - s[1] / 2.0, c[2] - s[2] / 2.0],
            max: [c[0] + s[0] / 2.0, c[1] + s[1] / 2.0, c[2] + s[2] / 2.0],
        }
    }

    /// The box's centre.
    pub fn center(&self) -> [f64; 3] {
        std::array::from_fn(|i| (self.min[i] + self.max[i]) / 2.0)
    }

    /// Half the box's extent along each axis.
    pub fn half_size(&self) -> [f64; 3] {
        std::array::from_fn(|i| (self.max[i] - self.min[i]) / 2.0)
    }

    pub fn corners(&self) -> [[f64; 3]; 8] {
        let (a, b) = (self.min, self.max);
        [
            [a[0], a[1], a[2]],
            [b[0], a[1], a[2]],
            [a[0], b[1], a[2]],
            [b[0], b[1], a[2]],
            [a[0], a[1], b[2]],
            [b[0], a[1], b[2]],
            [a[0], b[1], b[2]],
            [b[0], b[1], b[2]],
        ]
    }

    /// Slab test. Returns the entry distance along `dir` and the hit face's
    /// axis (0, 1, 2) and sign, for rays starting outside the box.
    #[inline]
    pub fn ray_hit(&self, origin: [f64; 3], inv_dir: [f64; 3]) -> Option<(f64, usize, f64)> {
        let mut t_near = f64::NEG_INFINITY;
        let mut t_far = f64::INFINITY;
        let mut axis = 0;
        let mut sign = 1.0;
        for k in 0..3 {
            let t1 = (self.min[k] - origin[k]) * inv_dir[k];
            let t2 = (self.max[k] - origin[k]) * inv_dir[k];
            let (lo, hi, s) = if t1 < t2 {
                (t1, t2, -1.0)
            } else {
                (t2, t1, 1.0)
            };
            if lo > t_near {
                t_near = lo;
                axis = k;
                sign = s;
            }
            if hi < t_far {
                t_far = hi;
            }
        }
        if t_near <= t_far && t_near > 1e-6 {
            Some((t_near, axis, sign))
        } else {
            None
        }
    }

    /// Whether a disc (x, y, r) in the plane overlaps the box's footprint.
    pub fn overlaps_disc(&self, x: f64, y: f64, r: f64) -> bool {
        let cx = x.clamp(self.min[0], self.max[0]);
        let cy = y.clamp(self.min[1], self.max[1]);
        (x - cx).powi(2) + (y - cy).powi(2) < r * r
    }

    pub fn contains_xy(&self, x: f64, y: f64) -> bool {
        x >= self.min[0] && x <= self.max[0] && y >= self.min[1] && y <= self.max[1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ray_hits_the_near_face() {
        let b = Aabb::from_center_size([2.0, 0.0, 0.5], [1.0, 1.0, 1.0]);
        let dir: [f64; 3] = [1.0, 0.0, 0.0];
        let inv = dir.map(|d| 1.0 / d);
        let (t, axis, sign) = b.ray_hit([0.0, 0.0, 0.5], inv).unwrap();
        assert!((t - 1.5).abs() < 1e-12);
        assert_eq!((axis, sign), (0, -1.0));
        assert!(b.ray_hit([0.0, 2.0, 0.5], inv).is_none());
        assert!(b.overlaps_disc(1.3, 0.0, 0.25));
        assert!(!b.overlaps_disc(1.2, 0.0, 0.25));
    }
}
