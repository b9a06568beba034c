// Starts Swagger UI on /api/docs with confab's OpenAPI document (a file, not an inline script,
// so the page's Content-Security-Policy needs no 'unsafe-inline' for scripts).
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    deepLinking: true,
    // "Try it out" sends the browser's own cookie (a Bearer token can be set under Authorize
    // instead); a cookie's requests that change something need the page's CSRF token.
    withCredentials: true,
    persistAuthorization: false,
    requestInterceptor: function (request) {
      request.headers["X-CSRF-Token"] = root.dataset.csrf;
      return request;
    },
  });
});
