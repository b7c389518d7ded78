"""Where frames come from: image folders (plain, VPR '@utm' layout, with a poses CSV)."""

from .folder import FolderFrame, frames_from_folder, read_poses_csv

__all__ = ["FolderFrame", "frames_from_folder", "read_poses_csv"]
