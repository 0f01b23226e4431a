"""Cohorts: named device groups with explicit, audited membership (002 A)."""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from devices import selectors, services
from devices.authentication import PEOPLE_AUTHENTICATION
from devices.choices import CohortKind
from devices.filtersets import CohortFilterSet
from devices.models import Cohort
from saferoll.core.api.permissions import ActionPermission
from saferoll.core.api.serializers import StrictSerializer

COHORT_NAME_PATTERN = r"^[A-Za-z0-9._-]{1,50}$"
MAX_MEMBER_CHANGES = 10_000


class CohortSerializer(serializers.ModelSerializer):
    device_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Cohort
        fields = ["name", "kind", "description", "device_count", "created_at"]
        read_only_fields = fields


class CohortDetailSerializer(CohortSerializer):
    members = serializers.SerializerMethodField(help_text="Device ids, sorted.")

    class Meta(CohortSerializer.Meta):
        fields = [*CohortSerializer.Meta.fields, "members"]
        read_only_fields = fields

    def get_members(self, cohort: Cohort) -> list[str]:
        return selectors.cohort_member_ids(cohort)


class CohortCreateSerializer(StrictSerializer):
    name = serializers.RegexField(
        COHORT_NAME_PATTERN,
        error_messages={"invalid": "A cohort name is 1 to 50 letters, digits, '.', '_' or '-'."},
    )
    kind = serializers.ChoiceField(choices=CohortKind.choices, default=CohortKind.CUSTOM)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    device_ids = serializers.ListField(
        child=serializers.CharField(max_length=50),
        required=False,
        default=list,
        max_length=MAX_MEMBER_CHANGES,
        help_text="First members, by device id.",
    )


class CohortUpdateSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=CohortKind.choices, required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)

    def validate(self, attrs):
        if not attrs:
            raise ValidationError(
                "Nothing to change: give kind or description (a cohort's name cannot change)."
            )
        return attrs


class MembersChangeSerializer(StrictSerializer):
    add = serializers.ListField(
        child=serializers.CharField(max_length=50),
        required=False,
        default=list,
        max_length=MAX_MEMBER_CHANGES,
    )
    remove = serializers.ListField(
        child=serializers.CharField(max_length=50),
        required=False,
        default=list,
        max_length=MAX_MEMBER_CHANGES,
    )

    def validate(self, attrs):
        if not attrs["add"] and not attrs["remove"]:
            raise ValidationError("Nothing to change: give device ids to add or remove.")
        return attrs


class MembersChangedSerializer(serializers.Serializer):
    cohort = serializers.CharField()
    added = serializers.ListField(child=serializers.CharField())
    removed = serializers.ListField(child=serializers.CharField())
    device_count = serializers.IntegerField()


@extend_schema_view(
    list=extend_schema(summary="List cohorts"),
    retrieve=extend_schema(summary="One cohort with its members"),
)
class CohortViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    authentication_classes = PEOPLE_AUTHENTICATION
    permission_classes = [ActionPermission]
    required_permissions = {
        "list": ("devices.view_cohort", "view cohorts"),
        "retrieve": ("devices.view_cohort", "view cohorts"),
        "create": ("devices.add_cohort", "create cohorts"),
        "partial_update": ("devices.change_cohort", "change cohorts"),
        "members": ("devices.change_cohort", "change cohort membership"),
    }
    lookup_field = "name"
    # Wider than the names the API creates: cohorts made in the admin may contain spaces.
    lookup_value_regex = r"[^/]+"
    filterset_class = CohortFilterSet
    ordering_fields = ["name", "kind", "created_at", "device_count"]
    ordering = ["name"]

    def get_queryset(self):
        return selectors.cohort_list()

    def get_serializer_class(self):
        return CohortSerializer if self.action == "list" else CohortDetailSerializer

    def get_object(self) -> Cohort:
        cohort = self.get_queryset().filter(name=self.kwargs["name"]).first()
        if cohort is None:
            raise NotFound(f"No cohort named {self.kwargs['name']}.")
        self.check_object_permissions(self.request, cohort)
        return cohort

    def _detail(self, cohort: Cohort) -> dict:
        return CohortDetailSerializer(selectors.cohort_list().get(pk=cohort.pk)).data

    @extend_schema(
        summary="Create a cohort", request=CohortCreateSerializer, responses={201: CohortDetailSerializer}
    )
    def create(self, request):
        serializer = CohortCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        cohort = services.cohort_create(actor=request.user, **serializer.validated_data)
        return Response(self._detail(cohort), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change a cohort's kind or description",
        request=CohortUpdateSerializer,
        responses={200: CohortDetailSerializer},
    )
    def partial_update(self, request, name: str):
        cohort = self.get_object()
        serializer = CohortUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        cohort = services.cohort_update(cohort=cohort, actor=request.user, data=serializer.validated_data)
        return Response(self._detail(cohort))

    @extend_schema(
        summary="Add and remove members by device id (audited)",
        request=MembersChangeSerializer,
        responses={200: MembersChangedSerializer},
    )
    @action(detail=True, methods=["post"])
    def members(self, request, name: str):
        cohort = self.get_object()
        serializer = MembersChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = services.cohort_change_members(
            cohort=cohort, actor=request.user, **serializer.validated_data
        )
        count = selectors.cohort_list().get(pk=cohort.pk).device_count
        return Response({"cohort": cohort.name, **result, "device_count": count})


router = SimpleRouter(trailing_slash=False)
router.register("cohorts", CohortViewSet, basename="cohort")
urlpatterns = router.urls
