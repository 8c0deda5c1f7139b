"""Where a model's forward pass runs: Keras (TensorFlow or JAX) or ONNX Runtime.

The recognisers talk to a *net* with one small interface, so the same preprocessing, calibration and
result code serves both runtimes:

- ``input_names``, ``input_shapes`` ({name: shape without the batch axis});
- ``probabilities(x)`` -> (n, classes) float32, for a dict of named arrays ``x``;
- ``embed(x)`` -> ``(embedding, probabilities)`` (face and speech nets, used by fusion).

``runtime="onnx"`` reads ``model.onnx`` (written by ``emotion-keras export --format onnx``) beside
the card and imports neither Keras, TensorFlow nor JAX, so a deployment needs only onnxruntime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

RUNTIMES = ("keras", "onnx")
ONNX_FILE = "model.onnx"


class KerasNet:
    """A saved Keras model (loaded in safe mode) behind the net interface."""

    runtime = "keras"

    def __init__(self, model, embedding: bool = False):
        from emotion_keras.models.io import input_names

        self.model = model
        self.input_names = input_names(model)
        self.input_shapes = {n: tuple(t.shape[1:]) for n, t in zip(self.input_names, model.inputs)}
        self._both = None
        if embedding:
            from emotion_keras.models.fusion import embedding_and_probabilities

            self._both = embedding_and_probabilities(model)

    def probabilities(self, x: dict[str, np.ndarray]) -> np.ndarray:
        from emotion_keras.models.io import model_feed

        return np.asarray(self.model.predict_on_batch(model_feed(self.model, x)), np.float32)

    def embed(self, x: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        from emotion_keras.models.io import model_feed

        emb, probs = self._both.predict_on_batch(model_feed(self._both, x))
        return np.asarray(emb, np.float32), np.asarray(probs, np.float32)


class OnnxNet:
    """An exported ``model.onnx`` run by onnxruntime (CPU); outputs as its card's export record says."""

    runtime = "onnx"

    def __init__(self, path: str | Path, outputs: list[str] | None = None, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.input_shapes = {i.name: tuple(d if isinstance(d, int) else None for d in i.shape[1:])
                             for i in self.session.get_inputs()}
        self._outputs = [o.name for o in self.session.get_outputs()]
        self.output_roles = list(outputs or (["embedding", "probabilities"][-len(self._outputs):]))

    def run(self, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {n: np.ascontiguousarray(x[n], np.float32) for n in self.input_names}
        return dict(zip(self.output_roles, self.session.run(self._outputs, feed)))

    def probabilities(self, x: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.run(x)["probabilities"], np.float32)

    def embed(self, x: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        out = self.run(x)
        if "embedding" not in out:
            raise ValueError("this ONNX export has no embedding output")
        return np.asarray(out["embedding"], np.float32), np.asarray(out["probabilities"], np.float32)


def load_net(model_dir: str | Path, runtime: str = "keras", embedding: bool = False):
    """``(net, card, keras_model_or_None)`` for a model directory in the chosen runtime."""
    from emotion_keras.models import store

    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    model_dir = Path(model_dir)
    if runtime == "keras":
        model, card = store.load(model_dir)
        return KerasNet(model, embedding=embedding), card, model
    card = store.read_card(model_dir)
    path = model_dir / ONNX_FILE
    if not path.is_file():
        raise store.ModelLoadError(f"{path}: no ONNX export here; run `emotion-keras export --model "
                                   f"{model_dir} --format onnx` first")
    try:
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise store.ModelLoadError(f"--runtime onnx needs onnxruntime (pip install "
                                   f"'emotion-keras[export]'): {e}") from None
    record: dict[str, Any] = ((card.get("exports") or {}).get("onnx")) or {}
    try:
        return OnnxNet(path, record.get("outputs")), card, None
    except Exception as e:  # onnxruntime raises its own types: name the file and the reason
        raise store.ModelLoadError(f"{path}: could not load ({type(e).__name__}: {e})") from e
