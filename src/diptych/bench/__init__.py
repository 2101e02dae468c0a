"""``diptych bench``: an honest side-by-side benchmark of the twins (and the seed baseline).

Method:

1. **Interleaved bursts.** For ``r`` in ``1..R``, each contestant in turn (A B C A B C ...) runs a
   fresh process that builds the model, times the first step (tracing/compilation included),
   then trains for ``--burst`` seconds at steady state, then evaluates the test set, and runs a
   matmul probe. Machine drift (this host class has slowed multi-threaded work 4-15x for minutes
   at a time) then hits every contestant alike; the report gives medians and spread.
2. **Time to target.** Each contestant trains to the end of its budget, one after the other (never
   two at once: two framework processes on two cores slow each other by an order of magnitude),
   evaluating the test set every ``--eval-every`` steps (default: ten times per epoch) until it first
   reaches the target, as AlgoPerf does. Time to target = the **training clock** (compile included,
   evaluations excluded and reported on their own) at the first evaluation at the target.
3. **MFU.** Achieved FLOP/s = steady samples/s x analytic training FLOPs per sample
   (:mod:`diptych.flops`); MFU = that / the best float32 matmul rate measured in the same run.
4. **Decomposition** (``--baseline``): besides the seed recipe as written (plain PyTorch, 10 epochs),
   each twin also trains with that recipe (batch 64, Adam 1e-3 constant, Normalize((0.5,), (0.5,)),
   10 epochs): seed / twin-with-seed-recipe is the *framework* factor (framework and data pipeline),
   twin-with-seed-recipe / twin is the *recipe* factor, and their product the total.
5. **Profile** (``--profile``): after its first burst each twin traces a few steady steps with its
   profiler (:mod:`diptych.backends.torch.profile`, :mod:`diptych.backends.jax.profile`); the
   report puts their top operations side by side. Traces: ``OUT/profile/<contestant>/``.
6. **MFU ceiling** (``--profile``, MLPs and CNNs): each twin also times every conv and dense layer's
   forward + backward *alone*, at the step's batch, with its own kernels. A step can take no less
   than their sum, so the step's FLOPs over that sum bound its MFU: the report gives the bound beside
   the MFU reached, and the share of the step spent outside those kernels.
"""

from diptych.bench.orchestrate import run_bench
from diptych.bench.report import rebuild, write_report
from diptych.bench.summary import summarize

__all__ = ["rebuild", "run_bench", "summarize", "write_report"]
