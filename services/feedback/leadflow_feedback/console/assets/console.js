// The console's only script, and optional: every page reads and every form works without it.
// It makes two things live: the worklists' countdowns tick each second, and the rules page's
// dry run answers as the lead is described (posting the same form the button posts).
(function () {
  "use strict";

  function words(seconds) {
    var late = seconds < 0, total = Math.floor(Math.abs(seconds));
    var days = Math.floor(total / 86400), rest = total % 86400;
    var h = Math.floor(rest / 3600), m = Math.floor((rest % 3600) / 60), s = rest % 60;
    var text = h + "h " + String(m).padStart(2, "0") + "m " + String(s).padStart(2, "0") + "s";
    if (days) text = days + "d " + text;
    return late ? "late " + text : text;
  }

  function tick() {
    var started = Date.now();
    var clocks = document.querySelectorAll("[data-seconds-left]");
    if (!clocks.length) return;
    setInterval(function () {
      var gone = (Date.now() - started) / 1000;
      clocks.forEach(function (el) {
        el.textContent = words(parseFloat(el.dataset.secondsLeft) - gone);
      });
    }, 1000);
  }

  function liveDryRun() {
    var form = document.querySelector("form[data-live]");
    if (!form) return;
    var target = document.getElementById(form.dataset.live);
    var pending = null;
    function ask() {
      fetch(form.action, { method: "POST", body: new URLSearchParams(new FormData(form)),
                           credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) { return r.text(); })
        .then(function (html) {
          var answer = new DOMParser().parseFromString(html, "text/html").getElementById(target.id);
          if (answer) target.innerHTML = answer.innerHTML;
        });
    }
    form.addEventListener("input", function () {
      clearTimeout(pending);
      pending = setTimeout(ask, 300);
    });
  }

  document.addEventListener("DOMContentLoaded", function () { tick(); liveDryRun(); });
})();
