"""Start the FoL visual place recognition node.

    ros2 launch fol_vpr_ros localize.launch.py weights:=/path/to/fol.pth map:=/path/to/map
        [image_topic:=/camera/image_raw] [params_file:=my.yaml] [namespace:=robot1] [use_sim_time:=true]

Parameters come from params_file (default: share/fol_vpr_ros/config/localize.yaml); the launch
arguments map, weights and use_sim_time override it (map and weights only when not empty, so that
values set in params_file are kept). The node's "image" input is remapped to image_topic.

(LaunchDescription is imported from launch.launch_description: ruff would sort a bare
`from launch import` as first-party because of this launch/ folder.)
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "fol_vpr_ros"


def _node(context, *args, **kwargs):
    overrides = {
        "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool),
    }
    for argument, parameter in (("map", "map_path"), ("weights", "weights")):
        value = LaunchConfiguration(argument).perform(context)
        if value:
            # value_type=str: launch_ros would otherwise YAML-parse the text (a path "2024" -> int).
            overrides[parameter] = ParameterValue(value, value_type=str)
    image_topic = LaunchConfiguration("image_topic").perform(context)
    return [
        Node(
            package=PACKAGE,
            executable="fol_vpr_node",
            name="fol_vpr",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file"), overrides],
            remappings=[
                ("image", image_topic),
                ("image/compressed", image_topic.rstrip("/") + "/compressed"),
            ],
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "localize.yaml")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=default_params,
                description="ROS 2 parameter file for the fol_vpr node",
            ),
            DeclareLaunchArgument(
                "map",
                default_value="",
                description="place map to localise against (parameter map_path); '' = keep params_file's",
            ),
            DeclareLaunchArgument(
                "weights",
                default_value="",
                description="FoL checkpoint (parameter weights); '' = keep params_file's",
            ),
            DeclareLaunchArgument(
                "image_topic",
                default_value="image",
                description="sensor_msgs/Image topic (the node's 'image' input is remapped to it)",
            ),
            DeclareLaunchArgument(
                "use_sim_time",
                default_value="false",
                description="use /clock (true when playing a bag with --clock)",
            ),
            DeclareLaunchArgument(
                "namespace",
                default_value="",
                description="namespace of the node",
            ),
            OpaqueFunction(function=_node),
        ]
    )
