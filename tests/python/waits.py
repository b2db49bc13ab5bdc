"""Shared by the rclpy test programs: wait on a condition while spinning the
node, never past the program's deadline (no fixed sleeps), and end with one
JSON object on stdout."""
import json
import time

import rclpy


def spinner(node, deadline: float, period_s: float = 0.02):
    """Returns spin_until(cond): spins `node` until cond() is true or
    time.monotonic() passes `deadline`; returns cond()."""

    def spin_until(cond) -> bool:
        while time.monotonic() < deadline:
            if cond():
                return True
            rclpy.spin_once(node, timeout_sec=period_s)
        return cond()

    return spin_until


def report(node, out: dict, error: str | None = None) -> int:
    """Ends a test program: prints its one JSON object (with `error` set when
    it failed), shuts rclpy down, and returns the exit code."""
    if error is not None:
        out["error"] = error
    print(json.dumps(out))
    node.destroy_node()
    rclpy.shutdown()
    return 0 if error is None else 1
