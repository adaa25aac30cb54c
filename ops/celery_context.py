"""Carry the request id into Celery tasks, so a licence upload or a Query Order logs under the
id of the KooGallery call that queued it (docs/operations.md, "Reading the logs")."""

from contextlib import suppress

from celery.signals import before_task_publish, task_postrun, task_prerun

from .context import current_request_id, new_request_id, request_id_var

HEADER = "request_id"
_tokens: dict[str, object] = {}


def _on_publish(headers=None, **kwargs) -> None:
    request_id = current_request_id()
    if request_id and headers is not None:
        headers.setdefault(HEADER, request_id)


def _on_prerun(task_id=None, task=None, **kwargs) -> None:
    request_id = getattr(task.request, HEADER, None) if task is not None else None
    # An eager task keeps the id current where it runs: the job runner's is the id the job's
    # call stored with it (koogallery/outbound/jobs.py), a test's or an operator's action their own.
    request_id = request_id or current_request_id() or new_request_id()
    _tokens[task_id] = request_id_var.set(request_id)


def _on_postrun(task_id=None, **kwargs) -> None:
    token = _tokens.pop(task_id, None)
    if token is not None:
        # ValueError: set in another context (should not happen); leave it.
        with suppress(ValueError):
            request_id_var.reset(token)


def connect() -> None:
    before_task_publish.connect(_on_publish, weak=False, dispatch_uid="ops-request-id-publish")
    task_prerun.connect(_on_prerun, weak=False, dispatch_uid="ops-request-id-prerun")
    task_postrun.connect(_on_postrun, weak=False, dispatch_uid="ops-request-id-postrun")
