from django.apps import AppConfig


class OrgSyncConfig(AppConfig):
    name = "orgsync"
    verbose_name = "Department trees"
