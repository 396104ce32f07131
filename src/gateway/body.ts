/** Request bodies read under a limit (app requests and the admin API share it). */

/**
 * Reads a body stream to its end; past `limit` bytes the stream is cancelled and `tooLarge()`
 * thrown, so no more than `limit` plus one chunk is ever held.
 */
export async function readStreamLimited(body: ReadableStream<Uint8Array>, limit: number, tooLarge: () => Error): Promise<Buffer> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge();
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}
