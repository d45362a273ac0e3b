"""On-device smoke check of one release: files intact, every model loads and infers one window,
the sensor backend answers.

Run on the device as ``<release>/venv/bin/python -m ppg_edge.boards.deploy.smoke <release> --json``;
prints one JSON object and exits 0 when every check passed, 1 otherwise.
Needs numpy and an interpreter package (ai-edge-litert, else tflite-runtime), through the
runtime's one interpreter wrapper (:class:`ppg_edge.edge_runtime.interpreter.TFLiteModel`);
never TensorFlow or scipy.

**The runtime's sensor check.** ``ppg_edge.edge_runtime.smoke.smoke_check(release_dir,
board) -> {"ok": bool, "detail": str, ...}`` is called as the sensor check: it opens the
board's sensor backend, reads one window's worth of samples and streams them through the
pipeline with the release's peak model. Where that module is absent (an older runtime),
the check is reported as ``"skipped"`` with the reason, never as passed.

Fused LSTM ops keep state between ``invoke()`` calls, so the wrapper calls
``reset_all_variables()`` before the window.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ppg_edge.manifest import sha256_file

log = logging.getLogger(__name__)

HOOK_MODULE = "ppg_edge.edge_runtime.smoke"


def smoke_input(shape: Sequence[int], dtype) -> Any:
    """A deterministic window for a model input: the same bytes on every machine."""
    import numpy as np

    n = int(np.prod(shape)) if len(shape) else 1
    base = (np.arange(n, dtype=np.int64) * 37) % 251   # 0..250, no RNG: host and device agree
    dt = np.dtype(dtype)
    if dt == np.int8:
        x = (base - 125).astype(np.int8)
    elif dt == np.uint8:
        x = base.astype(np.uint8)
    elif dt == np.int16:
        x = ((base - 125) * 200).astype(np.int16)
    elif dt.kind == "f":
        x = (base.astype(np.float64) / 125.0 - 1.0).astype(dt)
    else:
        raise TypeError(f"no smoke input for dtype {dt}")
    return x.reshape(tuple(shape))


def run_model(path: Path) -> dict:
    """Load one .tflite, infer :func:`smoke_input` once (a .trees model: one row of missing features);
    outputs with their raw-byte sha256."""
    import numpy as np

    from ppg_edge.edge_runtime.interpreter import TFLiteModel

    if Path(path).suffix == ".trees":  # a numpy tree BP model: one all-missing feature row through it
        from ppg_edge.edge_runtime.trees import TreeEnsemble

        t = TreeEnsemble.load(path)
        y = t.predict_one(np.full(t.n_features, np.nan))
        return {"backend": "numpy-trees", "outputs": [{
            "name": "bp", "dtype": str(y.dtype), "shape": list(y.shape),
            "sha256": hashlib.sha256(np.ascontiguousarray(y).tobytes()).hexdigest(),
            "values": y.tolist(), "finite": bool(np.all(np.isfinite(y)))}]}
    m = TFLiteModel(path)  # reset_all_variables() runs before the window
    ys = m.invoke_raw([smoke_input(d["shape"], d["dtype"]) for d in m.interpreter.get_input_details()])
    outputs = []
    for det, y in zip(m.interpreter.get_output_details(), ys):
        finite = bool(np.all(np.isfinite(y))) if y.dtype.kind == "f" else True
        outputs.append({"name": det["name"], "dtype": str(y.dtype), "shape": list(y.shape),
                        "sha256": hashlib.sha256(np.ascontiguousarray(y).tobytes()).hexdigest(),
                        "values": y.reshape(-1)[:64].tolist(), "finite": finite})
    return {"backend": m.backend, "outputs": outputs}


def check_release(release_dir: Path, *, hook: bool = True) -> dict:
    """Every check on one release folder; ``result["ok"]`` is True only when none failed."""
    release_dir = Path(release_dir)
    checks: list[dict] = []
    models: list[dict] = []

    def add(name: str, status: str, detail: str) -> None:
        checks.append({"check": name, "status": status, "detail": detail})

    manifest_path = release_dir / "MANIFEST.json"
    board = None
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        board = manifest.get("board")
        bad = [rel for rel, h in files.items()
               if not (release_dir / rel).is_file() or sha256_file(release_dir / rel) != h]
        add("files", "fail" if bad else "pass",
            f"{len(bad)} of {len(files)} files missing or changed: {', '.join(bad[:5])}" if bad
            else f"{len(files)} files match MANIFEST.json")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        add("files", "fail", f"{manifest_path}: unreadable manifest ({exc})")

    model_paths = sorted(p for x in (".tflite", ".trees") for p in (release_dir / "models").glob(f"*{x}"))
    if not model_paths:
        add("models", "skipped", "no models in this release")
    for path in model_paths:
        entry: dict[str, Any] = {"model": path.name}
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
            want = meta.get("sha256") if isinstance(meta, dict) else None
            if want is not None and want != sha256_file(path):
                raise ValueError("sha256 differs from its manifest")
            entry.update(run_model(path))
            if not all(o["finite"] for o in entry["outputs"]):
                raise ValueError("non-finite output")
            add(f"model {path.name}", "pass", f"one window inferred with {entry['backend']}")
        except Exception as exc:  # any failure of one model is a failed check, not a crash
            entry["error"] = f"{type(exc).__name__}: {exc}"
            add(f"model {path.name}", "fail", entry["error"])
        models.append(entry)

    if hook:
        try:
            mod = importlib.import_module(HOOK_MODULE)
        except ModuleNotFoundError as exc:
            if exc.name not in (HOOK_MODULE, "ppg_edge.edge_runtime"):
                add("sensor", "fail", f"{HOOK_MODULE} failed to import: {exc}")
            else:
                add("sensor", "skipped", f"no runtime hook yet ({HOOK_MODULE}.smoke_check)")
            mod = None
        except Exception as exc:
            add("sensor", "fail", f"{HOOK_MODULE} failed to import: {type(exc).__name__}: {exc}")
            mod = None
        if mod is not None:
            fn = getattr(mod, "smoke_check", None)
            if fn is None:
                add("sensor", "skipped", f"{HOOK_MODULE} has no smoke_check()")
            else:
                try:
                    res = fn(release_dir, board)
                    ok = bool(res.get("ok")) if isinstance(res, dict) else False
                    add("sensor", "pass" if ok else "fail", str(res.get("detail", res) if isinstance(res, dict) else res))
                except Exception as exc:
                    add("sensor", "fail", f"smoke_check raised {type(exc).__name__}: {exc}")

    ok = not any(c["status"] == "fail" for c in checks)
    return {"ok": ok, "release": release_dir.name, "board": board, "checks": checks, "models": models}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ppg_edge.boards.deploy.smoke",
                                description="smoke-check one installed ppg-edge release")
    p.add_argument("release_dir")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--no-hook", action="store_true", help="skip the runtime's sensor check")
    args = p.parse_args(argv)
    result = check_release(Path(args.release_dir).resolve(), hook=not args.no_hook)
    if args.json:
        print(json.dumps(result))
    else:
        for c in result["checks"]:
            print(f"{c['status']:>7}  {c['check']}: {c['detail']}")
        print("smoke check", "passed" if result["ok"] else "FAILED")
    return 0 if result["ok"] else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
