"""An rclpy client nobody on this project wrote the other side of: it drives the
embedded sim forward on /cmd_vel and reads /odom and /camera/image_raw.

Prints one JSON line with what it saw. Waits on conditions, bounded by a deadline."""
import sys
import time

import rclpy
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from sensor_msgs.msg import Image
from waits import report


def main() -> int:
    deadline = time.monotonic() + (float(sys.argv[1]) if len(sys.argv) > 1 else 90.0)
    rclpy.init()
    node = rclpy.create_node("interop_client")
    seen = {"odom_x": None, "odom_count": 0, "start_x": None, "image": None}

    def on_odom(m: Odometry) -> None:
        seen["odom_x"] = m.pose.pose.position.x
        seen["odom_count"] += 1
        if seen["start_x"] is None:
            seen["start_x"] = m.pose.pose.position.x

    def on_image(m: Image) -> None:
        seen["image"] = {"width": m.width, "height": m.height, "encoding": m.encoding, "bytes": len(m.data)}

    node.create_subscription(Odometry, "/odom", on_odom, 10)
    node.create_subscription(Image, "/camera/image_raw", on_image, 5)
    pub = node.create_publisher(Twist, "/cmd_vel", 10)
    moved = 0.0
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
        if pub.get_subscription_count() > 0:
            t = Twist()
            t.linear.x = 0.2
            pub.publish(t)
        if seen["start_x"] is not None:
            moved = seen["odom_x"] - seen["start_x"]
        if seen["image"] is not None and moved > 0.1:
            break
    pub.publish(Twist())
    return report(node, {"moved_m": moved, "odom_count": seen["odom_count"], "image": seen["image"]})


if __name__ == "__main__":
    sys.exit(main())
