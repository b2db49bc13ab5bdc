"""Shared by the rclpy test programs: wait on a condition while spinning the
node, never past the program's deadline (no fixed sleeps)."""
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
