from django.apps import AppConfig


class KooGalleryConfig(AppConfig):
    name = "koogallery"
    verbose_name = "KooGallery boundary"
