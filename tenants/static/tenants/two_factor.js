// The recovery codes page: its Print button (no inline handlers under the page's CSP).
document.querySelectorAll("[data-print]").forEach((button) => {
  button.addEventListener("click", () => window.print());
});
