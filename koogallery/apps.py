from django.apps import AppConfig


class KooGalleryConfig(AppConfig):
    """The KooGallery boundary: protocol, inbound pipeline and journal, outbound client and job
    outbox, simulator. It imports no domain app; domain apps register their basic-interface
    activities with it (koogallery/inbound/activities.py) and subclass its kit endpoint."""

    name = "koogallery"
    verbose_name = "KooGallery boundary"
