/* Falling cherry blossoms, an optional background of the search page. Off by default; the footer toggle
   remembers the choice in local storage. Off means nothing runs: no canvas, no animation frame. Under
   prefers-reduced-motion nothing moves, and the animation pauses while the tab is hidden. */
"use strict";
const Petals = {
  canvas: null, frame: null, petals: [],
  wanted() { return localStorage.getItem("petals") === "on"; },
  still() { return window.matchMedia("(prefers-reduced-motion: reduce)").matches; },
  start() {
    if (this.canvas || this.still()) return;
    this.canvas = $("<canvas>", { class: "petals-canvas", "aria-hidden": "true" }).prependTo("body")[0];
    $("body").addClass("petals");
    this.resize();
    this.petals = Array.from({ length: 28 }, () => this.petal(true));
    this.loop = this.loop.bind(this);
    this.frame = requestAnimationFrame(this.loop);
  },
  stop() {
    if (this.frame) cancelAnimationFrame(this.frame);
    $(this.canvas).remove();
    $("body").removeClass("petals");
    this.canvas = this.frame = null;
  },
  resize() {
    if (!this.canvas) return;
    this.canvas.width = window.innerWidth;
    this.canvas.height = window.innerHeight;
  },
  petal(anywhere) {
    const w = window.innerWidth, h = window.innerHeight;
    return { x: Math.random() * w, y: anywhere ? Math.random() * h : -20, size: 6 + Math.random() * 7,
             fall: 0.4 + Math.random() * 0.8, drift: Math.random() * 2 * Math.PI, spin: Math.random() * Math.PI };
  },
  loop() {
    const ctx = this.canvas.getContext("2d");
    const { width, height } = this.canvas;
    ctx.clearRect(0, 0, width, height);
    for (const p of this.petals) {
      p.y += p.fall;
      p.drift += 0.01;
      p.x += Math.sin(p.drift) * 0.6;
      p.spin += 0.01;
      if (p.y > height + 20) Object.assign(p, this.petal(false));
      ctx.save();
      ctx.translate(p.x, p.y);
      ctx.rotate(p.spin);
      ctx.fillStyle = "rgba(244, 170, 196, 0.75)";
      ctx.beginPath();
      ctx.ellipse(0, 0, p.size, p.size * 0.55, 0, 0, 2 * Math.PI);
      ctx.fill();
      ctx.restore();
    }
    this.frame = requestAnimationFrame(this.loop);
  },
  label() {
    const on = this.wanted();
    const text = this.still() ? "Cherry blossoms: still (reduced motion)" : `Cherry blossoms: ${on ? "on" : "off"}`;
    $("#petals-toggle").text(text).attr("aria-pressed", String(on));
  },
};

$(function () {
  Petals.label();
  if (Petals.wanted()) Petals.start();
  $("#petals-toggle").on("click", () => {
    localStorage.setItem("petals", Petals.wanted() ? "off" : "on");
    if (Petals.wanted()) Petals.start(); else Petals.stop();
    Petals.label();
  });
  $(window).on("resize", () => Petals.resize());
  document.addEventListener("visibilitychange", () => {
    if (!Petals.canvas) return;
    if (document.hidden) { cancelAnimationFrame(Petals.frame); Petals.frame = null; }
    else if (!Petals.frame) Petals.frame = requestAnimationFrame(Petals.loop);
  });
});
