"""Face detector benchmark -> docs/benchmarks/face_detect.{json,md}.

Protocol:

* **Detection rate**: every ``wild_faces/images/*.jpg`` (370 web/film/LFW photos, each with one
  labelled face; mostly 350x350, some small pre-cropped heads) through ``FaceDetector()`` with its
  defaults; a photo counts as detected when at least one face is returned. Load failures are listed.
  With ``--reference`` (TensorFlow backend only) the ``mtcnn`` 1.0.0 package runs on the same photos
  with the same thresholds (min face 20 px, 0.6/0.7/0.7) for comparison: its rate and the IoU of the
  two top boxes where both found a face.
* **Latency**: ``detect()`` on a real 640x480 photo with one face (frame 20 of CREMA-D
  ``1001_DFA_ANG_XX.flv``, 480x360, scaled to 640x480), 3 warm-up calls then ``--runs`` timed
  calls; median and 90th percentile wall time, and median process CPU time (the machine is shared,
  so wall time includes waiting for a core; the 1-minute load average is recorded).

    python benchmarks/face_detect_bench.py [--data ../shared/data] [--runs 50] [--reference]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FRAME_CLIP = "cremad_av/data/1001_DFA_ANG_XX.flv"
FRAME_INDEX = 20


def photo_640x480(data: Path) -> np.ndarray:
    import av
    import cv2

    with av.open(str(data / FRAME_CLIP)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == FRAME_INDEX:
                rgb = frame.to_ndarray(format="rgb24")
                break
    return cv2.resize(rgb, (640, 480), interpolation=cv2.INTER_LINEAR)


def detection_rate(files, detector, reference=None):
    from tqdm import tqdm

    from emotion_keras.errors import InputError
    from emotion_keras.preprocess.images import load_image

    found, missed, errors, counts, cpu = 0, [], [], [], []
    ref_found, ious = 0, []
    for path in tqdm(files, desc="wild_faces", unit="photo"):
        try:
            img = load_image(path)
        except InputError as exc:
            errors.append(str(exc))
            continue
        start = time.process_time()
        faces = detector.detect(img)
        cpu.append(time.process_time() - start)
        counts.append(len(faces))
        if faces:
            found += 1
        else:
            missed.append(path.name)
        if reference is not None:
            theirs = reference.detect_faces(img, min_face_size=20, threshold_pnet=0.6,
                                            threshold_rnet=0.7, threshold_onet=0.7)
            if theirs:
                ref_found += 1
                if faces:
                    ious.append(_iou(faces[0].box, theirs[0]["box"]))
    n = len(files) - len(errors)
    result = {
        "photos": len(files), "loaded": n, "detected": found,
        "rate": round(found / n, 4) if n else None,
        "faces_per_photo": {str(k): int(v) for k, v in zip(*np.unique(counts, return_counts=True))},
        "median_cpu_ms_per_photo": round(1000 * float(np.median(cpu)), 1) if cpu else None,
        "missed": missed, "load_errors": errors,
    }
    if reference is not None:
        result["mtcnn_package"] = {
            "detected": ref_found, "rate": round(ref_found / n, 4) if n else None,
            "top_box_iou_median": round(float(np.median(ious)), 3) if ious else None,
            "top_box_iou_min": round(float(np.min(ious)), 3) if ious else None,
            "compared": len(ious),
        }
    return result


def _iou(a, b):
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    inter = max(0, min(ax2, bx2) - max(a[0], b[0])) * max(0, min(ay2, by2) - max(a[1], b[1]))
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


def latency(img, detector, runs: int) -> dict:
    for _ in range(3):
        faces = detector.detect(img)
    wall, cpu = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        faces = detector.detect(img)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return {"faces": len(faces), "box": list(faces[0].box) if faces else None,
            "median_ms": round(1000 * float(np.median(wall)), 1),
            "p90_ms": round(1000 * float(np.percentile(wall, 90)), 1),
            "median_cpu_ms": round(1000 * float(np.median(cpu)), 1), "runs": runs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--reference", action="store_true",
                   help="also run the mtcnn package (TensorFlow backend) for comparison")
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks"))
    args = p.parse_args(argv)

    from emotion_keras.data.cache import atomic_write_json, atomic_write_text
    from emotion_keras.preprocess.face_detect import FaceDetector

    data = Path(args.data)
    files = sorted((data / "wild_faces" / "images").glob("*.jpg"))
    if not files:
        p.error(f"no photos under {data / 'wild_faces' / 'images'}")
    reference = None
    if args.reference:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        from mtcnn import MTCNN

        reference = MTCNN()

    detector = FaceDetector()
    settings = {k: getattr(detector, k) for k in ("min_face_size", "min_face_fraction", "thresholds",
                                                  "max_side", "scale_factor", "pad_retry")}
    rate = detection_rate(files, detector, reference)
    img = photo_640x480(data)
    load_before = os.getloadavg()[0]
    lat = {"default": latency(img, detector, args.runs),
           "min_face_20px": latency(img, FaceDetector(min_face_fraction=0.0), args.runs)}
    report = {
        "benchmark": "face_detect",
        "protocol": __doc__.split("Protocol:")[1].split("    python")[0].strip(),
        "detector_settings": settings,
        "wild_faces": rate,
        "latency_640x480": lat,
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "numpy": np.__version__},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out = Path(args.out)
    atomic_write_json(out / "face_detect.json", report)
    md = [
        "### Face detection (numpy MTCNN, `emotion_keras.preprocess.face_detect`)",
        "",
        f"Measured {report['date']} by `benchmarks/face_detect_bench.py` on {os.cpu_count()} CPU cores "
        f"(shared; 1-min load average {report['load_average_1min'][0]}-{report['load_average_1min'][1]}).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| wild_faces photos with a face found (defaults) | {rate['detected']}/{rate['loaded']} "
        f"= {100 * rate['rate']:.1f} % |",
    ]
    if "mtcnn_package" in rate:
        ref = rate["mtcnn_package"]
        md.append(f"| same photos, `mtcnn` 1.0.0 package (min face 20 px) | {ref['detected']}/{rate['loaded']}"
                  f" = {100 * ref['rate']:.1f} %; top-box IoU with ours median {ref['top_box_iou_median']}"
                  f" (min {ref['top_box_iou_min']}) |")
    for name, label in (("default", "defaults (min face 8 % of the shorter side)"),
                        ("min_face_20px", "min face 20 px")):
        r = lat[name]
        md.append(f"| `detect()` 640x480, one face, {label} | median {r['median_ms']} ms wall "
                  f"(p90 {r['p90_ms']}), {r['median_cpu_ms']} ms CPU |")
    parts = report["protocol"].strip().removeprefix("* ").split("\n* ")
    bullets = ["* " + " ".join(part.split()) for part in parts]
    md += ["", "Protocol:", "", *bullets, ""]
    atomic_write_text(out / "face_detect.md", "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
