from django.apps import AppConfig


class LicensingConfig(AppConfig):
    name = "licensing"
    verbose_name = "Licences"

    def ready(self) -> None:
        from koogallery.inbound import activities
        from koogallery.inbound.journal import Family

        from . import handlers, serializers

        for name, serializer_class, handler in (
            ("getLicenseAsync", serializers.GetLicenseAsyncSerializer, handlers.get_license_async),
            (
                "refreshLicenseCode",
                serializers.RefreshLicenseCodeSerializer,
                handlers.refresh_license_code,
            ),
            (
                "updateLicenseCodeStatus",
                serializers.UpdateLicenseCodeStatusSerializer,
                handlers.update_license_code_status,
            ),
            (
                "releaseLicenseCode",
                serializers.ReleaseLicenseCodeSerializer,
                handlers.release_license_code,
            ),
        ):
            activities.register(name, serializer_class, handler, family=Family.BASIC_V2)
