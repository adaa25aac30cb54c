from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "instances"
    verbose_name = "SaaS instances"

    def ready(self) -> None:
        # Basic-interface instance activities, V2 and V1 (spec §4.2, §4.4).
        from . import handlers

        handlers.register_all()
