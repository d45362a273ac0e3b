"""The 30 peak-detector configurations of Georgieva-Tsaneva (2025), Table 2, as data.

Reading of the paper's columns (documented because the paper is terse):

* **Network type** -> ``network``: ``"cnn"``, ``"lstm"``, ``"cnn_lstm"`` or
  ``"cnn_lstm_attention"``.
* **Input data type** -> ``input``: ``"ppg"`` is the 2 s PPG window alone (one channel);
  ``"DWT, 2 level"`` / ``"DWT, 3 level"`` become ``"ppg+dwt2"`` / ``"ppg+dwt3"``: the PPG
  window plus the db4 *detail* coefficients of that level, resized to the window length
  by linear interpolation, as a second channel. This follows section 2.3 ("coefficients
  are used as a second input channel"), Table 3 (Type30 input ``(250, 2)`` = "2 s PPG
  segment with DWT3 detailed coefficients") and Table 11 (Type28, raw PPG, is a
  1-channel input; Type24/Type30 are 2-channel). At 125 Hz, detail level 2 spans about
  15.6-31 Hz and level 3 about 7.8-15.6 Hz.
* **Activation function** -> ``activation``: the hidden nonlinearity that the paper varies.
  In models with LSTMs it is the LSTM cell activation (Table 3 lists "tanh" for Type30's
  LSTMs, whose convolutions stay ReLU). In CNN-only models (Type1-6), which have no other
  hidden nonlinearity, it is the activation of the convolutions. The output unit is always
  a sigmoid: the targets are per-sample peak probabilities trained with BCE.
* **Number of neurons by level** -> ``sizes``: filters of the three Conv1D layers and
  units of the three LSTM layers (Table 3: 32/64/32 for both blocks of Type30).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from ppg_edge.dsp.rates import check_rate
from ppg_edge.errors import ConfigError

NETWORKS = ("cnn", "lstm", "cnn_lstm", "cnn_lstm_attention")
INPUTS = ("ppg", "ppg+dwt2", "ppg+dwt3")
ACTIVATIONS = ("sigmoid", "tanh")
HEADS = ("paper", "per_sample")


@dataclasses.dataclass(frozen=True)
class PeakModelConfig:
    """One row of Table 2 plus the hyperparameters shared by the family (Tables 3-4)."""

    name: str
    network: str
    input: str
    activation: str
    sizes: tuple[int, int, int]
    conv_kernels: tuple[int, int, int] = (5, 5, 3)
    conv_dropout: float = 0.25
    lstm_dropout: float = 0.3
    fs: float = 125.0
    head: str = "per_sample"

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise ConfigError(f"{self.name}: network {self.network!r} is not one of {NETWORKS}")
        if self.input not in INPUTS:
            raise ConfigError(f"{self.name}: input {self.input!r} is not one of {INPUTS}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"{self.name}: activation {self.activation!r} is not one of {ACTIVATIONS}"
            )
        if self.head not in HEADS:
            raise ConfigError(f"{self.name}: head {self.head!r} is not one of {HEADS}")
        if len(self.sizes) != 3 or any(int(s) <= 0 for s in self.sizes):
            raise ConfigError(f"{self.name}: sizes must be three positive ints, got {self.sizes}")
        if len(self.conv_kernels) != 3 or any(int(k) <= 0 for k in self.conv_kernels):
            raise ConfigError(f"{self.name}: conv_kernels must be three positive ints")
        for rate_name in ("conv_dropout", "lstm_dropout"):
            rate = getattr(self, rate_name)
            if not 0.0 <= rate < 1.0:
                raise ConfigError(f"{self.name}: {rate_name} must be in [0, 1), got {rate}")
        check_rate(self.fs, f"{self.name}: fs", number=True)

    @property
    def n_channels(self) -> int:
        """Input channels: 1 for PPG only, 2 for PPG + one DWT detail level."""
        return 1 if self.input == "ppg" else 2

    @property
    def dwt_level(self) -> int | None:
        """The db4 detail level fed as the second channel, or None."""
        return None if self.input == "ppg" else int(self.input[-1])

    @property
    def has_cnn(self) -> bool:
        return self.network in ("cnn", "cnn_lstm", "cnn_lstm_attention")

    @property
    def has_lstm(self) -> bool:
        return self.network in ("lstm", "cnn_lstm", "cnn_lstm_attention")

    @property
    def has_attention(self) -> bool:
        return self.network == "cnn_lstm_attention"

    def replace(self, **changes: Any) -> PeakModelConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["sizes"] = list(self.sizes)
        out["conv_kernels"] = list(self.conv_kernels)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PeakModelConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ConfigError(f"peak model config has unknown keys {sorted(unknown)}")
        missing = {"name", "network", "input", "activation", "sizes"} - set(data)
        if missing:
            raise ConfigError(f"peak model config lacks keys {sorted(missing)}")
        kwargs = dict(data)
        kwargs["sizes"] = tuple(int(s) for s in kwargs["sizes"])
        if "conv_kernels" in kwargs:
            kwargs["conv_kernels"] = tuple(int(k) for k in kwargs["conv_kernels"])
        return cls(**kwargs)


_SMALL = (16, 32, 16)
_LARGE = (32, 64, 32)

# Table 2, row by row: (network, input, activation, sizes).
_TABLE2 = (
    ("cnn", "ppg", "sigmoid", _SMALL),  # Type1
    ("cnn", "ppg+dwt2", "sigmoid", _SMALL),
    ("cnn", "ppg+dwt3", "sigmoid", _SMALL),
    ("cnn", "ppg", "tanh", _SMALL),
    ("cnn", "ppg+dwt2", "tanh", _SMALL),
    ("cnn", "ppg+dwt3", "tanh", _SMALL),  # Type6
    ("lstm", "ppg", "sigmoid", _SMALL),  # Type7
    ("lstm", "ppg+dwt2", "sigmoid", _SMALL),
    ("lstm", "ppg+dwt3", "sigmoid", _SMALL),
    ("lstm", "ppg", "tanh", _SMALL),
    ("lstm", "ppg+dwt2", "tanh", _SMALL),
    ("lstm", "ppg+dwt3", "tanh", _SMALL),  # Type12
    ("cnn_lstm", "ppg", "sigmoid", _SMALL),  # Type13
    ("cnn_lstm", "ppg+dwt2", "sigmoid", _SMALL),
    ("cnn_lstm", "ppg+dwt3", "sigmoid", _SMALL),
    ("cnn_lstm", "ppg", "tanh", _SMALL),
    ("cnn_lstm", "ppg+dwt2", "tanh", _SMALL),
    ("cnn_lstm", "ppg+dwt3", "tanh", _SMALL),  # Type18
    ("cnn_lstm", "ppg", "sigmoid", _LARGE),  # Type19
    ("cnn_lstm", "ppg+dwt2", "sigmoid", _LARGE),
    ("cnn_lstm", "ppg+dwt3", "sigmoid", _LARGE),
    ("cnn_lstm", "ppg", "tanh", _LARGE),
    ("cnn_lstm", "ppg+dwt2", "tanh", _LARGE),
    ("cnn_lstm", "ppg+dwt3", "tanh", _LARGE),  # Type24
    ("cnn_lstm_attention", "ppg", "sigmoid", _LARGE),  # Type25
    ("cnn_lstm_attention", "ppg+dwt2", "sigmoid", _LARGE),
    ("cnn_lstm_attention", "ppg+dwt3", "sigmoid", _LARGE),
    ("cnn_lstm_attention", "ppg", "tanh", _LARGE),
    ("cnn_lstm_attention", "ppg+dwt2", "tanh", _LARGE),
    ("cnn_lstm_attention", "ppg+dwt3", "tanh", _LARGE),  # Type30
)

VARIANTS: dict[str, PeakModelConfig] = {
    f"Type{i}": PeakModelConfig(
        name=f"Type{i}", network=net, input=inp, activation=act, sizes=tuple(sizes)
    )
    for i, (net, inp, act, sizes) in enumerate(_TABLE2, start=1)
}

# Trainable parameter counts the paper reports for its single-output head (Table 11).
PAPER_PARAM_COUNTS = {"Type24": 62_689, "Type28": 63_617, "Type30": 63_777}


def get_variant(name: str) -> PeakModelConfig:
    """The configuration called ``name`` (``"Type1"`` .. ``"Type30"``)."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ConfigError(
            f"unknown peak model variant {name!r}; choose one of Type1..Type{len(VARIANTS)}"
        ) from None
