// The new-rollout form: show the summary of the plan chosen ("" is the default plan). The page
// renders every plan's summary and shows the chosen one, so it reads the same without script.
(function () {
  "use strict";

  function showChosenPlan(select, previews) {
    previews.forEach(function (preview) {
      preview.hidden = select.value
        ? preview.dataset.planPreview !== select.value
        : !preview.hasAttribute("data-default-plan");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var select = document.getElementById("id_plan");
    var previews = Array.prototype.slice.call(document.querySelectorAll("[data-plan-preview]"));
    if (!select || !previews.length) return;
    select.addEventListener("change", function () {
      showChosenPlan(select, previews);
    });
    showChosenPlan(select, previews);
  });
})();
