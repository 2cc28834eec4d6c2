<?php
// Logs "heisen stderr test" with error_log(): php-fpm sends it on the FastCGI STDERR stream
// (as "PHP message: heisen stderr test" with a trailing newline/NUL, see README.md).
// Body: "stderr sent\n"; status 200.
header('Content-Type: text/plain');
error_log("heisen stderr test");
echo "stderr sent\n";
