"""The commands behind ``diptych``'s CLI: each module implements one command over the library
(tasks, driver, weights, data). :mod:`diptych.cli` only parses arguments and calls these."""
