"""URLs of bench/load.py: the service's own, plus two references.

`POST /bench/bare` is the least a Django JSON endpoint does: parse the JSON body, insert one row
(autocommit, raw SQL into `bench_bare_row`, a table bench/load.py creates in its scratch
database), answer JSON. It runs in the same process, behind the same middleware, on the same
connection settings as the KooGallery endpoints, so the ratio of their throughput to its own is
the price of verification, replay protection, the journal and the domain writes.

`POST /bench/authSync-unwritten` is authSync's own pipeline (signature, replay protection,
validation of every user, journal row, transaction, envelope) with the one step left out that
writes the users and their authorisations: the most any authSync that checks its users before
answering (spec §2.6: one invalid user is 000002, nothing written) could reach here.
"""

import json

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from config.urls import urlpatterns as service_urlpatterns
from koogallery.inbound.endpoint import Call
from koogallery.inbound.journal import Family
from tenants.views import AuthSyncView

BARE_TABLE = "bench_bare_row"  # created by bench/load.py in its scratch database


@csrf_exempt
@require_POST
def bare(request: HttpRequest) -> JsonResponse:
    body = json.loads(request.body)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {BARE_TABLE} (key, body) VALUES (%s, %s) RETURNING id",
            [str(body.get("tenantId", ""))[:64], request.body.decode()],
        )
        (row_id,) = cursor.fetchone()
    return JsonResponse({"resultCode": "000000", "resultMsg": "success", "id": row_id})


class AuthSyncUnwritten(AuthSyncView):
    """authSync, every step but the domain write."""

    def perform(self, data: dict, call: Call) -> None:
        pass


urlpatterns = [
    path("bench/bare", bare),
    path(
        "bench/authSync-unwritten",
        AuthSyncUnwritten.as_view(family=Family.KIT_V2, endpoint_name="authSync"),
    ),
    *service_urlpatterns,
]
