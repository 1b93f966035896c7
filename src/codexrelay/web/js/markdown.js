// Codex's Markdown as safe DOM: marked (vendored, pinned) turns it into HTML, DOMPurify
// (vendored, pinned) sanitizes that into a DocumentFragment. No innerHTML in the app, no
// images, styles, forms or embeds (the CSP would refuse them anyway), links open outside.

import DOMPurify from "../vendor/dompurify/purify.es.mjs";
import { Marked } from "../vendor/marked/marked.esm.js";

const marked = new Marked({ gfm: true, breaks: false, async: false });

const PURIFY = {
  RETURN_DOM_FRAGMENT: true,
  FORBID_TAGS: ["img", "style", "form", "input", "button", "textarea", "select", "iframe",
    "object", "embed", "svg", "math", "video", "audio", "picture", "source", "link", "meta"],
  FORBID_ATTR: ["style", "class", "id", "srcset"],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#)/i,
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("rel", "noopener noreferrer");
    node.setAttribute("target", "_blank");
  }
});

/** A DocumentFragment of `text` rendered as Markdown and sanitized. */
export function renderMarkdown(text) {
  const html = marked.parse(String(text || ""));
  return DOMPurify.sanitize(html, PURIFY);
}
