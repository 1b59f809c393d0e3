/* The search page: choose, drop or paste an image, preview it, search through the JSON API. */
"use strict";
let chosenFile = null;

function choose(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) { showError("That file is not an image."); return; }
  chosenFile = file;
  const reader = new FileReader();
  reader.onload = (e) => {
    $("#preview").attr("src", e.target.result).prop("hidden", false);
    $("#drop-prompt").prop("hidden", true);
  };
  reader.readAsDataURL(file);
  $("#file-info").text(`${file.name || "pasted image"} · ${(file.size / 1024).toFixed(0)} KB`);
  $("#search-button").prop("disabled", false);
  $("#error").prop("hidden", true);
  runSearch();
}

function showError(message) { $("#error").text(message).prop("hidden", false); }

function busy(on) {
  $("#busy").prop("hidden", !on);
  $("#search-label").text(on ? "Searching…" : "Search");
  $("#search-button").prop("disabled", on || !chosenFile);
}

function send(request) {
  busy(true);
  $("#error").prop("hidden", true);
  return request.done((data) => Results.show(data))
    .fail((xhr) => showError(apiErrorMessage(xhr)))
    .always(() => busy(false));
}

function runSearch() {
  if (!chosenFile) return;
  const form = new FormData();
  form.append("image", chosenFile, chosenFile.name || "pasted.png");
  form.append("top_k", $("#top-k").val());
  send($.ajax({ url: "/api/search", type: "POST", data: form, processData: false, contentType: false }));
}

$(function () {
  const $zone = $("#drop-zone");
  $zone.on("click", () => $("#file-input").trigger("click"));
  $zone.on("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("#file-input").trigger("click"); } });
  $("#file-input").on("click", (e) => e.stopPropagation()).on("change", (e) => choose(e.target.files[0]));
  $zone.on("dragenter dragover", (e) => { e.preventDefault(); $zone.addClass("dragover"); });
  $zone.on("dragleave dragend", () => $zone.removeClass("dragover"));
  $zone.on("drop", (e) => {
    e.preventDefault();
    $zone.removeClass("dragover");
    const files = e.originalEvent.dataTransfer.files;
    if (files && files.length) choose(files[0]);
  });
  $(document).on("paste", (e) => {
    const items = (e.originalEvent.clipboardData || {}).items || [];
    for (const item of items) if (item.kind === "file" && item.type.startsWith("image/")) { choose(item.getAsFile()); break; }
  });
  $("#search-button").on("click", runSearch);
  $("#top-k").on("change", runSearch);
  $(document).on("click", ".find-similar", function () {
    chosenFile = null;
    $("#file-info").text("Searching with a gallery picture");
    send(searchByGalleryId($(this).data("id"), $("#top-k").val()));
    $("#preview").attr("src", $(this).closest(".card").find("img").attr("src")).prop("hidden", false);
    $("#drop-prompt").prop("hidden", true);
    window.scrollTo({ top: 0, behavior: "smooth" });
  });
});
