"""gunicorn entry point: ``gunicorn wsgi:app`` (``dlog serve`` does this for you).

Run this way with several workers, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory so
that ``GET /metrics`` counts every worker's requests (``dlog serve`` does that too).
"""
from service.api import create_app

app = create_app()
