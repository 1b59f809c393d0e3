/* The search page: choose, drop or paste an image (or give its URL), preview it, and search with the whole
   picture, a region drawn on it (Cropper.js) or the object under a click; or describe the picture in words
   (CLIP), alone or added to a picture, and compare pictures by look (DINOv2) or by meaning (CLIP). */
"use strict";
let chosenFile = null;
let cropper = null;
let lastPoint = null;
let galleryId = null;  // the gallery picture searched with, if that was the query
let lastUrl = null;

function mode() { return $("input[name=mode]:checked").val(); }

/* The words typed and the space chosen, as search fields (absent when empty or by look). */
function wordFields() {
  const fields = {};
  const text = $("#text-input").val().trim();
  if (text && !$("#text-input").prop("disabled")) fields.text = text;
  if ($("input[name=space]:checked").val() === "clip") fields.space = "clip";
  return fields;
}

function showPreview(src) {
  stopCropper();
  $("#preview").attr("src", src);
  $("#preview-wrap").prop("hidden", false);
  $("#drop-prompt").prop("hidden", true);
  $("#mask-overlay, #click-marker").prop("hidden", true);
}

// Cameras' RAW files: browsers cannot show them, so the page shows the server's rendering of the picture
// and searches with the whole of it (a region would be in the rendering's pixels, not the RAW's).
const RAW_FILE = /\.(dng|cr2|cr3|nef|arw|raf|orf|rw2|pef|srw)$/i;

function isRaw(file) { return RAW_FILE.test(file.name || ""); }

function choose(file) {
  if (!file) return;
  if (!file.type.startsWith("image/") && !isRaw(file)) { showError("That file is not an image."); return; }
  chosenFile = file;
  galleryId = lastUrl = null;
  $("#mode-whole").prop("checked", true).trigger("change");
  if (isRaw(file)) {
    $("#mode-tools").prop("hidden", true);
  } else {
    const reader = new FileReader();
    reader.onload = (e) => {
      showPreview(e.target.result);
      $("#mode-tools").prop("hidden", false);
    };
    reader.readAsDataURL(file);
  }
  $("#file-info").text(`${file.name || "pasted image"} · ${(file.size / 1024).toFixed(0)} KB`);
  $("#search-button").prop("disabled", false);
  $("#error").prop("hidden", true);
  runSearch();
}

function showError(message) { $("#error").text(message).prop("hidden", false); }

function busy(on) {
  $("#busy").prop("hidden", !on);
  $("#search-label").text(on ? "Searching…" : (mode() === "region" ? "Search region" : "Search"));
  $("#search-button").prop("disabled", on || !chosenFile);
}

function retrying(seconds) { $("#search-label").text(`Server busy, retrying in ${seconds} s…`); }

function send(request) {
  busy(true);
  $("#error").prop("hidden", true);
  return request.done((data) => {
    Results.show(data);
    if (chosenFile && isRaw(chosenFile) && data.query && data.query.preview) showPreview(data.query.preview);
    const seg = data.query && data.query.segment;
    if (seg) $("#mask-overlay").attr("src", seg.mask).prop("hidden", false);
  }).fail((xhr) => showError(apiErrorMessage(xhr))).always(() => busy(false));
}

/* What "Why?" on a result asks about (explain.js): the query's own fields, shown as the preview shows it. */
function rememberQuery(fields) {
  Explain.remember({ fields, get image() { return $("#preview").attr("src"); } });
}

function runSearch(extra) {
  if (!chosenFile) return;
  const file = chosenFile;
  rememberQuery(() => {
    const form = new FormData();
    form.append("image", file, file.name || "pasted.png");
    for (const [key, value] of Object.entries(extra || {})) form.append(key, JSON.stringify(value));
    return form;
  });
  const form = new FormData();
  form.append("image", chosenFile, chosenFile.name || "pasted.png");
  form.append("top_k", $("#top-k").val());
  for (const [key, value] of Object.entries(PhotoFilters.values())) form.append(key, value);
  for (const [key, value] of Object.entries(wordFields())) form.append(key, value);
  for (const [key, value] of Object.entries(extra || {})) form.append(key, JSON.stringify(value));
  send(postSearch({ url: "/api/search", type: "POST", data: form, processData: false, contentType: false }, retrying));
}

function stopCropper() {
  if (cropper) { cropper.destroy(); cropper = null; }
}

/* A JSON search with the page's options: a URL, a gallery picture or words alone. */
function sendJson(body) {
  return send(postSearch({ url: "/api/search", type: "POST", contentType: "application/json",
                           data: JSON.stringify({ ...body, top_k: Number($("#top-k").val()), ...PhotoFilters.values(),
                                                  ...wordFields() }) }, retrying));
}

/* Search with the words: added to the picture chosen (or searched with) if there is one, else alone. */
function searchWords() {
  if (chosenFile || galleryId !== null || lastUrl) { searchCurrentMode(); return; }
  if (!wordFields().text) return;
  Explain.remember(null);  // words alone: nothing to pair patches with
  $("#file-info").text("Searching with words");
  sendJson({});
}

function searchCurrentMode() {
  if (galleryId !== null) { sendJson({ gallery_id: galleryId }); return; }
  if (lastUrl) { sendJson({ url: lastUrl }); return; }
  if (!chosenFile) { if (wordFields().text) searchWords(); return; }
  if (mode() === "region" && cropper) {
    const d = cropper.getData(true);
    runSearch({ region: { x: d.x, y: d.y, w: d.width, h: d.height } });
  } else if (mode() === "point" && lastPoint) {
    runSearch({ point: lastPoint });
  } else {
    runSearch();
  }
}

$(function () {
  PhotoFilters.init(() => { if (Results.last) searchCurrentMode(); });
  const $zone = $("#drop-zone");
  $zone.on("click", (e) => {
    if ($("#preview-wrap").prop("hidden") || mode() === "whole") $("#file-input").trigger("click");
  });
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
    if ($(e.target).is("input")) return;
    const items = (e.originalEvent.clipboardData || {}).items || [];
    for (const item of items) if (item.kind === "file" && item.type.startsWith("image/")) { choose(item.getAsFile()); break; }
  });

  $("input[name=mode]").on("change", () => {
    stopCropper();
    lastPoint = null;
    $("#mask-overlay, #click-marker").prop("hidden", true);
    $zone.toggleClass("point-mode", mode() === "point");
    const help = { whole: "The whole picture is the query.",
                   region: "Drag the box over the part you want, then press Search region.",
                   point: "Click an object in the picture: it is outlined and searched for." };
    $("#mode-help").text(help[mode()]);
    if (mode() === "region") {
      cropper = new Cropper(document.getElementById("preview"), { viewMode: 1, autoCropArea: 0.6, zoomable: false,
                                                                  rotatable: false, scalable: false });
    }
    busy(false);
  });

  $("#preview").on("click", function (e) {
    if (mode() !== "point") return;
    e.stopPropagation();
    const img = this;
    const x = (e.offsetX / img.clientWidth) * img.naturalWidth;
    const y = (e.offsetY / img.clientHeight) * img.naturalHeight;
    lastPoint = { x: Math.round(x), y: Math.round(y) };
    $("#click-marker").css({ left: e.offsetX + "px", top: e.offsetY + "px" }).prop("hidden", false);
    $("#mask-overlay").prop("hidden", true);
    runSearch({ point: lastPoint });
  });

  $("#search-button").on("click", searchCurrentMode);
  $("#top-k").on("change", () => { if (Results.last) searchCurrentMode(); });
  $("input[name=space]").on("change", () => { if (Results.last) searchCurrentMode(); });
  $("#text-button").on("click", searchWords);
  $("#text-input").on("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); searchWords(); } });
  $("#url-button").on("click", () => {
    const url = $("#url-input").val().trim();
    if (!url) return;
    chosenFile = galleryId = null;
    lastUrl = url;
    $("#mode-tools").prop("hidden", true);
    $("#file-info").text("Image from " + url);
    rememberQuery(() => ({ url }));
    sendJson({ url }).done((data) => showPreview(data.query.preview));
  });
  $("#url-input").on("keydown", (e) => { if (e.key === "Enter") $("#url-button").trigger("click"); });
  $(document).on("click", ".find-similar", function () {
    chosenFile = lastUrl = null;
    $("#mode-tools").prop("hidden", true);
    $("#file-info").text("Searching with a gallery picture");
    const id = Number($(this).data("id"));
    galleryId = id;
    rememberQuery(() => ({ query_gallery_id: id }));
    sendJson({ gallery_id: id });
    showPreview($(this).closest(".card").find("img").attr("src"));
    window.scrollTo({ top: 0, behavior: "smooth" });
  });
});
