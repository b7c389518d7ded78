"""FAISS retrieval over unit-norm global descriptors: exact inner product by default, IVF/PQ/HNSW optional.

Labels inside FAISS are row positions (insertion order); ``GlobalIndex`` translates them to map
keyframe ids. Similarities are inner products, i.e. cosine for unit vectors (approximate for ivf-pq).

IVF kinds need training. Until the index holds ``IndexConfig.min_train()`` vectors it searches
exactly with a flat index and warns once; the first search or ``train()`` after enough vectors have
been added trains the quantizer on them (evenly spaced sample) and moves every vector over. It is
never retrained afterwards: build a new index (``VprMap.set_index``) after the map has grown a lot.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ..errors import ConfigError, MapError
from ._util import Grow

__all__ = ["INDEX_KINDS", "GlobalIndex", "IndexConfig", "make_faiss_index", "parse_device", "selection_mask"]

INDEX_KINDS = ("flat", "ivf-flat", "ivf-pq", "hnsw")
_MAX_TRAIN_PER_CENTROID = 256  # faiss k-means subsamples to this many points per centroid anyway


@dataclass(frozen=True)
class IndexConfig:
    """Global retrieval index: ``kind`` in INDEX_KINDS plus the parameters that kind uses."""

    kind: str = "flat"
    nlist: int = 256  # ivf-*: inverted lists (coarse centroids)
    nprobe: int = 16  # ivf-*: lists visited per query
    pq_m: int = 64  # ivf-pq: sub-quantizers (must divide the descriptor dim)
    pq_nbits: int = 8  # ivf-pq: bits per sub-quantizer code
    hnsw_m: int = 32  # hnsw: graph neighbours per node
    ef_construction: int = 200  # hnsw: candidate list size while building
    ef_search: int = 128  # hnsw: candidate list size while searching (at least k is used)
    min_points_per_centroid: int = 39  # ivf-*: vectors per centroid needed before training

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ConfigError(f"unknown index kind {self.kind!r}; valid kinds: {', '.join(INDEX_KINDS)}")
        for f in dataclasses.fields(self):
            if f.name == "kind":
                continue
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"index parameter {f.name} must be a positive integer, got {v!r}")
        if self.nprobe > self.nlist:
            raise ConfigError(f"index nprobe={self.nprobe} is larger than nlist={self.nlist}")
        if self.pq_nbits > 16:
            raise ConfigError(f"index pq_nbits={self.pq_nbits} is too large (at most 16, usually 8)")

    def min_train(self) -> int:
        """Vectors needed before the index can be trained (0: needs no training)."""
        if self.kind == "ivf-flat":
            return self.nlist * self.min_points_per_centroid
        if self.kind == "ivf-pq":
            return max(self.nlist, 2**self.pq_nbits) * self.min_points_per_centroid
        return 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> IndexConfig:
        if not isinstance(obj, Mapping):
            raise ConfigError(f"index configuration must be an object, got {obj!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(obj) - names)
        if unknown:
            raise ConfigError(f"unknown index parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        return cls(**dict(obj))

    @classmethod
    def from_spec(cls, spec: str) -> IndexConfig:
        """Parse 'KIND[:name=value,...]', e.g. 'ivf-pq:nlist=1024,pq_m=64' or 'hnsw:ef_search=256'."""
        kind, _, rest = spec.strip().partition(":")
        params: dict[str, Any] = {"kind": kind.strip()}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            m = re.fullmatch(r"([a-z_]+)\s*=\s*(\d+)", item)
            if not m:
                raise ConfigError(f"bad index parameter {item!r} in {spec!r}; expected name=integer")
            params[m.group(1)] = int(m.group(2))
        return cls.from_json(params)


def make_faiss_index(dim: int, config: IndexConfig) -> faiss.Index:
    """A new, empty, CPU FAISS index with inner-product metric for ``config``."""
    ip = faiss.METRIC_INNER_PRODUCT
    if config.kind == "flat":
        return faiss.IndexFlatIP(dim)
    if config.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, ip)
        index.hnsw.efConstruction = config.ef_construction
        index.hnsw.efSearch = config.ef_search
        return index
    if config.kind == "ivf-flat":
        index = faiss.index_factory(dim, f"IVF{config.nlist},Flat", ip)
    elif config.kind == "ivf-pq":
        if dim % config.pq_m:
            raise ConfigError(f"ivf-pq: pq_m={config.pq_m} must divide the descriptor dim {dim}")
        index = faiss.index_factory(dim, f"IVF{config.nlist},PQ{config.pq_m}x{config.pq_nbits}", ip)
        index.do_polysemous_training = False  # unused here and by far the slowest part of training
    else:
        raise ConfigError(f"unknown index kind {config.kind!r}; valid kinds: {', '.join(INDEX_KINDS)}")
    index.nprobe = config.nprobe
    return index


def parse_device(device: str) -> int | None:
    """'cpu' -> None; 'cuda' / 'cuda:N' -> N, checking that faiss can use that GPU."""
    device = str(device).strip().lower()
    if device == "cpu":
        return None
    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if not m:
        raise ConfigError(f"index device {device!r} is not 'cpu', 'cuda' or 'cuda:N'")
    if not hasattr(faiss, "StandardGpuResources"):
        raise ConfigError(f"index device {device!r}: this faiss build has no GPU support; "
                          "install faiss-gpu or use device='cpu'")
    gpu = int(m.group(1) or 0)
    if gpu >= faiss.get_num_gpus():
        raise ConfigError(f"index device {device!r}: faiss sees {faiss.get_num_gpus()} GPU(s)")
    return gpu


def selection_mask(ids: np.ndarray, candidate_mask: Any = None, max_id: int | None = None,
                   exclude_ids: Iterable[int] | None = None) -> np.ndarray | None:
    """Which rows (``ids`` in row order) a search may return: ``candidate_mask`` (bool per row), ids <=
    ``max_id``, ids not in ``exclude_ids``; None when nothing is restricted."""
    mask = None
    if candidate_mask is not None:
        mask = np.asarray(candidate_mask)
        if mask.dtype != bool or mask.shape != (len(ids),):
            raise ConfigError(f"candidate_mask must be a bool array of shape ({len(ids)},), "
                              f"got {mask.dtype} {mask.shape}")
        mask = mask.copy()
    if max_id is not None:
        keep = ids <= int(max_id)
        mask = keep if mask is None else mask & keep
    if exclude_ids is not None:
        excl = np.fromiter((int(i) for i in exclude_ids), np.int64)
        if len(excl):
            keep = ~np.isin(ids, excl)
            mask = keep if mask is None else mask & keep
    return mask


class GlobalIndex:
    """Nearest-neighbour search over global descriptors, returning map keyframe ids."""

    def __init__(self, dim: int, config: IndexConfig | None = None, device: str = "cpu") -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"descriptor dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self.config = config or IndexConfig()
        self.device = device
        self._gpu = parse_device(device)
        self._res: Any = None
        self._ids = Grow(np.int64)
        self._warned = False
        self._index: faiss.Index | None = None  # the configured index, once built/trained
        self._fallback: faiss.Index | None = None  # exact search while an IVF index awaits training
        if self.config.min_train() == 0:
            self._index = self._place(make_faiss_index(dim, self.config))
        else:
            make_faiss_index(dim, self.config)  # validates pq_m against dim now
            self._fallback = self._place(faiss.IndexFlatIP(dim))

    # -- placement ---------------------------------------------------------------------------------
    def _place(self, index: faiss.Index) -> faiss.Index:
        if self._gpu is None:
            return index
        if self.config.kind == "hnsw":
            warnings.warn("faiss has no GPU HNSW index; the hnsw index stays on the CPU", stacklevel=3)
            return index
        if self._res is None:
            self._res = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(self._res, self._gpu, index)

    def _cpu(self, index: faiss.Index) -> faiss.Index:
        return faiss.index_gpu_to_cpu(index) if self._gpu is not None and self.config.kind != "hnsw" else index

    # -- state -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> np.ndarray:
        """Map keyframe id of each row, in insertion order (read-only view)."""
        v = self._ids.view()
        v.flags.writeable = False
        return v

    @property
    def active_kind(self) -> str:
        """The kind searched now: ``config.kind``, or 'flat' while an IVF index awaits training."""
        return self.config.kind if self._index is not None else "flat"

    def _check_vectors(self, x: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ConfigError(f"{what} must have shape [n, {self.dim}], got {list(np.shape(x))}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise ConfigError(f"{what} contain NaN or infinite values")
        return x

    def add(self, vectors: np.ndarray, ids: np.ndarray | None = None) -> None:
        """Append vectors [n, dim]; ``ids`` default to their row positions."""
        x = self._check_vectors(vectors, "global descriptors")
        if ids is None:
            ids = np.arange(len(self), len(self) + len(x), dtype=np.int64)
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) != len(x):
            raise ConfigError(f"{len(ids)} ids for {len(x)} vectors")
        target = self._index if self._index is not None else self._fallback
        assert target is not None
        target.add(x)
        self._ids.extend(ids)

    def add_from_file(self, path: str | Path, offset: int, n: int, ids: np.ndarray) -> None:
        """Append ``n`` raw float32 rows stored at byte ``offset`` of ``path`` (an ``.npy`` body).

        A CPU flat index reads them straight into its storage (no intermediate copy); other
        kinds add them in chunks.
        """
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) != n:
            raise ConfigError(f"{len(ids)} ids for {n} vectors")
        row_bytes = 4 * self.dim
        target = self._index if self._index is not None else self._fallback
        with open(path, "rb") as f:
            f.seek(offset)
            if self._gpu is None and type(target) is faiss.IndexFlatIP:
                start = target.ntotal * row_bytes
                target.codes.resize(start + n * row_bytes)
                view = memoryview(faiss.rev_swig_ptr(target.codes.data(), start + n * row_bytes))[start:]
                got = 0
                while got < len(view):
                    r = f.readinto(view[got:])
                    if not r:
                        target.codes.resize(start)
                        raise MapError(f"{path}: file ended early; restore the map from a backup or rebuild it")
                    got += r
                target.ntotal += n
                self._ids.extend(ids)
                return
            step = max(1, (32 << 20) // row_bytes)
            buf = np.empty((min(step, max(n, 1)), self.dim), np.float32)
            for i in range(0, n, step):
                chunk = buf[: min(step, n - i)]
                if f.readinto(memoryview(chunk).cast("B")) != chunk.nbytes:
                    raise MapError(f"{path}: file ended early; restore the map from a backup or rebuild it")
                self.add(chunk, ids[i : i + len(chunk)])

    def train(self) -> bool:
        """Train and fill the IVF index if enough vectors are present; True when it is in use."""
        if self._index is not None:
            return True
        n, need = len(self), self.config.min_train()
        if n < need:
            return False
        fallback = self._fallback
        assert fallback is not None
        cpu_flat = self._cpu(fallback)
        centroids = max(self.config.nlist, 2**self.config.pq_nbits if self.config.kind == "ivf-pq" else 0)
        n_train = min(n, centroids * _MAX_TRAIN_PER_CENTROID)
        rows = np.linspace(0, n - 1, n_train).round().astype(np.int64)
        index = make_faiss_index(self.dim, self.config)
        index.train(cpu_flat.reconstruct_batch(rows))
        index = self._place(index)
        step = max(1, (64 << 20) // (4 * self.dim))
        for i in range(0, n, step):
            index.add(cpu_flat.reconstruct_n(i, min(step, n - i)))
        self._index, self._fallback = index, None
        return True

    # -- search ------------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, *, candidate_mask: np.ndarray | None = None,
               allow_fewer: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (ids [Q, k] int64, similarities [Q, k] float32) for queries [Q, dim] (or [dim]).

        ``candidate_mask`` (bool per row, insertion order) restricts the search to True rows.
        ``k`` above the number of candidates raises ConfigError unless ``allow_fewer``, which
        lowers it. Approximate kinds may find fewer than ``k``: those slots hold id -1, sim -inf.
        """
        q = self._check_vectors(queries, "queries")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        n = len(self)
        if n == 0:
            raise MapError("cannot search an empty map: add keyframes first")
        sel = None
        eligible = n
        if candidate_mask is not None:
            mask = np.asarray(candidate_mask)
            if mask.dtype != bool or mask.shape != (n,):
                raise ConfigError(f"candidate_mask must be a bool array of shape ({n},), "
                                  f"got {mask.dtype} {mask.shape}")
            eligible = int(mask.sum())
            if self._gpu is not None and self.active_kind != "hnsw":
                raise ConfigError("candidate filters need a CPU index; open the map with device='cpu'")
            bits = np.packbits(mask, bitorder="little")
            sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
        if k > eligible:
            if not allow_fewer:
                what = "the map" if candidate_mask is None else "the candidates left by the filter"
                raise ConfigError(f"k={k} is larger than {what} ({eligible} keyframes); "
                                  "lower k or pass allow_fewer=True")
            k = eligible
        if k == 0:
            return np.empty((len(q), 0), np.int64), np.empty((len(q), 0), np.float32)
        if not self.train() and not self._warned:
            self._warned = True
            warnings.warn(f"{self.config.kind} index needs {self.config.min_train()} vectors to train, "
                          f"the map has {n}; searching exactly (flat) until then", stacklevel=2)
        index = self._index if self._index is not None else self._fallback
        assert index is not None
        params = self._params(int(k), sel)
        if params is None:
            sims, rows = index.search(q, int(k))
        else:
            sims, rows = index.search(q, int(k), params=params)
        found = rows >= 0
        ids = np.where(found, self._ids.view()[np.where(found, rows, 0)], -1).astype(np.int64)
        sims = np.where(found, sims, -np.inf).astype(np.float32)
        return ids, sims

    def _params(self, k: int, sel: Any) -> Any:
        if self._gpu is not None and self.active_kind != "hnsw":
            return None
        kind = self.active_kind
        if kind in ("ivf-flat", "ivf-pq"):
            params = faiss.SearchParametersIVF()
            params.nprobe = self.config.nprobe
        elif kind == "hnsw":
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(self.config.ef_search, k)
        elif sel is not None:
            params = faiss.SearchParameters()
        else:
            return None
        if sel is not None:
            params.sel = sel
        return params

    # -- persistence -------------------------------------------------------------------------------
    def write(self, path: str | Path) -> None:
        """Write the configured index with ``faiss.write_index`` (not the flat training fallback)."""
        if self._index is None:
            raise ConfigError(f"{self.config.kind} index is not trained yet ({len(self)} vectors); "
                              "nothing to write")
        faiss.write_index(self._cpu(self._index), str(path))

    @classmethod
    def read(cls, path: str | Path, config: IndexConfig, ids: np.ndarray, dim: int,
             device: str = "cpu") -> GlobalIndex:
        """Read an index written by ``write``; checks kind, dim and size against the map."""
        path = Path(path)
        self = cls(dim, config, device)
        try:
            index = faiss.read_index(str(path))  # already the concrete class (and owns its memory)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
            raise MapError(f"{path}: cannot read the FAISS index ({first}); rebuild the map's index "
                           "(VprMap.set_index) or the map") from None
        expected = {"ivf-flat": faiss.IndexIVFFlat, "ivf-pq": faiss.IndexIVFPQ,
                    "hnsw": faiss.IndexHNSWFlat, "flat": faiss.IndexFlatIP}[config.kind]
        problems = []
        if not isinstance(index, expected):
            problems.append(f"index type {type(index).__name__}, manifest says {config.kind}")
        if index.d != dim:
            problems.append(f"dim {index.d}, map has {dim}")
        if index.ntotal != len(ids):
            problems.append(f"{index.ntotal} vectors, map has {len(ids)} keyframes")
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            problems.append("metric is not inner product")
        if problems:
            raise MapError(f"{path}: FAISS index does not match the map ({'; '.join(problems)}); "
                           "rebuild the index (VprMap.set_index) or the map")
        if hasattr(index, "nprobe"):
            index.nprobe = config.nprobe
        if config.kind == "hnsw":
            index.hnsw.efSearch = config.ef_search
        self._index, self._fallback = self._place(index), None
        self._ids.extend(ids)
        return self
