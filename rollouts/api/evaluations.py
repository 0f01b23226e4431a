"""Stored gate evaluations, read-only: why each decision was made (SPEC §5).

GET /api/evaluations            filter: rollout_id, action, ring, source, created_after/before
GET /api/evaluations/{id}
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.routers import SimpleRouter

from rollouts.api.rollouts import keyed_pagination
from rollouts.filtersets import EvaluationFilterSet
from rollouts.models import Evaluation
from rollouts.permissions import EvaluationPermission
from saferoll.core.api.schema import ErrorSerializer


class EvaluationSerializer(serializers.ModelSerializer):
    rollout_id = serializers.CharField(source="rollout.rollout_id")
    evaluation = serializers.JSONField(
        source="detail",
        help_text="ring, overall, gates, score (0–100, weighed from the gates; it decides nothing) and health (000 §5.2)",
    )

    class Meta:
        model = Evaluation
        fields = ["id", "rollout_id", "ring", "action", "reason", "evaluation", "source", "created_at"]
        read_only_fields = fields


@extend_schema_view(
    list=extend_schema(summary="List stored evaluations (newest first)"),
    retrieve=extend_schema(
        summary="A stored evaluation",
        responses={200: EvaluationSerializer, 404: OpenApiResponse(ErrorSerializer)},
    ),
)
class EvaluationViewSet(viewsets.ReadOnlyModelViewSet):
    # Newest first; the (rollout, -created_at) index serves a rollout's evaluations in this order.
    queryset = Evaluation.objects.select_related("rollout").order_by("-created_at", "-id")
    serializer_class = EvaluationSerializer
    permission_classes = [EvaluationPermission]
    filterset_class = EvaluationFilterSet
    pagination_class = keyed_pagination("evaluations")
    ordering_fields = ["created_at"]
    lookup_value_regex = r"[0-9]+"

    def get_object(self) -> Evaluation:
        pk = self.kwargs[self.lookup_field]
        evaluation = self.get_queryset().filter(pk=pk).first()
        if evaluation is None:
            raise NotFound(f"Evaluation {pk} not found.")
        self.check_object_permissions(self.request, evaluation)
        return evaluation


router = SimpleRouter(trailing_slash=False)
router.register("evaluations", EvaluationViewSet, basename="evaluation")
urlpatterns = router.urls
