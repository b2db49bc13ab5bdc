"""The e-stop from an outside program: while the robot drives to the dock (a
goal of /rosetta/execute), publish true on /rosetta/estop; the base must come
to a standstill and stay there, the goal must end stopped, a new goal must be
held off while the e-stop is engaged, and after release a new goal must run.

  estop_client.py TIMEOUT_S

Prints one JSON object. Every wait is on a condition, bounded by the deadline.
The e-stop latencies (wall time from publishing to the first zero /cmd_vel,
and to the first odometry showing a standstill, which includes the base's
braking) are reported, not judged: timing belongs to benchmarks."""
import math
import sys
import time

import rclpy
from waits import report, spinner
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.action import ActionClient
from rosetta_interfaces.action import ExecuteCommand
from std_msgs.msg import Bool


def main() -> int:
    deadline = time.monotonic() + float(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node("estop_client")
    odom = []  # (wall time, sim time, x, y, v, w)

    def on_odom(m: Odometry) -> None:
        t = m.header.stamp.sec + m.header.stamp.nanosec * 1e-9
        p = m.pose.pose.position
        odom.append((time.monotonic(), t, p.x, p.y, m.twist.twist.linear.x, m.twist.twist.angular.z))

    node.create_subscription(Odometry, "/odom", on_odom, 50)
    cmds = []  # (wall time, v, w) as control publishes them
    node.create_subscription(
        Twist, "/cmd_vel", lambda m: cmds.append((time.monotonic(), m.linear.x, m.angular.z)), 50
    )
    estop = node.create_publisher(Bool, "/rosetta/estop", 10)
    client = ActionClient(node, ExecuteCommand, "/rosetta/execute")
    out = {"error": None}

    spin_until = spinner(node, deadline)

    def fail(why: str) -> int:
        return report(node, out, error=why)

    def goal(command: str):
        feedback = []
        sent = client.send_goal_async(
            ExecuteCommand.Goal(command=command), feedback_callback=lambda f: feedback.append(f.feedback)
        )
        if not spin_until(sent.done) or not sent.result().accepted:
            return None, feedback
        return sent.result(), feedback

    def result_of(handle) -> dict:
        r = handle.get_result_async()
        if not spin_until(r.done):
            return {"outcome": "no result"}
        res = r.result().result
        return {"outcome": res.outcome, "message": res.message, "success": res.success}

    if not client.wait_for_server(timeout_sec=max(1.0, deadline - time.monotonic())):
        return fail("no action server")
    # Both ends of the e-stop line must hear it: control, and the base driver
    # (the sim). A message sent before a subscriber is matched is lost to it.
    def estop_heard() -> bool:
        names = {i.node_name for i in node.get_subscriptions_info_by_topic("/rosetta/estop")}
        return {"rosetta_control", "rosetta_sim"} <= names and estop.get_subscription_count() >= len(names)

    if not spin_until(estop_heard):
        return fail("control and the sim do not both subscribe /rosetta/estop")

    handle, feedback = goal("go to the dock")
    if handle is None:
        return fail("the dock goal was not accepted")
    if not spin_until(lambda: odom and abs(odom[-1][4]) > 0.05):
        return fail("the robot never drove")
    out["speed_before_m_s"] = odom[-1][4]
    n, c = len(odom), len(cmds)
    estop.publish(Bool(data=True))
    t0 = time.monotonic()
    zero = lambda: any(x[1] == 0.0 and x[2] == 0.0 for x in cmds[c:])
    if spin_until(zero):
        first_zero = next(x for x in cmds[c:] if x[1] == 0.0 and x[2] == 0.0)
        out["estop_to_zero_cmd_vel_ms"] = (first_zero[0] - t0) * 1000.0
    still = lambda: any(abs(o[4]) < 1e-3 and abs(o[5]) < 1e-3 for o in odom[n:])
    if not spin_until(still):
        return fail("the robot did not stop")
    first_still = next(o for o in odom[n:] if abs(o[4]) < 1e-3 and abs(o[5]) < 1e-3)
    out["estop_to_standstill_ms"] = (first_still[0] - t0) * 1000.0
    out["dock_goal"] = result_of(handle)

    # Standing still for 1 s of sim time.
    k = len(odom) - 1
    spin_until(lambda: odom[-1][1] >= odom[k][1] + 1.0)
    out["moved_while_engaged_m"] = math.hypot(odom[-1][2] - odom[k][2], odom[-1][3] - odom[k][3])
    out["max_speed_while_engaged_m_s"] = max(abs(o[4]) for o in odom[k:])

    # A new command is held off while engaged.
    handle, _ = goal("go to the table")
    if handle is None:
        return fail("the held-off goal was not accepted")
    out["held_off_goal"] = result_of(handle)
    k = len(odom) - 1
    spin_until(lambda: odom[-1][1] >= odom[k][1] + 0.5)
    out["moved_after_held_off_m"] = math.hypot(odom[-1][2] - odom[k][2], odom[-1][3] - odom[k][3])

    # Released: commands run again.
    estop.publish(Bool(data=False))
    handle, _ = goal("go to the table")
    if handle is None:
        return fail("the goal after release was not accepted")
    out["after_release_goal"] = result_of(handle)
    return report(node, out)


if __name__ == "__main__":
    sys.exit(main())
