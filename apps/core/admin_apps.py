"""The admin app with Octopus's site as the default ``admin.site`` (2FA-verified, firm-scoped).

Kept free of model imports: INSTALLED_APPS loads it before the models exist.
"""

from django.contrib.admin.apps import AdminConfig


class OctopusAdminConfig(AdminConfig):
    default_site = "apps.core.admin.OctopusAdminSite"
