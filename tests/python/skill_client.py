"""Single skills through control's action /rosetta/skill
(rosetta_interfaces/action/RunSkill), as a tool or a behaviour tree would call
them: one that succeeds, one that times out, one cancelled mid-way, and a
malformed one. Prints one JSON object; every wait is on a condition."""
import json
import sys
import time

import rclpy
from waits import report, spinner
from rclpy.action import ActionClient
from rosetta_interfaces.action import RunSkill


def main() -> int:
    deadline = time.monotonic() + float(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node("skill_client")
    client = ActionClient(node, RunSkill, "/rosetta/skill")
    out = {"error": None}

    spin_until = spinner(node, deadline)

    def run(skill: dict, timeout_s: float = 0.0, cancel_after_feedback: bool = False) -> dict:
        feedback = []
        sent = client.send_goal_async(
            RunSkill.Goal(skill_json=json.dumps(skill), timeout_s=timeout_s),
            feedback_callback=lambda f: feedback.append(f.feedback.elapsed_s),
        )
        if not spin_until(sent.done) or not sent.result().accepted:
            return {"state": "not accepted"}
        handle = sent.result()
        if cancel_after_feedback:
            spin_until(lambda: len(feedback) > 1)
            c = handle.cancel_goal_async()
            spin_until(c.done)
        r = handle.get_result_async()
        if not spin_until(r.done):
            return {"state": "no result"}
        res = r.result().result
        return {"success": res.success, "state": res.state, "message": res.message, "feedback": len(feedback)}

    if not client.wait_for_server(timeout_sec=max(1.0, deadline - time.monotonic())):
        return report(node, out, error="no action server on /rosetta/skill")
    out["wait"] = run({"skill": "wait", "seconds": 1.0})
    out["timeout"] = run({"skill": "navigate_to", "target": "dock"}, timeout_s=1.0)
    out["cancel"] = run({"skill": "navigate_to", "target": "table"}, cancel_after_feedback=True)
    out["malformed"] = run({"skill": "fly", "to": "the moon"})
    return report(node, out)


if __name__ == "__main__":
    sys.exit(main())
