<?php
// Body (exactly 14 bytes): "Hello, world!\n"; Content-Type: text/plain; status 200.
header('Content-Type: text/plain');
echo "Hello, world!\n";
