CREATE TABLE posts (id INTEGER PRIMARY KEY, slug TEXT NOT NULL UNIQUE, title TEXT NOT NULL, body TEXT NOT NULL, published_at TEXT NOT NULL);
INSERT INTO posts (id, slug, title, body, published_at) VALUES
  (1, 'hello-zerocell', 'Hello, Zerocell', 'Every request to this blog runs in its own PHP sandbox.', '2026-11-01'),
  (2, 'read-only-data', 'Read-only data', 'These posts come from a SQLite file inside the app image, which the app cannot change.', '2026-11-15'),
  (3, 'what-next', 'What comes next', 'Per-post instances with their own storage for comments.', '2026-11-26');
