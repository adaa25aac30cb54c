from django.apps import AppConfig


class MeteringConfig(AppConfig):
    name = "metering"
    verbose_name = "Metering (on-demand usage)"

    def ready(self) -> None:
        # queryInstance reports on-demand usage (§4.2.2, §5.5) from our records.
        from instances import selectors as instance_selectors

        from . import selectors

        instance_selectors.register_usage_provider(selectors.usage_figures)
