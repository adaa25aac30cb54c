"""Celery tasks of metering: thin callers of the services.

`run_metering` runs every minute from beat (config/settings.py, "metering-close-and-push"): it
closes finished hours and pushes what is due, so an hour's records leave in minutes 0–10 of the
next hour and retries follow their backoff. Runs may overlap (a slow push, a manual
`koogallery_push_usage`): claims keep each record in one push.
"""

from celery import shared_task

from . import services
from .models import PushTrigger


@shared_task(ignore_result=True)
def run_metering() -> str:
    return str(services.run_metering(trigger=PushTrigger.BEAT))


@shared_task(ignore_result=True)
def push_now() -> str:
    """After an operator's re-push: send without waiting for the next beat run."""
    return str(services.run_metering(trigger=PushTrigger.ADMIN, ignore_backoff=True))
