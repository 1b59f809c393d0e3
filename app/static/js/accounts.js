/* Administration of accounts, invitation links and the audit trail (the Accounts and Audit tabs). */
"use strict";

function when(iso) { return iso ? new Date(iso).toLocaleString() : ""; }

function loadAccounts() {
  $.getJSON("/api/admin/users").done((data) => {
    const $body = $("#accounts tbody").empty();
    for (const u of data.items) {
      $body.append(`<tr data-id="${u.id}">
        <td>${escapeHtml(u.email)}</td>
        <td>${u.is_admin ? '<span class="badge text-bg-warning">admin</span>' : "user"}</td>
        <td>${u.disabled ? '<span class="badge text-bg-secondary">disabled</span>' : "active"}</td>
        <td class="small text-secondary">${escapeHtml(when(u.created_at))}</td>
        <td class="text-end text-nowrap">
          <button class="btn btn-sm btn-outline-secondary account-action" data-change='{"is_admin": ${!u.is_admin}}'>${u.is_admin ? "Demote" : "Make admin"}</button>
          <button class="btn btn-sm btn-outline-secondary account-action" data-change='{"disabled": ${!u.disabled}}'>${u.disabled ? "Enable" : "Disable"}</button>
          <button class="btn btn-sm btn-outline-danger account-delete">Delete</button></td></tr>`);
    }
  });
  $.getJSON("/api/admin/invitations").done((data) => {
    const policy = { open: "Anyone may sign up", invite: "Sign-up by invitation", closed: "Sign-up is closed" }[data.signup];
    $("#signup-policy").text(`${policy} (SIGNUP=${data.signup})`);
    $("#invite").prop("disabled", data.signup !== "invite");
    const $body = $("#invitations tbody").empty();
    for (const i of data.items) {
      const state = i.used ? "used" : i.valid ? "waiting" : "expired";
      $body.append(`<tr data-token="${escapeHtml(i.token)}"><td class="small">${escapeHtml(when(i.created_at))}</td>
        <td class="small">${escapeHtml(when(i.expires_at))}</td><td>${state}</td>
        <td class="text-end">${i.used ? "" : '<button class="btn btn-sm btn-outline-danger revoke">Revoke</button>'}</td></tr>`);
    }
  });
}

function loadAllKeys() {
  $.getJSON("/api/admin/keys").done((data) => {
    const $body = $("#all-keys tbody").empty();
    for (const k of data.items) {
      $body.append(`<tr data-id="${k.id}"><td>${escapeHtml(k.email)}</td><td>${escapeHtml(k.name)}</td>
        <td><code>${escapeHtml(k.prefix)}…</code></td><td>${escapeHtml(when(k.last_used_at) || "never")}</td>
        <td>${k.expired ? "expired" : escapeHtml(when(k.expires_at) || "never")}</td>
        <td class="text-end"><button class="btn btn-sm btn-outline-danger key-revoke-any">Revoke</button></td></tr>`);
    }
  });
}

const auditLog = pagedList("/api/admin/audit", () => ({}), (data) => {
  const $body = $("#audit tbody").empty();
  for (const e of data.items) {
    $body.append(`<tr><td class="text-nowrap">${escapeHtml(when(e.at))}</td><td>${escapeHtml(e.action)}</td>
      <td>${escapeHtml(e.email || "")}${e.detail && e.detail.by ? `<div class="text-secondary">by ${escapeHtml(e.detail.by)}</div>` : ""}</td><td>${escapeHtml(e.address || "")}</td>
      <td class="audit-detail">${escapeHtml(Object.keys(e.detail || {}).length ? JSON.stringify(e.detail) : "")}</td></tr>`);
  }
}, $("#audit-pager"));

$(function () {
  $("#accounts-tab").on("shown.bs.tab", loadAccounts);
  $("#accounts-tab").on("shown.bs.tab", loadAllKeys);
  $(document).on("click", ".key-revoke-any", function () {
    const $row = $(this).closest("tr");
    if (!confirm(`Revoke ${$row.find("td").first().text()}'s key “${$row.find("td").eq(1).text()}”?`)) return;
    $.ajax({ url: `/api/admin/keys/${$row.data("id")}`, type: "DELETE" })
      .done(loadAllKeys).fail((xhr) => alert(apiErrorMessage(xhr)));
  });
  $("#audit-tab").on("shown.bs.tab", () => auditLog.load(1));
  $(document).on("click", ".account-action", function () {
    const id = $(this).closest("tr").data("id");
    $.ajax({ url: `/api/admin/users/${id}`, type: "PATCH", contentType: "application/json",
             data: JSON.stringify($(this).data("change")) })
      .done(loadAccounts).fail((xhr) => alert(apiErrorMessage(xhr)));
  });
  $(document).on("click", ".account-delete", function () {
    const $row = $(this).closest("tr");
    if (!confirm(`Delete ${$row.find("td").first().text()} and their search history?`)) return;
    $.ajax({ url: `/api/admin/users/${$row.data("id")}`, type: "DELETE" })
      .done(loadAccounts).fail((xhr) => alert(apiErrorMessage(xhr)));
  });
  $("#invite").on("click", () => {
    $.ajax({ url: "/api/admin/invitations", type: "POST", contentType: "application/json", data: JSON.stringify({ days: 7 }) })
      .done((data) => {
        $("#invite-result").prop("hidden", false).empty()
          .append($("<div>").text("Send this link to the new user; it works once, until " + when(data.expires_at) + ":"))
          .append($("<code>").attr("id", "invite-url").text(data.url));
        loadAccounts();
      }).fail((xhr) => alert(apiErrorMessage(xhr)));
  });
  $(document).on("click", ".revoke", function () {
    $.ajax({ url: `/api/admin/invitations/${encodeURIComponent($(this).closest("tr").data("token"))}`, type: "DELETE" })
      .done(loadAccounts).fail((xhr) => alert(apiErrorMessage(xhr)));
  });
});
