"""Django settings for verdict_app.py (DJANGO_SETTINGS_MODULE), as a project has them."""

DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "__main__"
MIDDLEWARE: list[str] = []
SECRET_KEY = "not-secret"
LOGGING_CONFIG = None
