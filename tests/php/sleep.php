<?php
// Sleeps ?s=SECONDS (decimal allowed, default 1, at most 60) then prints "slept SECONDS\n".
// With &flush=1 it first prints "sleeping\n" and flushes it to the web server, so a
// response has started before the sleep (for read-timeout / truncation tests).
header('Content-Type: text/plain');
$s = isset($_GET['s']) ? (float)$_GET['s'] : 1.0;
if ($s < 0) { $s = 0; }
if ($s > 60) { $s = 60; }
if (!empty($_GET['flush'])) {
    echo "sleeping\n";
    while (ob_get_level() > 0) { ob_end_flush(); }
    flush();
}
usleep((int)round($s * 1000000));
echo 'slept ', $_GET['s'] ?? '1', "\n";
