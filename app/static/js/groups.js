/* The groups page: a card per group with the pictures nearest its centre; opening one lists the group, and a
   click on a picture searches with it. */
"use strict";
let current = null;  // the open group's number in the API
let currentPlace = null;  // and on the page
let pending = null;

function k() { return $("#groups-k").val() || ""; }

function loadCards() {
  clearTimeout(pending);
  $.ajax({ url: "/api/groups", data: { k: k() } }).done((data, _, xhr) => {
    if (xhr.status === 202) {
      const pct = data.total ? (100 * data.done) / data.total : 5;
      $("#groups-progress").prop("hidden", false).find(".progress-bar").css("width", pct + "%");
      $("#groups-summary").text("grouping…");
      pending = setTimeout(loadCards, 1000);
      return;
    }
    $("#groups-progress").prop("hidden", true);
    $("#groups-summary").text(`${data.groups.length} groups of ${data.pictures} pictures`);
    if (!k()) $("#groups-k").attr("placeholder", `auto (${data.k})`);
    const $cards = $("#group-cards").empty();
    data.groups.forEach((group, place) => {  // largest first, numbered in that order
      const thumbs = group.preview.map((i) => `<img src="${escapeHtml(i.thumbnail_url)}" alt="${escapeHtml(i.path)}" loading="lazy">`).join("");
      $cards.append(`<div class="col"><div class="card h-100 shadow-sm group-card" role="button" tabindex="0" data-n="${group.n}" data-place="${place + 1}">
          <div class="preview d-flex flex-wrap">${thumbs}</div>
          <div class="card-body p-2 d-flex justify-content-between small"><span class="fw-semibold">Group ${place + 1}</span>
            <span class="text-secondary">${group.size} ${group.size === 1 ? "picture" : "pictures"}</span></div></div></div>`);
    });
  }).fail((xhr) => $("#group-cards").html(`<div class="alert alert-warning w-100">${escapeHtml(apiErrorMessage(xhr))}</div>`));
}

function openGroup(n, page, place) {
  current = n;
  if (place) currentPlace = place;
  $.getJSON(`/api/groups/${n}`, { k: k(), page: page || 1 }).done((data) => {
    $("#group-title").text(`Group ${currentPlace}: ${data.total} pictures, nearest its centre first`);
    const $items = $("#group-items").empty();
    for (const item of data.items) {
      $items.append(`<div class="col"><div class="card gallery-card shadow-sm h-100" data-id="${item.id}" title="${escapeHtml(item.path)}">
          <img src="${escapeHtml(item.thumbnail_url)}" class="card-img-top" alt="${escapeHtml(item.path)}" loading="lazy">
          <div class="card-body p-2 small text-truncate text-truncate-path">${escapeHtml(item.path)}</div></div></div>`);
    }
    renderPager($("#pager"), data.page, data.pages, (p) => openGroup(current, p));
    $("#group-detail").prop("hidden", false)[0].scrollIntoView({ behavior: "smooth" });
  }).fail((xhr) => alert(apiErrorMessage(xhr)));
}

$(function () {
  if (!$("#group-cards").length) return;
  loadCards();
  $("#groups-k").on("change", () => { $("#group-detail").prop("hidden", true); loadCards(); });
  $(document).on("click keydown", ".group-card", function (e) {
    if (e.type === "keydown" && e.key !== "Enter") return;
    openGroup($(this).data("n"), 1, $(this).data("place"));
  });
  $("#group-close").on("click", () => $("#group-detail").prop("hidden", true));
  $(document).on("click", "#group-items .gallery-card", function () { searchWithPicture($(this).data("id")); });
  $(document).on("click", ".find-similar", function () { searchWithPicture($(this).data("id")); });
});
