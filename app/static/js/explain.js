/* "Why?" on every result: POST /api/explain with the query the results came from, then the query and the
   result side by side (one above the other on a phone) with their matched points joined by lines (the
   strongest N, a slider for more), each picture's heat map as a toggle, and hovering a point lighting up its
   partner. Pages say what their results came from with Explain.remember(query) before Results.show. */
"use strict";
const SVG_NS = "http://www.w3.org/2000/svg";
const Explain = {
  query: null,  // { fields(): FormData or a plain object of the query's fields, image: the query picture's URL }
  answer: null,
  asked: 0,  // which request the view waits for: an older one's late answer is dropped

  /* The query of the results about to be shown: `fields` builds its request fields, `image` shows it (may be
     null for a gallery picture: the answer links it). */
  remember(query) { this.query = query; },

  open(resultId, resultImage) {
    if (!this.query) return;
    const fields = this.query.fields();
    let request;
    if (fields instanceof FormData) {
      fields.append("gallery_id", resultId);
      request = { data: fields, processData: false, contentType: false };
    } else {
      request = { data: JSON.stringify({ ...fields, gallery_id: Number(resultId) }), contentType: "application/json" };
    }
    this.answer = null;
    $("#explain-error").prop("hidden", true);
    $("#explain-busy").prop("hidden", false);
    $("#explain-lines").empty();
    $("#explain-summary").text("");
    $("#explain-query-img").attr("src", this.query.image || "");
    $("#explain-result-img").attr("src", resultImage);
    bootstrap.Modal.getOrCreateInstance(document.getElementById("explain-modal")).show();
    const asked = ++this.asked;
    postSearch({ url: "/api/explain", type: "POST", ...request },
               (seconds) => $("#explain-summary").text(`Server busy, retrying in ${seconds} s…`))
      .done((answer) => { if (asked === this.asked) this.show(answer); })
      .fail((xhr) => { if (asked === this.asked) $("#explain-error").text(apiErrorMessage(xhr)).prop("hidden", false); })
      .always(() => { if (asked === this.asked) $("#explain-busy").prop("hidden", true); });
  },

  show(answer) {
    this.answer = answer;
    if (!this.query.image && answer.query.url) $("#explain-query-img").attr("src", answer.query.url);
    $("#explain-result-img").attr("src", answer.result.url);
    const n = answer.pairs.length;
    $("#explain-count").attr("max", Math.max(1, n)).val(Math.min(30, n)).prop("disabled", n === 0);
    const t = answer.timings_ms;
    $("#explain-summary").text(n ? `${n} matched parts · model ${t.inference.toFixed(0)} ms, matching ${t.match.toFixed(0)} ms`
                                 : "No part of the two pictures clearly corresponds.");
    this.whenLoaded(() => this.draw());
  },

  whenLoaded(then) {
    const images = [document.getElementById("explain-query-img"), document.getElementById("explain-result-img")];
    const waiting = images.filter((img) => !img.complete);
    if (!waiting.length) { then(); return; }
    for (const img of waiting) img.addEventListener("load", () => { if (images.every((i) => i.complete)) then(); }, { once: true });
  },

  /* Where a picture pixel (x, y) of one side is on the stage, in the stage's own CSS pixels. */
  place(side, x, y) {
    const img = document.getElementById(`explain-${side}-img`);
    const stage = document.getElementById("explain-stage").getBoundingClientRect();
    const box = img.getBoundingClientRect();
    const [w, h] = this.answer[side].image_size;
    return { x: box.left - stage.left + x * box.width / w, y: box.top - stage.top + y * box.height / h };
  },

  draw() {
    if (!this.answer) return;
    const svg = document.getElementById("explain-lines");
    const stage = document.getElementById("explain-stage");
    svg.setAttribute("viewBox", `0 0 ${stage.clientWidth} ${stage.clientHeight}`);
    svg.setAttribute("width", stage.clientWidth);
    svg.setAttribute("height", stage.clientHeight);
    $(svg).empty();
    const shown = this.answer.pairs.slice(0, Number($("#explain-count").val()));
    $("#explain-count-value").text(`${shown.length} of ${this.answer.pairs.length}`);
    shown.forEach((pair, i) => {
      const a = this.place("query", pair.query.x, pair.query.y);
      const b = this.place("result", pair.result.x, pair.result.y);
      const colour = `hsl(${Math.round(120 * pair.score)}, 85%, 50%)`;  // red (weak) to green (unmistakable)
      const group = document.createElementNS(SVG_NS, "g");
      group.setAttribute("class", "explain-pair");
      group.dataset.index = i;
      group.appendChild(svgElement("line", { x1: a.x, y1: a.y, x2: b.x, y2: b.y, stroke: colour }));
      for (const p of [a, b]) group.appendChild(svgElement("circle", { cx: p.x, cy: p.y, r: 4, fill: colour }));
      const title = svgElement("title", {});
      title.textContent = `score ${pair.score.toFixed(2)}, similarity ${pair.similarity.toFixed(2)}`;
      group.appendChild(title);
      svg.appendChild(group);
    });
    this.drawHeat("query");
    this.drawHeat("result");
  },

  /* A side's heat map: its grid of best similarities as a tint, the stronger the better that part is found
     in the other picture (on one scale for every pair: 0.4, about an unrelated patch's best, is clear). */
  drawHeat(side) {
    const canvas = document.getElementById(`explain-${side}-heat`);
    const on = $("#explain-heat").prop("checked");
    canvas.hidden = !on;
    if (!on) return;
    const heat = this.answer[`${side}_heat`];
    const [w, h] = this.answer[side].image_size;
    canvas.width = heat.cols;
    canvas.height = heat.rows;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, heat.cols, heat.rows);
    heat.values.forEach((row, r) => row.forEach((v, c) => {
      const t = Math.max(0, Math.min(1, (v - 0.4) / 0.6));
      ctx.fillStyle = `rgba(214, 51, 132, ${(0.7 * t).toFixed(3)})`;
      ctx.fillRect(c, r, 1, 1);
    }));
    // Positioned in percent of the picture, so that it follows the picture's size without redrawing.
    Object.assign(canvas.style, { left: `${100 * heat.box.x / w}%`, top: `${100 * heat.box.y / h}%`,
                                  width: `${100 * heat.box.w / w}%`, height: `${100 * heat.box.h / h}%` });
  },

  highlight(index) {
    $("#explain-lines").toggleClass("focused", index !== null);
    $("#explain-lines .explain-pair").each(function () { $(this).toggleClass("active", Number(this.dataset.index) === index); });
  },
};

function svgElement(name, attributes) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attributes)) element.setAttribute(k, v);
  return element;
}

$(function () {
  $(document).on("results-shown", () => {
    if (!Explain.query) return;
    $("#results .result-card").each(function () {
      const $card = $(this);
      const id = $card.find(".find-similar").data("id");
      if (!id || $card.find(".explain-button").length) return;
      $card.find(".card-body").append(
        `<button class="btn btn-sm btn-outline-secondary w-100 mt-1 explain-button" data-id="${id}"><i class="bi bi-bullseye"></i> Why?</button>`);
    });
  });
  $(document).on("click", ".explain-button", function () {
    Explain.open($(this).data("id"), $(this).closest(".card").find("img").attr("src"));
  });
  $("#explain-count").on("input", () => Explain.draw());
  $("#explain-heat").on("change", () => Explain.draw());
  $("#explain-modal").on("shown.bs.modal", () => Explain.draw());
  $(window).on("resize", () => Explain.draw());
  $("#explain-lines").on("mouseenter", ".explain-pair", function () { Explain.highlight(Number(this.dataset.index)); })
    .on("mouseleave", ".explain-pair", () => Explain.highlight(null));
});
