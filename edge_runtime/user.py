"""What the wearer tells the device: a profile (age, sex, height, weight) and cuff readings.

**Profile** (``--profile FILE``, a TOML or JSON file next to the service's config)::

    age = 52          # years
    sex = "F"         # "F" or "M"
    height_cm = 168
    weight_kg = 71

A BP model trained with the profile (manifest ``inputs = "ppg+profile"``) reads it as
age, sex (1 = male, as in training) and BMI, in :data:`PROFILE_NAMES` order.

**Calibration** (``ppg-edge calibrate``, a JSON file): the cuff readings the wearer took,
each with the device's own uncalibrated estimate at that time and the model file's
sha256 (a calibration made for another model is refused: its offset means nothing
there). One reading gives an offset per quantity (``value = estimate + offset``); two or
more readings whose estimates are at least :data:`MIN_SPREAD_MMHG` apart give a
least-squares line (``value = slope * estimate + intercept``, the slope kept within
0.25-4), else the offset of their mean.

numpy-free; files are written to a private name and renamed (never half-written).
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ppg_edge.errors import ConfigError

log = logging.getLogger(__name__)

PROFILE_NAMES = ("age", "sex", "bmi")
QUANTITIES = ("sbp", "dbp")
MIN_SPREAD_MMHG = 5.0
SLOPE_RANGE = (0.25, 4.0)
#: plausible cuff readings (mmHg): outside them a reading is refused as a typing error
CUFF_RANGE = {"sbp": (60.0, 260.0), "dbp": (30.0, 160.0)}


def _read_table(path: Path, what: str) -> dict:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read ({exc.strerror or exc})") from None
    try:
        if Path(path).suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        return json.loads(text)
    except (ValueError, TypeError) as exc:  # tomllib.TOMLDecodeError and JSONDecodeError are ValueErrors
        raise ConfigError(f"{what} {path}: not valid {'TOML' if Path(path).suffix == '.toml' else 'JSON'} "
                          f"({exc})") from None


# the files of the device's state folder (beside the releases: a deploy or a rollback keeps them)
PROFILE_FILE = "profile.toml"
CALIBRATION_FILE = "calibration.json"


def _number(d: dict, key: str, lo: float, hi: float, src: str) -> float:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise ConfigError(f"{src}: {key} must be a number in {lo:g}-{hi:g}, got {v!r}")
    return float(v)


@dataclass(frozen=True)
class Profile:
    """The wearer's age (years), sex ("F"/"M"), height (cm) and weight (kg)."""

    age: float
    sex: str
    height_cm: float
    weight_kg: float

    @classmethod
    def from_dict(cls, d: dict, source: str = "profile") -> Profile:
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: not a table")
        unknown = sorted(set(d) - {"age", "sex", "height_cm", "weight_kg"})
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown}; a profile has age, sex, height_cm, weight_kg")
        sex = d.get("sex")
        if sex not in ("F", "M"):
            raise ConfigError(f"{source}: sex must be \"F\" or \"M\", got {sex!r}")
        return cls(age=_number(d, "age", 1, 120, source), sex=sex,
                   height_cm=_number(d, "height_cm", 50, 250, source),
                   weight_kg=_number(d, "weight_kg", 10, 400, source))

    @classmethod
    def load(cls, path) -> Profile:
        return cls.from_dict(_read_table(Path(path), "profile"), str(path))

    def to_toml(self) -> str:
        """The profile as the TOML file the service reads (``state/profile.toml``)."""
        return (f'age = {self.age:g}\nsex = "{self.sex}"\nheight_cm = {self.height_cm:g}\n'
                f"weight_kg = {self.weight_kg:g}\n")

    @property
    def bmi(self) -> float:
        return self.weight_kg / (self.height_cm / 100.0) ** 2

    def vector(self) -> list[float]:
        """age, sex (1 = male), BMI: the order the models were trained on (:data:`PROFILE_NAMES`)."""
        return [self.age, 1.0 if self.sex == "M" else 0.0, self.bmi]


@dataclass
class Calibration:
    """Cuff readings and the fit they give (see the module docstring)."""

    model_sha256: str
    readings: list[dict] = field(default_factory=list)

    # ------------------------------------------------------------ fit
    def fit(self, q: str) -> dict | None:
        """``{"method", "slope", "intercept", "n"}`` for quantity ``q``, or None without readings of it."""
        pts = [(r["estimate"][q], r["cuff"][q]) for r in self.readings
               if r.get("cuff", {}).get(q) is not None and r.get("estimate", {}).get(q) is not None]
        if not pts:
            return None
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        if len(pts) >= 2 and max(xs) - min(xs) >= MIN_SPREAD_MMHG:
            sxx = sum((x - mx) ** 2 for x in xs)
            slope = sum((x - mx) * (y - my) for x, y in pts) / sxx
            slope = min(max(slope, SLOPE_RANGE[0]), SLOPE_RANGE[1])
            return {"method": "two-point" if len(pts) == 2 else "least-squares", "slope": slope,
                    "intercept": my - slope * mx, "n": len(pts)}
        return {"method": "offset", "slope": 1.0, "intercept": my - mx, "n": len(pts)}

    def apply(self, q: str, estimate: float) -> float | None:
        f = self.fit(q)
        return None if f is None else f["slope"] * estimate + f["intercept"]

    def summary(self) -> dict:
        last = self.readings[-1]["time"] if self.readings else None
        return {"readings": len(self.readings), "last": last,
                "fit": {q: self.fit(q) for q in QUANTITIES}}

    # ------------------------------------------------------------ readings
    def add(self, cuff: dict, estimate: dict, time: str | None = None) -> dict:
        """Add a cuff reading (``{"sbp": .., "dbp": ..}``, either may be None) with the device's
        uncalibrated estimate at that time; returns the reading."""
        c, e = {}, {}
        for q in QUANTITIES:
            v = cuff.get(q)
            if v is not None:
                lo, hi = CUFF_RANGE[q]
                if not (isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi):
                    raise ConfigError(f"cuff {q.upper()} {v!r} is outside {lo:g}-{hi:g} mmHg (a typing error?)")
                if estimate.get(q) is None:
                    raise ConfigError(f"no uncalibrated {q.upper()} estimate of the device to pair with the cuff's "
                                      f"{v:g} mmHg (the model withholds it, or no stable stretch was measured)")
                c[q], e[q] = float(v), float(estimate[q])
        if c.get("sbp") is not None and c.get("dbp") is not None and c["sbp"] - c["dbp"] < 10:
            raise ConfigError(f"cuff SBP {c['sbp']:g} is not above DBP {c['dbp']:g} by 10 mmHg")
        if not c:
            raise ConfigError("a calibration needs --sbp or --dbp")
        r = {"time": time or datetime.now(UTC).isoformat(timespec="seconds"), "cuff": c, "estimate": e}
        self.readings.append(r)
        return r

    # ------------------------------------------------------------ files
    def to_dict(self) -> dict:
        return {"format": "ppg-edge-calibration", "version": 1, "model_sha256": self.model_sha256,
                "readings": self.readings}

    @classmethod
    def from_dict(cls, d: dict, source: str = "calibration") -> Calibration:
        if not isinstance(d, dict) or d.get("format") != "ppg-edge-calibration" or d.get("version") != 1:
            raise ConfigError(f"{source}: not a ppg-edge calibration file (format/version)")
        sha = d.get("model_sha256")
        if not (isinstance(sha, str) and len(sha) == 64):
            raise ConfigError(f"{source}: model_sha256 must be 64 hex characters")
        readings = d.get("readings")
        if not isinstance(readings, list):
            raise ConfigError(f"{source}: readings must be a list")
        for i, r in enumerate(readings):
            ok = isinstance(r, dict) and isinstance(r.get("time"), str) and all(
                isinstance(r.get(k), dict) and all(isinstance(v, (int, float)) and math.isfinite(v)
                                                   for v in r[k].values()) for k in ("cuff", "estimate"))
            if not ok or set(r["cuff"]) != set(r["estimate"]) or not set(r["cuff"]) <= set(QUANTITIES):
                raise ConfigError(f"{source}: reading {i} is malformed: {r!r}")
        return cls(model_sha256=sha, readings=list(readings))

    @classmethod
    def load(cls, path, model_sha256: str | None = None) -> Calibration:
        """Read a calibration; with ``model_sha256``, refuse one made for another model."""
        cal = cls.from_dict(_read_table(Path(path), "calibration"), str(path))
        if model_sha256 is not None and cal.model_sha256 != model_sha256:
            raise ConfigError(f"calibration {path} was made for model sha256 {cal.model_sha256[:12]}…, not for "
                              f"this BP model ({model_sha256[:12]}…): calibrate again (ppg-edge calibrate)")
        return cal

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(self.to_dict(), fh, indent=1)
                fh.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        log.info("calibration: %d reading(s) in %s", len(self.readings), path)
        return path
