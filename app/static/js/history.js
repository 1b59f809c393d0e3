/* The history page: past searches with their query picture and best results; re-run or delete. */
"use strict";
const searches = pagedList("/api/history", () => ({ per_page: 10 }), (data) => {
  const $list = $("#history").empty();
  for (const s of data.items) {
    const when = new Date(s.created_at).toLocaleString();
    const thumbs = s.results.map((r) => `<img src="${escapeHtml(r.thumbnail_url)}" class="history-thumb" alt="${escapeHtml(r.path)}" title="${escapeHtml(r.path)} · ${r.score.toFixed(3)}">`).join("");
    $list.append(`<div class="card shadow-sm history-item" data-id="${s.id}"><div class="card-body d-flex flex-wrap gap-3 align-items-center">
        ${s.query_url ? `<img src="${escapeHtml(s.query_url)}" class="history-thumb border border-2 border-primary" alt="query">` : ""}
        <div class="me-auto">
          <div class="fw-semibold">${escapeHtml(s.filename || (s.mode === "gallery" ? "Gallery picture" : "Pasted image"))}</div>
          <div class="small text-secondary">${when} · top ${s.top_k} · ${s.total_ms} ms</div>
        </div>
        <div class="d-flex gap-2">${thumbs}</div>
        <div class="d-flex gap-2">
          <button class="btn btn-sm btn-primary rerun" data-url="${escapeHtml(s.query_url || "")}" data-gallery="${s.gallery_id || ""}" data-topk="${s.top_k}" data-words="${s.mode === "text" ? escapeHtml(s.filename || "") : ""}"><i class="bi bi-arrow-repeat"></i> Re-run</button>
          <button class="btn btn-sm btn-outline-danger delete"><i class="bi bi-trash"></i> Delete</button>
        </div>
      </div></div>`);
  }
  $("#history-empty").prop("hidden", data.total > 0);
}, $("#pager"));
const load = searches.load;

$(function () {
  load(1);
  $(document).on("click", ".delete", function () {
    const id = $(this).closest(".history-item").data("id");
    if (!confirm("Delete this search from your history?")) return;
    $.ajax({ url: `/api/history/${id}`, type: "DELETE" }).done(() => load(searches.page)).fail((xhr) => alert(apiErrorMessage(xhr)));
  });
  $(document).on("click", ".rerun", async function () {
    const gallery = $(this).data("gallery");
    const topK = $(this).data("topk");
    const words = $(this).data("words");
    let request;
    if (words) {  // a search with words alone keeps them as its name
      request = $.ajax({ url: "/api/search", type: "POST", contentType: "application/json",
                         data: JSON.stringify({ text: String(words), top_k: Number(topK) }) });
    } else if (gallery) {
      request = searchByGalleryId(gallery, topK);
    } else {
      const blob = await (await fetch($(this).data("url"))).blob();
      const form = new FormData();
      form.append("image", blob, "history-query");
      form.append("top_k", topK);
      request = $.ajax({ url: "/api/search", type: "POST", data: form, processData: false, contentType: false });
    }
    request.done((data) => {
      Results.show(data);
      load(1);
      document.getElementById("results-area").scrollIntoView({ behavior: "smooth" });
    }).fail((xhr) => alert(apiErrorMessage(xhr)));
  });
});
