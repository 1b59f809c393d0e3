/* The gallery page: paginated thumbnails with a file-name filter; a click searches with the stored feature. */
"use strict";
let filterTimer = null;

const gallery = pagedList("/api/gallery", () => ({ per_page: 24, q: $("#filter").val(), ...PhotoFilters.values() }), (data) => {
  const $grid = $("#gallery").empty();
  for (const item of data.items) {
    $grid.append(`<div class="col"><div class="card gallery-card shadow-sm h-100" data-id="${item.id}" title="${escapeHtml(item.path)}">
        <img src="${escapeHtml(item.thumbnail_url)}" class="card-img-top" alt="${escapeHtml(item.path)}" loading="lazy">
        <div class="card-body p-2 small"><div class="text-truncate text-truncate-path">${escapeHtml(item.path)}</div>${photoDetails(item.meta)}</div></div></div>`);
  }
  $("#gallery-count").text(`${data.total} ${data.total === 1 ? "image" : "images"}`);
  $("#gallery-empty").prop("hidden", data.total > 0 || (!data.q && !Object.keys(data.filter || {}).length));
}, $("#pager"));

function load(target) {
  gallery.load(target).fail((xhr) => $("#gallery").html(`<div class="alert alert-warning w-100">${escapeHtml(apiErrorMessage(xhr))}</div>`));
}

$(function () {
  load(1);
  PhotoFilters.init(() => load(1));
  $("#filter").on("input", () => { clearTimeout(filterTimer); filterTimer = setTimeout(() => load(1), 250); });
  $(document).on("click", ".gallery-card", function () { searchWithPicture($(this).data("id")); });
  $(document).on("click", ".find-similar", function () { searchWithPicture($(this).data("id")); });
});
