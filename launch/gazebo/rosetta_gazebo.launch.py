"""rosetta on Gazebo Harmonic: one launch for the world, the robot, the bridge
and the stack.

  ros2 launch launch/gazebo/rosetta_gazebo.launch.py
  ros2 launch launch/gazebo/rosetta_gazebo.launch.py world:=/path/world.sdf rosetta:=/path/rosetta

It starts:
  * Gazebo (gz sim) with the world generated from the embedded sim's scene
    (worlds/default.sdf; regenerate with `rosetta gazebo-files`);
  * the robot, spawned from the one URDF (launch/robot/rosetta.urdf) that the
    embedded sim and the arm's kinematics read, through robot_description;
  * robot_state_publisher with that URDF (TF of the robot's links);
  * ros_gz_bridge with bridge.yaml: exactly the topics the stack uses, with
    the embedded sim's names and types (a test checks the sim against it);
  * the rosetta stack: perception, planner, executive and control, the same
    binaries that run on the embedded sim, unchanged.

Command it like the embedded sim: the /rosetta/execute action
(rosetta_interfaces/action/ExecuteCommand), or the e-stop on /rosetta/estop.
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
URDF = os.path.join(REPO, "launch", "robot", "rosetta.urdf")
BRIDGE = os.path.join(HERE, "bridge.yaml")
WORLD = os.path.join(HERE, "worlds", "default.sdf")
ROSETTA = os.path.join(REPO, "target", "debug", "rosetta")
# The stack's nodes, as `rosetta <node>` subcommands.
STACK = ("perception", "planner", "executive", "control")


def generate_launch_description() -> LaunchDescription:
    with open(URDF, encoding="utf-8") as f:
        robot_description = f.read()
    world = LaunchConfiguration("world")
    rosetta = LaunchConfiguration("rosetta")
    gazebo = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare("ros_gz_sim"), "launch", "gz_sim.launch.py"])
        ),
        launch_arguments={"gz_args": ["-r ", world]}.items(),
    )
    state_publisher = Node(
        package="robot_state_publisher",
        executable="robot_state_publisher",
        parameters=[{"robot_description": robot_description, "use_sim_time": True}],
        output="screen",
    )
    # The scene's robot start pose is the map origin.
    spawn = Node(
        package="ros_gz_sim",
        executable="create",
        arguments=["-name", "rosetta", "-topic", "robot_description", "-x", "0", "-y", "0", "-z", "0"],
        output="screen",
    )
    bridge = Node(
        package="ros_gz_bridge",
        executable="parameter_bridge",
        parameters=[{"config_file": BRIDGE, "use_sim_time": True}],
        output="screen",
    )
    stack = [
        ExecuteProcess(cmd=[rosetta, node], name=f"rosetta_{node}", output="screen") for node in STACK
    ]
    return LaunchDescription(
        [
            DeclareLaunchArgument("world", default_value=WORLD, description="Gazebo world SDF"),
            DeclareLaunchArgument("rosetta", default_value=ROSETTA, description="the rosetta binary"),
            gazebo,
            state_publisher,
            spawn,
            bridge,
            *stack,
        ]
    )
