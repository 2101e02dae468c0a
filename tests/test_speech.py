"""Spoken digits end to end: FSDD download (from a local file:// mirror), training both twins on a
small synthetic set, transcribe across the twins, and bad input through the real CLI.

The real-data runs (>= 98% on the official split in both twins, the speaker-held-out table, real
recordings transcribed across the twins) take minutes on 2 cores; their numbers are in BENCHMARKS.md (Task results)."""

import io
import json
import os
import stat
import tarfile

import numpy as np
import pytest

from audio_helpers import joined_wav, tone, tone_digits, write_wav
from conftest import cli_in_process, run_cli
from diptych import RunConfig, train_and_evaluate
from diptych.commands.transcribe import transcribe
from diptych.data import fsdd, load_dataset
from diptych.data.audio import read_wav
from diptych.errors import DataError, DiptychError
from test_cli_errors import assert_one_line_error


def _archive(mirror, folder, extra: dict[str, bytes] | None = None):
    """A GitHub-style tarball: <repo>-<tag>/recordings/*.wav, plus ``extra`` members."""
    mirror.mkdir(parents=True, exist_ok=True)
    with tarfile.open(mirror / fsdd.ARCHIVE, "w:gz") as tar:
        for p in sorted(folder.glob("*.wav")):
            tar.add(p, arcname=f"free-spoken-digit-dataset-1.0.10/recordings/{p.name}")
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_download_extracts_verifies_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("DIPTYCH_CACHE", str(tmp_path / "cache"))
    src = tone_digits(tmp_path / "src", speakers=("anna",), takes=1)
    _archive(tmp_path / "mirror", src, {"x/recordings/../../0_evil_0.wav": b"outside"})
    expected = fsdd.content_sha256(fsdd.recordings_in(src))
    with pytest.raises(DataError, match="content hash .* is not v1.0.10's"):  # the pinned hash: refused
        fsdd.download_recordings(((tmp_path / "mirror").as_uri() + "/",))
    assert not (tmp_path / "cache" / "fsdd" / "recordings").exists()  # nothing cached
    got = fsdd.download_recordings(((tmp_path / "mirror").as_uri() + "/",), expected_sha256=expected)
    assert [p.name for p in got] == [p.name for p in fsdd.recordings_in(src)]
    assert all(p.parent == tmp_path / "cache" / "fsdd" / "recordings" for p in got)
    assert sorted(p.name for p in (tmp_path / "cache" / "fsdd").iterdir()) == ["recordings"]  # no archive/temp


def test_download_leaves_a_shared_folder_and_cleans_a_killed_ones(tmp_path, monkeypatch):
    """The recordings folder was mkdtemp's private 0700 once renamed, and a killed download's `.recordings.*`
    temporary folder was never removed; now it has a normal folder's mode, and a dead writer's folder goes."""
    from diptych.fsio import TEMP_PREFIX

    monkeypatch.setenv("DIPTYCH_CACHE", str(tmp_path / "cache"))
    src = tone_digits(tmp_path / "src", speakers=("anna",), takes=1)
    _archive(tmp_path / "mirror", src)
    killed = tmp_path / "cache" / "fsdd" / f"{TEMP_PREFIX}{2**22 + 12345}-0badc0de-abc.recordings"  # a dead pid's
    killed.mkdir(parents=True)
    (killed / "0_anna_0.wav").write_bytes(b"half")
    old = os.umask(0o022)
    try:
        fsdd.download_recordings(((tmp_path / "mirror").as_uri() + "/",), fsdd.content_sha256(fsdd.recordings_in(src)))
    finally:
        os.umask(old)
    assert sorted(p.name for p in (tmp_path / "cache" / "fsdd").iterdir()) == ["recordings"]
    assert stat.S_IMODE((tmp_path / "cache" / "fsdd" / "recordings").stat().st_mode) == 0o755


def test_offline_without_data_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DIPTYCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DIPTYCH_DATA", raising=False)
    with pytest.raises(DataError, match=f"put the .wav files of FSDD v1.0.10 in {tmp_path / 'cache' / 'fsdd'}"):
        load_dataset("fsdd")


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    folder = tone_digits(tmp_path_factory.mktemp("tones"), speakers=("anna", "bert"), takes=6)
    return folder, load_dataset("fsdd", folder, split="speaker:bert")


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_short_run_learns_tone_digits_with_augmentation(framework, tones, tmp_path):
    folder, data = tones
    rec = train_and_evaluate(
        RunConfig("fsdd-cnn", framework, epochs=5, batch_size=10, progress=False, split="speaker:bert"),
        tmp_path,
        dataset=data,
    )
    losses = [e["train_loss"] for e in rec["epochs"]]
    assert losses[-1] < 0.7 * losses[0] and rec["test_accuracy"] >= 0.6, (losses, rec["test_accuracy"])
    assert rec["config"]["split"] == "speaker:bert"
    # the weights carry the front end + training statistics: the other twin transcribes wav files
    wavs = [str(folder / f"{d}_bert_0.wav") for d in range(10)]
    other = "jax" if framework == "torch" else "torch"
    out = transcribe("fsdd-cnn", other, str(tmp_path / "weights.safetensors"), wavs)
    evaluated = np.array([r["digit"] for r in out])
    assert np.mean(evaluated == np.arange(10)) >= 0.6 and all(0.1 <= r["probability"] <= 1 for r in out)
    # --sequence: three of those recordings in one file, with pauses, read as the three digits they were alone
    joined = joined_wav(tmp_path / "three.wav", [wavs[4], wavs[1], wavs[7]], pause=0.5)
    (row,) = transcribe("fsdd-cnn", other, str(tmp_path / "weights.safetensors"), [joined], sequence=True)
    assert row["digits"] == "".join(str(out[d]["digit"]) for d in (4, 1, 7)), row
    # eval --split: the other twin scores the weights on the run's held-out speaker, as the run did (the
    # default split, takes 0-4 of every speaker, is another test set: 100 recordings, not bert's 60)
    weights = str(tmp_path / "weights.safetensors")
    scores = {}
    for split in ("speaker:bert", None):
        ev = cli_in_process(
            *("eval", "fsdd-cnn", "--framework", other, "--weights", weights, "--data-dir", str(folder), "--json"),
            *(("--split", split) if split else ()),
        )
        assert ev.returncode == 0, ev.stderr
        scores[split] = json.loads(ev.stdout)
    assert scores["speaker:bert"]["total"] == len(data.y_test) == 60 and scores[None]["total"] == 100
    assert abs(scores["speaker:bert"]["test_accuracy"] - rec["test_accuracy"]) <= 1 / 60  # a near-tie may flip


def _train_and_read_bert(name: str, folder, tmp_path, evaluator: str) -> tuple[str, list[str]]:
    """Train ``name`` (torch, 3 epochs) without bert; its evaluation, ``eval`` by ``evaluator`` and `transcribe`
    of bert's 60 recordings in one call (JAX) name the same digits. Returns the weights and bert's files."""
    from diptych.driver import evaluate_weights

    config = RunConfig(
        name, "torch", epochs=3, batch_size=10, data_dir=str(folder), split="speaker:bert", progress=False
    )
    rec = train_and_evaluate(config, tmp_path)
    weights = str(tmp_path / "weights.safetensors")
    ev = evaluate_weights(name, evaluator, weights, str(folder), split="speaker:bert")
    assert ev["total"] == 60 and ev["test_accuracy"] == pytest.approx(rec["test_accuracy"], abs=1 / 60)
    files = [str(p) for p in fsdd.recordings_in(folder) if "_bert_" in p.name]  # the test split's order
    rows = transcribe(name, "jax", weights, files)
    flips = int((np.array([r["digit"] for r in rows]) != np.asarray(ev["predictions"])).sum())
    assert flips <= 1, f"{flips} of 60 recordings read otherwise by transcribe than by the run's evaluation"
    return weights, files


def test_a_task_with_its_own_front_end_trains_and_transcribes_with_it(tones, tmp_path):
    """fsdd-cnn-unheard reads its recordings with its own front end (the level, the speech cut from its
    silence and centred, 8 cepstral terms): the run loads them so, its weights say so, and `transcribe` of
    each held-out recording, in the other twin, names the digit the run's own evaluation named."""
    from diptych.data.audio import FrontEnd
    from diptych.tasks import TASKS

    folder, _ = tones
    task = TASKS["fsdd-cnn-unheard"]
    _train_and_read_bert(task.name, folder, tmp_path, "torch")
    data = load_dataset("fsdd", folder, split="speaker:bert", frontend=task.frontend)
    assert FrontEnd(**data.features["frontend"]) == task.frontend and task.frontend.trim
    with pytest.raises(DiptychError, match="a front end is for the speech recordings"):
        load_dataset("mnist1d", frontend=task.frontend)


def test_transcribe_cli_and_bad_audio(tones, tmp_path):
    from diptych.tasks import TASKS
    from diptych.weights import save_weights

    folder, data = tones
    rng = np.random.default_rng(0)
    params = {k: rng.normal(0, 0.05, s).astype(np.float32) for k, s in TASKS["fsdd-cnn"].model.param_shapes().items()}
    save_weights(params, tmp_path / "w.safetensors", task="fsdd-cnn", features=data.features)
    good = write_wav(tmp_path / "one.wav", 0.3 * np.sin(np.arange(4000) / 3.0))
    proc = run_cli("transcribe", "fsdd-cnn", "--weights", str(tmp_path / "w.safetensors"), str(good), "--json")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    # --framework jax: the JAX twin names the same digits, with the same probabilities, for ten recordings
    wavs = [str(folder / f"{d}_bert_0.wav") for d in range(10)] + [str(good)]
    rows = {}
    for framework in ("torch", "jax"):
        proc = cli_in_process(
            "transcribe", "fsdd-cnn", "--framework", framework, "--weights", str(tmp_path / "w.safetensors"), *wavs
        )
        assert proc.returncode == 0, proc.stderr
        rows[framework] = [line.split("\t") for line in proc.stdout.strip().splitlines()]
    assert [r[:2] for r in rows["jax"]] == [r[:2] for r in rows["torch"]] and len(rows["jax"]) == 11
    np.testing.assert_allclose([float(r[2]) for r in rows["jax"]], [float(r[2]) for r in rows["torch"]], atol=2e-4)
    assert rows["torch"][-1] == [str(good), str(row["digit"]), f"{row['probability']:.4f}"]
    assert row["file"] == str(good) and row["digit"] in range(10) and 0 < row["probability"] <= 1
    (tmp_path / "notes.wav").write_text("not audio")
    assert_one_line_error(
        run_cli(
            "transcribe",
            "fsdd-cnn",
            "--weights",
            str(tmp_path / "w.safetensors"),
            str(good),
            str(tmp_path / "notes.wav"),
        ),
        "notes.wav: not a PCM WAV file",
    )
    with pytest.raises(DiptychError, match="not a speech task"):
        transcribe("mnist-cnn", "torch", str(tmp_path / "w.safetensors"), [str(good)])


def test_transcribe_finds_the_speech_tops_and_silence(tones, tmp_path):
    """Random weights (what is checked is the reading, not the digit): a digit padded with a second of
    room noise reads as the digit alone; a silent file and a steady hum are "no speech"; a 44.1 kHz
    stereo file is taken; --top lists K digits whose probabilities fall; both twins say the same."""
    from diptych.tasks import TASKS
    from diptych.weights import save_weights

    folder, data = tones
    rng = np.random.default_rng(1)
    params = {k: rng.normal(0, 0.2, s).astype(np.float32) for k, s in TASKS["fsdd-cnn"].model.param_shapes().items()}
    save_weights(params, tmp_path / "w.safetensors", task="fsdd-cnn", features=data.features)
    weights = str(tmp_path / "w.safetensors")
    digit = folder / "3_bert_1.wav"
    noise = 0.002 * rng.standard_normal(8000)
    padded = joined_wav(tmp_path / "padded.wav", [digit], pause=1.0, noise=noise)
    silent = write_wav(tmp_path / "silent.wav", np.zeros(8000))
    hum = write_wav(tmp_path / "hum.wav", tone(50, 2.0, amp=0.2))
    x = tone(700, 0.5, rate=44100, amp=0.3)
    stereo = write_wav(tmp_path / "stereo.wav", np.stack([x, 0.5 * x], axis=1), rate=44100)
    files = [str(p) for p in (digit, padded, silent, hum, stereo)]
    rows = {fw: transcribe("fsdd-cnn", fw, weights, files, top=3) for fw in ("torch", "jax")}
    torch_rows, jax_rows = rows["torch"], rows["jax"]
    assert [r["speech"] for r in torch_rows] == [True, True, False, False, True]
    assert [r["digit"] for r in jax_rows] == [r["digit"] for r in torch_rows]
    # the noise around the digit is trimmed away: the same digit, about as sure
    assert torch_rows[1]["digit"] == torch_rows[0]["digit"], (torch_rows[0]["top"], torch_rows[1]["top"])
    (seq,) = transcribe("fsdd-cnn", "torch", weights, [padded], sequence=True)
    (segment,) = seq["segments"]  # the digit, where it was put, give or take the 50 ms margins and a frame
    length = len(read_wav(digit, 8000)) / 8000
    assert segment["start"] == pytest.approx(1.0 - 0.05, abs=0.03), segment
    assert segment["end"] == pytest.approx(1.0 + length + 0.05, abs=0.03), segment
    for row in (torch_rows[0], torch_rows[4]):
        digits, probs = zip(*row["top"])
        assert len(set(digits)) == 3 and list(probs) == sorted(probs, reverse=True) and digits[0] == row["digit"]
    proc = cli_in_process("transcribe", "fsdd-cnn", "--weights", weights, "--top", "2", *files[:3])
    assert proc.returncode == 0, proc.stderr
    lines = [line.split("\t") for line in proc.stdout.strip().splitlines()]
    assert [len(line) for line in lines] == [5, 5, 3] and lines[2][1:] == ["-", "no speech"]
    proc = cli_in_process("transcribe", "fsdd-cnn", "--weights", weights, "--sequence", "--json", files[2])
    assert proc.returncode == 0 and json.loads(proc.stdout)[0]["digits"] == "", proc.stderr
    assert_one_line_error(run_cli("transcribe", "fsdd-cnn", "--weights", weights, "--top", "11", files[0]), "--top 11")


def test_loso_trains_per_held_out_speaker_in_both_twins(tones, tmp_path):
    """`diptych loso` at a small budget, one fold, two seeds: each twin trains without bert and is tested on
    bert; the record has each seed's accuracy per twin, their mean, the mean over folds, the two twins'
    agreement on the same weights, and a plot."""
    folder, _ = tones
    proc = cli_in_process(
        *("loso", "fsdd-cnn", "--data-dir", str(folder), "--epochs", "3", "--batch-size", "10"),
        *("--speakers", "bert", "--seeds", "2"),
        *("--out", str(tmp_path / "loso"), "--no-progress", "--json"),
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record == json.loads((tmp_path / "loso" / "loso.json").read_text())
    assert (tmp_path / "loso" / "loso.png").stat().st_size > 1000
    acc = record["accuracy"]["bert"]
    assert set(acc) == {"torch", "jax"} and all(a >= 0.3 for a in acc.values()), acc  # chance is 0.1
    assert record["mean"] == acc and record["target"] == [0.92, 0.85]
    runs = record["runs"]["bert"]
    assert all(len(runs[fw]) == 2 and acc[fw] == pytest.approx(np.mean(runs[fw])) for fw in acc), runs
    assert (tmp_path / "loso" / "bert" / "jax" / "seed1" / "weights.safetensors").exists()
    assert all(a >= 0.95 for a in record["agreement"]["bert"].values()), record["agreement"]
    assert_one_line_error(
        run_cli("loso", "fsdd-cnn", "--data-dir", str(folder), "--speakers", "carl", "--out", str(tmp_path / "x")),
        "no speaker 'carl'",
    )
    assert_one_line_error(run_cli("loso", "mnist-cnn", "--out", str(tmp_path / "y")), "no speakers to leave out")


def test_train_cli_refuses_a_folder_without_recordings(tmp_path):
    assert_one_line_error(
        run_cli(
            "train",
            "fsdd-cnn",
            "--framework",
            "torch",
            "--data-dir",
            str(tmp_path),
            "--split",
            "speaker:anna",
            "--out",
            str(tmp_path / "r"),
        ),
        "no recordings named",
    )
    assert not (tmp_path / "r" / "run.json").exists()


def test_voice_shift_moves_each_voice_to_the_target_and_leaves_silence():
    from diptych.data.audio import MIN_VOICE, VOICE_SPEECH, shift_voices, voice_means

    rng = np.random.default_rng(0)
    logmel = rng.normal(-2.0, 1.0, (12, 4, 6)).astype(np.float32)  # (N, M, T)
    logmel[:, :, :2] = np.log(1e-6)  # two silent frames per recording
    logmel[:6] += np.array([1.0, -1.0, 2.0, 0.0], np.float32)[:, None]  # voice "a" sounds otherwise
    voices = np.array(["a"] * 6 + ["b"] * (MIN_VOICE - 1) + ["c"] * 2)
    target = np.array([0.5, 0.0, -0.5, 1.0])
    out = shift_voices(logmel, voices, target)
    means = voice_means(out, voices)
    np.testing.assert_allclose(means["a"], target, atol=1e-5)  # enough recordings: moved to the target
    np.testing.assert_array_equal(out[6:], logmel[6:])  # under MIN_VOICE recordings: left as they were
    np.testing.assert_array_equal(out[:, :, :2], logmel[:, :, :2])  # silence stays silence
    assert (logmel.max(axis=1)[:, 2:] > VOICE_SPEECH).all()


def test_a_voice_task_adapts_to_the_voice_and_reads_views_in_both_twins(tones, tmp_path):
    """fsdd-cnn-voice moves each speaker's speech to the training speakers' average (the held-out speaker by
    his own test recordings) and averages each prediction over nine shifted views: the run's evaluation,
    `eval` in the other twin and `transcribe` of the speaker's recordings in one call all read the same
    digits; a call with fewer than MIN_VOICE recordings reads each as it would alone."""
    from diptych.data.audio import MIN_VOICE, VOICE_SPEECH, FrontEnd, shifted_views
    from diptych.data.audio_checks import check_features
    from diptych.objectives import class_probabilities
    from diptych.tasks import TASKS

    folder, _ = tones
    task = TASKS["fsdd-cnn-voice"]
    assert task.frontend.voice and task.frontend.views
    data = load_dataset("fsdd", folder, split="speaker:bert", frontend=task.frontend)
    assert FrontEnd(**data.features["frontend"]) == task.frontend
    # the held-out voice, back in nats, has the training voice's mean over its speech frames
    mean, std, target = (np.asarray(data.features[k]) for k in ("mean", "std", "voice_mean"))
    test = data.x_test * std[:, None] + mean[:, None]  # (N, M, T)
    speech = np.broadcast_to(test.max(axis=1, keepdims=True) > VOICE_SPEECH, test.shape)
    np.testing.assert_allclose((test * speech).sum((0, 2)) / speech.sum((0, 2)), target, atol=1e-3)
    weights, files = _train_and_read_bert(task.name, folder, tmp_path, "jax")
    few = transcribe(task.name, "torch", weights, files[: MIN_VOICE - 1])
    alone = [transcribe(task.name, "torch", weights, [f])[0] for f in files[:2]]
    assert [r["digit"] for r in few[:2]] == [r["digit"] for r in alone]
    assert [r["probability"] for r in few[:2]] == pytest.approx([r["probability"] for r in alone], abs=1e-6)
    many = transcribe(task.name, "torch", weights, files[:MIN_VOICE])
    assert many[0]["probability"] != pytest.approx(alone[0]["probability"], abs=1e-6)  # moved as one voice
    # the views: nine, one of them the image itself, and the probabilities their mean
    from diptych.backends import load_backend

    trainer = load_backend("torch").train.Trainer(task, 0, 1)
    x = data.x_test[:7]
    views = shifted_views(x)
    assert len(views) == 9 and any(np.array_equal(v, x) for v in views)
    # the first: 3 frames earlier and one band lower, the cells moved in repeating the edge
    np.testing.assert_array_equal(views[0][:, :-1, :-3], x[:, 1:, 3:])
    np.testing.assert_array_equal(views[0][:, -1, :-3], x[:, -1, 3:])
    probs = class_probabilities(trainer, x, views=True)
    by_hand = np.mean([class_probabilities(trainer, v) for v in views], axis=0)
    np.testing.assert_allclose(probs, by_hand, atol=1e-12)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-9)
    features = dict(data.features)
    del features["voice_mean"]
    with pytest.raises(DataError, match="no 32 finite values of 'voice_mean'"):
        check_features(features, "w.safetensors", task.model.input_shape())
