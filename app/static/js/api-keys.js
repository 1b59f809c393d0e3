/* The account page's API keys: make one (shown once), list them, revoke one. */
"use strict";

function keyTime(iso) { return iso ? new Date(iso).toLocaleString() : ""; }

function loadKeys() {
  $.getJSON("/api/keys").done((data) => {
    const $body = $("#key-list tbody").empty();
    $("#key-none").prop("hidden", data.items.length > 0);
    $("#key-list").prop("hidden", data.items.length === 0);
    for (const k of data.items) {
      const expires = k.expired ? '<span class="badge text-bg-secondary">expired</span>' : escapeHtml(keyTime(k.expires_at) || "never");
      $body.append(`<tr data-id="${k.id}"><td>${escapeHtml(k.name)}</td><td><code>${escapeHtml(k.prefix)}…</code></td>
        <td>${escapeHtml(keyTime(k.created_at))}</td><td>${escapeHtml(keyTime(k.last_used_at) || "never")}</td>
        <td>${expires}</td>
        <td class="text-end"><button class="btn btn-sm btn-outline-danger key-revoke">Revoke</button></td></tr>`);
    }
  });
}

$(function () {
  loadKeys();
  $("#key-form").on("submit", (event) => {
    event.preventDefault();
    const days = $("#key-days").val();
    $("#key-error").prop("hidden", true);
    $.ajax({ url: "/api/keys", type: "POST", contentType: "application/json",
             data: JSON.stringify({ name: $("#key-name").val(), days: days ? Number(days) : null }) })
      .done((data) => {
        $("#key-value").text(data.key);
        $("#key-made").prop("hidden", false);
        $("#key-form")[0].reset();
        loadKeys();
      })
      .fail((xhr) => $("#key-error").text(apiErrorMessage(xhr)).prop("hidden", false));
  });
  $(document).on("click", ".key-revoke", function () {
    const $row = $(this).closest("tr");
    if (!confirm(`Revoke the key “${$row.find("td").first().text()}”? Scripts using it stop at once.`)) return;
    $.ajax({ url: `/api/keys/${$row.data("id")}`, type: "DELETE" }).done(loadKeys)
      .fail((xhr) => alert(apiErrorMessage(xhr)));
  });
});
