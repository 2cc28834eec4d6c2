<?php
// Status 404, Content-Type: text/plain, body "not found\n".
http_response_code(404);
header('Content-Type: text/plain');
echo "not found\n";
