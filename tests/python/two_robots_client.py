"""Two robots on one ROS 2 domain, each stack in its own namespace: one goal
of <ns>/rosetta/execute to each robot at once, then where each robot's own
sim (<ns>/sim/ground_truth) says it ended.

  two_robots_client.py TIMEOUT_S NS1 COMMAND1 NS2 COMMAND2

Prints one JSON object. Every wait is on a condition, bounded by the deadline."""
import json
import sys
import time

import rclpy
from waits import report, spinner
from rclpy.action import ActionClient
from rosetta_interfaces.action import ExecuteCommand
from std_msgs.msg import String


def main() -> int:
    deadline = time.monotonic() + float(sys.argv[1])
    robots = [(sys.argv[2], sys.argv[3]), (sys.argv[4], sys.argv[5])]
    rclpy.init()
    node = rclpy.create_node("two_robots_client")
    spin_until = spinner(node, deadline)
    out = {"error": None, "robots": {}}
    truths = {ns: [] for ns, _ in robots}
    for ns, _ in robots:
        node.create_subscription(
            String, f"/{ns}/sim/ground_truth", lambda m, ns=ns: truths[ns].append(json.loads(m.data)), 10
        )
    clients = {ns: ActionClient(node, ExecuteCommand, f"/{ns}/rosetta/execute") for ns, _ in robots}
    for ns, client in clients.items():
        if not client.wait_for_server(timeout_sec=max(1.0, deadline - time.monotonic())):
            return report(node, out, error=f"no action server /{ns}/rosetta/execute")
    sent = {ns: clients[ns].send_goal_async(ExecuteCommand.Goal(command=cmd)) for ns, cmd in robots}
    if not spin_until(lambda: all(s.done() for s in sent.values())):
        return report(node, out, error="goals not accepted in time")
    results = {ns: s.result().get_result_async() for ns, s in sent.items()}
    if not spin_until(lambda: all(r.done() for r in results.values())):
        return report(node, out, error="no results in time")
    for ns, r in results.items():
        res = r.result().result
        n = len(truths[ns])
        spin_until(lambda: len(truths[ns]) > n)
        last = truths[ns][-1] if truths[ns] else None
        out["robots"][ns] = {
            "outcome": res.outcome,
            "message": res.message,
            "plan": json.loads(res.plan_json) if res.plan_json else None,
            "pose": last["robot_pose"] if last else None,
        }
    return report(node, out)


if __name__ == "__main__":
    sys.exit(main())
