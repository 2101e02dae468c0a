import numpy as np
import pytest

from diptych.data import Batches
from diptych.errors import DiptychError


def test_epoch_order_depends_only_on_seed_and_epoch():
    a, b = Batches(100, 10, seed=3), Batches(100, 10, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a.epoch(5), b.epoch(5)))
    assert not np.array_equal(next(a.epoch(0)), next(a.epoch(1)))
    assert not np.array_equal(next(a.epoch(0)), next(Batches(100, 10, seed=4).epoch(0)))


def test_drop_last_and_coverage():
    b = Batches(105, 10, seed=0)
    batches = list(b.epoch(0))
    assert b.steps_per_epoch() == 10 and all(len(x) == 10 for x in batches)
    assert len(np.unique(np.concatenate(batches))) == 100
    keep = Batches(105, 10, seed=0, drop_last=False)
    assert sorted(np.concatenate(list(keep.epoch(0)))) == list(range(105))


def test_shards_are_disjoint_slices_of_the_global_batch():
    full = Batches(64, 8, seed=1)
    shards = [full.shard(r, 4) for r in range(4)]
    for step, global_batch in enumerate(full.epoch(2)):
        parts = [list(s.epoch(2))[step] for s in shards]
        assert all(len(p) == 2 for p in parts)
        assert np.array_equal(np.concatenate(parts), global_batch)


@pytest.mark.parametrize(
    "kw,msg",
    [
        (dict(num_samples=10, batch_size=0), "positive"),
        (dict(num_samples=10, batch_size=20), "larger than the 10"),
        (dict(num_samples=10, batch_size=5, world=2), "not divisible by 2"),
    ],
)
def test_bad_batching(kw, msg):
    with pytest.raises(DiptychError, match=msg):
        Batches(**kw)
