"""``ppg-edge run``: the streaming runtime, sensor -> DSP -> model -> decoder -> JSON lines."""
from __future__ import annotations

import argparse
import logging

from ppg_edge.edge_runtime.user import CALIBRATION_FILE, PROFILE_FILE  # the device's state files

log = logging.getLogger(__name__)

SOURCES = ("emulated", "replay", "max30102")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run", help="run the streaming runtime (sensor -> model -> beats/HR/BP as JSON lines)",
        description="Read a sensor (real MAX30102, the emulated chip, or a replayed record), run the "
                    "DSP, the peak model and the decoder, and write one JSON event per line.")
    p.add_argument("--board", required=True, help="board identifier or board file (ppg-edge boards)")
    p.add_argument("--source", choices=SOURCES, default="emulated")
    p.add_argument("--record", help="DATASET/RECORD to play (e.g. capnobase/0009); emulated default: "
                                    "a synthetic PPG")
    p.add_argument("--model", help="peak model .tflite (its manifest beside it)")
    p.add_argument("--bp-model", help="BP model: .trees (feature model) or .tflite, manifest kind 'bp' beside it")
    p.add_argument("--profile", help="the wearer's profile (TOML/JSON: age, sex, height_cm, weight_kg): the BP "
                                     "model's profile variant (its manifest's profile_model) then runs")
    p.add_argument("--calibration", help="cuff calibration file (ppg-edge calibrate) for the BP model")
    p.add_argument("--state-dir", help="the wearer's folder (the service's, kept across releases): its "
                                       "profile.toml and calibration.json are used when present")
    p.add_argument("--duration", type=float, help="seconds to run (sensor time)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="emulated/replay clock speed: 1 real time, 10 ten times faster, 0 a virtual "
                        "clock (as fast as possible)")
    p.add_argument("--out", default="-", help="JSON-lines output file ('-': stdout)")
    p.add_argument("--gate", choices=("auto", "network", "classic"), default="auto",
                   help="detector path: quality-gated (auto), always the network, or always classic")
    p.add_argument("--hop", type=int, help="framer hop in model samples (default: the board's runtime.hop_s, "
                                          "else the manifest's)")
    p.add_argument("--interpreter", help="interpreter backend (ai-edge-litert, tflite-runtime, tf.lite)")
    p.add_argument("--hr", type=float, default=72.0, help="synthetic heart rate for the emulated default")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic signal")
    p.add_argument("--data-root", help="data root for --record")
    p.add_argument("--no-status", action="store_true", help="no live status line on stderr")
    p.set_defaults(func=_handle)


def _clock(speed: float):
    from ppg_edge.edge_runtime.sensors import AcceleratedClock, MonotonicClock, VirtualClock
    from ppg_edge.errors import ConfigError

    if speed < 0:
        raise ConfigError(f"--speed must be >= 0, got {speed}")
    if speed == 0:
        return VirtualClock()
    return MonotonicClock() if speed == 1 else AcceleratedClock(speed)




def bp_inputs(args):
    """(BP model path, Profile or None, Calibration / path or None) from --bp-model, --profile,
    --calibration and --state-dir: with a profile, the PPG model's manifest names the profile model
    that runs instead. A state folder's calibration made for another model (a deploy changed the
    model) is set aside with a warning: the service runs uncalibrated rather than not at all."""
    from pathlib import Path

    from ppg_edge.edge_runtime.user import Calibration, Profile
    from ppg_edge.errors import ConfigError
    from ppg_edge.manifest import manifest_path_for, read_manifest

    state = Path(args.state_dir) if getattr(args, "state_dir", None) else None
    profile_path = args.profile or (state / PROFILE_FILE if state and (state / PROFILE_FILE).is_file() else None)
    cal_path = args.calibration
    if args.bp_model is None:
        if args.profile or args.calibration:
            raise ConfigError("--profile and --calibration are for the BP model: give --bp-model too")
        return None, None, None
    path = Path(args.bp_model)
    profile = Profile.load(profile_path) if profile_path else None
    man = read_manifest(manifest_path_for(path))
    if profile is not None and man.get("inputs_kind", "ppg") == "ppg":
        other = man.get("profile_model")
        if not other:
            raise ConfigError(f"{path.name} has no profile variant (no profile_model in its manifest)")
        path = path.with_name(other)
        man = read_manifest(manifest_path_for(path))
    if cal_path is None and state is not None and (state / CALIBRATION_FILE).is_file():
        try:
            cal_path = Calibration.load(state / CALIBRATION_FILE, model_sha256=man["sha256"])
        except ConfigError as exc:
            log.warning("%s; running uncalibrated", exc)
            cal_path = None
    return path, profile, cal_path


def _load_record(name: str, data_root):
    from ppg_edge.data import load_record
    from ppg_edge.errors import ConfigError

    if "/" not in name:
        raise ConfigError(f"--record must be DATASET/RECORD (e.g. capnobase/0009), got {name!r}")
    dataset, rec = name.split("/", 1)
    return load_record(dataset, rec, data_root)


def _settings(board):
    from ppg_edge.edge_runtime.playback import settings_from_board

    return settings_from_board(board)


def _handle(args: argparse.Namespace) -> int:
    import numpy as np

    import ppg_edge.convert  # noqa: F401  (registers the host-only tf.lite interpreter backend)
    from ppg_edge.boards import load_board
    from ppg_edge.edge_runtime.pipeline import ArrayReplay, Pipeline, StatusLine
    from ppg_edge.edge_runtime.quality import QualityConfig
    from ppg_edge.edge_runtime.sensors import SensorEvent, open_sensor
    from ppg_edge.edge_runtime.sinks import JsonLinesSink
    from ppg_edge.errors import ConfigError

    board = load_board(args.board)
    settings = _settings(board)
    fs = settings.output_rate
    events: list[SensorEvent] = []
    sink = JsonLinesSink(args.out)
    status = None if args.no_status else StatusLine()
    full_scale = (1 << settings.resolution_bits) - 1
    try:
        if args.source == "replay":
            if not args.record:
                raise ConfigError("--source replay needs --record DATASET/RECORD")
            rec = _load_record(args.record, args.data_root)
            clock = _clock(args.speed) if args.speed else None
            fs = rec.fs
            times = rec.meta.get("host_time_s")  # a log's own clock: the pipeline measures its rate
            if "ir" in rec.signals and rec.dataset == "max30102-raw":
                from ppg_edge.data.max30102_raw import adc_codes
                from ppg_edge.edge_runtime.sensors import ReplaySensor

                red, ir = adc_codes(rec)  # refuses a file of other values, saying what it holds
                sensor = ReplaySensor(red, ir, fs=fs, clock=clock, times=times)
            else:
                sensor = ArrayReplay(rec.ppg, fs, clock=clock, times=times)
                full_scale = None  # a float record has no ADC scale
        elif args.source == "emulated":
            from ppg_edge.edge_runtime.playback import light_from_ppg
            from ppg_edge.synth import synth_ppg

            if args.record:
                rec = _load_record(args.record, args.data_root)
                light, src_fs = light_from_ppg(rec.ppg), rec.fs
            else:
                dur = (args.duration or 60.0) + 5.0
                s = synth_ppg(dur, 250.0, np.random.default_rng(args.seed), hr_bpm=args.hr)
                light, src_fs = light_from_ppg(s.signal), 250.0
            sensor = open_sensor("emulated", source=light, source_fs=src_fs, clock=_clock(args.speed),
                                 settings=settings, on_event=events.append)
        else:
            if args.speed != 1:
                raise ConfigError("--speed applies to emulated and replay sources only")
            sensor = open_sensor("max30102", bus=board.i2c.bus, address=board.max30102.address,
                                 int_pin=board.max30102.interrupt_gpio, settings=settings,
                                 on_event=events.append)
        bp_model, profile, calibration = bp_inputs(args)
        pipe = Pipeline(fs, sink, model_path=args.model, bp_model_path=bp_model, profile=profile,
                        calibration=calibration,
                        full_scale=full_scale, quality=QualityConfig(gate=args.gate),
                        backend=args.interpreter, preference=board.interpreters, hop=args.hop,
                        hop_s=board.runtime.hop_s if board.runtime is not None else None, status=status)
        # replay sensors keep their own events; the driver reports through on_event
        own = getattr(sensor, "events", None) if args.source == "replay" else None
        summary = pipe.run_sensor(sensor, own if own is not None else events, args.duration)
    finally:
        sink.close()
    log.info("run finished: %d beats, HR %s bpm, %d of %d windows suppressed, %d samples lost",
             summary["beats"], summary["hr_bpm"], summary["suppressed"], summary["windows"], summary["lost"])
    return 0
