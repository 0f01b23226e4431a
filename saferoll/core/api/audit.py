"""The audit log, read-only: `GET /api/audit-events`, `GET /api/audit-events/{id}`.

There is no write method at all: events are appended by saferoll.core.audit and by nothing else."""

import django_filters
from django.db.models import Model
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import permissions, serializers, viewsets
from rest_framework.routers import SimpleRouter

from saferoll.core.filters import UtcDateTimeFilter
from saferoll.core.models import AuditEvent


class CanViewAudit(permissions.BasePermission):
    """Every role may read the audit log; people without a role may not."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("saferoll.view_auditevent"))


class AuditEventFilter(django_filters.FilterSet):
    action = django_filters.CharFilter(lookup_expr="exact")
    actor = django_filters.CharFilter(field_name="actor_name", lookup_expr="exact")
    object_type = django_filters.CharFilter(lookup_expr="exact")
    object_id = django_filters.CharFilter(lookup_expr="exact")
    rollout = django_filters.CharFilter(field_name="rollout__rollout_id", lookup_expr="exact")
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["action", "actor", "object_type", "object_id", "rollout"]


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_name", read_only=True)
    # A Rollout (rollouts.models), which this layer does not import.
    rollout: serializers.SlugRelatedField[Model] = serializers.SlugRelatedField(
        slug_field="rollout_id", read_only=True
    )

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "rollout",
            "from_ring",
            "to_ring",
            "reason",
            "changes",
            "evaluation",
        ]
        read_only_fields = fields


@extend_schema_view(
    list=extend_schema(summary="List audit events (newest first)"),
    retrieve=extend_schema(summary="Get an audit event"),
)
class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    # Newest first; the (created_at) index serves the default order and the date filters.
    queryset = AuditEvent.objects.select_related("rollout").order_by("-created_at", "-id")
    serializer_class = AuditEventSerializer
    permission_classes = [CanViewAudit]
    filterset_class = AuditEventFilter
    ordering_fields = ["created_at", "id"]


router = SimpleRouter(trailing_slash=False)
router.register("audit-events", AuditEventViewSet, basename="audit-event")
urlpatterns = router.urls
