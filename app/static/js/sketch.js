/* The sketch page: a canvas with pen, eraser, width, colour, undo and clear (pointer events, so touch and pens
   work too); Search sends the drawing as a PNG to the same API as an upload. */
"use strict";
$(function () {
  const canvas = document.getElementById("sketch");
  const ctx = canvas.getContext("2d");
  const history = [];
  let drawing = false;
  let strokes = 0;

  function reset() {
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }
  function position(e) {
    const r = canvas.getBoundingClientRect();
    return { x: (e.clientX - r.left) * canvas.width / r.width, y: (e.clientY - r.top) * canvas.height / r.height };
  }
  function refresh() {
    $("#undo").prop("disabled", history.length === 0);
    $("#search-button").prop("disabled", strokes === 0);
  }
  reset();

  canvas.addEventListener("pointerdown", (e) => {
    e.preventDefault();
    canvas.setPointerCapture(e.pointerId);
    history.push(ctx.getImageData(0, 0, canvas.width, canvas.height));
    if (history.length > 30) history.shift();
    drawing = true;
    const eraser = $("input[name=tool]:checked").val() === "eraser";
    ctx.strokeStyle = eraser ? "#ffffff" : $("#colour").val();
    ctx.lineWidth = Number($("#width").val()) * (eraser ? 3 : 1);
    ctx.lineCap = ctx.lineJoin = "round";
    const p = position(e);
    ctx.beginPath();
    ctx.moveTo(p.x, p.y);
    ctx.lineTo(p.x + 0.01, p.y);
    ctx.stroke();
    if (!eraser) strokes += 1;
    refresh();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    const p = position(e);
    ctx.lineTo(p.x, p.y);
    ctx.stroke();
  });
  for (const type of ["pointerup", "pointercancel", "pointerleave"]) canvas.addEventListener(type, () => { drawing = false; });

  $("#undo").on("click", () => {
    if (!history.length) return;
    ctx.putImageData(history.pop(), 0, 0);
    strokes = Math.max(0, strokes - 1);
    refresh();
  });
  $("#clear").on("click", () => {
    history.push(ctx.getImageData(0, 0, canvas.width, canvas.height));
    reset();
    strokes = 0;
    refresh();
  });
  $("#search-button").on("click", () => {
    $("#busy").prop("hidden", false);
    $("#error").prop("hidden", true);
    const drawing = canvas.toDataURL("image/png");
    Explain.remember({ fields: () => ({ sketch_base64: drawing, filename: "sketch.png" }), image: drawing });
    postSearch({ url: "/api/search", type: "POST", contentType: "application/json",
                 data: JSON.stringify({ sketch_base64: drawing, filename: "sketch.png", top_k: Number($("#top-k").val()) }) },
               (seconds) => $("#error").text(`Server busy, retrying in ${seconds} s…`).prop("hidden", false))
      .done((data) => Results.show(data))
      .fail((xhr) => $("#error").text(apiErrorMessage(xhr)).prop("hidden", false))
      .always(() => $("#busy").prop("hidden", true));
  });
});
