from django.urls import path

from apps.audit import api

urlpatterns = [
    path("audit/events/", api.AuditEventListApi.as_view(), name="audit-event-list"),
    path("audit/events/<int:pk>/", api.AuditEventDetailApi.as_view(), name="audit-event-detail"),
    path("audit/export/", api.AuditExportApi.as_view(), name="audit-export"),
    path("audit/export/manifest/", api.AuditExportManifestApi.as_view(), name="audit-export-manifest"),
]
