// fleetkey dashboard: refreshes the part of a page marked data-live every 5 s (short polling).
// Served by fleetkey itself; the page's Content-Security-Policy allows no other script.
"use strict";
(function () {
  const part = document.getElementById("live");
  if (!part || !part.dataset.live) {
    return;
  }
  const every = 5000;
  async function refresh() {
    try {
      const answer = await fetch(part.dataset.live, {
        credentials: "same-origin",
        redirect: "manual",
        headers: { "Accept": "text/html" },
      });
      if (answer.type === "opaqueredirect" || answer.status === 303) {
        window.location.reload(); // the session ended: the sign-in page
        return;
      }
      if (answer.ok) {
        part.innerHTML = await answer.text(); // the server escaped every value in it
      }
    } catch (error) {
      // the server is away for a moment: keep what is shown, try again
    }
    window.setTimeout(refresh, every);
  }
  window.setTimeout(refresh, every);
})();
