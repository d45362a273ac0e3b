"""The device side of ``ppg-edge bench arm``: one run of the device path, launched by the host.

Run as a script (``python arm_device.py SPEC.json``) by :mod:`ppg_edge.evaluate.arm_bench`
under the counting ``qemu-aarch64`` (and once on the host, for the equivalence check). It
imports only the edge runtime (numpy, the interpreter) and the counter's stage marker.

``mode: "path"``: the real MAX30102 driver reads prepared FIFO bytes from :class:`FifoBus`
(a bus fake that costs next to nothing) or, with ``bus: "emulated"``, from the emulated
chip; the pipeline runs on them to the sink. With ``stages`` each stage marks itself (see
:data:`STAGES`). ``mode: "models"``: each model file is invoked ``invokes`` times under its
own stage id (after two warm-up invokes). ``mode: "calls"``: each of :func:`calls` runs
``repeats`` times under its own stage id.
"""
from __future__ import annotations

import json
import sys

STAGES = {"start-up": 0, "driver": 1, "resampler": 2, "iir": 3, "dwt": 4, "framing": 5, "quality": 6,
          "invoke": 7, "classic": 8, "decoder": 9, "bp": 10, "sink": 11, "chip": 12, "pipeline": 13,
          "bus-fake": 14}
MODEL_STAGE0 = 32  # models (and calls): the i-th model counts under stage MODEL_STAGE0 + i


class FifoBus:
    """An smbus2-like bus serving prepared MAX30102 FIFO bytes, ``burst`` samples per read."""

    def __init__(self, fifo: bytes, burst: int, clock, fs: float):
        from ppg_edge.edge_runtime.sensors import registers as R

        self.R, self.data, self.burst, self.clock, self.fs = R, fifo, int(burst), clock, float(fs)
        self.regs: dict[int, int] = {}
        self.pos = 0
        self.rd = 0
        self.exhausted = False

    def read_byte_data(self, addr: int, reg: int) -> int:
        if reg == self.R.PART_ID:
            return self.R.PART_ID_VALUE
        return self.regs.get(reg, 0) & (~self.R.MODE_RESET & 0xFF if reg == self.R.MODE_CONFIG else 0xFF)

    def write_byte_data(self, addr: int, reg: int, value: int) -> None:
        self.regs[reg] = value

    def i2c_rdwr(self, wr, rd) -> None:
        from ppg_edge.edge_runtime.sensors._i2c import fill_read_msg

        reg = bytes(wr)[0]
        if reg == self.R.FIFO_DATA:
            chunk = self.data[self.pos:self.pos + len(rd)]
            self.pos += len(chunk)
            self.rd = (self.rd + len(chunk) // 6) & self.R.POINTER_MASK
            self.exhausted = self.pos >= len(self.data)
            fill_read_msg(rd, chunk)
            return
        n = min(self.burst, (len(self.data) - self.pos) // 6)
        out = bytes([0, 0, 0, 0, (self.rd + n) & self.R.POINTER_MASK, 0, self.rd])
        fill_read_msg(rd, out[:len(rd)])

    def wait_for_interrupt(self, timeout: float) -> bool:
        self.clock.sleep(self.burst / self.fs)
        return True

    def close(self) -> None:
        pass


_STACK = [0]  # the stage stack of the markers; its bottom is the stage outside every wrapped call


def _markers(enabled: bool):
    if not enabled:
        return lambda obj, name, stage: None
    from ppg_edge.boards.virtual.insn import mark

    stack = _STACK

    def wrap(obj, name: str, stage: str) -> None:
        sid = STAGES[stage]
        fn = getattr(obj, name)

        def wrapped(*a, **k):
            stack.append(sid)
            mark(sid)
            try:
                return fn(*a, **k)
            finally:
                stack.pop()
                mark(stack[-1])

        setattr(obj, name, wrapped)

    return wrap


def run_path(spec: dict) -> dict:
    import numpy as np

    from ppg_edge.edge_runtime import pipeline as pl
    from ppg_edge.edge_runtime.quality import QualityConfig
    from ppg_edge.edge_runtime.sensors import EmulatedMax30102, Max30102, Max30102Settings, VirtualClock
    from ppg_edge.edge_runtime.sinks import JsonLinesSink

    wrap = _markers(bool(spec.get("stages")))
    settings = Max30102Settings(**spec["settings"])  # sample_rate, averaging, almost_full
    fs = settings.output_rate
    n = int(round(spec["seconds"] * fs))
    clock = VirtualClock()
    if spec.get("bus", "fake") == "emulated":
        light = np.load(spec["light"])
        bus = EmulatedMax30102(light, float(spec["light_fs"]), clock=clock)
        for name in ("read_byte_data", "write_byte_data", "i2c_rdwr", "wait_for_interrupt"):
            wrap(bus, name, "chip")
    else:
        fifo = np.load(spec["fifo"]).tobytes()[:6 * n]
        # rate_error: the chip's clock runs this fraction fast (bursts come sooner; the same bytes)
        bus = FifoBus(fifo, settings.almost_full, clock, fs * (1.0 + float(spec.get("rate_error", 0.0))))
        for name in ("read_byte_data", "write_byte_data", "i2c_rdwr", "wait_for_interrupt"):
            wrap(bus, name, "bus-fake")
    sensor = Max30102(bus, settings=settings, clock=clock, wait_for_interrupt=bus.wait_for_interrupt)
    sensor.start()
    sink = JsonLinesSink(spec.get("events") or "/dev/null")
    pipe = pl.Pipeline(fs, sink, model_path=spec.get("model"), bp_model_path=spec.get("bp_model"),
                       full_scale=(1 << settings.resolution_bits) - 1,
                       quality=QualityConfig(gate=spec.get("gate", "auto")), hop=spec.get("hop"))
    wrap(sensor, "read", "driver")
    wrap(sensor, "_read_cycle", "driver")
    wrap(pipe.resampler, "push", "resampler")
    wrap(pipe.stream, "_filter_block", "iir")
    wrap(pipe.stream, "_features", "dwt")
    wrap(pipe.stream, "push", "framing")
    wrap(pipe.gate, "assess", "quality")
    if pipe.model is not None:
        wrap(pipe.model, "predict_window", "invoke")
    wrap(pl, "classic_probs", "classic")
    for name in ("push", "flush", "metrics"):
        wrap(pipe.decoder, name, "decoder")
    if pipe.bp is not None:
        wrap(pipe.bp, "push", "bp")
    wrap(sink, "emit", "sink")
    from ppg_edge.boards.virtual.insn import mark

    _STACK[0] = STAGES["pipeline"]  # the pipeline's own glue: what no wrapped stage takes
    mark(STAGES["pipeline"])
    summary = pipe.run_sensor(sensor, [], None if spec.get("bus", "fake") != "emulated" else spec["seconds"])
    _STACK[0] = 0
    mark(0)
    sink.close()
    return {k: summary[k] for k in ("samples", "windows", "suppressed", "beats", "hr_bpm", "paths")}


def run_models(spec: dict) -> dict:
    import numpy as np

    from ppg_edge.boards.virtual.insn import mark
    from ppg_edge.edge_runtime.interpreter import EdgeModel

    out = {}
    rng = np.random.default_rng(0)
    for i, path in enumerate(spec["models"]):
        kind = "bp" if "bp-" in path.rsplit("/", 1)[-1] else "peaks"
        m = EdgeModel(path, kind=kind)
        shape = tuple(int(s) for s in m.input_shape)
        x = rng.standard_normal(shape[1:]).astype(np.float32) * 0.5
        for _ in range(2):
            m.invoke(x)
        mark(MODEL_STAGE0 + i)
        for _ in range(int(spec["invokes"])):
            m.invoke(x)
        mark(0)
        out[path] = {"invokes": int(spec["invokes"]), "input_shape": list(shape)}
    return out


def calls() -> list[tuple[str, object]]:
    """``(name, function)`` of the calls the device path's stages are made of, on arrays the size
    of a window (250 samples): what one of them costs on the core tells how far a stage built
    of them can be cut without leaving Python and numpy."""
    import numpy as np

    x = np.linspace(0.0, 1.0, 250)
    encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    beat = {"type": "beat", "t": 12.3456, "index": 1543, "sensor_index": 617, "prob": 0.9731, "rr_s": 0.5432}

    def nothing():
        return None

    return [("Python call of a function that does nothing", nothing),
            ("numpy slice view x[10:200]", lambda: x[10:200]),
            ("numpy ufunc x + 1.0", lambda: x + 1.0),
            ("numpy reduction np.add.reduce(x)", lambda: np.add.reduce(x)),
            ("np.mean(x) (a Python-level wrapper)", lambda: np.mean(x)),
            ("np.concatenate of two halves", lambda: np.concatenate((x[:125], x[125:]))),
            ("np.fft.rfft(x)", lambda: np.fft.rfft(x)),
            ("x.tolist() (250 Python floats)", lambda: x.tolist()),
            ("round(12.34567, 4)", lambda: round(12.34567, 4)),
            ("one JSON line of a beat event", lambda: encode(beat))]


def run_calls(spec: dict) -> dict:
    from ppg_edge.boards.virtual.insn import mark

    todo = calls()
    for i, (_, fn) in enumerate(todo):
        fn(), fn()  # warm-up: first-use caches
        mark(MODEL_STAGE0 + i)
        for _ in range(int(spec["repeats"])):
            fn()
        mark(0)
    return {"calls": [name for name, _ in todo], "repeats": int(spec["repeats"])}


def main(argv: list[str]) -> int:
    spec = json.loads(open(argv[1]).read())
    run = {"path": run_path, "models": run_models, "calls": run_calls}[spec["mode"]]
    result = run(spec)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
