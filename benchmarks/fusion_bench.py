"""RAVDESS paired fusion benchmark -> docs/benchmarks/fusion.{json,md}.

Face-only (action units), speech-only (acoustic functionals), late fusion and the fusion model, 5 folds
over actors 1-20; see ``emotion_keras.fusion_benchmark`` for the protocol. Runs on CPU in minutes:

    python benchmarks/fusion_bench.py [--data ../shared/data] [--folds 5] [--epochs 80] [--out docs/benchmarks]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=80)
    p.add_argument("--max-folds", type=int, default=None)
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks"))
    args = p.parse_args(argv)

    from emotion_keras.fusion_benchmark import BenchSettings, run_benchmark, write_report

    data = Path(args.data)
    report = run_benchmark(data / "ravdess_face_au" / "au.csv", data / "ravdess_speech",
                           BenchSettings(folds=args.folds, epochs=args.epochs, max_folds=args.max_folds))
    paths = write_report(report, args.out)
    print((Path(paths["md"])).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
