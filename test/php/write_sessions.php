<?php
// Writes `count` sessions (ids prefix000000.., from `start`), each holding rc_session_data(id, gen, size).
// Args: prefix=, count=, start=0, gen=1, size=4096.
// Summary: {ok, errors, maxMs, slowestId, warnings}.
declare(strict_types=1);
require __DIR__ . '/common.php';

$args = rc_args();
$gen = rc_int($args, 'gen', 1);
$size = rc_int($args, 'size', 4096);
$ok = 0;
$errors = [];
$maxMs = 0.0;
$slowestId = null;

foreach (rc_ids(rc_str($args, 'prefix'), rc_int($args, 'start', 0), rc_int($args, 'count')) as $id) {
    $t0 = hrtime(true);
    session_id($id);
    if (!session_start()) {
        $errors[] = "$id: session_start failed";
        continue;
    }
    $_SESSION = rc_session_data($id, $gen, $size);
    if (!session_write_close()) {
        $errors[] = "$id: session_write_close failed";
        continue;
    }
    $ms = rc_ms($t0);
    if ($ms > $maxMs) {
        [$maxMs, $slowestId] = [$ms, $id];
    }
    $ok++;
}

rc_finish(['ok' => $ok, 'errors' => $errors, 'maxMs' => $maxMs, 'slowestId' => $slowestId]);
