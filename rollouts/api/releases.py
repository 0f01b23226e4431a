"""Releases: `GET|POST /api/releases`, `GET|PATCH /api/releases/{version}`, and the artifact
download `GET /api/releases/{version}/artifact` for devices and people."""

from typing import TYPE_CHECKING

import django_filters
from django.contrib.auth.models import User
from django.db.models import BigIntegerField
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from devices.authentication import DeviceAuthentication, IsDevice
from devices.models import HardwareVariant
from rollouts.fleet_release import current_for, current_releases
from rollouts.models import Release
from rollouts.services import releases
from saferoll.core.api.fields import NamedObjectField
from saferoll.core.api.permissions import ActionPermission

if TYPE_CHECKING:
    from django_stubs_ext import StrPromise


class ReleaseArtifactPermission(permissions.BasePermission):
    """A device (its own credential) or a person allowed to read releases."""

    admits_devices = True  # the schema offers the device credential (rollouts.api.protocol)

    def has_permission(self, request, view) -> bool:
        return IsDevice().has_permission(request, view) or ActionPermission().has_permission(request, view)


class ReleaseFilter(django_filters.FilterSet):
    version = django_filters.CharFilter(lookup_expr="exact")
    version_contains = django_filters.CharFilter(field_name="version", lookup_expr="icontains")

    class Meta:
        model = Release
        fields = ["version", "is_stable"]


class ReleaseSerializer(serializers.ModelSerializer):
    """A release as the API shows it; `download_url` is where devices fetch the artifact."""

    # Empty when the artifact is uploaded instead (the schema cannot call "" a URL).
    artifact_url = serializers.CharField(read_only=True)
    compatible_variants: serializers.SlugRelatedField[HardwareVariant] = serializers.SlugRelatedField(
        slug_field="name", many=True, read_only=True
    )
    previous_release: serializers.SlugRelatedField[Release] = serializers.SlugRelatedField(
        slug_field="version", read_only=True, allow_null=True
    )
    created_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    has_artifact = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()
    current_for = serializers.SerializerMethodField(
        help_text="The hardware variants whose current release this is: the release of the last rollout "
        "completed for the variant, or before any, the newest stable one."
    )

    class Meta:
        model = Release
        fields = [
            "version",
            "artifact_url",
            "has_artifact",
            "download_url",
            "size_bytes",
            "sha256",
            "signature",
            "compatible_variants",
            "notes",
            "is_stable",
            "previous_release",
            "current_for",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields

    def get_current_for(self, release: Release) -> list[str]:
        # Worked out once per response, however many releases it lists (a list shares its child).
        if not hasattr(self, "_currents"):
            self._currents = current_releases()
        return current_for(release, self._currents)

    def get_has_artifact(self, release: Release) -> bool:
        return bool(release.artifact)

    def get_download_url(self, release: Release) -> str:
        """The uploaded file when there is one (served by SafeRoll), else the external URL."""
        if not release.artifact:
            return release.artifact_url
        path = f"/api/releases/{release.version}/artifact"
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


_PREVIOUS_RELEASE_ERRORS: "dict[str, str | StrPromise]" = {
    "does_not_exist": "There is no release {value} to roll back to.",
    "invalid": "Give the previous release as its version string.",
}


class ReleaseWriteSerializer(serializers.Serializer):
    """Input shared by create and update; the rules themselves live in rollouts.services.releases."""

    artifact = serializers.FileField(required=False, help_text="Upload the artifact (multipart).")
    artifact_url = serializers.URLField(required=False, allow_blank=True, max_length=500)
    size_bytes = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=BigIntegerField.MAX_BIGINT
    )
    sha256 = serializers.CharField(required=False, allow_blank=True, max_length=64)
    signature = serializers.CharField(required=False, allow_blank=True)
    compatible_variants = serializers.ListField(
        child=serializers.CharField(max_length=50), required=False, help_text="Hardware variant names."
    )
    notes = serializers.CharField(required=False, allow_blank=True)
    is_stable = serializers.BooleanField(required=False)
    previous_release = NamedObjectField(
        slug_field="version",
        queryset=Release.objects.all(),
        required=False,
        allow_null=True,
        error_messages=_PREVIOUS_RELEASE_ERRORS,
    )


class ReleaseCreateSerializer(ReleaseWriteSerializer):
    version = serializers.CharField(max_length=50)


class ReleaseUpdateSerializer(ReleaseWriteSerializer):
    version = serializers.CharField(
        max_length=50, required=False, help_text="Immutable: accepted only when unchanged."
    )


@extend_schema_view(
    list=extend_schema(summary="List releases"),
    retrieve=extend_schema(summary="Get a release"),
)
class ReleaseViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    queryset = (
        Release.objects.select_related("previous_release", "created_by")
        .prefetch_related("compatible_variants")
        .order_by("-created_at", "-id")
    )
    serializer_class = ReleaseSerializer
    permission_classes = [ActionPermission]
    # Everyone with a role reads; release managers and admins write.
    required_permissions = {
        "list": ("rollouts.view_release", "view releases"),
        "retrieve": ("rollouts.view_release", "view releases"),
        "artifact": ("rollouts.view_release", "download release artifacts"),
        "create": ("rollouts.add_release", "create releases"),
        "partial_update": ("rollouts.change_release", "change releases"),
    }
    filterset_class = ReleaseFilter
    ordering_fields = ["created_at", "version"]
    lookup_field = "version"
    # Versions contain dots ("v2.1"), which the router's default pattern would refuse.
    lookup_value_regex = r"[^/]+"
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(
        summary="Create a release",
        request={
            "application/json": ReleaseCreateSerializer,
            "multipart/form-data": ReleaseCreateSerializer,
        },
        responses={201: ReleaseSerializer, 400: OpenApiResponse(description="Invalid input")},
    )
    def create(self, request):
        incoming = ReleaseCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        release = releases.release_create(actor=request.user, **incoming.validated_data)
        return Response(self.get_serializer(release).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change a release (its version is immutable)",
        request={
            "application/json": ReleaseUpdateSerializer,
            "multipart/form-data": ReleaseUpdateSerializer,
        },
        responses={200: ReleaseSerializer, 400: OpenApiResponse(description="Invalid input")},
    )
    def partial_update(self, request, version=None):
        release = self.get_object()
        incoming = ReleaseUpdateSerializer(data=request.data, partial=True)
        incoming.is_valid(raise_exception=True)
        release = releases.release_update(
            release=release, actor=request.user, data=dict(incoming.validated_data)
        )
        return Response(self.get_serializer(self.get_queryset().get(pk=release.pk)).data)

    @extend_schema(
        summary="Download a release's uploaded artifact",
        description="For devices (`Authorization: Device <token>`) and people allowed to read releases.",
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            404: OpenApiResponse(description="No such release, or no uploaded file"),
        },
    )
    @action(
        detail=True,
        methods=["get"],
        authentication_classes=[DeviceAuthentication, TokenAuthentication, SessionAuthentication],
        permission_classes=[ReleaseArtifactPermission],
        filter_backends=[],
    )
    def artifact(self, request, version=None):
        release = self.get_object()
        if not release.artifact:
            message = f"Release {release.version} has no uploaded artifact file."
            if release.artifact_url:
                message += f" Its artifact is published at {release.artifact_url}."
            raise NotFound(message)
        try:
            handle = release.artifact.open("rb")
        except FileNotFoundError:
            raise NotFound(
                f"The artifact file of release {release.version} is missing from storage."
            ) from None
        # FileResponse streams the file in blocks and sets Content-Length from its size.
        response = FileResponse(handle, as_attachment=True, filename=release.artifact.name.rsplit("/", 1)[-1])
        if release.sha256:
            response["X-Checksum-SHA256"] = release.sha256
        return response


router = SimpleRouter(trailing_slash=False)
router.register("releases", ReleaseViewSet, basename="release")
urlpatterns = router.urls
