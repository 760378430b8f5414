"""The version of lockkit (read statically by setup.cfg)."""

__version__ = "0.1.0.dev0"
