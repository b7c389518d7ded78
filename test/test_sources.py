"""Image-folder sources: plain folders, '@utm' names, poses CSV and its errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fol_vpr_ros.errors import ConfigError
from fol_vpr_ros.sources import frames_from_folder, read_poses_csv


def _images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(folder / n)


def test_plain_folder_sorted_with_index_stamps(tmp_path):
    _images(tmp_path / "im", ["b.png", "a.png", "c.jpg"])
    frames = frames_from_folder(tmp_path / "im")
    assert [f.path.name for f in frames] == ["a.png", "b.png", "c.jpg"]
    assert [f.stamp_ns for f in frames] == [0, 1_000_000_000, 2_000_000_000]
    assert all(f.pose is None and f.geo is None for f in frames)


def test_utm_names(tmp_path):
    _images(tmp_path / "db", ["@0543256.96@4178906.38@10@S@37.7@-122.5@.jpg", "@0543260.00@4178900.00@10@S@.jpg"])
    frames = frames_from_folder(tmp_path / "db")
    assert frames[0].geo.easting == pytest.approx(543256.96) and frames[0].geo.northing == pytest.approx(4178906.38)
    assert frames[0].geo.zone == "10S"


def test_poses_csv(tmp_path):
    _images(tmp_path / "im", ["a.png", "b.png", "c.png"])
    csv = tmp_path / "poses.csv"
    csv.write_text("image,stamp,x,y,z,qx,qy,qz,qw,frame_id\n"
                   "b.png,12.5,1,2,0,0,0,0.7071068,0.7071068,odom\n"
                   "a.png,13.0,3,4,,,,,,\n")
    frames = frames_from_folder(tmp_path / "im", csv)
    assert [f.path.name for f in frames] == ["b.png", "a.png"]  # only listed images, in CSV order
    assert frames[0].stamp_ns == 12_500_000_000
    assert frames[0].pose.position == (1.0, 2.0, 0.0) and frames[0].pose.frame_id == "odom"
    assert frames[1].pose.orientation == (0.0, 0.0, 0.0, 1.0) and frames[1].pose.frame_id == "map"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name,stamp\na.png,1\n", "header must contain 'image'"),
        ("image,speed\na.png,1\n", "unknown columns"),
        ("image,stamp\na.png,soon\n", "not a number"),
        ("image,x\na.png,1\n", "needs at least x and y"),
        ("image\na.png\na.png\n", "listed twice"),
        ("image\nzzz.png\n", "not in"),
        ("image\n", "no rows"),
    ],
)
def test_poses_csv_errors(tmp_path, text, match):
    _images(tmp_path / "im", ["a.png"])
    (tmp_path / "p.csv").write_text(text)
    with pytest.raises(ConfigError, match=match):
        frames_from_folder(tmp_path / "im", tmp_path / "p.csv")


def test_missing_folder_and_csv(tmp_path):
    with pytest.raises(ConfigError, match="image folder not found"):
        frames_from_folder(tmp_path / "nope")
    with pytest.raises(ConfigError, match="poses CSV not found"):
        read_poses_csv(tmp_path / "nope.csv")
