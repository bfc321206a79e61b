"""Settings of sqlite_names_django.py (DJANGO_SETTINGS_MODULE=sqlite_names_django_settings)."""

import os

DEBUG = False
SECRET_KEY = "sqlite-names-test"
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "__main__"  # the app script itself holds urlpatterns
INSTALLED_APPS = ["django.contrib.contenttypes"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DB_PATH"]}}
MIDDLEWARE: list[str] = []
LOGGING_CONFIG = None
USE_TZ = True
