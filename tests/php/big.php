<?php
// Prints exactly ?n=BYTES bytes (default 1048576, at most 1 GiB) of a fixed pattern:
// byte i is P[i % 64] with
//   P = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/"
// Content-Type: application/octet-stream. With &cl=1 it also sends Content-Length.
// With &flush=1 it flushes after each 64 KiB block (response reaches the server in pieces).
$p = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/';
$n = isset($_GET['n']) ? (int)$_GET['n'] : 1048576;
if ($n < 0) { $n = 0; }
if ($n > 1073741824) { $n = 1073741824; }
header('Content-Type: application/octet-stream');
if (!empty($_GET['cl'])) { header('Content-Length: ' . $n); }
$flush = !empty($_GET['flush']);
$block = str_repeat($p, 1024);            // 65536 bytes, starts at pattern offset 0
$full = intdiv($n, 65536);
for ($i = 0; $i < $full; $i++) {
    echo $block;
    if ($flush) { flush(); }
}
echo substr($block, 0, $n % 65536);
