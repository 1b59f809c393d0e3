/* The duplicates page: groups of near-identical pictures at the slider's threshold, best first; an
   administrator can keep the best of a group and delete the others (the manage page's journaled delete). */
"use strict";
let threshold = 0.95;
let page = 1;
let pending = null;

function card(item, best) {
  const m = item.meta || {};
  const size = m.width ? `${m.width} × ${m.height}` : "";
  const kb = item.bytes ? `${Math.round(item.bytes / 1024)} KB` : "";
  return `<div class="col"><div class="card h-100 shadow-sm ${best ? "best" : ""}">
      <a href="${escapeHtml(item.url)}" target="_blank" rel="noopener"><img src="${escapeHtml(item.thumbnail_url)}" class="card-img-top" alt="${escapeHtml(item.path)}" loading="lazy"></a>
      <div class="card-body p-2 small"><div class="text-truncate text-truncate-path" title="${escapeHtml(item.path)}">${escapeHtml(item.path)}</div>
        <div class="text-secondary">${escapeHtml([size, kb].filter(Boolean).join(" · "))}${best ? " · <span class='text-success fw-semibold'>best</span>" : ""}</div></div></div></div>`;
}

// "about 3 min left" from the status's estimate (absent until the job has run long enough to measure a rate).
function timeLeft(seconds, elapsed) {
  if (seconds === null || seconds === undefined) return elapsed >= 2 ? "estimating the time left" : "";
  if (seconds < 60) return "less than a minute left";
  if (seconds < 3600) return `about ${Math.ceil(seconds / 60)} min left`;
  return `about ${Math.floor(seconds / 3600)} h ${Math.ceil((seconds % 3600) / 60)} min left`;
}

function load(target) {
  page = target || 1;
  clearTimeout(pending);
  $.ajax({ url: "/api/duplicates", data: { threshold: threshold, page: page } }).done((data, _, xhr) => {
    if (xhr.status === 202) {  // still computing: show how far, ask again
      const pct = data.total ? (100 * data.done) / data.total : 0;
      $("#dup-progress").prop("hidden", false).attr("aria-valuenow", Math.round(pct))
        .find(".progress-bar").css("width", Math.max(pct, 2) + "%");
      $("#dup-summary").text("looking through the gallery…");
      $("#dup-eta").prop("hidden", false).text([`${Math.floor(pct)}% done`, timeLeft(data.eta_seconds, data.elapsed_seconds)].filter(Boolean).join(" · "));
      pending = setTimeout(() => load(page), 1000);
      return;
    }
    $("#dup-progress, #dup-eta").prop("hidden", true);
    $("#dup-summary").text(`${data.total} ${data.total === 1 ? "group" : "groups"}, ${data.pictures} pictures`);
    const admin = $("#dup-groups").data("admin") === "yes";
    const $groups = $("#dup-groups").empty();
    data.groups.forEach((group, g) => {
      const others = group.items.slice(1).map((i) => i.id);
      $groups.append(`<section class="dup-group mb-4">
          <div class="d-flex justify-content-between align-items-center mb-2">
            <h2 class="h6 mb-0">${group.size} alike</h2>
            ${admin ? `<button class="btn btn-sm btn-outline-danger keep-best" data-ids="${others.join(",")}"><i class="bi bi-trash"></i> Keep the best, delete ${others.length}</button>` : ""}
          </div>
          <div class="row row-cols-2 row-cols-sm-3 row-cols-md-4 row-cols-xl-6 g-3">${group.items.map((item, i) => card(item, i === 0)).join("")}</div>
        </section>`);
    });
    $("#dup-empty").prop("hidden", data.total > 0);
    renderPager($("#pager"), data.page, data.pages, load);
  }).fail((xhr) => $("#dup-groups").html(`<div class="alert alert-warning">${escapeHtml(apiErrorMessage(xhr))}</div>`));
}

$(function () {
  if (!$("#dup-groups").length) return;
  load(1);
  $("#dup-threshold").on("input", function () { $("#dup-threshold-value").text((this.value / 100).toFixed(2)); })
    .on("change", function () { threshold = this.value / 100; load(1); });
  $(document).on("click", ".keep-best", function () {
    const ids = String($(this).data("ids")).split(",").map(Number);
    if (!window.confirm(`Delete ${ids.length} picture(s) from the gallery? The best one of the group stays.`)) return;
    $(this).prop("disabled", true);
    $.ajax({ url: "/api/admin/images", type: "DELETE", contentType: "application/json", data: JSON.stringify({ ids: ids }) })
      .done(() => load(page)).fail((xhr) => alert(apiErrorMessage(xhr)));
  });
});
