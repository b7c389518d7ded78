"""Datasets: the small sets bundled in the repository and `fol-vpr data fetch` for the public ones."""

from .bundled import bundled_data_dir, default_data_dir
from .catalog import CATALOG, Access, Dataset, RemoteFile, dataset, manifest_files
from .fetch import FetchError, FetchResult, fetch_dataset

__all__ = [
    "CATALOG",
    "Access",
    "Dataset",
    "FetchError",
    "FetchResult",
    "RemoteFile",
    "bundled_data_dir",
    "dataset",
    "default_data_dir",
    "fetch_dataset",
    "manifest_files",
]
