from django.apps import AppConfig


class KooGalleryConfig(AppConfig):
    name = "koogallery"
    verbose_name = "KooGallery boundary"

    def ready(self) -> None:
        # Basic-interface instance activities, V2 and V1 (spec §4.2, §4.4).
        from . import basic_handlers

        basic_handlers.register_all()
