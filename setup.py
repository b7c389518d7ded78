"""pip install path for fol_vpr_ros (colcon builds the same package with CMake, see CMakeLists.txt)."""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "fol_vpr_ros"
HERE = Path(__file__).parent

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Visual place recognition for ROS 2 with FoL (Focus on Local, AAAI 2025)",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["py.typed", "datasets/manifests/*.sha256"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        # Message definitions, read at run time by fol_vpr_ros.ros.interfaces (no rosidl on the pip path).
        (f"share/{PACKAGE}/msg", sorted(f"msg/{path.name}" for path in (HERE / "msg").glob("*.msg"))),
    ],
    # Ranges that resolve on CPython 3.10-3.12 (tools/check_install.py); requirements.txt and
    # requirements-dev.txt list the same (test/test_install_ranges.py); CI pins: requirements-ci.txt.
    install_requires=[
        # Users bring the torch build they want (CPU, CUDA, JetPack), so this is a range. 2.5 for
        # torch.OutOfMemoryError and torch.onnx.export(dynamo=); 2.5.0a0 so NVIDIA's 2.5.0a0+nv builds count.
        "torch>=2.5.0a0",
        "numpy>=1.22",
        "pillow>=9.0",
        "faiss-cpu>=1.7.3",
        "tqdm>=4.60",
        "pyyaml>=5.4",
        "matplotlib>=3.5",
        # The message definitions (typestore), bag reading and the results bag; Stores.ROS2_JAZZY/KILTED.
        "rosbags>=0.10.11",
        "pyproj>=3.3",  # WGS84 <-> UTM (sources/utm.py)
        "opencv-python-headless>=4.8",  # two-view geometry of loop closures (pipeline/verify.py)
    ],
    extras_require={
        # bayer/yuv image encodings in bags (rosbags-image needs OpenCV for those).
        "images": ["rosbags-image>=0.9"],
        # the test suite (pyproject.toml sets a per-test timeout: pytest-timeout) and the linter
        "dev": ["pytest>=7", "pytest-timeout>=2.1", "ruff>=0.5"],
        # ONNX export and the onnxruntime backend; TensorRT comes with JetPack / the CUDA stack
        "export": ["onnx>=1.16", "onnxruntime>=1.18"],
    },
    entry_points={"console_scripts": ["fol-vpr = fol_vpr_ros.cli:main"]},
)
