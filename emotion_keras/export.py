"""Export a saved model to ONNX, LiteRT (TFLite) or a TensorFlow SavedModel, card beside it.

Face and speech models are exported with two outputs, ``[embedding, probabilities]``, so one file
serves the face/speech recognisers and the fusion pipeline; fusion heads keep their one output.
Exporting goes through Keras 3's ``model.export`` (tf2onnx for ONNX, the TFLite converter for
LiteRT) on the TensorFlow backend, whatever backend trained the model (``.keras`` files are
backend-agnostic); ``emotion-keras export`` picks TensorFlow unless ``--backend`` says otherwise.
The exported file is written atomically and checked
against the Keras model on seeded inputs (``parity_max_abs_diff`` on the card's export record);
``tests/test_export.py`` checks parity on real faces and speech.

The card copied beside the file gains ``exports[<format>]``: file, outputs, source model and its
SHA-256, parity, versions. The calibration temperature travels on that card, so a deployment with
only ``card.json`` + ``model.onnx`` gives the same calibrated probabilities (``--runtime onnx``).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from emotion_keras.config import ConfigError

FORMATS = {"onnx": "model.onnx", "tflite": "model.tflite", "saved_model": "saved_model"}
KERAS_FORMAT = {"onnx": "onnx", "tflite": "litert", "saved_model": "tf_saved_model"}


def export_net(model, card: dict[str, Any]):
    """The Keras model that is exported: ``[embedding, probabilities]`` for face/speech models."""
    from emotion_keras.models.fusion import embedding_and_probabilities

    if card.get("task") in ("face", "speech"):
        return embedding_and_probabilities(model), ["embedding", "probabilities"]
    return model, ["probabilities"]


def sample_inputs(net, n: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs in each input's usual range (images 0-255, masks 0/1, features ~N(0, 1))."""
    from emotion_keras.models.io import input_names

    rng = np.random.default_rng(seed)
    out = {}
    for name, t in zip(input_names(net), net.inputs):
        shape = (n, *[int(d) for d in t.shape[1:]])
        if name == "image":
            out[name] = rng.integers(0, 256, shape).astype(np.float32)
        elif name.endswith("mask"):
            out[name] = (rng.random(shape) < 0.7).astype(np.float32)
        else:
            out[name] = rng.standard_normal(shape).astype(np.float32)
    return out


_CAPTURE = re.compile(r"(?:^|/)([A-Za-z0-9_]+?)(?:_\d+)?/(Sub/y|Sqrt/x):0$")


def _bake_captures(m, net) -> bool:
    """Turn graph inputs that are really captured constants into initializers.

    A ``Normalization`` layer keeps its adapted mean and variance as plain tensors, which tf2onnx
    leaves as extra graph inputs (``<layer>/Sub/y:0``, ``<layer>/Sqrt/x:0``); their values are the
    layer's ``mean`` and ``variance``. Anything else unexplained is an error, not a silent guess.
    """
    from onnx import numpy_helper

    from emotion_keras.models.io import input_names

    wanted = set(input_names(net))
    layers = {layer.name: layer for layer in _all_layers(net)}
    keep, changed = [], False
    for inp in m.graph.input:
        if inp.name in wanted:
            keep.append(inp)
            continue
        match = _CAPTURE.search(inp.name)
        layer = layers.get(match.group(1)) if match else None
        value = None if layer is None else getattr(layer, "mean" if match.group(2) == "Sub/y" else "variance", None)
        if value is None:
            raise RuntimeError(f"ONNX export left an unexplained graph input {inp.name!r}")
        shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        m.graph.initializer.append(numpy_helper.from_array(
            np.asarray(value, np.float32).reshape(shape), inp.name))
        changed = True
    if changed:
        del m.graph.input[:]
        m.graph.input.extend(keep)
    return changed


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _fix_onnx(path: Path, net) -> None:
    """Make tf2onnx's output a valid, self-contained ONNX model: captured constants baked in, and
    ``Erfc(x)`` (from exact GELU; not an ONNX op) rewritten as ``1 - Erf(x)``."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(path))
    changed = _bake_captures(m, net)
    nodes = []
    for node in m.graph.node:
        if node.op_type != "Erfc":
            nodes.append(node)
            continue
        changed = True
        erf, one = f"{node.name}/erf_out", f"{node.name}/one"
        m.graph.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), one))
        nodes.append(helper.make_node("Erf", [node.input[0]], [erf], name=f"{node.name}/Erf"))
        nodes.append(helper.make_node("Sub", [one, erf], list(node.output), name=f"{node.name}/Sub"))
    if changed:
        del m.graph.node[:]
        m.graph.node.extend(nodes)
        onnx.checker.check_model(m)
        onnx.save(m, str(path))


def run_exported(path: str | Path, fmt: str, x: dict[str, np.ndarray], roles: list[str]) -> dict[str, np.ndarray]:
    """Run an exported artifact on named inputs: ``{role: array}`` in ``roles`` order."""
    path = Path(path)
    x = {k: np.ascontiguousarray(v, np.float32) for k, v in x.items()}
    if fmt == "onnx":
        from emotion_keras.runtime import OnnxNet

        return OnnxNet(path, roles).run(x)
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        runner = interpreter.get_signature_runner()
        static = all(int(d["shape_signature"][0]) == 1 for d in interpreter.get_input_details())
        rows = [{k: v[i:i + 1] for k, v in x.items()} for i in range(len(next(iter(x.values()))))] \
            if static else [x]  # a batch-1 export (recurrent models) runs sample by sample
        outs = [runner(**row) for row in rows]
        keys = sorted(outs[0], key=lambda k: int(k.rsplit("_", 1)[-1]) if k[-1].isdigit() else k)
        return {r: np.concatenate([np.asarray(o[k]) for o in outs]) for r, k in zip(roles, keys)}
    if fmt == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))  # kept alive while serve runs: it owns the variables
        serve = loaded.serve
        spec = serve.concrete_functions[0].structured_input_signature[0][0]
        args = {k: x[k] for k in spec} if isinstance(spec, dict) else \
            [x[s.name] for s in spec] if isinstance(spec, (list, tuple)) else x[spec.name]
        out = serve(args)
        out = out if isinstance(out, (list, tuple)) else [out]
        return {r: np.asarray(o) for r, o in zip(roles, out)}
    raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def keras_outputs(net, x: dict[str, np.ndarray], roles: list[str]) -> dict[str, np.ndarray]:
    from emotion_keras.models.io import model_feed

    out = net.predict_on_batch(model_feed(net, x))
    out = out if isinstance(out, (list, tuple)) else [out]
    return {r: np.asarray(o, np.float32) for r, o in zip(roles, out)}


def _export(net, path: Path, fmt: str) -> int | None:
    """``net.export``; returns the fixed batch size (None: any). LiteRT gets builtin ops only, so the
    file runs in the plain LiteRT interpreter (no Flex delegate); a recurrent layer's loop lowers to
    builtins only with static shapes, so such models are exported with batch 1."""
    if fmt != "tflite":
        net.export(str(path), format=KERAS_FORMAT[fmt], verbose=False)
        return None
    import tensorflow as tf

    from emotion_keras.models.io import input_names

    builtins = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
    recurrent = ("GRU", "LSTM", "RNN", "Bidirectional", "SimpleRNN")
    if not any(type(layer).__name__ in recurrent for layer in _all_layers(net)):
        net.export(str(path), format="litert", verbose=False, target_spec=builtins)
        return None
    specs = [tf.TensorSpec((1, *[int(d) for d in t.shape[1:]]), tf.float32, name=n)
             for n, t in zip(input_names(net), net.inputs)]
    signature = [dict(zip(input_names(net), specs))] if isinstance(net.input, dict) else \
        [specs[0] if len(specs) == 1 else specs]
    net.export(str(path), format="litert", verbose=False, target_spec=builtins, input_signature=signature)
    return 1


def export_model(model_dir: str | Path, fmt: str, out: str | Path | None = None,
                 check: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Export the model in ``model_dir`` as ``fmt``; returns the export record written on the card.

    ``out``: a folder to put ``model.onnx``/``model.tflite``/``saved_model/`` in (created), or a file
    ending ``.onnx``/``.tflite``; default: the model directory. ``card.json`` beside it is the model's card
    plus this record.
    """
    import keras

    from emotion_keras.data.cache import atomic_write_json
    from emotion_keras.models import store

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    backend = keras.backend.backend()
    if backend != "tensorflow":  # Keras exports ONNX on JAX through jax2onnx, not a dependency here
        raise ConfigError(f"{fmt} export needs the TensorFlow backend (`emotion-keras --backend tensorflow "
                          f"export ...`; the exported file then runs anywhere); this process runs {backend}")
    model_dir = Path(model_dir)
    model, card = store.load(model_dir)
    net, roles = export_net(model, card)
    out = Path(out) if out else model_dir
    if out.suffix.lower() != Path(FORMATS[fmt]).suffix or fmt == "saved_model":
        out = out / FORMATS[fmt]  # a folder: the file goes in it, beside the card
    out.parent.mkdir(parents=True, exist_ok=True)
    x = check if check is not None else sample_inputs(net)
    expected = keras_outputs(net, x, roles)
    from emotion_keras.models.io import model_feed

    net(model_feed(net, {k: v[:1] for k, v in x.items()}))  # export needs a model that has been called
    tmp = out.parent / f".tmp{os.getpid()}.{out.name}"  # LiteRT insists on the .tflite suffix
    try:
        batch = _export(net, tmp, fmt)
        if fmt == "onnx":
            _fix_onnx(tmp, net)
        if out.is_dir():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
    got = run_exported(out, fmt, x, roles)
    diff = max(float(np.max(np.abs(got[r] - expected[r]))) for r in roles)
    record = {"format": fmt, "file": out.name, "outputs": roles, "inputs": card.get("inputs"), "batch": batch,
              "source_model": str(model_dir), "source_sha256": store.digest(model_dir),
              "parity_max_abs_diff": diff, "parity_inputs": f"{len(next(iter(x.values())))} seeded samples",
              "backend": backend, "versions": store.versions(),
              "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    beside = out.parent / store.CARD_FILE
    base = store.read_card(out.parent) if beside.exists() and out.parent.resolve() == model_dir.resolve() \
        else card
    atomic_write_json(beside, {**base, "exports": {**(base.get("exports") or {}), fmt: record}})
    return {**record, "path": str(out), "card": str(beside)}
