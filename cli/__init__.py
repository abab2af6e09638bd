"""The ``dlog`` command line."""
