// DOM building without innerHTML: every text goes in through textContent, so data from the
// relay or an agent can never become markup or script (R19).

const PROPS = new Set(["hidden", "disabled", "checked", "value", "required", "selected", "open", "multiple"]);

/** Build an element: h("button", { class: "primary", onclick: fn }, "Save"). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) {
      if (PROPS.has(key)) el[key] = false;
      continue;
    }
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (PROPS.has(key)) el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

/** Append children: strings become text nodes; arrays are flattened; null/false skipped. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

let idCounter = 0;
/** A unique id for label/for pairs. */
export function uid(prefix = "f") {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/** A labelled form field: label, control, optional hint (linked by aria-describedby). */
export function field(labelText, control, hintText) {
  if (!control.id) control.id = uid();
  const parts = [h("label", { for: control.id, text: labelText }), control];
  if (hintText) {
    const hint = h("p", { class: "hint", id: uid("hint"), text: hintText });
    control.setAttribute("aria-describedby", hint.id);
    parts.push(hint);
  }
  return h("div", { class: "field" }, parts);
}

/** A status line for errors (role=alert) that shows API messages as sentences. */
export function errorLine() {
  return h("p", { class: "error", role: "alert" });
}

/** Show an error on an error line (or clear it with null). */
export function showError(line, err) {
  line.textContent = err ? err.message || String(err) : "";
}

/**
 * Run an async action from a button: the button is disabled and says it is working while
 * the action runs (every long wait shows progress), errors land in `errLine`.
 */
export async function busy(button, work, { label = "Working…", errLine = null } = {}) {
  const original = button.textContent;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.classList.add("busy");
  button.textContent = label;
  if (errLine) showError(errLine, null);
  try {
    return await work();
  } catch (err) {
    if (errLine) {
      showError(errLine, err);
      // Whole, and clear of the bottom navigation (the line's scroll margin).
      if (errLine.isConnected) errLine.scrollIntoView({ block: "nearest" });
    } else toast(err.message || String(err), "error");
    return undefined;
  } finally {
    if (button.isConnected) {
      button.disabled = false;
      button.removeAttribute("aria-busy");
      button.classList.remove("busy");
      button.textContent = original;
    }
  }
}

/** A short message at the bottom of the screen. */
export function toast(message, kind = "info") {
  const region = document.getElementById("toast");
  const item = h("p", { class: `toast ${kind}`, text: message });
  region.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
}

/** A modal confirmation; resolves true when the person confirms. */
export function confirmDialog(message, confirmLabel = "Confirm", { danger = true } = {}) {
  const dialog = document.getElementById("confirm");
  fill(document.getElementById("confirm-text"), message);
  const ok = document.getElementById("confirm-ok");
  ok.textContent = confirmLabel;
  ok.className = danger ? "danger" : "primary";
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

/** A loading line with a spinner, for lists that are being fetched. */
export function loading(text = "Loading…") {
  return h("p", { class: "loading", role: "status" }, h("span", { class: "spinner", "aria-hidden": "true" }), text);
}

/** A button that copies `text` to the clipboard (falls back to selecting `target`). */
export function copyButton(text, label = "Copy", target = null) {
  const button = h("button", { type: "button", class: "secondary copy" }, label);
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      toast("Copied.");
    } catch {
      if (target) {
        const range = document.createRange();
        range.selectNodeContents(target);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
      }
      toast("Copying is blocked here: the text is selected, copy it by hand.");
    }
  });
  return button;
}

/** A QR code the relay drew (standalone SVG), for another device's camera. */
export function qrImage(svg, alt) {
  return h("img", {
    class: "qr",
    src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`,
    alt,
    width: "200",
    height: "200",
  });
}

/** A section heading that receives focus when a screen opens (screen readers hear it). */
export function screenTitle(text) {
  return h("h2", { class: "screen-title", tabindex: "-1", text });
}
