/* Gallery administration: multi-file upload with a progress bar per file, selection and deletion with a
   confirmation, a background rebuild whose progress is polled, and the folder watcher's activity. */
"use strict";
const selected = new Set();

const gallery = pagedList("/api/gallery", () => ({ per_page: 24, q: $("#filter").val() }), (data) => {
  const $grid = $("#admin-gallery").empty();
  for (const item of data.items) {
    $grid.append(`<div class="col"><label class="card shadow-sm h-100 admin-card" data-id="${item.id}">
        <img src="${escapeHtml(item.thumbnail_url)}" class="card-img-top" alt="${escapeHtml(item.path)}" loading="lazy">
        <div class="card-body p-2 small d-flex gap-2 align-items-center">
          <input class="form-check-input select-image" type="checkbox" value="${item.id}" ${selected.has(item.id) ? "checked" : ""}>
          <span class="text-truncate text-truncate-path" title="${escapeHtml(item.path)}">${escapeHtml(item.path)}</span></div></label></div>`);
  }
}, $("#pager"));
const loadGallery = gallery.load;

function uploadOne(file) {
  const $row = $(`<li class="list-group-item"><div class="d-flex justify-content-between small"><span>${escapeHtml(file.name)}</span>
      <span class="status text-secondary">waiting</span></div>
      <div class="progress progress-thin mt-1"><div class="progress-bar empty"></div></div></li>`);
  $("#upload-list").prepend($row);
  const form = new FormData();
  form.append("images", file, file.name);
  return $.ajax({
    url: "/api/admin/images", type: "POST", data: form, processData: false, contentType: false,
    xhr() {
      const xhr = new XMLHttpRequest();
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) $row.find(".progress-bar").css("width", `${(e.loaded / e.total) * 90}%`);
        $row.find(".status").text("uploading");
      });
      return xhr;
    },
  }).done((data) => {
    $row.find(".progress-bar").css("width", "100%").addClass("bg-success");
    if (data.added.length) $row.find(".status").text("added").addClass("text-success");
    else if (data.duplicates.length) $row.find(".status").text(`duplicate of ${data.duplicates[0].same_as}`).addClass("text-warning");
  }).fail((xhr) => {
    $row.find(".progress-bar").css("width", "100%").addClass("bg-danger");
    const body = xhr.responseJSON || {};
    const message = body.rejected && body.rejected.length ? body.rejected[0].error : apiErrorMessage(xhr);
    $row.find(".status").text(message).addClass("text-danger");
  });
}

async function uploadAll(files) {
  for (const file of files) {
    try { await uploadOne(file); } catch (e) { /* shown in its row */ }
  }
  loadGallery(1);
}

function pollRebuild() {
  $.getJSON("/api/admin/status").done((data) => {
    const r = data.rebuild;
    const running = r.state === "running";
    $("#rebuild-progress").prop("hidden", !running);
    $("#rebuild").prop("disabled", running);
    if (running) {
      const pct = r.total ? (100 * r.done) / r.total : 5;
      $("#rebuild-progress .progress-bar").css("width", pct + "%");
      $("#rebuild-state").text(r.total ? `${r.done} / ${r.total} embedded` : "scanning…");
      setTimeout(pollRebuild, 1000);
    } else if (r.state === "finished") {
      $("#rebuild-state").text(`index rebuilt: ${r.images} images`);
    } else if (r.state === "failed") {
      $("#rebuild-state").text("rebuild failed: " + r.error);
    } else if (r.state === "interrupted") {
      $("#rebuild-state").text("the last rebuild was interrupted (the server stopped); start it again");
    }
  });
}

let watchChanges = null;  // the watcher's change counter at the last poll
const watchStates = { watching: ["watching", "text-bg-success"], off: ["not watched", "text-bg-secondary"],
                      stopped: ["watcher stopped", "text-bg-danger"], starting: ["starting", "text-bg-secondary"] };

function ago(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

// The folder card: what the watcher is doing, and the files that could not be indexed.
function pollFolder() {
  $.getJSON("/api/admin/status?drift=0").done((data) => {
    const w = data.watch;
    const [label, cls] = watchStates[w.state] || [w.state, "text-bg-secondary"];
    $("#watch-state").attr("class", `badge rounded-pill ms-1 ${cls}`).text(label);
    $("#watch-help").prop("hidden", w.state !== "off");
    $("#scan-now").prop("hidden", w.state === "off");
    const busy = w.state === "watching" && (w.pending_count || (w.indexing || []).length);
    let summary = "";
    if (w.last_scan && w.last_scan.at) {
      summary = `last full scan ${ago(Date.now() / 1000 - w.last_scan.at)}: ${w.last_scan.unindexed} new, ` +
                `${w.last_scan.changed} changed, ${w.last_scan.missing} gone`;
    }
    $("#watch-summary").text(summary);
    const $activity = $("#watch-activity").empty().prop("hidden", !busy);
    if (busy) {
      if ((w.indexing || []).length) $activity.append($("<div>").text(`Indexing ${w.indexing.length} file(s)…`));
      if (w.pending_count) {
        const writing = w.pending.filter((p) => p.waiting === "being written").length;
        $activity.append($("<div class='text-secondary'>").text(
          `${w.pending_count} waiting` + (writing ? ` (${writing} still being written)` : "")));
      }
    }
    const failed = data.failed || [];
    $("#failed-box").prop("hidden", failed.length === 0);
    $("#failed-count").text(failed.length);
    const $list = $("#failed-list").empty();
    failed.slice(0, 200).forEach((f) => $list.append(
      $("<li>").append($("<code>").text(f.path), $("<span class='text-secondary'>").text(" — " + f.reason))));
    if (watchChanges !== null && w.changes !== watchChanges) loadGallery(gallery.page);  // show what it indexed
    watchChanges = w.changes === undefined ? null : w.changes;
    setTimeout(pollFolder, busy ? 1500 : w.state === "off" ? 30000 : 4000);
  }).fail(() => setTimeout(pollFolder, 15000));
}

$(function () {
  loadGallery(1);
  pollRebuild();
  pollFolder();
  $("#scan-now").on("click", () => {
    $.ajax({ url: "/api/admin/scan", type: "POST", contentType: "application/json", data: "{}" })
      .done(() => $("#watch-summary").text("scan requested…"))
      .fail((xhr) => alert(apiErrorMessage(xhr)));
  });
  const $zone = $("#admin-drop");
  $zone.on("click", () => $("#admin-files").trigger("click"));
  $("#admin-files").on("click", (e) => e.stopPropagation()).on("change", (e) => uploadAll(Array.from(e.target.files)));
  $zone.on("dragenter dragover", (e) => { e.preventDefault(); $zone.addClass("dragover"); });
  $zone.on("dragleave dragend", () => $zone.removeClass("dragover"));
  $zone.on("drop", (e) => {
    e.preventDefault();
    $zone.removeClass("dragover");
    uploadAll(Array.from(e.originalEvent.dataTransfer.files));
  });
  $("#filter").on("input", () => loadGallery(1));
  $(document).on("change", ".select-image", function () {
    const id = Number(this.value);
    if (this.checked) selected.add(id); else selected.delete(id);
    $("#delete-selected").prop("disabled", selected.size === 0);
  });
  const modal = new bootstrap.Modal("#confirm-delete");
  $("#delete-selected").on("click", () => { $("#delete-count").text(selected.size); modal.show(); });
  $("#confirm-delete-button").on("click", () => {
    $.ajax({ url: "/api/admin/images", type: "DELETE", contentType: "application/json",
             data: JSON.stringify({ ids: Array.from(selected) }) })
      .done(() => { selected.clear(); $("#delete-selected").prop("disabled", true); loadGallery(gallery.page); })
      .fail((xhr) => alert(apiErrorMessage(xhr)))
      .always(() => modal.hide());
  });
  $("#rebuild").on("click", () => {
    $.ajax({ url: "/api/admin/rebuild", type: "POST", contentType: "application/json", data: "{}" })
      .always(() => setTimeout(pollRebuild, 300));
  });
});
