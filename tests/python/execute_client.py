"""An rclpy program that commands the stack through its action interface,
/rosetta/execute (rosetta_interfaces/action/ExecuteCommand), the way an
operator's tool or another robot program would.

  execute_client.py TIMEOUT_S COMMAND [cancel | preempt:OTHER_COMMAND]

Sends COMMAND as a goal and collects every feedback. With `cancel`, it cancels
the goal as soon as a step runs, then waits until the sim's ground truth shows
the robot standing still. With `preempt:OTHER_COMMAND`, it sends OTHER_COMMAND
as a second goal as soon as a step of the first runs, and reports both results
(the second as `second`). Prints one JSON object with what it saw. Every wait
is on a condition, bounded by the deadline."""
import json
import math
import sys
import time

import rclpy
from waits import report, spinner
from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient
from rosetta_interfaces.action import ExecuteCommand
from nav_msgs.msg import OccupancyGrid
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String


def main() -> int:
    deadline = time.monotonic() + float(sys.argv[1])
    command = sys.argv[2]
    cancel = len(sys.argv) > 3 and sys.argv[3] == "cancel"
    preempt = sys.argv[3][len("preempt:"):] if len(sys.argv) > 3 and sys.argv[3].startswith("preempt:") else None
    rclpy.init()
    node = rclpy.create_node("execute_client")
    truths = []
    node.create_subscription(String, "/sim/ground_truth", lambda m: truths.append(json.loads(m.data)), 10)
    client = ActionClient(node, ExecuteCommand, "/rosetta/execute")
    out = {"command": command, "feedback": [], "error": None}

    spin_until = spinner(node, deadline)

    if not client.wait_for_server(timeout_sec=max(1.0, deadline - time.monotonic())):
        return report(node, out, error="no action server on /rosetta/execute")

    def on_feedback(msg) -> None:
        f = msg.feedback
        out["feedback"].append(
            {
                "attempt": f.attempt,
                "steps": list(f.steps),
                "current_step": f.current_step,
                "task_state": f.task_state,
                "message": f.message,
            }
        )

    sent = client.send_goal_async(ExecuteCommand.Goal(command=command), feedback_callback=on_feedback)
    if not spin_until(sent.done) or not sent.result().accepted:
        return report(node, out, error="the goal was not accepted")
    handle = sent.result()
    running = lambda: any(f["current_step"] >= 0 for f in out["feedback"])
    if (cancel or preempt) and not spin_until(running):
        return report(node, out, error="no step ran before the deadline")
    if cancel:
        canceling = handle.cancel_goal_async()
        spin_until(canceling.done)
        out["cancel_accepted"] = canceling.done() and len(canceling.result().goals_canceling) == 1
    second = None
    if preempt:
        sent2 = client.send_goal_async(ExecuteCommand.Goal(command=preempt))
        if not spin_until(sent2.done) or not sent2.result().accepted:
            return report(node, out, error="the second goal was not accepted")
        second = sent2.result()

    def result_of(h):
        result = h.get_result_async()
        if not spin_until(result.done):
            return None
        r = result.result()
        res = r.result
        return {
            "status": {
                GoalStatus.STATUS_SUCCEEDED: "succeeded",
                GoalStatus.STATUS_ABORTED: "aborted",
                GoalStatus.STATUS_CANCELED: "canceled",
            }.get(r.status, str(r.status)),
            "success": res.success,
            "outcome": res.outcome,
            "message": res.message,
            "attempts": res.attempts,
            "plan": json.loads(res.plan_json) if res.plan_json else None,
            "report": json.loads(res.report_json) if res.report_json else None,
        }

    first = result_of(handle)
    if first is None:
        return report(node, out, error="no result before the deadline")
    out["status"] = first.pop("status")
    out["result"] = first
    if second is not None:
        out["second"] = result_of(second)
        if out["second"] is None:
            return report(node, out, error="no result for the second goal before the deadline")
    # The fastest the base went while the goal ran, from the sim's truth
    # (5 Hz; over spans of at least 0.4 s of sim time).
    fastest = 0.0
    for i, a in enumerate(truths):
        for b in truths[i + 1 :]:
            dt = b["stamp_s"] - a["stamp_s"]
            if dt >= 0.4:
                pa, pb = a["robot_pose"], b["robot_pose"]
                fastest = max(fastest, math.hypot(pb["x_m"] - pa["x_m"], pb["y_m"] - pa["y_m"]) / dt)
                break
    out["max_truth_speed_m_s"] = fastest
    # The sim's truth after the result: two samples at least 0.5 s of sim time
    # apart, so that a robot still moving shows.
    n0 = len(truths)
    spin_until(lambda: len(truths) > n0)
    if len(truths) > n0:
        first = truths[n0]
        spin_until(lambda: truths[-1]["stamp_s"] >= first["stamp_s"] + 0.5)
        last = truths[-1]
        a, b = first["robot_pose"], last["robot_pose"]
        out["truth"] = last
        out["moved_after_result_m"] = math.hypot(b["x_m"] - a["x_m"], b["y_m"] - a["y_m"])
    # Perception's occupancy grid (latched: this late subscriber still gets it).
    maps = []
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(OccupancyGrid, "/map", maps.append, latched)
    if spin_until(lambda: maps):
        m = maps[-1]
        cell = lambda x, y: m.data[
            int((y - m.info.origin.position.y) / m.info.resolution) * m.info.width
            + int((x - m.info.origin.position.x) / m.info.resolution)
        ]
        out["map"] = {
            "frame_id": m.header.frame_id,
            "width": m.info.width,
            "height": m.info.height,
            "resolution": m.info.resolution,
            "occupied": sum(1 for v in m.data if v == 100),
            "free": sum(1 for v in m.data if v == 0),
            # The near face of the table (x = 1.3 m), and the open floor in front of it.
            "table_face": max(cell(1.30 + dx, 0.0) for dx in (0.0, 0.03, 0.06)),
            "floor": cell(0.8, 0.0),
        }
    return report(node, out)


if __name__ == "__main__":
    sys.exit(main())
