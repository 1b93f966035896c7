// The relay's published caps, read once from its OpenAPI document (the binding contract), so
// the composer warns with the same number the relay enforces.

import { get } from "./api.js";

const TASKS_PATH = "/api/v1/workspaces/{wid}/tasks";
export const FALLBACK_PROMPT_BYTES = 65536;

let promptCap = null;

function resolveRef(doc, schema) {
  if (!schema || !schema.$ref) return schema;
  return schema.$ref.replace(/^#\//, "").split("/").reduce((node, key) => node && node[key], doc);
}

/** maxLength of the task body's `prompt`, or null when the document does not say. */
export function readPromptCap(doc) {
  const body = resolveRef(doc, doc.paths?.[TASKS_PATH]?.post?.requestBody?.content?.["application/json"]?.schema);
  const prompt = body?.properties?.prompt;
  const found = [prompt, ...(prompt?.anyOf || [])].find((s) => s && Number.isInteger(s.maxLength));
  return found ? found.maxLength : null;
}

/** The largest prompt the relay accepts, in UTF-8 bytes. */
export function promptMaxBytes() {
  if (!promptCap) {
    promptCap = get("/openapi.json")
      .then((doc) => readPromptCap(doc) || FALLBACK_PROMPT_BYTES)
      .catch(() => FALLBACK_PROMPT_BYTES);
  }
  return promptCap;
}

const encoder = new TextEncoder();

export function utf8Bytes(text) {
  return encoder.encode(text).length;
}
