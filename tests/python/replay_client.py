"""Perception and the planner re-run offline on a sensor recording: while
`rosetta replay` publishes the recorded sensors, wait for perception's object
map to hold the expected objects, then send a command on /rosetta/command and
wait for the planner's plan.

  replay_client.py TIMEOUT_S COMMAND OBJECT_ID...

Prints one JSON object: the latest object map (id -> position) and the plan.
Every wait is on a condition, bounded by the deadline."""
import json
import sys
import time

import rclpy
from std_msgs.msg import String
from waits import report, spinner


def main() -> int:
    deadline = time.monotonic() + float(sys.argv[1])
    command, wanted = sys.argv[2], set(sys.argv[3:])
    rclpy.init()
    node = rclpy.create_node("replay_client")
    worlds, plans = [], []
    node.create_subscription(String, "/perception/objects", lambda m: worlds.append(json.loads(m.data)), 10)
    node.create_subscription(String, "/rosetta/plan", lambda m: plans.append(json.loads(m.data)), 10)
    commands = node.create_publisher(String, "/rosetta/command", 10)
    out = {"error": None}
    spin_until = spinner(node, deadline)

    def ids() -> set:
        return {o["id"] for o in worlds[-1]["objects"]} if worlds else set()

    if not spin_until(lambda: wanted <= ids()):
        out["objects"] = sorted(ids())
        return report(node, out, error=f"perception never saw {sorted(wanted - ids())}")
    # The planner follows the same topic on its own; under load it may not
    # have taken in that object map yet. Two more maps from perception (it
    # publishes one a frame while the replay runs) give it the time; if the
    # replay ends first, the command goes out anyway.
    seen_at = len(worlds)
    spinner(node, min(deadline, time.monotonic() + 5.0))(lambda: len(worlds) >= seen_at + 2)
    out["objects"] = {o["id"]: o["position_m"] for o in worlds[-1]["objects"]}
    out["frame_id"] = worlds[-1]["frame_id"]
    if not spin_until(lambda: commands.get_subscription_count() > 0):
        return report(node, out, error="the planner does not subscribe /rosetta/command")
    commands.publish(String(data=json.dumps({"command_id": 7, "text": command})))
    if not spin_until(lambda: any(p["command_id"] == 7 for p in plans)):
        return report(node, out, error="no plan for the command")
    out["plan"] = next(p for p in plans if p["command_id"] == 7)
    return report(node, out)


if __name__ == "__main__":
    sys.exit(main())
