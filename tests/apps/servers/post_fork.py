"""gunicorn settings that start telemetry in each worker, from code, without
``opentelemetry-instrument`` (``gunicorn -c post_fork.py wsgi_app:app``)."""


def post_fork(server: object, worker: object) -> None:
    import otel_excellence

    otel_excellence.configure()
