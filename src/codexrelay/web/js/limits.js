// The caps the relay enforces, as it publishes them (GET /api/v1/me, relay.limits), so the
// composer warns with the same number the relay will refuse above.

export const FALLBACK_PROMPT_BYTES = 65536;

/** The largest prompt the relay accepts, in UTF-8 bytes. */
export function promptMaxBytes(app) {
  const limits = (app.me && app.me.relay && app.me.relay.limits) || {};
  return Number.isInteger(limits.maxPromptBytes) ? limits.maxPromptBytes : FALLBACK_PROMPT_BYTES;
}

const encoder = new TextEncoder();

export function utf8Bytes(text) {
  return encoder.encode(text).length;
}
