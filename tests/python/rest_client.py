"""An rclpy program that reads the sim's ground truth to judge whether the
robot stands still: the robot's displacement between two truth samples at
least 0.5 s of sim time apart, with the last truth.

  rest_client.py TIMEOUT_S

Prints one JSON object: `moved_m`, `truth`. Every wait is on a condition,
bounded by the deadline."""
import json
import math
import sys
import time

import rclpy
from std_msgs.msg import String
from waits import report, spinner


def main() -> int:
    deadline = time.monotonic() + float(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node("rest_client")
    truths = []
    node.create_subscription(String, "/sim/ground_truth", lambda m: truths.append(json.loads(m.data)), 10)
    spin_until = spinner(node, deadline)
    out = {}
    if not spin_until(lambda: truths):
        return report(node, out, error="no ground truth on /sim/ground_truth")
    first = truths[0]
    if not spin_until(lambda: truths[-1]["stamp_s"] >= first["stamp_s"] + 0.5):
        return report(node, out, error="the sim's time did not advance 0.5 s")
    last = truths[-1]
    a, b = first["robot_pose"], last["robot_pose"]
    out["moved_m"] = math.hypot(b["x_m"] - a["x_m"], b["y_m"] - a["y_m"])
    out["truth"] = last
    return report(node, out)


if __name__ == "__main__":
    sys.exit(main())
