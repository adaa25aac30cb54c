"""Admin login throttling (django-axes) and the client address it counts failures by.

See SECURITY.md, "Admin accounts".
"""

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: REMOTE_ADDR, or with `TRUSTED_PROXY_COUNT` = n > 0 proxies in
    front, the n-th address from the right of X-Forwarded-For (the one our own first proxy
    saw). Entries to its left are written by the client and cannot be trusted."""
    hops = settings.TRUSTED_PROXY_COUNT
    if hops > 0:
        forwarded = [
            part.strip()
            for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.META.get("REMOTE_ADDR")


class AdminLoginThrottle(AxesStandaloneBackend):
    """django-axes' lockout check, skipped for authentication without a request.

    Axes refuses `authenticate()` calls that carry no request; those come from code (a shell,
    a management command, the test client's `login()`), never from the network, so there is
    nothing to throttle. With `AXES_ONLY_ADMIN_SITE`, only the admin login is counted.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
