#!/usr/bin/env python3
# ruff: noqa: RUF059, E501
"""Reproduce the cases of issue 12 against a source tree and print a markdown table (one row per case).

    python -m fol_vpr_ros.testing.fault_cases --tree /path/to/checkout --data ../shared/data --work /tmp/cases [--only a,b]

Every case builds real files (maps, checkpoints, images, FIFOs, a 1 MB tmpfs when mount works) and runs
`python -m fol_vpr_ros.cli` (or a small NodeCore script) in a subprocess with PYTHONPATH=tree. It
reports the exit code and the last line of stderr (or what the case measures).

Long module: one catalogue of independent reproduction cases (one ``Cases`` method each) and its driver,
kept together as the issue's table is.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

MODEL = ["--weights", "random:0", "--arch", "vits14", "--resize", "224", "224"]
PY = sys.executable


def run(tree: Path, args: list[str], cwd: Path, timeout: float = 600, env: dict | None = None,
        python: list[str] | None = None) -> tuple[int, str, str]:
    e = {**os.environ, "PYTHONPATH": str(tree), **(env or {})}
    cmd = (python or [PY]) + args
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=e)
    return p.returncode, p.stdout, p.stderr


def cli(tree: Path, work: Path, *args: str, **kw) -> tuple[int, str, str]:
    return run(tree, ["-m", "fol_vpr_ros.cli", *args], work, **kw)


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and "it/s]" not in ln and "img/s" not in ln]
    line = lines[-1] if lines else ""
    return line.replace("|", "/")[:150]


def outcome(rc: int, out: str, err: str) -> str:
    return f"exit {rc}: {last_line(err) or last_line(out)}"


def r_at_1(out: str) -> str:
    rows = [ln.split() for ln in out.splitlines() if ln.startswith(("rerank", "global"))]
    rows = [r for r in rows if len(r) > 1 and r[1].replace(".", "", 1).isdigit()]
    return "R@1 " + ", ".join(f"{r[0]} {r[1]}" for r in rows)


def _default_sigint() -> None:
    """Children of a background job inherit an ignored SIGINT; give them the default (KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kill_during_save_child(sleep_s: float) -> str:
    """Python source of a child that saves the map in argv[1], prints WRITING and stalls mid-save (to be killed)."""
    return textwrap.dedent(f"""
        import sys, time
        from fol_vpr_ros.mapping import VprMap, store
        m = VprMap.open(sys.argv[1])
        m._dirty = True
        real = store._write_npy
        def slow(*a, **k):
            out = real(*a, **k)
            print("WRITING", flush=True)
            time.sleep({sleep_s!r})
            return out
        store._write_npy = slow
        m.save()
    """)


class Cases:
    def __init__(self, tree: Path, data: Path, work: Path) -> None:
        self.tree, self.data, self.work = tree, data, work
        work.mkdir(parents=True, exist_ok=True)
        self.ref = data / "gardenspoint_sample10_vpr_tutorial" / "ref"
        self.images = work / "images"
        if not self.images.exists():
            shutil.copytree(self.ref, self.images)
        self.queries = work / "queries"
        if not self.queries.exists():
            shutil.copytree(self.ref, self.queries)
        self.gt = work / "gt.csv"
        self.gt.write_text("query,positives\n" + "".join(f"{i}.jpg,{i}.jpg\n" for i in range(10)))
        self.base = work / "base_map"
        if not self.base.exists():
            rc, out, err = cli(tree, work, "build-map", *MODEL, "--images", str(self.images), "--out",
                               str(self.base), "-q")
            assert rc == 0, err

    def fresh_map(self, name: str) -> Path:
        p = self.work / name
        shutil.rmtree(p, ignore_errors=True)
        shutil.copytree(self.base, p)
        return p

    def evaluate(self, m: Path, *extra: str, queries: Path | None = None) -> tuple[int, str, str]:
        out = self.work / "eval_out"
        shutil.rmtree(out, ignore_errors=True)
        return cli(self.tree, self.work, "evaluate", *MODEL, "--map", str(m), "--queries",
                   str(queries or self.queries), "--ground-truth", str(self.gt), "--out", str(out), "-q",
                   "--recall-values", "1", "5", *extra)

    def eval_case(self, m: Path, *extra: str) -> str:
        rc, out, err = self.evaluate(m, *extra)
        return f"exit {rc}: {r_at_1(out)}" if rc == 0 else outcome(rc, out, err)

    # ---------------------------------------------------------------- corrupted maps
    def case_clean_map(self) -> str:
        return self.eval_case(self.base)

    def _npy_body(self, path: Path) -> tuple[int, np.ndarray]:
        a = np.load(path)
        return path.stat().st_size - a.nbytes, a

    def _rewrite(self, path: Path, a: np.ndarray) -> None:
        off, _ = self._npy_body(path)
        with open(path, "r+b") as f:
            f.seek(off)
            f.write(np.ascontiguousarray(a).tobytes())

    def case_random_local(self) -> str:
        m = self.fresh_map("m_random_local")
        _, a = self._npy_body(m / "local.npy")
        rng = np.random.default_rng(0)
        r = rng.standard_normal(a.shape).astype(a.dtype)
        self._rewrite(m / "local.npy", r / np.linalg.norm(r, axis=1, keepdims=True).astype(a.dtype))
        return self.eval_case(m)

    def case_reversed_global(self) -> str:
        m = self.fresh_map("m_rev_global")
        _, a = self._npy_body(m / "global.npy")
        self._rewrite(m / "global.npy", a[::-1])
        return self.eval_case(m)

    def case_zeroed_local(self) -> str:
        m = self.fresh_map("m_zero_local")
        _, a = self._npy_body(m / "local.npy")
        self._rewrite(m / "local.npy", np.zeros_like(a))
        return self.eval_case(m)

    def case_garbage_rc(self) -> str:
        m = self.fresh_map("m_garbage_rc")
        _, a = self._npy_body(m / "local_rc.npy")
        self._rewrite(m / "local_rc.npy", np.random.default_rng(1).integers(-30000, 30000, a.shape).astype(a.dtype))
        return self.eval_case(m)

    def case_shifted_offsets(self) -> str:
        m = self.fresh_map("m_shift_off")
        _, a = self._npy_body(m / "local_offsets.npy")
        b = a.copy()
        b[1:-1] = np.maximum(b[1:-1] - 7, 0)
        self._rewrite(m / "local_offsets.npy", b)
        return self.eval_case(m)

    def case_nan_local(self) -> str:
        m = self.fresh_map("m_nan_local")
        _, a = self._npy_body(m / "local.npy")
        b = a.copy()
        b[len(b) // 2, 3] = np.nan
        self._rewrite(m / "local.npy", b)
        return self.eval_case(m)

    def case_truncated_local(self) -> str:
        m = self.fresh_map("m_trunc_local")
        with open(m / "local.npy", "r+b") as f:
            f.truncate((m / "local.npy").stat().st_size - 1000)
        return self.eval_case(m)

    def case_nan_global_fewer_than_k(self) -> str:
        m = self.fresh_map("m_nan_global")
        _, a = self._npy_body(m / "global.npy")
        b = a.copy()
        b[4] = np.nan
        self._rewrite(m / "global.npy", b)
        return self.eval_case(m, "--top-k", "10")

    def case_nan_global_fewer_than_k_verify_off(self) -> str:
        m = self.fresh_map("m_nan_global_off")
        _, a = self._npy_body(m / "global.npy")
        b = a.copy()
        b[4] = np.nan
        self._rewrite(m / "global.npy", b)
        return self.eval_case(m, "--top-k", "10", "--verify", "off")

    # ---------------------------------------------------------------- checkpoints
    def _describe(self, weights: str, *extra: str) -> tuple[int, str, str]:
        return cli(self.tree, self.work, "describe", "--weights", weights, "--arch", "auto", "--resize", "224",
                   "224", str(self.ref / "0.jpg"), "--out", str(self.work / "d.npz"), "-q", *extra)

    def _checkpoint(self, name: str, mutate) -> Path:
        code = textwrap.dedent(f"""
            import torch, sys
            from fol_vpr_ros.model import FoLConfig, arch_config, synthetic_model
            from fol_vpr_ros.model.checkpoint import save_checkpoint
            m = synthetic_model(FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(224, 224)), 0)
            sd = m.state_dict()
            {mutate}
            m.load_state_dict(sd) if False else None
            torch.save({{"model_state_dict": {{"module." + k: v for k, v in sd.items()}}}}, sys.argv[1])
        """)
        p = self.work / name
        rc, out, err = run(self.tree, ["-c", code, str(p)], self.work)
        assert rc == 0, err
        return p

    def case_text_pth(self) -> str:
        p = self.work / "notes.pth"
        p.write_text("these are not weights\n")
        return outcome(*self._describe(str(p)))

    def case_nan_checkpoint(self) -> str:
        p = self._checkpoint("nan.pth", 'sd["aggregator.proj.weight" if "aggregator.proj.weight" in sd else '
                                        'list(sd)[-2]][0, 0] = float("nan")')
        rc, out, err = self._describe(str(p))
        if rc == 0:
            z = np.load(self.work / "d.npz")
            return f"exit 0: global has NaN: {bool(np.isnan(z['global']).any())}"
        return outcome(rc, out, err)

    def case_int32_checkpoint(self) -> str:
        p = self._checkpoint("int32.pth", "sd = {k: v.to(torch.int32) for k, v in sd.items()}")
        rc, out, err = self._describe(str(p))
        if rc == 0:
            z = np.load(self.work / "d.npz")
            return f"exit 0: global norm {float(np.linalg.norm(z['global'][0])):.3g}"
        return outcome(rc, out, err)

    def case_checkpoint_mode(self) -> str:
        p = self._checkpoint("mode.pth", "pass")
        code = textwrap.dedent("""
            import os, sys
            from fol_vpr_ros.model import FoLConfig, arch_config, synthetic_model
            from fol_vpr_ros.model.checkpoint import save_checkpoint
            os.umask(0o022)
            m = synthetic_model(FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(224, 224)), 0)
            save_checkpoint(m, sys.argv[1])
            print(oct(os.stat(sys.argv[1]).st_mode & 0o777))
        """)
        rc, out, err = run(self.tree, ["-c", code, str(p)], self.work)
        return f"umask 022 -> {out.strip()}" if rc == 0 else outcome(rc, out, err)

    # ---------------------------------------------------------------- output paths
    def case_describe_out_dir(self) -> str:
        d = self.work / "outdir"
        d.mkdir(exist_ok=True)
        return outcome(*cli(self.tree, self.work, "describe", *MODEL, str(self.ref / "0.jpg"), "--out", str(d), "-q"))

    def case_build_map_out_under_file(self) -> str:
        f = self.work / "afile"
        f.write_text("x")
        t0 = time.perf_counter()
        res = cli(self.tree, self.work, "build-map", *MODEL, "--images", str(self.images), "--out", str(f / "sub"), "-q")
        return outcome(*res) + f" ({time.perf_counter() - t0:.1f} s)"

    def case_build_map_out_not_a_map(self) -> str:
        d = self.work / "notamap"
        d.mkdir(exist_ok=True)
        (d / "precious.txt").write_text("keep me")
        t0 = time.perf_counter()
        res = cli(self.tree, self.work, "build-map", *MODEL, "--images", str(self.images), "--out", str(d), "-q")
        return outcome(*res) + f" (after {time.perf_counter() - t0:.1f} s)"

    # ---------------------------------------------------------------- images
    def case_bomb_png(self) -> str:
        folder = self.work / "bomb_images"
        if not folder.exists():
            shutil.copytree(self.ref, folder)
            from PIL import Image

            Image.MAX_IMAGE_PIXELS = None
            Image.new("L", (14000, 13000)).save(folder / "huge.png")
        out = self.work / "bomb_map"
        shutil.rmtree(out, ignore_errors=True)
        rc, o, e = cli(self.tree, self.work, "build-map", *MODEL, "--images", str(folder), "--out", str(out), "-q")
        skipped = [ln.strip() for ln in o.splitlines() if "skipped" in ln]
        return f"exit {rc}: {(skipped[-1] if skipped else last_line(e or o))[:150]}"

    def case_big_jpeg_rss(self) -> str:
        img = self.work / "big" / "big.jpg"
        if not img.exists():
            img.parent.mkdir(exist_ok=True)
            from PIL import Image

            rng = np.random.default_rng(0)
            small = (rng.random((600, 800, 3)) * 255).astype(np.uint8)
            Image.fromarray(small).resize((8000, 6000)).save(img, quality=90)
        rc, out, err = run(self.tree, ["-f", "%M", PY, "-m", "fol_vpr_ros.cli", "describe", *MODEL, str(img),
                                       "--out", str(self.work / "big.npz"), "-q"], self.work,
                           python=["/usr/bin/time"])
        rss = err.strip().splitlines()[-1]
        small_rc, _, small_err = run(self.tree, ["-f", "%M", PY, "-m", "fol_vpr_ros.cli", "describe", *MODEL,
                                                 str(self.ref / "0.jpg"), "--out", str(self.work / "s.npz"), "-q"],
                                     self.work, python=["/usr/bin/time"])
        base = small_err.strip().splitlines()[-1]
        return f"exit {rc}: peak RSS {int(rss) / 1024:.0f} MB (same command on a 960x540 image: {int(base) / 1024:.0f} MB)"

    def case_fifo_and_dangling(self) -> str:
        folder = self.work / "fifo_images"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(self.ref, folder)
        os.mkfifo(folder / "pipe.jpg")
        os.symlink(folder / "gone.jpg", folder / "dangling.jpg")
        out = self.work / "fifo_map"
        shutil.rmtree(out, ignore_errors=True)
        rc, o, e = cli(self.tree, self.work, "build-map", *MODEL, "--images", str(folder), "--out", str(out), "-q",
                       timeout=300)
        first = [ln for ln in o.splitlines() if ln.startswith("map ")]
        skipped = [ln.strip() for ln in o.splitlines() if ln.strip().startswith("skipped")]
        return f"exit {rc}: {first[0].split(',', 1)[1].strip() if first else last_line(e)}; listed: {len(skipped)}"

    def case_bad_query_image(self) -> str:
        q = self.work / "bad_queries"
        shutil.rmtree(q, ignore_errors=True)
        shutil.copytree(self.ref, q)
        (q / "3.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
        rc, out, err = self.evaluate(self.base, queries=q)
        if rc == 0:
            sk = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("skipped")]
            return f"exit 0: {r_at_1(out)}; listed: {len(sk)}"
        return outcome(rc, out, err)

    def case_recall_beyond_map(self) -> str:
        rc, out, err = self.evaluate(self.base, "--recall-values", "1", "500")
        if rc == 0:
            head = [ln for ln in out.splitlines() if "R@" in ln]
            return f"exit 0: columns {' '.join(head[0].split()) if head else '?'}"
        return outcome(rc, out, err)

    def case_eval_bag_input_size(self) -> str:
        code = textwrap.dedent("""
            from fol_vpr_ros.jobs.evaluate_bag import eval_params
            p = eval_params("localize", "random:0", overrides={"input_size": [224, 224]}, input_size=(322, 322))
            print("input_size used:", list(p.input_size))
        """)
        return outcome(*run(self.tree, ["-c", code], self.work))

    def case_binary_params(self) -> str:
        p = self.work / "params.yaml"
        p.write_bytes(bytes(range(256)) * 4)
        code = f"from fol_vpr_ros.node import load_params; load_params({str(p)!r})"
        rc, out, err = run(self.tree, ["-c", code], self.work)
        return outcome(rc, out, err)

    # ---------------------------------------------------------------- disk full and leftovers
    def _tmpfs(self, name: str, size: str = "1m") -> Path | None:
        d = self.work / name
        subprocess.run(["umount", str(d)], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True)
        return d if r.returncode == 0 else None

    def case_enospc_build_map(self) -> str:
        d = self._tmpfs("full_bm", "256k")
        if d is None:
            return "mount not permitted"
        try:
            return outcome(*cli(self.tree, self.work, "build-map", *MODEL, "--images", str(self.images), "--out",
                                str(d / "map"), "-q")) + f"; left in tmpfs: {sorted(p.name for p in d.iterdir())}"
        finally:
            subprocess.run(["umount", str(d)], capture_output=True)

    def case_enospc_report(self) -> str:
        d = self._tmpfs("full_rep", "64k")
        if d is None:
            return "mount not permitted"
        try:
            return outcome(*cli(self.tree, self.work, "evaluate", *MODEL, "--map", str(self.base), "--queries",
                                str(self.queries), "--ground-truth", str(self.gt), "--out", str(d / "rep"), "-q"))
        finally:
            subprocess.run(["umount", str(d)], capture_output=True)

    def case_kill9_leftovers(self) -> str:
        parent = self.work / "kill9"
        shutil.rmtree(parent, ignore_errors=True)
        parent.mkdir()
        target = parent / "map"
        shutil.copytree(self.base, target)
        code = kill_during_save_child(5.0)
        for _ in range(3):
            p = subprocess.Popen([PY, "-c", code, str(target)], stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYTHONPATH": str(self.tree)})
            assert p.stdout is not None
            p.stdout.readline()
            p.send_signal(signal.SIGKILL)
            p.wait()
        before = len(list(parent.glob(".map.tmp-*")))
        code2 = "import sys; from fol_vpr_ros.mapping import VprMap; m = VprMap.open(sys.argv[1]); m._dirty = True; m.save()"
        rc, out, err = run(self.tree, ["-c", code2, str(target)], self.work)
        after = len(list(parent.glob(".map.tmp-*")))
        code3 = "import sys; from fol_vpr_ros.mapping import VprMap; print(len(VprMap.open(sys.argv[1])))"
        rc3, out3, _ = run(self.tree, ["-c", code3, str(target)], self.work)
        return f"3 kills: {before} temp dirs; after the next save: {after}; map opens with {out3.strip()} keyframes"

    def case_map_mode(self) -> str:
        out = self.work / "mode_map"
        shutil.rmtree(out, ignore_errors=True)
        code = textwrap.dedent("""
            import os, sys, shutil
            os.umask(0o022)
            from fol_vpr_ros.mapping import VprMap
            m = VprMap.open(sys.argv[1]); m._dirty = True; m.save(sys.argv[2])
            print(oct(os.stat(sys.argv[2]).st_mode & 0o777), oct(os.stat(sys.argv[2] + "/global.npy").st_mode & 0o777))
        """)
        rc, o, e = run(self.tree, ["-c", code, str(self.base), str(out)], self.work)
        return f"umask 022 -> dir {o.split()[0]}, files {o.split()[1]}" if rc == 0 else outcome(rc, o, e)

    # ---------------------------------------------------------------- the node's online map
    NODE = textwrap.dedent("""
        import json, os, signal, sys, time
        import numpy as np
        from fol_vpr_ros.pipeline.describe import Describer
        from fol_vpr_ros.mapping import VprMap, store
        from fol_vpr_ros.model import FoLConfig, LoadedModel, arch_config, synthetic_model
        from fol_vpr_ros.node import ImagePayload, NodeCore, load_params, param_specs
        cfg = json.loads(sys.argv[1])
        names = {s.name for s in param_specs()}
        over = {"mode": "loop_closure", "input_size": [224, 224], "top_k": 3, "rerank_k": 2,
                "keyframe.min_interval_sec": 0.0, "odometry.topic": "", **cfg.get("params", {})}
        over = {k: v for k, v in over.items() if k in names}
        model = synthetic_model(FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(224, 224)), 0).eval()
        describer = Describer(LoadedModel(model, "random:0", "synthetic:0:vits14:1", True), batch_size=1)
        try:
            core = NodeCore(load_params(None, overrides=over), describer)
        except Exception as exc:
            print(f"START ERROR {type(exc).__name__}: {exc}", flush=True)
            sys.exit(2)
        print(f"STARTED with {len(core.map)} keyframes", flush=True)
        rng = np.random.default_rng(0)
        def frame(i):
            img = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
            return ImagePayload(i * 10**9, "cam", "rgb8", 96, 128, 384, False, img.tobytes())
        slow = cfg.get("slow_save", 0)
        if slow:
            real = store._write_npy
            def slowed(*a, **k):
                print("SAVING", flush=True)
                time.sleep(slow)
                return real(*a, **k)
            store._write_npy = slowed
        stream = cfg.get("stream", False)
        try:
            for i in range(cfg.get("frames", 10)):
                core.process_now(frame(i))
                if stream:
                    print(f"FRAME {i}", flush=True)
                    time.sleep(0.1)
            print("READY", flush=True)
            while True:
                time.sleep(0.05)
        except KeyboardInterrupt:
            pass
        rep = core.shutdown()
        print("REPORT", getattr(rep, "message", rep), flush=True)
        sys.exit(getattr(rep, "exit_code", 0))
    """)

    def _node(self, cfg: dict, signals: list[tuple[str, int]] | None = None, wait_for: str = "READY",
              kill_after: float | None = None) -> tuple[int, str]:
        errf = open(self.work / "node_stderr.txt", "w+")  # noqa: SIM115 - a file, not a pipe: never blocks the child
        p = subprocess.Popen([PY, "-c", self.NODE, json.dumps(cfg)], stdout=subprocess.PIPE, stderr=errf,
                             text=True, env={**os.environ, "PYTHONPATH": str(self.tree)}, cwd=self.work,
                             preexec_fn=_default_sigint)
        assert p.stdout is not None
        lines = []
        t0 = time.time()
        while True:
            line = p.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
            if line.startswith("START ERROR"):
                break
            if kill_after is not None and line.startswith("FRAME") and time.time() - t0 > kill_after:
                p.send_signal(signal.SIGKILL)
                break
            if line.startswith(wait_for) and signals:
                for _, delay in [signals[0]]:
                    time.sleep(delay)
                p.send_signal(getattr(signal, signals[0][0]))
                for name, delay in signals[1:]:
                    while not (line := p.stdout.readline()).startswith("SAVING"):
                        lines.append(line.strip())
                        if not line:
                            break
                    time.sleep(delay)
                    p.send_signal(getattr(signal, name))
                break
        out, _ = p.communicate(timeout=300)
        errf.seek(0)
        err = errf.read()
        errf.close()
        lines += out.splitlines()
        report = next((ln for ln in lines if ln.startswith(("REPORT", "START ERROR"))), "")
        tail = last_line(err) if p.returncode not in (0, -9) else ""
        return p.returncode, (report or tail)[:160] + (f" / {tail}" if tail and report else "")

    def _keyframes_on_disk(self, path: Path) -> str:
        code = "import sys; from fol_vpr_ros.mapping import VprMap; print(len(VprMap.open(sys.argv[1])))"
        rc, out, err = run(self.tree, ["-c", code, str(path)], self.work)
        return out.strip() if rc == 0 else "none (" + last_line(err)[:60] + ")"

    def _signal_case(self, name: str, sigs: list[tuple[str, int]]) -> str:
        out = self.work / name
        shutil.rmtree(out, ignore_errors=True)
        rc, rep = self._node({"params": {"loop_closure.output_map_path": str(out)}, "slow_save": 0.3}, sigs)
        return f"exit {rc}; keyframes on disk: {self._keyframes_on_disk(out)} of 10"

    def case_double_sigint(self) -> str:
        return self._signal_case("n_double_int", [("SIGINT", 0), ("SIGINT", 0)])

    def case_sigint_sigterm(self) -> str:
        return self._signal_case("n_int_term", [("SIGINT", 0), ("SIGTERM", 0)])

    def case_node_full_disk(self) -> str:
        d = self._tmpfs("n_full", "256k")
        if d is None:
            return "mount not permitted"
        try:
            rc, rep = self._node({"params": {"loop_closure.output_map_path": str(d / "map")}, "frames": 20},
                                 [("SIGINT", 0)])
            return f"exit {rc}: {rep}"
        finally:
            subprocess.run(["umount", str(d)], capture_output=True)

    def case_map_path_not_a_map(self) -> str:
        d = self.work / "n_notmap"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        (d / "global.npy").write_bytes(b"leftover")
        rc, rep = self._node({"params": {"map_path": str(d)}}, [("SIGINT", 0)])
        return f"exit {rc}: {rep}"

    def case_only_backup_left(self) -> str:
        parent = self.work / "n_backup"
        shutil.rmtree(parent, ignore_errors=True)
        parent.mkdir()
        shutil.copytree(self.base, parent / ".map.old-1234abcd")
        rc, rep = self._node({"params": {"map_path": str(parent / "map")}}, [("SIGINT", 0)])
        return f"exit {rc}: {rep}"

    def case_kill9_between_periodic_saves(self) -> str:
        out = self.work / "n_periodic"
        shutil.rmtree(out, ignore_errors=True)
        rc, rep = self._node({"params": {"loop_closure.output_map_path": str(out), "loop_closure.save_period_sec": 1.0},
                              "frames": 60, "stream": True}, kill_after=4.0)
        return f"killed after ~4 s of 10 frames/s: keyframes on disk: {self._keyframes_on_disk(out)}"

    def case_map_check(self) -> str:
        m = self.fresh_map("m_check")
        _, a = self._npy_body(m / "local_rc.npy")
        b = a.copy()
        b[0, 0] += 1
        self._rewrite(m / "local_rc.npy", b)
        good = outcome(*cli(self.tree, self.work, "map", "check", str(self.base)))
        bad = outcome(*cli(self.tree, self.work, "map", "check", str(m)))
        return f"good map: {good[:70]}...; 1 changed rc value: {bad}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", required=True)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--work", required=True)
    ap.add_argument("--only", default="")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    a = ap.parse_args()
    c = Cases(Path(a.tree).resolve(), Path(a.data).resolve(), Path(a.work).resolve())
    names = [n[5:] for n in dir(c) if n.startswith("case_")]
    order = [n[5:] for n in Cases.__dict__ if n.startswith("case_")]
    names = [n for n in order if n in names and (not a.only or n in a.only.split(","))]
    rows = {}
    for n in names:
        t0 = time.perf_counter()
        try:
            rows[n] = getattr(c, "case_" + n)()
        except Exception as exc:  # a case that cannot run says so
            rows[n] = f"case failed to run: {type(exc).__name__}: {exc}"[:200]
        print(f"| {n} | {rows[n]} |  ({time.perf_counter() - t0:.0f} s)", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
