/* The map page: every picture placed by likeness (GET /api/map), drawn on a canvas as dots coloured by group;
   pan by dragging, zoom with the wheel or the buttons; zoomed in far enough, the dots become thumbnails.
   Hovering names a picture, clicking searches with it. */
"use strict";
const THUMBS_WHEN_FEWER = 150;  // visible points below which pictures are drawn instead of dots
let points = [];
const view = { scale: 1, x: 0, y: 0 };
const images = new Map();
let canvas, ctx, hovered = null, pending = null;

function thumbUrl(path) { return "/thumbs/" + path.split("/").map(encodeURIComponent).join("/"); }
function colour(group) { return group < 0 ? "#6c757d" : `hsl(${(group * 137.5) % 360}, 65%, 45%)`; }

function size() {
  const rect = canvas.getBoundingClientRect();
  const ratio = window.devicePixelRatio || 1;
  canvas.width = rect.width * ratio;
  canvas.height = rect.height * ratio;
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return rect;
}

function toScreen(p, rect) {
  const base = Math.min(rect.width, rect.height) / 2.3;
  return [rect.width / 2 + (p.x * base + view.x) * view.scale, rect.height / 2 - (p.y * base - view.y) * view.scale];
}

function draw() {
  const rect = size();
  ctx.clearRect(0, 0, rect.width, rect.height);
  const visible = [];
  for (const p of points) {
    const [sx, sy] = toScreen(p, rect);
    if (sx > -40 && sy > -40 && sx < rect.width + 40 && sy < rect.height + 40) visible.push([p, sx, sy]);
  }
  const thumbs = visible.length <= THUMBS_WHEN_FEWER;
  const side = 56;
  for (const [p, sx, sy] of visible) {
    if (thumbs) {
      let img = images.get(p.path);
      if (!img) { img = new Image(); img.onload = () => requestAnimationFrame(draw); img.src = thumbUrl(p.path); images.set(p.path, img); }
      if (img.complete && img.naturalWidth) {
        const w = img.naturalWidth >= img.naturalHeight ? side : side * img.naturalWidth / img.naturalHeight;
        const h = img.naturalWidth >= img.naturalHeight ? side * img.naturalHeight / img.naturalWidth : side;
        ctx.drawImage(img, sx - w / 2, sy - h / 2, w, h);
        ctx.strokeStyle = colour(p.group);
        ctx.lineWidth = p === hovered ? 3 : 1.5;
        ctx.strokeRect(sx - w / 2, sy - h / 2, w, h);
        continue;
      }
    }
    ctx.fillStyle = colour(p.group);
    ctx.beginPath();
    ctx.arc(sx, sy, p === hovered ? 6 : 3, 0, 2 * Math.PI);
    ctx.fill();
  }
  $("#map-canvas").attr("data-visible", visible.length).attr("data-thumbs", thumbs ? "yes" : "no");
}

function nearest(event) {
  const rect = canvas.getBoundingClientRect();
  const mx = event.clientX - rect.left, my = event.clientY - rect.top;
  let best = null, bestDistance = 30 * 30;
  for (const p of points) {
    const [sx, sy] = toScreen(p, rect);
    const d = (sx - mx) ** 2 + (sy - my) ** 2;
    if (d < bestDistance) { best = p; bestDistance = d; }
  }
  return best;
}

function zoom(factor, cx, cy) {
  const rect = canvas.getBoundingClientRect();
  cx = cx === undefined ? rect.width / 2 : cx;
  cy = cy === undefined ? rect.height / 2 : cy;
  const next = Math.min(400, Math.max(0.5, view.scale * factor));
  // Keep the point under (cx, cy) where it is.
  const dx = (cx - rect.width / 2) / view.scale - (cx - rect.width / 2) / next;
  const dy = (cy - rect.height / 2) / view.scale - (cy - rect.height / 2) / next;
  view.x -= dx;
  view.y -= dy;
  view.scale = next;
  requestAnimationFrame(draw);
}

function load() {
  clearTimeout(pending);
  $.ajax({ url: "/api/map" }).done((data, _, xhr) => {
    if (xhr.status === 202) {
      $("#map-progress").prop("hidden", false).find(".progress-bar").css("width", "30%");
      $("#map-summary").text("placing the pictures…");
      pending = setTimeout(load, 1000);
      return;
    }
    $("#map-progress").prop("hidden", true);
    points = data.points;
    const groups = data.groups ? `, ${data.groups} groups` : "";
    $("#map-summary").text(`${data.total} pictures${data.sampled ? ` (${points.length} shown)` : ""}${groups}`);
    draw();
    if (data.groups_state === "computing") pending = setTimeout(load, 2000);  // colours follow when ready
  }).fail((xhr) => $(".map-wrap").replaceWith(`<div class="alert alert-warning">${escapeHtml(apiErrorMessage(xhr))}</div>`));
}

$(function () {
  canvas = document.getElementById("map-canvas");
  if (!canvas) return;
  ctx = canvas.getContext("2d");
  let drag = null;
  canvas.addEventListener("pointerdown", (e) => { drag = { x: e.clientX, y: e.clientY, moved: false }; canvas.setPointerCapture(e.pointerId); });
  canvas.addEventListener("pointermove", (e) => {
    if (drag) {
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      if (drag.moved) {
        view.x += dx / view.scale;
        view.y += dy / view.scale;
        drag.x = e.clientX;
        drag.y = e.clientY;
        canvas.classList.add("dragging");
        requestAnimationFrame(draw);
      }
      return;
    }
    const p = nearest(e);
    if (p !== hovered) { hovered = p; requestAnimationFrame(draw); }
    const rect = canvas.getBoundingClientRect();
    $("#map-tip").prop("hidden", !p).text(p ? p.path : "").css({ left: e.clientX - rect.left + 12, top: e.clientY - rect.top + 12 });
  });
  canvas.addEventListener("pointerup", (e) => {
    const click = drag && !drag.moved;
    drag = null;
    canvas.classList.remove("dragging");
    if (click) { const p = nearest(e); if (p) searchWithPicture(p.id); }
  });
  canvas.addEventListener("pointerleave", () => { hovered = null; $("#map-tip").prop("hidden", true); requestAnimationFrame(draw); });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const rect = canvas.getBoundingClientRect();
    zoom(e.deltaY < 0 ? 1.25 : 0.8, e.clientX - rect.left, e.clientY - rect.top);
  }, { passive: false });
  $("#zoom-in").on("click", () => zoom(1.6));
  $("#zoom-out").on("click", () => zoom(1 / 1.6));
  $("#zoom-reset").on("click", () => { view.scale = 1; view.x = 0; view.y = 0; requestAnimationFrame(draw); });
  $(window).on("resize", () => requestAnimationFrame(draw));
  $(document).on("click", ".find-similar", function () { searchWithPicture($(this).data("id")); });
  load();
});
