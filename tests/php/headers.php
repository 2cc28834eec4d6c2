<?php
// Status 200 and these headers (in this order, as PHP emits them):
//   Content-Type: text/plain; charset=utf-8
//   X-Heisen-One: 1
//   X-Heisen-Multi: a
//   X-Heisen-Multi: b
//   Set-Cookie: a=1; path=/
//   Set-Cookie: b=2; path=/
//   Cache-Control: no-store
// Body: "headers\n".
header('Content-Type: text/plain; charset=utf-8');
header('X-Heisen-One: 1');
header('X-Heisen-Multi: a');
header('X-Heisen-Multi: b', false);
header('Set-Cookie: a=1; path=/', false);
header('Set-Cookie: b=2; path=/', false);
header('Cache-Control: no-store');
echo "headers\n";
