from django.urls import path

from . import views

app_name = "sso"

urlpatterns = [
    path("", views.home, name="home"),
    path("login", views.login_start, name="login"),
    path("callback", views.callback, name="callback"),
    path("confirm", views.confirm_view, name="confirm"),
    path("logout", views.logout_view, name="logout"),
    path("signed-out", views.signed_out, name="signed_out"),
]
