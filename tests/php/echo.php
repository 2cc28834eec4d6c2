<?php
// Echoes what the request looked like, one "key=value" line each, always in this order:
//   method=<REQUEST_METHOD>
//   query=<QUERY_STRING as received, undecoded>
//   content_type=<CONTENT_TYPE or empty>
//   content_length=<CONTENT_LENGTH param or empty>
//   length=<number of body bytes actually read from php://input>
//   sha256=<lowercase hex sha256 of those body bytes>
// Content-Type: text/plain; status 200. (multipart/form-data bodies are not readable from
// php://input: use any other content type, e.g. application/octet-stream.)
header('Content-Type: text/plain');
$body = file_get_contents('php://input');
if ($body === false) { $body = ''; }
echo 'method=', $_SERVER['REQUEST_METHOD'] ?? '', "\n";
echo 'query=', $_SERVER['QUERY_STRING'] ?? '', "\n";
echo 'content_type=', $_SERVER['CONTENT_TYPE'] ?? '', "\n";
echo 'content_length=', $_SERVER['CONTENT_LENGTH'] ?? '', "\n";
echo 'length=', strlen($body), "\n";
echo 'sha256=', hash('sha256', $body), "\n";
