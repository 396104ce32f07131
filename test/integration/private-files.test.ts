/**
 * Files the platform never serves (issue 15): dotfiles and hidden directories, and zerocell.toml
 * when the document root is the bundle root, whether or not the tenant's archive contains them
 * (an archive made by hand skips the packer's defaults). /.well-known/ stays public.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { gzipSync } from "node:zlib";
import { startServer, fetchApp, admin, type TestServer } from "../helpers/server.js";
import { tar } from "../helpers/tar.js";

describe("private files are never served", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(["--no-spare-hosts"]);
    // Made by hand: the packer would have left the dotfiles out.
    const archive = gzipSync(
      tar([
        { path: "zerocell.toml", data: 'runtime = "php"\n[[routes]]\nhost = "private.localhost"\npath = "/"\n' },
        { path: "index.php", data: "<?php echo 'home';" },
        { path: "notes.txt", data: "public notes" },
        { path: ".env", data: "DB_PASSWORD=hunter2" },
        { path: ".htpasswd", data: "admin:x" },
        { path: ".git/", type: "5" },
        { path: ".git/config", data: "[remote]" },
        { path: ".hidden.php", data: "<?php echo 'ran hidden';" },
        { path: "sub/", type: "5" },
        { path: "sub/.env", data: "SUB_SECRET=1" },
        { path: ".well-known/", type: "5" },
        { path: ".well-known/security.txt", data: "Contact: mailto:security@example.com" },
      ]),
    );
    const r = await admin(server, "POST", "/v1/apps/private/deployments", { body: archive, contentType: "application/gzip" });
    expect(r.status).toBe(201);
  });
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  it("answers 404 for dotfiles, hidden directories and the manifest; serves the rest", async () => {
    expect((await fetchApp(server, "private.localhost", "/notes.txt")).text).toBe("public notes");
    expect((await fetchApp(server, "private.localhost", "/.well-known/security.txt")).text).toContain("Contact:");
    for (const path of ["/.env", "/.htpasswd", "/.git/config", "/.git/", "/.hidden.php", "/sub/.env", "/zerocell.toml", "/ZEROCELL.TOML", "/%2eenv", "/.well-known/../.env", "/.well-known"]) {
      const r = await fetchApp(server, "private.localhost", path);
      expect(r.status, path).toBe(404);
      expect(r.text, path).not.toMatch(/hunter2|\[remote\]|admin:x|ran hidden|SUB_SECRET|runtime =/);
    }
  });
});
