"""Video in, emotion timeline out: faces and speech per window, fused by the saved fusion model.

``MultimodalEmotionRecognizer().analyze("clip.mp4")`` streams the file
(:func:`emotion_keras.preprocess.video.iter_windows`), so memory stays bounded for hours of video:

- every sampled frame goes through face detection (MTCNN), alignment and the face model once, even
  when windows overlap; the *main* face is tracked from frame to frame (the detection that overlaps
  the tracked box most, else the largest confident one), and between full-frame searches it is
  re-detected only in a region around its last box, which keeps analysis fast on a CPU;
- each window's audio goes through the speech model's preprocessing (trim, log-mel) and model;
- both models' ``"embedding"`` outputs go into the fusion model (``saved_models/fusion``); a window
  with only one modality (no face found, silence, no audio track, or a video-only file) gets that
  modality's own probabilities as its fused result, and ``modalities`` says which were present.

Probabilities are reported per modality in that model's own classes; fused results are in the
fusion model's classes. Where the speech model has a class the fusion model lacks (RAVDESS ``calm``),
its probability is added to ``neutral`` when mapping speech-only windows to the fused classes.
Without a saved fusion model the recogniser falls back to late fusion (equal weights) and says so. The
fusion card's ``inference`` field says whether its head beat late fusion (with the card's tuned face
weight) on validation data; ``method="auto"`` follows it, ``"head"``/``"late"`` force one.
"""

from __future__ import annotations

import csv
import io
import warnings as _warnings
from pathlib import Path
from typing import Any

import numpy as np

from emotion_keras.errors import InputError
from emotion_keras.preprocess import video as V
from emotion_keras.recognizers.base import Recognizer

MERGE_INTO = {"calm": "neutral", "contempt": "disgust", "boredom": "neutral"}


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def project(probs: np.ndarray, source: list[str], target: list[str]) -> np.ndarray:
    """Map probabilities over ``source`` classes onto ``target`` classes (unknown mass merged by
    ``MERGE_INTO`` or dropped), renormalised.

    Args:
        probs: ``(..., len(source))`` probabilities.
        source: their classes.
        target: the classes wanted.
    """
    probs = np.asarray(probs, np.float32)
    out = np.zeros((*probs.shape[:-1], len(target)), np.float32)
    index = {c: i for i, c in enumerate(target)}
    for j, c in enumerate(source):
        k = index.get(c, index.get(MERGE_INTO.get(c, ""), None))
        if k is not None:
            out[..., k] += probs[..., j]
    total = out.sum(-1, keepdims=True)
    return np.where(total > 0, out / np.maximum(total, 1e-12), 1.0 / len(target))


class FaceTracker:
    """Finds and follows the main face across sampled frames.

    A full-frame search runs on the first frame, every ``redetect`` frames and whenever the face is
    lost; in between, only a region ``roi_scale`` times the last box is searched (several times
    faster). Among candidates the one overlapping the tracked box most wins, else the largest.
    """

    def __init__(self, full_detector=None, roi_detector=None, min_confidence: float = 0.9,
                 redetect: int = 10, roi_scale: float = 1.8):
        """Args:
            full_detector: the whole-frame detector (default MTCNN at 480 px, faces >= 8% of the frame).
            roi_detector: the detector for the region around the last box (default 160 px).
            min_confidence: detections below this are ignored.
            redetect: a full-frame search at least every this many frames.
            roi_scale: the searched region's side, in multiples of the last box's.
        """
        from emotion_keras.preprocess.face_detect import FaceDetector

        self.full = full_detector or FaceDetector(max_side=480, min_face_fraction=0.08)
        self.roi = roi_detector or FaceDetector(max_side=160, min_face_fraction=0.35, pad_retry=False)
        self.min_confidence = float(min_confidence)
        self.redetect = int(redetect)
        self.roi_scale = float(roi_scale)
        self.box = None
        self.since_full = 0

    def _pick(self, faces):
        faces = [f for f in faces if f.confidence >= self.min_confidence]
        if not faces:
            return None
        if self.box is not None:
            best = max(faces, key=lambda f: _iou(f.box, self.box))
            if _iou(best.box, self.box) > 0.2:
                return best
        return max(faces, key=lambda f: f.box[2] * f.box[3] * f.confidence)

    def _roi_detect(self, rgb):
        from emotion_keras.preprocess.face_detect import Face

        x, y, w, h = self.box
        H, W = rgb.shape[:2]
        s = max(w, h) * self.roi_scale
        cx, cy = x + w / 2, y + h / 2
        x0, y0 = int(max(0, cx - s / 2)), int(max(0, cy - s / 2))
        x1, y1 = int(min(W, cx + s / 2)), int(min(H, cy + s / 2))
        if x1 - x0 < 24 or y1 - y0 < 24:
            return []
        faces = self.roi.detect(rgb[y0:y1, x0:x1])
        return [Face(box=(f.box[0] + x0, f.box[1] + y0, f.box[2], f.box[3]), confidence=f.confidence,
                     keypoints={k: (px + x0, py + y0) for k, (px, py) in f.keypoints.items()})
                for f in faces]

    def __call__(self, rgb):
        face = None
        if self.box is not None and self.since_full < self.redetect:
            face = self._pick(self._roi_detect(rgb))
            self.since_full += 1
        if face is None:
            face = self._pick(self.full.detect(rgb))
            self.since_full = 0
        self.box = tuple(face.box) if face is not None else None
        return face


def _warn_if_retrained(card: dict[str, Any], **components) -> None:
    """The fusion head reads the embeddings of the face and speech models it was trained with; a
    component model saved since (another name or date on its card) feeds it embeddings it never saw."""
    for task, rec in components.items():
        trained = card.get(f"{task}_model") or {}
        now = getattr(rec, "card", None) or {}
        if trained and any(trained.get(k) and now.get(k) and trained[k] != now[k] for k in ("name", "date")):
            _warnings.warn(f"the fusion head was trained on the embeddings of {task} model "
                           f"{trained.get('name')} ({trained.get('date')}), but the {task} model loaded is "
                           f"{now.get('name')} ({now.get('date')}): retrain it with `emotion-keras fusion train`, "
                           "or use method='late'", stacklevel=4)


def _fusion_config(card: dict[str, Any], runtime: str):
    """The fusion card's model config; under ONNX read as saved (FusionConfig's module imports keras)."""
    if runtime == "keras":
        from emotion_keras.models.fusion import FusionConfig

        return FusionConfig.from_dict(card.get("model_config") or {})
    import types

    return types.SimpleNamespace(**(card.get("model_config") or {}))


class MultimodalEmotionRecognizer(Recognizer):
    """Face + speech emotion over time in a video (or audio) file.

    Composed of a :class:`~emotion_keras.recognizers.face.FaceEmotionRecognizer` (``face``) and a
    :class:`~emotion_keras.recognizers.speech.SpeechEmotionRecognizer` (``speech``), whose
    preprocessing, batching and calibration it uses, and the fusion head (``net``, None: late fusion).
    Load with ``MultimodalEmotionRecognizer.from_dir(fusion_dir, face_dir, speech_dir, ...)`` (or the
    shorthand ``MultimodalEmotionRecognizer(fusion_dir, ...)``, or ``Recognizer.from_preset("fusion")``).
    """

    task = "fusion"
    stored_parts = ("face", "speech", "net", "card")

    def __init__(self, *, face, speech, net=None, card: dict[str, Any] | None = None, model=None,
                 tracker: FaceTracker | None = None, method: str = "auto", model_dir: str | Path | None = None,
                 runtime: str = "keras"):
        """Args:
            face: the face recogniser (its model gives the face embeddings and probabilities).
            speech: the speech recogniser.
            net: the fusion head's forward pass (None: late fusion with equal weights).
            card: the fusion model's card (None or ``{}`` without a fusion model).
            model: the fusion head's Keras model (None under ONNX or without one).
            tracker: follows the main face across frames (None: a :class:`FaceTracker` per file).
            method: ``auto`` (the card's choice), ``head`` or ``late``.
            model_dir: the fusion folder (named in messages).
            runtime: ``"keras"`` or ``"onnx"``.
        """
        if method not in ("auto", "head", "late"):
            raise ValueError(f"method must be auto, head or late, not {method!r}")
        card = card or {}
        super().__init__(net=net, card=card, model=model, model_dir=model_dir, runtime=runtime)
        self.face, self.speech = face, speech
        self.tracker = tracker
        self.method = method
        self.frame_batch = 32  # sampled frames per face-model call, across windows (1: window by window)
        if net is not None:
            self.fusion_config = _fusion_config(card, runtime)
            self.late_weight = float(card.get("late_fusion_face_weight", 0.5))
            # auto: the card's choice (the head only where it beat late fusion on validation data)
            self.use_head = method == "head" or (method == "auto" and card.get("inference", "fusion_head")
                                                 == "fusion_head")
            if self.use_head:
                _warn_if_retrained(card, face=face, speech=speech)
        else:
            self.fusion_config = None
            self.classes = list(face.classes)
            self.late_weight = 0.5
            self.use_head = False

    @classmethod
    def from_dir(cls, directory: str | Path | None = None, face_dir: str | Path | None = None,
                 speech_dir: str | Path | None = None, tracker: FaceTracker | None = None,
                 method: str = "auto", runtime: str = "keras"):
        """Load the fusion head and the face and speech models it fuses.

        Args:
            directory: the fusion model folder (None: ``saved_models/fusion``); without a card there,
                late fusion with equal weights (with a warning).
            face_dir: the face model folder (None: ``saved_models/face``).
            speech_dir: the speech model folder (None: ``saved_models/speech``).
            tracker: see the constructor.
            method: ``auto`` (the card's choice), ``head`` or ``late``.
            runtime: ``"keras"`` or ``"onnx"`` (each folder's ``model.onnx``, no TensorFlow/JAX).
        """
        from emotion_keras.models import store
        from emotion_keras.recognizers.face import FaceEmotionRecognizer
        from emotion_keras.recognizers.speech import SpeechEmotionRecognizer

        face = FaceEmotionRecognizer.from_dir(face_dir, runtime=runtime)
        speech = SpeechEmotionRecognizer.from_dir(speech_dir, runtime=runtime)
        directory = Path(directory) if directory else store.default_model_dir("fusion")
        net = model = None
        card: dict[str, Any] = {}
        if (directory / store.CARD_FILE).exists():
            net, card, model, directory = cls._load(directory, runtime)
        else:
            _warnings.warn(f"no fusion model in {directory}: fusing by late fusion (equal weights)", stacklevel=3)
        return cls(face=face, speech=speech, net=net, card=card, model=model, tracker=tracker, method=method,
                   model_dir=directory, runtime=runtime)

    # names kept from before the recogniser was composed
    fusion = property(lambda self: self.net, doc="the fusion head's net (None: late fusion only)")
    fusion_card = property(lambda self: self.card)
    fusion_dir = property(lambda self: self.model_dir)
    face_classes = property(lambda self: self.face.classes)
    speech_classes = property(lambda self: self.speech.classes)

    @property
    def main_input(self) -> str:
        return self.net.input_names[0]

    # ------------------------------------------------------------------ per modality

    def _faces(self, frames: list[V.Frame]) -> list[dict | None]:
        """Track, align and classify the main face in each frame: embedding, probabilities, box."""
        if self.tracker is None:
            self.tracker = FaceTracker(min_confidence=self.face.prep.min_confidence)
        found, crops, geoms = [], [], []
        for f in frames:
            face = self.tracker(f.image)
            if face is None:
                found.append(None)
                continue
            images, geometry = self.face.preprocessor.align(f.image, [face])
            crops.append(images[0])
            if geometry is not None:
                geoms.append(geometry[0])
            found.append(face)
        out: list[dict | None] = [None] * len(frames)
        if not crops:
            return out
        emb, probs = self.face.embeddings({"image": np.stack(crops), "geometry": np.stack(geoms) if geoms else None})
        j = 0
        for i, face in enumerate(found):
            if face is not None:
                out[i] = {"embedding": emb[j], "probs": probs[j], "box": [int(v) for v in face.box]}
                j += 1
        return out

    def _speech(self, audio: np.ndarray | None, sr: int, running: dict | None = None) -> dict | None:
        """Speech embedding and probabilities of one window's audio (None: no audio, silence, too short).
        ``running``: one file's speaker-normalisation state, so a speaker-normalised model
        standardises each window with the statistics of all the file's speech so far, not of 2.5 s."""
        if audio is None or audio.size == 0:
            return None
        try:
            x, _ = self.speech.preprocessor(audio, sr, name="<window>", running=running)
        except InputError:
            return None
        emb, probs = self.speech.embeddings(x)
        return {"embedding": emb.mean(0), "probs": probs.mean(0)}

    def fusion_inputs(self, face_embeddings: np.ndarray | None, speech_embedding: np.ndarray | None,
                      ) -> dict[str, np.ndarray]:
        """The fusion head's inputs (a batch of one) for one window.

        Args:
            face_embeddings: the window's face embeddings ``(frames, dim)``.
            speech_embedding: its pooled speech embedding ``(dim,)``.
        """
        from emotion_keras.models.io import pad_frames

        cfg = self.fusion_config
        x = {}
        if "face" in cfg.modalities:
            frames, mask = pad_frames([face_embeddings], cfg.max_frames, cfg.face_dim)
            x.update(face_frames=frames, face_mask=mask)
        if "speech" in cfg.modalities:
            x["speech"] = np.asarray(speech_embedding)[None]
        return {k: x[k] for k in self.net.input_names}

    def predict_proba(self, inputs) -> np.ndarray:
        """The fusion head's calibrated probabilities for its inputs (:meth:`fusion_inputs`).

        Args:
            inputs: a dict of the head's named inputs (``face_frames``, ``face_mask``, ``speech``).
        """
        if self.net is None:
            raise ValueError(f"no fusion model in {self.model_dir}: only late fusion is available")
        return super().predict_proba(inputs)

    def _fuse(self, faces: list[dict], speech: dict | None) -> tuple[np.ndarray | None, str]:
        face_p = project(np.mean([f["probs"] for f in faces], 0), self.face_classes, self.classes) \
            if faces else None
        speech_p = project(speech["probs"], self.speech_classes, self.classes) if speech else None
        if face_p is None and speech_p is None:
            return None, "none"
        if face_p is None:
            return speech_p, "speech only"
        if speech_p is None:
            return face_p, "face only"
        if self.net is None or not self.use_head:
            return self.late_weight * face_p + (1 - self.late_weight) * speech_p, "late fusion"
        x = self.fusion_inputs(np.stack([f["embedding"] for f in faces]), speech["embedding"])
        return self.predict_proba(x)[0], "fusion"

    # ------------------------------------------------------------------ public API

    def _windows(self, path: Path, config: V.VideoConfig, info: V.MediaInfo, warnings: list[str]):
        """Per window: ``(window, face results, face track, speech result)``, frames classified once.

        Windows are read ahead until ``frame_batch`` new frames are waiting, and those frames (from
        several windows) go through the face model in one call; at most that many frames and their
        windows are held, so memory stays bounded for any length of video.
        """
        self.tracker = None  # a new file: forget the previous face
        running: dict = {}  # and the previous speaker's statistics
        frame_results: dict[float, dict | None] = {}
        pending: list = []  # (window, its frames not classified yet)
        waiting = 0

        def drain():
            new = [f for _, fs in pending for f in fs]
            for f, r in zip(new, self._faces(new)):
                frame_results[f.time] = r
            for win, _ in pending:
                faces = [frame_results[f.time] for f in win.frames if frame_results.get(f.time) is not None]
                track = [[round(f.time, 3), *frame_results[f.time]["box"]] for f in win.frames
                         if frame_results.get(f.time) is not None]
                for t in [t for t in frame_results if t < win.start + config.hop]:
                    del frame_results[t]  # older frames are never needed again (bounded memory)
                yield win, faces, track, self._speech(win.audio, win.sample_rate, running)
            pending.clear()

        queued: set[float] = set()
        for win in V.iter_windows(path, config, info, warnings):
            new = [f for f in win.frames if f.time not in frame_results and f.time not in queued]
            queued.update(f.time for f in new)
            pending.append((win, new))
            waiting += len(new)
            if waiting >= self.frame_batch:
                yield from drain()
                queued.clear()
                waiting = 0
        yield from drain()

    def embed(self, path: str | Path, window: float = 2.5, hop: float = 1.0, fps: float = 5.0,
              max_side: int = 1280):
        """Per window ``{"start", "end", "face": (frames, dim) embeddings or None, "speech": (dim,) or
        None}``: the fusion model's inputs, for training a head on real audio-visual clips.

        Args:
            path: a video (or audio) file.
            window, hop: window length and step in seconds.
            fps: frames sampled per second.
            max_side: frames are scaled down to this longer side.
        """
        path = Path(path)
        config = V.VideoConfig(fps=fps, window=window, hop=hop, max_side=max_side)
        for win, faces, _, speech in self._windows(path, config, V.probe(path), []):
            yield {"start": win.start, "end": win.end,
                   "face": np.stack([f["embedding"] for f in faces]) if faces else None,
                   "speech": speech["embedding"] if speech else None}

    def analyze(self, path: str | Path, window: float = 2.5, hop: float = 1.0, fps: float = 5.0,
                max_side: int = 1280, progress: bool = False) -> dict[str, Any]:
        """The emotion timeline of a video (or audio) file.

        Returns ``{"file", "media", "window", "hop", "fps", "windows": [{"start", "end",
        "modalities", "face", "speech", "fused"}], "emotion", "probabilities", "modalities",
        "warnings"}``; ``face``/``speech`` are None in windows without that modality.

        Args:
            path: a video (or audio) file, streamed (bounded memory).
            window, hop: window length and step in seconds.
            fps: frames sampled per second.
            max_side: frames are scaled down to this longer side.
            progress: show a progress bar (seconds of media).
        """
        path = Path(path)
        config = V.VideoConfig(fps=fps, window=window, hop=hop, max_side=max_side)
        info = V.probe(path)
        warnings: list[str] = []
        rows, fused_all = [], []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=round(info.duration or 0, 1) or None, unit="s", desc=path.name)
        for win, faces, track, speech in self._windows(path, config, info, warnings):
            fused, method = self._fuse(faces, speech)
            mods = (["face"] if faces else []) + (["speech"] if speech else [])
            row: dict[str, Any] = {"start": round(win.start, 3), "end": round(win.end, 3),
                                   "modalities": mods, "face": None, "speech": None, "fused": None}
            if faces:
                fp = np.mean([f["probs"] for f in faces], 0)
                row["face"] = {"emotion": self.face_classes[int(fp.argmax())],
                               "probabilities": self.labels(fp, self.face_classes),
                               "frames": len(faces), "sampled_frames": len(win.frames),
                               "box": faces[len(faces) // 2]["box"],
                               "track": track}
            if speech:
                row["speech"] = {"emotion": self.speech_classes[int(speech["probs"].argmax())],
                                 "probabilities": self.labels(speech["probs"], self.speech_classes)}
            if fused is not None:
                row["fused"] = {"emotion": self.classes[int(fused.argmax())],
                                "probabilities": self.labels(fused, self.classes), "method": method}
                fused_all.append(fused)
            rows.append(row)
            if bar is not None:
                bar.update(max(0.0, min(win.end, info.duration or win.end) - bar.n))
        if bar is not None:
            bar.close()
        present = sorted({m for r in rows for m in r["modalities"]})
        result: dict[str, Any] = {
            "file": str(path), "media": {k: v for k, v in info.to_dict().items() if k != "path"},
            "window": window, "hop": hop, "fps": fps, "classes": self.classes, "windows": rows,
            "modalities": present, "emotion": None, "probabilities": None, "warnings": warnings}
        if not info.has_audio:
            warnings.append(f"{path}: no audio track: face only")
        if not info.has_video:
            warnings.append(f"{path}: no video track: speech only")
        if fused_all:
            mean = np.mean(fused_all, 0)
            result["emotion"] = self.classes[int(mean.argmax())]
            result["probabilities"] = self.labels(mean, self.classes)
        else:
            warnings.append(f"{path}: no face and no speech found in any window")
        return result

    def predict_file(self, path: str | Path, **kwargs) -> dict[str, Any]:
        """The fused result per file (the ``emotion-keras predict video.mp4`` JSON line).

        Args:
            path: a video (or audio) file.
            **kwargs: :meth:`analyze`'s options (``window``, ``hop``, ``fps``, ``max_side``).
        """
        t = self.analyze(path, **kwargs)
        out = {"file": t["file"], "emotion": t["emotion"], "probabilities": t["probabilities"],
               "modalities": t["modalities"],
               "windows": [{"start": w["start"], "end": w["end"], "modalities": w["modalities"],
                            "emotion": (w["fused"] or {}).get("emotion")} for w in t["windows"]]}
        if t["warnings"]:
            out["warnings"] = t["warnings"]
        return out


# ---------------------------------------------------------------------- outputs

def timeline_csv(timeline: dict[str, Any]) -> str:
    """One CSV row per window: times, modalities, each modality's emotion and the fused probabilities.

    Args:
        timeline: a result of :meth:`MultimodalEmotionRecognizer.analyze`.
    """
    classes = timeline["classes"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["start", "end", "modalities", "face_emotion", "speech_emotion", "fused_emotion",
                "method", *[f"p_{c}" for c in classes]])
    for r in timeline["windows"]:
        fused = r["fused"] or {}
        probs = fused.get("probabilities") or {}
        w.writerow([r["start"], r["end"], "+".join(r["modalities"]), (r["face"] or {}).get("emotion", ""),
                    (r["speech"] or {}).get("emotion", ""), fused.get("emotion", ""), fused.get("method", ""),
                    *[probs.get(c, "") for c in classes]])
    return buf.getvalue()


def _window_at(timeline, t: float):
    best = None
    for r in timeline["windows"]:
        if r["start"] <= t < r["end"]:
            centre = (r["start"] + r["end"]) / 2
            if best is None or abs(centre - t) < abs((best["start"] + best["end"]) / 2 - t):
                best = r
    return best


def _draw(image: np.ndarray, row: dict | None, t: float) -> np.ndarray:
    import cv2

    img = np.ascontiguousarray(image.copy())
    scale = max(0.4, img.shape[1] / 640)
    label = f"{t:6.1f}s"
    if row is not None:
        face = row.get("face") or {}
        box = face.get("box")
        if face.get("track"):  # the box of the frame nearest in time
            box = min(face["track"], key=lambda e: abs(e[0] - t))[1:]
        if box:
            x, y, w, h = box
            cv2.rectangle(img, (x, y), (x + w, y + h), (0, 255, 0), max(1, int(2 * scale)))
        fused = row.get("fused")
        if fused:
            label += f"  {fused['emotion']} {max(fused['probabilities'].values()):.2f} ({'+'.join(row['modalities'])})"
    cv2.rectangle(img, (0, 0), (img.shape[1], int(28 * scale)), (0, 0, 0), -1)
    cv2.putText(img, label, (4, int(20 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.55 * scale, (255, 255, 255),
                max(1, int(scale)), cv2.LINE_AA)
    return img


def write_annotated(path: str | Path, timeline: dict[str, Any], out: str | Path, fps: float = 5.0,
                    max_side: int = 960) -> Path:
    """An mp4 of the sampled frames with the face box and the fused emotion drawn on (no audio),
    decoded again from ``path`` (streaming) and written atomically.

    Args:
        path: the analysed video.
        timeline: its :meth:`MultimodalEmotionRecognizer.analyze` result.
        out: the mp4 to write.
        fps: frames per second drawn.
        max_side: frames are scaled down to this longer side.
    """
    import av

    from emotion_keras.data.cache import atomic_write

    out = Path(out)

    def write(f):
        c = av.open(f, "w", format="mp4")
        stream = None
        try:
            for frame in V.iter_frames(path, fps, max_side):
                img = _draw(frame.image, _window_at(timeline, frame.time), frame.time)
                if stream is None:
                    h, w = img.shape[:2]
                    stream = c.add_stream("libx264", rate=int(round(fps)) or 5)
                    stream.width, stream.height = w - w % 2, h - h % 2
                    stream.pix_fmt = "yuv420p"
                vf = av.VideoFrame.from_ndarray(img[:stream.height, :stream.width], format="rgb24")
                for p in stream.encode(vf):
                    c.mux(p)
            if stream is None:
                raise InputError(path, "no video frames to annotate")
            for p in stream.encode():
                c.mux(p)
        finally:
            c.close()

    return atomic_write(out, write)


def write_contact_sheet(path: str | Path, timeline: dict[str, Any], out: str | Path, columns: int = 4,
                        max_tiles: int = 32, tile_width: int = 320) -> Path:
    """A JPEG/PNG grid with one frame per window (its middle frame), labelled with the fused emotion.

    Args:
        path: the analysed video.
        timeline: its :meth:`MultimodalEmotionRecognizer.analyze` result.
        out: the image to write (``.jpg`` or ``.png``).
        columns: tiles per row.
        max_tiles: at most this many windows, evenly spread.
        tile_width: pixels per tile.
    """
    import cv2

    from emotion_keras.data.cache import atomic_write

    rows = timeline["windows"]
    if len(rows) > max_tiles:
        rows = [rows[i] for i in np.linspace(0, len(rows) - 1, max_tiles).round().astype(int)]
    wanted = [(r["start"] + r["end"]) / 2 for r in rows]
    tiles: list[np.ndarray | None] = [None] * len(rows)
    k = 0
    for frame in V.iter_frames(path, 10.0, 1280):
        while k < len(wanted) and frame.time >= wanted[k] - 0.05:
            tiles[k] = _draw(frame.image, rows[k], frame.time)
            k += 1
        if k >= len(wanted):
            break
    tiles = [t for t in tiles if t is not None]
    if not tiles:
        raise InputError(path, "no video frames for a contact sheet (audio-only file?)")
    h0, w0 = tiles[0].shape[:2]
    th = int(round(h0 * tile_width / w0))
    tiles = [cv2.resize(t, (tile_width, th), interpolation=cv2.INTER_AREA) for t in tiles]
    n_rows = int(np.ceil(len(tiles) / columns))
    sheet = np.full((n_rows * th, min(columns, len(tiles)) * tile_width, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * th:(r + 1) * th, c * tile_width:(c + 1) * tile_width] = t
    out = Path(out)
    ext = out.suffix.lower() if out.suffix.lower() in (".jpg", ".jpeg", ".png") else ".jpg"
    ok, buf = cv2.imencode(ext, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(out, "could not encode the contact sheet")
    return atomic_write(out, lambda f: f.write(buf.tobytes()))
