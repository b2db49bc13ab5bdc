"""A crashed controller: while the robot drives to the dock (a goal of
/rosetta/execute), the control process is killed (SIGKILL, no clean-up).
The base must still come to a standstill (the base driver's command
watchdog), and the goal must end failed with a reason that names control.

  crash_client.py TIMEOUT_S CONTROL_PID

Prints one JSON object. Every wait is on a condition, bounded by the deadline."""
import math
import os
import signal
import sys
import time

import rclpy
from waits import report, spinner
from nav_msgs.msg import Odometry
from rclpy.action import ActionClient
from rosetta_interfaces.action import ExecuteCommand


def main() -> int:
    deadline = time.monotonic() + float(sys.argv[1])
    control_pid = int(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node("crash_client")
    odom = []  # (wall time, x, y, v, w)

    def on_odom(m: Odometry) -> None:
        p = m.pose.pose.position
        odom.append((time.monotonic(), p.x, p.y, m.twist.twist.linear.x, m.twist.twist.angular.z))

    # Depth 1: the reader keeps only the newest pose, so a client that fell
    # behind (two cores, five busy nodes) never measures from a stale one.
    node.create_subscription(Odometry, "/odom", on_odom, 1)
    client = ActionClient(node, ExecuteCommand, "/rosetta/execute")
    out = {"error": None}
    spin_until = spinner(node, deadline)

    def fail(why: str) -> int:
        return report(node, out, error=why)

    if not client.wait_for_server(timeout_sec=max(1.0, deadline - time.monotonic())):
        return fail("no action server")
    sent = client.send_goal_async(ExecuteCommand.Goal(command="go to the dock"))
    if not spin_until(sent.done) or not sent.result().accepted:
        return fail("the dock goal was not accepted")
    handle = sent.result()
    if not spin_until(lambda: odom and abs(odom[-1][3]) > 0.05):
        return fail("the robot never drove")
    # Take the pose at the kill from a message that arrived after it was sent:
    # the newest one, not whatever was queued before.
    out["speed_before_m_s"] = odom[-1][3]
    os.kill(control_pid, signal.SIGKILL)
    t0 = time.monotonic()
    n = len(odom)
    if not spin_until(lambda: len(odom) > n):
        return fail("no odometry after the kill")
    x0, y0 = odom[n][1], odom[n][2]
    still = lambda: any(abs(o[3]) < 1e-3 and abs(o[4]) < 1e-3 for o in odom[n:])
    if not spin_until(still):
        return fail("the robot did not stop after control died")
    first = next(o for o in odom[n:] if abs(o[3]) < 1e-3 and abs(o[4]) < 1e-3)
    out["kill_to_standstill_ms"] = (first[0] - t0) * 1000.0
    out["moved_after_kill_m"] = math.hypot(first[1] - x0, first[2] - y0)
    r = handle.get_result_async()
    if not spin_until(r.done):
        return fail("the goal never ended")
    res = r.result().result
    out["goal"] = {"outcome": res.outcome, "message": res.message, "attempts": res.attempts}
    out["kill_to_result_s"] = time.monotonic() - t0
    # Still standing after the goal ended.
    k = len(odom) - 1
    spin_until(lambda: len(odom) > k + 25)
    out["moved_after_result_m"] = math.hypot(odom[-1][1] - odom[k][1], odom[-1][2] - odom[k][2])
    return report(node, out)


if __name__ == "__main__":
    sys.exit(main())
