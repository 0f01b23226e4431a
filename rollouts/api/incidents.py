"""Incidents: `GET|POST /api/incidents`, `GET /api/incidents/{id}`, `POST /api/incidents/{id}/resolve`.

Opening a Sev1 against a release does not pause anything here: the autopilot does that on its
next round, so the rule holds however the incident was opened."""

import django_filters
from django.contrib.auth.models import User
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from rollouts.choices import IncidentSeverity
from rollouts.models import Incident, Release
from rollouts.services import incidents
from saferoll.core.api.fields import NamedObjectField
from saferoll.core.api.permissions import ActionPermission
from saferoll.core.filters import UtcDateTimeFilter


class IncidentFilter(django_filters.FilterSet):
    release = django_filters.CharFilter(field_name="release__version")
    opened_after = UtcDateTimeFilter(field_name="opened_at", lookup_expr="gte")
    opened_before = UtcDateTimeFilter(field_name="opened_at", lookup_expr="lt")

    class Meta:
        model = Incident
        fields = ["severity", "status", "release"]


class IncidentSerializer(serializers.ModelSerializer):
    release: serializers.SlugRelatedField[Release] = serializers.SlugRelatedField(
        slug_field="version", read_only=True, allow_null=True
    )
    opened_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    resolved_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Incident
        fields = [
            "id",
            "severity",
            "title",
            "description",
            "release",
            "status",
            "opened_by",
            "opened_at",
            "resolved_by",
            "resolved_at",
        ]
        read_only_fields = fields


class IncidentOpenSerializer(serializers.Serializer):
    severity = serializers.ChoiceField(choices=IncidentSeverity.choices)
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    release = NamedObjectField(
        slug_field="version",
        queryset=Release.objects.all(),
        required=False,
        allow_null=True,
        default=None,
        error_messages={"does_not_exist": "There is no release {value}."},
    )


class IncidentResolveSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


@extend_schema_view(
    list=extend_schema(summary="List incidents"),
    retrieve=extend_schema(summary="Get an incident"),
)
class IncidentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Incident.objects.select_related("release", "opened_by", "resolved_by").order_by(
        "-opened_at", "-id"
    )
    serializer_class = IncidentSerializer
    permission_classes = [ActionPermission]
    # Everyone with a role reads; operators, release managers and admins open and resolve.
    required_permissions = {
        "list": ("rollouts.view_incident", "view incidents"),
        "retrieve": ("rollouts.view_incident", "view incidents"),
        "create": ("rollouts.add_incident", "open incidents"),
        "resolve": ("rollouts.change_incident", "resolve incidents"),
    }
    filterset_class = IncidentFilter
    ordering_fields = ["opened_at", "severity"]

    @extend_schema(
        summary="Open an incident",
        request=IncidentOpenSerializer,
        responses={201: IncidentSerializer, 400: OpenApiResponse(description="Invalid input")},
    )
    def create(self, request):
        incoming = IncidentOpenSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        incident = incidents.incident_open(actor=request.user, **incoming.validated_data)
        return Response(self.get_serializer(incident).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Resolve an incident",
        request=IncidentResolveSerializer,
        responses={200: IncidentSerializer, 409: OpenApiResponse(description="Already resolved")},
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    def resolve(self, request, pk=None):
        incident = self.get_object()
        incoming = IncidentResolveSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        incident = incidents.incident_resolve(
            incident=incident, actor=request.user, reason=incoming.validated_data["reason"]
        )
        return Response(self.get_serializer(incident).data)


router = SimpleRouter(trailing_slash=False)
router.register("incidents", IncidentViewSet, basename="incident")
urlpatterns = router.urls
