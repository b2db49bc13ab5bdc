//! The embedded simulator: the default robot and world.
//!
//! The core ([`world`], [`render`], [`scene`]) is pure and deterministic; the
//! ROS 2 shell ([`node`]) publishes and subscribes exactly the topics a Gazebo
//! world behind `ros_gz_bridge` would, plus the ground truth on its own topic.

pub mod gazebo;
pub mod geometry;
pub mod node;
pub mod pace;
pub mod rec;
pub mod render;
pub mod scene;
pub mod world;

pub use scene::Scene;
pub use world::World;
