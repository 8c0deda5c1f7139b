"""``face ensemble``: saved face models as one model averaging their probabilities, scored and
calibrated on the validation split, usable wherever one face model is (recogniser, heatmaps,
evaluation), and refused where members do not fit together."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, benchmark, corpus
from emotion_keras.cli import main
from emotion_keras.config import ConfigError

TINY = json.dumps({"width": 8, "depth": 3, "augment": False, "embedding_dim": 16})
FAST = json.dumps({"warmup_epochs": 0, "label_smoothing": 0.0, "early_stopping": 0})


@pytest.fixture(scope="module")
def members(shared_data, tmp_path_factory):
    """Two tiny CK+48 models of different seeds, a fifth of the subjects held out."""
    ck = corpus(shared_data, "ckplus48")
    root = tmp_path_factory.mktemp("face-ensemble")
    dirs = []
    for seed in (0, 1):
        run = root / f"m{seed}"
        assert main(["face", "train", "--data", f"ckplus:{ck}", "--val-subjects", "0.2", "--limit", "300",
                     "--classes", "happy,surprise,sad", "--epochs", "2", "--batch-size", "32",
                     "--model-config", TINY, "--train-config", FAST, "--seed", str(seed),
                     "--run-dir", str(run), "--verbose", "0"]) == 0
        dirs.append(run)
    return ck, root, dirs


def test_ensemble_averages_its_members_and_is_a_face_model(members, capsys):
    from emotion_keras import explain
    from emotion_keras.models import store
    from emotion_keras.recognizers.face import FaceEmotionRecognizer

    ck, root, dirs = members
    out = root / "ensemble"
    # CK+ declares no splits (the members held out subjects): validate on all of it
    assert main(["face", "ensemble", *map(str, dirs), "--out", str(out), "--name", "tiny-ensemble",
                 "--split", "all", "--tta", "flip"]) == 0
    assert "saved" in capsys.readouterr().out
    net, card = store.load(out)
    cards = [json.loads((d / "card.json").read_text()) for d in dirs]
    assert card["model_config"]["architecture"] == "ensemble" and card["model_config"]["members"] == 2
    assert card["model_config"]["member"] == cards[0]["model_config"] and card["inputs"] == cards[0]["inputs"]
    # scored on the split asked for, with a temperature fitted there
    val = card["metrics"]["validation"]
    n = sum(len(list((ck / d).glob("*.png"))) for d in ("happy", "surprise", "sadness"))
    assert val["n"] == n and "mean of 2 models" in val["protocol"] and "flip TTA" in val["protocol"]
    assert card["tta"] == "flip"
    assert card["calibration"]["n"] == val["n"] and card["calibration"]["temperature"] > 0
    # the prior is the members' mean
    for c in card["classes"]:
        mean = np.mean([k["class_prior"]["frequencies"][c] for k in cards])
        assert card["class_prior"]["frequencies"][c] == pytest.approx(mean, abs=1e-4)
    assert [m["name"] for m in card["ensemble"]["members"]] == [k["name"] for k in cards]

    faces = np.random.default_rng(0).integers(0, 255, (4, 48, 48, 1)).astype("float32")
    each = [store.load(d)[0].predict(faces, verbose=0) for d in dirs]
    np.testing.assert_allclose(net.predict(faces, verbose=0), np.mean(each, axis=0), atol=1e-5)
    heat = explain.heatmap(net, faces)  # the members' maps, averaged
    assert heat.shape == (4, 48, 48) and 0.0 <= heat.min() and heat.max() <= 1.0

    image = next((ck / "happy").glob("*.png"))
    rec = FaceEmotionRecognizer(out)
    res = rec.predict_file(image)
    assert res["faces"] and set(res["faces"][0]["probabilities"]) == set(card["classes"])
    # the recogniser averages the card's views (the face and its mirror) before calibrating
    assert rec.tta == "flip" and FaceEmotionRecognizer(out, tta="none").tta == "none"
    with pytest.raises(ConfigError, match="tta must be one of"):
        FaceEmotionRecognizer(out, tta="five_crop")
    raw = (net.predict(faces, verbose=0) + net.predict(faces[:, :, ::-1], verbose=0)) / 2
    np.testing.assert_allclose(rec.predict_proba(faces), rec._calibrated(raw), atol=1e-5)
    assert not np.allclose(FaceEmotionRecognizer(out, tta="none").predict_proba(faces), rec.predict_proba(faces))

    rep = root / "eval"
    for extra, tta in (([], "flip"), (["--tta", "ten_crop"], "ten_crop")):  # default: the card's views
        assert main(["face", "evaluate", "--model", str(out), "--data", f"ckplus:{ck}", "--split", "all",
                     "--limit", "60", "--out", str(rep), "--json", *extra]) == 0
        assert json.loads(capsys.readouterr().out)["tta"] == tta


def test_ensembles_refuse_misfits(members, capsys):
    ck, root, dirs = members
    assert main(["face", "ensemble", str(dirs[0]), "--out", str(root / "one")]) == 2
    assert "at least two" in capsys.readouterr().err
    speech = ROOT / "saved_models" / "speech"
    assert main(["face", "ensemble", str(dirs[0]), str(speech), "--out", str(root / "mixed")]) == 2
    assert "differs" in capsys.readouterr().err and not (root / "mixed").exists()
    # members that see other crops cannot share one set of views
    cropped = root / "cropped"
    shutil.copytree(dirs[1], cropped)
    card = json.loads((cropped / "card.json").read_text())
    card["model_config"]["crop"] = 40
    (cropped / "card.json").write_text(json.dumps(card))
    assert main(["face", "ensemble", str(dirs[0]), str(cropped), "--out", str(root / "crops")]) == 2
    assert "must share the crop" in capsys.readouterr().err and not (root / "crops").exists()
    out = root / "ensemble2"
    assert main(["face", "ensemble", *map(str, dirs), "--out", str(out), "--split", "all"]) == 0
    capsys.readouterr()
    # an ensemble is no starting point for training
    assert main(["face", "train", "--data", f"ckplus:{ck}", "--init-from", str(out), "--epochs", "1",
                 "--run-dir", str(root / "warm")]) == 2
    assert "ensemble cannot be a starting point" in capsys.readouterr().err


def test_ensemble_card_names_every_corpus_its_members_learnt_from():
    from emotion_keras.pipelines.face_ensemble import members_data

    ferplus = {"corpus": "FER+", "spec": "ferplus-probability:/d/ferplus", "licence": "FER+ labels: MIT"}
    fer = {"corpus": "FER2013", "spec": "fer2013:/d/fer2013", "licence": "FER2013: research use"}
    same = members_data([{"data": ferplus}, {"data": dict(ferplus)}])
    assert same == ferplus
    mixed = members_data([{"data": ferplus}, {"data": ferplus}, {"data": fer}])
    assert mixed["corpus"] == "FER+ + FER2013" and mixed["spec"] == ferplus["spec"]  # validated on the first's
    assert mixed["licence"] == "FER+ labels: MIT; FER2013: research use"
    assert mixed["member_specs"] == [ferplus["spec"], ferplus["spec"], fer["spec"]]
    # a member trained on both (``--add-data``) names them in one string: each is still named once
    both = {"corpus": "FER+ + FER2013", "spec": ferplus["spec"], "licence": "FER+ labels: MIT; FER2013: research use"}
    again = members_data([{"data": ferplus}, {"data": fer}, {"data": both}])
    assert again["corpus"] == "FER+ + FER2013" and again["licence"] == mixed["licence"]


def test_weighted_ensemble_weighs_members_and_loads_safely(members, capsys):
    """``--weights``: a weighted mean of the members' probabilities and of their priors, recorded on
    the card, saved with a registered layer that loads in safe mode; bad weights are named."""
    from emotion_keras.models import store

    ck, root, dirs = members
    out = root / "weighted"
    assert main(["face", "ensemble", *map(str, dirs), "--out", str(out), "--split", "all",
                 "--weights", "1,3"]) == 0
    capsys.readouterr()
    net, card = store.load(out)  # safe mode
    assert card["model_config"]["weights"] == [1.0, 3.0]
    assert "weighted mean (1, 3) of 2 models" in card["metrics"]["validation"]["protocol"]
    faces = np.random.default_rng(1).integers(0, 255, (4, 48, 48, 1)).astype("float32")
    each = [store.load(d)[0].predict(faces, verbose=0) for d in dirs]
    np.testing.assert_allclose(net.predict(faces, verbose=0), 0.25 * each[0] + 0.75 * each[1], atol=1e-5)
    # what export, fusion and the recogniser's embeddings run: the same weighted probabilities
    from emotion_keras.models.fusion import embedding_and_probabilities

    emb, probs = embedding_and_probabilities(net).predict(faces, verbose=0)
    np.testing.assert_allclose(probs, 0.25 * each[0] + 0.75 * each[1], atol=1e-5)
    assert emb.shape == (4, 2 * 16)  # the members' embeddings side by side
    cards = [json.loads((d / "card.json").read_text()) for d in dirs]
    for c in card["classes"]:
        expected = 0.25 * cards[0]["class_prior"]["frequencies"][c] + 0.75 * cards[1]["class_prior"]["frequencies"][c]
        assert card["class_prior"]["frequencies"][c] == pytest.approx(expected, abs=1e-4)

    def refused(*extra):
        try:
            rc = main(["face", "ensemble", *map(str, dirs), "--out", str(root / "bad"), "--split", "all", *extra])
        except SystemExit as e:  # argparse's own refusal of a malformed value
            rc = e.code
        assert rc == 2 and not (root / "bad").exists()
        return capsys.readouterr().err

    assert "--weights: weights must be numbers, 0 or more" in refused("--weights", "1,-1")
    assert "not a comma-separated list of numbers" in refused("--weights", "1,x")
    assert "--weights needs 2 numbers, one per model" in refused("--weights", "1,2,3")
    assert "an ensemble needs at least two models, not 1" in refused("--weights", "1,0")
    assert "finite, 0 or more; got [inf, 1.0]" in refused("--weights", "inf,1")


def test_a_saved_ensemble_joins_as_its_members(members, capsys):
    """A saved ensemble among the models stands for its members, with their weights: it can be rebuilt
    with a model added or a member dropped (weight 0), and its card keeps what each member needs to be
    unpacked again (data, class prior)."""
    from emotion_keras.models import store
    from emotion_keras.pipelines.face_ensemble import face_members

    ck, root, dirs = members
    first = root / "first"
    assert main(["face", "ensemble", *map(str, dirs), "--out", str(first), "--split", "all",
                 "--weights", "1,3"]) == 0
    faces = np.random.default_rng(2).integers(0, 255, (4, 48, 48, 1)).astype("float32")
    m0, m1 = (store.load(d)[0].predict(faces, verbose=0) for d in dirs)
    cards = [json.loads((d / "card.json").read_text()) for d in dirs]

    unpacked = face_members([first, dirs[0]])
    assert [m.source for m in unpacked] == [f"{first}[member_1]", f"{first}[member_2]", str(dirs[0])]
    assert [m.weight for m in unpacked] == [1.0, 3.0, 1.0]
    for m, card in zip(unpacked, [*cards, cards[0]]):  # each member's own card, as it was saved alone
        assert m.card["class_prior"] == card["class_prior"] and m.card["data"] == card["data"]
        assert m.card["model_config"] == card["model_config"] and m.card["classes"] == card["classes"]

    # added to: members keep their weights, a model saved alone weighs 1
    grown = root / "grown"
    assert main(["face", "ensemble", str(first), str(dirs[0]), "--out", str(grown), "--split", "all"]) == 0
    net, card = store.load(grown)
    assert card["model_config"]["members"] == 3 and card["model_config"]["weights"] == [1.0, 3.0, 1.0]
    np.testing.assert_allclose(net.predict(faces, verbose=0), (2 * m0 + 3 * m1) / 5, atol=1e-5)
    assert [e["dir"] for e in card["ensemble"]["members"]] == [m.source for m in unpacked]
    # a member dropped by weight 0, another reweighted
    pruned = root / "pruned"
    assert main(["face", "ensemble", str(first), str(dirs[0]), "--out", str(pruned), "--split", "all",
                 "--weights", "0,3,1"]) == 0
    net, card = store.load(pruned)
    assert card["model_config"]["members"] == 2 and card["model_config"]["weights"] == [3.0, 1.0]
    np.testing.assert_allclose(net.predict(faces, verbose=0), 0.75 * m1 + 0.25 * m0, atol=1e-5)
    for c in card["classes"]:
        expected = 0.75 * cards[1]["class_prior"]["frequencies"][c] + 0.25 * cards[0]["class_prior"]["frequencies"][c]
        assert card["class_prior"]["frequencies"][c] == pytest.approx(expected, abs=1e-4)
    capsys.readouterr()
    # weights count the members, and leave at least two
    for weights, message in (("1,3", "--weights needs 3 numbers, one per model (a saved ensemble counts its members)"),
                             ("0,0,1", "an ensemble needs at least two models, not 1")):
        assert main(["face", "ensemble", str(first), str(dirs[0]), "--out", str(root / "bad"), "--split", "all",
                     "--weights", weights]) == 2
        assert message in capsys.readouterr().err and not (root / "bad").exists()


@pytest.mark.once  # reads the shipped ensemble's card and the real corpora: no backend work to repeat
def test_the_shipped_ensemble_unpacks_with_priors_rebuilt_from_its_corpora(shared_data, monkeypatch):
    """The shipped six-model ensemble was saved before member entries kept their class priors: they
    are rebuilt from each member's training corpus, and weighted as it weighs its members they give
    back the prior on its card."""
    from emotion_keras.pipelines.common import members_prior
    from emotion_keras.pipelines.face_ensemble import face_members

    for name in ("ferplus", "fer2013"):
        corpus(shared_data, name)
    shipped = ROOT / "saved_models" / "face"
    card = json.loads((shipped / "card.json").read_text())
    entries = card["ensemble"]["members"]
    if any("class_prior" in e for e in entries):
        pytest.skip("the shipped ensemble's card keeps its members' priors: nothing to rebuild")
    monkeypatch.chdir(ROOT)  # the card's specs are as its members were trained: relative to the repository
    missing = [s for s in card["data"]["member_specs"] if not Path(s.split(":", 1)[1]).exists()]
    if missing:
        pytest.skip(f"the corpora the shipped members were trained on are not where their card says: {missing}")
    unpacked = face_members([shipped])
    assert [m.card["name"] for m in unpacked] == [e["name"] for e in entries]
    assert [m.weight for m in unpacked] == card["model_config"]["weights"]
    assert {m.card["data"]["corpus"].split(" (")[0] for m in unpacked} == {"FER+", "FER2013"}
    prior = members_prior([m.card for m in unpacked], card["classes"], [m.weight for m in unpacked])
    assert prior["frequencies"] == pytest.approx(card["class_prior"]["frequencies"], abs=2e-6)


def test_weight_grid_counts_each_ratio_once_and_the_rule_keeps_the_floor():
    bench = benchmark("face_ensemble_weights")
    assert sorted(bench.weightings(2, [0, 1, 2])) == [(0, 1), (1, 0), (1, 1), (1, 2), (2, 1)]
    four = bench.weightings(4, [0, 0.5, 1, 2])
    assert (0, 0, 0, 1) in four and (1, 1, 1, 1) in four and (0.5, 0.5, 0.5, 0.5) not in four
    assert len(four) == len({tuple(x / max(w) for x in w) for w in four})
    rows = [{"weights": [1, 0], "ferplus_valid": 0.86, "fer2013_publictest": 0.60},
            {"weights": [1, 1], "ferplus_valid": 0.851, "fer2013_publictest": 0.62},
            {"weights": [0, 1], "ferplus_valid": 0.70, "fer2013_publictest": 0.67}]
    assert bench.choose(rows, 0.85)["weights"] == [1, 1]  # best PublicTest above the floor
    assert bench.choose(rows, 0.9)["weights"] == [1, 1]  # none above: best mean
    assert [r["weights"] for r in bench.pareto(rows)] == [[1, 0], [1, 1], [0, 1]]
    # the ship rule: best mean among weightings at least as good as the shipped one on both sets
    assert bench.over_baseline(rows, (0.70, 0.60))["weights"] == [1, 1]  # means 0.730, 0.7355, 0.685
    assert bench.over_baseline(rows, (0.70, 0.65))["weights"] == [0, 1]
    assert bench.over_baseline(rows, (0.86, 0.62)) is None
    dominated = [*rows, {"weights": [2, 1], "ferplus_valid": 0.851, "fer2013_publictest": 0.61}]
    assert [r["weights"] for r in bench.pareto(dominated)] == [[1, 0], [1, 1], [0, 1]]


def test_weights_bench_scores_members_as_face_evaluate_does(members, tmp_path, monkeypatch):
    """On a tiny FER+ / FER2013 pair: a weighting's row is what ``face evaluate`` measures for the
    ensemble ``face ensemble --weights`` builds (temperature fitted on FER+ Valid, prior correction),
    and the report names the chosen weighting."""
    from PIL import Image

    from emotion_keras.pipelines.face import evaluate_face

    _, _, dirs = members
    rng = np.random.default_rng(3)
    data = tmp_path / "data"
    valid = data / "ferplus" / "FER2013Valid"
    valid.mkdir(parents=True)
    rows = []
    for i in range(12):  # votes: neutral, happiness, surprise, sadness, ...
        name = f"fer{i:07d}.png"
        Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(valid / name)
        votes = [0] * 10
        votes[1 + i % 3] = 8
        rows.append(f'{name},"(0, 0, 48, 48)",{",".join(map(str, votes))}\n')
    (valid / "label.csv").write_text("".join(rows))
    for label in ("happy", "surprise", "sad"):
        d = data / "fer2013" / "validation" / label
        d.mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(d / f"{i}.jpg")
    bench = benchmark("face_ensemble_weights")
    out = tmp_path / "weights"
    monkeypatch.setattr("sys.argv", ["face_ensemble_weights.py", *map(str, dirs), "--data", str(data),
                                     "--grid", "0,1,2", "--out", str(out), "--baseline", "0,0"])
    assert bench.main() == 0
    rep = json.loads(out.with_suffix(".json").read_text())
    assert rep["counts"] == {"ferplus_valid": 12, "fer2013_publictest": 12} and rep["tried"] == 5
    with open(out.with_suffix(".csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and list(rows[0]) == ["w1", "w2", "temperature", "ferplus_valid", "fer2013_publictest",
                                                "megabytes"]
    row = next(r for r in rows if (r["w1"], r["w2"]) == ("1", "2"))
    row = {k: float(v) for k, v in row.items()}
    best = rep["baseline"]["best"]  # every weighting clears 0 / 0: the best mean of all
    assert max(float(r["ferplus_valid"]) + float(r["fer2013_publictest"]) for r in rows) == pytest.approx(
        best["ferplus_valid"] + best["fer2013_publictest"], abs=1e-6)
    # the ensemble `face ensemble --weights 1,2` saves scores what the row says, on both sets
    ensemble = tmp_path / "ensemble"
    assert main(["face", "ensemble", *map(str, dirs), "--out", str(ensemble), "--data",
                 f"ferplus:{data / 'ferplus'}", "--tta", "flip", "--weights", "1,2"]) == 0
    assert json.loads((ensemble / "card.json").read_text())["calibration"]["temperature"] == pytest.approx(
        row["temperature"], abs=1e-3)
    # the row's size (the members' bare sizes summed) is the file's, to the ensemble's own few kB
    assert (ensemble / "model.keras").stat().st_size / 1e6 == pytest.approx(row["megabytes"], abs=0.01)
    for key, folder in (("ferplus_valid", "ferplus"), ("fer2013_publictest", "fer2013")):
        spec = f"{folder}:{data / folder}"
        ev = evaluate_face(ensemble, spec, split="validation", out=tmp_path / "ev" / key, progress=False)
        assert ev["tta"] == "flip" and round(ev["accuracy"], 6) == pytest.approx(row[key])  # the CSV keeps 6 decimals
    md = out.with_suffix(".md").read_text()
    assert "**chosen**" in md and "Pareto front (5 weightings tried)" in md
    # the saved ensemble stands for its two members: the same rows as the members' own folders
    again = tmp_path / "again"
    monkeypatch.setattr("sys.argv", ["face_ensemble_weights.py", str(ensemble), "--data", str(data),
                                     "--grid", "0,1,2", "--out", str(again), "--baseline", "0,0"])
    assert bench.main() == 0
    assert again.with_suffix(".csv").read_text() == out.with_suffix(".csv").read_text()
    assert json.loads(again.with_suffix(".json").read_text())["members"] == [f"{ensemble}[member_{i}]" for i in (1, 2)]
    assert "**best over the baseline** 0 / 0" in md and "--baseline 0,0" in md
    # a size limit that fits one member only: both rules and the front keep to single members
    one = max(rep["member_megabytes"]) * 1.01
    monkeypatch.setattr("sys.argv", ["face_ensemble_weights.py", *map(str, dirs), "--data", str(data),
                                     "--grid", "0,1,2", "--out", str(out), "--baseline", "0,0", "--max-mb", f"{one}"])
    assert bench.main() == 0
    rep = json.loads(out.with_suffix(".json").read_text())
    assert rep["tried"] == 5 and rep["max_mb"] == pytest.approx(one)
    for r in [rep["chosen"], rep["baseline"]["best"], *rep["front"]]:
        assert r["weights"].count(0.0) == 1 and r["megabytes"] <= one
    assert "(3 of 5) are left out" in out.with_suffix(".md").read_text()
