// confab's only hand-written script. Everything works without it; it adds comfort to the chat.
(function () {
  "use strict";

  // Textareas marked data-autogrow grow with their text.
  function grow(el) { el.style.height = "auto"; el.style.height = el.scrollHeight + "px"; }
  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("textarea[data-autogrow]")) grow(event.target);
  });

  // The composer says how Enter behaves only where this script makes it so (without
  // JavaScript, Enter adds a line like in any text box).
  var ENTER_HINT = " (Enter sends, Shift+Enter adds a line)";
  function hint(root) {
    var boxes = root.querySelectorAll ? root.querySelectorAll("textarea[data-enter-sends]") : [];
    for (var i = 0; i < boxes.length; i++) {
      var box = boxes[i];
      if (box.placeholder.indexOf(ENTER_HINT) === -1) box.placeholder += ENTER_HINT;
    }
  }
  document.addEventListener("DOMContentLoaded", function () { hint(document); });
  document.addEventListener("htmx:load", function (event) { hint(event.detail.elt); });

  // In the composer, Enter sends and Shift+Enter makes a new line (not while an IME composes).
  document.addEventListener("keydown", function (event) {
    var el = event.target;
    if (!el.matches || !el.matches("textarea[data-enter-sends]")) return;
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    if (el.value.trim() !== "" && el.form) el.form.requestSubmit();
  });

  // A sent message clears the composer and keeps the focus there.
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (!event.detail.successful || !form.matches || !form.matches("form[data-reset-on-success]")) return;
    form.reset();
    var box = form.querySelector("textarea");
    if (box) { grow(box); box.focus(); }
  });
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var box = event.detail.target && event.detail.target.querySelector && event.detail.target.querySelector("textarea[data-enter-sends]");
    if (box) box.focus();
  });

  // Follow the answer as it streams, unless the reader has scrolled up to read.
  var follow = true;
  window.addEventListener("scroll", function () {
    follow = window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
  }, { passive: true });
  function keepUp() { if (follow) window.scrollTo(0, document.body.scrollHeight); }
  document.addEventListener("htmx:sseMessage", keepUp);
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "messages") { follow = true; keepUp(); }
  });
})();
