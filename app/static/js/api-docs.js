/* The API reference page: Swagger UI renders /api/openapi.json. "Try it out" runs as the signed-in browser
   (the session cookie plus the page's CSRF token), or with a key typed under "Authorize". */
"use strict";
$(function () {
  const $root = $("#swagger-ui");
  SwaggerUIBundle({
    url: $root.data("spec"),
    domNode: $root[0],
    deepLinking: true,
    validatorUrl: null, // never ask an outside validator about this document
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    requestInterceptor(request) {
      if (!/^(GET|HEAD|OPTIONS)$/i.test(request.method)) request.headers["X-CSRFToken"] = csrfToken;
      return request;
    },
  });
});
