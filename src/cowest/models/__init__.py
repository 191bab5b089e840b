"""Model backends behind one batch interface (see `cowest.models.base.Backend`)."""

from cowest.models.base import Backend, load_backend

__all__ = ["Backend", "load_backend"]
