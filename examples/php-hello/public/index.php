<?php
header('Content-Type: text/plain; charset=utf-8');
echo "Hello from PHP ", PHP_VERSION, " on Zerocell\n";
echo "You asked for ", $_SERVER['REQUEST_URI'], " over ", (($_SERVER['HTTPS'] ?? '') === 'on' ? 'HTTPS' : 'HTTP'), "\n";
