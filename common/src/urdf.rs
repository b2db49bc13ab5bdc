//! Reads the robot's URDF (`launch/robot/rosetta.urdf`) into a
//! [`RobotDescription`]: the base's footprint and drive limits, the sensors'
//! mounting and parameters (from the Gazebo extension elements), and the arm's
//! planar chain with its joint limits.
//!
//! We read the XML with `roxmltree` rather than a URDF crate because the
//! sensors and the drive limits live in `<gazebo>` extension elements, which
//! URDF parsers drop.

use roxmltree::{Document, Node};

use crate::robot::{ArmDescription, CameraDescription, LidarDescription, RobotDescription};

/// The robot's URDF, compiled in: every crate reads the same file.
pub const ROBOT_URDF: &str = include_str!("../../launch/robot/rosetta.urdf");

#[derive(Debug, thiserror::Error)]
pub enum UrdfError {
    #[error("the URDF is not valid XML: {0}")]
    Xml(#[from] roxmltree::Error),
    #[error("the URDF has no {0}")]
    Missing(String),
    #[error("the URDF's {what} is not usable: {why}")]
    Invalid { what: String, why: String },
}

fn invalid(what: impl Into<String>, why: impl Into<String>) -> UrdfError {
    UrdfError::Invalid {
        what: what.into(),
        why: why.into(),
    }
}

/// Parses whitespace-separated numbers.
fn numbers(what: &str, text: &str) -> Result<Vec<f64>, UrdfError> {
    text.split_whitespace()
        .map(|t| {
            t.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| invalid(what, format!("{t:?} is not a finite number")))
        })
        .collect()
}

fn triple(what: &str, text: &str) -> Result<[f64; 3], UrdfError> {
    match numbers(what, text)?.as_slice() {
        &[a, b, c] => Ok([a, b, c]),
        other => Err(invalid(
            what,
            format!("needs 3 numbers, has {}", other.len()),
        )),
    }
}

fn number(what: &str, text: &str) -> Result<f64, UrdfError> {
    match numbers(what, text)?.as_slice() {
        &[v] => Ok(v),
        _ => Err(invalid(what, format!("{text:?} is not one number"))),
    }
}

/// A joint of the URDF: its origin, axis and limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Joint {
    pub name: String,
    pub kind: String,
    pub parent: String,
    pub child: String,
    pub xyz: [f64; 3],
    pub rpy: [f64; 3],
    pub axis: [f64; 3],
    /// lower, upper, velocity (absent for fixed and continuous joints).
    pub limit: Option<[f64; 3]>,
    /// The `acceleration` attribute of `<limit>`, where given.
    pub acceleration: Option<f64>,
}

/// The shape of a link's `<visual>`, in metres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    Box {
        size_m: [f64; 3],
    },
    /// Along the visual's z axis, centred on its origin.
    Cylinder {
        radius_m: f64,
        length_m: f64,
    },
    Sphere {
        radius_m: f64,
    },
}

/// One `<visual>` of a link: its pose in the link's frame and its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Visual {
    pub link: String,
    pub xyz: [f64; 3],
    pub rpy: [f64; 3],
    pub shape: Shape,
}

/// The parsed URDF: joints by name and the Gazebo elements.
pub struct Urdf<'a> {
    doc: &'a Document<'a>,
    pub joints: Vec<Joint>,
}

impl<'a> Urdf<'a> {
    pub fn parse(doc: &'a Document<'a>) -> Result<Self, UrdfError> {
        let robot = doc.root_element();
        if robot.tag_name().name() != "robot" {
            return Err(UrdfError::Missing("<robot> root element".into()));
        }
        let mut joints = Vec::new();
        for j in robot.children().filter(|n| n.has_tag_name("joint")) {
            let name = j.attribute("name").unwrap_or_default().to_string();
            let child_attr = |tag: &str| {
                j.children()
                    .find(|n| n.has_tag_name(tag))
                    .and_then(|n| n.attribute("link"))
                    .map(str::to_string)
                    .ok_or_else(|| UrdfError::Missing(format!("{tag} of joint {name}")))
            };
            let origin = j.children().find(|n| n.has_tag_name("origin"));
            let xyz = match origin.and_then(|o| o.attribute("xyz")) {
                Some(t) => triple(&format!("joint {name} origin xyz"), t)?,
                None => [0.0; 3],
            };
            let rpy = match origin.and_then(|o| o.attribute("rpy")) {
                Some(t) => triple(&format!("joint {name} origin rpy"), t)?,
                None => [0.0; 3],
            };
            let axis = match j
                .children()
                .find(|n| n.has_tag_name("axis"))
                .and_then(|a| a.attribute("xyz"))
            {
                Some(t) => triple(&format!("joint {name} axis"), t)?,
                None => [1.0, 0.0, 0.0],
            };
            let limit_el = j.children().find(|n| n.has_tag_name("limit"));
            let acceleration = match limit_el.and_then(|l| l.attribute("acceleration")) {
                Some(t) => Some(number(&format!("joint {name} limit acceleration"), t)?),
                None => None,
            };
            let limit = match limit_el {
                Some(l) => {
                    let get = |a: &str| -> Result<f64, UrdfError> {
                        number(
                            &format!("joint {name} limit {a}"),
                            l.attribute(a).unwrap_or("0"),
                        )
                    };
                    Some([get("lower")?, get("upper")?, get("velocity")?])
                }
                None => None,
            };
            joints.push(Joint {
                kind: j.attribute("type").unwrap_or_default().to_string(),
                parent: child_attr("parent")?,
                child: child_attr("child")?,
                name,
                xyz,
                rpy,
                axis,
                limit,
                acceleration,
            });
        }
        Ok(Self { doc, joints })
    }

    /// Every link's visuals with a box, cylinder or sphere (meshes are
    /// skipped: this robot has none).
    pub fn visuals(&self) -> Result<Vec<Visual>, UrdfError> {
        let mut out = Vec::new();
        let links = self
            .doc
            .root_element()
            .children()
            .filter(|n| n.has_tag_name("link"));
        for l in links {
            let link = l.attribute("name").unwrap_or_default().to_string();
            for v in l.children().filter(|n| n.has_tag_name("visual")) {
                let what = format!("visual of link {link}");
                let origin = v.children().find(|n| n.has_tag_name("origin"));
                let pose = |a: &str| match origin.and_then(|o| o.attribute(a)) {
                    Some(t) => triple(&format!("{what} origin {a}"), t),
                    None => Ok([0.0; 3]),
                };
                let Some(g) = v
                    .children()
                    .find(|n| n.has_tag_name("geometry"))
                    .and_then(|g| g.children().find(Node::is_element))
                else {
                    return Err(UrdfError::Missing(format!("<geometry> of the {what}")));
                };
                let attr = |a: &str| {
                    g.attribute(a)
                        .ok_or_else(|| UrdfError::Missing(format!("{a} of the {what}")))
                };
                let shape = match g.tag_name().name() {
                    "box" => Shape::Box {
                        size_m: triple(&what, attr("size")?)?,
                    },
                    "cylinder" => Shape::Cylinder {
                        radius_m: number(&what, attr("radius")?)?,
                        length_m: number(&what, attr("length")?)?,
                    },
                    "sphere" => Shape::Sphere {
                        radius_m: number(&what, attr("radius")?)?,
                    },
                    _ => continue,
                };
                out.push(Visual {
                    link: link.clone(),
                    xyz: pose("xyz")?,
                    rpy: pose("rpy")?,
                    shape,
                });
            }
        }
        Ok(out)
    }

    pub fn joint(&self, name: &str) -> Result<&Joint, UrdfError> {
        self.joints
            .iter()
            .find(|j| j.name == name)
            .ok_or_else(|| UrdfError::Missing(format!("joint {name}")))
    }

    fn limits(&self, name: &str) -> Result<[f64; 3], UrdfError> {
        self.joint(name)?
            .limit
            .ok_or_else(|| UrdfError::Missing(format!("<limit> of joint {name}")))
    }

    /// The `<sensor>` inside `<gazebo reference="link">`.
    fn sensor(&self, link: &str) -> Result<Node<'a, 'a>, UrdfError> {
        self.doc
            .root_element()
            .children()
            .filter(|n| n.has_tag_name("gazebo") && n.attribute("reference") == Some(link))
            .flat_map(|g| g.children())
            .find(|n| n.has_tag_name("sensor"))
            .ok_or_else(|| UrdfError::Missing(format!("Gazebo sensor on {link}")))
    }

    /// The `<plugin>` of the robot-level `<gazebo>` whose filename contains `name`.
    fn plugin(&self, name: &str) -> Result<Node<'a, 'a>, UrdfError> {
        self.doc
            .root_element()
            .children()
            .filter(|n| n.has_tag_name("gazebo") && n.attribute("reference").is_none())
            .flat_map(|g| g.children())
            .find(|n| {
                n.has_tag_name("plugin")
                    && n.attribute("filename").is_some_and(|f| f.contains(name))
            })
            .ok_or_else(|| UrdfError::Missing(format!("Gazebo plugin {name}")))
    }
}

/// The text of the element at `path` (tag names) below `node`, as a number.
fn value_at(node: Node<'_, '_>, path: &[&str]) -> Result<f64, UrdfError> {
    let mut n = node;
    for tag in path {
        n = n
            .children()
            .find(|c| c.has_tag_name(*tag))
            .ok_or_else(|| UrdfError::Missing(format!("<{}>", path.join("/"))))?;
    }
    number(&path.join("/"), n.text().unwrap_or_default().trim())
}

/// The base's collision cylinder: radius and top height.
fn base_cylinder(doc: &Document<'_>) -> Result<(f64, f64), UrdfError> {
    let link = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name("link") && n.attribute("name") == Some("base_link"))
        .ok_or_else(|| UrdfError::Missing("link base_link".into()))?;
    let collision = link
        .children()
        .find(|n| n.has_tag_name("collision"))
        .ok_or_else(|| UrdfError::Missing("collision of base_link".into()))?;
    let cyl = collision
        .descendants()
        .find(|n| n.has_tag_name("cylinder"))
        .ok_or_else(|| invalid("base_link collision", "must be a cylinder (the footprint)"))?;
    let radius = number(
        "base cylinder radius",
        cyl.attribute("radius").unwrap_or(""),
    )?;
    let length = number(
        "base cylinder length",
        cyl.attribute("length").unwrap_or(""),
    )?;
    let z = match collision
        .children()
        .find(|n| n.has_tag_name("origin"))
        .and_then(|o| o.attribute("xyz"))
    {
        Some(t) => triple("base collision origin", t)?[2],
        None => 0.0,
    };
    Ok((radius, z + length / 2.0))
}

impl RobotDescription {
    /// Reads a robot description from URDF text.
    pub fn from_urdf(text: &str) -> Result<Self, UrdfError> {
        let doc = Document::parse(text)?;
        let urdf = Urdf::parse(&doc)?;
        let (base_radius_m, base_height_m) = base_cylinder(&doc)?;

        let drive = urdf.plugin("diff-drive")?;
        let camera_joint = urdf.joint("camera_joint")?;
        let cam = urdf.sensor("camera_link")?;
        let cam_rate = value_at(cam, &["update_rate"])?;
        let hfov = value_at(cam, &["camera", "horizontal_fov"])?;
        let width = value_at(cam, &["camera", "image", "width"])?;
        let height = value_at(cam, &["camera", "image", "height"])?;
        if !(0.1..3.0).contains(&hfov) || width < 1.0 || height < 1.0 {
            return Err(invalid(
                "camera",
                "needs 0.1 < fov < 3 rad and a non-empty image",
            ));
        }
        let fx = (width / 2.0) / (hfov / 2.0).tan();

        let lidar_joint = urdf.joint("lidar_joint")?;
        let lidar = urdf.sensor("lidar_link")?;
        let samples = value_at(lidar, &["lidar", "scan", "horizontal", "samples"])?;

        // The arm: a planar chain about -y, links along x.
        let names = ["arm_shoulder_joint", "arm_elbow_joint", "arm_wrist_joint"];
        let mut lower = [0.0; 3];
        let mut upper = [0.0; 3];
        let mut speed = f64::INFINITY;
        let mut accel = f64::INFINITY;
        for (i, n) in names.iter().enumerate() {
            let j = urdf.joint(n)?;
            if j.axis != [0.0, -1.0, 0.0] || j.rpy != [0.0; 3] || j.xyz[1] != 0.0 {
                return Err(invalid(
                    format!("joint {n}"),
                    "the arm must be planar: axis 0 -1 0, no rotation, y = 0",
                ));
            }
            let [lo, hi, v] = urdf.limits(n)?;
            if lo >= hi || v <= 0.0 {
                return Err(invalid(
                    format!("joint {n} limit"),
                    "needs lower < upper and velocity > 0",
                ));
            }
            let a = j.acceleration.ok_or_else(|| {
                UrdfError::Missing(format!(
                    "acceleration attribute on the <limit> of joint {n}"
                ))
            })?;
            if a <= 0.0 {
                return Err(invalid(
                    format!("joint {n} acceleration"),
                    "must be positive",
                ));
            }
            lower[i] = lo;
            upper[i] = hi;
            speed = speed.min(v);
            accel = accel.min(a);
        }
        let link_x = |n: &str| -> Result<f64, UrdfError> {
            let j = urdf.joint(n)?;
            if j.xyz[1] != 0.0 || j.xyz[2] != 0.0 {
                return Err(invalid(
                    format!("joint {n}"),
                    "must sit along its parent link's x",
                ));
            }
            Ok(j.xyz[0])
        };
        let [_, gripper_open, gripper_speed] = urdf.limits("gripper_joint")?;

        Ok(Self {
            base_radius_m,
            base_height_m,
            max_linear_speed_m_s: value_at(drive, &["max_linear_velocity"])?,
            max_angular_speed_rad_s: value_at(drive, &["max_angular_velocity"])?,
            max_linear_accel_m_s2: value_at(drive, &["max_linear_acceleration"])?,
            max_angular_accel_rad_s2: value_at(drive, &["max_angular_acceleration"])?,
            camera: CameraDescription {
                position_m: camera_joint.xyz,
                pitch_rad: camera_joint.rpy[1],
                width_px: width as u32,
                height_px: height as u32,
                fx_px: fx,
                fy_px: fx,
                cx_px: (width - 1.0) / 2.0,
                cy_px: (height - 1.0) / 2.0,
                max_range_m: value_at(cam, &["camera", "clip", "far"])?,
                rate_hz: cam_rate,
            },
            lidar: LidarDescription {
                position_m: lidar_joint.xyz,
                samples: samples as usize,
                range_min_m: value_at(lidar, &["lidar", "range", "min"])?,
                range_max_m: value_at(lidar, &["lidar", "range", "max"])?,
                rate_hz: value_at(lidar, &["update_rate"])?,
            },
            arm: ArmDescription {
                shoulder_m: urdf.joint(names[0])?.xyz,
                upper_arm_m: link_x(names[1])?,
                forearm_m: link_x(names[2])?,
                tool_m: link_x("tool_joint")?,
                joint_names: names.map(str::to_string),
                lower_rad: lower,
                upper_rad: upper,
                max_joint_speed_rad_s: speed,
                max_joint_accel_rad_s2: accel,
                gripper_joint: "gripper_joint".into(),
                gripper_max_opening_m: gripper_open,
                gripper_speed_m_s: gripper_speed,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{Isometry3, Translation3, Unit, UnitQuaternion, Vector3};

    /// The description the stack used before the URDF existed: the file must say the same.
    #[test]
    fn the_urdf_describes_the_robot_the_stack_was_built_for() {
        let r = RobotDescription::from_urdf(ROBOT_URDF).unwrap();
        assert_eq!(r.base_radius_m, 0.22);
        assert!((r.base_height_m - 0.30).abs() < 1e-12);
        assert_eq!(
            [
                r.max_linear_speed_m_s,
                r.max_angular_speed_rad_s,
                r.max_linear_accel_m_s2,
                r.max_angular_accel_rad_s2
            ],
            [0.5, 1.5, 1.0, 3.0]
        );
        assert_eq!(r.camera.position_m, [0.0, 0.0, 0.95]);
        assert_eq!(r.camera.pitch_rad, 0.6);
        assert_eq!((r.camera.width_px, r.camera.height_px), (640, 480));
        let fx = 320.0 / (70f64.to_radians() / 2.0).tan();
        assert!((r.camera.fx_px - fx).abs() < 1e-9);
        assert_eq!((r.camera.cx_px, r.camera.cy_px), (319.5, 239.5));
        assert_eq!((r.camera.max_range_m, r.camera.rate_hz), (10.0, 5.0));
        assert_eq!(r.lidar.position_m, [0.10, 0.0, 0.20]);
        assert_eq!(r.lidar.samples, 360);
        assert_eq!(
            (r.lidar.range_min_m, r.lidar.range_max_m, r.lidar.rate_hz),
            (0.12, 8.0, 10.0)
        );
        let a = &r.arm;
        assert_eq!(a.shoulder_m, [0.12, 0.0, 0.35]);
        assert_eq!((a.upper_arm_m, a.forearm_m, a.tool_m), (0.35, 0.30, 0.15));
        assert_eq!(a.lower_rad, [-0.5, -2.8, -2.8]);
        assert_eq!(a.upper_rad, [2.0, 0.2, 1.5]);
        assert_eq!(a.max_joint_speed_rad_s, 1.5);
        assert_eq!(a.max_joint_accel_rad_s2, 3.0);
        assert_eq!((a.gripper_max_opening_m, a.gripper_speed_m_s), (0.09, 0.1));
    }

    fn joint_transform(j: &Joint, q: f64) -> Isometry3<f64> {
        let origin = Isometry3::from_parts(
            Translation3::new(j.xyz[0], j.xyz[1], j.xyz[2]),
            UnitQuaternion::from_euler_angles(j.rpy[0], j.rpy[1], j.rpy[2]),
        );
        let axis = Unit::new_normalize(Vector3::new(j.axis[0], j.axis[1], j.axis[2]));
        let motion = match j.kind.as_str() {
            "revolute" | "continuous" => UnitQuaternion::from_axis_angle(&axis, q),
            _ => UnitQuaternion::identity(),
        };
        origin * Isometry3::from_parts(Translation3::identity(), motion)
    }

    /// Forward kinematics through the URDF's own joint frames equals the
    /// planar model the IK and the sim use, over random joint angles.
    #[test]
    fn the_urdf_chain_and_the_arm_model_agree() {
        let doc = Document::parse(ROBOT_URDF).unwrap();
        let urdf = Urdf::parse(&doc).unwrap();
        let r = RobotDescription::from_urdf(ROBOT_URDF).unwrap();
        let chain = [
            "arm_shoulder_joint",
            "arm_elbow_joint",
            "arm_wrist_joint",
            "tool_joint",
        ];
        let mut seed = 12345u64;
        let mut rand = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..200 {
            let q: [f64; 3] = std::array::from_fn(|i| {
                r.arm.lower_rad[i] + rand() * (r.arm.upper_rad[i] - r.arm.lower_rad[i])
            });
            let mut t = Isometry3::identity();
            for (i, name) in chain.iter().enumerate() {
                t *= joint_transform(urdf.joint(name).unwrap(), q.get(i).copied().unwrap_or(0.0));
            }
            let (p, pitch) = r.arm.tool_point(&q);
            let got = t.translation.vector;
            assert!(
                (got - Vector3::new(p[0], p[1], p[2])).norm() < 1e-9,
                "{q:?}: {got} vs {p:?}"
            );
            // The tool's x axis points at `pitch` above horizontal.
            let x = t.rotation * Vector3::x();
            let err = crate::wrap_angle_rad(x.z.atan2(x.x) - pitch);
            assert!(err.abs() < 1e-9, "{q:?}: tool pitch off by {err}");
            // The arm stays in the base's x-z plane.
            assert!(got.y.abs() < 1e-12 && x.y.abs() < 1e-12);
        }
    }

    #[test]
    fn broken_urdfs_are_named_errors() {
        assert!(matches!(
            RobotDescription::from_urdf("<robot"),
            Err(UrdfError::Xml(_))
        ));
        let no_arm = ROBOT_URDF.replace("arm_elbow_joint", "elbow");
        assert!(
            matches!(RobotDescription::from_urdf(&no_arm), Err(UrdfError::Missing(m)) if m.contains("arm_elbow_joint"))
        );
        let bent = ROBOT_URDF.replacen("<axis xyz=\"0 -1 0\"/>", "<axis xyz=\"0 0 1\"/>", 1);
        assert!(matches!(
            RobotDescription::from_urdf(&bent),
            Err(UrdfError::Invalid { .. })
        ));
        let nan = ROBOT_URDF.replace("<max_linear_velocity>0.5<", "<max_linear_velocity>nan<");
        assert!(RobotDescription::from_urdf(&nan).is_err());
    }
}
