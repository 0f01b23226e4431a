"""Device credentials: `Authorization: Device <token>`, checked against the stored hash."""

from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions, permissions
from rest_framework.settings import api_settings

from devices.models import Device, hash_token

KEYWORD = "Device"


class DeviceAuthentication(authentication.BaseAuthentication):
    """Authenticates a device. `request.auth` is the Device; `request.user` stays anonymous,
    so a device can never pass a permission check meant for people."""

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != KEYWORD.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Malformed Device authorization header: use 'Device <token>'."
            )
        try:
            token = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Device token contains invalid characters.") from None
        device = Device.objects.select_related("variant").filter(token_hash=hash_token(token)).first()
        if device is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked device token.")
        return (AnonymousUser(), device)

    def authenticate_header(self, request):
        return KEYWORD


class IsDevice(permissions.BasePermission):
    message = "This endpoint is for devices: authenticate with 'Authorization: Device <token>'."
    # The schema offers a device credential on the endpoints whose permission admits devices.
    admits_devices = True

    def has_permission(self, request, view):
        return isinstance(request.auth, Device)


# A device credential is recognised on people's endpoints so that it is refused with a clear 403
# instead of being ignored (which would read as "not logged in").
PEOPLE_AUTHENTICATION: list[type[authentication.BaseAuthentication]] = [
    # The stubs type api_settings' class settings as their dotted paths; DRF has imported them.
    *api_settings.DEFAULT_AUTHENTICATION_CLASSES,  # type: ignore[list-item]
    DeviceAuthentication,
]
