"""The deploy bundle: everything one release needs on the device, with a hash of every file.

Layout (the folder is pushed as is into ``/opt/ppg-edge/releases/<release>/``)::

    MANIFEST.json      release name, board, version, time, sha256 of every other file
    SHA256SUMS         the same hashes in ``sha256sum --check`` format
    wheels/            the project wheel (+ any extra wheels given)
    models/            *.tflite and *.trees (numpy tree BP models), each with its *.json manifest
    board/<id>.toml    the board file
    service.json       what the service runs: board, sensor source, peak and BP model
    systemd/ppg-edge.service   its ExecStart made from service.json

Standard library only.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ppg_edge.edge_runtime import SINGLE_THREAD_ENV
from ppg_edge.errors import ConfigError, ModelError
from ppg_edge.manifest import sha256_file

log = logging.getLogger(__name__)

FORMAT = 1
RELEASE_RE = re.compile(r"^(?P<version>[A-Za-z0-9.+_]+)-(?P<stamp>\d{8}T\d{6}Z)$")


def release_name(version: str, now: float | None = None) -> str:
    """``<version>-<UTC YYYYmmddTHHMMSSZ>``; sortable by its time stamp."""
    safe = re.sub(r"[^A-Za-z0-9.+_]", "_", version)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{safe}-{stamp}"


def release_sort_key(name: str) -> tuple[str, str]:
    m = RELEASE_RE.match(name)
    return (m.group("stamp"), name) if m else ("", name)


# The peak model a release's service runs when the deploy does not name one.
DEFAULT_PEAK_MODEL = "peaks-Type30-int8.tflite"
DEFAULT_BP_MODEL = "bp-ppg-100hz.trees"  # chosen by subject-wise CV (train bp-device); its profile variant beside it
MODEL_SUFFIXES = (".tflite", ".trees")
SERVICE_FILE = "service.json"


def _model_kind(manifest: Path) -> tuple[str | None, str | None]:
    try:
        meta = json.loads(Path(manifest).read_text())
    except (OSError, ValueError):
        return None, None
    return (meta.get("kind"), meta.get("mode")) if isinstance(meta, dict) else (None, None)


def service_config(board_id: str, models: Sequence[tuple[Path, Path]], *, peak_model: str | None = None,
                   bp_model: str | None = None, source: str = "max30102") -> dict:
    """What the release's service runs (``service.json``): the models are named, never guessed
    at run time, so the deploy's smoke check can check exactly them.

    ``peak_model`` / ``bp_model`` name a file of the bundle (with or without ``.tflite``/``.trees``);
    by default the peak model is the board file's ``runtime.peak_model`` (chosen by measured counts
    on its core; ``model_chosen_by`` says why), else :data:`DEFAULT_PEAK_MODEL` when present, else
    the first int8 peak model by name, else any peak model; the BP model is the one made for the board's
    rate (``bp-ppg-<rate>hz.trees``) when present, else the first int8 BP model, else any.
    """
    by_kind: dict[str, list[tuple[bool, str]]] = {}
    names = {}
    for model, manifest in models:
        kind, mode = _model_kind(manifest)
        names[model.name] = kind
        by_kind.setdefault(kind or "", []).append((mode != "int8", model.name))

    def pick(kind: str, wanted: str | None, default: str | None) -> str | None:
        if wanted:
            name = wanted if wanted.endswith(MODEL_SUFFIXES) else next(
                (f"{wanted}{x}" for x in MODEL_SUFFIXES if f"{wanted}{x}" in names), f"{wanted}.tflite")
            if name not in names:
                raise ConfigError(f"{kind} model {wanted!r} is not in the bundle's models "
                                  f"({', '.join(sorted(names)) or 'none'})")
            if names[name] != kind:
                raise ConfigError(f"{name}: its manifest says kind {names[name]!r}, not {kind!r}")
            return name
        if default in names and names[default] == kind:
            return default
        found = sorted(by_kind.get(kind, []))
        return found[0][1] if found else None

    board_model, why = _board_peak_model(board_id)
    peak = pick("peaks", peak_model, board_model or DEFAULT_PEAK_MODEL)
    if peak_model:
        why = "named by the deploy (--peak-model)"
    elif peak != board_model:
        why = ((f"the board's {board_model} is not in the bundle; " if board_model else "")
               + ("the project's default" if peak == DEFAULT_PEAK_MODEL else "the first peak model of the bundle"))
    bp = pick("bp", bp_model, _board_bp_model(board_id))
    return {"format": 1, "board": board_id, "source": source,
            "model": f"models/{peak}" if peak else None, "model_chosen_by": why,
            "bp_model": f"models/{bp}" if bp else None}


def _board_bp_model(board_id: str) -> str:
    """The device BP model made for the board's sample rate (``bp-ppg-<rate>hz.trees``: CV at that
    rate; a 100 Hz model on the Zero 2 W's 50 Hz loses 1.1 mmHg SBP MAE, docs/results/bp-device-cv-via50.md),
    else :data:`DEFAULT_BP_MODEL`."""
    from ppg_edge.boards import load_board
    from ppg_edge.edge_runtime.playback import settings_from_board

    try:
        rate = settings_from_board(load_board(board_id)).output_rate
    except (ConfigError, AttributeError):
        return DEFAULT_BP_MODEL
    return f"bp-ppg-{rate:g}hz.trees"


def _board_peak_model(board_id: str) -> tuple[str | None, str | None]:
    """The board file's ``runtime.peak_model`` and why it was chosen (None, None for a board
    that names none or is not a committed board)."""
    from ppg_edge.boards import load_board

    try:
        rt = load_board(board_id).runtime
    except ConfigError:
        return None, None
    return (rt.peak_model, rt.peak_model_source) if rt is not None and rt.peak_model else (None, None)


def service_argv(service: dict, release_dir: str) -> list[str]:
    """The ``ppg-edge run`` arguments of a service configuration, models under ``release_dir``."""
    argv = ["run", "--board", service["board"], "--source", service.get("source", "max30102")]
    if service.get("model"):
        argv += ["--model", f"{release_dir}/{service['model']}"]
    if service.get("bp_model"):
        # the wearer's profile and cuff calibration live beside the releases: a deploy or a rollback keeps them
        argv += ["--bp-model", f"{release_dir}/{service['bp_model']}",
                 "--state-dir", str(PurePosixPath(release_dir).parent / "state")]
    return argv


def systemd_unit(service: dict, *, root: str = "/opt/ppg-edge", user: str = "pi") -> str:
    """``ppg-edge.service``: the runtime as an unprivileged user in groups i2c and dialout,
    running what ``service`` (:func:`service_config`) names."""
    run = " ".join(service_argv(service, f"{root}/current"))
    return "\n".join([
        "[Unit]",
        f"Description=ppg-edge streaming PPG runtime ({service['board']})",
        "After=network.target",
        "",
        "[Service]",
        "Type=simple",
        f"User={user}",
        f"Group={user}",
        "SupplementaryGroups=i2c dialout",
        f"WorkingDirectory={root}/current",
        "Environment=" + " ".join(f"{k}={v}" for k, v in SINGLE_THREAD_ENV.items()),
        f"ExecStart={root}/current/venv/bin/ppg-edge {run}",
        "Restart=on-failure",
        "RestartSec=5",
        "NoNewPrivileges=yes",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def build_wheel(out_dir: Path, project_dir: Path | None = None) -> Path:
    """``pip wheel --no-deps`` of the project (no build isolation: uses this environment's setuptools)."""
    from ppg_edge.config import REPO_ROOT

    project_dir = Path(project_dir or REPO_ROOT)
    if not (project_dir / "pyproject.toml").is_file():
        raise ConfigError(f"{project_dir}: no pyproject.toml; pass --wheel with a built ppg_edge wheel")
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
           "-w", str(out_dir), str(project_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ConfigError(f"building the ppg_edge wheel failed: {proc.stderr.strip()[-600:]}")
    wheels = sorted(out_dir.glob("ppg_edge-*.whl"))
    if not wheels:
        raise ConfigError(f"pip wheel wrote no ppg_edge-*.whl into {out_dir}")
    return wheels[-1]


def wheel_version(wheel: Path) -> str:
    parts = wheel.name.split("-")
    if len(parts) < 5 or parts[0] != "ppg_edge" or not wheel.name.endswith(".whl"):
        raise ConfigError(f"{wheel}: not a ppg_edge wheel (ppg_edge-VERSION-py3-none-any.whl)")
    return parts[1]


def check_models(models_dir: Path) -> list[tuple[Path, Path]]:
    """Every model file (``*.tflite``, ``*.trees``) with its ``*.json`` manifest; a manifest ``sha256``
    must match the file."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise ConfigError(f"--models {models_dir}: not a folder")
    pairs = []
    for model in sorted(p for x in MODEL_SUFFIXES for p in models_dir.glob(f"*{x}")):
        manifest = model.with_suffix(".json")
        if not manifest.is_file():
            raise ModelError(f"{model}: no manifest {manifest.name} beside it")
        try:
            meta = json.loads(manifest.read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"{manifest}: not valid JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise ModelError(f"{manifest}: expected a JSON object")
        want = meta.get("sha256")
        if want is not None and want != sha256_file(model):
            raise ModelError(f"{model}: sha256 differs from its manifest {manifest.name} (tampered or stale)")
        pairs.append((model, manifest))
    stray = sorted(set(models_dir.glob("*.json")) - {m for _, m in pairs})
    if stray:
        log.warning("model manifests without a model file ignored: %s", ", ".join(p.name for p in stray))
    return pairs


@dataclass(frozen=True)
class Bundle:
    path: Path
    release: str
    version: str
    board: str
    wheel: str

    @property
    def manifest(self) -> dict:
        return json.loads((self.path / "MANIFEST.json").read_text())


def build_bundle(out_dir: Path, board, *, wheel: Path | None = None, models_dir: Path | None = None,
                 extra_wheels: Sequence[Path] = (), root: str = "/opt/ppg-edge", user: str = "pi",
                 now: float | None = None, peak_model: str | None = None,
                 bp_model: str | None = None, profile: Path | None = None) -> Bundle:
    """Assemble the bundle folder ``out_dir`` (created; must not exist or be empty). ``profile``:
    the wearer's profile (TOML/JSON), checked here and carried as ``PROFILE_FILE`` for the
    deploy to install into the device's state folder (a service with a BP model reads it)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"{out_dir}: bundle folder exists and is not empty")
    (out_dir / "wheels").mkdir(parents=True, exist_ok=True)
    if wheel is None:
        wheel = build_wheel(out_dir / "wheels")
    else:
        wheel = Path(wheel)
        if not wheel.is_file():
            raise ConfigError(f"--wheel {wheel}: no such file")
        shutil.copy2(wheel, out_dir / "wheels" / wheel.name)
    version = wheel_version(wheel)
    for extra in extra_wheels:
        if not Path(extra).is_file():
            raise ConfigError(f"extra wheel {extra}: no such file")
        shutil.copy2(extra, out_dir / "wheels" / Path(extra).name)
    (out_dir / "models").mkdir()
    pairs = check_models(Path(models_dir)) if models_dir is not None else []
    service = service_config(board.identifier, pairs, peak_model=peak_model, bp_model=bp_model)
    for model, manifest in pairs:
        shutil.copy2(model, out_dir / "models" / model.name)
        shutil.copy2(manifest, out_dir / "models" / manifest.name)
    (out_dir / "board").mkdir()
    if not board.path:
        raise ConfigError(f"board {board.identifier}: no board file path")
    shutil.copy2(board.path, out_dir / "board" / f"{board.identifier}.toml")
    if profile is not None:
        if not service.get("bp_model"):
            raise ConfigError("--profile is an input of the BP model, and this deploy runs none: give BP models "
                              "(bp-*.trees or .tflite with manifests) in --models")
        from ppg_edge.edge_runtime.user import PROFILE_FILE, Profile

        (out_dir / PROFILE_FILE).write_text(Profile.load(profile).to_toml())
    (out_dir / "systemd").mkdir()
    (out_dir / SERVICE_FILE).write_text(json.dumps(service, indent=1) + "\n")
    (out_dir / "systemd" / "ppg-edge.service").write_text(systemd_unit(service, root=root, user=user))

    files = {}
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(out_dir).as_posix()
        files[rel] = sha256_file(path)
    release = release_name(version, now)
    manifest = {"format": FORMAT, "release": release, "version": version, "board": board.identifier,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "wheel": f"wheels/{wheel.name}", "files": files}
    (out_dir / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    (out_dir / "SHA256SUMS").write_text("".join(f"{h}  {rel}\n" for rel, h in files.items()))
    log.info("bundle %s: %d files in %s", release, len(files), out_dir)
    return Bundle(path=out_dir, release=release, version=version, board=board.identifier,
                  wheel=f"wheels/{wheel.name}")
