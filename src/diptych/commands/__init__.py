"""The commands behind ``diptych``'s CLI, one module per command (or group): its click options, one call
into the library (tasks, driver, weights, data) or the benchmark (:mod:`diptych.bench`), and its printing.
:mod:`diptych.cli` lists them and turns user errors into one line; nothing in the library imports them."""
