"""The public datasets `fol-vpr data fetch` knows: where each file comes from, its sha256, licence and access.

Files with a sha256 are downloaded and checked byte for byte. The small sets come file by file from
the public git repositories they were published in, pinned to one commit (their manifests in
``manifests/`` list sha256, size and path). Sets behind a registration or a request to the authors
cannot be fetched by a program: ``fetch`` then prints where to ask and where to put the files.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

__all__ = ["CATALOG", "Access", "Dataset", "RemoteFile", "dataset", "manifest_files"]

MANIFESTS = Path(__file__).with_name("manifests")


class Access(str, enum.Enum):
    """How a dataset can be obtained."""

    DIRECT = "direct"  # every file has a URL and a sha256: fetched and verified
    UNVERIFIED = "unverified"  # public URLs, but no published checksum: fetched only with --allow-unverified
    REGISTRATION = "registration"  # needs an account on the publisher's site
    ON_REQUEST = "on request"  # the authors send it on request


@dataclass(frozen=True)
class RemoteFile:
    """One file to download: its URL, where it goes in the dataset folder, its size and sha256 (None: unknown)."""

    url: str
    path: str
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Dataset:
    """A dataset of the catalog: name, folder, access, licence and citation, and its files (or instructions)."""

    name: str
    folder: str
    title: str
    access: Access
    licence: str
    citation: str
    homepage: str
    base_url: str = ""  # files: base_url + source_prefix + manifest path
    source_prefix: str = ""
    manifest: str | None = None
    files: tuple[RemoteFile, ...] = ()
    instructions: str = ""
    approx_size_mb: float | None = None

    def remote_files(self) -> tuple[RemoteFile, ...]:
        """The files to fetch: the explicit list, else the manifest's rows joined to ``base_url``."""
        if self.files:
            return self.files
        if self.manifest is None:
            return ()
        return tuple(RemoteFile(self.base_url + self.source_prefix + path, path, sha, size)
                     for sha, size, path in manifest_files(self.manifest))


def manifest_files(name: str) -> list[tuple[str, int, str]]:
    """(sha256, size, path) rows of ``manifests/NAME.sha256`` (``sha256  size  path`` per line)."""
    rows = []
    for line in (MANIFESTS / f"{name}.sha256").read_text(encoding="utf-8").splitlines():
        if line.strip():
            sha, size, path = line.split(maxsplit=2)
            rows.append((sha, int(size), path))
    return rows


_GITHUB_RAW = "https://raw.githubusercontent.com/"
_NORDLAND_BOX = ("https://adelaideuniversity.app.box.com/index.php?rm=box_download_shared_file"
                 "&shared_name=zkfk1akpbo5318fzqmtvlpp7030ex4up&file_id=")
_SUNDERHAUF = ("N. Sünderhauf, P. Neubert, P. Protzel, \"Are We There Yet? Challenging SeqSLAM on a 3000 km "
               "Journey Across All Four Seasons\", ICRA 2013 Workshop on Long-Term Autonomy")
_TORII = "A. Torii, R. Arandjelović, J. Sivic, M. Okutomi, T. Pajdla"

CATALOG: dict[str, Dataset] = {d.name: d for d in (
    Dataset(
        "nordland-64x32", "nordland_seqslam_64x32", "Nordland summer/winter, 64x32 thumbnails (3576 frames each)",
        Access.DIRECT, "footage by NRK, Creative Commons Attribution (attribute NRK); see data/*/SOURCE.md",
        _SUNDERHAUF, "https://github.com/TimQuelch/seqslam",
        base_url=_GITHUB_RAW + "TimQuelch/seqslam/38311ace3bec3f4acec10c684fd81e28d02143fd/",
        source_prefix="datasets/nordland_trimmed/", manifest="nordland-64x32", approx_size_mb=17.3),
    Dataset(
        "gardenspoint-sample10", "gardenspoint_sample10_vpr_tutorial", "Gardens Point Walking, 10 day/night pairs",
        Access.DIRECT, "Gardens Point Walking (A. Glover, Zenodo doi:10.5281/zenodo.4590133), reported CC BY",
        "A. Glover, \"Day and Night, Left and Right\", Zenodo, 2014", "https://github.com/MubarizZaffar/VPR_Tutorial",
        base_url=_GITHUB_RAW + "MubarizZaffar/VPR_Tutorial/e8bfa0deee97f0fcdae96a7ead128ba9a51a4f9c/",
        source_prefix="sample_dataset/", manifest="gardenspoint-sample10", approx_size_mb=1.6),
    Dataset(
        "vprbench-corridor", "vprbench_corridor", "Corridor (Milford), VPR-Bench copy: 111 query + 111 ref",
        Access.DIRECT, "VPR-Bench repository MIT (c) 2021 Mubariz Zaffar; dataset by M. Milford",
        "M. Milford, \"Vision-based place recognition: how low can you go?\", IJRR 32(7), 2013",
        "https://github.com/MubarizZaffar/VPR-Bench",
        base_url=_GITHUB_RAW + "MubarizZaffar/VPR-Bench/77ad30f3684476717188c67d7f3f66be19f832af/",
        source_prefix="datasets/corridor/", manifest="vprbench-corridor", approx_size_mb=2.0),
    Dataset(
        "nordland", "nordland", "Nordland full resolution, Patch-NetVLAD test split (summer map, winter queries)",
        Access.UNVERIFIED, "footage by NRK, Creative Commons Attribution", _SUNDERHAUF,
        "https://github.com/QVPR/Patch-NetVLAD",
        files=(RemoteFile(_NORDLAND_BOX + "f_1424421870101", "raw/summer.tar.gz"),
               RemoteFile(_NORDLAND_BOX + "f_1521702837314", "raw/winter.tar.gz"),
               RemoteFile(_NORDLAND_BOX + "f_1424408901067", "raw/cleanImageNames.txt")),
        instructions="no checksum is published: pass --allow-unverified, then pin the printed sha256 values",
        approx_size_mb=None),
    Dataset(
        "pittsburgh250k", "pittsburgh250k", "Pittsburgh 250k (Google Street View)", Access.ON_REQUEST,
        "research use, from the authors", f"{_TORII}, \"Visual Place Recognition with Repetitive Structures\", "
        "TPAMI 2015", "https://www.di.ens.fr/willow/research/netvlad/",
        instructions="ask the authors for access (see the homepage); unpack so that the folder holds the "
                     "images and the .mat split files"),
    Dataset(
        "tokyo247", "tokyo247", "Tokyo 24/7 (day, sunset, night queries)", Access.ON_REQUEST,
        "research use, from the authors", f"{_TORII}, \"24/7 Place Recognition by View Synthesis\", TPAMI 2018",
        "https://www.di.ens.fr/willow/research/netvlad/",
        instructions="ask the authors for the database (see the homepage); put database/ and query/ in the folder"),
    Dataset(
        "msls", "msls", "Mapillary Street-Level Sequences", Access.REGISTRATION,
        "CC BY-NC-SA 4.0 (Mapillary)", "F. Warburg et al., \"Mapillary Street-Level Sequences: A Dataset for "
        "Lifelong Place Recognition\", CVPR 2020", "https://www.mapillary.com/dataset/places",
        instructions="log in on the homepage, download the zip files and unpack them into the folder"),
    Dataset(
        "gsv-cities", "gsv-cities", "GSV-Cities (training set of the FoL authors' backbone recipe)",
        Access.REGISTRATION, "see the Kaggle page", "A. Ali-bey, B. Chaib-draa, P. Giguère, \"GSV-Cities: "
        "Toward Appropriate Supervised Visual Place Recognition\", Neurocomputing 2022",
        "https://github.com/amaralibey/gsv-cities",
        instructions="download from Kaggle (link on the homepage, needs an account) and unpack into the folder"),
)}


def dataset(name: str) -> Dataset:
    """The catalog entry ``name``; ConfigError listing the names otherwise."""
    try:
        return CATALOG[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(CATALOG)}") from None
