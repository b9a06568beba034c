// Copy buttons on code blocks in answers. The server renders each block under a header with its
// language (src/render/markdown.rs); the button is added here, where it can work, so an answer
// itself never carries a button and a page without JavaScript shows none that does nothing.
(function () {
  "use strict";

  function addButtons(root) {
    var heads = root.querySelectorAll ? root.querySelectorAll(".code-head") : [];
    for (var i = 0; i < heads.length; i++) {
      if (heads[i].querySelector("button.code-copy")) continue;
      var button = document.createElement("button");
      button.type = "button";
      button.className = "code-copy";
      button.textContent = "Copy";
      heads[i].appendChild(button);
    }
  }
  document.addEventListener("DOMContentLoaded", function () { addButtons(document); });
  // Blocks that arrive later: a sent turn, a streamed block, a finished answer.
  document.addEventListener("htmx:load", function (event) { addButtons(event.detail.elt); });
  document.addEventListener("htmx:afterSettle", function (event) { addButtons(event.detail.elt || document); });

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
