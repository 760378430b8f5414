"""The ``lockkit`` command, its demo and its benchmark runner (not imported by the library)."""
