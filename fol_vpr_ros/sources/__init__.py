"""Where frames come from: image folders (folder), ROS bags (bag, decoded by image_decode) and their poses.

Bag poses: pose_choice (which topic), pose_topics (collectors), tracks (interpolation, PoseStatus), tf_tree,
geometry (quaternions), pose_sampler (the one sampler), bag_ground_truth; utm, keyframes.
"""

from .folder import FolderFrame, frames_from_folder, read_poses_csv

__all__ = ["FolderFrame", "frames_from_folder", "read_poses_csv"]
