"""fol_vpr_ros: visual place recognition for ROS 2 with FoL (Focus on Local, AAAI 2025)."""

__version__ = "0.1.0"
