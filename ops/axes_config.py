"""django-axes (admin login throttling) under a name an operator reads: its own admin heading
is "Axes". Installed as "ops.axes_config.AxesConfig" in place of "axes"."""

from axes.apps import AppConfig


class AxesConfig(AppConfig):
    verbose_name = "Sign-in throttling of the admin (failed logins, lockouts)"
