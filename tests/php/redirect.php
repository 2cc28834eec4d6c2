<?php
// Status 302 (PHP's default for a Location header), Location: /elsewhere, body "redirecting\n".
header('Location: /elsewhere');
header('Content-Type: text/plain');
echo "redirecting\n";
