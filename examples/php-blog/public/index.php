<?php
// Front controller: / lists posts, /posts/{id} shows one with its comments, POST adds a comment.
$db = new PDO('sqlite:' . __DIR__ . '/../data/blog.sqlite', null, null, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
function e(string $s): string { return htmlspecialchars($s, ENT_QUOTES, 'UTF-8'); }

/** This post's comments live in its own /data (per-key storage), created on the first comment. */
function comments_db(bool $create): ?PDO {
    $file = '/data/comments.sqlite';
    if (!$create && !file_exists($file)) return null;
    $c = new PDO('sqlite:' . $file, null, null, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
    $c->exec('CREATE TABLE IF NOT EXISTS comments (id INTEGER PRIMARY KEY AUTOINCREMENT, author TEXT NOT NULL, body TEXT NOT NULL, created_at TEXT NOT NULL)');
    return $c;
}

if ($path === '/' || $path === '/index.php') {
    header('Content-Type: text/html; charset=utf-8');
    $posts = $db->query('SELECT id, title, published_at FROM posts ORDER BY published_at DESC')->fetchAll(PDO::FETCH_ASSOC);
    echo "<!doctype html><title>Blog</title><h1>Blog</h1><ul>";
    foreach ($posts as $p) {
        echo '<li><a href="/posts/', (int)$p['id'], '">', e($p['title']), '</a> <small>', e($p['published_at']), '</small></li>';
    }
    echo "</ul>";
    exit;
}
if (preg_match('#^/posts/(\d+)$#', $path, $m)) {
    $st = $db->prepare('SELECT title, body, published_at FROM posts WHERE id = ?');
    $st->execute([(int)$m[1]]);
    $post = $st->fetch(PDO::FETCH_ASSOC);
    if ($post === false) {
        http_response_code(404);
        echo "<!doctype html><title>Not found</title><h1>No such post</h1>";
        exit;
    }
    if ($_SERVER['REQUEST_METHOD'] === 'POST') {
        $author = trim((string)($_POST['author'] ?? 'anonymous'));
        $body = trim((string)($_POST['body'] ?? ''));
        if ($body === '' || strlen($body) > 2000 || strlen($author) > 100) {
            http_response_code(422);
            echo "a comment needs a body of 1 to 2000 characters";
            exit;
        }
        $c = comments_db(true);
        $c->prepare('INSERT INTO comments (author, body, created_at) VALUES (?, ?, ?)')->execute([$author === '' ? 'anonymous' : $author, $body, gmdate('c')]);
        if (isset($_GET['fail'])) {
            // For the tests: a request that writes, then fails, must leave no trace.
            throw new RuntimeException('failing after the write, on purpose');
        }
        header('Location: /posts/' . (int)$m[1], true, 303);
        exit;
    }
    $c = comments_db(false);
    $comments = $c === null ? [] : $c->query('SELECT author, body, created_at FROM comments ORDER BY id')->fetchAll(PDO::FETCH_ASSOC);
    if (isset($_GET['json'])) {
        header('Content-Type: application/json');
        echo json_encode(['post' => (int)$m[1], 'title' => $post['title'], 'comments' => $comments]);
        exit;
    }
    header('Content-Type: text/html; charset=utf-8');
    echo '<!doctype html><title>', e($post['title']), '</title><h1>', e($post['title']), '</h1><p>', e($post['body']), '</p><p><small>', e($post['published_at']), '</small></p>';
    echo '<h2>Comments</h2><ol>';
    foreach ($comments as $cm) echo '<li><b>', e($cm['author']), '</b>: ', e($cm['body']), '</li>';
    echo '</ol><form method="post"><input name="author" placeholder="name"> <input name="body" placeholder="comment"> <button>Add</button></form><p><a href="/">All posts</a></p>';
    exit;
}
http_response_code(404);
echo "<!doctype html><title>Not found</title><h1>Not found</h1>";
