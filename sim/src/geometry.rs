//! Axis-aligned boxes and ray tests, and the spheres and upright cylinders
//! inscribed in such boxes: the whole sim world is made of them.

use rosetta_common::Shape;

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

    /// Where a ray starting outside first meets the `shape` inscribed in the
    /// box (the box itself; the sphere of its smallest half-size; the
    /// upright cylinder of its smaller horizontal half-size and full
    /// height): the distance along `dir` and the outward unit normal there.
    pub fn shape_hit(
        &self,
        shape: Shape,
        origin: [f64; 3],
        dir: [f64; 3],
    ) -> Option<(f64, [f64; 3])> {
        let inv = dir.map(|d| 1.0 / d);
        let (t_box, axis, sign) = self.ray_hit(origin, inv)?;
        let c = self.center();
        let h = self.half_size();
        match shape {
            Shape::Box => {
                let mut n = [0.0; 3];
                n[axis] = sign;
                Some((t_box, n))
            }
            Shape::Sphere => {
                let r = h[0].min(h[1]).min(h[2]);
                let oc = [origin[0] - c[0], origin[1] - c[1], origin[2] - c[2]];
                let a = dot(dir, dir);
                let b = dot(oc, dir);
                let disc = b * b - a * (dot(oc, oc) - r * r);
                if disc < 0.0 {
                    return None;
                }
                let t = (-b - disc.sqrt()) / a;
                (t > 1e-6).then(|| {
                    let p = [
                        origin[0] + t * dir[0],
                        origin[1] + t * dir[1],
                        origin[2] + t * dir[2],
                    ];
                    (t, [(p[0] - c[0]) / r, (p[1] - c[1]) / r, (p[2] - c[2]) / r])
                })
            }
            Shape::Cylinder => {
                let r = h[0].min(h[1]);
                let (z0, z1) = (self.min[2], self.max[2]);
                let mut best: Option<(f64, [f64; 3])> = None;
                // The side.
                let (ox, oy) = (origin[0] - c[0], origin[1] - c[1]);
                let a = dir[0] * dir[0] + dir[1] * dir[1];
                if a > 1e-12 {
                    let b = ox * dir[0] + oy * dir[1];
                    let disc = b * b - a * (ox * ox + oy * oy - r * r);
                    if disc >= 0.0 {
                        let t = (-b - disc.sqrt()) / a;
                        let z = origin[2] + t * dir[2];
                        if t > 1e-6 && z >= z0 && z <= z1 {
                            let (x, y) = (ox + t * dir[0], oy + t * dir[1]);
                            best = Some((t, [x / r, y / r, 0.0]));
                        }
                    }
                }
                // The caps.
                for (z, nz) in [(z1, 1.0), (z0, -1.0)] {
                    if dir[2].abs() < 1e-12 {
                        continue;
                    }
                    let t = (z - origin[2]) / dir[2];
                    let (x, y) = (ox + t * dir[0], oy + t * dir[1]);
                    if t > 1e-6 && x * x + y * y <= r * r && best.is_none_or(|(bt, _)| t < bt) {
                        best = Some((t, [0.0, 0.0, nz]));
                    }
                }
                best
            }
        }
    }
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
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

    #[test]
    fn spheres_and_cylinders_are_hit_on_their_surface() {
        let b = Aabb::from_center_size([2.0, 0.0, 0.5], [1.0, 1.0, 1.0]);
        let (t, n) = b
            .shape_hit(Shape::Sphere, [0.0, 0.0, 0.5], [1.0, 0.0, 0.0])
            .unwrap();
        assert!((t - 1.5).abs() < 1e-9 && (n[0] + 1.0).abs() < 1e-9);
        // Past the sphere's side, though inside the box.
        assert!(b
            .shape_hit(Shape::Sphere, [0.0, 0.45, 0.95], [1.0, 0.0, 0.0])
            .is_none());
        assert!(b
            .shape_hit(Shape::Box, [0.0, 0.45, 0.95], [1.0, 0.0, 0.0])
            .is_some());
        // A cylinder: the side from the front, the cap from above.
        let (t, n) = b
            .shape_hit(Shape::Cylinder, [0.0, 0.0, 0.9], [1.0, 0.0, 0.0])
            .unwrap();
        assert!((t - 1.5).abs() < 1e-9 && n[2] == 0.0);
        let (t, n) = b
            .shape_hit(Shape::Cylinder, [2.1, 0.1, 3.0], [0.0, 0.0, -1.0])
            .unwrap();
        assert!((t - 2.0).abs() < 1e-9 && n == [0.0, 0.0, 1.0]);
        assert!(b
            .shape_hit(Shape::Cylinder, [2.45, 0.45, 3.0], [0.0, 0.0, -1.0])
            .is_none());
    }
}
