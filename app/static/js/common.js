/* Shared by every page: CSRF on AJAX, the results grid, the analysis panel and the threshold slider. */
"use strict";
const csrfToken = $('meta[name="csrf-token"]').attr("content");
$.ajaxSetup({
  beforeSend(xhr, settings) {
    if (!/^(GET|HEAD|OPTIONS)$/i.test(settings.type)) xhr.setRequestHeader("X-CSRFToken", csrfToken);
  },
});

// Safe in element text and in quoted attributes alike (file names go into title and alt).
const HTML_ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
function escapeHtml(text) {
  return String(text == null ? "" : text).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);
}

function apiErrorMessage(xhr) {
  const body = xhr.responseJSON;
  if (body && body.error) return body.error.message;
  if (xhr.status === 413) return "The file is too large.";
  if (xhr.status === 0) return "The server could not be reached.";
  return "Something went wrong (" + xhr.status + ").";
}

/* The score a result needs for the threshold ``fraction`` of the ``best``: fraction x best, and, when every
   score is negative (words against pictures can be), as far below the best as that (app/services/search.py). */
function relativeCut(fraction, best) { return best - (1 - fraction) * Math.abs(best); }

const Results = {
  last: null,
  show(data) {
    this.last = data;
    const a = data.analysis;
    $("#an-model").text(a.model);
    $("#an-weights").text(a.weights);
    $("#an-dim").text(a.dim);
    $("#an-text-model").text(a.text_model || "");
    $("#an-text-row").toggleClass("d-none", !a.text_model).toggleClass("d-flex", !!a.text_model);
    const from = data.query && data.query.mode === "text" ? "words alone" : "from gallery";
    $("#an-size").text(a.image_size ? a.image_size[0] + " × " + a.image_size[1] : from);
    $("#an-gallery").text(a.gallery_size);
    $("#an-batch").text(a.batch_size ? `${a.batch_size} ${a.batch_size === 1 ? "query" : "queries"}` : (data.query && data.query.mode === "text" ? "no picture" : "no model run"));
    const stages = ["lookup", "fetch", "decode", "segment", "preprocess", "queue", "inference", "text", "search", "total"].filter((k) => k in a.timings_ms);
    const rows = stages.map((k) => [k, a.timings_ms[k]]).map(([k, v]) =>
      `<tr><td class="${k === "total" ? "fw-semibold" : ""}">${escapeHtml(k)}</td><td class="text-end">${v.toFixed(1)} ms</td></tr>`);
    $("#an-timings").html(rows.join(""));
    const $grid = $("#results").empty();
    for (const r of data.results) {
      const pct = Math.max(0, Math.min(100, r.score * 100));
      $grid.append(`
        <div class="col result-col" data-score="${r.score}">
          <div class="card h-100 shadow-sm result-card position-relative">
            <span class="badge text-bg-dark rank-badge">#${r.rank}</span>
            <a href="${escapeHtml(r.url)}" target="_blank" rel="noopener" title="Open full image"><img src="${escapeHtml(r.thumbnail_url)}" class="card-img-top" alt="${escapeHtml(r.path)}" loading="lazy"></a>
            <div class="card-body p-2">
              <div class="small text-truncate text-truncate-path" title="${escapeHtml(r.path)}">${escapeHtml(r.path)}</div>
              <div class="d-flex align-items-center gap-2 mt-1">
                <div class="progress flex-grow-1 score-bar" role="progressbar" aria-valuenow="${pct.toFixed(0)}" aria-valuemin="0" aria-valuemax="100">
                  <div class="progress-bar empty" data-pct="${pct}"></div></div>
                <span class="small fw-semibold score">${r.score.toFixed(3)}</span>
              </div>
              ${photoDetails(r.meta)}
              ${r.id ? `<button class="btn btn-sm btn-outline-primary w-100 mt-2 find-similar" data-id="${r.id}"><i class="bi bi-search"></i> Find similar</button>` : ""}
            </div>
          </div>
        </div>`);
    }
    $grid.find(".progress-bar[data-pct]").each(function () { $(this).css("width", `${$(this).data("pct")}%`); });
    const filtered = data.query && data.query.filter ? ` among ${data.query.filter.matching} matching the filters` : "";
    $("#results-summary").text(`${data.results.length} found${filtered}, best score ${data.results.length ? data.results[0].score.toFixed(3) : "-"}`);
    $("#results-area").prop("hidden", false);
    this.applyThreshold();
    $(document).trigger("results-shown", [data]);  // explain.js adds its "Why?" buttons
  },
  applyThreshold() {
    const fraction = Number($("#threshold").val()) / 100;
    $("#threshold-value").text(Math.round(fraction * 100) + "% of best");
    if (!this.last) return;
    const best = this.last.results.length ? this.last.results[0].score : 0;
    let visible = 0;
    $(".result-col").each(function () {
      const keep = Number($(this).data("score")) >= relativeCut(fraction, best);
      $(this).prop("hidden", !keep);
      if (keep) visible += 1;
    });
    $("#an-matches").text(visible);
    $("#no-results").prop("hidden", visible > 0);
  },
};
$(document).on("input", "#threshold", () => Results.applyThreshold());

function searchByGalleryId(id, topK, extra) {
  return $.ajax({ url: "/api/search", type: "POST", contentType: "application/json",
                  data: JSON.stringify({ gallery_id: Number(id), top_k: Number(topK || 10), ...PhotoFilters.values(),
                                         ...(extra || {}) }) });
}

/* Search with a gallery picture and show the results below the page's content (gallery, groups, map). */
function searchWithPicture(id) {
  searchByGalleryId(id, 20).done((data) => {
    Explain.remember({ fields: () => ({ query_gallery_id: Number(id) }), image: null });
    Results.show(data);
    document.getElementById("results-area").scrollIntoView({ behavior: "smooth" });
  }).fail((xhr) => alert(apiErrorMessage(xhr)));
}

/* The photo-details filters (_photo_filters.html), where the page has them: their non-empty values, sent with
   searches and listings; the camera choices come from the gallery. */
const PhotoFilters = {
  values() {
    const out = {};
    $(".photo-filter").each(function () { if (this.value) out[this.name] = this.value; });
    const weight = Number($("#color-weight").val() || 0);
    if (weight) out.color_weight = String(weight / 100);  // the colour blend, where the page has its slider
    return out;
  },
  init(onChange) {
    if (!$("#photo-filters").length) return;  // (the colour slider only ever appears beside the filters)
    $.getJSON("/api/gallery/cameras").done((data) => {
      for (const c of data.cameras) $("#camera").append($("<option>").val(c.camera).text(`${c.camera} (${c.count})`));
    });
    $("#color-weight").on("input", function () {
      const v = Number(this.value);
      $("#color-weight-value").text(v ? `${v}%` : "not at all");
    }).on("change", () => { if (onChange) onChange(); });
    $(".photo-filter").on("change", () => {
      const n = $(".photo-filter").filter(function () { return this.value; }).length;
      $("#filter-count").text(n).prop("hidden", n === 0);
      if (onChange) onChange();
    });
  },
};

/* A photo's details (indexer/exif.py) as a native disclosure: date (or file time), camera, lens, exposure,
   size, and the position when the server shows it. */
function photoDetails(meta) {
  if (!meta || !Object.keys(meta).length) return "";
  const rows = [];
  const add = (label, value) => { if (value !== undefined && value !== null && value !== "") rows.push([label, value]); };
  if (meta.taken_at) add(meta.time_source === "exif" ? "Taken" : "File time", meta.taken_at.replace("T", " "));
  add("Camera", meta.camera);
  add("Lens", meta.lens);
  const exposure = [meta.exposure && `${meta.exposure} s`, meta.aperture && `f/${meta.aperture}`,
                    meta.iso && `ISO ${meta.iso}`, meta.focal_length && `${meta.focal_length} mm`].filter(Boolean).join(" · ");
  add("Exposure", exposure);
  if (meta.width) add("Size", `${meta.width} × ${meta.height} (${meta.orientation})`);
  if (meta.latitude !== undefined) add("Position", `${meta.latitude.toFixed(5)}, ${meta.longitude.toFixed(5)}`);
  const body = rows.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(String(v))}</dd>`).join("");
  return `<details class="photo-details small mt-1"><summary>Details${meta.time_source === "file" ? " <span class='text-secondary'>(no EXIF)</span>" : ""}</summary><dl class="mb-0">${body}</dl></details>`;
}
$(document).on("click", ".photo-details", (e) => e.stopPropagation());  // opening it is not a click on the card

function renderPager($pager, page, pages, onPage) {
  $pager.empty();
  if (pages <= 1) return;
  const add = (label, target, disabled, active) => {
    const $li = $(`<li class="page-item ${disabled ? "disabled" : ""} ${active ? "active" : ""}"><a class="page-link" href="#">${label}</a></li>`);
    $li.on("click", (e) => { e.preventDefault(); if (!disabled && !active) onPage(target); });
    $pager.append($li);
  };
  add("&laquo;", page - 1, page <= 1, false);
  const first = Math.max(1, Math.min(page - 2, pages - 4));
  for (let p = first; p <= Math.min(pages, first + 4); p++) add(p, p, false, p === page);
  add("&raquo;", page + 1, page >= pages, false);
}

/* One paged list: GET `url` with `params()` and the page number, hand the answer to `render`, draw the pager.
   Returns { page, load(page) }. */
function pagedList(url, params, render, $pager) {
  const list = { page: 1 };
  list.load = (target) => {
    list.page = target || 1;
    return $.getJSON(url, { ...params(), page: list.page }).done((data) => {
      render(data);
      renderPager($pager, data.page, data.pages, list.load);
    });
  };
  return list;
}

/* Send a search; if the server answers 503 "busy" with Retry-After, say so through onBusy(seconds) and try
   once more after that many seconds (at most 10). */
function postSearch(options, onBusy) {
  const result = $.Deferred();
  $.ajax(options).done(result.resolve).fail((xhr, ...rest) => {
    const wait = Number(xhr.getResponseHeader("Retry-After"));
    if (xhr.status !== 503 || !wait) { result.reject(xhr, ...rest); return; }
    if (onBusy) onBusy(wait);
    setTimeout(() => $.ajax(options).done(result.resolve).fail(result.reject), Math.min(wait, 10) * 1000);
  });
  return result.promise();
}
