/**
 * A TCP server on loopback that counts the connections it gets: the witness that sandboxed code
 * reached (or did not reach) the host's network.
 */
import net from "node:net";

export interface CountingServer {
  port: number;
  /** Connections accepted so far. */
  connections(): number;
  close(): Promise<void>;
}

export async function startCountingServer(): Promise<CountingServer> {
  let connections = 0;
  const server = net.createServer((s) => {
    connections++;
    s.end("counted\n");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => connections,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
