"""numpy post-processing: probabilities -> peaks, threshold choice, stitching, matching."""
from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

from ppg_edge.edge_runtime import peaks_decode as pd
from ppg_edge.errors import ConfigError, DataError
from ppg_edge.metrics.peaks import match_peaks

FS = 125.0


def prob_trace(n, peaks, rng, height=0.9, width=3, floor=0.05, noise=0.0):
    """A probability trace with a plateau of ``height`` +-width samples at each peak."""
    p = np.full(n, floor)
    for c in peaks:
        p[max(0, c - width) : c + width + 1] = height
    if noise:
        p = np.clip(p + rng.normal(0.0, noise, n), 0.0, 1.0)
    return p


def pulse_signal(n, peaks, sigma=6.0):
    t = np.arange(n)
    return sum(np.exp(-0.5 * ((t - c) / sigma) ** 2) for c in peaks)


def test_module_imports_neither_tensorflow_nor_scipy():
    tree = ast.parse(pathlib.Path(pd.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & {"tensorflow", "tf_keras", "scipy", "keras"}


def test_decodes_known_peaks_without_signal(rng):
    peaks = np.array([40, 150, 260, 370, 480])
    det = pd.decode_peaks(prob_trace(600, peaks, rng), FS, threshold=0.5)
    np.testing.assert_array_equal(det, peaks)


def test_snaps_to_ppg_local_max(rng):
    true = np.array([50, 160, 270, 380])
    # the network's probabilities are 4 samples late; the PPG knows better
    p = prob_trace(500, true + 4, rng)
    det = pd.decode_peaks(p, FS, threshold=0.5, signal=pulse_signal(500, true))
    np.testing.assert_array_equal(det, true)


def test_candidate_on_a_slope_is_rejected(rng):
    x = np.linspace(0.0, 1.0, 400)  # monotone: no local maximum anywhere inside
    p = prob_trace(400, [200], rng)
    assert pd.decode_peaks(p, FS, threshold=0.5, signal=x).size == 0


def test_close_candidates_merge_and_refractory_keeps_highest(rng):
    p = np.full(400, 0.01)
    p[100], p[115] = 0.8, 0.95  # 120 ms apart: merged, 115 wins
    p[140] = 0.7  # 200 ms after 115 but inside the 0.3 s refractory
    p[300] = 0.9
    det = pd.decode_peaks(p, FS, threshold=0.5)
    np.testing.assert_array_equal(det, [115, 300])


def test_nothing_above_threshold_gives_empty(rng):
    det = pd.decode_peaks(np.full(250, 0.2), FS, threshold=0.5)
    assert det.size == 0 and det.dtype == np.int64


def test_choose_threshold_maximises_f1(rng):
    streams, refs = [], []
    for _ in range(3):
        peaks = np.sort(rng.choice(np.arange(30, 1470, 110), 10, replace=False))
        p = prob_trace(1500, peaks, rng, height=0.6)
        # spurious blips at 0.4: a threshold under 0.4 lets them through
        blips = peaks[:-1] + 55
        p[blips] = 0.4
        streams.append(p)
        refs.append(peaks)
    t, f1 = pd.choose_threshold(streams, refs, FS, candidates=[0.2, 0.3, 0.45, 0.7])
    assert t == 0.45 and f1 == pytest.approx(1.0)
    # too high a threshold finds nothing: F1 0
    t_hi, f1_hi = pd.choose_threshold(streams, refs, FS, candidates=[0.7])
    assert f1_hi == 0.0


def test_choose_threshold_with_custom_scorer(rng):
    peaks = np.array([50, 200, 350])
    p = prob_trace(400, peaks, rng)
    calls = []

    def count_score(ref, det):
        calls.append(len(det))
        return -abs(len(det) - len(ref))

    t, score = pd.choose_threshold(p, peaks, FS, candidates=[0.5, 0.95], scorer=count_score)
    assert t == 0.5 and score == 0 and calls == [3, 0]


def test_stitch_windows_averages_overlaps():
    w = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    np.testing.assert_allclose(pd.stitch_windows(w, hop=2), [1.0, 1.0, 0.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(
        pd.stitch_windows(w, hop=2, length=8), [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    )


def test_stream_of_overlapping_windows_round_trip(rng):
    peaks = np.arange(40, 2000, 103)
    stream = prob_trace(2125, peaks, rng, noise=0.03)
    win, hop = 250, 125
    windows = np.stack([stream[s : s + win] for s in range(0, 2125 - win + 1, hop)])
    joined = pd.stitch_windows(windows, hop, length=2125)
    np.testing.assert_allclose(joined, stream)
    det = pd.decode_peaks(joined, FS, threshold=0.5)
    m = match_peaks(peaks, det, FS, 3 / FS)
    assert (m.fp, m.fn) == (0, 0)


def test_f1_from_counts_nothing_to_find():
    from ppg_edge.metrics.peaks import f1_from_counts

    assert f1_from_counts(0, 0, 0) == 1.0
    assert f1_from_counts(1, 1, 0) == pytest.approx(2 / 3)


def test_decoder_does_not_define_its_own_matcher():
    """Peak matching has one home (ppg_edge.metrics.peaks); the decoder imports it."""
    assert pd.match_peaks is match_peaks


@pytest.mark.parametrize(
    "probs, kwargs, exc",
    [
        (np.array([0.1, np.nan, 0.2]), {}, DataError),
        (np.array([0.1, 1.5, 0.2]), {}, DataError),
        (np.zeros((2, 3)), {}, DataError),
        (np.zeros(10), {"threshold": 1.5}, ConfigError),
        (np.zeros(10), {"signal": np.zeros(9)}, DataError),
        (np.zeros(10), {"signal": np.full(10, np.inf)}, DataError),
    ],
)
def test_bad_input_raises(probs, kwargs, exc):
    with pytest.raises(exc):
        pd.decode_peaks(probs, FS, **kwargs)


def test_bad_fs_and_mismatched_lists_raise():
    with pytest.raises(ConfigError):
        pd.decode_peaks(np.zeros(10), 0.0)
    with pytest.raises(DataError):
        pd.choose_threshold([np.zeros(10), np.zeros(10)], [np.array([1])], FS)
    with pytest.raises(ConfigError):
        pd.choose_threshold(np.zeros(10), np.array([1]), FS, candidates=[])
    with pytest.raises(DataError):
        pd.stitch_windows(np.zeros((2, 4)), hop=2, length=3)
    with pytest.raises(ConfigError):
        pd.stitch_windows(np.zeros((2, 4)), hop=0)


def test_to_raw_axis_shifts_snaps_and_rejects_bad_input():
    raw = np.zeros(100)
    raw[[20, 60]] = 1.0
    # detections on the filtered axis 2 samples late, then snapped to the raw maxima
    np.testing.assert_array_equal(pd.to_raw_axis([22, 63], 100, 2, raw, 125.0), [20, 60])
    np.testing.assert_array_equal(pd.to_raw_axis([22, 63], 100, 2), [20, 61])
    np.testing.assert_array_equal(pd.to_raw_axis([1, 99], 100, 5), [0, 94])
    with pytest.raises(DataError, match="raw PPG"):
        pd.to_raw_axis([1], 100, 0, np.zeros(50))
    with pytest.raises(DataError):
        pd.to_raw_axis([1], 0, 0)


def test_snap_of_a_list_of_beats_equals_the_gathered_snap(rng):
    # the stream decoder's list path and the offline gather give the same first maxima,
    # edges, plateaus and every radius included
    for _ in range(200):
        n = int(rng.integers(5, 120))
        x = np.round(rng.standard_normal(n), 1)  # rounded: ties (plateaus) are common
        pos = np.sort(rng.integers(0, n, size=int(rng.integers(1, 6))))
        for smooth, refine in ((0.0, 0.0), (0.04, 0.02)):
            for radius in (0.0, 0.01, 0.065, 0.3):
                gathered = pd.snap_checked(pos, x, FS, radius, smooth, refine)
                listed = pd.snap_checked(pos.tolist(), x, FS, radius, smooth, refine)
                assert isinstance(listed, list) and listed == np.asarray(gathered).tolist()
    assert pd.snap_checked([], np.zeros(3), FS, 0.065) == []


# ----------------------------------------------------------------------------- DecoderSpec
def _committed_manifests():
    import json

    root = pathlib.Path(__file__).resolve().parents[1] / "models" / "device"
    return [(p, json.loads(p.read_text())) for p in sorted(root.glob("peaks-*.json"))]


def test_decoder_spec_defaults_are_the_decoders():
    import inspect

    spec = pd.DecoderSpec()
    sig = inspect.signature(pd.decode_peaks).parameters
    for name, value in spec.decode_kwargs().items():
        assert sig[name].default == value, name
    assert (spec.snap, spec.stitch, spec.raw_axis_shift_samples) == (False, "mean", None)
    assert spec.raw_snap_radius_s == pytest.approx(0.065)
    assert inspect.signature(pd.to_raw_axis).parameters["radius_s"].default == spec.raw_snap_radius_s


def test_committed_manifests_load_as_decoder_specs():
    """Manifests sealed before the spec kept the raw-axis shift in ``training``."""
    found = _committed_manifests()
    assert found
    for path, man in found:
        assert "raw_axis_shift_samples" not in man["decoder"], path  # the old layout
        spec = pd.DecoderSpec.from_dict(man["decoder"], man.get("training"))
        assert spec.snap and spec.snap_signal == "filtered ppg"
        assert spec.raw_axis_shift_samples == man["training"]["raw_axis_shift_samples"] == 2
        assert spec.threshold == man["decoder"]["threshold"]
        assert spec.raw_snap() == (0.03, 0.04, 0.008)
        assert pd.DecoderSpec.from_dict(spec.to_dict()) == spec  # the new layout round-trips
        assert pd.DecoderSpec.from_dict(man["decoder"]).raw_axis_shift_samples is None


def test_model_json_and_its_manifest_give_one_spec():
    """What the converter writes from a model JSON is what the evaluation reads from it."""
    import json

    models = pathlib.Path(__file__).resolve().parents[1] / "models" / "peaks"
    for path, man in _committed_manifests():
        name = man["training"]["keras_model"].removesuffix(".json")
        meta = json.loads((models / name / f"{name}.json").read_text())
        from_meta = pd.DecoderSpec.from_model_meta(meta)
        assert from_meta == pd.DecoderSpec.from_dict(man["decoder"], man["training"]), path


def test_decoder_spec_reads_the_raw_axis_mapping_and_refuses_bad_values():
    meta = {"threshold": 0.4, "raw_axis_shift_samples": 3, "decode": {"signal": "filtered ppg"}}
    spec = pd.DecoderSpec.from_model_meta(meta)
    assert (spec.threshold, spec.snap, spec.raw_axis_shift_samples) == (0.4, True, 3)
    assert spec.raw_snap_radius_s == pd.DecoderSpec.raw_snap_radius_s  # no choice: the default
    shift = pd.DecoderSpec.from_model_meta({**meta, "raw_axis": {"mapping": "shift"}})
    assert shift.raw_snap_radius_s == 0.0
    assert pd.DecoderSpec.from_model_meta(meta, threshold=0.7).threshold == 0.7
    for bad in ({"threshold": 1.5}, {"threshold": "high"}, {"stitch": "max"}, {"raw_smooth_s": -1},
                {"merge_s": "x"}):
        with pytest.raises(ConfigError):
            pd.DecoderSpec.from_dict(bad)
    with pytest.raises(ConfigError, match="raw_axis.mapping"):
        pd.DecoderSpec.from_model_meta({**meta, "raw_axis": {"mapping": "nearest"}})
