"""The one record type every loader returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError


@dataclass
class Record:
    """One recording of one subject, with whatever labels its data set has.

    ``signals`` maps a channel name to a 1-D float64 array; ``rates`` gives each
    channel's sampling rate in Hz (multi-rate records exist, e.g. WFDB
    ``mixedsignals``). The PPG channel is called ``"ppg"``; others use lower-case
    names: ``"ecg"`` (lead II where there is a choice), ``"red"``, ``"ir"``,
    ``"abp"``, ``"r"``, ``"g"``, ``"b"``.

    ``peaks`` holds reference PPG pulse-peak sample indices (0-based, at the PPG
    rate) when the data set has them or they were derived; ``meta["peaks_source"]``
    says which. ``labels`` holds scalar labels (``sbp``, ``dbp``, ``hr``, ``age``,
    ``sex``, ``bmi``, ``ht_class``, ``quality`` ...) and ``meta`` provenance
    (source file, notes).
    """

    dataset: str
    record_id: str
    subject_id: str
    signals: dict[str, np.ndarray]
    rates: dict[str, float]
    peaks: np.ndarray | None = None
    labels: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "ppg" not in self.signals:
            raise DataError(f"{self.dataset}/{self.record_id}: record has no 'ppg' channel")
        for name, x in self.signals.items():
            if name not in self.rates or not self.rates[name] > 0:
                raise DataError(f"{self.dataset}/{self.record_id}: channel {name!r} has no valid rate")
            if np.ndim(x) != 1:
                raise DataError(f"{self.dataset}/{self.record_id}: channel {name!r} is not 1-D")
        if self.peaks is not None:
            self.peaks = np.asarray(self.peaks, dtype=np.int64)
            n = len(self.ppg)
            if self.peaks.size and (self.peaks.min() < 0 or self.peaks.max() >= n):
                raise DataError(
                    f"{self.dataset}/{self.record_id}: reference peaks outside 0..{n - 1}"
                )
            if np.any(np.diff(self.peaks) <= 0):
                raise DataError(f"{self.dataset}/{self.record_id}: reference peaks not strictly increasing")

    @property
    def ppg(self) -> np.ndarray:
        return self.signals["ppg"]

    @property
    def fs(self) -> float:
        """Sampling rate of the PPG channel in Hz."""
        return self.rates["ppg"]

    @property
    def duration_s(self) -> float:
        return len(self.ppg) / self.fs

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.record_id}"
