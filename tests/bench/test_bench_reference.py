"""bench/load.py's "authSync, no user rows" reference measures what it says it does: authSync's
own pipeline (signature, replay protection, validation of every user, journal row) with only
the users and their authorisations left unwritten."""

import sys
from pathlib import Path

import pytest

from koogallery.inbound.journal import InboundCall
from tenants.models import Authorization, TenantUser
from tests.support.kgclient import envelope

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import load  # bench/load.py: the bodies the load benchmark sends

pytestmark = [pytest.mark.django_db, pytest.mark.urls("bench.bench_urls")]

UNWRITTEN = "/bench/authSync-unwritten"


def bench_body() -> dict:
    return load.auth_sync_body({"tenants": ["tenant-bench"] * load.POOL}, "k", 0)


def test_the_reference_answers_and_journals_like_authsync_but_writes_no_user(kg):
    body = bench_body()

    assert envelope(kg.kit("authSync", body, path=UNWRITTEN))["resultCode"] == "000000"
    journal = InboundCall.objects.get()
    assert (journal.endpoint, journal.verification) == ("authSync", "verified")
    assert not TenantUser.objects.exists() and not Authorization.objects.exists()

    # The same body to the real endpoint writes every user: the one step the reference skips.
    assert envelope(kg.kit("authSync", body))["resultCode"] == "000000"
    assert TenantUser.objects.count() == Authorization.objects.count() == load.USERS_PER_AUTH_SYNC


def test_the_reference_verifies_and_validates_as_authsync_does(kg):
    body = bench_body()
    forged = kg.kit("authSync", body, path=UNWRITTEN, key="another-key-of-32-characters-long")
    assert envelope(forged)["resultCode"] == "000001"

    body["userList"][7]["role"] = ["admin"]
    assert envelope(kg.kit("authSync", body, path=UNWRITTEN))["resultCode"] == "000002"
