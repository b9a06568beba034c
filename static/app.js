// confab's only hand-written script. Everything works without it; it adds comfort to the chat.
(function () {
  "use strict";

  // Textareas marked data-autogrow grow with their text.
  function grow(el) { el.style.height = "auto"; el.style.height = el.scrollHeight + "px"; }
  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("textarea[data-autogrow]")) grow(event.target);
  });

  // With a keyboard, Enter sends; on a touch screen Enter adds a line (as in the chat apps) and
  // Send sends. The composer says how Enter behaves only where this script makes it so
  // (without JavaScript, Enter adds a line like in any text box).
  var enterSends = !window.matchMedia("(pointer: coarse)").matches;
  var ENTER_HINT = " (Enter sends, Shift+Enter adds a line)";
  function hint(root) {
    if (!enterSends || window.matchMedia("(max-width: 48rem)").matches) return;
    var boxes = root.querySelectorAll ? root.querySelectorAll("textarea[data-enter-sends]") : [];
    for (var i = 0; i < boxes.length; i++) {
      var box = boxes[i];
      if (box.placeholder.indexOf(ENTER_HINT) === -1) box.placeholder += ENTER_HINT;
    }
  }
  document.addEventListener("DOMContentLoaded", function () { hint(document); });
  document.addEventListener("htmx:load", function (event) { hint(event.detail.elt); });

  // While an answer is being written, the composer's Send becomes Stop for that answer and
  // sending waits (the server would refuse a second answer in the conversation with a 409).
  function liveAnswer() { return document.querySelector("#messages .msg.streaming"); }
  function syncComposer() {
    var form = document.getElementById("composer");
    if (!form) return;
    var live = liveAnswer() !== null;
    form.classList.toggle("busy", live);
    var send = form.querySelector("[data-send]"), stop = form.querySelector("[data-stop]");
    if (send) send.hidden = live;
    if (stop) stop.hidden = !live;
    if (!live) waitNote(form, "");
  }
  // Enter while an answer is written sends nothing; this says why, and what to do.
  var WAIT_TEXT = "The answer is still being written. Your message stays here: press Enter " +
    "again when it ends, or Stop to end it now.";
  function waitNote(form, text) {
    var note = form.querySelector("[data-wait-note]");
    if (!note) return;
    if (text === "" || note.textContent !== text) { note.textContent = text; return; }
    // The same words again: emptied first and put back, so a screen reader says them again.
    note.textContent = "";
    window.requestAnimationFrame(function () { note.textContent = text; });
  }
  // After Stop (in the composer or on the answer) the focus goes back to the message box,
  // instead of being lost with the button when the answer's bubble is replaced.
  var refocus = false;
  document.addEventListener("click", function (event) {
    if (!event.target.closest) return;
    if (event.target.closest("#messages .msg.streaming form[action$='/stop'] button")) refocus = true;
    if (!event.target.closest("#composer [data-stop]")) return;
    refocus = true;
    var live = liveAnswer();
    var stop = live && live.querySelector("form[action$='/stop']");
    if (stop) stop.requestSubmit();
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (!refocus || liveAnswer()) return;
    refocus = false;
    var box = document.querySelector("#composer textarea");
    if (box) box.focus();
  });
  document.addEventListener("submit", function (event) {
    if (event.target.id === "composer" && liveAnswer()) event.preventDefault();
  }, true);
  document.addEventListener("DOMContentLoaded", function () {
    syncComposer();
    var messages = document.getElementById("messages");
    if (messages) new MutationObserver(syncComposer).observe(messages, { childList: true });
  });
  document.addEventListener("htmx:oobAfterSwap", syncComposer);
  // A finished answer replaces its streaming bubble under the same id, and htmx keeps the old
  // classes on it until it settles: look again then.
  document.addEventListener("htmx:afterSettle", syncComposer);

  // In the composer, Enter sends and Shift+Enter makes a new line (not while an IME composes);
  // while an answer is written, Enter keeps the text and does nothing.
  document.addEventListener("keydown", function (event) {
    var el = event.target;
    if (!enterSends || !el.matches || !el.matches("textarea[data-enter-sends]")) return;
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    if (el.value.trim() === "" || !el.form) return;
    if (liveAnswer()) waitNote(el.form, WAIT_TEXT);
    else el.form.requestSubmit();
  });

  // On a phone the conversations are a drawer behind a button (without this script they are
  // simply listed above the chat). Open, focus is inside it and stays there; Escape, a tap
  // beside it or its Close button shuts it and focus goes back to the button.
  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.querySelector(".drawer-toggle");
    var drawer = toggle && document.getElementById(toggle.getAttribute("aria-controls"));
    if (!drawer) return;
    document.documentElement.classList.add("has-drawer");
    toggle.hidden = false;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "drawer-close outline";
    close.textContent = "Close";
    drawer.insertBefore(close, drawer.firstChild);
    function isOpen() { return drawer.classList.contains("open"); }
    function controls() {
      return Array.prototype.filter.call(drawer.querySelectorAll("a[href], button, input"), function (el) {
        return el.offsetParent !== null;
      });
    }
    function setOpen(open) {
      drawer.classList.add("animated");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
      drawer.classList.toggle("open", open);
      if (open) {
        // Visible at once (only its position is animated), so it can take the focus now.
        var first = drawer.querySelector(".conversation-results a[aria-current=page]") || drawer.querySelector("a[href], input");
        if (first) first.focus();
      } else if (drawer.contains(document.activeElement) || document.activeElement === document.body) {
        toggle.focus();
      }
    }
    toggle.addEventListener("click", function () { setOpen(!isOpen()); });
    close.addEventListener("click", function () { setOpen(false); });
    document.addEventListener("click", function (event) {
      if (isOpen() && !drawer.contains(event.target) && !toggle.contains(event.target)) setOpen(false);
    });
    document.addEventListener("keydown", function (event) {
      if (!isOpen()) return;
      if (event.key === "Escape") { event.preventDefault(); setOpen(false); return; }
      if (event.key !== "Tab") return;
      var all = controls();
      if (all.length === 0) return;
      var first = all[0], last = all[all.length - 1];
      if (event.shiftKey && document.activeElement === first) { event.preventDefault(); last.focus(); }
      else if (!event.shiftKey && document.activeElement === last) { event.preventDefault(); first.focus(); }
    });
  });

  // A sent message clears the composer and keeps the focus there.
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    // A refusal (4xx) is swapped in as a normal answer, so look at the status itself.
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    if (status < 200 || status > 299 || !form.matches || !form.matches("form[data-reset-on-success]")) return;
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
  // A conversation opens at its newest message.
  document.addEventListener("DOMContentLoaded", function () {
    if (document.querySelector("#messages .msg")) keepUp();
  });
  document.addEventListener("htmx:sseMessage", keepUp);
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "messages") { follow = true; keepUp(); }
  });
  // Earlier messages arrive above the reader (the link to them is swapped for them when it
  // scrolls into view): the message that was first stays where it was on the screen, so the
  // reader keeps their place and the next link is out of view until they scroll up again.
  var anchor = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    var link = event.detail.target;
    if (!link || !link.matches || !link.matches("#messages > a.earlier")) return;
    var first = link.nextElementSibling;
    anchor = first ? { el: first, top: first.getBoundingClientRect().top } : null;
  });
  document.addEventListener("htmx:afterSwap", function () {
    if (!anchor) return;
    window.scrollBy(0, anchor.el.getBoundingClientRect().top - anchor.top);
    anchor = null;
  });
})();

// Files: each chosen or dropped file is uploaded on its own through the API, with a progress bar;
// on a project's page, when all are done the files section is loaded again (without this script
// the form posts them all at once); in the composer, each file becomes a checked chip.
(function () {
  "use strict";
  // Uploads `file` to the API URL in `box`'s data-upload-url, with a progress bar in its
  // .upload-progress list; then done(ok, the stored file or null, what went wrong, the bar's item).
  function upload(box, file, done) {
    var list = box.querySelector(".upload-progress");
    var item = document.createElement("li");
    var label = document.createElement("span");
    label.textContent = file.name + " ";
    var bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute("aria-label", "Uploading " + file.name);
    item.appendChild(label);
    item.appendChild(bar);
    list.appendChild(item);
    var data = new FormData();
    data.append("file", file, file.name);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", box.getAttribute("data-upload-url"));
    var form = box.closest("form") || box;
    xhr.setRequestHeader("X-CSRF-Token", form.querySelector("input[name=csrf_token]").value);
    xhr.upload.addEventListener("progress", function (event) {
      if (event.lengthComputable) bar.value = Math.round((event.loaded / event.total) * 100);
    });
    xhr.addEventListener("loadend", function () {
      var ok = xhr.status === 200 || xhr.status === 201;
      var stored = null, message = "uploaded";
      try { stored = JSON.parse(xhr.responseText); } catch (e) { stored = null; }
      if (!ok) {
        message = stored && stored.error && stored.error.message;
        if (!message) message = xhr.status === 413 ? "the file is too big" : "the upload failed";
        stored = null;
      }
      // A refusal shows its reason alone: a bar (full, once the bytes were sent) beside it read
      // as a success.
      if (ok) bar.value = 100; else item.removeChild(bar);
      item.className = ok ? "ok" : "error";
      label.textContent = file.name + " — " + message + " ";
      done(ok, stored, message, item);
    });
    xhr.send(data);
  }
  function uploadAll(form, files) {
    if (!files || files.length === 0) return;
    var left = files.length, failed = 0;
    for (var i = 0; i < files.length; i++) {
      upload(form, files[i], function (ok) {
        if (!ok) failed++;
        left--;
        // Reload the list when every file is in; a failure stays on screen with its reason.
        if (left === 0 && failed === 0 && window.htmx) {
          window.htmx.ajax("GET", window.location.pathname, { target: "#files-section", select: "#files-section", swap: "outerHTML" });
        }
      });
    }
    form.reset();
  }
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-upload-url]")) return;
    event.preventDefault();
    uploadAll(form, form.querySelector("input[type=file]").files);
  });
  document.addEventListener("dragover", function (event) {
    var form = event.target.closest && event.target.closest("form[data-upload-url]");
    if (!form) return;
    event.preventDefault();
    form.classList.add("dropping");
  });
  document.addEventListener("dragleave", function (event) {
    var form = event.target.closest && event.target.closest("form[data-upload-url]");
    if (form) form.classList.remove("dropping");
  });
  document.addEventListener("drop", function (event) {
    var form = event.target.closest && event.target.closest("form[data-upload-url]");
    if (!form) return;
    event.preventDefault();
    form.classList.remove("dropping");
    uploadAll(form, event.dataTransfer.files);
  });

  // The composer's "Add file": a link to the project's files without this script; here a button
  // that opens the file chooser and uploads into the conversation's project. Each file that goes
  // up becomes a checked chip (one already there is checked); a refusal says why above the box.
  function enhance(root) {
    var links = root.querySelectorAll ? root.querySelectorAll("a[data-attach-add]") : [];
    for (var i = 0; i < links.length; i++) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = links[i].className;
      button.setAttribute("data-attach-add", "");
      button.textContent = links[i].textContent;
      links[i].replaceWith(button);
    }
  }
  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
  document.addEventListener("htmx:load", function (event) { enhance(event.detail.elt); });
  document.addEventListener("click", function (event) {
    var add = event.target.closest && event.target.closest("button[data-attach-add]");
    var input = add && add.parentNode.querySelector("input[data-attach-input]");
    if (input) input.click();
  });
  function say(text) {
    var area = document.getElementById("composer-error");
    if (!area) return;
    if (text === null) { area.textContent = ""; return; }
    var p = document.createElement("p");
    p.className = "flash error";
    p.setAttribute("role", "alert");
    p.textContent = text;
    area.replaceChildren(p);
  }
  function chipFor(box, stored) {
    var boxes = box.querySelectorAll("input[name=attach]");
    for (var i = 0; i < boxes.length; i++) if (boxes[i].value === stored.id) return boxes[i];
    var label = document.createElement("label");
    label.className = "chip";
    var check = document.createElement("input");
    check.type = "checkbox";
    check.name = "attach";
    check.value = stored.id;
    var name = document.createElement("span");
    name.textContent = stored.filename;
    label.appendChild(check);
    label.appendChild(name);
    var row = box.querySelector(".chips");
    row.insertBefore(label, row.firstChild);
    row.scrollLeft = 0;
    return check;
  }
  document.addEventListener("change", function (event) {
    var input = event.target;
    if (!input.matches || !input.matches("input[data-attach-input]")) return;
    var box = input.closest("[data-upload-url]");
    var files = Array.prototype.slice.call(input.files || []);
    if (!box || files.length === 0) return;
    say(null);
    var failures = [];
    files.forEach(function (file) {
      upload(box, file, function (ok, stored, message, item) {
        item.remove();
        if (ok) {
          var check = chipFor(box, stored);
          // Checked, not marked as checked by default: a sent message's reset clears it.
          check.checked = true;
          var more = check.closest("details");
          if (more) more.open = true;
        } else {
          failures.push("“" + file.name + "” was not uploaded: " + message.replace(/\.$/, "") + ".");
          say(failures.join(" "));
        }
      });
    });
    input.value = "";
  });
})();
