// Copy buttons on code blocks in answers (the server renders them; see src/render/markdown.rs).
(function () {
  "use strict";

  // execCommand is the fallback where the Clipboard API is missing (plain http, old browsers).
  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    area.remove();
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return fallbackCopy(text); });
    }
    return fallbackCopy(text);
  }

  // One listener for every block, including those that stream in later.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button.code-copy");
    if (!button) return;
    var code = button.closest(".code-block").querySelector("pre code");
    copy(code.textContent).then(
      function () { flash(button, "Copied"); },
      function () { flash(button, "Copy failed"); }
    );
  });

  function flash(button, label) {
    button.textContent = label;
    clearTimeout(button.confabTimer);
    button.confabTimer = setTimeout(function () { button.textContent = "Copy"; }, 1500);
  }
})();
