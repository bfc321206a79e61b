"""The ``otel-excellence demo`` service (needs the ``demo`` extra)."""
