"""Bad input: every loader raises one clear error naming the file and the problem.

All files are written here into ``tmp_path`` (synthetic, never copies of the data).
Each format first has a positive control (a well-formed file loads), so the
errors below come from the corruption, not from a broken fixture.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ppg_edge.data import _io, biosppy, but_ppg, capnobase, max30102_raw, ppg_bp, welltory, wfdb_samples
from ppg_edge.errors import DataError, DataNotFoundError


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


# ---------------------------------------------------------------- helpers --
def test_split_numbers_trailing_ok_middle_empty_error(tmp_path):
    np.testing.assert_array_equal(_io.split_numbers("1\t2\t", "\t", tmp_path / "f", "x"), [1, 2])
    with pytest.raises(DataError, match="item 1 '' is not a number"):
        _io.split_numbers("1,,2", ",", tmp_path / "f", "x")


def test_fill_invalid_records_spans(tmp_path):
    x = np.array([np.nan, 1.0, np.nan, 3.0, np.inf])
    y, spans = _io.fill_invalid(x, tmp_path / "f", "ch")
    np.testing.assert_array_equal(y, [1, 1, 2, 3, 3])
    assert spans == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(DataError, match="no valid"):
        _io.fill_invalid(np.full(3, np.nan), tmp_path / "f", "ch")


# ---------------------------------------------------------------- PPG-BP --
def _ppgbp(tmp_path, n=2100, subject=7, header_ok=True, text=None):
    import openpyxl

    root = tmp_path / "ppg-bp"
    seg = "\t".join(f"{v:.1f}" for v in np.linspace(2000, 2100, n)) + "\t"
    _write(root / "Data File" / "0_subject" / f"{subject}_1.txt", seg if text is None else text)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Cardiovascular Dataset Information File"])
    ws.append(["Num.", "subject_ID" if header_ok else "who", "Sex(M/F)", "Age(year)", "Height(cm)",
               "Weight(kg)", "Systolic Blood Pressure(mmHg)", "Diastolic Blood Pressure(mmHg)",
               "Heart Rate(b/m)", "BMI(kg/m^2)", "Hypertension", "Diabetes", "cerebral infarction",
               "cerebrovascular disease"])
    ws.append([1, 7, "Male", 40, 170, 70, 120, 80, 70, 24.2, "Stage 1 hypertension", None, None, None])
    ws.append([2, 8, "Female", 50, 160, 60, 110, 70, 65, 23.4, "Normal", "Diabetes", None, None])
    (root / "Data File").mkdir(parents=True, exist_ok=True)
    wb.save(root / "Data File" / "PPG-BP dataset.xlsx")
    return root


def test_ppgbp_control(tmp_path):
    root = _ppgbp(tmp_path)
    r = ppg_bp.load_record(root, "7_1")
    assert r.ppg.size == 2100 and r.labels["sbp"] == 120 and r.labels["ht_class"] == "stage_1_hypertension"
    assert "skewness_sqi" not in r.labels  # no Table 1.xlsx here
    assert ppg_bp.info_extra(root)["subjects_left_out"] == 1  # subject 8 has no signal


def test_ppgbp_bad_length(tmp_path):
    root = _ppgbp(tmp_path, n=2000)
    with pytest.raises(DataError, match=r"7_1.txt: 2000 samples is not a multiple of the 2100"):
        ppg_bp.load_record(root, "7_1")


def test_ppgbp_unparsable_and_nan(tmp_path):
    root = _ppgbp(tmp_path, text="1.0\tabc\t" + "1.0\t" * 2098)
    with pytest.raises(DataError, match=r"7_1.txt: PPG samples: item 1 'abc'"):
        ppg_bp.load_record(root, "7_1")
    _write(root / "Data File" / "0_subject" / "7_1.txt", "nan\t" + "1.0\t" * 2099)
    with pytest.raises(DataError, match="NaN/inf"):
        ppg_bp.load_record(root, "7_1")


def test_ppgbp_two_lines(tmp_path):
    root = _ppgbp(tmp_path, text="1\t2\n3\t4\n")
    with pytest.raises(DataError, match="found 2 lines"):
        ppg_bp.load_record(root, "7_1")


def test_ppgbp_sheet_problems(tmp_path):
    root = _ppgbp(tmp_path, subject=9)
    with pytest.raises(DataError, match="subject 9 has signals but no row"):
        ppg_bp.load_record(root, "9_1")
    root2 = _ppgbp(tmp_path / "b", header_ok=False)
    with pytest.raises(DataError, match="lacks column"):
        ppg_bp.load_record(root2, "7_1")
    (root2 / "Data File" / "PPG-BP dataset.xlsx").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .xlsx"):
        ppg_bp.load_record(root2, "7_1")
    (root2 / "Data File" / "PPG-BP dataset.xlsx").unlink()
    with pytest.raises(DataNotFoundError, match="label sheet"):
        ppg_bp.load_record(root2, "7_1")


def test_ppgbp_missing(tmp_path):
    with pytest.raises(DataNotFoundError, match="signal folder"):
        ppg_bp.list_records(tmp_path)
    root = _ppgbp(tmp_path)
    with pytest.raises(DataNotFoundError, match="7_2.txt"):
        ppg_bp.load_record(root, "7_2")
    with pytest.raises(DataNotFoundError, match="not '<subject>_<n>'"):
        ppg_bp.load_record(root, "seven")


# ------------------------------------------------------------- CapnoBase --
def _capno(tmp_path, fs="300", peaks="2,5", signal=None, title="PPG Signal"):
    sig = signal if signal is not None else ",".join(str(v) for v in [0, 1, 2, 1, 0, 3, 0, 0])
    text = "\r\n".join(["File Name", "mat/0001_8min.mat", "", "PPG_fs", fs, "", "PPG Peaks", peaks, "",
                        title, sig]) + "\r\n"
    _write(tmp_path / "capnobase_0001.csv", text)
    return tmp_path


def test_capnobase_control(tmp_path):
    r = capnobase.load_record(_capno(tmp_path), "0001")
    np.testing.assert_array_equal(r.peaks, [1, 4])  # 1-based -> 0-based
    assert r.fs == 300.0


@pytest.mark.parametrize("fs,msg", [("", "is missing"), ("abc", "is not a number"),
                                    ("0", "is not a positive"), ("nan", "is not a positive")])
def test_capnobase_bad_rate(tmp_path, fs, msg):
    with pytest.raises(DataError, match=f"PPG_fs.*{msg}"):
        capnobase.load_record(_capno(tmp_path, fs=fs), "0001")


def test_capnobase_peak_beyond_signal(tmp_path):
    with pytest.raises(DataError, match="peak index 9 .* outside the 8-sample signal"):
        capnobase.load_record(_capno(tmp_path, peaks="2,9"), "0001")
    with pytest.raises(DataError, match="outside"):
        capnobase.load_record(_capno(tmp_path, peaks="0,2"), "0001")
    with pytest.raises(DataError, match="not strictly increasing"):
        capnobase.load_record(_capno(tmp_path, peaks="5,2"), "0001")
    with pytest.raises(DataError, match="non-integer"):
        capnobase.load_record(_capno(tmp_path, peaks="2.5"), "0001")


def test_capnobase_format(tmp_path):
    with pytest.raises(DataError, match="line 10 should be the block title"):
        capnobase.load_record(_capno(tmp_path, title="Signal"), "0001")
    with pytest.raises(DataError, match="NaN/inf"):
        capnobase.load_record(_capno(tmp_path, signal="1,nan,2"), "0001")
    _write(tmp_path / "capnobase_0001.csv", "File Name\r\nx\r\n")
    with pytest.raises(DataError, match="found 2 lines"):
        capnobase.load_record(tmp_path, "0001")
    with pytest.raises(DataNotFoundError, match="capnobase_0002.csv"):
        capnobase.load_record(tmp_path, "0002")
    with pytest.raises(DataNotFoundError):
        capnobase.list_records(tmp_path / "nope")


# -------------------------------------------------------------- Welltory --
def _well(tmp_path, rows=None, rr="800 810 790", header="time,R,G,B"):
    d = tmp_path / "data" / "subject_01"
    rows = rows if rows is not None else [(0, 200, 1, 0), (33, 201, 1, 0), (70, 202, 1, 0),
                                          (100, 201, 1, 0), (133, 200, 1, 0)]
    _write(d / "PPG.csv", header + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n")
    if rr is not None:
        _write(d / "RR.txt", rr)
    return tmp_path


def test_welltory_control(tmp_path):
    r = welltory.load_record(_well(tmp_path), "subject_01")
    assert r.fs == pytest.approx(1000 / 33)
    assert r.ppg.size == 5 and r.meta["ppg_channel"] == "r"
    np.testing.assert_allclose(r.ppg[2], 201 + (66 - 33) / (70 - 33))  # interpolated
    np.testing.assert_array_equal(r.meta["frame_times_ms"], [0, 33, 70, 100, 133])


def test_welltory_saturated_red_uses_green(tmp_path):
    rows = [(t, 255, g, 0) for t, g in [(0, 5), (33, 6), (66, 7)]]
    r = welltory.load_record(_well(tmp_path, rows=rows), "subject_01")
    assert r.meta["ppg_channel"] == "g" and r.meta["red_saturated_fraction"] == 1.0
    np.testing.assert_array_equal(r.ppg, [5, 6, 7])


def test_welltory_bad(tmp_path):
    with pytest.raises(DataError, match="header should be 'time,R,G,B'"):
        welltory.load_record(_well(tmp_path, header="t,r,g"), "subject_01")
    with pytest.raises(DataError, match="frame times not increasing"):
        welltory.load_record(_well(tmp_path, rows=[(0, 1, 1, 1), (33, 1, 1, 1), (33, 1, 1, 1)]), "subject_01")
    with pytest.raises(DataError, match="NaN/inf"):
        welltory.load_record(_well(tmp_path, rows=[(0, 1, 1, 1), (33, "nan", 1, 1)]), "subject_01")
    with pytest.raises(DataError, match="line 3 has 3 fields"):
        welltory.load_record(_well(tmp_path, rows=[(0, 1, 1, 1), (33, 1, 1)]), "subject_01")
    with pytest.raises(DataError, match="RR intervals must be positive"):
        welltory.load_record(_well(tmp_path, rr="800 -5"), "subject_01")
    with pytest.raises(DataError, match="no RR intervals"):
        welltory.load_record(_well(tmp_path, rr=""), "subject_01")
    (tmp_path / "data" / "subject_01" / "RR.txt").unlink()
    with pytest.raises(DataNotFoundError, match="RR.txt"):
        welltory.load_record(tmp_path, "subject_01")
    with pytest.raises(DataNotFoundError, match="subject_02"):
        welltory.load_record(tmp_path, "subject_02")


# --------------------------------------------------------------- BUT PPG --
def _but(tmp_path, row='100001 ,    30 ,      1 , 83 ,"[1.0, 2.0, 3.0]"',
         header="ID     ,PPG_fs ,Quality ,HR  ,PPG_Signal"):
    but_ppg._rows_cached.cache_clear()
    _write(tmp_path / "but_ppg_dataset.csv", header + "\n" + row + "\n")
    return tmp_path


def test_but_control(tmp_path):
    r = but_ppg.load_record(_but(tmp_path), "100001")
    assert r.fs == 30 and r.labels == {"quality": "good", "hr": 83.0} and r.subject_id == "100"


@pytest.mark.parametrize("row,msg", [
    ('100001 , 0 , 1 , 83 ,"[1.0]"', "PPG_fs of line 2"),
    ('100001 , , 1 , 83 ,"[1.0]"', "PPG_fs of line 2"),
    ('100001 , 30 , 2 , 83 ,"[1.0]"', "Quality '2' is not 0 or 1"),
    ('100001 , 30 , 1 , x ,"[1.0]"', "not numbers"),
    ('100001 , 30 , 1 , 83 ,"1.0, 2.0"', "not a bracketed list"),
    ('100001 , 30 , 1 , 83 ,"[1.0, nan]"', "NaN/inf"),
    ('100001 , 30 , 1 , 83 ,"[1.0, x]"', "item 1"),
    ('10001 , 30 , 1 , 83 ,"[1.0]"', "six-digit"),
    ('100001 , 30 , 1 , 83', "has 4 fields"),
])
def test_but_bad_rows(tmp_path, row, msg):
    with pytest.raises(DataError, match=msg):
        but_ppg.load_record(_but(tmp_path, row=row), "100001")


def test_but_bad_header_and_missing(tmp_path):
    with pytest.raises(DataError, match="header should be"):
        but_ppg.list_records(_but(tmp_path, header="ID,fs,Q,HR,Signal"))
    with pytest.raises(DataNotFoundError, match="no record with ID '999999'"):
        but_ppg.load_record(_but(tmp_path), "999999")
    with pytest.raises(DataNotFoundError, match="but_ppg_dataset.csv"):
        but_ppg.list_records(tmp_path / "none")


# --------------------------------------------------------------- BioSPPy --
def test_biosppy(tmp_path):
    good = "# Simple Text Format\n# Sampling Rate (Hz):= 1000.00\n1.0\n2.0\n"
    _write(tmp_path / "ppg.txt", good)
    assert biosppy.load_record(tmp_path, "ppg").ppg.size == 2
    for text, msg in [("1.0\n2.0\n", "no '#' header"),
                      ("# Labels:= PPG\n1.0\n", "no 'Sampling Rate"),
                      ("# Sampling Rate (Hz):= -5\n1.0\n", "not a positive"),
                      ("# Sampling Rate (Hz):= 1000\n1.0\nx\n", "item 1 'x'"),
                      ("# Sampling Rate (Hz):= 1000\n1.0\ninf\n", "NaN/inf"),
                      ("# Sampling Rate (Hz):= 1000\n", "no samples")]:
        _write(tmp_path / "ppg.txt", text)
        with pytest.raises(DataError, match=msg):
            biosppy.load_record(tmp_path, "ppg")
    (tmp_path / "ppg.txt").unlink()
    with pytest.raises(DataNotFoundError, match="ppg.txt"):
        biosppy.load_record(tmp_path, "ppg")


# ---------------------------------------------------------- MAX30102 raw --
def test_max30102_rpi(tmp_path):
    _write(tmp_path / "vrano714_rpi" / "ir.log", "1\n2\n3\n")
    _write(tmp_path / "vrano714_rpi" / "red.log", "4\n5\n6\n")
    r = max30102_raw.load_record(tmp_path, "vrano714_rpi")
    assert r.fs == 25 and r.ppg.tolist() == [1, 2, 3] and r.signals["red"].tolist() == [4, 5, 6]
    _write(tmp_path / "vrano714_rpi" / "red.log", "4\n5\n")
    with pytest.raises(DataError, match="ir.log has 3 samples but red.log 2"):
        max30102_raw.load_record(tmp_path, "vrano714_rpi")
    _write(tmp_path / "vrano714_rpi" / "red.log", "4\nfive\n6\n")
    with pytest.raises(DataError, match="red.log: samples: item 1 'five'"):
        max30102_raw.load_record(tmp_path, "vrano714_rpi")
    with pytest.raises(DataNotFoundError, match="szymanel_rpi"):
        max30102_raw.load_record(tmp_path, "szymanel_rpi")
    with pytest.raises(DataNotFoundError, match="no record 'other'"):
        max30102_raw.load_record(tmp_path, "other")


def _tools(tmp_path, header=None, rows=None):
    header = header if header is not None else {"sampling_rate": 100, "sensorLocations": ["a", "b"]}
    hdr = "\n".join("# " + ln for ln in json.dumps(header, indent=0).splitlines()) if isinstance(header, dict) else header
    rows = rows if rows is not None else [
        f"{10 + i * 0.01:.3f} {i * 10000} {i % 2} {2000000 + i} {3000000 + i} 1 -1" for i in range(10)]
    _write(tmp_path / "jdesbonnet_PPG_Tools" / "x.dat", hdr + "\n" + "\n".join(rows) + "\n")
    return tmp_path


def test_max30102_ppg_tools(tmp_path):
    root = _tools(tmp_path)
    assert max30102_raw.list_records(root) == ["jdesbonnet_x_s0", "jdesbonnet_x_s1"]
    r = max30102_raw.load_record(root, "jdesbonnet_x_s1")
    assert r.ppg.size == 5 and r.fs == pytest.approx(50.0) and r.meta["location"] == "b"
    with pytest.raises(DataError, match="not valid JSON"):
        max30102_raw.load_record(_tools(tmp_path, header='# {"sampling_rate": '), "jdesbonnet_x_s0")
    with pytest.raises(DataError, match="no sampling_rate"):
        max30102_raw.load_record(_tools(tmp_path, header={"sensor": "MAX30102"}), "jdesbonnet_x_s0")
    with pytest.raises(DataError, match="header sampling_rate"):
        max30102_raw.load_record(_tools(tmp_path, header={"sampling_rate": "fast"}), "jdesbonnet_x_s0")
    with pytest.raises(DataError, match="sensor column holds"):
        max30102_raw.load_record(_tools(tmp_path, rows=["1 1 2 1 1 0 0", "2 2 0 1 1 0 0"]), "jdesbonnet_x_s0")
    with pytest.raises(DataError, match="has 6 columns"):
        max30102_raw.load_record(_tools(tmp_path, rows=["1 1 0 1 1 0"]), "jdesbonnet_x_s0")
    with pytest.raises(DataError, match="sensor 1 has 0 rows"):
        max30102_raw.load_record(_tools(tmp_path, rows=["1 1 0 1 1 0 0"]), "jdesbonnet_x_s1")


def test_max30102_run1(tmp_path):
    path = tmp_path / "jdesbonnet_LPC824_MAX30102" / "run1.dat"
    _write(path, b"\x00\n0 10 20\r\n300000 11 21\r\n600000 12 22\r\n")
    r = max30102_raw.load_record(tmp_path, "jdesbonnet_run1")
    assert r.fs == pytest.approx(100.0) and r.ppg.tolist() == [20, 21, 22] and r.meta["nul_bytes_removed"] == 1
    _write(path, b"\x00\n0 10 20\r\n0 11 21\r\n")
    with pytest.raises(DataError, match="tick counter does not increase"):
        max30102_raw.load_record(tmp_path, "jdesbonnet_run1")
    _write(path, b"0 10\r\n")
    with pytest.raises(DataError, match="expected 3"):
        max30102_raw.load_record(tmp_path, "jdesbonnet_run1")


# --------------------------------------------------------- WFDB samples --
def test_wfdb_missing_and_corrupt(tmp_path):
    import wfdb

    with pytest.raises(DataNotFoundError, match="a103l.hea"):
        wfdb_samples.load_record(tmp_path, "a103l")
    with pytest.raises(DataNotFoundError, match="no record 'zzz'"):
        wfdb_samples.load_record(tmp_path, "zzz")
    sig = np.column_stack([np.sin(np.arange(500) / 10), np.cos(np.arange(500) / 10)])
    wfdb.wrsamp("a103l", fs=250, units=["mV", "NU"], sig_name=["II", "PLETH"], p_signal=sig,
                fmt=["16", "16"], write_dir=str(tmp_path))
    r = wfdb_samples.load_record(tmp_path, "a103l")
    assert set(r.signals) == {"ecg", "ppg"} and r.fs == 250 and r.meta["invalid_spans"] == {}
    (tmp_path / "a103l.dat").unlink()
    with pytest.raises(DataNotFoundError, match="a file of this WFDB record is missing"):
        wfdb_samples.load_record(tmp_path, "a103l")
    _write(tmp_path / "a103l.hea", "garbage header\n")
    with pytest.raises(DataError, match="could not read WFDB record"):
        wfdb_samples.load_record(tmp_path, "a103l")


def test_wfdb_no_pleth(tmp_path):
    import wfdb

    wfdb.wrsamp("a103l", fs=250, units=["mV"], sig_name=["II"], p_signal=np.zeros((50, 1)) + 0.5,
                fmt=["16"], write_dir=str(tmp_path))
    with pytest.raises(DataError, match="no PLETH channel"):
        wfdb_samples.load_record(tmp_path, "a103l")
