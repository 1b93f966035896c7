// A photo or screenshot for Codex, prepared on the phone: drawn through a canvas and encoded
// again as JPEG, which drops every byte of metadata (location, camera, time) before it
// leaves the device, and shrunk until it fits the size cap.

export const MAX_PHOTOS = 4;
export const MAX_PHOTO_CHARS = 300_000; // one data URL; four fit in one request to the agent
const MAX_FILE_BYTES = 25 * 1024 * 1024;

function draw(bitmap, longest) {
  const scale = Math.min(1, longest / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff"; // a transparent screenshot gets a white background in JPEG
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  return canvas;
}

/** A `data:image/jpeg;base64,...` URL of `file`, re-encoded without metadata. */
export async function photoDataUrl(file) {
  if (!file.type.startsWith("image/")) throw new Error("That file is not a picture.");
  if (file.size > MAX_FILE_BYTES) throw new Error("That picture is larger than 25 MB.");
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new Error("This browser cannot read that picture.");
  }
  let longest = 1600;
  let quality = 0.85;
  for (let attempt = 0; attempt < 8; attempt += 1) {
    const url = draw(bitmap, longest).toDataURL("image/jpeg", quality);
    if (url.length <= MAX_PHOTO_CHARS) return url;
    longest = Math.round(longest * 0.75);
    quality = Math.max(0.5, quality - 0.08);
  }
  throw new Error("That picture is too large even when shrunk.");
}
