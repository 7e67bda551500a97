// A Server-Sent Events parser (the WHATWG "event stream interpretation"),
// for reading `/v1/events` with `fetch()`: EventSource cannot send the
// Authorization header. Feed it text as it arrives, in chunks of any size;
// it returns the complete events. Pure: unit-tested.

export interface SseEvent {
  /** The event type (`message` when the stream names none). */
  event: string;
  data: string;
  /** The last event id seen on the stream (sticky, as in the spec). */
  id: string;
}

export class SseParser {
  /**
   * The id to send as `Last-Event-ID` when reconnecting: that of the last
   * complete event (an `id:` line counts only once its event's blank line
   * arrives, so a connection cut mid-event resumes before that event).
   */
  lastEventId = "";
  private idBuffer: string | null = null;
  /** Reconnection delay the server asked for (ms), if any. */
  retry: number | null = null;
  private buffer = "";
  private data: string[] = [];
  private event = "";
  private sawData = false;
  private first = true;
  private skipLf = false;

  /** Parses a chunk of text; returns the events it completed. */
  push(chunk: string): SseEvent[] {
    if (this.first && chunk.length > 0) {
      this.first = false;
      if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
    }
    if (this.skipLf && chunk.startsWith("\n")) chunk = chunk.slice(1);
    this.skipLf = false;
    this.buffer += chunk;
    const out: SseEvent[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer[i];
      if (c !== "\n" && c !== "\r") continue;
      this.line(this.buffer.slice(start, i), out);
      if (c === "\r") {
        if (i + 1 === this.buffer.length) this.skipLf = true;
        else if (this.buffer[i + 1] === "\n") i++;
      }
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  private line(line: string, out: SseEvent[]) {
    if (line === "") {
      if (this.idBuffer !== null) this.lastEventId = this.idBuffer;
      if (this.sawData) {
        out.push({ event: this.event || "message", data: this.data.join("\n"), id: this.lastEventId });
      }
      this.data = [];
      this.event = "";
      this.sawData = false;
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (name) {
      case "data":
        this.data.push(value);
        this.sawData = true;
        break;
      case "event":
        this.event = value;
        break;
      case "id":
        if (!value.includes("\0")) this.idBuffer = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
    }
  }
}
