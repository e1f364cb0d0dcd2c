"""aubench's version (a leaf module: what records the version imports nothing else of aubench)."""

__version__ = "0.1.0"
