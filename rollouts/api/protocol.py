"""The device protocol: a device asks what it should run and reports each deployment step (SPEC §7).

Only devices may call these endpoints (`Authorization: Device <token>`); a person's credential is
recognised so that it can be refused with a clear 403.
"""

from urllib.parse import quote

from django.urls import path
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from devices.authentication import DeviceAuthentication, IsDevice
from devices.services import device_touch_heartbeat
from rollouts.api.devices import DeviceDeploymentSerializer
from rollouts.choices import DEPLOYMENT_STEPS
from rollouts.models import Release
from rollouts.services import deployments
from saferoll.core.api.serializers import StrictSerializer
from saferoll.core.api.throttles import THROTTLED_RESPONSE, DesiredStateThrottle


class DeviceAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "devices.authentication.DeviceAuthentication"
    name = "deviceAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "A device's own credential: `Device <token>`.",
        }

    def get_security_requirement(self, auto_schema):
        # People's endpoints recognise a device credential only to refuse it: not a way in. The
        # endpoints whose permission admits devices (admits_devices) say so.
        permissions = getattr(auto_schema.view, "permission_classes", ())
        if not any(getattr(permission, "admits_devices", False) for permission in permissions):
            return None
        return {self.name: []}


# DeviceAuthentication first, so a request without credentials is told to use `Device <token>`.
DEVICE_AUTHENTICATION = [DeviceAuthentication, TokenAuthentication, SessionAuthentication]
# The device endpoints' security requirement in the schema. extend_schema(auth=...) takes security
# requirement objects like this one; its annotation says strings.
DEVICE_AUTH_SCHEMA: list[str] = [{"deviceAuth": []}]  # type: ignore[list-item]


class ReleaseArtifactSerializer(serializers.Serializer):
    version = serializers.CharField()
    artifact_url = serializers.CharField(allow_null=True)
    size_bytes = serializers.IntegerField(allow_null=True)
    sha256 = serializers.CharField(allow_null=True)
    signature = serializers.CharField(allow_null=True)


class DesiredStateSerializer(serializers.Serializer):
    """Documentation of the answer; which fields appear depends on `action`."""

    action = serializers.ChoiceField(choices=["none", "install", "rollback"])
    version = serializers.CharField(
        required=False, help_text="With action none: the version to keep running."
    )
    rollout_id = serializers.CharField(required=False)
    release = ReleaseArtifactSerializer(required=False)
    activate = serializers.BooleanField(
        required=False, help_text="With install: false means download and verify only (rollout paused)."
    )
    activate_after = serializers.DateTimeField(
        required=False, allow_null=True, help_text="With install: do not activate before this time (UTC)."
    )


# Inlined in the schema: as a named enum it would collide with DeploymentState's ("state" too).
@extend_schema_field({"type": "string", "enum": list(DEPLOYMENT_STEPS)})
class DeploymentStepField(serializers.ChoiceField):
    """A step a device may report: a subset of the deployment states."""


class DeploymentReportSerializer(StrictSerializer):
    state = DeploymentStepField(choices=list(DEPLOYMENT_STEPS))
    error = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=deployments.ERROR_MAX_CHARS
    )
    diagnostics = serializers.CharField(
        required=False, allow_blank=True, default="", trim_whitespace=False, help_text="Logs, at most 64 KB."
    )


class DiagnosticsSerializer(StrictSerializer):
    diagnostics = serializers.CharField(trim_whitespace=False, help_text="Logs, at most 64 KB.")


def _release_payload(release: Release, request: Request) -> dict:
    url: str | None
    if release.artifact:
        # The release's uploaded file is served by SafeRoll itself.
        url = request.build_absolute_uri(f"/api/releases/{quote(release.version, safe='')}/artifact")
    else:
        url = release.artifact_url or None
    return {
        "version": release.version,
        "artifact_url": url,
        "size_bytes": release.size_bytes,
        "sha256": release.sha256 or None,
        "signature": release.signature or None,
    }


def _rollback_payload(desired: deployments.DesiredState, request: Request) -> dict:
    if desired.release is not None:
        return _release_payload(desired.release, request)
    # No previous release on record: go back to what the device ran before, from its own storage.
    return {
        "version": desired.rollback_version,
        "artifact_url": None,
        "size_bytes": None,
        "sha256": None,
        "signature": None,
    }


class DeviceView(APIView):
    authentication_classes = DEVICE_AUTHENTICATION
    permission_classes = [IsDevice]


class DesiredStateView(DeviceView):
    throttle_classes = [DesiredStateThrottle]

    @extend_schema(
        summary="What this device should run now",
        description=(
            "`none` also while the device's wave of a rollout has not been released yet, or while a "
            "failed try waits out the plan's retry backoff: the device keeps its version and asks again."
        ),
        responses={200: DesiredStateSerializer, 429: THROTTLED_RESPONSE},
        auth=DEVICE_AUTH_SCHEMA,
    )
    def get(self, request):
        device = request.auth
        device_touch_heartbeat(device=device)
        desired = deployments.device_desired_state(device=device)
        if desired.action == deployments.DesiredAction.NONE:
            return Response({"action": desired.action, "version": desired.version})
        # Every action but "none" comes with the device's deployment, and "install" with its release.
        assert desired.deployment is not None
        rollout_id = desired.deployment.rollout.rollout_id
        if desired.action == deployments.DesiredAction.ROLLBACK:
            return Response(
                {
                    "action": desired.action,
                    "rollout_id": rollout_id,
                    "release": _rollback_payload(desired, request),
                }
            )
        assert desired.release is not None
        return Response(
            {
                "action": desired.action,
                "rollout_id": rollout_id,
                "release": _release_payload(desired.release, request),
                "activate": desired.activate,
                "activate_after": (
                    serializers.DateTimeField().to_representation(desired.activate_after)
                    if desired.activate_after
                    else None
                ),
            }
        )


class DeploymentReportView(DeviceView):
    @extend_schema(
        summary="Report a deployment step",
        description="downloading → verified → activated, or failed (with an error); rolled_back after a rollback.",
        request=DeploymentReportSerializer,
        responses={
            200: DeviceDeploymentSerializer,
            404: OpenApiResponse(description="This device has no deployment in that rollout."),
            409: OpenApiResponse(description="The step does not follow the deployment's current state."),
        },
        auth=DEVICE_AUTH_SCHEMA,
    )
    def post(self, request, rollout_id: str):
        serializer = DeploymentReportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        device = request.auth
        device_touch_heartbeat(device=device)
        deployment = deployments.deployment_report(
            device=device, rollout=rollout_id, **serializer.validated_data
        )
        return Response(DeviceDeploymentSerializer(deployment).data)


class DeploymentDiagnosticsView(DeviceView):
    @extend_schema(
        summary="Attach logs to this device's deployment",
        request=DiagnosticsSerializer,
        responses={
            200: DeviceDeploymentSerializer,
            404: OpenApiResponse(description="This device has no deployment in that rollout."),
        },
        auth=DEVICE_AUTH_SCHEMA,
    )
    def post(self, request, rollout_id: str):
        serializer = DiagnosticsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        deployment = deployments.deployment_attach_diagnostics(
            device=request.auth, rollout=rollout_id, **serializer.validated_data
        )
        return Response(DeviceDeploymentSerializer(deployment).data)


urlpatterns = [
    path("device/desired-state", DesiredStateView.as_view(), name="device-desired-state"),
    path(
        "device/deployments/<str:rollout_id>", DeploymentReportView.as_view(), name="device-deployment-report"
    ),
    path(
        "device/deployments/<str:rollout_id>/diagnostics",
        DeploymentDiagnosticsView.as_view(),
        name="device-deployment-diagnostics",
    ),
]
