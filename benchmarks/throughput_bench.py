"""Batched throughput of ``predict`` -> docs/benchmarks/throughput.{json,md}.

Protocol (shipped models, ``KERAS_BACKEND`` default TensorFlow, this machine's 2 CPU cores):

* **Photos**: ``--photos`` real photos from ``wild_faces/images`` (sorted names, the first N),
  resized to 640x480 and written as JPEG (quality 92) to a temporary folder. One-at-a-time path:
  ``FaceEmotionRecognizer.predict_file`` per file (what ``predict`` did before batching). Batched:
  ``FaceEmotionRecognizer.predict_files`` (2 threads decode + detect, faces of 32 images per model
  call), as ``emotion-keras predict DIR`` runs it. Both warmed up on 4 photos first; images/s =
  photos / wall seconds; faces found must agree.
* **Video**: ``--clips`` CREMA-D audio-visual clips (``cremad_av/data``, sorted, the first N;
  480x360 FLV), ``MultimodalEmotionRecognizer.analyze`` at 5 frames/s, window 2.5 s, hop 1 s.
  One-at-a-time: ``frame_batch=1`` (the face model called once per window's new frames, as before);
  batched: ``frame_batch=32`` (frames of several windows in one call). frames/s = sampled frames
  analysed (detection, alignment, face model; the speech model on the audio too) / wall seconds.

    python benchmarks/throughput_bench.py [--data ../shared/data] [--photos 96] [--clips 12]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _photos(data: Path, n: int, folder: Path) -> list[Path]:
    import cv2

    src = sorted((data / "wild_faces" / "images").iterdir())[:n]
    out = []
    for p in src:
        img = cv2.imread(str(p))
        if img is None:
            continue
        q = folder / f"{p.stem}.jpg"
        cv2.imwrite(str(q), cv2.resize(img, (640, 480), interpolation=cv2.INTER_AREA),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
        out.append(q)
    return out


def bench_photos(paths: list[Path]) -> dict:
    from emotion_keras.recognizers.face import FaceEmotionRecognizer

    rec = FaceEmotionRecognizer()
    list(rec.predict_files(paths[:4]))
    for p in paths[:4]:
        rec.predict_file(p)
    t = time.perf_counter()
    single = [rec.predict_file(p) for p in paths]
    t_single = time.perf_counter() - t
    t = time.perf_counter()
    batched = list(rec.predict_files(paths, batch_size=32, workers=2))
    t_batched = time.perf_counter() - t
    faces = [len(r.get("faces", [])) for r in single]
    assert faces == [len(r.get("faces", [])) for r in batched], "batched and single results differ"
    return {"photos": len(paths), "faces": sum(faces),
            "one_at_a_time_images_per_s": round(len(paths) / t_single, 2),
            "batched_images_per_s": round(len(paths) / t_batched, 2),
            "speedup": round(t_single / t_batched, 2)}


def bench_video(clips: list[Path]) -> dict:
    from emotion_keras.preprocess.video import iter_frames
    from emotion_keras.recognizers.multimodal import MultimodalEmotionRecognizer

    rec = MultimodalEmotionRecognizer()
    rec.analyze(clips[0])
    frames = sum(1 for c in clips for _ in iter_frames(c, 5.0, 1280))  # the frames analyze samples
    out = {"clips": len(clips), "sampled_frames": frames}
    for name, batch in (("one_at_a_time", 1), ("batched", 32)):
        rec.frame_batch = batch
        t = time.perf_counter()
        for c in clips:
            rec.analyze(c, fps=5.0, window=2.5, hop=1.0)
        out[f"{name}_frames_per_s"] = round(frames / (time.perf_counter() - t), 2)
    out["speedup"] = round(out["batched_frames_per_s"] / out["one_at_a_time_frames_per_s"], 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--photos", type=int, default=96)
    ap.add_argument("--clips", type=int, default=12)
    args = ap.parse_args()
    import keras

    from emotion_keras.data.cache import atomic_write_json, atomic_write_text

    data = Path(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        photos = bench_photos(_photos(data, args.photos, Path(tmp)))
    clips = sorted((data / "cremad_av" / "data").glob("*.flv"))[:args.clips]
    video = bench_video(clips)
    load = os.getloadavg()[0]
    result = {"backend": keras.backend.backend(), "cpus": os.cpu_count(), "load_1min": round(load, 2),
              "machine": platform.machine(), "photos": photos, "video": video}
    atomic_write_json(ROOT / "docs" / "benchmarks" / "throughput.json", result)
    md = ["# Batched throughput (`emotion-keras predict DIR`)", "",
          f"Machine: {os.cpu_count()} CPU cores (shared; 1-minute load {load:.1f} at the end), no GPU; "
          f"Keras backend {result['backend']}. Reproduce: `python benchmarks/throughput_bench.py` "
          "(protocol in its docstring).", "",
          "| input | one at a time | batched | speed-up |", "|---|---:|---:|---:|",
          f"| {photos['photos']} wild_faces photos at 640x480 ({photos['faces']} faces) | "
          f"{photos['one_at_a_time_images_per_s']} images/s | {photos['batched_images_per_s']} images/s | "
          f"{photos['speedup']}x |",
          f"| {video['clips']} CREMA-D clips, 480x360, 5 frames/s ({video['sampled_frames']} frames) | "
          f"{video['one_at_a_time_frames_per_s']} frames/s | {video['batched_frames_per_s']} frames/s | "
          f"{video['speedup']}x |", ""]
    atomic_write_text(ROOT / "docs" / "benchmarks" / "throughput.md", "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
