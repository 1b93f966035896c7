// Live updates for one workspace over Server-Sent Events. EventSource reconnects by itself
// and sends Last-Event-ID, so the relay replays what was missed; when the stream is closed
// for good (signed out, removed from the workspace) we retry slowly and let the app re-check.

import { apiUrl, crossOrigin } from "./api.js";

const TYPES = ["task", "task-progress", "agent", "pair-request", "thread", "item", "item-delta", "approval", "log", "pending-task", "envelope", "catalog"];

export class LiveFeed {
  constructor(onEvent, onStatus) {
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.source = null;
    this.wid = null;
    this.retryTimer = null;
    this.failures = 0;
  }

  open(wid) {
    this.close();
    this.wid = wid;
    this.onStatus("connecting");
    const source = new EventSource(apiUrl(`/api/v1/workspaces/${encodeURIComponent(wid)}/events`), { withCredentials: crossOrigin() });
    this.source = source;
    source.onopen = () => {
      this.failures = 0;
      this.onStatus("live");
    };
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        this.onStatus("offline");
        this.failures += 1;
        const delay = Math.min(30000, 2000 * 2 ** Math.min(this.failures, 4));
        this.retryTimer = setTimeout(() => this.wid === wid && this.open(wid), delay);
      } else {
        this.onStatus("connecting");
      }
    };
    for (const type of TYPES) {
      source.addEventListener(type, (event) => {
        let data;
        try {
          data = JSON.parse(event.data);
        } catch {
          return;
        }
        this.onEvent(type, data);
      });
    }
  }

  close() {
    clearTimeout(this.retryTimer);
    if (this.source) this.source.close();
    this.source = null;
    this.wid = null;
  }
}
