// shardreg web UI: the few things only a script can do. Every page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // copy-to-clipboard buttons: <button data-copy="input-id">
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var input = document.getElementById(button.getAttribute("data-copy"));
      if (!input) { return; }
      var done = function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 1500);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(done, function () { input.select(); });
      } else {
        input.select();
        try { document.execCommand("copy"); done(); } catch (e) { /* the text stays selected */ }
      }
    });
  });
  // a confirmation before destructive forms: <form data-confirm="...">
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
  // sections that are slow to compute load after the page: <section id="x" data-load="/page">
  // is replaced by the element with the same id on that page (without a script: a link to it)
  document.querySelectorAll("[data-load]").forEach(function (section) {
    fetch(section.getAttribute("data-load"), {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
      .then(function (html) {
        var found = new DOMParser().parseFromString(html, "text/html").getElementById(section.id);
        if (found) { section.replaceWith(document.importNode(found, true)); }
      })
      .catch(function () { /* the link stays */ });
  });
});
