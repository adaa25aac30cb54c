from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations (health, metrics, logs)"

    def ready(self) -> None:
        # Scrape-time gauges read from the database (licence delivery backlog).
        from . import celery_context, collectors

        collectors.register()
        # Celery tasks log under the request id of the call that queued them.
        celery_context.connect()
