"""gunicorn entry point: ``gunicorn wsgi:app`` (``dlog serve`` does this for you)."""
from service.api import create_app

app = create_app()
