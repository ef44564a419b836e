// orch's board: swap in the live part of the page on each server-sent event (/events).
(function () {
  "use strict";
  var live = document.getElementById("live");
  var state = document.getElementById("live-state");
  if (!live || !window.EventSource) { return; }
  var source = new EventSource("/events");
  source.addEventListener("board", function (message) {
    live.innerHTML = message.data;
    document.body.setAttribute("data-updated", String(Date.now()));
  });
  source.onopen = function () { state.textContent = "live"; state.className = "live-state on"; };
  source.onerror = function () { state.textContent = "reconnecting…"; state.className = "live-state off"; };
})();
