/**
 * The CLI side of GET /v1/jobs/:id/events: reads a job's server-sent events (parsed by
 * eventsource-parser) until `done`, reconnecting with Last-Event-ID when a stream ends early.
 * `jobs run --wait` and `jobs status --wait` draw their progress bar from its `progress` events;
 * when the stream cannot be had they poll instead.
 */
import { EventSourceParserStream } from "eventsource-parser/stream";

export interface ProgressJson {
  status: string;
  total: number;
  counts: { pending: number; ok: number; failed: number };
  done: number;
  rate: number | null;
  etaSeconds: number | null;
}

/** Streams that end without `done` (the server's stream time is up) are opened again, this many times in a row at most. */
const MAX_RECONNECTS = 5;

/**
 * Follows a job until its `done` event and returns the job it carries. Throws when the stream
 * cannot be opened (HTTP error, network) so the caller can fall back to polling.
 */
export async function followJob<J>(target: { url: string; token: string }, jobId: string, onProgress: (p: ProgressJson) => void): Promise<J> {
  let lastId: string | undefined;
  for (let attempt = 0; attempt <= MAX_RECONNECTS; attempt++) {
    const headers: Record<string, string> = { authorization: `Bearer ${target.token}`, accept: "text/event-stream" };
    if (lastId !== undefined) headers["last-event-id"] = lastId;
    const res = await fetch(new URL(`/v1/jobs/${encodeURIComponent(jobId)}/events`, target.url), { headers });
    if (!res.ok || res.body === null) throw new Error(`jobs: progress stream answered ${res.status}`);
    const events = res.body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream());
    for await (const e of events as unknown as AsyncIterable<{ event?: string; id?: string; data: string }>) {
      if (e.id !== undefined) lastId = e.id;
      if (e.event === "progress") onProgress(JSON.parse(e.data) as ProgressJson);
      else if (e.event === "done") return (JSON.parse(e.data) as { job: J }).job;
      else if (e.event === "error") throw new Error(`jobs: progress stream failed: ${e.data.slice(0, 200)}`);
    }
  }
  throw new Error("jobs: the progress stream kept ending before the job was done");
}
