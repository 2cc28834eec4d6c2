<?php
// Reports one FastCGI parameter, by default HEISEN_BIG; ?name=OTHER picks another one.
//   name=<parameter name>
//   present=<1 or 0>
//   length=<strlen of the value, 0 if absent>
//   sha256=<lowercase hex sha256 of the value (of "" if absent)>
header('Content-Type: text/plain');
$name = isset($_GET['name']) ? (string)$_GET['name'] : 'HEISEN_BIG';
$present = array_key_exists($name, $_SERVER);
$value = $present ? (string)$_SERVER[$name] : '';
echo 'name=', $name, "\n";
echo 'present=', $present ? '1' : '0', "\n";
echo 'length=', strlen($value), "\n";
echo 'sha256=', hash('sha256', $value), "\n";
