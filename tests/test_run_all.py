"""benchmarks/run_all.py (``make bench``): every benchmark script is in its table, and a benchmark
whose data is absent is skipped with what is missing, never half-run."""

from __future__ import annotations

from conftest import benchmark


def test_every_benchmark_script_is_in_the_table(capsys):
    run_all = benchmark("run_all")
    assert run_all.unlisted() == []
    assert all(b.script.is_file() for b in run_all.BENCHES)
    assert run_all.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(b.name in out for b in run_all.BENCHES)


def test_absent_data_is_skipped_by_name_and_only_picks(tmp_path, capsys):
    run_all = benchmark("run_all")
    assert run_all.main(["--dry-run", "--data", str(tmp_path), "--only", "speech_bench,augment_bench"]) == 0
    out = capsys.readouterr().out
    assert f"speech_bench: skipped, missing data {tmp_path / 'ravdess_speech'}" in out
    assert "augment_bench: " in out and "augment_bench.py" in out  # no data needed: it would run
    assert run_all.main(["--only", "no_such_bench"]) == 2
    assert run_all.main(["--only", "face_bench,video_bench", "--", "--runs", "3"]) == 2  # -- goes to one
    (tmp_path / "ravdess_speech").mkdir()
    assert run_all.main(["--dry-run", "--data", str(tmp_path), "--only", "speech_bench", "--", "--quick"]) == 0
    assert f"--data {tmp_path / 'ravdess_speech'} --quick" in capsys.readouterr().out
