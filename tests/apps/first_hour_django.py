"""A Django app (ORM on SQLite, Redis) in one file, as small as Django allows: no
OpenTelemetry code. Served by a real WSGI server on a socket, driven with real HTTP
requests, then exits. GET /orders/ reads each order's customer lazily (an N+1).
Environment: REDIS_URL, DB_PATH, and DJANGO_SETTINGS_MODULE=first_hour_django_settings
(as the README says: Django's instrumentation reads the settings when it starts, before
manage.py would set the variable).
"""

import logging
import os
import sys
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server

import django
import redis
import requests

ORDERS = 6
django.setup()

from django.db import connection, models  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

log = logging.getLogger("shop")
logging.basicConfig(level=logging.INFO)
cache = redis.Redis.from_url(os.environ["REDIS_URL"])


class Customer(models.Model):
    name = models.CharField(max_length=50)

    class Meta:
        app_label = "shop"


class Order(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE)

    class Meta:
        app_label = "shop"


def orders(request):
    cached = cache.get("orders")
    names = [order.customer.name for order in Order.objects.all()]
    cache.set("orders", ",".join(names))
    log.info("listed %d orders (cached: %s)", len(names), cached is not None)
    return JsonResponse(names, safe=False)


urlpatterns = [path("orders/", orders)]


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def main() -> None:
    with connection.schema_editor() as editor:
        editor.create_model(Customer)
        editor.create_model(Order)
    customers = [Customer.objects.create(name=f"c{i}") for i in range(ORDERS)]
    for customer in customers:
        Order.objects.create(customer=customer)
    from django.core.wsgi import get_wsgi_application

    server = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for _ in range(2):
        requests.get(
            f"http://127.0.0.1:{server.server_port}/orders/", timeout=10
        ).raise_for_status()
    server.shutdown()
    print(f"APP-END {time.time()}", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
