<?php
// Front controller: / lists posts, /posts/{id} shows one.
$db = new PDO('sqlite:' . __DIR__ . '/../data/blog.sqlite', null, null, [
    PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
]);
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
function e(string $s): string { return htmlspecialchars($s, ENT_QUOTES, 'UTF-8'); }
header('Content-Type: text/html; charset=utf-8');
if ($path === '/' || $path === '/index.php') {
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
    echo '<!doctype html><title>', e($post['title']), '</title><h1>', e($post['title']), '</h1><p>', e($post['body']), '</p><p><small>', e($post['published_at']), '</small></p><p><a href="/">All posts</a></p>';
    exit;
}
http_response_code(404);
echo "<!doctype html><title>Not found</title><h1>Not found</h1>";
