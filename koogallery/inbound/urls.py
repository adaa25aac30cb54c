"""URL layout of spec §2.1, built from the views the domain apps provide."""

from django.urls import path

from koogallery.inbound.journal import Family
from koogallery.inbound.production import ProductionInterfaceView

KIT_INTERFACES = ("tenantSync", "applicationSync", "authSync", "singleOrgSync", "allOrgSync")


def production_paths() -> list:
    view = ProductionInterfaceView.as_view()
    return [path("koogallery", view, name="koogallery"), path("koogallery/", view)]


def kit_paths(name: str, view_class) -> list:
    """V2 and V1 routes of one kit interface, served by the same view class and services."""
    assert name in KIT_INTERFACES, name
    return [
        path(
            f"koogallery/produceAPI/v2/{name}",
            view_class.as_view(family=Family.KIT_V2, endpoint_name=name),
            name=f"kit-v2-{name}",
        ),
        path(
            f"koogallery/produceAPI/{name}",
            view_class.as_view(family=Family.KIT_V1, endpoint_name=name),
            name=f"kit-v1-{name}",
        ),
    ]
