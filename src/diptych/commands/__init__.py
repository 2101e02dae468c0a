"""Command implementations of the ``diptych`` CLI, one module per command group."""
