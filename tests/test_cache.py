import numpy as np

from emotion_keras.data import cache


def test_cached_computes_once_and_reuses(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"x": np.arange(5, dtype="uint8")}

    key = cache.cache_key({"size": 48}, "abc")
    a = cache.cached("faces", key, compute, tmp_path)
    b = cache.cached("faces", key, compute, tmp_path)
    assert len(calls) == 1 and np.array_equal(a["x"], b["x"])
    assert cache.cache_key({"size": 64}, "abc") != key


def test_damaged_cache_is_recomputed(tmp_path):
    key = "k"
    (tmp_path / "faces-k.npz").write_bytes(b"not a zip")
    out = cache.cached("faces", key, lambda: {"x": np.ones(3)}, tmp_path)
    assert out["x"].sum() == 3


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "card.json"
    cache.atomic_write_json(path, {"a": 1})

    def boom(f):
        f.write("partial")
        raise RuntimeError("killed")

    try:
        cache.atomic_write(path, boom, mode="w")
    except RuntimeError:
        pass
    assert path.read_text().strip().startswith("{") and list(tmp_path.iterdir()) == [path]
