// confab's only hand-written script. Everything works without it; it only adds comfort.
(function () {
  "use strict";
  // Textareas marked data-autogrow grow with their text.
  function grow(el) { el.style.height = "auto"; el.style.height = el.scrollHeight + "px"; }
  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("textarea[data-autogrow]")) grow(event.target);
  });
})();
