"""``emotion-keras analyze VIDEO...``: the emotion timeline of video (or audio) files.

Per window (``--window`` seconds every ``--hop`` seconds, frames sampled at ``--fps``): the face, speech
and fused probabilities and which modalities were present. Output: a readable table, ``--json`` (one
JSON object per file per line), ``--csv FILE`` (one row per window; with several inputs the file name
gets the input's stem), ``--annotate OUT.mp4`` (the sampled frames with the face box and the fused
emotion drawn on) or ``--contact-sheet OUT.jpg`` (one labelled frame per window). A failed file gives
an error line and the batch goes on; the exit code is 1 if any failed.
"""

from __future__ import annotations

import json
from pathlib import Path

from emotion_keras.commands.common import add_batch_parser, batch_exit


def register(subparsers) -> None:
    p = add_batch_parser(
        subparsers, "analyze", help="emotion timeline of a video (faces + speech, fused)",
        description="Emotion timeline of video files: faces and speech per window, fused by the "
                    "fusion model (saved_models/fusion). Audio-only and video-only files give the "
                    "modality present.",
        metavar="VIDEO", json_help="print the timeline as one JSON object per file")
    p.add_argument("--csv", metavar="FILE", help="write one CSV row per window")
    p.add_argument("--window", type=float, default=2.5, help="window length in seconds (default 2.5)")
    p.add_argument("--hop", type=float, default=1.0, help="step between windows in seconds (default 1.0)")
    p.add_argument("--fps", type=float, default=5.0, help="frames sampled per second (default 5)")
    p.add_argument("--max-side", type=int, default=1280, help="larger frames are downscaled to this")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--annotate", metavar="OUT.mp4", help="write an annotated video (sampled frames)")
    out.add_argument("--contact-sheet", metavar="OUT.jpg", help="write a contact sheet, one frame per window")
    p.add_argument("--fusion-dir", help="fusion model directory (default saved_models/fusion)")
    p.add_argument("--face-dir", help="face model directory (default saved_models/face)")
    p.add_argument("--speech-dir", help="speech model directory (default saved_models/speech)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_analyze)


def _per_input(path: str | None, src: Path, many: bool) -> Path | None:
    if not path:
        return None
    p = Path(path)
    return p.with_name(f"{p.stem}_{src.stem}{p.suffix}") if many else p


def _summary(t: dict) -> str:
    if t.get("error"):
        return f"{t['file']}: error: {t['error']}"
    lines = [f"{t['file']}: {t['emotion'] or 'no face or speech found'}"
             + (f" ({max(t['probabilities'].values()):.2f})" if t["probabilities"] else "")
             + f"  modalities: {'+'.join(t['modalities']) or 'none'}"]
    for w in t["windows"]:
        fused = w["fused"] or {}
        face = (w["face"] or {}).get("emotion", "-")
        speech = (w["speech"] or {}).get("emotion", "-")
        lines.append(f"  {w['start']:7.1f}-{w['end']:7.1f}s  {fused.get('emotion', '-'):<9} "
                     f"face {face:<9} speech {speech:<9} [{'+'.join(w['modalities']) or 'none'}]")
    for msg in t.get("warnings", []):
        lines.append(f"  warning: {msg}")
    return "\n".join(lines)


def cmd_analyze(args) -> int:
    import warnings

    from emotion_keras.data.cache import atomic_write_text
    from emotion_keras.errors import InputError
    from emotion_keras.preprocess.video import VideoConfig
    from emotion_keras.recognizers import multimodal as M

    VideoConfig(fps=args.fps, window=args.window, hop=args.hop, max_side=args.max_side)  # validate early
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the recogniser's own fallback notice is in its result
        rec = M.MultimodalEmotionRecognizer(args.fusion_dir, args.face_dir, args.speech_dir)
    many = len(args.files) > 1
    failed = 0
    for name in args.files:
        src = Path(name)
        try:
            t = rec.analyze(src, window=args.window, hop=args.hop, fps=args.fps, max_side=args.max_side,
                            progress=not (args.quiet or args.json))
            if rec.fusion is None:
                t["warnings"].append("no saved fusion model: windows with both modalities use late fusion")
            if (csv_path := _per_input(args.csv, src, many)) is not None:
                atomic_write_text(csv_path, M.timeline_csv(t))
            if (ann := _per_input(args.annotate, src, many)) is not None:
                M.write_annotated(src, t, ann, fps=args.fps)
            if (sheet := _per_input(args.contact_sheet, src, many)) is not None:
                M.write_contact_sheet(src, t, sheet)
        except InputError as e:
            failed += 1
            t = {"file": str(src), "error": e.problem}
        print(json.dumps(t) if args.json else _summary(t), flush=True)
    return batch_exit(failed, len(args.files))
