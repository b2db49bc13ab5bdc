"""Control's scan watchdog over ROS 2: the sim (started with
--scan-blackout-after-s) stops publishing /scan shortly after the robot starts
driving to the dock (a /rosetta/skill goal with a timeout). Blind, the base
must stop translating and stay stopped until the goal times out. Prints one
JSON object; every wait is on a condition."""
import json
import sys
import time

import rclpy
from waits import report, spinner
from nav_msgs.msg import Odometry
from rclpy.action import ActionClient
from rosetta_interfaces.action import RunSkill
from sensor_msgs.msg import LaserScan


def main() -> int:
    deadline = time.monotonic() + float(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node("watchdog_client")
    odom, scans = [], []
    node.create_subscription(
        Odometry,
        "/odom",
        lambda m: odom.append((m.header.stamp.sec + m.header.stamp.nanosec * 1e-9, m.twist.twist.linear.x)),
        50,
    )
    node.create_subscription(
        LaserScan, "/scan", lambda m: scans.append(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9), 10
    )
    client = ActionClient(node, RunSkill, "/rosetta/skill")
    out = {"error": None}

    spin_until = spinner(node, deadline)

    if not client.wait_for_server(timeout_sec=max(1.0, deadline - time.monotonic())):
        return report(node, out, error="no action server")
    # The lidar dies soon after the first motion: the scan and odometry must
    # reach this client before the goal goes, or there is nothing to judge.
    if not spin_until(lambda: bool(scans) and bool(odom)):
        return report(node, out, error="no scan or odometry reached the client")
    # 9 s: the lidar dies 3.5 s after the first motion (the robot first
    # turns towards the dock, then drives); the step's own no-progress check
    # (8 s after the last progress, made while driving) comes after this
    # timeout.
    goal = RunSkill.Goal(skill_json=json.dumps({"skill": "navigate_to", "target": "dock"}), timeout_s=9.0)
    sent = client.send_goal_async(goal)
    if not spin_until(sent.done) or not sent.result().accepted:
        return report(node, out, error="goal not accepted")
    r = sent.result().get_result_async()
    spin_until(r.done)
    if not r.done():
        return report(node, out, error="no result")
    res = r.result().result
    out["result"] = {"state": res.state, "message": res.message}
    end = odom[-1][0] if odom else 0.0
    last_scan = scans[-1] if scans else None
    out["max_speed_m_s"] = max((abs(v) for _, v in odom), default=0.0)
    out["last_scan_s"] = last_scan
    out["end_s"] = end
    # Since when the base has been at rest without a break, up to the result
    # (it decelerates within its limits first); None if it was moving at the end.
    rest = None
    for t, v in reversed(odom):
        if v != 0.0:
            break
        rest = t
    out["rest_s"] = rest
    return report(node, out)


if __name__ == "__main__":
    sys.exit(main())
