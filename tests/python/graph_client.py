"""The embedded sim's side of the Gazebo contract, read from the ROS graph:
every topic the sim node publishes and subscribes, with its type, and one
camera_info, scan and joint_states (to compare with the URDF's sensors and
joints).

  graph_client.py TIMEOUT_S NODE_NAME

Prints one JSON object. Every wait is on a condition, bounded by the deadline."""
import sys
import time

import rclpy
from waits import report, spinner
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, JointState, LaserScan


def main() -> int:
    deadline = time.monotonic() + float(sys.argv[1])
    target = sys.argv[2]
    rclpy.init()
    node = rclpy.create_node("graph_client")
    spin_until = spinner(node, deadline)
    out = {"error": None}
    infos, scans, joints = [], [], []
    node.create_subscription(CameraInfo, "/camera/camera_info", infos.append, 10)
    node.create_subscription(LaserScan, "/scan", scans.append, 10)
    node.create_subscription(JointState, "/joint_states", joints.append, 10)
    odoms = []
    node.create_subscription(Odometry, "/odom", odoms.append, 10)

    def namespace_of():
        for name, ns in node.get_node_names_and_namespaces():
            if name == target:
                return ns
        return None

    if not spin_until(lambda: namespace_of() is not None):
        return report(node, out, error=f"no node {target}")
    ns = namespace_of()
    # Discovery fills in the endpoints shortly after the node appears: wait
    # until both lists are non-empty and stop changing for a few spins.
    seen = {"last": None, "same": 0}

    def settled() -> bool:
        pubs = node.get_publisher_names_and_types_by_node(target, ns)
        subs = node.get_subscriber_names_and_types_by_node(target, ns)
        now = (sorted((t, tuple(ty)) for t, ty in pubs), sorted((t, tuple(ty)) for t, ty in subs))
        seen["same"] = seen["same"] + 1 if now == seen["last"] and pubs and subs else 0
        seen["last"] = now
        return seen["same"] >= 25

    if not spin_until(settled):
        return report(node, out, error="the sim's endpoints did not settle")
    pubs, subs = seen["last"]
    out["publishes"] = [[t, list(ty)] for t, ty in pubs]
    out["subscribes"] = [[t, list(ty)] for t, ty in subs]
    if spin_until(lambda: infos):
        i = infos[-1]
        out["camera_info"] = {"width": i.width, "height": i.height, "k": list(i.k), "frame_id": i.header.frame_id}
    if spin_until(lambda: scans):
        m = scans[-1]
        out["scan"] = {
            "frame_id": m.header.frame_id,
            "angle_min": m.angle_min,
            "angle_max": m.angle_max,
            "angle_increment": m.angle_increment,
            "range_min": m.range_min,
            "range_max": m.range_max,
            "rays": len(m.ranges),
        }
    if spin_until(lambda: odoms):
        out["odom_frames"] = [odoms[-1].header.frame_id, odoms[-1].child_frame_id]
    if spin_until(lambda: joints):
        out["joint_names"] = list(joints[-1].name)
    return report(node, out)


if __name__ == "__main__":
    sys.exit(main())
