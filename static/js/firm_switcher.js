// Submit the firm switcher as soon as another firm is chosen (the button remains for no-JS use).
for (const form of document.querySelectorAll("form[data-firm-switcher]")) {
  const select = form.querySelector("select");
  select?.addEventListener("change", () => form.requestSubmit());
}
