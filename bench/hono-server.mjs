// Baseline server for bench/run.mjs: a bare Hono handler on a random loopback port.
// Prints {"port":N} on stdout once listening.
import { Hono } from "hono";
import { serve } from "@hono/node-server";

const app = new Hono();
app.get("/", (c) => c.text("Hello"));

const server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info) => {
  process.stdout.write(JSON.stringify({ port: info.port }) + "\n");
});
const stop = () => server.close(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
