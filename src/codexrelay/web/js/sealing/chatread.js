// Reading a sealed conversation on this device (TRUST.md §4.7, §4.8, §8): the agent's signed
// thread stream, fetched from the relay and followed live from SSE `envelope` events, opened
// by threads.js with a kex key of this browser that the log names as a live reader. What
// opened is kept in memory only; a missing index, a refused envelope or a stream the relay
// let go makes the screen say "Output incomplete". A device certified after the thread began
// asks the agent for the key with a device-signed request (the agent answers in the stream).

import { get, post, ws } from "../api.js";
import { deviceSign, publicKeys } from "../../e2e/keys.js";
import { b64u, deviceMessage, statementBytes, utf8 } from "../../e2e/statements.js";
import { trustState } from "../trust.js";
import { myDevices, readerStatus } from "./read.js";
import { readThread } from "./threads.js";

export class SealedThread {
  constructor({ wid, thread, view, devices }) {
    Object.assign(this, { wid, threadId: thread.id, agent: thread.agentId, view });
    this.devices = devices.filter((d) => d.status === "live");
    this.status = readerStatus(devices);
    this.envelopes = new Map(); // index -> envelope text, as the relay numbered them
    this.next = 0;
    this.expired = false;
    this.shown = null; // threads.js readThread's result, once a key opened
    this.noKey = false;
    this.asked = false;
    this.queue = Promise.resolve();
  }

  serial(work) {
    const run = this.queue.then(work);
    this.queue = run.catch(() => {});
    return run;
  }

  /** Fetch the stream from the relay (after `after`) and open it again. */
  load(after = -1) {
    return this.serial(() => this.fetchFrom(after));
  }

  async fetchFrom(after) {
    const path = ws(this.wid, `/threads/${encodeURIComponent(this.threadId)}/envelopes?after=${after}`);
    const res = await get(path);
    this.expired = Boolean(res.expired);
    for (const { index, envelope } of res.envelopes) {
      this.envelopes.set(index, envelope);
      this.next = Math.max(this.next, index + 1);
    }
    await this.open();
  }

  /** A live `envelope` event: in order it is opened; after a gap the relay is asked again. */
  add(index, envelope) {
    return this.serial(async () => {
      if (this.envelopes.has(index)) return;
      if (index > this.next) return this.fetchFrom(this.next - 1);
      this.envelopes.set(index, envelope);
      this.next = Math.max(this.next, index + 1);
      await this.open();
    });
  }

  async open() {
    const ordered = [...this.envelopes.entries()].sort((a, b) => a[0] - b[0]).map(([, text]) => utf8(text));
    for (const { keys } of this.devices) {
      try {
        this.shown = await readThread(ordered, {
          kexKey: keys.kex, suite: keys.suite, me: keys.deviceId, view: this.view, agent: this.agent, thread: this.threadId,
        });
        this.noKey = false;
        return;
      } catch (error) {
        if (error.reason !== "no-key") throw error;
      }
    }
    this.shown = null;
    this.noKey = this.envelopes.size > 0;
  }

  /** Indices the relay never gave (or let go), plus what was refused. */
  get missing() {
    let holes = 0;
    for (let i = 0; i < this.next; i += 1) if (!this.envelopes.has(i)) holes += 1;
    return holes + (this.shown ? this.shown.dropped.length : 0);
  }

  get incomplete() {
    return this.expired || this.missing > 0;
  }

  /** Ask the agent to wrap the thread key to this device (once per screen). */
  async requestKey() {
    const device = this.devices[0];
    if (!device || this.asked) return false;
    this.asked = true;
    const { kexPub } = await publicKeys(device.keys);
    const raw = statementBytes({
      v: 1, kind: "key.req", ws: this.wid, agent: this.agent, task: this.threadId,
      device: device.keys.deviceId, kexPub, issuedAt: Math.floor(Date.now() / 1000),
    });
    const sig = b64u(await deviceSign(device.keys, deviceMessage("key.req", raw)));
    await post(ws(this.wid, `/threads/${encodeURIComponent(this.threadId)}/key-requests`), { stmt: b64u(raw), sig });
    return true;
  }
}

/** The reader for a sealed thread on this browser, opened from the relay's envelopes. */
export async function openSealedThread(app, thread) {
  const state = await trustState(app.wid, { fresh: true });
  if (!state.view) throw new Error(state.error || "This workspace's signed log cannot be read.");
  const devices = await myDevices(app.wid, app.me.user.id, state.view);
  const reader = new SealedThread({ wid: app.wid, thread, view: state.view, devices });
  await reader.load();
  return reader;
}

/** The first line of the first message, for the thread list (null when unreadable). */
export function sealedThreadTitle(reader) {
  if (!reader.shown) return null;
  const first = Object.values(reader.shown.items).find((item) => item.type === "userMessage");
  const text = first ? first.text || (first.raw && first.raw.text) || "" : "";
  return text.split("\n")[0].trim().slice(0, 120) || null;
}
