// Evaluated in the page by Phone.assert_focus_order: what has keyboard focus now, or null.
() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const r = el.getBoundingClientRect();
  const s = getComputedStyle(el);
  const ring = (s.outlineStyle !== "none" && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== "none";
  const label = (el.innerText || el.value || el.getAttribute("aria-label") || "").trim();
  if (!el.dataset.focusProbe) el.dataset.focusProbe = String(Math.random());
  return {
    name: `${el.tagName} ${label.slice(0, 30)}`,
    top: r.top + window.scrollY,
    left: r.left,
    ring,
    main: !!el.closest("#view"),
    id: el.dataset.focusProbe,
  };
}
