from django.urls import path

from apps.accounts import views

app_name = "accounts"

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("2fa/enrol/", views.two_factor_enrol, name="2fa_enrol"),
    path("2fa/verify/", views.two_factor_verify, name="2fa_verify"),
    path("2fa/disable/", views.two_factor_disable, name="2fa_disable"),
    path("switch-firm/", views.switch_firm, name="switch_firm"),
    path("settings/", views.settings_view, name="settings"),
    path("members/", views.members, name="members"),
    path("members/<int:pk>/role/", views.member_role, name="member_role"),
    path("members/<int:pk>/remove/", views.member_remove, name="member_remove"),
    path("invitations/<int:pk>/revoke/", views.invitation_revoke, name="invitation_revoke"),
    path("invite/<str:token>/", views.invitation_accept, name="invitation_accept"),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<int:pk>/revoke/", views.token_revoke, name="token_revoke"),
    path("password/reset/", views.password_reset, name="password_reset"),
    path("password/reset/done/", views.password_reset_done, name="password_reset_done"),
    path("password/reset/<uidb64>/<token>/", views.password_reset_confirm, name="password_reset_confirm"),
    path("password/reset/complete/", views.password_reset_complete, name="password_reset_complete"),
    path("password/change/", views.password_change, name="password_change"),
]
