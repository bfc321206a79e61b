"""A Django app on SQLite (no OpenTelemetry code) whose statements the distro must keep
readable: Django double-quotes every table and column name. Creates its tables, serves
two pages over a real WSGI server, runs the ORM's usual operations, then one raw query
with a secret in a double-quoted value, and exits.

GET /mixed/ loads 3 orders' customers and 3 orders' products lazily: two statements of
the same shape on different tables (3 each: no N+1). GET /orders/ loads 6 orders'
customers lazily (an N+1 of 6).
Environment: DB_PATH, SECRET, DJANGO_SETTINGS_MODULE=sqlite_names_django_settings.
"""

import os
import sys
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

import django
import requests

django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import connection, models, transaction  # noqa: E402
from django.db.models import Count, F, Max, Q  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

ORDERS = 6


class Customer(models.Model):
    name = models.CharField(max_length=50)

    class Meta:
        app_label = "shop"


class Product(models.Model):  # the same shape as Customer, on another table
    name = models.CharField(max_length=50)

    class Meta:
        app_label = "shop"


class Order(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="orders")
    product = models.ForeignKey(Product, on_delete=models.CASCADE)
    total = models.IntegerField(default=0)
    group = models.CharField(max_length=20, default="a")  # a reserved word

    class Meta:
        app_label = "shop"


def mixed(request):
    orders = list(Order.objects.order_by("id")[:3])
    names = [(o.customer.name, o.product.name) for o in orders]
    return JsonResponse(names, safe=False)


def orders(request):
    return JsonResponse([o.customer.name for o in Order.objects.all()], safe=False)


urlpatterns = [path("mixed/", mixed), path("orders/", orders)]


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def orm_operations(customer):
    list(Order.objects.select_related("customer"))
    list(Customer.objects.prefetch_related("orders"))
    list(Order.objects.filter(customer__name="c1", total__gt=3))
    list(Order.objects.filter(Q(group="a") | Q(total__in=[1, 2, 3])))
    Customer.objects.filter(name__startswith="c").count()
    Customer.objects.filter(name__icontains="C").exists()
    Customer.objects.filter(pk=customer.pk).update(name="renamed")
    Order.objects.update(total=F("total") + 1)
    list(Order.objects.values("customer_id").annotate(n=Count("id")).order_by("-n"))
    Order.objects.aggregate(Max("total"))
    Customer.objects.get(pk=customer.pk)
    list(Customer.objects.values_list("name", flat=True).distinct())
    list(Customer.objects.order_by("name")[:1])
    with transaction.atomic():
        Customer.objects.create(name="late")
    Customer.objects.bulk_create([Customer(name="d"), Customer(name="e")])
    Order.objects.filter(total__gt=100).delete()
    Customer.objects.filter(name__in=["d", "e"]).delete()
    Order.objects.filter(customer=customer).delete()
    customer.delete()


def main() -> None:
    with connection.schema_editor() as editor:
        for model in (Customer, Product, Order):
            editor.create_model(model)
    for i in range(ORDERS):
        customer = Customer.objects.create(name=f"c{i}")
        product = Product.objects.create(name=f"p{i}")
        Order.objects.create(customer=customer, product=product, total=i)
    server = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for page in ("mixed", "orders"):
        url = f"http://127.0.0.1:{server.server_port}/{page}/"
        requests.get(url, timeout=10).raise_for_status()
    server.shutdown()
    orm_operations(Customer.objects.get(name="c0"))
    with connection.cursor() as cursor:  # a secret SQLite reads as a string
        cursor.execute(
            'SELECT "shop_customer"."id" FROM "shop_customer" '  # noqa: S608 - on purpose
            f'WHERE "shop_customer"."name" = "{os.environ["SECRET"]}"'
        )
    print("APP-END", flush=True)


if __name__ == "__main__":
    main()
    sys.exit(0)
