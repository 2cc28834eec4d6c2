<?php
// The directory index (heisen-httpd -indexfiles index.php). Body: "index\n".
header('Content-Type: text/plain');
echo "index\n";
