"""Every task learns in a short run, and the other twin predicts with its weights what the twin that trained
them does: the fast half of the full tier's target tests (tests/targets, every task's full budget in both
twins). The twin that trains alternates from task to task; a subset of each dataset and a few dozen steps
keep each run to seconds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import real_data_dir
from diptych import RunConfig, evaluate_weights, train_and_evaluate
from diptych.backends import FRAMEWORKS
from diptych.data import load_dataset
from diptych.tasks import TASKS
from image_helpers import make_folder

STEPS = 40  # about this many training steps per run
# A recurrent net on MNIST-1D needs more steps before its accuracy leaves chance (each takes milliseconds).
MORE_STEPS = {"mnist1d-gru": 120, "mnist1d-lstm": 120, "mnist1d-rnn": 120}
FRACTION = {"text": 0.12, "folder": 10}  # data the objective loads: 12% of the corpus; 10 epochs of the shapes
TRAIN, TEST = 2048, 512  # samples of a real or generated dataset's splits
REAL = {"mnist": "mnist", "fashion-mnist": "fashion-mnist", "fsdd": "fsdd"}


@pytest.fixture(scope="module")
def datasets(request, tmp_path_factory):
    """``get(dataset)`` -> ``(data_dir, Dataset or None)``: a subset of the real or generated data, loaded once
    (MNIST and MNIST-1D: the session's); the text and the image folder are the objective's to load (``None``)."""
    loaded = {}

    def get(name: str):
        if name not in loaded:
            if name == "folder":
                loaded[name] = (str(make_folder(tmp_path_factory.mktemp("shapes"), per_class=60)), None)
            elif name == "text":
                loaded[name] = (None, None)
            else:
                folder = real_data_dir(REAL[name]) if name in REAL else None
                data = request.getfixturevalue(name) if name in ("mnist", "mnist1d") else load_dataset(name, folder)
                loaded[name] = (str(folder) if folder else None, data.head(TRAIN, TEST))
        return loaded[name]

    return get


@pytest.mark.parametrize("name", list(TASKS))
def test_a_short_run_learns_and_the_other_twin_predicts_the_same(name, datasets, tmp_path):
    task = TASKS[name]
    framework = FRAMEWORKS[list(TASKS).index(name) % 2]  # alternate the twin that trains
    other = next(f for f in FRAMEWORKS if f != framework)
    folder, data = datasets(task.dataset)
    rows = len(data.y_train) if data is not None else None
    steps = MORE_STEPS.get(name, STEPS)
    epochs = math.ceil(steps * task.budget.batch_size / rows) if rows else FRACTION[task.dataset]
    config = RunConfig(name, framework, epochs=epochs, data_dir=folder, progress=False)
    run = train_and_evaluate(config, tmp_path, dataset=data)

    if "test_bpc" in run:  # a language model: better than the unigram model, the same bits/char in both twins
        assert run["test_bpc"] < run["unigram_bpc"], run["test_bpc"]
    else:  # a classifier: well above chance
        classes = len(np.unique(data.y_test)) if data is not None else 3
        assert run["test_accuracy"] >= 1.5 / classes, run["epochs"]
    same, cross = (
        evaluate_weights(name, fw, tmp_path / "weights.safetensors", folder, data) for fw in (framework, other)
    )
    if same["predictions"] is not None:
        flips = (np.asarray(same["predictions"]) != np.asarray(cross["predictions"])).sum()
        assert flips <= 1, f"{flips} of {len(same['predictions'])} predictions differ between the twins"
    else:
        assert abs(same["test_bpc"] - cross["test_bpc"]) <= 1e-4 * same["test_bpc"]
