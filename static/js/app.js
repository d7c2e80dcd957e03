// Small shared behaviours. Page-specific modules live beside this file.
document.addEventListener("htmx:configRequest", (event) => {
  const token = document.querySelector("meta[name=csrf-token]")?.content;
  if (token) event.detail.headers["X-CSRFToken"] = token;
});
