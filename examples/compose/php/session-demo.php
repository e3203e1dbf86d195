<?php
// php session-demo.php write|read — one fixed session id, written on one web node, read on another.
session_id('composedemo0000000000000000000000');
session_start();
if (($argv[1] ?? 'read') === 'write') {
    $_SESSION['written_by'] = gethostname();
    $_SESSION['at'] = date(DATE_ATOM);
}
echo json_encode($_SESSION), PHP_EOL;
session_write_close();
