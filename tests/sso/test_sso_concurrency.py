"""Two requests of one browser refreshing the platform token at the same time (PostgreSQL).

The platform rotates refresh tokens (a used one is dead), so if both requests spent the same
refresh token the second would be refused and sign the user out. The sign-in row is locked
while one request refreshes; the other waits, then finds a fresh token and does nothing.
"""

import threading
from datetime import timedelta

from django.db import connection
from django.test import Client
from django.utils import timezone

from sso.models import AuditEvent, LoginAudit, SignIn
from tests.support.sso_support import CALLBACK, build_world, platform_login

pytest_plugins = ["tests.support.sso_fixtures"]


def test_concurrent_requests_refresh_the_token_once(postgres_only, transactional_db, fake_oauth):
    world = build_world(fake_oauth, redirect_url=CALLBACK)
    world.add_user("zhangsan01")
    first = Client()
    assert platform_login(first, world, "zhangsan01")["Location"] == "/sso/"
    SignIn.objects.update(expires_at=timezone.now() + timedelta(seconds=60))
    fake_oauth.token_delay_s = 0.5
    second = Client()
    second.cookies = first.cookies

    statuses: list[int] = []
    barrier = threading.Barrier(2)

    def request(client: Client) -> None:
        try:
            barrier.wait()
            statuses.append(client.get("/sso/").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=request, args=(c,)) for c in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert statuses == [200, 200]
    refreshes = [
        r for r in fake_oauth.seen("/oauth2/token") if r.form["grant_type"] == "refresh_token"
    ]
    assert len(refreshes) == 1
    sign_in = SignIn.objects.get()
    assert sign_in.ended_at is None
    assert sign_in.expires_at > timezone.now() + timedelta(hours=1)
    assert list(
        LoginAudit.objects.filter(event=AuditEvent.REFRESH).values_list("outcome", flat=True)
    ) == ["success"]
