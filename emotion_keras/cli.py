"""The ``emotion-keras`` command line.

``--backend`` is read before anything imports Keras; each verb lives in ``emotion_keras.commands.<verb>``
as a ``register(subparsers)`` function, so the modalities add verbs without touching this file's logic.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from emotion_keras.backend import BACKENDS, set_backend

VERBS = ("predict", "face", "speech", "fusion", "analyze", "tune", "dashboard", "export", "calibrate")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``only`` registers just that verb (its module alone is imported, so ``predict
    --runtime onnx`` never imports Keras through another verb's arguments)."""
    parser = argparse.ArgumentParser(
        prog="emotion-keras",
        description="Emotion recognition from faces, speech and video with Keras 3.")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="Keras backend (default: $KERAS_BACKEND, else tensorflow)")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb in ([only] if only in VERBS else VERBS):
        try:
            module = importlib.import_module(f"emotion_keras.commands.{verb}")
        except ModuleNotFoundError as e:
            if e.name != f"emotion_keras.commands.{verb}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--backend", choices=BACKENDS)
    pre.add_argument("verb", nargs="?")
    known, _ = pre.parse_known_args(argv)
    if known.verb == "export" and not known.backend and "keras" not in sys.modules:
        known.backend = "tensorflow"  # exporters run on TensorFlow; the exported file runs anywhere
    set_backend(known.backend)  # before any command imports keras
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter hides results

    from emotion_keras.config import ConfigError
    from emotion_keras.errors import InputError
    from emotion_keras.labels import LabelError
    from emotion_keras.models.store import ModelLoadError

    args = build_parser(known.verb).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (InputError, ConfigError, LabelError, ModelLoadError, FileNotFoundError) as e:
        print(f"emotion-keras: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("emotion-keras: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
