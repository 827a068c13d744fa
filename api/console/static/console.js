// The console's behaviour beyond htmx: show a refused request's problem details in the flash area
// (htmx does not swap 4xx/5xx answers), and follow the server's redirect to the login page.
(function () {
  function flash(kind, text) {
    var box = document.getElementById("flash");
    if (!box) { return; }
    box.innerHTML = "";
    var div = document.createElement("div");
    div.className = kind;
    div.setAttribute("role", kind === "error" ? "alert" : "status");
    div.textContent = text;
    box.appendChild(div);
  }
  document.body.addEventListener("htmx:responseError", function (evt) {
    var xhr = evt.detail.xhr;
    var text = "Refused (" + xhr.status + ")";
    try {
      var problem = JSON.parse(xhr.responseText);
      text = (problem.detail || problem.title || text) + (problem.code ? " [" + problem.code + "]" : "");
    } catch (e) { /* not a problem document */ }
    flash("error", text);
  });
  document.body.addEventListener("htmx:afterRequest", function (evt) {
    if (evt.detail.successful) {  // an earlier refusal no longer applies
      var box = document.getElementById("flash");
      if (box && box.querySelector(".error")) { box.innerHTML = ""; }
    }
  });
  document.body.addEventListener("htmx:sendError", function () { flash("error", "The console could not be reached."); });
  document.body.addEventListener("console:notice", function (evt) { flash("notice", evt.detail.value); });
})();
