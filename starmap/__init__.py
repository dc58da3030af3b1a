"""Star Map: the backend of a shared, live sky map."""

from __future__ import annotations

__all__ = ("__version__",)

__version__ = "0.1.0"
